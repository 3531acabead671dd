"""``Decoder``: the public face of the Cython core.

A Decoder is built once and fed chunks of captures, cut anywhere (mid-line, mid-UTF-8
sequence). It keeps the unterminated tail of the current source, numbers lines per source,
dedupes tweet ids across chunks and sources, and returns Arrow tables of what each call
completed. See docs/fields.md for what is read and how.
"""
from __future__ import annotations

import json
import numbers
import operator
import os
import re
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from . import _core
from .errors import ParseError
from .reader import DEFAULT_CHUNK, PARALLEL_SEGMENT, map_chunks, read_into_chunks
from .schema import COMPLIANCE, REJECTS, TWEETS

__all__ = ["Decoder", "DecodeResult", "decode_file", "iter_file"]

_EMPTY_TWEETS = TWEETS.empty_table()
_EMPTY_COMPLIANCE = COMPLIANCE.empty_table()
_EMPTY_REJECTS = REJECTS.empty_table()


@dataclass(frozen=True)
class DecodeResult:
    """What one ``feed``/``finish`` call completed: three Arrow tables."""

    tweets: pa.Table
    compliance: pa.Table
    rejects: pa.Table

    @staticmethod
    def concat(results) -> "DecodeResult":
        """The results' tables concatenated (no results: the full schemas' empty tables,
        whatever projection the results had)."""
        results = list(results)
        if not results:
            return DecodeResult(_EMPTY_TWEETS, _EMPTY_COMPLIANCE, _EMPTY_REJECTS)
        return DecodeResult(pa.concat_tables([r.tweets for r in results]),
                            pa.concat_tables([r.compliance for r in results]),
                            pa.concat_tables([r.rejects for r in results]))


