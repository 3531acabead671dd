"""Opening captures: plain, gzip and zstd files (by their magic bytes), globs and stdin.

``iter_chunks(path)`` yields ``(chunk, offset)`` pairs of decompressed bytes, where ``offset`` is
the position of the chunk in the decompressed stream. Chunks are cut anywhere; the decoder
re-aligns them on newlines. ``read_into_chunks(path)`` yields the same chunks, but a plain
file's as views of buffers it reads into again and again (``iter_file`` on one thread uses
it); ``map_chunks(path)`` as views of the file mapped into memory (``iter_file(mmap=True)``).
"""
from __future__ import annotations

import glob as _glob
import gzip
import io
import mmap
import os
import queue
import stat
import sys
import threading
from typing import BinaryIO, Iterator

from .errors import InputError

__all__ = ["open_capture", "iter_chunks", "read_chunks", "map_chunks", "read_into_chunks",
           "prefetch", "expand_paths", "DEFAULT_CHUNK", "PARALLEL_SEGMENT"]

DEFAULT_CHUNK = 4 << 20
#: segment size of a parallel decode (iter_file(threads > 1)) unless chunk_size is given: each
#: segment costs a mapping, a worker's finish() and the caller's merge of its tables; 300 MB on
#: 2 threads ran 0.30-0.34 s in 4 MiB segments, 0.25-0.31 s in 8 MiB (medians, alternated).
#: Since the tail is cut finer (_parallel._mapped_segments) larger segments no longer leave a
#: core idle at the end: 12 MiB ran 2t÷1t 1.82× against 8 MiB's 1.78× (medians of 10 rounds),
#: peak RSS +40 MiB against +31 (16 MiB: 1.80×, +49 MiB)
PARALLEL_SEGMENT = 12 << 20
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


def read_chunks(path, chunk_size: int = DEFAULT_CHUNK, start: int = 0,
                readahead: int = 0) -> Iterator[tuple[bytes, int]]:
    """``iter_chunks``, ``readahead`` chunks ahead in a thread (``prefetch``) when > 0."""
    chunks = iter_chunks(path, chunk_size, start)
    return prefetch(chunks, readahead) if readahead > 0 else chunks


def _plain_fd(f) -> bool:
    """Is the open file ``f`` a regular, uncompressed, non-empty file (one that can be mapped)?"""
    try:
        st = os.fstat(f.fileno())
    except (OSError, AttributeError, io.UnsupportedOperation):
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return False
    head = os.pread(f.fileno(), 4, 0)
    return not (head.startswith(_GZIP) or head.startswith(_ZSTD))


def open_mappable(path):
    """The file at ``path`` opened unbuffered if it is a plain (uncompressed, non-empty)
    regular file, one that can be mapped; else None: anything else, a FIFO above all, is
    left to ``iter_chunks`` to open once (a second open of a FIFO whose writer has gone waits
    for ever), and so is a file that cannot be opened (``iter_chunks`` says why)."""
    name = os.fspath(path)
    try:
        if name == "-" or not stat.S_ISREG(os.stat(name).st_mode):
            return None
        f = open(name, "rb", buffering=0)
    except OSError:
        return None
    if not _plain_fd(f):
        f.close()
        return None
    return f


def map_range(fd: int, start: int, n: int, populate: bool = False):
    """``(mapping, view)``: the file's bytes ``start:start + n`` mapped read-only, ``view`` a
    memoryview of just them. OSError, ValueError or OverflowError when they cannot be mapped.
    ``unmap`` undoes it. ``populate``: the page tables are filled by the call (MAP_POPULATE,
    where there is one) rather than fault by fault as the bytes are read: the parallel
    decode's segments, 2 threads over 300 MB, 8 of 9 alternated runs faster, median -2%."""
    base = start - start % mmap.ALLOCATIONGRANULARITY
    if populate and hasattr(mmap, "MAP_POPULATE"):
        m = mmap.mmap(fd, start - base + n, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                      prot=mmap.PROT_READ, offset=base)
    else:
        m = mmap.mmap(fd, start - base + n, access=mmap.ACCESS_READ, offset=base)
    return m, memoryview(m)[start - base:]


def unmap(m, view) -> None:
    """Release ``view`` and close ``m`` (``map_range``'s); either is left to the garbage
    collector while a consumer holds an export of the view or a view of the mapping."""
    try:
        view.release()
    except BufferError:
        pass
    try:
        m.close()
    except BufferError:
        pass


