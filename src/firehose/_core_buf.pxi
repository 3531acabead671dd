# Growable buffers and Arrow column builders. Included by _core.pyx.
#
# Every buffer is plain malloc memory owned by exactly one Buf. Exporting a batch moves the
# pointers into Arrow C data interface arrays that pyarrow imports: no copy, and the memory is
# freed (their release callback) when Arrow lets go of it.

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
    if cap < b.hint:
        cap = b.hint
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

cdef int col_init(Col* c, int kind, const Py_ssize_t* hints=NULL) except -1 nogil:
    """An empty column; hints: the first allocation of each of its nine buffers (col_bufs)."""
    cdef Buf* b[9]
    cdef int i
    memset(c, 0, sizeof(Col))
    c.kind = kind
    if hints != NULL:
        col_bufs(c, b)
        for i in range(9):
            b[i].hint = hints[i]
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

# Columns handed to pyarrow through the Arrow C data interface (one import call per column
# instead of a pyarrow object per buffer, array and child). The builders' buffers are moved
# into the exported arrays, whose release callback frees them.
cdef extern from *:
    """
    #ifndef ARROW_C_DATA_INTERFACE
    #define ARROW_C_DATA_INTERFACE
    struct ArrowSchema;
    struct ArrowArray {
        int64_t length;
        int64_t null_count;
        int64_t offset;
        int64_t n_buffers;
        int64_t n_children;
        const void** buffers;
        struct ArrowArray** children;
        struct ArrowArray* dictionary;
        void (*release)(struct ArrowArray*);
        void* private_data;
    };
    #endif

    /* what an exported array owns: its buffers (malloc memory moved out of a builder), its
       children and dictionary (released with it) */
    typedef struct {
        const void* bufs[3];
        void* owned[3];
        struct ArrowArray* kids[2];
    } fh_xpriv;

    /* zero bytes for empty buffers (a valid offsets buffer [0] too) */
    static const int64_t FH_XZERO[2] = {0, 0};

    static void fh_xrelease(struct ArrowArray* a) {
        fh_xpriv* pv = (fh_xpriv*)a->private_data;
        int64_t i;
        for (i = 0; i < a->n_children; i++) {
            struct ArrowArray* c = a->children[i];
            if (c->release) c->release(c);
            free(c);
        }
        if (a->dictionary) {
            if (a->dictionary->release) a->dictionary->release(a->dictionary);
            free(a->dictionary);
        }
        if (pv) {
            for (i = 0; i < 3; i++) free(pv->owned[i]);
            if (a->children != pv->kids) free(a->children);
            free(pv);
        }
        a->release = NULL;
    }

    /* a = an array of length n with nbuf buffers and nkids children (allocated, zeroed; NULL
       children pointers until set); -1 when out of memory (a is then releasable) */
    static int fh_xinit(struct ArrowArray* a, int64_t n, int64_t nulls, int nbuf, int64_t nkids) {
        fh_xpriv* pv = (fh_xpriv*)calloc(1, sizeof(fh_xpriv));
        int64_t i;
        memset(a, 0, sizeof *a);
        a->release = fh_xrelease;
        if (pv == NULL) return -1;
        a->private_data = pv;
        a->length = n;
        a->null_count = nulls;
        a->n_buffers = nbuf;
        a->buffers = pv->bufs;
        if (nkids > 2) {
            a->children = (struct ArrowArray**)calloc((size_t)nkids, sizeof(struct ArrowArray*));
            if (a->children == NULL) return -1;
        } else {
            a->children = pv->kids;
        }
        for (i = 0; i < nkids; i++) {
            a->children[i] = (struct ArrowArray*)calloc(1, sizeof(struct ArrowArray));
            if (a->children[i] == NULL) return -1;
            a->n_children = i + 1;
        }
        return 0;
    }

    /* buffer k of a: p (moved: a frees it) or, when len is 0, zero bytes; p may be NULL for
       a validity bitmap (no nulls) */
    static void fh_xbuf(struct ArrowArray* a, int k, char* p, Py_ssize_t len, int validity) {
        fh_xpriv* pv = (fh_xpriv*)a->private_data;
        if (validity && p == NULL) {
            pv->bufs[k] = NULL;
        } else if (len == 0 || p == NULL) {
            free(p);
            pv->bufs[k] = FH_XZERO;
        } else {
            pv->bufs[k] = p;
            pv->owned[k] = p;
        }
    }
    """
    struct ArrowArray:
        int64_t length
        int64_t null_count
        int64_t n_children
        ArrowArray** children
        ArrowArray* dictionary
        void* release
    void fh_xrelease(ArrowArray* a) noexcept nogil
    int fh_xinit(ArrowArray* a, int64_t n, int64_t nulls, int nbuf, int64_t nkids) noexcept nogil
    void fh_xbuf(ArrowArray* a, int k, char* p, Py_ssize_t len, int validity) noexcept nogil


