# Exact, first-wins dedupe of tweet ids with memory bounded by tweet time. Included by _core.pyx.
#
# Snowflake ids carry their creation time, so the same id always falls in the same time bucket
# of window/4; whole buckets are dropped once they are more than a window behind the newest
# bucket seen (ids of such buckets are "late": admitted and counted, not remembered).
#
# Layout, for time locality: ids arrive nearly in creation order and re-sends are of recent ids,
# so a bucket is not one big hash table (every check a cache miss once it outgrows the cache, and
# every growth a rehash of all of it into fresh memory) but a sorted run of small ones, "leaves",
# each holding the ids of a contiguous id (= time) range: the few leaves near the stream's
# present stay in cache. The leaves of the last few ids the slow path saw (DEDUPE_HOT, two
# compares each) are tried first; otherwise the bucket's leaves are searched from the newest end
# (galloping, then binary).
#   * a leaf is an open-addressing table (Lemire reduction, linear probing four slots a step),
#     at most 128 KiB (malloc serves it from its heap); it is
#       - narrow: 4-byte keys id - base + 1, for the ids base .. base + 2^32 - 2 only (~1.02 s of
#         tweet time; multiply-high hash, SSE2 compares), up to NLEAF_MAX slots; or
#       - wide: bare 8-byte keys (mix64 hash), any id of its range, up to LEAF_MAX slots;
#   * leaves are made narrow. An id in a narrow leaf's range but outside its keys' span moves
#     the span (empty leaf), makes the leaf wide (fewer than WIDEN_N ids: a sparse stream keeps
#     8-byte keys) or cuts the range where the span ends: a new leaf just above the largest id
#     (the stream moved on: the usual way a leaf is sealed), or below the span;
#   * a new narrow leaf after a sealed one is sized for the ids per span of the fullest of the
#     last three leaves at load ~0.6, if the bucket stays under 16 bytes an id with 64 KiB to
#     spare (bucket_affords: each bucket counts its ids and bytes), else it starts small;
#   * a narrow leaf doubles at load 0.7 (so >= 0.35: <= 11.4 bytes an id); a wide leaf grows
#     1.4x (load >= 0.5: 16 bytes an id), the newest wide leaf of a bucket up to 2x as far as the
#     dedupe's spare room allows (spare_room: the bytes beyond 16 an id of all the buckets that
#     hold more, and of the pre-snowflake table, within DEDUPE_SPARE = 48 KiB in all);
#   * a full-size leaf at load 0.6 asked to take an id above its largest one is sealed as it is;
#     at 0.7 it is split at the midpoint of its smallest and largest ids (same width and base).
# So a remembered id costs 6-10 bytes in a dense stream, up to 16 where leaves are wide, plus 56
# bytes of directory a leaf; the dedupe holds at most 16 bytes an id plus 64 KiB in all: 48 KiB
# of spare room (which a wide newest leaf's doubling asks for; a sparse stream's buckets share
# it) and what grows without asking (small new leaves, directories); measured: at most 48.5 KiB
# over 16 bytes an id (tests/test_dedupe.py checks 64 KiB every 1% of many streams).
# Pre-snowflake ids (< 2^35, including 0 and negatives) share one plain table, never pruned.
#
# The window moves with the newest bucket, bmax: by one bucket at once, but an id further ahead
# (or any id before the first confirmation) is a jump that needs a second id within a window
# of it (admitted_ahead). Until then its bucket is a candidate: remembered, never a hot leaf.
#
# State bytes (dedupe_state): b"FHDEDUP1", bucket_ms, newest bucket, table count, then per
# table: bucket (-1: the pre-snowflake table, last), zero flag, key count, keys (all <i8/<q). The
# format predates the leaves (one table a bucket) and is unchanged: restoring re-inserts the ids
# (in id order, so the leaves come out as a live stream's would); tables above bmax + 1 are the
# unconfirmed jumps.

cdef int64_t SNOWFLAKE_EPOCH = 1288834974657
cdef int64_t SNOWFLAKE_MIN = 1 << 35
cdef int64_t I64_MAX = 0x7FFFFFFFFFFFFFFF
cdef int64_t BMAX_UNSET = -(1 << 62)   # bmax of a dedupe that has not confirmed any id yet
cdef int KEEP_BUCKETS = 4           # buckets bmax-4 .. bmax stay
cdef Py_ssize_t TABLE_MIN = 1024    # the pre-snowflake table's first size
cdef int32_t LEAF_MIN = 64          # slots of a leaf made inside a range
cdef int32_t LEAF_MAX = 16380       # slots: just under 128 KiB (malloc keeps it off mmap), ~9,800 ids
cdef int32_t NLEAF_MAX = 32760      # slots of a narrow leaf (4-byte keys): the same 128 KiB
cdef int64_t NARROW_SPAN = 0xFFFFFFFF   # ids a narrow leaf's keys can hold (~1.02 s of tweet time)
cdef int64_t DEDUPE_SPARE = 49152   # bytes beyond 16 an id that growing newest wide leaves may
                                    # bring the dedupe to (see spare_room), of the 64 KiB allowed
