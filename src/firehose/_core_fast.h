/* The fast scan (see _core_json.pxi, "the fast scan"): included twice by _core_json.pxi, once
   as the baseline (FH_(name) = name, SSE2 on x86-64) and, on x86-64 with GCC or clang, once
   compiled for AVX2 (FH_(name) = name_avx2, FH_TGT the target attribute, FH_AVX2 1), chosen
   at run time (fh_parse_fast_sel). The AVX2 build differs only in the string steps: 32 bytes
   a step instead of 16, and a string's escapes checked 32 bytes a step (fh_esc_blocks)
   instead of one by one. Both builds accept the same lines and make the same tapes. */

#if FH_AVX2
/* The escapes of a string 32 bytes a step (AVX2 only): p is at a backslash that starts an
   escape; returns the closing quote's index when it is reached, else ~q, q >= p where this
   gave up (perhaps p itself): never inside an escape, so the byte scan of fh_sfast goes on
   from there. A block is taken up to its first quote, control or non-ASCII
   byte (or, with none, up to an escape in its last 5 bytes) when what it takes is plainly
   valid: every escape complete and one of \" \\ \/ \b \f \n \r \t \uXXXX, surrogates only
   as a high one then a low one. Anything else (a non-ASCII or control byte, an escape cut
   by the block's end, an invalid escape) is left to the byte scan, which accepts or refuses
   it as before.
   Escaped positions are found as simdjson does (runs of backslashes). */
static FH_TGT inline Py_ssize_t FH_(fh_esc_blocks)(const unsigned char* s, Py_ssize_t p, Py_ssize_t n) {
    const uint64_t even = 0x5555555555555555ULL;
    /* escape characters by nibbles: high nibble 2, 5, 6, 7 as bits 1, 2, 4, 8; each low
       nibble the bits of the high nibbles it completes (" / \ b f n r t u) */
    const __m256i hi_t = _mm256_setr_epi8(0, 0, 1, 0, 0, 2, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0, 0, 1, 0, 0, 2, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i lo_t = _mm256_setr_epi8(0, 0, 13, 0, 8, 8, 4, 0, 0, 0, 0, 0, 2, 0, 4, 1,
                                          0, 0, 13, 0, 8, 8, 4, 0, 0, 0, 0, 0, 2, 0, 4, 1);
    const __m256i nib = _mm256_set1_epi8(0x0F);
    uint64_t bs, fe, E, S, Q, T, R, Sr, Er, U, hx, SU, LO, HI, Bad;
    unsigned z;
    while (p + 32 <= n) {
        __m256i x = _mm256_loadu_si256((const __m256i*)(s + p));
        __m256i lc = _mm256_or_si256(x, _mm256_set1_epi8(0x20));
        bs = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x5C)));
        fe = bs << 1;
        /* the escaped bytes: after each backslash, unless backslashes are adjacent (a run:
           every other one escapes) */
        E = (bs & fe) ? (even ^ (((bs & ~even & ~fe) + bs) << 1)) & fe : fe;
        S = E >> 1;                                             /* the escaping backslashes */
        Q = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x22))) & ~E;
        /* the block is taken up to its first unescaped quote or control or non-ASCII byte
           (signed < 0x20), which the byte scan takes on from */
        T = Q | (uint32_t)_mm256_movemask_epi8(_mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), x));
        if (T) {
            z = (unsigned)__builtin_ctzll(T);
        } else {        /* an escape starting in the last 5 bytes may end in the next block */
            z = (S & 0xF8000000ULL) ? (unsigned)__builtin_ctzll(S & 0xF8000000ULL) : 32u;
        }
        R = (1ULL << z) - 1;                                    /* the bytes taken */
        Sr = S & R;
        if (Sr) {
            /* the escapes not taken, by their u or escaped byte (Bad): the block is taken up
               to the first of them, which starts the next block (or, first in its block, is
               left to the byte scan). Giving the block up whole instead cost a block a pair
               of surrogates that the block's end would have cut (emoji-dense text: 3x) */
            Er = Sr << 1;
            Bad = Er & (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(
                    _mm256_shuffle_epi8(hi_t, _mm256_and_si256(_mm256_srli_epi16(x, 4), nib)),
                    _mm256_shuffle_epi8(lo_t, _mm256_and_si256(x, nib))), _mm256_setzero_si256()));
                        /* not an escape character */
            U = Er & (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x75)));
            if (U) {    /* \u: four hex digits after the u; surrogates paired */
                hx = (uint32_t)_mm256_movemask_epi8(_mm256_or_si256(
                    _mm256_and_si256(_mm256_cmpgt_epi8(x, _mm256_set1_epi8(0x2F)), _mm256_cmpgt_epi8(_mm256_set1_epi8(0x3A), x)),
                    _mm256_and_si256(_mm256_cmpgt_epi8(lc, _mm256_set1_epi8(0x60)), _mm256_cmpgt_epi8(_mm256_set1_epi8(0x67), lc))));
                Bad |= U & ~((hx >> 1) & (hx >> 2) & (hx >> 3) & (hx >> 4));
                /* D8-DF: a first digit d and a second one above 7 (8 9 a-f, all hex here) */
                SU = U & ((uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lc, _mm256_set1_epi8(0x64))) >> 1);
                if (SU) {
                    SU &= (uint32_t)_mm256_movemask_epi8(_mm256_cmpgt_epi8(x, _mm256_set1_epi8(0x37))) >> 2;
                    LO = SU & ((uint32_t)_mm256_movemask_epi8(_mm256_cmpgt_epi8(lc, _mm256_set1_epi8(0x62))) >> 2);
                    HI = SU & ~LO;
                    /* a high one needs a low one (taken, all hex) 6 bytes on, a low one a high
                       one 6 bytes before: a pair cut by the block's end is not taken */
                    Bad |= (HI & ~((LO & ~Bad) >> 6)) | (LO & ~(HI << 6));
                }
            }
            if (Bad) {
                z = (unsigned)__builtin_ctzll(Bad) - 1;         /* its backslash */
                if (z == 0)
                    break;
                p += z;
                continue;
            }
        }
        if (T) {
            if ((Q >> z) & 1)
                return p + z;
            p += z;     /* at a control or non-ASCII byte (an escaped one failed above) */
            break;
        }
        p += z;
    }
    return ~p;
}
#endif

