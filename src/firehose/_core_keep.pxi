# Keeping some rows of a table: the parallel decode's dedupe (firehose._parallel) drops the
# rows of ids an earlier segment delivered. Arrow's filter kernel did it at ~115 us a segment
# of ~2,100 tweets (10 columns), and its first call in a process loads Arrow's compute
# functions (~30 ms). Here the kept rows are copied run by run (a duplicate is rare: runs are
# long) into new buffers, a column's layout at a time; a type not handled here, or an array
# not starting at offset 0, goes to Arrow's filter.


cdef Py_ssize_t keep_runs(const uint8_t* keep, Py_ssize_t n, Py_ssize_t* runs) noexcept nogil:
    """The runs of kept rows, as (start, end) pairs in ``runs``; returns how many."""
    cdef Py_ssize_t i = 0, s, k = 0
    while i < n:
        while i < n and not keep[i]:
            i += 1
        if i >= n:
            break
        s = i
        while i < n and keep[i]:
            i += 1
        runs[2 * k] = s
        runs[2 * k + 1] = i
        k += 1
    return k


cdef Py_ssize_t keep_bits(const uint8_t* src, uint8_t* dst, const Py_ssize_t* runs,
                          Py_ssize_t nruns) noexcept nogil:
    """The bits of the runs' rows packed into dst (zeroed by the caller); returns how many
    of them are set."""
    cdef Py_ssize_t r, i, j = 0, ones = 0
    for r in range(nruns):
        for i in range(runs[2 * r], runs[2 * r + 1]):
            if (src[i >> 3] >> (i & 7)) & 1:
                dst[j >> 3] |= <uint8_t>(1 << (j & 7))
                ones += 1
            j += 1
    return ones


cdef void keep_fixed(const char* src, char* dst, Py_ssize_t width, const Py_ssize_t* runs,
                     Py_ssize_t nruns) noexcept nogil:
    cdef Py_ssize_t r, s, e, j = 0
    for r in range(nruns):
        s = runs[2 * r]
        e = runs[2 * r + 1]
        memcpy(dst + j * width, src + s * width, (e - s) * width)
        j += e - s


cdef void keep_offsets(const int32_t* offs, int32_t* out, const Py_ssize_t* runs,
                       Py_ssize_t nruns, Py_ssize_t* spans) noexcept nogil:
    """The offsets of the runs' rows, from 0 (``out``: one more than the rows kept), and the
    (start, end) of each run's values in ``spans``."""
    cdef Py_ssize_t r, i, s, e, j = 0
    cdef int32_t at = 0, base
    out[0] = 0
    for r in range(nruns):
        s = runs[2 * r]
        e = runs[2 * r + 1]
        base = offs[s]
        for i in range(s, e):
            j += 1
            out[j] = at + (offs[i + 1] - base)
        at += offs[e] - base
        spans[2 * r] = base
        spans[2 * r + 1] = offs[e]


cdef inline uintptr_t keep_addr(buf):
    return <uintptr_t>buf.address


#: how keep_rows copies an array, by Arrow type id: 1 dictionary, 2 bits (bool), 3 fixed width,
#: 4 struct, 5 string or binary (int32 offsets), 6 list (int32 offsets); other types: Arrow
_KEEP_KINDS = {pa.lib.Type_DICTIONARY: 1, pa.lib.Type_BOOL: 2, pa.lib.Type_STRUCT: 4,
               pa.lib.Type_STRING: 5, pa.lib.Type_BINARY: 5, pa.lib.Type_LIST: 6}
for _name in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
              "HALF_FLOAT", "FLOAT", "DOUBLE", "DATE32", "DATE64", "TIMESTAMP", "TIME32",
              "TIME64", "DURATION"):
    _KEEP_KINDS[getattr(pa.lib, "Type_" + _name)] = 3


