"""Peers on the same input and projection, in one run: ``python bench/compare/run.py --mb 300``.

Every peer runs in a fresh process (``peers.py``) on the same cached capture (see
``bench/_inputs.py``), ``--reps`` times per process, in ``--rounds`` rounds interleaved over the
peers, best time kept; its peak RSS is measured in the child
(``VmHWM``, see ``peers.maxrss_bytes``) above the child's own baseline (the interpreter with
the peer's imports, before any work). The children's checksums of the projected columns must all agree, else the run says
so. Also: a check that the core and the reference decoder (``_reference.py``) give identical
tables on the start of the capture, and a streaming run of firehose over a larger ``.gz`` capture
that samples RSS per chunk (``--rss-mb``, 0 to skip).

Prints a markdown report and writes it to ``--out`` (default ``.bench-cache/compare-<time>.md``)
with the raw numbers next to it as JSON.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import _inputs  # noqa: E402

PEERS = ["firehose", "firehose-37", "firehose-2t", "firehose-all", "duckdb", "pyarrow", "polars", "msgspec",
         "orjson", "json"]
LABELS = {
    "firehose": "firehose iter_file, 1 thread (streaming, readahead=0, columns= the projection)",
    "firehose-37": "firehose iter_file, 1 thread, all 37 columns built (no projection pushed down)",
    "firehose-2t": "firehose iter_file(threads=2): segments mapped, taken by 2 worker threads as they come free, in file order, deduped across the file (columns= the projection)",
    "firehose-all": "firehose decode_file (keeps all 37 columns; default read-ahead thread)",
    "duckdb": "DuckDB read_json, threads=1",
    "pyarrow": "pyarrow.json.read_json, 1 thread",
    "polars": "polars read_ndjson, POLARS_MAX_THREADS=1",
    "msgspec": "msgspec typed Structs, line loop",
    "orjson": "orjson.loads line loop + dict lookups",
    "json": "json.loads line loop + dict lookups",
}
TARGETS = {"duckdb": 2.0, "pyarrow": 3.5}


# ------------------------------------------------------------------------------- machine

def machine() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "mem_gib": round(mem / 2**30, 1), "python": platform.python_version(),
            "platform": platform.platform(), "kernel": platform.release()}


def snapshot_package() -> Path:
    """Copy the built package (``src/firehose``: .py and the compiled core) to a temp dir and put
    it first on the path of this process and of every child, so all peers measure the same
    build even if the checkout is rebuilt during the run."""
    import importlib.util
    import shutil
    import tempfile
    global _MEASURED
    spec = importlib.util.find_spec("firehose")
    src = _MEASURED = Path(spec.origin).parent
    tmp = tempfile.mkdtemp(prefix="firehose-bench-")
    import atexit
    atexit.register(shutil.rmtree, tmp, True)
    dst = Path(tmp) / "firehose"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.c", "*.html", "__pycache__"))
    sys.path.insert(0, str(dst.parent))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(dst.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return dst


_MEASURED: Path | None = None     # the package snapshot_package copied


def build_info() -> str:
    """Which core was measured: the git commit (+dirty) of the checkout the measured package
    came from (named when it is not this one: a PYTHONPATH pointing elsewhere) and a hash of
    the compiled extension."""
    import hashlib
    import importlib.util
    repo = _MEASURED if _MEASURED is not None else HERE.parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        head = "?"
    spec = importlib.util.find_spec("firehose._core")
    so = Path(spec.origin) if spec and spec.origin else None
    digest = hashlib.sha1(so.read_bytes()).hexdigest()[:12] if so and so.exists() else "?"
    where = ""
    here = (HERE.parent.parent / "src" / "firehose").resolve()
    if _MEASURED is not None and _MEASURED.resolve() != here:
        where = f" (from {_MEASURED})"
    return f"commit {head or '?'}{where}, _core {so.name if so else '?'} sha1 {digest}"


def _busy_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle, sum(v[:8])


def busy_cores(interval: float = 1.0) -> float:
    """CPU cores kept busy by everything on the machine over ``interval`` seconds."""
    b0, _ = _busy_jiffies()
    time.sleep(interval)
    b1, _ = _busy_jiffies()
    return (b1 - b0) / os.sysconf("SC_CLK_TCK") / interval


def wait_quiet(limit_s: float, threshold: float = 0.2) -> float:
    """Wait (up to ``limit_s``) until the machine is idle; return the last busy-cores reading."""
    t0 = time.monotonic()
    b = busy_cores()
    warned = False
    while b > threshold and time.monotonic() - t0 < limit_s:
        if not warned:
            print(f"  (machine busy: {b:.2f} cores in use by others; waiting up to "
                  f"{limit_s:.0f} s)", flush=True)
            warned = True
        b = busy_cores(2.0)
    return b


# ------------------------------------------------------------------------------- children

def run_child(peer: str, path: Path, reps: int, extra=(), env_extra=None, _retry=2) -> dict:
    env = dict(os.environ)
    env["POLARS_MAX_THREADS"] = "1"
    env.update(env_extra or {})
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, _ = _busy_jiffies()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(HERE / "peers.py"), peer, str(path),
                        "--reps", str(reps), *extra],
                       capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    busy1, _ = _busy_jiffies()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        if _retry > 0:
            print(f"  ({peer} failed, retrying in 30 s: {p.stderr.strip().splitlines()[-1:]})",
                  flush=True)
            time.sleep(30)
            return run_child(peer, path, reps, extra, env_extra, _retry=_retry - 1)
        raise RuntimeError(f"{peer} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    child_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    busy = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
    res["wall_s"] = wall
    res["other_load"] = max(0.0, (busy - child_cpu) / wall)   # cores used by other processes
    return res


def reference_check(path: Path, nbytes: int = 3 << 20) -> str:
    """Do the core and the reference give identical tables on the start of the capture?"""
    import firehose
    from firehose._reference import ReferenceDecoder
    with open(path, "rb") as f:
        data = f.read(nbytes)
    data = data[:data.rfind(b"\n") + 1]
    a, b = firehose.Decoder(), ReferenceDecoder()
    ra, rb = a.feed(data, source="x"), b.feed(data, source="x")
    fa, fb = a.finish(), b.finish()
    out = []
    for name in ("tweets", "compliance", "rejects"):
        ta = [*getattr(ra, name).to_pylist(), *getattr(fa, name).to_pylist()]
        tb = [*getattr(rb, name).to_pylist(), *getattr(fb, name).to_pylist()]
        if ta != tb:
            diff = sum(x != y for x, y in zip(ta, tb)) + abs(len(ta) - len(tb))
            out.append(f"{name}: {diff} of {max(len(ta), len(tb))} rows differ")
    lines = data.count(b"\n")
    if out:
        return f"DIFFERENT on the first {lines:,} lines ({'; '.join(out)})"
    return (f"identical on the first {lines:,} lines ({a.stats['tweets']:,} "
            f"tweets, {a.stats['compliance']:,} compliance rows; stats equal: "
            f"{a.stats == b.stats})")


# ------------------------------------------------------------------------------- report

def fmt_mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def report(results: dict, meta: dict) -> str:
    size = meta["input_bytes"]
    ntweets = meta["tweets"]
    fh = results.get("firehose")
    fh_best = min(fh["times"]) if fh else None
    L = []
    L.append(f"Run {meta['date']} on {meta['machine']['cpu']}, "
             f"{meta['machine']['usable_cores']} cores, {meta['machine']['mem_gib']} GiB, "
             f"Python {meta['machine']['python']}, {meta['machine']['platform']}; "
             f"firehose {meta['build']}.")
    L.append(f"Input: `{meta['input_name']}`, {size / 1e6:,.0f} MB, {meta['lines']:,} lines, "
             f"{ntweets:,} tweets (v1.1 stream, synthetic; 2% re-sent duplicates, 3% stream "
             f"messages). Each peer in a fresh process per round, {meta['reps']} timed runs per "
             f"process, {meta['rounds']} rounds interleaved over the peers; "
             + (f"rounds used (other processes using ≤ {meta['max_other_load']} cores "
                f"throughout): {', '.join(map(str, meta['used_rounds']))}"
                if meta["quiet_found"] else
                f"**no round was quiet** (other processes used more than "
                f"{meta['max_other_load']} cores): all rounds used, timings disturbed")
             + f"; best of {meta['reps'] * len(meta['used_rounds'])} runs.")
    L.append("")
    fh_cpu = min(fh["cpu_times"]) if fh else None
    L.append("| peer | version | seconds | MB/s | tweets/s | peak RSS above baseline "
             "(baseline) | peer time ÷ firehose 1-thread time | CPU seconds | ratio by CPU "
             "time | other load |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for peer, r in results.items():
        best = min(r["times"])
        cpu = min(r["cpu_times"])
        ratio = "—" if peer == "firehose" else f"{best / fh_best:.2f}×" if fh_best else "?"
        cratio = "—" if peer in ("firehose", "firehose-2t") else (
            f"{cpu / fh_cpu:.2f}×" if fh_cpu else "?")
        if peer == "firehose-2t" and fh_best:
            ratio = f"{best / fh_best:.2f}× (speedup {fh_best / best:.2f}×)"
        L.append(f"| {LABELS.get(peer, peer)} | {r['version']} | {best:.2f} | "
                 f"{size / 1e6 / best:,.0f} | {ntweets / best:,.0f} | "
                 f"{fmt_mb(r['peak_rss'] - r['baseline_rss'])} ({fmt_mb(r['baseline_rss'])}) | "
                 f"{ratio} | {cpu:.2f} | {cratio} | {r['other_load']:.2f} |")
    L.append("")
    L.append("Ratios above 1: firehose is faster. *seconds*: best wall time; *CPU seconds*: "
             "best CPU time of the process (all threads), less disturbed by other load on a "
             "2-core machine. *other load*: the most CPU cores used by other processes during "
             "any of the peer's rounds (0 = quiet machine).")
    return "\n".join(L)


def targets(results: dict) -> list[str]:
    out = []
    fh = results.get("firehose")
    if not fh:
        return out
    fb = min(fh["times"])
    fc = min(fh["cpu_times"])
    for peer, want in TARGETS.items():
        if peer in results:
            got = min(results[peer]["times"]) / fb
            gotc = min(results[peer]["cpu_times"]) / fc
            pr = per_round(results, peer)
            out.append(f"firehose 1 thread vs {peer} 1 thread = {got:.2f}× by best wall time, "
                       f"{gotc:.2f}× by best CPU time, per round {pr} (target ≥ {want}×): "
                       f"{'met' if min(got, gotc) >= want else 'NOT met'}")
    if "firehose-2t" in results:
        sp = fb / min(results["firehose-2t"]["times"])
        pr = per_round(results, "firehose-2t")
        out.append(f"2 threads ÷ 1 thread = {sp:.2f}× by best wall time, per round {pr} "
                   f"(target ≥ 1.7×): {'met' if sp >= 1.7 else 'NOT met'}")
    rss = (fh["peak_rss"] - fh["baseline_rss"]) / 2**20
    out.append(f"firehose peak RSS above baseline = {rss:,.0f} MiB (target ≤ 150 MB): "
               f"{'met' if rss * 2**20 <= 150e6 else 'NOT met'}")
    return out


def merge_rounds(raw: list[dict], used: list[int], peers: list[str]) -> dict[str, dict]:
    """One record per peer over the rounds ``used``: all timed runs, the highest peak RSS, the
    first round's checksum (computed once)."""
    out = {}
    for peer in peers:
        rs = [raw[i][peer] for i in used]
        m = dict(rs[0])
        m["checksum"] = raw[0][peer].get("checksum")
        m["times"] = [t for r in rs for t in r["times"]]
        m["cpu_times"] = [t for r in rs for t in r["cpu_times"]]
        m["round_best"] = [min(r["times"]) for r in rs]
        m["peak_rss"] = max(r["peak_rss"] for r in rs)
        m["baseline_rss"] = min(r["baseline_rss"] for r in rs)
        m["other_loads"] = [r["other_load"] for r in rs]
        m["other_load"] = max(m["other_loads"])
        out[peer] = m
    return out


