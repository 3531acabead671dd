# Data movement for the entitlement stage (firehose.entitlements). Included by _core.pyx.
#
# Nothing here decides anything: which pair is delivered, denied and why stays in Python.
# These loops only lay the (seat, row) pairs of a batch out in the order the stage works in
# and split them once the Python side has given each pair its code.

from libc.stdint cimport int8_t, uint16_t

cdef extern from *:
    void __builtin_prefetch(const void* addr) nogil
    int __builtin_ctzll(unsigned long long x) nogil


cdef inline void _radix_pass(const uint64_t* src, uint64_t* dst, Py_ssize_t m, int shift,
                             int64_t* count, int buckets) noexcept nogil:
    """One stable counting-sort pass of ``src`` into ``dst`` by the digit at ``shift``;
    ``count`` holds the digit's histogram (turned into bucket starts here)."""
    cdef Py_ssize_t i
    cdef int64_t at = 0, c
    cdef int b
    cdef uint64_t mask = <uint64_t>(buckets - 1), key
    for b in range(buckets):
        c = count[b]
        count[b] = at
        at += c
    for i in range(m):
        key = src[i]
        b = <int>((key >> shift) & mask)
        dst[count[b]] = key
        count[b] += 1


cdef inline void _insertion_sort(uint64_t* v, Py_ssize_t m) noexcept nogil:
    """Sort v[0:m] in place (cheap when v is short or nearly sorted)."""
    cdef Py_ssize_t c, k
    cdef uint64_t key
    for c in range(1, m):
        key = v[c]
        k = c
        while k > 0 and v[k - 1] > key:
            v[k] = v[k - 1]
            k -= 1
        v[k] = key


cdef enum:
    _MAX_DIGIT = 11        # radix sort digits of at most 11 bits (2048 buckets)
    _BLOCK = 8192          # rows read per step in the first pass (their rank, id, flags)
    _SMALL = 48            # a seat with fewer pairs is sorted by insertion
    _BUCKET_MAX = 32       # the bucket pass is kept while no bucket holds more pairs
    _AHEAD = 16            # pairs read ahead (prefetched) when reading by rank
    _RANK_WINDOW = 16384   # ranks regrouped at a time by seats_by_rank (its counters: 128 KB)
    _WORDS_AHEAD = 4       # bitmap words read ahead (their first rank prefetched)
    _BITMAP_WORDS = 4      # the bitmap is used when the batch's 64-rank words are at most
                           # this many per pair of the seat (1M rows: seats of 4k pairs up)


