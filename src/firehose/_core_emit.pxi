# Classifying messages and filling the tweets / compliance columns, per docs/fields.md.
# Included by _core.pyx; everything runs without the GIL.
#
# A line is handled in two phases so that a reject never leaves half a line behind:
#   1. split the line's value into messages and classify each, computing every compliance
#      field and checking every required id (any failure rejects the whole line);
#   2. emit the rows (dedupe happens here and cannot fail).

# tweet columns, in firehose.schema.TWEETS order
cdef enum:
    T_ID = 0
    T_CREATED
    T_TEXT
    T_LANG
    T_SOURCE
    T_AUTHOR_ID
    T_A_SN
    T_A_NAME
    T_A_DESC
    T_A_LOC
    T_A_FOL
    T_A_VER
    T_IRT_S
    T_IRT_U
    T_IRT_SN
    T_RT_S
    T_RT_U
    T_RT_SN
    T_RT_TEXT
    T_Q_S
    T_Q_U
    T_Q_TEXT
    T_HASH
    T_MENT
    T_MENT_IDS
    T_CASH
    T_URLS
    T_MEDIA
    T_COORD
    T_PLACE_ID
    T_PLACE_CC
    T_WITHHELD
    T_RULES
    T_DIALECT
    T_SRCFILE
    T_LINE
    T_OFFSET
    T_NCOLS

# compliance columns, in firehose.schema.COMPLIANCE order
cdef enum:
    C_KIND = 0
    C_TWEET
    C_USER
    C_UPTO
    C_OBJ
    C_COUNTRIES
    C_EVENT
    C_COUNT
    C_CODE
    C_DETAIL
    C_DIALECT
    C_SRCFILE
    C_LINE
    C_OFFSET
    C_NCOLS

cdef enum:
    D_V1 = 0
    D_V2
    D_ACT

# compliance kinds, in firehose.schema.COMPLIANCE_KINDS order
cdef enum:
    K_DELETE = 0
    K_DM_DELETE
    K_SCRUB_GEO
    K_STATUS_WITHHELD
    K_USER_WITHHELD
    K_USER_DELETE
    K_USER_UNDELETE
    K_USER_PROTECT
    K_USER_UNPROTECT
    K_USER_SUSPEND
    K_USER_UNSUSPEND
    K_DROP
    K_UNDROP
    K_TWEET_EDIT
    K_LIMIT
    K_WARNING
    K_DISCONNECT
    K_SYSTEM_INFO
    K_SYSTEM_WARN
    K_SYSTEM_ERROR
    K_BATCH
    K_API_ERROR
    K_OTHER
    K_NKINDS

cdef const char* KIND_NAMES[23]
KIND_NAMES[:] = [b"delete", b"dm_delete", b"scrub_geo", b"status_withheld", b"user_withheld",
                 b"user_delete", b"user_undelete", b"user_protect", b"user_unprotect",
                 b"user_suspend", b"user_unsuspend", b"drop", b"undrop", b"tweet_edit",
                 b"limit", b"warning", b"disconnect", b"system_info", b"system_warn",
                 b"system_error", b"batch_compliance", b"api_error", b"other"]

cdef enum:
    M_V1 = 1
    M_V2
    M_ACT
    M_COMP

cdef struct Msg:
    int cls
    uint32_t node
    uint32_t env            # v2 envelope object, or NONE
    int64_t id              # tweet id (tweets)
    int kind                # compliance
    int dialect
    int64_t tweet_id
    int64_t user_id
    int64_t up_to
    int64_t object_id
    uint32_t countries      # array of strings, or NONE
    int64_t event_at
    int64_t count
    uint32_t code_node      # string (or number when code_raw)
    bint code_raw
    uint32_t detail_node
    const char* detail_lit

cdef enum:
    L_USER = 1
    L_TWEET
    L_MEDIA
    L_PLACE

cdef struct Lookup:
    int kind
    int64_t id              # users, tweets
    uint32_t key            # media_key / place id string node
    uint32_t node

# ---------------------------------------------------------------- small helpers

cdef inline bint str_is(Tape* t, uint32_t v, const char* lit, Buf* tmp) except -1 nogil:
    cdef const char* p
    cdef Py_ssize_t n
    if not is_type(t, v, J_STR):
        return 0
    str_view(t, v, &p, &n, tmp)
    return n == <Py_ssize_t>strlen(lit) and memcmp(p, lit, n) == 0


cdef bint str_nodes_eq(Tape* t, uint32_t a, uint32_t b, Buf* t1, Buf* t2) except -1 nogil:
    cdef const char* p
    cdef const char* q
    cdef Py_ssize_t n, m
    if not is_type(t, a, J_STR) or not is_type(t, b, J_STR):
        return 0
    str_view(t, a, &p, &n, t1)
    str_view(t, b, &q, &m, t2)
    return n == m and memcmp(p, q, n) == 0


cdef inline bint obj_size_is_1(Tape* t, uint32_t obj) noexcept nogil:
    """Object ``obj`` has exactly one member (members the scanner skipped count too)."""
    return t.nodes[obj].count == 1 and not (t.nodes[obj].flags & F_PART)


cdef inline uint32_t obj_or_none(Tape* t, uint32_t v) noexcept nogil:
    return v if is_type(t, v, J_OBJ) else NONE


cdef inline uint32_t str_or_none(Tape* t, uint32_t v) noexcept nogil:
    return v if is_type(t, v, J_STR) else NONE


cdef inline uint32_t arr_first(Tape* t, uint32_t arr) noexcept nogil:
    if not is_type(t, arr, J_ARR) or t.nodes[arr].count == 0:
        return NONE
    return arr + 1


cdef inline uint32_t arr_next(Tape* t, uint32_t arr, uint32_t el) noexcept nogil:
    cdef uint32_t nx = t.nodes[el].next
    return nx if nx < t.nodes[arr].next else NONE


cdef int64_t id_after_slash(Tape* t, uint32_t v, Buf* tmp) except -2 nogil:
    """The id made of the text after the last '/' of a string (Gnip inReplyTo.link)."""
    cdef const char* p
    cdef Py_ssize_t n, k
    if not is_type(t, v, J_STR):
        return -1
    str_view(t, v, &p, &n, tmp)
    k = n
    while k > 0 and p[k - 1] != 0x2F:
        k -= 1
    return digits_to_id(p + k, n - k)


# ---------------------------------------------------------------- column writers

cdef inline bint W(State* st, int col) noexcept nogil:
    """Is tweet column ``col`` wanted (built and exported)? The projection of a Decoder made
    with ``columns=``; the id is always built (it counts the batch's rows)."""
    return (st.want >> col) & 1


cdef inline int w_str(State* st, Col* c, uint32_t v) except -1 nogil:
    cdef Node* nd
    if v == NONE or st.tape.nodes[v].type != J_STR:
        return col_null(c)
    nd = &st.tape.nodes[v]
    unescape(st.tape.s, nd.start, nd.end, &c.data, st.tape.n)
    return col_str_close(c)


cdef inline int w_time(State* st, Col* c, uint32_t v) except -1 nogil:
    cdef int64_t ms
    if get_time(&st.tape, v, &ms, &st.scratch):
        return col_i64(c, ms)
    return col_null(c)


cdef inline int w_int(State* st, Col* c, uint32_t v) except -1 nogil:
    cdef int64_t x
    if get_int(&st.tape, v, &x):
        return col_i64(c, x)
    return col_null(c)


cdef inline int w_bool(State* st, Col* c, uint32_t v) except -1 nogil:
    if v != NONE:
        if st.tape.nodes[v].type == J_TRUE:
            return col_bool(c, 1)
        if st.tape.nodes[v].type == J_FALSE:
            return col_bool(c, 0)
    return col_null(c)


cdef int w_app(State* st, Col* c, uint32_t v) except -1 nogil:
    """The app name out of an HTML anchor (``source``)."""
    cdef const char* p
    cdef Py_ssize_t n, a, b
    if not is_type(&st.tape, v, J_STR):
        return col_null(c)
    str_view(&st.tape, v, &p, &n, &st.scratch)
    if n >= 2 and p[0] == 0x3C and p[1] == 0x61:
        a = 0
        while a < n and p[a] != 0x3E:
            a += 1
        if a < n:
            a += 1
            b = a
            while b < n and p[b] != 0x3C:
                b += 1
            return col_str(c, p + a, b - a)
    return col_str(c, p, n)


