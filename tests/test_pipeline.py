"""The replay pipeline end to end: what each client gets, the audit balance, determinism,
atomic outputs, resume after a crash at any commit step, and the embedding API."""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
import shutil
import sys
import textwrap

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import firehose.config as fconfig
from firehose import _reference_rules as ref_rules
from firehose import decode_file
from firehose.checkpoint import Checkpoint
from firehose.errors import InputError, SinkError, StateError
from firehose.pipeline import MANIFEST_NAME, Pipeline
from firehose.sinks import PartSink
from firehose.testing import write_capture

try:
    from corpus import output_tree, read_parts
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import output_tree, read_parts

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "clients.toml")
N = 3000
KW = dict(batch_bytes=1 << 20, commit_every=2)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    d = tmp_path_factory.mktemp("cap")
    path = str(d / "cap.ndjson.gz")
    write_capture(path, N, seed=7, dup_rate=0.03, malformed_rate=0.003, compliance_rate=0.05)
    return path


@pytest.fixture(scope="module")
def config():
    return fconfig.load(EXAMPLE)


@pytest.fixture(scope="module")
def run(capture, config, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "out")
    report = Pipeline(config, out_dir=out, **KW).run([capture])
    return out, report


def _read(path: str, mode: str = "rb"):
    with open(path, mode) as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


# ------------------------------------------------------------------------------ deliveries

def test_every_delivery_matches_the_clients_rules_per_the_oracle(run, capture, config):
    out, report = run
    decoded = decode_file(capture)
    tweets = decoded.tweets
    pos = {tid: i for i, tid in enumerate(tweets.column("id").to_pylist())}
    for name, client in config.clients.items():
        expected: dict[int, set] = {}
        for row, rid in ref_rules.match(list(client.rules), tweets):
            expected.setdefault(row, set()).add(rid)
        got = read_parts(os.path.join(out, "clients", name))
        denied = read_parts(os.path.join(out, "audit", "denials"))
        denied_ids = set(denied.filter(pc.equal(denied.column("client"), name))
                         .column("tweet_id").to_pylist())
        delivered_ids = set(got.column("id").to_pylist()) if got is not None else set()
        matched_ids = {tweets.column("id")[r].as_py() for r in expected}
        assert delivered_ids | denied_ids == matched_ids, name
        assert not delivered_ids & denied_ids, name
        if got is not None:
            for tid, rules in zip(got.column("id").to_pylist(),
                                  got.column("matching_rules").to_pylist()):
                assert {r["id"] for r in rules} == expected[pos[tid]], (name, tid)
        assert report.get(f"client.{name}.matched") == len(matched_ids)
        assert report.get(f"client.{name}.delivered") == len(delivered_ids)


def test_front_company_gets_nothing_and_every_denial_names_the_path(run):
    out, report = run
    assert read_parts(os.path.join(out, "clients", "frontco")) is None
    denied = read_parts(os.path.join(out, "audit", "denials"))
    front = denied.filter(pc.equal(denied.column("client"), "frontco"))
    assert front.num_rows == report.get("client.frontco.matched") > 0
    assert set(front.column("reason").to_pylist()) == {"prohibited_category"}
    # dictionary columns in memory; read back, plain strings that group across parts
    for name in ("reason", "policy", "path", "detail"):
        assert denied.schema.field(name).type == pa.string(), name
    by = {r["reason"]: r["tweet_id_count"]
          for r in denied.group_by("reason").aggregate([("tweet_id", "count")]).to_pylist()}
    assert by["prohibited_category"] == front.num_rows
    assert set(front.column("path").to_pylist()) == {
        "brightpath-analytics -> meridian-holdings -> state-intel-service -> intelligence"}


def test_columns_follow_the_plan(run, config):
    out, _ = run
    alerts = read_parts(os.path.join(out, "clients", "news-alerts"))
    for col in ("author_screen_name", "author_description", "coordinates"):
        assert col not in alerts.column_names          # government seat: never
    news = pq.read_table(sorted(glob.glob(os.path.join(out, "clients", "newsroom", "*.parquet")))[0])
    assert "author_screen_name" in news.column_names
    assert "withheld_in_countries" not in news.column_names     # in no field group
    assert "upstream_rules" not in news.column_names
    assert news.column_names[-1] == "matching_rules"


