"""Helpers shared by the benchmark modules."""
from __future__ import annotations

import os


def rounds() -> int:
    return int(os.environ.get("FIREHOSE_BENCH_ROUNDS") or 3)


def best_seconds(benchmark) -> float | None:
    """The fastest round of a finished benchmark (None when benchmarks are disabled)."""
    st = getattr(benchmark, "stats", None)
    if st is None:
        return None
    return st.stats.min


def put_rates(benchmark, nbytes: int, rows: int, lines: int | None = None, **more) -> None:
    t = best_seconds(benchmark)
    info = benchmark.extra_info
    info["input_MB"] = round(nbytes / 1e6, 1)
    info["rows"] = rows
    if t:
        info["best_s"] = round(t, 4)
        info["MB_per_s"] = round(nbytes / 1e6 / t, 1)
        info["rows_per_s"] = round(rows / t)
        if lines:
            info["lines_per_s"] = round(lines / t)
    info.update(more)
