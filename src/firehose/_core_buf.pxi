# Growable buffers and Arrow column builders. Included by _core.pyx.
#
# Every buffer is plain malloc memory owned by exactly one Buf. Exporting a column moves the
# pointers into OwnedBuffer objects (read-only buffer protocol), which pyarrow wraps with
# pa.py_buffer: no copy, and the memory is freed when Arrow lets go of it.

cdef enum:
    K_I64 = 1
    K_TS
    K_BOOL
    K_STR
    K_DICT
    K_LSTR
    K_LI64
    K_COORD
    K_RULES


cdef int buf_grow(Buf* b, Py_ssize_t need) except -1 nogil:
    cdef Py_ssize_t cap = b.cap * 2
    cdef char* p
    if cap < need:
        cap = need
    if cap < 256:
        cap = 256
    p = <char*>realloc(b.data, cap)
    if p == NULL:
        with gil:
            raise MemoryError("firehose core: out of memory growing a buffer to %d bytes" % cap)
    b.data = p
    b.cap = cap
    return 0


cdef inline int buf_reserve(Buf* b, Py_ssize_t extra) except -1 nogil:
    if b.len + extra > b.cap:
        return buf_grow(b, b.len + extra)
    return 0


cdef inline int buf_put(Buf* b, const void* p, Py_ssize_t n) except -1 nogil:
    if b.len + n > b.cap:
        buf_grow(b, b.len + n)
    memcpy(b.data + b.len, p, n)
    b.len += n
    return 0


cdef inline int buf_i64(Buf* b, int64_t v) except -1 nogil:
    if b.len + 8 > b.cap:
        buf_grow(b, b.len + 8)
    memcpy(b.data + b.len, &v, 8)
    b.len += 8
    return 0


cdef inline int buf_i32(Buf* b, int32_t v) except -1 nogil:
    if b.len + 4 > b.cap:
        buf_grow(b, b.len + 4)
    memcpy(b.data + b.len, &v, 4)
    b.len += 4
    return 0


cdef inline int buf_f64(Buf* b, double v) except -1 nogil:
    if b.len + 8 > b.cap:
        buf_grow(b, b.len + 8)
    memcpy(b.data + b.len, &v, 8)
    b.len += 8
    return 0


cdef inline void buf_free(Buf* b) noexcept nogil:
    free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef inline int bit_put(Buf* b, Py_ssize_t i, bint v) except -1 nogil:
    """Append bit ``i`` (bits are appended in order) to a little-endian bitmap."""
    cdef Py_ssize_t byte = i >> 3
    if byte >= b.len:
        if b.len + 1 > b.cap:
            buf_grow(b, b.len + 1)
        b.data[b.len] = 0
        b.len += 1
    if v:
        b.data[byte] = <char>(<unsigned char>b.data[byte] | (1 << (i & 7)))
    return 0


cdef inline int32_t off32(Py_ssize_t n) except? -1 nogil:
    if n > 0x7FFFFFFF:
        with gil:
            raise OverflowError("firehose core: a string column of one batch exceeds 2 GiB")
    return <int32_t>n


# ---------------------------------------------------------------- column builders

cdef int col_init(Col* c, int kind) except -1 nogil:
    memset(c, 0, sizeof(Col))
    c.kind = kind
    if kind == K_STR or kind == K_LSTR or kind == K_LI64 or kind == K_RULES:
        buf_i32(&c.offs, 0)
    if kind == K_LSTR or kind == K_RULES:
        buf_i32(&c.offs2, 0)
    if kind == K_RULES:
        buf_i32(&c.offs3, 0)
    return 0


cdef void col_free(Col* c) noexcept nogil:
    buf_free(&c.valid)
    buf_free(&c.vals)
    buf_free(&c.offs)
    buf_free(&c.data)
    buf_free(&c.offs2)
    buf_free(&c.valid2)
    buf_free(&c.offs3)
    buf_free(&c.data3)
    buf_free(&c.valid3)


cdef inline int col_null(Col* c) except -1 nogil:
    """Append a null to a nullable scalar column (I64, TS, BOOL, STR, COORD)."""
    bit_put(&c.valid, c.n, 0)
    if c.kind == K_STR:
        buf_i32(&c.offs, off32(c.data.len))
    elif c.kind == K_BOOL:
        bit_put(&c.vals, c.n, 0)
    elif c.kind == K_COORD:
        buf_f64(&c.vals, 0.0)
        buf_f64(&c.data, 0.0)
    else:
        buf_i64(&c.vals, 0)
    c.n += 1
    c.nulls += 1
    return 0


cdef inline int col_i64(Col* c, int64_t v) except -1 nogil:
    bit_put(&c.valid, c.n, 1)
    buf_i64(&c.vals, v)
    c.n += 1
    return 0


cdef inline int col_i64_or_null(Col* c, int64_t v) except -1 nogil:
    """Ids: a negative value means absent."""
    if v < 0:
        return col_null(c)
    return col_i64(c, v)


