"""The fast decoder against the oracle: any difference on any input is a bug in one of them.

* every corpus file, fed whole to ``firehose.Decoder`` and to ``ReferenceDecoder``: identical
  tweets and compliance tables, identical rejects (source, line, byte_offset, reason, raw) and
  identical stats;
* every corpus file fed to the fast decoder in seeded random chunk splits: the same as one feed;
* the whole corpus through one decoder of each kind (dedupe across sources);
* hypothesis: arbitrary bytes and mutated corpus lines in arbitrary chunk splits: no crash, no
  hang, every line accounted for, the same rejected lines as the reference (reasons may differ
  only among the JSON-level ones, docs/fields.md "Rejects"), the same rows.
"""
from __future__ import annotations

import random
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings

import firehose  # noqa: E402
import firehose.testing  # noqa: E402
from firehose._reference import ReferenceDecoder  # noqa: E402

try:  # noqa: E402
    from corpus import (REJECT_KEY_COLUMNS, Decoded, assert_same, escape_dense_bodies, corpus_file, corpus_files,
                        corpus_params, decode, fuzz_input, line_sets, rel, run, split_at,
                        table_diff)
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import (REJECT_KEY_COLUMNS, Decoded, assert_same, escape_dense_bodies, corpus_file,
                              corpus_files,
                              corpus_params, decode, fuzz_input, line_sets, rel, run, split_at,
                              table_diff)

JSON_LEVEL = frozenset(("too_deep", "invalid_escape", "lone_surrogate", "truncated",
                        "invalid_json"))


def fast(**kw):
    return lambda: firehose.Decoder(**kw)


def ref(**kw):
    return lambda: ReferenceDecoder(**kw)


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_file_matches_reference(path):
    name = rel(path)
    data = path.read_bytes()
    assert_same(decode(fast(dedupe=True), data, name), decode(ref(dedupe=True), data, name), name)


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_file_random_splits(path):
    name = rel(path)
    data = path.read_bytes()
    whole = decode(fast(dedupe=True), data, name)
    rng = random.Random(name)
    for _ in range(2):
        n = rng.randrange(1, 40)
        cuts = [rng.randrange(len(data) + 1) for _ in range(n)]
        split = decode(fast(dedupe=True), data, name, split_at(data, cuts))
        problems = [f"{kind}: {d}" for kind in ("tweets", "compliance", "rejects")
                    if (d := table_diff(getattr(split, kind), getattr(whole, kind),
                                        names=("split", "whole")))]
        if split.stats != whole.stats:
            problems.append(f"stats: split {split.stats} vs whole {whole.stats}")
        assert not problems, f"{name}, cuts {sorted(set(cuts))}:\n" + "\n".join(problems)


#: the projection of the peer benchmark (bench/compare/peers.py)
BENCH_COLUMNS = ["id", "created_at", "text", "lang", "author_id", "author_screen_name",
                 "author_followers_count", "hashtags", "retweeted_status_id", "quoted_status_id"]


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_file_projected_matches_reference(path):
    """``Decoder(columns=...)``, a projection pushed into the core (the other columns are
    never filled): each corpus file with one column, the benchmark's ten and seeded random
    subsets in random order, each fed in random chunks. The tweets are the reference's
    columns in the order asked; compliance, rejects and stats are as without a projection."""
    name = rel(path)
    data = path.read_bytes()
    want = decode(ref(dedupe=True), data, name)
    rng = random.Random("columns " + name)
    names = firehose.schema.TWEETS.names
    for cols in [["id"], ["text"], ["source_file", "line"], BENCH_COLUMNS,
                 rng.sample(names, rng.randrange(1, len(names))),
                 rng.sample(names, rng.randrange(1, len(names)))]:
        chunks = split_at(data, [rng.randrange(len(data) + 1) for _ in range(rng.randrange(4))])
        got = decode(fast(dedupe=True, columns=cols), data, name, chunks)
        assert got.tweets.column_names == cols
        assert_same(got, Decoded(want.tweets.select(cols), want.compliance, want.rejects,
                                 want.stats), f"{name}, columns {cols}")