cdef inline void xmove(ArrowArray* a, int k, Buf* b, int validity) noexcept nogil:
    """Buffer k of a from builder buffer b (moved; b left empty). A buffer far larger than
    its content (a small batch after a large one: it started at the large one's size hint)
    is shrunk first, so a kept small batch does not hold a large batch's memory."""
    cdef char* p
    if b.data != NULL and b.cap - b.len > (b.len >> 2) + 4096:
        p = <char*>realloc(b.data, b.len if b.len > 0 else 1)
        if p != NULL:
            b.data = p
            b.cap = b.len
    fh_xbuf(a, k, b.data, b.len, validity)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef inline void xnone(ArrowArray* a, int k) noexcept nogil:
    """No validity bitmap (a column or child without nulls)."""
    fh_xbuf(a, k, NULL, 0, 1)


cdef inline void xvalid(ArrowArray* a, Buf* b, Py_ssize_t nulls) noexcept nogil:
    """The validity bitmap: none when there are no nulls."""
    if nulls == 0:
        buf_free(b)
    xmove(a, 0, b, 1)


cdef inline int xleaf(ArrowArray* a, Py_ssize_t n, Py_ssize_t nulls, Buf* valid, Buf* b1,
                      Buf* b2) noexcept nogil:
    """a = an array of n values without children: its validity from ``valid`` (NULL: none),
    then the data buffer b1 and, when not NULL, b2 (a string's offsets and bytes), moved.
    -1 when out of memory (a is releasable)."""
    if fh_xinit(a, n, nulls, 2 if b2 == NULL else 3, 0):
        return -1
    if valid == NULL:
        xnone(a, 0)
    else:
        xvalid(a, valid, nulls)
    xmove(a, 1, b1, 0)
    if b2 != NULL:
        xmove(a, 2, b2, 0)
    return 0


cdef inline int xlist(ArrowArray* a, Py_ssize_t n, Buf* offs) noexcept nogil:
    """a = a list array of n lists, its offsets from ``offs`` (moved), its one child to be
    filled (a.children[0]). -1 when out of memory (a is releasable)."""
    if fh_xinit(a, n, 0, 2, 1):
        return -1
    xnone(a, 0)
    xmove(a, 1, offs, 0)
    return 0


cdef inline void col_bufs(Col* c, Buf** b) noexcept nogil:
    """The column's nine buffers."""
    b[0] = &c.valid
    b[1] = &c.vals
    b[2] = &c.offs
    b[3] = &c.data
    b[4] = &c.offs2
    b[5] = &c.valid2
    b[6] = &c.offs3
    b[7] = &c.data3
    b[8] = &c.valid3