def seat_pairs_by_rank(list seats, const uint8_t[::1] ascending, const int64_t[::1] rank,
                       const int64_t[::1] row_ids, const uint8_t[::1] flags,
                       int64_t[::1] ranks, int64_t[::1] order, int64_t[::1] ids,
                       uint8_t[::1] f, uint8_t[::1] scratch=None):
    """Every seat's matched rows laid out seat after seat, each seat's by rank in id order.

    ``seats[s]``: seat ``s``'s matched rows (int64 row indices into the batch, any order,
    repeats allowed; ``ascending[s]`` is true when they are strictly ascending);
    ``rank[row]``: the row's rank in the batch's id order (a permutation of 0..n-1);
    ``row_ids[row]``, ``flags[row]``: the row's id and a byte of flags. Seat ``s``'s pairs
    fill ``[sum of the earlier seats' sizes, + its size)`` of the outputs, by rank, a row the
    seat matched more than once in match order. For the pair written at ``o``: ``ranks[o]``
    its row's rank (the row is ``perm[ranks[o]]``: reading a batch by rank in ascending rank
    is sequential, by row random), ``order[o]`` its position among the seat's matches,
    ``ids[o]`` and ``f[o]`` its row's id and flags.

    First the batch's ids and flags are laid out by rank (one pass over the rows).
    Each pair's key (rank << 32 | position) is then read: ascending seats block by block of
    rows, all seats in step, so that block's ranks are read from cache once per block
    instead of once per seat. A seat whose ranks already ascend is not sorted. An ascending
    seat (distinct ranks) that is not small next to the batch is put in rank order through
    a bitmap of the batch's ranks: each pair sets its rank's bit and leaves its position
    under its rank (a table shared by the seats), then a scan of the bitmap's words between
    the seat's lowest and highest rank meets the ranks in order. Other seats' keys are
    sorted in a buffer the size of the seat: by insertion when the seat is small; an
    ascending seat by one counting pass into about as many buckets as pairs and an
    insertion pass within them; another by an LSD radix sort on the rank's bits (two passes
    up to 4M rows, three beyond). The ranks in order then read the ids and flags laid out by
    rank in ascending rank order: no random reads.

    ``scratch`` (optional, at least ``14 * n + 64`` bytes) holds the batch by rank, the
    positions by rank and the bitmap; a caller that keeps it between batches spares the
    memory's first touch (page faults) each time."""
    cdef Py_ssize_t n = rank.shape[0], nseat = len(seats), s, m, longest = 1
    cdef Py_ssize_t lo, c, k
    cdef int64_t r, end, b0, total = 0
    cdef uint64_t key, rk, last, word, ahead
    cdef int64_t lim
    cdef const int64_t* row
    cdef uint8_t down
    cdef Py_ssize_t w, wlo, whi
    cdef int passes = 0, p, bits = 0, digit = 1, low = 0
    cdef const int64_t[::1] seg
    if row_ids.shape[0] != n or flags.shape[0] != n or ascending.shape[0] != nseat:
        raise ValueError("rank, row_ids and flags must be as long as the batch, ascending as seats")
    if n > 0xFFFFFFFF:
        raise ValueError("a batch of 2**32 rows or more")
    for s in range(nseat):
        m = len(seats[s])
        if m > 0xFFFFFFFF:
            raise ValueError("a seat with 2**32 matches or more")
        total += m
        if m > longest:
            longest = m
    if ranks.shape[0] < total or order.shape[0] < total or ids.shape[0] < total \
            or f.shape[0] < total:
        raise ValueError("outputs are shorter than the pairs")
    if total == 0:
        return
    while bits < 64 and (<uint64_t>1 << bits) < <uint64_t>n:
        bits += 1
    # the rank's bits (1M rows: two passes of 10 bits)
    if bits:
        _digits((<uint64_t>1 << bits) - 1, _MAX_DIGIT, &low, &passes, &digit)
    views = [None] * nseat                                 # keeps the buffers alive
    cdef int64_t* mem = <int64_t*>malloc(nseat * 4 * sizeof(int64_t) + 8)
    cdef uint8_t* unsorted = <uint8_t*>calloc(nseat + 1, 1)
    cdef uint64_t* a = <uint64_t*>malloc(longest * 8)
    cdef uint64_t* t = <uint64_t*>malloc(longest * 8)
    cdef uint64_t* x
    cdef uint64_t* sorted_keys
    # a scratch too small or not 8-byte aligned is not used
    cdef bint own = scratch is None or scratch.shape[0] < 14 * n + 64 \
        or (<size_t>&scratch[0]) % 8 != 0
    cdef Py_ssize_t nwords = (n >> 6) + 2
    cdef int64_t* by_rank                  # each rank's id
    cdef uint32_t* c_rank                  # a rank's position among the seat's pairs
    cdef uint64_t* bitmap                  # the seat's ranks (all clear between seats)
    cdef uint8_t* f_rank
    if own:
        by_rank = <int64_t*>malloc(n * 8 + 8)
        c_rank = <uint32_t*>malloc(n * 4 + 8)
        bitmap = <uint64_t*>malloc(nwords * 8)
        f_rank = <uint8_t*>calloc(n + 1, 1)
    else:
        by_rank = <int64_t*>&scratch[0]
        c_rank = <uint32_t*>&scratch[8 * n + 8]
        bitmap = <uint64_t*>&scratch[12 * n + 16 + 4 * (n & 1)]     # (8-byte aligned)
        f_rank = &scratch[12 * n + 16 + 4 * (n & 1) + nwords * 8]
    cdef int64_t* count = <int64_t*>malloc(passes * (1 << digit) * 8 + 8)
    cdef int64_t* bcount = <int64_t*>malloc(2 * longest * 8 + 16)
    cdef int64_t at, cnt, fullest
    cdef Py_ssize_t nb
    cdef int lb, shift
    cdef const int64_t** src = <const int64_t**>malloc(nseat * sizeof(void*) + 8)
    if mem == NULL or unsorted == NULL or a == NULL or t == NULL or by_rank == NULL \
            or f_rank == NULL or count == NULL or src == NULL or bcount == NULL \
            or c_rank == NULL or bitmap == NULL:
        free(mem); free(unsorted); free(a); free(t); free(count); free(src); free(bcount)
        if own:
            free(by_rank); free(f_rank); free(c_rank); free(bitmap)
        raise MemoryError()
    # per seat: size, start in the outputs, read position, last rank
    cdef int64_t* size = mem
    cdef int64_t* start = mem + nseat
    cdef int64_t* pos = mem + 2 * nseat
    cdef uint64_t* prev = <uint64_t*>(mem + 3 * nseat)
    cdef bint bad = False, bad_rank = False, bad_asc = False
    try:
        lo = 0
        for s in range(nseat):
            seg = seats[s]
            views[s] = seg
            m = seg.shape[0]
            src[s] = &seg[0] if m else NULL
            size[s] = m
            start[s] = lo
            pos[s] = 0
            prev[s] = 0
            lo += m
        with nogil:
            # the batch by rank: each rank's id and flags (a rank given twice leaves another
            # one unmarked: refused)
            memset(f_rank, 0, n)
            memset(bitmap, 0, nwords * 8)
            for r in range(n):
                rk = <uint64_t>rank[r]
                if rk >= <uint64_t>n or f_rank[rk]:
                    bad_rank = True
                    break
                f_rank[rk] = 1
            if not bad_rank:
                for r in range(n):
                    rk = <uint64_t>rank[r]
                    by_rank[rk] = row_ids[r]
                    f_rank[rk] = flags[r]
            # pass 1: each pair's key (rank << 32 | position), in match order
            for s in range(nseat):                         # seats in any order: one by one
                if ascending[s] or bad_rank:
                    continue
                for c in range(size[s]):
                    r = src[s][c]
                    if r < 0 or r >= n:
                        bad = True
                        break
                    rk = <uint64_t>rank[r]
                    if rk < prev[s]:
                        unsorted[s] = 1
                    prev[s] = rk
                    order[start[s] + c] = <int64_t>((rk << 32) | <uint64_t>c)
            b0 = 0
            while b0 < n and not bad and not bad_rank:     # ascending seats: block by block
                end = b0 + _BLOCK
                lim = end if end < n else n                # rows [0, lim): one unsigned test
                for s in range(nseat):
                    if not ascending[s]:
                        continue
                    c = pos[s]
                    m = size[s]
                    lo = start[s]
                    last = prev[s]
                    down = 0
                    row = src[s]
                    while c < m:
                        r = row[c]
                        if <uint64_t>r >= <uint64_t>lim:
                            if r < 0 or r >= n:
                                bad = True
                            break                          # (or the block's end)
                        rk = <uint64_t>rank[r]
                        down |= rk < last
                        last = rk
                        order[lo + c] = <int64_t>((rk << 32) | <uint64_t>c)
                        c += 1
                    if down:
                        unsorted[s] = 1
                    pos[s] = c
                    prev[s] = last
                    if bad:
                        break
                b0 = end
            if not bad and not bad_rank:
                for s in range(nseat):
                    if size[s] and pos[s] != size[s] and ascending[s]:
                        bad = True                         # rows beyond the batch
            # pass 2: per seat, keys by rank, then its pairs in that order
            for s in range(nseat):
                if bad or bad_rank:
                    break
                m = size[s]
                lo = start[s]
                sorted_keys = <uint64_t*>&order[lo]        # already by rank: read in place
                if not unsorted[s]:
                    pass
                elif m < _SMALL or passes == 0:
                    for c in range(m):
                        a[c] = <uint64_t>order[lo + c]
                    _insertion_sort(a, m)
                    sorted_keys = a
                elif ascending[s] and (n >> 6) <= _BITMAP_WORDS * m:
                    # distinct rows, so distinct ranks: each sets its bit and leaves its
                    # position under its rank; the bitmap's words between the seat's lowest
                    # and highest rank, read in order, give the ranks in order (each word is
                    # cleared as it is read: the bitmap is clear for the next seat)
                    wlo = nwords
                    whi = 0
                    for c in range(m):
                        key = <uint64_t>order[lo + c]
                        rk = key >> 32
                        w = <Py_ssize_t>(rk >> 6)
                        if bitmap[w] & ((<uint64_t>1) << (rk & 63)):
                            bad_asc = True              # a row repeated: not ascending
                            break
                        bitmap[w] |= (<uint64_t>1) << (rk & 63)
                        c_rank[rk] = <uint32_t>(key & <uint64_t>0xFFFFFFFF)
                        if w < wlo:
                            wlo = w
                        if w > whi:
                            whi = w
                    if bad_asc:
                        break
                    c = lo
                    for w in range(wlo, whi + 1):
                        word = bitmap[w]
                        if word == 0:
                            continue
                        bitmap[w] = 0
                        if w + _WORDS_AHEAD <= whi:
                            # the first rank a few words on: its id, flags and position
                            # fetched ahead (the ranks ascend, with gaps no prefetcher sees)
                            ahead = bitmap[w + _WORDS_AHEAD]
                            if ahead:
                                rk = (<uint64_t>(w + _WORDS_AHEAD) << 6) \
                                    | <uint64_t>__builtin_ctzll(ahead)
                                __builtin_prefetch(&by_rank[rk])
                                __builtin_prefetch(&c_rank[rk])
                                __builtin_prefetch(&f_rank[rk])
                        while word:
                            rk = (<uint64_t>w << 6) | <uint64_t>__builtin_ctzll(word)
                            word &= word - 1
                            order[c] = c_rank[rk]
                            ranks[c] = <int64_t>rk
                            ids[c] = by_rank[rk]
                            f[c] = f_rank[rk]
                            c += 1
                    continue
                else:
                    sorted_keys = NULL
                    if ascending[s]:
                        # distinct rows, so distinct ranks: one counting pass on the rank's
                        # top bits into up to as many buckets as pairs (each bucket spans
                        # 2**shift ranks), then insertion sort puts each bucket in order.
                        # Ranks that crowd into a few buckets (a seat matching a run of
                        # neighbouring ids) would make that quadratic: then the radix sort
                        # below does it.
                        lb = 0
                        while (<Py_ssize_t>1 << (lb + 1)) <= m:
                            lb += 1
                        shift = bits - lb if bits > lb else 0
                        nb = ((n - 1) >> shift) + 1
                        memset(bcount, 0, nb * 8)
                        for c in range(m):
                            bcount[(<uint64_t>order[lo + c]) >> (32 + shift)] += 1
                        at = 0
                        fullest = 0
                        for k in range(nb):
                            cnt = bcount[k]
                            if cnt > fullest:
                                fullest = cnt
                            bcount[k] = at
                            at += cnt
                        if fullest <= _BUCKET_MAX:
                            for c in range(m):
                                key = <uint64_t>order[lo + c]
                                k = <Py_ssize_t>(key >> (32 + shift))
                                t[bcount[k]] = key
                                bcount[k] += 1
                            _insertion_sort(t, m)
                            sorted_keys = t
                    if sorted_keys == NULL:
                        memset(count, 0, passes * (1 << digit) * 8)
                        for c in range(m):
                            rk = (<uint64_t>order[lo + c]) >> 32
                            for p in range(passes):
                                count[(p << digit) + <int>((rk >> (p * digit))
                                                          & ((1 << digit) - 1))] += 1
                        # the first pass reads the keys where the first pass left them
                        sorted_keys = <uint64_t*>&order[lo]
                        for p in range(passes):
                            x = t if p % 2 == 0 else a
                            _radix_pass(sorted_keys, x, m, 32 + p * digit,
                                        count + (p << digit), 1 << digit)
                            sorted_keys = x
                # ranks ascend: the ids and flags by rank are read in order (a key read in
                # place is read before its slot is written)
                for c in range(m):
                    if c + _AHEAD < m:
                        rk = sorted_keys[c + _AHEAD] >> 32
                        __builtin_prefetch(&by_rank[rk])
                        __builtin_prefetch(&f_rank[rk])
                    key = sorted_keys[c]
                    rk = key >> 32
                    order[lo + c] = <int64_t>(key & <uint64_t>0xFFFFFFFF)
                    ranks[lo + c] = <int64_t>rk
                    ids[lo + c] = by_rank[rk]
                    f[lo + c] = f_rank[rk]
    finally:
        free(mem); free(unsorted); free(a); free(t); free(count); free(src); free(bcount)
        if own:
            free(by_rank); free(f_rank); free(c_rank); free(bitmap)
    if bad_rank:
        raise ValueError("rank is not a permutation of the batch's rows")
    if bad_asc:
        raise ValueError("a seat flagged ascending repeats a row")
    if bad:
        raise IndexError("a matched row is outside the batch")


