"""``iter_file(threads=N)`` / ``decode_file(threads=N)``: several worker threads, one result.

The parallel decode must give what one thread gives: the same rows in the same order, line
numbers, dedupe (first wins across segments, files and a resume), stats, position, rejects
and errors, on every corpus file and on generated captures with duplicates and broken lines,
plain (mapped or read), gzip and zstd, with and without a projection.
"""
from __future__ import annotations

import gzip
import threading

import pyarrow as pa
import pytest

import firehose
from firehose.decoder import DecodeResult
from firehose.errors import InputError, ParseError
from firehose.testing import generate_bytes

from corpus import STAT_KEYS, corpus_params, table_diff


def _decode(path, threads, *, decoder=None, **kw):
    dec = decoder if decoder is not None else firehose.Decoder(
        **{k: kw.pop(k) for k in list(kw) if k in ("columns", "batch_size", "dedupe",
                                                   "max_line_bytes", "on_error")})
    parts = list(firehose.iter_file(path, decoder=dec, threads=threads, **kw))
    return DecodeResult.concat(parts), dec, parts


def _same(a: DecodeResult, b: DecodeResult, what: str) -> None:
    for kind in ("tweets", "compliance", "rejects"):
        ta, tb = getattr(a, kind), getattr(b, kind)
        d = table_diff(ta, tb, names=("parallel", "one thread"))
        assert d is None, f"{what}: {kind}: {d}"
        assert ta.schema == tb.schema, f"{what}: {kind} schema"


def _stats(dec) -> dict:
    return {k: dec.stats[k] for k in STAT_KEYS}


