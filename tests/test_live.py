"""Live ingestion from NATS JetStream (firehose.live, ``firehose consume``).

Every test talks to its own nats-server (127.0.0.1, a free port, a temporary store) started
here and stopped at the end. Without the ``nats-server`` binary or the ``nats`` package the
tests are skipped, and the short test summary says so ("SKIPPED ... live ingestion tests
SKIPPED: ..."; pyproject's addopts has -ra): .ci/run installs the server, but only warns when
it cannot (no apt, no network), so a CI log without that line ran them."""
from __future__ import annotations

import asyncio
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import firehose.config as fconfig
from firehose.checkpoint import Checkpoint
from firehose.pipeline import Pipeline
from firehose.testing import generate

try:
    import nats
except ImportError:
    nats = None
NATS_SERVER = (shutil.which("nats-server")
               or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin:/sbin"))
SKIP_REASON = (
    "live ingestion tests SKIPPED: nats-py is not installed (pip install 'firehose[live]')"
    if nats is None else
    "live ingestion tests SKIPPED: nats-server is not installed (apt-get install nats-server;"
    " .ci/run tries to and warns when it cannot)" if NATS_SERVER is None else None)
if SKIP_REASON:         # listed in the short test summary (pyproject's addopts has -ra)
    pytest.skip(SKIP_REASON, allow_module_level=True)

from firehose.errors import SinkError, StateError  # noqa: E402
from firehose.live import Consumer, _row_messages, publish_lines  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "clients.toml")
N = 6000
SRC = os.path.join(os.path.dirname(__file__), os.pardir, "src")
COUNTERS = ("decode.lines", "decode.tweets", "decode.duplicates", "decode.rejects",
            "decode.blank", "route.in", "route.matched", "entitle.in", "entitle.delivered",
            "entitle.denied")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("nats-store")
    port = _free_port()
    proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js",
                             "-sd", str(store)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nats-server did not start (exit {proc.poll()})")
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def lines():
    # no compliance events: which deletes deny in-batch and which are forwarded depends on
    # where batches are cut, and live batches depend on fetch timing (see docs)
    return list(generate(N, seed=11, dup_rate=0.03, malformed_rate=0.003, compliance_rate=0.0))


@pytest.fixture(scope="module")
def config():
    return fconfig.load(EXAMPLE)


