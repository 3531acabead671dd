# UTF-8 validation, a validating JSON scanner that writes a flat tape, and string decoding.
# Included by _core.pyx. Everything here runs without the GIL.
#
# The tape is simdjson's idea in scalar form: one Node per kept value, containers know where
# their subtree ends (``next``), so skipping a field is O(1) and nothing is decoded unless asked
# for. Members whose key the emitter never reads are validated but get no nodes (_core_keys.pxi).

cdef enum:
    J_OBJ = 1
    J_ARR
    J_STR
    J_INT
    J_FLT
    J_TRUE
    J_FALSE
    J_NULL

cdef enum:
    F_ESC = 1
    F_PART = 2       # objects: members with keys the emitter never reads were skipped
    F_ASKED = 4      # objects: lookups so far (counted in the flags' upper bits, by get)

# error / reject codes (the order of REASONS in _core.pyx)
cdef enum:
    E_OK = 0
    E_LONG
    E_UTF8
    E_JSON
    E_TRUNC
    E_ESC
    E_SURR
    E_DEEP
    E_NOTOBJ
    E_NOID

cdef extern from *:
    """
    #define FH_NONE 0xFFFFFFFFu
    """
    const uint32_t NONE "FH_NONE"       # no node (a compile-time constant, not a global to load)

cdef uint64_t HIGHS = 0x8080808080808080ULL


cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif

    /* The index >= i of the first 32-byte block of s[:n] holding a byte >= 0x80 (or the last
       incomplete block): everything before it is ASCII. */
    static inline Py_ssize_t fh_skip_ascii(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) {
    #if defined(__SSE2__)
        while (i + 32 <= n) {
            __m128i a = _mm_loadu_si128((const __m128i*)(s + i));
            __m128i b = _mm_loadu_si128((const __m128i*)(s + i + 16));
            if (_mm_movemask_epi8(_mm_or_si128(a, b)))
                break;
            i += 32;
        }
    #endif
        return i;
    }

    /* Copy s[p:end] to o up to the first backslash; returns its index (or end), *w = bytes
       written. o must have room for end - p + 16 bytes (whole 16-byte blocks are stored);
       s[:lim] may be read (lim >= end). */
    static inline Py_ssize_t fh_copy_plain(const unsigned char* s, Py_ssize_t p, Py_ssize_t end,
                                           Py_ssize_t lim, char* o, Py_ssize_t* w) {
        char* o0 = o;
    #if defined(__SSE2__)
        const __m128i b = _mm_set1_epi8(0x5C);
        while (p + 16 <= end) {
            __m128i x = _mm_loadu_si128((const __m128i*)(s + p));
            int m;
            _mm_storeu_si128((__m128i*)o, x);
            m = _mm_movemask_epi8(_mm_cmpeq_epi8(x, b));
            if (m) {
                int k = __builtin_ctz(m);
                *w = (o - o0) + k;
                return p + k;
            }
            p += 16;
            o += 16;
        }
        if (p < end && p + 16 <= lim) {     /* the tail, one block read past it */
            __m128i x = _mm_loadu_si128((const __m128i*)(s + p));
            unsigned m, k;
            _mm_storeu_si128((__m128i*)o, x);
            m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, b)) & ((1u << (end - p)) - 1u);
            k = m ? (unsigned)__builtin_ctz(m) : (unsigned)(end - p);
            *w = (o - o0) + k;
            return p + k;
        }
    #endif
        while (p < end && s[p] != 0x5C)
            *o++ = (char)s[p++];
        *w = o - o0;
        return p;
    }

    /* p is just after an opening quote: the index of the closing quote when it comes within
       the next 16 bytes with no backslash, control character or non-ASCII byte before it (so
       a string it closes is valid UTF-8), else -1. */
    static inline __attribute__((always_inline)) Py_ssize_t fh_str_quick(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) {
    #if defined(__SSE2__)
        if (p + 16 <= n) {
            const __m128i q = _mm_set1_epi8(0x22), b = _mm_set1_epi8(0x5C), c = _mm_set1_epi8(0x20);
            __m128i x = _mm_loadu_si128((const __m128i*)(s + p));
            int mq = _mm_movemask_epi8(_mm_cmpeq_epi8(x, q));
            /* (signed bytes < 0x20: control characters and non-ASCII bytes) */
            int mo = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, b), _mm_cmplt_epi8(x, c)));
            if (mq && (mo == 0 || __builtin_ctz(mq) < __builtin_ctz(mo)))
                return p + __builtin_ctz(mq);
        }
    #endif
        return -1;
    }
    /* s[p] >= 0x80: the end of the run of multi-byte characters at p (the index of the next
       ASCII byte, or n), or ~q when the character at q is not valid UTF-8 (overlongs,
       surrogates, > U+10FFFF and cut sequences are not); utf8_check and the fast scan's
       strings both check with it */
    static inline Py_ssize_t fh_utf8_run(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) {
        unsigned char c = s[p], c1;
        for (;;) {
            if (c < 0xC2 || c > 0xF4) return ~p;
            if (c < 0xE0) {
                if (p + 1 >= n || (s[p + 1] & 0xC0) != 0x80) return ~p;
                p += 2;
            } else if (c < 0xF0) {
                if (p + 2 >= n) return ~p;
                c1 = s[p + 1];
                if ((c1 & 0xC0) != 0x80 || (s[p + 2] & 0xC0) != 0x80) return ~p;
                if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) return ~p;
                p += 3;
            } else {
                if (p + 3 >= n) return ~p;
                c1 = s[p + 1];
                if ((c1 & 0xC0) != 0x80 || (s[p + 2] & 0xC0) != 0x80 || (s[p + 3] & 0xC0) != 0x80) return ~p;
                if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90)) return ~p;
                p += 4;
            }
            if (p >= n) return p;
            c = s[p];
            if (c < 0x80) return p;
        }
    }
    """
    Py_ssize_t str_quick "fh_str_quick"(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) noexcept nogil
    Py_ssize_t skip_ascii "fh_skip_ascii"(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept nogil
    Py_ssize_t utf8_run "fh_utf8_run"(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) noexcept nogil


cdef Py_ssize_t utf8_check(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """-1 if s[:n] is valid UTF-8, else the offset of the first bad sequence."""
    cdef Py_ssize_t i = 0
    cdef uint64_t x
    while i < n:
        i = skip_ascii(s, i, n)
        while i + 8 <= n:
            memcpy(&x, s + i, 8)
            if x & HIGHS:
                break
            i += 8
        if i >= n:
            break
        if s[i] < 0x80:
            i += 1
            continue
        i = utf8_run(s, i, n)   # a run of multi-byte characters (CJK text, emoji)
        if i < 0:
            return ~i
    return -1


cdef inline Py_ssize_t skip_ws(const unsigned char* s, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    cdef unsigned char c
    while pos < n:
        c = s[pos]
        if c > 0x20:
            break
        if c == 0x20 or c == 0x0A or c == 0x0D or c == 0x09:
            pos += 1
        else:
            break
    return pos


cdef inline int fail(Tape* t, int err, Py_ssize_t pos) noexcept nogil:
    t.err = err
    t.err_pos = pos
    return err


cdef int tape_grow(Tape* t) except -1 nogil:
    cdef Py_ssize_t cap
    cdef Node* p
    cap = t.cap * 2
    if cap < 1024:
        cap = 1024
    p = <Node*>realloc(t.nodes, cap * sizeof(Node))
    if p == NULL:
        with gil:
            raise MemoryError("firehose core: out of memory growing the JSON tape")
    t.nodes = p
    t.cap = cap
    return 0


cdef inline Py_ssize_t tape_new(Tape* t, uint8_t typ, Py_ssize_t start) except -1 nogil:
    cdef Node* nd
    if t.len >= t.cap:
        tape_grow(t)
    nd = &t.nodes[t.len]
    nd.type = typ
    nd.flags = 0
    nd.start = <uint32_t>start
    nd.end = <uint32_t>start
    nd.next = <uint32_t>(t.len + 1)
    nd.count = 0
    t.len += 1
    return t.len - 1


cdef extern from *:
    """
    static unsigned char FH_HEX[256];     /* hex digit values, 255 = not a hex digit */

    static void fh_hex_init(void) {
        int i;
        for (i = 0; i < 256; i++) FH_HEX[i] = 255;
        for (i = 0; i < 10; i++) FH_HEX[0x30 + i] = (unsigned char)i;
        for (i = 0; i < 6; i++) { FH_HEX[0x41 + i] = (unsigned char)(10 + i); FH_HEX[0x61 + i] = (unsigned char)(10 + i); }
    }

    /* the value of 4 hex digits at s[p:], -1 if not hex, -2 if the
       input ends first */
    static inline int fh_hex4(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) {
        int v = 0, k, h;
        if (p + 4 <= n) {
            unsigned a = FH_HEX[s[p]], b = FH_HEX[s[p + 1]], c = FH_HEX[s[p + 2]], d = FH_HEX[s[p + 3]];
            if ((a | b | c | d) & 0xF0) return -1;
            return (int)((a << 12) | (b << 8) | (c << 4) | d);
        }
        for (k = 0; k < 4; k++) {
            if (p + k >= n) return -2;
            h = FH_HEX[s[p + k]];
            if (h == 255) return -1;
            v = (v << 4) | h;
        }
        return v;
    }

    /* p is just after an opening quote: the index of the closing quote, or -1 with *err (3 =
       invalid_json, 4 = truncated, 5 = invalid_escape, 6 = lone_surrogate) and *errpos.
       Validates escapes and surrogate pairing; *flags |= 1 (F_ESC) when there are escapes. */
    static Py_ssize_t fh_str_end(const unsigned char* s, Py_ssize_t p, Py_ssize_t n,
                                 unsigned char* flags, int* err, Py_ssize_t* errpos) {
        int cp, lo;
        unsigned char c, e;
    #if defined(__SSE2__)
        const __m128i vq = _mm_set1_epi8(0x22), vb = _mm_set1_epi8(0x5C), vc = _mm_set1_epi8(0x1F);
    #endif
        for (;;) {
            /* the next quote, backslash or control character */
    #if defined(__SSE2__)
            for (;;) {
                if (p + 16 <= n) {
                    __m128i x = _mm_loadu_si128((const __m128i*)(s + p));
                    int m = _mm_movemask_epi8(_mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(x, vq), _mm_cmpeq_epi8(x, vb)),
                        _mm_cmpeq_epi8(_mm_max_epu8(x, vc), vc)));
                    if (m) { p += __builtin_ctz(m); break; }
                    p += 16;
                } else {
                    while (p < n && !(s[p] == 0x22 || s[p] == 0x5C || s[p] < 0x20)) p++;
                    break;
                }
            }
    #else
            while (p < n && !(s[p] == 0x22 || s[p] == 0x5C || s[p] < 0x20)) p++;
    #endif
            if (p >= n) { *err = 4; *errpos = p; return -1; }
            c = s[p];
            if (c == 0x22) return p;
            if (c != 0x5C) { *err = 3; *errpos = p; return -1; }     /* raw control character */
            *flags = 1;
            for (;;) {      /* a run of escapes */
                if (p + 1 >= n) { *err = 4; *errpos = p; return -1; }
                e = s[p + 1];
                switch (e) {
                case 0x22: case 0x5C: case 0x2F: case 0x62: case 0x66: case 0x6E: case 0x72: case 0x74:
                    p += 2;
                    break;
                case 0x75:
                    cp = fh_hex4(s, p + 2, n);
                    if (cp == -2) { *err = 4; *errpos = p; return -1; }
                    if (cp < 0) { *err = 5; *errpos = p; return -1; }
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (p + 7 >= n) {
                            *err = (p + 6 >= n || s[p + 6] == 0x5C) ? 4 : 6;
                            *errpos = p;
                            return -1;
                        }
                        if (s[p + 6] != 0x5C || s[p + 7] != 0x75) { *err = 6; *errpos = p; return -1; }
                        lo = fh_hex4(s, p + 8, n);
                        if (lo == -2) { *err = 4; *errpos = p; return -1; }
                        if (lo < 0) { *err = 5; *errpos = p + 6; return -1; }
                        if (!(lo >= 0xDC00 && lo <= 0xDFFF)) { *err = 6; *errpos = p; return -1; }
                        p += 12;
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        *err = 6; *errpos = p; return -1;
                    } else {
                        p += 6;
                    }
                    break;
                default:
                    *err = 5; *errpos = p; return -1;
                }
                if (p >= n || s[p] != 0x5C) break;
            }
        }
    }
    """
    void hex_init "fh_hex_init"() noexcept nogil
    Py_ssize_t fh_str_end(const unsigned char* s, Py_ssize_t p, Py_ssize_t n, uint8_t* flags,
                          int* err, Py_ssize_t* errpos) noexcept nogil

hex_init()
assert E_JSON == 3 and E_TRUNC == 4 and E_ESC == 5 and E_SURR == 6 and F_ESC == 1


cdef inline Py_ssize_t str_end(Tape* t, Py_ssize_t p, uint8_t* flags) noexcept nogil:
    """p is just after an opening quote: the index of the closing quote, or -1 (t.err set).
    Validates escapes and surrogate pairing; flags gets F_ESC when there are escapes."""
    cdef int err
    cdef Py_ssize_t errpos
    p = fh_str_end(t.s, p, t.n, flags, &err, &errpos)
    if p < 0:
        fail(t, err, errpos)
    return p


cdef inline int parse_string(Tape* t) except -1 nogil:
    """t.pos is at the opening quote. Validates escapes and surrogate pairing."""
    cdef Py_ssize_t idx = tape_new(t, J_STR, t.pos + 1)
    cdef uint8_t flags = 0
    cdef Py_ssize_t p = str_quick(t.s, t.pos + 1, t.n)
    if p < 0:
        p = str_end(t, t.pos + 1, &flags)
        if p < 0:
            return t.err
    t.nodes[idx].end = <uint32_t>p
    t.nodes[idx].flags = flags
    t.pos = p + 1
    return 0


cdef Py_ssize_t number_end(Tape* t, Py_ssize_t p, uint8_t* typ) except -2 nogil:
    """The end of the number starting at p, or -1 (t.err set); typ gets J_INT or J_FLT."""
    cdef const unsigned char* s = t.s
    cdef Py_ssize_t n = t.n
    typ[0] = J_INT
    if s[p] == 0x2D:
        p += 1
        if p >= n:
            fail(t, E_TRUNC, p)
            return -1
    if s[p] == 0x30:
        p += 1
    elif 0x31 <= s[p] <= 0x39:
        p += 1
        while p < n and 0x30 <= s[p] <= 0x39:
            p += 1
    else:
        fail(t, E_JSON, p)
        return -1
    if p < n and s[p] == 0x2E:
        typ[0] = J_FLT
        p += 1
        if p >= n:
            fail(t, E_TRUNC, p)
            return -1
        if not (0x30 <= s[p] <= 0x39):
            fail(t, E_JSON, p)
            return -1
        while p < n and 0x30 <= s[p] <= 0x39:
            p += 1
    if p < n and (s[p] == 0x65 or s[p] == 0x45):
        typ[0] = J_FLT
        p += 1
        if p < n and (s[p] == 0x2B or s[p] == 0x2D):
            p += 1
        if p >= n:
            fail(t, E_TRUNC, p)
            return -1
        if not (0x30 <= s[p] <= 0x39):
            fail(t, E_JSON, p)
            return -1
        while p < n and 0x30 <= s[p] <= 0x39:
            p += 1
    return p


cdef inline int parse_number(Tape* t) except -1 nogil:
    cdef uint8_t typ
    cdef Py_ssize_t idx
    cdef Py_ssize_t p = number_end(t, t.pos, &typ)
    if p < 0:
        return t.err
    idx = tape_new(t, typ, t.pos)
    t.nodes[idx].end = <uint32_t>p
    t.pos = p
    return 0


cdef inline int check_literal(Tape* t, const char* lit, Py_ssize_t ln) noexcept nogil:
    cdef Py_ssize_t p = t.pos
    cdef Py_ssize_t k
    for k in range(ln):
        if p + k >= t.n:
            return fail(t, E_TRUNC, p + k)
        if t.s[p + k] != <unsigned char>lit[k]:
            return fail(t, E_JSON, p)
    return 0


cdef int parse_literal(Tape* t, const char* lit, Py_ssize_t ln, uint8_t typ) except -1 nogil:
    cdef Py_ssize_t p = t.pos
    cdef Py_ssize_t idx
    if check_literal(t, lit, ln):
        return t.err
    idx = tape_new(t, typ, p)
    t.nodes[idx].end = <uint32_t>(p + ln)
    t.pos = p + ln
    return 0


# ---------------------------------------------------------------- key numbers

cdef extern from *:
    """
    /* The emitter's keys (<= 32 bytes, zero-padded to 4 words), and an open-addressing index
       of 1024 two-byte slots: key number (0xFF = empty) | 8 more bits of the hash << 8. A key
       that is not there (most keys) is usually turned away by the 2 KiB index alone. */
    typedef struct { uint64_t w[4]; uint32_t len; } fh_key;
    static fh_key FH_KEYS[255];
    static uint16_t FH_KIX[1024];
    /* FH_KMASK[len][k]: which bytes of word k belong to a key of len bytes. */
    static uint64_t FH_KMASK[33][4];

    static inline uint64_t fh_key_hash(uint64_t w0, Py_ssize_t len) {
        return (w0 ^ ((uint64_t)len << 56)) * 0x9E3779B97F4A7C15ULL;
    }

    static void fh_key_clear(void) {
        int i, k, v;
        for (i = 0; i < 1024; i++) FH_KIX[i] = 0xFF;
        for (i = 0; i <= 32; i++)
            for (k = 0; k < 4; k++) {
                v = i - 8 * k;
                FH_KMASK[i][k] = v >= 8 ? ~(uint64_t)0 : v <= 0 ? 0 : ((uint64_t)1 << (8 * v)) - 1;
            }
    }

    static void fh_key_add(const char* name, Py_ssize_t len, uint32_t id) {
        fh_key* e = &FH_KEYS[id];
        uint64_t h;
        uint32_t j;
        memset(e, 0, sizeof *e);
        memcpy(e->w, name, (size_t)len);
        e->len = (uint32_t)len;
        h = fh_key_hash(e->w[0], len);
        j = (uint32_t)(h >> 54);
        while ((FH_KIX[j] & 0xFF) != 0xFF) j = (j + 1) & 1023;
        FH_KIX[j] = (uint16_t)(id | ((h >> 46) & 0xFF) << 8);
    }

    /* The number of the key p[:len] (decoded bytes), or 0xFFFFFFFF. Bytes up to lim may be read. */
    static inline __attribute__((always_inline)) uint32_t fh_key_number(
            const unsigned char* p, Py_ssize_t len, const unsigned char* lim) {
        uint64_t w[4], h;
        const uint64_t* m;
        uint32_t j, tag, slot;
        if (len <= 0 || len > 32) return 0xFFFFFFFFu;
        if (p + 32 > lim) {
            memset(w, 0, sizeof w);
            memcpy(w, p, (size_t)len);
            p = (const unsigned char*)w;
        }
        m = FH_KMASK[len];
        if (p != (const unsigned char*)w)      /* (else w holds the key already) */
            memcpy(&w[0], p, 8);
        w[0] &= m[0];
        h = fh_key_hash(w[0], len);
        j = (uint32_t)(h >> 54);
        tag = (uint32_t)((h >> 46) & 0xFF);
        for (;;) {
            slot = FH_KIX[j];
            if ((slot & 0xFF) == 0xFF) return 0xFFFFFFFFu;
            if ((slot >> 8) == tag) {
                const fh_key* e = &FH_KEYS[slot & 0xFF];
                if (e->w[0] == w[0] && e->len == (uint32_t)len) {
                    uint64_t w1, w2, w3;
                    memcpy(&w1, p + 8, 8); memcpy(&w2, p + 16, 8); memcpy(&w3, p + 24, 8);
                    if (e->w[1] == (w1 & m[1]) && e->w[2] == (w2 & m[2]) && e->w[3] == (w3 & m[3]))
                        return slot & 0xFF;
                }
            }
            j = (j + 1) & 1023;
        }
    }
    """
    void key_clear "fh_key_clear"() noexcept nogil
    void key_add "fh_key_add"(const char* name, Py_ssize_t len, uint32_t id) noexcept nogil
    uint32_t key_number "fh_key_number"(const unsigned char* p, Py_ssize_t klen, const unsigned char* lim) noexcept nogil


cdef int key_table_init(names) except -1:
    cdef bytes b
    cdef int i
    assert len(names) == KY_COUNT and len(names) < 255
    key_clear()
    for i, name in enumerate(names):
        b = name.encode()
        assert 0 < len(b) <= 32
        key_add(b, len(b), i)
    return 0


cdef uint32_t key_number_esc(Tape* t, Py_ssize_t start, Py_ssize_t end) except? 0xFFFFFFFE nogil:
    """Number the key with escapes s[start:end] (decoded first)."""
    t.keybuf.len = 0
    unescape(t.s, start, end, &t.keybuf, t.n)
    buf_reserve(&t.keybuf, 8)
    return key_number(<const unsigned char*>t.keybuf.data, t.keybuf.len,
                      <const unsigned char*>t.keybuf.data + t.keybuf.cap)


# ---------------------------------------------------------------- values

cdef int skip_value(Tape* t, int depth) except -1 nogil:
    """Validate one value at t.pos exactly as parse_value does (same errors at the same
    places), without writing tape nodes."""
    cdef const unsigned char* s = t.s
    cdef Py_ssize_t n = t.n
    cdef Py_ssize_t pos = t.pos, kpos
    cdef uint8_t fl
    cdef int r
    cdef unsigned char c, close
    if pos >= n:
        return fail(t, E_TRUNC, pos)
    c = s[pos]
    if c == 0x22:
        pos = str_quick(s, t.pos + 1, n)
        if pos < 0:
            pos = str_end(t, t.pos + 1, &fl)
            if pos < 0:
                return t.err
        t.pos = pos + 1
        return 0
    if c == 0x7B or c == 0x5B:
        if depth > t.max_depth:
            return fail(t, E_DEEP, pos)
        close = 0x7D if c == 0x7B else 0x5D
        pos = skip_ws(s, pos + 1, n)
        if pos >= n:
            return fail(t, E_TRUNC, pos)
        if s[pos] == close:
            pos += 1
        else:
            while True:
                if c == 0x7B:
                    if pos >= n:
                        return fail(t, E_TRUNC, pos)
                    if s[pos] != 0x22:
                        return fail(t, E_JSON, pos)
                    kpos = str_quick(s, pos + 1, n)
                    if kpos < 0:
                        kpos = str_end(t, pos + 1, &fl)
                        if kpos < 0:
                            return t.err
                    pos = skip_ws(s, kpos + 1, n)
                    if pos >= n:
                        return fail(t, E_TRUNC, pos)
                    if s[pos] != 0x3A:
                        return fail(t, E_JSON, pos)
                    pos = skip_ws(s, pos + 1, n)
                if pos < n and s[pos] == 0x22:
                    kpos = str_quick(s, pos + 1, n)
                    if kpos < 0:
                        kpos = str_end(t, pos + 1, &fl)
                        if kpos < 0:
                            return t.err
                    pos = skip_ws(s, kpos + 1, n)
                else:
                    t.pos = pos
                    r = skip_value(t, depth + 1)
                    if r:
                        return r
                    pos = skip_ws(s, t.pos, n)
                if pos >= n:
                    return fail(t, E_TRUNC, pos)
                if s[pos] == 0x2C:
                    pos = skip_ws(s, pos + 1, n)
                    continue
                if s[pos] == close:
                    pos += 1
                    break
                return fail(t, E_JSON, pos)
        t.pos = pos
        return 0
    if c == 0x2D or (0x30 <= c <= 0x39):
        pos = number_end(t, pos, &fl)
        if pos < 0:
            return t.err
        t.pos = pos
        return 0
    if c == 0x74:
        r = check_literal(t, "true", 4)
        t.pos = pos + 4
        return r
    if c == 0x66:
        r = check_literal(t, "false", 5)
        t.pos = pos + 5
        return r
    if c == 0x6E:
        r = check_literal(t, "null", 4)
        t.pos = pos + 4
        return r
    return fail(t, E_JSON, pos)


cdef int parse_value(Tape* t, int depth, bint keep_all, const uint8_t* row) except -1 nogil:
    """Parse one value at t.pos (whitespace already skipped).

    Object members whose key has no KY_ number, or one ``row`` of the key table (the value's
    context, fh_ps) does not want, are validated but get no tape nodes (the object's node has
    F_PART then), except an object's first member (classification reads it) and, with
    ``keep_all``, every member of this object. Arrays' elements are in ``row`` too."""
    cdef const unsigned char* s = t.s
    cdef Py_ssize_t n = t.n
    cdef Py_ssize_t pos = t.pos
    cdef Py_ssize_t idx, kidx, kend, kstart
    cdef uint32_t count = 0, kid
    cdef int r
    cdef uint8_t part = 0, kfl, w
    cdef unsigned char c, close
    cdef const uint8_t* ktab = tape_ktab(t)
    if pos >= n:
        return fail(t, E_TRUNC, pos)
    c = s[pos]
    if c == 0x22:
        return parse_string(t)
    if c == 0x7B or c == 0x5B:
        if depth > t.max_depth:
            return fail(t, E_DEEP, pos)
        close = 0x7D if c == 0x7B else 0x5D
        idx = tape_new(t, J_OBJ if c == 0x7B else J_ARR, pos)
        pos = skip_ws(s, pos + 1, n)
        if pos >= n:
            return fail(t, E_TRUNC, pos)
        if s[pos] == close:
            pos += 1
        else:
            while True:
                kid = KY_NONE
                if c == 0x7B:
                    if pos >= n:
                        return fail(t, E_TRUNC, pos)
                    if s[pos] != 0x22:
                        return fail(t, E_JSON, pos)
                    # the key: numbered before any node is made (most members are skipped)
                    kfl = 0
                    kend = str_quick(s, pos + 1, n)
                    if kend < 0:
                        kend = str_end(t, pos + 1, &kfl)
                        if kend < 0:
                            return t.err
                    if kfl:
                        kid = key_number_esc(t, pos + 1, kend)
                    else:
                        kid = key_number(s + pos + 1, kend - pos - 1, s + n)
                    kstart = pos + 1
                    pos = skip_ws(s, kend + 1, n)
                    if pos >= n:
                        return fail(t, E_TRUNC, pos)
                    if s[pos] != 0x3A:
                        return fail(t, E_JSON, pos)
                    pos = skip_ws(s, pos + 1, n)
                    t.pos = pos
                    w = row[kid & 0xFF]
                    if not (w & KW) and not keep_all and (count > 0 or not row[KT_FIRST]):
                        # no nodes: validate the value only
                        part = F_PART
                        if pos < n and s[pos] == 0x22:
                            kend = str_quick(s, pos + 1, n)
                            if kend < 0:
                                kend = str_end(t, pos + 1, &kfl)
                                if kend < 0:
                                    return t.err
                            t.pos = kend + 1
                        else:
                            r = skip_value(t, depth + 1)
                            if r:
                                return r
                    else:
                        kidx = tape_new(t, J_STR, kstart)
                        t.nodes[kidx].end = <uint32_t>kend
                        t.nodes[kidx].flags = kfl
                        t.nodes[kidx].count = kid
                        if pos < n and s[pos] == 0x22:
                            r = parse_string(t)
                        elif pos < n and (s[pos] == 0x2D or 0x30 <= s[pos] <= 0x39):
                            r = parse_number(t)
                        else:
                            r = parse_value(t, depth + 1, depth == 1 and kid == KY_id,
                                            ktab + ((w & 0x7F) << 8))
                        if r:
                            return r
                        count += 1
                else:
                    t.pos = pos
                    if pos < n and s[pos] == 0x22:
                        r = parse_string(t)
                    else:
                        r = parse_value(t, depth + 1, 0, row)
                    if r:
                        return r
                    count += 1
                pos = skip_ws(s, t.pos, n)
                if pos >= n:
                    return fail(t, E_TRUNC, pos)
                if s[pos] == 0x2C:
                    pos = skip_ws(s, pos + 1, n)
                    continue
                if s[pos] == close:
                    pos += 1
                    break
                return fail(t, E_JSON, pos)
        t.nodes[idx].end = <uint32_t>pos
        t.nodes[idx].count = count
        t.nodes[idx].flags = part
        t.nodes[idx].next = <uint32_t>t.len
        t.pos = pos
        return 0
    if c == 0x2D or (0x30 <= c <= 0x39):
        return parse_number(t)
    if c == 0x74:
        return parse_literal(t, "true", 4, J_TRUE)
    if c == 0x66:
        return parse_literal(t, "false", 5, J_FALSE)
    if c == 0x6E:
        return parse_literal(t, "null", 4, J_NULL)
    return fail(t, E_JSON, pos)


