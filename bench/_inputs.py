"""Benchmark inputs: synthetic v1.1 stream captures, generated once and cached on disk.

Shared by the pytest-benchmark suite (``bench/``) and the peer comparison
(``bench/compare/run.py``). Generating takes ~50 s per GB (pure Python), so captures are kept in
``.bench-cache/`` (or ``$FIREHOSE_BENCH_CACHE``) under a name built from everything that
determines their bytes: dialect, seed, size, and a hash of ``firehose/testing.py`` (a change to
the generator makes a new file rather than silently reusing old bytes).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHUNK = 4 << 20                      # what the decoder is fed per call (reader.DEFAULT_CHUNK)
DEFAULT_MB = 200
DEFAULT_SEED = 20220301


def cache_dir() -> Path:
    d = Path(os.environ.get("FIREHOSE_BENCH_CACHE") or REPO / ".bench-cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


def bench_mb(default: float = DEFAULT_MB) -> float:
    return float(os.environ.get("FIREHOSE_BENCH_MB") or default)


def _generator_hash() -> str:
    import firehose.testing as t
    return hashlib.sha1(Path(t.__file__).read_bytes()).hexdigest()[:10]


def _log(msg: str) -> None:
    print(f"[bench inputs] {msg}", flush=True)


def capture(mb: float = DEFAULT_MB, *, seed: int = DEFAULT_SEED, dialect: str = "v1.1",
            compression: str = "", quiet: bool = False) -> Path:
    """Path of a cached capture of at least ``mb`` MB (10^6 bytes) of decompressed NDJSON: the
    first lines of ``firehose.testing.generate(seed=seed, dialect=dialect)`` that reach that
    size, defaults otherwise (2% duplicate re-sends, 3% stream messages, no malformed lines).
    ``compression`` is ``""``, ``"gz"`` or ``"zst"``; compressed files are made from the plain
    one, so all three hold the same bytes."""
    prefix = f"{dialect}-seed{seed}-{mb:g}MB-gen"
    plain = cache_dir() / f"{prefix}{_generator_hash()}.ndjson"
    if not plain.exists():
        for old in cache_dir().glob(f"{prefix}*.ndjson*"):     # made by an older generator
            old.unlink(missing_ok=True)
        _generate(plain, int(mb * 1e6), seed, dialect, quiet)
    if not compression:
        return plain
    out = plain.with_name(f"{plain.name}.{compression}")
    if not out.exists():
        _compress(plain, out, compression, quiet)
    return out


def _generate(path: Path, target: int, seed: int, dialect: str, quiet: bool) -> None:
    from firehose.testing import generate
    t0 = time.perf_counter()
    if not quiet:
        _log(f"generating {target / 1e6:,.0f} MB of {dialect} lines (seed {seed}) -> {path}")
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    total = 0
    batch: list[bytes] = []
    size = 0
    with open(tmp, "wb") as f:
        for line in generate(1 << 62, seed=seed, dialect=dialect):
            batch.append(line)
            size += len(line)
            if size >= 1 << 22:
                f.write(b"".join(batch))
                total += size
                batch.clear()
                size = 0
                if total >= target:
                    break
        if batch:
            f.write(b"".join(batch))
    os.replace(tmp, path)
    if not quiet:
        _log(f"  done in {time.perf_counter() - t0:.0f} s")


def _compress(src: Path, dst: Path, compression: str, quiet: bool) -> None:
    t0 = time.perf_counter()
    if not quiet:
        _log(f"compressing {src.name} -> .{compression}")
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    with open(src, "rb") as fi, open(tmp, "wb") as raw:
        if compression == "gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as g:
                shutil.copyfileobj(fi, g, CHUNK)
        elif compression == "zst":
            import zstandard
            with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as z:
                shutil.copyfileobj(fi, z, CHUNK)
        else:
            raise ValueError(f"unknown compression {compression!r}")
    os.replace(tmp, dst)
    if not quiet:
        _log(f"  done in {time.perf_counter() - t0:.0f} s")


def split_at_newline(path: Path, parts: int = 2) -> list[tuple[int, int]]:
    """``parts`` byte ranges ``(start, end)`` of a plain file, each starting at a line start."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for i in range(1, parts):
            f.seek(max(size * i // parts, cuts[-1]))
            f.readline()
            cuts.append(min(f.tell(), size))
    cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))


def split_bytes_at_newline(data: bytes, parts: int = 2) -> list[memoryview]:
    """``data`` cut into ``parts`` pieces, each ending just after a newline (the last: at the end)."""
    mv = memoryview(data)
    cuts = [0]
    for i in range(1, parts):
        nl = data.find(b"\n", max(len(data) * i // parts, cuts[-1]))
        cuts.append(len(data) if nl < 0 else nl + 1)
    cuts.append(len(data))
    return [mv[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def tiny_lines(n: int, dup_every: int = 50) -> bytes:
    """``n`` minimal v1.1 tweets (``{"id":...,"text":"x"}``), ids snowflakes 1-4 ms apart, every
    ``dup_every``-th line a re-send of a recent one: input where the per-row work other than
    dedupe is as small as it gets, so the dedupe cost shows."""
    import random
    rnd = random.Random(7)
    t = 1646092800000 - 1288834974657
    ids: list[int] = []
    out = []
    for i in range(n):
        if i % dup_every == dup_every - 1 and ids:
            tid = ids[-1 - int(rnd.random() * min(len(ids), 1000))]
        else:
            t += 1 + int(rnd.random() * 4)
            tid = (t << 22) | int(rnd.random() * (1 << 22))
            ids.append(tid)
        out.append(b'{"id":%d,"text":"x"}\n' % tid)
    return b"".join(out)