cdef int w_strlist(State* st, Col* c, uint32_t arr, uint32_t member, bint upper) except -1 nogil:
    """Each element's ``member`` (or the element itself when member is KY_NONE) that is a string."""
    cdef Tape* t = &st.tape
    cdef uint32_t el, v
    cdef Node* nd
    cdef Py_ssize_t k, start
    el = arr_first(t, arr)
    while el != NONE:
        v = el if member == KY_NONE else get(t, el, member, &st.scratch)
        if is_type(t, v, J_STR):
            nd = &t.nodes[v]
            start = c.data.len
            unescape(t.s, nd.start, nd.end, &c.data, t.n)
            if upper:
                for k in range(start, c.data.len):
                    if 0x61 <= <unsigned char>c.data.data[k] <= 0x7A:
                        c.data.data[k] = <char>(<unsigned char>c.data.data[k] - 32)
            col_item_close(c)
        el = arr_next(t, arr, el)
    return col_list_close(c)


cdef int w_urls(State* st, Col* c, uint32_t arr) except -1 nogil:
    cdef Tape* t = &st.tape
    cdef uint32_t el, v
    el = arr_first(t, arr)
    while el != NONE:
        v = get(t, el, KY_expanded_url, &st.scratch)
        if not is_type(t, v, J_STR):
            v = get(t, el, KY_url, &st.scratch)
        if is_type(t, v, J_STR):
            unescape(t.s, t.nodes[v].start, t.nodes[v].end, &c.data, t.n)
            col_item_close(c)
        el = arr_next(t, arr, el)
    return col_list_close(c)


cdef int w_mention_ids(State* st, Col* c, uint32_t arr, bint v2) except -1 nogil:
    cdef Tape* t = &st.tape
    cdef uint32_t el
    cdef int64_t x
    el = arr_first(t, arr)
    while el != NONE:
        if v2:
            x = get_id(t, get(t, el, KY_id, &st.scratch), &st.scratch)
        else:
            x = pref_id(t, el, KY_id_str, KY_id, &st.scratch)
        if x >= 0:
            col_item_i64(c, x)
        el = arr_next(t, arr, el)
    return col_list_close(c)


cdef int put_decimal(Buf* b, int64_t v) except -1 nogil:
    cdef char tmp[24]
    cdef int k = 24
    if v == 0:
        return buf_put(b, "0", 1)
    while v > 0:
        k -= 1
        tmp[k] = <char>(0x30 + v % 10)
        v //= 10
    return buf_put(b, tmp + k, 24 - k)


cdef int w_rules(State* st, Col* c, uint32_t arr) except -1 nogil:
    """matching_rules [{id, tag}]: id as decimal digits, else the string id; tag a string."""
    cdef Tape* t = &st.tape
    cdef uint32_t el, v
    cdef int64_t x
    el = arr_first(t, arr)
    while el != NONE:
        if is_type(t, el, J_OBJ):
            # id
            x = pref_id(t, el, KY_id_str, KY_id, &st.scratch)
            if x >= 0:
                put_decimal(&c.data, x)
                bit_put(&c.valid2, c.n2, 1)
            else:
                v = get(t, el, KY_id, &st.scratch)
                if is_type(t, v, J_STR):
                    unescape(t.s, t.nodes[v].start, t.nodes[v].end, &c.data, t.n)
                    bit_put(&c.valid2, c.n2, 1)
                else:
                    bit_put(&c.valid2, c.n2, 0)
                    c.nulls2 += 1
            buf_i32(&c.offs2, off32(c.data.len))
            # tag
            v = get(t, el, KY_tag, &st.scratch)
            if is_type(t, v, J_STR):
                unescape(t.s, t.nodes[v].start, t.nodes[v].end, &c.data3, t.n)
                bit_put(&c.valid3, c.n2, 1)
            else:
                bit_put(&c.valid3, c.n2, 0)
                c.nulls3 += 1
            buf_i32(&c.offs3, off32(c.data3.len))
            c.n2 += 1
        el = arr_next(t, arr, el)
    return col_list_close(c)


cdef inline bint two_numbers(Tape* t, uint32_t arr, double* a, double* b) noexcept nogil:
    cdef uint32_t e1, e2
    if not is_type(t, arr, J_ARR) or t.nodes[arr].count != 2:
        return 0
    e1 = arr + 1
    e2 = t.nodes[e1].next
    return get_num(t, e1, a) and get_num(t, e2, b)


cdef int w_provenance(State* st, Col* cols, int first, int dialect, uint64_t want) except -1 nogil:
    """The dialect, source file, line and byte offset columns from ``first`` on (those whose
    bit is set in ``want``)."""
    if (want >> first) & 1: col_code(&cols[first], dialect)
    if (want >> (first + 1)) & 1: col_code(&cols[first + 1], st.source_code)
    if (want >> (first + 2)) & 1: col_i64(&cols[first + 2], st.line_no)
    if (want >> (first + 3)) & 1: col_i64(&cols[first + 3], st.line_off)
    return 0


# ---------------------------------------------------------------- tweets

cdef uint32_t v1_text(Tape* t, uint32_t obj, Buf* tmp) except? 0xFFFFFFFE nogil:
    """First string of obj.extended_tweet.full_text, obj.full_text, obj.text."""
    cdef uint32_t v
    if obj == NONE:
        return NONE
    v = get2(t, obj, KY_extended_tweet, KY_full_text, tmp)
    if is_type(t, v, J_STR):
        return v
    v = get(t, obj, KY_full_text, tmp)
    if is_type(t, v, J_STR):
        return v
    return str_or_none(t, get(t, obj, KY_text, tmp))


