"""Compliance state: latest wins by event time, and what it denies or masks per row."""
from __future__ import annotations

import json

import pytest

import firehose
from firehose.compliance import DENY_REASONS, ComplianceState
from firehose.errors import StateError


def decode(*objs) -> firehose.DecodeResult:
    data = b"".join(json.dumps(o).encode() + b"\n" for o in objs)
    dec = firehose.Decoder(dedupe=False)
    return firehose.DecodeResult.concat([dec.feed(data, source="t"), dec.finish()])


def status(tid, uid=7, **extra):
    o = {"id_str": str(tid), "text": f"tweet {tid}", "user": {"id_str": str(uid)}}
    o.update(extra)
    return o


def delete(tid, uid=7, ms=None):
    d = {"delete": {"status": {"id_str": str(tid), "user_id_str": str(uid)}}}
    if ms is not None:
        d["delete"]["timestamp_ms"] = str(ms)
    return d


def gnip(verb, uid, when):
    return {"verb": verb, "object": {"id": f"tag:search.twitter.com,2012:user/{uid}"},
            "timestampMs": when}


def denied(state, tweets):
    d = state.deny(tweets)
    return {name: [i for i, v in enumerate(d[name]) if v] for name in DENY_REASONS if d[name].any()}


def test_a_delete_that_arrives_before_its_tweet_still_wins():
    st = ComplianceState()
    st.apply(decode(delete(101)).compliance)
    later = decode(status(101), status(102)).tweets
    assert denied(st, later) == {"deleted": [0]}


def test_retweets_and_quotes_of_deleted_tweets_are_denied_too():
    st = ComplianceState()
    st.apply(decode(delete(500)).compliance)
    tw = decode(status(1, retweeted_status=status(500)), status(2, quoted_status=status(500)),
                status(3, quoted_status=status(501))).tweets
    assert denied(st, tw) == {"deleted": [0, 1]}


def test_user_states_are_latest_wins_by_event_time_not_arrival():
    st = ComplianceState()
    st.apply(decode(gnip("user_suspend", 9, "2020-01-02T00:00:00.000Z"),
                    gnip("user_unsuspend", 9, "2020-01-01T00:00:00.000Z")).compliance)
    tw = decode(status(1, uid=9), status(2, uid=8)).tweets
    assert denied(st, tw) == {"user_suspended": [0]}     # the older unsuspend changes nothing
    st.apply(decode(gnip("user_unsuspend", 9, "2020-01-03T00:00:00.000Z")).compliance)
    assert denied(st, tw) == {}


def test_protected_and_deleted_authors_of_retweeted_or_quoted_tweets():
    st = ComplianceState()
    st.apply(decode(gnip("user_protect", 42, "2020-01-01T00:00:00.000Z"),
                    gnip("user_delete", 43, "2020-01-01T00:00:00.000Z")).compliance)
    tw = decode(status(1, retweeted_status=status(10, uid=42)),
                status(2, quoted_status=status(11, uid=43)), status(3)).tweets
    assert denied(st, tw) == {"user_protected": [0], "user_deleted": [1]}


def test_withheld_in_the_seats_countries_and_everywhere():
    st = ComplianceState()
    tw = decode(status(1, withheld_in_countries=["de"]), status(2, withheld_in_countries=["XX"]),
                status(3), status(4, uid=77)).tweets
    st.apply(decode({"status_withheld": {"id_str": "3", "withheld_in_countries": ["FR"]}},
                    {"user_withheld": {"id_str": "77", "withheld_in_countries": ["XY"]}}).compliance)
    assert list(st.withheld(tw, ["DE"]).nonzero()[0]) == [0, 1, 3]
    assert list(st.withheld(tw, ["US"]).nonzero()[0]) == [1, 3]
    assert list(st.withheld(tw, ["fr", "US"]).nonzero()[0]) == [1, 2, 3]


def test_scrub_geo_masks_up_to_the_status_id():
    st = ComplianceState()
    st.apply(decode({"scrub_geo": {"user_id_str": "7", "up_to_status_id_str": "200"}}).compliance)
    tw = decode(status(150), status(200), status(201), status(150, uid=8)).tweets
    assert list(st.scrub_geo_mask(tw)) == [True, True, False, False]


def test_null_ids_are_not_matched_and_drop_undrop():
    st = ComplianceState()
    st.apply(decode({"verb": "drop", "object": {"id": "tag:search.twitter.com,2005:77"},
                     "timestampMs": "2020-01-01T00:00:00.000Z"}).compliance)
    tw = decode(status(77), status(78)).tweets
    assert denied(st, tw) == {"dropped": [0]}
    st.apply(decode({"verb": "undrop", "object": {"id": "tag:search.twitter.com,2005:77"},
                     "timestampMs": "2020-01-02T00:00:00.000Z"}).compliance)
    assert denied(st, tw) == {}


def test_state_round_trips_through_bytes():
    st = ComplianceState()
    st.apply(decode(delete(5), gnip("user_suspend", 9, "2020-01-02T00:00:00.000Z"),
                    {"user_withheld": {"id_str": "77", "withheld_in_countries": ["DE"]}},
                    {"scrub_geo": {"user_id_str": "7", "up_to_status_id_str": "200"}}).compliance)
    back = ComplianceState.from_bytes(st.to_bytes())
    tw = decode(status(5), status(6, uid=9), status(7, uid=77), status(8)).tweets
    assert denied(back, tw) == denied(st, tw) == {"deleted": [0], "user_suspended": [1]}
    assert list(back.withheld(tw, ["DE"])) == list(st.withheld(tw, ["DE"]))
    assert list(back.scrub_geo_mask(tw)) == list(st.scrub_geo_mask(tw)) == [True, False, False, True]
    with pytest.raises(StateError):
        ComplianceState.from_bytes(b"junk")


@pytest.mark.parametrize("size", [0, 1, 300, 70_000])
def test_id_set_screening_matches_is_in_with_nulls_slices_and_chunks(size):
    """The hash-bitmap screen used for deny / withheld / scrub_geo masks finds exactly what
    pyarrow's is_in finds (nulls never match); sets too large for the bitmap use is_in."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from firehose.compliance import _IdSet
    rng = np.random.default_rng(size)
    ids = rng.integers(-2**63, 2**63 - 1, size)
    members = rng.choice(ids, 2000) if size else np.zeros(0, np.int64)
    values = np.concatenate([members, rng.integers(-2**63, 2**63 - 1, 2000), [0, -1]])
    col = pa.array(values, pa.int64(), mask=rng.random(len(values)) < 0.3)
    id_set = _IdSet(ids)
    for c in (col, col.slice(5), pa.chunked_array([col.slice(0, 700), col.slice(700)])):
        want = pc.fill_null(pc.is_in(c, value_set=pa.array(ids, pa.int64())), False)
        assert np.array_equal(id_set.isin(c), want.to_numpy(zero_copy_only=False))
