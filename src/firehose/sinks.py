"""Sinks: where each client's rows (and the run's audit, rejects and compliance) are written.

A replay writes every output as numbered *parts*. Rows accumulate in a temporary file
(``.part-000003.parquet.tmp``); at a commit the file is closed, fsynced and renamed to
``part-000003.parquet`` and the directory fsynced, so a file without the ``.tmp`` suffix is
always complete. The pipeline writes its checkpoint only after every sink has committed
(:mod:`firehose.checkpoint`); after a crash the parts numbered above the checkpoint and every
``.tmp`` are removed and re-made, byte for byte.

Kinds: ``parquet`` (zstd by default; one row group per batch), ``arrow`` (Arrow IPC stream),
``ndjson`` (one JSON object per row: the original payload with ``matching_rules`` for seats
entitled to raw objects, the delivered columns otherwise; plain, gzip or zstd) and ``callback``
(a Python callable, for embedding; called as rows are produced, before the commit).

Output bytes depend only on the rows: the same rows give the same file (gzip without a time
stamp, no writer clocks), so runs are reproducible.
"""
from __future__ import annotations

import base64
import copy
import datetime as _dt
import gzip
import io
import json
import os
import re
import sys
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .errors import SinkError

__all__ = ["Sink", "PartSink", "CallbackSink", "fsync_dir", "atomic_write",
           "PART_RE", "EXTENSIONS"]

try:    # ISA-L's deflate at its default level: ~10x zlib level 6's speed, files ~25% larger
    from isal.igzip import GzipFile as _GzipWriter
    _GZIP_LEVEL = 2
except ImportError:  # pragma: no cover - no isal wheel for this platform
    _GzipWriter, _GZIP_LEVEL = gzip.GzipFile, 6

EXTENSIONS = {"parquet": ".parquet", "arrow": ".arrows", "ndjson": ".ndjson"}
#: top-level string columns written with Parquet dictionary pages (few distinct values)
DICTIONARY_COLUMNS = frozenset({"lang", "source", "dialect", "source_file", "place_country_code",
                                "kind", "reason", "outcome", "client", "policy", "plan",
                                "countries", "field"})
PART_RE = re.compile(r"^part-(\d{6,})\.")


def stores_schema(schema: pa.Schema) -> bool:
    """Whether an audit table's Parquet keeps its Arrow schema: not when it has dictionary
    columns (the denial labels), so that they read back as the plain strings they hold and
    group across parts whose dictionaries differ."""
    return not any(pa.types.is_dictionary(f.type) for f in schema)


def fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_all(directory: str, paths=()) -> None:
    """Make every write under ``directory`` durable: one ``syncfs`` of its file system (Linux)
    instead of an fsync per file; elsewhere each path is fsynced and each directory too."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            if _syncfs is not None and _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    dirs = set()
    for p in paths:
        try:
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        except OSError as e:
            raise SinkError(f"{p}: fsync failed: {e.strerror or e}") from None
        dirs.add(os.path.dirname(p))
    for d in sorted(dirs | {directory}):
        fsync_dir(d)


def _load_syncfs():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or all of ``data``."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "." + os.path.basename(path) + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink(tmp)
        raise SinkError(f"{path}: write failed: {e.strerror or e}") from None
    fsync_dir(d)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Sink:
    """The interface: ``write`` rows of the current part, ``commit`` it, ``abort`` on error."""

    def write(self, table: pa.Table, seq: int, raw: list[bytes] | None = None) -> None:
        raise NotImplementedError

    def commit(self) -> str | None:
        return None

    def abort(self) -> None:
        pass


class CallbackSink(Sink):
    """Hands each batch's table to ``fn(table)`` (embedding). Nothing to commit: the callable
    owns durability, so a resumed run may call it again for batches after the last checkpoint."""

    def __init__(self, fn: Callable[[pa.Table], object]):
        self.fn = fn

    def write(self, table, seq, raw=None):
        if table.num_rows:
            self.fn(table)


class PartSink(Sink):
    """Numbered part files in one directory, each written under a temporary name and renamed
    into place at :meth:`commit`. Nothing is created for a part without rows."""

    #: rows buffered before they are written as one row group / record batch / text block
    ROW_GROUP_ROWS = 65536

    def __init__(self, directory: str, kind: str = "parquet", compression: str | None = None,
                 schema: pa.Schema | None = None, row_group_rows: int | None = None,
                 store_schema: bool = True):
        if kind not in EXTENSIONS:
            raise SinkError(f"{directory}: unknown sink kind {kind!r}")
        self.directory = directory
        self.kind = kind
        self.compression = _default_compression(kind, compression)
        self.schema = schema
        # Parquet: False leaves out the Arrow schema, so readers see a dictionary column as
        # the plain strings it holds (written dictionary-encoded all the same)
        self.store_schema = store_schema
        self._seq: int | None = None
        self._tmp: str | None = None
        self._file = None
        self._writer = None
        self.row_group_rows = row_group_rows or self.ROW_GROUP_ROWS
        self._buf: list[pa.Table] = []
        self._buf_raw: list[bytes] = []
        self._buf_rows = 0
        self._made_dir = False

    def _final_name(self, seq: int) -> str:
        ext = EXTENSIONS[self.kind]
        if self.kind == "ndjson" and self.compression in ("gzip", "zstd"):
            ext += ".gz" if self.compression == "gzip" else ".zst"
        return os.path.join(self.directory, f"part-{seq:06d}{ext}")

    def _open(self, seq: int) -> None:
        """Start part ``seq``. Its temporary file is created when rows are first written out
        (a flush, on whichever thread closes the part): creating ~200 files per commit on the
        main thread stalled it behind the previous commit's syncfs."""
        self._seq = seq
        self._tmp = os.path.join(self.directory,
                                 "." + os.path.basename(self._final_name(seq)) + ".tmp")

    def _open_file(self) -> None:
        if not self._made_dir:
            os.makedirs(self.directory, exist_ok=True)
            self._made_dir = True
        self._file = open(self._tmp, "wb")

    def _open_writer(self, schema: pa.Schema | None) -> None:
        """The format writer, made at the first flush (the schema comes with the first rows)."""
        schema = self.schema or schema
        if self.kind == "parquet":
            comp = None if self.compression == "none" else self.compression
            # dictionary pages only where values repeat a lot: trying them on every column
            # (pyarrow's default) costs ~40% of the encoding for no smaller file after zstd
            self._writer = pq.ParquetWriter(
                self._file, schema, compression=comp, store_schema=self.store_schema,
                use_dictionary=[f.name for f in schema if f.name in DICTIONARY_COLUMNS
                                or pa.types.is_dictionary(f.type)])
        elif self.kind == "arrow":
            comp = None if self.compression == "none" else self.compression
            self._writer = ipc.new_stream(self._file, schema,
                                          options=ipc.IpcWriteOptions(compression=comp))
        elif self.compression == "gzip":
            self._writer = _GzipWriter(filename="", mode="wb", fileobj=self._file, mtime=0,
                                       compresslevel=_GZIP_LEVEL)
        elif self.compression == "zstd":
            import zstandard
            self._writer = zstandard.ZstdCompressor(level=3).stream_writer(self._file,
                                                                         closefd=False)
        else:
            self._writer = self._file

    def write(self, table, seq: int, raw: list[bytes] | None = None) -> None:
        """Append ``table`` (and for ndjson, ``raw`` payload lines instead of the columns) to
        part ``seq``. Rows of one part must come with one ``seq``. ``table`` may also be a
        deferred table: an object with ``num_rows`` and a ``table()`` method, materialised
        only when the rows are written (at a flush, possibly on another thread)."""
        if table.num_rows == 0:
            return
        try:
            if self._seq is None:
                self._open(seq)
            elif seq != self._seq:
                raise SinkError(f"{self.directory}: part {self._seq} not committed before {seq}")
            # small writes are buffered: a Parquet row group costs ~3 ms of fixed work per
            # write, so one per client per batch would dominate a 100-seat replay
            self._buf.append(table)
            if raw is not None:
                self._buf_raw.append(b"".join(raw))
            self._buf_rows += table.num_rows
            if self._buf_rows >= self.row_group_rows:
                self._flush()
        except SinkError:
            raise
        except (OSError, pa.ArrowException) as e:
            self.abort()
            raise SinkError(f"{self._tmp or self.directory}: write failed: "
                            f"{getattr(e, 'strerror', None) or e}") from None

    def _flush(self) -> None:
        if not self._buf:
            return
        buf, raw = self._buf, self._buf_raw
        self._buf, self._buf_raw, self._buf_rows = [], [], 0
        as_raw = self.kind == "ndjson" and bool(raw)
        if not as_raw:
            buf = [t if isinstance(t, pa.Table) else t.table() for t in buf]
        if self._file is None:
            self._open_file()
        if self._writer is None:
            self._open_writer(None if as_raw else buf[0].schema)
        if self.kind == "ndjson":
            self._writer.write(b"".join(raw) if as_raw else
                               b"".join(ndjson_lines(t) for t in buf))
            return
        table = buf[0] if len(buf) == 1 else pa.concat_tables(buf).unify_dictionaries()
        table = table.combine_chunks()
        if self.kind == "parquet":
            self._writer.write_table(table, row_group_size=1 << 30)
        else:
            self._writer.write_table(table)

    def detach(self) -> "PartSink | None":
        """Take the open part off this sink (file, writer and buffered rows) so that it can be
        closed elsewhere (:meth:`close_part` on the returned object, e.g. on another thread)
        while this sink goes on with the next part. None when no part is open."""
        if self._seq is None:
            return None
        part = copy.copy(self)
        self._writer = self._file = self._tmp = self._seq = None
        self._buf, self._buf_raw, self._buf_rows = [], [], 0
        return part

    def commit(self) -> str | None:
        """Close the current part, fsync it and rename it into place; its final path."""
        staged = self.close_part(fsync=True)
        if staged is None:
            return None
        self.publish(staged)
        fsync_dir(self.directory)
        return staged[1]

    def close_part(self, fsync: bool = True) -> tuple[str, str] | None:
        """First half of a commit: finish and close the part under its temporary name (and
        fsync it, unless the caller makes many files durable at once with :func:`sync_all`).
        Returns ``(temporary, final)`` paths, or None when the part has no rows."""
        if self._seq is None:
            return None
        tmp, final = self._tmp, self._final_name(self._seq)
        try:
            self._flush()
            if self._file is None:              # (every started part has rows)
                self._open_file()
            if self._writer is not None and self._writer is not self._file:
                self._writer.close()
            self._file.flush()
            if fsync:
                os.fsync(self._file.fileno())
            self._file.close()
        except (OSError, pa.ArrowException) as e:
            self.abort()
            raise SinkError(f"{final}: commit failed: {getattr(e, 'strerror', None) or e}") \
                from None
        self._writer = self._file = self._tmp = self._seq = None
        return tmp, final

    def publish(self, staged: tuple[str, str]) -> str:
        """Second half: rename the closed part into place."""
        tmp, final = staged
        try:
            os.replace(tmp, final)
        except OSError as e:
            _unlink(tmp)
            raise SinkError(f"{final}: commit failed: {e.strerror or e}") from None
        return final

    def abort(self) -> None:
        """Drop the part being written (its temporary file is removed)."""
        try:
            if self._writer is not None and self._writer is not self._file:
                self._writer.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        try:
            if self._file is not None:
                self._file.close()
        except OSError:
            pass
        if self._tmp:
            _unlink(self._tmp)
        self._writer = self._file = self._tmp = self._seq = None
        self._buf, self._buf_raw, self._buf_rows = [], [], 0