/* fh_str_end for the fast scan: the closing quote or -1, *fl set to 1 when there are escapes
   (never cleared: the caller sets it to 0 first, or to 1 when fh_sslash has seen one).
   Accepts what fh_str_end accepts when the string's bytes are also
   valid UTF-8 (as utf8_check says: the fast scan checks the UTF-8 of the line's strings,
   and a non-ASCII byte anywhere else is invalid JSON). A run of escapes
   (CJK text, emoji pairs) is checked without going back to the 16-byte steps; the AVX2
   build checks the escapes of a string's blocks whole (fh_esc_blocks) where it can. (Taking the
   next special bytes of a 16-byte window from its mask instead of loading again cost
   more instructions and mispredicted branches.) */
static FH_TGT inline Py_ssize_t FH_(fh_sfast)(const unsigned char* s, Py_ssize_t p, Py_ssize_t n, unsigned char* fl) {
    unsigned char c, e;
    unsigned a, b, cc, d, m;    /* (FH_ESC_STEP's) */
#if defined(__SSE2__)
    const __m128i vq = _mm_set1_epi8(0x22), vb = _mm_set1_epi8(0x5C), vc = _mm_set1_epi8(0x20);
#endif
    for (;;) {
#if FH_AVX2
        if (p + 32 <= n) {
            __m256i x = _mm256_loadu_si256((const __m256i*)(s + p));
            m = (unsigned)_mm256_movemask_epi8(_mm256_or_si256(
                _mm256_or_si256(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x22)), _mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x5C))),
                _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), x)));
            if (!m) { p += 32; continue; }
            p += __builtin_ctz(m);
        } else
