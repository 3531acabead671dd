"""``firehose inspect`` (firehose.survey) and ``firehose bench``: the report's counts are the
decoder's and the oracle's, whatever the compression or the chunking; errors are one line and
exit 2; ``bench`` finds its suite and passes arguments through (never runs a benchmark here)."""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("firehose._core")

import firehose  # noqa: E402
from firehose import cli  # noqa: E402
from firehose import testing as T  # noqa: E402
from firehose._reference import ReferenceDecoder  # noqa: E402
from firehose.cli import main  # noqa: E402
from firehose.errors import InputError  # noqa: E402
from firehose.schema import DIALECTS  # noqa: E402
from firehose.survey import REPORT_KEYS, format_report, survey  # noqa: E402

KW = dict(dup_rate=0.05, malformed_rate=0.03, compliance_rate=0.06, keepalive_rate=0.02)
SMALL = 8192                                   # chunks cut lines: many per file


def counts(col) -> dict:
    return dict(sorted(Counter(v for v in col.to_pylist() if v is not None).items()))


def expected(res, stats, top: int = 5) -> dict:
    """The report's fields computed from whole tables (decode_file or the oracle)."""
    t = res.tweets
    ms = [int(v.timestamp() * 1000) for v in t.column("created_at").to_pylist() if v is not None]
    ids = t.column("id").to_pylist()
    langs = sorted(Counter(v for v in t.column("lang").to_pylist() if v is not None).items(),
                   key=lambda kv: (-kv[1], kv[0]))[:top]
    seen = stats["tweets"] + stats["duplicates"]
    return {
        "bytes_decompressed": stats["bytes"], "lines": stats["lines"],
        "blank_lines": stats["blank"], "tweets": t.num_rows, "duplicates": stats["duplicates"],
        "duplicate_rate": stats["duplicates"] / seen if seen else 0.0,
        "tweets_by_dialect": {d: counts(t.column("dialect")).get(d, 0) for d in DIALECTS},
        "compliance": res.compliance.num_rows,
        "compliance_by_kind": counts(res.compliance.column("kind")),
        "rejects": res.rejects.num_rows,
        "rejects_by_reason": counts(res.rejects.column("reason")),
        "created_at_min": _iso(min(ms)) if ms else None,
        "created_at_max": _iso(max(ms)) if ms else None,
        "tweet_id_min": min(ids) if ids else None, "tweet_id_max": max(ids) if ids else None,
        "languages_top": [{"lang": k, "tweets": v} for k, v in langs],
    }


def _iso(ms: int) -> str:
    import datetime as dt
    t = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def subset(report: dict, keys) -> dict:
    return {k: report[k] for k in keys}


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """One capture per dialect (and mixed), plain, with known rates."""
    d = tmp_path_factory.mktemp("captures")
    paths = {}
    for seed, dialect in enumerate(("v1.1", "v2", "activity", "mixed")):
        p = d / f"{dialect}.ndjson"
        T.write_capture(p, 700, seed=seed, dialect=dialect, **KW)
        paths[dialect] = p
    return paths


@pytest.mark.parametrize("dialect", ["v1.1", "v2", "activity", "mixed"])
def test_counts_are_decode_files(captures, dialect):
    path = captures[dialect]
    rep = survey([path], chunk_size=SMALL)
    f = rep["files"][0]
    assert list(f) == ["path", "compression", *REPORT_KEYS]
    res = firehose.decode_file(path)
    exp = expected(res, res.stats)
    assert subset(f, exp) == exp
    assert f["path"] == str(path) and f["compression"] == "plain"
    assert f["bytes_compressed"] == path.stat().st_size == f["bytes_decompressed"]
    # the rates were honoured: every kind of line is there
    assert f["duplicates"] and f["compliance"] and f["rejects"] and f["blank_lines"]
    assert f["first_rejects"] == res.rejects.select(
        ["source", "line", "byte_offset", "reason", "detail"]).slice(0, 5).to_pylist()
    one = {k: v for k, v in rep["total"].items() if k != "files"}
    assert one == {k: v for k, v in f.items() if k not in ("path", "compression")}