def split_pairs(const int8_t[::1] code, int64_t[::1] rows, int64_t[::1] order,
                int64_t[::1] ids, const uint8_t[::1] f, uint8_t scrub_bit,
                uint8_t[::1] scrub, int64_t[::1] bad_pos, int64_t[::1] bad_order,
                int64_t[::1] bad_ids, int8_t[::1] bad_code, uint8_t[::1] hit=None,
                const int64_t[::1] perm=None):
    """Split the pairs by ``code`` (0: delivered), keeping their order: the delivered ones move
    to the front of ``rows``, ``order`` and ``ids`` (in place) with ``scrub[j]`` set where
    their ``f`` has ``scrub_bit``; each other pair's index, order, id and code go to the
    ``bad_*`` arrays, which must hold exactly as many as there are (counted first).
    ``hit`` (optional): ``hit[rows[j]]`` set to 1 for every delivered pair (a row outside it
    is an IndexError). ``perm`` (optional): a delivered pair's ``rows`` entry is replaced by
    ``perm`` at it (firehose.entitlements: a rank becomes its row; ``hit`` is marked by
    rank). Returns how many were delivered."""
    cdef Py_ssize_t total = code.shape[0], i, j = 0, b = 0, kept = 0
    cdef Py_ssize_t n_bad = bad_pos.shape[0]
    cdef uint64_t n_hit = hit.shape[0] if hit is not None else 0
    cdef uint64_t n_perm = perm.shape[0] if perm is not None else 0
    cdef bint mark = hit is not None, remap = perm is not None, outside = False
    cdef int64_t r
    cdef int8_t k
    if rows.shape[0] < total or order.shape[0] < total or ids.shape[0] < total \
            or f.shape[0] < total:
        raise ValueError("pair arrays are shorter than code")
    if bad_order.shape[0] != n_bad or bad_ids.shape[0] != n_bad or bad_code.shape[0] != n_bad:
        raise ValueError("bad_* arrays differ in length")
    # raw pointers: the loop's stores cannot be taken for stores into the views' fields
    cdef const int8_t* cp = &code[0] if total else NULL
    with nogil:
        for i in range(total):
            kept += cp[i] == 0
    if kept != total - n_bad:
        raise ValueError("bad_* arrays must hold exactly the pairs whose code is not 0")
    if total == 0:
        return 0
    if scrub.shape[0] < kept:
        raise ValueError("scrub is too short")
    cdef int64_t* rp = &rows[0]
    cdef int64_t* op = &order[0]
    cdef int64_t* ip = &ids[0]
    cdef const uint8_t* fp = &f[0]
    cdef uint8_t* sp = &scrub[0] if kept else NULL
    cdef int64_t* bp = &bad_pos[0] if n_bad else NULL
    cdef int64_t* bo = &bad_order[0] if n_bad else NULL
    cdef int64_t* bi = &bad_ids[0] if n_bad else NULL
    cdef int8_t* bc = &bad_code[0] if n_bad else NULL
    cdef uint8_t* hp = &hit[0] if mark and n_hit else NULL
    cdef const int64_t* pp = &perm[0] if remap and n_perm else NULL
    cdef int64_t ahead
    with nogil:
        for i in range(total):
            if remap and i + _AHEAD < total:
                # a seat's ranks ascend with gaps: its rows in perm are fetched ahead
                ahead = rp[i + _AHEAD]
                if <uint64_t>ahead < n_perm:
                    __builtin_prefetch(&pp[ahead])
            k = cp[i]
            if k == 0:
                r = rp[i]
                if mark:
                    if <uint64_t>r >= n_hit:
                        outside = True
                        break
                    hp[r] = 1
                if remap:
                    if <uint64_t>r >= n_perm:
                        outside = True
                        break
                    r = pp[r]
                rp[j] = r
                op[j] = op[i]
                ip[j] = ip[i]
                sp[j] = (fp[i] & scrub_bit) != 0
                j += 1
            else:
                bp[b] = i
                bo[b] = op[i]
                bi[b] = ip[i]
                bc[b] = k
                b += 1
    if outside:
        raise IndexError("a delivered row is outside hit or perm")
    return j


