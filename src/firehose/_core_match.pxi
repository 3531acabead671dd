# Tokenising tweets into term hashes and running compiled rule programs. Included by _core.pyx.
#
# Per row: the text fields are cut into tokens (docs/rules.md) straight from the Arrow buffers,
# each token hashed with XXH3 under its namespace; the row's terms go into a small hash table
# (term -> occurrences with field and position). The terms are looked up in the rule set's
# anchor table to find candidate rules, and only those rules' programs run. No GIL.

cdef extern from "arrow/vendored/xxhash/xxhash.h":
    uint64_t XXH3_64bits(const void* data, size_t length) nogil

from libc.math cimport sin, cos, asin, sqrt, M_PI
from libc.stdint cimport uintptr_t, int16_t

# opcodes (firehose.rules.compile)
cdef enum:
    OP_TERM = 1
    OP_SEQ = 2
    OP_AND = 3
    OP_OR = 4
    OP_NOT = 5
    OP_NOTNULL = 6
    OP_TRUE = 7
    OP_NONEMPTY = 8
    OP_LISTHAS = 9
    OP_RANGE = 10
    OP_BBOX = 11
    OP_RADIUS = 12
    OP_SAMPLE = 13
    OP_CONTAINS = 14
    OP_URLCONTAINS = 15

# fields of positional terms
cdef enum:
    FLD_TEXT = 0
    FLD_QUOTED = 1
    FLD_BIO = 2
    FLD_BIO_NAME = 3
    FLD_BIO_LOC = 4
    FLD_URL = 5
    FLD_VALUE = 15

# unicode classes (firehose.rules.tokens)
cdef enum:
    U_SEP = 0
    U_WORD = 1
    U_SYMBOL = 2
    U_CJK = 3

cdef uint8_t* U_CLS = NULL
cdef uint32_t* U_LOWER = NULL
cdef uint32_t* U_FOLD = NULL
cdef Py_ssize_t U_SIZE = 0


def set_unicode_tables(bytes cls, lower, fold):
    """Install the code point tables of firehose.rules.tokens.tables() (once)."""
    global U_CLS, U_LOWER, U_FOLD, U_SIZE
    cdef Py_ssize_t n = len(cls)
    cdef const uint32_t[::1] lw = memoryview(lower).cast("B").cast("I")
    cdef const uint32_t[::1] fd = memoryview(fold).cast("B").cast("I")
    if U_CLS != NULL:
        return
    if lw.shape[0] != n or fd.shape[0] != n:
        raise ValueError("unicode tables of different sizes")
    cdef uint8_t* c = <uint8_t*>malloc(n)
    cdef uint32_t* l = <uint32_t*>malloc(n * 4)
    cdef uint32_t* f = <uint32_t*>malloc(n * 4)
    if c == NULL or l == NULL or f == NULL:
        raise MemoryError()
    memcpy(c, <const char*>cls, n)
    memcpy(l, &lw[0], n * 4)
    memcpy(f, &fd[0], n * 4)
    U_SIZE = n
    U_LOWER = l
    U_FOLD = f
    U_CLS = c


def term_hash(bytes ns, str token):
    """The core's term hash, for tests: XXH3_64(ns + 0x1f + utf8(token))."""
    cdef bytes b = ns + b"\x1f" + token.encode("utf-8", "surrogatepass")
    return XXH3_64bits(<const char*>b, len(b))


# ---------------------------------------------------------------- Arrow column views

cdef struct SCol:
    const uint8_t* valid
    const int32_t* offs
    const char* data
    int64_t off

cdef struct LCol:               # list<string> (or list<int64> when ivals is set)
    const uint8_t* valid
    const int32_t* loffs        # already sliced: n + 1 entries, absolute into the child
    SCol child
    const int64_t* ivals
    int64_t ioff

cdef struct ICol:
    const uint8_t* valid
    const int64_t* vals
    int64_t off

cdef struct Cols:
    SCol text, quoted, bio, bio_name, bio_loc
    SCol screen_name, irt_sn, rt_sn, lang, place_cc, source, place_id
    LCol urls, hashtags, mentions, cashtags, media, mention_ids
    ICol id, author_id, irt_uid, rt_uid, followers, rt_sid, irt_sid, q_sid
    const uint8_t* ver_valid
    const uint8_t* ver_bits
    int64_t ver_off
    const uint8_t* coord_valid
    int64_t coord_off
    const double* lon
    const double* lat


cdef inline bint bit(const uint8_t* b, int64_t i) noexcept nogil:
    return b == NULL or (b[i >> 3] >> (i & 7)) & 1


cdef inline bint s_get(SCol* c, int64_t row, const char** p, Py_ssize_t* n) noexcept nogil:
    cdef int64_t i = row + c.off
    if c.offs == NULL or not bit(c.valid, i):
        return 0
    p[0] = c.data + c.offs[i]
    n[0] = c.offs[i + 1] - c.offs[i]
    return 1


cdef inline uintptr_t _addr(object buf):
    return 0 if buf is None else <uintptr_t>buf.address


cdef int scol_from(SCol* c, object arr) except -1:
    b = arr.buffers()
    c.valid = <const uint8_t*>_addr(b[0]) if arr.null_count else NULL
    c.offs = <const int32_t*>_addr(b[1])
    c.data = <const char*>_addr(b[2])
    c.off = arr.offset
    return 0


cdef int icol_from(ICol* c, object arr) except -1:
    b = arr.buffers()
    c.valid = <const uint8_t*>_addr(b[0]) if arr.null_count else NULL
    c.vals = <const int64_t*>_addr(b[1])
    c.off = arr.offset
    return 0


