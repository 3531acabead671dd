"""Dedupe cost per row, measured directly: the core's admit loop (``Engine.admit_ids``, the GIL
released) over int64 arrays of tweet ids, without any JSON around it.

The id streams look like a firehose: snowflake ids created at ``RATE`` per second (about the full
firehose's rate), each delivered up to 2 s (or 200 ms, or 0) after ids created later, i.e. out of
creation order; 2% of rows re-send one of the last 10,000 ids and 0.2% one from anywhere
earlier. At 200k, 2M and 20M ids (the last ~55 min of full-rate tweets, 160 MB of ids). Each
round starts from a fresh ``Engine`` (default 48 h window), outside the timing, so the timing
includes the first touch of the memory the tables grow into (page faults: ~3.5 us per 4 KiB on
the VM this was written on, ~10 ns per remembered id). Reported in ``extra_info``: ns per row from
the best wall-clock round and from the best process-CPU-time round (``time.process_time``, less
disturbed by other load on a shared machine), and the median CPU round.

``FIREHOSE_BENCH_DEDUPE_SIZES`` (comma-separated) overrides the sizes.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from _bench import best_seconds, rounds
from firehose._core import Engine

EPOCH = 1288834974657
RATE = 6000.0


def id_stream(n: int, *, rate: float = RATE, jitter_ms: int = 2000, resend: float = 0.02,
              far_resend: float = 0.002, recent: int = 10_000, seed: int = 0) -> np.ndarray:
    """n snowflake ids as described above (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    kind = rng.random(n)
    fresh = kind >= resend + far_resend
    fresh[0] = True
    nf = int(fresh.sum())
    clock = 1_700_000_000_000 + np.cumsum(rng.exponential(1000.0 / rate, nf))
    ms = (clock - rng.uniform(0, jitter_ms, nf)).astype(np.int64)
    uniq = ((ms - EPOCH) << 22) | rng.integers(0, 1 << 22, nf)
    before = np.cumsum(fresh) - fresh
    back = np.where(kind < resend, rng.integers(1, recent + 1, n),
                    (rng.random(n) * before).astype(np.int64) + 1)
    out = uniq[np.clip(before - back, 0, None)]
    out[fresh] = uniq
    return np.ascontiguousarray(out, dtype=np.int64)


def sizes() -> list[int]:
    env = os.environ.get("FIREHOSE_BENCH_DEDUPE_SIZES")
    return [int(s) for s in env.split(",")] if env else [200_000, 2_000_000, 20_000_000]


JITTERS = {"jitter2s": 2000, "jitter200ms": 200, "inorder": 0}


@pytest.fixture(scope="module", params=[(n, j) for n in sizes() for j in JITTERS],
                ids=lambda p: f"{p[0] / 1e6:g}M-{p[1]}")
def ids(request) -> np.ndarray:
    n, jitter = request.param
    return id_stream(n, jitter_ms=JITTERS[jitter])


def cpu_rounds(ids: np.ndarray, k: int) -> tuple[list[float], Engine]:
    out = []
    for _ in range(k):
        eng = Engine()
        t0 = time.process_time()
        eng.admit_ids(ids)
        out.append(time.process_time() - t0)
    return out, eng


def test_dedupe_admit(benchmark, ids):
    """Engine.admit_ids over the stream; ns per row."""
    n = len(ids)
    k = max(rounds(), 3 if n > 5_000_000 else 9)
    benchmark.pedantic(lambda eng: eng.admit_ids(ids), setup=lambda: ((Engine(),), {}),
                       rounds=k, iterations=1)
    cpu, eng = cpu_rounds(ids, k)
    cpu.sort()
    st = eng.stats()
    remembered, nbytes = eng.dedupe_memory()
    wall = best_seconds(benchmark)
    info = benchmark.extra_info
    info["rows"] = n
    if wall:
        info["ns_per_row_wall_best"] = round(wall / n * 1e9, 1)
    info["ns_per_row_cpu_best"] = round(cpu[0] / n * 1e9, 1)
    info["ns_per_row_cpu_median"] = round(cpu[len(cpu) // 2] / n * 1e9, 1)
    info["duplicates"] = st["duplicates"]
    info["ids_remembered"] = remembered
    info["bytes_per_id"] = round(nbytes / max(remembered, 1), 1)
