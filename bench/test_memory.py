"""Peak RSS of firehose streaming a .gz capture many times larger than its 4 MiB chunks.

Runs in a fresh process (``compare/peers.py firehose --sample-rss``) so the number is the
decoder's own: peak RSS (VmHWM) minus the RSS of the interpreter with firehose imported. The
issue's bound is 150 MB above the interpreter whatever the input size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import _inputs
from _bench import put_rates

PEERS = Path(__file__).resolve().parent / "compare" / "peers.py"
LIMIT = 150e6


def test_stream_gz_peak_rss(benchmark):
    mb = float(os.environ.get("FIREHOSE_BENCH_RSS_MB") or 600)
    gz = _inputs.capture(mb, compression="gz")

    def run():
        p = subprocess.run([sys.executable, str(PEERS), "firehose", str(gz), "--sample-rss"],
                           capture_output=True, text=True, check=True)
        return json.loads(p.stdout.strip().splitlines()[-1])
    r = benchmark.pedantic(run, rounds=1, iterations=1)
    above = r["peak_rss"] - r["baseline_rss"]
    samples = [s[1] for s in r["rss_samples"]]
    tenth = max(1, len(samples) // 10)
    put_rates(benchmark, r["bytes"], r["rows"], r["stats"]["lines"],
              gz_MB=round(gz.stat().st_size / 1e6, 1),
              baseline_rss_MiB=round(r["baseline_rss"] / 2**20, 1),
              peak_rss_MiB=round(r["peak_rss"] / 2**20, 1),
              peak_above_baseline_MiB=round(above / 2**20, 1),
              rss_first_tenth_MiB=round(max(samples[:tenth]) / 2**20, 1),
              rss_last_tenth_MiB=round(max(samples[-tenth:]) / 2**20, 1),
              dedupe_ids=r["dedupe_memory"][0],
              dedupe_table_MiB=round(r["dedupe_memory"][1] / 2**20, 1))
    # the benchmark's time includes starting the child; the child's own decode time is this:
    benchmark.extra_info["MB_per_s"] = round(r["bytes"] / 1e6 / r["seconds"], 1)
    benchmark.extra_info["rows_per_s"] = round(r["rows"] / r["seconds"])
    benchmark.extra_info["lines_per_s"] = round(r["stats"]["lines"] / r["seconds"])
    benchmark.extra_info["decode_s"] = round(r["seconds"], 3)
    assert above <= LIMIT, f"peak RSS {above / 1e6:.0f} MB above the interpreter (bound 150 MB)"