def test_audit_balances_per_batch_and_client(run):
    out, report = run
    audit = read_parts(os.path.join(out, "audit", "audit"))
    ledger = read_parts(os.path.join(out, "audit", "ledger"))
    by = {}
    for b, c, outcome, rows in zip(*(audit.column(k).to_pylist()
                                     for k in ("batch", "client", "outcome", "rows"))):
        e = by.setdefault((b, c), {"matched": 0, "delivered": 0, "denied": 0})
        e[outcome] += rows
    assert by
    for key, e in by.items():
        assert e["matched"] == e["delivered"] + e["denied"], key
    # the ledger lists exactly the delivered rows
    for c in ("newsroom", "trading-desk", "news-alerts"):
        n = pc.sum(pc.equal(ledger.column("client"), c)).as_py()
        assert n == report.get(f"client.{c}.delivered")
    assert report.get("entitle.in") == report.get("entitle.delivered") + report.get("entitle.denied")
    denied_by_reason = sum(v for k, v in report.counters.items() if k.startswith("entitle.denied."))
    assert denied_by_reason == report.get("entitle.denied")


def test_decode_counts_balance_and_rejects_keep_the_raw_line(run, capture):
    out, report = run
    g = report.get
    assert g("decode.lines") == (g("decode.tweets") + g("decode.duplicates") + g("decode.rejects")
                                 + g("decode.blank") + g("decode.compliance"))
    assert g("route.in") == g("decode.tweets") == g("route.matched") + g("route.unmatched")
    rejects = read_parts(os.path.join(out, "rejects"))
    assert rejects.num_rows == g("decode.rejects") > 0
    with gzip.open(capture, "rb") as f:
        data = f.read()
    for off, raw in zip(rejects.column("byte_offset").to_pylist(), rejects.column("raw").to_pylist()):
        assert data[off:off + len(raw)] == raw


def test_deleted_tweets_are_never_delivered_after_their_delete(run, capture):
    """A delete earlier in the input denies the tweet; a later one is forwarded to exactly
    the clients that got it."""
    out, _ = run
    comp = decode_file(capture).compliance
    deletes = comp.filter(pc.equal(comp.column("kind").cast(pa.string()), "delete"))
    first_delete = {}
    for tid, off in zip(deletes.column("tweet_id").to_pylist(),
                        deletes.column("byte_offset").to_pylist()):
        first_delete.setdefault(tid, off)
    assert first_delete
    for name in ("newsroom", "trading-desk", "news-alerts"):
        got = read_parts(os.path.join(out, "clients", name))
        fwd = read_parts(os.path.join(out, "clients", name, "compliance"))
        forwarded = set(fwd.column("tweet_id").to_pylist()) if fwd is not None else set()
        for tid, off in zip(got.column("id").to_pylist(), got.column("byte_offset").to_pylist()):
            if tid in first_delete:
                assert first_delete[tid] > off, (name, tid)
                assert tid in forwarded, (name, tid)
        delivered = set(got.column("id").to_pylist())
        assert forwarded <= delivered | {None}


def test_manifest_describes_the_run(run, capture, config):
    out, report = run
    m = json.loads(_read(os.path.join(out, MANIFEST_NAME)))
    assert m["config"]["hash"] == config.hash
    assert m["inputs"][0]["path"] == capture
    assert m["inputs"][0]["bytes"] == os.path.getsize(capture)
    assert m["counters"]["decode.tweets"] == report.get("decode.tweets")
    listed = {o["path"] for o in m["outputs"]}
    on_disk = {k for k in output_tree(out) if k not in (MANIFEST_NAME, "checkpoint.arrows")}
    assert listed == on_disk
    assert not [k for k in output_tree(out) if k.endswith(".tmp")]


# ------------------------------------------------------------------------------ determinism

@pytest.mark.parametrize("threads", [dict(readahead=0), dict(sink_threads=1),
                                     dict(readahead=0, sink_threads=4)])
def test_outputs_are_byte_identical_whatever_the_threads(capture, config, tmp_path, run, threads):
    out0, _ = run
    out1 = str(tmp_path / "a")
    Pipeline(config, out_dir=out1, **threads, **KW).run([capture])
    assert output_tree(out1) == output_tree(out0)


