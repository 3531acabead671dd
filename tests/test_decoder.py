"""The Decoder's own behaviour: framing, provenance, batching, dedupe memory and state, errors,
and the GIL being released during the scan. Field-by-field agreement with the oracle over the
real corpora is tests/test_differential.py."""
from __future__ import annotations

import gzip
import os
import json
import sys
import threading

import pytest

import firehose
from firehose import schema
from firehose.errors import ParseError, StateError

try:
    from corpus import escape_dense_bodies
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import escape_dense_bodies

SNOW_EPOCH = 1288834974657


def tweet(i: int, ms: int | None = None, text: str = "hello", **extra) -> bytes:
    """A small v1.1 status with a snowflake id at time ``ms``."""
    ms = 1_650_000_000_000 + i * 1000 if ms is None else ms
    tid = ((ms - SNOW_EPOCH) << 22) | (i & 0x3FFFFF)
    obj = {"id": tid, "id_str": str(tid), "text": text, "created_at": "Wed Aug 27 13:08:45 +0000 2008",
           "user": {"id": 7, "id_str": "7", "screen_name": "u"}}
    obj.update(extra)
    return json.dumps(obj).encode() + b"\n"


def tid_of(line: bytes) -> int:
    return int(json.loads(line)["id_str"])


def decode(data: bytes, **kw) -> firehose.DecodeResult:
    dec = firehose.Decoder(**kw)
    return firehose.DecodeResult.concat([dec.feed(data, source="t"), dec.finish()])


def test_schemas_are_the_declared_ones():
    out = decode(tweet(1) + b'{"delete":{"status":{"id_str":"5"}}}\n{"x":\n')
    assert out.tweets.schema == schema.TWEETS
    assert out.compliance.schema == schema.COMPLIANCE
    assert out.rejects.schema == schema.REJECTS
    assert (out.tweets.num_rows, out.compliance.num_rows, out.rejects.num_rows) == (1, 1, 1)


def test_framing_crlf_blank_and_unterminated_last_line():
    a, b, c = tweet(1), tweet(2), tweet(3)
    data = a.replace(b"\n", b"\r\n") + b"\r\n" + b"   \n" + b + c.rstrip(b"\n")
    dec = firehose.Decoder()
    first = dec.feed(data, source="cap")
    assert first.tweets.column("id").to_pylist() == [tid_of(a), tid_of(b)]
    last = dec.finish()
    assert last.tweets.column("id").to_pylist() == [tid_of(c)]
    assert last.tweets.column("line").to_pylist() == [5]
    assert last.tweets.column("byte_offset").to_pylist() == [data.rindex(b"\n") + 1]
    assert dec.stats["lines"] == 5 and dec.stats["blank"] == 2


def test_cut_off_last_line_is_rejected_whole_with_its_place():
    good = tweet(1)
    cut = tweet(2)[:40]
    dec = firehose.Decoder()
    dec.feed(good + cut, source="cap.ndjson")
    out = dec.finish()
    rej = out.rejects.to_pylist()
    assert len(rej) == 1
    r = rej[0]
    assert (r["source"], r["line"], r["byte_offset"], r["reason"]) == ("cap.ndjson", 2, len(good), "truncated")
    assert r["raw"] == cut


@pytest.mark.parametrize("cut", [1, 3, 7, 64, 1000])
def test_any_chunking_gives_the_same_tables(cut):
    lines = [tweet(i, text="caf\u00e9 \U0001F600 " * (i % 5)) for i in range(30)]
    lines.insert(7, b'{"limit":{"track":12}}\r\n')
    lines.insert(12, b"not json\n")
    data = b"".join(lines)
    whole = decode(data)
    dec = firehose.Decoder()
    parts = [dec.feed(data[i:i + cut], source="t") for i in range(0, len(data), cut)]
    parts.append(dec.finish())
    split = firehose.DecodeResult.concat(parts)
    assert split.tweets.to_pylist() == whole.tweets.to_pylist()
    assert split.compliance.to_pylist() == whole.compliance.to_pylist()
    assert split.rejects.to_pylist() == whole.rejects.to_pylist()


def test_utf8_sequence_cut_between_chunks():
    line = json.dumps({"id_str": "12", "text": "\u00e9\u4e2d\U0001F600", "user": {}},
                      ensure_ascii=False).encode() + b"\n"
    cut = line.index("\u4e2d".encode()) + 1       # inside the 3-byte sequence
    dec = firehose.Decoder()
    dec.feed(line[:cut], source="s")
    out = dec.feed(line[cut:], source="s")
    assert out.tweets.column("text").to_pylist() == ["\u00e9\u4e2d\U0001F600"]


def test_batches_respect_batch_size():
    data = b"".join(tweet(i) for i in range(25))
    out = decode(data, batch_size=10)
    assert out.tweets.num_rows == 25
    assert [b.num_rows for b in out.tweets.to_batches()] == [10, 10, 5]


def test_source_dictionary_and_line_numbers_per_source():
    dec = firehose.Decoder()
    dec.feed(tweet(1) + tweet(2), source="a")
    dec.feed(tweet(3), source="b")
    out = dec.feed(tweet(4), source="a")
    assert dec.finish().tweets.num_rows == 0
    assert out.tweets.column("source_file").to_pylist() == ["a"]
    assert out.tweets.column("line").to_pylist() == [3]
    assert dec.sources == ["a", "b"]


def test_dedupe_first_wins_across_chunks_and_sources():
    a, b = tweet(1, text="first"), tweet(2)
    again = a.replace(b'"first"', b'"second"')
    dec = firehose.Decoder()
    r1 = dec.feed(a + b, source="x")
    r2 = dec.feed(again, source="y")
    r3 = dec.finish()
    assert r1.tweets.column("text").to_pylist() == ["first", "hello"]
    assert r2.tweets.num_rows == 0 and r3.tweets.num_rows == 0
    assert dec.stats["duplicates"] == 1
    assert decode(a + again, dedupe=False).tweets.num_rows == 2


