# Exact, first-wins dedupe of tweet ids with memory bounded by tweet time. Included by _core.pyx.
#
# Snowflake ids carry their creation time, so the same id always falls in the same time bucket:
# one open-addressing table per bucket of window/4, and whole buckets are dropped once they are
# more than a window behind the newest bucket seen. A check costs one table probe sequence.
# Tables hold bare 8-byte keys at a load kept in [0.5, 0.7] once past their initial size, so a
# remembered id costs at most 16 bytes. Pre-snowflake ids (< 2^35) share one unpruned table.

cdef int64_t SNOWFLAKE_EPOCH = 1288834974657
cdef int64_t SNOWFLAKE_MIN = 1 << 35
cdef int KEEP_BUCKETS = 4           # buckets bmax-4 .. bmax stay
cdef Py_ssize_t TABLE_MIN = 1024


cdef inline uint64_t mix64(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= 0xff51afd7ed558ccdULL
    k ^= k >> 33
    k *= 0xc4ceb9fe1a85ec53ULL
    k ^= k >> 33
    return k


cdef extern from *:
    """
    /* Lemire's fast range reduction: any capacity, not only powers of two */
    static inline Py_ssize_t fh_slot_of(uint64_t h, Py_ssize_t cap) {
        return (Py_ssize_t)(((unsigned __int128)h * (uint64_t)cap) >> 64);
    }
    """
    Py_ssize_t slot_of "fh_slot_of"(uint64_t h, Py_ssize_t cap) noexcept nogil


cdef int table_init(IdTable* tb, int64_t bucket, Py_ssize_t cap) except -1 nogil:
    tb.keys = <int64_t*>calloc(cap, 8)
    if tb.keys == NULL:
        with gil:
            raise MemoryError("firehose core: out of memory for the dedupe table")
    tb.cap = cap
    tb.n = 0
    tb.bucket = bucket
    tb.has_zero = 0
    return 0


cdef void table_free(IdTable* tb) noexcept nogil:
    free(tb.keys)
    tb.keys = NULL
    tb.cap = 0
    tb.n = 0
    tb.has_zero = 0


cdef int table_grow(IdTable* tb) except -1 nogil:
    cdef Py_ssize_t newcap = (tb.cap * 7) // 5 + 1      # 0.7 full -> 0.5 full
    cdef int64_t* old = tb.keys
    cdef Py_ssize_t oldcap = tb.cap, i, j
    cdef int64_t k
    tb.keys = <int64_t*>calloc(newcap, 8)
    if tb.keys == NULL:
        tb.keys = old
        with gil:
            raise MemoryError("firehose core: out of memory growing the dedupe table")
    tb.cap = newcap
    for i in range(oldcap):
        k = old[i]
        if k != 0:
            j = slot_of(mix64(<uint64_t>k), newcap)
            while tb.keys[j] != 0:
                j += 1
                if j == newcap:
                    j = 0
            tb.keys[j] = k
    free(old)
    return 0


cdef int table_add(IdTable* tb, int64_t key) except -1 nogil:
    """1 if key was new (and is now remembered), 0 if it was already there."""
    cdef Py_ssize_t j
    cdef int64_t k
    if key == 0:
        if tb.has_zero:
            return 0
        tb.has_zero = 1
        return 1
    j = slot_of(mix64(<uint64_t>key), tb.cap)
    while True:
        k = tb.keys[j]
        if k == key:
            return 0
        if k == 0:
            break
        j += 1
        if j == tb.cap:
            j = 0
    tb.keys[j] = key
    tb.n += 1
    if tb.n * 10 > tb.cap * 7:
        table_grow(tb)
    return 1


cdef IdTable* bucket_table(State* st, int64_t b) except? NULL nogil:
    """The table of bucket b (made if needed), or NULL if b is already forgotten."""
    cdef int i, j
    cdef Py_ssize_t cap
    if b > st.bmax:
        st.bmax = b
        j = 0
        for i in range(st.ngens):
            if st.gens[i].bucket < b - KEEP_BUCKETS:
                table_free(&st.gens[i])
            else:
                st.gens[j] = st.gens[i]
                j += 1
        st.ngens = j
    if b < st.bmax - KEEP_BUCKETS:
        return NULL
    cap = TABLE_MIN
    for i in range(st.ngens):
        if st.gens[i].bucket == b:
            return &st.gens[i]
        # a new bucket will likely hold about as many ids as the busiest live one: start it
        # near that size instead of growing it 1.4x at a time from the minimum
        if st.gens[i].n * 2 > cap:
            cap = st.gens[i].n * 2
    table_init(&st.gens[st.ngens], b, cap)
    st.ngens += 1
    return &st.gens[st.ngens - 1]


cdef int dedupe_admit(State* st, int64_t tid) except -1 nogil:
    """1 if the tweet should be emitted (first sight, or too late to know), 0 if a duplicate."""
    cdef IdTable* tb
    if not st.dedupe:
        return 1
    if tid < SNOWFLAKE_MIN:
        tb = &st.legacy
    else:
        tb = bucket_table(st, ((tid >> 22) + SNOWFLAKE_EPOCH) // st.bucket_ms)
        if tb == NULL:
            st.n_late += 1
            return 1
    if table_add(tb, tid):
        return 1
    st.n_dups += 1
    return 0