cdef int lcol_from(LCol* c, object arr, list keep) except -1:
    offs = arr.offsets                     # sliced, absolute into values
    keep.append(offs)
    b = arr.buffers()
    c.valid = <const uint8_t*>_addr(b[0]) if arr.null_count else NULL
    c.loffs = <const int32_t*>_addr(offs.buffers()[1]) + <Py_ssize_t>offs.offset
    vals = arr.values
    keep.append(vals)
    if vals.type == pa.int64():
        c.ivals = <const int64_t*>_addr(vals.buffers()[1])
        c.ioff = vals.offset
        c.child.offs = NULL
    else:
        c.ivals = NULL
        scol_from(&c.child, vals)
    return 0


# ---------------------------------------------------------------- the row's terms

cdef struct Occ:
    uint64_t h
    int32_t pos
    int32_t next
    uint8_t field

cdef struct RowTerms:
    Occ* occ
    Py_ssize_t n, cap
    int32_t* slots              # head occurrence per slot, -1 empty
    Py_ssize_t nslots           # slots in use for this row (a power of two)
    Py_ssize_t slotcap          # slots allocated (the longest row so far)
    char* buf                   # namespace + 0x1f + token being hashed
    Py_ssize_t bufcap
    int32_t* cpend              # byte end of each code point of the token (prefixes)
    int32_t* fcpend
    char* fbuf
    Py_ssize_t fbufcap


cdef int rt_reserve_buf(RowTerms* r, Py_ssize_t need) except -1 nogil:
    cdef char* p
    cdef int32_t* q
    if need <= r.bufcap:
        return 0
    need = need * 2 + 64
    p = <char*>realloc(r.buf, need)
    if p == NULL:
        with gil:
            raise MemoryError()
    r.buf = p
    p = <char*>realloc(r.fbuf, need)
    if p == NULL:
        with gil:
            raise MemoryError()
    r.fbuf = p
    q = <int32_t*>realloc(r.cpend, need * 4)
    if q == NULL:
        with gil:
            raise MemoryError()
    r.cpend = q
    q = <int32_t*>realloc(r.fcpend, need * 4)
    if q == NULL:
        with gil:
            raise MemoryError()
    r.fcpend = q
    r.bufcap = need
    return 0


cdef inline int rt_add(RowTerms* r, uint64_t h, uint8_t field, int32_t pos) except -1 nogil:
    cdef Occ* p
    if r.n >= r.cap:
        r.cap = r.cap * 2 + 64
        p = <Occ*>realloc(r.occ, r.cap * sizeof(Occ))
        if p == NULL:
            with gil:
                raise MemoryError()
        r.occ = p
    r.occ[r.n].h = h
    r.occ[r.n].pos = pos
    r.occ[r.n].field = field
    r.occ[r.n].next = -1
    r.n += 1
    return 0


cdef inline uint64_t hash_ns(RowTerms* r, const char* ns, Py_ssize_t nslen, const char* tok,
                             Py_ssize_t toklen) except? 0 nogil:
    rt_reserve_buf(r, nslen + 1 + toklen)
    memcpy(r.buf, ns, nslen)
    r.buf[nslen] = 0x1F
    memcpy(r.buf + nslen + 1, tok, toklen)
    return XXH3_64bits(r.buf, nslen + 1 + toklen)


cdef inline uint32_t next_cp(const unsigned char* s, Py_ssize_t* i, Py_ssize_t n) noexcept nogil:
    """Decode the code point at s[i] (valid UTF-8) and advance i."""
    cdef unsigned char c = s[i[0]]
    cdef uint32_t cp
    if c < 0x80:
        i[0] += 1
        return c
    if c < 0xE0:
        cp = ((c & 0x1F) << 6) | (s[i[0] + 1] & 0x3F)
        i[0] += 2
        return cp
    if c < 0xF0:
        cp = ((c & 0x0F) << 12) | ((s[i[0] + 1] & 0x3F) << 6) | (s[i[0] + 2] & 0x3F)
        i[0] += 3
        return cp
    cp = ((c & 0x07) << 18) | ((s[i[0] + 1] & 0x3F) << 12) | ((s[i[0] + 2] & 0x3F) << 6) \
        | (s[i[0] + 3] & 0x3F)
    i[0] += 4
    return cp


cdef inline int utf8_put(char* o, uint32_t cp) noexcept nogil:
    if cp < 0x80:
        o[0] = <char>cp
        return 1
    if cp < 0x800:
        o[0] = <char>(0xC0 | (cp >> 6))
        o[1] = <char>(0x80 | (cp & 0x3F))
        return 2
    if cp < 0x10000:
        o[0] = <char>(0xE0 | (cp >> 12))
        o[1] = <char>(0x80 | ((cp >> 6) & 0x3F))
        o[2] = <char>(0x80 | (cp & 0x3F))
        return 3
    o[0] = <char>(0xF0 | (cp >> 18))
    o[1] = <char>(0x80 | ((cp >> 12) & 0x3F))
    o[2] = <char>(0x80 | ((cp >> 6) & 0x3F))
    o[3] = <char>(0x80 | (cp & 0x3F))
    return 4


cdef inline uint32_t u_lower(uint32_t cp) noexcept nogil:
    return U_LOWER[cp] if cp < <uint32_t>U_SIZE else cp


cdef inline uint32_t u_fold(uint32_t cp) noexcept nogil:
    return U_FOLD[cp] if cp < <uint32_t>U_SIZE else cp


cdef struct TokCfg:
    const char* ns
    Py_ssize_t nslen
    const char* fns           # folded namespace (NULL: none)
    Py_ssize_t fnslen
    uint64_t prefix_mask      # prefix lengths to hash (text fields only)
    uint8_t field
    int32_t base              # position offset


