"""The replay end to end (issue 5): a generated ~1 GB capture through 10,000 rules for 100 seats.

Target (issue 5): at least 150,000 tweets/s on the 2-core machine, using both cores.

``Pipeline.run`` on the cached gzip capture (``_replay_inputs.capture``) with the benchmark
configuration (``_replay_inputs.config``) into a fresh temp dir per round (construction, i.e.
config validation, rule compilation and plans, is outside the timing). ``extra_info``:
tweets/s, MB/s (decompressed and gzip), seconds by stage (``Report.stage_seconds``), CPU time
of the process ÷ wall (2.0 = both cores busy; the main thread's share apart), the other load on
the machine, and RSS.

Environment:
  FIREHOSE_BENCH_REPLAY_MB       decompressed size of the capture, MB (default 1024)
  FIREHOSE_BENCH_REPLAY_ROUNDS   timed rounds (default 1; each 1 GB round takes minutes)
  FIREHOSE_BENCH_REPLAY_DIALECT  v1.1 (default), v2, activity, mixed
  FIREHOSE_BENCH_REPLAY_FRESH    0 skips the fresh-process run (peak RSS of the replay alone)

RSS: the in-process test reports VmHWM reset just before the run, so it includes whatever
the pytest process already held (earlier benchmarks' inputs); ``test_replay_fresh_process``
runs the same replay once in a child (``bench/compare/replay_run.py --child``), whose peak is
the replay's own.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import _replay_inputs as rp

HERE = Path(__file__).resolve().parent


def _rounds() -> int:
    return int(os.environ.get("FIREHOSE_BENCH_REPLAY_ROUNDS") or 1)


@pytest.fixture(scope="module")
def replay_capture() -> Path:
    return rp.capture()


@pytest.fixture(scope="module")
def replay_config():
    return rp.config()


def _put(info: dict, r: dict) -> None:
    s = r["seconds"]
    mb = r["input_bytes"] / 1e6
    info.update(
        MB_per_s=round(mb / s, 1),
        rows_per_s=round(r["tweets"] / s),
        tweets_per_s=round(r["tweets"] / s),
        gz_MB_per_s=round(r["input_gz_bytes"] / 1e6 / s, 1),
        input_MB=round(mb, 1), input_gz_MB=round(r["input_gz_bytes"] / 1e6, 1),
        bytes_per_line=round(r["input_bytes"] / max(r["lines"], 1)),
        tweets=r["tweets"], pairs=r["pairs"], delivered=r["delivered"], denied=r["denied"],
        run_s=round(s, 2),
        stage_seconds={k: round(v, 2) for k, v in sorted(r["stage_seconds"].items())},
        cpu_per_wall=round(r["cpu_per_wall"], 2),
        main_thread_cpu_s=round(r["main_thread_cpu_s"], 2), cpu_s=round(r["cpu_s"], 2),
        other_load_cores=round(r["other_load_cores"], 2),
        rss_before_MiB=round(r["rss_before_bytes"] / 2**20),
    )
    if r.get("peak_rss_bytes"):
        info["peak_rss_MiB"] = round(r["peak_rss_bytes"] / 2**20)
    if "setup_s" in r:
        info["setup_s"] = round(r["setup_s"], 2)


def test_replay_end_to_end(benchmark, replay_capture, replay_config, tmp_path_factory):
    runs: list[dict] = []
    dirs: list[Path] = []

    def setup():
        d = tmp_path_factory.mktemp("replay")
        dirs.append(d)
        return (rp.pipeline(replay_config, d),), {}

    def run(pipe):
        runs.append(rp.measured_run(pipe, [str(replay_capture)]))
        if len(dirs) > 1:                       # keep the last round's output only
            shutil.rmtree(dirs.pop(0), ignore_errors=True)

    benchmark.pedantic(run, setup=setup, rounds=_rounds(), iterations=1)
    best = min(runs, key=lambda r: r["seconds"])
    assert best["tweets"] > 0 and best["delivered"] > 0 and best["denied"] > 0
    assert best["pairs"] == best["delivered"] + best["denied"]
    _put(benchmark.extra_info, best)
    benchmark.extra_info["rss_note"] = "VmHWM of the pytest process (see the fresh-process test)"
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.environ.get("FIREHOSE_BENCH_REPLAY_FRESH") == "0",
                    reason="FIREHOSE_BENCH_REPLAY_FRESH=0")
def test_replay_fresh_process(benchmark, replay_capture, tmp_path):
    """One replay in a child process: its peak RSS is the replay's own (imports, config, rules,
    plans and the run); timed by the child (the benchmark's own time includes its start-up)."""
    out: dict = {}

    def run():
        p = subprocess.run([sys.executable, str(HERE / "compare" / "replay_run.py"), "--child",
                            "--path", str(replay_capture), "--out-dir", str(tmp_path / "out")],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-2000:]
        out.update(json.loads(p.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1, iterations=1)
    _put(benchmark.extra_info, out)
