"""The routing and entitlement stage: 1M tweets, 200 client seats (issue 4's benchmark).

Target: under 0.5 s of one core per 1M tweets at 200 clients for the entitlement stage.
Routing is reported beside it: whole (one matcher pass over all clients' rules, then the
matches split by client) and the split alone.
"""
from __future__ import annotations

import datetime as dt
import random
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import firehose
from firehose import config as cfg
from firehose.compliance import ComplianceState
from firehose.entitlements import Entitlements, compile_plans
from firehose.routing import Router
from firehose.testing import generate_bytes

N_BASE = 20_000
REPEAT = 50            # 1M rows
N_CLIENTS = 200


@pytest.fixture(scope="module")
def batch():
    data = generate_bytes(N_BASE, seed=11)
    dec = firehose.Decoder(dedupe=False)
    out = firehose.DecodeResult.concat([dec.feed(data, source="bench"), dec.finish()])
    base = out.tweets
    parts = []
    for k in range(REPEAT):              # distinct ids, same content
        parts.append(base.set_column(0, base.schema.field(0),
                                     pc.add(base.column("id"), pa.scalar(k, pa.int64()))))
    tweets = pa.concat_tables(parts).combine_chunks()
    words = sorted({w.lower() for t in base.column("text").to_pylist()[:2000]
                    for w in t.split() if w.isalpha() and len(w) > 3})
    return tweets, out.compliance, words


def make_config(words, n_clients):
    rnd = random.Random(5)
    orgs = {"agency": {"categories": ["intelligence"]},
            "holding": {"categories": ["commercial"], "owned_by": [{"org": "agency", "percent": 60}]}}
    clients = {}
    for i in range(n_clients):
        org = f"org{i}"
        if i % 10 == 0:
            orgs[org] = {"categories": ["commercial"], "owned_by": [{"org": "holding", "percent": 100}]}
        else:
            orgs[org] = {"categories": ["media" if i % 2 else "finance"]}
        rules = [{"id": str(j), "value": " ".join(rnd.sample(words, 1 + (j % 2)))}
                 for j in range(3)]
        clients[f"c{i}"] = {"organisation": org, "delivery_countries": ["US", "DE"][: 1 + i % 2],
                            "use_case": "news", "rules": rules,
                            "grants": [{"source": "fh", "field_groups": ["core", "geo_exact"]}]}
    return cfg.from_dict({
        "sources": {"fh": {"licence": "lic"}},
        "licences": {"lic": {"prohibited_categories": ["intelligence"]}},
        "field_groups": {"core": ["id", "created_at", "text", "lang"], "geo_exact": ["coordinates"]},
        "organisations": orgs, "clients": clients})


def test_route_1m_tweets_200_clients(benchmark, batch):
    tweets, _, words = batch
    router = Router.from_config(make_config(words, N_CLIENTS))
    routed = benchmark.pedantic(router.route, args=(tweets,), rounds=1, iterations=1)
    benchmark.extra_info.update(rows=tweets.num_rows, clients=N_CLIENTS,
                                pairs=routed.matched_pairs, unmatched=routed.unmatched)


def test_route_split_by_client_1m_tweets_200_clients(benchmark, batch):
    """Routing without the matcher: the (row, rule) matches grouped by client with their rule
    lists (the matcher's own speed is the rules benchmark's)."""
    tweets, _, words = batch
    router = Router.from_config(make_config(words, N_CLIENTS))
    rows, idx = router.ruleset.match_indices(tweets)
    router.group(tweets.num_rows, rows, idx)            # untimed: first touch of the memory
    routed = benchmark.pedantic(router.group, args=(tweets.num_rows, rows, idx), rounds=5,
                                iterations=1)
    benchmark.extra_info.update(rows=tweets.num_rows, clients=N_CLIENTS,
                                pairs=routed.matched_pairs,
                                seconds_per_1m_tweets=benchmark.stats["min"] * 1e6
                                / tweets.num_rows)