cdef int emit_v1(State* st, Msg* m) except -1 nogil:
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef Col* c = st.cols
    cdef uint32_t T = m.node, U, R, Q, et, E, X, v
    cdef int64_t q
    cdef double a, b
    if not dedupe_admit(st, m.id):
        return 0
    col_i64(&c[T_ID], m.id)
    if W(st, T_CREATED): w_time(st, &c[T_CREATED], get(t, T, KY_created_at, tmp))
    if W(st, T_TEXT): w_str(st, &c[T_TEXT], v1_text(t, T, tmp))
    if W(st, T_LANG): w_str(st, &c[T_LANG], get(t, T, KY_lang, tmp))
    if W(st, T_SOURCE): w_app(st, &c[T_SOURCE], get(t, T, KY_source, tmp))
    U = obj_or_none(t, get(t, T, KY_user, tmp))
    if W(st, T_AUTHOR_ID): col_i64_or_null(&c[T_AUTHOR_ID], pref_id(t, U, KY_id_str, KY_id, tmp))
    if W(st, T_A_SN): w_str(st, &c[T_A_SN], get(t, U, KY_screen_name, tmp))
    if W(st, T_A_NAME): w_str(st, &c[T_A_NAME], get(t, U, KY_name, tmp))
    if W(st, T_A_DESC): w_str(st, &c[T_A_DESC], get(t, U, KY_description, tmp))
    if W(st, T_A_LOC): w_str(st, &c[T_A_LOC], get(t, U, KY_location, tmp))
    if W(st, T_A_FOL): w_int(st, &c[T_A_FOL], get(t, U, KY_followers_count, tmp))
    if W(st, T_A_VER): w_bool(st, &c[T_A_VER], get(t, U, KY_verified, tmp))
    if W(st, T_IRT_S): col_i64_or_null(&c[T_IRT_S], pref_id(t, T, KY_in_reply_to_status_id_str, KY_in_reply_to_status_id, tmp))
    if W(st, T_IRT_U): col_i64_or_null(&c[T_IRT_U], pref_id(t, T, KY_in_reply_to_user_id_str, KY_in_reply_to_user_id, tmp))
    if W(st, T_IRT_SN): w_str(st, &c[T_IRT_SN], get(t, T, KY_in_reply_to_screen_name, tmp))
    R = obj_or_none(t, get(t, T, KY_retweeted_status, tmp))
    if W(st, T_RT_S): col_i64_or_null(&c[T_RT_S], pref_id(t, R, KY_id_str, KY_id, tmp))
    v = obj_or_none(t, get(t, R, KY_user, tmp))
    if W(st, T_RT_U): col_i64_or_null(&c[T_RT_U], pref_id(t, v, KY_id_str, KY_id, tmp))
    if W(st, T_RT_SN): w_str(st, &c[T_RT_SN], get(t, v, KY_screen_name, tmp))
    if W(st, T_RT_TEXT): w_str(st, &c[T_RT_TEXT], v1_text(t, R, tmp))
    Q = obj_or_none(t, get(t, T, KY_quoted_status, tmp))
    if Q == NONE:
        Q = obj_or_none(t, get(t, R, KY_quoted_status, tmp))
    q = pref_id(t, T, KY_quoted_status_id_str, KY_quoted_status_id, tmp)
    if q < 0:
        q = pref_id(t, Q, KY_id_str, KY_id, tmp)
    if W(st, T_Q_S): col_i64_or_null(&c[T_Q_S], q)
    if W(st, T_Q_U): col_i64_or_null(&c[T_Q_U], pref_id(t, obj_or_none(t, get(t, Q, KY_user, tmp)), KY_id_str, KY_id, tmp))
    if W(st, T_Q_TEXT): w_str(st, &c[T_Q_TEXT], v1_text(t, Q, tmp))
    et = obj_or_none(t, get(t, T, KY_extended_tweet, tmp))
    E = get(t, et, KY_entities, tmp) if et != NONE else get(t, T, KY_entities, tmp)
    if W(st, T_HASH): w_strlist(st, &c[T_HASH], get(t, E, KY_hashtags, tmp), KY_text, 0)
    if W(st, T_MENT): w_strlist(st, &c[T_MENT], get(t, E, KY_user_mentions, tmp), KY_screen_name, 0)
    if W(st, T_MENT_IDS): w_mention_ids(st, &c[T_MENT_IDS], get(t, E, KY_user_mentions, tmp), 0)
    if W(st, T_CASH): w_strlist(st, &c[T_CASH], get(t, E, KY_symbols, tmp), KY_text, 0)
    if W(st, T_URLS): w_urls(st, &c[T_URLS], get(t, E, KY_urls, tmp))
    if et != NONE:
        X = obj_or_none(t, get(t, et, KY_extended_entities, tmp))
        if X == NONE:
            X = get(t, et, KY_entities, tmp)
    else:
        X = obj_or_none(t, get(t, T, KY_extended_entities, tmp))
        if X == NONE:
            X = get(t, T, KY_entities, tmp)
    if W(st, T_MEDIA): w_strlist(st, &c[T_MEDIA], get(t, X, KY_media, tmp), KY_type, 0)
    if not W(st, T_COORD):
        pass
    elif two_numbers(t, get2(t, T, KY_coordinates, KY_coordinates, tmp), &a, &b):
        col_coord(&c[T_COORD], a, b)
    elif two_numbers(t, get2(t, T, KY_geo, KY_coordinates, tmp), &a, &b):
        col_coord(&c[T_COORD], b, a)
    else:
        col_null(&c[T_COORD])
    v = get(t, T, KY_place, tmp)
    if W(st, T_PLACE_ID): w_str(st, &c[T_PLACE_ID], get(t, v, KY_id, tmp))
    if W(st, T_PLACE_CC): w_str(st, &c[T_PLACE_CC], get(t, v, KY_country_code, tmp))
    if W(st, T_WITHHELD): w_strlist(st, &c[T_WITHHELD], get(t, T, KY_withheld_in_countries, tmp), KY_NONE, 1)
    if W(st, T_RULES): w_rules(st, &c[T_RULES], get(t, T, KY_matching_rules, tmp))
    w_provenance(st, c, T_DIALECT, D_V1, st.want)
    st.n_tweets += 1
    return 0


cdef inline uint64_t col_bits(int a, int b) noexcept nogil:
    """The bits of tweet columns a..b (inclusive)."""
    return ((<uint64_t>1 << (b + 1)) - 1) & ~((<uint64_t>1 << a) - 1)


cdef inline bint W_(uint64_t want, int col) noexcept nogil:
    return (want >> col) & 1


cdef inline void kt_set(uint8_t* kt, int row, int key, int child) noexcept nogil:
    kt[(row << 8) + key] = KW | child