def map_chunks(path, chunk_size: int = DEFAULT_CHUNK, start: int = 0,
               readahead: int = 0) -> Iterator[tuple[object, int]]:
    """``iter_chunks`` without the copy: the same ``(chunk, offset)`` pairs, cut at the same
    places, but for a plain regular file each chunk is a read-only ``memoryview`` of the file
    mapped into memory (``mmap``) rather than ``bytes`` read into a fresh buffer. Other inputs
    (compressed files, stdin, pipes, files that cannot be mapped) are read by ``iter_chunks``,
    ``readahead`` chunks ahead in a thread (``prefetch``) when ``readahead`` > 0; a mapped file
    needs no thread (the kernel reads ahead of the page faults).

    A chunk is valid until the next one is asked for: then the view yielded is released and
    its mapping closed (left to the garbage collector while the consumer holds a view or an
    export of it, e.g. a slice or ``pa.py_buffer``; the view itself is released, so keep a
    slice, not the view). Each chunk is mapped on its
    own, so memory stays bounded whatever the file's size, and a file that grows while it is
    read is read on, as with ``read()``. A plain file *truncated* while it is read, or an I/O
    error on a mapped page, makes the process die of SIGBUS when it touches those pages (a
    property of memory mapping); ``iter_chunks`` (``iter_file(mmap=False)``) reads such files
    safely."""
    f = open_mappable(path)
    if f is None:
        yield from read_chunks(path, chunk_size, start, readahead)
        return
    try:
        fd = f.fileno()
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, start, 0, os.POSIX_FADV_SEQUENTIAL)
        offset = start
        while True:
            size = os.fstat(fd).st_size      # sampled per chunk: a growing file is read on
            if offset >= size:
                break
            n = min(chunk_size - offset % chunk_size, size - offset)
            try:
                m, view = map_range(fd, offset, n)
            except (OSError, ValueError, OverflowError):
                # not mappable after all (some file systems): read the rest
                f.close()
                f = None
                yield from read_chunks(path, chunk_size, offset, readahead)
                return
            try:
                yield view, offset
            finally:
                unmap(m, view)
            offset += n
    finally:
        if f is not None:
            f.close()


def read_into_chunks(path, chunk_size: int = DEFAULT_CHUNK, start: int = 0,
                     readahead: int = 0) -> Iterator[tuple[object, int]]:
    """``iter_chunks`` into buffers used again and again: the same ``(chunk, offset)`` pairs,
    cut at the same places (a file that grows while it is read may be cut sooner), but for a
    plain regular file each chunk is a ``memoryview`` of a buffer this reads the file into
    (``preadv``) rather than fresh ``bytes``. Other inputs are read by ``read_chunks``, as by
    ``map_chunks``.

    Like ``map_chunks``' views, a chunk is valid until the next one is asked for: the buffer
    under it is then read into again. (``Decoder.feed`` keeps no reference to what it is
    fed.) Unlike a mapping, a file truncated while it is read ends there, and an I/O error
    is an ``InputError``, never a SIGBUS; a file that grows is read on. One thread over the
    benchmark capture ran 2-5% faster so than mapped (0.178-0.183 s against 0.185-0.190 s for
    300 MB, 2-16 MiB chunks): a copy into a buffer that stays in the cache costs less than the
    page faults of a mapping, which take the kernel ~5 us per 64 KiB.

    ``readahead`` > 0 reads that many chunks ahead in a thread (``prefetch``), into
    ``readahead + 2`` buffers taken in turn (the one the consumer holds, ``readahead``
    queued, the one being read); 0 reads inline into one buffer."""
    f = open_mappable(path)
    if f is None:
        yield from read_chunks(path, chunk_size, start, readahead)
        return
    name = os.fspath(path)
    try:
        if os.fstat(f.fileno()).st_size - start <= chunk_size:
            readahead = 0       # one chunk: a thread would cost more than it overlaps
    except OSError:
        pass
    nbuf = readahead + 2 if readahead > 0 else 1

    def chunks():
        # buffers made as they are first needed, each no larger than what is left of the file
        # (grown if the file grows): a small file costs a small buffer, not 4 x 4 MiB zeroed
        bufs: list = [None] * nbuf
        offset, i = start, 0
        try:
            fd = f.fileno()
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, start, 0, os.POSIX_FADV_SEQUENTIAL)
            while True:
                want = chunk_size - offset % chunk_size
                left = os.fstat(fd).st_size - offset    # (per chunk: a growing file is read on)
                need = min(want, left) if left > 0 else min(want, 1 << 16)
                view = bufs[i]
                if view is None or len(view) < need:
                    view = bufs[i] = memoryview(bytearray(need))
                need = min(want, len(view))
                got = 0
                while got < need:
                    k = _pread_into(fd, view[got:need], offset + got, name)
                    if not k:
                        break
                    got += k
                if not got:
                    return
                yield view[:got], offset
                offset += got
                i = (i + 1) % nbuf
        finally:
            f.close()

    if readahead > 0:
        yield from prefetch(chunks(), readahead)
    else:
        yield from chunks()


def _pread_into(fd: int, view, offset: int, name: str) -> int:
    """Read into ``view`` at ``offset`` of the file: the bytes read (0 at its end)."""
    try:
        if _PREADV:
            return os.preadv(fd, [view], offset)
        data = os.pread(fd, len(view), offset)
    except OSError as e:
        raise InputError(f"{name}: read failed at byte {offset}: {e.strerror or e}") from None
    view[:len(data)] = data
    return len(data)


_PREADV = hasattr(os, "preadv")     # (Linux, the BSDs; not every macOS build)


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