cdef int flush_word(RowTerms* r, TokCfg* cfg, Py_ssize_t blen, Py_ssize_t flen,
                    Py_ssize_t ncp, int32_t pos) except -1 nogil:
    """Hash the assembled word (r.fbuf holds the lower-case bytes at [0, blen), folded bytes
    after them at [blen, blen + flen))."""
    cdef Py_ssize_t k
    rt_add(r, hash_ns(r, cfg.ns, cfg.nslen, r.fbuf, blen), cfg.field, cfg.base + pos)
    if cfg.fns != NULL:
        rt_add(r, hash_ns(r, cfg.fns, cfg.fnslen, r.fbuf + blen, flen), cfg.field, cfg.base + pos)
    if cfg.prefix_mask:
        for k in range(3, (ncp if ncp < 63 else 63) + 1):
            if (cfg.prefix_mask >> k) & 1:
                rt_add(r, hash_ns(r, "p", 1, r.fbuf, r.cpend[k - 1]), cfg.field, cfg.base + pos)
                if cfg.fns != NULL:
                    rt_add(r, hash_ns(r, "pf", 2, r.fbuf + blen, r.fcpend[k - 1] - blen),
                           cfg.field, cfg.base + pos)
    return 0


cdef int tokenize_into(RowTerms* r, const char* text, Py_ssize_t n, TokCfg* cfg) except -1 nogil:
    """Cut text into tokens (docs/rules.md) and add their term hashes. Returns 0."""
    cdef const unsigned char* s = <const unsigned char*>text
    cdef Py_ssize_t i = 0, blen = 0, flen = 0, ncp = 0, j
    cdef int32_t pos = 0
    cdef uint32_t cp, lc, fc, prev_l = 0, prev_f = 0
    cdef bint prev_cjk = 0
    cdef uint8_t k
    cdef char w[8]
    cdef char fw[8]
    cdef int wl, fl
    # The current word's lower-case bytes build up in r.fbuf and its folded bytes in r.buf;
    # when it ends the folded bytes are moved behind the lower ones (r.fbuf = lower | folded)
    # before r.buf is reused for hashing. Lower-casing can grow a code point from 2 to 3 bytes.
    rt_reserve_buf(r, 4 * n + 64)
    while i < n:
        cp = next_cp(s, &i, n)
        k = U_CLS[cp] if cp < <uint32_t>U_SIZE else U_SEP
        if k == U_WORD:
            lc = u_lower(cp)
            wl = utf8_put(r.fbuf + blen, lc)
            blen += wl
            r.cpend[ncp] = <int32_t>blen
            # folded bytes go to r.buf as scratch until the word ends
            if cfg.fns != NULL:
                fc = u_fold(cp)
                fl = utf8_put(r.buf + flen, fc)
                flen += fl
                r.fcpend[ncp] = <int32_t>flen
            ncp += 1
            prev_cjk = 0
            continue
        if blen:
            if cfg.fns != NULL:
                # move the folded bytes behind the lower ones: fbuf = lower | folded
                memcpy(r.fbuf + blen, r.buf, flen)
                for j in range(ncp):
                    r.fcpend[j] += <int32_t>blen
            flush_word(r, cfg, blen, flen, ncp, pos)
            pos += 1
            blen = 0
            flen = 0
            ncp = 0
        if k == U_CJK:
            lc = u_lower(cp)
            fc = u_fold(cp)
            if prev_cjk:
                # the bigram, at the previous character's position
                wl = utf8_put(w, prev_l)
                wl += utf8_put(w + wl, lc)
                rt_add(r, hash_ns(r, cfg.ns, cfg.nslen, w, wl), cfg.field, cfg.base + pos - 1)
                if cfg.fns != NULL:
                    fl = utf8_put(fw, prev_f)
                    fl += utf8_put(fw + fl, fc)
                    rt_add(r, hash_ns(r, cfg.fns, cfg.fnslen, fw, fl), cfg.field,
                           cfg.base + pos - 1)
            wl = utf8_put(w, lc)
            rt_add(r, hash_ns(r, cfg.ns, cfg.nslen, w, wl), cfg.field, cfg.base + pos)
            if cfg.fns != NULL:
                fl = utf8_put(fw, fc)
                rt_add(r, hash_ns(r, cfg.fns, cfg.fnslen, fw, fl), cfg.field, cfg.base + pos)
            pos += 1
            prev_cjk = 1
            prev_l = lc
            prev_f = fc
            continue
        prev_cjk = 0
        if k == U_SYMBOL:
            lc = u_lower(cp)
            wl = utf8_put(w, lc)
            rt_add(r, hash_ns(r, cfg.ns, cfg.nslen, w, wl), cfg.field, cfg.base + pos)
            if cfg.fns != NULL:
                fl = utf8_put(fw, u_fold(cp))
                rt_add(r, hash_ns(r, cfg.fns, cfg.fnslen, fw, fl), cfg.field, cfg.base + pos)
            pos += 1
    if blen:
        if cfg.fns != NULL:
            memcpy(r.fbuf + blen, r.buf, flen)
            for j in range(ncp):
                r.fcpend[j] += <int32_t>blen
        flush_word(r, cfg, blen, flen, ncp, pos)
    return 0


cdef int add_value(RowTerms* r, const char* ns, const char* p, Py_ssize_t n) except -1 nogil:
    """A whole value, lower-cased code point by code point, as one term."""
    cdef const unsigned char* s = <const unsigned char*>p
    cdef Py_ssize_t i = 0, bl = 0
    rt_reserve_buf(r, 4 * n + 64)
    while i < n:
        bl += utf8_put(r.fbuf + bl, u_lower(next_cp(s, &i, n)))
    rt_add(r, hash_ns(r, ns, strlen(ns), r.fbuf, bl), FLD_VALUE, 0)
    return 0