@pytest.mark.parametrize("at", [3, 30])
def test_resume_of_a_plain_capture_seeks_and_gives_the_same_files(capture, config, tmp_path,
                                                                  monkeypatch, at):
    """Plain files resume by seeking (gzip ones by decompressing up to the position)."""
    plain = _gunzip(capture, tmp_path / "cap.ndjson")
    ref = str(tmp_path / "ref")
    Pipeline(config, out_dir=ref, **KW).run([plain])
    out = str(tmp_path / "r")
    _crash_after_renames(monkeypatch, at, config, out, [plain])
    import firehose.reader as reader_mod
    seeks = []

    class Recording(io.BufferedReader):
        def seek(self, *a):
            seeks.append(a)
            return super().seek(*a)

    real_open = reader_mod.open_capture
    monkeypatch.setattr(reader_mod, "open_capture",
                        lambda p: Recording(io.FileIO(p)) if p == plain else real_open(p))
    Pipeline(config, out_dir=out, **KW).run([plain], resume=True)
    monkeypatch.undo()
    assert output_tree(out) == output_tree(ref)
    if at == 30:
        assert any(a and a[0] > 0 for a in seeks)      # it sought, rather than re-reading


def test_plain_and_gzip_inputs_give_the_same_deliveries(capture, config, tmp_path, run):
    plain = _gunzip(capture, tmp_path / "cap.ndjson")
    out = str(tmp_path / "p")
    Pipeline(config, out_dir=out, **KW).run([plain])
    a = output_tree(run[0])
    for k in a:
        if k.startswith("clients/newsroom/part-"):
            # rows are equal; source_file names the input, so compare without it
            ta = pq.read_table(os.path.join(run[0], k)).drop_columns(["source_file"])
            tb = pq.read_table(os.path.join(out, k)).drop_columns(["source_file"])
            assert ta.equals(tb)


def test_an_existing_output_is_not_overwritten_silently(capture, config, run):
    with pytest.raises(StateError, match="--resume"):
        Pipeline(config, out_dir=run[0], **KW).run([capture])


# ------------------------------------------------------------------------------ resume

class _Crash(BaseException):
    """Stands in for kill -9: nothing after it runs (not even ``except Exception``)."""


def _gunzip(path, to) -> str:
    with gzip.open(path, "rb") as f, open(to, "wb") as g:
        shutil.copyfileobj(f, g)
    return str(to)


def _crash_after_renames(monkeypatch, at, config, out, inputs, **kw) -> None:
    """Run a replay that dies right after the ``at``-th part rename of its commits."""
    calls = {"n": 0}
    real = PartSink.publish

    def publish(self, staged):
        path = real(self, staged)
        calls["n"] += 1
        if calls["n"] == at:
            raise _Crash()
        return path

    monkeypatch.setattr(PartSink, "publish", publish)
    with pytest.raises(_Crash):
        Pipeline(config, out_dir=out, **KW, **kw).run(inputs)
    monkeypatch.setattr(PartSink, "publish", real)


@pytest.mark.parametrize("at", [1, 5, 14, 22, 40])
def test_resume_after_a_crash_inside_a_commit_gives_the_same_files(capture, config, tmp_path,
                                                                    run, monkeypatch, at):
    """Crash after the ``at``-th part rename (some sinks of a commit renamed, others not,
    the checkpoint not yet written), then resume: the same tree as the uninterrupted run."""
    out = str(tmp_path / "r")
    _crash_after_renames(monkeypatch, at, config, out, [capture])
    assert not os.path.exists(os.path.join(out, MANIFEST_NAME))
    ck = Checkpoint.load(out)
    report = Pipeline(config, out_dir=out, **KW).run([capture], resume=True)
    assert output_tree(out) == output_tree(run[0])
    assert report.resumed_from == (ck.part if ck is not None else None)
    if at == 40:
        assert report.resumed_from > 0