def per_round(results: dict, peer: str) -> str:
    """peer's best time ÷ firehose's best time, round by round (each round ran both within a
    few seconds, so these ratios see the same machine state)."""
    a, b = results[peer].get("round_best", []), results["firehose"].get("round_best", [])
    rs = [x / y for x, y in zip(a, b)]
    if peer == "firehose-2t":
        rs = [1 / r for r in rs]
    return "/".join(f"{r:.2f}" for r in rs) + "×" if rs else "?"


def checksums_agree(results: dict) -> tuple[bool, str]:
    keys = None
    bad = []
    ref = None
    for peer, r in results.items():
        ck = dict(r.get("checksum") or {})
        ck.pop("rows", None)
        if not ck:
            continue
        if ref is None:
            ref, keys = (peer, ck), sorted(ck)
            continue
        diff = [k for k in keys if ck.get(k) != ref[1].get(k)]
        if diff:
            bad.append(f"{peer} differs from {ref[0]} in {', '.join(diff)}")
    return (not bad), ("; ".join(bad) if bad else
                       "all peers' checksums of the projected columns agree")


def rss_section(r: dict) -> list[str]:
    s = r["rss_samples"]
    base = r["baseline_rss"]
    n = len(s)
    first = max(x[1] for x in s[: max(1, n // 10)])
    last = max(x[1] for x in s[-max(1, n // 10):])
    peak_run = max(x[1] for x in s)
    L = [f"Streaming `{r['input_name']}` (all 37 columns built, no projection; "
         f"{r['bytes'] / 1e6:,.0f} MB decompressed, "
         f"{r['compressed_bytes'] / 1e6:,.0f} MB gz, {n} chunks of 4 MiB, "
         f"{r['rows']:,} tweets) in {r['seconds']:.1f} s: baseline (interpreter + imports) "
         f"{fmt_mb(base)}; current RSS after the first 10% of chunks ≤ {fmt_mb(first)}, "
         f"after the last 10% ≤ {fmt_mb(last)}; peak RSS (VmHWM) {fmt_mb(r['peak_rss'])}, "
         f"i.e. {fmt_mb(r['peak_rss'] - base)} above baseline "
         f"({'met' if r['peak_rss'] - base <= 150e6 else 'NOT met'}: target ≤ 150 MB). "
         f"Dedupe tables at the end: {r['dedupe_memory'][0]:,} ids in "
         f"{fmt_mb(r['dedupe_memory'][1])}.", ""]
    L.append("| decompressed MB read | RSS (MiB) |")
    L.append("|---:|---:|")
    step = max(1, n // 10)
    for i in list(range(0, n, step)) + ([n - 1] if (n - 1) % step else []):
        L.append(f"| {s[i][0] / 1e6:,.0f} | {s[i][1] / 2**20:,.0f} |")
    _ = peak_run
    return L


# ------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=300, help="input size, MB decompressed")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds over all peers (a fresh process per peer per round)")
    ap.add_argument("--reps", type=int, default=2, help="timed runs per process")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of: "
                    + ", ".join(PEERS))
    ap.add_argument("--rss-mb", type=float, default=600,
                    help="size of the .gz capture streamed for the RSS curve (0: skip)")
    ap.add_argument("--wait-quiet", type=float, default=120,
                    help="before each round, wait up to this many seconds for other processes "
                         "to stop using the CPU (0: don't wait)")
    ap.add_argument("--max-other-load", type=float, default=0.3,
                    help="rounds in which other processes used more CPU cores than this are "
                         "left out of the report, if any round stayed below it")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="don't measure: print the report of a saved run (its .json)")
    a = ap.parse_args(argv)
    if a.render:
        return render(json.loads(a.render.read_text()), a.max_other_load, a.out)

    peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    unknown = set(peers) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers: {', '.join(sorted(unknown))}")
    snap = snapshot_package()
    print(f"measuring the build copied to {snap}", flush=True)
    path = _inputs.capture(a.mb)
    size = path.stat().st_size
    mach = machine()
    build = build_info()
    print(f"machine: {mach}", flush=True)
    print(f"build: {build}", flush=True)
    print(f"input: {path} ({size / 1e6:,.0f} MB)", flush=True)
    ref = reference_check(path)
    print(f"core vs reference: {ref}", flush=True)

    # Interleaved: round after round, each peer once per round in a fresh process, so a burst
    # of load from elsewhere hits all peers alike rather than one of them.
    raw: list[dict[str, dict]] = []           # per round: peer -> child result
    for rnd in range(a.rounds):
        if a.wait_quiet:
            wait_quiet(a.wait_quiet)
        print(f"round {rnd + 1}/{a.rounds}", flush=True)
        raw.append({})
        for peer in peers:
            r = run_child(peer, path, a.reps, extra=() if rnd == 0 else ["--no-checksum"])
            raw[-1][peer] = r
            print(f"  {peer:>13}: {', '.join(f'{t:.2f}' for t in r['times'])} s "
                  f"(cpu {', '.join(f'{t:.2f}' for t in r['cpu_times'])}) "
                  f"{size / 1e6 / min(r['times']):7.1f} MB/s  peak RSS "
                  f"+{(r['peak_rss'] - r['baseline_rss']) / 2**20:,.0f} MiB  "
                  f"other load {r['other_load']:.2f}", flush=True)
    meta = {"date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": mach, "build": build, "input_name": path.name, "input_bytes": size,
            "reps": a.reps, "rounds": a.rounds, "peers": peers}

    rss = None
    if a.rss_mb and "firehose" in peers:
        gz = _inputs.capture(a.rss_mb, compression="gz")
        if a.wait_quiet:
            wait_quiet(a.wait_quiet)
        rss = run_child("firehose", gz, 1, extra=["--sample-rss"])
        rss["input_name"] = gz.name
        rss["compressed_bytes"] = gz.stat().st_size

    saved = {"meta": meta, "rounds": raw, "rss": rss, "reference_check": ref}
    out = a.out or (_inputs.cache_dir() / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(saved, indent=1))
    return render(saved, a.max_other_load, out)


def render(saved: dict, max_other_load: float, out: Path | None) -> int:
    """The markdown report of a run (also from its saved JSON: ``--render``)."""
    meta, raw, rss, ref = saved["meta"], saved["rounds"], saved["rss"], saved["reference_check"]
    peers = meta["peers"]
    # Rounds during which other processes kept the CPU busy are left out when quiet ones exist.
    load = [max(r["other_load"] for r in rd.values()) for rd in raw]
    quiet = [i for i, x in enumerate(load) if x <= max_other_load]
    used = quiet or list(range(len(raw)))
    print(f"other load per round: {', '.join(f'{x:.2f}' for x in load)}; using rounds "
          f"{', '.join(str(i + 1) for i in used)}"
          + ("" if quiet else " (none was quiet)"), flush=True)
    results = merge_rounds(raw, used, peers)
    ck_ok, ck_msg = checksums_agree(results)
    first = next((r["checksum"] for r in results.values() if r.get("checksum")), {})
    rows = next((r["checksum"]["rows"] for r in results.values()
                 if (r.get("checksum") or {}).get("rows")), None)
    meta = dict(meta, lines=rows or 0, tweets=first.get("tweets", 0),
                used_rounds=[i + 1 for i in used], max_other_load=max_other_load,
                quiet_found=bool(quiet))

    text = ["## Peers", "", report(results, meta), "",
            f"Checksums: {ck_msg}.", f"Core vs reference (`_reference.py`): {ref}.", "",
            "## Targets", ""] + [f"* {t}" for t in targets(results)]
    text += ["", "## Every round", ""] + rounds_table(raw, peers, meta)
    if rss:
        text += ["", "## Peak RSS while streaming a large .gz capture", ""] + rss_section(rss)
    out_md = "\n".join(text) + "\n"
    print()
    print(out_md)
    if out is not None:
        out.write_text(out_md)
        print(f"written: {out} (+ .json)")
    return 0 if ck_ok else 1


def rounds_table(raw: list[dict], peers: list[str], meta: dict) -> list[str]:
    """Best wall / CPU seconds of each peer in each round, with the other load meanwhile."""
    n = len(raw)
    L = ["Best wall seconds / CPU seconds of each process, and the CPU cores other processes "
         "used meanwhile (*L*). The spread between quiet rounds (L ≈ 0) is this VM's own "
         "noise.", "",
         "| peer | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |",
         "|---|" + "---:|" * n]
    for p in peers:
        cells = [f"{min(rd[p]['times']):.2f} / {min(rd[p]['cpu_times']):.2f} "
                 f"(L {rd[p]['other_load']:.1f})" for rd in raw]
        L.append(f"| {p} | " + " | ".join(cells) + " |")
    if "firehose" in peers:
        for p in peers:
            if p == "firehose":
                continue
            rs = [min(rd[p]["times"]) / min(rd["firehose"]["times"]) for rd in raw]
            if p == "firehose-2t":
                rs = [1 / r for r in rs]
            L.append(f"| *{'speedup' if p == 'firehose-2t' else 'ratio'} {p}* | "
                     + " | ".join(f"{r:.2f}×" for r in rs) + " |")
    return L


if __name__ == "__main__":
    sys.exit(main())