#: the tweet columns emit_v2 fills from a v2 envelope's ``includes`` (users, tweets, media,
#: places): without any of them in a projection, the includes are not indexed at all
INCLUDES_COLUMNS = ["author_screen_name", "author_name", "author_description",
                    "author_location", "author_followers_count", "author_verified",
                    "in_reply_to_screen_name", "retweeted_user_id", "retweeted_screen_name",
                    "retweeted_text", "quoted_user_id", "quoted_text", "media_types",
                    "place_country_code"]


def test_v2_includes_lookups_follow_the_projection():
    """The ``includes`` lookups of v2 envelopes are built only for the kinds a wanted column
    reads: over every corpus file with v2 includes and generated v2 pages, each column that
    reads them alone and beside its id, all of them, and every column but them, the tweets
    are the reference's columns (compliance, rejects and stats as without a projection)."""
    names = list(firehose.schema.TWEETS.names)
    assert set(INCLUDES_COLUMNS) <= set(names)
    others = [n for n in names if n not in INCLUDES_COLUMNS]
    inputs = [(rel(p), p.read_bytes()) for p in corpus_files()]
    inputs = [(name, data) for name, data in inputs if b'"includes"' in data]
    assert len(inputs) >= 5
    inputs.append(("generated v2", firehose.testing.generate_bytes(300, seed=11, dialect="v2")))
    projections = [[c] for c in INCLUDES_COLUMNS] + [["id", c] for c in INCLUDES_COLUMNS]
    projections += [INCLUDES_COLUMNS, others, BENCH_COLUMNS]
    for name, data in inputs:
        want = decode(ref(dedupe=True), data, name)
        assert want.tweets.num_rows > 0 or name != "generated v2"
        for cols in projections:
            got = decode(fast(dedupe=True, columns=cols), data, name)
            assert_same(got, Decoded(want.tweets.select(cols), want.compliance, want.rejects,
                                     want.stats), f"{name}, columns {cols}")


def test_escape_dense_strings_match_reference_in_random_chunks():
    """Tweets whose text, user fields and hashtags are dense with escapes (valid and not):
    the reference's rows (decoded text) and rejected lines (reasons may differ only among the
    JSON-level ones, as in the fuzz tests), with all columns and with the benchmark's ten;
    cut at random places (escapes cut between chunks), exactly what one feed gives."""
    rng = random.Random("escapes")
    lines = []
    for i, body in enumerate(escape_dense_bodies(1500, 9)):
        pad = b"p" * rng.randrange(0, 40)
        lines.append(b'{"id":%d,"id_str":"%d","text":"%s%s","user":{"id_str":"7","name":"%s",'
                     b'"screen_name":"%s"},"entities":{"hashtags":[{"text":"%s"}]},"lang":"x"}'
                     % (i + 1, i + 1, pad, body, body, pad + body, body))
    data = b"\n".join(lines) + b"\n"
    want = decode(ref(dedupe=False), data, "esc")
    assert want.rejects.num_rows > 100 and want.tweets.num_rows > 500
    assert {"invalid_escape", "lone_surrogate", "invalid_utf8"} <= set(
        want.rejects.column("reason").to_pylist())
    w = want.rejects.select(list(REJECT_KEY_COLUMNS)).to_pylist()
    for cols in (None, BENCH_COLUMNS):
        whole = decode(fast(dedupe=False, columns=cols), data, "esc")
        tweets = want.tweets if cols is None else want.tweets.select(cols)
        for kind, a, b in (("tweets", whole.tweets, tweets),
                           ("compliance", whole.compliance, want.compliance)):
            assert table_diff(a, b) is None, f"columns {cols}, {kind}: {table_diff(a, b)}"
        g = whole.rejects.select(list(REJECT_KEY_COLUMNS)).to_pylist()
        assert [(r["line"], r["byte_offset"], r["raw"]) for r in g] == \
            [(r["line"], r["byte_offset"], r["raw"]) for r in w]
        for r, x in zip(g, w):
            assert r["reason"] == x["reason"] or {r["reason"], x["reason"]} <= JSON_LEVEL, (r, x)
        for _ in range(2):
            cuts = [rng.randrange(len(data) + 1) for _ in range(300)]
            assert_same(decode(fast(dedupe=False, columns=cols), data, "esc",
                               split_at(data, cuts)), whole, f"columns {cols}, cut")


