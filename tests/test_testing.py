"""firehose.testing: the synthetic firehose must be deterministic, honour its rates, and be
valid, realistic input as docs/fields.md describes it (checked here with Python's json only)."""
from __future__ import annotations

import calendar
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest

from firehose import testing as T
from firehose.schema import COMPLIANCE_KINDS, REJECT_REASONS

N = 1500

USER_KEYS = {
    "id", "id_str", "name", "screen_name", "location", "url", "description", "protected", "verified",
    "followers_count", "friends_count", "listed_count", "favourites_count", "statuses_count",
    "created_at", "utc_offset", "time_zone", "geo_enabled", "lang", "contributors_enabled",
    "is_translator", "profile_background_color", "profile_background_image_url",
    "profile_background_image_url_https", "profile_background_tile", "profile_link_color",
    "profile_sidebar_border_color", "profile_sidebar_fill_color", "profile_text_color",
    "profile_use_background_image", "profile_image_url", "profile_image_url_https",
    "default_profile", "default_profile_image", "following", "follow_request_sent", "notifications",
}
STATUS_KEYS = {
    "created_at", "id", "id_str", "text", "source", "truncated", "in_reply_to_status_id",
    "in_reply_to_status_id_str", "in_reply_to_user_id", "in_reply_to_user_id_str",
    "in_reply_to_screen_name", "user", "geo", "coordinates", "place", "contributors",
    "is_quote_status", "quote_count", "reply_count", "retweet_count", "favorite_count", "entities",
    "favorited", "retweeted", "lang",
}
V11_TIME = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                      r"\d\d \d\d:\d\d:\d\d \+0000 \d{4}$")
ANCHOR = re.compile(r'^<a href="[^"]+" rel="nofollow">[^<]+</a>$')


# ---- helpers: the value rules of docs/fields.md ------------------------------------------------