cdef inline void tape_begin(Tape* t, const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """A new line on the tape: its bytes, no object's members looked up yet, no fault."""
    cdef int c
    t.s = s
    t.n = n
    for c in range(64):
        t.cobj[c] = NONE
    t.err = E_OK
    t.err_pos = 0


cdef int parse_line(Tape* t, const unsigned char* s, Py_ssize_t n) except -1 nogil:
    """Build the tape of one line. Returns E_OK or an error code (t.err_pos says where).

    The fast scan (fh_parse_fast, below) first: it also checks the UTF-8 of the line's strings
    (the only places a valid line has non-ASCII bytes). A line it does not accept is checked by
    utf8_check (E_UTF8 first, as if checked before the scan), then scanned again by
    parse_value, which finds the fault and its place (or, should the fast scan ever be stricter
    than this one, accepts the line)."""
    cdef fh_ps ps
    cdef int c
    cdef Py_ssize_t bad
    ps.s = s
    ps.n = n
    ps.nodes = <fh_node*>t.nodes
    ps.len = 0
    ps.cap = t.cap
    ps.max_depth = t.max_depth
    ps.ky_id = KY_id
    ps.oom = 0
    ps.ktab = t.ktab
    ps.kp = <fh_kp*>t.kp
    c = fh_parse_fast(&ps)
    t.nodes = <Node*>ps.nodes
    t.cap = ps.cap
    t.len = ps.len
    if ps.oom:
        with gil:
            raise MemoryError("firehose core: out of memory growing the JSON tape")
    if c == 0:
        tape_begin(t, s, n)
        t.pos = n
        return E_OK
    bad = utf8_check(s, n)
    if bad >= 0:
        return fail(t, E_UTF8, bad)
    return parse_slow(t, s, n)


cdef int parse_slow(Tape* t, const unsigned char* s, Py_ssize_t n) except -1 nogil:
    """parse_line with the exact reason and place of a fault."""
    cdef int r
    tape_begin(t, s, n)
    t.len = 0
    t.pos = skip_ws(s, 0, n)
    r = parse_value(t, 1, 0, tape_ktab(t) + (CX_ROOT << 8))
    if r:
        return r
    t.pos = skip_ws(s, t.pos, n)
    if t.pos != n:
        return fail(t, E_JSON, t.pos)
    return E_OK


# ---------------------------------------------------------------- decoding strings

cdef extern from *:
    """
    /* the value of 4 hex digits known to be valid */
    static inline __attribute__((always_inline)) uint32_t fh_hex4v(const unsigned char* q) {
        uint32_t x;
        memcpy(&x, q, 4);
        x = (x & 0x0F0F0F0Fu) + ((x >> 6) & 0x01010101u) * 9u;     /* each byte its digit's value */
        return ((x & 0xFu) << 12) | (x & 0xF00u) | ((x >> 12) & 0xF0u) | (x >> 24);
    }

    /* Decode the validated string content s[start:end] into o (room for end - start + 16
       bytes); returns the bytes written. */
    static Py_ssize_t fh_unescape(const unsigned char* s, Py_ssize_t p, Py_ssize_t end, Py_ssize_t lim, char* o) {
        char* o0 = o;
        Py_ssize_t w;
        uint32_t cp, lo;
        unsigned char e;
        while (p < end) {
            p = fh_copy_plain(s, p, end, lim, o, &w);
            o += w;
            while (p < end && s[p] == 0x5C) {       /* a run of escapes */
                e = s[p + 1];
                if (e == 0x75) {
                    cp = fh_hex4v(s + p + 2);
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        lo = fh_hex4v(s + p + 8);
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        p += 12;
                    } else {
                        p += 6;
                    }
                    if (cp < 0x80) {
                        *o++ = (char)cp;
                    } else if (cp < 0x800) {
                        uint16_t v2 = (uint16_t)(0x80C0u | (cp >> 6) | ((cp & 0x3Fu) << 8));
                        memcpy(o, &v2, 2);
                        o += 2;
                    } else if (cp < 0x10000) {
                        /* one 4-byte store (the escape took 6 bytes: there is room) */
                        uint32_t v3 = 0x008080E0u | (cp >> 12) | ((cp << 2) & 0x3F00u) | ((cp & 0x3Fu) << 16);
                        memcpy(o, &v3, 4);
                        o += 3;
                    } else {
                        o[0] = (char)(0xF0 | (cp >> 18));
                        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                        o[3] = (char)(0x80 | (cp & 0x3F));
                        o += 4;
                    }
                    continue;
                }
                switch (e) {
                case 0x62: e = 0x08; break;
                case 0x66: e = 0x0C; break;
                case 0x6E: e = 0x0A; break;
                case 0x72: e = 0x0D; break;
                case 0x74: e = 0x09; break;
                default: break;
                }
                *o++ = (char)e;
                p += 2;
            }
        }
        return o - o0;
    }
    """
    Py_ssize_t fh_unescape(const unsigned char* s, Py_ssize_t p, Py_ssize_t end, Py_ssize_t lim, char* o) noexcept nogil


cdef int unescape(const unsigned char* s, Py_ssize_t start, Py_ssize_t end, Buf* out,
                  Py_ssize_t lim) except -1 nogil:
    """Append the decoded bytes of raw (validated) string content s[start:end] to out (s[:lim]
    may be read)."""
    buf_reserve(out, end - start + 16)      # decoding never lengthens; +16: copy_plain's blocks
    out.len += fh_unescape(s, start, end, lim, out.data + out.len)
    return 0


# ---------------------------------------------------------------- the fast scan

cdef extern from *:
    """
    /* The same scan as parse_value / skip_value, in C with the state in registers, for lines
       that are valid: it builds the same tape, but on any fault it only says "no" (-1) and
       the line is scanned again by parse_value, which alone says what is wrong and where.
       So what it must get right is only: whenever it accepts a line, parse_value accepts it
       too and makes the same nodes. fh_node has Node's layout (checked at import). */
    typedef struct { uint8_t type; uint8_t flags; uint32_t start; uint32_t end; uint32_t next; uint32_t count; } fh_node;

    typedef struct {
        const unsigned char* s;
        Py_ssize_t n;
        fh_node* nodes;
        Py_ssize_t len, cap;
        int max_depth;
        uint32_t ky_id;
        int oom;
        const uint8_t* ktab;    /* the key table (FH_NCX rows of 256, see below); NULL: all columns' */
        struct fh_kp* kp;       /* the projection's key memory ((FH_NCX + 1) * FH_KP_N: a region
                                   per context and one for skipped objects), or NULL */
    } fh_ps;

    /* The projection's key memory: which key came after which, per context. Every v1.1 status
       has its keys in the same order, so the key after a given key is most often the one that
       followed it last time. An entry holds that key's bytes as they stood in the line, from
       its opening quote through the colon right after its closing one (at most 31 bytes, no
       backslash: a key without escapes), its number and the slot of the key after it. A key
       is taken from the memory when the line's next bytes are exactly those (one compare):
       the same key, closed at the same place, followed by its colon, so it numbers the same;
       the scan then goes on from where the entry says, without waiting for the key's bytes.
       Otherwise the key is read as before and the entry learns it. A slot is a hash of the
       key before (slot 0 for an object's first key): a clash only costs misses (of the ~80
       keys a line of the benchmark capture has in the objects a projection reads, 64 slots
       and a weaker hash missed 26, these 17: -2.7%).
       kid is the number the key got where it was learned: a key of a length its row never
       wants is not numbered there (kk 0), and such an entry serves only where the key is not
       kept whatever it is (force: an object's first member, or every member). */
    #define FH_KP_N 128
    typedef struct fh_kp { unsigned char b[32]; uint32_t kid; uint8_t len, hn, kk; } fh_kp;

    /* the entry e learns the key whose opening quote is at q (32 bytes readable there), klen
       bytes long, when it has no escapes (fl 0), its colon right after it, and it fits (quote,
       key, quote and colon under 32 bytes: len; the key's length is len - 3) */
    static inline __attribute__((always_inline)) void fh_kp_learn(fh_kp* e, const unsigned char* q, Py_ssize_t klen,
                                   unsigned char fl, uint32_t kid, int kk, unsigned hn) {
        if (fl || klen + 3 >= 32 || q[klen + 2] != 0x3A) return;
        memcpy(e->b, q, 32);
        e->len = (uint8_t)(klen + 3);
        e->kid = kid;
        e->kk = (uint8_t)kk;
        e->hn = (uint8_t)hn;
    }

    /* a key's slot: its first and last 8 bytes and its length, mixed */
    static inline __attribute__((always_inline)) unsigned fh_kp_hash(const unsigned char* k, Py_ssize_t len) {
        uint64_t a = 0, b = 0;
        if (len >= 8) {
            memcpy(&a, k, 8);
            memcpy(&b, k + len - 8, 8);
        } else {
            memcpy(&a, k, (size_t)len);
        }
        return (unsigned)((((a + (uint64_t)len) * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL)) >> 57);
    }

    enum { FJ_OBJ = 1, FJ_ARR, FJ_STR, FJ_INT, FJ_FLT, FJ_TRUE, FJ_FALSE, FJ_NULL };

    /* Which object members get tape nodes, by context: a key table has a row of 256 bytes per
       context, indexed by key number (255: no number). An entry is FH_KW (the member is kept)
       | the context its value is scanned in (a member that is not wanted is kept all the same
       when it is its object's first one and the row's FH_KT_FIRST byte is 1, or its object's
       members are all kept: its value is then scanned in the entry's context). FULL: every
       numbered key wanted, values FULL, first members kept (all columns: every row is FULL);
       SKIP: nothing wanted, not even a first member; the others are made by a projection
       (ktab_build, _core_emit.pxi), the scan starting in ROOT. */
    enum { FH_CX_FULL = 0, FH_CX_SKIP, FH_CX_ROOT, FH_CX_USER, FH_CX_RT, FH_CX_QS, FH_CX_ET,
           FH_CX_ENT, FH_NCX };
    #define FH_KW 0x80
    #define FH_KT_LENS 240     /* (fh_kt_lens) */
    #define FH_KT_FIRST 252    /* a row's byte: 1 when an object's first member is kept whatever its key */
    static uint8_t FH_KT_ALL[FH_NCX * 256];

    /* every row FULL (but SKIP's) */
    static void fh_kt_init(uint8_t* t, int nkeys) {
        int r, k;
        for (r = 0; r < FH_NCX; r++)
            for (k = 0; k < 256; k++)
                t[r * 256 + k] = r == FH_CX_SKIP ? FH_CX_SKIP : (k < nkeys ? FH_KW | FH_CX_FULL : FH_CX_FULL);
        for (r = 0; r < FH_NCX; r++)
            t[r * 256 + FH_KT_FIRST] = r != FH_CX_SKIP;
    }

    /* a row's lengths of wanted keys (fh_kt_lens), loaded once an object */
    static inline __attribute__((always_inline)) uint64_t fh_kt_lens_of(const uint8_t* row) {
        uint64_t m;
        memcpy(&m, row + FH_KT_LENS, 8);
        return m;
    }

    /* may a key of len bytes be wanted? (len & 63: a longer key is numbered, and not found) */
    static inline __attribute__((always_inline)) int fh_kt_len_wanted(uint64_t lens, Py_ssize_t len) {
        return (int)((lens >> (len & 63)) & 1u);
    }

    static int fh_node_check(const void* p) {
        const fh_node* nd = (const fh_node*)p;
        return nd->type == 1 && nd->flags == 2 && nd->start == 3 && nd->end == 4 && nd->next == 5 && nd->count == 6;
    }

    static inline __attribute__((always_inline)) uint64_t fh_load8(const unsigned char* p) { uint64_t w; memcpy(&w, p, 8); return w; }

    /* the bytes after a backslash that make a two-byte escape: quote, backslash, slash, b f n r t */
    static const unsigned char FH_ESC1[256] = {
        [0x22] = 1, [0x5C] = 1, [0x2F] = 1, [0x62] = 1, [0x66] = 1, [0x6E] = 1, [0x72] = 1, [0x74] = 1
    };

    /* Key numbers for the fast scan: a perfect hash of (first 8 bytes, last 8 bytes, length)
       into 2048 one-byte slots (the multiplier is searched for at import), then one compare
       of the stored words. Gives the same numbers as fh_key_number. */
    typedef struct { uint64_t w0, wl, w1, w2; uint32_t len; } fh_pkey;
    static fh_pkey FH_PK[255];
    static uint8_t FH_PH[2048];
    static uint64_t FH_PHK;
    static int FH_PN;

    static inline __attribute__((always_inline)) uint32_t fh_pk_slot(uint64_t w0, uint64_t wl, Py_ssize_t len, uint64_t k) {
        return (uint32_t)(((w0 + wl * 0xC2B2AE3D27D4EB4FULL + (uint64_t)len) * k) >> 53);
    }

    static void fh_pk_add(const char* name, Py_ssize_t len, uint32_t id) {
        unsigned char b[40];
        fh_pkey* e = &FH_PK[id];
        memset(b, 0, sizeof b);
        memcpy(b, name, (size_t)len);
        e->len = (uint32_t)len;
        e->w0 = fh_load8(b);
        e->wl = len >= 8 ? fh_load8(b + len - 8) : e->w0;
        e->w1 = fh_load8(b + 8);
        e->w2 = fh_load8(b + 16);
        if ((int)id >= FH_PN) FH_PN = (int)id + 1;
    }

    /* 0 when a collision-free multiplier was found */
    static int fh_pk_build(void) {
        uint64_t x = 0x9E3779B97F4A7C15ULL, k;
        int tries, i;
        uint32_t j;
        for (tries = 0; tries < 100000; tries++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            k = x | 1;
            memset(FH_PH, 0xFF, sizeof FH_PH);
            for (i = 0; i < FH_PN; i++) {
                j = fh_pk_slot(FH_PK[i].w0, FH_PK[i].wl, FH_PK[i].len, k);
                if (FH_PH[j] != 0xFF) break;
                FH_PH[j] = (uint8_t)i;
            }
            if (i == FH_PN) { FH_PHK = k; return 0; }
        }
        return -1;
    }

    /* Bytes FH_KT_LENS.. of a row (past every key number): bit n of a 64-bit word is set
       when a key of n bytes is wanted there, so a member whose (unescaped) key has another
       length is skipped without being numbered. fh_kt_lens sets them from the entries (the
       key numbers' lengths are FH_PK's: fh_pk_add first). */
    static void fh_kt_lens(uint8_t* t, int nkeys) {
        int r, k;
        uint64_t m;
        for (r = 0; r < FH_NCX; r++) {
            m = 0;
            for (k = 0; k < nkeys; k++)
                if ((t[r * 256 + k] & FH_KW) && FH_PK[k].len >= 1 && FH_PK[k].len <= 32)
                    m |= (uint64_t)1 << FH_PK[k].len;
            memcpy(t + r * 256 + FH_KT_LENS, &m, 8);
        }
    }

    /* the number of the key p[:len], or 0xFFFFFFFF; bytes up to lim may be read */
    static inline __attribute__((always_inline)) uint32_t fh_key_fast(const unsigned char* p, Py_ssize_t len, const unsigned char* lim) {
        uint64_t w0, wl;
        const fh_pkey* e;
        uint32_t id;
        if ((size_t)(len - 1) >= 32) return 0xFFFFFFFFu;
        if (len >= 8) {
            w0 = fh_load8(p);
            wl = fh_load8(p + len - 8);
        } else {
            if (p + 8 <= lim) {
                w0 = fh_load8(p) & (((uint64_t)1 << (8 * len)) - 1);
            } else {
                w0 = 0;
                memcpy(&w0, p, (size_t)len);
            }
            wl = w0;
        }
        id = FH_PH[fh_pk_slot(w0, wl, len, FH_PHK)];
        if (id == 0xFF) return 0xFFFFFFFFu;
        e = &FH_PK[id];
        if (e->w0 != w0 || e->wl != wl || e->len != (uint32_t)len) return 0xFFFFFFFFu;
        if (len > 16 && (fh_load8(p + 8) != e->w1 || (len > 24 && fh_load8(p + 16) != e->w2)))
            return 0xFFFFFFFFu;
        return id;
    }

    static __attribute__((noinline)) int fh_ps_grow(fh_ps* ps) {
        Py_ssize_t cap = ps->cap * 2;
        fh_node* p;
        if (cap < 1024) cap = 1024;
        p = (fh_node*)realloc(ps->nodes, (size_t)cap * sizeof(fh_node));
        if (p == NULL) { ps->oom = 1; return -1; }
        ps->nodes = p;
        ps->cap = cap;
        return 0;
    }

    /* a new node (start = end = start, next = after it, count 0): its index, or -1 */
    static inline __attribute__((always_inline)) Py_ssize_t fh_ps_new(fh_ps* ps, uint8_t typ, Py_ssize_t start) {
        fh_node* nd;
        if (ps->len >= ps->cap && fh_ps_grow(ps)) return -1;
        nd = &ps->nodes[ps->len];
        nd->type = typ;
        nd->flags = 0;
        nd->start = (uint32_t)start;
        nd->end = (uint32_t)start;
        nd->next = (uint32_t)(ps->len + 1);
        nd->count = 0;
        return ps->len++;
    }

    /* JSON whitespace but the newline: a line has none, and run_lines scans from a line's start
       into the rest of the chunk, so the scan must stop at the newline that ends the line */
    static inline __attribute__((always_inline)) Py_ssize_t fh_ws(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) {
        while (p < n) {
            unsigned char c = s[p];
            if (c > 0x20 || !(c == 0x20 || c == 0x0D || c == 0x09)) break;
            p++;
        }
        return p;
    }

    /* the end of the run of digits at p, 8 bytes a step */
    static inline __attribute__((always_inline)) Py_ssize_t fh_digits(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) {
        const uint64_t hi = 0xF0F0F0F0F0F0F0F0ULL, d0 = 0x3030303030303030ULL, six = 0x0606060606060606ULL;
        uint64_t w, t;
        while (p + 8 <= n) {
            w = fh_load8(s + p);
            /* nonzero bytes: not a digit (a carry out of a byte >= 0xFA only disturbs the
               bytes after it, and it is not a digit itself) */
            t = ((w & hi) ^ d0) | (((w + six) & hi) ^ d0);
            if (t) return p + (__builtin_ctzll(t) >> 3);
            p += 8;
        }
        while (p < n && (unsigned)(s[p] - 0x30) < 10u) p++;
        return p;
    }

    /* the end of the number at p, or -1; *typ: FJ_INT or FJ_FLT */
    static inline __attribute__((always_inline)) Py_ssize_t fh_num(const unsigned char* s, Py_ssize_t p, Py_ssize_t n, uint8_t* typ) {
        *typ = FJ_INT;
        if (s[p] == 0x2D) {
            p++;
            if (p >= n) return -1;
        }
        if (s[p] == 0x30) {
            p++;
        } else if ((unsigned)(s[p] - 0x31) < 9u) {
            p = fh_digits(s, p + 1, n);
        } else {
            return -1;
        }
        if (p < n && s[p] == 0x2E) {
            *typ = FJ_FLT;
            p++;
            if (p >= n || (unsigned)(s[p] - 0x30) >= 10u) return -1;
            p = fh_digits(s, p + 1, n);
        }
        if (p < n && (s[p] | 0x20) == 0x65) {
            *typ = FJ_FLT;
            p++;
            if (p < n && (s[p] == 0x2B || s[p] == 0x2D)) p++;
            if (p >= n || (unsigned)(s[p] - 0x30) >= 10u) return -1;
            p = fh_digits(s, p + 1, n);
        }
        return p;
    }

    /* the number of an escaped key s[p:e] (decoded first) */
    static uint32_t fh_knum_esc(const unsigned char* s, Py_ssize_t p, Py_ssize_t e) {
        char buf[256];
        Py_ssize_t len;
        if (e - p > 192) return 0xFFFFFFFFu;      /* decodes to more than 32 bytes */
        len = fh_unescape(s, p, e, e, buf);
        return fh_key_fast((const unsigned char*)buf, len, (const unsigned char*)buf + sizeof buf);
    }

    /* is s[p:] (up to n) the literal true / false / null? its length, or 0 */
    static inline __attribute__((always_inline)) Py_ssize_t fh_lit(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) {
        uint32_t w;
        if (p + 4 > n) return 0;
        memcpy(&w, s + p, 4);
        if (w == 0x65757274u || w == 0x6C6C756Eu) return 4;              /* "true", "null" */
        if (w == 0x736C6166u && p + 5 <= n && s[p + 4] == 0x65) return 5; /* "false" */
        return 0;
    }

    /* the fast scan's step over the escape at s[p] (a backslash) in a string: p moves past it
       (2 bytes; 6 for \\uXXXX; 12 for a surrogate pair, a high one then a low one), or the
       caller returns -1. B: checked against n; 0 where 12 bytes of room are known (the caller's
       e, a, b, cc, d are used). A macro, not a function: an inline function of the same checks
       made the scan ~2% more instructions a byte */
    #define FH_ESC_STEP(s, p, n, B) do {                                                        \\
            if ((B) && (p) + 1 >= (n)) return -1;                                               \\
            e = (s)[(p) + 1];                                                                   \\
            if (e == 0x75) {                                                                    \\
                if ((B) && (p) + 6 > (n)) return -1;                                            \\
                a = FH_HEX[(s)[(p) + 2]]; b = FH_HEX[(s)[(p) + 3]];                             \\
                cc = FH_HEX[(s)[(p) + 4]]; d = FH_HEX[(s)[(p) + 5]];                            \\
                if ((a | b | cc | d) & 0xF0) return -1;                                         \\
                if (a == 0xD && b >= 8) {                                                       \\
                    if (b >= 0xC || ((B) && (p) + 12 > (n)) || (s)[(p) + 6] != 0x5C             \\
                            || (s)[(p) + 7] != 0x75) return -1;                                 \\
                    a = FH_HEX[(s)[(p) + 8]]; b = FH_HEX[(s)[(p) + 9]];                         \\
                    cc = FH_HEX[(s)[(p) + 10]]; d = FH_HEX[(s)[(p) + 11]];                      \\
                    if (((a | b | cc | d) & 0xF0) || a != 0xD || b < 0xC) return -1;            \\
                    (p) += 12;                                                                  \\
                } else {                                                                        \\
                    (p) += 6;                                                                   \\
                }                                                                               \\
            } else if (FH_ESC1[e]) {                                                            \\
                (p) += 2;                                                                       \\
            } else {                                                                            \\
                return -1;                                                                      \\
            }                                                                                   \\
        } while (0)

    /* a container opens at s[pos] ('{' or '['): its node (*idx) and the position of its first
       member or its close, blanks skipped; -1 past the depth limit, out of tape or at the end */
    static inline __attribute__((always_inline)) Py_ssize_t fh_open(fh_ps* ps, Py_ssize_t pos, int depth,
                                    uint8_t typ, Py_ssize_t* idx) {
        if (depth > ps->max_depth) return -1;
        *idx = fh_ps_new(ps, typ, pos);
        if (*idx < 0) return -1;
        pos = fh_ws(ps->s, pos + 1, ps->n);
        return pos < ps->n ? pos : -1;
    }

    /* the container's node completed: it ends before pos with count members; returns pos */
    static inline __attribute__((always_inline)) Py_ssize_t fh_close(fh_ps* ps, Py_ssize_t idx, Py_ssize_t pos,
                                     uint32_t count, unsigned char flags) {
        fh_node* nd = &ps->nodes[idx];
        nd->end = (uint32_t)pos;
        nd->count = count;
        nd->flags = flags;
        nd->next = (uint32_t)ps->len;
        return pos;
    }

    /* whitespace is rare in captures: test one byte inline, loop only when there is some */
    #define FH_WS(s, p, n) do { if ((p) < (n) && (s)[p] <= 0x20) (p) = fh_ws((s), (p), (n)); } while (0)

    /* After a value or key: the separator sep (',' or ':') or, for sep ',', the close
       byte. Returns the position after it (whitespace after a ',' or ':' skipped), with
       *closed = 1 when it was the close; -1 when it is neither. */
    static inline __attribute__((always_inline)) Py_ssize_t fh_sep(const unsigned char* s, Py_ssize_t pos, Py_ssize_t n,
                                    unsigned char close, int* closed) {
        if (pos >= n || s[pos] != 0x2C) {
            pos = fh_ws(s, pos, n);
            if (pos >= n) return -1;
            if (s[pos] == close) { *closed = 1; return pos + 1; }
            if (s[pos] != 0x2C) return -1;
        }
        pos++;
        FH_WS(s, pos, n);
        return pos;
    }

    static inline __attribute__((always_inline)) Py_ssize_t fh_colon(const unsigned char* s, Py_ssize_t pos, Py_ssize_t n) {
        if (pos >= n || s[pos] != 0x3A) {
            pos = fh_ws(s, pos, n);
            if (pos >= n || s[pos] != 0x3A) return -1;
        }
        pos++;
        FH_WS(s, pos, n);
        return pos;
    }

    /* after a key that closes at kend: its value's first byte (most often the ":" right after
       the key and no whitespace), or -1 */
    static inline __attribute__((always_inline)) Py_ssize_t fh_key_colon(const unsigned char* s, Py_ssize_t kend, Py_ssize_t n) {
        if (kend + 2 < n && s[kend + 1] == 0x3A && s[kend + 2] > 0x20) return kend + 2;
        return fh_colon(s, kend + 1, n);
    }

    /* the scan itself, twice: the baseline, and the AVX2 one where the compiler can target it */
    #define FH_(name) name
    #define FH_TGT
    #define FH_AVX2 0
    #include "_core_fast.h"
    #undef FH_
    #undef FH_TGT
    #undef FH_AVX2
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FH_NO_AVX2)
    #include <immintrin.h>
    #define FH_HAVE_AVX2 1
    #define FH_(name) name##_avx2
    #define FH_TGT __attribute__((target("avx2")))
    #define FH_AVX2 1
    #include "_core_fast.h"
    #undef FH_
    #undef FH_TGT
    #undef FH_AVX2
    #else
    #define FH_HAVE_AVX2 0
    #endif

    /* which scan parse_line runs: 2 the AVX2 one, 1 the baseline (fh_simd_init at import,
       FIREHOSE_SIMD=sse2 or _core.simd_level(1) forces the baseline) */
    static int FH_SIMD = 1;

    /* a key memory for the fast scan (fh_ps.kp): NULL when out of memory (the callers raise
       MemoryError) */
    static fh_kp* fh_kp_new(void) {
        return (fh_kp*)calloc((FH_NCX + 1) * FH_KP_N, sizeof(fh_kp));     /* (+1: skipped objects') */
    }

    static int fh_simd_best(void) {
    #if FH_HAVE_AVX2
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2")) return 2;
    #endif
        return 1;
    }

    /* (and the tree of all columns when ps->ktab is NULL, else the projection's) */
    static inline int fh_parse_fast_sel(fh_ps* ps) {
    #if FH_HAVE_AVX2
        if (FH_SIMD == 2) return ps->ktab ? fh_parse_fast_proj_avx2(ps) : fh_parse_fast_avx2(ps);
    #endif
        return ps->ktab ? fh_parse_fast_proj(ps) : fh_parse_fast(ps);
    }

    static inline Py_ssize_t fh_parse_open_sel(fh_ps* ps) {
    #if FH_HAVE_AVX2
        if (FH_SIMD == 2) return ps->ktab ? fh_parse_open_proj_avx2(ps) : fh_parse_open_avx2(ps);
    #endif
        return ps->ktab ? fh_parse_open_proj(ps) : fh_parse_open(ps);
    }
    """
    ctypedef struct fh_node:
        pass
    ctypedef struct fh_kp:
        pass
    fh_kp* fh_kp_new() noexcept nogil
    ctypedef struct fh_ps:
        const unsigned char* s
        Py_ssize_t n
        fh_node* nodes
        Py_ssize_t len
        Py_ssize_t cap
        int max_depth
        uint32_t ky_id
        int oom
        const uint8_t* ktab
        fh_kp* kp
    int fh_parse_fast "fh_parse_fast_sel"(fh_ps* ps) noexcept nogil
    Py_ssize_t fh_parse_open "fh_parse_open_sel"(fh_ps* ps) noexcept nogil
    int FH_SIMD
    int fh_simd_best() noexcept nogil
    void fh_pk_add(const char* name, Py_ssize_t len, uint32_t id) noexcept nogil
    int fh_pk_build() noexcept nogil
    int fh_node_check(const void* p) noexcept nogil
    enum:
        CX_FULL "FH_CX_FULL"
        CX_SKIP "FH_CX_SKIP"
        CX_ROOT "FH_CX_ROOT"
        CX_USER "FH_CX_USER"
        CX_RT "FH_CX_RT"
        CX_QS "FH_CX_QS"
        CX_ET "FH_CX_ET"
        CX_ENT "FH_CX_ENT"
        CX_N "FH_NCX"
        KW "FH_KW"
    uint8_t FH_KT_ALL[]
    void kt_init "fh_kt_init"(uint8_t* t, int nkeys) noexcept nogil
    void kt_lens "fh_kt_lens"(uint8_t* t, int nkeys) noexcept nogil
    int KT_LENS "FH_KT_LENS"
    int KT_FIRST "FH_KT_FIRST"


cdef inline const uint8_t* tape_ktab(Tape* t) noexcept nogil:
    """The tape's key table (all columns' when none was set)."""
    return t.ktab if t.ktab != NULL else FH_KT_ALL


cdef int fast_layout_check() except -1:
    cdef Node nd
    nd.type = 1
    nd.flags = 2
    nd.start = 3
    nd.end = 4
    nd.next = 5
    nd.count = 6
    assert fh_node_check(&nd), "fh_node and Node disagree"
    return 0

fast_layout_check()


cdef int fast_keys_init(names) except -1:
    cdef bytes b
    cdef int i
    for i, name in enumerate(names):
        b = name.encode()
        fh_pk_add(b, len(b), i)
    if fh_pk_build() != 0:
        raise RuntimeError("firehose core: no perfect hash for the key table")
    return 0

fast_keys_init(KEY_NAMES)
assert KY_COUNT <= KT_LENS
kt_init(FH_KT_ALL, KY_COUNT)
kt_lens(FH_KT_ALL, KY_COUNT)
import os as _os

FH_SIMD = 1 if _os.environ.get("FIREHOSE_SIMD", "").lower() in ("sse2", "baseline") else fh_simd_best()


def simd_level(level=None):
    """The fast scan in use: 2 the AVX2 build (chosen at import when the CPU has AVX2), 1 the
    baseline (SSE2 on x86-64; ``FIREHOSE_SIMD=sse2`` at import forces it). ``simd_level(1)``
    or ``simd_level(2)`` switches (for tests; 2 raises ValueError where AVX2 is not
    available). Both accept the same lines and make the same tapes. Returns the level before."""
    global FH_SIMD
    cdef int old = FH_SIMD
    if level is not None:
        if type(level) is not int or level not in (1, 2) or \
                (level == 2 and fh_simd_best() != 2):
            raise ValueError(f"simd level {level!r} is not available here")
        FH_SIMD = level
    return old


assert J_OBJ == 1 and J_ARR == 2 and J_STR == 3 and J_INT == 4 and J_FLT == 5 and J_TRUE == 6 \
    and J_FALSE == 7 and J_NULL == 8 and F_PART == 2 and F_ESC == 1


def _fast_scan_check(lines, int max_depth=64, const uint8_t[::1] ktab=None, bint keys=True):
    """For tests: scan each line (bytes) with the fast scan and with utf8_check + parse_slow
    (what parse_line does with a line the fast scan rejects) and compare, with the key table
    ``ktab`` (an Engine's ``_key_table()``; default all columns').
    Returns (accepted by both, rejected by both, fast only, slow only, tapes differing): the
    last three must be 0 except "slow only" (the fast scan may be stricter; never laxer).
    ``keys``: the fast scan keeps a key memory across the lines, as a decoder with a
    projection does (with ``ktab`` None the objects skipped whole use it too, which a decoder
    of all columns, having none, never does). The tapes are compared down to each node's
    flags: that is the test that a string's escape flag (F_ESC) is set, since the string
    writers decode escapes whatever the flag says and only the str_view readers depend on it."""
    cdef Tape t
    cdef fh_ps ps
    cdef Node* a
    cdef Node* b
    cdef Py_ssize_t i, alen
    cdef int rf, rs
    cdef const unsigned char* s
    cdef bytes line
    both = neither = fast_only = slow_only = differ = 0
    memset(&t, 0, sizeof(Tape))
    t.max_depth = max_depth
    if ktab is not None:
        if ktab.shape[0] != CX_N * 256:
            raise ValueError("ktab: not a key table")
        t.ktab = &ktab[0]
    if keys:
        t.kp = fh_kp_new()
        if t.kp == NULL:
            raise MemoryError()
    try:
        for line in lines:
            s = <const unsigned char*>(<char*>line)
            ps.s = s
            ps.n = len(line)
            ps.nodes = NULL
            ps.len = 0
            ps.cap = 0
            ps.max_depth = max_depth
            ps.ky_id = KY_id
            ps.oom = 0
            ps.ktab = t.ktab
            ps.kp = <fh_kp*>t.kp
            rf = fh_parse_fast(&ps)     # (the one simd_level says)
            a = <Node*>ps.nodes
            alen = ps.len
            try:
                if ps.oom:
                    raise MemoryError()
                # the slow path as parse_line takes it: the UTF-8 check (the fast scan checks
                # the UTF-8 of strings itself), then parse_value
                rs = E_UTF8 if utf8_check(s, len(line)) >= 0 else parse_slow(&t, s, len(line))
                b = t.nodes
                if rf == 0 and rs == E_OK:
                    both += 1
                    if alen != t.len:
                        differ += 1
                    else:
                        for i in range(alen):
                            if (a[i].type != b[i].type or a[i].flags != b[i].flags
                                    or a[i].start != b[i].start or a[i].end != b[i].end
                                    or a[i].next != b[i].next or a[i].count != b[i].count):
                                differ += 1
                                break
                elif rf == 0:
                    fast_only += 1
                elif rs == E_OK:
                    slow_only += 1
                else:
                    neither += 1
            finally:
                free(ps.nodes)
    finally:
        free(t.nodes)
        free(t.kp)
        buf_free(&t.mem)
        buf_free(&t.keybuf)
    return both, neither, fast_only, slow_only, differ


def json_path_parts(const unsigned char[::1] line, Py_ssize_t col):
    """The JSON path, as parts, of the place at byte ``col`` of a line that may be malformed
    from there on: a walk of the tokens before ``col`` (strings, brackets, commas, colons)
    that checks nothing. Returns (parts, levels): ``parts`` the object keys (raw bytes, still
    escaped) and array indices (int) from the top, stopping at an object whose key is not
    known yet (the fault is at or in a key); ``levels`` how many there were in all (parts
    keep the first 32). A string not closed before ``col`` holds the fault: its path."""
    cdef Py_ssize_t n = line.shape[0], p = 0, q, d = 0, k, levels, over = 0, cap
    cdef unsigned char c
    if col < 0:
        col = 0
    if col > n:
        col = n
    # per open container: kind (1 object, 2 array), key span, expecting a key, index; levels
    # past the 4096th (past any max_depth) are only counted
    cap = min(col, 4096) + 1
    cdef uint8_t* kind = <uint8_t*>malloc(cap)
    cdef uint8_t* want = <uint8_t*>malloc(cap)
    cdef Py_ssize_t* ka = <Py_ssize_t*>malloc(cap * sizeof(Py_ssize_t))
    cdef Py_ssize_t* kb = <Py_ssize_t*>malloc(cap * sizeof(Py_ssize_t))
    if kind == NULL or want == NULL or ka == NULL or kb == NULL:
        free(kind); free(want); free(ka); free(kb)
        raise MemoryError()
    try:
        with nogil:
            while p < col:
                c = line[p]
                if c == 0x22:
                    q = p + 1
                    while q < col and line[q] != 0x22:
                        q += 2 if line[q] == 0x5C else 1
                    if q >= col - 1:
                        break                      # the fault is inside this string
                    if d and not over and kind[d - 1] == 1 and want[d - 1]:
                        ka[d - 1] = p + 1
                        kb[d - 1] = q
                    p = q + 1
                    continue
                if (c == 0x7B or c == 0x5B) and d == cap:
                    over += 1
                elif c == 0x7B or c == 0x5B:
                    kind[d] = 1 if c == 0x7B else 2
                    want[d] = c == 0x7B
                    ka[d] = -1
                    kb[d] = 0                      # an array's index
                    d += 1
                elif c == 0x7D or c == 0x5D:
                    if over:
                        over -= 1
                    elif d:
                        d -= 1
                elif over:
                    pass
                elif c == 0x2C:
                    if d:
                        if kind[d - 1] == 1:
                            want[d - 1] = 1
                            ka[d - 1] = -1
                        else:
                            kb[d - 1] += 1
                elif c == 0x3A:
                    if d and kind[d - 1] == 1:
                        want[d - 1] = 0
                p += 1
        parts = []
        levels = 0
        for k in range(d):
            if kind[k] == 1 and (ka[k] < 0 or want[k]):
                break
            levels += 1
            if len(parts) < 32:
                parts.append(bytes(line[ka[k]:kb[k]]) if kind[k] == 1 else kb[k])
        if levels == d:
            levels += over
        return parts, levels
    finally:
        free(kind); free(want); free(ka); free(kb)
