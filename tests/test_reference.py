"""The oracle on its own: hand-checked facts from real payloads, framing, rejects, dedupe.

Facts were read off the corpus files named in each test (see /work/shared/corpora/README.md).
"""
from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings

from firehose import schema
from firehose._reference import ReferenceDecoder

try:
    from corpus import Decoded, corpus_file, corpus_files, decode, fuzz_input, line_sets, rel, \
        run, split_at, table_diff
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import Decoded, corpus_file, corpus_files, decode, fuzz_input, line_sets, \
        rel, run, split_at, table_diff


def ms(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def ref(**kw):
    return lambda: ReferenceDecoder(**kw)


def decode_file(name: str, **kw) -> Decoded:
    p = corpus_file(name)
    return decode(ref(**kw), p.read_bytes(), source=name)


def one(data: bytes, **kw) -> Decoded:
    return decode(ref(**kw), data)


def only(rows: list[dict]) -> dict:
    assert len(rows) == 1, rows
    return rows[0]


# --------------------------------------------------------------------------------------------
# schemas and API

def test_result_tables_have_exactly_the_schemas():
    d = ReferenceDecoder()
    out = d.feed(b'{"id": 1, "text": "a"}\n{"limit": {"track": 2}}\nnot json\n', source="s")
    assert out.tweets.schema.equals(schema.TWEETS)
    assert out.compliance.schema.equals(schema.COMPLIANCE)
    assert out.rejects.schema.equals(schema.REJECTS)
    empty = d.finish()
    assert (empty.tweets.num_rows, empty.compliance.num_rows, empty.rejects.num_rows) == (0, 0, 0)
    assert empty.tweets.schema.equals(schema.TWEETS)
    assert set(d.stats) == {"lines", "blank", "tweets", "duplicates", "dedupe_late", "compliance",
                            "rejects", "bytes"}


# --------------------------------------------------------------------------------------------
# facts from real files

def test_rounded_numeric_id_yields_to_id_str():
    # Gnip "original format": the numeric ids went through a JavaScript double
    name = "tweet-parser-gnip/broken__original_format_missing_field.ndjson"
    raw = corpus_file(name).read_bytes()
    assert b'"id":867468138991964200' in raw and b'"id_str":"867468138991964160"' in raw
    t = only(decode_file(name).rows("tweets"))
    assert t["id"] == 867468138991964160
    assert t["author_id"] == 815279070241955840          # user.id was rounded to ...800 too
    assert t["text"] == "A) This is a regular old Tweet. \U0001F423"
    assert t["source"] == "Twitter Web Client"
    assert t["created_at"] == ms("2017-05-24T19:51:35+00:00")
    assert t["upstream_rules"] == [{"id": None, "tag": None}]


def test_2007_payloads_without_id_str():
    name = "python-twitter-testdata/public_timeline.ndjson"
    assert b'"id_str"' not in corpus_file(name).read_bytes()
    d = decode_file(name)
    tweets = d.rows("tweets")
    assert len(tweets) == 20 and d.stats["rejects"] == 0
    assert all(t["id"] < 2**35 for t in tweets)
    t = tweets[0]
    assert (t["id"], t["author_id"], t["author_screen_name"]) == (89497702, 2038581, "olterman")
    assert t["created_at"] == ms("2007-06-03T17:59:37+00:00")
    assert t["source"] is None and t["author_location"] == "Riga"


def test_extended_tweet_full_text_over_truncated_text():
    name = "python-twitter-testdata/streaming__streaming_extended_tweet.ndjson"
    msg = json.loads(corpus_file(name).read_bytes())
    assert msg["truncated"] is True and msg["text"].endswith("\u2026 https://t.co/ZPJrpMvcZG")
    t = only(decode_file(name).rows("tweets"))
    assert t["id"] == 971726741583605760
    assert t["text"] == msg["extended_tweet"]["full_text"]
    assert t["text"].endswith("ClouData &amp; Multiverse -  https://t.co/cnCBNJvu6T")   # &amp; kept
    # entities come from extended_tweet too (the compat text has only one of the two links)
    assert t["urls"] == [
        "http://www.amazon.com/gp/product/1782167897/ref=as_li_tf_tl?ie=UTF8&camp=1789&creative"
        "=9325&creativeASIN=1782167897&linkCode=as2&tag=hardwaresoftw-20",
        "http://hwswworld.com/index.php?route=product/category&path=13"]


def test_v2_includes_users_and_tweets_joined():
    t = only(decode_file("twarc-csv-v2/two_tweets.jsonl").rows("tweets"))
    assert t["id"] == 1394735776701816833 and t["dialect"] == "v2"
    assert t["created_at"] == ms("2021-05-18T19:24:56+00:00")
    assert (t["author_id"], t["author_screen_name"], t["author_name"]) == (
        1379899464345923590, "LachiVeronica", "Veronica Lachi")
    assert (t["author_followers_count"], t["author_verified"], t["author_description"]) == (
        0, False, "")
    assert t["author_location"] is None                  # not in the user object
    assert t["retweeted_status_id"] == 1391677057810288641
    assert t["retweeted_user_id"] == 1380086327023169540  # from includes.tweets[].author_id
    assert t["retweeted_text"] == "#POIUYTREWQ"
    assert (t["hashtags"], t["mentions"], t["mention_ids"]) == (["POIUYTREWQ"], ["bibaigna96"], [])
    assert t["source"] == "Twitter for Android"


def test_v2_flattened_twarc_tweet():
    t = decode_file("twarc-csv-v2/flat.jsonl").rows("tweets")[0]
    assert t["id"] == 1380242611781386245 and t["dialect"] == "v2"
    assert (t["author_screen_name"], t["author_followers_count"]) == ("Alexandravm12", 58)
    assert t["retweeted_status_id"] == 1380175475545362437
    assert t["retweeted_user_id"] == 2718660392        # the referenced element is the tweet
    assert t["retweeted_text"].startswith("De manera simultánea, vuelven a asediar")
    assert t["mention_ids"] == [2718660392]


def test_v2_geo_place_media_cashtags_withheld():
    geo = decode_file("twarc-csv-v2/geo_tweets.jsonl").rows("tweets")
    assert geo[0]["coordinates"] == {"lon": 42.77810097, "lat": 88.01785747}   # as delivered
    assert (geo[1]["place_id"], geo[1]["place_country_code"]) == ("3078869807f9dd36", "DE")
    assert only(decode_file("twarc-csv-v2/media_tweet.jsonl").rows("tweets"))["media_types"] == [
        "video"]
    cash = only(decode_file("twarc-csv-v2/cashtags.jsonl").rows("tweets"))
    assert cash["cashtags"][:4] == ["AMD", "BTC", "TWTR", "BA"] and "doge" in cash["cashtags"]
    wh = {t["id"]: t["withheld_in_countries"]
          for t in decode_file("twarc-csv-v2/withheld.jsonl").rows("tweets")}
    assert wh[1388424788171841537] == ["IN"] and wh[25712847277] == ["DE", "FR"]


def test_v2_partial_errors_are_api_error_events():
    d = decode_file("twarc-csv-v2/withheld.jsonl")
    errs = d.rows("compliance")
    assert [e["kind"] for e in errs] == ["api_error"] * 5
    assert (errs[0]["line"], errs[0]["tweet_id"], errs[0]["code"]) == (
        3, 506694458445152256, "Not Found Error")
    assert errs[0]["detail"] == ("Could not find tweet with referenced_tweets.id: "
                                 "[506694458445152256].")
    # suspended users reported by username: never an id, not even the all-digit name "2245"
    assert [(e["user_id"], e["detail"]) for e in errs[2:]] == [
        (None, "User has been suspended: [RSS4India]."),
        (None, "User has been suspended: [Anoop455]."),
        (None, "User has been suspended: [2245].")]
    # a page with errors gives both tweets and compliance rows from the same line
    tweet_lines = {t["line"] for t in d.rows("tweets")}
    assert {3, 4, 5} <= tweet_lines


def test_gnip_activity_ids_from_tag_strings():
    t = only(decode_file("gnip-api-ruby-fixtures/twitter_messages__quote.ndjson").rows("tweets"))
    assert t["dialect"] == "activity"
    assert t["id"] == 600699303225466880            # tag:search.twitter.com,2005:600699303225466880
    assert t["author_id"] == 63046977               # id:twitter.com:63046977
    assert t["author_screen_name"] == "happycamper"
    assert t["quoted_status_id"] == 600436537998897153
    assert t["quoted_text"].startswith("Don't worry if you missed the @RollingStones")
    assert (t["mentions"], t["mention_ids"]) == (["johnd"], [408623049])
    assert t["source"] == "Twitter for  iPhone"     # generator.displayName, verbatim
    assert t["created_at"] == ms("2015-05-19T16:27:28+00:00")

    full = only(decode_file("gnip-api-ruby-fixtures/activities__full_activity.ndjson")
                .rows("tweets"))
    assert full["id"] == 715999188836827140
    assert full["upstream_rules"] == [{"id": "715947673707089920", "tag": None}]  # int literal
    assert (full["place_id"], full["place_country_code"]) == ("fd70c22040963ac7", "US")
    assert (full["author_location"], full["hashtags"]) == ("Birmingham", ["AprilFools"])


def test_gnip_share_is_a_retweet():
    t = only(decode_file("gnip-api-ruby-fixtures/twitter_messages__retweet.ndjson")
             .rows("tweets"))
    assert (t["id"], t["author_id"]) == (595648617588912128, 2993982541)
    assert (t["retweeted_status_id"], t["retweeted_user_id"]) == (593935592573898753, 88777459)
    assert t["retweeted_text"].startswith("More geo testing. Dinner with my son")
    assert t["media_types"] == ["photo"]
    assert t["upstream_rules"] == [{"id": None, "tag": "something"}]
    assert t["coordinates"] is None                  # the geo point is on the object, not A


def test_geo_coordinates_order():
    name = "python-twitter-testdata/get_search_geocode.ndjson"
    line = corpus_file(name).read_bytes().split(b"\n")[0]
    msg = json.loads(line)
    assert msg["geo"]["coordinates"] == [37.6624312, -121.8746789]           # [lat, lon]
    assert msg["coordinates"]["coordinates"] == [-121.8746789, 37.6624312]   # [lon, lat]
    want = {"lon": -121.8746789, "lat": 37.6624312}
    assert only(one(line).rows("tweets"))["coordinates"] == want
    msg["coordinates"] = None                    # only geo left: it must be swapped
    assert only(one(json.dumps(msg).encode()).rows("tweets"))["coordinates"] == want
    msg["geo"] = None
    assert only(one(json.dumps(msg).encode()).rows("tweets"))["coordinates"] is None

    act = json.loads(corpus_file("gnip-api-ruby-fixtures/twitter_messages__retweet.ndjson")
                     .read_bytes())
    act["geo"] = act["object"]["geo"]            # {"type":"Point","coordinates":[40.01, -105.2]}
    t = only(one(json.dumps(act).encode()).rows("tweets"))
    assert t["coordinates"] == {"lon": -105.235281, "lat": 40.013423}


def test_app_name_from_source_anchor():
    t = only(decode_file("python-twitter-testdata/get_statuses.map.2.ndjson").rows("tweets"))
    assert (t["id"], t["text"], t["source"]) == (20, "just setting up my twttr",
                                                 "Twitter Web Client")
    # v1.1 escapes the anchor as \u003ca href=...\u003eTweetMyJOBS\u003c\/a\u003e
    line = corpus_file("python-twitter-testdata/get_search_geocode.ndjson").read_bytes()
    assert b'"source":"\\u003ca href=' in line
    assert one(line.split(b"\n")[0]).rows("tweets")[0]["source"] == "TweetMyJOBS"
    for src, want in (('"web"', "web"), ('"<a href=\\"x\\">App"', "App"),
                      ('"<b>x</b>"', "<b>x</b>"), ('"<a>"', ""), ("null", None), ("5", None)):
        line = f'{{"id": 1, "text": "t", "source": {src}}}'.encode()
        assert only(one(line).rows("tweets"))["source"] == want, src


def test_lookup_map_page_and_statuses_page():
    d = decode_file("python-twitter-testdata/get_statuses.map.1.ndjson")
    assert d.stats["lines"] == 1 and d.tweets.num_rows == 100
    assert set(d.tweets.column("line").to_pylist()) == {1}
    page = {"statuses": [{"id": 1, "text": "a"}, {"id_str": "2", "text": "b"}],
            "search_metadata": {"count": 2}}
    assert one(json.dumps(page).encode()).tweets.column("id").to_pylist() == [1, 2]


COMPLIANCE_FIXTURES = {
    "hbc-stream-messages/control-message.ndjson": [("other", {"detail": "control"})],
    "hbc-stream-messages/direct-message-delete.ndjson": [("dm_delete", {"user_id": 123123123})],
    "hbc-stream-messages/direct-message.ndjson": [("other", {"detail": "direct_message"})],
    "hbc-stream-messages/disconnect-message.ndjson": [
        ("disconnect", {"code": "5", "detail": "reason for disconnection"})],
    "hbc-stream-messages/friends-list.ndjson": [("other", {"detail": "friends"})],
    "hbc-stream-messages/limit.ndjson": [("limit", {"count": 1234})],
    "hbc-stream-messages/scrub-geo.ndjson": [
        ("scrub_geo", {"user_id": 14090452, "up_to_tweet_id": 23260136625})],
    "hbc-stream-messages/sitestream-friends-list.ndjson": [("other", {"detail": "for_user"})],
    "hbc-stream-messages/status-deletion.ndjson": [("delete", {"tweet_id": 1234, "user_id": 3})],
    "hbc-stream-messages/user.ndjson": [("other", {"detail": "user"})],
    "tweetstream-fixtures/close.ndjson": [("other", {"detail": "close"})],
    "tweetstream-fixtures/delete.ndjson": [("delete", {"tweet_id": 123, "user_id": 3})],
    "tweetstream-fixtures/direct_messages.ndjson": [("other", {"detail": "direct_message"})],
    "tweetstream-fixtures/favorite.ndjson": [("other", {"detail": "target"})],
    "tweetstream-fixtures/ids.ndjson": [("other", {"detail": "follow"})],
    # a site-stream "info" is read as a Gnip system message (rule 3); it has no message/sent
    "tweetstream-fixtures/info.ndjson": [("system_info", {"detail": None, "event_at": None})],
    "tweetstream-fixtures/limit.ndjson": [("limit", {"count": 123})],
    # hand-written after the docs with the "up_to_status_id_string" typo
    "tweetstream-fixtures/scrub_geo.ndjson": [
        ("scrub_geo", {"user_id": 123, "up_to_tweet_id": 987})],
    "tweetstream-fixtures/stall_warning.ndjson": [("warning", {"code": "FALLING_BEHIND"})],
    "tweetstream-fixtures/status_withheld.ndjson": [
        ("status_withheld", {"tweet_id": 1234567890, "user_id": 123, "countries": ["DE", "AR"]})],
    "tweetstream-fixtures/user_withheld.ndjson": [
        ("user_withheld", {"user_id": 123, "countries": ["DE", "AR"]})],
    "gnip-api-ruby-fixtures/system_messages__error.ndjson": [
        ("system_error", {"event_at": ms("2013-01-11T18:12:52+00:00"),
                          "detail": "Forced Disconnect: Too many connections. "
                                    "(Allowed Connections = 2)"})],
    "gnip-api-ruby-fixtures/system_messages__info.ndjson": [
        ("system_info", {"detail": "Some info from Gnip.\n\n"})],
    "gnip-api-ruby-fixtures/system_messages__warn.ndjson": [
        ("system_warn", {"detail": "Some warning from Gnip.\n\n"})],
    "gnip-api-ruby-fixtures/twitter_messages__scrub_geo.ndjson": [
        ("scrub_geo", {"user_id": 598851423, "up_to_tweet_id": 503024492839727104,
                       "event_at": ms("2014-08-27T23:51:13.651+00:00"), "dialect": "activity"})],
    "gnip-api-ruby-fixtures/twitter_messages__status_delete.ndjson": [
        ("delete", {"tweet_id": 601140908713738240, "user_id": 3130171131,
                    "event_at": ms("2015-05-20T21:42:18.944+00:00")})],
    "gnip-api-ruby-fixtures/twitter_messages__status_withheld.ndjson": [
        ("status_withheld", {"tweet_id": 425794620677554176, "user_id": 1375036644,
                             "countries": ["XY"]})],
    "gnip-api-ruby-fixtures/twitter_messages__user_delete.ndjson": [
        ("user_delete", {"user_id": 1602954684})],
    "gnip-api-ruby-fixtures/twitter_messages__user_protect.ndjson": [
        ("user_protect", {"user_id": 930913333})],
    "gnip-api-ruby-fixtures/twitter_messages__user_suspend.ndjson": [
        ("user_suspend", {"user_id": 930913333})],
    "gnip-api-ruby-fixtures/twitter_messages__user_undelete.ndjson": [
        ("user_undelete", {"user_id": 930913333})],
    "gnip-api-ruby-fixtures/twitter_messages__user_unprotect.ndjson": [
        ("user_unprotect", {"user_id": 930913333})],
    "gnip-api-ruby-fixtures/twitter_messages__user_unsuspend.ndjson": [
        ("user_unsuspend", {"user_id": 930913333})],
    "gnip-api-ruby-fixtures/twitter_messages__user_withheld.ndjson": [
        ("user_withheld", {"user_id": 1375036644, "countries": ["XY"],
                           "event_at": ms("2014-08-27T23:49:41.839+00:00")})],
    "twarc-csv-v2/tweets_compliance.jsonl": [
        ("batch_compliance", {"object_id": 1170025343920402432, "code": "delete",
                              "detail": "protected", "line": 2, "dialect": "v2",
                              "event_at": ms("2019-09-06T17:25:54.667+00:00")}),
        ("batch_compliance", {"object_id": 1170147183095664640, "detail": "deactivated",
                              "line": 3})],
    "twarc-csv-v2/users_compliance.jsonl": [
        ("batch_compliance", {"object_id": 1482680858, "line": 1,
                              "event_at": ms("2013-06-04T16:25:04+00:00")}),
        ("batch_compliance", {"object_id": 1482680858, "line": 2})],
}


@pytest.mark.parametrize("name", sorted(COMPLIANCE_FIXTURES))
def test_compliance_fixture_kinds(name):
    d = decode_file(name)
    assert d.tweets.num_rows == 0 and d.rejects.num_rows == 0
    rows = d.rows("compliance")
    assert [r["kind"] for r in rows] == [k for k, _ in COMPLIANCE_FIXTURES[name]]
    for row, (kind, cols) in zip(rows, COMPLIANCE_FIXTURES[name]):
        for col, want in cols.items():
            assert row[col] == want, (name, col)
        want_dialect = "activity" if "twitter_messages__" in name else (
            "v2" if name.startswith("twarc") else "v1.1")
        assert row["dialect"] == want_dialect


def test_every_compliance_fixture_file_is_covered():
    names = {rel(p) for p in corpus_files()}
    expected = {n for n in names if n.split("/")[0] in ("hbc-stream-messages",
                                                         "tweetstream-fixtures")
                or "/system_messages__" in n or "compliance" in n
                or ("/twitter_messages__" in n and not any(
                    w in n for w in ("tweet", "retweet", "quote")))}
    expected -= {"hbc-stream-messages/status.ndjson"}
    expected = {n for n in expected if not n.endswith("compliance.ndjson")}  # same as .jsonl
    assert expected <= set(COMPLIANCE_FIXTURES)


# --------------------------------------------------------------------------------------------
# framing

def _real_lines(n: int = 3) -> list[bytes]:
    return corpus_file("python-twitter-testdata/get_mentions.ndjson").read_bytes().split(b"\n")[:n]


def test_crlf_blank_lines_and_last_line_without_newline():
    a, b, c = _real_lines()
    data = a + b"\r\n" + b"\r\n" + b" \t \r\n" + b + b"\r\n" + b"\n" + c        # no final newline
    d = one(data)
    assert d.stats["lines"] == 6 and d.stats["blank"] == 3 and d.stats["rejects"] == 0
    assert d.stats["bytes"] == len(data)
    rows = d.rows("tweets")
    assert [r["line"] for r in rows] == [1, 4, 6]
    assert [r["byte_offset"] for r in rows] == [0, len(a) + 2 + 2 + 5, len(data) - len(c)]
    assert [r["id"] for r in rows] == [json.loads(x)["id"] for x in (a, b, c)]
    # the same without CR and with a final newline gives the same rows but for offsets
    plain = one(a + b"\n" + b + b"\n" + c + b"\n")
    assert plain.tweets.column("id").to_pylist() == [r["id"] for r in rows]


def test_real_crlf_capture_equals_its_lf_sibling():
    crlf = decode_file("twitter-ruby-fixtures/track_streaming_user.json")   # CRLF-framed original
    lf = decode_file("twitter-ruby-fixtures/track_streaming_user.ndjson")
    assert crlf.stats["lines"] == lf.stats["lines"] == 6 and crlf.stats["rejects"] == 0
    for kind in ("tweets", "compliance"):
        a, b = crlf.rows(kind), lf.rows(kind)
        for r in a + b:
            del r["byte_offset"], r["source_file"]
        assert a == b
    # a user stream: friends list, a tweet, a DM, a favorite event, a delete, a stall warning
    assert [(r["line"], r["kind"], r["detail"]) for r in crlf.rows("compliance")][:3] == [
        (1, "other", "friends"), (3, "other", "direct_message"), (4, "other", "event")]
    assert [r["kind"] for r in crlf.rows("compliance")][3:] == ["delete", "warning"]
    assert crlf.tweets.column("line").to_pylist() == [2]


def test_cut_off_last_line_is_a_truncated_reject():
    a, b, _ = _real_lines()
    cut = b[: len(b) // 2]
    data = a + b"\r\n" + cut
    d = one(data)
    assert d.tweets.num_rows == 1
    r = only(d.rows("rejects"))
    assert (r["line"], r["byte_offset"], r["reason"], r["raw"]) == (2, len(a) + 2, "truncated", cut)
    # a reject keeps its \r in raw, CRLF or not
    d = one(b"{nope}\r\n")
    assert only(d.rows("rejects"))["raw"] == b"{nope}\r"


def test_finish_and_source_switch_flush_the_carry():
    dec = ReferenceDecoder()
    out = dec.feed(b'{"id": 1, "text": "a"}\n{"id": 2, "te', source="s1")
    assert out.tweets.column("id").to_pylist() == [1]
    out = dec.feed(b'{"id": 3, "text": "c"}', source="s2")   # flushes s1's cut line
    assert out.tweets.num_rows == 0
    r = only(out.rejects.to_pylist())
    assert (r["source"], r["line"], r["byte_offset"], r["reason"]) == ("s1", 2, 23, "truncated")
    out = dec.finish()
    t = only(out.tweets.to_pylist())
    assert (t["id"], t["source_file"], t["line"], t["byte_offset"]) == (3, "s2", 1, 0)


def test_explicit_offsets_and_line_numbers_per_source():
    dec = ReferenceDecoder(dedupe=False)
    pieces = [(b'{"id": 1, "text": "a"}\n', "a", 100), (b'{"id": 2, "text": "b"}\n', "b", None),
              (b'{"id": 3, "text": "c"}\n', "a", None)]
    d = run(dec, pieces)
    got = [(r["source_file"], r["line"], r["byte_offset"]) for r in d.rows("tweets")]
    assert got == [("a", 1, 100), ("b", 1, 0), ("a", 2, 123)]


# --------------------------------------------------------------------------------------------
# rejects

TOO_LONG = b'{"id": 1, "text": "0123456789"}'

REJECTS = [
    # (line, reason, decoder kwargs)
    (TOO_LONG, "line_too_long", {"max_line_bytes": len(TOO_LONG) - 1}),
    (b" " * 40, "line_too_long", {"max_line_bytes": 39}),
    (b'{"id": 1, "text": "caf\xe9"}', "invalid_utf8", {}),
    (b'{"id": 1, "text": "\xc0\xaf"}', "invalid_utf8", {}),          # overlong '/'
    (b'{"id": 1, "text": "\xed\xa0\x80"}', "invalid_utf8", {}),      # UTF-8 encoded surrogate
    (b'{"id": 1, "text": "\xf4\x90\x80\x80"}', "invalid_utf8", {}),  # > U+10FFFF
    (b'{"id": 1, "text": "a", "x": [[[1]]]}', "too_deep", {"max_depth": 3}),
    (b"[" * 65 + b"]" * 65, "too_deep", {}),
    (b'{"id": 1, "text": "\\x"}', "invalid_escape", {}),
    (b'{"id": 1, "text": "\\u12G4"}', "invalid_escape", {}),
    (b'{"id": 1, "text": "\\ud83d"}', "lone_surrogate", {}),
    (b'{"id": 1, "text": "\\ude00\\ud83d"}', "lone_surrogate", {}),
    (b'{"id": 1, "\\udc00": "a", "text": "b"}', "lone_surrogate", {}),
    (b'{"id": 1, "text": "\\ud83d\\u0041"}', "lone_surrogate", {}),
    (b'{"id": 1, "text": "abc', "truncated", {}),
    (b'{"id": 1, "text": "a", "n": 1.', "truncated", {}),
    (b'{"id": 1, "text": "a", "t": tr', "truncated", {}),
    (b'{"id": 1, "text": "a"', "truncated", {}),
    (b'{"id": 1, "text": "a"} x', "invalid_json", {}),
    (b'{"id": 1, "text": "a\tb"}', "invalid_json", {}),                # raw control character
    (b'{"id": 1, "text": "a", "n": NaN}', "invalid_json", {}),
    (b'{"id": 1, "text": "a", "n": -Infinity}', "invalid_json", {}),
    (b'{"id": 01, "text": "a"}', "invalid_json", {}),
    (b'{"id": 1, "text": "a",}', "invalid_json", {}),
    (b"\xef\xbb\xbf{}", "invalid_json", {}),                            # a BOM is not whitespace
    (b"42", "not_an_object", {}),
    (b'"a string"', "not_an_object", {}),
    (b'[{"id": 1, "text": "a"}, 2]', "not_an_object", {}),
    (b'{"statuses": [{"id": 1, "text": "a"}, null]}', "not_an_object", {}),
    (b'{"text": "no id at all"}', "missing_id", {}),
    (b'{"id": null, "id_str": null, "text": "a"}', "missing_id", {}),
    (b'{"id": 9223372036854775808, "text": "a"}', "missing_id", {}),  # 2^63
    (b'{"id_str": "12345678901234567890", "text": "a"}', "missing_id", {}),
    (b'{"id": -1, "text": "a"}', "missing_id", {}),
    (b'{"id": 1.0, "text": "a"}', "missing_id", {}),
    (b'{"id": 1e3, "text": "a"}', "missing_id", {}),
    (b'{"id_str": " 1", "text": "a"}', "missing_id", {}),
    (b'[{"id": 1, "text": "a"}, {"id": 2, "text": "b"}, {"text": "c"}]', "missing_id", {}),
    (b'{"data": [{"id": "1", "text": "a"}, {"text": "b"}]}', "missing_id", {}),
    (b'{"delete": {"status": {"user_id": 3}}}', "missing_id", {}),
    (b'{"scrub_geo": {"up_to_status_id": 3}}', "missing_id", {}),
    (b'{"verb": "post", "id": "tag:search.twitter.com,2005:", "body": "x"}', "missing_id", {}),
    (b'{"verb": "user_delete", "object": {}}', "missing_id", {}),
    (b'{"data": {"delete": {"tweet": {"author_id": "3"}}}}', "missing_id", {}),
    (b'{"data": {"user_suspend": {"tweet": {"id": "3"}}}}', "missing_id", {}),
    (b'{"id": "x", "action": "delete", "reason": "deleted"}', "missing_id", {}),
]


@pytest.mark.parametrize("line,reason,kw", REJECTS, ids=[f"{r}-{i}" for i, (_, r, _) in
                                                          enumerate(REJECTS)])
def test_reject_reasons(line, reason, kw):
    data = b'{"limit": {"track": 1}}\n' + line + b"\n" + b'{"limit": {"track": 2}}'
    d = one(data, **kw)
    r = only(d.rows("rejects"))
    assert (r["reason"], r["line"], r["byte_offset"], r["raw"]) == (reason, 2, 24, line), r
    assert r["source"] == "input" and r["detail"]
    assert d.tweets.num_rows == 0                     # a reject rejects the whole line
    assert d.compliance.column("line").to_pylist() == [1, 3]


def test_reject_field_paths():
    def field(line):
        return only(one(line).rows("rejects"))["field"]
    assert field(b'{"text": "a"}') == "$.id_str"
    assert field(b'[{"id": 1, "text": "a"}, {"text": "b"}]') == "$[1].id_str"
    assert field(b'{"data": [{"id": "1", "text": "a"}, {"text": "b"}]}') == "$.data[1].id"
    assert field(b'{"delete": {"status": {}}}') == "$.delete.status.id_str"
    assert field(b"[1]") == "$[0]"
    assert field(b"true") == "$"
    assert field(b'{"x": "\\udc00"}') == "$.x"
    r = only(one(b'{"text": "a"}').rows("rejects"))
    assert r["detail"] == "tweet has no usable id at $.id_str / $.id"


ACCEPTED = [
    b'{"id": 9223372036854775807, "text": "a"}',          # 2^63-1
    b'{"id_str": "0000000000000000001", "text": "a"}',     # 19 digits
    b'{"id": "x", "id_str": "5", "text": "a"}',
    b'{"id": 5, "id_str": "x", "text": "a"}',             # id_str unusable: the number is used
    b'{"id": 1, "text": "\\ud83d\\ude00 \\u00e9"}',
    b'{"id": 1, "text": "a", "n": [1.5e300, -0, 0.0, 123456789012345678901234567890]}',
    b' \t{"id": 1, "text": "a"} \t',
]


@pytest.mark.parametrize("line", ACCEPTED, ids=range(len(ACCEPTED)))
def test_accepted_edge_lines(line):
    d = one(line)
    assert d.rejects.num_rows == 0 and d.tweets.num_rows == 1


def test_depth_limit_is_exact():
    ok = b'{"id": 1, "text": "a", "x": ' + b"[" * 63 + b"]" * 63 + b"}"    # depth 1 + 63
    assert one(ok).tweets.num_rows == 1
    deep = b'{"id": 1, "text": "a", "x": ' + b"[" * 64 + b"]" * 64 + b"}"
    assert only(one(deep).rows("rejects"))["reason"] == "too_deep"
    # an earlier error wins over depth, scanning left to right
    assert only(one(b"[1 " + b"[" * 70).rows("rejects"))["reason"] == "invalid_json"
    assert only(one(b'["\\x", ' + b"[" * 70).rows("rejects"))["reason"] == "invalid_escape"


def test_empty_pages_still_account_for_their_line():
    d = one(b'[]\n{"statuses": [], "search_metadata": {}}\n{"id": {"1": null}}\n{}\n')
    assert [(r["kind"], r["detail"], r["line"]) for r in d.rows("compliance")] == [
        ("other", None, 1), ("other", "statuses", 2), ("other", "id", 3), ("other", None, 4)]


def test_v2_envelopes():
    d = one(b'{"data": {"deleted": true}}\n'                       # tweepy delete response
            b'{"data": {"withheld": {"tweet": {"id": "5", "author_id": "6"}, '
            b'"withheld_in_countries": ["de"], "event_at": "2021-01-01T00:00:00.000Z"}}}\n'
            b'{"data": {"id": "7", "text": "t", "withheld": {"country_codes": ["fr"]}}}\n'
            b'{"data": {"tweet_edit": {"initial_tweet_id": "8", "tweet": {"id": "9", '
            b'"author_id": "10"}}}}\n'
            b'{"data": {"scrub_geo": {"user": {"id": "11"}, "up_to_tweet_id": "12"}}}\n')
    c = d.rows("compliance")
    assert [(r["kind"], r["dialect"]) for r in c] == [("other", "v2"), ("status_withheld", "v2"),
                                                      ("tweet_edit", "v2"), ("scrub_geo", "v2")]
    assert (c[0]["detail"], c[1]["tweet_id"], c[1]["user_id"], c[1]["countries"]) == (
        "data", 5, 6, ["DE"])
    assert c[1]["event_at"] == ms("2021-01-01T00:00:00+00:00")
    assert (c[2]["tweet_id"], c[2]["user_id"]) == (8, 10)
    assert (c[3]["user_id"], c[3]["up_to_tweet_id"]) == (11, 12)
    t = only(d.rows("tweets"))
    assert (t["id"], t["withheld_in_countries"], t["line"]) == (7, ["FR"], 3)


def test_times():
    def created(v):
        line = json.dumps({"id": 1, "text": "a"})[:-1].encode() + b', "created_at": ' + v + b"}"
        return only(one(line).rows("tweets"))["created_at"]
    assert created(b'"Wed Aug 27 13:08:45 +0000 2008"') == ms("2008-08-27T13:08:45+00:00")
    assert created(b'"Mon Aug 27 13:08:45 +0130 2008"') == ms("2008-08-27T11:38:45+00:00")
    assert created(b'"2014-08-27T23:51:13.651+00:00"') == ms("2014-08-27T23:51:13.651+00:00")
    assert created(b'"2014-08-27T23:51:13.6519Z"') == ms("2014-08-27T23:51:13.651+00:00")
    assert created(b'"2014-08-27T23:51:13-0200"') == ms("2014-08-28T01:51:13+00:00")
    assert created(b'"1409183473651"') == ms("2014-08-27T23:51:13.651+00:00")
    assert created(b"1409183473651") == ms("2014-08-27T23:51:13.651+00:00")
    for bad in (b'"2014-02-30T00:00:00Z"', b'"2014-08-27T23:51:13"', b'"1969-12-31T23:59:59Z"',
                b'"2014-08-27T24:00:00Z"', b'"Wed Aug 27 13:08:45 2008"', b'"12345678901234567"',
                b"-1", b"1.5", b'"2014-08-27 23:51:13Z"', b'"\\u0661409183473651"', b"null"):
        assert created(bad) is None, bad


# --------------------------------------------------------------------------------------------
# chunking

def _mixed_input() -> bytes:
    a, b, c = _real_lines()
    return (a + b"\r\n\r\n" + b'{"limit": {"track": 7}}\n' + b"  \n" + b"not json\r\n"
            + b'[{"id": 1, "text": "x"}, {"id": 1, "text": "x"}]\n' + b + b"\n"
            + b'{"id": 2, "text": "caf\xc3\xa9 \xf0\x9f\x98\x80"}\n' + b"\xff\n" + c[:50])


def _same(a: Decoded, b: Decoded, what: str) -> None:
    for kind in ("tweets", "compliance", "rejects"):
        d = table_diff(getattr(a, kind), getattr(b, kind), names=("split", "whole"))
        assert d is None, f"{what}: {kind}: {d}"
    assert a.stats == b.stats, what


@pytest.mark.parametrize("size", range(1, 8))
def test_chunk_split_invariance_fixed_sizes(size):
    data = _mixed_input()
    whole = one(data)
    assert whole.rejects.num_rows == 3 and whole.stats["duplicates"] == 1
    split = decode(ref(), data, "input", [data[i:i + size] for i in range(0, len(data), size)])
    _same(split, whole, f"chunks of {size}")


def test_chunk_split_invariance_random():
    rng = random.Random(1234)
    data = _mixed_input()
    whole = one(data)
    for _ in range(40):
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 30))]
        _same(decode(ref(), data, "input", split_at(data, cuts)), whole, f"cuts {sorted(cuts)}")