cdef int col_export_c(Col* c, ArrowArray* a, object dictionary) except -1:
    """Column c as an Arrow C data interface array: fill the (zeroed) a, moving the builder's
    buffers, and reset the builder. a is releasable whatever happens."""
    cdef int kind = c.kind, bad = 0
    cdef Py_ssize_t n = c.n
    cdef ArrowArray* ch
    cdef Buf* b[9]
    cdef Py_ssize_t hints[9]
    cdef int i
    # the next batch's buffers are sized by this one's, with 1/8 to spare: a steady stream
    # then fills them without growing them (every doubling copied the bytes so far)
    col_bufs(c, b)
    for i in range(9):
        hints[i] = b[i].len + (b[i].len >> 3)
    if kind == K_I64 or kind == K_TS or kind == K_BOOL:
        bad = xleaf(a, n, c.nulls, &c.valid, &c.vals, NULL)
    elif kind == K_STR:
        bad = xleaf(a, n, c.nulls, &c.valid, &c.offs, &c.data)
    elif kind == K_DICT:
        bad = xleaf(a, n, 0, NULL, &c.vals, NULL)
        if not bad:
            a.dictionary = <ArrowArray*>calloc(1, sizeof(ArrowArray))
            if a.dictionary == NULL:
                bad = 1
            else:
                dictionary._export_to_c(<uintptr_t>a.dictionary)
    elif kind == K_LSTR or kind == K_LI64:
        bad = xlist(a, n, &c.offs)
        if not bad:
            if kind == K_LSTR:
                bad = xleaf(a.children[0], c.n2, 0, NULL, &c.offs2, &c.data)
            else:
                bad = xleaf(a.children[0], c.n2, 0, NULL, &c.vals, NULL)
    elif kind == K_COORD:
        bad = fh_xinit(a, n, c.nulls, 1, 2)
        if not bad:
            xvalid(a, &c.valid, c.nulls)
            bad = xleaf(a.children[0], n, 0, NULL, &c.vals, NULL)
        if not bad:
            bad = xleaf(a.children[1], n, 0, NULL, &c.data, NULL)
    elif kind == K_RULES:
        bad = xlist(a, n, &c.offs)
        if not bad:
            ch = a.children[0]
            bad = fh_xinit(ch, c.n2, 0, 1, 2)
            if not bad:
                xnone(ch, 0)
                bad = xleaf(ch.children[0], c.n2, c.nulls2, &c.valid2, &c.offs2, &c.data)
            if not bad:
                bad = xleaf(ch.children[1], c.n2, c.nulls3, &c.valid3, &c.offs3, &c.data3)
    else:
        raise AssertionError("unknown column kind %d" % kind)
    col_free(c)
    col_init(c, kind, hints)
    if bad:
        raise MemoryError("firehose core: out of memory exporting a batch")
    return 0


cdef void cols_reset(Col* cols, int ncols) noexcept:
    """Every builder emptied (a batch that cannot be exported is dropped whole, so the
    columns stay aligned; after a projected export, the columns not exported). The buffers'
    size hints are kept (an exported column's were just set by col_export_c)."""
    cdef int i, k, kind
    cdef Buf* b[9]
    cdef Py_ssize_t hints[9]
    for i in range(ncols):
        kind = cols[i].kind
        col_bufs(&cols[i], b)
        for k in range(9):
            hints[k] = b[k].hint
        col_free(&cols[i])
        col_init(&cols[i], kind, hints)


cdef object batch_export(Col* cols, int ncols, object schema, object dicts, object which=None):
    """The columns as one pyarrow RecordBatch of ``schema`` (dicts[i]: column i's dictionary
    or None), through the C data interface, one import per column; the builders are reset.
    ``which``: the indices of the columns to export, ascending (default all; the batch's
    schema is then those fields of ``schema``); the others are emptied. Column 0 counts the
    rows.

    A column per import, not the batch as one struct: pyarrow keeps an imported struct alive
    as a unit, so a kept column (a projection, the ids) would hold every column's memory.
    What pyarrow's constructors checked is checked here first: equal lengths, dictionary
    indices within their dictionary (a ValueError; the batch is dropped)."""
    cdef ArrowArray arr
    cdef int i, k
    cdef Py_ssize_t n = cols[0].n, j, top
    cdef const int32_t* idx
    cdef int32_t bad
    cols_idx = list(range(ncols)) if which is None else list(which)
    for i in cols_idx:
        if cols[i].n != n:
            cols_reset(cols, ncols)
            raise ValueError("firehose core: columns of unequal length in a batch")
        if cols[i].kind == K_DICT:
            top = len(dicts[i])
            idx = <const int32_t*>cols[i].vals.data
            for j in range(n):
                if idx[j] < 0 or idx[j] >= top:
                    bad = idx[j]                     # read before the builders are freed
                    cols_reset(cols, ncols)
                    raise ValueError(f"firehose core: dictionary index {bad} out of range "
                                     f"for {schema.field(i).name} ({top} values)")
    fields = [schema.field(i) for i in cols_idx]
    arrays = []
    k = 0
    memset(&arr, 0, sizeof(arr))
    try:
        while k < len(cols_idx):
            i = cols_idx[k]
            memset(&arr, 0, sizeof(arr))
            col_export_c(&cols[i], &arr, dicts[i])
            arrays.append(pa.Array._import_from_c(<uintptr_t>&arr, fields[k].type))
            k += 1
    finally:
        if arr.release != NULL:
            fh_xrelease(&arr)
        if k < len(cols_idx) or which is not None:
            cols_reset(cols, ncols)         # (the rest of a failed batch; the unexported)
    if which is not None:
        schema = pa.schema(fields, metadata=schema.metadata)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
