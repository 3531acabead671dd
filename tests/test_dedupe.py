"""The core's tweet-id dedupe on its own (Engine.admit_ids), against the reference decoder's
per-bucket Python sets: exact first-wins admission, duplicate and late counts, window expiry,
save/restore, memory per id. Streams are generated: snowflake ids near time order with jitter
and re-sends, backfills (a later capture before an earlier one), shuffles, and odd ids (0,
negative, pre-snowflake, far-future, INT64 extremes)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from firehose._core import Engine
from firehose._reference import ReferenceDecoder
from firehose.errors import StateError

EPOCH = 1288834974657
HOUR = 3_600_000
T0 = 1_700_000_000_000          # 2023-11-14
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
ODD = [0, 1, -1, I64_MIN, (1 << 35) - 1, 1 << 35, 20_000_000_000, 12345,
       ((T0 - 30 * 24 * HOUR - EPOCH) << 22) | 9]                 # a month old: late
FUTURE = [I64_MAX, ((3_400_000_000_000 - EPOCH) << 22) | 5,        # 2077
          ((1 << 41) - 1) << 22]


def snowflakes(n, *, start_ms=T0, rate=6000.0, jitter_ms=2000, resend=0.02, far_resend=0.002,
               recent=10_000, seed=0) -> np.ndarray:
    """n ids: creation times a Poisson clock at ``rate`` per second, each delivered up to
    ``jitter_ms`` out of order; a share ``resend`` of rows re-sends one of the last ``recent``
    ids, ``far_resend`` one from anywhere earlier."""
    rng = np.random.default_rng(seed)
    kind = rng.random(n)
    fresh = kind >= resend + far_resend
    fresh[0] = True
    nf = int(fresh.sum())
    clock = start_ms + np.cumsum(rng.exponential(1000.0 / rate, nf))
    ms = (clock - rng.uniform(0, jitter_ms, nf)).astype(np.int64)
    uniq = ((ms - EPOCH) << 22) | rng.integers(0, 1 << 22, nf)
    before = np.cumsum(fresh) - fresh              # fresh ids emitted before each row
    back = np.where(kind < resend, rng.integers(1, recent + 1, n),
                    (rng.random(n) * before).astype(np.int64) + 1)
    src = np.clip(before - back, 0, None)
    out = np.where(fresh, 0, uniq[src])
    out[fresh] = uniq
    return out.astype(np.int64)


def oracle(ids, window_ms):
    """The reference decoder's dedupe: (admit mask, duplicates, late)."""
    ref = ReferenceDecoder(dedupe=True, dedupe_window_hours=window_ms / HOUR)
    assert ref._bucket_ms == window_ms // 4
    mask = np.array([ref._first_sight(int(t)) for t in ids], dtype=np.uint8)
    return mask, int((mask == 0).sum()), ref.stats["dedupe_late"]


def admit(ids, window_ms=48 * HOUR, eng=None):
    eng = eng or Engine(window_ms=window_ms)
    out = np.zeros(len(ids), np.uint8)
    n = eng.admit_ids(np.ascontiguousarray(ids, dtype=np.int64), out)
    assert n == int(out.sum())
    return out, eng


def check(ids, window_ms=48 * HOUR):
    want, dups, late = oracle(ids, window_ms)
    got, eng = admit(ids, window_ms)
    bad = np.nonzero(got != want)[0]
    assert len(bad) == 0, f"first mismatch at row {bad[0]} id {ids[bad[0]]}: {got[bad[0]]}"
    st = eng.stats()
    assert (st["duplicates"], st["dedupe_late"]) == (dups, late)
    return eng


def with_odd(ids, seed=1, k=300, future=False):
    """ids with k odd ones inserted (far-future ones too if asked: each a jump that the dedupe
    holds unconfirmed until a second id lands near it)."""
    rng = np.random.default_rng(seed)
    pool = np.array(ODD + FUTURE if future else ODD, dtype=np.int64)
    odd = pool[rng.integers(0, len(pool), k)]
    pos = np.sort(rng.integers(0, len(ids) + 1, k))
    return np.insert(ids, pos, odd)


