"""Entitlements: plans from the organisation graph, licences and approvals; per-batch masks,
projections, caps and the audit balance."""
from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import pyarrow as pa
import pytest

import firehose
from firehose import config as cfg
from firehose.compliance import ComplianceState
from firehose.entitlements import DENIALS, Entitlements, _Spill, compile_plans
from firehose.routing import MATCHING_RULES, Router

BASE = """
[sources.fh]
licence = "lic"
[licences.lic]
prohibited_categories = ["intelligence"]
approval_required = ["government", "homeland_security"]
embargoed_countries = ["KP"]
[field_groups]
core = ["id", "created_at", "text", "lang"]
author_profile = ["author_id", "author_screen_name"]
geo_exact = ["coordinates"]
geo_place = ["place_id", "place_country_code"]
"""


def seat(name, org, *, groups=("core", "geo_exact"), countries=("US",), use_case="news",
         approvals="", rules='[{ id = "r1", value = "hello" }]'):
    gl = ", ".join(f'"{g}"' for g in groups)
    cl = ", ".join(f'"{c}"' for c in countries)
    return f"""
[clients.{name}]
organisation = "{org}"
delivery_countries = [{cl}]
use_case = "{use_case}"
grants = [{{ source = "fh", field_groups = [{gl}] }}]
rules = {rules}
{approvals}
"""


def plans(text, **kw):
    return compile_plans(cfg.loads(BASE + text), today=dt.date(2026, 1, 1), **kw)


def org(name, cats, **edges):
    lines = [f"[organisations.{name}]", f"categories = {json.dumps(cats)}"]
    for k, v in edges.items():
        lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


def test_a_client_whose_parents_parent_is_an_intelligence_agency_is_denied_with_the_path():
    ps = plans(org("agency", ["intelligence"]) +
               org("holding", ["commercial"], owned_by='[{ org = "agency", percent = 60 }]') +
               org("frontco", ["commercial"], owned_by='[{ org = "holding", percent = 100 }]') +
               org("paper", ["media"]) + seat("front", "frontco") + seat("news", "paper"))
    p = ps.plan("front", "fh")
    assert not p.allowed
    d = p.denials[0]
    assert d.reason == "prohibited_category" and d.policy == "lic"
    assert d.path_text == "frontco -> holding -> agency -> intelligence"
    assert ps.plan("news", "fh").allowed


def test_ownership_aggregates_across_prohibited_owners():
    two = (org("a1", ["intelligence"]) + org("a2", ["intelligence"]) + org("clean", ["commercial"]))
    ps = plans(two + org("x", ["commercial"], owned_by='[{ org = "a1", percent = 25 }, '
                                                     '{ org = "a2", percent = 25 }]')
               + org("y", ["commercial"], owned_by='[{ org = "a1", percent = 25 }, '
                                                  '{ org = "clean", percent = 75 }]')
               + seat("sx", "x") + seat("sy", "y"))
    assert not ps.plan("sx", "fh").allowed
    assert "50% owned" in ps.plan("sx", "fh").denials[0].detail
    assert ps.plan("sy", "fh").allowed          # 25% is under the 50% threshold


def test_a_missing_parent_denies():
    ps = plans(org("x", ["commercial"], controlled_by='["ghost"]') + seat("s", "x"))
    d = ps.plan("s", "fh").denials[0]
    assert d.reason == "unresolved_ownership" and d.path == ("x", "ghost")


def test_a_contractor_acting_on_behalf_of_an_agency_is_denied():
    ps = plans(org("agency", ["intelligence"]) +
               org("contractor", ["commercial"], acts_on_behalf_of='["agency"]') +
               seat("c", "contractor"))
    assert ps.plan("c", "fh").denials[0].path_text == "contractor -> agency -> intelligence"


def test_homeland_security_parent_approved_seat_and_barred_intelligence_subunit():
    text = (org("dhs", ["homeland_security"]) +
            org("alerts", ["homeland_security"], component_of='["dhs"]') +
            org("intel-unit", ["intelligence"], component_of='["dhs"]') +
            seat("alerts-seat", "alerts", groups=("core", "geo_exact", "author_profile"),
                 use_case="news alerts",
                 approvals='approvals = [{ use_case = "news alerts", by = "legal", '
                           'date = 2025-01-10 }]') +
            seat("intel-seat", "intel-unit", use_case="news alerts",
                 approvals='approvals = [{ use_case = "news alerts", by = "legal", '
                           'date = 2025-01-10 }]') +
            seat("unapproved", "alerts", use_case="monitoring"))
    ps = plans(text)
    ok = ps.plan("alerts-seat", "fh")
    assert ok.allowed
    assert "coordinates" not in ok.columns and "author_screen_name" not in ok.columns
    assert {d.reason for d in ok.column_denials} == {"field_denied"}
    assert ps.plan("intel-seat", "fh").denials[0].reason == "prohibited_category"
    assert ps.plan("unapproved", "fh").denials[0].reason == "approval_missing"


def test_embargoed_delivery_country_and_no_grant():
    ps = plans(org("p", ["media"]) + seat("k", "p", countries=("US", "KP")))
    assert ps.plan("k", "fh").denials[0].reason == "embargoed_country"
    assert ps.plan("nobody", "fh").denials[0].reason == "no_plan"


def test_plans_have_a_stable_hash_that_changes_with_the_config():
    a = plans(org("p", ["media"]) + seat("s", "p"))
    b = plans(org("p", ["media"]) + seat("s", "p"))
    c = plans(org("p", ["intelligence"]) + seat("s", "p"))
    assert a.hash == b.hash != c.hash


# ------------------------------------------------------------------------ the data plane

def tweets(*objs):
    data = b"".join(json.dumps(o).encode() + b"\n" for o in objs)
    dec = firehose.Decoder(dedupe=False)
    return firehose.DecodeResult.concat([dec.feed(data, source="t"), dec.finish()])


def tw(tid, text="hello world", uid=7, **extra):
    o = {"id_str": str(tid), "text": text, "user": {"id_str": str(uid), "screen_name": "u"},
         "created_at": "Wed Aug 27 13:08:45 +0000 2014"}
    o.update(extra)
    return o


CONFIG = (org("paper", ["media"]) + org("agency", ["intelligence"]) +
          org("front", ["commercial"], owned_by='[{ org = "agency", percent = 100 }]') +
          seat("news", "paper", countries=("DE",)) + seat("spy", "front") +
          seat("nogeo", "paper", groups=("core",)))


def run_batch(decoded, config_text=CONFIG, state=None):
    config = cfg.loads(BASE + config_text)
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)),
                       state or ComplianceState(), source="fh")
    ent.compliance.apply(decoded.compliance)
    routed = Router.from_config(config).route(decoded.tweets)
    return ent.apply(decoded.tweets, routed.by_client)


def balance(result):
    a = result.audit.to_pylist()
    for client in {r["client"] for r in a}:
        rows = [r for r in a if r["client"] == client]
        matched = sum(r["rows"] for r in rows if r["outcome"] == "matched")
        delivered = sum(r["rows"] for r in rows if r["outcome"] == "delivered")
        denied = sum(r["rows"] for r in rows if r["outcome"] == "denied")
        assert matched == delivered + denied, client
    return a


def test_audit_balances_and_the_front_company_gets_nothing():
    d = tweets(tw(1), tw(2), tw(3, "nothing here"))
    res = run_batch(d)
    balance(res)
    assert res.delivered["spy"].num_rows == 0
    assert res.table("news").column("id").to_pylist() == [1, 2]
    spy = [r for r in res.denials.to_pylist() if r["client"] == "spy"]
    assert {r["path"] for r in spy} == {"front -> agency -> intelligence"}
    assert spy[0]["rules"] == ["r1"]
    assert res.ledger.num_rows == 4          # news 2 + nogeo 2


def test_denial_labels_are_dictionary_columns_that_survive_parquet(tmp_path):
    import pyarrow.parquet as pq
    d = tweets(tw(1), tw(2), tw(3), tw(4, withheld_in_countries=["XX"]))
    res = run_batch(d)
    den = res.denials
    assert den.schema == DENIALS
    spy = [r for r in den.to_pylist() if r["client"] == "spy"]
    assert [r["tweet_id"] for r in spy] == [1, 2, 3, 4]
    # the barred seat's rows share one path and one detail: each distinct value is stored once
    for name in ("reason", "policy", "path", "detail"):
        col = den.column(name).combine_chunks()
        values = col.dictionary.to_pylist()
        assert len(values) == len(set(values)), name
        assert set(values) == {r[name] for r in den.to_pylist()}, name
    assert {r["path"] for r in spy} == {"front -> agency -> intelligence"}
    assert {r["reason"] for r in den.to_pylist() if r["client"] == "news"} == {"withheld"}
    pq.write_table(den, tmp_path / "d.parquet")
    back = pq.read_table(tmp_path / "d.parquet")
    assert back.schema == DENIALS and back.to_pylist() == den.to_pylist()


def test_delete_before_the_tweet_and_retweet_of_a_deleted_tweet():
    d = tweets({"delete": {"status": {"id_str": "1"}}}, tw(1),
               tw(2, "hello RT", retweeted_status=tw(1)), tw(3))
    res = run_batch(d)
    balance(res)
    assert res.table("news").column("id").to_pylist() == [3]
    reasons = {(r["tweet_id"], r["reason"]) for r in res.denials.to_pylist() if r["client"] == "news"}
    assert reasons == {(1, "deleted"), (2, "deleted")}


def test_withheld_in_the_seats_country_and_everywhere():
    d = tweets(tw(1, withheld_in_countries=["DE"]), tw(2, withheld_in_countries=["XX"]),
               tw(3, withheld_in_countries=["FR"]))
    res = run_batch(d)
    assert res.table("news").column("id").to_pylist() == [3]      # news delivers to DE
    assert res.table("nogeo").column("id").to_pylist() == [1, 3]  # nogeo delivers to US


def test_scrub_geo_and_a_seat_without_geo_never_sees_coordinates():
    geo = {"coordinates": {"type": "Point", "coordinates": [13.4, 52.5]}}
    d = tweets({"scrub_geo": {"user_id_str": "7", "up_to_status_id_str": "1"}},
               tw(1, **geo), tw(2, **geo))
    res = run_batch(d)
    news = res.table("news")
    assert news.column("coordinates").to_pylist() == [None, {"lon": 13.4, "lat": 52.5}]
    assert "coordinates" not in res.table("nogeo").column_names


def test_a_client_recategorised_between_batches_is_cut_off_at_the_batch_boundary():
    config1 = cfg.loads(BASE + org("p", ["media"]) + seat("s", "p"))
    config2 = cfg.loads(BASE + org("p", ["intelligence"]) + seat("s", "p"))
    ent = Entitlements(compile_plans(config1, version=1, today=dt.date(2026, 1, 1)), source="fh")
    router = Router.from_config(config1)
    d = tweets(tw(1))
    first = ent.apply(d.tweets, router.route(d.tweets).by_client)
    ent.replace_plans(compile_plans(config2, version=2, today=dt.date(2026, 1, 1)))
    second = ent.apply(d.tweets, router.route(d.tweets).by_client)
    assert first.delivered["s"].num_rows == 1 and second.delivered["s"].num_rows == 0
    assert {r["plan_version"] for r in second.audit.to_pylist()} == {2}


def test_caps_apply_in_tweet_id_order():
    config = cfg.loads(BASE + "[licences.lic.caps]\nobjects_per_recipient_per_day = 2\n"
                       + org("p", ["media"]) + seat("s", "p"))
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh")
    d = tweets(tw(5), tw(3), tw(4), tw(1))
    res = ent.apply(d.tweets, Router.from_config(config).route(d.tweets).by_client)
    balance(res)
    assert res.table("s").column("id").to_pylist() == [1, 3]
    assert sorted(r["tweet_id"] for r in res.denials.to_pylist()) == [4, 5]
    assert {r["reason"] for r in res.denials.to_pylist()} == {"cap_exceeded"}


