"""pytest-benchmark suite of the decoder against itself: ``make bench`` or
``.venv/bin/python -m pytest bench --benchmark-only``.

Environment:
  FIREHOSE_BENCH_MB      size of the generated v1.1 capture, MB (default 200)
  FIREHOSE_BENCH_RSS_MB  size of the .gz capture streamed by the RSS test, MB (default 600)
  FIREHOSE_BENCH_ROUNDS  timed rounds per benchmark (default 3; the minimum is reported)
  FIREHOSE_BENCH_CACHE   where generated captures are kept (default .bench-cache/)

Each benchmark puts its throughput in ``extra_info`` (``MB_per_s``, ``rows_per_s`` computed from
the fastest round), so ``--benchmark-json`` output carries them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _inputs  # noqa: E402


@pytest.fixture(scope="session")
def capture_path() -> Path:
    return _inputs.capture(_inputs.bench_mb())


@pytest.fixture(scope="session")
def capture_bytes(capture_path) -> bytes:
    return capture_path.read_bytes()


@pytest.fixture(scope="session")
def gz_path(capture_path) -> Path:
    return _inputs.capture(_inputs.bench_mb(), compression="gz")


@pytest.fixture(scope="session")
def zst_path(capture_path) -> Path:
    return _inputs.capture(_inputs.bench_mb(), compression="zst")


@pytest.fixture(scope="session")
def session_results() -> dict:
    """Best times of earlier benchmarks of this session, for ratios (e.g. 2 threads vs 1)."""
    return {}


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    """Print each benchmark's extra_info (MB/s, rows/s, speedups): pytest-benchmark's table
    shows only times."""
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "benchmarks", None):
        return
    tr = terminalreporter
    tr.write_sep("-", "firehose throughput (from the fastest round)")
    for b in bs.benchmarks:
        info = dict(b.extra_info)
        head = []
        for k in ("MB_per_s", "rows_per_s"):
            if k in info:
                head.append(f"{info.pop(k):,} {k.replace('_per_s', '/s')}")
        rest = ", ".join(f"{k}={v}" for k, v in info.items())
        tr.write_line(f"{b.name}: {'  '.join(head)}  [{rest}]")