cdef int add_id(RowTerms* r, const char* ns, int64_t v) except -1 nogil:
    cdef char tmp[24]
    cdef int k = 24
    if v == 0:
        k -= 1
        tmp[k] = 0x30
    while v > 0:
        k -= 1
        tmp[k] = <char>(0x30 + v % 10)
        v //= 10
    rt_add(r, hash_ns(r, ns, strlen(ns), tmp + k, 24 - k), FLD_VALUE, 0)
    return 0


cdef int rt_index(RowTerms* r) except -1 nogil:
    """Chain the occurrences by term: slots[h] -> first occurrence, occ.next -> the next."""
    cdef Py_ssize_t need = 16, i, j
    cdef int32_t* p
    while need < 2 * r.n:
        need *= 2
    if need > r.slotcap:
        p = <int32_t*>realloc(r.slots, need * 4)
        if p == NULL:
            with gil:
                raise MemoryError()
        r.slots = p
        r.slotcap = need
    r.nslots = need            # sized to this row: one long row must not slow the next ones
    memset(r.slots, 0xFF, r.nslots * 4)
    for i in range(r.n - 1, -1, -1):
        j = <Py_ssize_t>(mix64(r.occ[i].h) & (r.nslots - 1))
        while r.slots[j] >= 0 and r.occ[r.slots[j]].h != r.occ[i].h:
            j = (j + 1) & (r.nslots - 1)
        r.occ[i].next = r.slots[j]
        r.slots[j] = <int32_t>i
    return 0


cdef inline int32_t rt_find(RowTerms* r, uint64_t h) noexcept nogil:
    cdef Py_ssize_t j = <Py_ssize_t>(mix64(h) & (r.nslots - 1))
    while r.slots[j] >= 0:
        if r.occ[r.slots[j]].h == h:
            return r.slots[j]
        j = (j + 1) & (r.nslots - 1)
    return -1


# ---------------------------------------------------------------- evaluation

cdef struct MState:
    const int64_t* prog
    const int64_t* prog_off
    const char* pool
    # anchors: open addressing over the unique anchor hashes -> CSR index
    uint64_t* akeys
    int32_t* avals
    Py_ssize_t anslots
    const int64_t* aoff
    const int32_t* arule
    const int32_t* always
    Py_ssize_t nalways
    Py_ssize_t nrules
    uint64_t prefix_mask
    bint fold
    uint32_t fields             # which term namespaces to produce (rules.compile.FIELD_BITS)
    int32_t* stamp              # per rule: last row it was a candidate for
    int32_t* cand
    uint8_t* stack
    Py_ssize_t stackcap
    Buf lowtext                 # lower-cased text / quoted / urls for contains:
    const char* lowtext_of      # the value lowtext holds (reset per match() call)
    Py_ssize_t lowtext_n
    Buf out_rows
    Buf out_rules


cdef struct PItem:
    int32_t pos
    int32_t tok          # index of the distinct hash


cdef int cmp_pitem(const void* a, const void* b) noexcept nogil:
    cdef int32_t x = (<const PItem*>a).pos, y = (<const PItem*>b).pos
    return -1 if x < y else (1 if x > y else 0)


cdef bint prox_field(RowTerms* r, const int64_t* hs, int k, uint8_t field, int64_t inord,
                     int64_t other) except -1 nogil:
    """Proximity in one field, in polynomial time whatever the repeats.

    In the rule's order (positions strictly increasing, span <= inord): for each position of
    the first token, take greedily the next larger position of each following token.
    Any order (span <= other): a window of width ``other`` holding, for every distinct token,
    at least as many of its occurrences as the phrase repeats it (an occurrence has one hash,
    so distinct tokens never compete for one: counting is matching)."""
    cdef int i, j, d, nd = 0, sat
    cdef uint64_t dh[64]
    cdef int need[64]
    cdef int have[64]
    cdef int tokd[64]
    cdef int32_t o, cur, start, p
    cdef Py_ssize_t n = 0, lo, hi, cap
    cdef PItem* items
    cdef bint found
    # distinct hashes and how many times the phrase uses each
    for i in range(k):
        for d in range(nd):
            if dh[d] == <uint64_t>hs[2 * i]:
                break
        else:
            d = nd
            dh[nd] = <uint64_t>hs[2 * i]
            need[nd] = 0
            nd += 1
        need[d] += 1
        tokd[i] = d
    # every occurrence in this field of a distinct hash, sorted by position
    cap = 0
    for d in range(nd):
        o = rt_find(r, dh[d])
        while o >= 0:
            if r.occ[o].field == field:
                cap += 1
            o = r.occ[o].next
    if cap == 0:
        return 0
    if cap * <Py_ssize_t>sizeof(PItem) > r.bufcap:
        rt_reserve_buf(r, cap * sizeof(PItem))
    items = <PItem*>r.buf
    for d in range(nd):
        o = rt_find(r, dh[d])
        while o >= 0:
            if r.occ[o].field == field:
                items[n].pos = r.occ[o].pos
                items[n].tok = d
                n += 1
            o = r.occ[o].next
    qsort(items, n, sizeof(PItem), cmp_pitem)
    if inord >= 0:
        for lo in range(n):
            if items[lo].tok != tokd[0]:
                continue
            start = items[lo].pos
            cur = start
            found = 1
            hi = lo
            for i in range(1, k):
                # the next occurrence of token i after cur
                j = -1
                for p in range(hi + 1, n):
                    if items[p].tok == tokd[i] and items[p].pos > cur:
                        j = p
                        break
                if j < 0:
                    return 0 if other < 0 else _window(items, n, nd, need, other, have)
                cur = items[j].pos
                hi = j
                if cur - start > inord:
                    found = 0
                    break
            if found:
                return 1
    if other < 0:
        return 0
    return _window(items, n, nd, need, other, have)