class Decoder:
    """Decode firehose captures (NDJSON of X API v1.1, v2 and Gnip payloads) into Arrow.

    Parameters
    ----------
    batch_size:
        Maximum rows per RecordBatch of the returned tables.
    dedupe:
        Drop tweets whose id was already seen (first wins), across chunks and sources.
    dedupe_window_hours:
        How much tweet time the dedupe table remembers (ids older than this behind the newest
        tweet seen are forgotten; memory stays bounded).
    dedupe_state:
        Bytes from :meth:`dedupe_state` of an earlier run, to resume without duplicates.
    max_line_bytes, max_depth:
        Lines longer than this, or JSON nested deeper, are rejected.
    on_error:
        ``"quarantine"`` (default) puts bad lines into ``rejects`` and goes on; ``"raise"``
        raises :class:`firehose.ParseError` naming source, line, byte offset and field (the
        decoder's counts and position are then no resume point).
    columns:
        The tweet columns to build (names of ``schema.TWEETS``, in the order wanted): the
        ``tweets`` table has just those, and the others are never filled (a projection pushed
        into the core: less copying and unescaping). Default: all. Lines are still validated
        whole, so rejects, dedupe, ``compliance`` and ``stats`` do not depend on it.
    """

    def __init__(self, batch_size: int = 65536, dedupe: bool = True, *,
                 dedupe_window_hours: float = 48.0, dedupe_state: bytes | None = None,
                 max_line_bytes: int = 16 << 20, max_depth: int = 64,
                 on_error: str = "quarantine", columns=None):
        if on_error not in ("quarantine", "raise"):
            raise ValueError("on_error must be 'quarantine' or 'raise'")
        self.batch_size = int(batch_size)
        self.on_error = on_error
        self.dedupe = bool(dedupe)
        self._columns, self._schema_t, self._empty_t = None, TWEETS, _EMPTY_TWEETS
        self._names: list[str] | None = None    # the projection, in the order asked
        index = None
        if columns is not None:
            if isinstance(columns, (str, bytes)):
                raise TypeError("columns must be a list of column names, not a string")
            names = list(columns)
            if not names:
                raise ValueError("columns: name at least one tweet column (or None for all)")
            for name in names:
                if name not in TWEETS.names:
                    raise ValueError(f"columns: no tweet column {name!r} "
                                     f"(the columns: {', '.join(TWEETS.names)})")
            if len(set(names)) != len(names):
                raise ValueError(f"columns: a column named twice in {names}")
            index = sorted(TWEETS.get_field_index(n) for n in names)
            # the core's batches are in schema order; a result is put in the order asked
            self._schema_t = pa.schema([TWEETS.field(i) for i in index])
            self._columns = None if [TWEETS.names[i] for i in index] == names else names
            self._empty_t = pa.schema([TWEETS.field(n) for n in names]).empty_table()
            self._names = names
        self._limits = dict(max_line_bytes=max_line_bytes, max_depth=max_depth)   # (_worker)
        self._eng = _core.Engine(batch_size=self.batch_size, max_line_bytes=max_line_bytes,
                                 max_depth=max_depth, dedupe=dedupe,
                                 window_ms=int(dedupe_window_hours * 3600 * 1000),
                                 columns=index)
        if dedupe_state is not None:
            self._eng.load_dedupe_state(bytes(dedupe_state))
        self._sources: list[str] = []          # dictionary of source_file
        self._srcdict = pa.array([], pa.string())
        self._codes: dict[str, int] = {}
        self._pos: dict[str, tuple[int, int]] = {}   # source -> (next offset, lines so far)
        self._cur: str | None = None
        self._offset = 0                       # offset of the next byte of the current source
        self._carry = bytearray()              # unterminated tail of the current source
        self._carry_off = 0
        self._batches_t: list[pa.RecordBatch] = []
        self._batches_c: list[pa.RecordBatch] = []
        self._rejects: list[dict] = []
        self._more: dict[str, int] = {}        # counts of lines decoded by parallel workers

    # ------------------------------------------------------------------ public API

    @property
    def stats(self) -> dict:
        """Counters: lines, blank, tweets, duplicates, dedupe_late, compliance, rejects, bytes."""
        out = self._eng.stats()
        for k, v in self._more.items():
            out[k] += v
        return out

    @property
    def sources(self) -> list[str]:
        return list(self._sources)

    def dedupe_state(self) -> bytes:
        """The dedupe memory, to pass as ``Decoder(dedupe_state=...)`` when resuming."""
        return self._eng.dedupe_state()

    def dedupe_memory(self) -> tuple[int, int]:
        """(ids remembered, bytes held by the dedupe tables)."""
        return self._eng.dedupe_memory()

    def register_sources(self, names) -> None:
        """Fix the ``source_file`` dictionary in advance (in this order), so the tables of a
        run carry the same dictionary whichever source they came from, and a resumed run
        writes the same bytes as an uninterrupted one."""
        for name in names:
            self._code(os.fspath(name))

    def position(self) -> tuple[str | None, int, int]:
        """``(source, offset, lines)``: where decoding of the current source would restart —
        the first byte of the line not yet finished (its unterminated tail is held in memory)
        and the number of lines finished before it. ``source`` is None between sources."""
        off = self._carry_off if self._carry else self._offset
        return self._cur, off, self._eng.line_no

    @property
    def next_offset(self) -> int:
        """The offset in the current source that the next chunk continues from."""
        return self._offset

    def seek(self, source: str, offset: int, lines: int) -> None:
        """Continue ``source`` at byte ``offset`` as if ``lines`` lines came before it (resume
        from a :meth:`position` taken in an earlier run). Ends the current source first."""
        self._end_source()
        source = os.fspath(source)
        self._code(source)
        self._pos[source] = (int(offset), int(lines))

    def feed(self, chunk, source: str = "<stream>", offset: int | None = None) -> DecodeResult:
        """Decode the complete lines that ``chunk`` finishes.

        ``source`` names the capture (provenance columns); ``offset`` is where the chunk starts
        in that source (default: right after the previous chunk of the same source). Feeding
        another source first ends the current one: its unterminated last line is decoded.

        ``chunk`` is ``bytes`` or any object with the buffer protocol (``bytearray``,
        ``memoryview``, ``mmap``, a NumPy array, ...). A C-contiguous buffer is decoded where it
        lies, without a copy; it is only read during the call and no reference to it is kept
        (the unterminated tail is copied), so the caller may reuse or unmap it afterwards.
        While the call runs (the core releases the GIL) the buffer is exported: a ``bytearray``
        or ``mmap`` cannot be resized or closed meanwhile (a BufferError). Exporters that do
        not honour exports (NumPy's ``resize(refcheck=False)``) must not be changed by another
        thread during the call.
        """
        if type(chunk) is bytes:
            return self._feed(chunk, source, offset)
        try:
            view = memoryview(chunk)
        except TypeError:
            return self._feed(bytes(chunk), source, offset)
        with view:
            if view.nbytes == 0:
                return self._feed(b"", source, offset)
            if not view.c_contiguous:
                return self._feed(view.tobytes(), source, offset)
            with view.cast("B") as data:    # one byte an item, whatever the exporter's format
                return self._feed(data, source, offset)

    def _worker(self) -> "Decoder":
        """A decoder for a worker of a parallel decode (``iter_file(threads=)``): this one's
        batch size, limits and source dictionary codes (shared, not registered name by
        name), no dedupe (this one's memory admits the workers' ids in file order), and the
        ``id`` column built whatever the projection."""
        cols = None
        if self._names is not None:
            cols = self._names + ([] if "id" in self._names else ["id"])
        w = Decoder(self.batch_size, dedupe=False, columns=cols, **self._limits)
        w._sources, w._codes, w._srcdict = list(self._sources), dict(self._codes), self._srcdict
        return w

    def _feed(self, data, source, offset) -> DecodeResult:
        """``feed`` of ``bytes`` or a one-dimensional memoryview of bytes."""
        self._switch(source, offset)
        n = len(data)
        if n == 0:
            return self._result()
        nl = data.find(b"\n") if type(data) is bytes else _core.find_newline(data)
        if nl < 0:
            if not self._carry:
                self._carry_off = self._offset
            self._carry += data
            self._offset += n
            return self._result()
        start = 0
        if self._carry:
            head = bytes(self._carry) + data[:nl + 1]
            self._carry.clear()
            self._decode(head, 0, len(head), self._carry_off, final=False)
            start = nl + 1
        base = self._offset
        stop = self._decode(data, start, n, base + start, final=False)
        if stop < n:
            self._carry_off = base + stop
            self._carry += data[stop:]
        self._offset = base + n
        return self._result()

    def finish(self) -> DecodeResult:
        """End the current source (its last line needs no newline) and flush everything."""
        self._end_source()
        return self._result()

    # ------------------------------------------------------------------ internals

    def _code(self, source: str) -> int:
        code = self._codes.get(source)
        if code is None:
            code = self._codes[source] = len(self._sources)
            self._sources.append(source)
            self._srcdict = pa.array(self._sources, pa.string())
        return code

    def _switch(self, source: str, offset: int | None) -> None:
        source = os.fspath(source)
        if source != self._cur:
            self._end_source()
            self._cur = source
            self._code(source)
            self._offset, self._eng.line_no = self._pos.get(source, (0, 0))
            self._carry_off = self._offset
        if offset is not None and offset != self._offset:
            # a jump within the source: what was carried is a line cut off by the jump
            self._flush_carry()
            self._offset = self._carry_off = int(offset)

    def _flush_carry(self) -> None:
        if self._carry:
            tail = bytes(self._carry)
            self._carry.clear()
            self._decode(tail, 0, len(tail), self._carry_off, final=True)

    def _end_source(self) -> None:
        if self._cur is None:
            return
        self._flush_carry()
        self._pos[self._cur] = (self._offset, self._eng.line_no)
        self._cur = None

    def _decode(self, buf: bytes, start: int, end: int, base: int, *, final: bool) -> int:
        eng = self._eng
        code = self._codes[self._cur]
        pos = start
        while True:
            stop, rejects = eng.decode(buf, pos, end, base + (pos - start), code, final)
            if rejects:
                self._add_rejects(rejects)
            if not eng.batch_full:
                return stop          # done, or an unterminated last line remains
            self._take_batches()
            if stop >= end:
                return stop
            pos = stop

    def _add_rejects(self, rejects) -> None:
        src = self._cur
        for line, off, raw, reason, field, col in rejects:
            if field is None and reason in _PATH_REASONS:
                field = json_path_at(raw, col)
            detail = _core_detail(reason, col, field)
            rec = {"source": src, "line": line, "byte_offset": off, "reason": reason,
                   "field": field, "detail": detail, "raw": raw}
            if self.on_error == "raise":
                raise ParseError(reason, detail, source=src, line=line, byte_offset=off,
                                 field=field)
            self._rejects.append(rec)

    def _take_batches(self) -> None:
        eng = self._eng
        if eng.pending_tweets or eng.batch_full:
            b = eng.take_tweets(self._srcdict)
            if b.num_rows:
                self._batches_t.append(b)
        if eng.pending_compliance or eng.batch_full:
            b = eng.take_compliance(self._srcdict)
            if b.num_rows:
                self._batches_c.append(b)

    def _result(self) -> DecodeResult:
        self._take_batches()
        # every batch of one result shares the latest source dictionary
        tweets = _unify(self._batches_t, self._schema_t, self._srcdict, self._empty_t)
        if self._columns is not None and self._batches_t:
            tweets = tweets.select(self._columns)
        comp = _unify(self._batches_c, COMPLIANCE, self._srcdict, _EMPTY_COMPLIANCE)
        rejects = (pa.Table.from_pylist(self._rejects, schema=REJECTS) if self._rejects
                   else _EMPTY_REJECTS)
        self._batches_t, self._batches_c, self._rejects = [], [], []
        return DecodeResult(tweets, comp, rejects)