@pytest.fixture(scope="module")
def replay(lines, config, tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    cap = str(d / "cap.ndjson")
    with open(cap, "wb") as f:
        f.write(b"".join(lines))
    out = str(d / "out")
    report = Pipeline(config, out_dir=out, batch_bytes=256 << 10).run([cap])
    return out, report


def _run(coro):
    return asyncio.run(coro)


async def _with_js(url, fn):
    nc = await nats.connect(url)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def _make_stream(url, name, lines, seed=0, max_lines=12):
    """A stream ``name`` holding ``lines`` in messages of 1..max_lines whole lines."""
    rng = random.Random(seed)

    async def go(js):
        await js.add_stream(name=name, subjects=[f"in.{name}"])
        i = n = 0
        while i < len(lines):
            k = rng.randint(1, max_lines)
            n += await publish_lines(js, f"in.{name}", lines[i:i + k], lines_per_message=k)
            i += k
        return n
    return _run(_with_js(url, go))


def _read_client(directory):
    tables = []
    for f in sorted(glob.glob(os.path.join(directory, "part-*"))):
        if f.endswith(".parquet"):
            tables.append(pq.read_table(f))
        elif f.endswith(".arrows"):
            tables.append(ipc.open_stream(f).read_all())
        elif f.endswith(".ndjson"):
            with open(f, "rb") as fh:
                rows = [json.loads(x) for x in fh if x.strip()]
            tables.append(pa.table({"id": pa.array([r["id"] for r in rows], pa.int64()),
                                    "line": pa.array([r.get("line") for r in rows],
                                                     pa.int64())}))
    return [r for t in tables for r in zip(t.column("id").to_pylist(),
                                           t.column("line").to_pylist())]


def _delivered(out, clients=("newsroom", "trading-desk", "news-alerts", "frontco")):
    """{client: [(tweet id, line)]} from the client files, in file order."""
    return {c: _read_client(os.path.join(out, "clients", c)) for c in clients}


def _audit(out):
    parts = sorted(glob.glob(os.path.join(out, "audit", "audit", "part-*")))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None


def _assert_same_as_replay(out, replay_out, counters):
    got, want = _delivered(out), _delivered(replay_out)
    for client in want:
        ids = [i for i, _ in got[client]]
        assert len(ids) == len(set(ids)), f"{client}: a tweet delivered twice"
        assert sorted(got[client]) == sorted(want[client]), client
    ck = Checkpoint.load(out)
    for k in COUNTERS:
        assert ck.counters.get(k, 0) == counters.get(k, 0), k
    audit = _audit(out)
    for client in want:
        a = audit.filter(pc.equal(audit.column("client"), client))
        rows = lambda o: pc.sum(a.filter(pc.equal(a.column("outcome"), o)).column("rows")  # noqa
                                ).as_py() or 0
        assert rows("matched") == rows("delivered") + rows("denied")
        assert rows("delivered") == len(want[client])


def _consume_in_process(url, stream, out, **kw):
    kw.setdefault("drain", True)
    kw.setdefault("log", lambda m: None)
    c = Consumer(url, stream, kw.pop("config_path", EXAMPLE), out, **kw)
    return c, _run(c.run())


def _cli(*args):
    return [sys.executable, "-m", "firehose.cli", "consume", *args]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ------------------------------------------------------------------------------ the tests

def test_consume_equals_a_replay_of_the_same_lines(server, lines, replay, tmp_path):
    n = _make_stream(server, "EQ", lines, seed=1)
    out = str(tmp_path / "out")
    c, report = _consume_in_process(server, "EQ", out, batch=32)
    assert report.messages == n and report.stream_seq == n and report.skipped == 0
    _assert_same_as_replay(out, replay[0], replay[1].counters)
    assert 0 < c.max_held <= 32
    # the same rows, line for line: positions continue across messages as in the capture
    assert report.latencies and all(x >= 0 for x in report.latencies)


def test_redelivered_messages_are_absorbed(server, lines, replay, tmp_path):
    """A consumer that re-delivers everything (reset behind the checkpoint) changes nothing:
    every message is acknowledged as already committed."""
    n = _make_stream(server, "REDO", lines, seed=2)
    out = str(tmp_path / "out")
    _consume_in_process(server, "REDO", out, batch=64)
    files = sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out)
                   for f in fs)

    async def reset(js):         # the durable consumer, back at the first message, idle
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        info = await js.consumer_info("REDO", "firehose")
        await js.delete_consumer("REDO", "firehose")
        await js.add_consumer("REDO", ConsumerConfig(
            durable_name="firehose", ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, ack_wait=info.config.ack_wait,
            max_ack_pending=info.config.max_ack_pending, max_waiting=64))
    _run(_with_js(server, reset))
    _, report = _consume_in_process(server, "REDO", out, batch=64)
    assert report.skipped == n and report.messages == 0
    assert files == sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out)
                           for f in fs)
    _assert_same_as_replay(out, replay[0], replay[1].counters)

    # the publisher sending lines twice (a retry): the decoder's dedupe absorbs them
    _run(_with_js(server, lambda js: publish_lines(js, "in.REDO", lines[:500],
                                                   lines_per_message=5)))
    _, report = _consume_in_process(server, "REDO", out, batch=64)
    assert report.messages == 100
    got, want = _delivered(out), _delivered(replay[0])
    for client in want:
        assert sorted(got[client]) == sorted(want[client]), client
    ck = Checkpoint.load(out).counters
    assert ck["decode.lines"] == replay[1].get("decode.lines") + 500
    assert ck["entitle.delivered"] == replay[1].get("entitle.delivered")