cdef void ktab_build(uint8_t* kt, uint64_t want) noexcept:
    """The key table (fh_ps) of the projection ``want``: what the scan keeps of a message is
    what classify and emit_* read of it for these columns, and in the objects under a few of
    its keys (a v1.1 tweet's user, retweeted / quoted status, extended tweet, entities) only
    the members the wanted columns read there; the rest is validated but skipped. Everything
    below the other keys of a message (v2 and Activity Streams objects, compliance messages'
    bodies) is as with all columns. An object under those few keys is read by emit_v1 only,
    but for ``entities`` (emit_v2 reads a bare v2 tweet's: its keys are wanted too) and
    ``user`` (classify looks for a message's: classify_v2's ``data.*.user`` is under
    ``data``, FULL). A new read of a message's key in classify or emit_* must be added here.
    Nothing reads the members of these objects by position (a message's first member and
    ``data``'s are): the restricted rows keep no first member."""
    cdef int k, r
    cdef bint texts = (want & (col_bits(T_TEXT, T_TEXT) | col_bits(T_RT_TEXT, T_RT_TEXT)
                              | col_bits(T_Q_TEXT, T_Q_TEXT))) != 0
    cdef bint quote = (want & col_bits(T_Q_S, T_Q_TEXT)) != 0
    kt_init(kt, KY_COUNT)
    if want == ~(<uint64_t>0):
        kt_lens(kt, KY_COUNT)
        return
    # a message (the line's value, a page's elements): the keys classify, classify_v2 and
    # classify_act read (whatever the columns), and those emit_v1 / emit_v2 (a bare v2 tweet,
    # an envelope) / emit_act read for the wanted columns; a few values restricted
    for k in range(256):
        kt[(CX_ROOT << 8) + k] = CX_SKIP    # (a first member not read: only its key is)
    kt[(CX_ROOT << 8) + KT_FIRST] = 1       # (first_key, split_and_classify)
    for k in (KY_data, KY_verb, KY_delete, KY_scrub_geo, KY_status_withheld, KY_user_withheld,
              KY_limit, KY_warning, KY_disconnect, KY_info, KY_warn, KY_error, KY_action, KY_id,
              KY_id_str, KY_reason, KY_created_at, KY_text, KY_full_text, KY_author_id,
              KY_errors, KY_includes, KY_object, KY_withheld_in_countries, KY_timestampMs,
              KY_postedTime, KY_actor, KY_target):
        kt_set(kt, CX_ROOT, k, CX_FULL)
    kt_set(kt, CX_ROOT, KY_statuses, CX_ROOT)       # a page's messages
    kt_set(kt, CX_ROOT, KY_user, CX_USER)
    kt_set(kt, CX_ROOT, KY_extended_tweet, CX_ET)   # (its presence picks the entities)
    if W_(want, T_TEXT):
        for k in (KY_note_tweet, KY_long_object, KY_body):
            kt_set(kt, CX_ROOT, k, CX_FULL)
    if W_(want, T_LANG):
        kt_set(kt, CX_ROOT, KY_lang, CX_FULL)
        kt_set(kt, CX_ROOT, KY_twitter_lang, CX_FULL)
    if W_(want, T_SOURCE):
        kt_set(kt, CX_ROOT, KY_source, CX_FULL)
        kt_set(kt, CX_ROOT, KY_generator, CX_FULL)
    if want & col_bits(T_A_SN, T_A_VER):
        kt_set(kt, CX_ROOT, KY_author, CX_FULL)
    if W_(want, T_IRT_S):
        for k in (KY_in_reply_to_status_id, KY_in_reply_to_status_id_str, KY_inReplyTo):
            kt_set(kt, CX_ROOT, k, CX_FULL)
    if want & col_bits(T_IRT_U, T_IRT_SN):
        kt_set(kt, CX_ROOT, KY_in_reply_to_user_id, CX_FULL)
    if W_(want, T_IRT_U):
        kt_set(kt, CX_ROOT, KY_in_reply_to_user_id_str, CX_FULL)
    if W_(want, T_IRT_SN):
        kt_set(kt, CX_ROOT, KY_in_reply_to_screen_name, CX_FULL)
    if want & (col_bits(T_IRT_S, T_IRT_S) | col_bits(T_RT_S, T_Q_TEXT)):
        kt_set(kt, CX_ROOT, KY_referenced_tweets, CX_FULL)
    if want & col_bits(T_RT_S, T_Q_TEXT):    # (a quote's fallback: the retweet's quote)
        kt_set(kt, CX_ROOT, KY_retweeted_status, CX_RT)
    if quote:
        kt_set(kt, CX_ROOT, KY_quoted_status, CX_QS)
        kt_set(kt, CX_ROOT, KY_quoted_status_id, CX_FULL)
        kt_set(kt, CX_ROOT, KY_quoted_status_id_str, CX_FULL)
        kt_set(kt, CX_ROOT, KY_twitter_quoted_status, CX_FULL)
    if want & col_bits(T_HASH, T_MEDIA):
        kt_set(kt, CX_ROOT, KY_entities, CX_ENT)
        for k in (KY_note_tweet, KY_long_object, KY_twitter_entities):
            kt_set(kt, CX_ROOT, k, CX_FULL)
    if W_(want, T_MEDIA):
        kt_set(kt, CX_ROOT, KY_extended_entities, CX_ENT)
        kt_set(kt, CX_ROOT, KY_attachments, CX_FULL)
        kt_set(kt, CX_ROOT, KY_twitter_extended_entities, CX_FULL)
    if W_(want, T_COORD):
        kt_set(kt, CX_ROOT, KY_coordinates, CX_FULL)
    if want & col_bits(T_COORD, T_PLACE_CC):
        kt_set(kt, CX_ROOT, KY_geo, CX_FULL)
    if want & col_bits(T_PLACE_ID, T_PLACE_CC):
        kt_set(kt, CX_ROOT, KY_place, CX_FULL)
        kt_set(kt, CX_ROOT, KY_location, CX_FULL)
    if W_(want, T_WITHHELD):
        kt_set(kt, CX_ROOT, KY_withheld, CX_FULL)
    if W_(want, T_RULES):
        kt_set(kt, CX_ROOT, KY_matching_rules, CX_FULL)
        kt_set(kt, CX_ROOT, KY_gnip, CX_FULL)
    for r in range(CX_USER, CX_N):      # (nothing read positionally: no first member kept)
        for k in range(256):
            kt[(r << 8) + k] = CX_SKIP
        kt[(r << 8) + KT_FIRST] = 0
    # a v1.1 user (the author, a retweet's, a quote's)
    if want & (col_bits(T_AUTHOR_ID, T_AUTHOR_ID) | col_bits(T_RT_U, T_RT_U) | col_bits(T_Q_U, T_Q_U)):
        kt_set(kt, CX_USER, KY_id, CX_FULL)
        kt_set(kt, CX_USER, KY_id_str, CX_FULL)
    if want & (col_bits(T_A_SN, T_A_SN) | col_bits(T_RT_SN, T_RT_SN)):
        kt_set(kt, CX_USER, KY_screen_name, CX_FULL)
    if W_(want, T_A_NAME): kt_set(kt, CX_USER, KY_name, CX_FULL)
    if W_(want, T_A_DESC): kt_set(kt, CX_USER, KY_description, CX_FULL)
    if W_(want, T_A_LOC): kt_set(kt, CX_USER, KY_location, CX_FULL)
    if W_(want, T_A_FOL): kt_set(kt, CX_USER, KY_followers_count, CX_FULL)
    if W_(want, T_A_VER): kt_set(kt, CX_USER, KY_verified, CX_FULL)
    # a retweeted status: its id, user, text, and its quoted status (the quote's fallback)
    if W_(want, T_RT_S):
        kt_set(kt, CX_RT, KY_id, CX_FULL)
        kt_set(kt, CX_RT, KY_id_str, CX_FULL)
    if want & col_bits(T_RT_U, T_RT_SN):
        kt_set(kt, CX_RT, KY_user, CX_USER)
    if quote:
        kt_set(kt, CX_RT, KY_quoted_status, CX_QS)
    if W_(want, T_RT_TEXT):
        kt_set(kt, CX_RT, KY_text, CX_FULL)
        kt_set(kt, CX_RT, KY_full_text, CX_FULL)
        kt_set(kt, CX_RT, KY_extended_tweet, CX_ET)
    # a quoted status
    if W_(want, T_Q_S):
        kt_set(kt, CX_QS, KY_id, CX_FULL)
        kt_set(kt, CX_QS, KY_id_str, CX_FULL)
    if W_(want, T_Q_U):
        kt_set(kt, CX_QS, KY_user, CX_USER)
    if W_(want, T_Q_TEXT):
        kt_set(kt, CX_QS, KY_text, CX_FULL)
        kt_set(kt, CX_QS, KY_full_text, CX_FULL)
        kt_set(kt, CX_QS, KY_extended_tweet, CX_ET)
    # an extended tweet (the message's, a retweet's or quote's): its text, entities, media
    if texts:
        kt_set(kt, CX_ET, KY_full_text, CX_FULL)
    if want & col_bits(T_HASH, T_MEDIA):
        kt_set(kt, CX_ET, KY_entities, CX_ENT)
    if W_(want, T_MEDIA):
        kt_set(kt, CX_ET, KY_extended_entities, CX_ENT)
    # entities (v1.1's; a v2 tweet's at the message level), extended entities
    if W_(want, T_HASH):
        kt_set(kt, CX_ENT, KY_hashtags, CX_FULL)
    if want & col_bits(T_MENT, T_MENT_IDS):
        kt_set(kt, CX_ENT, KY_user_mentions, CX_FULL)
        kt_set(kt, CX_ENT, KY_mentions, CX_FULL)
    if W_(want, T_CASH):
        kt_set(kt, CX_ENT, KY_symbols, CX_FULL)
        kt_set(kt, CX_ENT, KY_cashtags, CX_FULL)
    if W_(want, T_URLS):
        kt_set(kt, CX_ENT, KY_urls, CX_FULL)
    if W_(want, T_MEDIA):
        kt_set(kt, CX_ENT, KY_media, CX_FULL)
    kt_lens(kt, KY_COUNT)


cdef int lookup_kinds(uint64_t want) noexcept nogil:
    """Which kinds of v2 includes emit_v2 looks up for the columns in ``want`` (bit k - 1:
    L_USER, L_TWEET, L_MEDIA, L_PLACE as k): the others need not be indexed, as no wanted
    column can read them (find_id / find_key of a kind not built find nothing, and their
    answers only go to these columns)."""
    cdef int kinds = 0
    # the author's fields; the replied-to user's name; a retweet's author found via users
    if want & (col_bits(T_A_SN, T_A_VER) | col_bits(T_IRT_SN, T_IRT_SN) | col_bits(T_RT_SN, T_RT_SN)):
        kinds |= 1 << (L_USER - 1)
    # the retweeted / quoted tweet's object (their ids alone come from referenced_tweets)
    if want & (col_bits(T_RT_U, T_RT_TEXT) | col_bits(T_Q_U, T_Q_TEXT)):
        kinds |= 1 << (L_TWEET - 1)
    if want & col_bits(T_MEDIA, T_MEDIA):
        kinds |= 1 << (L_MEDIA - 1)
    if want & col_bits(T_PLACE_CC, T_PLACE_CC):
        kinds |= 1 << (L_PLACE - 1)
    return kinds


cdef int build_lookups(State* st, uint32_t env) except -1 nogil:
    """Index the envelope's ``includes`` (of the kinds the projection reads, lookup_kinds)."""
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef uint32_t inc, arr, el
    cdef Lookup lk
    cdef int which, kinds = lookup_kinds(st.want)
    cdef uint32_t names[4]
    names[0] = KY_users
    names[1] = KY_tweets
    names[2] = KY_media
    names[3] = KY_places
    st.lookups.len = 0
    if kinds == 0:
        return 0
    inc = obj_or_none(t, get(t, env, KY_includes, tmp))
    if inc == NONE:
        return 0
    for which in range(4):
        if not (kinds >> which) & 1:
            continue
        arr = get(t, inc, names[which], tmp)
        el = arr_first(t, arr)
        while el != NONE:
            if is_type(t, el, J_OBJ):
                lk.kind = which + 1
                lk.node = el
                lk.id = -1
                lk.key = NONE
                if which <= 1:
                    lk.id = get_id(t, get(t, el, KY_id, tmp), tmp)
                elif which == 2:
                    lk.key = get(t, el, KY_media_key, tmp)
                else:
                    lk.key = get(t, el, KY_id, tmp)
                buf_put(&st.lookups, &lk, sizeof(Lookup))
            el = arr_next(t, arr, el)
    return 0


