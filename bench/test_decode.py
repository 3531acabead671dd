"""Decoder throughput: in memory (1 and 2 threads), .gz and .zst files end to end, dedupe cost."""
from __future__ import annotations

import threading
import time

import pytest

import _inputs
import firehose
from _bench import best_seconds, put_rates, rounds

CHUNK = _inputs.CHUNK


def feed_all(data, dedupe: bool = True, chunk: int = CHUNK) -> dict:
    """Feed ``data`` to a new Decoder in ``chunk``-byte pieces (results dropped once taken, as a
    streaming consumer would), return its stats."""
    dec = firehose.Decoder(dedupe=dedupe)
    mv = memoryview(data)
    for i in range(0, len(mv), chunk):
        dec.feed(mv[i:i + chunk], source="bench")
    dec.finish()
    return dec.stats


def _once(fn, *args, timer=time.perf_counter):
    t0 = timer()
    fn(*args)
    return timer() - t0


@pytest.mark.parametrize("dedupe", [True, False], ids=["dedupe", "no-dedupe"])
def test_feed_memory_1thread(benchmark, capture_bytes, session_results, dedupe):
    """Decoder.feed over the capture held in memory, 4 MiB chunks, one thread."""
    stats = benchmark.pedantic(feed_all, args=(capture_bytes, dedupe), rounds=rounds(),
                               iterations=1)
    session_results[("feed_1t", dedupe)] = (best_seconds(benchmark), stats)
    # (dedupe's cost is ~0.1% of a 4 KB tweet's, far below the noise here: see test_dedupe_cost)
    more = {"tweets": stats["tweets"], "duplicates": stats["duplicates"]}
    put_rates(benchmark, len(capture_bytes), stats["tweets"] + stats["duplicates"],
              stats["lines"], **more)


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
@pytest.mark.parametrize("kind", ["plain", "gz", "zst"])
def test_iter_file(benchmark, request, kind, threads, capture_bytes):
    """iter_file end to end: read (and decompress), decode, drop each chunk's tables; with
    ``threads=2`` the library's parallel decode (segments taken by two worker threads, results
    in file order, deduped across the file)."""
    path = request.getfixturevalue({"plain": "capture_path", "gz": "gz_path",
                                    "zst": "zst_path"}[kind])

    def run():
        dec = firehose.Decoder()
        for _ in firehose.iter_file(path, decoder=dec, threads=threads):
            pass
        return dec.stats
    stats = benchmark.pedantic(run, rounds=rounds(), iterations=1)
    put_rates(benchmark, stats["bytes"], stats["tweets"] + stats["duplicates"], stats["lines"],
              file_MB=round(path.stat().st_size / 1e6, 1), threads=threads)


def two_threads(halves) -> list[dict]:
    out: list = [None] * len(halves)
    start = threading.Barrier(len(halves))

    def work(i):
        start.wait()
        out[i] = feed_all(halves[i])
    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(halves))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_feed_memory_2threads(benchmark, capture_bytes, session_results):
    """Two Decoders on two threads, each over one half of the in-memory capture (cut after a
    newline). The core decodes without the GIL, so this should approach 2x one thread."""
    halves = _inputs.split_bytes_at_newline(capture_bytes, 2)
    stats = benchmark.pedantic(two_threads, args=(halves,), rounds=rounds(), iterations=1)
    one = session_results.get(("feed_1t", True))
    t1 = one[0] if one else None
    if t1 is None:       # run alone (-k): time one thread here
        t1 = min(_once(feed_all, capture_bytes) for _ in range(rounds()))
    t2 = best_seconds(benchmark)
    rows = sum(s["tweets"] + s["duplicates"] for s in stats)
    put_rates(benchmark, len(capture_bytes), rows, sum(s["lines"] for s in stats),
              one_thread_s=round(t1, 4),
              speedup_vs_1thread=round(t1 / t2, 3) if t2 else None)


@pytest.fixture(scope="session", params=[200_000, 2_000_000], ids=lambda n: f"{n // 1000}k")
def tiny(request) -> tuple[int, bytes]:
    return request.param, _inputs.tiny_lines(request.param)


def test_dedupe_cost(benchmark, tiny):
    """Dedupe cost per row: minimal tweets (``{"id":...,"text":"x"}``, 2% re-sends, snowflake ids
    1-4 ms apart) decoded with dedupe off and on, back to back, several pairs; the median of the
    per-pair differences (process CPU time, less disturbed by other load than wall time) is what
    dedupe costs per row. Rows cost ~1.3-2 us here without dedupe, so on a shared machine the
    pairs spread by hundreds of ns: bench/test_dedupe.py times the dedupe alone. The benchmark
    timing itself is of dedupe=True, wall time."""
    n, data = tiny
    pairs = max(7, rounds())
    on, off = [], []
    for _ in range(pairs):
        off.append(_once(feed_all, data, False, timer=time.process_time))
        on.append(_once(feed_all, data, True, timer=time.process_time))
    diffs = sorted((a - b) / n * 1e9 for a, b in zip(on, off))
    stats = benchmark.pedantic(feed_all, args=(data, True), rounds=rounds(), iterations=1)
    put_rates(benchmark, len(data), n, n,
              ids_remembered=n - stats["duplicates"],
              duplicates=stats["duplicates"],
              ns_per_row_no_dedupe=round(min(off) / n * 1e9, 1),
              ns_per_row_dedupe=round(min(on) / n * 1e9, 1),
              dedupe_ns_per_row=round(diffs[len(diffs) // 2], 1),
              dedupe_ns_per_row_pairs=f"{diffs[0]:.0f}..{diffs[-1]:.0f}")
