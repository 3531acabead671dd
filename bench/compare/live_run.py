"""Live ingestion end to end: ``python bench/compare/live_run.py``.

Starts its own nats-server (127.0.0.1, a free port, a temporary JetStream store; stopped at
the end) and measures ``firehose.live.Consumer`` with the demo configuration
(``examples/clients.toml``: four seats, file sinks) on generated v1.1 lines:

* **drain**: the stream is filled first (``--lines`` lines, ``--lines-per-message`` to a
  message), then one consumer empties it: messages/s and lines/s from the first message
  fetched to the last commit (start-up apart), CPU ÷ wall of the consumer process.
* **steady**: a publisher process sends ``--rate`` messages/s for ``--seconds`` while the
  consumer runs; latency of each message from its JetStream time stamp (stored at publish) to
  the commit that made its rows durable in the sinks (and after which it is acknowledged):
  p50, p99, max. Rates above what the consumer sustains show up as growing latency.

Options: ``--batch`` (256), ``--commit-every`` (1), ``--rates`` (comma list, e.g.
``500,2000``), ``--json PATH``. Needs ``nats-server`` on PATH and ``nats-py``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import nats  # noqa: E402

from firehose.live import Consumer, publish_lines  # noqa: E402
from firehose.testing import generate  # noqa: E402

EXAMPLE = str(ROOT / "examples" / "clients.toml")

PUBLISHER = r"""
import asyncio, sys, time, nats
sys.path.insert(0, sys.argv[1])
from firehose.testing import generate
url, subject, rate, seconds, per, seed = sys.argv[2], sys.argv[3], float(sys.argv[4]), \
    float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
async def main():
    nc = await nats.connect(url)
    js = nc.jetstream()
    total = int(rate * seconds)
    lines = generate(total * per, seed=seed, compliance_rate=0.0)
    t0 = time.perf_counter()
    futs = []
    for i in range(total):
        payload = b"".join(next(lines) for _ in range(per))
        due = t0 + i / rate
        d = due - time.perf_counter()
        if d > 0:
            await asyncio.sleep(d)
        futs.append(asyncio.ensure_future(js.publish(subject, payload)))
        if len(futs) >= 256:
            await asyncio.gather(*futs); futs.clear()
    await asyncio.gather(*futs)
    print(total, flush=True)
    await nc.close()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        exe = shutil.which("nats-server")
        if exe is None:
            sys.exit("nats-server is not installed (apt-get install nats-server)")
        self.dir = tempfile.mkdtemp(prefix="firehose-live-bench-")
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([exe, "-a", "127.0.0.1", "-p", str(self.port), "-js",
                                      "-sd", os.path.join(self.dir, "js")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    sys.exit("nats-server did not start")
                time.sleep(0.05)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def _js(url, fn):
    nc = await nats.connect(url)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def drain(server, out, stream, lines, per, batch, commit_every):
    async def fill(js):
        await js.add_stream(name=stream, subjects=[f"in.{stream}"])
        return await publish_lines(js, f"in.{stream}", generate(lines, seed=5,
                                                                compliance_rate=0.0),
                                   lines_per_message=per)
    n = asyncio.run(_js(server.url, fill))
    c = Consumer(server.url, stream, EXAMPLE, os.path.join(out, stream), batch=batch,
                 commit_every=commit_every, drain=True, reload_check=None, log=lambda m: None)
    c0 = cpu()
    r = asyncio.run(c.run())
    busy = c.t_last - c.t_first
    return {"mode": "drain", "lines_per_message": per, "batch": batch,
            "commit_every": commit_every, "messages": n, "lines": lines,
            "seconds": busy, "msgs_per_s": r.messages / busy, "lines_per_s": lines / busy,
            "commits": r.commits, "cpu_per_wall": (cpu() - c0) / r.seconds,
            "delivered": r.get("entitle.delivered")}


def steady(server, out, stream, rate, seconds, per, batch, commit_every):
    asyncio.run(_js(server.url, lambda js: js.add_stream(name=stream,
                                                         subjects=[f"in.{stream}"])))
    c = Consumer(server.url, stream, EXAMPLE, os.path.join(out, stream), batch=batch,
                 commit_every=commit_every, reload_check=None, log=lambda m: None)
    box = {}
    th = threading.Thread(target=lambda: box.update(r=asyncio.run(c.run())))
    th.start()
    while c.pipe is None or c._loop is None:
        time.sleep(0.05)
    time.sleep(1.0)                                   # connected, consumer seated
    pub = subprocess.run([sys.executable, "-c", PUBLISHER, str(ROOT / "src"), server.url,
                          f"in.{stream}", str(rate), str(seconds), str(per), "9"],
                         capture_output=True, text=True, check=True)
    total = int(pub.stdout.strip())
    deadline = time.monotonic() + 120
    while c._committed < total and time.monotonic() < deadline:
        time.sleep(0.05)
    c.stop()
    th.join()
    r = box["r"]
    lat = r.latencies
    return {"mode": "steady", "rate": rate, "lines_per_message": per, "batch": batch,
            "commit_every": commit_every, "messages": total, "commits": r.commits,
            "p50_ms": pct(lat, 0.50) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "max_ms": max(lat) * 1e3 if lat else float("nan")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--lines-per-message", default="1,20")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--commit-every", type=int, default=1)
    ap.add_argument("--rates", default="200,1000,2000")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    server = Server()
    out = tempfile.mkdtemp(prefix="firehose-live-out-")
    rows = []
    try:
        for per in (int(x) for x in a.lines_per_message.split(",")):
            rows.append(drain(server, out, f"D{per}", a.lines, per, a.batch, a.commit_every))
            print(rows[-1], flush=True)
        for rate in (float(x) for x in a.rates.split(",") if x):
            rows.append(steady(server, out, f"S{int(rate)}", rate, a.seconds, 1, a.batch,
                               a.commit_every))
            print(rows[-1], flush=True)
    finally:
        server.close()
        shutil.rmtree(out, ignore_errors=True)
    print()
    print("| mode | lines/msg | batch | messages | seconds | msg/s | lines/s | commits "
          "| CPU/wall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["mode"] == "drain":
            print(f"| drain | {r['lines_per_message']} | {r['batch']} | {r['messages']:,} | "
                  f"{r['seconds']:.2f} | {r['msgs_per_s']:,.0f} | {r['lines_per_s']:,.0f} | "
                  f"{r['commits']:,} | {r['cpu_per_wall']:.2f} |")
    print()
    print("| publish rate (msg/s, 1 line each) | messages | commits | p50 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["mode"] == "steady":
            print(f"| {r['rate']:,.0f} | {r['messages']:,} | {r['commits']:,} | "
                  f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
