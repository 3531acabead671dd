"""The firehose exception hierarchy.

Every error is a :class:`FirehoseError` *and* the builtin a caller would naturally catch
(``ParseError`` is a ``ValueError``, ``SinkError`` an ``OSError`` ...), in the manner of
``pyarrow.ArrowInvalid(ValueError, ArrowException)``.  Messages name where the problem is:
file, line, byte offset and field path.
"""
from __future__ import annotations

__all__ = [
    "FirehoseError",
    "ParseError",
    "ConfigError",
    "EntitlementError",
    "SinkError",
    "StateError",
    "InputError",
]


class FirehoseError(Exception):
    """Base class of every error raised by firehose."""


class ParseError(FirehoseError, ValueError):
    """A line of a capture could not be decoded.

    Attributes name the place: ``source`` (file), ``line`` (1-based), ``byte_offset`` (of the
    line's first byte in the source), ``field`` (JSON path, when known), ``reason`` (a short
    code such as ``invalid_json``) and ``detail`` (a human sentence).
    """

    def __init__(self, reason: str, detail: str, *, source: str = "", line: int = 0,
                 byte_offset: int = 0, field: str | None = None):
        self.reason = reason
        self.detail = detail
        self.source = source
        self.line = line
        self.byte_offset = byte_offset
        self.field = field
        where = f"{source or '<input>'}:{line} (byte {byte_offset})"
        if field:
            where += f" at {field}"
        super().__init__(f"{where}: {reason}: {detail}")


class ConfigError(FirehoseError, ValueError):
    """A configuration value is missing, unknown or invalid; the message names its key path."""


class EntitlementError(FirehoseError, PermissionError):
    """Delivery was refused by policy."""


class SinkError(FirehoseError, OSError):
    """A sink could not write or commit its output."""


class StateError(FirehoseError, ValueError):
    """Saved state (dedupe table, checkpoint) is corrupt or from an incompatible version."""


class InputError(FirehoseError, OSError):
    """An input could not be opened or read (missing file, corrupt gzip/zstd stream)."""