cdef bint _window(PItem* items, Py_ssize_t n, int nd, int* need, int64_t width,
                  int* have) noexcept nogil:
    """Is there a window [x, x + width] with have[d] >= need[d] for every distinct token d?"""
    cdef Py_ssize_t lo = 0, hi
    cdef int d, sat = 0
    for d in range(nd):
        have[d] = 0
    for hi in range(n):
        d = items[hi].tok
        have[d] += 1
        if have[d] == need[d]:
            sat += 1
        while items[hi].pos - items[lo].pos > width:
            d = items[lo].tok
            if have[d] == need[d]:
                sat -= 1
            have[d] -= 1
            lo += 1
        if sat == nd:
            return 1
    return 0


cdef bint eval_seq(RowTerms* r, const int64_t* w) except -1 nogil:
    """w = [k, inord, other, (hash, rel) * k]."""
    cdef int k = <int>w[0], i
    cdef int64_t inord = w[1], other = w[2]
    cdef const int64_t* hs = w + 3
    cdef int32_t o, q, p
    cdef bint ok
    cdef uint32_t seen = 0
    if k > 64:
        return 0
    if inord >= 0:
        # proximity: try each field the first token occurs in (fields are 0..15)
        o = rt_find(r, <uint64_t>hs[0])
        while o >= 0:
            if not (seen >> r.occ[o].field) & 1:
                seen |= 1u << r.occ[o].field
                if prox_field(r, hs, k, r.occ[o].field, inord, other):
                    return 1
            o = r.occ[o].next
        return 0
    o = rt_find(r, <uint64_t>hs[0])
    while o >= 0:
        # a phrase: token i at the first token's position + rel[i]
        p = r.occ[o].pos
        ok = 1
        for i in range(1, k):
            q = rt_find(r, <uint64_t>hs[2 * i])
            while q >= 0 and not (r.occ[q].field == r.occ[o].field
                                  and r.occ[q].pos == p + <int32_t>hs[2 * i + 1]):
                q = r.occ[q].next
            if q < 0:
                ok = 0
                break
        if ok:
            return 1
        o = r.occ[o].next
    return 0


cdef bint lower_contains(MState* m, SCol* c, int64_t row, const char* needle, Py_ssize_t nl) except -1 nogil:
    """Does column c at row, lower-cased code point by code point, contain needle?"""
    cdef const char* p
    cdef Py_ssize_t n, i = 0
    if not s_get(c, row, &p, &n):
        return 0
    if p != m.lowtext_of or n != m.lowtext_n:
        # several contains: rules ask about the same value: lower-case it once
        m.lowtext.len = 0
        buf_reserve(&m.lowtext, 4 * n + 8)
        while i < n:
            m.lowtext.len += utf8_put(m.lowtext.data + m.lowtext.len,
                                      u_lower(next_cp(<const unsigned char*>p, &i, n)))
        m.lowtext_of = p
        m.lowtext_n = n
    if nl == 0:
        return 1
    if nl > m.lowtext.len:
        return 0
    return memmem(m.lowtext.data, m.lowtext.len, needle, nl) != NULL


cdef bint list_has(LCol* c, int64_t row, const char* v, Py_ssize_t vl) noexcept nogil:
    cdef int32_t a = c.loffs[row], b = c.loffs[row + 1], k
    cdef const char* p
    cdef Py_ssize_t n
    for k in range(a, b):
        if s_get(&c.child, k, &p, &n) and n == vl and memcmp(p, v, vl) == 0:
            return 1
    return 0


cdef inline double f64_of(int64_t w) noexcept nogil:
    cdef double d
    memcpy(&d, &w, 8)
    return d