def id_of(v):
    """docs: a JSON string of 1-19 digits or a JSON integer literal, <= 2^63-1."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        return int(v) if re.fullmatch(r"[0-9]{1,19}", v) and int(v) < 2 ** 63 else None
    if isinstance(v, int):
        return v if 0 <= v < 2 ** 63 else None
    return None


def pref(obj, a, b):
    x = id_of(obj.get(a))
    return x if x is not None else id_of(obj.get(b))


def gnip_id(v):
    m = re.search(r"([0-9]+)$", v) if isinstance(v, str) else None
    return id_of(m.group(1)) if m else None


def v11_ms(s):
    return calendar.timegm(time.strptime(s, "%a %b %d %H:%M:%S +0000 %Y")) * 1000


def iso_ms(s):
    base, frac = s[:19], s[20:23] if s[19:20] == "." else "000"
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * 1000 + int(frac)


def labeled(n=N, **kw):
    return list(T.generate_labeled(n, **kw))


def check_indices(text, entities, where):
    """Quirk 3: offsets count code points of the text as delivered (&amp; is five)."""
    for h in entities.get("hashtags", []):
        s, e = h["indices"]
        assert text[s:e] == "#" + h["text"], (where, text, h)
    for h in entities.get("symbols", []):
        s, e = h["indices"]
        assert text[s:e] == "$" + h["text"], (where, text, h)
    for m in entities.get("user_mentions", []):
        s, e = m["indices"]
        assert text[s:e].lower() == "@" + m["screen_name"].lower(), (where, text, m)
        assert m["id_str"] == str(m["id"])
    for u in entities.get("urls", []):
        s, e = u["indices"]
        assert text[s:e] == u["url"], (where, text, u)
        assert u["expanded_url"].startswith("http") and u["display_url"]
    for m in entities.get("media", []):
        s, e = m["indices"]
        assert text[s:e] == m["url"], (where, text, m)


def check_status(d, top=True):
    """One v1.1 status (or an embedded retweeted/quoted one) against docs/fields.md."""
    missing = STATUS_KEYS - d.keys()
    assert not missing, missing
    tid = pref(d, "id_str", "id")
    assert tid is not None and d["id"] == tid and d["id_str"] == str(tid)
    ms = T.snowflake_ms(tid)
    assert V11_TIME.match(d["created_at"]) and v11_ms(d["created_at"]) == ms - ms % 1000
    if top:
        assert isinstance(d["timestamp_ms"], str) and int(d["timestamp_ms"]) == ms
    else:
        assert "timestamp_ms" not in d
    assert ANCHOR.match(d["source"]), d["source"]
    u = d["user"]
    assert not USER_KEYS - u.keys(), USER_KEYS - u.keys()
    assert u["id_str"] == str(u["id"]) and V11_TIME.match(u["created_at"])
    assert v11_ms(u["created_at"]) < ms
    if u["id"] >= 2 ** 35:                              # snowflake user ids carry their creation time
        assert abs(T.snowflake_ms(u["id"]) - v11_ms(u["created_at"])) < 1000
    assert isinstance(d["lang"], str) and d["lang"]
    check_indices(d["text"], d["entities"], "entities")
    if "extended_entities" in d:
        check_indices(d["text"], d["extended_entities"], "extended_entities")
        assert d["entities"]["media"][0] == d["extended_entities"]["media"][0]
        assert {m["type"] for m in d["extended_entities"]["media"]} <= {"photo", "video", "animated_gif"}
    if d["truncated"]:
        ext = d["extended_tweet"]
        full = ext["full_text"]
        assert len(full) > 140 >= len(d["text"])
        assert re.search("\u2026 https://t\\.co/\\w{10}$", d["text"])
        head = d["text"][:d["text"].rindex("\u2026")]
        assert full.startswith(head)
        check_indices(full, ext["entities"], "extended_tweet.entities")
        if "extended_entities" in ext:
            check_indices(full, ext["extended_entities"], "extended_tweet.extended_entities")
        a, b = ext["display_text_range"]
        assert 0 <= a <= b <= len(full)
    else:
        assert "extended_tweet" not in d and len(d["text"]) <= 140
    if d["in_reply_to_status_id"] is not None:
        assert d["in_reply_to_status_id_str"] == str(d["in_reply_to_status_id"])
        assert d["in_reply_to_user_id_str"] == str(d["in_reply_to_user_id"])
        assert d["text"].startswith("@") or d["text"].startswith("RT @")
    if d["coordinates"] is not None:
        lon, lat = d["coordinates"]["coordinates"]
        assert d["coordinates"]["type"] == "Point" and d["geo"]["coordinates"] == [lat, lon]
        (x0, y0), _, (x1, y1), _ = d["place"]["bounding_box"]["coordinates"][0]
        assert x0 <= lon <= x1 and y0 <= lat <= y1
    if d["place"] is not None:
        p = d["place"]
        assert re.fullmatch(r"[0-9a-f]{16}", p["id"]) and re.fullmatch("[A-Z]{2}", p["country_code"])
        assert p["full_name"] and p["bounding_box"]["type"] == "Polygon"
    rs = d.get("retweeted_status")
    if rs is not None:
        check_status(rs, top=False)
        assert d["text"].startswith("RT @%s: " % rs["user"]["screen_name"])
        assert T.snowflake_ms(rs["id"]) < ms
        full = rs.get("extended_tweet", {}).get("full_text", rs["text"])
        body = d["text"][len("RT @%s: " % rs["user"]["screen_name"]):]
        assert full.startswith(body.rstrip("\u2026"))
        assert not d["truncated"]
    q = d.get("quoted_status")
    if q is not None:
        check_status(q, top=False)
        assert d["is_quote_status"] is True
        assert d["quoted_status_id"] == q["id"] and d["quoted_status_id_str"] == q["id_str"]
        assert "quoted_status" not in q
        assert T.snowflake_ms(q["id"]) < ms
    else:
        assert "quoted_status_id" not in d
    if "withheld_in_countries" in d:
        assert all(re.fullmatch("[A-Z]{2}", c) for c in d["withheld_in_countries"])


def classify(m):
    """The classification of docs/fields.md, reduced to what the generator emits:
    ("tweet", dialect, id) or ("compliance", kind, required id or True)."""
    if "data" in m:
        data = m["data"]
        if isinstance(data, dict) and len(data) == 1:
            (k, c), = data.items()
            kind = "status_withheld" if k == "withheld" else k
            if k in ("delete", "withheld", "drop", "undrop"):
                return "compliance", kind, id_of(c.get("tweet", {}).get("id"))
            uid = id_of(c.get("tweet", {}).get("author_id")) or id_of(c.get("user", {}).get("id"))
            return "compliance", kind, uid
        assert "text" in data
        return "tweet", "v2", id_of(data.get("id"))
    if "verb" in m:
        if m["verb"] in ("post", "share"):
            return "tweet", "activity", gnip_id(m.get("id"))
        if m["verb"] == "scrub_geo":
            return "compliance", "scrub_geo", gnip_id(m["actor"]["id"])
        return "compliance", m["verb"], gnip_id(m["object"].get("id"))
    for k in ("delete", "scrub_geo", "status_withheld", "user_withheld", "limit", "warning",
              "disconnect", "info", "warn", "error"):
        if k in m:
            c = m[k]
            if k == "delete":
                return "compliance", "delete", pref(c["status"], "id_str", "id")
            if k == "scrub_geo":
                return "compliance", k, pref(c, "user_id_str", "user_id")
            if k in ("status_withheld", "user_withheld"):
                return "compliance", k, pref(c, "id_str", "id")
            return "compliance", {"info": "system_info", "warn": "system_warn",
                                  "error": "system_error"}.get(k, k), True
    assert "text" in m or "full_text" in m, list(m)[:5]
    return "tweet", "v1.1", pref(m, "id_str", "id")


# ---- determinism ---------------------------------------------------------------------------

def test_same_seed_same_bytes_different_seed_different():
    a = T.generate_bytes(400, seed=11, malformed_rate=0.02)
    assert a == T.generate_bytes(400, seed=11, malformed_rate=0.02)
    assert a != T.generate_bytes(400, seed=12, malformed_rate=0.02)
    assert b"".join(T.generate(400, seed=11, malformed_rate=0.02)) == a
    assert a.count(b"\n") == 400 and a.endswith(b"\n")
    lines = a.splitlines(keepends=True)
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)


def test_mixed_is_deterministic():
    a = b"".join(T.generate_mixed(300, seed=5))
    assert a == b"".join(T.generate_mixed(300, seed=5))
    assert a == T.generate_bytes(300, seed=5, dialect="mixed")
    assert a != b"".join(T.generate_mixed(300, seed=6))


def test_deterministic_across_processes_and_hash_seeds():
    code = ("import hashlib,sys; from firehose.testing import generate_bytes as g; "
            "sys.stdout.write(hashlib.sha256(g(150, seed=3, malformed_rate=0.05)"
            "+g(150, seed=3, dialect='mixed', malformed_rate=0.05)).hexdigest())")
    here = hashlib.sha256(T.generate_bytes(150, seed=3, malformed_rate=0.05)
                          + T.generate_bytes(150, seed=3, dialect="mixed", malformed_rate=0.05)).hexdigest()
    for hs in ("1", "987"):
        env = dict(os.environ, PYTHONHASHSEED=hs)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout == here


def test_start_moves_the_clock():
    first = json.loads(next(T.generate(1, start="2021-06-01T12:00:00Z")))
    assert first["created_at"] == "Tue Jun 01 12:00:00 +0000 2021"
    import datetime as dt
    d = json.loads(next(T.generate(1, start=dt.datetime(2023, 1, 2, 3, 4, 5))))
    assert d["created_at"] == "Mon Jan 02 03:04:05 +0000 2023"
    assert json.loads(next(T.generate(1, start=1650000000000)))["timestamp_ms"].startswith("16500000000")


@pytest.mark.parametrize("kw", [dict(dup_rate=-0.1), dict(malformed_rate=1.5), dict(dialect="v3"),
                                dict(dup_rate=0.5, compliance_rate=0.5), dict(start="2009-01-01")])
def test_bad_arguments(kw, tmp_path):
    with pytest.raises(ValueError):
        T.generate(1, **kw)                       # checked at the call, not at the first next()
    with pytest.raises(ValueError):
        T.write_capture(tmp_path / "x.ndjson.gz", 1, **kw)
    assert not (tmp_path / "x.ndjson.gz").exists()


# ---- rates ----------------------------------------------------------------------------------

def test_rates_are_roughly_honoured():
    n = 5000
    rates = dict(dup_rate=0.05, malformed_rate=0.03, compliance_rate=0.06, keepalive_rate=0.01)
    c = Counter(lab.split(":")[0] for lab, _ in T.generate_labeled(n, seed=2, **rates))
    for key, rate in (("duplicate", 0.05), ("reject", 0.03), ("compliance", 0.06), ("blank", 0.01)):
        sd = (n * rate * (1 - rate)) ** 0.5
        assert abs(c[key] - n * rate) < 5 * sd + 2, (key, c[key])
    assert c["tweet"] == n - c["duplicate"] - c["reject"] - c["compliance"] - c["blank"]


def test_defaults_and_zero_rates():
    c = Counter(lab.split(":")[0] for lab, _ in labeled(2000, seed=4))
    assert c["reject"] == 0 and c["blank"] == 0
    assert 10 <= c["duplicate"] <= 80 and 20 <= c["compliance"] <= 110           # 2% and 3%
    c = Counter(lab for lab, _ in labeled(500, seed=4, dup_rate=0, compliance_rate=0))
    assert c == {"tweet": 500}


def test_malformed_kinds_all_occur_and_are_broken_as_labelled():
    lines = labeled(3000, seed=9, malformed_rate=0.05)
    rejects = [(lab[7:], line) for lab, line in lines if lab.startswith("reject:")]
    kinds = Counter(k for k, _ in rejects)
    assert set(kinds) == set(T.MALFORMED_KINDS) and set(kinds) <= set(REJECT_REASONS)
    escape = re.compile(rb'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')
    for kind, line in rejects:
        raw = line[:-1]
        if kind == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            continue
        text = raw.decode("utf-8")
        if kind == "invalid_escape":
            assert re.search(rb"\\", escape.sub(b"", raw)), raw[:200]
        elif kind == "lone_surrogate":                # Python's json lets these through
            paired = re.sub(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}", "", text)
            assert re.search(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}", paired), raw[:200]
            continue
        elif kind == "missing_id":
            msg = json.loads(text)
            assert classify(msg)[2] is None
            continue
        with pytest.raises(json.JSONDecodeError) as ei:
            json.loads(text)
        if kind == "truncated":
            assert "Expecting" in str(ei.value) or "Unterminated" in str(ei.value)
            assert ei.value.pos >= len(text) - 1 or "Unterminated" in str(ei.value)


# ---- validity against docs/fields.md --------------------------------------------------------

def test_every_line_is_a_valid_v11_message():
    lines = labeled(N, seed=1, compliance_rate=0.08, keepalive_rate=0.01)
    seen_kinds = set()
    for lab, line in lines:
        if lab == "blank":
            assert line == b"\r\n"
            continue
        assert line.isascii(), "v1.1 escapes every non-ASCII character"
        msg = json.loads(line)
        what, kind, oid = classify(msg)
        assert oid is not None
        if lab in ("tweet", "duplicate"):
            assert (what, kind) == ("tweet", "v1.1")
            check_status(msg)
        else:
            assert lab == "compliance:" + kind and kind in COMPLIANCE_KINDS
            seen_kinds.add(kind)
            body = next(iter(msg.values()))
            ts = body.get("timestamp_ms") or msg.get("timestamp_ms")
            assert isinstance(ts, str) and ts.isdigit()
            if kind == "delete":
                st = body["status"]
                assert st["id_str"] == str(st["id"]) and st["user_id_str"] == str(st["user_id"])
    assert {"delete", "limit"} <= seen_kinds


def test_v11_byte_style():
    data = T.generate_bytes(800, seed=3)
    assert re.search(rb"\\ud83[c-f]\\ud[c-f][0-9a-f]{2}", data), "emoji as lowercase surrogate pairs"
    assert not re.search(rb"\\u[0-9a-f]{0,3}[A-F]", data), "v1.1 hex digits are lowercase"
    assert b"\\u00e9" in data or b"\\u00f1" in data or b"\\u00e7" in data              # Latin diacritics
    assert re.search(rb"\\u30[0-9a-f]{2}", data) and re.search(rb"\\uac[0-9a-f]{2}|\\ub[0-9a-f]{3}", data)
    assert re.search(rb"\\u06[0-9a-f]{2}", data) and re.search(rb"\\u04[0-9a-f]{2}", data)      # ar, ru
    assert re.search(rb"\\u09[0-9a-f]{2}", data) or re.search(rb"\\u0e[0-9a-f]{2}", data)      # hi, th
    assert b"/" not in data.replace(b"\\/", b""), "every / is escaped"
    assert b"<" not in data and b">" not in data and b"\\u003ca href=" in data
    assert b"&amp;" in data and b"http:\\/\\/" in data


def test_realistic_mix_of_statuses():
    kinds = Counter()
    langs = Counter()
    media = Counter()
    sizes = []
    for lab, line in labeled(3000, seed=8):
        if lab != "tweet":
            continue
        d = json.loads(line)
        sizes.append(len(line))
        langs[d["lang"]] += 1
        kinds["retweet"] += "retweeted_status" in d
        kinds["quote"] += "quoted_status" in d and "retweeted_status" not in d
        kinds["reply"] += d["in_reply_to_status_id"] is not None
        kinds["extended"] += d["truncated"]
        kinds["geo"] += d["coordinates"] is not None
        kinds["place"] += d["place"] is not None
        kinds["withheld"] += "withheld_in_countries" in d
        kinds["hashtag"] += bool(d["entities"]["hashtags"])
        kinds["cashtag"] += bool(d["entities"]["symbols"])
        kinds["url"] += bool(d["entities"]["urls"])
        for m in d.get("extended_entities", d.get("extended_tweet", {}).get("extended_entities", {})).get("media", []):
            media[m["type"]] += 1
    n = len(sizes)
    assert 3000 <= sum(sizes) / n <= 4500, sum(sizes) / n
    assert 0.15 < kinds["retweet"] / n < 0.3 and 0.02 < kinds["quote"] / n < 0.1
    assert 0.1 < kinds["reply"] / n < 0.25 and 0.08 < kinds["extended"] / n < 0.35
    assert kinds["geo"] and kinds["place"] > kinds["geo"] and kinds["cashtag"] and kinds["url"]
    assert kinds["hashtag"] > 0.1 * n
    assert set(media) == {"photo", "video", "animated_gif"}
    assert {"en", "es", "ja", "ko", "zh", "ar", "ru", "hi", "fr", "de", "pt", "tr", "th"} <= set(langs)


def test_ids_unique_time_monotonic_and_snowflakes_agree():
    lines = labeled(2500, seed=6, dup_rate=0.04, malformed_rate=0.01)
    first_seen = {}
    last_ms = 0
    last_any = 0
    for i, (lab, line) in enumerate(lines):
        if lab == "tweet":
            d = json.loads(line)
            tid = d["id"]
            assert tid not in first_seen, "tweet ids are unique"
            first_seen[tid] = line
            ms = int(d["timestamp_ms"])
            assert ms == T.snowflake_ms(tid) and ms > last_ms, "time moves forward with every tweet"
            assert ms - last_ms <= 10 or last_ms == 0
            last_ms = ms
            last_any = max(last_any, ms)
        elif lab == "duplicate":
            d = json.loads(line)
            assert first_seen.get(d["id"]) == line, "a duplicate re-sends an earlier line byte for byte"
            assert 0 <= last_ms - int(d["timestamp_ms"]) < 5 * 60 * 1000, "recent"
        elif lab.startswith("compliance:"):
            ts = int(next(iter(json.loads(line).values()))["timestamp_ms"])
            assert ts >= last_any
            last_any = ts
    assert len(first_seen) > 2000


def test_deletes_refer_to_earlier_tweets():
    ids, users, hits, deletes = set(), {}, 0, 0
    for lab, line in labeled(2000, seed=7, compliance_rate=0.1):
        d = json.loads(line)
        if lab == "tweet":
            ids.add(d["id"])
            users[d["id"]] = d["user"]["id"]
        elif lab == "compliance:delete":
            deletes += 1
            st = d["delete"]["status"]
            assert T.snowflake_ms(st["id"]) <= int(d["delete"]["timestamp_ms"])
            if st["id"] in ids:
                hits += 1
                assert users[st["id"]] == st["user_id"]
    assert deletes > 100 and hits > deletes // 3


def test_fast_serialiser_matches_json_dumps_reference():
    g = T._Gen(21, None, 0.0, 0.0, 0.0, "v1.1", 0.0)
    for _ in g.lines(500):
        pass
    for _ in range(800):
        t = g._fresh_status()
        assert g._line_v11(t) == g._line_v11_ref(t)


# ---- other dialects ------------------------------------------------------------------------

def test_mixed_dialects_follow_the_contract():
    dialects = Counter()
    for lab, line in T.generate_labeled(1200, seed=13, dialect="mixed", compliance_rate=0.06,
                                        malformed_rate=0.01):
        if lab.startswith("reject:"):
            continue
        text = line.decode("utf-8")
        msg = json.loads(text)
        what, kind, oid = classify(msg)
        assert oid is not None, line[:300]
        if lab in ("tweet", "duplicate"):
            assert what == "tweet"
            dialects[kind] += 1
        else:
            assert lab == "compliance:" + kind and kind in COMPLIANCE_KINDS, (lab, kind)
            continue
        if kind == "v1.1":
            check_status(msg)
        elif kind == "v2":
            data, inc = msg["data"], msg["includes"]
            assert T.snowflake_ms(oid) // 1000 * 1000 == iso_ms(data["created_at"])
            users = {u["id"]: u for u in inc["users"]}
            assert data["author_id"] in users
            assert all(re.fullmatch("[0-9]+", r["id"]) and "tag" in r for r in msg["matching_rules"])
            ents = data.get("entities", {})
            for h in ents.get("hashtags", []):
                assert data["text"][h["start"]:h["end"]] == "#" + h["tag"]
            for m in ents.get("mentions", []):
                assert data["text"][m["start"]:m["end"]] == "@" + m["username"]
            for u in ents.get("urls", []):
                assert data["text"][u["start"]:u["end"]] == u["url"]
            tweets = {t["id"]: t for t in inc.get("tweets", [])}
            for ref in data.get("referenced_tweets", []):
                if ref["type"] != "replied_to":
                    assert ref["id"] in tweets
            media = {m["media_key"] for m in inc.get("media", [])}
            assert set(data.get("attachments", {}).get("media_keys", [])) <= media
            if "geo" in data:
                assert data["geo"]["place_id"] in {p["id"] for p in inc["places"]}
            assert not re.search(r"\\u[0-9A-F]{0,3}[a-f]", text), "v2 escapes are uppercase"
        else:
            assert msg["verb"] in ("post", "share")
            assert iso_ms(msg["postedTime"]) == T.snowflake_ms(oid) // 1000 * 1000
            assert gnip_id(msg["actor"]["id"]) is not None
            assert msg["gnip"]["matching_rules"]
            body = msg.get("long_object", {}).get("body", msg["body"])
            ents = msg.get("long_object", {}).get("twitter_entities", msg["twitter_entities"])
            check_indices(body, ents, "twitter_entities")
            if msg["verb"] == "share":
                assert msg["body"].startswith("RT @") and gnip_id(msg["object"]["id"]) is not None
    assert min(dialects.values()) > 100 and set(dialects) == {"v1.1", "v2", "activity"}


def test_v2_bytes_are_raw_utf8_with_uppercase_astral_pairs():
    data = T.generate_bytes(400, seed=2, dialect="v2")
    assert re.search(rb"\\uD83[C-F]\\uD[C-F][0-9A-F]{2}", data)
    assert "é".encode() in data or "ã".encode() in data
    assert not re.search(rb"\\u[0-9a-f]{0,3}[a-f]", data)


# ---- files and CLI --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cap.ndjson", "cap.ndjson.gz", "cap.ndjson.zst"])
def test_write_capture_round_trip(tmp_path, name):
    path = tmp_path / name
    expected = T.generate_bytes(300, seed=4, malformed_rate=0.01)
    total = T.write_capture(path, 300, seed=4, malformed_rate=0.01)
    assert total == len(expected)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    elif name.endswith(".zst"):
        import zstandard
        assert raw[:4] == b"\x28\xb5\x2f\xfd"
        raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
    assert raw == expected
    T.write_capture(tmp_path / ("again-" + name), 300, seed=4, malformed_rate=0.01)
    assert (tmp_path / ("again-" + name)).read_bytes() == path.read_bytes(), "reproducible files"


def test_write_capture_mixed_flag(tmp_path):
    T.write_capture(tmp_path / "m.ndjson", 200, seed=1, mixed=True)
    assert (tmp_path / "m.ndjson").read_bytes() == b"".join(T.generate_mixed(200, seed=1))


def test_cli_gen(tmp_path):
    from click.testing import CliRunner

    from firehose.cli import main

    runner = CliRunner()
    out = tmp_path / "c.ndjson.gz"
    r = runner.invoke(main, ["gen", "120", "-o", str(out), "--seed", "5", "--dup-rate", "0.05",
                             "--malformed-rate", "0.02"])
    assert r.exit_code == 0, r.output
    assert gzip.decompress(out.read_bytes()) == T.generate_bytes(120, seed=5, dup_rate=0.05,
                                                                 malformed_rate=0.02)
    assert "wrote 120 lines" in r.stderr

    r = runner.invoke(main, ["gen", "40", "--seed", "2", "-q"])
    assert r.exit_code == 0
    assert r.stdout_bytes == T.generate_bytes(40, seed=2)

    r = runner.invoke(main, ["gen", "60", "-o", "-", "--mixed", "-q"])
    assert r.exit_code == 0 and r.stdout_bytes == b"".join(T.generate_mixed(60, seed=0))

    r = runner.invoke(main, ["gen", "10", "--dup-rate", "0.95"])
    assert r.exit_code == 1 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1

    r = runner.invoke(main, ["gen", "10", "-o", str(tmp_path / "no" / "such" / "dir.gz")])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1


def test_python_m_cli_runs():
    out = subprocess.run([sys.executable, "-m", "firehose.cli", "gen", "3", "--seed", "1", "-q"],
                         capture_output=True, check=True)
    assert out.stdout == T.generate_bytes(3, seed=1)


def test_cli_demo_replays_the_sample_through_the_example_clients(tmp_path):
    """``make demo``: a sample capture is generated once, replayed through
    examples/clients.toml, and the summary shows every stage and the front company denied."""
    pytest.importorskip("firehose._core")
    from click.testing import CliRunner

    from firehose.cli import main

    example = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "clients.toml")
    args = ["demo", "--n", "400", "--dir", str(tmp_path / "demo"), "-c", example]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    sample = tmp_path / "demo" / "sample.ndjson.gz"
    assert gzip.decompress(sample.read_bytes()) == T.generate_bytes(
        400, dup_rate=0.02, malformed_rate=0.001, compliance_rate=0.02)
    for stage in ("decode", "compliance", "route", "entitle", "sink"):
        assert f"\n{stage} " in r.output
    assert "frontco" in r.output and (tmp_path / "demo" / "out" / "manifest.json").exists()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "using existing" in r.output


@pytest.mark.parametrize("dialect", ["v1.1", "mixed"])
def test_labels_agree_with_the_compiled_decoder(dialect, tmp_path):
    """The labels are a contract: the decoder must find exactly these tweets, duplicates,
    compliance kinds and reject reasons, line by line."""
    pytest.importorskip("firehose._core")
    import firehose

    labs = list(T.generate_labeled(2000, seed=17, dialect=dialect, dup_rate=0.03, malformed_rate=0.03,
                                   compliance_rate=0.05, keepalive_rate=0.01))
    path = tmp_path / "c.ndjson"
    path.write_bytes(b"".join(line for _, line in labs))
    res = firehose.decode_file(str(path))
    want = Counter(lab.split(":")[0] for lab, _ in labs)
    assert res.tweets.num_rows == want["tweet"] and res.stats["duplicates"] == want["duplicate"]
    assert res.stats["blank"] == want["blank"] and res.stats["lines"] == len(labs)
    assert Counter(res.compliance.column("kind").to_pylist()) == Counter(
        lab[11:] for lab, _ in labs if lab.startswith("compliance:"))
    got = dict(zip(res.rejects.column("line").to_pylist(), res.rejects.column("reason").to_pylist()))
    assert got == {i: lab[7:] for i, (lab, _) in enumerate(labs, 1) if lab.startswith("reject:")}