def test_caps_apply_in_tweet_id_order_whatever_order_the_matches_come_in():
    """A batch already in id order, a seat's matches handed over in another order (a router
    is free to): the cap still keeps the lowest ids."""
    config = cfg.loads(BASE + "[licences.lic.caps]\nobjects_per_recipient_per_day = 2\n"
                       + org("p", ["media"]) + seat("s", "p"))
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh")
    d = tweets(tw(1), tw(3), tw(4), tw(5))
    rows, rules = Router.from_config(config).route(d.tweets).by_client["s"]
    back = np.arange(len(rows))[::-1].copy()
    res = ent.apply(d.tweets, {"s": (rows[back], rules.take(pa.array(back)))})
    balance(res)
    assert res.table("s").column("id").to_pylist() == [1, 3]
    assert sorted(r["tweet_id"] for r in res.denials.to_pylist()) == [4, 5]


def test_matching_rules_lists_every_rule_of_the_client_that_matched():
    rules = '[{ id = "a", value = "hello", tag = "greet" }, { id = "b", value = "world" }]'
    config_text = org("p", ["media"]) + seat("s", "p", rules=rules)
    res = run_batch(tweets(tw(1), tw(2, "just world")), config_text)
    col = res.table("s").column("matching_rules")
    assert col.type == MATCHING_RULES           # strings, whatever the router holds inside
    assert col.to_pylist() == [[{"id": "a", "tag": "greet"}, {"id": "b", "tag": None}],
                               [{"id": "b", "tag": None}]]


@pytest.mark.parametrize("seed", range(5))
def test_routing_groups_every_match_by_client_once_per_row_with_all_its_rules(seed):
    """The core's grouping against a plain reading of the (row, rule) matches."""
    from firehose import _core
    rng = np.random.default_rng(seed)
    n, nseat = int(rng.integers(1, 400)), int(rng.integers(1, 9))
    rule_seat = rng.integers(0, nseat, int(rng.integers(1, 20))).astype(np.int32)
    pairs = sorted({(int(r), int(k)) for r, k in zip(rng.integers(0, n, 600),
                                                    rng.integers(0, len(rule_seat), 600))}
                   if seed else set())
    rows = np.array([r for r, _ in pairs], np.int64)
    rule = np.array([k for _, k in pairs], np.int32)
    pair_at, row_at = np.zeros(nseat + 1, np.int64), np.zeros(nseat + 1, np.int64)
    matched = _core.group_count(rows, rule, rule_seat, n, pair_at, row_at)
    assert matched == len({r for r, _ in pairs})
    rule_s = np.empty(len(rows), np.int32)
    seat_rows = np.empty(int(row_at[-1]), np.int64)
    offsets = np.empty(int(row_at[-1]) + nseat, np.int32)
    local = rng.permutation(len(rule_seat)).astype(np.int32)   # any relabelling of rules
    _core.group_fill(rows, rule, rule_seat, local, pair_at, row_at, rule_s, seat_rows, offsets)
    for s in range(nseat):
        mine = [(r, k) for r, k in pairs if rule_seat[k] == s]
        assert rule_s[pair_at[s]:pair_at[s + 1]].tolist() == [local[k] for _, k in mine]
        want_rows = sorted({r for r, _ in mine})
        assert seat_rows[row_at[s]:row_at[s + 1]].tolist() == want_rows
        offs = offsets[row_at[s] + s:row_at[s + 1] + s + 1].tolist()
        lists = [[k for _, k in mine][a:b] for a, b in zip(offs, offs[1:])]
        assert offs[0] == 0 and offs[-1] == len(mine)
        assert lists == [[k for r, k in mine if r == row] for row in want_rows]
    # matches out of row order, a row beyond the batch, an unknown rule: refused
    if len(rows) > 1 and rows[0] != rows[-1]:
        for bad in ((rows[::-1].copy(), rule[::-1].copy(), n),
                    (rows, rule, int(rows[-1])),
                    (rows, np.full(len(rule), len(rule_seat), np.int32), n)):
            with pytest.raises(ValueError):
                _core.group_count(bad[0], bad[1], rule_seat, bad[2], pair_at, row_at)
    with pytest.raises(ValueError):                              # a row before the batch
        _core.group_count(np.array([-1], np.int64), np.array([0], np.int32), rule_seat, n,
                          pair_at, row_at)
    if len(rows):                       # counts that do not start at 0: refused, not written
        _core.group_count(rows, rule, rule_seat, n, pair_at, row_at)
        shifted = pair_at - 1
        with pytest.raises(ValueError):
            _core.group_fill(rows, rule, rule_seat, local, shifted, row_at, rule_s, seat_rows,
                             offsets)


def test_a_clients_rule_lists_carry_only_its_own_rules():
    """Each client's matching_rules are indices into its own rules' ids and tags, so what a
    client's lists hold (and what pickling them ships) does not grow with other clients."""
    import pickle
    many = ", ".join(f'{{ id = "r{j}", value = "zzz{j}" }}' for j in range(300))
    config = cfg.loads(BASE + org("p", ["media"]) + seat("big", "p", rules=f"[{many}]")
                       + seat("s", "p", rules='[{ id = "a", value = "hello", tag = "t" }]'))
    d = tweets(tw(1), tw(2, "hello zzz7"))
    routed = Router.from_config(config).route(d.tweets).by_client
    rows, rules = routed["s"]
    assert rows.tolist() == [0, 1]
    assert rules.to_pylist() == [[{"id": "a", "tag": "t"}]] * 2
    assert len(rules.values.field("id").dictionary) == 1
    assert routed["big"][1].to_pylist() == [[{"id": "r7", "tag": None}]]
    assert len(pickle.dumps(rules)) < 2000
    with pytest.raises(ValueError):     # a rule index outside the set is refused, not wrapped
        Router.from_config(config).group(2, np.array([0]), np.array([2**32 + 1]))


def test_null_ids_are_denied():
    d = tweets(tw(1))
    t = d.tweets.set_column(0, pa.field("id", pa.int64()), pa.array([None], pa.int64()))
    config = cfg.loads(BASE + org("p", ["media"]) + seat("s", "p"))
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh")
    res = ent.apply(t, Router.from_config(config).route(t).by_client)
    assert res.delivered["s"].num_rows == 0
    assert [r["reason"] for r in res.denials.to_pylist()] == ["null_id"]


def test_a_delete_of_a_delivered_tweet_is_forwarded_to_exactly_its_recipients():
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p") +
                       seat("b", "p", rules='[{ id = "r", value = "other" }]'))
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh")
    router = Router.from_config(config)
    d = tweets(tw(1), tw(2, "other words"))
    ent.apply(d.tweets, router.route(d.tweets).by_client)
    later = tweets({"delete": {"status": {"id_str": "1"}}}, {"delete": {"status": {"id_str": "9"}}})
    fwd = ent.forward(later.compliance)
    assert list(fwd) == ["a"]
    assert fwd["a"].column("tweet_id").to_pylist() == [1]
    assert ent.plan_versions().num_rows == 2


def test_user_events_reach_the_seats_that_got_the_users_tweets_after_many_batches():
    """Delivered authors are sorted in lazily, and at the latest after a few batches (each
    pending batch keeps its arrays alive). Batches out of id order (ranks are not rows) and
    in order; a user event then goes to exactly the seats that got a tweet by that user."""
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p") +
                       seat("b", "p", rules='[{ id = "r", value = "other" }]'))
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh")
    router = Router.from_config(config)
    for k in range(9):
        base = 100 * k
        d = tweets(tw(base + 5, uid=500 + k), tw(base + 3, "other words", uid=600 + k),
                   tw(base + 4, uid=700 + k))             # ids out of order
        ent.apply(d.tweets, router.route(d.tweets).by_client)
        assert len(ent._pending_authors) <= 4
    for uid, want in ((500, ["a"]), (608, ["b"]), (704, ["a"]), (999, [])):
        # a delete of an unknown tweet, made a user event about its user
        ev = tweets({"delete": {"status": {"id_str": "1", "user_id_str": str(uid)}}}).compliance
        assert ev.column("kind").to_pylist() == ["delete"]
        kind = ev.schema.get_field_index("kind")
        ev = ev.set_column(kind, "kind", pa.array(["user_delete"]).cast(ev.schema.field(kind).type))
        fwd = ent.forward(ev)
        assert sorted(fwd) == want, uid


def _caps_oracle(state, plan, rows, days, code):
    """Row by row, as the licence reads: over the seat's day cap or the group's 30-day cap
    means denied, and a denied row consumes nothing."""
    day_counts, group_counts = state
    over = np.zeros(len(rows), bool)
    for i, r in enumerate(rows):
        if code[i]:
            continue
        day = int(days[r])
        if plan.objects_per_day is not None and \
                day_counts.get((plan.client, day), 0) >= plan.objects_per_day:
            over[i] = True
            continue
        if plan.group_ids_per_30d is not None:
            used = sum(group_counts.get((plan.group, x), 0) for x in range(day - 29, day + 1))
            if used >= plan.group_ids_per_30d:
                over[i] = True
                continue
            group_counts[(plan.group, day)] = group_counts.get((plan.group, day), 0) + 1
        if plan.objects_per_day is not None:
            day_counts[(plan.client, day)] = day_counts.get((plan.client, day), 0) + 1
    return over


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_caps_equal_the_row_by_row_reading(seed):
    import dataclasses
    rng = np.random.default_rng(seed)
    config = cfg.loads(BASE + org("p", ["media"]) + seat("s", "p"))
    base_plan = compile_plans(config, today=dt.date(2026, 1, 1)).plan("s", "fh")
    plans = [dataclasses.replace(base_plan, client=f"s{k}", objects_per_day=int(rng.integers(5, 400)),
                                 group_ids_per_30d=int(rng.integers(50, 3000)) if k % 2 else None)
             for k in range(3)]
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh")
    state = ({}, {})
    for _ in range(12):                        # batches; days drift forward, sometimes back
        n = int(rng.integers(0, 300))
        days = np.sort(rng.integers(0, 40, n)) if rng.random() < 0.7 else rng.integers(0, 40, n)
        for plan in plans:
            rows = np.arange(n)
            code = (rng.random(n) < 0.1).astype(np.int16)
            marked = {}

            def mark(mask, reason, policy, *a):
                marked["over"] = mask.copy()

            ent._caps(plan, rows, days, code.copy(), mark)
            want = _caps_oracle(state, plan, rows, days, code)
            got = marked.get("over", np.zeros(n, bool))
            assert np.array_equal(got, want)
    assert ent._day_counts == state[0] and ent._group_counts == state[1]