def _default_compression(kind: str, compression: str | None) -> str:
    if compression:
        return compression
    return {"parquet": "zstd", "arrow": "none", "ndjson": "none"}[kind]



# ------------------------------------------------------------------------------ NDJSON

def _json_default(v):
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat(timespec="milliseconds") + "Z"
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode()
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def ndjson_lines(table: pa.Table) -> bytes:
    """The rows of ``table`` as NDJSON (ids as JSON integers, times as ISO 8601 UTC with
    milliseconds, lists as arrays, structs as objects), built column-wise with Arrow compute
    kernels; types it does not cover go through :func:`json.dumps` row by row."""
    if table.num_rows == 0:
        return b""
    table = table.combine_chunks()
    try:
        parts = []
        for i, name in enumerate(table.column_names):
            key = json.dumps(name, ensure_ascii=False) + ":"
            parts.append(pa.scalar(("{" if i == 0 else ",") + key))
            parts.append(_encode(table.column(i).chunk(0) if table.column(i).num_chunks
                                 else pa.array([], table.schema.field(i).type)))
        parts.append(pa.scalar("}\n"))
        rows = pc.binary_join_element_wise(*parts, "")
        if isinstance(rows, pa.ChunkedArray):
            rows = rows.combine_chunks()
        offs = np.frombuffer(rows.buffers()[1], np.int32)
        lo, hi = int(offs[rows.offset]), int(offs[rows.offset + len(rows)])
        return rows.buffers()[2].slice(lo, hi - lo).to_pybytes()
    except _Unsupported:
        return _ndjson_rows(table)


