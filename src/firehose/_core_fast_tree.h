/* The fast scan's tree (see _core_fast.h, which includes this twice per SIMD build): objects,
   arrays and the line's value. FH_PROJ 0: every member with a key number is kept (all
   columns, fh_ps.ktab NULL); FH_PROJ 1 (the names end in _proj): the key table says which
   members are kept, by context (fh_ps.ktab, a row a call). The two keep the same members
   with a table of FULL rows; the first is the scan all columns take, without the table's
   cost. FH_T(name) names a function of this variant, FH_ROWP / FH_ROWA the row parameter. */

static FH_TGT Py_ssize_t FH_T(fh_pv)(fh_ps* ps, Py_ssize_t pos, int depth, int keep_all FH_ROWP);

/* one value: the scalars in line, containers by FH_T(fh_pv) */
static FH_TGT inline __attribute__((always_inline)) Py_ssize_t FH_T(fh_pv_inl)(fh_ps* ps, Py_ssize_t pos, int depth, int keep_all FH_ROWP) {
    unsigned char c;
    if (pos >= ps->n) return -1;
    c = ps->s[pos];
    if (c == 0x22) return FH_(fh_pstr)(ps, pos);
    if (c == 0x2D || (unsigned)(c - 0x30) < 10u) return FH_(fh_pnum)(ps, pos);
    if (c == 0x6E) return FH_(fh_plit)(ps, pos, 4, FJ_NULL);
    if (c == 0x74) return FH_(fh_plit)(ps, pos, 4, FJ_TRUE);
    if (c == 0x66) return FH_(fh_plit)(ps, pos, 5, FJ_FALSE);
#if FH_PROJ
    if (row == ps->ktab)        /* FULL (row 0): the same as all columns' scan, without the table */
        return FH_(fh_pv)(ps, pos, depth, keep_all);
#endif
    return FH_T(fh_pv)(ps, pos, depth, keep_all FH_ROWA(row));
}