@pytest.mark.parametrize("dialect", ["v1.1", "mixed"])
def test_counts_are_the_oracles_and_the_generators(captures, dialect):
    path = captures[dialect]
    f = survey([path], chunk_size=SMALL)["files"][0]
    ref = ReferenceDecoder()
    data = path.read_bytes()
    parts = [ref.feed(data[i:i + 5000], source=str(path)) for i in range(0, len(data), 5000)]
    parts.append(ref.finish())
    import pyarrow as pa
    res = firehose.DecodeResult(*(pa.concat_tables([getattr(p, k) for p in parts])
                                  for k in ("tweets", "compliance", "rejects")))
    exp = expected(res, ref.stats)
    assert subset(f, exp) == exp
    # and what the generator says each line is
    labels = Counter(lbl for lbl, _ in T.generate_labeled(700, seed=list(captures).index(dialect),
                                                         dialect=dialect, **KW))
    assert f["tweets"] == labels["tweet"] and f["duplicates"] == labels["duplicate"]
    assert f["blank_lines"] == labels["blank"]
    assert f["compliance_by_kind"] == {k.split(":", 1)[1]: v for k, v in sorted(labels.items())
                                       if k.startswith("compliance:")}
    assert f["rejects_by_reason"] == {k.split(":", 1)[1]: v for k, v in sorted(labels.items())
                                      if k.startswith("reject:")}


def test_gzip_zstd_and_plain_give_the_same_report(captures, tmp_path):
    import zstandard
    data = captures["mixed"].read_bytes()
    (tmp_path / "m.ndjson").write_bytes(data)
    (tmp_path / "m.ndjson.gz").write_bytes(gzip.compress(data))
    (tmp_path / "m.ndjson.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    reps = {}
    for name in ("m.ndjson", "m.ndjson.gz", "m.ndjson.zst"):
        f = survey([tmp_path / name], chunk_size=SMALL, samples=3)["files"][0]
        assert f["bytes_compressed"] == (tmp_path / name).stat().st_size
        reps[name] = f
    assert reps["m.ndjson.gz"]["compression"] == "gzip"
    assert reps["m.ndjson.zst"]["compression"] == "zstd"
    strip = {"path", "compression", "bytes_compressed", "first_rejects"}
    plain = {k: v for k, v in reps["m.ndjson"].items() if k not in strip}
    for name in ("m.ndjson.gz", "m.ndjson.zst"):
        assert {k: v for k, v in reps[name].items() if k not in strip} == plain
        assert [{**r, "source": None} for r in reps[name]["first_rejects"]] == \
               [{**r, "source": None} for r in reps["m.ndjson"]["first_rejects"]]
    # the chunk size changes nothing either
    whole = survey([tmp_path / "m.ndjson.gz"], samples=3)["files"][0]
    assert whole == reps["m.ndjson.gz"]


def test_globs_share_one_dedupe_and_the_total_adds_up(captures, tmp_path):
    shutil.copy(captures["v1.1"], tmp_path / "a.ndjson")
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(captures["v2"].read_bytes()))
    shutil.copy(captures["v1.1"], tmp_path / "c.ndjson")          # a re-send of a.ndjson
    rep = survey([str(tmp_path / "*.ndjson*")], chunk_size=SMALL)
    names = [Path(f["path"]).name for f in rep["files"]]
    assert names == ["a.ndjson", "b.ndjson.gz", "c.ndjson"]
    a, b, c = rep["files"]
    assert c["tweets"] == 0 and c["duplicates"] == a["tweets"] + a["duplicates"]
    assert c["rejects"] == a["rejects"] and c["compliance"] == a["compliance"]
    tot = rep["total"]
    assert tot["files"] == 3
    for k in ("bytes_compressed", "bytes_decompressed", "lines", "blank_lines", "tweets",
              "duplicates", "compliance", "rejects"):
        assert tot[k] == a[k] + b[k] + c[k], k
    assert tot["tweets_by_dialect"] == {"v1.1": a["tweets"], "v2": b["tweets"], "activity": 0}
    assert tot["first_rejects"] == a["first_rejects"]
    assert tot["tweet_id_min"] == min(a["tweet_id_min"], b["tweet_id_min"])
    assert tot["created_at_max"] == max(a["created_at_max"], b["created_at_max"])
    # the same as one Decoder fed the three files in that order
    dec = firehose.Decoder()
    res = firehose.DecodeResult.concat(r for f in rep["files"]
                                       for r in firehose.iter_file(f["path"], decoder=dec))
    exp = expected(res, dec.stats)
    assert subset(tot, exp) == exp
    # --no-dedupe: c counts its tweets again
    nod = survey([tmp_path / "a.ndjson", tmp_path / "c.ndjson"], dedupe=False)
    assert nod["files"][1]["tweets"] == nod["files"][0]["tweets"] == a["tweets"] + a["duplicates"]
    assert "total (3 files)" in format_report(rep)