@pytest.mark.parametrize("name", ["twitter-ruby-fixtures/track_streaming_user.ndjson",
                                  "twarc-csv-v2/withheld.jsonl",
                                  "gnip-api-ruby-fixtures/search_activities_response.ndjson"])
def test_chunk_split_invariance_real_files(name):
    data = corpus_file(name).read_bytes()
    whole = decode(ref(), data, name)
    rng = random.Random(name)
    for _ in range(3):
        cuts = [rng.randrange(len(data) + 1) for _ in range(20)]
        _same(decode(ref(), data, name, split_at(data, cuts)), whole, name)


# --------------------------------------------------------------------------------------------
# dedupe

def test_dedupe_first_wins_across_chunks_and_sources():
    name = "python-twitter-testdata/get_mentions.ndjson"
    data = corpus_file(name).read_bytes()
    dec = ReferenceDecoder(dedupe=True, dedupe_window_hours=24 * 365 * 20)   # nothing is late
    half = len(data) // 2
    d = run(dec, [(data[:half], "first", None), (data[half:], "first", None),
                  (data, "again", None)])
    n = d.stats["tweets"]
    assert n == 19 and d.stats["duplicates"] == 19
    assert set(d.tweets.column("source_file").to_pylist()) == {"first"}
    # the same file with dedupe off: every tweet twice
    d = run(ReferenceDecoder(dedupe=False), [(data, "first", None), (data, "again", None)])
    assert d.stats["tweets"] == 38 and d.stats["duplicates"] == 0