def test_kill_9_at_random_points_then_restart_gives_the_uninterrupted_rows(
        server, lines, replay, tmp_path):
    """Each kill lands while the consumer is part-way through the stream (its checkpoint
    strictly between 0 and the end: it has committed and has more to do), at points drawn
    from a fixed seed; then a run to the end."""
    n = _make_stream(server, "KILL", lines, seed=3)
    out = str(tmp_path / "out")
    seed = int(os.environ.get("FIREHOSE_TEST_SEED", 7))
    rng = random.Random(seed)
    # kill once the checkpoint has passed these sequences (the last well before the end)
    targets = sorted(rng.sample(range(1, int(n * 0.7)), 4))
    args = _cli(server, "--stream", "KILL", "-c", EXAMPLE, "-o", out, "--drain",
                "--batch", "16", "-q")

    def committed():
        try:
            ck = Checkpoint.load(out)
        except Exception:  # noqa: BLE001 - read while being replaced: look again
            return None
        return None if ck is None else int(ck.extra.get("stream_seq", 0))

    kills = 0
    err = tmp_path / "stderr.txt"
    for target in targets + [None]:
        with open(err, "wb") as fe:
            p = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=fe)
        try:
            if target is not None:
                deadline = time.monotonic() + 60
                while p.poll() is None and time.monotonic() < deadline:
                    seq = committed()
                    if seq is not None and target <= seq < n:
                        time.sleep(rng.uniform(0, 0.05))     # into the next batch or so
                        break
                    time.sleep(0.01)
                else:
                    if p.poll() is None:
                        pytest.fail(f"seed {seed}: the checkpoint never passed {target}")
                if p.poll() is None and (committed() or 0) < n:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    kills += 1
                    continue
            p.wait(120)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 0, f"seed {seed}: exit {p.returncode}: {err.read_text()}"
        break
    assert p.returncode == 0, f"seed {seed}: the consumer never finished"
    assert kills == len(targets), f"seed {seed}: only {kills} run(s) killed part-way"
    ck = Checkpoint.load(out)
    assert ck.extra["stream_seq"] == n
    _assert_same_as_replay(out, replay[0], replay[1].counters)


def _read_out_stream(url, stream):
    async def go(js):
        info = await js.stream_info(stream)
        got = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            m = await js.get_msg(stream, seq)
            got.append((m.subject, m.headers or {}, m.data))
        return got
    return _run(_with_js(url, go))


def test_publish_sends_each_row_once_across_kills(server, lines, replay, tmp_path):
    n = _make_stream(server, "PUB", lines[:3000], seed=4)
    out = str(tmp_path / "out")
    args = _cli(server, "--stream", "PUB", "-c", EXAMPLE, "-o", out, "--drain", "--batch", "8",
                "--publish", "--out-prefix", "pub.out", "--out-stream", "PUB_OUT", "-q")
    rng = random.Random(int(os.environ.get("FIREHOSE_TEST_SEED", 5)))
    for attempt in range(4):
        p = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            p.wait(rng.uniform(1.2, 2.5) if attempt < 2 else 120)
        except subprocess.TimeoutExpired:
            p.kill()
        p.wait()
        if p.returncode == 0:
            break
    assert p.returncode == 0
    msgs = _read_out_stream(server, "PUB_OUT")
    got: dict[str, list[int]] = {}
    for subject, headers, data in msgs:
        client = subject.split(".")[-1]
        row = json.loads(data)
        assert headers["Nats-Msg-Id"] == f"{client}:{row['id']}"
        assert headers["Firehose-Plan-Version"] == "1"
        got.setdefault(client, []).append(row["id"])
    # the reference: a replay of the same 3000 lines
    cap = str(tmp_path / "cap.ndjson")
    with open(cap, "wb") as f:
        f.write(b"".join(lines[:3000]))
    ref = str(tmp_path / "ref")
    Pipeline(fconfig.load(EXAMPLE), out_dir=ref).run([cap])
    want = _delivered(ref)
    for client, rows in want.items():
        ids = got.get(client, [])
        assert len(ids) == len(set(ids)), f"{client}: a row published twice"
        assert sorted(ids) == sorted(i for i, _ in rows), client
    # no client files in publish mode; the audit and the checkpoint are there
    assert not glob.glob(os.path.join(out, "clients", "*", "part-*"))
    assert Checkpoint.load(out).extra["stream_seq"] == n and _audit(out) is not None


def test_rows_over_max_payload_are_split():
    t = pa.table({"id": pa.array([1, 2], pa.int64()), "text": ["short", "x" * 5000]})
    msgs = list(_row_messages("c", t, None, 1024))
    assert [m[0] for m in msgs[:2]] == ["c:1", "c:2:1"]
    assert all(len(p) <= 1024 for _, p, _ in msgs)
    assert msgs[1][2] == f"1/{len(msgs) - 1}"
    whole = b"".join(p for _, p, _ in msgs[1:])
    assert json.loads(whole) == {"id": 2, "text": "x" * 5000}


def _edited_config(tmp_path, name, newsroom_rules):
    with open(EXAMPLE, encoding="utf-8") as f:
        text = f.read()
    start = text.index("rules = [", text.index("[clients.newsroom]"))
    end = text.index("]\n\n", start) + 2
    path = str(tmp_path / name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[:start] + "rules = [\n" + newsroom_rules + "\n]\n" + text[end:])
    return path