cdef int32_t WIDEN_N = 128          # a narrow leaf with fewer ids is made wide, not cut, when an
                                    # id outside its keys' span comes


cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    static inline uint64_t fh_mix64(uint64_t k) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53ULL;
        k ^= k >> 33;
        return k;
    }
    /* Lemire's fast range reduction: any capacity, not only powers of two */
    static inline Py_ssize_t fh_slot_of(uint64_t h, Py_ssize_t cap) {
        return (Py_ssize_t)(((unsigned __int128)h * (uint64_t)cap) >> 64);
    }
    /* Linear probing for key (!= 0) in keys[0..cap), four slots a step where they do not wrap
       (one well-predicted branch instead of one a slot): -1 if key is there, else the first
       empty slot of its run. Keys are never deleted, so key cannot sit after an empty slot. */
    static inline Py_ssize_t fh_probe(const int64_t* keys, Py_ssize_t cap, int64_t key) {
        Py_ssize_t j = fh_slot_of(fh_mix64((uint64_t)key), cap);
        for (;;) {
            if (j + 4 <= cap) {
                const int64_t* p = keys + j;
                int64_t a = p[0], b = p[1], c = p[2], d = p[3];
                unsigned e;
                if ((a == key) | (b == key) | (c == key) | (d == key))
                    return -1;
                e = (unsigned)(a == 0) | (unsigned)(b == 0) << 1 | (unsigned)(c == 0) << 2
                    | (unsigned)(d == 0) << 3;
                if (e)
                    return j + __builtin_ctz(e);
                j += 4;
                if (j == cap)
                    j = 0;
            } else {
                int64_t k = keys[j];
                if (k == key)
                    return -1;
                if (k == 0)
                    return j;
                if (++j == cap)
                    j = 0;
            }
        }
    }
    /* the same for a narrow leaf's 4-byte keys */
    static inline Py_ssize_t fh_slot32(uint32_t k, Py_ssize_t cap) {
        /* the high half of k times a 64-bit odd constant: every bit of k reaches it */
        uint64_t h = ((uint64_t)k * 0x9E3779B97F4A7C15ULL) >> 32;
        return (Py_ssize_t)((h * (uint64_t)cap) >> 32);
    }
    static inline Py_ssize_t fh_probe32(const uint32_t* keys, Py_ssize_t cap, uint32_t key) {
        Py_ssize_t j = fh_slot32(key, cap);
    #if defined(__SSE2__)
        const __m128i kk = _mm_set1_epi32((int)key), zz = _mm_setzero_si128();
    #endif
        for (;;) {
            if (j + 4 <= cap) {
                unsigned eq, e;
    #if defined(__SSE2__)
                __m128i v = _mm_loadu_si128((const __m128i*)(keys + j));
                eq = (unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v, kk)));
                e = (unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(v, zz)));
    #else
                const uint32_t* p = keys + j;
                eq = (p[0] == key) | (p[1] == key) | (p[2] == key) | (p[3] == key);
                e = (unsigned)(p[0] == 0) | (unsigned)(p[1] == 0) << 1 | (unsigned)(p[2] == 0) << 2
                    | (unsigned)(p[3] == 0) << 3;
    #endif
                if (eq)
                    return -1;
                if (e)
                    return j + __builtin_ctz(e);
                j += 4;
                if (j == cap)
                    j = 0;
            } else {
                uint32_t k = keys[j];
                if (k == key)
                    return -1;
                if (k == 0)
                    return j;
                if (++j == cap)
                    j = 0;
            }
        }
    }
    static int fh_cmp_i64(const void* a, const void* b) {
        int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
        return (x > y) - (x < y);
    }
    """
    uint64_t mix64 "fh_mix64"(uint64_t k) noexcept nogil
    Py_ssize_t slot_of "fh_slot_of"(uint64_t h, Py_ssize_t cap) noexcept nogil
    Py_ssize_t probe "fh_probe"(const int64_t* keys, Py_ssize_t cap, int64_t key) noexcept nogil
    int cmp_i64 "fh_cmp_i64"(const void* a, const void* b) noexcept nogil
    Py_ssize_t slot32 "fh_slot32"(uint32_t k, Py_ssize_t cap) noexcept nogil
    Py_ssize_t probe32 "fh_probe32"(const uint32_t* keys, Py_ssize_t cap, uint32_t key) noexcept nogil


cdef inline void* dd_calloc(Py_ssize_t n, Py_ssize_t size) except NULL nogil:
    cdef void* p = calloc(n, size)
    if p == NULL:
        with gil:
            raise MemoryError("firehose core: out of memory for the dedupe tables")
    return p


# ---------------------------------------------------------------- the pre-snowflake table

cdef int table_init(IdTable* tb, Py_ssize_t cap) except -1 nogil:
    tb.keys = <int64_t*>dd_calloc(cap, 8)
    tb.cap = cap
    tb.n = 0
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


# ---------------------------------------------------------------- leaves

cdef inline int32_t leaf_maxcap(Leaf* L) noexcept nogil:
    return LEAF_MAX if L.wide else NLEAF_MAX


cdef inline void leaf_limits(Leaf* L) noexcept nogil:
    # a full-size leaf takes ids above its largest one up to load 0.6 (then it is sealed), ids
    # within its range up to 0.7 (then it is split); a smaller one grows at 0.7
    L.hard = <int32_t>((<int64_t>L.cap * 7) // 10)
    L.limit = <int32_t>((<int64_t>L.cap * 6) // 10) if L.cap >= leaf_maxcap(L) else L.hard


cdef int leaf_init(Bucket* B, Leaf* L, int64_t lo, int32_t cap, bint wide) except -1 nogil:
    """An empty leaf of B from lo; a narrow one's keys start at lo (an empty leaf may move them)."""
    L.keys = dd_calloc(cap, 8 if wide else 4)
    B.nbytes += cap * (8 if wide else 4)
    L.lo = lo
    L.top = lo - 1
    L.base = lo
    L.cap = cap
    L.n = 0
    L.wide = wide
    leaf_limits(L)
    return 0