def test_empty_capture(tmp_path):
    (tmp_path / "e.ndjson").write_bytes(b"")
    f = survey([tmp_path / "e.ndjson"])["files"][0]
    assert f["lines"] == f["tweets"] == 0 and f["duplicate_rate"] == 0.0
    assert f["created_at_min"] is None and f["tweet_id_max"] is None and f["languages_top"] == []
    assert "created_at   -" in format_report(survey([tmp_path / "e.ndjson"]))


# ---- the command ----------------------------------------------------------------------------

def test_cli_json_is_one_object_with_the_keys(captures):
    r = CliRunner().invoke(main, ["inspect", "--json", str(captures["mixed"]), str(captures["v2"])])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert list(rep) == ["files", "total"]
    assert [list(f) for f in rep["files"]] == [["path", "compression", *REPORT_KEYS]] * 2
    assert list(rep["total"]) == ["files", *REPORT_KEYS]
    assert rep == json.loads(json.dumps(survey([captures["mixed"], captures["v2"]])))


def test_cli_threads_give_the_same_report(captures):
    args = ["inspect", "--json", "--chunk-size", "50000", str(captures["mixed"]),
            str(captures["v1.1"])]
    one = CliRunner().invoke(main, args)
    two = CliRunner().invoke(main, args + ["--threads", "2"])
    assert one.exit_code == two.exit_code == 0, two.output
    assert json.loads(two.stdout) == json.loads(one.stdout)
    assert json.loads(one.stdout)["total"]["duplicates"] > 0
    assert CliRunner().invoke(main, args + ["--threads", "0"]).exit_code == 2


def test_cli_text_report(captures):
    r = CliRunner().invoke(main, ["inspect", str(captures["v1.1"]), "--samples", "2", "--top", "3"])
    assert r.exit_code == 0, r.output
    f = survey([captures["v1.1"]])["files"][0]
    out = r.stdout
    assert out.startswith(f"{captures['v1.1']} (plain)\n")
    assert f"tweets       {f['tweets']:,}" in out and f"lines        {f['lines']:,}" in out
    assert f"{f['created_at_min']} .. {f['created_at_max']}" in out
    assert out.count("(byte ") == 2
    assert "total" not in out                         # one file: no total section


def test_cli_reads_stdin(captures):
    data = captures["activity"].read_bytes()
    r = CliRunner().invoke(main, ["inspect", "--json", "-"], input=data)
    assert r.exit_code == 0, r.output
    f = json.loads(r.stdout)["files"][0]
    disk = survey([captures["activity"]])["files"][0]
    assert f["path"] == "<stdin>" and f["bytes_compressed"] == len(data)
    assert {k: v for k, v in f.items() if k not in ("path", "first_rejects")} == \
           {k: v for k, v in disk.items() if k not in ("path", "first_rejects")}


def test_cli_reads_gzip_from_a_pipe(captures):
    import sys
    data = gzip.compress(captures["v1.1"].read_bytes())
    p = subprocess.run([sys.executable, "-m", "firehose.cli", "inspect", "--json", "-"],
                       input=data, capture_output=True, check=True)
    f = json.loads(p.stdout)["files"][0]
    assert f["compression"] == "gzip" and f["bytes_compressed"] is None
    assert f["tweets"] == survey([captures["v1.1"]])["files"][0]["tweets"]