def _reload_setup(server, lines, tmp_path, stream):
    """A copy of the example configuration to rewrite, a stream holding the first half of the
    lines (10 a message), and a publisher for the rest: (config path, half, publish, count)."""
    cfg_path = str(tmp_path / "clients.toml")
    shutil.copy(EXAMPLE, cfg_path)
    half = len(lines) // 2
    _run(_with_js(server, lambda js: js.add_stream(name=stream, subjects=[f"in.{stream}"])))

    def pub(part):
        return _run(_with_js(server, lambda js: publish_lines(
            js, f"in.{stream}", part, lines_per_message=10)))
    return cfg_path, half, pub, pub(lines[:half])


def test_config_reload_takes_effect_at_a_batch_boundary(server, lines, tmp_path):
    cfg_path, half, pub, n1 = _reload_setup(server, lines, tmp_path, "RELOAD")
    out = str(tmp_path / "out")
    c = Consumer(server, "RELOAD", cfg_path, out, batch=50, reload_check=0.05,
                 log=lambda m: None)
    box = {}
    th = threading.Thread(target=lambda: box.update(r=_run(c.run())))
    th.start()
    try:
        deadline = time.monotonic() + 60
        while c._committed < n1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c._committed == n1
        new_rules = '    { id = "only-world", value = "#Ukraine OR #WorldCup", tag = "world" },'
        edited = _edited_config(tmp_path, "v2.toml", new_rules)
        os.replace(edited, cfg_path)
        while c.report.reloads < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.report.reloads == 1
        n2 = pub(lines[half:])
        while c._committed < n1 + n2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        c.stop()
        th.join(60)
    assert box["r"].plan_version == 2
    ledger = pa.concat_tables([pq.read_table(p) for p in
                               sorted(glob.glob(os.path.join(out, "audit", "ledger", "part-*")))])
    news = ledger.filter(pc.equal(ledger.column("client"), "newsroom"))
    v = news.column("plan_version").to_pylist()
    assert set(v) == {1, 2} and v == sorted(v)          # the switch is between batches
    # after the switch newsroom gets only what its new rule matches
    rows = pa.concat_tables([pq.read_table(p) for p in sorted(glob.glob(
        os.path.join(out, "clients", "newsroom", "part-*")))])
    v2_ids = set(news.filter(pc.equal(news.column("plan_version"), 2))
                 .column("tweet_id").to_pylist())
    later = rows.filter(pc.is_in(rows.column("id"), pa.array(sorted(v2_ids), pa.int64())))
    assert later.num_rows == len(v2_ids) > 0
    assert {r["id"] for rl in later.column("matching_rules").to_pylist() for r in rl} \
        == {"only-world"}
    assert min(later.column("line").to_pylist()) >= half      # lines of the 2nd half
    plans = pq.read_table(os.path.join(out, "audit", "plans.parquet"))
    assert sorted(set(plans.column("plan_version").to_pylist())) == [1, 2]
    audit = _audit(out)
    assert set(audit.column("plan_version").to_pylist()) == {1, 2}

    # a restart with a file edited while the consumer was down: the checkpoint's
    # configuration (kept in OUT/live/configs) resumes, the new one takes over as version 3
    edited = _edited_config(tmp_path, "v3.toml",
                            '    { id = "breaking", value = "breaking news", tag = "b" },')
    os.replace(edited, cfg_path)
    _run(_with_js(server, lambda js: publish_lines(js, "in.RELOAD", lines[:50],
                                                   lines_per_message=10)))
    c3 = Consumer(server, "RELOAD", cfg_path, out, batch=50, drain=True, log=lambda m: None)
    r3 = _run(c3.run())
    assert r3.plan_version == 3 and r3.reloads == 1 and r3.messages == 5


