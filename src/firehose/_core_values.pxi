# Reading typed values out of the tape: member lookup, ids, integers, times, floats.
# Included by _core.pyx; everything runs without the GIL. The rules are docs/fields.md's.

cdef int64_t INT64_MAX_ = 0x7FFFFFFFFFFFFFFF
cdef int64_t NO_TIME = -0x7FFFFFFFFFFFFFFF - 1


cdef uint32_t* members(Tape* t, uint32_t obj) noexcept nogil:
    """Object ``obj``'s member table: the value node of each KY_ key (the last one if repeated)
    or NONE, built on first use and cached for the line in one of 64 direct-mapped slots of
    fixed storage (~30 KB a tape, reserved by parse_line: a line of many small objects
    overwrites slots instead of growing the buffer by a table per object)."""
    cdef int c
    cdef uint32_t i, k, n, kid
    cdef Py_ssize_t off
    cdef uint32_t* tab
    c = obj & 63
    if t.cobj[c] == obj:
        return <uint32_t*>(t.mem.data + c * KY_COUNT * <Py_ssize_t>sizeof(uint32_t))
    n = t.nodes[obj].count
    off = c * KY_COUNT * <Py_ssize_t>sizeof(uint32_t)
    tab = <uint32_t*>(t.mem.data + off)
    memset(tab, 0xFF, KY_COUNT * sizeof(uint32_t))
    i = obj + 1
    for k in range(n):
        kid = t.nodes[i].count
        if kid < KY_COUNT:
            tab[kid] = i + 1
        i = t.nodes[i + 1].next
    t.cobj[c] = obj
    return tab


cdef inline uint32_t get(Tape* t, uint32_t obj, uint32_t key, Buf* tmp) noexcept nogil:
    """Tape index of member ``key`` (a KY_ number) of object ``obj`` (the last one if
    repeated), or NONE."""
    cdef Node* nd
    cdef int c
    if obj == NONE:
        return NONE
    nd = &t.nodes[obj]
    if nd.type != J_OBJ or nd.count == 0:
        return NONE
    c = obj & 63
    if t.cobj[c] == obj:
        return (<uint32_t*>(t.mem.data + c * KY_COUNT * <Py_ssize_t>sizeof(uint32_t)))[key]
    return get_slow(t, obj, key)


cdef uint32_t get_slow(Tape* t, uint32_t obj, uint32_t key) noexcept nogil:
    cdef uint32_t count, j, i, found
    count = t.nodes[obj].count
    if count <= 8 and t.nodes[obj].flags < F_ASKED * 3:
        # small objects (entity elements, ...) are asked once or twice: a plain scan is cheaper
        # than building their table; one asked a third time (a message's root, a user) gets it
        t.nodes[obj].flags += F_ASKED
        found = NONE
        i = obj + 1
        for j in range(count):
            if t.nodes[i].count == key:
                found = i + 1
            i = t.nodes[i + 1].next
        return found
    return members(t, obj)[key]


cdef inline uint32_t get2(Tape* t, uint32_t obj, uint32_t k1, uint32_t k2, Buf* tmp) noexcept nogil:
    return get(t, get(t, obj, k1, tmp), k2, tmp)


cdef inline bint is_type(Tape* t, uint32_t v, int typ) noexcept nogil:
    return v != NONE and t.nodes[v].type == typ


cdef inline uint32_t first_key(Tape* t, uint32_t obj) noexcept nogil:
    if obj == NONE or t.nodes[obj].type != J_OBJ or t.nodes[obj].count == 0:
        return NONE
    return obj + 1


cdef int str_view(Tape* t, uint32_t v, const char** p, Py_ssize_t* n, Buf* tmp) except -1 nogil:
    """Point (p, n) at the decoded bytes of string node v: in the line, or decoded into tmp."""
    cdef Node* nd = &t.nodes[v]
    if not (nd.flags & F_ESC):
        p[0] = <const char*>(t.s + nd.start)
        n[0] = nd.end - nd.start
        return 0
    tmp.len = 0
    unescape(t.s, nd.start, nd.end, tmp, t.n)
    p[0] = tmp.data
    n[0] = tmp.len
    return 0