#endif
#if defined(__SSE2__)
        if (p + 16 <= n) {
            __m128i x = _mm_loadu_si128((const __m128i*)(s + p));
            /* (signed bytes < 0x20: control characters and non-ASCII bytes) */
            m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(x, vq), _mm_cmpeq_epi8(x, vb)), _mm_cmplt_epi8(x, vc)));
            if (!m) { p += 16; continue; }
            p += __builtin_ctz(m);
        } else
#endif
        {
            while (p < n && !(s[p] == 0x22 || s[p] == 0x5C || (unsigned char)(s[p] - 0x20) >= 0x60)) p++;
            if (p >= n) return -1;
        }
        for (;;) {      /* p is at a special byte: a quote, a backslash, a control or non-ASCII byte */
            c = s[p];
            if (c == 0x22) return p;
            if (c >= 0x80) {
                p = fh_utf8_run(s, p, n);
                if (p < 0) return -1;
                break;
            }
            if (c != 0x5C) return -1;
            *fl = 1;
#if FH_AVX2
            if (p + 32 <= n) {
                Py_ssize_t q = FH_(fh_esc_blocks)(s, p, n);
                if (q >= 0) return q;
                if (~q != p) {          /* blocks taken: the byte scan goes on after them */
                    p = ~q;
                    break;
                }
            }
#endif
            if (p + 12 < n) {       /* room for any escape and the byte after it */
                FH_ESC_STEP(s, p, n, 0);
                if (s[p] == 0x5C) continue;     /* a run of escapes */
                break;
            }
            FH_ESC_STEP(s, p, n, 1);
            if (p < n && s[p] == 0x5C) continue;     /* a run of escapes */
            break;
        }
    }
}

/* fh_sfast for a string whose only escapes are \/ (v1.1's URLs: https:\/\/t.co\/...):
   32 bytes a step, a block taken whole up to the closing quote when each of its backslashes
   is followed by a slash inside it and it has no control or non-ASCII byte; anything else
   goes to fh_sfast from that block's start (never inside an escape). The closing quote, or
   what fh_sfast returns. */
static FH_TGT Py_ssize_t FH_(fh_sslash)(const unsigned char* s, Py_ssize_t p, Py_ssize_t n, unsigned char* fl) {
#if FH_AVX2
    unsigned mq, mb, mc, ms, lim, bk;
    while (p + 32 <= n) {
        __m256i x = _mm256_loadu_si256((const __m256i*)(s + p));
        mq = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x22)));
        mb = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x5C)));
        mc = (unsigned)_mm256_movemask_epi8(_mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), x));
        ms = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x2F)));
        lim = mq ? (1u << __builtin_ctz(mq)) - 1u : 0xFFFFFFFFu;      /* the bytes before the quote */
        bk = mb & lim;
        /* a control or non-ASCII byte, a backslash not followed by a slash (the one before
           the quote escapes it), a backslash last in a block the string goes on past */
        if ((mc & lim) || ((bk << 1) & ~ms) || (bk >> 31))
            break;
        if (bk)
            *fl = 1;
        if (mq)
            return p + __builtin_ctz(mq);
        p += 32;
    }
#endif
    return FH_(fh_sfast)(s, p, n, fl);
}

/* p just after an opening quote: the closing quote, or -1; *fl = 1 with escapes */
static FH_TGT inline __attribute__((always_inline)) Py_ssize_t FH_(fh_sclose)(const unsigned char* s, Py_ssize_t p, Py_ssize_t n, unsigned char* fl) {
    *fl = 0;
#if FH_AVX2
    if (p + 32 <= n) {      /* the same with 32 bytes (keys and values up to 31 bytes) */
        const __m256i q = _mm256_set1_epi8(0x22), b = _mm256_set1_epi8(0x5C), c = _mm256_set1_epi8(0x20);
        __m256i x = _mm256_loadu_si256((const __m256i*)(s + p));
        unsigned mq = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, q));
        unsigned mo = (unsigned)_mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(x, b), _mm256_cmpgt_epi8(c, x)));
        if (mq && (mo == 0 || __builtin_ctz(mq) < __builtin_ctz(mo)))
            return p + __builtin_ctz(mq);
        if ((mq | mo) == 0)
            return FH_(fh_sfast)(s, p + 32, n, fl);
        return FH_(fh_sslash)(s, p, n, fl);     /* a backslash (or a byte below 0x20) first */
    }
