"""Sinks: the column-wise NDJSON encoder against json.dumps, atomic part files, raw payloads."""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firehose import decode_file
from firehose.schema import RULE_TYPE
from firehose.sinks import (PartSink, _ndjson_rows, ndjson_lines, raw_lines_with_rules,
                            raw_with_rules)

try:
    from corpus import corpus_files
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import corpus_files


def _same(table: pa.Table) -> None:
    fast = ndjson_lines(table)
    slow = _ndjson_rows(table)
    a = [json.loads(x) for x in fast.splitlines()]
    b = [json.loads(x) for x in slow.splitlines()]
    assert a == b
    assert fast.count(b"\n") == table.num_rows


def test_ndjson_encoder_equals_json_dumps_on_every_corpus_file():
    n = 0
    for path in corpus_files():
        tweets = decode_file(path).tweets
        if tweets.num_rows:
            _same(tweets)
            n += tweets.num_rows
    assert n > 100


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.none() | texts, st.none() | st.integers(-2**63, 2**63 - 1),
                          st.none() | st.floats(allow_nan=True, allow_infinity=True),
                          st.none() | st.booleans(), st.lists(texts, max_size=4),
                          st.none() | st.lists(texts, max_size=3),
                          st.none() | st.datetimes(min_value=dt.datetime(1970, 1, 1),
                                                   max_value=dt.datetime(2100, 1, 1))),
                max_size=12))
