# cython: language_level=3
"""firehose._core: the only compiled part of firehose. Private: use firehose.Decoder.

It handles bytes only: frames lines, validates UTF-8 and JSON into a tape, reads the projected
fields of the three dialects (v1.1, v2, Gnip activities) into column buffers, dedupes tweet ids
and hands the buffers to Arrow without copying. All of it runs with the GIL released.
"""
from libc.stdint cimport int64_t, uint64_t, uint32_t, int32_t, uint8_t, uintptr_t
from libc.stdlib cimport malloc, calloc, realloc, free, strtod, qsort
from libc.string cimport memcpy, memmove, memcmp, memset, memchr, strlen

cdef extern from "<string.h>" nogil:
    void* memmem(const void* haystack, size_t hl, const void* needle, size_t nl)

import struct as _struct

import numpy as np
import pyarrow as pa

from . import schema as _schema

include "_core_buf.pxi"
include "_core_keys.pxi"
include "_core_json.pxi"
include "_core_values.pxi"
include "_core_dedupe.pxi"
include "_core_emit.pxi"
include "_core_match.pxi"
include "_core_partition.pxi"
include "_core_keep.pxi"
include "_core_entitle.pxi"


key_table_init(KEY_NAMES)

#: reject reason names by code (Err enum order)
REASONS = ("ok", "line_too_long", "invalid_utf8", "invalid_json", "truncated", "invalid_escape",
           "lone_surrogate", "too_deep", "not_an_object", "missing_id")
_DETAILS = {
    "line_too_long": "line is longer than max_line_bytes",
    "invalid_utf8": "invalid UTF-8",
    "invalid_json": "invalid JSON",
    "truncated": "input ends inside a JSON value (cut-off line)",
    "invalid_escape": "invalid backslash escape in a string",
    "lone_surrogate": "\\u escape of a lone UTF-16 surrogate",
    "too_deep": "arrays/objects nested deeper than max_depth",
    "not_an_object": "message is not a JSON object",
    "missing_id": "no usable id (a non-negative integer, as digits, that fits int64)",
}

_TWEET_KINDS = {
    "int64": K_I64, "timestamp[ms, tz=UTC]": K_TS, "bool": K_BOOL, "string": K_STR,
    "dictionary<values=string, indices=int32, ordered=0>": K_DICT,
    "list<item: string>": K_LSTR, "list<item: int64>": K_LI64,
}


cdef int kind_for(object typ) except -1:
    s = str(typ)
    if s in _TWEET_KINDS:
        return _TWEET_KINDS[s]
    if typ == _schema.COORD_TYPE:
        return K_COORD
    if typ == pa.list_(_schema.RULE_TYPE):
        return K_RULES
    raise TypeError(f"no column builder for {typ}")


assert len(_schema.TWEETS) == T_NCOLS, "schema.TWEETS and the core disagree"
assert len(_schema.COMPLIANCE) == C_NCOLS, "schema.COMPLIANCE and the core disagree"
assert tuple(_schema.COMPLIANCE_KINDS) == tuple(k.decode() for k in
                                                [KIND_NAMES[i] for i in range(K_NKINDS)])
assert tuple(_schema.REJECT_REASONS) == REASONS[1:]

_DIALECT_DICT = pa.array(_schema.DIALECTS, pa.string())
_KIND_DICT = pa.array(_schema.COMPLIANCE_KINDS, pa.string())


cdef int reject(State* st, Py_ssize_t ls, Py_ssize_t le, int reason, Py_ssize_t err_pos,
                const char* field) except -1 nogil:
    cdef RejectRec r
    r.line = st.line_no
    r.byte_offset = st.line_off
    r.start = ls
    r.length = le - ls
    r.err_pos = err_pos
    r.reason = reason
    r.field = field
    st.n_rejects += 1
    return buf_put(&st.rejects, &r, sizeof(RejectRec))


cdef enum:
    KEEP_NODES = 1 << 18          # tape nodes kept between lines (5 MiB); a bigger tape is freed
    KEEP_BYTES = 8 << 20          # per-line record buffers kept between lines


cdef inline void drop_line_buffers(State* st) noexcept nogil:
    """Free what one huge line (say 16 MB of tiny objects) grew, so that it does not stay
    allocated for the decoder's life; the next line that needs it grows it again."""
    if st.tape.cap > KEEP_NODES:
        free(st.tape.nodes)
        st.tape.nodes = NULL
        st.tape.cap = 0
        st.tape.len = 0
    if st.msgs.cap > KEEP_BYTES:
        buf_free(&st.msgs)
    if st.lookups.cap > KEEP_BYTES:
        buf_free(&st.lookups)
    if st.scratch.cap > KEEP_BYTES:
        buf_free(&st.scratch)
    if st.scratch2.cap > KEEP_BYTES:
        buf_free(&st.scratch2)