def _stage(batch):
    """The batch routed, its compliance events applied, and a fresh Entitlements."""
    tweets, compliance, words = batch
    config = make_config(words, N_CLIENTS)
    routed = Router.from_config(config).route(tweets)
    state = ComplianceState()
    state.apply(compliance)
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), state, source="fh")
    return tweets, compliance, routed, ent


def test_entitlements_1m_tweets_200_clients(benchmark, batch):
    tweets, compliance, routed, ent = _stage(batch)
    # one untimed apply first: it pays the one-off costs of a run (the compliance id sets, built
    # once per state change; the plan-version column; first touch of the memory the stage
    # reuses), which a replay pays once, not per batch. Its time is reported.
    t0 = time.process_time()
    ent.apply(tweets, routed.by_client)
    first = time.process_time() - t0
    res = benchmark.pedantic(ent.apply, args=(tweets, routed.by_client), rounds=5, iterations=1)
    a = res.audit.to_pylist()
    matched = sum(r["rows"] for r in a if r["outcome"] == "matched")
    delivered = sum(r["rows"] for r in a if r["outcome"] == "delivered")
    assert matched == delivered + sum(r["rows"] for r in a if r["outcome"] == "denied")
    benchmark.extra_info.update(rows=tweets.num_rows, clients=N_CLIENTS, matched=matched,
                                delivered=delivered, seconds_per_1m_tweets=benchmark.stats["min"]
                                * 1e6 / tweets.num_rows,
                                first_apply_cpu_seconds_per_1m=first * 1e6 / tweets.num_rows)


def test_entitlements_and_forward_1m_tweets_200_clients(benchmark, batch):
    """What a replay pays per batch for the stage: apply, then forward that batch's
    compliance events (deletes, scrub_geo and user events: the delivered authors of the
    batch are sorted into each seat's author memory when a user event asks)."""
    tweets, compliance, routed, ent = _stage(batch)
    ent.apply(tweets, routed.by_client)
    ent.forward(compliance)

    def one_batch():
        res = ent.apply(tweets, routed.by_client)
        return res, ent.forward(compliance)
    res, fwd = benchmark.pedantic(one_batch, rounds=5, iterations=1)
    benchmark.extra_info.update(rows=tweets.num_rows, clients=N_CLIENTS,
                                compliance_events=compliance.num_rows,
                                forwarded=sum(t.num_rows for t in fwd.values()),
                                seconds_per_1m_tweets=benchmark.stats["min"] * 1e6
                                / tweets.num_rows)