def test_a_batch_out_of_id_order_with_repeated_ids_is_delivered_in_id_order():
    """Rows in id order with each row's own rules, repeated ids in match order, whatever order
    the batch and the matches come in."""
    rules = '[{ id = "x", value = "hello" }, { id = "y", value = "world" }]'
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p") + seat("b", "p", rules=rules)
                       + "[licences.lic.caps]\nobjects_per_recipient_per_day = 5\n")
    d = tweets(tw(5), tw(3), tw(9, "hello there"), tw(3), tw(1), tw(7, "just world"), tw(5),
               tw(2, "nothing"), tw(8))
    ids = d.tweets.column("id").to_pylist()
    matches = Router.from_config(config).route(d.tweets).by_client
    res = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh") \
        .apply(d.tweets, matches)
    balance(res)
    for client in ("a", "b"):
        got = res.delivered[client]
        keys = [(ids[r], int(r)) for r in got.rows]
        assert keys == sorted(keys) and len(keys) == 5        # the cap keeps the 5 lowest ids
        rows, rule_lists = matches[client]
        own = {int(r): rule_lists[i].as_py() for i, r in enumerate(rows)}
        assert [got.rules[int(i)].as_py() for i in got.rules_at] == [own[int(r)] for r in got.rows]
    assert [r["tweet_id"] for r in res.denials.to_pylist() if r["client"] == "b"] == [7, 8, 9]
    # matches given back to front: the same ids in id order, a repeated id's rows in match order
    rows, rule_lists = matches["b"]
    back = np.arange(len(rows))[::-1].copy()
    res2 = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh") \
        .apply(d.tweets, {"b": (rows[back], rule_lists.take(pa.array(back)))})
    balance(res2)
    got2 = res2.delivered["b"]
    assert [ids[r] for r in got2.rows] == [1, 3, 3, 5, 5]
    assert [int(r) for r in got2.rows] == [4, 3, 1, 6, 0]
    assert res2.ledger.column("tweet_id").to_pylist() == [1, 3, 3, 5, 5]


def _state_of(ent):
    users = {k: np.unique(np.concatenate(v)).tolist() for k, v in ent._delivered_users.items()}
    authors = sorted({(int(a), int(t)) for run in ent._author_runs() for a, t in zip(*run)})
    return (ent.batch, dict(ent._day_counts), dict(ent._group_counts),
            {k: v.tolist() for k, v in ent._held_ids().items()}, users,
            authors)


def test_the_state_survives_a_checkpoint_in_both_formats():
    """state_to_bytes -> load_state gives the same caps counters and remembered ids (runs
    merged, repeats gone); a state written with plain string columns (older checkpoints)
    loads the same."""
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p") + seat("b", "p"))
    p = compile_plans(config, today=dt.date(2026, 1, 1))
    ent = Entitlements(p, source="fh")
    rng = np.random.default_rng(4)
    for client in ("a", "b"):
        for _ in range(5):
            ent._remember(client, np.sort(rng.integers(1, 50, 20)))
        ent._delivered_users[client] = [np.unique(rng.integers(1, 50, 7))]
    for _ in range(3):        # the author index: sorted runs and a pending batch
        ent._pending_authors.append((rng.integers(1, 9, 30), rng.integers(100, 140, 30)))
        ent._author_runs()
    ent._pending_authors.append((rng.integers(1, 9, 30), rng.integers(100, 140, 30)))
    ent._day_counts[("a", 20000)] = 3
    ent._group_counts[("p", 20001)] = 9
    ent.batch = 7
    want = _state_of(ent)
    data = ent.state_to_bytes()
    again = Entitlements(p, source="fh")
    again.load_state(data)
    assert _state_of(again) == want
    table = pa.ipc.open_stream(data).read_all()
    plain = table.set_column(0, "kind", table.column("kind").cast(pa.string())) \
                 .set_column(1, "name", table.column("name").cast(pa.string()))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, plain.schema) as w:
        w.write_table(plain)
    old = Entitlements(p, source="fh")
    old.load_state(sink.getvalue().to_pybytes())
    assert _state_of(old) == want
    with pytest.raises(firehose.FirehoseError, match="entitlement state is corrupt"):
        Entitlements(p, source="fh").load_state(b"not arrow")


