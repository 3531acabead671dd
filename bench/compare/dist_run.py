"""The distributed replay (firehose.dist) against one machine: ``python bench/compare/dist_run.py``.

Replays the cached plain capture (``_inputs.capture``: ``--mb`` MB, v1.1; plain so that it is cut
into ``--segment-mb`` segments) with the benchmark configuration (``_replay_inputs.config``:
``--clients`` seats x ``--rules-per-client`` rules) through

* ``Pipeline.run`` (the single-machine replay, its own semantics),
* ``dist.replay(scheduler="sync")`` (the distributed stages in this process, no Dask),
* ``dist.replay`` on a ``LocalCluster(host="127.0.0.1")`` of 1 and of 2 worker processes
  (1 thread each; ``--workers 1,2``),

and prints one table: seconds, tweets/s, MB/s, the seconds of each distributed stage, CPU
seconds of the run (this process and the cluster's workers), CPU ÷ wall, and the cores that
other processes of the machine took meanwhile ("other"). It also checks that the 1- and
2-worker outputs are byte-identical to the in-process reference. Every cluster is started and
closed here, on loopback.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import _inputs  # noqa: E402
import _replay_inputs as rp  # noqa: E402

STAGES = ("decode", "compliance", "route", "caps", "write", "commit")


def _busy() -> float:
    return rp.busy_jiffies() / os.sysconf("SC_CLK_TCK")


def _ours() -> float:
    """CPU seconds of this process and its children (the local cluster's workers)."""
    import psutil
    total = 0.0
    me = psutil.Process()
    for p in [me] + me.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _tree(out: str) -> dict[str, bytes]:
    files = {}
    for root, _, names in os.walk(out):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, out)] = f.read()
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--segment-mb", type=float, default=32)
    ap.add_argument("--partitions", type=int, default=None, help="default: dist.auto_partitions")
    ap.add_argument("--clients", type=int, default=rp.DEFAULT_CLIENTS)
    ap.add_argument("--rules-per-client", type=int, default=rp.DEFAULT_RULES_PER_CLIENT)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--no-pipeline", action="store_true")
    a = ap.parse_args()

    from distributed import Client, LocalCluster

    from firehose import dist
    path = str(_inputs.capture(a.mb, compression=""))
    cfg = rp.config(a.clients, a.rules_per_client)
    kw = dict(partitions=a.partitions, segment_bytes=int(a.segment_mb * 1e6), today=rp.TODAY)
    tmp = tempfile.mkdtemp(prefix="firehose-dist-bench-")
    rows = []

    def measure(label, fn):
        out = os.path.join(tmp, label.replace(" ", "-"))
        b0, o0, t0 = _busy(), _ours(), time.perf_counter()
        report = fn(out)
        wall = time.perf_counter() - t0
        cpu, busy = _ours() - o0, _busy() - b0
        rows.append((label, report, wall, cpu, max(0.0, busy - cpu) / wall))
        print(f"  {label}: {wall:.1f} s", file=sys.stderr)
        return out

    try:
        if not a.no_pipeline:
            measure("pipeline", lambda o: rp.pipeline(cfg, o).run([path]))
        ref = measure("dist sync", lambda o: dist.replay([path], cfg, None, o,
                                                         scheduler="sync", **kw))
        ref_tree = _tree(ref)
        same = {}
        for n in (int(x) for x in a.workers.split(",")):
            with LocalCluster(host="127.0.0.1", n_workers=n, threads_per_worker=1,
                              processes=True, dashboard_address="127.0.0.1:0") as cl, \
                    Client(cl) as client:
                client.wait_for_workers(n)
                label = f"dask {n} worker" + ("s" if n > 1 else "")
                out = measure(label, lambda o: dist.replay([path], cfg, client, o, **kw))
                same[label] = _tree(out) == ref_tree
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    r0 = rows[0][1]
    mb = r0.get("decode.bytes") / 1e6
    parts = next(r.get("dist.partitions") for _, r, _, _, _ in rows if r.get("dist.partitions"))
    print(f"input {mb:,.0f} MB plain, {r0.get('decode.tweets'):,} tweets, {len(cfg.clients)} "
          f"seats x {a.rules_per_client} rules, partitions {parts}, segments of "
          f"{a.segment_mb:g} MB, {os.cpu_count()} cores")
    head = f"{'run':<16}{'s':>7}{'tweets/s':>10}{'MB/s':>7}  " + "".join(
        f"{s:>11}" for s in STAGES) + f"{'CPU s':>8}{'CPU/wall':>9}{'other':>7}  same bytes"
    print(head)
    for label, report, wall, cpu, other in rows:
        st = report.stage_seconds if label != "pipeline" else {}
        stages = "".join(f"{st.get(s, 0):>11.1f}" if st else f"{'':>11}" for s in STAGES)
        print(f"{label:<16}{wall:>7.1f}{report.get('decode.tweets') / wall:>10,.0f}"
              f"{mb / wall:>7.1f}  {stages}{cpu:>8.1f}{cpu / wall:>9.2f}{other:>7.2f}  "
              f"{same.get(label, '') if label.startswith('dask') else ''}")


if __name__ == "__main__":
    main()