cdef uint32_t find_id(State* st, int kind, int64_t x) noexcept nogil:
    """The last include of that kind with that id, or NONE."""
    cdef Lookup* lk = <Lookup*>st.lookups.data
    cdef Py_ssize_t i, n = st.lookups.len // sizeof(Lookup)
    if x < 0:
        return NONE
    for i in range(n - 1, -1, -1):
        if lk[i].kind == kind and lk[i].id == x:
            return lk[i].node
    return NONE


cdef uint32_t find_key(State* st, int kind, uint32_t key) except? 0xFFFFFFFE nogil:
    cdef Lookup* lk = <Lookup*>st.lookups.data
    cdef Py_ssize_t i, n = st.lookups.len // sizeof(Lookup)
    if not is_type(&st.tape, key, J_STR):
        return NONE
    for i in range(n - 1, -1, -1):
        if lk[i].kind == kind and str_nodes_eq(&st.tape, lk[i].key, key, &st.scratch, &st.scratch2):
            return lk[i].node
    return NONE


cdef uint32_t v2_text(Tape* t, uint32_t obj, Buf* tmp) except? 0xFFFFFFFE nogil:
    cdef uint32_t v
    if obj == NONE:
        return NONE
    v = get2(t, obj, KY_note_tweet, KY_text, tmp)
    if is_type(t, v, J_STR):
        return v
    return str_or_none(t, get(t, obj, KY_text, tmp))


cdef uint32_t v2_ref(State* st, uint32_t D, const char* typ, int64_t* ref_id) except? 0xFFFFFFFE nogil:
    """The object of D's first referenced tweet of that type (NONE if unknown); its id in ref_id."""
    cdef Tape* t = &st.tape
    cdef uint32_t arr = get(t, D, KY_referenced_tweets, &st.scratch), el, obj
    ref_id[0] = -1
    el = arr_first(t, arr)
    while el != NONE:
        if is_type(t, el, J_OBJ) and str_is(t, get(t, el, KY_type, &st.scratch), typ, &st.scratch):
            ref_id[0] = get_id(t, get(t, el, KY_id, &st.scratch), &st.scratch)
            obj = find_id(st, L_TWEET, ref_id[0])
            if obj == NONE and get(t, el, KY_text, &st.scratch) != NONE:
                obj = el
            return obj
        el = arr_next(t, arr, el)
    return NONE


cdef int emit_v2(State* st, Msg* m) except -1 nogil:
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef Col* c = st.cols
    cdef uint32_t D = m.node, U, nt, E, obj, arr, el, v, pid
    cdef int64_t author, rid
    cdef double a, b
    if not dedupe_admit(st, m.id):
        return 0
    col_i64(&c[T_ID], m.id)
    if W(st, T_CREATED): w_time(st, &c[T_CREATED], get(t, D, KY_created_at, tmp))
    if W(st, T_TEXT): w_str(st, &c[T_TEXT], v2_text(t, D, tmp))
    if W(st, T_LANG): w_str(st, &c[T_LANG], get(t, D, KY_lang, tmp))
    if W(st, T_SOURCE): w_app(st, &c[T_SOURCE], get(t, D, KY_source, tmp))
    author = get_id(t, get(t, D, KY_author_id, tmp), tmp)
    if W(st, T_AUTHOR_ID): col_i64_or_null(&c[T_AUTHOR_ID], author)
    U = find_id(st, L_USER, author)
    if U == NONE:
        U = obj_or_none(t, get(t, D, KY_author, tmp))
    if W(st, T_A_SN): w_str(st, &c[T_A_SN], get(t, U, KY_username, tmp))
    if W(st, T_A_NAME): w_str(st, &c[T_A_NAME], get(t, U, KY_name, tmp))
    if W(st, T_A_DESC): w_str(st, &c[T_A_DESC], get(t, U, KY_description, tmp))
    if W(st, T_A_LOC): w_str(st, &c[T_A_LOC], get(t, U, KY_location, tmp))
    if W(st, T_A_FOL): w_int(st, &c[T_A_FOL], get2(t, U, KY_public_metrics, KY_followers_count, tmp))
    if W(st, T_A_VER): w_bool(st, &c[T_A_VER], get(t, U, KY_verified, tmp))
    # (each group below only when one of its columns is wanted: lookups cost, see lookup_kinds)
    if W(st, T_IRT_S):
        v2_ref(st, D, "replied_to", &rid)
        col_i64_or_null(&c[T_IRT_S], rid)
    if st.want & col_bits(T_IRT_U, T_IRT_SN):
        author = get_id(t, get(t, D, KY_in_reply_to_user_id, tmp), tmp)
        if W(st, T_IRT_U): col_i64_or_null(&c[T_IRT_U], author)
        if W(st, T_IRT_SN): w_str(st, &c[T_IRT_SN], get(t, find_id(st, L_USER, author), KY_username, tmp))
    if st.want & col_bits(T_RT_S, T_RT_TEXT):
        obj = v2_ref(st, D, "retweeted", &rid)
        if W(st, T_RT_S): col_i64_or_null(&c[T_RT_S], rid)
        author = get_id(t, get(t, obj, KY_author_id, tmp), tmp)
        if W(st, T_RT_U): col_i64_or_null(&c[T_RT_U], author)
        if W(st, T_RT_SN):
            U = find_id(st, L_USER, author)
            if U == NONE:
                U = obj_or_none(t, get(t, obj, KY_author, tmp))
            w_str(st, &c[T_RT_SN], get(t, U, KY_username, tmp))
        if W(st, T_RT_TEXT): w_str(st, &c[T_RT_TEXT], v2_text(t, obj, tmp))
    if st.want & col_bits(T_Q_S, T_Q_TEXT):
        obj = v2_ref(st, D, "quoted", &rid)
        if W(st, T_Q_S): col_i64_or_null(&c[T_Q_S], rid)
        if W(st, T_Q_U): col_i64_or_null(&c[T_Q_U], get_id(t, get(t, obj, KY_author_id, tmp), tmp))
        if W(st, T_Q_TEXT): w_str(st, &c[T_Q_TEXT], v2_text(t, obj, tmp))
    E = NONE
    if st.want & col_bits(T_HASH, T_URLS):
        nt = obj_or_none(t, get(t, D, KY_note_tweet, tmp))
        E = get(t, nt, KY_entities, tmp)
        if E == NONE:
            E = get(t, D, KY_entities, tmp)
    if W(st, T_HASH): w_strlist(st, &c[T_HASH], get(t, E, KY_hashtags, tmp), KY_tag, 0)
    if W(st, T_MENT): w_strlist(st, &c[T_MENT], get(t, E, KY_mentions, tmp), KY_username, 0)
    if W(st, T_MENT_IDS): w_mention_ids(st, &c[T_MENT_IDS], get(t, E, KY_mentions, tmp), 1)
    if W(st, T_CASH): w_strlist(st, &c[T_CASH], get(t, E, KY_cashtags, tmp), KY_tag, 0)
    if W(st, T_URLS): w_urls(st, &c[T_URLS], get(t, E, KY_urls, tmp))
    if W(st, T_MEDIA):
        arr = get2(t, D, KY_attachments, KY_media_keys, tmp)
        el = arr_first(t, arr)
        while el != NONE:
            v = find_key(st, L_MEDIA, el)
            v = get(t, v, KY_type, tmp)
            if is_type(t, v, J_STR):
                unescape(t.s, t.nodes[v].start, t.nodes[v].end, &c[T_MEDIA].data, t.n)
                col_item_close(&c[T_MEDIA])
            el = arr_next(t, arr, el)
        col_list_close(&c[T_MEDIA])
    if st.want & col_bits(T_COORD, T_PLACE_CC):
        v = obj_or_none(t, get(t, D, KY_geo, tmp))
        if not W(st, T_COORD):
            pass
        elif two_numbers(t, get2(t, v, KY_coordinates, KY_coordinates, tmp), &a, &b):
            col_coord(&c[T_COORD], a, b)
        else:
            col_null(&c[T_COORD])
        pid = get(t, v, KY_place_id, tmp)
        if W(st, T_PLACE_ID): w_str(st, &c[T_PLACE_ID], pid)
        if W(st, T_PLACE_CC): w_str(st, &c[T_PLACE_CC], get(t, find_key(st, L_PLACE, pid), KY_country_code, tmp))
    if W(st, T_WITHHELD): w_strlist(st, &c[T_WITHHELD], get2(t, D, KY_withheld, KY_country_codes, tmp), KY_NONE, 1)
    if W(st, T_RULES): w_rules(st, &c[T_RULES], get(t, m.env if m.env != NONE else D, KY_matching_rules, tmp))
    w_provenance(st, c, T_DIALECT, D_V2, st.want)
    st.n_tweets += 1
    return 0