cdef inline void leaf_put64(Leaf* L, int64_t key) noexcept nogil:
    """Insert a key known to be absent, with room for it (wide leaf)."""
    cdef int64_t* keys = <int64_t*>L.keys
    cdef Py_ssize_t j = slot_of(mix64(<uint64_t>key), L.cap)
    while keys[j] != 0:
        j += 1
        if j == L.cap:
            j = 0
    keys[j] = key
    L.n += 1


cdef inline void leaf_put32(Leaf* L, uint32_t k) noexcept nogil:
    """Insert a narrow key (id - base + 1) known to be absent, with room for it."""
    cdef uint32_t* keys = <uint32_t*>L.keys
    cdef Py_ssize_t j = slot32(k, L.cap)
    while keys[j] != 0:
        j += 1
        if j == L.cap:
            j = 0
    keys[j] = k
    L.n += 1


cdef inline int64_t leaf_id(Leaf* L, Py_ssize_t j) noexcept nogil:
    """The id in slot j (0: empty)."""
    cdef uint32_t k
    if L.wide:
        return (<int64_t*>L.keys)[j]
    k = (<uint32_t*>L.keys)[j]
    return L.base + k - 1 if k != 0 else 0


cdef int leaf_resize(Bucket* B, Leaf* L, int32_t cap, bint wide) except -1 nogil:
    """Re-make leaf L of B with cap slots (wide: 8-byte keys), same ids, range and base."""
    cdef void* old = L.keys
    cdef int32_t oldcap = L.cap, i
    cdef bint oldwide = L.wide
    cdef int64_t base = L.base
    cdef uint32_t k
    L.keys = dd_calloc(cap, 8 if wide else 4)
    B.nbytes += cap * (8 if wide else 4) - oldcap * (8 if oldwide else 4)
    L.cap = cap
    L.n = 0
    L.wide = wide
    leaf_limits(L)
    if oldwide:
        for i in range(oldcap):
            if (<int64_t*>old)[i] != 0:
                leaf_put64(L, (<int64_t*>old)[i])
    elif wide:
        for i in range(oldcap):
            k = (<uint32_t*>old)[i]
            if k != 0:
                leaf_put64(L, base + k - 1)
    else:
        for i in range(oldcap):
            k = (<uint32_t*>old)[i]
            if k != 0:
                leaf_put32(L, k)
    free(old)
    return 0


cdef int32_t cap_for(Py_ssize_t n, bint wide) noexcept nogil:
    """Slots for n keys at load 0.5 (within [LEAF_MIN, the width's maximum])."""
    cdef int32_t mx = LEAF_MAX if wide else NLEAF_MAX
    if n * 2 < LEAF_MIN:
        return LEAF_MIN
    if n * 2 > mx:
        return mx
    return <int32_t>(n * 2)


cdef Leaf* leaf_insert_at(Bucket* B, Py_ssize_t i) except NULL nogil:
    """Make room for a new leaf at index i of B's directory (its fields are left to the caller)."""
    cdef Leaf* grown
    if B.nleaves == B.cap_leaves:
        grown = <Leaf*>realloc(B.leaves, B.cap_leaves * 2 * sizeof(Leaf))
        if grown == NULL:
            with gil:
                raise MemoryError("firehose core: out of memory for the dedupe tables")
        B.leaves = grown
        B.nbytes += B.cap_leaves * sizeof(Leaf)
        B.cap_leaves *= 2
    memmove(&B.leaves[i + 1], &B.leaves[i], (B.nleaves - i) * sizeof(Leaf))
    B.nleaves += 1
    return &B.leaves[i]