@pytest.mark.parametrize("seed", range(12))
def test_the_core_lays_each_seats_pairs_out_by_rank_and_splits_them(seed):
    """seat_pairs_by_rank against a sort of each seat's positions by (rank, position), on
    seats ascending or not, with rows matched twice, small and large seats and batches whose
    ranks need one, two or three radix passes, or none (a batch in id order: the identity);
    split_pairs against boolean selections."""
    from firehose import _core
    rng = np.random.default_rng(seed)
    n = 4_200_000 if seed == 8 else int(rng.choice([1, 5, 300, 5000, 40000]))
    rank = rng.permutation(n).astype(np.int64)
    if seed in (3, 7):          # newest first: a seat's run of neighbouring rows crowds buckets
        rank = np.arange(n, dtype=np.int64)[::-1].copy()
    if seed >= 9:               # in id order: a seat's rows are its ranks
        rank = np.arange(n, dtype=np.int64)
    row_ids = rng.integers(0, 1 << 40, n)
    flags = rng.integers(0, 256, n).astype(np.uint8)
    seats = []
    for _ in range(int(rng.integers(0, 7))):
        m = int(rng.choice([0, 1, 3, 47, 48, 200, 3000, min(n, 20000 if seed < 8 else 3000)]))
        r = np.sort(rng.choice(n, size=min(m, n), replace=False))
        kind = rng.random()
        if kind > 0.8 and m:                    # a run of neighbouring rows
            lo = int(rng.integers(0, n - min(m, n) + 1))
            r = np.arange(lo, lo + min(m, n))
        elif kind < 0.3:
            r = rng.permutation(r)
        elif kind < 0.5 and len(r):
            r = np.sort(np.concatenate([r, rng.choice(r, size=1 + len(r) // 10)]))
        seats.append(r.astype(np.int64))
    ascending = np.array([len(r) < 2 or bool((r[1:] > r[:-1]).all()) for r in seats], np.uint8)
    total = sum(len(r) for r in seats)
    ranks, order, ids = (np.full(total, -7, np.int64) for _ in range(3))
    f = np.zeros(total, np.uint8)
    scratch = [None, np.empty(14 * n + 64, np.uint8)][seed % 2]
    _core.seat_pairs_by_rank(seats, ascending, rank, row_ids, flags, ranks, order, ids, f,
                             scratch)
    perm = np.argsort(rank)
    rows = perm[ranks]
    assert np.array_equal(rank[rows], ranks)
    want = [i for r in seats for i in sorted(range(len(r)), key=lambda i, r=r: (rank[r[i]], i))]
    want_rows = np.concatenate([r for r in seats] or [np.zeros(0, np.int64)])
    lo = 0
    for r in seats:
        pos = np.array(want[lo:lo + len(r)], np.int64)
        assert np.array_equal(order[lo:lo + len(r)], pos)
        assert np.array_equal(rows[lo:lo + len(r)], r[pos])
        lo += len(r)
    assert lo == total and len(want_rows) == total
    assert np.array_equal(ids, row_ids[rows]) and np.array_equal(f, flags[rows])

    code = np.where(rng.random(total) < 0.3, rng.integers(1, 9, total), 0).astype(np.int8)
    keep = code == 0
    n_bad = int((~keep).sum())
    outs = [np.empty(n_bad, np.int64) for _ in range(3)] + [np.empty(n_bad, np.int8)]
    scrub = np.empty(total - n_bad, bool)
    want_k = (rows[keep].copy(), order[keep].copy(), ids[keep].copy(), (f[keep] & 0x80) != 0)
    want_b = (np.flatnonzero(~keep), order[~keep].copy(), ids[~keep].copy(), code[~keep])
    hit = np.zeros(n, np.uint8)
    want_hit = np.zeros(n, np.uint8)
    want_hit[rows[keep]] = 1
    got = _core.split_pairs(code, rows, order, ids, f, 0x80, scrub.view(np.uint8), *outs, hit)
    assert got == total - n_bad
    assert np.array_equal(hit, want_hit)      # the rows delivered to any seat
    for a, b in zip((rows[:got], order[:got], ids[:got], scrub), want_k):
        assert np.array_equal(a, b)
    for a, b in zip(outs, want_b):
        assert np.array_equal(a, b)
    if n_bad:            # the bad_* arrays must hold exactly the denied pairs
        with pytest.raises(ValueError):
            _core.split_pairs(code, rows, order, ids, f, 0x80, scrub.view(np.uint8),
                              *(o[:-1] for o in outs))


def test_the_core_refuses_a_matched_row_outside_the_batch():
    from firehose import _core
    rank = np.arange(4, dtype=np.int64)
    for bad in ([0, 4], [2, -1], [5, 1]):
        seats = [np.array(bad, np.int64)]
        asc = np.array([bad[1] > bad[0]], np.uint8)
        out = [np.empty(2, np.int64) for _ in range(3)] + [np.empty(2, np.uint8)]
        with pytest.raises(IndexError):
            _core.seat_pairs_by_rank(seats, asc, rank, rank, np.zeros(4, np.uint8), *out)
    # the rows are read back by rank: a rank that is not a permutation is refused
    for bad_rank in ([0, 1, 1, 3], [0, 1, 2, 4], [-1, 0, 1, 2]):
        out = [np.empty(2, np.int64) for _ in range(3)] + [np.empty(2, np.uint8)]
        with pytest.raises(ValueError):
            _core.seat_pairs_by_rank([np.array([0, 2], np.int64)], np.ones(1, np.uint8),
                                     np.array(bad_rank, np.int64), rank, np.zeros(4, np.uint8),
                                     *out)


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_the_core_ranks_rows_in_id_order(n):
    from firehose import _core
    rng = np.random.default_rng(n)
    for ids in (rng.integers(0, 1 << 50, n), rng.integers(0, max(1, n // 2), n)):
        perm = np.argsort(ids, kind="stable")
        rank = np.full(n, -1, np.int64)
        dup = _core.id_ranks(perm, ids, rank)
        want = np.empty(n, np.int64)
        want[perm] = np.arange(n)
        assert np.array_equal(rank, want)
        assert dup == (len(np.unique(ids)) < n)


@pytest.mark.parametrize("seed", range(6))
def test_the_core_merges_two_ascending_runs_into_distinct_ids(seed):
    from firehose import _core
    rng = np.random.default_rng(seed)
    for na, nb in ((0, 0), (0, 5), (7, 0), (1, 1), (300, 2000), (5000, 40)):
        hi = max(2, (na + nb) // (1 + seed % 3))       # some seeds repeat ids a lot
        a = np.sort(rng.integers(-hi, hi, na))
        b = np.sort(rng.integers(-hi, hi, nb))
        out = np.full(na + nb, 7, np.int64)
        k = _core.merge_distinct(a, b, out)
        assert np.array_equal(out[:k], np.unique(np.concatenate([a, b])))
        # one run wholly before the other (meeting at an id or not), or the same run twice
        for x, y in ((a, np.sort(rng.integers(hi, 3 * hi, nb))),
                     (a, np.sort(rng.integers(a[-1] if na else 0, 3 * hi, nb))),
                     (np.sort(rng.integers(hi, 3 * hi, na)), b), (a, a)):
            out = np.full(len(x) + len(y), 7, np.int64)
            for p, q in ((x, y), (y, x)):
                k = _core.merge_distinct(p, q, out)
                assert np.array_equal(out[:k], np.unique(np.concatenate([p, q])))
    for a, b in (([3, 1], [2]), ([1], [5, 4, 6])):
        with pytest.raises(ValueError):
            _core.merge_distinct(np.array(a, np.int64), np.array(b, np.int64),
                                 np.empty(len(a) + len(b), np.int64))
    with pytest.raises(ValueError):
        _core.merge_distinct(np.arange(3), np.arange(3), np.empty(5, np.int64))


@pytest.mark.parametrize("seed", range(4))
def test_denied_rule_id_lists_are_gathered_from_every_seats_lists(seed):
    """The denial `rules` column is built for all seats at once from list offsets; it must
    equal each denied pair's list read one by one: sliced list arrays, null lists, null
    rule ids, rule ids as plain strings or as the router's dictionary columns."""
    from firehose.entitlements import rule_id_lists
    from firehose.schema import MATCHING_RULES
    rng = np.random.default_rng(seed)

    def lists(n, as_dictionary):
        vals = [None if rng.random() < 0.1 else
                [{"id": None if rng.random() < 0.05 else f"r{rng.integers(0, 9)}", "tag": "t"}
                 for _ in range(int(rng.integers(0, 4)))] for _ in range(n)]
        arr = pa.array(vals, MATCHING_RULES)
        if as_dictionary:
            flat = arr.values
            items = pa.StructArray.from_arrays(
                [flat.field("id").dictionary_encode(), flat.field("tag").dictionary_encode()],
                names=["id", "tag"])
            arr = pa.ListArray.from_arrays(arr.offsets, items, mask=arr.is_null())
        return arr

    parts = []
    for s in range(int(rng.integers(1, 7))):
        rules = lists(200, bool(s % 2)).slice(int(rng.integers(0, 30)), 150)
        parts.append((rules, rng.choice(150, size=int(rng.integers(0, 40)))))
    want = [None if r is None else [x["id"] for x in r]
            for rules, order in parts for r in (rules.to_pylist()[i] for i in order)]
    got = rule_id_lists(parts)
    assert got.type == pa.list_(pa.string())
    assert got.to_pylist() == want


def test_the_core_gathers_chosen_lists_and_refuses_bad_offsets():
    from firehose import _core
    offs = [np.array([0, 2, 2, 5], np.int32), np.array([3, 4], np.int32)]
    codes = [np.array([1, 2, 3, 4, 5], np.int32), np.array([9, 9, 7, 8, 6], np.int32)]
    orders = [np.array([2, 0, 1, 2], np.int64), np.array([0, 0], np.int64)]
    out = np.empty(7, np.int32)
    got = _core.gather_list_codes(offs, codes, orders, np.array([0, 100], np.int64), out)
    assert out.tolist() == [0, 3, 5, 5, 8, 9, 10]
    assert got.tolist() == [3, 4, 5, 1, 2, 3, 4, 5, 108, 108]
    for bad_order in ([3], [-1]):
        with pytest.raises(IndexError):
            _core.gather_list_codes(offs[:1], codes[:1], [np.array(bad_order, np.int64)],
                                    np.zeros(1, np.int64), np.empty(2, np.int32))
    with pytest.raises(ValueError):      # offsets past the codes
        _core.gather_list_codes([np.array([0, 6], np.int32)], codes[:1],
                                [np.array([0], np.int64)], np.zeros(1, np.int64),
                                np.empty(2, np.int32))


def test_the_arena_hands_a_buffer_out_again_only_once_nothing_refers_to_it():
    from firehose.entitlements import _Arena
    arena = _Arena(keep=1)
    a = arena.empty(1 << 18, np.int64)               # 2 MiB: from the arena
    a[:] = 7
    b = arena.empty(1 << 18, np.int64)               # `a` is alive: another buffer
    assert not np.shares_memory(a, b)
    kept = pa.array(a[10:20])                        # an Arrow array over a slice of `a`
    del a
    c = arena.empty(1 << 18, np.int64)
    assert not np.shares_memory(c, np.asarray(kept))     # still referred to by Arrow
    assert kept.to_pylist() == [7] * 10
    del kept
    d = arena.empty(1 << 18, np.int64)
    del d
    e = arena.empty((1 << 18) - 5, np.int64)         # free again: reused (best fit)
    assert e.__array_interface__["data"][0] in {x.__array_interface__["data"][0]
                                                for x in arena._bufs}
    small = arena.empty(10, np.int64)                # small arrays are numpy's own
    assert not any(np.shares_memory(small, x) for x in arena._bufs)
    del b, c, e
    for _ in range(3):
        arena.next_batch()
    assert arena._bufs == []                         # idle buffers are let go


def test_repeated_ids_go_in_match_order_whether_or_not_the_batch_is_in_id_order():
    """Rows sharing an id, matched back to front: the seat's pairs keep match order in a
    batch already in id order as in one that is not (found by a reviewer)."""
    config = cfg.loads(BASE + org("p", ["media"]) + seat("b", "p"))
    for ids in ([1, 3, 3, 5], [5, 3, 3, 1]):
        d = tweets(*[tw(i) for i in ids])
        rows, rules = Router.from_config(config).route(d.tweets).by_client["b"]
        back = np.arange(len(rows))[::-1].copy()
        res = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh") \
            .apply(d.tweets, {"b": (rows[back], rules.take(pa.array(back)))})
        got = res.delivered["b"].rows.tolist()
        twins = [r for r in got if ids[r] == 3]
        assert twins == [2, 1], (ids, got)        # match order: row 2 was matched first


def test_denied_rule_ids_with_narrow_dictionary_indices_and_a_null_id():
    from firehose.entitlements import rule_id_lists
    ids = pa.DictionaryArray.from_arrays(pa.array([5, None, 127], pa.int8()),
                                         pa.array([f"r{i}" for i in range(128)]))
    items = pa.StructArray.from_arrays([ids, pa.array(["t"] * 3)], names=["id", "tag"])
    rules = pa.ListArray.from_arrays(pa.array([0, 2, 3], pa.int32()), items)
    assert rule_id_lists([(rules, np.array([0, 1]))]).to_pylist() == [["r5", None], ["r127"]]


def test_a_seat_flagged_ascending_that_repeats_a_row_is_refused():
    """The bitmap ordering (ascending seats of n/256 pairs or more) relies on distinct rows:
    a repeated row would leave an output slot unwritten, so it is an error, not a loss."""
    from firehose import _core
    n = 1000
    rank = np.arange(n, dtype=np.int64)[::-1].copy()         # rows ascend, ranks descend
    seat = np.repeat(np.arange(0, 110, 2, dtype=np.int64), 2)        # 0, 0, 2, 2, ...
    out = [np.full(len(seat), -7, np.int64) for _ in range(3)] + [np.empty(len(seat), np.uint8)]
    with pytest.raises(ValueError, match="repeats a row"):
        _core.seat_pairs_by_rank([seat], np.ones(1, np.uint8), rank, rank,
                                 np.zeros(n, np.uint8), *out)
    _core.seat_pairs_by_rank([seat], np.zeros(1, np.uint8), rank, rank,     # flagged rightly
                             np.zeros(n, np.uint8), *out)
    assert np.array_equal(out[0], np.sort(rank[seat]))


@pytest.mark.parametrize("n", [4999, 5000])     # (odd n: the bitmap's place in the scratch)
def test_the_pair_layout_ignores_a_misaligned_or_short_scratch(n):
    from firehose import _core
    rng = np.random.default_rng(3)
    rank = rng.permutation(n).astype(np.int64)
    row_ids, flags = rng.integers(0, 1 << 40, n), rng.integers(0, 256, n).astype(np.uint8)
    seats = [np.sort(rng.choice(n, 700, replace=False)).astype(np.int64)]
    outs = []
    for scratch in (None, np.empty(14 * n + 65, np.uint8)[1:], np.empty(100, np.uint8),
                    np.empty(14 * n + 64, np.uint8)):
        out = [np.empty(700, np.int64) for _ in range(3)] + [np.empty(700, np.uint8)]
        _core.seat_pairs_by_rank(seats, np.ones(1, np.uint8), rank, row_ids, flags, *out,
                                 scratch)
        outs.append(out)
    for out in outs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(out, outs[0]))
    assert np.array_equal(outs[0][0], np.sort(rank[seats[0]]))


def _user_event(uid, kind="user_delete"):
    """A compliance table with one user event about ``uid`` (a delete made a user event)."""
    ev = tweets({"delete": {"status": {"id_str": "1", "user_id_str": str(uid)}}}).compliance
    k = ev.schema.get_field_index("kind")
    return ev.set_column(k, "kind", pa.array([kind]).cast(ev.schema.field(k).type))


@pytest.mark.parametrize("seed", range(4))
def test_user_events_go_to_exactly_the_seats_that_got_a_tweet_by_the_user(seed):
    """Against a plain record of who got what: random batches (ids out of order, repeated
    across batches), seats with different rules, a barred seat; after each batch (and across a
    checkpoint) every user event goes to exactly the seats delivered a tweet by that user, and
    every delete to exactly the seats delivered that tweet."""
    rng = np.random.default_rng(seed)
    config = cfg.loads(BASE + org("p", ["media"]) + org("spy", ["intelligence"]) +
                       seat("a", "p", rules='[{ id = "r", value = "alpha" }]') +
                       seat("b", "p", rules='[{ id = "r", value = "beta" }]') +
                       seat("c", "p", rules='[{ id = "r", value = "alpha" }, '
                                            '{ id = "s", value = "beta" }]') +
                       seat("x", "spy", rules='[{ id = "r", value = "alpha" }]'))
    plans = compile_plans(config, today=dt.date(2026, 1, 1))
    ent = Entitlements(plans, source="fh")
    router = Router.from_config(config)
    got_by: dict[str, set] = {}
    got_ids: dict[str, set] = {}
    for k in range(7):
        # a tweet id has one author (the index keys tweets by id: an id delivered under
        # two authors, corrupt input, could send an event to more seats, never fewer)
        tids = rng.integers(1, 400, int(rng.integers(0, 40))).tolist()
        objs = [tw(t, str(rng.choice(["alpha", "beta", "gamma", "alpha beta"])),
                   uid=1 + (t * 7) % 29) for t in tids]
        if not objs:
            continue
        d = tweets(*objs)
        res = ent.apply(d.tweets, router.route(d.tweets).by_client)
        authors = d.tweets.column("author_id").to_pylist()
        for client, dl in res.delivered.items():
            got_by.setdefault(client, set()).update(authors[r] for r in dl.rows)
        if k == 3:                                   # a checkpoint mid-run
            again = Entitlements(plans, source="fh")
            again.load_state(ent.state_to_bytes())
            ent = again
        for uid in rng.choice(32, 6, replace=False).tolist():
            want = sorted(c for c, users in got_by.items() if uid in users)
            assert sorted(ent.forward(_user_event(uid))) == want, (k, uid)
        for client, dl in res.delivered.items():
            ids_of = d.tweets.column("id").to_pylist()
            got_ids.setdefault(client, set()).update(ids_of[r] for r in dl.rows)
        # deletes: several in one table, of tweets delivered or not
        tids = rng.choice(420, 8, replace=False).tolist()
        fwd = ent.forward(tweets(*[{"delete": {"status": {"id_str": str(t)}}}
                                   for t in tids]).compliance)
        want = {c: sorted(t for t in tids if t in ids) for c, ids in got_ids.items()}
        assert {c: sorted(tb.column("tweet_id").to_pylist()) for c, tb in fwd.items()} == \
            {c: v for c, v in want.items() if v}, k
    assert "x" not in got_by or not got_by["x"]


def test_user_events_reach_seats_recorded_by_an_older_checkpoint():
    """Checkpoints before the author index kept delivered authors per seat: still honoured."""
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p") + seat("b", "p"))
    plans = compile_plans(config, today=dt.date(2026, 1, 1))
    ent = Entitlements(plans, source="fh")
    ent._remember("a", np.array([10, 11]))
    ent._delivered_users["a"] = [np.array([77])]
    ent._remember("b", np.array([12]))
    again = Entitlements(plans, source="fh")
    again.load_state(ent.state_to_bytes())
    assert list(again.forward(_user_event(77))) == ["a"]
    assert again.forward(_user_event(78)) == {}


@pytest.mark.parametrize("seed", range(3))
def test_the_core_sorts_and_merges_author_pairs(seed):
    from firehose import _core
    rng = np.random.default_rng(seed)
    n = int(rng.choice([0, 1, 7, 3000, 200_000]))
    key = rng.integers(-(1 << 62), 1 << 62, n) if seed == 0 else rng.integers(0, 50, n)
    val = np.sort(rng.integers(0, 1 << 40, n))
    ko, vo = np.empty(n, np.int64), np.empty(n, np.int64)
    _core.sort_pairs_by_key(key, val, ko, vo)
    o = np.lexsort((val, key))
    assert np.array_equal(ko, key[o]) and np.array_equal(vo, val[o])
    # merge with a run sharing some pairs: each pair once, in order
    m = n // 2
    kb, vb = np.concatenate([ko[:m], rng.integers(0, 50, 40)]), \
        np.concatenate([vo[:m], rng.integers(0, 1 << 40, 40)])
    ob = np.lexsort((vb, kb))
    kb, vb = kb[ob], vb[ob]
    out_k, out_v = np.empty(n + len(kb), np.int64), np.empty(n + len(kb), np.int64)
    got = _core.merge_pairs(ko, vo, kb, vb, out_k, out_v)
    want = sorted(set(zip(ko.tolist(), vo.tolist())) | set(zip(kb.tolist(), vb.tolist())))
    assert list(zip(out_k[:got].tolist(), out_v[:got].tolist())) == want
    if len(kb) > 1:
        with pytest.raises(ValueError):
            _core.merge_pairs(ko, vo, kb[::-1].copy(), vb[::-1].copy(), out_k, out_v)


def _snowflake(minute, k):
    """A tweet id made at ``minute`` past a fixed hour of 2022 (sequence ``k``)."""
    return ((1_650_000_000_000 + minute * 60_000 - 1288834974657) << 22) | k


@pytest.mark.parametrize("merge", [False, True], ids=["unmerged", "merging"])
@pytest.mark.parametrize("seed", range(3))
def test_forwarding_is_exact_after_old_deliveries_move_to_the_spill(seed, merge, tmp_path,
                                                                     monkeypatch):
    """A one-hour window, batches 20 minutes apart (late tweets too): what was delivered
    before the window leaves memory for files in the spill directory, and deletes and user
    events still reach exactly the seats that got the tweet, before and after a checkpoint
    that a new Entitlements over the same directory resumes. ``merging``: authors files are
    merged two at a time, in batches of 8 rows (many author ranges per file); ``unmerged``:
    never (every authors file searched)."""
    monkeypatch.setattr(_Spill, "fanout", 2 if merge else 1000)
    monkeypatch.setattr(_Spill, "chunk_rows", 8)
    rng = np.random.default_rng(seed)
    config = cfg.loads(BASE + org("p", ["media"]) +
                       seat("a", "p", rules='[{ id = "r", value = "alpha" }]') +
                       seat("b", "p", rules='[{ id = "r", value = "beta" }]') +
                       seat("c", "p", rules='[{ id = "r", value = "alpha" }, '
                                            '{ id = "s", value = "beta" }]'))
    plans = compile_plans(config, today=dt.date(2026, 1, 1))
    spill = tmp_path / "delivered"

    def fresh():
        return Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=1.0)

    ent, router = fresh(), Router.from_config(config)
    got_ids: dict[str, set] = {}
    got_by: dict[str, set] = {}
    author_of: dict[int, int] = {}
    for k in range(16):
        minute = 20 * k
        # this batch's tweets, and a few late ones from up to 3 hours before
        tids = [_snowflake(minute + int(rng.integers(0, 20)), j) for j in range(40)]
        tids += [_snowflake(max(0, minute - int(rng.integers(0, 180))), 100 + j) for j in range(3)]
        objs = [tw(t, str(rng.choice(["alpha", "beta", "gamma", "alpha beta"])),
                   uid=author_of.setdefault(t, int(rng.integers(1, 40)))) for t in tids]
        d = tweets(*objs)
        res = ent.apply(d.tweets, router.route(d.tweets).by_client)
        ids_of = d.tweets.column("id").to_pylist()
        authors = d.tweets.column("author_id").to_pylist()
        for client, dl in res.delivered.items():
            got_ids.setdefault(client, set()).update(ids_of[r] for r in dl.rows)
            got_by.setdefault(client, set()).update(authors[r] for r in dl.rows)
        if k == 9:                                   # a checkpoint mid-run, resumed
            data = ent.state_to_bytes()
            ent.close()                              # (a merge in progress is dropped)
            ent = fresh()
            ent.load_state(data, clean=True)
        # nothing older than the window and a quarter is left in memory
        if k >= 6:
            limit = _snowflake(minute - 75, 0)
            assert all(b.ids[0] >= limit for b in ent._blocks)
            assert all(t.min() >= limit for _, t in ent._author_runs() if len(t))
        # deletes of tweets from any time, delivered or not
        pool = sorted(set().union(*got_ids.values()))
        tids = rng.choice(pool, min(10, len(pool)), replace=False).tolist() + [_snowflake(1, 999)]
        fwd = ent.forward(tweets(*[{"delete": {"status": {"id_str": str(t)}}}
                                   for t in tids]).compliance)
        want = {c: sorted(t for t in tids if t in ids) for c, ids in got_ids.items()}
        assert {c: sorted(tb.column("tweet_id").to_pylist()) for c, tb in fwd.items()} == \
            {c: v for c, v in want.items() if v}, k
        for uid in rng.choice(42, 5, replace=False).tolist():
            want_u = sorted(c for c, users in got_by.items() if uid in users)
            assert sorted(ent.forward(_user_event(uid))) == want_u, (k, uid)
    ent.close()
    files = sorted(p.name for p in spill.iterdir())
    assert any(f.startswith("delivered-") for f in files)
    assert any(f.startswith("authors-") for f in files)
    assert not any(f.endswith(".tmp") for f in files)
    authors = [n for kind, n, _, _ in ent._spill.files if kind == "authors"]
    if merge:
        # merges go a few chunks a batch (behind, at 8 rows a chunk); finished, there is at
        # most one file per size class (fanout 2), some merged in several batches
        def pairs():
            return {(int(x), int(y)) for t, a in ent._spill.tweets_by(np.arange(1, 41))
                    for x, y in zip(t, a)}
        before = pairs()
        ent._spill.compact(1 << 30)
        assert pairs() == before and len(before) > 50
        authors = [n for kind, n, _, _ in ent._spill.files if kind == "authors"]
        sizes = [ent._spill._author_parts(n)[3] for n in authors]
        assert len({ent._spill._size_class(r) for r in sizes}) == len(sizes)
        assert max(len(ent._spill._author_parts(n)[0]) for n in authors) > 1
        assert ent._spill.retired
    else:
        assert len(authors) > 4 and not ent._spill.retired
    # late tweets are spilled apart: most files span about a slot (15 minutes), not hours
    spans = sorted(((hi >> 22) - (lo >> 22)) / 60_000 for kind, _, lo, hi in ent._spill.files
                   if kind == "delivered")
    assert spans[len(spans) // 2] <= 30, spans


def test_a_late_tweet_keeps_no_batch_buffer_alive(tmp_path):
    """apply() hands each seat's ids as a view of the batch's buffer; a late tweet's id, put
    in its own (older) slot, must not keep that buffer alive until the slot is spilled."""
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p"))
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh",
                       spill_dir=str(tmp_path / "s"), window_hours=1.0)
    d = tweets(*[tw(_snowflake(120, k)) for k in range(50)], tw(_snowflake(100, 999)))
    ent.apply(d.tweets, Router.from_config(config).route(d.tweets).by_client)
    assert len(ent._blocks) == 2
    late = min(ent._blocks, key=lambda b: b.slot)
    assert late.ids.tolist() == [_snowflake(100, 999)] and late.off.tolist() == [0, 1]
    assert all(r.base is None or r.base.size <= 2 * r.size
               for r in (late.ids, late.off, late.codes))


def test_a_state_made_without_syncing_lists_the_files_to_sync(tmp_path):
    """The pipeline serialises the state on its main thread and makes the spill files durable
    with the commit's parts, then marks them synced (a failed commit leaves them listed for
    the next); a plain state_to_bytes syncs them itself."""
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p"))
    ent = Entitlements(compile_plans(config, today=dt.date(2026, 1, 1)), source="fh",
                       spill_dir=str(tmp_path / "s"), window_hours=1.0)
    for t in (_snowflake(0, 1), _snowflake(600, 1)):
        d = tweets(tw(t))
        ent.apply(d.tweets, Router.from_config(config).route(d.tweets).by_client)
    ent.state_to_bytes(sync=False)
    paths = ent.unsynced_files()
    # (the spilled slot's files, and the blocks in memory, written for this state)
    assert sorted(os.path.basename(p) for p in paths) == ["authors-000002.arrow",
                                                          "delivered-000001.arrow",
                                                          "held-000003.arrow",
                                                          "held_authors-000004.arrow"]
    assert all(os.path.exists(p) for p in paths) and ent.unsynced_files() == paths
    ent.mark_synced(paths[:1])
    assert ent.unsynced_files() == paths[1:]
    ent.state_to_bytes()
    assert ent.unsynced_files() == []


def test_a_state_writes_only_the_blocks_no_state_has_named(tmp_path, monkeypatch):
    """With a spill directory a state names the delivery blocks in memory by their held file
    and record batch, writing the blocks no earlier state named (one held file a state, none
    when nothing is new); a held file none of whose blocks is still in memory (merged, or its
    slot spilled) is retired by the next state and deleted once that is durable. A state
    loads back the same deliveries, into a run whose seat codes differ."""
    import firehose.entitlements as E
    monkeypatch.setattr(E, "_BLOCK_PAIRS", 4)       # blocks of 2 pairs merge in pairs
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p") + seat("b", "p")
                       + seat("c", "p"))
    plans = compile_plans(config, today=dt.date(2026, 1, 1))
    spill = tmp_path / "s"
    ent = Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=1.0)
    truth: dict[str, set] = {}

    def batch(minute, who):
        ids = [_snowflake(minute, k) for k in range(2)]
        d = tweets(*[tw(t) for t in ids])
        routed = {c: (np.array([0, 1]), pa.array([["r1"], ["r1"]])) for c in who}
        ent.apply(d.tweets, routed)
        for c in who:
            truth.setdefault(c, set()).update(ids)

    def held():
        return sorted(n for k, n, _, _ in ent._spill.files if k == "held")

    def check(e):
        assert {k: set(v.tolist()) for k, v in e._held_ids().items() if len(v)} == \
            {c: {t for t in ids if t >= _snowflake(first_kept, 0)} for c, ids in truth.items()
             if any(t >= _snowflake(first_kept, 0) for t in ids)}
        q = np.array(sorted(set().union(*truth.values())), np.int64)
        got = e._delivered_to(q)
        assert {c: set(q[m].tolist()) for c, m in got.items()} == truth

    first_kept = 0
    batch(0, ["a"])
    s1 = ent.state_to_bytes()
    assert len(held()) == 1 and all(b.src == held()[0] for b in ent._blocks)
    assert ent.state_to_bytes() and len(held()) == 1          # nothing new: nothing written
    batch(1, ["b", "c"])                         # 4 pairs: not merged with the first block
    s2 = ent.state_to_bytes()
    assert len(held()) == 2 and [b.part for b in ent._blocks] == [0, 0]
    assert {b.src for b in ent._blocks} == set(held())
    # resumed from s2 into a run that knows other seats first: codes differ, same answers
    other = Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=1.0)
    other._code("c"), other._code("zz")
    other.load_state(s2)
    check(other)
    check(ent)
    # an hour and more later: the first slots leave memory for delivered files; their held
    # files are retired by the next state and deleted once it is durable
    first_kept = 90
    batch(90, ["a", "b"])
    batch(91, ["c"])
    assert min(int(b.ids[0]) for b in ent._blocks) >= _snowflake(90, 0)
    old = held()
    s3 = ent.state_to_bytes()
    assert not set(old) & set(held()) and set(old) <= set(ent._spill.retired)
    assert all(n.startswith("held") for n in ent._spill.retired)     # (and author runs')
    for n in old:                                # s1, s2 still name them until s3 is durable
        assert (spill / n).exists()
    ent.remove_retired(ent.retired_files())
    assert not any((spill / n).exists() for n in old)
    check(ent)
    again = Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=1.0)
    again.load_state(s3, clean=True)
    check(again)
    from firehose.errors import StateError
    with pytest.raises(StateError):             # s1's held file is gone
        Entitlements(plans, source="fh", spill_dir=str(spill)).load_state(s1)
    # a block a state named merges with a new one: the merged block is written by the next
    # state; the held file keeps its other block, so it stays
    kept = held()
    batch(92, ["a"])
    assert len(ent._blocks) == 2 and ent._blocks[-1].src is None
    s4 = ent.state_to_bytes()
    assert set(kept) < set(held()) and not [n for n in ent._spill.retired
                                            if n.startswith("held-")]
    last = Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=1.0)
    last.load_state(s4)
    check(last)
    # resumed with a longer window: the blocks' slots are the new window's (a slot number
    # of the old size would keep a block in memory for ever)
    wide = Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=8.0)
    wide.load_state(s4)
    assert {b.slot for b in wide._blocks} == {(int(b.ids[0]) >> 22) // wide._slot_ms
                                              for b in wide._blocks}
    wide._maybe_spill((_snowflake(92 + 9 * 60, 0) >> 22) + 1)
    assert wide._blocks == []