cdef uint32_t act_body(Tape* t, uint32_t obj, Buf* tmp) except? 0xFFFFFFFE nogil:
    cdef uint32_t v
    if obj == NONE:
        return NONE
    v = get2(t, obj, KY_long_object, KY_body, tmp)
    if is_type(t, v, J_STR):
        return v
    return str_or_none(t, get(t, obj, KY_body, tmp))


cdef int emit_act(State* st, Msg* m) except -1 nogil:
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef Col* c = st.cols
    cdef uint32_t A = m.node, act, lo, O, Q, E, X, v
    cdef bint share
    cdef const char* p
    cdef Py_ssize_t n, k
    cdef double a, b
    if not dedupe_admit(st, m.id):
        return 0
    col_i64(&c[T_ID], m.id)
    if W(st, T_CREATED): w_time(st, &c[T_CREATED], get(t, A, KY_postedTime, tmp))
    if W(st, T_TEXT): w_str(st, &c[T_TEXT], act_body(t, A, tmp))
    if W(st, T_LANG): w_str(st, &c[T_LANG], get(t, A, KY_twitter_lang, tmp))
    if W(st, T_SOURCE): w_str(st, &c[T_SOURCE], get2(t, A, KY_generator, KY_displayName, tmp))
    act = obj_or_none(t, get(t, A, KY_actor, tmp))
    if W(st, T_AUTHOR_ID): col_i64_or_null(&c[T_AUTHOR_ID], gnip_id(t, get(t, act, KY_id, tmp), tmp))
    if W(st, T_A_SN): w_str(st, &c[T_A_SN], get(t, act, KY_preferredUsername, tmp))
    if W(st, T_A_NAME): w_str(st, &c[T_A_NAME], get(t, act, KY_displayName, tmp))
    if W(st, T_A_DESC): w_str(st, &c[T_A_DESC], get(t, act, KY_summary, tmp))
    if W(st, T_A_LOC): w_str(st, &c[T_A_LOC], get2(t, act, KY_location, KY_displayName, tmp))
    if W(st, T_A_FOL): w_int(st, &c[T_A_FOL], get(t, act, KY_followersCount, tmp))
    if W(st, T_A_VER): w_bool(st, &c[T_A_VER], get(t, act, KY_verified, tmp))
    if W(st, T_IRT_S): col_i64_or_null(&c[T_IRT_S], id_after_slash(t, get2(t, A, KY_inReplyTo, KY_link, tmp), tmp))
    if W(st, T_IRT_U): col_null(&c[T_IRT_U])
    if W(st, T_IRT_SN): col_null(&c[T_IRT_SN])
    share = str_is(t, get(t, A, KY_verb, tmp), "share", tmp)
    O = obj_or_none(t, get(t, A, KY_object, tmp)) if share else NONE
    if W(st, T_RT_S): col_i64_or_null(&c[T_RT_S], gnip_id(t, get(t, O, KY_id, tmp), tmp))
    v = obj_or_none(t, get(t, O, KY_actor, tmp))
    if W(st, T_RT_U): col_i64_or_null(&c[T_RT_U], gnip_id(t, get(t, v, KY_id, tmp), tmp))
    if W(st, T_RT_SN): w_str(st, &c[T_RT_SN], get(t, v, KY_preferredUsername, tmp))
    if W(st, T_RT_TEXT): w_str(st, &c[T_RT_TEXT], act_body(t, O, tmp))
    Q = obj_or_none(t, get(t, A, KY_twitter_quoted_status, tmp))
    if Q == NONE:
        Q = obj_or_none(t, get(t, O, KY_twitter_quoted_status, tmp))
    if W(st, T_Q_S): col_i64_or_null(&c[T_Q_S], gnip_id(t, get(t, Q, KY_id, tmp), tmp))
    if W(st, T_Q_U): col_i64_or_null(&c[T_Q_U], gnip_id(t, get2(t, Q, KY_actor, KY_id, tmp), tmp))
    if W(st, T_Q_TEXT): w_str(st, &c[T_Q_TEXT], act_body(t, Q, tmp))
    lo = obj_or_none(t, get(t, A, KY_long_object, tmp))
    E = get(t, lo, KY_twitter_entities, tmp) if lo != NONE else get(t, A, KY_twitter_entities, tmp)
    if W(st, T_HASH): w_strlist(st, &c[T_HASH], get(t, E, KY_hashtags, tmp), KY_text, 0)
    if W(st, T_MENT): w_strlist(st, &c[T_MENT], get(t, E, KY_user_mentions, tmp), KY_screen_name, 0)
    if W(st, T_MENT_IDS): w_mention_ids(st, &c[T_MENT_IDS], get(t, E, KY_user_mentions, tmp), 0)
    if W(st, T_CASH): w_strlist(st, &c[T_CASH], get(t, E, KY_symbols, tmp), KY_text, 0)
    if W(st, T_URLS): w_urls(st, &c[T_URLS], get(t, E, KY_urls, tmp))
    X = obj_or_none(t, get(t, lo, KY_twitter_extended_entities, tmp))
    if X == NONE:
        X = obj_or_none(t, get(t, A, KY_twitter_extended_entities, tmp))
    if X == NONE:
        X = E
    if W(st, T_MEDIA): w_strlist(st, &c[T_MEDIA], get(t, X, KY_media, tmp), KY_type, 0)
    if not W(st, T_COORD):
        pass
    elif two_numbers(t, get2(t, A, KY_geo, KY_coordinates, tmp), &a, &b):
        col_coord(&c[T_COORD], b, a)
    else:
        col_null(&c[T_COORD])
    v = get2(t, A, KY_location, KY_link, tmp)
    if not W(st, T_PLACE_ID):
        pass
    elif is_type(t, v, J_STR):
        str_view(t, v, &p, &n, tmp)
        k = n
        while k > 0 and p[k - 1] != 0x2F:
            k -= 1
        if k > 0 and n - k >= 5 and memcmp(p + n - 5, ".json", 5) == 0:
            col_str(&c[T_PLACE_ID], p + k, n - k - 5)
        else:
            col_null(&c[T_PLACE_ID])
    else:
        col_null(&c[T_PLACE_ID])
    if W(st, T_PLACE_CC): w_str(st, &c[T_PLACE_CC], get2(t, A, KY_location, KY_twitter_country_code, tmp))
    if W(st, T_WITHHELD): col_list_close(&c[T_WITHHELD])
    if W(st, T_RULES): w_rules(st, &c[T_RULES], get2(t, A, KY_gnip, KY_matching_rules, tmp))
    w_provenance(st, c, T_DIALECT, D_ACT, st.want)
    st.n_tweets += 1
    return 0


# ---------------------------------------------------------------- compliance

cdef int emit_comp(State* st, Msg* m) except -1 nogil:
    cdef Col* c = st.ccols
    cdef Tape* t = &st.tape
    cdef Node* nd
    col_code(&c[C_KIND], m.kind)
    col_i64_or_null(&c[C_TWEET], m.tweet_id)
    col_i64_or_null(&c[C_USER], m.user_id)
    col_i64_or_null(&c[C_UPTO], m.up_to)
    col_i64_or_null(&c[C_OBJ], m.object_id)
    w_strlist(st, &c[C_COUNTRIES], m.countries, KY_NONE, 1)
    if m.event_at != NO_TIME:
        col_i64(&c[C_EVENT], m.event_at)
    else:
        col_null(&c[C_EVENT])
    if m.count != NO_TIME:
        col_i64(&c[C_COUNT], m.count)
    else:
        col_null(&c[C_COUNT])
    if m.code_raw and m.code_node != NONE and (t.nodes[m.code_node].type == J_INT
                                               or t.nodes[m.code_node].type == J_FLT):
        nd = &t.nodes[m.code_node]
        col_str(&c[C_CODE], <const char*>(t.s + nd.start), nd.end - nd.start)
    else:
        w_str(st, &c[C_CODE], m.code_node)
    if m.detail_lit != NULL:
        col_str(&c[C_DETAIL], m.detail_lit, strlen(m.detail_lit))
    else:
        w_str(st, &c[C_DETAIL], m.detail_node)
    w_provenance(st, c, C_DIALECT, m.dialect, ~(<uint64_t>0))
    st.n_compliance += 1
    return 0


