"""firehose: replay and ingest the tweet firehose into deduplicated Apache Arrow batches.

    >>> import firehose
    >>> dec = firehose.Decoder(batch_size=65536, dedupe=True)
    >>> out = dec.feed(chunk, source="capture-0001.ndjson", offset=0)
    >>> out.tweets, out.compliance, out.rejects        # pyarrow.Table each

The Cython core (``firehose._core``) is private; use the names exported here.
"""
from __future__ import annotations

from . import schema
from .errors import (ConfigError, EntitlementError, FirehoseError, ParseError, SinkError,
                     StateError)

__version__ = "0.1.0"

__all__ = [
    "Decoder", "DecodeResult", "decode_file", "iter_file", "schema",
    "FirehoseError", "ParseError", "ConfigError", "EntitlementError", "SinkError", "StateError",
]


def __getattr__(name: str):
    # The decoder imports the compiled core; keep ``import firehose`` (and firehose.testing,
    # firehose._reference) usable in a checkout whose extension is not built yet.
    if name in ("Decoder", "DecodeResult", "decode_file", "iter_file"):
        from . import decoder
        return getattr(decoder, name)
    raise AttributeError(f"module 'firehose' has no attribute {name!r}")