def test_merged_authors_files_are_deleted_only_after_a_state_without_them(tmp_path,
                                                                           monkeypatch):
    """Authors files merged away stay on disk while a state made before the merge may still
    be resumed; the next state lists them as retired, and once the caller has made it durable
    remove_retired deletes them. A state handed over in memory (a reload) carries them; a
    run resuming from its durable state removes every spill file that state does not name."""
    monkeypatch.setattr(_Spill, "fanout", 2)
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p"))
    plans = compile_plans(config, today=dt.date(2026, 1, 1))
    spill = tmp_path / "s"

    def fresh():
        return Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=1.0)

    ent, router = fresh(), Router.from_config(config)
    sent = []

    def batch(minute):
        t = [_snowflake(minute, k) for k in range(5)]
        sent.extend(t)
        d = tweets(*[tw(x, uid=3 + k) for k, x in enumerate(t)])
        ent.apply(d.tweets, router.route(d.tweets).by_client)

    for minute in (0, 30, 60, 90):
        batch(minute)
    ent.state_to_bytes()                            # names the first authors file
    named = {n for _, n, _, _ in ent._spill.files}
    assert any(n.startswith("authors-") for n in named)
    for minute in (120, 150, 180, 210, 240):
        batch(minute)
    assert ent._spill.retired and named & set(ent._spill.retired)
    # the state made before the merge could still be resumed: every file it names is there
    assert all((spill / n).exists() for n in named)
    data = ent.state_to_bytes(sync=False)
    retired = ent.retired_files()
    assert sorted(os.path.basename(p) for p in retired) == sorted(ent._spill.retired)
    # a reload (live mode) hands the state over in memory: the new Entitlements deletes
    # the retired files once its own first state is durable; it removes nothing else
    (spill / "authors-000999.arrow").write_bytes(b"junk")
    (spill / ".delivered-000998.arrow.tmp").write_bytes(b"junk")
    again = fresh()
    again.load_state(data)
    ent.close()
    assert sorted(again._spill.retired) == sorted(ent._spill.retired)
    assert (spill / "authors-000999.arrow").exists()
    again.state_to_bytes()
    again.remove_retired(again.retired_files())
    assert not any((spill / n).exists() for n in ent._spill.retired)
    assert again._spill.retired == []
    assert sorted(again.forward(_user_event(3))) == ["a"]
    # a run resuming from its durable state (clean=True): every spill file the state does
    # not name goes (retired ones, a crashed run's later ones, unfinished merges)
    for n in ent._spill.retired:
        (spill / n).write_bytes(b"retired, still there")
    resumed = fresh()
    resumed.load_state(data, clean=True)
    assert {n for _, n, _, _ in resumed._spill.files} == set(os.listdir(spill))
    assert resumed._spill.retired == []
    # every tweet sent is still forwarded after the deletions
    fwd = resumed.forward(tweets(*[{"delete": {"status": {"id_str": str(t)}}}
                                   for t in sent]).compliance)
    assert sorted(fwd["a"].column("tweet_id").to_pylist()) == sorted(sent)
    assert sorted(resumed.forward(_user_event(3))) == ["a"]