def test_whole_corpus_through_one_decoder():
    pieces = [(p.read_bytes(), rel(p), None) for p in corpus_files()]
    for dedupe in (True, False):
        assert_same(run(fast(dedupe=dedupe)(), pieces), run(ref(dedupe=dedupe)(), pieces),
                    f"whole corpus, dedupe={dedupe}")


def test_tiny_chunks_of_a_crlf_capture():
    # a real CRLF user-stream capture (the .json original; its .ndjson sibling is LF-framed):
    # friends, delete and warning lines, a blank line and a cut-off tweet, 1..7 bytes at a time
    lines = corpus_file("twitter-ruby-fixtures/track_streaming_user.json").read_bytes().split(
        b"\r\n")
    data = b"\r\n".join([lines[0], lines[4], b"", lines[5], lines[1][:200]])
    want = decode(ref(), data, "s")
    assert want.rejects.column("reason").to_pylist() == ["truncated"]
    for size in range(1, 8):
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        assert_same(decode(fast(), data, "s", chunks), want, f"chunks of {size}")


def test_sources_offsets_and_carry_match_reference():
    a = b'{"id": 1, "text": "a"}\r\n{"limit": {"track": 3}}\n{"id": 2, "te'
    b = b'xt": "b"}\n\n{"delete": {"status": {"id_str": "4"}}}'
    c = b'{"id": 1, "text": "again"}\n[{"id": 5, "text": "e"}, 7]\n'
    pieces = [(a, "s1", 1000), (b, "s1", None), (c, "s2", 0), (a, "s1", None), (c, "s2", None)]
    for dedupe in (True, False):
        assert_same(run(fast(dedupe=dedupe)(), pieces), run(ref(dedupe=dedupe)(), pieces),
                    f"dedupe={dedupe}")


def test_edge_lines_from_review_match_reference():
    """Lines a reviewer found where core and reference disagreed: a direct-message delete's
    time, and -0 as a time (an integer literal of value 0)."""
    lines = (b'{"delete":{"direct_message":{"id":1,"user_id_str":"14"},'
             b'"timestamp_ms":"1646092800664"}}\n'
             b'{"id": 7, "text": "t", "created_at": -0}\n'
             b'{"delete":{"status":{"id_str":"9"},"timestamp_ms":-0}}\n')
    pieces = [(lines, "s", 0)]
    got, want = run(fast()(), pieces), run(ref()(), pieces)
    assert_same(got, want, "edge lines")
    comp = got.compliance.to_pylist()
    assert comp[0]["kind"] == "dm_delete" and comp[0]["event_at"] is not None
    assert got.tweets.column("created_at").to_pylist()[0] is not None
    assert comp[1]["event_at"] is not None


