"""Opening captures: plain, gzip and zstd files (by their magic bytes), globs and stdin.

``iter_chunks(path)`` yields ``(chunk, offset)`` pairs of decompressed bytes, where ``offset`` is
the position of the chunk in the decompressed stream. Chunks are cut anywhere; the decoder
re-aligns them on newlines.
"""
from __future__ import annotations

import glob as _glob
import gzip
import io
import os
import queue
import sys
import threading
from typing import BinaryIO, Iterator

from .errors import InputError

__all__ = ["open_capture", "iter_chunks", "prefetch", "expand_paths", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 4 << 20
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"


def expand_paths(patterns) -> list[str]:
    """Expand globs (sorted, so runs are deterministic); ``-`` stays stdin."""
    out: list[str] = []
    for pat in ([patterns] if isinstance(patterns, (str, os.PathLike)) else patterns):
        pat = os.fspath(pat)
        if pat == "-" or not any(ch in pat for ch in "*?["):
            out.append(pat)
            continue
        hits = sorted(_glob.glob(pat))
        if not hits:
            raise InputError(f"{pat}: no file matches this pattern")
        out.extend(hits)
    return out


try:    # ISA-L's inflate: the same streams (members, CRCs, errors) at ~2.5x zlib's speed
    from isal.igzip import GzipFile as _GzipFile
except ImportError:  # pragma: no cover - no isal wheel for this platform
    _GzipFile = gzip.GzipFile


def open_capture(path) -> BinaryIO:
    """A binary stream of the decompressed capture at ``path`` (``-`` is standard input)."""
    path = os.fspath(path)
    try:
        raw = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror or e}") from None
    head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
    if head.startswith(_GZIP):
        return _Closing(_GzipFile(fileobj=raw, mode="rb"), raw)
    if head.startswith(_ZSTD):
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True,
                                                          closefd=True)
    return raw


class _Closing(io.RawIOBase):
    """A decompressing reader that also closes the file under it."""

    def __init__(self, inner, raw):
        self._inner = inner
        self._raw = raw

    def readable(self):
        return True

    def read(self, n=-1):
        return self._inner.read(n)

    def close(self):
        try:
            self._inner.close()
        finally:
            if self._raw is not sys.stdin.buffer:
                self._raw.close()
            super().close()


def iter_chunks(path, chunk_size: int = DEFAULT_CHUNK, start: int = 0) -> Iterator[tuple[bytes, int]]:
    """Yield ``(bytes, offset)`` chunks of the decompressed capture, streaming.

    Chunks are cut at multiples of ``chunk_size`` in the decompressed stream (so the same
    input always gives the same chunks), beginning at ``start`` (a plain file seeks there; a
    compressed one is decompressed up to it)."""
    name = os.fspath(path)
    f = open_capture(path)
    offset = 0

    def read(n: int) -> bytes:
        try:
            return f.read(n)
        except (OSError, EOFError, ValueError) as e:
            raise InputError(f"{name}: read failed at decompressed byte {offset}: {e}") from None
        except Exception as e:  # zstandard.ZstdError and isal's IsalError are not OSErrors
            kind = {"ZstdError": "zstd", "IsalError": "gzip"}.get(type(e).__name__)
            if kind is not None:
                raise InputError(f"{name}: corrupt {kind} stream at decompressed byte "
                                 f"{offset}: {e}") from None
            raise

    try:
        if start:
            try:
                if name == "-" or not isinstance(f, io.BufferedReader):   # compressed
                    raise io.UnsupportedOperation
                f.seek(start)
                offset = start
            except (io.UnsupportedOperation, OSError, AttributeError):
                while offset < start:
                    skipped = read(min(chunk_size, start - offset))
                    if not skipped:
                        break
                    offset += len(skipped)
            if offset != start:
                raise InputError(f"{name}: ends at decompressed byte {offset}, "
                                 f"before the resume position {start}")
        while True:
            want = chunk_size - offset % chunk_size
            chunk = read(want)
            if not chunk:
                break
            while len(chunk) < want:         # some decompressors return short reads
                more = read(want - len(chunk))
                if not more:
                    break
                chunk += more
            yield chunk, offset
            offset += len(chunk)
    finally:
        if f is not sys.stdin.buffer:
            f.close()


_DONE = object()


def prefetch(chunks: Iterator, depth: int = 2) -> Iterator:
    """Run ``chunks`` (e.g. ``iter_chunks(path)``) in a background thread, ``depth`` items ahead.

    Reading and decompressing (zlib, zstd and file reads release the GIL) then overlap with
    decoding on the other core. Errors are re-raised in the consumer; closing the generator
    stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        try:
            for item in chunks:
                if not put((None, item)):
                    return
            put((None, _DONE))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((e, None))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=run, name="firehose-prefetch", daemon=True)
    t.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        t.join()
