"""Test helpers: the real-payload corpus and small decode/compare utilities (not a test module).

The corpus lives outside the repository, in ``../shared/corpora`` relative to the repo root
(override with ``FIREHOSE_CORPORA``).  Every ``*.ndjson`` and ``*.jsonl`` below it is one input.
When the folder is absent the tests that need it are skipped, not failed.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
STAT_KEYS = ("lines", "blank", "tweets", "duplicates", "dedupe_late", "compliance", "rejects",
             "bytes")
REJECT_KEY_COLUMNS = ("source", "line", "byte_offset", "reason", "raw")


def corpora_dir() -> Path:
    env = os.environ.get("FIREHOSE_CORPORA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "corpora"


def _find() -> list[Path]:
    root = corpora_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix in (".ndjson", ".jsonl") and p.is_file())


def corpus_files() -> list[Path]:
    """Every corpus file; skips the calling test when the corpus folder is absent."""
    files = _find()
    if not files:
        pytest.skip(f"corpus not found at {corpora_dir()} (set FIREHOSE_CORPORA)")
    return files


def corpus_params() -> list:
    """``pytest.param(path, id=relative name)`` per corpus file, for parametrize at collection
    time; one skipped param when the corpus is absent."""
    files = _find()
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"corpus not found at {corpora_dir()} (set FIREHOSE_CORPORA)"))]
    root = corpora_dir()
    return [pytest.param(p, id=rel(p, root)) for p in files]


def rel(path: Path, root: Path | None = None) -> str:
    return path.relative_to(root or corpora_dir()).as_posix()


def corpus_file(name: str) -> Path:
    """One corpus file by its relative name (``folder/file``); skips when absent."""
    p = corpora_dir() / name
    if not p.is_file():
        pytest.skip(f"corpus file {name} not found under {corpora_dir()}")
    return p


def corpus_lines(max_len: int = 4000) -> list[bytes]:
    """The non-blank lines of the corpus no longer than ``max_len`` bytes (for fuzzing seeds)."""
    out = []
    for p in _find():
        for line in p.read_bytes().split(b"\n"):
            if line.strip() and len(line) <= max_len:
                out.append(line)
    return out


# --------------------------------------------------------------------------------------------
# decoding

class Decoded:
    """All rows of one run, each kind concatenated into one table, plus the final stats."""

    def __init__(self, tweets: pa.Table, compliance: pa.Table, rejects: pa.Table, stats: dict):
        self.tweets = tweets
        self.compliance = compliance
        self.rejects = rejects
        self.stats = stats

    def rows(self, kind: str) -> list[dict]:
        return getattr(self, kind).to_pylist()


def run(decoder, pieces: Iterable[tuple[bytes, str, int | None]]) -> Decoded:
    """Feed ``(chunk, source, offset)`` pieces, then finish; concatenate every result."""
    outs = [decoder.feed(chunk, source=source, offset=offset) for chunk, source, offset in pieces]
    outs.append(decoder.finish())
    return Decoded(pa.concat_tables([o.tweets for o in outs]),
                   pa.concat_tables([o.compliance for o in outs]),
                   pa.concat_tables([o.rejects for o in outs]),
                   dict(decoder.stats))


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given positions (sorted, deduplicated, clipped)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    out, prev = [], 0
    for c in points:
        out.append(data[prev:c])
        prev = c
    out.append(data[prev:])
    return out


def decode(make: Callable[[], object], data: bytes, source: str = "input",
           chunks: list[bytes] | None = None) -> Decoded:
    """Decode ``data`` as one source, in one feed or in the given chunks."""
    chunks = [data] if chunks is None else chunks
    assert b"".join(chunks) == data
    return run(make(), [(c, source, None) for c in chunks])


# --------------------------------------------------------------------------------------------
# comparing

def table_diff(a: pa.Table, b: pa.Table, columns: Iterable[str] | None = None,
               names: tuple[str, str] = ("fast", "reference")) -> str | None:
    """None if equal, else a readable account of the first difference: row, column, values.

    Dictionary columns compare as their decoded strings (``to_pylist`` decodes them)."""
    cols = list(columns) if columns is not None else a.column_names
    if columns is None and a.column_names != b.column_names:
        return f"columns differ: {names[0]} {a.column_names} vs {names[1]} {b.column_names}"
    for name in cols:
        ta, tb = a.schema.field(name).type, b.schema.field(name).type
        if ta != tb:
            return f"column {name!r}: type {names[0]} {ta} vs {names[1]} {tb}"
    if a.num_rows != b.num_rows:
        where = _first_row_difference(a, b, cols)
        return (f"row count {names[0]} {a.num_rows} vs {names[1]} {b.num_rows}"
                + (f"; first difference: {where}" if where else ""))
    return _first_row_difference(a, b, cols, names)


def _first_row_difference(a: pa.Table, b: pa.Table, cols: list[str],
                          names: tuple[str, str] = ("fast", "reference")) -> str | None:
    best = None
    for name in cols:
        va, vb = a.column(name).to_pylist(), b.column(name).to_pylist()
        n = min(len(va), len(vb))
        for i in range(n):
            if va[i] != vb[i] or type(va[i]) is not type(vb[i]):
                if best is None or i < best[0]:
                    best = (i, name, va[i], vb[i])
                break
    if best is None:
        return None
    i, name, x, y = best
    where = ""
    for prov in (("source_file", "line"), ("source", "line")):
        if all(p in a.column_names for p in prov):
            where = " (" + ", ".join(f"{p}={a.column(p)[i].as_py()!r}" for p in prov) + ")"
            break
    return f"row {i}{where}, column {name!r}: {names[0]}={x!r} {names[1]}={y!r}"


def assert_same(fast: Decoded, ref: Decoded, what: str = "") -> None:
    """Identical tweets and compliance tables, rejects (key columns) and stats."""
    problems = []
    for kind in ("tweets", "compliance"):
        d = table_diff(getattr(fast, kind), getattr(ref, kind))
        if d:
            problems.append(f"{kind}: {d}")
    d = table_diff(fast.rejects, ref.rejects, REJECT_KEY_COLUMNS)
    if d:
        problems.append(f"rejects: {d}")
    fs = {k: fast.stats.get(k) for k in STAT_KEYS}
    rs = {k: ref.stats.get(k) for k in STAT_KEYS}
    if fs != rs:
        problems.append(f"stats: fast {fs} vs reference {rs}")
    assert not problems, (what + ": " if what else "") + "\n".join(problems)


def line_sets(d: Decoded) -> tuple[set, set]:
    """(lines that gave tweet/compliance rows, rejected lines) as (source, line) pairs."""
    rows = {(r["source_file"], r["line"]) for kind in ("tweets", "compliance")
            for r in getattr(d, kind).select(["source_file", "line"]).to_pylist()}
    rejected = {(r["source"], r["line"]) for r in d.rejects.select(["source", "line"]).to_pylist()}
    return rows, rejected


# --------------------------------------------------------------------------------------------
# fuzzing: corpus lines, mutated, in arbitrary chunk splits

_BASE_SEEDS = [
    b'{"id": 1, "text": "a", "user": {"id_str": "2"}}',
    b'[{"id_str": "3", "text": "b"}, {"id": 4, "full_text": "c"}]',
    b'{"delete": {"status": {"id": 5, "user_id": 6}, "timestamp_ms": "1409183473651"}}',
    b'{"data": [{"id": "7", "text": "\\ud83d\\ude00", "author_id": "8"}], "errors": [{}]}',
    b'{"verb": "post", "id": "tag:search.twitter.com,2005:9", "body": "x"}',
    b'{"id": "10", "action": "delete", "reason": "deleted", "created_at": "2021-01-01T00:00:00Z"}',
]
_JUNK = [b"\r", b"\n", b"\n\n", b" ", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\\", b'"', b"[",
         b"]", b"{", b"}", b",", b":", b"\\ud800", b"\\u00", b"0", b"-", b"null"]
_seed_cache: list[bytes] = []


def fuzz_seeds() -> list[bytes]:
    if not _seed_cache:
        _seed_cache.extend(_BASE_SEEDS + corpus_lines(max_len=3000))
    return _seed_cache


def fuzz_input():
    """A hypothesis strategy of ``(data, chunks)``: a few lines, each arbitrary bytes or a corpus
    line with byte flips, insertions (CR, LF, blank lines, invalid UTF-8, JSON punctuation),
    deletions and truncation; joined by LF, CRLF or blank lines; cut at arbitrary points."""
    from hypothesis import strategies as st

    @st.composite
    def strategy(draw):
        seeds = fuzz_seeds()
        lines = []
        for _ in range(draw(st.integers(1, 4))):
            if draw(st.integers(0, 3)):
                line = bytearray(seeds[draw(st.integers(0, len(seeds) - 1))])
                for _ in range(draw(st.integers(0, 3))):
                    op = draw(st.integers(0, 4))
                    pos = draw(st.integers(0, len(line)))
                    if op == 0 and pos < len(line):
                        line[pos] ^= draw(st.integers(1, 255))
                    elif op == 1:
                        line[pos:pos] = draw(st.sampled_from(_JUNK))
                    elif op == 2:
                        del line[pos:pos + draw(st.integers(1, 8))]
                    elif op == 3:
                        del line[pos:]
                    else:
                        line[pos:pos] = draw(st.binary(max_size=4))
                lines.append(bytes(line))
            else:
                lines.append(draw(st.binary(max_size=40)))
        sep = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \t\n"]))
        data = sep.join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))
        cuts = draw(st.lists(st.integers(0, len(data)), max_size=8))
        return data, split_at(data, cuts)

    return strategy()


# ------------------------------------------------------------------ replay outputs

def read_parts(directory) -> "pa.Table | None":
    """Every ``part-*`` file of one sink directory (Parquet, Arrow IPC stream or NDJSON), in
    part order, as one table; None when there is none."""
    import glob
    import json
    import os

    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq
    tables = []
    for f in sorted(glob.glob(os.path.join(directory, "part-*"))):
        if f.endswith(".parquet"):
            tables.append(pq.read_table(f))
        elif f.endswith(".arrows"):
            with ipc.open_stream(f) as r:
                tables.append(r.read_all())
        elif f.endswith(".ndjson"):
            with open(f, "rb") as fh:
                tables.append(pa.Table.from_pylist([json.loads(line) for line in fh]))
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def output_tree(out) -> dict:
    """Every file under an output directory with its bytes. The checkpoint is internal state
    (the dedupe tables' serialised layout depends on their history): its position and
    counters stand for it. ``state/`` (deliveries spilled for forwarding) is state too: what
    it is for, the forwarded events, is compared."""
    import json
    import os

    from firehose.checkpoint import Checkpoint
    from firehose.pipeline import STATE_DIR
    files = {}
    for root, dirs, names in os.walk(out):
        if root == os.fspath(out):
            dirs[:] = [d for d in dirs if d != STATE_DIR]
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, out)] = f.read()
    if "checkpoint.arrows" in files:
        ck = Checkpoint.from_bytes(files.pop("checkpoint.arrows"))
        files["checkpoint.arrows"] = json.dumps(
            [ck.part, ck.input_index, ck.offset, ck.lines, ck.batch, ck.counters],
            sort_keys=True).encode()
    return files


#: pieces of escape-dense strings (escape_dense_bodies): valid ones, then ones a scan must refuse
ESC_OK = [b"\\u0631", b"\\u00e9", b"\\u003C", b"\\uD7FF", b"\\ud83d\\ude00",
          b"\\uDBFF\\uDFFF", b"\\/", b'\\"', b"\\\\", b"\\n", b"\\b", b"\\f",
          b"\\r", b"\\t", b"a", b" ", b"#", b"\xc3\xa9", b"\xf0\x9f\x98\x80"]
ESC_BAD = [b"\\x", b"\\U0041", b"\\u12G4", b"\\u00", b"\\ud83d", b"\\ude00",
           b"\\ud83d\\ud83d", b"\\ud83d\\u0041", b"\\ud83dx", b"\\\\\\", b"\x01",
           b"\x1f", b"\xff", b"\xed\xa0\x80", b"\\\n"]


def escape_dense_bodies(n: int, seed: int) -> list[bytes]:
    """``n`` raw string contents (no quotes) made of runs of escapes, plain and (in some)
    non-ASCII bytes; a quarter hold one piece of ESC_BAD somewhere (invalid escapes, lone or
    misordered surrogates, control bytes, invalid UTF-8, an odd run of backslashes)."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        pool = ESC_OK if rnd.random() < 0.4 else ESC_OK[:-2]     # (most all ASCII)
        body = b"".join(rnd.choice(pool) for _ in range(rnd.randrange(0, 30)))
        if rnd.random() < 0.25:
            at = rnd.randrange(len(body) + 1)
            body = body[:at] + rnd.choice(ESC_BAD) + body[at:]
        out.append(body)
    return out