cdef inline void msg_comp(Msg* m, int kind, int dialect) noexcept nogil:
    memset(m, 0, sizeof(Msg))
    m.cls = M_COMP
    m.kind = kind
    m.dialect = dialect
    m.node = NONE
    m.env = NONE
    m.id = -1
    m.tweet_id = -1
    m.user_id = -1
    m.up_to = -1
    m.object_id = -1
    m.countries = NONE
    m.event_at = NO_TIME
    m.count = NO_TIME
    m.code_node = NONE
    m.detail_node = NONE
    m.detail_lit = NULL


cdef inline int64_t time_or_none(State* st, uint32_t v) except -2 nogil:
    cdef int64_t ms
    if get_time(&st.tape, v, &ms, &st.scratch):
        return ms
    return NO_TIME


cdef inline int push(State* st, Msg* m) except -1 nogil:
    return buf_put(&st.msgs, m, sizeof(Msg))


cdef inline int need(State* st, bint ok, const char* field) noexcept nogil:
    if ok:
        return E_OK
    st.reject_field = field
    return E_NOID


cdef int kind_of(Tape* t, uint32_t v, int upto, Buf* tmp) except -2 nogil:
    """Index of the compliance kind named by string v among the first ``upto`` kinds, or -1."""
    cdef const char* p
    cdef Py_ssize_t n
    cdef int k
    if not is_type(t, v, J_STR):
        return -1
    str_view(t, v, &p, &n, tmp)
    for k in range(upto):
        if n == <Py_ssize_t>strlen(KIND_NAMES[k]) and memcmp(p, KIND_NAMES[k], n) == 0:
            return k
    return -1


cdef inline bint is_tweet_kind(int k) noexcept nogil:
    return k == K_DELETE or k == K_STATUS_WITHHELD or k == K_DROP or k == K_UNDROP \
        or k == K_TWEET_EDIT


cdef int classify_v2(State* st, uint32_t M, Msg* m) except -1 nogil:
    """A v2 envelope: compliance event, tweets, api errors, or other."""
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef uint32_t data = get(t, M, KY_data, tmp), el, C, errs
    cdef int k, produced = 0
    cdef int64_t x
    cdef const char* pp
    cdef Py_ssize_t pn
    if is_type(t, data, J_OBJ) and obj_size_is_1(t, data):
        k = kind_of(t, data + 1, K_TWEET_EDIT + 1, tmp)
        if k == K_DM_DELETE or k == K_STATUS_WITHHELD:
            k = -1                  # v1.1 names, not v2 compliance keys
        if k < 0 and str_is(t, data + 1, "withheld", tmp):
            k = K_STATUS_WITHHELD
        if k >= 0:
            C = data + 2
            msg_comp(m, k, D_V2)
            if k == K_TWEET_EDIT:
                m.tweet_id = get_id(t, get(t, C, KY_initial_tweet_id, tmp), tmp)
            else:
                m.tweet_id = get_id(t, get2(t, C, KY_tweet, KY_id, tmp), tmp)
            m.user_id = get_id(t, get2(t, C, KY_tweet, KY_author_id, tmp), tmp)
            if m.user_id < 0:
                m.user_id = get_id(t, get2(t, C, KY_user, KY_id, tmp), tmp)
            m.up_to = get_id(t, get(t, C, KY_up_to_tweet_id, tmp), tmp)
            m.countries = get(t, C, KY_withheld_in_countries, tmp)
            m.event_at = time_or_none(st, get(t, C, KY_event_at, tmp))
            if is_tweet_kind(k):
                if need(st, m.tweet_id >= 0, "$.data.*.tweet.id"):
                    return E_NOID
            elif need(st, m.user_id >= 0, "$.data.*.user.id"):
                return E_NOID
            return push(st, m)
    # tweets
    if is_type(t, data, J_OBJ):
        el = data
    else:
        el = arr_first(t, data)
    while el != NONE:
        if is_type(t, el, J_OBJ) and get(t, el, KY_text, tmp) != NONE:
            memset(m, 0, sizeof(Msg))
            m.cls = M_V2
            m.node = el
            m.env = M
            m.id = get_id(t, get(t, el, KY_id, tmp), tmp)
            if need(st, m.id >= 0, "$.data.id"):
                return E_NOID
            push(st, m)
            produced += 1
        el = NONE if el == data else arr_next(t, data, el)
    errs = get(t, M, KY_errors, tmp)
    el = arr_first(t, errs)
    while el != NONE:
        msg_comp(m, K_API_ERROR, D_V2)
        if is_type(t, el, J_OBJ):
            x = get_id(t, get(t, el, KY_resource_id, tmp), tmp)
            C = get(t, el, KY_parameter, tmp)
            if is_type(t, C, J_STR):
                str_view(t, C, &pp, &pn, tmp)
                if pn >= 8 and memcmp(pp + pn - 8, "username", 8) == 0:
                    x = -1          # resource_id is a username (e.g. "2245"), not an id
            C = get(t, el, KY_resource_type, tmp)
            if str_is(t, C, "tweet", tmp):
                m.tweet_id = x
            elif str_is(t, C, "user", tmp):
                m.user_id = x
            m.code_node = get(t, el, KY_title, tmp)
            m.detail_node = get(t, el, KY_detail, tmp)
        push(st, m)
        produced += 1
        el = arr_next(t, errs, el)
    if produced == 0:
        msg_comp(m, K_OTHER, D_V2)
        m.detail_lit = "data"
        push(st, m)
    return E_OK


cdef int classify_act(State* st, uint32_t A, Msg* m) except -1 nogil:
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef uint32_t verb = get(t, A, KY_verb, tmp), O
    cdef int k
    if str_is(t, verb, "post", tmp) or str_is(t, verb, "share", tmp):
        memset(m, 0, sizeof(Msg))
        m.cls = M_ACT
        m.node = A
        m.env = NONE
        m.id = gnip_id(t, get(t, A, KY_id, tmp), tmp)
        if need(st, m.id >= 0, "$.id"):
            return E_NOID
        return push(st, m)
    k = kind_of(t, verb, K_TWEET_EDIT + 1, tmp)
    if k < 0 or k == K_DM_DELETE:
        msg_comp(m, K_OTHER, D_ACT)
        m.detail_node = verb
        return push(st, m)
    msg_comp(m, k, D_ACT)
    O = obj_or_none(t, get(t, A, KY_object, tmp))
    m.countries = get(t, O, KY_withheld_in_countries, tmp)
    if m.countries == NONE:
        m.countries = get(t, A, KY_withheld_in_countries, tmp)
    m.event_at = time_or_none(st, get(t, A, KY_timestampMs, tmp))
    if m.event_at == NO_TIME:
        m.event_at = time_or_none(st, get(t, A, KY_postedTime, tmp))
    if k == K_SCRUB_GEO:
        m.user_id = gnip_id(t, get2(t, A, KY_actor, KY_id, tmp), tmp)
        m.up_to = gnip_id(t, get2(t, A, KY_target, KY_up_to_id, tmp), tmp)
        if need(st, m.user_id >= 0, "$.actor.id"):
            return E_NOID
    elif is_tweet_kind(k):
        m.tweet_id = gnip_id(t, get(t, O, KY_id, tmp), tmp)
        m.user_id = gnip_id(t, get2(t, A, KY_actor, KY_id, tmp), tmp)
        if m.user_id < 0:
            m.user_id = gnip_id(t, get(t, O, KY_user_id, tmp), tmp)
        if need(st, m.tweet_id >= 0, "$.object.id"):
            return E_NOID
    else:
        m.user_id = gnip_id(t, get(t, O, KY_id, tmp), tmp)
        if need(st, m.user_id >= 0, "$.object.id"):
            return E_NOID
    return push(st, m)