cdef extern from *:
    """
    /* 1-19 ASCII digits with a value <= 2^63-1, else -1: 8 digits a step (checked as fh_digits
       does, then combined in pairs, fours and eights) */
    static inline int64_t fh_digits_to_id(const char* p, Py_ssize_t n) {
        const uint64_t hi = 0xF0F0F0F0F0F0F0F0ULL, d0 = 0x3030303030303030ULL, six = 0x0606060606060606ULL;
        uint64_t v = 0, w;
        Py_ssize_t k = 0;
        unsigned c;
        if (n < 1 || n > 19) return -1;
        while (k + 8 <= n) {
            memcpy(&w, p + k, 8);
            if (((w & hi) ^ d0) | (((w + six) & hi) ^ d0)) return -1;
            w -= d0;
            w = ((w * 10) + (w >> 8)) & 0x00FF00FF00FF00FFULL;
            w = ((w * 100) + (w >> 16)) & 0x0000FFFF0000FFFFULL;
            w = ((w * 10000) + (w >> 32)) & 0xFFFFFFFFULL;
            v = v * 100000000ULL + w;
            k += 8;
        }
        for (; k < n; k++) {
            c = (unsigned)(unsigned char)p[k] - 0x30u;
            if (c >= 10u) return -1;
            v = v * 10 + c;
        }
        if (v > 0x7FFFFFFFFFFFFFFFULL) return -1;
        return (int64_t)v;
    }
    """
    int64_t digits_to_id "fh_digits_to_id"(const char* p, Py_ssize_t n) noexcept nogil


cdef int64_t get_id(Tape* t, uint32_t v, Buf* tmp) except -2 nogil:
    """An id from a digit string or an integer literal; -1 when there is none."""
    cdef const char* p
    cdef Py_ssize_t n
    cdef Node* nd
    if v == NONE:
        return -1
    nd = &t.nodes[v]
    if nd.type == J_STR:
        str_view(t, v, &p, &n, tmp)
        return digits_to_id(p, n)
    if nd.type == J_INT:
        return digits_to_id(<const char*>(t.s + nd.start), nd.end - nd.start)
    return -1


cdef inline int64_t pref_id(Tape* t, uint32_t obj, uint32_t k1, uint32_t k2, Buf* tmp) except -2 nogil:
    cdef int64_t r = get_id(t, get(t, obj, k1, tmp), tmp)
    if r >= 0:
        return r
    return get_id(t, get(t, obj, k2, tmp), tmp)


cdef int64_t gnip_id(Tape* t, uint32_t v, Buf* tmp) except -2 nogil:
    """The run of digits at the end of a Gnip id string such as ``tag:...,2005:1234``."""
    cdef const char* p
    cdef Py_ssize_t n, k
    if not is_type(t, v, J_STR):
        return -1
    str_view(t, v, &p, &n, tmp)
    k = n
    while k > 0 and 0x30 <= <unsigned char>p[k - 1] <= 0x39:
        k -= 1
    return digits_to_id(p + k, n - k)


cdef bint get_int(Tape* t, uint32_t v, int64_t* out) noexcept nogil:
    """A JSON integer literal that fits int64."""
    cdef Node* nd
    cdef const unsigned char* p
    cdef Py_ssize_t n, k
    cdef bint neg = 0
    cdef uint64_t acc = 0, lim
    if v == NONE or t.nodes[v].type != J_INT:
        return 0
    nd = &t.nodes[v]
    p = t.s + nd.start
    n = nd.end - nd.start
    k = 0
    if p[0] == 0x2D:
        neg = 1
        k = 1
    if n - k > 19:
        return 0
    lim = <uint64_t>INT64_MAX_ + (1 if neg else 0)
    while k < n:
        if acc > (lim - (p[k] - 0x30)) // 10:
            return 0
        acc = acc * 10 + (p[k] - 0x30)
        k += 1
    if neg:
        out[0] = -(<int64_t>(acc - 1)) - 1 if acc > 0 else 0
    else:
        out[0] = <int64_t>acc
    return 1


cdef bint get_num(Tape* t, uint32_t v, double* out) noexcept nogil:
    """Any JSON number as a double (correctly rounded, as Python's float())."""
    cdef char buf[64]
    cdef Node* nd
    cdef Py_ssize_t n
    cdef char* endp
    if v == NONE:
        return 0
    nd = &t.nodes[v]
    if nd.type != J_INT and nd.type != J_FLT:
        return 0
    n = nd.end - nd.start
    if n >= 63:
        return 0
    memcpy(buf, t.s + nd.start, n)
    buf[n] = 0
    out[0] = strtod(buf, &endp)
    return 1


# ---------------------------------------------------------------- time

cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int days_in_month(int64_t y, int64_t m) noexcept nogil:
    if m == 2:
        return 29 if ((y % 4 == 0 and y % 100 != 0) or y % 400 == 0) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef inline int dig(const char* p, Py_ssize_t k, int width) noexcept nogil:
    """Value of ``width`` digits at p[k:], or -1."""
    cdef int v = 0, i
    cdef unsigned char c
    for i in range(width):
        c = <unsigned char>p[k + i]
        if c < 0x30 or c > 0x39:
            return -1
        v = v * 10 + (c - 0x30)
    return v


cdef inline bint ymdhms(int64_t y, int mo, int d, int h, int mi, int sec, int64_t* out) noexcept nogil:
    if y < 1970 or y > 9999 or mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo) \
            or h < 0 or h > 23 or mi < 0 or mi > 59 or sec < 0 or sec > 59:
        return 0
    out[0] = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + sec * 1000
    return 1