def test_dedupe_keeps_the_first_copy_and_ignores_rejected_lines():
    d = one(b'{"id_str": "1400000000000000000", "text": "first", "lang": "en"}\n'
            b'[{"id_str": "1400000000000000001", "text": "a"}, {"text": "no id"}]\n'
            b'{"id": 1400000000000000000, "text": "second"}\n'
            b'{"id": 1400000000000000001, "text": "b"}\n')
    assert [(r["id"], r["text"]) for r in d.rows("tweets")] == [
        (1400000000000000000, "first"), (1400000000000000001, "b")]
    assert d.stats["duplicates"] == 1 and d.stats["rejects"] == 1


def _snowflake(hours: float) -> int:
    """A snowflake id whose time is 2021-01-01 + hours (the low 22 bits are 1)."""
    t = 1609459200000 + int(hours * 3_600_000)
    return ((t - 1288834974657) << 22) | 1


def _ids(*ids: int) -> bytes:
    return b"".join(f'{{"id": {i}, "text": "t"}}\n'.encode() for i in ids)


def test_dedupe_window_and_late_tweets():
    a, b, far = _snowflake(0), _snowflake(40), _snowflake(100)
    d = one(_ids(a, b, a))              # within the window: dropped
    assert (d.stats["tweets"], d.stats["duplicates"], d.stats["dedupe_late"]) == (2, 1, 0)
    far2 = _snowflake(100.5)
    # one id far ahead is not trusted to move the window alone: a is still remembered
    d = one(_ids(a, far, a))
    assert (d.stats["tweets"], d.stats["duplicates"], d.stats["dedupe_late"]) == (2, 1, 0)
    # a second id near it confirms the jump: a's bucket is forgotten, a passes, counted late
    d = one(_ids(a, far, far2, a, far))
    assert (d.stats["tweets"], d.stats["duplicates"], d.stats["dedupe_late"]) == (4, 1, 1)
    assert d.tweets.column("id").to_pylist() == [a, far, far2, a]
    # pre-snowflake ids are never forgotten
    d = one(_ids(20, far, far2, 20))
    assert (d.stats["tweets"], d.stats["duplicates"], d.stats["dedupe_late"]) == (3, 1, 0)
    # the window is a parameter: 200 h keeps a
    d = one(_ids(a, far, far2, a), dedupe_window_hours=200)
    assert (d.stats["duplicates"], d.stats["dedupe_late"]) == (1, 0)


