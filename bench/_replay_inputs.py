"""Inputs of the end-to-end replay benchmark (issue 5): a 100-seat configuration with 10,000
rules, and a cached ~1 GB gzip capture.

Shared by ``bench/test_replay.py`` (pytest-benchmark) and ``bench/compare/replay_run.py`` (one
replay in a fresh process, one table). Everything is deterministic.

* :func:`config_dict` / :func:`config` -- ``clients`` seats (default 100) of ``rules_per_client``
  rules each (default 100: 10,000 rules), as a dict for :func:`firehose.config.from_dict`, in
  the shape of ``examples/clients.toml``: one source under one licence (the example's
  prohibited categories, approval rule, caps and field groups) and organisations of a realistic
  mix -- newspapers and broadcasters in media groups (each title owned by its group), banks
  with markets divisions, asset managers, insurers, universities, NGOs, brand-monitoring
  agencies, a few government seats with recorded approvals for their use case (one of which has
  expired: its matches are denied ``approval_missing``), and two front companies owned through
  a holding by an intelligence service (every match denied by the prohibition). Sinks: mostly
  parquet, some arrow (trading desks), a few ndjson (two of them with the original payload,
  ``raw_json``).
* Rules: each seat's first one or two are topical rules of its sector written against the
  generator's vocabulary (``#Ukraine OR #WorldCup``, ``$AAPL OR $TSLA``, ``market (up OR
  down)``...), the rest consecutive slices of the ``live5`` stream of ``_rules_inputs``
  (:func:`_rules_inputs.rule_values`: 55% keywords, 20% ANDs, phrases, ORs, ``lang:``,
  hashtags, mentions; 5% of words from the tweets' vocabulary, the rest pseudo-words that never
  occur). A seat matches a few percent of the tweets (see :func:`match_rates`).
* :func:`capture` -- ``FIREHOSE_BENCH_REPLAY_MB`` (default 1024) MB of decompressed v1.1 lines
  of the generator (``_inputs.capture``: seed, 2% re-sent duplicates, 3% stream messages), gzip,
  in ``.bench-cache/``. ``FIREHOSE_BENCH_REPLAY_DIALECT`` picks ``v2``, ``activity`` or
  ``mixed`` instead.

Run as ``python bench/_replay_inputs.py`` it prints the per-seat match rates on the first
20,000 tweets of the capture (how the rules were tuned).
"""
from __future__ import annotations

import datetime as dt
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _inputs  # noqa: E402
import _rules_inputs as ri  # noqa: E402

DEFAULT_MB = 1024
DEFAULT_CLIENTS = 100
DEFAULT_RULES_PER_CLIENT = 100
SEED = 20250505
SOURCE = "firehose"
#: the day plans are compiled for (approvals are judged against it), fixed so runs agree
TODAY = dt.date(2026, 1, 15)


def replay_mb() -> float:
    return float(os.environ.get("FIREHOSE_BENCH_REPLAY_MB") or DEFAULT_MB)


def replay_dialect() -> str:
    return os.environ.get("FIREHOSE_BENCH_REPLAY_DIALECT") or "v1.1"


def capture(mb: float | None = None, dialect: str | None = None, quiet: bool = False) -> Path:
    """The cached gzip capture of ``mb`` MB decompressed (made from the plain file of
    ``_inputs.capture``, which stays cached next to it)."""
    return _inputs.capture(replay_mb() if mb is None else mb,
                           dialect=dialect or replay_dialect(), compression="gz", quiet=quiet)


# ------------------------------------------------------------------------------ configuration