def test_dedupe_window_forgets_old_buckets_and_counts_late_tweets():
    base = 1_650_000_000_000
    hour = 3600 * 1000
    old = tweet(1, ms=base)
    new = tweet(2, ms=base + 3 * hour)      # window 1 h: buckets of 15 min
    new2 = tweet(4, ms=base + 3 * hour + 1000)
    # one id 3 h ahead is a jump the dedupe does not trust alone (a corrupt id would otherwise
    # make it forget its window): the old id is still remembered
    dec = firehose.Decoder(dedupe_window_hours=1)
    dec.feed(old + new + old, source="s")
    assert dec.stats["duplicates"] == 1 and dec.stats["dedupe_late"] == 0
    # a second id near it confirms the jump: the old one is forgotten, and counted as late
    dec = firehose.Decoder(dedupe_window_hours=1)
    dec.feed(old + new + new2 + old, source="s")
    dec.finish()
    assert dec.stats["dedupe_late"] == 1
    assert dec.stats["duplicates"] == 0
    # within the window the same id is a duplicate
    dec = firehose.Decoder(dedupe_window_hours=1)
    near = tweet(3, ms=base + hour // 2)
    dec.feed(old + near + old, source="s")
    assert dec.stats["duplicates"] == 1 and dec.stats["dedupe_late"] == 0


def test_dedupe_memory_is_at_most_16_bytes_per_id_once_grown():
    base = 1_650_000_000_000
    data = b"".join(tweet(i, ms=base + i) for i in range(200_00))
    dec = firehose.Decoder()
    dec.feed(data, source="s")
    ids, nbytes = dec.dedupe_memory()
    assert ids == 20_000
    assert nbytes <= 16 * ids + 8 * 1024 * 2      # plus the fixed initial tables


def test_dedupe_state_round_trip_resumes_without_duplicates():
    first = b"".join(tweet(i) for i in range(50))
    dec = firehose.Decoder()
    dec.feed(first, source="s")
    state = dec.dedupe_state()
    dec2 = firehose.Decoder(dedupe_state=state)
    out = dec2.feed(first[: len(first) // 2] + tweet(99), source="s2")
    out = firehose.DecodeResult.concat([out, dec2.finish()])
    assert out.tweets.column("id").to_pylist() == [tid_of(tweet(99))]
    with pytest.raises(StateError):
        firehose.Decoder(dedupe_state=state[:-3])
    with pytest.raises(StateError):
        firehose.Decoder(dedupe_state=b"nonsense")


def test_on_error_raise_names_source_line_offset_and_field():
    data = tweet(1) + b'{"text": "no id", "user": {}}\n'
    dec = firehose.Decoder(on_error="raise")
    with pytest.raises(ParseError) as ei:
        dec.feed(data, source="cap-7.ndjson")
    e = ei.value
    assert isinstance(e, ValueError)
    assert (e.source, e.line, e.byte_offset, e.reason, e.field) == (
        "cap-7.ndjson", 2, len(tweet(1)), "missing_id", "$.id_str")
    assert "cap-7.ndjson:2" in str(e) and "$.id_str" in str(e)


@pytest.mark.parametrize("line,reason", [
    (b'{"text": "a", "user": {}, "id": 1.5}', "missing_id"),
    (b'{"a": "\\x"}', "invalid_escape"),
    (b'{"a": "\\ud83d"}', "lone_surrogate"),
    (b'{"a": "\\ude00"}', "lone_surrogate"),
    (b'{"a": "\xff"}', "invalid_utf8"),
    (b'{"a": "\xed\xa0\x80"}', "invalid_utf8"),          # a surrogate encoded in UTF-8
    (b'{"a": 1} x', "invalid_json"),
    (b'{"a": NaN}', "invalid_json"),
    (b'{"a": "tab\there"}', "invalid_json"),
    (b'{"a": [1, 2', "truncated"),
    (b'[' * 65 + b']' * 65, "too_deep"),
    (b'42', "not_an_object"),
    (b'[{"text": "x", "id_str": "1", "user": {}}, 3]', "not_an_object"),
])
def test_each_reject_reason(line, reason):
    out = decode(line + b"\n")
    assert out.rejects.column("reason").to_pylist() == [reason]
    assert out.rejects.column("raw").to_pylist() == [line]
    assert out.tweets.num_rows == 0


def test_line_too_long_and_depth_limits_are_settable():
    line = tweet(1)
    assert decode(line, max_line_bytes=len(line) - 2).rejects.column("reason").to_pylist() == ["line_too_long"]
    assert decode(line, max_line_bytes=len(line)).tweets.num_rows == 1
    deep = b'{"a":' * 10 + b"1" + b"}" * 10 + b"\n"
    assert decode(deep, max_depth=9).rejects.column("reason").to_pylist() == ["too_deep"]
    # the deepest limit allowed, a line one level deeper: rejected, not a stack overflow
    # (a limit of 50,000 crashed the process on a line that deep)
    very = b"[" * 4097 + b"]" * 4097 + b"x\n"
    assert decode(very, max_depth=4096).rejects.column("reason").to_pylist() == ["too_deep"]
    full = b"[" * 4096 + b"]" * 4096 + b"x\n"       # scanned to the limit by both scans
    assert decode(full, max_depth=4096).rejects.column("reason").to_pylist() == ["invalid_json"]
    with pytest.raises(ValueError):
        firehose.Decoder(max_depth=4097)
    assert decode(deep, max_depth=10).compliance.column("kind").to_pylist() == ["other"]


def test_a_page_with_one_bad_status_is_rejected_whole():
    page = json.dumps({"statuses": [json.loads(tweet(1)), {"text": "no id", "user": {}}]}).encode()
    out = decode(page + b"\n")
    assert out.tweets.num_rows == 0
    assert out.rejects.column("reason").to_pylist() == ["missing_id"]


def test_decode_file_plain_gzip_and_zstd(tmp_path):
    import zstandard
    data = b"".join(tweet(i) for i in range(100)) + b'{"limit":{"track":3}}'
    (tmp_path / "a.ndjson").write_bytes(data)
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(data))
    (tmp_path / "c.ndjson.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    for name in ("a.ndjson", "b.ndjson.gz", "c.ndjson.zst"):
        out = firehose.decode_file(tmp_path / name)
        assert out.tweets.num_rows == 100, name
        assert out.compliance.column("count").to_pylist() == [3]
        assert out.stats["bytes"] == len(data)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(firehose.FirehoseError, match="nope.ndjson: cannot open"):
        firehose.decode_file(tmp_path / "nope.ndjson")


def test_arrays_are_zero_copy_views_of_core_buffers():
    out = decode(b"".join(tweet(i) for i in range(10)))
    col = out.tweets.column("text").chunk(0)
    # the data buffer is the core's own memory, exported read-only, not a copy made by Arrow
    buf = col.buffers()[2]
    assert not buf.is_mutable
    assert col.to_pylist() == ["hello"] * 10


def test_gil_is_released_while_scanning():
    """While one thread is inside a single long decode call, another thread keeps running."""
    data = b"".join(tweet(i, text="x" * 3000) for i in range(20000))   # ~60 MB, one call
    eng_dec = firehose.Decoder(batch_size=1 << 30, dedupe=False)
    state = {"in_call": False, "done": False}
    progress = []

    def worker():
        state["in_call"] = True
        eng_dec._eng.decode(data, 0, len(data), 0, eng_dec._code("s"), False)
        state["in_call"] = False
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(5.0)          # the main thread only runs if the worker lets go of the GIL
    try:
        t = threading.Thread(target=worker)
        t.start()
        while not state["in_call"] and not state["done"]:
            pass
        n = 0
        while state["in_call"]:
            n += 1
        t.join()
        progress.append(n)
    finally:
        sys.setswitchinterval(old)
    assert progress[0] > 1000, "the main thread made no progress during decode: GIL held"


def test_two_threads_decode_independently_and_agree():
    data = b"".join(tweet(i) for i in range(2000))
    results = [None, None]

    def run(k):
        results[k] = decode(data)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results[0].tweets.equals(results[1].tweets)
    assert results[0].tweets.num_rows == 2000


def test_readahead_gives_the_same_result_and_stops_its_thread(tmp_path):
    data = b"".join(tweet(i) for i in range(3000))
    path = tmp_path / "c.ndjson.gz"
    path.write_bytes(gzip.compress(data))
    inline = firehose.DecodeResult.concat(firehose.iter_file(path, readahead=0, chunk_size=50_000))
    ahead = firehose.DecodeResult.concat(firehose.iter_file(path, readahead=3, chunk_size=50_000))
    assert ahead.tweets.equals(inline.tweets) and ahead.tweets.num_rows == 3000
    it = firehose.iter_file(path, readahead=2, chunk_size=10_000)
    next(it)
    it.close()                                   # the consumer stops early
    assert not [t for t in threading.enumerate() if t.name == "firehose-prefetch"]


def test_an_invalid_deflate_block_is_an_input_error_with_its_position(tmp_path):
    data = gzip.compress(bytes(range(256)) * 4000)
    path = tmp_path / "bad.ndjson.gz"
    path.write_bytes(data[:20] + bytes([data[20] ^ 0xFF, 7, 7, 7]) + data[24:])
    with pytest.raises(firehose.FirehoseError,
                       match=r"bad.ndjson.gz: (corrupt gzip stream|read failed) at decompressed "
                             r"byte 0"):
        firehose.decode_file(path)


def test_readahead_reports_a_corrupt_gzip_with_its_position(tmp_path):
    data = gzip.compress(b"".join(tweet(i) for i in range(3000)))
    path = tmp_path / "bad.ndjson.gz"
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 100 + data[len(data) // 2 + 100:])
    with pytest.raises(firehose.FirehoseError, match=r"bad.ndjson.gz: read failed at decompressed byte \d+"):
        firehose.decode_file(path)


# The scanner gives no tape nodes to members whose key the emitter never reads (_core_keys.pxi)
# but validates them all the same: the same rejects, and the classification still sees every
# member (an object's size, its first key, a page keyed by ids).
@pytest.mark.parametrize("line,reason", [
    (b'{"text": "a", "id": 1, "unread": {"k": "\\x"}}', "invalid_escape"),
    (b'{"text": "a", "id": 1, "unread": ["\\ud83d"]}', "lone_surrogate"),
    (b'{"text": "a", "id": 1, "unread": {"\\ude00": 1}}', "lone_surrogate"),
    (b'{"text": "a", "id": 1, "unread": "tab\there"}', "invalid_json"),
    (b'{"text": "a", "id": 1, "unread": [1, NaN]}', "invalid_json"),
    (b'{"text": "a", "id": 1, "unread": {"a" 1}}', "invalid_json"),
    (b'{"text": "a", "id": 1, "unread": -}', "invalid_json"),
    (b'{"text": "a", "id": 1, "unread": tru}', "invalid_json"),
    (b'{"text": "a", "id": 1, "unread": {"a": [1, 2', "truncated"),
    (b'{"text": "a", "id": 1, "unread": ' + b'[' * 64 + b']' * 64 + b'}', "too_deep"),
    (b'{"text": "a", "id": 1, "user": {"x": 1, "profile": "\\u12G4"}}', "invalid_escape"),
])
def test_members_the_emitter_does_not_read_are_still_validated(line, reason):
    out = decode(line + b"\n")
    assert out.rejects.column("reason").to_pylist() == [reason]
    assert out.tweets.num_rows == 0


def test_members_the_emitter_does_not_read_keep_the_classification():
    from firehose._reference import ReferenceDecoder
    lines = [
        b'{"data": {"delete": {"tweet": {"id": "9", "author_id": "3"}}}}',
        b'{"data": {"delete": {"tweet": {"id": "9"}}, "unread": 1}}',      # two members: not an event
        b'{"unread": {"a": 1}, "other": 2}',                                  # detail: the first key
        b'{"id": {"1": {"id_str": "11", "text": "a", "user": {"id": 1}}, "2": null}}',
        b'{"\\u0069d": {"7": {"text": "b", "id": 7}}}',
        b'{"te\\u0078t": "escaped keys", "i\\u0064_str": "8", "user": {"id": 2}}',
        b'{"text": "a", "text": "last wins", "id": 9, "unread": [1], "id": 10, "user": {}}',
        b'{"statuses": [{"text": "p", "id": 12, "unread": {"x": [1]}, "user": {"id": 4}}]}',
        b'{"a_key_longer_than_thirty_two_bytes_xx": 1, "text": "q", "id_str": "13", "user": {},'
        b' "in_reply_to_status_id_str_but_longer": "5", "sc\\"reen_name": 1, "id": 14}',
        b'{"x":1,"text":"r","id":15,"user":{"screen_name":"s"}}',
    ]
    data = b"\n".join(lines) + b"\n"
    fast = decode(data)
    dec = ReferenceDecoder()
    ref = firehose.DecodeResult.concat([dec.feed(data, source="t"), dec.finish()])
    for a, b in ((fast.tweets, ref.tweets), (fast.compliance, ref.compliance)):
        assert a.to_pylist() == b.to_pylist()
    assert fast.rejects.num_rows == ref.rejects.num_rows == 0
    assert fast.tweets.num_rows == 7 and fast.compliance.num_rows == 3


def test_key_names_follow_the_key_enum():
    import re
    from pathlib import Path
    from firehose import _core
    src = (Path(_core.__file__).parent / "_core_keys.pxi")
    if not src.exists():
        pytest.skip("sources not installed")
    enum = re.findall(r"^    KY_(\w+)", src.read_text(), re.M)
    assert enum[-1] == "COUNT"
    assert tuple(enum[:-1]) == _core.KEY_NAMES


# The core scans a line twice only when it is bad: a fast scan (fh_parse_fast, in C) builds the
# tape of a valid line; a line it does not accept goes to parse_value, which alone reports the
# fault and its place. So the fast scan must never accept a line parse_value rejects, and must
# build exactly its nodes. _fast_scan_check runs both on each line and counts
# (both accept, both reject, fast only, slow only, tapes differing).
def _mutations(lines, n, seed):
    import random
    rnd = random.Random(seed)
    bits = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b" ", b"\t", b"\x01", b"0", b"-", b"e",
            b".", b"u", b"/", b"\\u", b"\\ud83d", b"\\udc00", b"\\ud83d\\ude00", b"\\u00", b"\\x",
            b"\\\\", b'\\"', b"1e", b"nul", b"tru", b"fals", b"\\u0022", b"\\uD800\\u0041", b"\\u12G4",
            b"\xc3\xa9", b"\xe4\xb8\xad", b"\xe4\xb8", b"\xff", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\xf0\x9f\x98\x80"]
    out = []
    for _ in range(n):
        line = rnd.choice(lines)
        i = rnd.randrange(len(line))
        k = rnd.random()
        if k < 0.2:
            out.append(line[:i])
        elif k < 0.35:
            out.append(line[:i] + line[i + 1:])
        elif k < 0.7:
            out.append(line[:i] + rnd.choice(bits) + line[i + 1:])
        else:
            out.append(line[:i] + rnd.choice(bits) + line[i:])
    return out


def test_simd_level_takes_1_or_2_only():
    from firehose import _core
    old = _core.simd_level()
    for bad in (0, 3, True, "2", 1.0):
        with pytest.raises(ValueError):
            _core.simd_level(bad)
    assert _core.simd_level() == old


def _simd_levels():
    """The fast scan's builds this machine runs: 1 the baseline, 2 AVX2 (when the CPU has it)."""
    from firehose import _core
    old = _core.simd_level()
    try:
        _core.simd_level(2)
        return [1, 2]
    except ValueError:
        return [1]
    finally:
        _core.simd_level(old)


@pytest.fixture(params=_simd_levels(), ids=lambda v: {1: "baseline", 2: "avx2"}[v])
def simd(request):
    from firehose import _core
    old = _core.simd_level(request.param)
    yield request.param
    _core.simd_level(old)


def _string_edge_lines():
    """Strings of every length around the 16- and 32-byte steps, with a quote, backslash,
    control or non-ASCII byte at each place, and lines ending right after them."""
    out = []
    for ln in range(0, 70):
        body = bytes(0x61 + i % 26 for i in range(ln))
        out.append(b'{"id":1,"k":"' + body + b'"}')
        out.append(b'{"' + body + b'":1,"id":2}')
        for at in (0, 1, 15, 16, 17, 31, 32, 33, 47, 63):
            if at < ln:
                for bad in (b'\\', b'\\\\', b'\\/', b'\\"', b'\\u00e9', b'\\ud83d\\ude00', b'\x01', b'\xc3\xa9', b'\xff', b'"'):
                    out.append(b'{"id":1,"k":"' + body[:at] + bad + body[at:] + b'"}')
        out.append(b'{"id":1,"k":"' + body)                       # cut inside the string
    return out


def _escape_run_lines(n, seed):
    """Lines whose strings are dense with escapes (the AVX2 scan takes their 32-byte blocks
    whole): in a value, a key and an array, after a pad that puts them at every offset, or
    cut off inside the first string."""
    import random
    rnd = random.Random(seed)
    out = []
    for body in escape_dense_bodies(n, seed):
        pad = b"p" * rnd.randrange(0, 40)
        if rnd.random() < 0.05:
            out.append(b'{"id":1,"' + pad + b'":"' + body[:rnd.randrange(len(body) + 1)])
            continue
        out.append(b'{"id":1,"text":"' + pad + body + b'","k' + pad + body + b'":[' +
                   b'"' + body + b'"' * rnd.randrange(1, 3) + b"]}")
    return out


def _fast_scan_check_each_build(lines, min_both):
    """``_core._fast_scan_check`` of ``lines`` with each SIMD build: every build accepts what
    parse_value accepts, with the same tape, and the builds agree."""
    from firehose import _core
    results = []
    for level in _simd_levels():
        old = _core.simd_level(level)
        try:
            results.append(_core._fast_scan_check(lines, 64))
        finally:
            _core.simd_level(old)
    for both, neither, fast_only, slow_only, differ in results:
        assert (fast_only, slow_only, differ) == (0, 0, 0)
        assert both >= min_both and neither >= min_both
    assert len(set(results)) == 1


def test_fast_scan_escape_runs_agree_with_parse_value():
    """The fast scan (each build) over strings dense with escapes, valid and not."""
    _fast_scan_check_each_build(_escape_run_lines(6000, 5), 1001)


def _surrogate_pair_lines():
    """Runs of surrogate pairs (emoji) and of other escapes that put a pair across every
    32-byte block boundary, each run also with one pair broken at each place: a lone high or
    low one, the two reversed, a high one before a non-surrogate escape or a low one with a
    bad digit. The AVX2 scan takes a block up to a pair its end would cut, or up to an escape
    it does not take, and the byte scan goes on from there."""
    pair, other = b"\\ud83d\\ude00", b"\\u00e9"
    broken = (b"\\ud83d", b"\\ude00", b"\\ude00\\ud83d", b"\\ud83d\\u00e9", b"\\ud83d\\udeZ0",
              b"\\ud83d\\/", b"\\ud83d\\ud83d")
    out = []
    for pad in range(0, 40):
        for unit in (pair, pair + b" ", pair + other, pair + b"\\/"):
            run = [unit] * 12
            out.append(b'{"id":1,"k":"' + b"p" * pad + b"".join(run) + b'"}')
            for at in range(0, 12, 3):
                for bad in broken:
                    r = list(run)
                    r[at] = bad
                    out.append(b'{"id":1,"k":"' + b"p" * pad + b"".join(r) + b'"}')
    return out


def test_fast_scan_surrogate_pairs_at_every_block_offset():
    _fast_scan_check_each_build(_surrogate_pair_lines(), 160)


def _slash_escape_lines():
    """Strings whose escapes are all \\/ (v1.1's URLs), long and short, with the string at every
    offset of the 32-byte steps, and each with one \\/ at each place turned into another escape
    (valid or not), a doubled backslash, an escaped quote, a control or non-ASCII byte: the
    AVX2 scan takes such strings 32 bytes a step and hands anything else to the byte scan."""
    url = b"https:\\/\\/pbs.twimg.com\\/profile_images\\/1234567890\\/abcdefgh_normal.jpg"
    out = []
    for pad in range(0, 34):
        for body in (url, url[:20], url[:31], url + url):
            out.append(b'{"id":1,"k":"' + b"p" * pad + body + b'"}')
            at = 0
            while True:
                at = body.find(b"\\/", at)
                if at < 0:
                    break
                for bad in (b"\\x", b"\\\\", b'\\"', b"\\u00e9", b"\\", b"\x01/", b"\xc3\xa9"):
                    out.append(b'{"id":1,"k":"' + b"p" * pad + body[:at] + bad + body[at + 2:] + b'"}')
                at += 2
    return out


def test_fast_scan_slash_escapes_at_every_offset():
    lines = _slash_escape_lines()
    _fast_scan_check_each_build(lines, 100)
    from firehose import _core
    ktab = firehose.Decoder(columns=["id"])._eng._key_table()
    both, neither, fast_only, slow_only, differ = _core._fast_scan_check(lines, 64, ktab)
    assert (fast_only, slow_only, differ) == (0, 0, 0) and both > 100 and neither > 100


def test_fast_scan_builds_agree_on_every_string_edge():
    _fast_scan_check_each_build(_string_edge_lines(), 1)


def test_decoder_output_is_the_same_with_each_fast_scan():
    from firehose import _core
    from firehose.testing import generate_bytes
    data = generate_bytes(1500, seed=4, malformed_rate=0.05) + b"\n".join(_string_edge_lines())
    outs = []
    for level in _simd_levels():
        old = _core.simd_level(level)
        try:
            dec = firehose.Decoder()
            r = firehose.DecodeResult.concat([dec.feed(data, source="s"), dec.finish()])
        finally:
            _core.simd_level(old)
        outs.append((r.tweets, r.compliance, r.rejects))
    for o in outs[1:]:
        assert all(a.equals(b) for a, b in zip(outs[0], o))


@pytest.mark.parametrize("dialect", ["v1.1", "v2", "activity"])
def test_fast_scan_builds_the_tape_of_parse_value(dialect, simd):
    from firehose import _core
    from firehose.testing import generate
    lines = [l.rstrip(b"\n") for l in generate(300, seed=3, dialect=dialect, malformed_rate=0.1)]
    lines = [l for l in lines if l.strip()]
    lines += [
        b'{"te\\u0078t": "a", "\\u0069d": 1, "i\\u0064_str": "1", "sc\\"reen_name": 1}',
        b'{"a_key_longer_than_thirty_two_bytes_xx": 1, "in_reply_to_status_id_str": "5"}',
        b'{"id": 1, "x": [1, -0, 0.5, 1e5, -1.5E-3, 12345678901234567890, true, false, null]}',
        b' { "id" : 1 , "user" : { "id" : 2 } , "x" : [ ] , "y" : { } } ',
        b'{"id": 1, "x": "\\ud83d\\ude00\\u00e9\\/\\b\\f\\n\\r\\t\\"\\\\"}',
        # raw UTF-8 in strings (the fast scan checks it): valid, then not
        '{"id": 1, "x": "café 中文😀 long enough for the 16-byte steps 中", "é": "é"}'.encode(),
        b'{"id": 1, "x": "\xc3"}', b'{"id": 1, "x": "0123456789abcdef0123\xed\xa0\x80"}',
        b'{"id": 1, "x": "\xf4\x90\x80\x80"}', b'{"id": 1, "x": "ab\xe0\x80\xaf"}',
        b'{"id": 1, "x": "0123456789abcdef\xf0\x9f\x98"}',
    ]
    for depth in (64, 3):
        both, neither, fast_only, slow_only, differ = _core._fast_scan_check(lines, depth)
        assert (fast_only, slow_only, differ) == (0, 0, 0) and both > 0
        both, neither, fast_only, slow_only, differ = _core._fast_scan_check(
            _mutations(lines, 3000, 11), depth)
        assert (fast_only, slow_only, differ) == (0, 0, 0) and both > 0 and neither > 0


def test_json_level_rejects_name_the_field_where_the_fault_is():
    """A malformed line's reject names the JSON path of the value (or, for a fault in a key,
    the object) where the scan found the fault, as ParseError does with on_error="raise"."""
    lines = [b'{"id_str":"1","text":"a\\ud800b","user":{"id_str":"2"}}',
             b'{"id_str":"3","text":"bad \\x escape"}',
             b'{"id_str":"4","text":"ok","user":{"id_str":"2","name":"\xff"}}',
             b'{"id_str":"5","entities":{"urls":[{"u":1},{"url":"ab\\q"}]}}',
             b'{"id_str":"6","user":{"id_str":"2","na\\qme":"x"}}',
             b'{"id_str":"7","n":[1,2,NaN]}',
             b'{"id_str":"9","a b":{"c":tru}}',
             b'[{"id_str":"10"},{"id_str":"11","x":01}]',
             b'{"id_str":"12"}}',
             b'{"id_str":"8","text":"cut']
    want = [("lone_surrogate", "$.text"), ("invalid_escape", "$.text"),
            ("invalid_utf8", "$.user.name"), ("invalid_escape", "$.entities.urls[1].url"),
            ("invalid_escape", "$.user"), ("invalid_json", "$.n[2]"),
            ("invalid_json", '$["a b"].c'), ("invalid_json", "$[1].x"), ("invalid_json", "$"),
            ("truncated", "$.text")]
    dec = firehose.Decoder()
    out = firehose.DecodeResult.concat([dec.feed(b"\n".join(lines), source="s"),
                                        dec.finish()])
    assert [(r["reason"], r["field"]) for r in out.rejects.to_pylist()] == want
    with pytest.raises(firehose.ParseError) as e:
        firehose.Decoder(on_error="raise").feed(lines[3] + b"\n", source="s")
    assert e.value.field == "$.entities.urls[1].url" and "at $.entities.urls[1].url" in str(e.value)


def test_the_path_of_a_fault_never_fails_on_arbitrary_bytes():
    import random
    from firehose.decoder import json_path_at
    rnd = random.Random(5)
    alphabet = b'{}[],:"\\ abc01\xff\n'
    for _ in range(3000):
        raw = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 60)))
        got = json_path_at(raw, rnd.randint(-2, len(raw) + 2))
        assert got is None or got.startswith("$")
    deep = json_path_at(b"[" * 5000 + b"x", 5000)
    assert deep.endswith("...(5000 levels)") and len(deep) < 200


def test_id_strings_read_eight_digits_a_step():
    # the core reads id digit strings 8 bytes a step: lengths around 8 and 16, the int64 limit,
    # and a non-digit at every place of a full 8-byte step fall back to the numeric "id"
    cands = ["0", "7", "12345678", "123456789", "1234567890123456", "12345678901234567",
             "9223372036854775807", "9223372036854775808", "9999999999999999999",
             "10000000000000000000", "0000000000000000001", "", "-1", "1.5"]
    cands += ["12345678901234567"[:i] + c + "12345678901234567"[i + 1:]
              for i in range(17) for c in ("/", ":", "a", " ", "\u00e9")]
    lines, want = [], []
    for k, c in enumerate(cands):
        fallback = 10 ** 17 + k
        lines.append(json.dumps({"id": fallback, "id_str": c, "text": "t", "user": {}}).encode())
        ok = c.isascii() and c.isdigit() and 1 <= len(c) <= 19 and int(c) < 2 ** 63
        want.append(int(c) if ok else fallback)
    out = decode(b"\n".join(lines) + b"\n", dedupe=False)
    assert out.tweets.column("id").to_pylist() == want


def test_a_source_code_outside_its_dictionary_is_an_error_and_the_batch_is_dropped():
    """Batches leave the core through the C data interface, which checks nothing: the core
    checks what pyarrow's constructors did (here a source code past the dictionary given to
    take_tweets) and drops the batch whole, so the next one is aligned."""
    from firehose import _core
    from firehose.testing import generate_bytes
    data = generate_bytes(50, seed=1)
    e = _core.Engine()
    e.decode(data, 0, len(data), 0, 5, True)
    assert e.pending_tweets > 0
    with pytest.raises(ValueError, match="dictionary index 5 out of range for source_file"):
        e.take_tweets(["only-one"])
    assert e.pending_tweets == 0
    more = generate_bytes(50, seed=2)              # new ids: the first ones were admitted
    e.decode(more, 0, len(more), 0, 0, True)
    b = e.take_tweets(["a"])
    b.validate(full=True)
    assert b.num_rows > 0 and set(b.column("source_file").to_pylist()) == {"a"}


def test_a_kept_column_does_not_keep_the_rest_of_its_batch():
    """Each column is imported on its own: keeping the ids of a batch (a projection, a
    sink's buffer) lets the other columns' memory go."""
    import ctypes
    import gc
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc's mallinfo2")

    class Info(ctypes.Structure):
        _fields_ = [(k, ctypes.c_size_t) for k in ("arena", "ordblks", "smblks", "hblks",
                                                   "hblkhd", "usmblks", "fsmblks", "uordblks",
                                                   "fordblks", "keepcost")]
    libc.mallinfo2.restype = Info

    def in_use():
        gc.collect()
        m = libc.mallinfo2()
        return m.uordblks + m.hblkhd

    from firehose.testing import generate_bytes
    data = generate_bytes(20000, seed=9)
    dec = firehose.Decoder()
    res = firehose.DecodeResult.concat([dec.feed(data, source="a"), dec.finish()])
    del dec, data
    table = res.tweets
    del res
    held = in_use()
    big = table.nbytes
    ids = table.column("id")
    del table
    assert held - in_use() > big // 2, (held, in_use(), big)
    assert len(ids) > 0


def test_columns_is_a_projection_pushed_into_the_core(tmp_path):
    """``columns=``: the tweets table has just those columns, in the order asked, equal to
    the same columns of a full decode, across batches and sources (the source_file
    dictionary widened as without a projection); decode_file and iter_file pass it on; an
    empty result has the projected schema."""
    data = b"".join(tweet(i, text=f"t{i} \\u00e9") for i in range(40))
    cols = ["source_file", "text", "author_screen_name", "line"]
    full, proj = firehose.Decoder(batch_size=7), firehose.Decoder(batch_size=7, columns=cols)
    outs = []
    for dec in (full, proj):
        parts = [dec.feed(data[:900], source="a"), dec.feed(data[900:], source="a"),
                 dec.feed(data, source="b"), dec.finish()]
        outs.append(firehose.DecodeResult.concat(parts))
    assert outs[1].tweets.column_names == cols
    assert outs[1].tweets.num_rows == 40          # (the ids of "b" repeat "a"'s: duplicates)
    assert outs[1].tweets.equals(outs[0].tweets.select(cols))
    assert proj.stats == full.stats
    empty = proj.feed(b'{"delete":{"status":{"id_str":"5"}}}\n', source="c")
    assert empty.tweets.column_names == cols and empty.tweets.num_rows == 0
    assert empty.compliance.num_rows == 1
    (tmp_path / "a.ndjson").write_bytes(data)
    got = firehose.decode_file(tmp_path / "a.ndjson", columns=["text", "id"])
    assert got.tweets.column_names == ["text", "id"] and got.tweets.num_rows == 40
    assert all(r.tweets.column_names == ["lang"]
               for r in firehose.iter_file(tmp_path / "a.ndjson", columns=["lang"]))


def test_columns_must_name_tweet_columns_once():
    with pytest.raises(ValueError, match="no tweet column 'txt'"):
        firehose.Decoder(columns=["id", "txt"])
    with pytest.raises(ValueError, match="named twice"):
        firehose.Decoder(columns=["id", "text", "id"])
    with pytest.raises(ValueError, match="at least one"):
        firehose.Decoder(columns=[])
    with pytest.raises(TypeError, match="list of column names"):
        firehose.Decoder(columns="text")
    from firehose import _core
    with pytest.raises(ValueError, match="out of range"):
        _core.Engine(columns=[99])
    with pytest.raises(ValueError, match="at least one"):
        _core.Engine(columns=[])
    with pytest.raises(TypeError, match="columns would be ignored"):
        next(firehose.iter_file(__file__, decoder=firehose.Decoder(), columns=["id"]))


def _bad_line_data(n: int = 400) -> bytes:
    """Tweets with a few faults (rejects carry their raw bytes) and CRLF / blank framing."""
    lines = [tweet(i, text="caf\u00e9 \U0001f600 #x") for i in range(n)]
    lines[7] = b'{"id": 1, "text": "cut\n'
    lines[50] = b"\r\n"
    lines[90] = tweet(90).rstrip(b"\n") + b"\r\n"
    lines[123] = b'{"bad": \xff}\n'
    return b"".join(lines) + tweet(n).rstrip(b"\n")      # no final newline


def _all(results) -> firehose.DecodeResult:
    return firehose.DecodeResult.concat(results)


def _same(a: firehose.DecodeResult, b: firehose.DecodeResult) -> None:
    assert a.tweets.equals(b.tweets) and a.compliance.equals(b.compliance)
    assert a.rejects.equals(b.rejects)


@pytest.mark.parametrize("kind", ["memoryview", "bytearray", "mmap", "array", "numpy"])
def test_feed_takes_any_buffer_without_copying_it_and_keeps_no_reference(kind, tmp_path):
    import array
    import mmap

    import numpy as np
    data = _bad_line_data()
    want = _all(_feed_cut(data, bytes, 997))
    if kind == "mmap":
        path = tmp_path / "c.ndjson"
        path.write_bytes(data)
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            got = _all(_feed_cut(m, memoryview, 997))
            m.close()                # no view of it is left: close() would raise BufferError
    elif kind == "array":
        buf = array.array("b", data)    # signed bytes: cast, not copied
        got = _all(_feed_cut(buf, memoryview, 997))
    elif kind == "numpy":
        got = _all(_feed_cut(np.frombuffer(data, np.uint8), memoryview, 997))
    else:
        buf = bytearray(data)
        got = _all(_feed_cut(buf, bytearray if kind == "bytearray" else memoryview, 997))
        buf += b"x"                  # not locked after the calls: nothing holds a view
    _same(got, want)
    assert want.rejects.num_rows == 2 and want.tweets.num_rows == 398


def _feed_cut(buf, wrap, step):
    """Feed buf in pieces of ``step`` bytes, each as ``wrap`` of the slice."""
    dec = firehose.Decoder()
    out = []
    mv = memoryview(buf).cast("B")
    for i in range(0, len(mv), step):
        piece = mv[i:i + step]
        out.append(dec.feed(wrap(piece) if wrap is not memoryview else piece, source="s"))
    out.append(dec.finish())
    mv.release()
    return out


def test_feed_copies_a_strided_buffer_and_still_takes_bytes_like_objects():
    data = tweet(1) + tweet(2)
    doubled = bytes(b for c in data for b in (c, 0))
    strided = memoryview(doubled)[::2]           # not contiguous: copied
    assert not strided.c_contiguous
    assert firehose.Decoder().feed(strided).tweets.num_rows == 2
    with pytest.raises(TypeError):
        firehose.Decoder().feed("text is not bytes")


def test_a_mapped_file_gives_what_read_chunks_give(tmp_path):
    from firehose.reader import iter_chunks, map_chunks
    data = _bad_line_data(3000)
    path = tmp_path / "c.ndjson"
    path.write_bytes(data)
    for size, start in ((50_000, 0), (4096 * 3, 0), (65_537, 0), (65_537, 70_001), (1 << 22, 0)):
        read = [(bytes(c), o) for c, o in iter_chunks(path, size, start=start)]
        got = []
        for c, o in map_chunks(path, size, start=start):
            assert isinstance(c, memoryview) and c.readonly
            got.append((bytes(c), o))
        assert got == read
        # a chunk kept past its turn is released (its mapping closed), not left dangling
        kept = [c for c, _ in map_chunks(path, size, start=start)]
        with pytest.raises(ValueError, match="released"):
            bytes(kept[0])
        assert _all(firehose.iter_file(path, chunk_size=size, readahead=0)).tweets.num_rows == 2998


@pytest.mark.parametrize("readahead", [0, 1, 3])
def test_read_into_chunks_gives_what_read_chunks_give(tmp_path, readahead):
    """Chunks read into buffers used again and again: the same bytes at the same offsets as
    fresh reads, with and without the read-ahead thread (its ring of buffers: a chunk is only
    read into again once the consumer has asked for the one after the next ``readahead``),
    and the decode of the file the same whatever the chunk size (lines cut by chunks carried)."""
    from firehose.reader import iter_chunks, read_into_chunks
    data = _bad_line_data(3000)
    path = tmp_path / "c.ndjson"
    path.write_bytes(data)
    want = _all(firehose.iter_file(path, mmap=True, readahead=0))
    for size, start in ((50_000, 0), (4096 * 3, 0), (65_537, 0), (65_537, 70_001), (1 << 22, 0), (7, 0)):
        read = [(bytes(c), o) for c, o in iter_chunks(path, size, start=start)]
        got = []
        for c, o in read_into_chunks(path, size, start=start, readahead=readahead):
            assert isinstance(c, memoryview)
            got.append((bytes(c), o))
        assert got == read
        if size >= 4096:
            res = _all(firehose.iter_file(path, chunk_size=size, readahead=readahead))
            assert res.tweets.equals(want.tweets) and res.rejects.equals(want.rejects)
            assert res.tweets.num_rows == 2998
    # the default (mmap=None) reads on one thread; mmap=False too
    for mmap in (None, False):
        assert _all(firehose.iter_file(path, mmap=mmap, chunk_size=10_000)).tweets.equals(want.tweets)


def test_read_into_chunks_stops_at_a_truncated_file(tmp_path):
    from firehose.reader import read_into_chunks
    path = tmp_path / "c.ndjson"
    path.write_bytes(tweet(0) * 100)
    it = read_into_chunks(path, 4096)
    first = bytes(next(it)[0])
    os.truncate(path, 5000)                     # (a mapping would die of SIGBUS here)
    assert first + b"".join(bytes(c) for c, _ in it) == path.read_bytes()


def test_read_into_chunks_sizes_its_buffers_by_the_file(tmp_path):
    """A small file gets a buffer of its size, not chunk_size (4 MiB zeroed a buffer, with
    read-ahead four of them, cost ~7 ms a file)."""
    from firehose.reader import read_into_chunks
    path = tmp_path / "c.ndjson"
    path.write_bytes(tweet(0) * 5)
    for readahead in (0, 2):
        chunks = [(c.obj, bytes(c)) for c, _ in read_into_chunks(path, 4 << 20, readahead=readahead)]
        assert [len(b) for b, _ in chunks] == [path.stat().st_size]
        assert chunks[0][1] == path.read_bytes()


@pytest.mark.parametrize("reader", ["map_chunks", "read_into_chunks"])
def test_what_cannot_be_mapped_is_read(tmp_path, reader):
    """Compressed (and empty) files go to read_chunks, with or without read-ahead."""
    from firehose import reader as readers
    chunks_of = getattr(readers, reader)
    data = _bad_line_data(500)
    (tmp_path / "c.ndjson.gz").write_bytes(gzip.compress(data))
    (tmp_path / "e.ndjson").write_bytes(b"")
    chunks = list(chunks_of(tmp_path / "c.ndjson.gz", 10_000))
    assert all(isinstance(c, bytes) for c, _ in chunks) and b"".join(c for c, _ in chunks) == data
    assert list(chunks_of(tmp_path / "e.ndjson", 10_000)) == []
    assert list(chunks_of(tmp_path / "c.ndjson.gz", 10_000, readahead=2))[-1][1] == chunks[-1][1]


def test_a_view_kept_by_the_consumer_keeps_its_chunk_mapped(tmp_path):
    from firehose.reader import map_chunks
    path = tmp_path / "c.ndjson"
    path.write_bytes(_bad_line_data(300))
    kept = []
    for c, _ in map_chunks(path, 8192):
        kept.append(c[:100])                   # a slice outlives the chunk's turn
    assert b"".join(bytes(k) for k in kept[:1]) == path.read_bytes()[:100]


@pytest.mark.parametrize("reader", ["map_chunks", "read_into_chunks"])
def test_a_growing_plain_file_is_read_on(tmp_path, reader):
    from firehose import reader as readers
    path = tmp_path / "c.ndjson"
    path.write_bytes(tweet(0) * 100)
    it = getattr(readers, reader)(path, 4096)
    got = [bytes(next(it)[0])]
    with open(path, "ab") as f:
        f.write(tweet(1) * 100)
    got += [bytes(c) for c, _ in it]
    assert b"".join(got) == path.read_bytes()


def test_a_fifo_is_opened_once(tmp_path):
    """iter_file on a named pipe reads it through one open (a second open after the writer
    has gone waits for ever, and the data written before it is lost)."""
    import os
    import threading
    fifo = str(tmp_path / "p.fifo")
    os.mkfifo(fifo)
    data = b"".join(tweet(i) for i in range(30))

    def write():
        with open(fifo, "wb") as f:
            f.write(data)
    w = threading.Thread(target=write, daemon=True)
    w.start()
    out = {}
    r = threading.Thread(target=lambda: out.update(res=firehose.decode_file(fifo)), daemon=True)
    r.start()
    r.join(20)
    assert not r.is_alive(), "decode_file of a FIFO hung"
    assert out["res"].tweets.num_rows == 30


def test_iter_file_can_read_instead_of_mapping(tmp_path):
    data = b"".join(tweet(i) for i in range(50))
    (tmp_path / "a.ndjson").write_bytes(data)
    mapped = firehose.decode_file(tmp_path / "a.ndjson")
    read = firehose.decode_file(tmp_path / "a.ndjson", mmap=False)
    assert read.tweets.equals(mapped.tweets) and read.tweets.num_rows == 50
    parts = list(firehose.iter_file(tmp_path / "a.ndjson", mmap=False, chunk_size=999))
    assert sum(p.tweets.num_rows for p in parts) == 50


def test_a_chunk_held_as_an_arrow_buffer_does_not_stop_the_mapping_reader(tmp_path):
    import pyarrow as pa
    from firehose.reader import map_chunks
    data = b"".join(tweet(i) for i in range(200))
    (tmp_path / "a.ndjson").write_bytes(data)
    kept = [pa.py_buffer(chunk) for chunk, _ in map_chunks(tmp_path / "a.ndjson", 8192)]
    assert b"".join(k.to_pybytes() for k in kept) == data


def test_an_empty_buffer_of_any_shape_is_an_empty_feed():
    import numpy as np
    dec = firehose.Decoder()
    for empty in (np.zeros((0, 5)), np.zeros((3, 0), np.int32), bytearray(), memoryview(b"")):
        out = dec.feed(empty, source="e")
        assert out.tweets.num_rows == 0 and out.rejects.num_rows == 0
    assert dec.feed(tweet(1), source="e").tweets.num_rows == 1


def _malloc_bytes() -> int:
    """Bytes malloc has handed out and not got back (glibc's mallinfo2: the heap's in-use
    bytes plus mmapped blocks), whatever of them is resident."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("no glibc mallinfo2")
    libc.mallinfo2.restype = MallInfo2
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd


def test_a_small_batch_after_a_large_one_does_not_keep_its_size():
    """Column buffers start at the last batch's size (fewer regrowths), but a small batch
    exported after a large one is shrunk to its content: eight kept one-row results after
    eight 2000-row batches hold about nothing, not eight large batches' buffers."""
    import gc
    from firehose.testing import generate_bytes
    big = generate_bytes(2000, seed=4, dup_rate=0.0)
    dec = firehose.Decoder(batch_size=2000, dedupe=False)
    kept = []
    dec.feed(big, source="w")
    gc.collect()
    before = _malloc_bytes()
    for _ in range(8):
        dec.feed(big, source="w")            # a full batch, exported and dropped
        kept.append(dec.feed(tweet(1), source="w"))
    gc.collect()
    grown = _malloc_bytes() - before
    assert all(k.tweets.num_rows == 1 for k in kept)
    # (without the shrink: ~2.7 MB, the large batches' string and offset buffers; with it,
    # less than before the loop)
    assert grown < 1 << 20, f"{grown / 2**20:.1f} MiB held by eight one-row results"


def test_fast_scan_with_a_projections_key_table_builds_the_tape_of_parse_value(simd):
    """A projection's key table (which members get tape nodes, by context): the fast scan
    with it accepts what parse_value accepts with it, with the same tape, over generated lines
    of each dialect, v1.1 statuses with every skippable part, and mutations of both."""
    import random
    from firehose import _core
    from firehose.testing import generate
    try:
        from test_differential import BENCH_COLUMNS, _skipped_part_lines
    except ImportError:  # pragma: no cover - tests/ imported as a package
        from tests.test_differential import BENCH_COLUMNS, _skipped_part_lines
    lines = _skipped_part_lines()
    for dialect in ("v1.1", "v2", "activity"):
        lines += [l.rstrip(b"\n") for l in generate(150, seed=5, dialect=dialect, malformed_rate=0.1)]
    lines = [l for l in lines if l.strip()]
    names = schema.TWEETS.names
    rng = random.Random(17)
    projections = [BENCH_COLUMNS, ["id"], ["text"], ["author_name"], ["hashtags"],
                   ["quoted_text"], ["retweeted_screen_name"], ["media_types"], ["place_id"],
                   rng.sample(names, 6), rng.sample(names, 15)]
    mutated = _mutations(lines, 3000, 23)
    for cols in projections:
        ktab = firehose.Decoder(columns=cols)._eng._key_table()
        for depth in (64, 5):
            both, neither, fast_only, slow_only, differ = _core._fast_scan_check(lines, depth, ktab)
            assert (fast_only, slow_only, differ) == (0, 0, 0) and both > 0, cols
            both, neither, fast_only, slow_only, differ = _core._fast_scan_check(mutated, depth, ktab)
            assert (fast_only, slow_only, differ) == (0, 0, 0) and both > 0 and neither > 0, cols


def _key_memory_lines():
    """A v1.1 status again and again (the key memory learns its keys), each time with one key
    changed just so: a byte changed, one longer or shorter (a prefix of the next key, the key
    plus a byte), escaped, spaced from its colon, without its colon, the line cut right after
    the key or near it (fewer than 32 bytes left), a blank after the colon, a key closing early."""
    from firehose.testing import generate
    base = [l.rstrip(b"\n") for l in generate(40, seed=11) if l.startswith(b'{"created_at"')][:3]
    out = []
    for line in base:
        keys = [k for k in (b'"id"', b'"id_str"', b'"text"', b'"user"', b'"screen_name"',
                            b'"followers_count"', b'"entities"', b'"hashtags"', b'"lang"',
                            b'"retweeted_status"', b'"quoted_status_id"') if k + b":" in line]
        for k in keys:
            at = line.index(k + b":")
            body = k[1:-1]
            variants = [k[:2] + bytes([k[2] ^ 1]) + k[3:], b'"' + body + b'x"', b'"' + body[:-1] + b'"',
                        b'"' + body[:1] + b"\\u%04x" % body[1] + body[2:] + b'"', k + b" ", k + b"\t"]
            out += [line, line]
            for v in variants:
                out.append(line[:at] + v + line[at + len(k):])
            out.append(line[:at] + k + b": " + line[at + len(k) + 1:])      # a blank after it
            out.append(line[:at] + k + line[at + len(k) + 1:])              # no colon
            out.append(line[:at] + k[:-1] + b'":"' + line[at + len(k) + 1:])  # a string value closing it
            for cut in (len(k), len(k) + 1, len(k) + 5, len(k) + 30, len(k) + 31, len(k) + 33):
                out.append(line[:at + cut])
    return out


def test_fast_scan_key_memory_takes_only_the_same_key(simd):
    """The projection's key memory (fh_kp): a key is taken from it only when the line's bytes
    are that key and its colon; near misses, escapes and cut lines are read and judged as
    without it (against parse_value, with the memory and without)."""
    from firehose import _core
    try:
        from test_differential import BENCH_COLUMNS
    except ImportError:  # pragma: no cover - tests/ imported as a package
        from tests.test_differential import BENCH_COLUMNS
    lines = _key_memory_lines()
    assert len(lines) > 300
    for cols in (BENCH_COLUMNS, ["id"], ["author_screen_name", "hashtags"], ["quoted_status_id"]):
        ktab = firehose.Decoder(columns=cols)._eng._key_table()
        with_memory = _core._fast_scan_check(lines, 64, ktab, True)
        without = _core._fast_scan_check(lines, 64, ktab, False)
        both, neither, fast_only, slow_only, differ = with_memory
        assert (fast_only, slow_only, differ) == (0, 0, 0), cols
        assert both > 100 and neither > 100
        assert with_memory == without


def test_key_memory_numbers_a_kept_first_key_learned_where_it_was_skipped(simd):
    """An entry learned for a key where it was skipped unnumbered (its length wanted nowhere in
    the row) must not give that key its number where it is kept whatever it is (an object's
    first member): the entry's slot is the previous key's, so such a key lands in slot 0 (an
    object's first key) after a key whose slot is 0. Many previous keys make some land there."""
    from firehose import _core
    lines = []
    for b in (b"retweeted_status", b"quoted_status", b"extended_tweet", b"entities", b"favorited",
              b"truncated", b"display_text_range", b"possibly_sensitive", b"timestamp_ms"):
        for i in range(600):
            lines.append(b'{"a%d":1,"%s":2,"id":%d,"text":"t"}' % (i, b, i + 1))
            lines.append(b'{"%s":1,"id":%d,"text":"t"}' % (b, i + 1))
    for cols in (["id"], ["text"], ["author_id"]):
        ktab = firehose.Decoder(columns=cols)._eng._key_table()
        both, neither, fast_only, slow_only, differ = _core._fast_scan_check(lines, 64, ktab)
        assert (fast_only, slow_only, differ) == (0, 0, 0) and both == len(lines), cols


def test_decoding_with_the_key_memory_matches_the_reference():
    """Whole decodes of those lines with projections: the reference's rows and rejects."""
    try:
        from test_differential import BENCH_COLUMNS, fast, ref, decode, assert_same
    except ImportError:  # pragma: no cover - tests/ imported as a package
        from tests.test_differential import BENCH_COLUMNS, fast, ref, decode, assert_same
    data = b"\n".join(_key_memory_lines()) + b"\n"
    want = decode(ref(dedupe=False), data, "kp")
    assert want.tweets.num_rows > 100 and want.rejects.num_rows > 100
    for cols in (BENCH_COLUMNS, ["id", "author_screen_name"]):
        got = decode(fast(dedupe=False, columns=cols), data, "kp")
        assert_same(got, type(want)(want.tweets.select(cols), want.compliance, want.rejects,
                                    want.stats), f"columns {cols}")


def test_key_tables_of_projections():
    """All columns: no table (the scan keeps every numbered key), and a projection naming
    every column is all columns; the benchmark's projection keeps a user's id, id_str,
    screen_name and followers_count, a retweet's ids and quote, no user's other members."""
    from firehose import _core
    names = list(schema.TWEETS.names)
    full = firehose.Decoder()._eng._key_table()
    assert firehose.Decoder(columns=names[::-1])._eng._key_table() == full
    bench = ["id", "created_at", "text", "lang", "author_id", "author_screen_name",
             "author_followers_count", "hashtags", "retweeted_status_id", "quoted_status_id"]
    kt = firehose.Decoder(columns=bench)._eng._key_table()
    assert kt != full and len(kt) == 8 * 256
    key = {n: i for i, n in enumerate(_core.KEY_NAMES)}
    user, rt = kt[3 * 256:4 * 256], kt[4 * 256:5 * 256]
    assert sorted(n for n, i in key.items() if user[i] & 0x80) == \
        ["followers_count", "id", "id_str", "screen_name"]
    assert sorted(n for n, i in key.items() if rt[i] & 0x80) == ["id", "id_str", "quoted_status"]