def test_a_merge_goes_a_few_chunks_a_batch_and_a_checkpoint_mid_merge_resumes(tmp_path,
                                                                             monkeypatch):
    """A merge of authors files is written a chunk at a time (compact's budget), so one
    batch never waits for a whole merge; until it is done its inputs stay named and
    searched. A state made mid-merge names the inputs; resumed with clean=True, the
    unfinished file goes and the merge starts over; close() drops it too. A tweet
    delivered twice is one pair; a row without an author is not spilled."""
    monkeypatch.setattr(_Spill, "fanout", 2)
    monkeypatch.setattr(_Spill, "chunk_rows", 4)
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p"))
    plans = compile_plans(config, today=dt.date(2026, 1, 1))
    spill = tmp_path / "s"
    ent = Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=1.0)
    router = Router.from_config(config)
    for minute in (0, 20, 40, 60, 80, 100):
        objs = [tw(_snowflake(minute, k), uid=10 + k) for k in range(30)]
        objs.append(objs[0])                                 # delivered twice
        objs.append({"id_str": str(_snowflake(minute, 99)), "text": "hello world"})
        d = tweets(*objs)
        ent.apply(d.tweets, router.route(d.tweets).by_client)
    sp = ent._spill
    for _, name, _, _ in [f for f in sp.files if f[0] == "authors"]:
        a, t = (np.concatenate(x) for x in zip(*sp._author_parts(name)[0]))
        assert -1 not in a.tolist()
        assert len(set(zip(a.tolist(), t.tolist()))) == len(a)
    for k in range(2):                      # two more files of one size class: a merge
        a = np.repeat(np.arange(10, 40, dtype=np.int64), 2)
        t = np.arange(60, dtype=np.int64) + 1000 * k
        sp.write("authors", pa.table({"author_id": a, "tweet_id": t}), t.min(), t.max())
    sp.compact(1)                           # started, stopped after its first chunk
    assert sp._merges and not sp._merges[0].done
    merging = sp._merges[0]
    assert os.path.exists(merging.tmp)
    inputs = {f[1] for f in merging.picked}
    assert inputs <= {f[1] for f in sp.files}
    users = np.arange(10, 40)
    want = sorted(ent.forward(_user_event(12)))
    data = ent.state_to_bytes()
    assert want == ["a"]
    resumed = Entitlements(plans, source="fh", spill_dir=str(spill), window_hours=1.0)
    resumed.load_state(data, clean=True)
    assert not os.path.exists(merging.tmp)
    assert inputs <= {f[1] for f in resumed._spill.files}
    got = {(int(x), int(y)) for t, a in resumed._spill.tweets_by(users) for x, y in zip(t, a)}
    resumed._spill.compact(1 << 30)                  # the merge starts over and finishes
    assert resumed._spill._merges == []
    assert {(int(x), int(y)) for t, a in resumed._spill.tweets_by(users)
            for x, y in zip(t, a)} == got
    assert not inputs & {f[1] for f in resumed._spill.files}
    resumed._spill.compact(1)
    for e in (ent, resumed):
        e.close()
    assert not any(p.name.endswith(".tmp") for p in spill.iterdir())
    with pytest.raises(ValueError, match="fanout"):
        monkeypatch.setattr(_Spill, "fanout", 1)
        resumed._spill.compact()


def test_a_merge_of_authors_files_keeps_every_pair_once_in_author_order(tmp_path):
    """The merge streams author ranges (cut at sampled authors) into batches: the merged
    file holds the union of its inputs' (author, tweet id) pairs, each once, sorted, and
    tweets_by finds every pair across batch boundaries."""
    rng = np.random.default_rng(5)
    sp = _Spill(str(tmp_path / "s"))
    sp.fanout, sp.chunk_rows = 3, 50
    want = set()
    for k in range(3):
        a = rng.integers(0, 40, 300) * (1 << 40)       # wide author ids, repeated authors
        t = rng.integers(0, 1 << 50, 300)
        if k:                                            # pairs shared with the last file
            a[:20], t[:20] = prev
        o = np.lexsort((t, a))
        a, t = a[o], t[o]
        keep = np.r_[True, (a[1:] != a[:-1]) | (t[1:] != t[:-1])]
        a, t = a[keep], t[keep]
        prev = (a[:20].copy(), t[:20].copy())
        want |= set(zip(a.tolist(), t.tolist()))
        sp.write("authors", pa.table({"author_id": a, "tweet_id": t}), t.min(), t.max())
        sp.compact()
    (kind, name, _, _), = sp.files
    parts, first, last, rows = sp._author_parts(name)
    assert len(parts) > 5 and rows == len(want)
    a = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    assert list(zip(a.tolist(), t.tolist())) == sorted(want)
    users = np.unique(rng.integers(0, 45, 20) * (1 << 40))
    got = sp.tweets_by(users)
    pairs = {(int(x), int(y)) for tid, au in got for x, y in zip(au, tid)}
    assert pairs == {p for p in want if p[0] in set(users.tolist())}
    assert sorted(sp.retired) == ["authors-000001.arrow", "authors-000002.arrow",
                                  "authors-000003.arrow"]


def test_a_state_relying_on_spilled_files_needs_them(tmp_path):
    from firehose.errors import StateError
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p"))
    plans = compile_plans(config, today=dt.date(2026, 1, 1))
    ent = Entitlements(plans, source="fh", spill_dir=str(tmp_path / "s"), window_hours=1.0)
    old, new = _snowflake(0, 1), _snowflake(600, 1)
    for t in (old, new):
        d = tweets(tw(t))
        ent.apply(d.tweets, Router.from_config(config).route(d.tweets).by_client)
    assert ent._spill.files and {k: v.tolist() for k, v in ent._held_ids().items()} == {"a": [new]}
    data = ent.state_to_bytes()
    with pytest.raises(StateError, match="spill_dir"):
        Entitlements(plans, source="fh").load_state(data)
    again = Entitlements(plans, source="fh", spill_dir=str(tmp_path / "s"))
    again.load_state(data)
    delete = tweets({"delete": {"status": {"id_str": str(old)}}}).compliance
    assert list(again.forward(delete)) == ["a"]
    for f in (tmp_path / "s").iterdir():
        f.unlink()
    with pytest.raises(StateError, match="delivered-000001.arrow"):
        Entitlements(plans, source="fh", spill_dir=str(tmp_path / "s")).load_state(data)