# JSON-level rejects found at a column of the line: their field is the JSON path there
_PATH_REASONS = frozenset({"invalid_utf8", "invalid_escape", "lone_surrogate", "truncated",
                           "invalid_json"})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_SCAN_MAX = 1 << 22        # a fault further into a line is reported without its path


def json_path_at(raw: bytes, col: int) -> str | None:
    """The JSON path of the value (or the object, for a fault in a key) at byte ``col`` of a
    line that may be malformed from ``col`` on: ``$.user.name``, ``$.entities.urls[2].url``,
    ``$``; at most 32 levels, then ``...(N levels)``. The walk is the core's
    (``json_path_parts``); ``None`` past the first 4 MiB of a line."""
    if col < 0 or col > _PATH_SCAN_MAX:
        return None
    parts, levels = _core.json_path_parts(raw, col)
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
            continue
        try:
            key = json.loads(b'"' + part + b'"')
        except ValueError:
            key = part.decode("utf-8", "replace")
        out.append(f".{key}" if _IDENT.fullmatch(key) else f"[{json.dumps(key)}]")
    if levels > len(parts):
        out.append(f"...({levels} levels)")
    return "".join(out)


def _core_detail(reason: str, col: int, field: str | None) -> str:
    text = _core._DETAILS.get(reason, reason)
    if reason in ("not_an_object", "missing_id"):
        return text + (f" at {field}" if field else "")
    if reason == "line_too_long":
        return text
    return f"{text} at column {col}"