cdef const char* MONTHS = "JanFebMarAprMayJunJulAugSepOctNovDec"
cdef const char* WEEKDAYS = "MonTueWedThuFriSatSun"


cdef bint parse_time(const char* p, Py_ssize_t n, int64_t* out) noexcept nogil:
    cdef int64_t y, local
    cdef int mo = 0, d, h, mi, sec, k, zh, zm, frac_ms, nd
    cdef bint ok
    cdef Py_ssize_t i
    if n >= 1 and n <= 16:
        # epoch milliseconds
        ok = 1
        for i in range(n):
            if not (0x30 <= <unsigned char>p[i] <= 0x39):
                ok = 0
                break
        if ok:
            y = 0
            for i in range(n):
                y = y * 10 + (<unsigned char>p[i] - 0x30)
            out[0] = y
            return 1
    if n == 30 and p[3] == 0x20 and p[7] == 0x20 and p[10] == 0x20 and p[13] == 0x3A \
            and p[16] == 0x3A and p[19] == 0x20 and p[25] == 0x20:
        # Wed Aug 27 13:08:45 +0000 2008
        ok = 0
        for k in range(7):
            if memcmp(WEEKDAYS + 3 * k, p, 3) == 0:
                ok = 1
        if not ok:
            return 0
        for k in range(12):
            if memcmp(MONTHS + 3 * k, p + 4, 3) == 0:
                mo = k + 1
        if mo == 0:
            return 0
        d = dig(p, 8, 2)
        h = dig(p, 11, 2)
        mi = dig(p, 14, 2)
        sec = dig(p, 17, 2)
        zh = dig(p, 21, 2)
        zm = dig(p, 23, 2)
        y = dig(p, 26, 4)
        if d < 0 or h < 0 or mi < 0 or sec < 0 or zh < 0 or zm < 0 or y < 0 or zh > 23 or zm > 59:
            return 0
        if p[20] != 0x2B and p[20] != 0x2D:
            return 0
        if not ymdhms(y, mo, d, h, mi, sec, &local):
            return 0
        out[0] = local - (1 if p[20] == 0x2B else -1) * (zh * 60 + zm) * 60000
        return 1
    if n >= 20 and p[4] == 0x2D and p[7] == 0x2D and p[10] == 0x54 and p[13] == 0x3A \
            and p[16] == 0x3A:
        # 2021-05-01T09:27:19[.fff][Z|+00:00|+0000]
        y = dig(p, 0, 4)
        mo = dig(p, 5, 2)
        d = dig(p, 8, 2)
        h = dig(p, 11, 2)
        mi = dig(p, 14, 2)
        sec = dig(p, 17, 2)
        if y < 0 or mo < 0 or d < 0 or h < 0 or mi < 0 or sec < 0:
            return 0
        i = 19
        frac_ms = 0
        if p[i] == 0x2E:
            i += 1
            nd = 0
            while i < n and 0x30 <= <unsigned char>p[i] <= 0x39:
                if nd < 3:
                    frac_ms = frac_ms * 10 + (<unsigned char>p[i] - 0x30)
                nd += 1
                i += 1
            if nd < 1 or nd > 9:
                return 0
            while nd < 3:
                frac_ms *= 10
                nd += 1
        if not ymdhms(y, mo, d, h, mi, sec, &local):
            return 0
        local += frac_ms
        if i >= n:
            return 0
        if i == n - 1 and p[i] == 0x5A:
            out[0] = local
            return 1
        if p[i] != 0x2B and p[i] != 0x2D:
            return 0
        if n - i == 6 and p[i + 3] == 0x3A:
            zh = dig(p, i + 1, 2)
            zm = dig(p, i + 4, 2)
        elif n - i == 5:
            zh = dig(p, i + 1, 2)
            zm = dig(p, i + 3, 2)
        else:
            return 0
        if zh < 0 or zm < 0 or zh > 23 or zm > 59:
            return 0
        out[0] = local - (1 if p[i] == 0x2B else -1) * (zh * 60 + zm) * 60000
        return 1
    return 0


cdef bint get_time(Tape* t, uint32_t v, int64_t* out, Buf* tmp) except -1 nogil:
    cdef const char* p
    cdef Py_ssize_t n
    cdef Node* nd
    if v == NONE:
        return 0
    nd = &t.nodes[v]
    if nd.type == J_STR:
        str_view(t, v, &p, &n, tmp)
        return parse_time(p, n, out)
    if nd.type == J_INT and t.s[nd.start] != 0x2D and nd.end - nd.start <= 16:
        return parse_time(<const char*>(t.s + nd.start), nd.end - nd.start, out)
    if nd.type == J_INT and nd.end - nd.start == 2 and t.s[nd.start + 1] == 0x30:
        out[0] = 0                          # -0: an integer literal of value 0, in range
        return 1
    return 0