cdef inline int col_bool(Col* c, bint v) except -1 nogil:
    bit_put(&c.valid, c.n, 1)
    bit_put(&c.vals, c.n, v)
    c.n += 1
    return 0


cdef inline int col_code(Col* c, int32_t v) except -1 nogil:
    buf_i32(&c.vals, v)
    c.n += 1
    return 0


cdef inline int col_coord(Col* c, double lon, double lat) except -1 nogil:
    bit_put(&c.valid, c.n, 1)
    buf_f64(&c.vals, lon)
    buf_f64(&c.data, lat)
    c.n += 1
    return 0


cdef inline int col_str_close(Col* c) except -1 nogil:
    """The bytes of the value were appended to c.data; close the row."""
    bit_put(&c.valid, c.n, 1)
    buf_i32(&c.offs, off32(c.data.len))
    c.n += 1
    return 0


cdef inline int col_str(Col* c, const char* p, Py_ssize_t n) except -1 nogil:
    buf_put(&c.data, p, n)
    return col_str_close(c)


cdef inline int col_item_close(Col* c) except -1 nogil:
    """List of strings: the item's bytes were appended to c.data."""
    buf_i32(&c.offs2, off32(c.data.len))
    c.n2 += 1
    return 0


cdef inline int col_item_i64(Col* c, int64_t v) except -1 nogil:
    buf_i64(&c.vals, v)
    c.n2 += 1
    return 0


cdef inline int col_list_close(Col* c) except -1 nogil:
    buf_i32(&c.offs, off32(c.n2))
    c.n += 1
    return 0


# ---------------------------------------------------------------- export to Arrow (GIL held)

cdef class OwnedBuffer:
    """malloc memory handed over by a builder, exported read-only through the buffer protocol."""
    cdef char* data
    cdef Py_ssize_t size

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass

    def __dealloc__(self):
        free(self.data)
        self.data = NULL


cdef object take(Buf* b):
    """Move a Buf's memory into a pyarrow Buffer (no copy); the Buf is left empty."""
    cdef OwnedBuffer ob
    if b.len == 0:
        buf_free(b)
        return _EMPTY
    ob = OwnedBuffer.__new__(OwnedBuffer)
    ob.data = b.data
    ob.size = b.len
    b.data = NULL
    b.len = 0
    b.cap = 0
    return pa.py_buffer(ob)


cdef object take_valid(Buf* b, Py_ssize_t nulls):
    if nulls == 0:
        buf_free(b)
        return None
    return take(b)


cdef object col_export(Col* c, object typ, object dictionary):
    """Turn a finished column into a pyarrow Array and reset the builder."""
    cdef int kind = c.kind
    cdef Py_ssize_t n = c.n
    cdef object arr, child, a2, a3, valid
    if kind == K_I64 or kind == K_TS or kind == K_BOOL:
        valid = take_valid(&c.valid, c.nulls)
        arr = pa.Array.from_buffers(typ, n, [valid, take(&c.vals)], c.nulls)
    elif kind == K_STR:
        valid = take_valid(&c.valid, c.nulls)
        arr = pa.Array.from_buffers(typ, n, [valid, take(&c.offs), take(&c.data)], c.nulls)
    elif kind == K_DICT:
        arr = pa.DictionaryArray.from_arrays(
            pa.Array.from_buffers(pa.int32(), n, [None, take(&c.vals)], 0), dictionary)
    elif kind == K_LSTR:
        child = pa.Array.from_buffers(pa.string(), c.n2, [None, take(&c.offs2), take(&c.data)], 0)
        arr = pa.Array.from_buffers(typ, n, [None, take(&c.offs)], 0, children=[child])
    elif kind == K_LI64:
        child = pa.Array.from_buffers(pa.int64(), c.n2, [None, take(&c.vals)], 0)
        arr = pa.Array.from_buffers(typ, n, [None, take(&c.offs)], 0, children=[child])
    elif kind == K_COORD:
        a2 = pa.Array.from_buffers(pa.float64(), n, [None, take(&c.vals)], 0)
        a3 = pa.Array.from_buffers(pa.float64(), n, [None, take(&c.data)], 0)
        valid = take_valid(&c.valid, c.nulls)
        arr = pa.Array.from_buffers(typ, n, [valid], c.nulls, children=[a2, a3])
    elif kind == K_RULES:
        a2 = pa.Array.from_buffers(pa.string(), c.n2,
                                   [take_valid(&c.valid2, c.nulls2), take(&c.offs2), take(&c.data)],
                                   c.nulls2)
        a3 = pa.Array.from_buffers(pa.string(), c.n2,
                                   [take_valid(&c.valid3, c.nulls3), take(&c.offs3), take(&c.data3)],
                                   c.nulls3)
        child = pa.Array.from_buffers(typ.value_type, c.n2, [None], 0, children=[a2, a3])
        arr = pa.Array.from_buffers(typ, n, [None, take(&c.offs)], 0, children=[child])
    else:
        raise AssertionError("unknown column kind %d" % kind)
    col_free(c)
    col_init(c, kind)
    return arr