def test_entitlements_steady_state_20_batches_of_new_ids(benchmark, batch):
    """The stage as a replay runs it: 20 batches one after another in one process, each with
    new, distinct ids (the benchmark batch moved 3 minutes of tweet time further each time: the
    firehose's rate at 1M tweets), so the delivered memory and the author index grow as in a
    stream, and every fifth batch pays for sorting the held batches' authors in. The
    benchmarks above report the fastest of 5 re-applies of one batch; this one the mean CPU
    time per 1M tweets over the 20 (the amortised cost the target is about), its median and
    minimum, and the best mean of 5 consecutive batches (one author-sort cycle: the least
    disturbed by other load). Then the CPU time of forwarding 30k deletes against that
    history (``forward_30k_deletes_cpu_s``; each batch's delivery block is searched)."""
    import numpy as np
    tweets, compliance, words = batch
    # a deduped stream has no id twice: the generator's re-sent duplicates (2%) go, and copy
    # k of the base moves k ms (its ids + k collided with ids a few apart)
    ids = tweets.column("id").to_numpy()
    k = np.arange(len(ids)) // N_BASE
    ids = ids - k + (k << 22)
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    tweets = tweets.take(pa.array(keep)).set_column(0, tweets.schema.field(0),
                                                    pa.array(ids[keep]))
    ids = ids[keep]
    tweets, compliance, routed, ent = _stage((tweets, compliance, words))
    ent.apply(tweets, routed.by_client)              # first-touch costs, as above
    step = 180_000 << 22                             # 3 minutes of snowflake time
    inputs = [tweets.set_column(0, tweets.schema.field(0), pa.array(ids + (b + 1) * step))
              for b in range(20)]
    cpu = []

    def run():
        cpu.clear()
        for t in inputs:
            c0 = time.process_time()
            res = ent.apply(t, routed.by_client)
            cpu.append(time.process_time() - c0)
            del res
    benchmark.pedantic(run, rounds=1, iterations=1)
    per_1m = np.array(cpu) * 1e6 / tweets.num_rows
    cycles = [per_1m[i:i + 5].mean() for i in range(len(per_1m) - 4)]
    # then a batch's deletes against that history: 30k (the firehose's compliance stream
    # runs at a few percent of its tweets), half of the last two batches' tweets, half of any
    rng = np.random.default_rng(3)
    every = np.concatenate([t.column("id").to_numpy() for t in inputs])
    q = np.r_[rng.choice(every[-2 * len(ids):], 15_000), rng.choice(every, 15_000)]
    deletes = pa.table({"kind": pa.array(["delete"] * len(q)), "tweet_id": pa.array(q),
                        "user_id": pa.nulls(len(q), pa.int64())})
    c0 = time.process_time()
    fwd = ent.forward(deletes)
    fwd_s = time.process_time() - c0
    benchmark.extra_info.update(rows=tweets.num_rows, clients=N_CLIENTS, batches=len(cpu),
                                mean_cpu_s_per_1m=float(per_1m.mean()),
                                median_cpu_s_per_1m=float(np.median(per_1m)),
                                min_cpu_s_per_1m=float(per_1m.min()),
                                best_5_batch_mean_cpu_s_per_1m=float(min(cycles)),
                                forward_30k_deletes_cpu_s=fwd_s,
                                forwarded=sum(t.num_rows for t in fwd.values()))