def test_unreachable_broker_is_one_line_and_exit_2(tmp_path):
    port = _free_port()
    p = subprocess.run(_cli(f"nats://127.0.0.1:{port}", "--stream", "FIREHOSE", "-c", EXAMPLE,
                            "-o", str(tmp_path / "out")), env=_env(), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("firehose consume: cannot connect to nats://")


def test_missing_stream_is_exit_2(server, tmp_path):
    p = subprocess.run(_cli(server, "--stream", "NOPE", "-c", EXAMPLE, "-o",
                            str(tmp_path / "out")), env=_env(), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip() == f"firehose consume: {server}: no stream 'NOPE'"


# ------------------------------------------------------------------------------ review mends

def _published_ids(url, stream):
    """{client: [tweet id from Nats-Msg-Id]} and the payloads, from the output stream."""
    got: dict[str, list[int]] = {}
    payloads: dict[str, list[dict]] = {}
    for subject, headers, data in _read_out_stream(url, stream):
        client = subject.split(".")[-1]
        key = headers["Nats-Msg-Id"]
        assert key.startswith(client + ":"), key
        got.setdefault(client, []).append(int(key[len(client) + 1:]))
        payloads.setdefault(client, []).append(json.loads(data))
    return got, payloads


def _assert_published_as_replay(got, replay_out):
    for client, rows in _delivered(replay_out).items():
        ids = got.get(client, [])
        assert len(ids) == len(set(ids)), f"{client}: a row published twice"
        assert sorted(ids) == sorted(i for i, _ in rows), client


def _wait(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_rejected_reload_under_publish_keeps_publishing_every_row(
        server, lines, replay, tmp_path):
    """A configuration that loads but cannot make a pipeline (two sources, none named) is
    rejected; the running pipeline's rows must still be published, every one of them."""
    cfg_path, half, pub, n1 = _reload_setup(server, lines, tmp_path, "REJ")
    out = str(tmp_path / "out")
    notes: list[str] = []
    c = Consumer(server, "REJ", cfg_path, out, publish=True, out_prefix="rej.out",
                 out_stream="REJ_OUT", batch=50, reload_check=0.05, log=notes.append)
    box = {}
    th = threading.Thread(target=lambda: box.update(r=_run(c.run())))
    th.start()
    try:
        _wait(lambda: c._committed >= n1 or not th.is_alive(), "the first half")
        with open(EXAMPLE, encoding="utf-8") as f:
            text = f.read()
        bad = str(tmp_path / "bad.toml")
        with open(bad, "w", encoding="utf-8") as f:
            f.write(text + '\n[sources.other]\nlicence = "x-enterprise"\n')
        os.replace(bad, cfg_path)
        _wait(lambda: any("not reloaded" in m for m in notes) or not th.is_alive(),
              "the rejection")
        n2 = pub(lines[half:])
        _wait(lambda: c._committed >= n1 + n2 or not th.is_alive(), "the second half")
    finally:
        c.stop()
        th.join(60)
    r = box["r"]
    assert r.reloads == 0 and r.plan_version == 1 and r.stream_seq == n1 + n2
    assert not any(s.pending for s in c._pub_sinks.values())
    got, _ = _published_ids(server, "REJ_OUT")
    _assert_published_as_replay(got, replay[0])


def test_published_ids_are_tweet_ids_when_the_plan_projects_no_id(
        server, lines, replay, tmp_path):
    """trading-desk granted only its entities: rows without ``id`` (and often equal to each
    other) still go out as ``<client>:<tweet id>``, each tweet its own message."""
    cfg_path = str(tmp_path / "noid.toml")
    with open(EXAMPLE, encoding="utf-8") as f:
        text = f.read()
    old = 'field_groups = ["core", "entities", "author_profile"] }]'
    assert text.count(old) == 1
    with open(cfg_path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, 'field_groups = ["entities"] }]'))
    _make_stream(server, "NOID", lines, seed=8)
    out = str(tmp_path / "out")
    _consume_in_process(server, "NOID", out, config_path=cfg_path, batch=64, publish=True,
                        out_prefix="noid.out", out_stream="NOID_OUT")
    got, payloads = _published_ids(server, "NOID_OUT")
    assert payloads["trading-desk"] and not any("id" in p for p in payloads["trading-desk"])
    rows = [json.dumps(p, sort_keys=True) for p in payloads["trading-desk"]]
    assert len(set(rows)) < len(rows)            # equal projections of distinct tweets
    _assert_published_as_replay(got, replay[0])
    # the message id never comes from the row's contents
    t = pa.table({"hashtags": [["#a"], ["#a"]]})
    with pytest.raises(SinkError):
        list(_row_messages("c", t, None, 1024))
    assert [k for k, _, _ in _row_messages("c", t, None, 1024, ids=[7, 9])] == ["c:7", "c:9"]


_TIMEOUT_DRIVER = r"""
import sys
import nats.errors
from nats.js.manager import JetStreamManager
original = JetStreamManager.consumer_info
calls = [0]
fail_at = int(sys.argv[1])

async def consumer_info(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] >= fail_at:
        raise nats.errors.TimeoutError
    return await original(self, *args, **kwargs)

JetStreamManager.consumer_info = consumer_info
from firehose.cli import main
main(args=["consume", *sys.argv[2:]], prog_name="firehose")
"""


@pytest.mark.parametrize("fail_at,code", [(1, 2), (2, 3)], ids=["at-start", "mid-run"])
def test_a_broker_timeout_is_a_broker_error_not_a_config_error(server, lines, tmp_path,
                                                                fail_at, code):
    """nats' TimeoutError is an OSError: it must not be reported as the config file's.
    At start (seating the consumer) it is exit 2, once running (the drain check) exit 3."""
    _make_stream(server, f"TMO{fail_at}", lines[:200], seed=9)
    out = str(tmp_path / "out")
    p = subprocess.run([sys.executable, "-c", _TIMEOUT_DRIVER, str(fail_at), server,
                        "--stream", f"TMO{fail_at}", "-c", EXAMPLE, "-o", out, "--drain", "-q"],
                       env=_env(), capture_output=True, text=True, timeout=60)
    err = p.stderr.strip().splitlines()
    assert p.returncode == code, p.stderr
    assert len(err) == 1 and err[0].startswith(f"firehose consume: {server}: "), err
    assert "timeout" in err[0] and "clients.toml" not in err[0]
    if fail_at == 2:            # it had consumed and committed the stream
        assert Checkpoint.load(out).extra["stream_seq"] > 0


def test_a_lost_puback_is_a_sink_error_not_a_hang(server, lines, tmp_path):
    """The output stream exists but does not capture the subjects, and something else
    listens there without answering: no PubAck ever comes. Exit 3 after the PubAck wait,
    nothing committed or acknowledged."""
    _make_stream(server, "LOST", lines[:300], seed=10)
    out = str(tmp_path / "out")
    args = _cli(server, "--stream", "LOST", "-c", EXAMPLE, "-o", out, "--drain", "--publish",
                "--out-prefix", "lost.out", "--out-stream", "LOST_OUT", "--ack-wait", "1", "-q")

    async def go():
        nc = await nats.connect(server)
        try:
            js = nc.jetstream()
            await js.add_stream(name="LOST_OUT", subjects=["lost.elsewhere.>"])

            async def silent(msg):
                pass
            await nc.subscribe("lost.out.>", cb=silent)
            await nc.flush()
            p = await asyncio.create_subprocess_exec(*args, env=_env(),
                                                     stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.PIPE)
            try:
                _, err = await asyncio.wait_for(p.communicate(), 60)
            except asyncio.TimeoutError:
                p.kill()
                await p.wait()
                pytest.fail("the consumer hung waiting for a PubAck")
            info = await js.consumer_info("LOST", "firehose")
            return p.returncode, err.decode(), info
        finally:
            await nc.close()
    code, err, info = _run(go())
    assert code == 3, err
    assert err.strip().splitlines() == [
        "firehose consume: publishing to lost.out.*: no PubAck from the output stream "
        "within 5 s"]
    assert (info.ack_floor.stream_seq or 0) == 0          # nothing acknowledged
    ck = Checkpoint.load(out)
    assert ck is None or ck.extra.get("stream_seq", 0) == 0


def test_a_stream_recreated_behind_the_checkpoint_is_refused(server, lines, tmp_path):
    n = _make_stream(server, "AGAIN", lines[:300], seed=12)
    out = str(tmp_path / "out")
    _consume_in_process(server, "AGAIN", out, batch=64)
    assert Checkpoint.load(out).extra["stream_seq"] == n

    def recreate(part):
        async def go(js):
            await js.delete_stream("AGAIN")
            await js.add_stream(name="AGAIN", subjects=["in.AGAIN"])
            return await publish_lines(js, "in.AGAIN", part, lines_per_message=1)
        return _run(_with_js(server, go))

    # deleted and re-created: it now ends before the checkpoint's sequence
    assert recreate(lines[:20]) < n
    p = subprocess.run(_cli(server, "--stream", "AGAIN", "-c", EXAMPLE, "-o", out, "--drain",
                            "-q"), env=_env(), capture_output=True, text=True, timeout=60)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1, p.stderr
    assert "re-created" in err[0] and f"sequence {n:,}" in err[0]
    # re-created again, longer than the checkpoint: its creation time gives it away
    assert recreate(lines[:400]) > n
    with pytest.raises(StateError, match="re-created"):
        _consume_in_process(server, "AGAIN", out, batch=64)
    assert Checkpoint.load(out).extra["stream_seq"] == n