def _unify(batches, schema, full, empty) -> pa.Table:
    if not batches:
        return empty
    idx = schema.get_field_index("source_file")
    if len(batches) > 1 and idx >= 0:
        # older batches carry a shorter prefix of the same source dictionary: widen them
        fixed = []
        for b in batches:
            col = b.column(idx)
            if len(col.dictionary) != len(full):
                col = pa.DictionaryArray.from_arrays(col.indices, full)
                b = b.set_column(idx, schema.field(idx), col)
            fixed.append(b)
        batches = fixed
    return pa.Table.from_batches(batches, schema=schema)


def iter_file(path, *, decoder: Decoder | None = None, chunk_size: int | None = None,
              source: str | None = None, readahead: int = 2, mmap: bool | None = None,
              threads: int = 1, **kwargs) -> Iterator[DecodeResult]:
    """Stream a capture (plain, .gz or .zst) through a Decoder, yielding a result per chunk.

    Pass ``decoder`` to share dedupe state across files; otherwise a new one is made with
    ``kwargs``. Files and stdin are read ``readahead`` chunks ahead in a thread (0: inline),
    compressed ones decompressed there. On one thread a plain file is read into buffers used
    again and again (``reader.read_into_chunks``; a copy into memory that stays in the cache
    costs less than mapping the file); with ``threads`` > 1 its segments are mapped. ``mmap``
    says it instead: ``True`` maps a plain file (``reader.map_chunks``, no copy, no thread: a
    file truncated, or an I/O error, while it is decoded then kills the process with SIGBUS),
    ``False`` reads it (an ``InputError`` then), ``None`` (the default) as above. The
    source's last line is flushed at the end; the decoder stays usable.

    ``chunk_size``: 4 MiB (``reader.DEFAULT_CHUNK``); 12 MiB with ``threads`` > 1
    (``reader.PARALLEL_SEGMENT``: each segment has costs of its own).
    ``threads`` > 1 decodes segments of at most ``chunk_size`` bytes (cut after a newline;
    for a plain file, smaller where less than ``threads`` segments' worth is left, so that
    the threads finish together: a file under ``chunk_size`` still comes in several) on that
    many worker threads, each taking the next segment as it comes free, and yields a result
    per segment in file order: the same rows, line numbers, dedupe (first wins, by the
    decoder's memory, in file order), stats and errors as one thread would give. A plain
    file is then cut at the size it had when it was opened. See ``firehose._parallel``."""
    dec = _decoder("iter_file", decoder, kwargs)
    name = source if source is not None else os.fspath(path)
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError("iter_file: threads must be a positive int")
    if chunk_size is None:
        chunk_size = PARALLEL_SEGMENT if threads > 1 else DEFAULT_CHUNK
    if operator.index(chunk_size) < 1:
        raise ValueError(f"iter_file: chunk_size must be positive, not {chunk_size!r}")
    if threads > 1:
        from ._parallel import iter_parallel
        yield from iter_parallel(path, dec, name, chunk_size, readahead, mmap is not False,
                                 int(threads))
        return
    chunks = (map_chunks if mmap else read_into_chunks)(path, chunk_size, readahead=readahead)
    for chunk, offset in chunks:
        yield dec.feed(chunk, source=name, offset=offset)
    yield dec.finish()


def _decoder(who: str, decoder: Decoder | None, kwargs: dict) -> Decoder:
    """The decoder given, or one made with ``kwargs`` (settings beside a decoder given would
    be ignored: an error)."""
    if decoder is None:
        return Decoder(**kwargs)
    if kwargs:
        raise TypeError(f"{who}: {', '.join(sorted(kwargs))} would be ignored: the decoder "
                        "given was made with its own settings")
    return decoder


def decode_file(path, *, mmap: bool | None = None, threads: int = 1, **kwargs) -> DecodeResult:
    """Decode a whole capture file into three tables (tweets, compliance, rejects).
    ``mmap`` and ``threads``: as for :func:`iter_file`."""
    dec = _decoder("decode_file", kwargs.pop("decoder", None), kwargs)
    res = DecodeResult.concat(iter_file(path, decoder=dec, mmap=mmap, threads=threads))
    return _WithStats(res.tweets, res.compliance, res.rejects, dec.stats)


@dataclass(frozen=True)
class _WithStats(DecodeResult):
    stats: dict = None