cdef int run_program(MState* m, Cols* c, RowTerms* r, int64_t row, Py_ssize_t rule) except -1 nogil:
    """1 if rule matches row."""
    cdef const int64_t* w = m.prog + m.prog_off[rule]
    cdef const int64_t* end = m.prog + m.prog_off[rule + 1]
    cdef Py_ssize_t sp = 0, k, n
    cdef int64_t op, v, lo, hi
    cdef bint res, b
    cdef uint8_t* st = m.stack
    cdef int64_t i
    cdef double lon, lat, d, dlat, dlon, a
    cdef int32_t x, y
    cdef const char* p
    cdef Py_ssize_t pl
    while w < end:
        op = w[0]
        if op == OP_TERM:
            res = rt_find(r, <uint64_t>w[1]) >= 0
            w += 2
        elif op == OP_SEQ:
            res = eval_seq(r, w + 1)
            w += 4 + 2 * w[1]
        elif op == OP_AND or op == OP_OR:
            n = w[1]
            sp -= n
            res = (op == OP_AND)
            for k in range(sp, sp + n):
                if op == OP_AND:
                    res = res and st[k]
                else:
                    res = res or st[k]
            w += 2
        elif op == OP_NOT:
            sp -= 1
            res = not st[sp]
            w += 1
        elif op == OP_NOTNULL:
            v = w[1]
            if v == 0:
                res = bit(c.rt_sid.valid, row + c.rt_sid.off)
            elif v == 1:
                res = bit(c.irt_sid.valid, row + c.irt_sid.off)
            elif v == 2:
                res = bit(c.q_sid.valid, row + c.q_sid.off)
            elif v == 3:
                res = bit(c.coord_valid, row + c.coord_off)
            else:
                res = bit(c.place_id.valid, row + c.place_id.off)
            w += 2
        elif op == OP_TRUE:
            i = row + c.ver_off
            res = bit(c.ver_valid, i) and ((c.ver_bits[i >> 3] >> (i & 7)) & 1)
            w += 2
        elif op == OP_NONEMPTY:
            v = w[1]
            if v == 6:
                res = c.urls.loffs[row + 1] > c.urls.loffs[row]
            elif v == 7:
                res = c.media.loffs[row + 1] > c.media.loffs[row]
            elif v == 8:
                res = c.mentions.loffs[row + 1] > c.mentions.loffs[row]
            elif v == 9:
                res = c.hashtags.loffs[row + 1] > c.hashtags.loffs[row]
            else:
                res = c.cashtags.loffs[row + 1] > c.cashtags.loffs[row]
            w += 2
        elif op == OP_LISTHAS:
            res = list_has(&c.media, row, m.pool + w[2], w[3])
            w += 4
        elif op == OP_RANGE:
            i = row + c.followers.off
            res = bit(c.followers.valid, i) and w[2] <= c.followers.vals[i] <= w[3]
            w += 4
        elif op == OP_BBOX or op == OP_RADIUS:
            i = row + c.coord_off
            res = bit(c.coord_valid, i)
            if res:
                lon = c.lon[i]
                lat = c.lat[i]
                if op == OP_BBOX:
                    res = f64_of(w[1]) <= lon <= f64_of(w[3]) and f64_of(w[2]) <= lat <= f64_of(w[4])
                else:
                    dlat = (lat - f64_of(w[2])) * M_PI / 180.0
                    dlon = (lon - f64_of(w[1])) * M_PI / 180.0
                    a = sin(dlat / 2) ** 2 + cos(f64_of(w[2]) * M_PI / 180.0) * \
                        cos(lat * M_PI / 180.0) * sin(dlon / 2) ** 2
                    d = 2 * 6371.0088 * asin(sqrt(a))
                    res = d <= f64_of(w[3])
            w += 5 if op == OP_BBOX else 4
        elif op == OP_SAMPLE:
            i = c.id.vals[row + c.id.off]
            res = (XXH3_64bits(&i, 8) % 100) < <uint64_t>w[1]
            w += 2
        elif op == OP_CONTAINS:
            res = lower_contains(m, &c.text, row, m.pool + w[1], w[2]) or \
                lower_contains(m, &c.quoted, row, m.pool + w[1], w[2])
            w += 3
        elif op == OP_URLCONTAINS:
            res = 0
            for x in range(c.urls.loffs[row], c.urls.loffs[row + 1]):
                if lower_contains(m, &c.urls.child, x, m.pool + w[1], w[2]):
                    res = 1
                    break
            w += 3
        else:
            with gil:
                raise ValueError("corrupt rule program (opcode %d)" % op)
        if sp >= m.stackcap:
            with gil:
                raise ValueError("corrupt rule program (stack)")
        st[sp] = res
        sp += 1
    return st[0] if sp == 1 else 0


cdef inline bint want(MState* m, int b) noexcept nogil:
    return (m.fields >> b) & 1


cdef int row_terms(MState* m, Cols* c, RowTerms* r, int64_t row) except -1 nogil:
    """All the row's terms that some rule of the set can ask for."""
    cdef TokCfg cfg
    cdef const char* p
    cdef Py_ssize_t n
    cdef int32_t k
    r.n = 0
    cfg.prefix_mask = m.prefix_mask
    cfg.ns = "t"
    cfg.nslen = 1
    cfg.fns = NULL
    if m.fold:
        cfg.fns = "tf"
    cfg.fnslen = 2
    cfg.base = 0
    if want(m, 0):
        cfg.field = FLD_TEXT
        if s_get(&c.text, row, &p, &n):
            tokenize_into(r, p, n, &cfg)
        cfg.field = FLD_QUOTED
        if s_get(&c.quoted, row, &p, &n):
            tokenize_into(r, p, n, &cfg)
    cfg.prefix_mask = 0
    cfg.fns = NULL
    cfg.ns = "b"
    cfg.nslen = 1
    cfg.field = FLD_BIO
    if want(m, 1) and s_get(&c.bio, row, &p, &n):
        tokenize_into(r, p, n, &cfg)
    cfg.ns = "bn"
    cfg.nslen = 2
    cfg.field = FLD_BIO_NAME
    if want(m, 2) and s_get(&c.bio_name, row, &p, &n):
        tokenize_into(r, p, n, &cfg)
    cfg.ns = "bl"
    cfg.field = FLD_BIO_LOC
    if want(m, 3) and s_get(&c.bio_loc, row, &p, &n):
        tokenize_into(r, p, n, &cfg)
    cfg.ns = "u"
    cfg.nslen = 1
    cfg.field = FLD_URL
    if want(m, 4):
        for k in range(c.urls.loffs[row], c.urls.loffs[row + 1]):
            cfg.base = (k - c.urls.loffs[row]) << 20
            if s_get(&c.urls.child, k, &p, &n):
                tokenize_into(r, p, n, &cfg)
    if want(m, 5):
        for k in range(c.hashtags.loffs[row], c.hashtags.loffs[row + 1]):
            if s_get(&c.hashtags.child, k, &p, &n):
                add_value(r, "h", p, n)
    if want(m, 6):
        for k in range(c.mentions.loffs[row], c.mentions.loffs[row + 1]):
            if s_get(&c.mentions.child, k, &p, &n):
                add_value(r, "m", p, n)
    if want(m, 7):
        for k in range(c.cashtags.loffs[row], c.cashtags.loffs[row + 1]):
            if s_get(&c.cashtags.child, k, &p, &n):
                add_value(r, "c", p, n)
    if want(m, 8):
        for k in range(c.mention_ids.loffs[row], c.mention_ids.loffs[row + 1]):
            add_id(r, "mi", c.mention_ids.ivals[k + c.mention_ids.ioff])
    if want(m, 9) and s_get(&c.screen_name, row, &p, &n):
        add_value(r, "f", p, n)
    if want(m, 10) and bit(c.author_id.valid, row + c.author_id.off):
        add_id(r, "fi", c.author_id.vals[row + c.author_id.off])
    if want(m, 11) and s_get(&c.irt_sn, row, &p, &n):
        add_value(r, "to", p, n)
    if want(m, 12) and bit(c.irt_uid.valid, row + c.irt_uid.off):
        add_id(r, "toi", c.irt_uid.vals[row + c.irt_uid.off])
    if want(m, 13) and s_get(&c.rt_sn, row, &p, &n):
        add_value(r, "rt", p, n)
    if want(m, 14) and bit(c.rt_uid.valid, row + c.rt_uid.off):
        add_id(r, "rti", c.rt_uid.vals[row + c.rt_uid.off])
    if want(m, 15) and s_get(&c.lang, row, &p, &n):
        add_value(r, "lg", p, n)
    if want(m, 16) and s_get(&c.place_cc, row, &p, &n):
        add_value(r, "pc", p, n)
    if want(m, 17) and s_get(&c.source, row, &p, &n):
        add_value(r, "src", p, n)
    rt_index(r)
    return 0