def id_ranks(const int64_t[::1] perm, const int64_t[::1] row_ids, int64_t[::1] rank):
    """``rank[perm[k]] = k`` for every k (``perm``: the rows in id order, a permutation);
    returns whether two rows share an id (``row_ids`` of consecutive ranks equal)."""
    cdef Py_ssize_t n = perm.shape[0], k
    cdef int64_t r, v, last = 0
    cdef bint dup = False, bad = False
    if row_ids.shape[0] != n or rank.shape[0] != n:
        raise ValueError("perm, row_ids and rank must be as long as each other")
    with nogil:
        for k in range(n):
            r = perm[k]
            if r < 0 or r >= n:
                bad = True
                break
            rank[r] = k
            v = row_ids[r]
            if k and v == last:
                dup = True
            last = v
    if bad:
        raise IndexError("perm is not a permutation of the rows")
    return dup


cdef inline Py_ssize_t _append_distinct(const int64_t* v, Py_ssize_t n, int64_t* out,
                                        Py_ssize_t k) noexcept nogil:
    """Append v[0:n] (ascending) to out[0:k], skipping values equal to the last one written
    (k > 0); returns the new length. Branch-free: every value is written, k moves on only
    past a new one."""
    cdef Py_ssize_t i
    cdef int64_t x, last = out[k - 1]
    for i in range(n):
        x = v[i]
        out[k] = x
        k += x != last
        last = x
    return k


def merge_distinct(const int64_t[::1] a, const int64_t[::1] b, int64_t[::1] out):
    """Merge two ascending runs (repeats allowed) into ``out``, each id once; returns how many
    ids were written. ``out`` must hold ``len(a) + len(b)``. A run that does not ascend is an
    error (ValueError), not a wrong result."""
    cdef Py_ssize_t na = a.shape[0], nb = b.shape[0], i = 0, j = 0, k = 0
    cdef int64_t x, y, v, last
    cdef const int64_t* pa_
    cdef const int64_t* pb_
    cdef int64_t* po
    cdef bint bad = False, take_a
    if out.shape[0] < na + nb:
        raise ValueError("out is shorter than the two runs")
    if na + nb == 0:
        return 0
    with nogil:
        for i in range(1, na):
            if a[i] < a[i - 1]:
                bad = True
                break
        for j in range(1, nb):
            if b[j] < b[j - 1]:
                bad = True
                break
        if not bad:
            pa_ = &a[0] if na else NULL
            pb_ = &b[0] if nb else NULL
            po = &out[0]
            i = 0
            j = 0
            # one run wholly before the other (a stream's newer deliveries after the older
            # ones): no merge, the two copied in turn, repeats dropped
            if na and nb and pa_[na - 1] <= pb_[0]:
                po[0] = pa_[0]
                k = _append_distinct(pa_ + 1, na - 1, po, 1)
                k = _append_distinct(pb_, nb, po, k)
            elif na and nb and pb_[nb - 1] <= pa_[0]:
                po[0] = pb_[0]
                k = _append_distinct(pb_ + 1, nb - 1, po, 1)
                k = _append_distinct(pa_, na, po, k)
            else:
                # the first value, then branch-free steps: the smaller head is written, the
                # write position moves on only past a new value
                if nb == 0 or (na and pa_[0] <= pb_[0]):
                    po[0] = pa_[0]
                    i = 1
                else:
                    po[0] = pb_[0]
                    j = 1
                k = 1
                last = po[0]
                while i < na and j < nb:
                    # equal heads are taken together (runs of the same ids, e.g. a batch's
                    # deliveries met again, merge in half the steps)
                    x = pa_[i]
                    y = pb_[j]
                    v = x if x <= y else y
                    i += x <= y
                    j += y <= x
                    po[k] = v
                    k += v != last
                    last = v
                if i < na:
                    k = _append_distinct(pa_ + i, na - i, po, k)
                if j < nb:
                    k = _append_distinct(pb_ + j, nb - j, po, k)
    if bad:
        raise ValueError("a run to merge is not ascending")
    return k


def group_count(const int64_t[::1] rows, const int32_t[::1] rule,
                const int32_t[::1] rule_seat, Py_ssize_t nrows, int64_t[::1] pair_at,
                int64_t[::1] row_at):
    """Pass 1 of grouping the router's (row, rule) matches by seat (see :func:`group_fill`).

    ``rows``/``rule``: every match, rows ascending (``match_indices`` order: by row, then
    rule); ``rule_seat[k]``: the seat of rule ``k``; ``nrows``: the batch size. Fills
    ``pair_at`` and ``row_at`` (``nseat + 1`` zeros on entry) with where each seat's matches
    and its distinct rows start; returns how many distinct rows matched anything."""
    cdef Py_ssize_t m = rows.shape[0], i, nrule = rule_seat.shape[0]
    cdef Py_ssize_t nseat = pair_at.shape[0] - 1
    cdef int64_t r, last = -1, matched = 0
    cdef int32_t k, s
    cdef bint bad = False
    if rule.shape[0] != m or row_at.shape[0] != nseat + 1 or nseat < 0:
        raise ValueError("rows and rule must be as long as each other, pair_at as row_at")
    cdef int64_t* seen = <int64_t*>malloc((nseat + 1) * sizeof(int64_t))
    if seen == NULL:
        raise MemoryError()
    with nogil:
        for i in range(nseat + 1):
            seen[i] = -1
            pair_at[i] = 0
            row_at[i] = 0
        for i in range(m):
            r = rows[i]
            k = rule[i]
            if r < last or r < 0 or r >= nrows or k < 0 or k >= nrule:
                bad = True
                break
            s = rule_seat[k]
            if s < 0 or s >= nseat:
                bad = True
                break
            if r != last:
                matched += 1
                last = r
            pair_at[s + 1] += 1
            if seen[s] != r:          # rows ascend: a seat's repeat of a row is its last one
                seen[s] = r
                row_at[s + 1] += 1
        if not bad:
            for i in range(nseat):
                pair_at[i + 1] += pair_at[i]
                row_at[i + 1] += row_at[i]
    free(seen)
    if bad:
        raise ValueError("matches out of order or out of range (rows must ascend within the "
                         "batch; rules and their seats must be known)")
    return matched