def test_dedupe_bucket_boundary_is_in_unix_time():
    # bucket = unix_ms // 12 h for the default 48 h window: 1 ms before a bucket boundary is
    # forgotten once a tweet 4 buckets past the boundary is seen, but not 1 ms earlier
    width = 12 * 3_600_000
    start = (1609459200000 // width) * width
    def snow(t):
        return ((t - 1288834974657) << 22) | 1
    old = snow(start - 1)                       # last ms of bucket k-1
    new = snow(start + 4 * width)               # first ms of bucket k+4: k-1 < (k+4) - 4
    d = one(_ids(old, new, new + 2, old))       # (a jump moves the window at its second id)
    assert (d.stats["dedupe_late"], d.stats["duplicates"]) == (1, 0)
    new = snow(start + 4 * width - 1)           # still bucket k+3: old is remembered
    d = one(_ids(old, new, new + 2, old))
    assert (d.stats["dedupe_late"], d.stats["duplicates"]) == (0, 1)


# --------------------------------------------------------------------------------------------
# accounting: every line lands somewhere

def _check_accounting(d: Decoded) -> None:
    rows, rejected = line_sets(d)
    s = d.stats
    assert not rows & rejected
    assert s["lines"] == s["blank"] + len(rows) + len(rejected), s
    assert s["rejects"] == d.rejects.num_rows == len(rejected)
    assert s["tweets"] == d.tweets.num_rows and s["compliance"] == d.compliance.num_rows


def test_every_corpus_line_is_accounted_for():
    files = corpus_files()
    dec = ReferenceDecoder(dedupe=False)
    d = run(dec, [(p.read_bytes(), rel(p), None) for p in files])
    _check_accounting(d)
    nonblank = {(rel(p), i + 1) for p in files
                for i, line in enumerate(p.read_bytes().split(b"\n"))
                if line.strip(b" \t\r")}
    rows, rejected = line_sets(d)
    assert rows | rejected == nonblank
    assert d.stats["bytes"] == sum(p.stat().st_size for p in files)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fuzz_input())
def test_reference_fuzz_accounting_and_chunking(case):
    data, chunks = case
    whole = one(data, dedupe=False)
    _check_accounting(whole)
    _same(decode(ref(dedupe=False), data, "input", chunks), whole, "fuzz chunks")