cdef int cmp_i32(const void* a, const void* b) noexcept nogil:
    return (<const int32_t*>a)[0] - (<const int32_t*>b)[0]


cdef inline void isort_i32(int32_t* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef int32_t x
    for i in range(1, n):
        x = a[i]
        j = i - 1
        while j >= 0 and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


cdef int match_rows(MState* m, Cols* c, RowTerms* r, int64_t nrows) except -1 nogil:
    cdef int64_t row
    cdef Py_ssize_t i, ncand, j
    cdef int32_t o, rule, slot
    cdef uint64_t h
    cdef Py_ssize_t s
    cdef int64_t a
    for row in range(nrows):
        row_terms(m, c, r, row)
        ncand = 0
        # candidates: the rules anchored on one of the row's distinct terms
        for i in range(r.nslots):
            o = r.slots[i]
            if o < 0:
                continue
            h = r.occ[o].h
            s = <Py_ssize_t>(mix64(h) & (m.anslots - 1))
            while m.avals[s] >= 0:
                if m.akeys[s] == h:
                    for a in range(m.aoff[m.avals[s]], m.aoff[m.avals[s] + 1]):
                        rule = m.arule[a]
                        if m.stamp[rule] != <int32_t>row:
                            m.stamp[rule] = <int32_t>row
                            m.cand[ncand] = rule
                            ncand += 1
                    break
                s = (s + 1) & (m.anslots - 1)
        for i in range(m.nalways):
            rule = m.always[i]
            if m.stamp[rule] != <int32_t>row:
                m.stamp[rule] = <int32_t>row
                m.cand[ncand] = rule
                ncand += 1
        if ncand > 1:
            if ncand <= 32:
                isort_i32(m.cand, ncand)       # the common case: a handful of candidates
            else:
                qsort(m.cand, ncand, 4, cmp_i32)
        for j in range(ncand):
            if run_program(m, c, r, row, m.cand[j]):
                buf_i64(&m.out_rows, row)
                buf_i32(&m.out_rules, m.cand[j])
    return 0


cdef class Matcher:
    """A compiled rule set in C (built by firehose.rules.RuleSet; not public)."""
    cdef MState m
    cdef RowTerms r
    cdef object keep

    def __cinit__(self, prog, prog_off, bytes pool, anchor_hash, anchor_off, anchor_rule,
                  always, uint64_t prefix_mask, bint fold, uint32_t fields=0xFFFFFFFF):
        cdef const int64_t[::1] pv = prog
        cdef const int64_t[::1] po = prog_off
        cdef const uint64_t[::1] ah = anchor_hash
        cdef const int64_t[::1] ao = anchor_off
        cdef const int32_t[::1] ar = anchor_rule
        cdef const int32_t[::1] al = always
        cdef Py_ssize_t i, nh = ah.shape[0], ns = 16, s, maxlen = 1
        memset(&self.m, 0, sizeof(MState))
        memset(&self.r, 0, sizeof(RowTerms))
        if U_CLS == NULL:
            raise RuntimeError("set_unicode_tables() first")
        self.keep = (prog, prog_off, pool, anchor_hash, anchor_off, anchor_rule, always)
        if pv.shape[0]:
            self.m.prog = &pv[0]
        self.m.prog_off = &po[0]
        self.m.pool = <const char*>pool
        self.m.nrules = po.shape[0] - 1
        self.m.aoff = &ao[0]
        if ar.shape[0]:
            self.m.arule = &ar[0]
        if al.shape[0]:
            self.m.always = &al[0]
        self.m.nalways = al.shape[0]
        self.m.prefix_mask = prefix_mask
        self.m.fold = fold
        self.m.fields = fields
        while ns < 2 * nh:
            ns *= 2
        self.m.anslots = ns
        self.m.akeys = <uint64_t*>malloc(ns * 8)
        self.m.avals = <int32_t*>malloc(ns * 4)
        self.m.stamp = <int32_t*>malloc((self.m.nrules + 1) * 4)
        self.m.cand = <int32_t*>malloc((self.m.nrules + 1) * 4)
        for i in range(self.m.nrules):
            if po[i + 1] - po[i] > maxlen:
                maxlen = po[i + 1] - po[i]
        self.m.stackcap = maxlen + 1
        self.m.stack = <uint8_t*>malloc(self.m.stackcap)
        if (self.m.akeys == NULL or self.m.avals == NULL or self.m.stamp == NULL
                or self.m.cand == NULL or self.m.stack == NULL):
            raise MemoryError()
        memset(self.m.avals, 0xFF, ns * 4)
        memset(self.m.stamp, 0xFF, (self.m.nrules + 1) * 4)
        for i in range(nh):
            s = <Py_ssize_t>(mix64(ah[i]) & (ns - 1))
            while self.m.avals[s] >= 0:
                s = (s + 1) & (ns - 1)
            self.m.akeys[s] = ah[i]
            self.m.avals[s] = <int32_t>i

    def __dealloc__(self):
        free(self.m.akeys)
        free(self.m.avals)
        free(self.m.stamp)
        free(self.m.cand)
        free(self.m.stack)
        buf_free(&self.m.lowtext)
        buf_free(&self.m.out_rows)
        buf_free(&self.m.out_rules)
        free(self.r.occ)
        free(self.r.slots)
        free(self.r.buf)
        free(self.r.fbuf)
        free(self.r.cpend)
        free(self.r.fcpend)

    def match(self, tweets):
        """(rows int64[], rule indices int32[]) of every match in a single-chunk tweets table."""
        cdef Cols c
        cdef list keep = []
        cdef int64_t n = tweets.num_rows
        memset(&c, 0, sizeof(Cols))

        def col(name):
            a = tweets.column(name)
            a = a.chunk(0) if a.num_chunks == 1 else pa.concat_arrays(a.chunks)
            keep.append(a)
            return a
        scol_from(&c.text, col("text"))
        scol_from(&c.quoted, col("quoted_text"))
        scol_from(&c.bio, col("author_description"))
        scol_from(&c.bio_name, col("author_name"))
        scol_from(&c.bio_loc, col("author_location"))
        scol_from(&c.screen_name, col("author_screen_name"))
        scol_from(&c.irt_sn, col("in_reply_to_screen_name"))
        scol_from(&c.rt_sn, col("retweeted_screen_name"))
        scol_from(&c.lang, col("lang"))
        scol_from(&c.place_cc, col("place_country_code"))
        scol_from(&c.source, col("source"))
        scol_from(&c.place_id, col("place_id"))
        lcol_from(&c.urls, col("urls"), keep)
        lcol_from(&c.hashtags, col("hashtags"), keep)
        lcol_from(&c.mentions, col("mentions"), keep)
        lcol_from(&c.cashtags, col("cashtags"), keep)
        lcol_from(&c.media, col("media_types"), keep)
        lcol_from(&c.mention_ids, col("mention_ids"), keep)
        icol_from(&c.id, col("id"))
        icol_from(&c.author_id, col("author_id"))
        icol_from(&c.irt_uid, col("in_reply_to_user_id"))
        icol_from(&c.rt_uid, col("retweeted_user_id"))
        icol_from(&c.followers, col("author_followers_count"))
        icol_from(&c.rt_sid, col("retweeted_status_id"))
        icol_from(&c.irt_sid, col("in_reply_to_status_id"))
        icol_from(&c.q_sid, col("quoted_status_id"))
        v = col("author_verified")
        b = v.buffers()
        c.ver_valid = <const uint8_t*>_addr(b[0]) if v.null_count else NULL
        c.ver_bits = <const uint8_t*>_addr(b[1])
        c.ver_off = v.offset
        co = col("coordinates")
        b = co.buffers()
        c.coord_valid = <const uint8_t*>_addr(b[0]) if co.null_count else NULL
        c.coord_off = co.offset
        lon = co.field(0)
        lat = co.field(1)
        keep += [lon, lat]
        # StructArray.field() applies the struct's offset: index with the struct's own offset
        c.lon = <const double*>_addr(lon.buffers()[1]) + <Py_ssize_t>lon.offset - <Py_ssize_t>co.offset
        c.lat = <const double*>_addr(lat.buffers()[1]) + <Py_ssize_t>lat.offset - <Py_ssize_t>co.offset
        self.m.out_rows.len = 0
        self.m.out_rules.len = 0
        self.m.lowtext_of = NULL          # another table may reuse the same addresses
        memset(self.m.stamp, 0xFF, (self.m.nrules + 1) * 4)
        with nogil:
            match_rows(&self.m, &c, &self.r, n)
        rows = np.frombuffer(bytes(self.m.out_rows.data[:self.m.out_rows.len]), np.int64) \
            if self.m.out_rows.len else np.empty(0, np.int64)
        rules = np.frombuffer(bytes(self.m.out_rules.data[:self.m.out_rules.len]), np.int32) \
            if self.m.out_rules.len else np.empty(0, np.int32)
        return rows, rules


def tokenize_text(str text, bint fold=False, uint64_t prefix_mask=0):
    """The core tokeniser on one string, for tests: [(term hash, position)] of namespace ``t``
    (and ``tf``, ``p``, ``pf`` as asked), in emission order."""
    cdef RowTerms r
    cdef TokCfg cfg
    cdef bytes b = text.encode("utf-8", "surrogatepass")
    cdef Py_ssize_t i
    if U_CLS == NULL:
        raise RuntimeError("set_unicode_tables() first")
    memset(&r, 0, sizeof(RowTerms))
    cfg.ns = "t"
    cfg.nslen = 1
    cfg.fns = NULL
    if fold:
        cfg.fns = "tf"
    cfg.fnslen = 2
    cfg.prefix_mask = prefix_mask
    cfg.field = FLD_TEXT
    cfg.base = 0
    try:
        tokenize_into(&r, <const char*>b, len(b), &cfg)
        return [(r.occ[i].h, r.occ[i].pos) for i in range(r.n)]
    finally:
        free(r.occ)
        free(r.slots)
        free(r.buf)
        free(r.fbuf)
        free(r.cpend)
        free(r.fcpend)