cdef inline void count_line(State* st, int64_t offset, Py_ssize_t nbytes) noexcept nogil:
    """A line (with its newline) of ``nbytes`` at ``offset`` of the source begins: counted."""
    st.line_no += 1
    st.line_off = offset
    st.n_lines += 1
    st.n_bytes += nbytes
    st.bytes_since_flush += nbytes


cdef int classify_and_emit(State* st, Py_ssize_t ls, Py_ssize_t le) except -1 nogil:
    """The line s[ls:le], read into the tape: its messages classified and emitted, or the line
    rejected with the reason and field."""
    cdef int r
    st.reject_field = NULL
    r = split_and_classify(st)
    if r:
        return reject(st, ls, le, r, 0, st.reject_field)
    return emit_all(st)


cdef int process_line(State* st, const unsigned char* s, Py_ssize_t ls, Py_ssize_t le) except -1 nogil:
    """A line the fast scan did not take whole (run_lines): cut at its newline, checked for
    length, blanks, UTF-8 and JSON (each fault named), then classified."""
    cdef const unsigned char* line = s + ls
    cdef Py_ssize_t n = le - ls, k
    cdef int r
    if n > st.max_line_bytes:
        return reject(st, ls, le, E_LONG, 0, NULL)
    if n > 0 and line[n - 1] == 0x0D:
        n -= 1
    k = 0
    while k < n and (line[k] == 0x20 or line[k] == 0x09 or line[k] == 0x0D):
        k += 1
    if k == n:
        st.n_blank += 1
        return 0
    r = parse_line(&st.tape, line, n)       # (checks the UTF-8 too)
    if r:
        return reject(st, ls, le, r, st.tape.err_pos, NULL)
    return classify_and_emit(st, ls, le)


cdef int process_parsed(State* st, const unsigned char* s, Py_ssize_t ls,
                        Py_ssize_t le) except -1 nogil:
    """process_line for a line the fast scan has already read from its start to the newline at
    le (run_lines): the tape it made is the one parse_line would make of the line."""
    cdef Py_ssize_t n = le - ls
    if n > 0 and s[le - 1] == 0x0D:
        n -= 1
    tape_begin(&st.tape, s + ls, n)
    st.tape.pos = n
    return classify_and_emit(st, ls, le)


cdef Py_ssize_t run_lines(State* st, const unsigned char* s, Py_ssize_t start, Py_ssize_t end,
                          int64_t base_offset, bint final) except -1 nogil:
    """Process whole lines of s[start:end]; returns where it stopped (a batch filled up, or the
    start of an incomplete last line when not ``final``).

    A line is first read by the fast scan from its start into the rest of the buffer (its
    whitespace stops at a newline): when the value and the blanks after it end at a newline,
    that is the line (no separate search for its end, which took a pass over every byte).
    Otherwise (a fault, a blank or over-long line, the last line without a newline) the line
    is cut at its newline and processed as before."""
    cdef Py_ssize_t p = start, le, nxt, r, lim
    cdef const unsigned char* nl
    cdef fh_ps ps
    ps.max_depth = st.tape.max_depth
    ps.ky_id = KY_id
    ps.ktab = st.tape.ktab
    ps.kp = <fh_kp*>st.tape.kp
    while p < end:
        if st.cols[0].n >= st.batch_size or st.ccols[0].n >= st.batch_size \
                or st.bytes_since_flush > (1 << 30):
            break
        drop_line_buffers(st)
        lim = end - p
        if lim > st.max_line_bytes + 1:
            lim = st.max_line_bytes + 1
        ps.s = s + p
        ps.n = lim
        ps.nodes = <fh_node*>st.tape.nodes
        ps.cap = st.tape.cap
        ps.oom = 0
        r = fh_parse_open(&ps)
        st.tape.nodes = <Node*>ps.nodes
        st.tape.cap = ps.cap
        st.tape.len = ps.len
        if ps.oom:
            with gil:
                raise MemoryError("firehose core: out of memory growing the JSON tape")
        if 0 <= r < lim and s[p + r] == 0x0A:
            le = p + r
            nxt = le + 1
            count_line(st, p - start + base_offset, nxt - p)
            process_parsed(st, s, p, le)
            p = nxt
            continue
        nl = <const unsigned char*>memchr(s + p, 0x0A, end - p)
        if nl == NULL:
            if not final:
                break
            le = end
            nxt = end
        else:
            le = nl - s
            nxt = le + 1
        count_line(st, p - start + base_offset, nxt - p)
        process_line(st, s, p, le)
        p = nxt
    return p