def group_fill(const int64_t[::1] rows, const int32_t[::1] rule,
               const int32_t[::1] rule_seat, const int32_t[::1] rule_local,
               const int64_t[::1] pair_at, const int64_t[::1] row_at, int32_t[::1] rule_s,
               int64_t[::1] seat_rows, int32_t[::1] offsets):
    """Pass 2: with ``pair_at``/``row_at`` from :func:`group_count` over the same matches,
    seat ``s``'s matches go to ``rule_s[pair_at[s]:pair_at[s+1]]`` (``rule_local`` of their
    rules, e.g. each rule's index among its seat's, in input order), its distinct rows to ``seat_rows[row_at[s]:row_at[s+1]]`` (ascending) and the
    list offsets of its rules per row to ``offsets[row_at[s] + s : row_at[s+1] + s + 1]``
    (into its matches, from 0)."""
    cdef Py_ssize_t m = rows.shape[0], i, s, nseat = pair_at.shape[0] - 1
    cdef int64_t r, p, q
    if rule.shape[0] != m or rule_s.shape[0] != m or row_at.shape[0] != nseat + 1 \
            or rule_local.shape[0] != rule_seat.shape[0] or nseat < 0 \
            or pair_at[0] != 0 or row_at[0] != 0 or seat_rows.shape[0] != row_at[nseat] \
            or offsets.shape[0] != row_at[nseat] + nseat or pair_at[nseat] != m:
        raise ValueError("outputs do not fit the counts")
    for i in range(nseat):
        if pair_at[i + 1] < pair_at[i] or row_at[i + 1] < row_at[i]:
            raise ValueError("counts do not ascend")
    cdef int64_t* fill = <int64_t*>calloc(nseat + 1, sizeof(int64_t))
    cdef int64_t* rfill = <int64_t*>calloc(nseat + 1, sizeof(int64_t))
    cdef int64_t* seen = <int64_t*>malloc((nseat + 1) * sizeof(int64_t))
    cdef bint bad = False
    if fill == NULL or rfill == NULL or seen == NULL:
        free(fill); free(rfill); free(seen)
        raise MemoryError()
    with nogil:
        for s in range(nseat):
            seen[s] = -1
        for i in range(m):
            r = rows[i]
            if rule[i] < 0 or rule[i] >= rule_seat.shape[0]:
                bad = True
                break
            s = rule_seat[rule[i]]
            if s < 0 or s >= nseat:
                bad = True
                break
            p = fill[s]                               # the match's position in its seat
            if pair_at[s] + p >= pair_at[s + 1]:
                bad = True
                break
            rule_s[pair_at[s] + p] = rule_local[rule[i]]
            if seen[s] != r:
                seen[s] = r
                q = rfill[s]
                if row_at[s] + q >= row_at[s + 1]:
                    bad = True
                    break
                seat_rows[row_at[s] + q] = r
                offsets[row_at[s] + s + q] = <int32_t>p   # this row's rules start here
                rfill[s] = q + 1
            fill[s] = p + 1
        if not bad:
            for s in range(nseat):                    # each seat's list ends at its count
                if fill[s] != pair_at[s + 1] - pair_at[s] or rfill[s] != row_at[s + 1] - row_at[s]:
                    bad = True
                    break
                offsets[row_at[s + 1] + s] = <int32_t>(pair_at[s + 1] - pair_at[s])
    free(fill); free(rfill); free(seen)
    if bad:
        raise ValueError("matches differ from the ones counted")


def gather_list_codes(list offsets, list codes, list orders, const int64_t[::1] bases,
                      int32_t[::1] out_offsets):
    """The entries of chosen lists of several list arrays, as one list array's codes.

    For part ``p``: ``offsets[p]`` (int32) are a list array's offsets into ``codes[p]``
    (int32, its entries' codes), ``orders[p]`` (int64) the lists chosen, in output order.
    Writes the output's offsets (``out_offsets``: one more than all chosen lists, from 0)
    and returns its entries (int64): each chosen list's codes plus ``bases[p]``."""
    cdef Py_ssize_t nparts = len(offsets), p, j, m, mo, lo, c
    cdef int64_t total = 0, o, a, b
    cdef const int32_t[::1] off
    cdef const int32_t[::1] code
    cdef const int64_t[::1] order
    if len(codes) != nparts or len(orders) != nparts or bases.shape[0] != nparts:
        raise ValueError("offsets, codes, orders and bases must be as long as each other")
    m = 0
    for p in range(nparts):
        m += len(orders[p])
    if out_offsets.shape[0] != m + 1:
        raise ValueError("out_offsets must hold one more than the chosen lists")
    # pass 1: the output's offsets (and every offset checked against its codes)
    out_offsets[0] = 0
    lo = 0
    for p in range(nparts):
        off = offsets[p]
        code = codes[p]
        order = orders[p]
        mo = order.shape[0]
        for j in range(mo):
            # (the chosen lists are in id order, not list order: their offsets and then
            # their codes are fetched ahead)
            if j + _AHEAD < mo and <uint64_t>order[j + _AHEAD] < <uint64_t>off.shape[0]:
                __builtin_prefetch(&off[order[j + _AHEAD]])
            o = order[j]
            if o < 0 or o + 1 >= off.shape[0]:
                raise IndexError("a chosen list outside its list array")
            a = off[o]
            b = off[o + 1]
            if a < 0 or b < a or b > code.shape[0]:
                raise ValueError("list offsets outside their codes")
            total += b - a
            if total > 0x7FFFFFFF:
                raise ValueError("2**31 entries or more")
            out_offsets[lo + j + 1] = <int32_t>total
        lo += order.shape[0]
    out = np.empty(total, np.int64)
    cdef int64_t[::1] dst = out
    cdef int64_t at = 0, base
    cdef const int32_t* cp
    for p in range(nparts):
        off = offsets[p]
        code = codes[p]
        order = orders[p]
        base = bases[p]
        mo = order.shape[0]
        cp = &code[0] if code.shape[0] else NULL
        with nogil:
            for j in range(mo):
                if j + _AHEAD < mo and cp != NULL:
                    # (offsets checked in pass 1; a prefetch past the codes is harmless)
                    __builtin_prefetch(cp + off[order[j + _AHEAD]])
                o = order[j]
                for c in range(off[o], off[o + 1]):
                    dst[at] = code[c] + base
                    at += 1
    return out


cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil

ctypedef struct _kv:
    uint64_t k
    int64_t v


cdef inline void _digits(uint64_t vary, int widest, int* low, int* passes,
                         int* digit) noexcept nogil:
    """The radix passes over the bits that vary (``vary`` != 0: the OR of the keys XOR their
    AND): from its lowest set bit to its highest, as few passes of at most ``widest`` bits as
    cover them, digits as narrow as those passes allow."""
    cdef int lo = __builtin_ctzll(vary), span = 64 - __builtin_clzll(vary) - lo
    low[0] = lo
    passes[0] = (span + widest - 1) // widest
    digit[0] = (span + passes[0] - 1) // passes[0]


def sort_pairs_by_key(const int64_t[::1] key, const int64_t[::1] val,
                      int64_t[::1] key_out, int64_t[::1] val_out, uint8_t[::1] scratch=None):
    """(key, value) pairs sorted by key, stably (pairs with equal keys keep their order: a
    caller whose values ascend gets them by key, then value): an LSD radix sort of the pairs
    (each key beside its value: one write stream per bucket) on the key bits that vary
    (the OR of the keys XOR their AND: from the lowest such bit to the highest, in passes of
    at most 11 bits; a pass is skipped where every key has the same digit).

    ``scratch`` (optional, at least ``32 * n + 16`` bytes): the two buffers of pairs the
    passes move between; a caller's numpy buffer is on huge pages where the system gives
    them (a scatter into 2048 buckets over 4 KB pages misses the TLB on most writes), and
    kept between calls it spares the first touch."""
    cdef Py_ssize_t n = key.shape[0], i
    cdef int p, d, passes = 0, digit = 1, low = 0, nb, shift
    cdef uint64_t k, flip = <uint64_t>1 << 63, o = 0, a = ~(<uint64_t>0), mask
    cdef int64_t at, c
    if val.shape[0] != n or key_out.shape[0] != n or val_out.shape[0] != n:
        raise ValueError("key, val and the outputs must be as long as each other")
    if n == 0:
        return
    with nogil:
        for i in range(n):
            k = <uint64_t>key[i]
            o |= k
            a &= k
    if o == a:                                     # one key: the pairs as they are
        with nogil:
            memcpy(&key_out[0], &key[0], n * 8)
            memcpy(&val_out[0], &val[0], n * 8)
        return
    _digits(o ^ a, _MAX_DIGIT, &low, &passes, &digit)
    nb = 1 << digit
    mask = <uint64_t>(nb - 1)
    cdef bint own = scratch is None or <size_t>scratch.shape[0] < <size_t>(32 * n + 16)
    cdef char* mem
    if own:
        mem = <char*>malloc(32 * n + 16)
    else:
        mem = <char*>&scratch[0]
    cdef int64_t* count = <int64_t*>calloc(passes * nb, 8)
    if mem == NULL or count == NULL:
        if own:
            free(mem)
        free(count)
        raise MemoryError()
    cdef _kv* ka = <_kv*>(mem + (-<size_t>mem & 15))          # (16-byte aligned)
    cdef _kv* kb = ka + n
    cdef _kv* ks
    cdef _kv* kd
    cdef _kv* tmp
    cdef int64_t* cnt
    with nogil:
        for i in range(n):
            k = <uint64_t>key[i] ^ flip            # signed order as unsigned
            ka[i].k = k
            ka[i].v = val[i]
            for p in range(passes):
                count[(p << digit) + <int>((k >> (low + p * digit)) & mask)] += 1
        ks = ka
        kd = kb
        for p in range(passes):
            cnt = count + (p << digit)
            shift = low + p * digit
            if cnt[<int>((ks[0].k >> shift) & mask)] == n:
                continue                           # one digit everywhere: nothing moves
            at = 0
            for d in range(nb):
                c = cnt[d]
                cnt[d] = at
                at += c
            for i in range(n):
                d = <int>((ks[i].k >> shift) & mask)
                kd[cnt[d]] = ks[i]
                cnt[d] += 1
            tmp = ks
            ks = kd
            kd = tmp
        for i in range(n):
            key_out[i] = <int64_t>(ks[i].k ^ flip)
            val_out[i] = ks[i].v
    if own:
        free(mem)
    free(count)


def id_order(const int64_t[::1] ids, int64_t[::1] perm, int64_t[::1] rank):
    """The batch's rows in id order, stably (``np.argsort(ids, kind="stable")``) into
    ``perm``, and ``rank[perm[k]] = k``; returns 1 when two rows share an id, 0 when none
    do, or -1, having written nothing useful, when the ids' spread and the row number do not
    fit one 64-bit key together (the caller sorts another way).

    Each row becomes one key, (id - smallest id) above the row: distinct keys, ordered as
    (id, row), sorted by an LSD radix sort over the id bits that vary (passes of at most 11
    bits) between ``perm`` and ``rank``, then unpacked. A 1M-row batch of a few minutes of
    snowflake ids (38 bits of spread) takes 4 passes; numpy's stable argsort (a timsort)
    took ~3x the instructions."""
    cdef Py_ssize_t n = ids.shape[0], i
    cdef int64_t lo, hi, v
    cdef uint64_t spread, vary, o = 0, a = ~(<uint64_t>0), k, rmask, last
    cdef int rb = 0, passes = 0, digit = 1, low = 0, nb, p, shift
    cdef bint dup = False
    if perm.shape[0] != n or rank.shape[0] != n:
        raise ValueError("ids, perm and rank must be as long as each other")
    if n == 0:
        return 0
    lo = hi = ids[0]
    with nogil:
        for i in range(n):
            v = ids[i]
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    spread = <uint64_t>hi - <uint64_t>lo
    while rb < 64 and ((<uint64_t>(n - 1)) >> rb) != 0:
        rb += 1
    if spread and 64 - __builtin_clzll(spread) + rb > 64:
        return -1
    rmask = ((<uint64_t>1) << rb) - 1 if rb else 0
    if spread:
        with nogil:
            for i in range(n):
                k = <uint64_t>ids[i] - <uint64_t>lo
                o |= k
                a &= k
        vary = (o ^ a) << rb
        _digits(vary, _MAX_DIGIT, &low, &passes, &digit)
    nb = 1 << digit
    cdef int64_t* count = <int64_t*>calloc(passes * nb + 1, 8)
    if count == NULL:
        raise MemoryError()
    cdef uint64_t* src
    cdef uint64_t* dst
    cdef uint64_t* tmp
    cdef int64_t* cnt
    cdef uint64_t dmask = <uint64_t>(nb - 1)
    with nogil:
        # the keys start where the passes' ping-pong ends in ``perm``
        src = <uint64_t*>&perm[0] if passes % 2 == 0 else <uint64_t*>&rank[0]
        dst = <uint64_t*>&rank[0] if passes % 2 == 0 else <uint64_t*>&perm[0]
        for i in range(n):
            k = ((<uint64_t>ids[i] - <uint64_t>lo) << rb) | <uint64_t>i
            src[i] = k
            for p in range(passes):
                count[(p << digit) + <int>((k >> (low + p * digit)) & dmask)] += 1
        for p in range(passes):
            cnt = count + (p << digit)
            shift = low + p * digit
            if cnt[<int>((src[0] >> shift) & dmask)] == n:
                # one digit everywhere: nothing moves (copied to keep the parity)
                memcpy(dst, src, n * 8)
            else:
                _radix_pass(src, dst, n, shift, cnt, nb)
            tmp = src
            src = dst
            dst = tmp
        # src is perm: unpacked in place; rank is free
        last = src[0] >> rb
        for i in range(n):
            k = src[i]
            if i and (k >> rb) == last:
                dup = True
            last = k >> rb
            perm[i] = <int64_t>(k & rmask)
            rank[<Py_ssize_t>(k & rmask)] = i
    free(count)
    return 1 if dup else 0