cdef int classify_stream(State* st, uint32_t M, Msg* m) except -2 nogil:
    """v1.1 stream and Gnip system messages. -1 when the message is none of them."""
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef uint32_t v, S, u
    v = get(t, M, KY_delete, tmp)
    if v != NONE:
        S = obj_or_none(t, get(t, v, KY_direct_message, tmp))
        if S != NONE and not is_type(t, get(t, v, KY_status, tmp), J_OBJ):
            msg_comp(m, K_DM_DELETE, D_V1)
            m.user_id = pref_id(t, S, KY_user_id_str, KY_user_id, tmp)
        else:
            S = get(t, v, KY_status, tmp)
            msg_comp(m, K_DELETE, D_V1)
            m.tweet_id = pref_id(t, S, KY_id_str, KY_id, tmp)
            m.user_id = pref_id(t, S, KY_user_id_str, KY_user_id, tmp)
            if need(st, m.tweet_id >= 0, "$.delete.status.id_str"):
                return E_NOID
        m.event_at = time_or_none(st, get(t, v, KY_timestamp_ms, tmp))
        return push(st, m)
    v = get(t, M, KY_scrub_geo, tmp)
    if v != NONE:
        msg_comp(m, K_SCRUB_GEO, D_V1)
        m.user_id = pref_id(t, v, KY_user_id_str, KY_user_id, tmp)
        m.up_to = get_id(t, get(t, v, KY_up_to_status_id_str, tmp), tmp)
        if m.up_to < 0:
            m.up_to = pref_id(t, v, KY_up_to_status_id_string, KY_up_to_status_id, tmp)
        m.event_at = time_or_none(st, get(t, v, KY_timestamp_ms, tmp))
        if need(st, m.user_id >= 0, "$.scrub_geo.user_id_str"):
            return E_NOID
        return push(st, m)
    v = get(t, M, KY_status_withheld, tmp)
    if v != NONE:
        msg_comp(m, K_STATUS_WITHHELD, D_V1)
        m.tweet_id = pref_id(t, v, KY_id_str, KY_id, tmp)
        m.user_id = pref_id(t, v, KY_user_id_str, KY_user_id, tmp)
        m.countries = get(t, v, KY_withheld_in_countries, tmp)
        m.event_at = time_or_none(st, get(t, v, KY_timestamp_ms, tmp))
        if need(st, m.tweet_id >= 0, "$.status_withheld.id_str"):
            return E_NOID
        return push(st, m)
    v = get(t, M, KY_user_withheld, tmp)
    if v != NONE:
        msg_comp(m, K_USER_WITHHELD, D_V1)
        m.user_id = pref_id(t, v, KY_id_str, KY_id, tmp)
        m.countries = get(t, v, KY_withheld_in_countries, tmp)
        m.event_at = time_or_none(st, get(t, v, KY_timestamp_ms, tmp))
        if need(st, m.user_id >= 0, "$.user_withheld.id_str"):
            return E_NOID
        return push(st, m)
    v = get(t, M, KY_limit, tmp)
    if v != NONE:
        msg_comp(m, K_LIMIT, D_V1)
        if not get_int(t, get(t, v, KY_track, tmp), &m.count):
            m.count = NO_TIME
        m.event_at = time_or_none(st, get(t, v, KY_timestamp_ms, tmp))
        return push(st, m)
    v = get(t, M, KY_warning, tmp)
    if v != NONE:
        msg_comp(m, K_WARNING, D_V1)
        m.code_node = get(t, v, KY_code, tmp)
        m.detail_node = get(t, v, KY_message, tmp)
        m.event_at = time_or_none(st, get(t, v, KY_timestamp_ms, tmp))
        return push(st, m)
    v = get(t, M, KY_disconnect, tmp)
    if v != NONE:
        msg_comp(m, K_DISCONNECT, D_V1)
        m.code_node = get(t, v, KY_code, tmp)
        m.code_raw = 1
        m.detail_node = get(t, v, KY_reason, tmp)
        m.event_at = time_or_none(st, get(t, v, KY_timestamp_ms, tmp))
        return push(st, m)
    for u in range(3):
        v = get(t, M, KY_info if u == 0 else (KY_warn if u == 1 else KY_error), tmp)
        if v != NONE:
            msg_comp(m, K_SYSTEM_INFO + u, D_V1)
            m.detail_node = get(t, v, KY_message, tmp)
            m.event_at = time_or_none(st, get(t, v, KY_sent, tmp))
            return push(st, m)
    return -1


cdef int classify(State* st, uint32_t M) except -1 nogil:
    """Classify one message; E_OK or a reject code (st.reject_field says where)."""
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef Msg m
    cdef int r
    if not is_type(t, M, J_OBJ):
        st.reject_field = NULL
        return E_NOTOBJ
    if get(t, M, KY_data, tmp) != NONE:
        return classify_v2(st, M, &m)
    if get(t, M, KY_verb, tmp) != NONE:
        return classify_act(st, M, &m)
    r = classify_stream(st, M, &m)
    if r >= 0:
        return r
    if get(t, M, KY_action, tmp) != NONE and get(t, M, KY_id, tmp) != NONE \
            and get(t, M, KY_reason, tmp) != NONE:
        msg_comp(&m, K_BATCH, D_V2)
        m.object_id = get_id(t, get(t, M, KY_id, tmp), tmp)
        m.code_node = get(t, M, KY_action, tmp)
        m.detail_node = get(t, M, KY_reason, tmp)
        m.event_at = time_or_none(st, get(t, M, KY_created_at, tmp))
        if need(st, m.object_id >= 0, "$.id"):
            return E_NOID
        return push(st, &m)
    if get(t, M, KY_text, tmp) != NONE or get(t, M, KY_full_text, tmp) != NONE:
        memset(&m, 0, sizeof(Msg))
        m.node = M
        m.env = NONE
        if get(t, M, KY_user, tmp) != NONE or get(t, M, KY_author_id, tmp) == NONE:
            m.cls = M_V1
            m.id = pref_id(t, M, KY_id_str, KY_id, tmp)
            if need(st, m.id >= 0, "$.id_str"):
                return E_NOID
        else:
            m.cls = M_V2
            m.id = get_id(t, get(t, M, KY_id, tmp), tmp)
            if need(st, m.id >= 0, "$.id"):
                return E_NOID
        return push(st, &m)
    msg_comp(&m, K_OTHER, D_V1)
    m.detail_node = first_key(t, M)
    return push(st, &m)


cdef int split_and_classify(State* st) except -1 nogil:
    """Split the line's value into messages (pages) and classify them all."""
    cdef Tape* t = &st.tape
    cdef Buf* tmp = &st.scratch
    cdef uint32_t root = 0, v, el, i
    cdef int r
    cdef Msg m
    st.msgs.len = 0
    if t.nodes[root].type == J_ARR:
        el = arr_first(t, root)
        if el == NONE:
            msg_comp(&m, K_OTHER, D_V1)      # an empty page: accounted for, detail null
            return push(st, &m)
        while el != NONE:
            r = classify(st, el)
            if r:
                return r
            el = arr_next(t, root, el)
        return E_OK
    if t.nodes[root].type != J_OBJ:
        st.reject_field = "$"
        return E_NOTOBJ
    v = get(t, root, KY_statuses, tmp)
    if is_type(t, v, J_ARR) and t.nodes[v].count > 0:
        el = arr_first(t, v)
        while el != NONE:
            r = classify(st, el)
            if r:
                return r
            el = arr_next(t, v, el)
    elif obj_size_is_1(t, root) and str_is(t, root + 1, "id", tmp) \
            and is_type(t, root + 2, J_OBJ):
        v = root + 2
        el = v + 1          # key, value, key, value, ...
        for i in range(t.nodes[v].count):
            if t.nodes[el + 1].type != J_NULL:
                r = classify(st, el + 1)
                if r:
                    return r
            el = t.nodes[el + 1].next
    if st.msgs.len == 0:
        return classify(st, root)
    return E_OK


cdef int emit_all(State* st) except -1 nogil:
    cdef Msg* ms = <Msg*>st.msgs.data
    cdef Py_ssize_t i, n = st.msgs.len // sizeof(Msg)
    cdef uint32_t env = NONE
    for i in range(n):
        if ms[i].cls == M_V1:
            emit_v1(st, &ms[i])
        elif ms[i].cls == M_V2:
            if ms[i].env != env:
                env = ms[i].env
                build_lookups(st, env)
            if env == NONE:
                st.lookups.len = 0
            emit_v2(st, &ms[i])
        elif ms[i].cls == M_ACT:
            emit_act(st, &ms[i])
        else:
            emit_comp(st, &ms[i])
    return 0