cdef class Engine:
    """The decoder state: column builders, the tape, the dedupe tables and the counters."""

    def __cinit__(self, Py_ssize_t batch_size=65536, Py_ssize_t max_line_bytes=16 << 20,
                  int max_depth=64, bint dedupe=True, int64_t window_ms=48 * 3600 * 1000,
                  columns=None):
        cdef int i
        memset(&self.st, 0, sizeof(State))
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_line_bytes < 1 or max_line_bytes > 0x7FFFFFFF:
            raise ValueError("max_line_bytes must be in [1, 2**31)")
        # the validating scan recurses (~180 bytes of C stack a level): 4096 levels stay far
        # inside even a 1 MiB thread stack (100000 overflowed the stack at ~47,000)
        if max_depth < 1 or max_depth > 4096:
            raise ValueError("max_depth must be in [1, 4096]")
        if window_ms < 4:
            raise ValueError("the dedupe window must be at least 4 ms")
        # the tweet columns built and exported (indices into schema.TWEETS; default all): the
        # others are not filled at all (the id always is: it counts the rows)
        self._which = None if columns is None else sorted(set(int(i) for i in columns))
        self.st.want = ~(<uint64_t>0)
        if self._which is not None:
            if not self._which:
                raise ValueError("columns: at least one tweet column (or None for all)")
            if any(i < 0 or i >= T_NCOLS for i in self._which):
                raise ValueError("columns: a tweet column index out of range")
            self.st.want = 1
            for i in self._which:
                self.st.want |= (<uint64_t>1) << i
        # (every column: no table, the scan that keeps every numbered key)
        full = self.st.want & col_bits(0, T_NCOLS - 1) == col_bits(0, T_NCOLS - 1)
        ktab_build(self.st.kt, ~(<uint64_t>0) if full else self.st.want)
        self.st.tape.ktab = NULL if full else self.st.kt
        if not full:
            # the projection's key memory (the scan of all columns has no key table to use it)
            self.st.tape.kp = fh_kp_new()
            if self.st.tape.kp == NULL:
                raise MemoryError()
        self.st.batch_size = batch_size
        self.st.max_line_bytes = max_line_bytes
        self.st.tape.max_depth = max_depth
        # members()' tables: 64 objects' key -> node slots, for the tape's whole life
        buf_reserve(&self.st.tape.mem, 64 * KY_COUNT * sizeof(uint32_t))
        self.st.dedupe = dedupe
        self.st.bucket_ms = window_ms // 4
        dedupe_init(&self.st)
        for i in range(T_NCOLS):
            col_init(&self.st.cols[i], kind_for(_schema.TWEETS.field(i).type))
        for i in range(C_NCOLS):
            col_init(&self.st.ccols[i], kind_for(_schema.COMPLIANCE.field(i).type))

    def __dealloc__(self):
        cdef int i
        for i in range(T_NCOLS):
            col_free(&self.st.cols[i])
        for i in range(C_NCOLS):
            col_free(&self.st.ccols[i])
        free(self.st.tape.nodes)
        free(self.st.tape.kp)
        buf_free(&self.st.tape.mem)
        buf_free(&self.st.tape.keybuf)
        buf_free(&self.st.scratch)
        buf_free(&self.st.scratch2)
        buf_free(&self.st.msgs)
        buf_free(&self.st.lookups)
        buf_free(&self.st.rejects)
        dedupe_free(&self.st)

    def _key_table(self):
        """For tests: the key table of this engine's projection (fh_ps, ktab_build)."""
        return bytes(self.st.kt[:CX_N * 256])

    @property
    def line_no(self):
        return self.st.line_no

    @line_no.setter
    def line_no(self, int64_t v):
        self.st.line_no = v

    def decode(self, const unsigned char[::1] buf, Py_ssize_t start, Py_ssize_t end,
               int64_t base_offset, int32_t source_code, bint final):
        """Decode the lines of buf[start:end] (buf[start] begins a line at ``base_offset`` of
        source ``source_code``; lines are numbered on from ``line_no``).

        Returns ``(stop, rejects)``: where decoding stopped (== end unless a batch filled up or,
        when not ``final``, at the start of an unterminated last line) and the reject records
        ``(line, byte_offset, raw, reason, field, column)`` of the lines handled."""
        cdef Py_ssize_t stop
        cdef const unsigned char* s
        cdef RejectRec* rr
        cdef Py_ssize_t i, nrej
        if start < 0 or end > buf.shape[0] or start > end:
            raise ValueError("decode: bad range")
        if end == start:
            return start, []
        s = &buf[0]
        self.st.source_code = source_code
        self.st.rejects.len = 0
        with nogil:
            stop = run_lines(&self.st, s, start, end, base_offset, final)
        rr = <RejectRec*>self.st.rejects.data
        nrej = self.st.rejects.len // sizeof(RejectRec)
        out = []
        for i in range(nrej):
            out.append((rr[i].line, rr[i].byte_offset,
                        bytes(buf[rr[i].start:rr[i].start + rr[i].length]),
                        REASONS[rr[i].reason],
                        None if rr[i].field == NULL else rr[i].field.decode(),
                        rr[i].err_pos))
        self.st.rejects.len = 0
        return stop, out

    @property
    def batch_full(self):
        """True when decode() stopped because a batch is full: take the batches, go on."""
        return (self.st.cols[0].n >= self.st.batch_size
                or self.st.ccols[0].n >= self.st.batch_size
                or self.st.bytes_since_flush > (1 << 30))

    @property
    def pending_tweets(self):
        return self.st.cols[0].n

    @property
    def pending_compliance(self):
        return self.st.ccols[0].n

    def take_tweets(self, sources):
        """The buffered tweet rows as a RecordBatch of schema.TWEETS (builders are reset)."""
        srcdict = sources if isinstance(sources, pa.Array) else pa.array(sources, pa.string())
        dicts = [_DIALECT_DICT if i == T_DIALECT else srcdict for i in range(T_NCOLS)]
        if self.st.ccols[0].n == 0:
            self.st.bytes_since_flush = 0
        return batch_export(self.st.cols, T_NCOLS, _schema.TWEETS, dicts, self._which)

    def take_compliance(self, sources):
        srcdict = sources if isinstance(sources, pa.Array) else pa.array(sources, pa.string())
        dicts = [_KIND_DICT if i == C_KIND else _DIALECT_DICT if i == C_DIALECT else srcdict
                 for i in range(C_NCOLS)]
        if self.st.cols[0].n == 0:
            self.st.bytes_since_flush = 0
        return batch_export(self.st.ccols, C_NCOLS, _schema.COMPLIANCE, dicts)

    def stats(self):
        return {
            "lines": self.st.n_lines, "blank": self.st.n_blank, "tweets": self.st.n_tweets,
            "duplicates": self.st.n_dups, "dedupe_late": self.st.n_late,
            "compliance": self.st.n_compliance, "rejects": self.st.n_rejects,
            "bytes": self.st.n_bytes,
        }

    # ------------------------------------------------------------ dedupe state

    def dedupe_state(self):
        """The dedupe memory as bytes (format: _core_dedupe.pxi)."""
        return dedupe_save(&self.st)

    def load_dedupe_state(self, bytes data):
        """Replace the dedupe memory with a saved one (from dedupe_state())."""
        dedupe_load(&self.st, data)

    def admit_ids(self, const int64_t[::1] ids, uint8_t[::1] out=None):
        """Run tweet ids through the dedupe alone, as the decoder runs its tweets' ids, without
        the GIL: ``out[i]`` (when given) is 1 if ids[i] is admitted (first sight, or too late to
        know), 0 if it is a duplicate. Returns how many were admitted; ``stats()`` counts the
        duplicates and late ids. For tests and benchmarks of the dedupe."""
        cdef Py_ssize_t i, n = ids.shape[0], admitted = 0
        cdef int r
        if out is not None and out.shape[0] < n:
            raise ValueError("admit_ids: out is shorter than ids")
        with nogil:
            if out is None:
                for i in range(n):
                    admitted += dedupe_admit(&self.st, ids[i])
            else:
                for i in range(n):
                    r = dedupe_admit(&self.st, ids[i])
                    out[i] = <uint8_t>r
                    admitted += r
        return admitted

    def dedupe_memory(self):
        """(remembered ids, bytes held by the tables)."""
        return dedupe_memory(&self.st)


def find_newline(const unsigned char[::1] buf):
    """The index of the first newline byte in ``buf``, or -1 (``bytes.find(b"\\n")`` for any
    contiguous buffer: ``Decoder.feed`` takes memoryviews without copying them)."""
    cdef const unsigned char* p
    if buf.shape[0] == 0:
        return -1
    p = <const unsigned char*>memchr(&buf[0], 0x0A, buf.shape[0])
    return -1 if p == NULL else p - &buf[0]