def keep_rows(arr, const uint8_t[::1] keep, Py_ssize_t kept):
    """``arr`` (a pyarrow Array of ``len(keep)`` rows) with the rows where ``keep[i]`` is 1,
    ``kept`` of them: ``arr.filter(keep)`` (firehose._parallel's dedupe). ``kept`` must be
    the number of non-zero ``keep`` entries (checked: the buffers are sized by it)."""
    cdef Py_ssize_t n = len(arr), nruns, nvals, ones, r, count = 0, i
    cdef Py_ssize_t* runs
    cdef Py_ssize_t* spans
    cdef uint8_t[::1] ck
    cdef int kind
    if keep.shape[0] != n:
        raise ValueError("keep_rows: keep and the array differ in length")
    with nogil:
        for i in range(n):
            count += keep[i] != 0
    if count != kept:
        raise ValueError(f"keep_rows: keep marks {count} rows, not kept={kept}")
    if kept == n:
        return arr
    t = arr.type
    kind = _KEEP_KINDS.get(t.id, 0) if arr.offset == 0 else 0
    if kind == 0:
        return arr.filter(pa.array(np.asarray(keep).view(np.bool_)))
    if kind == 1:
        return pa.DictionaryArray.from_arrays(keep_rows(arr.indices, keep, kept),
                                              arr.dictionary, ordered=t.ordered)
    runs = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    spans = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    if runs == NULL or spans == NULL:
        free(runs)
        free(spans)
        raise MemoryError()
    try:
        nruns = keep_runs(&keep[0], n, runs)
        bufs = arr.buffers()
        valid = None
        nulls = 0
        if arr.null_count:
            valid = pa.allocate_buffer((kept + 7) // 8)
            memset(<void*>keep_addr(valid), 0, valid.size)
            ones = keep_bits(<const uint8_t*>keep_addr(bufs[0]), <uint8_t*>keep_addr(valid), runs,
                             nruns)
            nulls = kept - ones
        if kind == 2:
            vals = pa.allocate_buffer((kept + 7) // 8)
            memset(<void*>keep_addr(vals), 0, vals.size)
            keep_bits(<const uint8_t*>keep_addr(bufs[1]), <uint8_t*>keep_addr(vals), runs, nruns)
            return pa.Array.from_buffers(t, kept, [valid, vals], null_count=nulls)
        if kind == 3:
            vals = pa.allocate_buffer(kept * (t.bit_width // 8))
            keep_fixed(<const char*>keep_addr(bufs[1]), <char*>keep_addr(vals), t.bit_width // 8,
                       runs, nruns)
            return pa.Array.from_buffers(t, kept, [valid, vals], null_count=nulls)
        if kind == 4:
            kids = [keep_rows(arr.field(i), keep, kept) for i in range(t.num_fields)]
            return pa.Array.from_buffers(t, kept, [valid], null_count=nulls, children=kids)
        # strings and lists: int32 offsets, then the values of the kept runs
        offs = pa.allocate_buffer((kept + 1) * 4)
        keep_offsets(<const int32_t*>keep_addr(bufs[1]), <int32_t*>keep_addr(offs), runs, nruns, spans)
        nvals = (<const int32_t*>keep_addr(offs))[kept]
        if kind == 6:
            child = arr.values
            ckeep = np.zeros(len(child), np.uint8)
            ck = ckeep
            for r in range(nruns):
                if spans[2 * r + 1] > spans[2 * r]:
                    memset(&ck[spans[2 * r]], 1, spans[2 * r + 1] - spans[2 * r])
            return pa.Array.from_buffers(t, kept, [valid, offs], null_count=nulls,
                                         children=[keep_rows(child, ckeep, nvals)])
        data = pa.allocate_buffer(nvals)
        if nvals:
            keep_fixed(<const char*>keep_addr(bufs[2]), <char*>keep_addr(data), 1, spans, nruns)
        return pa.Array.from_buffers(t, kept, [valid, offs, data], null_count=nulls)
    finally:
        free(runs)
        free(spans)