def merge_pairs(const int64_t[::1] ka, const int64_t[::1] va, const int64_t[::1] kb,
                const int64_t[::1] vb, int64_t[::1] ko, int64_t[::1] vo):
    """Merge two runs of (key, value) pairs sorted by key then value into ``ko``/``vo``
    (room for both), a pair present in both runs once; returns how many pairs were
    written. A run out of order is an error (ValueError), not a wrong result."""
    cdef Py_ssize_t na = ka.shape[0], nb = kb.shape[0], i = 0, j = 0, o = 0
    cdef bint bad = False, take_a, same
    if va.shape[0] != na or vb.shape[0] != nb:
        raise ValueError("keys and values must be as long as each other")
    if ko.shape[0] < na + nb or vo.shape[0] < na + nb:
        raise ValueError("the outputs are shorter than the two runs")
    with nogil:
        for i in range(1, na):
            if ka[i] < ka[i - 1] or (ka[i] == ka[i - 1] and va[i] < va[i - 1]):
                bad = True
        for j in range(1, nb):
            if kb[j] < kb[j - 1] or (kb[j] == kb[j - 1] and vb[j] < vb[j - 1]):
                bad = True
        i = 0
        j = 0
        while not bad and i < na and j < nb:
            same = ka[i] == kb[j] and va[i] == vb[j]
            take_a = ka[i] < kb[j] or (ka[i] == kb[j] and va[i] <= vb[j])
            if take_a:
                ko[o] = ka[i]
                vo[o] = va[i]
                i += 1
                j += same
            else:
                ko[o] = kb[j]
                vo[o] = vb[j]
                j += 1
            o += 1
        while not bad and i < na:
            ko[o] = ka[i]
            vo[o] = va[i]
            i += 1
            o += 1
        while not bad and j < nb:
            ko[o] = kb[j]
            vo[o] = vb[j]
            j += 1
            o += 1
    if bad:
        raise ValueError("a run is not sorted by key, then value")
    return o


def strictly_ascending(list arrays, uint8_t[::1] out):
    """``out[i]`` = 1 where ``arrays[i]`` (int64) strictly ascends (fewer than two values
    do), else 0: one pass per array, no temporaries."""
    cdef Py_ssize_t k = len(arrays), i, j, m, lo, hi
    cdef const int64_t[::1] v
    cdef const int64_t* p
    cdef uint8_t up, down
    if out.shape[0] != k:
        raise ValueError("out must be as long as arrays")
    for i in range(k):
        v = arrays[i]
        m = v.shape[0]
        up = 1
        if m > 1:
            p = &v[0]
            with nogil:
                # blocks of 1024 without a branch per value (vectorised), a verdict per block
                lo = 1
                while lo < m and up:
                    hi = lo + 1024 if m - lo > 1024 else m
                    down = 0
                    for j in range(lo, hi):
                        down |= p[j] <= p[j - 1]
                    up = not down
                    lo = hi
        out[i] = up


def gather_marked(const uint8_t[::1] mark, const int64_t[::1] perm, const int64_t[::1] a,
                  const int64_t[::1] b, int64_t[::1] a_out, int64_t[::1] b_out):
    """For every ``i`` (ascending) with ``mark[i]`` non-zero, the row ``perm[i]`` (``i``
    itself when ``perm`` is None): its ``a`` and ``b`` appended to ``a_out`` and ``b_out``,
    which must hold exactly as many (firehose.entitlements: the (author, id) of the rows
    delivered to any seat, in id order). Returns how many."""
    cdef Py_ssize_t n = mark.shape[0], i, k = 0, m = 0, j
    cdef bint remap = perm is not None, bad = False
    cdef int64_t r
    if a.shape[0] != b.shape[0] or a_out.shape[0] != b_out.shape[0]:
        raise ValueError("a and b, a_out and b_out must be as long as each other")
    if remap and perm.shape[0] != n:
        raise ValueError("perm must be as long as mark")
    if not remap and a.shape[0] < n:
        raise ValueError("a and b are shorter than mark")
    cdef const uint8_t* mp = &mark[0] if n else NULL
    with nogil:
        for i in range(n):
            m += mp[i] != 0
    if m != a_out.shape[0]:
        raise ValueError("a_out and b_out must hold exactly the marked rows")
    if m == 0:
        return 0
    cdef const int64_t* pp = &perm[0] if remap else NULL
    cdef const int64_t* ap = &a[0] if a.shape[0] else NULL
    cdef const int64_t* bp = &b[0] if b.shape[0] else NULL
    cdef uint64_t na = a.shape[0]
    cdef int64_t* ao = &a_out[0]
    cdef int64_t* bo = &b_out[0]
    cdef int64_t* ahead = <int64_t*>malloc(_AHEAD * sizeof(int64_t))
    if ahead == NULL:
        raise MemoryError()
    with nogil:
        if not remap:
            for i in range(n):
                if mp[i]:
                    ao[k] = ap[i]
                    bo[k] = bp[i]
                    k += 1
        else:
            # the rows come in id order, random in the batch: each is fetched when found
            # and read _AHEAD marked rows later (``ahead``: a ring of the rows found)
            j = 0
            for i in range(n):
                if not mp[i]:
                    continue
                r = pp[i]
                if <uint64_t>r >= na:
                    bad = True
                    break
                __builtin_prefetch(&ap[r])
                __builtin_prefetch(&bp[r])
                if j - k == _AHEAD:
                    ao[k] = ap[ahead[k % _AHEAD]]
                    bo[k] = bp[ahead[k % _AHEAD]]
                    k += 1
                ahead[j % _AHEAD] = r
                j += 1
            while k < j and not bad:
                ao[k] = ap[ahead[k % _AHEAD]]
                bo[k] = bp[ahead[k % _AHEAD]]
                k += 1
    free(ahead)
    if bad:
        raise IndexError("perm names a row outside a and b")
    return k