@pytest.mark.parametrize("crash_at", [None, 30])
def test_a_short_delivery_window_forwards_the_same_from_the_spill(capture, config, tmp_path,
                                                                  run, monkeypatch, crash_at):
    """Deliveries older than one second of tweet time (the capture spans seven) leave memory
    for state/delivered/: every output is the same as with everything in memory, also when
    the run crashed and resumed from a checkpoint naming spilled files; the spill is state,
    not output (the manifest does not list it). Authors files are merged two at a time:
    those merged away are deleted once a checkpoint no longer names them, so at the end the
    directory holds exactly what the last checkpoint names."""
    from firehose.entitlements import _Spill
    monkeypatch.setattr(_Spill, "fanout", 2)
    out = str(tmp_path / "w")
    short = dict(delivered_window_hours=1 / 3600)
    if crash_at:
        _crash_after_renames(monkeypatch, crash_at, config, out, [capture], **short)
        assert Checkpoint.load(out) is not None
        Pipeline(config, out_dir=out, **KW, **short).run([capture], resume=True)
    else:
        Pipeline(config, out_dir=out, **KW, **short).run([capture])
    spilled = os.listdir(os.path.join(out, "state", "delivered"))
    assert any(f.startswith("delivered-") for f in spilled)
    state = pa.ipc.open_stream(Checkpoint.load(out).entitlements).read_all().to_pylist()
    named = {r["name"] for r in state if r["kind"].startswith("spilled_")}
    assert sorted(spilled) == sorted(named)
    # (files the last state lists as merged away were deleted after it was written)
    assert not {r["name"] for r in state if r["kind"] == "retired_file"} & set(spilled)
    seqs = sorted(int(f.split("-")[1][:6]) for f in spilled if f.startswith("authors-"))
    assert seqs and seqs[-1] > len(seqs) + 2, seqs      # merged files replaced others
    assert output_tree(out) == output_tree(run[0])
    m = json.loads(_read(os.path.join(out, MANIFEST_NAME)))
    assert not [o for o in m["outputs"] if o["path"].startswith("state/")]
    assert json.loads(_read(os.path.join(run[0], MANIFEST_NAME)))["outputs"] == m["outputs"]


def test_resume_after_the_run_completed_changes_nothing(capture, config, tmp_path, run):
    out = str(tmp_path / "done")
    shutil.copytree(run[0], out)
    Pipeline(config, out_dir=out, **KW).run([capture], resume=True)
    assert output_tree(out) == output_tree(run[0])


def test_resume_refuses_another_configuration(capture, config, tmp_path, run):
    out = str(tmp_path / "other")
    shutil.copytree(run[0], out)
    text = _read(EXAMPLE, "r").replace('tag = "music"', 'tag = "music2"')
    other = fconfig.loads(text, "other.toml")
    with pytest.raises(StateError, match="another configuration"):
        Pipeline(other, out_dir=out, **KW).run([capture], resume=True)


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    ck = Checkpoint("h", ["a"], 3, 0, 10, 2, 5, {"x": 1}, b"d", b"c", b"e")
    assert Checkpoint.from_bytes(ck.to_bytes()) == ck
    with pytest.raises(StateError, match="not a readable checkpoint"):
        Checkpoint.from_bytes(b"garbage", "ck")


# ------------------------------------------------------------------------------ faults

def test_corrupt_gzip_is_one_clear_error_and_leaves_no_partial_output(capture, config, tmp_path):
    data = _read(capture)
    bad = str(tmp_path / "bad.ndjson.gz")
    cut = len(data) * 2 // 3
    _write(bad, data[:cut] + bytes(b ^ 0x55 for b in data[cut:cut + 4096]))
    out = str(tmp_path / "o")
    with pytest.raises(InputError, match=r"bad\.ndjson\.gz: .*decompressed byte \d+"):
        Pipeline(config, out_dir=out, **KW).run([bad])
    assert not os.path.exists(os.path.join(out, MANIFEST_NAME))
    assert not [k for k in output_tree(out) if k.endswith(".tmp")]


def test_missing_input_names_the_file(config, tmp_path):
    with pytest.raises(InputError, match="nope.ndjson: cannot open"):
        Pipeline(config, out_dir=str(tmp_path / "o"), **KW).run([str(tmp_path / "nope.ndjson")])