class _Unsupported(Exception):
    pass


_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
            ("\b", "\\b"), ("\f", "\\f")]
_CONTROL = "[\x00-\x1f]"
_NEEDS_ESCAPE = '[\\\\"\x00-\x1f]'


def _encode(arr: pa.Array) -> pa.Array:
    """One JSON text per element (``null`` for nulls), as a string array without nulls."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _encode(arr.cast(t.value_type))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = arr
        # most columns (names, codes, urls) need no escape at all: one scan instead of eight
        # (control characters are among those: without any, no second scan for them)
        if pc.any(pc.match_substring_regex(s, _NEEDS_ESCAPE)).as_py():
            for a, b in _ESCAPES:
                s = pc.replace_substring(s, a, b)
            if pc.any(pc.match_substring_regex(s, _CONTROL)).as_py():
                for code in range(0x20):
                    ch = chr(code)
                    if ch not in "\n\r\t\b\f":
                        s = pc.replace_substring(s, ch, f"\\u{code:04x}")
        out = pc.binary_join_element_wise('"', s, '"', "")
    elif pa.types.is_integer(t):
        out = pc.cast(arr, pa.string())
    elif pa.types.is_floating(t):
        bad = pc.or_(pc.is_nan(arr), pc.is_inf(arr))
        out = pc.if_else(bad, pa.scalar(None, pa.string()), pc.cast(arr, pa.string()))
    elif pa.types.is_boolean(t):
        out = pc.if_else(arr, "true", "false")
    elif pa.types.is_timestamp(t):
        if t.tz is not None and t.tz.upper() not in ("UTC", "+00:00", "Z"):
            raise _Unsupported
        ms = pc.cast(arr, pa.timestamp("ms", tz=t.tz))
        out = pc.binary_join_element_wise('"', pc.strftime(ms, format="%Y-%m-%dT%H:%M:%S"),
                                          'Z"', "")
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        values = _encode(arr.flatten())
        lengths = pc.fill_null(pc.list_value_length(arr), 0)
        offs = pa.array(np.concatenate([[0], np.cumsum(lengths.to_numpy(zero_copy_only=False))])
                        .astype(np.int32))
        joined = pc.binary_join(pa.ListArray.from_arrays(offs, values), ",")
        out = pc.binary_join_element_wise("[", joined, "]", "")
    elif pa.types.is_struct(t):
        parts = []
        for i in range(t.num_fields):
            key = json.dumps(t.field(i).name, ensure_ascii=False) + ":"
            parts.append(("{" if i == 0 else ",") + key)
            parts.append(_encode(pc.struct_field(arr, [i])))
        parts.append("}")
        out = pc.binary_join_element_wise(*parts, "") if t.num_fields else \
            pa.array(["{}"] * len(arr), pa.string())
    elif pa.types.is_null(t):
        out = pa.array([None] * len(arr), pa.string())
    else:
        raise _Unsupported
    if arr.null_count:
        out = pc.if_else(pc.is_null(arr), pa.scalar(None, pa.string()), out)
    return pc.fill_null(out, "null")


def _ndjson_rows(table: pa.Table) -> bytes:
    buf = io.StringIO()
    for row in table.to_pylist():
        buf.write(json.dumps(row, ensure_ascii=False, separators=(",", ":"),
                             default=_json_default))
        buf.write("\n")
    return buf.getvalue().encode()


_GEO_KEYS = ("coordinates", "geo", "place", "places")
_EXACT_KEYS = ("coordinates", "geo")
#: a geo member whose value is not null (an object or an array), however its key is spelt:
#: each letter plain or as a ``\u00XX`` escape (the core reads ``"pl\u0061ce"`` as ``place``,
#: so this check must too), hex digits in either case. One text for both engines: Python's
#: ``re`` line by line, Arrow's RE2 in bulk (``_GEO_VALUE_RE2``)
_GEO_VALUE_RE2 = '"(?i:' + "|".join(
    "".join(f"(?:{ch}|\\\\u00{ord(ch):02x})" for ch in k)
    for k in ("coordinates", "geo", "places", "place")) + r')"\s*:\s*[\[{]'
_GEO_VALUE = re.compile(_GEO_VALUE_RE2.encode())
_PLACE_KEYS = ("place", "places")


def _scrub(obj, keys) -> None:
    if isinstance(obj, dict):
        for k in keys:
            if k in obj:
                obj[k] = None
        for v in obj.values():
            _scrub(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            _scrub(v, keys)


def _finite(text: str):
    """JSON numbers beyond a double (``1e400``) become null: re-emitted as ``Infinity`` they
    would make the line invalid JSON."""
    v = float(text)
    return v if v - v == 0 else None


def raw_with_rules(line: bytes, rules: list[dict], scrub_geo: bool, *, exact_geo: bool = True,
                   place: bool = True) -> bytes:
    """The original payload re-emitted with this delivery's ``matching_rules`` (any upstream
    ``matching_rules`` are replaced: they belong to another customer). Geo is nulled at any
    depth (retweeted and quoted copies, v2 ``includes``): everything under ``scrub_geo``;
    ``coordinates``/``geo`` for a seat without exact geo; ``place``/``places`` for a seat
    without place."""
    keys = _GEO_KEYS if scrub_geo else (() if exact_geo else _EXACT_KEYS) + \
        (() if place else _PLACE_KEYS)
    if (not keys or not _GEO_VALUE.search(line)) and b'"matching_rules"' not in line:
        # nothing to remove (geo keys, if any, are null) and no upstream rules: the original
        # bytes, untouched, with our rules appended as the last member
        body = line.rstrip()
        if body.endswith(b"}"):
            head = body[:-1].rstrip()
            sep = b"" if head.endswith(b"{") else b","
            return (head + sep + b'"matching_rules":'
                    + json.dumps(rules, ensure_ascii=False, separators=(",", ":")).encode()
                    + b"}\n")
    obj = json.loads(line, parse_float=_finite)
    if keys:
        _scrub(obj, keys)
    if isinstance(obj, dict) and isinstance(obj.get("gnip"), dict):
        obj["gnip"].pop("matching_rules", None)
    obj["matching_rules"] = rules
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


_WS = np.frombuffer(b" \t\r\n", np.uint8)


def raw_lines_with_rules(buf: bytes, starts: np.ndarray, rules: pa.Array, scrub: np.ndarray, *,
                         exact_geo: bool = True, place: bool = True) -> bytes:
    """:func:`raw_with_rules` for many lines of one buffer at once, column-wise: the lines
    starting at ``starts`` (byte positions in ``buf``, each ending at a newline or the end),
    ``rules`` their ``matching_rules`` (a list<struct<id, tag>> array) and ``scrub`` whether
    each one's geo goes. Lines with nothing to remove get the rules appended to their original
    bytes in bulk; the others (a geo value to remove, upstream rules) go through
    :func:`raw_with_rules`. Returns the NDJSON text, one line per start, in order."""
    n = len(starts)
    if n == 0:
        return b""
    a = np.frombuffer(buf, np.uint8)
    # distinct lines (a v2 envelope carries several tweets on one line), in buffer order
    u, inv = np.unique(np.asarray(starts, np.int64), return_inverse=True)
    find = buf.find
    ends = np.array([find(b"\n", i) for i in u.tolist()], np.int64)
    ends[ends < 0] = len(a)
    # the closing brace and the whitespace around it
    # (a pass per byte of padding, at most 64: a line padded more goes the exact way)
    close = ends - 1
    for _ in range(64):
        ws = (close >= u) & np.isin(a[np.maximum(close, 0)], _WS)
        if not ws.any():
            break
        close -= ws
    ok = (close > u) & (a[np.maximum(close, 0)] == 0x7D)
    head = close.copy()
    for _ in range(64):
        ws = (head > u) & np.isin(a[np.maximum(head - 1, 0)], _WS)
        if not ws.any():
            break
        head -= ws
    before = a[np.maximum(head - 1, 0)]
    ok &= (head > u) & (before != 0x7B) & ~np.isin(before, _WS)   # "{}" would need no comma
    ok = ok[inv]
    take = pa.array(2 * inv)

    def pieces(hi) -> pa.Array:
        """Zero-copy views of buf[u[i]:hi[i]], one per row."""
        m = len(u)
        offs = np.empty(2 * m + 1, np.int64)
        offs[0:2 * m:2], offs[1:2 * m:2] = u, np.maximum(hi, u)
        offs[2 * m] = len(a)
        arr = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 2 * m,
                                               [None, pa.py_buffer(offs), pa.py_buffer(buf)])
        return arr.take(take)

    lines = pieces(ends)
    keyed = scrub if (exact_geo and place) else np.ones(n, bool)
    # (RE2 finds a literal faster than match_substring's search here)
    slow = ~ok | pc.match_substring_regex(lines, '"matching_rules"').to_numpy(
        zero_copy_only=False)
    if keyed.any():
        geo = pc.match_substring_regex(lines, _GEO_VALUE_RE2).to_numpy(zero_copy_only=False)
        slow |= keyed & geo
    # json.dumps per row: the column-wise encoder's fixed cost (~30 compute calls) is more
    # than a seat's few hundred rows take this way
    lst = rules.to_pylist()
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    rules_json = pa.array([dumps(r).encode() for r in lst], pa.large_binary())
    lb = pa.large_binary()
    out = pc.binary_join_element_wise(pieces(head), pa.scalar(b',"matching_rules":', lb),
                                      rules_json, pa.scalar(b"}\n", lb), pa.scalar(b"", lb))
    if slow.any():
        sub = [None] * n
        for i in np.flatnonzero(slow).tolist():
            sub[i] = raw_with_rules(bytes(buf[starts[i]:ends[inv[i]]]), lst[i], bool(scrub[i]),
                                    exact_geo=exact_geo, place=place)
        out = pc.if_else(pa.array(slow), pa.array(sub, pa.large_binary()), out)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    offs = np.frombuffer(out.buffers()[1], np.int64)
    lo, hi = int(offs[out.offset]), int(offs[out.offset + len(out)])
    return out.buffers()[2].slice(lo, hi - lo).to_pybytes()