ctypedef fused seat_code_t:
    uint16_t
    int32_t


def seats_by_rank(const int64_t[::1] starts, const int64_t[::1] seat_codes,
                  const int64_t[::1] pairs, const int64_t[::1] rank_of,
                  const uint8_t[::1] hit, int64_t[::1] off, seat_code_t[::1] codes,
                  int64_t[::1] scratch=None):
    """The seats of a batch's delivered pairs regrouped by row (firehose.entitlements: the
    batch's block of its delivery memory). Seat ``s``'s pairs are ``pairs[starts[s]:
    starts[s + 1]]``, each a rank (``rank_of`` None) or a row whose rank is ``rank_of[row]``;
    ``hit`` marks the ranks delivered to any seat (every pair's rank must be marked). For the
    ``m`` marked ranks in ascending order, ``off`` (m + 1 entries) and ``codes`` (one per
    pair) come out as a CSR index: the seats of the ``k``-th marked rank are ``codes[off[k]:
    off[k + 1]]``, ``seat_codes[s]`` each (in seat order while each seat's ranks ascend;
    else in no fixed order). Returns ``m``. ``scratch``
    (optional, at least ``len(hit) + 1`` entries, overwritten) spares an allocation: memory
    new to the process costs a page fault a page, ~10 ms for the 8 MB of a 1M-tweet batch.

    A counting sort by rank, two passes over the pairs (count, place). A seat's ranks
    ascend, so both passes go through the ranks a window of ``_RANK_WINDOW`` at a time, every
    seat's pairs in the window before the next: the counters and the codes written stay in
    the core's cache (a pass seat by seat swept all 1M ranks 200 times, ~13 ns a pair; a
    seat whose ranks do not ascend is still right, only slower). A pair outside ``hit`` or
    ``rank_of``, or a code that does not fit, is an error (IndexError, ValueError), not a
    wrong index."""
    cdef Py_ssize_t S = seat_codes.shape[0], n = hit.shape[0], total, i, s, m = 0, b, k
    cdef bint remap = rank_of is not None, bad = False
    cdef uint64_t n_rank = rank_of.shape[0] if remap else 0
    cdef int64_t r, c, c0, c1, at
    if starts.shape[0] != S + 1:
        raise ValueError("starts must hold one more entry than seat_codes")
    total = starts[S]
    if starts[0] != 0:
        raise ValueError("starts must begin at 0")
    for s in range(S):
        if starts[s + 1] < starts[s]:
            raise ValueError("starts must not decrease")
        c = seat_codes[s]
        if c < 0 or (seat_code_t is uint16_t and c > 0xFFFF) or c > 0x7FFFFFFF:
            raise ValueError(f"seat code {c} does not fit the codes array")
    if pairs.shape[0] < total:
        raise ValueError("pairs is shorter than starts says")
    if codes.shape[0] != total:
        raise ValueError("codes must hold exactly one entry per pair")
    cdef const uint8_t* hp = &hit[0] if n else NULL
    with nogil:
        for i in range(n):
            m += hp[i] != 0
    if off.shape[0] != m + 1:
        raise ValueError("off must hold one more entry than the marked ranks")
    if n == 0 and total:
        raise IndexError("a delivered pair's rank is outside hit (which is empty)")
    if total == 0:
        off[:] = 0
        return m
    # pos[r]: rank r's count, then (prefix sums) where its codes start, then go on
    cdef bint own = scratch is None
    if not own and scratch.shape[0] < n + 1:
        raise ValueError("scratch must hold len(hit) + 1 entries")
    cdef int64_t* pos = <int64_t*>calloc(n + 1, sizeof(int64_t)) if own else &scratch[0]
    cdef int64_t* cur = <int64_t*>malloc(S * sizeof(int64_t) + 8)
    if pos == NULL or cur == NULL:
        if own:
            free(pos)
        free(cur)
        raise MemoryError()
    if not own:
        memset(pos, 0, (n + 1) * sizeof(int64_t))
    cdef int64_t* op = &off[0]
    cdef const int64_t* pp = &pairs[0]
    cdef const int64_t* rk = &rank_of[0] if remap and n_rank else NULL
    cdef const int64_t* sc = &seat_codes[0]
    cdef const int64_t* st = &starts[0]
    cdef seat_code_t* cp = &codes[0]
    cdef seat_code_t code
    cdef int placing
    try:
        with nogil:
            for placing in range(2):
                for s in range(S):
                    cur[s] = st[s]
                c0 = 0
                while c0 < n and not bad:
                    c1 = c0 + _RANK_WINDOW
                    if c1 > n:
                        c1 = n
                    for s in range(S):
                        i, b = cur[s], st[s + 1]
                        code = <seat_code_t>sc[s]
                        while i < b:
                            r = pp[i]
                            if remap:
                                if <uint64_t>r >= n_rank:
                                    bad = True
                                    break
                                r = rk[r]
                            if r >= c1 and c1 < n:
                                break
                            if <uint64_t>r >= <uint64_t>n or not hp[r]:
                                bad = True
                                break
                            if placing:
                                cp[pos[r]] = code
                                pos[r] += 1
                            else:
                                pos[r + 1] += 1
                            i += 1
                        cur[s] = i
                        if bad:
                            break
                    c0 = c1
                if bad:
                    break
                if not placing:
                    # counts to starts; each marked rank's start is its off entry
                    at, k = 0, 0
                    for r in range(n):
                        at += pos[r + 1]
                        pos[r + 1] = at
                        if hp[r]:
                            op[k] = pos[r]
                            k += 1
                    op[m] = at
    finally:
        if own:
            free(pos)
        free(cur)
    if bad:
        raise IndexError("a delivered pair's rank is outside rank_of or not marked in hit")
    return m
