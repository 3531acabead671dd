"""The distributed replay (firehose.dist, issue 6): the core's partition key, the single-machine
path without Dask, the in-process reference against the pipeline, a two-process local cluster
against the reference (byte for byte), rules compiled once per worker, workers killed mid-run,
and the command line. Every cluster is started here on 127.0.0.1 and stopped here."""
from __future__ import annotations

import glob
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import xxhash

import firehose.config as fconfig
from firehose import dist
from firehose.pipeline import Pipeline
from firehose.testing import write_capture

try:
    from corpus import output_tree, read_parts
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import output_tree, read_parts

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "clients.toml")
KW = dict(partitions=4, segment_bytes=1_500_000)


def _config(tmp_path, tight_caps=False, raw=False) -> fconfig.Config:
    with open(EXAMPLE) as f:
        text = f.read()
    if tight_caps:
        text = text.replace("post_ids_per_group_per_30d = 1_500_000",
                            "post_ids_per_group_per_30d = 90")
        text = text.replace("objects_per_recipient_per_day = 50_000",
                            "objects_per_recipient_per_day = 25")
    if raw:     # newsroom gets the original payloads (ndjson + raw_json)
        text = text.replace('"author_profile", "geo_place"] }]',
                            '"author_profile", "geo_place", "raw_json"] }]')
        text = text.replace('sink = { kind = "parquet", path = "out/newsroom" }',
                            'sink = { kind = "ndjson", path = "out/newsroom.ndjson" }')
    path = tmp_path / f"clients-{int(tight_caps)}{int(raw)}.toml"
    path.write_text(text)
    return fconfig.load(str(path))


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist-cap")
    gz, plain = str(d / "a.ndjson.gz"), str(d / "b.ndjson")
    write_capture(gz, 1500, seed=7, dup_rate=0.04, malformed_rate=0.004, compliance_rate=0.06)
    write_capture(plain, 2500, seed=8, dup_rate=0.04, malformed_rate=0.004, compliance_rate=0.06)
    # the same tweets again, later in the input: duplicates across inputs and partitions
    with open(plain, "rb") as f:
        head = f.read(300_000)
    again = str(d / "c.ndjson")
    with open(again, "wb") as f:
        f.write(head[:head.rfind(b"\n") + 1])
    return [gz, plain, again]