static FH_TGT Py_ssize_t FH_T(fh_pobj)(fh_ps* ps, Py_ssize_t pos, int depth, int keep_all FH_ROWP) {
    const unsigned char* s = ps->s;
    Py_ssize_t n = ps->n, idx, kidx, kend, kstart;
    uint32_t count = 0, kid;
    unsigned char kfl, part = 0;
    int closed = 0;
#if FH_PROJ
    unsigned char w;
    int force = keep_all | row[FH_KT_FIRST];     /* keep the next member whatever its key */
    const uint64_t lens = fh_kt_lens_of(row);
    /* the key memory of this context (see fh_kp), and the slot of the next key */
    fh_kp* kpt = ps->kp ? ps->kp + (size_t)((row - ps->ktab) >> 8) * FH_KP_N : NULL;
    fh_kp* ke;
    unsigned kh = 0, kn;
    int numbered;       /* (a key of a length no wanted key has is not numbered) */
#endif
    fh_node* nd;
    pos = fh_open(ps, pos, depth, FJ_OBJ, &idx);
    if (pos < 0) return -1;
    if (s[pos] == 0x7D) {
        pos++;
    } else {
        while (!closed) {
            if (pos >= n || s[pos] != 0x22) return -1;
        key:        /* pos is at the key's opening quote */
#if FH_PROJ
            ke = NULL;
            if (kpt && pos + 32 <= n) {
                ke = &kpt[kh];
                if (FH_(fh_kp_at)(ke, s + pos)) {
                    numbered = force || fh_kt_len_wanted(lens, ke->len - 3);
                    if (ke->kk || !numbered) {
                        /* the key the memory says, with its colon: numbered as below would */
                        kstart = pos + 1;
                        kend = pos + ke->len - 2;
                        kfl = 0;
                        kid = numbered ? ke->kid : 0xFFFFFFFFu;
                        kh = ke->hn;
                        pos += ke->len;             /* (< n: len < 32) */
                        if (s[pos] <= 0x20) pos = fh_ws(s, pos, n);
                        goto keyed;
                    }
                }
            }
#endif
            kend = FH_(fh_sclose)(s, pos + 1, n, &kfl);
            if (kend < 0) return -1;
#if FH_PROJ
            kstart = pos + 1;
            pos = fh_key_colon(s, kend, n);
            if (pos < 0) return -1;
            /* a key of a length no wanted key has is not numbered (skipped below: index 255) */
            numbered = force || fh_kt_len_wanted(lens, kend - kstart);
            kid = kfl ? fh_knum_esc(s, kstart, kend)
                : numbered ? fh_key_fast(s + kstart, kend - kstart, s + n) : 0xFFFFFFFFu;
            if (kpt) {      /* the memory learns the key */
                kn = fh_kp_hash(s + kstart, kend - kstart);
                if (ke) fh_kp_learn(ke, s + kstart - 1, kend - kstart, kfl, kid, numbered, kn);
                kh = kn;
            }
        keyed:
            w = row[kid & 0xFFu];      /* (no key number: index 255, never wanted) */
            if (!(w & FH_KW) && !force) {
#else
            kid = kfl ? fh_knum_esc(s, pos + 1, kend) : fh_key_fast(s + pos + 1, kend - pos - 1, s + n);
            kstart = pos + 1;
            pos = fh_key_colon(s, kend, n);
            if (pos < 0) return -1;
            if (kid == 0xFFFFFFFFu && count > 0 && !keep_all) {
#endif
                part = 2;       /* F_PART */
                pos = FH_(fh_skip_inl)(ps, pos, depth + 1);
                if (pos < 0) return -1;
            } else {
                if (ps->len >= ps->cap && fh_ps_grow(ps)) return -1;
                kidx = ps->len++;
                nd = &ps->nodes[kidx];
                nd->type = FJ_STR;
                nd->flags = kfl;
                nd->start = (uint32_t)kstart;
                nd->end = (uint32_t)kend;
                nd->next = (uint32_t)(kidx + 1);
                nd->count = kid;
                pos = FH_T(fh_pv_inl)(ps, pos, depth + 1, depth == 1 && kid == ps->ky_id
                                      FH_ROWA(ps->ktab + ((size_t)(w & 0x7F) << 8)));
                if (pos < 0) return -1;
                count++;
#if FH_PROJ
                force = keep_all;
#endif
            }
            if (pos + 1 < n && s[pos] == 0x2C && s[pos + 1] == 0x22) {     /* ,"key (most) */
                pos++;
                goto key;
            }
            if (pos < n && s[pos] == 0x7D) {       /* the end, no whitespace before it */
                pos++;
                break;
            }
            pos = fh_sep(s, pos, n, 0x7D, &closed);
            if (pos < 0) return -1;
        }
    }
    return fh_close(ps, idx, pos, count, part);
}

static FH_TGT Py_ssize_t FH_T(fh_parr)(fh_ps* ps, Py_ssize_t pos, int depth FH_ROWP) {
    const unsigned char* s = ps->s;
    Py_ssize_t n = ps->n, idx;
    uint32_t count = 0;
    int closed = 0;
    pos = fh_open(ps, pos, depth, FJ_ARR, &idx);
    if (pos < 0) return -1;
    if (s[pos] == 0x5D) {
        pos++;
    } else {
        while (!closed) {
            pos = FH_T(fh_pv_inl)(ps, pos, depth + 1, 0 FH_ROWA(row));
            if (pos < 0) return -1;
            count++;
            pos = fh_sep(s, pos, n, 0x5D, &closed);
            if (pos < 0) return -1;
        }
    }
    return fh_close(ps, idx, pos, count, 0);
}

/* pos < n: an object, an array, or no value */
static FH_TGT Py_ssize_t FH_T(fh_pv)(fh_ps* ps, Py_ssize_t pos, int depth, int keep_all FH_ROWP) {
    unsigned char c = ps->s[pos];
    if (c == 0x7B) return FH_T(fh_pobj)(ps, pos, depth, keep_all FH_ROWA(row));
    if (c == 0x5B) return FH_T(fh_parr)(ps, pos, depth FH_ROWA(row));
    return -1;
}

/* one value at the start of s[:n] and the blanks after it: the position after them (the
   caller says whether that is where the line ends), or -1 when there is no valid value */
static FH_TGT Py_ssize_t FH_T(fh_parse_open)(fh_ps* ps) {
    Py_ssize_t pos = fh_ws(ps->s, 0, ps->n);
    ps->len = 0;
    pos = FH_T(fh_pv_inl)(ps, pos, 1, 0 FH_ROWA(ps->ktab + ((size_t)FH_CX_ROOT << 8)));
    if (pos < 0) return -1;
    return fh_ws(ps->s, pos, ps->n);
}

/* the whole line: 0 when it is valid JSON (the tape is made), -1 otherwise */
static FH_TGT int FH_T(fh_parse_fast)(fh_ps* ps) {
    return FH_T(fh_parse_open)(ps) == ps->n ? 0 : -1;
}