STREAMS = {
    "full-rate, jitter 2 s": lambda: snowflakes(300_000, seed=1),
    "sampled, 400/s, no jitter": lambda: snowflakes(200_000, rate=400, jitter_ms=0, seed=2),
    "heavy jitter 60 s, 10% re-sends": lambda: snowflakes(200_000, jitter_ms=60_000,
                                                          resend=0.1, seed=3),
    "odd ids mixed in": lambda: with_odd(snowflakes(100_000, seed=4)),
    "backfill: a later capture, then an earlier one, then the later again": lambda: np.concatenate(
        [b := snowflakes(80_000, start_ms=T0 + HOUR, seed=5),
         snowflakes(80_000, start_ms=T0, seed=6), b[:20_000]]),
    "shuffled": lambda: np.random.default_rng(7).permutation(snowflakes(150_000, seed=7)),
    "descending": lambda: np.sort(snowflakes(100_000, seed=8))[::-1].copy(),
    "one millisecond": lambda: np.random.default_rng(9).integers(
        0, 1 << 22, 50_000) | ((T0 - EPOCH) << 22),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_admission_matches_the_reference_sets(name):
    check(STREAMS[name]())


@pytest.mark.parametrize("window_ms", [HOUR, 4 * HOUR, 10])
def test_window_expiry_and_late_ids_match_the_reference(window_ms):
    # 400 ids/s over ~14 h (a 1 h window forgets most of it; 10 ms windows are mostly late),
    # with 20% of re-sends from anywhere earlier: many of them arrive after their bucket went
    ids = snowflakes(200_000, rate=4, jitter_ms=30_000, far_resend=0.2, seed=10)
    eng = check(with_odd(ids, seed=11, k=30), window_ms)
    check(with_odd(ids, seed=11, k=30, future=True), window_ms)
    if window_ms == HOUR:
        assert eng.stats()["dedupe_late"] > 1000


def plain_set_admission(ids):
    seen: set[int] = set()
    return np.array([not (t in seen or seen.add(t)) for t in ids.tolist()], np.uint8)


def far(days, seq=3):
    return ((T0 + int(days * 24 * HOUR) - EPOCH) << 22) | seq


@pytest.mark.parametrize("where", ["first", "middle", "twice, re-sent"])
def test_a_lone_far_future_id_does_not_make_the_dedupe_forget(where):
    """A corrupt or forged id 100 days ahead used to move the window and forget everything:
    re-sends of real ids after it were delivered again. One id alone no longer moves it."""
    ids = snowflakes(50_000, seed=12)
    odd = [far(100)] if where != "twice, re-sent" else [far(100), far(100)]
    if where == "first":
        stream = np.concatenate([odd, ids, ids[:20_000]])
    else:
        stream = np.concatenate([ids[:30_000], odd, ids, odd])
    got, eng = admit(stream)
    assert (got == plain_set_admission(stream)).all()
    assert eng.stats()["dedupe_late"] == 0
    check(stream)                                   # and the reference does the same


def test_two_far_future_ids_far_apart_confirm_nothing_and_the_oldest_is_dropped():
    ids = snowflakes(30_000, seed=15)
    odd = [far(100), far(200), far(300)]            # each a jump; none within a bucket of another
    stream = np.concatenate([ids[:10_000], odd, ids[10_000:], ids[:10_000], odd[::-1]])
    got, _ = admit(stream)
    want = plain_set_admission(stream)
    # the real ids are all deduped; of the three unconfirmed jumps the oldest was forgotten
    # when the third came, so its re-send (the last) is let through
    assert (got[:-3] == want[:-3]).all()
    assert got[-3:].tolist() == [0, 0, 1]
    check(stream)


def test_a_real_jump_in_the_capture_moves_the_window_at_its_second_id():
    """Captures a season apart replayed back to back: the second id of the later capture
    confirms the jump, so the earlier capture's ids are forgotten (bounded memory) and
    re-sent ones are let through as late."""
    early = snowflakes(20_000, seed=16)
    later = snowflakes(20_000, start_ms=T0 + 90 * 24 * HOUR, seed=17)
    got, eng = admit(np.concatenate([early, later, early[:5_000], later[:5_000]]))
    assert got[40_000:45_000].all()                 # late: admitted, counted
    assert not got[45_000:].any()                   # the later capture is remembered
    st = eng.stats()
    assert st["dedupe_late"] == 5_000
    assert eng.dedupe_memory()[0] == len(np.unique(later))
    check(np.concatenate([early, later, early[:5_000], later[:5_000]]))


def test_a_state_saved_with_a_jump_unconfirmed_resumes_exactly():
    ids = snowflakes(20_000, seed=18)
    stream = np.concatenate([ids[:10_000], [far(100), far(300)], ids, [far(100, 9), far(300)]])
    whole, _ = admit(stream)
    for cut in (10_001, 10_002, 15_000):
        first, eng = admit(stream[:cut])
        eng2 = Engine()
        eng2.load_dedupe_state(eng.dedupe_state())
        rest, _ = admit(stream[cut:], eng=eng2)
        assert (np.concatenate([first, rest]) == whole).all(), cut
    check(stream)


def test_a_sparse_stream_still_moves_its_window_and_dedupes():
    """Ids more than a bucket apart (a narrow filtered stream): each is a jump, and the next
    one, within a window of it, confirms it, so re-sends are still caught."""
    ids = np.array([far(0, 1), far(25 / 24, 2), far(50 / 24, 3), far(0, 1), far(25 / 24, 2)])
    got, eng = admit(ids)
    assert got.tolist() == [1, 1, 1, 0, 0]
    check(ids)


def test_a_state_keeps_the_order_of_its_unconfirmed_jumps():
    """The oldest unconfirmed jump is the one a third forgets, so a restored dedupe must know
    which is older even when the older one is the later in time (and after a second restore)."""
    real = [far(0, 1), far(1e-5, 2)]
    head = real + [far(100), far(50)]
    tail = [far(200), far(100, 7)] + real        # the third jump forgets the 100-day one
    whole, _ = admit(np.array(head + tail))
    assert whole[len(head):].tolist() == [1, 1, 0, 0]
    _, eng = admit(np.array(head))
    for _ in range(2):
        eng2 = Engine()
        eng2.load_dedupe_state(eng.dedupe_state())
        eng = eng2
    rest, _ = admit(np.array(tail), eng=eng)
    assert rest.tolist() == [1, 1, 0, 0]
    assert eng.stats()["dedupe_late"] == 0
    check(np.array(head + tail))


def test_a_corrupt_state_is_refused_and_changes_nothing():
    bucket_ms = 12 * HOUR
    bmax = T0 // bucket_ms

    def blob(bmax, tables):
        out = struct.pack("<8sqqi", b"FHDEDUP1", bucket_ms, bmax, len(tables))
        for b, keys in tables:
            out += struct.pack("<qbq", b, 0, len(keys)) + struct.pack(f"<{len(keys)}q", *keys)
        return out

    ok = blob(bmax, [(bmax, [far(0)]), (-1, [])])
    misfiled = [far(k + 1) for k in range(13)]          # ids of 13 buckets under one label
    bad = [blob(bmax, [(bmax, misfiled), (-1, [])]),
           blob(bmax, [(bmax, [far(0)]), (-1, [far(0, 9)])]),   # a snowflake among the old ids
           blob(bmax, [(bmax, [5]), (-1, [])]),                 # an old id among snowflakes
           blob(-(1 << 63), [(-1, [])]), blob((1 << 63) - 1, [(-1, [])]),
           blob(bmax, [(bmax + 5, [far(2.5)]), (bmax + 9, [far(4.5)]),
                       (bmax + 20, [far(10)]), (-1, [])])]       # three unconfirmed jumps
    eng = Engine()
    eng.load_dedupe_state(ok)
    for b in bad:
        with pytest.raises(StateError):
            eng.load_dedupe_state(b)
        assert eng.dedupe_memory()[0] == 1          # the loaded state is untouched
    got, _ = admit(np.array([far(0), far(0, 4)]), eng=eng)
    assert got.tolist() == [0, 1]


def test_duplicates_are_exact_against_a_plain_set_when_nothing_expires():
    ids = with_odd(snowflakes(400_000, jitter_ms=5000, resend=0.05, far_resend=0.01, seed=13))
    ids = ids[(ids < 1 << 35) | ((ids >> 22) + EPOCH > T0 - HOUR)]      # none is late
    got, eng = admit(ids)
    want = plain_set_admission(ids)
    assert (got == want).all()
    assert eng.stats()["duplicates"] == int((want == 0).sum())
    assert eng.dedupe_memory()[0] == int(want.sum())


@pytest.mark.parametrize("name", ["full-rate, jitter 2 s", "odd ids mixed in", "shuffled",
                                  "backfill: a later capture, then an earlier one, then the later again"])
def test_state_round_trip_at_any_point_resumes_exactly(name):
    ids = STREAMS[name]()
    whole, _ = admit(ids)
    for cut in (0, 1, 777, len(ids) // 3, len(ids) - 1):
        first, eng = admit(ids[:cut])
        state = eng.dedupe_state()
        eng2 = Engine()
        eng2.load_dedupe_state(state)
        assert eng2.dedupe_memory()[0] == eng.dedupe_memory()[0]
        rest, _ = admit(ids[cut:], eng=eng2)
        assert (np.concatenate([first, rest]) == whole).all(), cut
        # saving the restored state gives the same ids again
        eng3 = Engine()
        eng3.load_dedupe_state(eng2.dedupe_state())
        assert eng3.dedupe_memory()[0] == eng2.dedupe_memory()[0]


def test_state_in_the_version_1_format_still_loads():
    """A state written by the first table layout (FHDEDUP1: one hash table per bucket, keys in
    slot order) restores into whatever layout the core has now."""
    bucket_ms = 12 * HOUR
    a = ((T0 - EPOCH) << 22) | 1
    b = ((T0 + 60_000 - EPOCH) << 22) | 2
    bmax = (T0 + 60_000) // bucket_ms
    blob = (struct.pack("<8sqqi", b"FHDEDUP1", bucket_ms, bmax, 2)
            + struct.pack("<qbq", bmax, 0, 2) + struct.pack("<2q", b, a)
            + struct.pack("<qbq", -1, 1, 2) + struct.pack("<2q", 77, 5))
    eng = Engine()
    eng.load_dedupe_state(blob)
    got, _ = admit(np.array([a, 0, 77, 6, b, a + 4, 5], np.int64), eng=eng)
    assert got.tolist() == [0, 0, 0, 1, 0, 1, 0]
    for bad in (blob[:-1], blob + b"\0", b"FHDEDUP9" + blob[8:], b""):
        with pytest.raises(StateError):
            Engine().load_dedupe_state(bad)


def sparse(n, hours=48, jitter_ms=2000, seed=20, **kw):
    """n ids spread evenly over ``hours`` of tweet time (a narrow filtered stream)."""
    return snowflakes(n, rate=n / (hours * 3600), jitter_ms=jitter_ms, seed=seed, **kw)


def bursts(seed=21):
    """Bursts of 3,000 full-rate ids every 3 h over two days, then the first burst re-sent."""
    out = [snowflakes(3000, start_ms=T0 + h * HOUR, seed=seed + h) for h in range(0, 48, 3)]
    return np.concatenate(out + [out[0]])


MEMORY_STREAMS = {
    **{name: STREAMS[name] for name in ["full-rate, jitter 2 s", "heavy jitter 60 s, 10% re-sends",
                                        "shuffled", "descending", "odd ids mixed in",
                                        "backfill: a later capture, then an earlier one, then the later again"]},
    "sparse: 1k ids over 48 h": lambda: sparse(1000),
    "sparse: 10k ids over 48 h": lambda: sparse(10_000),
    "sparse: 30k ids over 48 h": lambda: sparse(30_000),
    "sparse: 100k ids over 48 h, no jitter": lambda: sparse(100_000, jitter_ms=0),
    "sparse: 30k ids over 48 h, 10 min of jitter": lambda: sparse(30_000, jitter_ms=600_000),
    "sparse: 60k ids over 5 days, 20% late re-sends": lambda: sparse(60_000, hours=120,
                                                                     far_resend=0.2),
    "sparse, shuffled: 30k ids over 48 h": lambda: np.random.default_rng(22).permutation(
        sparse(30_000)),
    "bursts of 3k every 3 h": bursts,
}

MEMORY_FIXED = 64 * 1024        # bytes held beyond 16 an id, whatever the stream (docs/fields.md)


@pytest.mark.parametrize("name", list(MEMORY_STREAMS))
def test_memory_is_at_most_16_bytes_per_remembered_id(name):
    """The bound holds at every point of the stream, not only at its end."""
    ids = MEMORY_STREAMS[name]()
    eng = Engine()
    worst = admitted = 0
    for part in np.array_split(ids, 100):
        admitted += int(admit(part, eng=eng)[0].sum())
        n, nbytes = eng.dedupe_memory()
        worst = max(worst, nbytes - 16 * n)
    assert worst <= MEMORY_FIXED, f"{worst} bytes over 16 an id"
    if name in STREAMS:                             # no bucket expires: every new id is held
        assert n == admitted - eng.stats()["dedupe_late"]


@pytest.mark.parametrize("name", [k for k in MEMORY_STREAMS if k not in STREAMS])
def test_sparse_and_bursty_admission_matches_the_reference_sets(name):
    check(MEMORY_STREAMS[name]())


@pytest.mark.parametrize("name", ["sparse: 30k ids over 48 h", "bursts of 3k every 3 h",
                                  "full-rate, jitter 2 s", "shuffled"])
def test_memory_bound_holds_after_restoring_a_state(name):
    ids = MEMORY_STREAMS[name]()
    whole, _ = admit(ids)
    eng, got, worst = Engine(), [], 0
    for part in np.array_split(ids, 7):
        got.append(admit(part, eng=eng)[0])
        eng2 = Engine()
        eng2.load_dedupe_state(eng.dedupe_state())
        assert eng2.dedupe_memory()[0] == eng.dedupe_memory()[0]
        eng = eng2
        n, nbytes = eng.dedupe_memory()
        worst = max(worst, nbytes - 16 * n)
    assert (np.concatenate(got) == whole).all()
    assert worst <= MEMORY_FIXED, f"{worst} bytes over 16 an id"


def test_dedupe_off_admits_everything():
    ids = snowflakes(10_000, resend=0.5, seed=14)
    eng = Engine(dedupe=False)
    assert eng.admit_ids(ids) == len(ids) and eng.stats()["duplicates"] == 0
    assert eng.admit_ids(ids[:0]) == 0