def test_full_disk_is_a_sink_error_and_no_temporary_file_survives(capture, config, tmp_path,
                                                                    monkeypatch):
    """The file system fills up after 300 kB of output: the real write path fails with ENOSPC,
    the error names the file, temporary parts are removed, no manifest claims completion."""
    import builtins
    import errno

    import firehose.sinks as sinks_mod
    budget = {"left": 300_000}

    class Full(io.FileIO):
        def write(self, b):
            n = len(memoryview(b))
            if n > budget["left"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            budget["left"] -= n
            return super().write(b)

    def fake_open(path, mode="r", *a, **k):
        if "w" in mode:
            return io.BufferedWriter(Full(path, "w"))
        return builtins.open(path, mode, *a, **k)

    monkeypatch.setattr(sinks_mod, "open", fake_open, raising=False)
    out = str(tmp_path / "o")
    with pytest.raises(SinkError, match=r"No space left on device") as e:
        Pipeline(config, out_dir=out, **KW).run([capture])
    assert out in str(e.value)
    assert not [k for k in output_tree(out) if k.endswith(".tmp")]
    assert not os.path.exists(os.path.join(out, MANIFEST_NAME))


def test_standard_input_is_a_capture(capture, config, tmp_path, monkeypatch, run):
    with gzip.open(capture, "rb") as f:
        data = f.read()

    class Stdin:
        buffer = io.BufferedReader(io.BytesIO(data))

    monkeypatch.setattr(sys, "stdin", Stdin)
    out = str(tmp_path / "o")
    report = Pipeline(config, out_dir=out, **KW).run(["-"])
    assert report.get("decode.tweets") == run[1].get("decode.tweets")
    assert report.get("entitle.delivered") == run[1].get("entitle.delivered")


# ------------------------------------------------------------------------------ embedding

def test_process_yields_tables_per_client_and_calls_callbacks(capture, config):
    got = []
    pipe = Pipeline(config, sinks={"trading-desk": got.append})
    with gzip.open(capture, "rb") as f:
        data = f.read()
    total = {c: 0 for c in config.clients}
    step = 777_777            # cut anywhere, mid-line
    for i in range(0, len(data), step):
        for c, t in pipe.process(data[i:i + step], source="cap").items():
            total[c] += t.num_rows
    for c, t in pipe.finish().items():
        total[c] += t.num_rows
    assert total["frontco"] == 0
    assert sum(t.num_rows for t in got) == total["trading-desk"] > 0
    # the same deliveries as one whole batch, except where a compliance event's timing
    # relative to the cut decides (deny in-batch vs deliver then forward)
    whole = Pipeline(config)
    res = whole.process(data, source="cap")
    fin = whole.finish()
    ids = set(pa.concat_tables([res["newsroom"], fin["newsroom"]]).column("id").to_pylist())
    decoded = decode_file(capture)
    comp = decoded.compliance
    hit_tweets = set(comp.column("tweet_id").drop_null().to_pylist())
    hit_users = set(comp.column("user_id").drop_null().to_pylist())
    t = decoded.tweets
    affected = {
        tid for tid, a, rt, ru, q, qu in zip(*(t.column(c).to_pylist() for c in (
            "id", "author_id", "retweeted_status_id", "retweeted_user_id", "quoted_status_id",
            "quoted_user_id")))
        if tid in hit_tweets or rt in hit_tweets or q in hit_tweets
        or a in hit_users or ru in hit_users or qu in hit_users}
    chunked = set()
    pipe2 = Pipeline(config)
    for i in range(0, len(data), step):
        chunked |= set(pipe2.process(data[i:i + step], source="cap")["newsroom"]
                       .column("id").to_pylist())
    chunked |= set(pipe2.finish()["newsroom"].column("id").to_pylist())
    assert total["newsroom"] == len(chunked) > 0          # no row twice
    assert (ids ^ chunked) <= affected


def _no_geo(obj):
    if isinstance(obj, dict):
        return {k: None if k in ("coordinates", "geo", "place", "places") else _no_geo(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_geo(v) for v in obj]
    return obj


RAW_CONFIG = textwrap.dedent("""
    [sources.firehose]
    licence = "lic"
    [licences.lic]
    redistribution = "full"
    [field_groups]
    core = ["id", "text"]
    raw = ["raw_json"]
    [organisations.paper]
    categories = ["media"]
    [clients.wire]
    organisation = "paper"
    delivery_countries = ["US"]
    use_case = "news"
    grants = [{ source = "firehose", field_groups = ["core", "raw"] }]
    sink = { kind = "ndjson", path = "x" }
    rules = [{ id = "b", value = "breaking", tag = "t" }]
""")


def test_ndjson_reemits_the_original_payload_with_matching_rules(capture, tmp_path):
    config = fconfig.loads(RAW_CONFIG, "raw.toml")
    out = str(tmp_path / "o")
    Pipeline(config, out_dir=out, **KW).run([capture])
    files = sorted(glob.glob(os.path.join(out, "clients", "wire", "part-*.ndjson")))
    assert files
    with gzip.open(capture, "rb") as f:
        data = f.read()
    decoded = decode_file(capture).tweets
    offsets = dict(zip(decoded.column("id").to_pylist(), decoded.column("byte_offset").to_pylist()))
    n = 0
    for path in files:
        for line in _read(path).splitlines():
            obj = json.loads(line)
            assert obj["matching_rules"] == [{"id": "b", "tag": "t"}]
            ids = [obj.get("id_str"), (obj.get("data") or {}).get("id") if isinstance(
                obj.get("data"), dict) else None, str(obj.get("id", "")).rsplit(":", 1)[-1]]
            tid = next(int(i) for i in ids if i and str(i).isdigit() and int(i) in offsets)
            off = offsets[tid]
            original = json.loads(data[off:data.index(b"\n", off)])
            original.pop("matching_rules", None)
            if isinstance(original.get("gnip"), dict):
                original["gnip"].pop("matching_rules", None)
                obj["gnip"].pop("matching_rules", None)
            obj.pop("matching_rules")
            # the seat has no geo group: the payload carries no geo, at any depth
            assert obj == _no_geo(original)
            n += 1
    assert n > 0


def test_embedded_commit_and_restore_resume_without_loss_or_duplicates(capture, config, tmp_path):
    """The live-consumer pattern: process whole-line messages, commit with a position, crash,
    restore, re-process from the committed position: the outputs equal one clean pass."""
    with gzip.open(capture, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    msgs = [b"".join(lines[i:i + 97]) for i in range(0, len(lines), 97)]

    def consume(out, crash_at=None):
        pipe = Pipeline(config, out_dir=out, commit_every=10**9)
        pos = (pipe.restore() or {}).get("next", 0)
        for i in range(pos, len(msgs)):
            if i == crash_at:       # like kill -9: the directory as it is, .tmp parts and all
                shutil.copytree(out, out + ".killed")
                pipe._abort()
                return False
            pipe.process(msgs[i], source="live")
            if i % 5 == 4:
                pipe.commit({"next": i + 1})
        pipe.commit({"next": len(msgs)})
        return True

    clean = str(tmp_path / "clean")
    assert consume(clean)
    crashed = str(tmp_path / "crashed")
    assert not consume(crashed, crash_at=len(msgs) // 2 + 3)    # 3 messages after a commit
    crashed += ".killed"
    # rows wait in memory until a commit writes them, so a crash between commits leaves no
    # temporary file; one killed inside a write would: plant one, restore() must remove it
    stray = os.path.join(crashed, "clients", "newsroom", ".part-000999.parquet.tmp")
    with open(stray, "wb") as f:
        f.write(b"PAR1 half a file")
    assert consume(crashed)
    assert not os.path.exists(stray)
    for name in ("newsroom", "trading-desk", "news-alerts"):
        a = read_parts(os.path.join(clean, "clients", name))
        b = read_parts(os.path.join(crashed, "clients", name))
        assert sorted(a.column("id").to_pylist()) == sorted(b.column("id").to_pylist())
        assert len(set(b.column("id").to_pylist())) == b.num_rows


GEO_CONFIG = RAW_CONFIG.replace('core = ["id", "text"]', 'core = ["id", "text"]\ngeo = ["coordinates"]') \
    .replace('field_groups = ["core", "raw"]', 'field_groups = ["core", "geo", "raw"]') \
    .replace('kind = "ndjson"', 'kind = "parquet"')


def test_scrub_geo_nulls_coordinates_in_a_parquet_delivery(tmp_path):
    """A scrubbed struct is nulled through its validity: Parquet accepts it (lon/lat are
    non-nullable children) and the row reads back without coordinates."""
    def tweet(tid, uid):
        return json.dumps({"id_str": str(tid), "created_at": "Wed Oct 10 20:19:24 +0000 2018",
                           "text": "breaking news", "user": {"id_str": str(uid), "screen_name": "u"},
                           "coordinates": {"type": "Point", "coordinates": [1.5, 2.5]}})
    lines = [json.dumps({"scrub_geo": {"user_id_str": "7", "up_to_status_id_str": "10"}}),
             tweet(10, 7), tweet(11, 8)]
    cap = tmp_path / "geo.ndjson"
    cap.write_text("\n".join(lines) + "\n")
    config = fconfig.loads(GEO_CONFIG, "geo.toml")
    out = str(tmp_path / "o")
    Pipeline(config, out_dir=out).run([str(cap)])
    got = read_parts(os.path.join(out, "clients", "wire"))
    coords = dict(zip(got.column("id").to_pylist(), got.column("coordinates").to_pylist()))
    assert coords == {10: None, 11: {"lon": 1.5, "lat": 2.5}}


@pytest.mark.parametrize("engine", ["pipeline", "dist"])
def test_raw_payload_of_a_retweet_drops_the_geo_of_a_scrubbed_original(tmp_path, engine):
    """scrub_geo by the retweeted author reaches the embedded copy in the raw payload, in the
    pipeline and in the distributed replay alike."""
    config = fconfig.loads(GEO_CONFIG.replace('kind = "parquet"', 'kind = "ndjson"'), "g.toml")
    orig = {"id_str": "10", "created_at": "Wed Oct 10 20:19:24 +0000 2018", "text": "breaking",
            "user": {"id_str": "7", "screen_name": "a"},
            "coordinates": {"type": "Point", "coordinates": [1.5, 2.5]}}
    rt = {"id_str": "12", "created_at": "Wed Oct 10 20:19:25 +0000 2018",
          "text": "RT @a: breaking", "user": {"id_str": "8", "screen_name": "b"},
          "retweeted_status": orig}
    lines = [json.dumps({"scrub_geo": {"user_id_str": "7", "up_to_status_id_str": "10"}}),
             json.dumps(rt)]
    cap = tmp_path / "rt.ndjson"
    cap.write_text("\n".join(lines) + "\n")
    out = str(tmp_path / "o")
    if engine == "dist":
        from firehose import dist
        dist.replay([str(cap)], config, None, out, scheduler="sync", partitions=2)
    else:
        Pipeline(config, out_dir=out).run([str(cap)])
    (path,) = glob.glob(os.path.join(out, "clients", "wire", "part-*.ndjson*"))
    obj = json.loads(_read(path))
    assert obj["id_str"] == "12"
    assert obj["retweeted_status"]["coordinates"] is None
    assert obj["retweeted_status"]["text"] == "breaking"


def test_embedding_a_source_switch_keeps_each_raw_line_with_its_source(tmp_path):
    config = fconfig.loads(RAW_CONFIG, "raw.toml")
    sink = PartSink(str(tmp_path / "w"), "ndjson")
    pipe = Pipeline(config, sinks={"wire": sink})
    got = []

    def line(tid):
        return json.dumps({"id_str": str(tid), "created_at": "Wed Oct 10 20:19:24 +0000 2018",
                           "text": f"breaking {tid}", "user": {"id_str": "1"}}).encode()
    pipe.process(line(1) + b"\n" + line(2)[:30], source="A")      # tweet 2 unfinished in A
    pipe.process(line(2)[30:] + b"\n", source="A")
    pipe.process(line(3)[:20], source="A")
    pipe.process(line(4) + b"\n", source="B")                    # A's tail is finished now
    pipe.finish()
    sink.commit()
    for path in glob.glob(str(tmp_path / "w" / "part-*")):
        got += [json.loads(x) for x in _read(path).splitlines()]
    texts = {o["id_str"]: o["text"] for o in got}
    assert texts == {"1": "breaking 1", "2": "breaking 2", "4": "breaking 4"}   # 3 is cut off


def test_a_failing_part_close_leaves_no_temporary_file(capture, config, tmp_path, monkeypatch):
    real = PartSink.close_part
    calls = {"n": 0}

    def close_part(self, fsync=True):
        calls["n"] += 1
        if calls["n"] == 3:
            self.abort()
            raise SinkError(f"{self.directory}: commit failed: No space left on device")
        return real(self, fsync)

    monkeypatch.setattr(PartSink, "close_part", close_part)
    out = str(tmp_path / "o")
    with pytest.raises(SinkError):
        Pipeline(config, out_dir=out, **KW).run([capture])
    assert not [k for k in output_tree(out) if k.endswith(".tmp")]


@pytest.mark.parametrize("at", [25, 48])
def test_a_commit_failing_in_the_background_stops_the_run_and_resume_completes_it(
        capture, config, tmp_path, run, monkeypatch, at):
    """Parts are closed in the background while the next batches go on: a close failing in a
    later commit surfaces as the run's SinkError, leaves no temporary file and no manifest,
    keeps the previous commit's checkpoint, and a resume gives the uninterrupted run's files."""
    real = PartSink.close_part
    calls = {"n": 0}

    def close_part(self, fsync=True):
        calls["n"] += 1
        if calls["n"] == at:
            self.abort()
            raise SinkError(f"{self.directory}: commit failed: No space left on device")
        return real(self, fsync)

    monkeypatch.setattr(PartSink, "close_part", close_part)
    out = str(tmp_path / "o")
    with pytest.raises(SinkError, match="No space left"):
        Pipeline(config, out_dir=out, **KW).run([capture])
    monkeypatch.setattr(PartSink, "close_part", real)
    assert not [k for k in output_tree(out) if k.endswith(".tmp")]
    assert not os.path.exists(os.path.join(out, MANIFEST_NAME))
    ck = Checkpoint.load(out)
    assert ck is not None and 0 < ck.part < Checkpoint.load(run[0]).part
    Pipeline(config, out_dir=out, **KW).run([capture], resume=True)
    assert output_tree(out) == output_tree(run[0])


def test_an_error_while_a_checkpoint_is_snapshotted_leaves_no_temporary_file(
        capture, config, tmp_path, monkeypatch):
    """Between detaching a commit's parts and handing them to the committer the main thread
    serialises the state; an error (or Ctrl-C) there must not strand the detached parts."""
    from firehose.entitlements import Entitlements
    real = Entitlements.state_to_bytes
    calls = {"n": 0}

    def state_to_bytes(self, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, **kw)

    monkeypatch.setattr(Entitlements, "state_to_bytes", state_to_bytes)
    monkeypatch.setattr(PartSink, "ROW_GROUP_ROWS", 50)     # rows reach .tmp files early
    out = str(tmp_path / "o")
    with pytest.raises(KeyboardInterrupt):
        Pipeline(config, out_dir=out, **KW).run([capture])
    assert calls["n"] == 2
    assert not [k for k in output_tree(out) if k.endswith(".tmp")]


def test_embedding_never_overwrites_parts_of_an_earlier_session(config, capture, tmp_path):
    with gzip.open(capture, "rb") as f:
        data = f.read(2_000_000)
    data = data[:data.rindex(b"\n") + 1]
    out = str(tmp_path / "o")
    first = Pipeline(config, out_dir=out)
    first.process(data, source="s")
    first.close()
    before = output_tree(out)
    assert [k for k in before if "part-" in k]
    second = Pipeline(config, out_dir=out)
    with pytest.raises(StateError, match="earlier session"):
        second.process(data, source="s")
    assert second.restore() is None                 # no checkpoint: nothing is deleted
    assert output_tree(out) == before


def test_numbers_beyond_a_double_do_not_make_invalid_json():
    from firehose.sinks import raw_with_rules
    line = b'{"id_str":"1","place":{"id":"p"},"score":1e400}'
    out = json.loads(raw_with_rules(line, [], False, place=False))
    assert out["score"] is None and out["place"] is None


def test_user_events_are_forwarded_to_clients_that_got_the_users_tweets(tmp_path):
    config = fconfig.loads(RAW_CONFIG.replace('kind = "ndjson"', 'kind = "parquet"'), "u.toml")

    def tweet(tid, uid):
        return json.dumps({"id_str": str(tid), "created_at": "Wed Oct 10 20:19:24 +0000 2018",
                           "text": "breaking", "user": {"id_str": str(uid), "screen_name": "u"}})
    first = tmp_path / "a.ndjson"
    first.write_text(tweet(10, 7) + "\n" + tweet(11, 8) + "\n")
    second = tmp_path / "b.ndjson"          # inputs never share a batch: a later batch
    second.write_text(json.dumps({"data": {"user_delete": {"user": {"id": "7"}}}}) + "\n"
                      + json.dumps({"data": {"user_suspend": {"user": {"id": "9"}}}}) + "\n")
    out = str(tmp_path / "o")
    Pipeline(config, out_dir=out).run([str(first), str(second)])
    fwd = read_parts(os.path.join(out, "clients", "wire", "compliance"))
    assert fwd is not None
    assert [(k, u) for k, u in zip(fwd.column("kind").to_pylist(),
                                   fwd.column("user_id").to_pylist())] == [("user_delete", 7)]