cdef int leaf_split(Bucket* B, Py_ssize_t i) except -1 nogil:
    """Split full leaf i at the midpoint of its smallest and largest ids (both halves keep its
    width and, narrow, its base)."""
    cdef Leaf* L = &B.leaves[i]
    cdef void* old = L.keys
    cdef int32_t oldcap = L.cap, j
    cdef bint wide = L.wide
    cdef int64_t lo = L.lo, top = L.top, base = L.base, mn = I64_MAX, mid, k, topl = lo - 1
    cdef Py_ssize_t nleft = 0, nright
    cdef uint32_t k32, mid32
    for j in range(oldcap):
        k = leaf_id(L, j)
        if k != 0 and k < mn:
            mn = k
    mid = mn + (top - mn) // 2              # mn < top: a full leaf holds many ids
    for j in range(oldcap):
        k = leaf_id(L, j)
        if k != 0 and k <= mid:
            nleft += 1
            if k > topl:
                topl = k
    nright = L.n - nleft
    B.nbytes -= oldcap * (8 if wide else 4)
    leaf_init(B, L, lo, cap_for(nleft, wide), wide)
    L.base = base
    L = leaf_insert_at(B, i + 1)            # (may move the directory: L is re-read below)
    leaf_init(B, L, mid + 1, cap_for(nright, wide), wide)
    L.base = base
    L = &B.leaves[i]
    if wide:
        for j in range(oldcap):
            k = (<int64_t*>old)[j]
            if k != 0:
                if k <= mid:
                    leaf_put64(L, k)
                else:
                    leaf_put64(L + 1, k)
    else:
        mid32 = <uint32_t>(mid - base + 1)
        for j in range(oldcap):
            k32 = (<uint32_t*>old)[j]
            if k32 != 0:
                if k32 <= mid32:
                    leaf_put32(L, k32)
                else:
                    leaf_put32(L + 1, k32)
    L.top = topl
    (L + 1).top = top
    free(old)
    return 0


cdef inline bint bucket_affords(Bucket* B, Py_ssize_t extra) noexcept nogil:
    """Whether B can take extra bytes and still hold under 16 bytes an id with 64 KiB to spare
    (so that a presized leaf never takes from the dedupe's spare room, and the growth that does
    not ask, directories and small new leaves, is paid for by the bucket's own ids)."""
    return B.nbytes + extra + 65536 <= 16 * B.n