@pytest.mark.parametrize("spill", [False, True], ids=["in_memory", "spill_1h"])
def test_delivered_memory_over_64_batches_of_new_ids(benchmark, spill, tmp_path):
    """What the benchmarks above hide by re-applying one batch: in a replay every batch's ids
    are new, and what was delivered to whom (kept for forwarding deletes) grows by a block a
    batch (the ids delivered to any seat and, for each, its seats), so in memory without
    bound. 200 seats x 35k new ids a batch (the benchmark batch's deliveries), 64 batches of
    3 minutes of tweet time each (1M tweets: the firehose's rate), each kept as apply() keeps
    it. ``spill_1h``: a one-hour window, older deliveries moved to files (a quarter hour at a
    time)."""
    import os

    import numpy as np
    ent = Entitlements(compile_plans(cfg.from_dict({
        "sources": {"fh": {"licence": "lic"}}, "licences": {"lic": {}},
        "field_groups": {"core": ["id"]}, "organisations": {"o": {"categories": ["media"]}},
        "clients": {}}), today=dt.date(2026, 1, 1)), source="fh",
        spill_dir=str(tmp_path / "spill") if spill else None, window_hours=1.0)
    # snowflake ids spread over each batch's 3 minutes
    t0_ms, batch_ms = 1_650_000_000_000 - 1_288_834_974_657, 180_000
    per_seat = [np.sort(np.random.default_rng(c).choice(1_000_000, 35_000, replace=False))
                .astype(np.int64) for c in range(N_CLIENTS)]
    # the batch's ranks 0..1M-1, those delivered to any seat marked
    pairs = np.concatenate(per_seat)
    starts = np.r_[0, np.cumsum([len(x) for x in per_seat])].astype(np.int64)
    hit = np.zeros(1_000_000, bool)
    hit[pairs] = True
    marked = np.flatnonzero(hit)
    clients = [f"c{c}" for c in range(N_CLIENTS)]
    times = []

    def run():
        ent._blocks.clear()
        times.clear()
        for b in range(64):
            t0 = time.perf_counter()
            base = t0_ms + b * batch_ms
            ids = ((base + marked * batch_ms // 1_000_000) << 22) | marked
            ent._remember_batch(ids, hit, clients, starts, pairs)
            if spill:
                ent._maybe_spill(base + batch_ms // 2)
            times.append(time.perf_counter() - t0)
    benchmark.pedantic(run, rounds=1, iterations=1)
    held = sum(b.ids.nbytes + b.off.nbytes + b.codes.nbytes for b in ent._blocks)
    on_disk = sum(os.path.getsize(p) for p in (tmp_path / "spill").iterdir()) if spill else 0
    benchmark.extra_info.update(batches=64, seats=N_CLIENTS, ids_per_seat_batch=35_000,
                                mean_s_per_batch=sum(times) / len(times),
                                last_16_mean_s=sum(times[-16:]) / 16, max_s=max(times),
                                bytes_held=held, bytes_spilled=on_disk)


@pytest.mark.parametrize("fanout", [0, 4], ids=["unmerged", "merged_by_4"])
def test_user_events_over_a_long_history(benchmark, fanout, tmp_path, monkeypatch):
    """A user event (user_delete, user_protect, ...) is forwarded to the seats that got any of
    the user's tweets, so it searches the author index of the whole history, which the spill
    keeps in authors files (one a quarter window). 240 batches of 3 minutes (12 hours of tweet
    time) of 250k delivered rows by 5M authors, a one-hour window: then 5000 users' events
    are looked up (the timed part). ``unmerged``: one file per quarter hour stays (the cost
    grows with the history); ``merged_by_4``: four files of a size class are merged into one
    as they accumulate, so the files stay O(log n). ``spill_s`` is the time the batches spent
    spilling and merging (a merge goes a few chunks a batch), ``worst_batch_s`` the longest
    one batch spent on it."""
    import os

    import numpy as np

    from firehose.entitlements import _Spill
    if fanout:
        monkeypatch.setattr(_Spill, "fanout", fanout)
    else:
        monkeypatch.setattr(_Spill, "fanout", 1 << 30)
    ent = Entitlements(compile_plans(cfg.from_dict({
        "sources": {"fh": {"licence": "lic"}}, "licences": {"lic": {}},
        "field_groups": {"core": ["id"]}, "organisations": {"o": {"categories": ["media"]}},
        "clients": {}}), today=dt.date(2026, 1, 1)), source="fh",
        spill_dir=str(tmp_path / "spill"), window_hours=1.0)
    t0_ms, batch_ms, rows = 1_650_000_000_000 - 1_288_834_974_657, 180_000, 250_000
    rng = np.random.default_rng(3)
    spent, worst = 0.0, 0.0
    for b in range(240):
        base = t0_ms + b * batch_ms
        x = np.sort(rng.choice(4_000_000, rows, replace=False)).astype(np.int64)
        tid = ((base + x * batch_ms // 4_000_000) << 22) | (x & 0x3FFFFF)
        author = rng.integers(1, 5_000_000, rows).astype(np.int64) << 20
        ent._pending_authors.append((author, tid))
        t = time.perf_counter()
        if len(ent._pending_authors) > 4:
            ent._author_runs()
        ent._maybe_spill(base + batch_ms // 2, rows)
        spent += time.perf_counter() - t
        worst = max(worst, time.perf_counter() - t)
    users = np.unique(rng.integers(1, 5_000_000, 5000).astype(np.int64) << 20)
    found = []

    def run():
        found[:] = [len(ent._tweets_by(users)[0])]
    benchmark.pedantic(run, rounds=3, iterations=1)
    files = [n for k, n, _, _ in ent._spill.files if k == "authors"]
    on_disk = sum(os.path.getsize(os.path.join(tmp_path, "spill", n)) for n in files)
    benchmark.extra_info.update(batches=240, rows_per_batch=rows, users=len(users),
                                tweets_found=found[0], authors_files=len(files),
                                spill_s=round(spent, 2), worst_batch_s=round(worst, 2),
                                authors_bytes=on_disk)