@pytest.mark.parametrize("remap", [False, True], ids=["ranks", "rows"])
@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_the_core_regroups_delivered_pairs_by_rank(remap, dtype):
    """seats_by_rank against a brute force: for each marked rank, in ascending order, the
    codes of the seats whose pairs hold it, in seat order (a rank twice in a seat: twice);
    pairs given as rows with their ranks (a batch out of id order). A pair whose rank is not
    marked or outside, starts that do not fit, a code too wide: refused."""
    from firehose import _core
    rng = np.random.default_rng(3 + remap)
    for _ in range(60):
        n = int(rng.integers(1, 400))
        S = int(rng.integers(0, 12))
        seats = [np.sort(rng.choice(n, int(rng.integers(0, n + 1)), replace=rng.random() < 0.2))
                 for _ in range(S)]
        hit = np.zeros(n, np.uint8)
        for x in seats:
            hit[x] = 1
        hit[rng.choice(n, n // 10)] |= rng.random() < 0.3     # marked, delivered to none
        starts = np.r_[0, np.cumsum([len(x) for x in seats])].astype(np.int64)
        ranks = np.concatenate(seats + [np.zeros(0, np.int64)]).astype(np.int64)
        codes_of = rng.choice(70000 if dtype is np.int32 else 65536, S, replace=False)
        perm = rng.permutation(n).astype(np.int64)       # row perm[k] has rank k
        rank_of = np.empty(n, np.int64)
        rank_of[perm] = np.arange(n)
        pairs = perm[ranks] if remap else ranks
        m = int(np.count_nonzero(hit))
        off, codes = np.full(m + 1, -9, np.int64), np.full(len(ranks), 9, dtype)
        assert _core.seats_by_rank(starts, codes_of.astype(np.int64), pairs,
                                   rank_of if remap else None, hit, off, codes) == m
        for k, r in enumerate(np.flatnonzero(hit).tolist()):
            want = [int(codes_of[s]) for s in range(S) for _ in range(int((seats[s] == r).sum()))]
            assert codes[off[k]:off[k + 1]].tolist() == want
        assert off[0] == 0 and off[-1] == len(ranks)
    # a batch past the core's rank window (16384), seats whose ranks do not ascend (rows
    # repeated by id reordered by match position): the same seats per rank, in any order
    n = 50_000
    seats = [rng.choice(n, int(rng.integers(0, 3000))) for _ in range(7)]
    hit = np.zeros(n, np.uint8)
    for x in seats:
        hit[x] = 1
    starts = np.r_[0, np.cumsum([len(x) for x in seats])].astype(np.int64)
    ranks = np.concatenate(seats).astype(np.int64)
    m = int(np.count_nonzero(hit))
    off, codes = np.empty(m + 1, np.int64), np.empty(len(ranks), dtype)
    assert _core.seats_by_rank(starts, np.arange(7, dtype=np.int64), ranks, None, hit, off,
                               codes, np.full(n + 5, 77, np.int64)) == m
    for k, r in enumerate(np.flatnonzero(hit).tolist()[::97]):
        k = k * 97
        want = sorted(s for s in range(7) for _ in range(int((seats[s] == r).sum())))
        assert sorted(codes[off[k]:off[k + 1]].tolist()) == want
    one = np.array([0, 1], np.int64)
    with pytest.raises(IndexError):          # no ranks at all
        _core.seats_by_rank(one, np.array([0], np.int64), np.array([0], np.int64), None,
                            np.zeros(0, np.uint8), np.empty(1, np.int64), np.empty(1, dtype))
    with pytest.raises(IndexError):          # rank 1 not marked
        _core.seats_by_rank(one, np.array([0], np.int64), np.array([1], np.int64), None,
                            np.array([1, 0], np.uint8), np.empty(2, np.int64),
                            np.empty(1, dtype))
    with pytest.raises(IndexError):          # outside rank_of
        _core.seats_by_rank(one, np.array([0], np.int64), np.array([5], np.int64),
                            np.arange(2, dtype=np.int64), np.array([1, 1], np.uint8),
                            np.empty(3, np.int64), np.empty(1, dtype))
    with pytest.raises(ValueError, match="one more"):
        _core.seats_by_rank(one, np.array([0, 1], np.int64), np.array([0], np.int64), None,
                            np.array([1], np.uint8), np.empty(2, np.int64), np.empty(1, dtype))
    with pytest.raises(ValueError, match="exactly one"):
        _core.seats_by_rank(one, np.array([0], np.int64), np.array([0], np.int64), None,
                            np.array([1], np.uint8), np.empty(2, np.int64), np.empty(2, dtype))
    if dtype is np.uint16:
        with pytest.raises(ValueError, match="does not fit"):
            _core.seats_by_rank(one, np.array([70000], np.int64), np.array([0], np.int64),
                                None, np.array([1], np.uint8), np.empty(2, np.int64),
                                np.empty(1, dtype))


def test_a_spilled_file_of_the_earlier_format_is_read(tmp_path):
    """A state of an earlier version names a delivered file of one row per (id, seat),
    sorted by id, the seat dictionary-encoded: a resumed run forwards deletes from it."""
    config = cfg.loads(BASE + org("p", ["media"]) + seat("a", "p") + seat("b", "p"))
    plans = compile_plans(config, today=dt.date(2026, 1, 1))
    ent = Entitlements(plans, source="fh", spill_dir=str(tmp_path / "s"), window_hours=1.0)
    old, new = _snowflake(0, 1), _snowflake(600, 1)
    for t in (old, new):
        d = tweets(tw(t, "alpha beta"), tw(t + 1, "alpha"))
        routed = {"a": (np.array([0, 1]), pa.array([["r"], ["r"]])),
                  "b": (np.array([0]), pa.array([["r"]]))}
        ent.apply(d.tweets, routed)
    (name, lo, hi), = [(n, lo, hi) for k, n, lo, hi in ent._spill.files if k == "delivered"]
    assert (lo, hi) == (old, old + 1)
    # the file rewritten as the earlier version wrote it
    path = tmp_path / "s" / name
    pa.ipc.new_file(str(path), pa.schema([("tweet_id", pa.int64()), (
        "client", pa.dictionary(pa.int32(), pa.string()))])).close()
    table = pa.table({"tweet_id": pa.array([old, old, old + 1], pa.int64()),
                      "client": pa.DictionaryArray.from_arrays(pa.array([1, 0, 1], pa.int32()),
                                                               pa.array(["b", "a"]))})
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    again = Entitlements(plans, source="fh", spill_dir=str(tmp_path / "s"))
    again.load_state(ent.state_to_bytes())
    fwd = again.forward(tweets(*[{"delete": {"status": {"id_str": str(t)}}}
                                 for t in (old, old + 1, new, new + 1, 5)]).compliance)
    assert {c: t.column("tweet_id").to_pylist() for c, t in fwd.items()} == \
        {"a": [old, old + 1, new, new + 1], "b": [old, new]}


def test_the_core_says_which_seats_rows_strictly_ascend():
    from firehose import _core
    arrays = [np.zeros(0, np.int64), np.array([4], np.int64), np.array([1, 2, 9], np.int64),
              np.array([1, 1, 2], np.int64), np.array([3, 2], np.int64),
              np.arange(100_000, dtype=np.int64)]
    out = np.full(len(arrays), 7, np.uint8)
    _core.strictly_ascending(arrays, out)
    assert out.tolist() == [1, 1, 1, 0, 0, 1]
    with pytest.raises(ValueError):
        _core.strictly_ascending(arrays, out[:-1])
    # (read in blocks of 1024: a repeat or a step down at either side of a block's edge,
    # first or last)
    for m in (1024, 1025, 2048, 2049, 5000):
        for at in sorted({1, 1023, 1024, 1025, 2047, 2048, m - 1} & set(range(1, m))):
            for step in (0, -1):
                a = np.arange(m, dtype=np.int64) * 3 + _I64.min // 2
                a[at] = a[at - 1] + step
                out = np.full(2, 7, np.uint8)
                _core.strictly_ascending([a, a[:at]], out)
                assert out.tolist() == [0, 1], (m, at, step)


def test_compliance_sets_sharing_one_table_screen_as_each_alone():
    """The id sets of a state share one table of bytes (a bit each): a batch's columns
    tested through it give what each set's own table gives."""
    from firehose.compliance import _IdSet, _Screen, _share
    rng = np.random.default_rng(3)
    col = pa.chunked_array([pa.array(rng.integers(0, 5000, 20000), pa.int64())])
    sets = [_IdSet(rng.integers(0, 5000, k)) for k in (1, 40, 900, 3000)]
    alone = [s.isin(col) for s in sets]
    _share(sets)
    assert all(s.shared is sets[0].shared for s in sets)
    screen = _Screen()
    for s, want in zip(sets, alone):
        assert np.array_equal(s.isin(col, screen), want)


def test_split_pairs_marks_hit_by_rank_and_replaces_delivered_ranks_by_rows():
    from firehose import _core
    rng = np.random.default_rng(5)
    n, total = 50, 400
    perm = rng.permutation(n).astype(np.int64)
    ranks = rng.integers(0, n, total)
    order, ids = rng.integers(0, 9, total), rng.integers(0, 1 << 40, total)
    f = rng.integers(0, 256, total).astype(np.uint8)
    code = np.where(rng.random(total) < 0.3, 3, 0).astype(np.int8)
    keep = code == 0
    n_bad = int((~keep).sum())
    outs = [np.empty(n_bad, np.int64) for _ in range(3)] + [np.empty(n_bad, np.int8)]
    hit = np.zeros(n, np.uint8)
    want_hit = np.zeros(n, np.uint8)
    want_hit[ranks[keep]] = 1
    want_rows, want_ids = perm[ranks[keep]], ids[keep].copy()
    rows = ranks.copy()
    got = _core.split_pairs(code, rows, order, ids, f, 0x80, np.empty(total, np.uint8), *outs,
                            hit, perm)
    assert got == total - n_bad
    assert np.array_equal(rows[:got], want_rows) and np.array_equal(ids[:got], want_ids)
    assert np.array_equal(hit, want_hit)
    with pytest.raises(IndexError):          # a rank outside perm
        _core.split_pairs(np.zeros(1, np.int8), np.array([n], np.int64), np.zeros(1, np.int64),
                          np.zeros(1, np.int64), np.zeros(1, np.uint8), 0x80,
                          np.empty(1, np.uint8), *(np.empty(0, t) for t in
                                                   (np.int64, np.int64, np.int64, np.int8)),
                          None, perm)
    # no pairs: nothing delivered; room for denied pairs that are not there is refused
    empty = [np.empty(0, t) for t in (np.int8, np.int64, np.int64, np.int64, np.uint8)]
    no_bad = [np.empty(0, t) for t in (np.int64, np.int64, np.int64, np.int8)]
    assert _core.split_pairs(*empty, 0x80, np.empty(0, np.uint8), *no_bad) == 0
    with pytest.raises(ValueError):
        _core.split_pairs(*empty, 0x80, np.empty(0, np.uint8),
                          *(np.empty(1, t) for t in (np.int64, np.int64, np.int64, np.int8)))


def test_merges_are_scheduled_per_size_class_and_survive_failures_and_reloads(tmp_path,
                                                                            monkeypatch):
    """Small files go on being merged while a long merge of large ones is in progress (one
    merge a size class, smallest first); a merge past max_merge_rows is not started; a
    failure mid-merge (here a MemoryError) drops the merge whole, losing no pair; a reload
    hands a merge in progress over, and it finishes where it was."""
    import firehose.entitlements as E
    rng = np.random.default_rng(8)
    sp = _Spill(str(tmp_path / "s"))
    sp.fanout, sp.chunk_rows = 2, 4
    want = set()

    def add(n):
        a, t = rng.integers(0, 50, n), rng.integers(0, 1 << 40, n)
        o = np.lexsort((t, a))
        a, t = a[o], t[o]
        want.update(zip(a.tolist(), t.tolist()))
        sp.write("authors", pa.table({"author_id": a, "tweet_id": t}), int(t.min()), int(t.max()))

    def pairs(spill):
        return {(int(x), int(y)) for t, a in spill.tweets_by(np.arange(50)) for x, y in zip(a, t)}

    add(400)
    add(400)
    sp.compact(4)                                    # the long merge: one chunk done
    (big,) = sp._merges
    for _ in range(6):
        add(5)
        sp.compact(8)
    assert not big.done and big in sp._merges
    small = [n for k, n, _, _ in sp.files if k == "authors" and sp._author_parts(n)[3] < 100]
    assert len(small) < 4, small                     # merged beside it, not piled up
    assert pairs(sp) == want
    # a failure mid-step: the merge goes whole, nothing is lost, it starts over later
    real = E._merged_runs_of_pairs

    def boom(runs):
        raise MemoryError("test")
    before = list(sp._merges)
    monkeypatch.setattr(E, "_merged_runs_of_pairs", boom)
    with pytest.raises(MemoryError):
        sp.compact(1 << 20)
    monkeypatch.setattr(E, "_merged_runs_of_pairs", real)
    gone = [m for m in before if m not in sp._merges]
    assert len(gone) == 1 and not os.path.exists(gone[0].tmp)
    assert pairs(sp) == want
    sp.compact(4)
    assert sp._merges
    # a reload: the merges in progress move over and finish there
    new = _Spill(sp.directory)
    new.fanout, new.chunk_rows = 2, 4
    new.restore(list(sp.files), sp.seq, list(sp.retired))
    moving = list(sp._merges)
    sp.hand_over(new)
    assert new._merges == moving and sp._merges == []
    new.compact(1 << 30)
    assert new._merges == [] and all(m.done for m in moving)
    assert pairs(new) == want
    assert len([f for f in new.files if f[0] == "authors"]) <= 4
    # no merge past max_merge_rows
    capped = _Spill(str(tmp_path / "c"))
    capped.fanout, capped.chunk_rows, capped.max_merge_rows = 2, 4, 500
    sp = capped
    add(400)
    add(400)
    capped.compact(1 << 30)
    assert capped._merges == [] and len(capped.files) == 2


def _bare_ent(spill_dir=None) -> Entitlements:
    """An Entitlements of no seats (its delivery memory filled by hand), a one-hour window,
    spilling to ``spill_dir`` when given."""
    plans = compile_plans(cfg.from_dict({
        "sources": {"fh": {"licence": "lic"}}, "licences": {"lic": {}},
        "field_groups": {"core": ["id"]}, "organisations": {"o": {"categories": ["media"]}},
        "clients": {}}), today=dt.date(2026, 1, 1))
    return Entitlements(plans, source="fh", window_hours=1.0,
                        spill_dir=str(spill_dir) if spill_dir is not None else None)


@pytest.mark.parametrize("spill", [False, True], ids=["in_memory", "slots"])
def test_delivered_to_finds_each_id_in_every_seat_that_got_it(spill, tmp_path):
    """The forward's lookup (ids sorted once, each run asked only about the ids in its range)
    against a brute force: seats with several runs (sorted and unsorted batches, repeats,
    late ids), asked about delivered ids, others, repeats, 0 and the null filler -1."""
    rng = np.random.default_rng(7)
    t0 = 1_650_000_000_000 - 1_288_834_974_657
    for trial in range(20):
        ent = _bare_ent(tmp_path / f"s{trial}" if spill else None)
        truth = {}
        for c in range(int(rng.integers(1, 6))):
            batches = []
            for _ in range(int(rng.integers(1, 8))):
                ms = t0 + rng.integers(0, 3_600_000, int(rng.integers(1, 300)))
                ids = (ms << 22) | rng.integers(0, 4096, len(ms))
                if rng.random() < 0.5:
                    ids = np.sort(ids)
                ent._remember(f"c{c}", ids)
                batches.append(ids)
            truth[f"c{c}"] = np.unique(np.concatenate(batches))
        pool = np.concatenate(list(truth.values()))
        edges = np.concatenate([[b.ids[0], b.ids[-1]] for b in ent._blocks])
        q = np.r_[rng.choice(pool, 50), (t0 + rng.integers(0, 3_600_000, 50)) << 22,
                  [-1, -1, 0], rng.choice(edges, 10)]
        rng.shuffle(q)
        got = ent._delivered_to(q)
        assert set(got) <= set(truth)
        for c, ids in truth.items():
            assert (got.get(c, np.zeros(len(q), bool)) == np.isin(q, ids)).all(), (trial, c)


@pytest.mark.parametrize("n", [300, 20000])
def test_a_seat_flagged_ascending_wrongly_is_still_laid_out_by_rank(n):
    """A seat flagged ascending whose rows are not (out of order, or a row twice) is still
    put in rank order, ranks the identity (a batch in id order) or not, where it is not
    refused (a row repeated in the bitmap's reach)."""
    from firehose import _core
    rng = np.random.default_rng(n)
    row_ids = rng.integers(0, 1 << 40, n)
    flags = rng.integers(0, 256, n).astype(np.uint8)
    for rank in (np.arange(n, dtype=np.int64), rng.permutation(n).astype(np.int64)):
        for seat in (np.arange(n, dtype=np.int64)[::-3].copy(),
                     np.sort(rng.choice(n, 40, replace=False))[::-1].copy(),
                     np.array([1, 5, 5, 9], np.int64)):
            m = len(seat)
            out = [np.full(m, -7, np.int64) for _ in range(3)] + [np.empty(m, np.uint8)]
            try:
                _core.seat_pairs_by_rank([seat], np.ones(1, np.uint8), rank, row_ids, flags,
                                         *out, np.empty(14 * n + 64, np.uint8))
            except ValueError as e:             # a repeat in the bitmap's reach
                assert "repeats a row" in str(e) and len(set(seat.tolist())) < m
                continue
            pos = np.array(sorted(range(m), key=lambda i: (rank[seat[i]], i)), np.int64)
            assert np.array_equal(out[1], pos)
            assert np.array_equal(out[0], rank[seat[pos]])
            assert np.array_equal(out[2], row_ids[seat[pos]])
            assert np.array_equal(out[3], flags[seat[pos]])


_I64 = np.iinfo(np.int64)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 1000, 100_000])
def test_the_core_orders_a_batch_by_id_stably(n):
    """id_order against numpy's stable argsort: ids random over a snowflake's few minutes,
    repeated, all equal, ascending, descending, negative, at both ends of int64 (spread too
    wide for a key beside the row: -1, nothing promised)."""
    from firehose import _core
    rng = np.random.default_rng(n)
    cases = [rng.integers(1 << 60, (1 << 60) + (1 << 38), n), rng.integers(-3, 3, n),
             np.full(n, 7), np.arange(n) * 1000, (np.arange(n) * -5)[::-1].copy(),
             rng.integers(_I64.max - (1 << 30), _I64.max, n, endpoint=True),
             rng.integers(_I64.min, _I64.min + (1 << 30), n, endpoint=True),
             np.where(rng.random(n) < 0.5, 5, 5 + (1 << 40)),
             rng.integers(_I64.min, _I64.max, n, endpoint=True)]
    for ids in cases:
        ids = np.ascontiguousarray(ids, np.int64)
        perm, rank = np.full(n, -7, np.int64), np.full(n, -7, np.int64)
        dup = _core.id_order(ids, perm, rank)
        spread = int(ids.max()) - int(ids.min()) if n else 0
        if spread.bit_length() + (n - 1).bit_length() > 64:
            assert dup == -1
            continue
        want = np.argsort(ids, kind="stable")
        assert np.array_equal(perm, want)
        assert np.array_equal(rank[perm], np.arange(n))
        assert dup == (len(np.unique(ids)) < n)
    with pytest.raises(ValueError):
        _core.id_order(np.zeros(3, np.int64), np.empty(2, np.int64), np.empty(3, np.int64))