def test_ndjson_encoder_equals_json_dumps_on_arbitrary_values(rows):
    cols = list(zip(*rows)) if rows else [[]] * 7
    coords = [None if f is None else {"lon": f if f == f and abs(f) != float("inf") else 0.0,
                                      "lat": 1.5} for f in cols[2]]
    table = pa.table({
        "text": pa.array(cols[0], pa.string()),
        "id": pa.array(cols[1], pa.int64()),
        "f": pa.array([None if f is None or f != f or abs(f) == float("inf") else f
                       for f in cols[2]], pa.float64()),
        "b": pa.array(cols[3], pa.bool_()),
        "tags": pa.array(cols[4], pa.list_(pa.string())),
        "maybe": pa.array(cols[5], pa.list_(pa.string())),
        "at": pa.array([None if d is None else d.replace(microsecond=d.microsecond // 1000 * 1000)
                        for d in cols[6]], pa.timestamp("ms", tz="UTC")),
        "coordinates": pa.array(coords, pa.struct([("lon", pa.float64()), ("lat", pa.float64())])),
        "matching_rules": pa.array([[{"id": "r\"1", "tag": t}] for t in cols[0]],
                                   pa.list_(RULE_TYPE)),
        "dialect": pa.array(["v1.1"] * len(rows), pa.string()).dictionary_encode(),
    })
    _same(table)


def test_nan_and_infinity_are_null_not_invalid_json():
    out = ndjson_lines(pa.table({"x": pa.array([float("nan"), float("inf"), 1.0])}))
    assert [json.loads(x)["x"] for x in out.splitlines()] == [None, None, 1.0]


def test_part_sink_commits_by_rename_and_aborts_cleanly(tmp_path):
    t = pa.table({"id": [1, 2]})
    s = PartSink(str(tmp_path / "p"), "parquet")
    s.write(t, 1)
    assert not os.path.exists(tmp_path / "p")   # rows wait in memory until written out
    path = s.commit()
    assert os.listdir(tmp_path / "p") == ["part-000001.parquet"]
    assert pq.read_table(path).equals(t)
    s.write(t, 2)
    s.abort()
    assert os.listdir(tmp_path / "p") == ["part-000001.parquet"]
    assert s.commit() is None           # nothing written: no empty part


class _Deferred:
    """A table materialised only when the sink writes it (as the pipeline's deliveries are)."""

    def __init__(self, table):
        self._t, self.num_rows, self.calls = table, table.num_rows, 0

    def table(self):
        self.calls += 1
        return self._t


@pytest.mark.parametrize("kind", ["parquet", "arrow", "ndjson"])
def test_a_detached_part_closes_on_its_own_while_the_sink_fills_the_next(tmp_path, kind):
    a, b = pa.table({"id": [1, 2], "lang": ["en", "de"]}), pa.table({"id": [3], "lang": ["fr"]})
    s = PartSink(str(tmp_path / "p"), kind)
    lazy = _Deferred(a)
    s.write(lazy, 1)
    assert lazy.calls == 0                       # nothing is materialised before the flush
    part = s.detach()
    assert s.detach() is None
    s.write(b, 2)                                # the sink goes on with the next part number
    staged = part.close_part(fsync=False)
    assert lazy.calls == 1
    assert staged[1].endswith("part-000001" + {"parquet": ".parquet", "arrow": ".arrows",
                                               "ndjson": ".ndjson"}[kind])
    part.publish(staged)
    second = s.commit()
    assert sorted(os.listdir(tmp_path / "p")) == sorted(
        [os.path.basename(staged[1]), os.path.basename(second)])
    if kind == "parquet":
        assert pq.read_table(staged[1]).equals(a) and pq.read_table(second).equals(b)
    elif kind == "ndjson":
        with open(second, "rb") as f:
            assert json.loads(f.read()) == {"id": 3, "lang": "fr"}


def test_a_detached_part_that_is_aborted_leaves_nothing(tmp_path):
    s = PartSink(str(tmp_path / "p"), "parquet")
    s.write(pa.table({"id": [1]}), 1)
    part = s.detach()
    part._flush()                                # rows written out: the .tmp exists
    assert os.listdir(tmp_path / "p") == [".part-000001.parquet.tmp"]
    part.abort()
    assert os.listdir(tmp_path / "p") == []


@pytest.mark.parametrize("compression,opener", [("gzip", gzip.open), ("none", open)])
def test_ndjson_parts_are_reproducible(tmp_path, compression, opener):
    t = pa.table({"id": [1], "text": ["x"]})
    paths = []
    for k in range(2):
        s = PartSink(str(tmp_path / str(k)), "ndjson", compression)
        s.write(t, 1)
        paths.append(s.commit())
    data = []
    for p in paths:
        with open(p, "rb") as f:
            data.append(f.read())
    assert data[0] == data[1]                  # gzip carries no time stamp
    with opener(paths[0], "rb") as f:
        assert json.loads(f.read()) == {"id": 1, "text": "x"}


def test_raw_payload_scrubbed_and_upstream_rules_replaced():
    line = json.dumps({"id_str": "5", "coordinates": {"type": "Point", "coordinates": [1, 2]},
                       "place": {"id": "p"}, "matching_rules": [{"id": "theirs"}],
                       "retweeted_status": {"geo": {"x": 1}, "place": {"id": "q"}}}).encode()
    out = json.loads(raw_with_rules(line, [{"id": "ours", "tag": None}], scrub_geo=True))
    assert out["matching_rules"] == [{"id": "ours", "tag": None}]
    assert out["coordinates"] is None and out["place"] is None
    assert out["retweeted_status"]["geo"] is None and out["retweeted_status"]["place"] is None
    kept = json.loads(raw_with_rules(line, [], scrub_geo=False))
    assert kept["place"] == {"id": "p"}


def test_raw_payload_of_a_seat_without_geo_groups_has_no_geo_at_any_depth():
    line = json.dumps({"id_str": "5", "coordinates": {"coordinates": [1, 2]}, "geo": {"x": 1},
                       "place": {"id": "p"},
                       "quoted_status": {"coordinates": {"coordinates": [3, 4]}, "place": {"id": "q"}},
                       "includes": {"places": [{"id": "r"}]}}).encode()
    no_exact = json.loads(raw_with_rules(line, [], False, exact_geo=False))
    assert no_exact["coordinates"] is None and no_exact["geo"] is None
    assert no_exact["quoted_status"]["coordinates"] is None
    assert no_exact["place"] == {"id": "p"}                      # place was granted
    nothing = json.loads(raw_with_rules(line, [], False, exact_geo=False, place=False))
    assert b'"id":"q"' not in json.dumps(nothing).encode().replace(b" ", b"")
    assert nothing["includes"]["places"] is None and nothing["quoted_status"]["place"] is None


def test_a_geo_key_spelt_with_escapes_is_still_removed():
    line = b'{"id_str":"1","pl\\u0061ce":{"id":"p","full_name":"x"},"text":"a place"}'
    out = json.loads(raw_with_rules(line, [], False, place=False))
    assert out["place"] is None and out["text"] == "a place"
    plain = b'{"id_str":"1","place":null,"text":"no \\u0026 geo"}'
    assert raw_with_rules(plain, [], False, place=False).startswith(plain[:-1])   # untouched


def _lines_of(paths) -> bytes:
    """Every line of the corpus (and some made here) that is a JSON object."""
    out = []
    for path in paths:
        with open(path, "rb") as f:
            for line in f.read().split(b"\n"):
                try:
                    ok = isinstance(json.loads(line), dict)
                except ValueError:
                    ok = False
                if ok:
                    out.append(line)
    geo = {"coordinates": {"type": "Point", "coordinates": [1.5, 2]}, "place": {"id": "p"}}
    out += [json.dumps({"id_str": "1", **geo}).encode(),
            json.dumps({"id_str": "2", "geo": None, "place": None}).encode() + b"  \r",
            b'{"id_str":"3","pl\\u0061ce":{"id":"x"}}',
            b'{"id_str":"4","coordinates" :\t[1,2] }',
            json.dumps({"id_str": "5", "matching_rules": [{"id": "theirs"}]}).encode(),
            json.dumps({"id_str": "6", "retweeted_status": {"place": {"id": "q"}}}).encode(),
            b'{"id_str":"7","text":"caf\\u00e9 \xe2\x82\xac"}',
            b'{"id_str":"8","a":1' + b" \t" * 12 + b"}" + b" " * 20,
            b"{" + b" " * 17 + b"}",
            b'{"id_str":"9"' + b" " * 70 + b"}" + b"\r" * 70,
            b"{}"]
    return b"\n".join(out) + b"\n"


@pytest.mark.parametrize("exact_geo,place", [(True, True), (False, True), (True, False),
                                             (False, False)])
def test_raw_lines_in_bulk_equal_raw_with_rules_line_by_line(exact_geo, place):
    import random

    import numpy as np
    buf = _lines_of(corpus_files())
    starts = [0] + [i + 1 for i in range(len(buf) - 1) if buf[i] == 0x0A]
    rnd = random.Random(3)
    rows = sorted(rnd.sample(starts, min(len(starts), 400)) + starts[-8:])
    rows += rows[:5]                            # several tweets of one line (v2 envelopes)
    rules = [[{"id": f"r{i}", "tag": None if i % 3 else 'q"\n\u00e9'}] * (1 + i % 2)
             for i in range(len(rows))]
    scrub = np.array([rnd.random() < 0.3 for _ in rows])
    got = raw_lines_with_rules(buf, np.array(rows), pa.array(rules, pa.list_(RULE_TYPE)),
                               scrub, exact_geo=exact_geo, place=place)
    want = b"".join(raw_with_rules(buf[r:buf.index(b"\n", r)], rl, bool(sc),
                                   exact_geo=exact_geo, place=place)
                    for r, rl, sc in zip(rows, rules, scrub))
    got, want = got.split(b"\n"), want.split(b"\n")
    assert len(got) == len(want)
    for r, g, w in zip(rows + [None], got, want):
        assert g == w, (r, buf[r:r + 200])
