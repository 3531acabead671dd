"""Decoding one capture on several threads: ``iter_file(path, threads=N)``.

The capture is cut into segments of at most ``chunk_size`` bytes, each ending just after a
newline (or at the end of the input); a plain file's are smaller where less than
``threads`` segments' worth is left (see ``_mapped_segments``). Worker threads take the next
segment as they come free (a faster core does more: on a machine whose cores run at
different speeds from moment to moment, fixed halves would wait for the slower one) and
decode it with a Decoder of their own; the core releases the GIL, so the workers run in
parallel. A plain file is memory-mapped by the worker, segment by segment; other inputs
(compressed files, stdin, ``mmap=False``) are read and decompressed on the caller's thread,
or ``readahead`` chunks ahead in another.

The caller's thread takes the results back in file order and makes them what the caller's
Decoder (the *front* decoder) would have given on its own:

* dedupe: the workers do not dedupe. The front decoder's dedupe memory admits each segment's
  tweet ids in file order (``Engine.admit_ids``, the same code the scan runs), and the rows it
  does not admit are dropped: exact, first wins, across segments, files and resumes alike;
* line numbers: a worker numbers lines from its segment's start; the lines of the segments
  before it are added (``line`` of tweets, compliance and rejects);
* stats: the workers' counts are added to the front decoder's (duplicates and late ids are
  counted by its dedupe memory);
* ``on_error="raise"``: the first reject in file order raises, once the segments before it have
  been yielded (which rows of the bad line's own segment or chunk come out before the error
  depends on where the input was cut, as it does on one thread);
* the ``source_file`` dictionary is the front decoder's (the workers register its sources).

Results come one per segment (a sequential ``iter_file`` gives one per chunk read); the rows, in
order, are the same, and between results ``position()`` is where one thread would resume. At
most ``2 * threads`` segments are in flight, so memory stays bounded. A read error (a truncated
or corrupt compressed file) comes after the results of every segment read before it, and the
decoder then holds the cut line's bytes read so far as its pending line, as one thread's does. An input of
one segment (a small file) is decoded by the front decoder on the caller's thread: starting
workers would cost more than it saves.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import pyarrow as pa

from ._core import keep_rows
from .decoder import DecodeResult
from .errors import InputError, ParseError
from .reader import map_range, open_mappable, read_chunks, unmap

_SCAN = 1 << 16         # bytes read at a time looking for the newline that ends a segment
#: the smallest tail segment (``_mapped_segments``): a segment costs ~0.4 ms of its own (a
#: mapping, a worker's finish, the caller's merge), about the time 1 MiB takes to decode
_TAIL_MIN = 2 << 20


def iter_parallel(path, front, name: str, chunk_size: int, readahead: int, use_mmap: bool,
                  threads: int) -> Iterator:
    """The results of decoding ``path`` (as source ``name``) on ``threads`` worker threads, in
    file order, as the Decoder ``front`` would have given them (see the module's doc)."""
    name = os.fspath(name)
    f = open_mappable(path) if use_mmap else None
    segments = (_mapped_segments(f, chunk_size, threads) if f is not None
                else _read_segments(read_chunks(path, chunk_size, readahead=readahead)))
    pool = None
    pending: deque = deque()
    try:
        seg, failed = _pull(segments)
        if seg is None:
            if failed is None:          # nothing to decode: what one thread's finish() gives
                yield front.finish()
                return
            # reading failed before a whole line: one thread would have fed what was read
            # (none, if the file could not be opened: the decoder is then untouched)
            yield from _feed_read(front, name, failed)
        nxt = None
        if failed is None:
            nxt, failed = _pull(segments)
        if nxt is None:
            # one segment (a small file): decoded here by the front decoder itself, as one
            # thread does; starting workers would cost more than it saves
            yield from _feed_segment(front, f, name, seg)
            if failed is not None:
                yield from _feed_read(front, name, failed)
            yield front.finish()
            return

        # the front decoder switches to this source as one thread's first feed would (the
        # source it was on ends; a cut line of this one left pending is decoded)
        front._switch(name, 0)
        first = front._result()
        if not _empty(first):
            yield first
        lines = front._eng.line_no
        # each worker thread's own decoder, made on that thread when it takes its first
        # segment: making them here first (~0.2 ms each) held back the first segment
        local = threading.local()

        def work(seg):
            dec = getattr(local, "dec", None)
            if dec is None:
                dec = local.dec = front._worker()
            before = dec.stats
            dec.seek(name, seg[0], 0)
            parts = _feed_segment(dec, f, name, seg)
            last = dec.finish()
            if len(parts) == 1 and _empty(last):
                res = parts[0]      # (the usual segment, ended by a newline: nothing to join)
            else:
                res = DecodeResult.concat(parts + [last])
            after = dec.stats
            return res, {k: after[k] - before[k] for k in after}, dec._pos[name][1]

        def take():
            """The oldest segment's result, made the front decoder's; the front then stands
            where one thread would after that segment's lines (``position()``)."""
            nonlocal lines
            fut, end = pending.popleft()
            res, counts, n = fut.result()
            out = _merge(front, res, counts, lines)
            lines += n
            front._offset = front._carry_off = end
            front._eng.line_no = lines
            return out

        pool = ThreadPoolExecutor(threads, thread_name_prefix="firehose-decode")
        while seg is not None:
            pending.append((pool.submit(work, seg), seg[1]))
            if len(pending) >= 2 * threads:
                yield take()
            seg, nxt = nxt, None
            if seg is None and failed is None:
                seg, failed = _pull(segments)
        while pending:
            yield take()
        if failed is not None:
            yield from _feed_read(front, name, failed)
        front._end_source()             # as after one thread's finish()
    finally:
        for fut, _ in pending:
            fut.cancel()
        if pool is not None:
            pool.shutdown(wait=True)
        segments.close()
        if f is not None:
            f.close()


def _feed_segment(dec, f, name: str, seg) -> list:
    """``dec.feed`` of a segment ``(start, end, pieces)``: its pieces, or (``pieces`` None)
    the file's bytes ``start:end``, mapped for the call (read, if this file system cannot map
    them). A list of results."""
    start, end, pieces = seg
    if pieces is not None:
        return [dec.feed(piece, source=name, offset=off) for piece, off in pieces]
    try:
        # (populated in the call, up to 64 MiB: a larger segment, chunk_size set so, would be
        # read whole before its decode starts instead of as it goes)
        m, view = map_range(f.fileno(), start, end - start, populate=end - start <= 64 << 20)
    except (OSError, ValueError, OverflowError):
        data = os.pread(f.fileno(), end - start, start)
        if len(data) != end - start:
            raise InputError(f"{name}: ends at byte {start + len(data)}, before {end} "
                             "(truncated while it was decoded)") from None
        return [dec.feed(data, source=name, offset=start)]
    try:
        return [dec.feed(view, source=name, offset=start)]
    finally:
        unmap(m, view)


def _merge(front, res, counts: dict, lines: int):
    """A worker's result of one segment, as the front decoder would have given it: deduped by
    the front's memory, lines numbered from ``lines``, counts added to its stats."""
    tweets, comp, rejects = res.tweets, res.compliance, res.rejects
    n = tweets.num_rows
    ids = tweets.column("id") if front.dedupe and n else None
    if front._names is not None and "id" not in front._names:
        tweets = tweets.select(front._names)        # (the worker built the id too)
    if ids is not None:
        keep = np.empty(n, np.uint8)
        admitted, pos = 0, 0
        for chunk in ids.chunks:
            m = len(chunk)
            admitted += front._eng.admit_ids(_int64s(chunk), keep[pos:pos + m])
            pos += m
        if admitted < n:
            # batch by batch, column by column, by the core's keep_rows: Arrow's filter took
            # twice as long here, and its first call in a process loads Arrow's compute
            # functions (~30 ms)
            batches, pos = [], 0
            for b in tweets.to_batches():
                m = keep[pos:pos + b.num_rows]
                k = int(np.count_nonzero(m))
                if k < b.num_rows:
                    b = pa.RecordBatch.from_arrays([keep_rows(c, m, k) for c in b.columns],
                                                   schema=b.schema)
                batches.append(b)
                pos += len(m)
            tweets = pa.Table.from_batches(batches, schema=tweets.schema)
        counts["tweets"] -= n - admitted
    if lines:
        tweets, comp, rejects = (_shift_lines(t, lines) for t in (tweets, comp, rejects))
    for k, v in counts.items():
        if k not in ("duplicates", "dedupe_late"):     # (the front's dedupe counts those)
            front._more[k] = front._more.get(k, 0) + v
    if front.on_error == "raise" and rejects.num_rows:
        r = rejects.slice(0, 1).to_pylist()[0]
        raise ParseError(r["reason"], r["detail"], source=r["source"], line=r["line"],
                         byte_offset=r["byte_offset"], field=r["field"])
    return DecodeResult(tweets, comp, rejects)


def _int64s(chunk) -> np.ndarray:
    """An int64 Arrow array without nulls as a contiguous NumPy array (no copy)."""
    return np.ascontiguousarray(chunk.to_numpy(zero_copy_only=False), dtype=np.int64)


def _shift_lines(table: pa.Table, lines: int) -> pa.Table:
    """``table`` with ``lines`` added to its ``line`` column (NumPy: an Arrow kernel call
    costs ~0.1 ms a segment here). The sums become Arrow arrays over their NumPy buffers:
    ``pa.array`` of a NumPy array imports numpy.ma on its first call in a process, ~6 ms on
    the caller's thread (the first parallel decode's second segment)."""
    i = table.schema.get_field_index("line")
    if i < 0 or not table.num_rows:
        return table
    sums = [_int64s(c) + lines for c in table.column(i).chunks]
    col = pa.chunked_array([pa.Array.from_buffers(pa.int64(), len(v), [None, pa.py_buffer(v)])
                            for v in sums], pa.int64())
    return table.set_column(i, table.schema.field(i), col)


def _empty(res) -> bool:
    return not (res.tweets.num_rows or res.compliance.num_rows or res.rejects.num_rows)


def _mapped_segments(f, chunk_size: int, threads: int = 1) -> Iterator[tuple[int, int, None]]:
    """``(start, end, None)``: byte ranges of the file, at most ``chunk_size`` each, every one
    but the last ending just after a newline (a line longer than that makes its segment longer). The
    file is cut at the size it had when it was opened (a sequential read follows a file that
    grows; this does not).

    The tail is cut finer: once fewer than ``threads`` whole segments are left, a segment is
    what is left over ``threads`` (not below ``_TAIL_MIN``), so the workers run out of work
    at about the same time. With whole segments to the end, one worker decoded the last
    segment while the others had nothing left: on 2 threads and 8 MiB segments that idle
    core was 0.2-7 ms at the end of a 300 MB file (2.5 ms on average; 0.1-1.3 ms cut finer,
    for two more segments)."""
    fd = f.fileno()
    size = os.fstat(fd).st_size
    pos = 0
    while pos < size:
        end = pos + min(chunk_size, max(_TAIL_MIN, (size - pos) // threads))
        if end >= size:
            end = size
        else:
            end = _after_newline(fd, end - 1, size)
        yield pos, end, None
        pos = end


def _after_newline(fd: int, pos: int, size: int) -> int:
    """The offset just after the first newline at or after ``pos``, or ``size``."""
    while pos < size:
        block = os.pread(fd, min(_SCAN, size - pos), pos)
        if not block:
            break
        i = block.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(block)
    return size


class _ReadFailed(Exception):
    """Reading the input failed (``error``) after the pieces in ``carry`` were read: the start
    of a line that no segment holds."""

    def __init__(self, error: Exception, carry: list):
        super().__init__(str(error))
        self.error, self.carry = error, carry


def _pull(segments):
    """``(next segment or None, None)``, or ``(None, _ReadFailed)`` when reading failed."""
    try:
        return next(segments, None), None
    except _ReadFailed as e:
        return None, e


def _feed_read(front, name: str, failed: _ReadFailed):
    """What one thread does when reading fails: the bytes read since the last whole line are
    fed (the front decoder holds them as its pending line; feeding the first of them ends the
    source it was on, as one thread's first feed would), then the error is raised."""
    for piece, off in failed.carry:
        yield front.feed(piece, source=name, offset=off)
    raise failed.error


def _read_segments(chunks) -> Iterator[tuple[int, int, list]]:
    """Segments of read (decompressed) chunks: ``(start, end, pieces)``, the pieces a list of
    ``(buffer, offset)`` that ends just after a newline (the last segment: at the end of the
    input). A piece is a view of a chunk: nothing is copied. A read error is raised as
    ``_ReadFailed`` with the pieces read since the last segment."""
    carry: list[tuple[object, int]] = []
    chunks = iter(chunks)
    while True:
        try:
            chunk, off = next(chunks)
        except StopIteration:
            break
        except Exception as e:
            raise _ReadFailed(e, carry) from None
        nl = chunk.rfind(b"\n")
        if nl < 0:
            carry.append((chunk, off))
            continue
        view = memoryview(chunk)
        pieces = carry + [(view[:nl + 1], off)]
        yield pieces[0][1], off + nl + 1, pieces
        carry = [(view[nl + 1:], off + nl + 1)] if nl + 1 < len(chunk) else []
    if carry:
        yield carry[0][1], carry[-1][1] + len(carry[-1][0]), carry