FIELD_GROUPS = {
    "core": ["id", "created_at", "text", "lang", "source", "dialect", "source_file", "line",
             "byte_offset"],
    "conversation": ["in_reply_to_status_id", "in_reply_to_user_id", "in_reply_to_screen_name",
                     "retweeted_status_id", "retweeted_user_id", "retweeted_screen_name",
                     "retweeted_text", "quoted_status_id", "quoted_user_id", "quoted_text"],
    "entities": ["hashtags", "mentions", "mention_ids", "cashtags", "urls", "media_types"],
    "author_profile": ["author_id", "author_screen_name", "author_name", "author_description",
                       "author_location", "author_followers_count", "author_verified"],
    "geo_exact": ["coordinates"],
    "geo_place": ["place_id", "place_country_code"],
    "raw_json": ["raw_json"],
}

#: topical rules per sector, against the generator's vocabulary (each seat takes 2-3)
TOPICAL = {
    "media": [
        ("world", "#Ukraine OR #WorldCup OR #COVID19", "world"),
        ("breaking-intl", "#Noticias OR #sondakika OR #عاجل", "breaking"),
        ("awards", "(#Oscars OR #NBA) has:media", "culture"),
        ("music", "#NowPlaying OR #BTS", "culture"),
        ("football", "#LaLiga OR #Flamengo OR #futebol", "sport"),
        ("tech", "#Python OR #100DaysOfCode", "tech"),
        ("latam", "#Argentina OR #México OR #Brasil", "region"),
    ],
    "finance": [
        ("megacaps", "$AAPL OR $TSLA OR $NVDA OR $MSFT", "equities"),
        ("crypto", "#Bitcoin OR $BTC OR $ETH", "crypto"),
        ("meme-stocks", "$GME OR $AMC", "equities"),
        ("index", "$SPY OR $AMZN OR $GOOGL OR $META", "equities"),
        ("nft", "#NFT OR $SOL OR $DOGE", "crypto"),
        ("sentiment", "market (up OR down) lang:en", "sentiment"),
    ],
    "government": [
        ("health", "#COVID19", "health"),
        ("alerts-tr", "#sondakika", "alert-tr"),
        ("alerts-ar", "#عاجل", "alert-ar"),
        ("conflict", "#Ukraine -is:retweet", "alert"),
    ],
    "academic": [
        ("covid", "#COVID19 lang:en", "health"),
        ("code", "#Python OR #100DaysOfCode", "tech"),
        ("ukraine", "#Ukraine", "conflict"),
    ],
    "ngo": [
        ("ukraine", "#Ukraine has:media", "conflict"),
        ("health", "#COVID19", "health"),
        ("ramadan", "#رمضان OR #السعودية", "region"),
    ],
    "commercial": [
        ("brands", "#MondayMotivation OR #OOTD", "brand"),
        ("gaming", "#Gaming OR #ポケモン", "gaming"),
        ("art", "#Art OR #イラスト OR #お絵描き", "art"),
        ("music", "#NowPlaying OR #新曲", "music"),
    ],
}

_COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "MX", "AR", "JP", "KR", "IN",
              "TR", "SA", "AE", "ID", "CA", "AU", "SE", "CH", "PL"]


def _seat_plan() -> list[tuple]:
    """100 seats as (sector, kind of organisation): the fixed part of the mix."""
    seats = []
    seats += [("media", "title")] * 40            # 10 media groups x 4 titles
    seats += [("media", "broadcaster")] * 4
    seats += [("finance", "bank-markets")] * 6 + [("finance", "bank-research")] * 6
    seats += [("finance", "asset-manager")] * 10 + [("finance", "insurer")] * 8
    seats += [("academic", "university")] * 6
    seats += [("ngo", "ngo")] * 4
    seats += [("commercial", "agency")] * 7
    seats += [("government", "approved")] * 6 + [("government", "expired")]
    seats += [("front", "front")] * 2
    return seats