cdef int32_t presize(Bucket* B, Py_ssize_t i) noexcept nogil:
    """Slots for a new narrow leaf after leaf i (sealed): room for twice the ids that the
    fullest of the last three leaves holds per narrow span (under delivery jitter the newest
    ones are still filling), if the bucket affords it, so that a steady stream does not
    rehash; else the smallest leaf."""
    cdef Py_ssize_t j
    cdef int64_t m = 0, est, span
    cdef int32_t cap
    cdef Leaf* L
    for j in range(i - 2 if i >= 2 else 0, i + 1):
        L = &B.leaves[j]
        span = L.top - L.lo + 1
        est = L.n if span <= NARROW_SPAN else (<int64_t>L.n << 32) // span
        if est > m:
            m = est
    cap = cap_for((m * 4) // 5, False)      # (1.6 slots an id: load ~0.6 once full)
    if cap > LEAF_MIN and not bucket_affords(B, cap * 4):
        cap = LEAF_MIN
    return cap


cdef int64_t spare_room(State* st, Bucket* B) noexcept nogil:
    """Bytes that bucket B may still take (the id about to go in counted) while the bytes held
    beyond 16 an id, summed over the buckets that hold more (B: its bytes less 16 an id, even if
    negative) and the pre-snowflake table, stay within DEDUPE_SPARE. Only this growth takes
    from the spare room, a bucket gives its share back as ids come and all of it when dropped,
    so the sum stays bounded whatever the stream (and the order of the buckets' growth)."""
    cdef int64_t over = st.legacy.cap * 8 - 16 * (<int64_t>st.legacy.n + st.legacy.has_zero), e
    cdef int k
    if over < 0:
        over = 0
    for k in range(st.ngens):
        if &st.gens[k] != B:
            e = st.gens[k].nbytes - 16 * <int64_t>st.gens[k].n
            if e > 0:
                over += e
    return DEDUPE_SPARE - over - (B.nbytes - 16 * (<int64_t>B.n + 1))


cdef int leaf_make_room(State* st, Bucket* B, Py_ssize_t i, int64_t key) except -1 nogil:
    """Leaf i is at its limit and key (within its range and span, absent) is to go in: grow it,
    seal it (a new leaf above its largest id) or split it."""
    cdef Leaf* L = &B.leaves[i]
    cdef int64_t top = L.top, room
    cdef int32_t cap, mx = leaf_maxcap(L)
    cdef bint wide = L.wide
    if L.cap < mx:
        # a narrow leaf doubles (load >= 0.35: at most 11.4 bytes an id); a wide one grows 1.4x,
        # staying at load >= 0.5 (16 bytes an id), but the newest wide leaf of a bucket (it will
        # most likely fill up to LEAF_MAX and be sealed) grows up to twice, as far as the spare
        # room allows: one rehash an id instead of 2.5 where there are bytes to spare
        if not wide:
            cap = L.cap * 2
        else:
            cap = <int32_t>((<int64_t>L.cap * 7) // 5 + 1)
            if i + 1 == B.nleaves:
                room = L.cap + spare_room(st, B) // 8
                if room > cap:
                    cap = <int32_t>(room if room < 2 * <int64_t>L.cap else 2 * L.cap)
        return leaf_resize(B, L, cap if cap < mx else mx, wide)
    if key > top:
        # seal: an in-order stream moves on to a new (narrow) leaf, sized for it if newest
        L = leaf_insert_at(B, i + 1)
        cap = presize(B, i) if i + 2 == B.nleaves else LEAF_MIN
        return leaf_init(B, L, top + 1, cap, False)
    return leaf_split(B, i)


cdef int leaf_rewindow(Bucket* B, Py_ssize_t i, int64_t key) except -1 nogil:
    """key is in the range of narrow leaf i but outside its keys' span: move the span (empty
    leaf), make the leaf wide (few ids), or cut the range where the span ends: a new leaf above
    the largest id, or below the span."""
    cdef Leaf* L = &B.leaves[i]
    cdef int64_t hi = B.leaves[i + 1].lo - 1 if i + 1 < B.nleaves else B.hi
    cdef int64_t base, lo
    cdef int32_t cap
    if L.n == 0:
        base = key - NARROW_SPAN // 2
        if base > hi - NARROW_SPAN + 1:
            base = hi - NARROW_SPAN + 1
        if base < L.lo:
            base = L.lo
        L.base = base
        return 0
    if L.n < WIDEN_N:
        return leaf_resize(B, L, cap_for(L.n + 1, True), True)
    if key > L.top:
        cap = presize(B, i)
        L = leaf_insert_at(B, i + 1)
        return leaf_init(B, L, B.leaves[i].top + 1, cap, False)
    lo = L.lo                               # key < base: all the ids are above it
    L.lo = L.base
    L = leaf_insert_at(B, i)
    return leaf_init(B, L, lo, LEAF_MIN, False)


cdef inline Py_ssize_t leaf_index(Bucket* B, int64_t key) noexcept nogil:
    """Index of the leaf whose range holds key (B.lo <= key <= B.hi): the last one with
    lo <= key, searched from the newest end (galloping, then binary), as most ids are recent."""
    cdef Leaf* lv = B.leaves
    cdef Py_ssize_t hi = B.nleaves - 1, a, z, m, step = 1
    if lv[hi].lo <= key:
        return hi
    while True:                             # lv[hi].lo > key
        a = hi - step
        if a <= 0:
            a = 0
            break
        if lv[a].lo <= key:
            break
        hi = a
        step <<= 1
    z = hi - 1
    while a < z:
        m = (a + z + 1) >> 1
        if lv[m].lo <= key:
            a = m
        else:
            z = m - 1
    return a


# ---------------------------------------------------------------- buckets

cdef inline int64_t id_at_ms(int64_t ms) noexcept nogil:
    """The smallest snowflake id created at or after ms (I64_MAX if none)."""
    cdef int64_t d = ms - SNOWFLAKE_EPOCH
    if d <= (SNOWFLAKE_MIN >> 22):
        return SNOWFLAKE_MIN
    if d >= (<int64_t>1 << 41):
        return I64_MAX
    return d << 22


cdef Py_ssize_t bucket_count(Bucket* B) noexcept nogil:
    cdef Py_ssize_t i, n = 0
    for i in range(B.nleaves):
        n += B.leaves[i].n
    return n


cdef void bucket_free(Bucket* B) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(B.nleaves):
        free(B.leaves[i].keys)
    free(B.leaves)
    B.leaves = NULL
    B.nleaves = B.cap_leaves = 0
    B.n = B.nbytes = 0


cdef inline void hot_reset(State* st) noexcept nogil:
    cdef int h
    for h in range(DEDUPE_HOT):
        st.hot[h].lo = 1
        st.hot[h].hi = 0
        st.hot[h].leaf = NULL
    st.nexthot = 0
    st.hot_bucket = NULL


cdef void forget_buckets(State* st, int64_t lo, int64_t hi) noexcept nogil:
    """Free the buckets numbered lo..hi; the others keep their order (oldest made first)."""
    cdef int i, j = 0
    hot_reset(st)
    for i in range(st.ngens):
        if lo <= st.gens[i].b <= hi:
            bucket_free(&st.gens[i])
        else:
            st.gens[j] = st.gens[i]
            j += 1
    st.ngens = j


cdef void dedupe_advance(State* st, int64_t b) noexcept nogil:
    """Make b the newest bucket: forget the buckets more than a window behind it, and stop
    holding as candidates the jumps no longer more than a bucket ahead of it."""
    cdef int i, j = 0
    st.bmax = b
    forget_buckets(st, -I64_MAX, b - KEEP_BUCKETS - 1)
    for i in range(st.ncand):
        if st.cand[i] > b + 1:
            st.cand[j] = st.cand[i]
            j += 1
    st.ncand = j


cdef Bucket* bucket_get(State* st, int64_t b) except NULL nogil:
    """The bucket b, made if needed (the window is moved by admitted_ahead, not here)."""
    cdef int i
    cdef Bucket* B
    cdef int64_t hi
    for i in range(st.ngens):
        if st.gens[i].b == b:
            return &st.gens[i]
    if st.ngens >= DEDUPE_GENS:
        with gil:
            raise RuntimeError("firehose core: dedupe bucket directory overflow")
    B = &st.gens[st.ngens]
    memset(B, 0, sizeof(Bucket))
    B.b = b
    B.lo = id_at_ms(b * st.bucket_ms)
    hi = id_at_ms((b + 1) * st.bucket_ms)
    B.hi = I64_MAX if hi == I64_MAX else hi - 1
    B.leaves = <Leaf*>dd_calloc(4, sizeof(Leaf))
    B.cap_leaves = 4
    B.nbytes = 4 * sizeof(Leaf)
    B.nleaves = 1
    leaf_init(B, &B.leaves[0], B.lo, LEAF_MIN, False)
    st.ngens += 1
    return B


cdef void admitted_ahead(State* st, int64_t b) noexcept nogil:
    """A new id was just remembered in bucket b, newer than bmax. The next bucket moves the
    window at once; a jump further ahead (or any id of a fresh dedupe) moves it only when a
    second id lands within a window (KEEP_BUCKETS) of an earlier jump, so that one corrupt
    far-future id cannot make the dedupe forget its window, while sparse streams (ids more
    than a bucket apart) still confirm each next id. Until then b is a candidate; of three
    unconfirmed jumps the oldest is forgotten. (The reference's _first_sight is the spec.)"""
    cdef int k
    cdef int64_t top = b
    cdef bint near = False
    if st.bmax != BMAX_UNSET and b <= st.bmax + 1:
        dedupe_advance(st, b)
        return
    for k in range(st.ncand):
        if st.cand[k] - b <= KEEP_BUCKETS and b - st.cand[k] <= KEEP_BUCKETS:
            near = True
            if st.cand[k] > top:
                top = st.cand[k]
    if near:
        dedupe_advance(st, top)
        return
    if st.ncand == 2:
        forget_buckets(st, st.cand[0], st.cand[0])      # its ids are forgotten
        st.cand[0] = st.cand[1]
        st.ncand = 1
    st.cand[st.ncand] = b
    st.ncand += 1
    hot_reset(st)


cdef inline void set_hot(State* st, Bucket* B, Py_ssize_t i) noexcept nogil:
    """Make leaf i of B one of the first tried (for the ids of its range its keys can hold),
    unless B is ahead of the window (its inserts must go through admitted_ahead)."""
    cdef Leaf* L = &B.leaves[i]
    cdef HotLeaf* h
    cdef int64_t lo, hi
    if B.b > st.bmax:
        return
    st.hot_bucket = B
    lo = L.lo
    hi = B.leaves[i + 1].lo - 1 if i + 1 < B.nleaves else B.hi
    if not L.wide:
        if lo < L.base:
            lo = L.base
        if hi > L.base + NARROW_SPAN - 1:
            hi = L.base + NARROW_SPAN - 1
    h = &st.hot[st.nexthot]
    st.nexthot = (st.nexthot + 1) & (DEDUPE_HOT - 1)
    h.lo = lo
    h.hi = hi
    h.leaf = L
    h.count = &B.n


# ---------------------------------------------------------------- admission

cdef inline Py_ssize_t leaf_probe(Leaf* L, int64_t tid) noexcept nogil:
    """-1 if tid is in leaf L, else the empty slot for it (tid within L's range and span)."""
    if L.wide:
        return probe(<int64_t*>L.keys, L.cap, tid)
    return probe32(<uint32_t*>L.keys, L.cap, <uint32_t>(tid - L.base + 1))


cdef inline void leaf_store(Bucket* B, Leaf* L, Py_ssize_t j, int64_t tid) noexcept nogil:
    B.n += 1
    if L.wide:
        (<int64_t*>L.keys)[j] = tid
    else:
        (<uint32_t*>L.keys)[j] = <uint32_t>(tid - L.base + 1)
    L.n += 1
    if tid > L.top:
        L.top = tid


cdef int remember_slow(State* st, int64_t tid) except -1 nogil:
    """remember() for an id outside the hot leaf: find (or make) its bucket and leaf."""
    cdef Bucket* B = st.hot_bucket
    cdef Leaf* L
    cdef Py_ssize_t i, j
    cdef int64_t b
    if B == NULL or tid < B.lo or tid > B.hi:
        if tid < SNOWFLAKE_MIN:
            return table_add(&st.legacy, tid)
        b = ((tid >> 22) + SNOWFLAKE_EPOCH) // st.bucket_ms
        if b < st.bmax - KEEP_BUCKETS:
            return 2
        B = bucket_get(st, b)
    while True:
        i = leaf_index(B, tid)
        L = &B.leaves[i]
        if not L.wide and (tid < L.base or tid - L.base >= NARROW_SPAN):
            hot_reset(st)
            leaf_rewindow(B, i, tid)
            continue
        j = leaf_probe(L, tid)
        if j < 0:
            set_hot(st, B, i)
            return 0
        if L.n < L.limit or (tid < L.top and L.n < L.hard):
            leaf_store(B, L, j, tid)
            if B.b > st.bmax and not st.loading:
                admitted_ahead(st, B.b)
            else:
                set_hot(st, B, i)
            return 1
        hot_reset(st)
        leaf_make_room(st, B, i, tid)


cdef inline int remember(State* st, int64_t tid) except -1 nogil:
    """1 if tid is new (now remembered), 0 if remembered already, 2 if its bucket is forgotten.
    The hot leaf is never in a bucket ahead of bmax, so an insert there needs no window check."""
    cdef Leaf* L = NULL
    cdef Py_ssize_t j
    cdef Py_ssize_t* count = NULL
    cdef uint32_t k
    cdef int h
    for h in range(DEDUPE_HOT):
        if st.hot[h].lo <= tid <= st.hot[h].hi:
            L = st.hot[h].leaf
            count = st.hot[h].count
            break
    if L != NULL:
        if not L.wide:
            k = <uint32_t>(tid - L.base + 1)
            j = probe32(<uint32_t*>L.keys, L.cap, k)
            if j < 0:
                return 0
            if L.n < L.limit or (tid < L.top and L.n < L.hard):
                (<uint32_t*>L.keys)[j] = k
                L.n += 1
                count[0] += 1
                if tid > L.top:
                    L.top = tid
                return 1
        else:
            j = probe(<int64_t*>L.keys, L.cap, tid)
            if j < 0:
                return 0
            if L.n < L.limit or (tid < L.top and L.n < L.hard):
                (<int64_t*>L.keys)[j] = tid
                L.n += 1
                count[0] += 1
                if tid > L.top:
                    L.top = tid
                return 1
    return remember_slow(st, tid)


cdef inline int dedupe_admit(State* st, int64_t tid) except -1 nogil:
    """1 if the tweet should be emitted (first sight, or too late to know), 0 if a duplicate."""
    cdef int r
    if not st.dedupe:
        return 1
    r = remember(st, tid)
    if r == 1:
        return 1
    if r == 2:
        st.n_late += 1
        return 1
    st.n_dups += 1
    return 0


# ---------------------------------------------------------------- state, memory

cdef int dedupe_init(State* st) except -1:
    st.bmax = BMAX_UNSET
    st.ncand = 0
    st.loading = False
    hot_reset(st)
    return table_init(&st.legacy, TABLE_MIN)


cdef void dedupe_free(State* st) noexcept nogil:
    cdef int i
    for i in range(st.ngens):
        bucket_free(&st.gens[i])
    st.ngens = 0
    st.ncand = 0
    table_free(&st.legacy)
    hot_reset(st)


cdef inline bint is_cand(State* st, int64_t b) noexcept nogil:
    cdef int k
    for k in range(st.ncand):
        if st.cand[k] == b:
            return True
    return False


cdef object bucket_keys(Bucket* B):
    """The ids of bucket B (leaf order) as bytes of <i8."""
    cdef Py_ssize_t j, l, pos = 0
    cdef Leaf* L
    cdef int64_t k
    keys = bytearray(8 * bucket_count(B))
    cdef int64_t* out = <int64_t*><char*>keys
    for l in range(B.nleaves):
        L = &B.leaves[l]
        for j in range(L.cap):
            k = leaf_id(L, j)
            if k != 0:
                out[pos] = k
                pos += 1
    return bytes(keys)


cdef object dedupe_save(State* st):
    cdef int i, k
    cdef Py_ssize_t j, pos
    cdef Bucket* B
    cdef int64_t* out
    parts = [_struct.pack("<8sqqi", b"FHDEDUP1", st.bucket_ms, st.bmax, st.ngens + 1)]
    # the buckets in the window first, then the unconfirmed jumps oldest first (their order
    # decides which one a third jump forgets), then the pre-snowflake table
    for i in range(st.ngens):
        if not is_cand(st, st.gens[i].b):
            keys = bucket_keys(&st.gens[i])
            parts.append(_struct.pack("<qbq", st.gens[i].b, 0, len(keys) // 8))
            parts.append(keys)
    for k in range(st.ncand):
        for i in range(st.ngens):
            if st.gens[i].b == st.cand[k]:
                keys = bucket_keys(&st.gens[i])
                parts.append(_struct.pack("<qbq", st.gens[i].b, 0, len(keys) // 8))
                parts.append(keys)
    parts.append(_struct.pack("<qbq", -1, 1 if st.legacy.has_zero else 0, st.legacy.n))
    keys = bytearray(8 * st.legacy.n)
    out = <int64_t*><char*>keys
    pos = 0
    for j in range(st.legacy.cap):
        if st.legacy.keys[j] != 0:
            out[pos] = st.legacy.keys[j]
            pos += 1
    parts.append(bytes(keys))
    return b"".join(parts)


cdef Py_ssize_t misfiled(const int64_t* keys, Py_ssize_t n, int64_t bucket,
                         int64_t bucket_ms) noexcept nogil:
    """Index of the first key that does not belong in a table labelled bucket (-1: the
    pre-snowflake table), or -1 if all do."""
    cdef Py_ssize_t j
    cdef int64_t k
    for j in range(n):
        k = keys[j]
        if bucket == -1:
            if k >= SNOWFLAKE_MIN:
                return j
        elif k < SNOWFLAKE_MIN or ((k >> 22) + SNOWFLAKE_EPOCH) // bucket_ms != bucket:
            return j
    return -1


cdef int dedupe_load(State* st, bytes data) except -1:
    """Replace the dedupe memory with a saved one (from dedupe_save). Everything is checked
    before the current memory is touched: a corrupt state raises StateError and changes
    nothing."""
    cdef int i, ntab
    cdef Py_ssize_t pos, nkeys, j, total = 0, bad
    cdef const unsigned char* p = data
    cdef int64_t* keys = NULL
    cdef int64_t bms, lab
    try:
        magic, bucket_ms, bmax, ntab = _struct.unpack_from("<8sqqi", data, 0)
        if magic != b"FHDEDUP1":
            raise ValueError("not a firehose dedupe state")
        if ntab < 1 or ntab > 10:
            raise ValueError("bad table count")
        if bucket_ms < 1:
            raise ValueError("bad bucket width")
        if bmax != BMAX_UNSET and not (0 <= bmax <= ((1 << 41) + SNOWFLAKE_EPOCH) // bucket_ms):
            raise ValueError("bad newest bucket")
        pos = _struct.calcsize("<8sqqi")
        tables = []
        for i in range(ntab):
            bucket, zero, nkeys = _struct.unpack_from("<qbq", data, pos)
            pos += _struct.calcsize("<qbq")
            if nkeys < 0 or nkeys > (len(data) - pos) // 8:
                raise ValueError("bad key count")
            tables.append((bucket, zero, pos, nkeys))
            pos += 8 * nkeys
        if pos != len(data) or tables[len(tables) - 1][0] != -1:
            raise ValueError("trailing or missing data")
        buckets = [t[0] for t in tables[:len(tables) - 1]]
        if len(set(buckets)) != len(buckets) or min(buckets + [0]) < 0:
            raise ValueError("bad bucket numbers")
        # the unconfirmed jumps, oldest first (dedupe_save writes them last, in that order)
        cands = [c for c in buckets if bmax == BMAX_UNSET or c > bmax + 1]
        if len(cands) > 2:
            raise ValueError("more than two unconfirmed jumps")
        for bucket, zero, pos, nkeys in tables:
            total += nkeys
        keys = <int64_t*>malloc(max(total, 1) * 8)
        if keys == NULL:
            raise MemoryError("firehose core: out of memory restoring the dedupe state")
        total = 0
        bms = bucket_ms
        for bucket, zero, pos, nkeys in tables:
            memcpy(&keys[total], p + <Py_ssize_t>pos, 8 * <Py_ssize_t>nkeys)
            lab = bucket
            bad = misfiled(&keys[total], nkeys, lab, bms)
            if bad >= 0:
                raise ValueError(f"id {keys[total + bad]} does not belong in the table of "
                                 f"bucket {bucket}")
            total += nkeys
    except (_struct.error, ValueError) as e:
        free(keys)
        from .errors import StateError
        raise StateError(f"dedupe state is corrupt: {e}") from None
    dedupe_free(st)
    st.bucket_ms = bucket_ms
    st.bmax = bmax
    table_init(&st.legacy, TABLE_MIN)
    st.legacy.has_zero = tables[len(tables) - 1][1]
    try:
        st.loading = True
        with nogil:
            # in id order, so that the leaves fill and seal as they would for a live stream
            qsort(keys, total, 8, cmp_i64)
            for j in range(total):
                if keys[j] != 0:
                    remember(st, keys[j])
    finally:
        st.loading = False
        hot_reset(st)
        free(keys)
    for c in cands:
        st.cand[st.ncand] = c
        st.ncand += 1
    return 0


cdef object dedupe_memory(State* st):
    """(remembered ids, bytes held by the tables)."""
    cdef int i
    cdef Py_ssize_t l
    n = st.legacy.n + st.legacy.has_zero
    b = st.legacy.cap * 8
    for i in range(st.ngens):
        n += bucket_count(&st.gens[i])
        b += st.gens[i].cap_leaves * sizeof(Leaf)
        for l in range(st.gens[i].nleaves):
            b += st.gens[i].leaves[l].cap * (8 if st.gens[i].leaves[l].wide else 4)
    return n, b