@pytest.mark.parametrize("n", [0, 1, 2, 5, 5000, 300_000])
def test_the_core_sorts_pairs_by_key_stably_over_the_bits_that_vary(n):
    """sort_pairs_by_key against a stable argsort: keys over all of int64 (both ends),
    negative, all equal, varying only in high bits or around a gap of constant bits; with
    no scratch, a short one (ignored) and a long enough one."""
    from firehose import _core
    rng = np.random.default_rng(n)
    cases = [rng.integers(_I64.min, _I64.max, n, endpoint=True), np.full(n, -9),
             rng.choice(np.array([_I64.min, _I64.max, 0, -1, 1]), n),
             rng.integers(0, 4, n) << 61, (rng.integers(0, 4, n) << 50) | rng.integers(0, 8, n),
             rng.integers(-50, 50, n), np.where(rng.random(n) < 0.5, rng.integers(0, 1000, n),
                                                rng.integers(1 << 60, 1 << 61, n))]
    for key in cases:
        key = np.ascontiguousarray(key, np.int64)
        val = rng.integers(_I64.min, _I64.max, n, endpoint=True)
        want = np.argsort(key, kind="stable")
        for scratch in (None, np.empty(max(0, 32 * n - 1), np.uint8),
                        np.empty(32 * n + 16, np.uint8)):
            ko, vo = np.full(n, 3, np.int64), np.full(n, 3, np.int64)
            _core.sort_pairs_by_key(key, val, ko, vo, scratch)
            assert np.array_equal(ko, key[want]) and np.array_equal(vo, val[want])


@pytest.mark.parametrize("n", [0, 1, 17, 5000])
def test_the_core_gathers_the_marked_rows_in_mark_order(n):
    """gather_marked against numpy: the marked positions' rows (through perm, or themselves)
    with their two values, none, one, all marked; a perm outside the values, or outputs of
    the wrong length, are refused."""
    from firehose import _core
    rng = np.random.default_rng(n)
    a = rng.integers(_I64.min, _I64.max, n, endpoint=True)
    b = rng.integers(-5, 5, n)
    perm = rng.permutation(n).astype(np.int64)
    for mark in (rng.random(n) < 0.3, np.zeros(n, bool), np.ones(n, bool)):
        for p in (perm, None):
            rows = np.flatnonzero(mark) if p is None else p[np.flatnonzero(mark)]
            ao, bo = np.full(len(rows), 9, np.int64), np.full(len(rows), 9, np.int64)
            assert _core.gather_marked(mark.view(np.uint8), p, a, b, ao, bo) == len(rows)
            assert np.array_equal(ao, a[rows]) and np.array_equal(bo, b[rows])
    if n:
        mark = np.ones(n, np.uint8)
        with pytest.raises(ValueError):
            _core.gather_marked(mark, perm, a, b, np.empty(n - 1, np.int64),
                                np.empty(n - 1, np.int64))
        with pytest.raises(IndexError):
            _core.gather_marked(mark, perm + n, a, b, np.empty(n, np.int64),
                                np.empty(n, np.int64))


def test_small_delivery_blocks_merge_and_large_ones_stay(monkeypatch):
    """Blocks under _BLOCK_PAIRS seat pairs merge with the newest of their slot while it is
    not twice as large (small batches: few blocks to search), larger ones stay as they came;
    what is held and found is the same either way. The author index likewise."""
    import firehose.entitlements as E
    monkeypatch.setattr(E, "_BLOCK_PAIRS", 64)
    monkeypatch.setattr(E, "_AUTHOR_RUN_PAIRS", 64)
    rng = np.random.default_rng(5)
    for size, most in ((3, 12), (40, 60), (100, 60)):
        ent = _bare_ent()
        truth: dict[str, set] = {}
        for b in range(60):
            ids = np.unique(rng.integers(0, 3000, size)) + (1 << 40)    # overlapping
            client = f"c{b % 3}"
            ent._remember(client, ids)
            truth.setdefault(client, set()).update(ids.tolist())
            ent._pending_authors.append((ids % 7, ids))
            ent._author_runs()
        assert len(ent._blocks) <= most, (size, len(ent._blocks))
        assert all(len(b.codes) <= 64 for b in ent._blocks) or size == 100
        if size == 100:           # above the cap: one block a batch, one author run each
            assert len(ent._blocks) == 60 and len(ent._authors) == 60
        assert {k: set(v.tolist()) for k, v in ent._held_ids().items()} == truth
        q = np.arange(3000, dtype=np.int64) + (1 << 40)
        got = ent._delivered_to(q)
        for c, ids in truth.items():
            assert (got[c] == np.isin(q, list(ids))).all()


@pytest.mark.parametrize("spill", [False, True], ids=["in_memory", "slots"])
def test_delivered_to_no_ids(spill, tmp_path):
    """A lookup of no ids finds nothing (with slots it indexed an empty array)."""
    ent = _bare_ent(tmp_path / "s" if spill else None)
    ent._remember("a", np.array([5 << 22, 6 << 22], np.int64))
    assert ent._delivered_to(np.zeros(0, np.int64)) == {}