def _scaled_plan(n: int) -> list[tuple]:
    """``n`` seats keeping the 100-seat mix's proportions (every n-th of a repeated plan),
    always with the front companies and the expired government seat once ``n`` allows."""
    base = _seat_plan()
    if n == len(base):
        return base
    out = [base[(i * len(base)) // n] for i in range(n)] if n < len(base) else \
        [base[i % len(base)] for i in range(n)]
    if n >= 4:
        special = [("front", "front"), ("government", "expired")]
        for s in special:
            if s not in out:
                out[-1 - special.index(s)] = s
    return out


def config_dict(clients: int = DEFAULT_CLIENTS,
                rules_per_client: int = DEFAULT_RULES_PER_CLIENT, caps: bool = True) -> dict:
    """The configuration as a dict (the TOML shape) for :func:`firehose.config.from_dict`;
    ``caps=False`` leaves the licence's delivery caps out (to see what they cost)."""
    r = random.Random(SEED)
    plan = _scaled_plan(clients)
    orgs: dict = {
        "state-intel-service": {"description": "a foreign intelligence service",
                                "categories": ["intelligence"]},
        "meridian-holdings": {"description": "a holding, 60% held by the intelligence service",
                              "categories": ["commercial"],
                              "owned_by": [{"org": "state-intel-service", "percent": 60}]},
        "interior-ministry": {"categories": ["government"]},
    }
    for g in range(10):
        orgs[f"media-group-{g}"] = {"description": "a publishing group", "categories": ["media"]}
    for b in range(6):
        orgs[f"bank-{b}"] = {"description": "a commercial bank", "categories": ["finance"]}
    live = ri.rule_values(clients * rules_per_client)     # the live5 stream, sliced per seat
    seats: dict = {}
    counters: dict = {}
    for i, (sector, kind) in enumerate(plan):
        k = counters[kind] = counters.get(kind, 0) + 1
        name = f"{kind}-{k}"
        org = f"org-{name}"
        countries = sorted(r.sample(_COUNTRIES, 1 + int(r.random() * 4)))
        groups = ["core", "entities"]
        sink = {"kind": "parquet", "path": f"out/{name}"}
        use_case = "news reporting"
        approvals = None
        if kind == "title":
            orgs[org] = {"categories": ["media", "newsroom"],
                         "owned_by": [{"org": f"media-group-{(k - 1) // 4}", "percent": 100}]}
            groups = ["core", "conversation", "entities", "author_profile", "geo_place"]
        elif kind == "broadcaster":
            orgs[org] = {"categories": ["media", "newsroom"]}
            # not geo_exact: a delivered parquet/arrow seat granted it fails the write once a
            # scrub_geo event masks a row (entitlements._mask_geo nulls the struct with
            # pc.if_else, which leaves a null in its non-nullable "lon" child); see
            # docs/benchmarks.md, Replay
            groups = ["core", "conversation", "entities", "author_profile", "geo_place"]
        elif kind.startswith("bank-"):
            cats = ["finance", "trading"] if kind == "bank-markets" else ["finance"]
            orgs[org] = {"categories": cats,
                         "owned_by": [{"org": f"bank-{(k - 1) % 6}", "percent": 100}]}
            groups = ["core", "entities", "author_profile"]
            use_case = "market sentiment signals" if kind == "bank-markets" else "research"
            if kind == "bank-markets":
                sink = {"kind": "arrow", "path": f"out/{name}", "compression": "zstd"}
        elif kind == "asset-manager":
            orgs[org] = {"categories": ["finance", "trading"]}
            groups = ["core", "entities", "author_profile"]
            use_case = "market sentiment signals"
            if k % 2:
                sink = {"kind": "arrow", "path": f"out/{name}",
                        "compression": "zstd" if k % 4 == 1 else "none"}
        elif kind == "insurer":
            orgs[org] = {"categories": ["finance"]}
            use_case = "risk monitoring"
            groups = ["core", "entities", "geo_place"]
        elif kind == "university":
            orgs[org] = {"categories": ["academic"]}
            use_case = "research"
            groups = ["core", "conversation", "entities", "geo_place"]
        elif kind == "ngo":
            orgs[org] = {"categories": ["ngo"]}
            use_case = "humanitarian monitoring"
            groups = ["core", "entities", "geo_place"]
        elif kind == "agency":
            orgs[org] = {"categories": ["commercial"]}
            use_case = "brand monitoring"
            groups = ["core", "entities", "author_profile", "geo_place"]
            if k <= 2:                              # original payloads, as NDJSON
                groups = ["core", "raw_json"]
                sink = {"kind": "ndjson", "path": f"out/{name}.ndjson.gz"}
            elif k <= 4:
                sink = {"kind": "ndjson", "path": f"out/{name}.ndjson"}
        elif sector == "government":
            cats = ["government", "homeland_security"] if k % 2 else ["government"]
            orgs[org] = {"categories": cats, "component_of": ["interior-ministry"]}
            use_case = "public alerts"
            # geo_exact and author_profile asked for: the government guardrail withholds them
            groups = ["core", "entities", "geo_place", "geo_exact", "author_profile"]
            if kind == "expired":
                approvals = [{"use_case": use_case, "by": "legal-and-policy",
                              "date": dt.date(2024, 3, 1), "ref": f"APP-2024-{k:03d}",
                              "expires": dt.date(2025, 2, 28)}]
            else:
                approvals = [{"use_case": use_case, "by": "legal-and-policy",
                              "date": dt.date(2025, 1, 10), "ref": f"APP-2025-{k:03d}"}]
            if k in (1, 2):
                sink = {"kind": "ndjson", "path": f"out/{name}.ndjson"}
        elif kind == "front":
            orgs[org] = {"description": "a 'market research' company, wholly owned by the holding",
                         "categories": ["commercial"],
                         "owned_by": [{"org": "meridian-holdings", "percent": 100}]}
            use_case = "market research"
            groups = ["core", "author_profile", "geo_exact"]
        topical_sector = "commercial" if sector == "front" else sector
        pool = TOPICAL[topical_sector]
        ntop = min(rules_per_client, 1 + (i % 2))
        topical = [pool[(i * 3 + j) % len(pool)] for j in range(ntop)]
        rules = [{"id": rid, "value": val, "tag": tag} for rid, val, tag in topical]
        base = i * rules_per_client
        for j in range(rules_per_client - ntop):
            rule = {"id": f"r{j}", "value": live[base + j]}
            if j % 10 == 0:
                rule["tag"] = f"t{(base + j) % 97}"
            rules.append(rule)
        seat = {"organisation": org, "delivery_countries": countries, "use_case": use_case,
                "grants": [{"source": SOURCE, "field_groups": groups}], "sink": sink,
                "rules": rules}
        if approvals:
            seat["approvals"] = approvals
        seats[name] = seat
    lic = {
        "description": "enterprise redistribution licence",
        "prohibited_categories": ["intelligence", "surveillance", "sanctioned"],
        "approval_required": ["government", "law_enforcement", "homeland_security", "military"],
        "redistribution": "full",
        "embargoed_countries": ["CU", "IR", "KP", "SY"],
    }
    if caps:
        lic["caps"] = {"post_ids_per_group_per_30d": 1_500_000,
                       "objects_per_recipient_per_day": 50_000}
    return {
        "sources": {SOURCE: {"licence": "x-enterprise",
                             "description": "replayed firehose captures"}},
        "licences": {"x-enterprise": lic},
        "field_groups": FIELD_GROUPS,
        "organisations": orgs,
        "clients": seats,
    }


def config(clients: int = DEFAULT_CLIENTS, rules_per_client: int = DEFAULT_RULES_PER_CLIENT,
           caps: bool = True):
    """The validated :class:`firehose.config.Config`."""
    from firehose.config import from_dict
    return from_dict(config_dict(clients, rules_per_client, caps), source="<replay bench>")


def pipeline(cfg, out_dir, batch_bytes: int | None = None, **kw):
    """A Pipeline of ``cfg`` writing to ``out_dir``, plans compiled for :data:`TODAY`."""
    from firehose.pipeline import DEFAULT_BATCH_BYTES, Pipeline
    return Pipeline(cfg, out_dir=str(out_dir), today=TODAY,
                             batch_bytes=batch_bytes or DEFAULT_BATCH_BYTES, **kw)


# ------------------------------------------------------------------------------ measuring

def status_kib(field: str) -> int:
    return ri.status_kib(field)


def reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (False where the kernel refuses)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def busy_jiffies() -> int:
    """CPU time used by everything on the machine so far, in clock ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - (v[4] if len(v) > 4 else 0)


def measured_run(pipe, paths) -> dict:
    """``pipe.run(paths)`` with what the benchmark reports: the Report's own figures (its
    seconds run from the first read to the manifest), CPU time of the process (all threads:
    reader, decoder, main) and of the main thread alone, the machine's other load, and the
    RSS before and at peak (VmHWM, reset just before the run)."""
    import resource
    import time
    peak_ok = reset_peak()
    rss0 = status_kib("VmRSS") * 1024
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    th0 = time.thread_time()
    busy0 = busy_jiffies()
    t0 = time.perf_counter()
    report = pipe.run(paths)
    wall = time.perf_counter() - t0
    busy1 = busy_jiffies()
    th1 = time.thread_time()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    g = report.get
    comp = sum(d.get("bytes", 0) for d in report.inputs)
    out = {
        "input_bytes": g("decode.bytes"), "input_gz_bytes": comp,
        "lines": g("decode.lines"), "tweets": g("decode.tweets"),
        "duplicates": g("decode.duplicates"), "compliance": g("decode.compliance"),
        "rejects": g("decode.rejects"), "batches": g("batches"),
        "matched_tweets": g("route.matched"), "pairs": g("entitle.in"),
        "delivered": g("entitle.delivered"), "denied": g("entitle.denied"),
        "denied_by": {k[len("entitle.denied."):]: v for k, v in report.counters.items()
                      if k.startswith("entitle.denied.")},
        "forwarded": g("compliance.forwarded"),
        "seconds": report.seconds, "wall": wall,
        "stage_seconds": dict(report.stage_seconds),
        "cpu_s": cpu, "main_thread_cpu_s": th1 - th0,
        "cpu_per_wall": cpu / wall if wall else 0.0,
        "other_load_cores": max(0.0, (busy1 - busy0) / os.sysconf("SC_CLK_TCK") - cpu) / wall
        if wall else 0.0,
        "rss_before_bytes": rss0,
        "peak_rss_bytes": status_kib("VmHWM") * 1024 if peak_ok else None,
        "ru_maxrss_bytes": ru1.ru_maxrss * 1024,
    }
    if report.out_dir:
        total = 0
        for root, _, files in os.walk(report.out_dir):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        out["output_bytes"] = total
    return out


# ------------------------------------------------------------------------------ checks

def match_rates(cfg=None, n: int | None = None) -> list[tuple[str, float]]:
    """(seat, share of the first ``n`` tweets of the rules capture it matches), sorted."""
    from firehose.routing import Router
    cfg = cfg or config()
    table = ri.tweets(n)
    routed = Router.from_config(cfg).route(table)
    return sorted(((c, len(rows) / table.num_rows) for c, (rows, _) in routed.by_client.items()),
                  key=lambda x: x[1])


def _print_rates() -> None:
    import statistics
    rates = match_rates()
    vals = [v for _, v in rates]
    print(f"{len(rates)} seats; share of tweets matched per seat: median "
          f"{statistics.median(vals):.2%}, mean {statistics.mean(vals):.2%}, "
          f"min {vals[0]:.2%} ({rates[0][0]}), max {vals[-1]:.2%} ({rates[-1][0]})")
    for c, v in rates[:: max(1, len(rates) // 20)]:
        print(f"  {c:<20}{v:8.2%}")


if __name__ == "__main__":
    _print_rates()
