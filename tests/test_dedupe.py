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
    """ids with k odd ones inserted (far-future ones too if asked: one of those makes the
    dedupe forget everything before it, as the window is counted from the newest id)."""
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


def test_a_far_future_id_forgets_everything_as_the_reference_does():
    ids = snowflakes(50_000, seed=12)
    far = ((T0 + 100 * 24 * HOUR - EPOCH) << 22) | 3
    check(np.concatenate([ids[:30_000], [far], ids, [far]]))


def test_duplicates_are_exact_against_a_plain_set_when_nothing_expires():
    ids = with_odd(snowflakes(400_000, jitter_ms=5000, resend=0.05, far_resend=0.01, seed=13))
    ids = ids[(ids < 1 << 35) | ((ids >> 22) + EPOCH > T0 - HOUR)]      # none is late
    got, eng = admit(ids)
    seen: set[int] = set()
    want = np.array([not (t in seen or seen.add(t)) for t in ids.tolist()], np.uint8)
    assert (got == want).all()
    assert eng.stats()["duplicates"] == len(ids) - len(seen)
    assert eng.dedupe_memory()[0] == len(seen)


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


@pytest.mark.parametrize("name", ["full-rate, jitter 2 s", "heavy jitter 60 s, 10% re-sends",
                                  "shuffled", "descending",
                                  "backfill: a later capture, then an earlier one, then the later again"])
def test_memory_is_at_most_16_bytes_per_remembered_id(name):
    ids = STREAMS[name]()
    _, eng = admit(ids)
    n, nbytes = eng.dedupe_memory()
    assert n == len(np.unique(ids))
    assert nbytes <= 16 * n + 64 * 1024         # plus a few fixed initial tables


def test_dedupe_off_admits_everything():
    ids = snowflakes(10_000, resend=0.5, seed=14)
    eng = Engine(dedupe=False)
    assert eng.admit_ids(ids) == len(ids) and eng.stats()["duplicates"] == 0
    assert eng.admit_ids(ids[:0]) == 0
