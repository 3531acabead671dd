"""The replay end to end, in a fresh process: ``python bench/compare/replay_run.py``.

Replays the cached generated gzip capture (``_replay_inputs.capture``: default 1024 MB
decompressed, v1.1) through ``Pipeline.run`` with the benchmark configuration
(``_replay_inputs.config``: 100 seats x 100 rules) into a temp dir, and prints one table:
input MB, tweets, seconds, tweets/s, MB/s (decompressed and gzip), per-stage seconds, CPU time
÷ wall (all threads; the main thread alone next to it), the machine's other load, peak RSS.

Each run is a child process (``--child``) so that its peak RSS (``VmHWM``; not ``ru_maxrss``,
which on Linux carries the parent's high-water mark across fork/exec) is the replay's alone:
imports, configuration, the compiled rules and plans, and the run. Pipeline construction
(config validation, 10k rules compiled, plans) is timed apart (``setup s``); the run's seconds
are the Report's (first read to manifest written).

Options: ``--mb`` (``$FIREHOSE_BENCH_REPLAY_MB`` or 1024), ``--clients`` (100),
``--rules-per-client`` (100), ``--batch-bytes`` (the Pipeline default, 16 MiB), ``--rounds``
(1: best of), ``--dialect`` (v1.1), ``--no-caps`` (leave the licence's caps out),
``--keep`` (keep the output directory), ``--json`` (also write the raw numbers there).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import _replay_inputs as rp  # noqa: E402
from run import build_info, machine  # noqa: E402

STAGES = ("decode", "compliance", "route", "entitle", "sink", "commit")
TARGET = 150_000


def child(a) -> dict:
    """In this (fresh) process: build the configuration and the Pipeline, run it, measure."""
    t0 = time.perf_counter()
    cfg = rp.config(a.clients, a.rules_per_client, caps=not a.no_caps)
    pipe = rp.pipeline(cfg, a.out_dir, a.batch_bytes or None)
    setup = time.perf_counter() - t0
    r = rp.measured_run(pipe, [a.path])
    r.update(setup_s=setup, clients=len(cfg.clients),
             rules=sum(len(c.rules) for c in cfg.clients.values()),
             batch_bytes=pipe.batch_bytes, commit_every=pipe.commit_every)
    return r


def run_child(a, path: Path) -> dict:
    out = tempfile.mkdtemp(prefix="firehose-replay-")
    try:
        cmd = [sys.executable, __file__, "--child", "--path", str(path), "--out-dir", out,
               "--clients", str(a.clients), "--rules-per-client", str(a.rules_per_client),
               "--batch-bytes", str(a.batch_bytes or 0)] + (["--no-caps"] if a.no_caps else [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            raise SystemExit(f"replay child failed (exit {p.returncode})")
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        if a.keep:
            print(f"output kept in {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)


def table(r: dict) -> str:
    mb = r["input_bytes"] / 1e6
    s = r["seconds"]
    st = r["stage_seconds"]
    rows = [
        ("input", f"{mb:,.0f} MB decompressed ({r['input_gz_bytes'] / 1e6:,.0f} MB gzip), "
                  f"{r['lines']:,} lines, {r['input_bytes'] / max(r['lines'], 1):,.0f} B/line"),
        ("tweets", f"{r['tweets']:,} (after {r['duplicates']:,} duplicates dropped; "
                   f"{r['compliance']:,} compliance events, {r['rejects']:,} rejects)"),
        ("clients x rules", f"{r['clients']} seats, {r['rules']:,} rules; batch "
                            f"{r['batch_bytes'] / 2**20:g} MiB, commit every "
                            f"{r['commit_every']} ({r['batches']} batches)"),
        ("matches", f"{r['matched_tweets']:,} tweets matched by a seat, {r['pairs']:,} "
                    f"(tweet, seat) pairs; {r['delivered']:,} delivered, {r['denied']:,} denied ("
                    + ", ".join(f"{k} {v:,}" for k, v in sorted(r["denied_by"].items(),
                                                                key=lambda x: -x[1])) + ")"),
        ("setup s", f"{r['setup_s']:.2f} (config, 10k rules compiled, plans: not in the run)"),
        ("seconds", f"{s:,.2f}"),
        ("tweets/s", f"**{r['tweets'] / s:,.0f}** (target {TARGET:,})"),
        ("MB/s", f"{mb / s:,.1f} decompressed, {r['input_gz_bytes'] / 1e6 / s:,.1f} gzip"),
    ]
    for k in STAGES:
        if k in st:
            rows.append((f"{k} s", f"{st[k]:,.2f} ({st[k] / s:.0%} of the run)"))
    rows += [
        ("CPU s ÷ wall", f"{r['cpu_per_wall']:.2f} cores ({r['cpu_s']:,.1f} CPU s, of which main "
                         f"thread {r['main_thread_cpu_s']:,.1f} s); other load "
                         f"{r['other_load_cores']:.2f} cores"),
        ("peak RSS", f"{r['peak_rss_bytes'] / 2**20:,.0f} MiB (VmHWM of the process; "
                     f"{r['rss_before_bytes'] / 2**20:,.0f} MiB before the run)"
         if r.get("peak_rss_bytes") else "n/a"),
        ("output", f"{r.get('output_bytes', 0) / 1e6:,.0f} MB"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join([f"| {'':<{w}} | replay |", f"|{'-' * (w + 2)}|---|"]
                     + [f"| {k:<{w}} | {v} |" for k, v in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=None, help="decompressed MB of the capture")
    ap.add_argument("--clients", type=int, default=rp.DEFAULT_CLIENTS)
    ap.add_argument("--rules-per-client", type=int, default=rp.DEFAULT_RULES_PER_CLIENT)
    ap.add_argument("--batch-bytes", type=int, default=0, help="0: the Pipeline default")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dialect", default=None, help="v1.1 (default), v2, activity, mixed")
    ap.add_argument("--no-caps", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a)))
        return 0
    path = rp.capture(a.mb, a.dialect)
    m = machine()
    print(f"{m['cpu']}, {m['usable_cores']} cores, {m['mem_gib']} GiB, Python {m['python']}, "
          f"{build_info()}")
    print(f"capture: {path} ({path.stat().st_size / 1e6:,.0f} MB gzip)", flush=True)
    runs = []
    for i in range(a.rounds):
        r = run_child(a, path)
        runs.append(r)
        print(f"  round {i + 1}: {r['seconds']:.2f} s, {r['tweets'] / r['seconds']:,.0f} "
              f"tweets/s, CPU/wall {r['cpu_per_wall']:.2f}, other load "
              f"{r['other_load_cores']:.2f}", flush=True)
    best = min(runs, key=lambda r: r["seconds"])
    print()
    print(table(best))
    if a.json:
        a.json.write_text(json.dumps({"machine": m, "build": build_info(), "capture": str(path),
                                      "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