def one_line_error(r, *fragments):
    assert r.exit_code == 2, (r.exit_code, r.output)
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith("Error: "), err
    for frag in fragments:
        assert frag in err, (frag, err)
    assert r.stdout == ""


def test_cli_missing_file(tmp_path, captures):
    r = CliRunner().invoke(main, ["inspect", str(captures["v2"]), str(tmp_path / "nope.ndjson")])
    one_line_error(r, "nope.ndjson: cannot open")


def test_cli_glob_without_match(tmp_path):
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "*.zst")])
    one_line_error(r, "*.zst: no file matches")


def test_cli_corrupt_gzip_names_file_and_position(captures, tmp_path):
    data = gzip.compress(captures["v1.1"].read_bytes())
    bad = tmp_path / "bad.ndjson.gz"
    bad.write_bytes(data[: len(data) // 2] + b"\x00" * 100 + data[len(data) // 2 + 100:])
    r = CliRunner().invoke(main, ["inspect", str(bad)])
    one_line_error(r, "bad.ndjson.gz: read failed at decompressed byte ")
    with pytest.raises(InputError, match=r"bad.ndjson.gz: read failed at decompressed byte \d+"):
        survey([bad])


def test_cli_usage_errors():
    r = CliRunner().invoke(main, ["inspect"])
    assert r.exit_code == 2 and "Missing argument" in r.stderr
    r = CliRunner().invoke(main, ["inspect", "--top", "-1", "x"])
    assert r.exit_code == 2


# ---- firehose bench --------------------------------------------------------------------------

def fake_checkout(root: Path) -> Path:
    (root / "bench").mkdir(parents=True)
    (root / "bench" / "conftest.py").write_text("")
    (root / "pyproject.toml").write_text("")
    return root


def test_bench_root_is_found_in_the_checkout(tmp_path):
    root = fake_checkout(tmp_path / "repo")
    (root / "src").mkdir()
    assert cli._find_bench_root([root / "src", root, tmp_path]) == root
    assert cli._find_bench_root([tmp_path]) is None
    # this test suite runs from a checkout: the real one is found
    assert (cli._find_bench_root(cli._bench_candidates()) / "bench" / "conftest.py").is_file()


def test_bench_not_found_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "_bench_candidates", lambda: [tmp_path])
    called = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: called.append(a))
    r = CliRunner().invoke(main, ["bench"])
    one_line_error(r, "bench/ not found", "source checkout")
    assert not called


def test_bench_without_pytest_benchmark_says_how_to_install(monkeypatch, tmp_path):
    root = fake_checkout(tmp_path)
    monkeypatch.setattr(cli, "_bench_candidates", lambda: [root])
    monkeypatch.setattr(cli, "_has_module", lambda name: name != "pytest_benchmark")
    called = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: called.append(a))
    r = CliRunner().invoke(main, ["bench"])
    one_line_error(r, "pytest_benchmark not installed", "pip install 'firehose[bench]'")
    assert not called


def test_bench_passes_arguments_and_exit_code_through(monkeypatch, tmp_path):
    import sys
    root = fake_checkout(tmp_path)
    monkeypatch.setattr(cli, "_bench_candidates", lambda: [root])
    seen = {}

    def run(cmd, cwd=None, **kw):
        seen.update(cmd=cmd, cwd=cwd)
        return subprocess.CompletedProcess(cmd, 5)

    monkeypatch.setattr(subprocess, "run", run)
    r = CliRunner().invoke(main, ["bench", "-k", "decode", "--benchmark-json", "out.json", "-x"])
    assert r.exit_code == 5, r.output
    assert seen["cmd"] == [sys.executable, "-m", "pytest", "bench", "--benchmark-only", "-q",
                           "-k", "decode", "--benchmark-json", "out.json", "-x"]
    assert Path(seen["cwd"]) == root
    r = CliRunner().invoke(main, ["bench", "--", "--help"])
    assert seen["cmd"][-1] == "--help" and r.exit_code == 5