@pytest.mark.parametrize("path", corpus_params())
def test_every_corpus_file_decodes_as_one_thread_does(path):
    for columns in (None, ["text", "line", "source_file"], ["author_id", "id", "hashtags"]):
        one, d1, _ = _decode(path, 1, columns=columns)
        for threads, chunk in ((2, 4096),) if columns else ((2, 4096), (3, 1 << 16)):
            par, d2, _ = _decode(path, threads, columns=columns, chunk_size=chunk)
            what = f"{path.name} columns={columns} threads={threads} chunk={chunk}"
            _same(par, one, what)
            assert _stats(d2) == _stats(d1), what
            assert d2.position() == d1.position(), what


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Duplicates (some far apart), broken lines, blanks, CRLF and no final newline."""
    data = generate_bytes(3000, seed=11, dup_rate=0.08, malformed_rate=0.03, keepalive_rate=0.02)
    data = data.replace(b"\n", b"\r\n", 40)           # some CRLF lines
    data += data[:200_000].split(b"\n", 1)[1]         # re-sends of the start, far behind
    data = data.rstrip(b"\n")                         # the last line without a newline
    d = tmp_path_factory.mktemp("par")
    (d / "c.ndjson").write_bytes(data)
    (d / "c.ndjson.gz").write_bytes(gzip.compress(data, 1))
    return d


@pytest.mark.parametrize("name,mmap", [("c.ndjson", True), ("c.ndjson", False),
                                       ("c.ndjson.gz", True)])
@pytest.mark.parametrize("columns", [None, ["hashtags", "text", "line"]])
def test_generated_capture_with_duplicates_and_broken_lines(capture, name, mmap, columns):
    path = capture / name
    one, d1, _ = _decode(path, 1, columns=columns, mmap=mmap)
    assert d1.stats["duplicates"] > 200 and d1.stats["rejects"] > 50 and d1.stats["blank"] > 20
    for chunk in (1000, 50_000, 1 << 20):           # 1000: lines longer than a segment
        par, d2, parts = _decode(path, 2, columns=columns, mmap=mmap, chunk_size=chunk)
        what = f"{name} mmap={mmap} columns={columns} chunk={chunk}"
        _same(par, one, what)
        assert _stats(d2) == _stats(d1), what
        assert d2.position() == d1.position(), what
        assert d2.dedupe_state() == d1.dedupe_state(), what
        if chunk == 50_000:
            assert len(parts) > 20                  # really cut into segments


def test_dedupe_spans_files_and_a_resume(tmp_path):
    a = generate_bytes(800, seed=3, dup_rate=0.05)
    b = a[len(a) // 2:].split(b"\n", 1)[1] + generate_bytes(300, seed=4)   # half re-sent
    (tmp_path / "a.ndjson").write_bytes(a)
    (tmp_path / "b.ndjson").write_bytes(b)

    def run(threads, resume_state=None):
        dec = firehose.Decoder(dedupe_state=resume_state)
        out = []
        for p in ("a.ndjson", "b.ndjson"):
            out += firehose.iter_file(tmp_path / p, decoder=dec, threads=threads, chunk_size=9000)
        return DecodeResult.concat(out), dec

    one, d1 = run(1)
    par, d2 = run(2)
    _same(par, one, "two files")
    assert _stats(d2) == _stats(d1) and d1.stats["duplicates"] > 100
    assert par.tweets.column("source_file").to_pylist()[-1].endswith("b.ndjson")
    # a resume from the first run's dedupe memory: every tweet of b is then a duplicate
    again, d3 = run(2, resume_state=d1.dedupe_state())
    assert again.tweets.num_rows == 0 and d3.stats["duplicates"] == d1.stats["tweets"] + \
        d1.stats["duplicates"]


def test_first_reject_raises_with_its_place(tmp_path, capture):
    path = tmp_path / "r.ndjson"
    path.write_bytes(generate_bytes(30, seed=5) + (capture / "c.ndjson").read_bytes())
    with pytest.raises(ParseError) as one:
        list(firehose.iter_file(path, on_error="raise"))
    got = []
    with pytest.raises(ParseError) as par:
        for res in firehose.iter_file(path, on_error="raise", threads=2, chunk_size=2000):
            got.append(res)
    e1, e2 = one.value, par.value
    assert e1.line > 30
    assert (e2.source, e2.line, e2.byte_offset, e2.reason, e2.field) == \
        (e1.source, e1.line, e1.byte_offset, e1.reason, e1.field)
    # what was yielded before the error (segments of about a line) ends before the bad line
    offs = [o for r in got for o in r.tweets.column("byte_offset").to_pylist()]
    assert len(offs) > 20 and max(offs) < e1.byte_offset


def test_stopping_early_leaves_no_thread_behind(capture):
    before = {t.name for t in threading.enumerate()}
    it = firehose.iter_file(capture / "c.ndjson", threads=3, chunk_size=10_000)
    next(it)
    it.close()
    left = {t.name for t in threading.enumerate()} - before
    assert not any(n.startswith("firehose-decode") for n in left), left


def test_a_corrupt_gzip_is_an_input_error(tmp_path, capture):
    data = (capture / "c.ndjson.gz").read_bytes()
    bad = tmp_path / "bad.ndjson.gz"
    bad.write_bytes(data[: len(data) // 2] + b"\x00" * 64 + data[len(data) // 2:])
    with pytest.raises(InputError, match="bad.ndjson.gz"):
        list(firehose.iter_file(bad, threads=2, chunk_size=20_000))


def test_decode_file_threads_and_argument_checks(capture):
    one = firehose.decode_file(capture / "c.ndjson")
    par = firehose.decode_file(capture / "c.ndjson", threads=2)
    _same(par, one, "decode_file")
    assert par.stats == one.stats
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="threads"):
            list(firehose.iter_file(capture / "c.ndjson", threads=bad))


def test_empty_and_blank_inputs(tmp_path):
    for name, data in (("e.ndjson", b""), ("b.ndjson", b"\n\n\r\n"), ("one.ndjson", b"{}")):
        (tmp_path / name).write_bytes(data)
        one, d1, _ = _decode(tmp_path / name, 1)
        par, d2, _ = _decode(tmp_path / name, 2)
        _same(par, one, name)
        assert _stats(d2) == _stats(d1), name


def test_a_decoder_with_a_partial_line_pending_ends_it_first(tmp_path, capture):
    """A decoder fed part of another source, then given to a parallel iter_file: the pending
    line is decoded first, as feeding a new source would."""
    (tmp_path / "x.ndjson").write_bytes(b'{"id_str": "5", "text": "hi"}')
    results = {}
    for threads in (1, 2):
        dec = firehose.Decoder()
        dec.feed(b'{"id_str": "7", "text": "pending"}', source="other")
        out = DecodeResult.concat(firehose.iter_file(tmp_path / "x.ndjson", decoder=dec,
                                                     threads=threads))
        results[threads] = out
        assert out.tweets.column("text").to_pylist() == ["pending", "hi"]
    _same(results[2], results[1], "pending line")
    assert isinstance(results[2].tweets, pa.Table)


def test_a_read_error_comes_after_what_was_read(tmp_path, capture):
    """A truncated gzip: the segments read before the error are all yielded, then the error,
    as on one thread; with on_error="raise", a bad line before the cut raises first."""
    data = (capture / "c.ndjson.gz").read_bytes()
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])

    def rows(threads, **kw):
        got = []
        with pytest.raises((InputError, ParseError)) as e:
            for res in firehose.iter_file(cut, threads=threads, chunk_size=30_000, **kw):
                got.append(res)
        return DecodeResult.concat(got), e.value

    (one, e1), (par, e2) = rows(1), rows(2)
    assert type(e1) is type(e2) is InputError and one.tweets.num_rows > 1000
    _same(par, one, "truncated gzip")
    (_, e1), (_, e2) = rows(1, on_error="raise"), rows(2, on_error="raise")
    assert type(e1) is type(e2) is ParseError and e2.line == e1.line


def test_position_between_results_is_a_resume_point(capture):
    """After any result, position() says where one thread would resume: seeking a fresh
    decoder there (with the dedupe memory so far) gives exactly the rows still to come."""
    path = capture / "c.ndjson"
    whole = firehose.decode_file(path)
    dec = firehose.Decoder()
    it = firehose.iter_file(path, decoder=dec, threads=2, chunk_size=40_000)
    seen = [next(it) for _ in range(5)]
    src, off, lines = dec.position()
    assert src == str(path) and 0 < off < path.stat().st_size and lines > 0
    rest = firehose.Decoder(dedupe_state=dec.dedupe_state())
    rest.seek(src, off, lines)
    with open(path, "rb") as f:
        f.seek(off)
        tail = [rest.feed(f.read(), source=src, offset=off), rest.finish()]
    _same(DecodeResult.concat(seen + tail), whole, "resumed")
    it.close()


def test_segments_in_flight_are_bounded(monkeypatch, capture):
    from firehose import _parallel
    pulled = []
    real = _parallel._mapped_segments

    def counting(f, *args):
        for seg in real(f, *args):
            pulled.append(seg)
            yield seg

    monkeypatch.setattr(_parallel, "_mapped_segments", counting)
    it = firehose.iter_file(capture / "c.ndjson", threads=2, chunk_size=20_000)
    next(it)
    assert 4 <= len(pulled) <= 2 * 2 + 1
    total = 1 + sum(1 for _ in it)
    assert len(pulled) > 100 and total == len(pulled)


def test_the_same_source_decoded_earlier_and_path_names(tmp_path, capture):
    """A decoder holding a pending line of the same source (and its line count) goes on from
    there, as one thread does; a Path as ``source`` is a name like its string."""
    path = capture / "c.ndjson"
    head = path.read_bytes()[:123_456]
    out = {}
    for threads in (1, 2):
        dec = firehose.Decoder()
        parts = [dec.feed(head, source=str(path))]
        parts += firehose.iter_file(path, decoder=dec, threads=threads, chunk_size=30_000,
                                    source=path)
        out[threads] = (DecodeResult.concat(parts), _stats(dec), dec.position(), dec.sources)
    _same(out[2][0], out[1][0], "same source again")
    assert out[2][1:] == out[1][1:]


def test_many_small_files_and_an_empty_one_with_a_projection(tmp_path):
    names = []
    for i in range(30):
        p = tmp_path / f"f{i:02d}.ndjson"
        p.write_bytes(generate_bytes(4, seed=i % 7))     # files repeat: duplicates across them
        names.append(p)
    (tmp_path / "e.ndjson").write_bytes(b"")
    names.insert(10, tmp_path / "e.ndjson")
    out = {}
    for threads in (1, 2):
        dec = firehose.Decoder(columns=["text", "line", "source_file"])
        parts = [r for p in names for r in firehose.iter_file(p, decoder=dec, threads=threads)]
        out[threads] = (DecodeResult.concat(parts), _stats(dec), dec.sources)
        assert parts[-1].tweets.column_names == ["text", "line", "source_file"]
    _same(out[2][0], out[1][0], "small files")
    assert out[2][1:] == out[1][1:] and out[1][1]["duplicates"] > 50


@pytest.mark.parametrize("case", ["first segment", "after one chunk", "mid-file"])
def test_a_read_error_leaves_the_decoder_as_one_thread_does(tmp_path, case):
    """A truncated gzip, cut inside the first segment, just after one clean chunk (the
    one-segment shortcut) or mid-file, read by a decoder with another source's line pending:
    the rows yielded before the InputError, and the decoder after it (stats, position,
    sources, and the cut line it still holds, which a later finish() rejects), are one
    thread's."""
    long_line = b'{"id_str": "9", "text": "' + b"x" * 50_000 + b'"}\n'
    data = generate_bytes(200, seed=8)
    if case == "first segment":
        data = long_line + data
    raw = gzip.compress(data, 1)
    cut = tmp_path / "cut.ndjson.gz"
    chunk = {"first segment": 4096, "after one chunk": 300_000, "mid-file": 30_000}[case]
    cut.write_bytes(raw[: len(raw) * 3 // 4])
    got = {}
    for threads in (1, 2):
        dec = firehose.Decoder()
        parts = [dec.feed(b'{"id_str": "7", "text": "pending"}', source="other")]
        with pytest.raises(InputError):
            for res in firehose.iter_file(cut, decoder=dec, threads=threads, chunk_size=chunk):
                parts.append(res)
        state = (_stats(dec), dec.position(), dec.sources)
        parts.append(dec.finish())
        got[threads] = (DecodeResult.concat(parts), state, _stats(dec))
    _same(got[2][0], got[1][0], case)
    assert got[2][1:] == got[1][1:], case
    assert got[1][0].tweets.column("text")[0].as_py() == "pending"
    assert got[1][0].rejects.num_rows >= 1                 # the cut line, rejected at finish


def test_default_segment_size(tmp_path, monkeypatch):
    """Without chunk_size, two threads cut the file in reader.PARALLEL_SEGMENT segments (one
    result each) and one thread reads DEFAULT_CHUNK chunks; a chunk_size given is used."""
    import firehose.decoder as D
    data = generate_bytes(600, seed=4)
    path = tmp_path / "s.ndjson"
    path.write_bytes(data)
    monkeypatch.setattr(D, "PARALLEL_SEGMENT", len(data) // 4 + 1)
    monkeypatch.setattr(D, "DEFAULT_CHUNK", len(data) // 2 + 1)
    two = [r for r in firehose.iter_file(path, threads=2) if r.tweets.num_rows]
    one = [r for r in firehose.iter_file(path) if r.tweets.num_rows]
    given = [r for r in firehose.iter_file(path, threads=2, chunk_size=len(data) // 3 + 1)
             if r.tweets.num_rows]
    assert (len(two), len(one), len(given)) == (4, 2, 3)
    assert sum(r.tweets.num_rows for r in two) == sum(r.tweets.num_rows for r in one)


def test_keep_rows_is_arrows_filter():
    """The core's keep_rows (the parallel dedupe's row filter) gives Arrow's filter on every
    column type of both tables (nulls, bools, dictionaries, structs, lists of strings and of
    structs), keeping none, some, all but one or all rows; a sliced array goes to Arrow."""
    import numpy as np
    from firehose._core import keep_rows
    dec = firehose.Decoder(dedupe=False)
    parts = [dec.feed(generate_bytes(3000, seed=7)), dec.finish()]
    tables = [DecodeResult.concat(parts).tweets, DecodeResult.concat(parts).compliance]
    rng = np.random.default_rng(1)
    for table in tables:
        batch = table.combine_chunks().to_batches()[0]
        n = batch.num_rows
        masks = [np.zeros(n, np.uint8), np.ones(n, np.uint8)]
        masks += [(rng.random(n) >= p).astype(np.uint8) for p in (0.02, 0.5, 0.98)]
        masks.append(np.ones(n, np.uint8))
        masks[-1][n // 2] = 0
        for keep in masks:
            want_mask = pa.array(keep.view(np.bool_))
            for name, col in zip(batch.schema.names, batch.columns):
                got = keep_rows(col, keep, int(keep.sum()))
                got.validate(full=True)
                assert got.equals(col.filter(want_mask)), name
    col = tables[0].column("text").combine_chunks().slice(5, 100)
    keep = np.ones(100, np.uint8)
    keep[3] = 0
    assert keep_rows(col, keep, 99).equals(col.filter(pa.array(keep.view(np.bool_))))
    with pytest.raises(ValueError):
        keep_rows(col, keep[:50], 49)
    with pytest.raises(ValueError, match="marks 99"):     # kept must be the count (buffers)
        keep_rows(col, keep, 98)
    with pytest.raises(ValueError, match="marks 99"):
        keep_rows(col, keep, 100)
    # an ordered dictionary stays ordered
    d = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, 1], pa.int32()), pa.array(["a", "b"]),
                                       ordered=True)
    got = keep_rows(d, np.array([1, 0, 1, 1], np.uint8), 3)
    assert got.type == d.type and got.equals(d.filter(pa.array([True, False, True, True])))