def _lines(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        return f.read().splitlines()


def _canonical(t: pa.Table | None, keys) -> pa.Table | None:
    if t is None:
        return None
    if "batch" in t.column_names:
        t = t.drop_columns(["batch"])
    for i, f in enumerate(t.schema):     # values, not how a writer laid a dictionary out
        if pa.types.is_dictionary(f.type):
            t = t.set_column(i, f.name, t.column(i).cast(f.type.value_type))
    return t.take(pc.sort_indices(t, [(k, "ascending") for k in keys]))


@pytest.fixture(scope="module")
def reference(captures, tmp_path_factory):
    """The single-machine reference: the same stages in this process, no Dask."""
    out = {}
    for tight, raw in ((False, False), (True, True)):
        d = tmp_path_factory.mktemp("ref")
        cfg = _config(d, tight, raw)
        o = str(d / "out")
        report = dist.replay(captures, cfg, None, o, scheduler="sync", **KW)
        out[(tight, raw)] = (cfg, o, report)
    return out


# ------------------------------------------------------------------------------ partition key

def test_partition_key_is_xxh3_of_the_ids_little_endian_bytes():
    rng = np.random.default_rng(6)
    ids = np.concatenate([rng.integers(-2**63, 2**63 - 1, 2000, dtype=np.int64),
                          np.array([0, 1, -1, 2**63 - 1, -2**63, 1_790_000_000_000_000_000],
                                   np.int64)])
    for n in (1, 2, 7, 16, 1000, 2**32 - 1):
        got = dist.partition_of(ids, n)
        want = [xxhash.xxh3_64_intdigest(struct.pack("<q", int(i))) % n for i in ids]
        assert got.dtype == np.uint32 and got.tolist() == want, n
    assert dist.partition_of(pa.array([5, None, 7], pa.int64()), 9).tolist() == [
        xxhash.xxh3_64_intdigest(struct.pack("<q", i)) % 9 for i in (5, -1, 7)]
    with pytest.raises(ValueError):
        dist.partition_of(ids, 0)


# ------------------------------------------------------------------------------ no Dask

def test_the_single_machine_path_never_imports_dask(captures, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import firehose, firehose.cli, firehose.pipeline, firehose.dist
        import firehose.config as fc
        from firehose.pipeline import Pipeline
        cfg = fc.load({EXAMPLE!r})
        Pipeline(cfg, out_dir={str(tmp_path / 'a')!r}).run([{captures[1]!r}])
        firehose.dist.replay([{captures[1]!r}], cfg, None, {str(tmp_path / 'b')!r},
                             scheduler="sync")
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        print(bad)
        sys.exit(1 if bad else 0)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------------------ the reference

@pytest.mark.parametrize("tight", [False, True], ids=["caps", "tight-caps-raw"])
def test_reference_equals_the_pipeline_when_the_input_is_one_batch(captures, tmp_path, tight):
    """With one input read as one batch, the pipeline's semantics are the distributed ones (all
    of the batch's compliance first, caps in tweet-id order): same rows (raw payloads too),
    denials, ledger, rejects (line numbers across segments) and counters."""
    cfg = _config(tmp_path, tight, raw=tight)
    a, b = str(tmp_path / "dist"), str(tmp_path / "pipe")
    r1 = dist.replay([captures[1]], cfg, None, a, scheduler="sync", **KW)
    r2 = Pipeline(cfg, out_dir=b, batch_bytes=1 << 30).run([captures[1]])
    assert r1.get("dist.segments") > 5
    for name in cfg.clients:
        if cfg.clients[name].sink.kind == "ndjson":      # the lines themselves, sorted
            x, y = (sorted(line for f in glob.glob(os.path.join(o, "clients", name, "part-*"))
                           for line in _lines(f)) for o in (a, b))
            assert x == y and x, name
            continue
        x = read_parts(os.path.join(a, "clients", name))
        y = read_parts(os.path.join(b, "clients", name))
        assert (x is None and y is None) or _canonical(x, ["id"]).equals(_canonical(y, ["id"])), \
            name
    for part in ("denials", "ledger"):
        x = read_parts(os.path.join(a, "audit", part))
        y = read_parts(os.path.join(b, "audit", part))
        assert _canonical(x, ["client", "tweet_id"]).equals(_canonical(y, ["client", "tweet_id"]))
    assert read_parts(os.path.join(a, "rejects")).equals(read_parts(os.path.join(b, "rejects")))
    if tight:
        assert r1.get("entitle.denied.cap_exceeded") > 0
    skip = {"batches", "dist.segments", "dist.partitions"}
    assert {k: v for k, v in r1.counters.items() if k not in skip} == \
        {k: v for k, v in r2.counters.items() if k not in skip}


def test_reference_semantics(reference, captures):
    cfg, out, report = reference[(True, True)]
    g = report.get
    assert g("decode.lines") == (g("decode.tweets") + g("decode.duplicates") + g("decode.rejects")
                                 + g("decode.blank") + g("decode.compliance"))
    assert g("route.in") == g("route.matched") + g("route.unmatched")
    assert g("entitle.in") == g("entitle.delivered") + g("entitle.denied")
    assert g("sink.rows") == g("entitle.delivered")
    assert g("entitle.denied.cap_exceeded") > 0 and g("decode.duplicates") > 0
    ledger = read_parts(os.path.join(out, "audit", "ledger"))
    # exact dedupe: no tweet delivered twice to a client, whichever input or partition
    for name in cfg.clients:
        ids = ledger.filter(pc.equal(ledger.column("client"), name)).column("tweet_id")
        assert len(ids) == len(pc.unique(ids))
    # every deleted tweet of the whole run is withheld, wherever the delete came
    from firehose import decode_file
    deleted = set()
    for p in captures:
        c = decode_file(p).compliance
        deleted |= set(c.filter(pc.equal(c.column("kind"), "delete")).column("tweet_id")
                       .to_pylist())
    assert deleted and not deleted & set(ledger.column("tweet_id").to_pylist())
    # caps in tweet-id order: a seat's delivered ids of a day are its first ids of that day
    raw = read_parts(os.path.join(out, "clients", "newsroom"))
    assert raw is not None and "matching_rules" in raw.column_names and "user" in \
        raw.column_names       # the original payload, with this seat's matching_rules
    # a forwarded event names a tweet that the client got
    for name in cfg.clients:
        fwd = read_parts(os.path.join(out, "clients", name, "compliance"))
        if fwd is not None:
            got = set(ledger.filter(pc.equal(ledger.column("client"), name))
                      .column("tweet_id").to_pylist())
            assert set(fwd.column("tweet_id").to_pylist()) <= got
    with open(os.path.join(out, "manifest.json")) as f:
        man = json.load(f)
    assert man["options"]["partitions"] == KW["partitions"]
    assert not os.path.exists(os.path.join(out, ".dist-staging"))


# ------------------------------------------------------------------------------ a real cluster

@pytest.fixture(scope="module")
def cluster():
    import psutil
    from distributed import Client, LocalCluster
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    cl = LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0")
    client = Client(cl)
    try:
        yield cl, client
    finally:
        client.close()
        cl.close()
        left = [p for p in me.children(recursive=True) if p.pid not in before
                and "resource_tracker" not in " ".join(p.cmdline())]   # multiprocessing's own
        gone, alive = psutil.wait_procs(left, timeout=10)
        survivors = []
        for p in alive:          # ours only: started by this LocalCluster
            if p.status() == psutil.STATUS_ZOMBIE:     # the worker killed in a test: reap it
                try:
                    os.waitpid(p.pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            else:
                survivors.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
                p.kill()         # clean up, then fail: a process outlived the cluster
        assert not survivors, f"cluster processes left running: {survivors}"


def test_two_workers_give_the_references_bytes_and_compile_rules_once_each(
        cluster, reference, captures, tmp_path):
    _, client = cluster
    for key, (cfg, ref_out, ref_report) in reference.items():
        out = str(tmp_path / f"out-{key}")
        report = dist.replay(captures, cfg, client, out, **KW)
        assert report.counters == ref_report.counters
        assert output_tree(out) == output_tree(ref_out), key
    counts = client.run(dist._compile_counts)
    assert len(counts) == 2
    for worker, by_config in counts.items():
        assert all(n == 1 for n in by_config.values()), (worker, by_config)
    assert {h for v in counts.values() for h in v} == {c.hash for c, _, _ in reference.values()}


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, reference, captures,
                                                               tmp_path):
    """Twice: a worker SIGKILLed from outside between stages (the decoded segments it held
    are lost and recomputed), and a worker that dies inside a write task after writing its
    staging files (the retry writes again; only the returned attempt's files are moved)."""
    _, client = cluster
    cfg, ref_out, ref_report = reference[(True, True)]
    ref = output_tree(ref_out)

    pids = list(client.run(os.getpid).values())
    killed = []

    def on_stage(name):
        if name == "route" and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    out = str(tmp_path / "killed-outside")
    report = dist.replay(captures, cfg, client, out, on_stage=on_stage, **KW)
    assert killed and report.counters == ref_report.counters
    assert output_tree(out) == ref
    client.wait_for_workers(2, timeout=60)

    marker = tmp_path / "die-once"
    marker.write_text("x")
    client.run(dist._arm_fault, "write", str(marker))
    out = str(tmp_path / "killed-inside")
    report = dist.replay(captures, cfg, client, out, **KW)
    assert not marker.exists()          # a worker did die in a write task
    assert report.counters == ref_report.counters
    assert output_tree(out) == ref
    client.run(dist._arm_fault, "write", "")
    client.wait_for_workers(2, timeout=60)


# ------------------------------------------------------------------------------ command line

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_unreachable_scheduler_is_a_one_line_error(captures, tmp_path):
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    old = tmp_path / "o" / "manifest.json"      # an earlier run's output, to be overwritten
    old.parent.mkdir()
    old.write_text("earlier run")
    r = subprocess.run([sys.executable, "-m", "firehose.cli", "replay", captures[1], "-c",
                        EXAMPLE, "-o", str(tmp_path / "o"), "--overwrite", "--scheduler",
                        f"tcp://127.0.0.1:{_free_port()}"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler" in lines[0], r.stderr
    assert old.read_text() == "earlier run"      # nothing touched before the cluster answered


def test_cli_workers_runs_a_local_cluster(captures, tmp_path):
    from click.testing import CliRunner

    from firehose.cli import main
    cfg = _config(tmp_path)
    ref = str(tmp_path / "ref")
    dist.replay(captures, cfg, None, ref)
    out = str(tmp_path / "o")
    res = CliRunner().invoke(main, ["replay", *captures, "-c", str(cfg.origin), "-o", out,
                                    "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "entitle" in res.output
    assert output_tree(out) == output_tree(ref)
    res = CliRunner().invoke(main, ["replay", *captures, "-c", str(cfg.origin), "-o", out,
                                    "--workers", "1", "--resume"])
    assert res.exit_code == 2 and "re-run it with --overwrite" in res.output


# ------------------------------------------------------------------------------ caps

def _caps_oracle(plans, source, rows):
    """rows: (id, day, client, partition); one by one as the pipeline's batch takes them:
    seat by seat in name order, each seat in tweet-id order, summing the group's 30 days
    each time."""
    day_n, group_n, over = {}, {}, set()
    for tid, day, client, p in sorted(rows, key=lambda r: (r[2], r[0])):
        pl = plans.plan(client, source)
        if pl.objects_per_day is not None and day_n.get((client, day), 0) >= pl.objects_per_day:
            over.add((p, client, tid))
            continue
        if pl.group_ids_per_30d is not None:
            used = sum(n for (g, d), n in group_n.items() if g == pl.group and day - 29 <= d <= day)
            if used >= pl.group_ids_per_30d:
                over.add((p, client, tid))
                continue
            group_n[(pl.group, day)] = group_n.get((pl.group, day), 0) + 1
        if pl.objects_per_day is not None:
            day_n[(client, day)] = day_n.get((client, day), 0) + 1
    return over


@pytest.mark.parametrize("seed", range(6))
def test_caps_follow_seat_then_tweet_id_order_across_partitions_of_a_group(seed):
    from firehose.entitlements import Plan, PlanSet
    rng = np.random.default_rng(seed)
    big = seed % 3 == 0            # then no cap binds: the fast path
    plans = PlanSet({
        ("a", "s"): Plan("a", "s", "lic", True, (), ("id",), (), ("US",), "full",
                         10**9 if big else 6, "g1", 10**9 if big else 40),
        ("b", "s"): Plan("b", "s", "lic", True, (), ("id",), (), ("US",), "full",
                         None, "g1", 10**9 if big else 35),
        ("c", "s"): Plan("c", "s", "lic", True, (), ("id",), (), ("US",), "full",
                         10**9 if big else 4, "c", None),
    }, 1, "h")
    nparts = 3
    cands = [{} for _ in range(nparts)]
    rows = []
    for client in ("a", "b", "c"):
        ids = rng.choice(10**6, 120, replace=False).astype(np.int64)
        days = (ids // 20_000 + rng.integers(0, 3, len(ids))).astype(np.int64)
        part = dist.partition_of(ids, nparts)
        for p in range(nparts):
            m = part == p
            cands[p][client] = (ids[m], days[m])
            rows += [(int(i), int(d), client, p) for i, d in zip(ids[m], days[m])]
    got = dist._decide_caps(plans, "s", cands)
    flat = {(p, c, int(i)) for p, d in enumerate(got) for c, ids in d.items() for i in ids}
    assert flat == _caps_oracle(plans, "s", rows)
    assert (not flat) == big