@pytest.mark.parametrize("level", [1, 2])
def test_line_ends_found_by_the_scan_match_reference(level):
    """The core reads a line with its scan from the line's start into the rest of the chunk
    and takes the line's end from where the value and the blanks after it stop; a line whose
    value does not end right before a newline (a value cut by one, garbage after it, blanks
    only, over-long lines, the last line without a newline) is cut at its newline first.
    Every such framing against the reference, at both scan builds."""
    from firehose import _core
    try:
        old = _core.simd_level(level)
    except ValueError:
        pytest.skip("no AVX2 here")
    try:
        v = b'{"id": 5, "text": "abc \\u00e9", "user": {"id": 2, "screen_name": "x"}}'
        lines = [v, v + b" ", v + b"\t \r", v + b"\r", b"  " + v, v + b" x", v + b"}", v + v,
                 v[:20], v[:20] + b"\n" + v[20:], b'{"id": 6,\n"text": "t"}', b"", b" \t\r",
                 b"\r", b'{"id": 7, "text": "t"}\r\r', b"[1,2]", b'"str"', b"123", b"true",
                 b'[{"id": 8, "text": "u"},\n{"id": 9, "text": "w"}]', b"{}", b"{", v]
        data = b"\n".join(lines)
        for kw in ({}, {"max_line_bytes": len(v)}, {"max_line_bytes": len(v) + 1}, {"max_line_bytes": 30}):
            for tail in (b"", b"\n", b"\r\n"):
                pieces = [(data + tail, "s", 0)]
                assert_same(run(fast(**kw)(), pieces), run(ref(**kw)(), pieces), f"{kw} {tail!r}")
                pieces = [(c, "s", None) for c in split_at(data + tail, [len(v) + 3, len(data) // 2])]
                assert_same(run(fast(**kw)(), pieces), run(ref(**kw)(), pieces), f"split {kw} {tail!r}")
    finally:
        _core.simd_level(old)


_FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_FUZZ
@given(fuzz_input())
def test_fuzz_accounting_and_rejected_lines(case):
    data, chunks = case
    t0 = time.monotonic()
    got = decode(fast(dedupe=False), data, "fuzz", chunks)
    assert time.monotonic() - t0 < 10, "the fast decoder took over 10 s on a few KB"
    want = decode(ref(dedupe=False), data, "fuzz")

    rows, rejected = line_sets(got)
    s = got.stats
    assert not rows & rejected, "a line both gave rows and was rejected"
    assert s["lines"] == s["blank"] + len(rejected) + len(rows), s
    assert s["rejects"] == got.rejects.num_rows == len(rejected), s
    assert (s["bytes"], s["lines"], s["blank"]) == (
        want.stats["bytes"], want.stats["lines"], want.stats["blank"])

    g = {r["line"]: r for r in got.rejects.select(list(REJECT_KEY_COLUMNS)).to_pylist()}
    w = {r["line"]: r for r in want.rejects.select(list(REJECT_KEY_COLUMNS)).to_pylist()}
    assert sorted(g) == sorted(w), (f"rejected lines differ: fast {sorted(g)} vs reference "
                                    f"{sorted(w)}; fast {g}; reference {w}")
    for line, r in g.items():
        x = w[line]
        assert (r["byte_offset"], r["raw"]) == (x["byte_offset"], x["raw"]), (r, x)
        assert r["reason"] == x["reason"] or {r["reason"], x["reason"]} <= JSON_LEVEL, (
            f"line {line}: fast says {r['reason']}, reference {x['reason']}: {r['raw']!r}")


@_FUZZ
@given(fuzz_input())
def test_fuzz_rows_match_reference(case):
    data, chunks = case
    got = decode(fast(dedupe=True), data, "fuzz", chunks)
    want = decode(ref(dedupe=True), data, "fuzz")
    for kind in ("tweets", "compliance"):
        d = table_diff(getattr(got, kind), getattr(want, kind))
        assert d is None, f"{kind}: {d}\ninput: {data!r}"


def _rich_status(i: int) -> dict:
    """A v1.1 status with every part a projection's scan may skip (the user's other members,
    a retweet's and a quote's, entities, extended tweet and entities, place, ...), each
    holding a marker string ``"S_<part>"`` to put faults in."""
    tid = 1_500_000_000_000_000_000 + i

    def user(tag, uid):
        return {"id": uid, "id_str": str(uid), "name": "N", "screen_name": f"sn{uid}",
                "location": "L", "description": f"S_{tag}_desc", "followers_count": 5,
                "verified": False, "url": "http:\\/\\/a", "profile_image_url": f"S_{tag}_img",
                "entities": {"url": {"urls": [{"url": f"S_{tag}_ent", "indices": [0, 1]}]}},
                "created_at": "Wed Aug 27 13:08:45 +0000 2008", "withheld_in_countries": []}

    def ents(tag):
        return {"hashtags": [{"text": f"h{tag}", "indices": [0, 2]}],
                "user_mentions": [{"screen_name": "m", "id": 9, "id_str": "9",
                                   "name": f"S_{tag}_ment"}],
                "symbols": [{"text": "SYM"}], "urls": [{"url": "u", "expanded_url": f"S_{tag}_url"}],
                "media": [{"id": 1, "type": "photo", "sizes": {"thumb": {"w": 1, "x": f"S_{tag}_med"}}}]}

    quoted = {"created_at": "Wed Aug 27 13:08:45 +0000 2008", "id": tid - 2, "id_str": str(tid - 2),
              "text": "S_qs_text", "user": user("qsu", 12), "entities": ents("qs"),
              "extended_tweet": {"full_text": "S_qs_full", "entities": ents("qse")}}
    return {
        "created_at": "Wed Aug 27 13:08:45 +0000 2008", "id": tid, "id_str": str(tid),
        "text": "tweet S_text", "source": "S_source", "truncated": True,
        "in_reply_to_status_id": 5, "in_reply_to_status_id_str": "5",
        "in_reply_to_user_id": 6, "in_reply_to_user_id_str": "6",
        "in_reply_to_screen_name": "S_irt", "user": user("u", 7),
        "geo": {"type": "Point", "coordinates": [1.5, 2.5], "x": "S_geo"},
        "coordinates": {"type": "Point", "coordinates": [2.5, 1.5]},
        "place": {"id": "S_place", "country_code": "US",
                  "bounding_box": {"coordinates": [[[1, 2], [3, 4]]]}},
        "retweeted_status": {"created_at": "Wed Aug 27 13:08:45 +0000 2008", "id": tid - 1,
                             "id_str": str(tid - 1), "text": "S_rt_text", "user": user("rtu", 11),
                             "quoted_status": quoted, "entities": ents("rt"),
                             "extended_tweet": {"full_text": "S_rt_full", "entities": ents("rte")},
                             "extended_entities": {"media": [{"type": "S_rt_xmed"}]}},
        "quoted_status_id": tid - 2, "quoted_status_id_str": str(tid - 2), "quoted_status": quoted,
        "extended_tweet": {"full_text": "S_full", "display_text_range": [0, 3],
                           "entities": ents("ete"),
                           "extended_entities": {"media": [{"type": "S_et_xmed"}]}},
        "entities": ents("e"), "extended_entities": {"media": [{"id": 2, "type": "S_xmed"}]},
        "lang": "en", "matching_rules": [{"tag": "S_rule", "id": 5, "id_str": "5"}],
        "withheld_in_countries": ["DE"], "timestamp_ms": "1650000000000", "filter_level": "S_low",
    }


#: what goes in place of a marker's string: faults (each one's reject as without a projection)
#: and valid odd JSON (rows as without a projection)
_SKIPPED_PART_EDITS = [
    b'"bad \\x escape"', b'"lone \\ud800 surrogate"', b'"\\udc00"', b'"\\u12G4"', b'"raw \xff"',
    b'"\xed\xa0\x80"', b'"ctl \x01"', b"S_unquoted", b'"x" "y"', b'"x",', b"[1,2,]", b"{,}",
    b'{"a" 1}', b"[" * 40 + b"]" * 40, b"[" * 70 + b"]" * 70, b"01", b"1.", b"-", b"tru", b"nul",
    b'"cut', b"[1,2", b'{"a":1',
    # valid
    b'"\\ud83d\\ude00 \\u00e9 \\/ \\" \\\\ \\n"', b" [ 1 , { \"b\" : [ ] } , null ] ",
    b'{"id": 1, "id": 2, "user": {"id": 3}, "hashtags": [{"text": "z"}]}',
    b'{"scr\\u0065en_name": "esc", "screen_name": "dup"}', b"{}", b"[]", b"-0.5e+3", b"true",
    b'"' + b"\\/" * 40 + b'"', '"raw é 中 😀"'.encode(),
]


def _skipped_part_lines() -> list[bytes]:
    import json
    base = json.dumps(_rich_status(0), separators=(",", ":")).encode()
    markers = sorted(set(re.findall(rb'"S_[a-z_]+"', base)))
    assert len(markers) >= 25
    lines = [base]
    for k, marker in enumerate(markers):
        for j, edit in enumerate(_SKIPPED_PART_EDITS):
            line = json.dumps(_rich_status(k * 100 + j), separators=(",", ":")).encode()
            lines.append(line.replace(marker, edit, 1))
        # duplicate keys and blanks around a marker's member
        line = json.dumps(_rich_status(k * 100 + 99), separators=(",", ":")).encode()
        lines.append(line.replace(marker, marker + b' , "id" : 1 , "screen_name":"d", "x" : ' + marker, 1))
    lines.append(b"[" + base + b"," + base.replace(b'"id_str":"15', b'"id_str":"25', 1) + b"]")
    lines.append(b'{"statuses":[' + base + b"]}")
    lines.append(b'{"id":{"a":' + base + b"}}")
    lines.append(b'{"place":' + base + b"}")          # an unwanted first member
    lines.append(b'{"id":"5","text":"v2","author_id":"7","entities":{"hashtags":[{"tag":"h"}],'
                 b'"mentions":[{"username":"m","id":"9"}],"urls":[{"url":"u"}],'
                 b'"cashtags":[{"tag":"C"}]},"geo":{"place_id":"p"}}')
    return lines


def test_faults_in_parts_a_projection_skips_are_rejected_alike():
    """A projection's scan skips (validated, no tape nodes) the parts of a message no wanted
    column reads: a fault there rejects the line with the same reason, place and field as
    without a projection, and odd but valid JSON there (duplicate keys, escaped keys, blanks,
    deep nesting within max_depth) gives the same rows. Against the reference too."""
    lines = _skipped_part_lines()
    data = b"\n".join(lines) + b"\n"
    names = firehose.schema.TWEETS.names
    full = decode(fast(dedupe=False, max_depth=64), data, "skipped")
    want = decode(ref(dedupe=False, max_depth=64), data, "skipped")
    assert_same(full, want, "all columns")
    assert full.rejects.num_rows > 300 and full.tweets.num_rows > 300
    reasons = set(full.rejects.column("reason").to_pylist())
    assert {"invalid_escape", "lone_surrogate", "invalid_utf8", "invalid_json", "too_deep"} <= reasons
    rng = random.Random("skipped parts")
    for cols in [BENCH_COLUMNS, *([c] for c in names), rng.sample(names, 5), rng.sample(names, 12)]:
        got = decode(fast(dedupe=False, max_depth=64, columns=cols), data, "skipped")
        assert got.tweets.equals(full.tweets.select(cols)), cols
        assert got.compliance.equals(full.compliance), cols
        assert got.rejects.equals(full.rejects), cols        # (field, detail and all)
        assert got.stats == full.stats, cols


def test_every_column_alone_over_the_whole_corpus():
    """Each tweet column as a projection of its own, the whole corpus through one decoder,
    against the same column of the all-columns decode (itself the reference's, above): the
    scan keeps only the members a projection's columns read in each context (the key tables
    of ``ktab_build``), so a key an emitter reads but the table leaves out shows here as a
    column that comes out empty. Compliance, rejects and stats as without a projection. A
    generated mixed capture (v1.1, v2, Activity Streams, broken lines) rides along, and two
    lines neither has: a REST retweet whose original has its own ``full_text``, and v2
    tweets withheld (in an envelope and bare)."""
    pieces = [(p.read_bytes(), rel(p), None) for p in corpus_files()]
    pieces.append((firehose.testing.generate_bytes(1500, seed=8, dialect="mixed",
                                                   malformed_rate=0.02), "mixed.ndjson", None))
    pieces.append((
        b'{"created_at":"Wed Oct 10 20:19:24 +0000 2018","id":1050118621198921728,'
        b'"id_str":"1050118621198921728","full_text":"RT @alice: hello","lang":"en",'
        b'"user":{"id":6253282,"id_str":"6253282","screen_name":"bob","name":"Bob"},'
        b'"retweeted_status":{"created_at":"Wed Oct 10 20:00:00 +0000 2018",'
        b'"id":1050113621198921728,"id_str":"1050113621198921728","full_text":"hello, all",'
        b'"user":{"id":7,"id_str":"7","screen_name":"alice","name":"Alice"}}}\n'
        b'{"data":{"id":"1050118621198921729","text":"withheld","author_id":"9",'
        b'"created_at":"2018-10-10T20:19:24.000Z","withheld":{"copyright":false,'
        b'"country_codes":["DE","FR"]}}}\n'
        b'{"id":"1050118621198921730","text":"bare","author_id":"9","created_at":'
        b'"2018-10-10T20:19:24.000Z","edit_history_tweet_ids":["1050118621198921730"],'
        b'"withheld":{"copyright":false,"country_codes":["DE"]}}\n', "edges.ndjson", None))
    full = run(fast(dedupe=True)(), pieces)
    for col in firehose.schema.TWEETS.names:
        got = run(fast(dedupe=True, columns=[col])(), pieces)
        assert got.tweets.column_names == [col]
        assert_same(got, Decoded(full.tweets.select([col]), full.compliance, full.rejects,
                                 full.stats), f"whole corpus, column {col}")