#endif
#if defined(__SSE2__)
    if (p + 16 <= n) {      /* fh_str_quick, and a first block with no special byte is not loaded again */
        const __m128i q = _mm_set1_epi8(0x22), b = _mm_set1_epi8(0x5C), c = _mm_set1_epi8(0x20);
        __m128i x = _mm_loadu_si128((const __m128i*)(s + p));
        unsigned mq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, q));
        unsigned mo = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, b), _mm_cmplt_epi8(x, c)));
        if (mq && (mo == 0 || __builtin_ctz(mq) < __builtin_ctz(mo)))
            return p + __builtin_ctz(mq);
        if ((mq | mo) == 0)
            p += 16;
    }
#endif
    return FH_(fh_sfast)(s, p, n, fl);
}

static FH_TGT inline __attribute__((always_inline)) Py_ssize_t FH_(fh_pstr)(fh_ps* ps, Py_ssize_t pos) {
    unsigned char fl;
    Py_ssize_t idx, e = FH_(fh_sclose)(ps->s, pos + 1, ps->n, &fl);
    fh_node* nd;
    if (e < 0) return -1;
    if (ps->len >= ps->cap && fh_ps_grow(ps)) return -1;
    idx = ps->len++;
    nd = &ps->nodes[idx];
    nd->type = FJ_STR;
    nd->flags = fl;
    nd->start = (uint32_t)(pos + 1);
    nd->end = (uint32_t)e;
    nd->next = (uint32_t)(idx + 1);
    nd->count = 0;
    return e + 1;
}

static FH_TGT inline __attribute__((always_inline)) Py_ssize_t FH_(fh_pnum)(fh_ps* ps, Py_ssize_t pos) {
    uint8_t typ;
    Py_ssize_t e = fh_num(ps->s, pos, ps->n, &typ), idx;
    if (e < 0) return -1;
    idx = fh_ps_new(ps, typ, pos);
    if (idx < 0) return -1;
    ps->nodes[idx].end = (uint32_t)e;
    return e;
}

static FH_TGT inline __attribute__((always_inline)) Py_ssize_t FH_(fh_plit)(fh_ps* ps, Py_ssize_t pos, Py_ssize_t ln, uint8_t typ) {
    Py_ssize_t idx;
    if (fh_lit(ps->s, pos, ps->n) != ln) return -1;
    idx = fh_ps_new(ps, typ, pos);
    if (idx < 0) return -1;
    ps->nodes[idx].end = (uint32_t)(pos + ln);
    return pos + ln;
}

/* is the key of entry e (fh_kp; none when e->len is 0) at p, its first e->len bytes (32
   readable)? */
static FH_TGT inline __attribute__((always_inline)) int FH_(fh_kp_at)(const fh_kp* e, const unsigned char* p) {
    const unsigned char* b = e->b;
    unsigned len = e->len;
    if (!len) return 0;
#if FH_AVX2
    uint32_t m = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(
        _mm256_loadu_si256((const __m256i*)p), _mm256_loadu_si256((const __m256i*)b)));
    return (~m & ((1u << len) - 1u)) == 0;
#elif defined(__SSE2__)
    uint32_t m = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i*)p), _mm_loadu_si128((const __m128i*)b)))
        | ((uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i*)(p + 16)), _mm_loadu_si128((const __m128i*)(b + 16)))) << 16);
    return (~m & ((1u << len) - 1u)) == 0;
#else
    return memcmp(p, b, len) == 0;
#endif
}

static FH_TGT Py_ssize_t FH_(fh_skip_container)(fh_ps* ps, Py_ssize_t pos, int depth);

/* one value validated and skipped: the scalars in line (most skipped values: strings,
   numbers, literals), containers by FH_(fh_skip_container) */
static FH_TGT inline __attribute__((always_inline)) Py_ssize_t FH_(fh_skip_inl)(fh_ps* ps, Py_ssize_t pos, int depth) {
    const unsigned char* s = ps->s;
    Py_ssize_t n = ps->n, k;
    unsigned char c, fl;
    uint8_t typ;
    if (pos >= n) return -1;
    c = s[pos];
    if (c == 0x22) {
        k = FH_(fh_sclose)(s, pos + 1, n, &fl);
        return k < 0 ? -1 : k + 1;
    }
    if (c == 0x2D || (unsigned)(c - 0x30) < 10u) return fh_num(s, pos, n, &typ);
    if (c == 0x7B || c == 0x5B) return FH_(fh_skip_container)(ps, pos, depth);
    k = fh_lit(s, pos, n);
    return k ? pos + k : -1;
}

/* s[pos] is '{' or '[' (an object's members and an array's elements in loops of their own,
   ,"key taken in one step as fh_pobj does) */
static FH_TGT Py_ssize_t FH_(fh_skip_container)(fh_ps* ps, Py_ssize_t pos, int depth) {
    const unsigned char* s = ps->s;
    Py_ssize_t n = ps->n, k;
    unsigned char fl;
    int closed = 0;
    if (depth > ps->max_depth) return -1;
    if (s[pos] == 0x7B) {
        /* the key memory of skipped objects (fh_kp; only keys: nothing is numbered here) */
        fh_kp* kpt = ps->kp ? ps->kp + (size_t)FH_NCX * FH_KP_N : NULL;
        fh_kp* ke;
        unsigned kh = 0;
        pos = fh_ws(s, pos + 1, n);
        if (pos >= n) return -1;
        if (s[pos] == 0x7D) return pos + 1;
        for (;;) {
            if (pos >= n || s[pos] != 0x22) return -1;
        key:
            ke = NULL;
            if (kpt && pos + 32 <= n) {
                ke = &kpt[kh];
                if (FH_(fh_kp_at)(ke, s + pos)) {
                    kh = ke->hn;
                    pos += ke->len;             /* (< n: len < 32) */
                    if (s[pos] <= 0x20) pos = fh_ws(s, pos, n);
                    goto value;
                }
            }
            k = FH_(fh_sclose)(s, pos + 1, n, &fl);
            if (k < 0) return -1;
            if (kpt) {
                unsigned kn = fh_kp_hash(s + pos + 1, k - pos - 1);
                if (ke) fh_kp_learn(ke, s + pos, k - pos - 1, fl, 0xFFFFFFFFu, 0, kn);
                kh = kn;
            }
            pos = fh_key_colon(s, k, n);
            if (pos < 0) return -1;
        value:
            pos = FH_(fh_skip_inl)(ps, pos, depth + 1);
            if (pos < 0) return -1;
            if (pos + 1 < n && s[pos] == 0x2C && s[pos + 1] == 0x22) {     /* ,"key (most) */
                pos++;
                goto key;
            }
            if (pos < n && s[pos] == 0x7D) return pos + 1;
            pos = fh_sep(s, pos, n, 0x7D, &closed);
            if (pos < 0) return -1;
            if (closed) return pos;
        }
    }
    pos = fh_ws(s, pos + 1, n);
    if (pos >= n) return -1;
    if (s[pos] == 0x5D) return pos + 1;
    for (;;) {
        pos = FH_(fh_skip_inl)(ps, pos, depth + 1);
        if (pos < 0) return -1;
        pos = fh_sep(s, pos, n, 0x5D, &closed);
        if (pos < 0) return -1;
        if (closed) return pos;
    }
}

/* the tree, twice: all columns, and a projection's key table (_core_fast_tree.h) */
#define FH_PROJ 0
#define FH_T(name) FH_(name)
#define FH_ROWP
#define FH_ROWA(x)
#include "_core_fast_tree.h"
#undef FH_PROJ
#undef FH_T
#undef FH_ROWP
#undef FH_ROWA
#define FH_PROJ 1
#define FH_T(name) FH_(name##_proj)
#define FH_ROWP , const uint8_t* row
#define FH_ROWA(x) , x
#include "_core_fast_tree.h"
#undef FH_PROJ
#undef FH_T
#undef FH_ROWP
#undef FH_ROWA
