"""The oracle: the decoder's job in plain Python (``json`` + dicts + sets).

It follows ``docs/fields.md`` rule by rule and is written to be read, not to be fast.  The tests
run the Cython core (``firehose.Decoder``) and this module on the same input and treat any
difference as a bug in one of them.

    >>> dec = ReferenceDecoder(dedupe=True)
    >>> out = dec.feed(b'{"id_str": "20", "text": "just setting up"}\\n', source="a.ndjson")
    >>> out.tweets.column("id").to_pylist()
    [20]

Framing beyond fields.md: one carry (the partial last line) is kept for the source fed last;
feeding another source first flushes it as that source's last line.  A source fed again later
continues its line numbers and offsets.  ``offset=`` names the source offset of the chunk's
first byte; if it is not where the previous feed of that source ended, the pending carry is
flushed as a (cut-off) line first.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

from . import schema
from .errors import ConfigError

__all__ = ["ReferenceDecoder", "DecodeResult"]


@dataclass
class DecodeResult:
    """The rows of one ``feed``/``finish`` call, one table per schema."""

    tweets: pa.Table
    compliance: pa.Table
    rejects: pa.Table


# --------------------------------------------------------------------------------------------
# JSON numbers: keep the literal, so an id is never read through a double and a value can be
# told to be an integer literal (``5``) rather than ``5.0`` or ``5e0``.

class _Num:
    __slots__ = ("raw", "is_int")

    def __init__(self, raw: str, is_int: bool):
        self.raw = raw
        self.is_int = is_int

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"_Num({self.raw!r})"


class _BadConstant(Exception):
    """NaN / Infinity / -Infinity: Python accepts them, RFC 8259 does not."""


def _parse_int(raw: str) -> _Num:
    return _Num(raw, True)


def _parse_float(raw: str) -> _Num:
    return _Num(raw, False)


def _parse_constant(name: str):
    raise _BadConstant(name)


def _loads(text: str) -> Any:
    return json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                      parse_constant=_parse_constant)


# --------------------------------------------------------------------------------------------
# Value rules (fields.md "Value rules used below")

INT64_MAX = 2**63 - 1
INT64_MIN = -2**63
_DIGITS = re.compile(r"[0-9]{1,19}")
_TRAILING_DIGITS = re.compile(r"[0-9]+\Z")
_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def _get(v: Any, *keys: str) -> Any:
    """``v.k1.k2...``; None when a level is not an object or a key is absent."""
    for k in keys:
        if not isinstance(v, dict):
            return None
        v = v.get(k)
    return v


def _id(v: Any) -> int | None:
    """id: a string of 1-19 ASCII digits or an unsigned integer literal, <= 2^63-1."""
    if isinstance(v, str):
        text = v
    elif isinstance(v, _Num) and v.is_int:
        text = v.raw          # an integer literal has no '.', 'e' or '+'; a '-' fails below
    else:
        return None
    if not _DIGITS.fullmatch(text):
        return None
    n = int(text)
    return n if n <= INT64_MAX else None


def _pref(a: Any, b: Any) -> int | None:
    x = _id(a)
    return x if x is not None else _id(b)


def _gnip_id(v: Any) -> int | None:
    """``tag:search.twitter.com,2005:600699303225466880`` -> 600699303225466880."""
    if not isinstance(v, str):
        return None
    m = _TRAILING_DIGITS.search(v)
    return _id(m.group()) if m else None


def _string(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: Any) -> int | None:
    if not (isinstance(v, _Num) and v.is_int):
        return None
    if len(v.raw.lstrip("-")) > 19:       # also keeps int() away from huge literals
        return None
    n = int(v.raw)
    return n if INT64_MIN <= n <= INT64_MAX else None


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _string_list(arr: Any, member: str) -> list[str]:
    if not isinstance(arr, list):
        return []
    return [e[member] for e in arr if isinstance(e, dict) and isinstance(e.get(member), str)]


def _countries(arr: Any) -> list[str]:
    if not isinstance(arr, list):
        return []
    return [s.translate(_ASCII_UPPER) for s in arr if isinstance(s, str)]


def _app_name(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    if v.startswith("<a") and ">" in v:
        after = v[v.index(">") + 1:]
        lt = after.find("<")
        return after if lt < 0 else after[:lt]
    return v


def _pair(v: Any) -> tuple[float, float] | None:
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, _Num) for x in v):
        return float(v[0].raw), float(v[1].raw)
    return None


def _lonlat(v: Any) -> dict | None:
    p = _pair(v)
    return None if p is None else {"lon": p[0], "lat": p[1]}


def _latlon(v: Any) -> dict | None:
    p = _pair(v)
    return None if p is None else {"lon": p[1], "lat": p[0]}


def _rules(arr: Any) -> list[dict]:
    """matching_rules[] -> {id: digits of pref(id_str, id) or the string id, tag}."""
    if not isinstance(arr, list):
        return []
    out = []
    for e in arr:
        if not isinstance(e, dict):
            continue
        i = _pref(e.get("id_str"), e.get("id"))
        rid = str(i) if i is not None else _string(e.get("id"))
        out.append({"id": rid, "tag": _string(e.get("tag"))})
    return out


# time (fields.md "Time grammar (exact)")
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}
_V11_TIME = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2}) ([0-9]{4})")
_ISO_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:(Z)|([+-])([0-9]{2}):?([0-9]{2}))")
_EPOCH_MS = re.compile(r"[0-9]{1,16}")
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def _utc_ms(y, mo, d, h, mi, s, ms, sign, zh, zm) -> int | None:
    if not (1970 <= y <= 9999 and 1 <= mo <= 12 and h <= 23 and mi <= 59 and s <= 59
            and zh <= 23 and zm <= 59):
        return None
    try:
        day = date(y, mo, d).toordinal() - _EPOCH_DAY
    except ValueError:                      # day 0 or past the month's end
        return None
    local = ((day * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms
    return local - sign * (zh * 60 + zm) * 60_000


def _time(v: Any) -> int | None:
    """A time value as UTC epoch milliseconds, or None."""
    if isinstance(v, _Num):
        n = _int(v)
        return n if n is not None and 0 <= n < 10**16 else None
    if not isinstance(v, str):
        return None
    if _EPOCH_MS.fullmatch(v):
        return int(v)
    m = _V11_TIME.fullmatch(v)
    if m:
        mon, dd, hh, mi, ss, sign, zh, zm, yy = m.groups()
        return _utc_ms(int(yy), _MONTHS[mon], int(dd), int(hh), int(mi), int(ss), 0,
                       1 if sign == "+" else -1, int(zh), int(zm))
    m = _ISO_TIME.fullmatch(v)
    if m:
        yy, mo, dd, hh, mi, ss, frac, z, sign, zh, zm = m.groups()
        ms = int((frac + "00")[:3]) if frac else 0
        if z:
            sign, zh, zm = "+", "0", "0"
        return _utc_ms(int(yy), int(mo), int(dd), int(hh), int(mi), int(ss), ms,
                       1 if sign == "+" else -1, int(zh), int(zm))
    return None


# --------------------------------------------------------------------------------------------
# Rejects

class _Reject(Exception):
    def __init__(self, reason: str, field: str | None, detail: str):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.detail = detail


_WS = " \t\n\r"
_HEX = frozenset("0123456789abcdefABCDEF")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# a number the input cut off before it was complete: "-", "1.", "1e", "1.5E+"
_NUMBER_CUT = re.compile(r"-|-?(?:0|[1-9][0-9]*)\.|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?[eE][+-]?")
_LITERAL_CUTS = frozenset(w[:i] for w in ("true", "false", "null") for i in range(1, len(w)))
_ESCAPE_CUT = re.compile(r"\\u[0-9a-fA-F]{0,4}")   # Python wants a character after the 4 digits
_ESCAPE_PREFIX = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")


def _outside_strings(s: str):
    """(index, character) of every character of ``s`` outside string literals."""
    in_str = False
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        else:
            yield i, c
        i += 1


def _depth_exceeded_at(s: str, max_depth: int) -> int:
    """Index of the first ``[``/``{`` (outside strings) that opens level max_depth + 1, or -1."""
    depth = 0
    for i, c in _outside_strings(s):
        if c in "[{":
            depth += 1
            if depth > max_depth:
                return i
        elif c in "]}":
            depth -= 1
    return -1


def _outside_strings_find(s: str, chars: str) -> int:
    """Index of the first character of ``chars`` outside string literals, or -1."""
    return next((i for i, c in _outside_strings(s) if c in chars), -1)


def _hex4(s: str, i: int, end: int) -> int | None:
    """The value of ``\\uXXXX`` at s[i] if it lies wholly before ``end``."""
    if i + 6 <= end and s[i] == "\\" and s[i + 1] == "u" and all(h in _HEX for h in s[i + 2:i + 6]):
        return int(s[i + 2:i + 6], 16)
    return None


def _lone_surrogate_at(s: str, end: int) -> int:
    """Index of the first ``\\uD800``-``\\uDFFF`` escape inside a string literal of s[:end] that
    is not a high escape directly followed by a low escape, or -1.  A high escape whose successor
    is cut off by ``end`` is undecided and not reported."""
    in_str = False
    i = 0
    while i < end:
        c = s[i]
        if not in_str:
            in_str = c == '"'
            i += 1
            continue
        if c == '"':
            in_str = False
            i += 1
            continue
        if c != "\\":
            i += 1
            continue
        u = _hex4(s, i, end)
        if u is None:
            i += 2                          # another escape; the parser judges it
            continue
        if 0xDC00 <= u <= 0xDFFF:
            return i
        if 0xD800 <= u <= 0xDBFF:
            j = i + 6
            low = _hex4(s, j, end)
            if low is not None and 0xDC00 <= low <= 0xDFFF:
                i = j + 6
                continue
            if j >= end or _ESCAPE_PREFIX.fullmatch(s, j, end):
                return -1                   # the next escape is cut off: undecided
            return i
        i += 6
    return -1


def _has_surrogate(v: Any, path: str) -> str | None:
    """JSON path of the first decoded string (key or value) holding a lone surrogate."""
    if isinstance(v, str):
        return path if any(0xD800 <= ord(ch) <= 0xDFFF for ch in v) else None
    if isinstance(v, list):
        for i, x in enumerate(v):
            p = _has_surrogate(x, f"{path}[{i}]")
            if p:
                return p
    elif isinstance(v, dict):
        for k, x in v.items():
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in k):
                return path
            p = _has_surrogate(x, _path(path, k))
            if p:
                return p
    return None


def _classify_json_error(text: str, e: json.JSONDecodeError) -> tuple[str, int]:
    """(reason, position) of a JSONDecodeError; a cut-off input is ``truncated`` at len(text)."""
    msg, p, n = e.msg, e.pos, len(text)
    if msg.startswith("Unterminated string"):
        return "truncated", n
    if msg.startswith("Invalid \\uXXXX escape"):
        if _ESCAPE_CUT.fullmatch(text, p - 1):      # "\u12" cut by the end of the input
            return "truncated", n
        return "invalid_escape", p - 1
    if msg.startswith("Invalid \\escape"):
        return "invalid_escape", p
    if p >= len(text.rstrip(_WS)):
        return "truncated", n
    if msg == "Expecting value" and (text[p:] in _LITERAL_CUTS or text[p:] == "-"):
        return "truncated", n
    if msg in ("Expecting ',' delimiter", "Extra data"):
        j = p
        while j > 0 and text[j - 1] in "0123456789+-.eE":
            j -= 1
        if _NUMBER.fullmatch(text, j, p) and _NUMBER_CUT.fullmatch(text, j):
            return "truncated", n
    return "invalid_json", p


# --------------------------------------------------------------------------------------------
# Messages and classification

V2_COMPLIANCE_KINDS = ("delete", "withheld", "drop", "undrop", "tweet_edit", "scrub_geo",
                       "user_delete", "user_undelete", "user_protect", "user_unprotect",
                       "user_suspend", "user_unsuspend", "user_withheld")
_V2_TWEET_KINDS = frozenset(("delete", "withheld", "drop", "undrop", "tweet_edit"))
V11_COMPLIANCE_KEYS = ("delete", "scrub_geo", "status_withheld", "user_withheld", "limit",
                       "warning", "disconnect", "info", "warn", "error")
_GNIP_TWEET_VERBS = frozenset(("delete", "status_withheld", "drop", "undrop", "tweet_edit"))
_GNIP_USER_VERBS = frozenset(("user_delete", "user_undelete", "user_protect", "user_unprotect",
                              "user_suspend", "user_unsuspend", "user_withheld"))
_SYSTEM_KINDS = {"info": "system_info", "warn": "system_warn", "error": "system_error"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TWEET_LISTS = ("hashtags", "mentions", "mention_ids", "cashtags", "urls", "media_types",
                "withheld_in_countries", "upstream_rules")


def _path(base: str, key: str) -> str:
    return f"{base}.{key}" if _IDENT.fullmatch(key) else f"{base}[{json.dumps(key)}]"


def _missing(path_a: str, path_b: str | None = None, what: str = "tweet") -> _Reject:
    where = path_a if path_b is None else f"{path_a} / {path_b}"
    return _Reject("missing_id", path_a, f"{what} has no usable id at {where}")


def _tweet_row(**cols) -> dict:
    row = {f.name: None for f in schema.TWEETS}
    for k in _TWEET_LISTS:
        row[k] = []
    row.update(cols)
    return row


def _compliance_row(kind: str, dialect: str, **cols) -> dict:
    row = {f.name: None for f in schema.COMPLIANCE}
    row["countries"] = []
    row.update(cols, kind=kind, dialect=dialect)
    return row


def _v11_text(t: Any) -> str | None:
    for v in (_get(t, "extended_tweet", "full_text"), _get(t, "full_text"), _get(t, "text")):
        if isinstance(v, str):
            return v
    return None


def _v11_entities(E: Any) -> dict:
    mentions = _get(E, "user_mentions")
    ids = []
    if isinstance(mentions, list):
        for m in mentions:
            if isinstance(m, dict):
                i = _pref(m.get("id_str"), m.get("id"))
                if i is not None:
                    ids.append(i)
    return {
        "hashtags": _string_list(_get(E, "hashtags"), "text"),
        "mentions": _string_list(mentions, "screen_name"),
        "mention_ids": ids,
        "cashtags": _string_list(_get(E, "symbols"), "text"),
        "urls": _urls(_get(E, "urls")),
    }


def _urls(arr: Any) -> list[str]:
    out = []
    if isinstance(arr, list):
        for u in arr:
            if isinstance(u, dict):
                v = u.get("expanded_url")
                if not isinstance(v, str):
                    v = u.get("url")
                if isinstance(v, str):
                    out.append(v)
    return out


def _v11_tweet(T: dict, path: str) -> dict:
    tid = _pref(T.get("id_str"), T.get("id"))
    if tid is None:
        raise _missing(f"{path}.id_str", f"{path}.id")
    U = T.get("user")
    R = T.get("retweeted_status")
    R = R if isinstance(R, dict) else None
    Q = T.get("quoted_status")
    if not isinstance(Q, dict):
        Q = _get(R, "quoted_status")
        Q = Q if isinstance(Q, dict) else None
    qid = _pref(T.get("quoted_status_id_str"), T.get("quoted_status_id"))
    if qid is None and Q is not None:
        qid = _pref(Q.get("id_str"), Q.get("id"))
    ET = T.get("extended_tweet")
    if isinstance(ET, dict):
        E = ET.get("entities")
        X = ET.get("extended_entities")
        if not isinstance(X, dict):
            X = ET.get("entities")
    else:
        E = T.get("entities")
        X = T.get("extended_entities")
        if not isinstance(X, dict):
            X = T.get("entities")
    coords = _lonlat(_get(T, "coordinates", "coordinates"))
    if coords is None:
        coords = _latlon(_get(T, "geo", "coordinates"))
    return _tweet_row(
        id=tid,
        created_at=_time(T.get("created_at")),
        text=_v11_text(T),
        lang=_string(T.get("lang")),
        source=_app_name(T.get("source")),
        author_id=_pref(_get(U, "id_str"), _get(U, "id")),
        author_screen_name=_string(_get(U, "screen_name")),
        author_name=_string(_get(U, "name")),
        author_description=_string(_get(U, "description")),
        author_location=_string(_get(U, "location")),
        author_followers_count=_int(_get(U, "followers_count")),
        author_verified=_bool(_get(U, "verified")),
        in_reply_to_status_id=_pref(T.get("in_reply_to_status_id_str"),
                                    T.get("in_reply_to_status_id")),
        in_reply_to_user_id=_pref(T.get("in_reply_to_user_id_str"), T.get("in_reply_to_user_id")),
        in_reply_to_screen_name=_string(T.get("in_reply_to_screen_name")),
        retweeted_status_id=None if R is None else _pref(R.get("id_str"), R.get("id")),
        retweeted_user_id=None if R is None else _pref(_get(R, "user", "id_str"),
                                                       _get(R, "user", "id")),
        retweeted_screen_name=None if R is None else _string(_get(R, "user", "screen_name")),
        retweeted_text=None if R is None else _v11_text(R),
        quoted_status_id=qid,
        quoted_user_id=None if Q is None else _pref(_get(Q, "user", "id_str"),
                                                    _get(Q, "user", "id")),
        quoted_text=None if Q is None else _v11_text(Q),
        media_types=_string_list(_get(X, "media"), "type"),
        coordinates=coords,
        place_id=_string(_get(T, "place", "id")),
        place_country_code=_string(_get(T, "place", "country_code")),
        withheld_in_countries=_countries(T.get("withheld_in_countries")),
        upstream_rules=_rules(T.get("matching_rules")),
        dialect="v1.1",
        **_v11_entities(E),
    )


def _lookup(arr: Any, key: str) -> dict:
    out: dict = {}
    if isinstance(arr, list):
        for e in arr:
            if isinstance(e, dict) and isinstance(e.get(key), str):
                out[e[key]] = e               # later entries win
    return out


class _Includes:
    def __init__(self, I: Any):
        self.users = _lookup(_get(I, "users"), "id")
        self.tweets = _lookup(_get(I, "tweets"), "id")
        self.media = _lookup(_get(I, "media"), "media_key")
        self.places = _lookup(_get(I, "places"), "id")


_NO_INCLUDES = _Includes(None)


def _v2_text(D: Any) -> str | None:
    t = _get(D, "note_tweet", "text")
    return t if isinstance(t, str) else _string(_get(D, "text"))


def _v2_ref(D: dict, typ: str, inc: _Includes) -> tuple[dict | None, dict | None]:
    refs = D.get("referenced_tweets")
    if isinstance(refs, list):
        for e in refs:
            if isinstance(e, dict) and e.get("type") == typ:
                rid = e.get("id")
                obj = inc.tweets.get(rid) if isinstance(rid, str) else None
                if obj is None and "text" in e:
                    obj = e
                return e, obj
    return None, None


def _user_by_id(inc: _Includes, uid: Any) -> dict | None:
    """includes.users[uid] (the user object), when uid is a string."""
    return inc.users.get(uid) if isinstance(uid, str) else None


def _v2_tweet(D: dict, inc: _Includes, rules: list, path: str) -> dict:
    tid = _id(D.get("id"))
    if tid is None:
        raise _missing(f"{path}.id")
    aid = D.get("author_id")
    U = inc.users.get(aid) if isinstance(aid, str) else None
    if U is None:
        U = D.get("author")
    NT = D.get("note_tweet")
    E = NT["entities"] if isinstance(NT, dict) and "entities" in NT else D.get("entities")
    mention_ids = []
    mentions = _get(E, "mentions")
    if isinstance(mentions, list):
        for m in mentions:
            i = _id(_get(m, "id"))
            if i is not None:
                mention_ids.append(i)
    media_types = []
    keys = _get(D, "attachments", "media_keys")
    if isinstance(keys, list):
        for k in keys:
            if isinstance(k, str):
                mtype = _get(inc.media.get(k), "type")
                if isinstance(mtype, str):
                    media_types.append(mtype)
    place_id = _string(_get(D, "geo", "place_id"))
    rp, _ = _v2_ref(D, "replied_to", inc)
    rt, rt_obj = _v2_ref(D, "retweeted", inc)
    qt, qt_obj = _v2_ref(D, "quoted", inc)
    return _tweet_row(
        id=tid,
        created_at=_time(D.get("created_at")),
        text=_v2_text(D),
        lang=_string(D.get("lang")),
        source=_app_name(D.get("source")),
        author_id=_id(aid),
        author_screen_name=_string(_get(U, "username")),
        author_name=_string(_get(U, "name")),
        author_description=_string(_get(U, "description")),
        author_location=_string(_get(U, "location")),
        author_followers_count=_int(_get(U, "public_metrics", "followers_count")),
        author_verified=_bool(_get(U, "verified")),
        in_reply_to_status_id=_id(_get(rp, "id")),
        in_reply_to_user_id=_id(D.get("in_reply_to_user_id")),
        in_reply_to_screen_name=_string(_get(_user_by_id(inc, D.get("in_reply_to_user_id")),
                                             "username")),
        retweeted_status_id=_id(_get(rt, "id")),
        retweeted_user_id=_id(_get(rt_obj, "author_id")),
        retweeted_screen_name=_string(_get(
            _user_by_id(inc, _get(rt_obj, "author_id")) or _get(rt_obj, "author"), "username")),
        retweeted_text=None if rt_obj is None else _v2_text(rt_obj),
        quoted_status_id=_id(_get(qt, "id")),
        quoted_user_id=_id(_get(qt_obj, "author_id")),
        quoted_text=None if qt_obj is None else _v2_text(qt_obj),
        hashtags=_string_list(_get(E, "hashtags"), "tag"),
        mentions=_string_list(mentions, "username"),
        mention_ids=mention_ids,
        cashtags=_string_list(_get(E, "cashtags"), "tag"),
        urls=_urls(_get(E, "urls")),
        media_types=media_types,
        coordinates=_lonlat(_get(D, "geo", "coordinates", "coordinates")),
        place_id=place_id,
        place_country_code=None if place_id is None else _string(
            _get(inc.places.get(place_id), "country_code")),
        withheld_in_countries=_countries(_get(D, "withheld", "country_codes")),
        upstream_rules=rules,
        dialect="v2",
    )


def _gnip_body(o: Any) -> str | None:
    b = _get(o, "long_object", "body")
    return b if isinstance(b, str) else _string(_get(o, "body"))


def _activity_tweet(A: dict, verb: str, path: str) -> dict:
    tid = _gnip_id(A.get("id"))
    if tid is None:
        raise _missing(f"{path}.id")
    actor = A.get("actor")
    LO = A.get("long_object")
    E = LO.get("twitter_entities") if isinstance(LO, dict) else A.get("twitter_entities")
    X = _get(LO, "twitter_extended_entities")
    if not isinstance(X, dict):
        X = A.get("twitter_extended_entities")
        if not isinstance(X, dict):
            X = E
    reply = None
    link = _get(A, "inReplyTo", "link")
    if isinstance(link, str) and "/" in link:
        reply = _id(link[link.rindex("/") + 1:])
    O = A.get("object") if verb == "share" else None
    O = O if isinstance(O, dict) else None
    Q = A.get("twitter_quoted_status")
    if not isinstance(Q, dict):
        Q = _get(O, "twitter_quoted_status")
        Q = Q if isinstance(Q, dict) else None
    place_id = None
    plink = _get(A, "location", "link")
    if isinstance(plink, str) and "/" in plink and plink.endswith(".json"):
        place_id = plink[plink.rindex("/") + 1:-len(".json")]
    return _tweet_row(
        id=tid,
        created_at=_time(A.get("postedTime")),
        text=_gnip_body(A),
        lang=_string(A.get("twitter_lang")),
        source=_string(_get(A, "generator", "displayName")),
        author_id=_gnip_id(_get(actor, "id")),
        author_screen_name=_string(_get(actor, "preferredUsername")),
        author_name=_string(_get(actor, "displayName")),
        author_description=_string(_get(actor, "summary")),
        author_location=_string(_get(actor, "location", "displayName")),
        author_followers_count=_int(_get(actor, "followersCount")),
        author_verified=_bool(_get(actor, "verified")),
        in_reply_to_status_id=reply,
        retweeted_status_id=None if O is None else _gnip_id(O.get("id")),
        retweeted_user_id=None if O is None else _gnip_id(_get(O, "actor", "id")),
        retweeted_screen_name=None if O is None else _string(_get(O, "actor", "preferredUsername")),
        retweeted_text=None if O is None else _gnip_body(O),
        quoted_status_id=None if Q is None else _gnip_id(Q.get("id")),
        quoted_user_id=None if Q is None else _gnip_id(_get(Q, "actor", "id")),
        quoted_text=None if Q is None else _gnip_body(Q),
        media_types=_string_list(_get(X, "media"), "type"),
        coordinates=_latlon(_get(A, "geo", "coordinates")),
        place_id=place_id,
        place_country_code=_string(_get(A, "location", "twitter_country_code")),
        upstream_rules=_rules(_get(A, "gnip", "matching_rules")),
        dialect="activity",
        **_v11_entities(E),
    )


def _activity_compliance(A: dict, verb: Any, path: str) -> dict:
    if not isinstance(verb, str) or not (verb in _GNIP_TWEET_VERBS or verb in _GNIP_USER_VERBS
                                         or verb == "scrub_geo"):
        return _compliance_row("other", "activity", detail=_string(verb))
    event_at = _time(A.get("timestampMs"))
    if event_at is None:
        event_at = _time(A.get("postedTime"))
    countries = _get(A, "object", "withheld_in_countries")
    if not isinstance(countries, list):
        countries = A.get("withheld_in_countries")
    if verb == "scrub_geo":
        uid = _gnip_id(_get(A, "actor", "id"))
        if uid is None:
            raise _missing(f"{path}.actor.id", what="scrub_geo")
        return _compliance_row("scrub_geo", "activity", user_id=uid, event_at=event_at,
                               up_to_tweet_id=_gnip_id(_get(A, "target", "up_to_id")))
    if verb in _GNIP_USER_VERBS:
        uid = _gnip_id(_get(A, "object", "id"))
        if uid is None:
            raise _missing(f"{path}.object.id", what=verb)
        return _compliance_row(verb, "activity", user_id=uid, countries=_countries(countries),
                               event_at=event_at)
    tid = _gnip_id(_get(A, "object", "id"))
    if tid is None:
        raise _missing(f"{path}.object.id", what=verb)
    uid = _gnip_id(_get(A, "actor", "id"))
    if uid is None:
        uid = _gnip_id(_get(A, "object", "user_id"))
    return _compliance_row(verb, "activity", tweet_id=tid, user_id=uid,
                           countries=_countries(countries), event_at=event_at)


def _v11_compliance(key: str, V: Any, path: str) -> dict:
    p = f"{path}.{key}"
    ts = _time(_get(V, "timestamp_ms"))
    if key == "delete":
        S, M = _get(V, "status"), _get(V, "direct_message")
        if not isinstance(S, dict) and isinstance(M, dict):
            return _compliance_row("dm_delete", "v1.1", event_at=ts,
                                   user_id=_pref(M.get("user_id_str"), M.get("user_id")))
        tid = _pref(_get(S, "id_str"), _get(S, "id"))
        if tid is None:
            raise _missing(f"{p}.status.id_str", f"{p}.status.id", "delete")
        return _compliance_row("delete", "v1.1", tweet_id=tid, event_at=ts,
                               user_id=_pref(_get(S, "user_id_str"), _get(S, "user_id")))
    if key == "scrub_geo":
        uid = _pref(_get(V, "user_id_str"), _get(V, "user_id"))
        if uid is None:
            raise _missing(f"{p}.user_id_str", f"{p}.user_id", "scrub_geo")
        up_to = None
        for k in ("up_to_status_id_str", "up_to_status_id_string", "up_to_status_id"):
            up_to = _id(_get(V, k))
            if up_to is not None:
                break
        return _compliance_row("scrub_geo", "v1.1", user_id=uid, up_to_tweet_id=up_to,
                               event_at=ts)
    if key == "status_withheld":
        tid = _pref(_get(V, "id_str"), _get(V, "id"))
        if tid is None:
            raise _missing(f"{p}.id_str", f"{p}.id", "status_withheld")
        return _compliance_row("status_withheld", "v1.1", tweet_id=tid, event_at=ts,
                               user_id=_pref(_get(V, "user_id_str"), _get(V, "user_id")),
                               countries=_countries(_get(V, "withheld_in_countries")))
    if key == "user_withheld":
        uid = _pref(_get(V, "id_str"), _get(V, "id"))
        if uid is None:
            raise _missing(f"{p}.id_str", f"{p}.id", "user_withheld")
        return _compliance_row("user_withheld", "v1.1", user_id=uid, event_at=ts,
                               countries=_countries(_get(V, "withheld_in_countries")))
    if key == "limit":
        return _compliance_row("limit", "v1.1", count=_int(_get(V, "track")), event_at=ts)
    if key == "warning":
        return _compliance_row("warning", "v1.1", code=_string(_get(V, "code")),
                               detail=_string(_get(V, "message")), event_at=ts)
    if key == "disconnect":
        code = _get(V, "code")
        code = code.raw if isinstance(code, _Num) else _string(code)
        return _compliance_row("disconnect", "v1.1", code=code,
                               detail=_string(_get(V, "reason")), event_at=ts)
    # Gnip system messages: info / warn / error
    return _compliance_row(_SYSTEM_KINDS[key], "v1.1", detail=_string(_get(V, "message")),
                           event_at=_time(_get(V, "sent")))


def _v2_compliance(K: str, C: Any, path: str) -> dict:
    p = f"{path}.data.{K}"
    kind = "status_withheld" if K == "withheld" else K
    if K == "tweet_edit":
        tid, tpath = _id(_get(C, "initial_tweet_id")), f"{p}.initial_tweet_id"
    else:
        tid, tpath = _id(_get(C, "tweet", "id")), f"{p}.tweet.id"
    uid = _id(_get(C, "tweet", "author_id"))
    if uid is None:
        uid = _id(_get(C, "user", "id"))
    if K in _V2_TWEET_KINDS:
        if tid is None:
            raise _missing(tpath, what=kind)
    elif uid is None:
        raise _missing(f"{p}.tweet.author_id", f"{p}.user.id", kind)
    return _compliance_row(kind, "v2", tweet_id=tid, user_id=uid,
                           up_to_tweet_id=_id(_get(C, "up_to_tweet_id")),
                           countries=_countries(_get(C, "withheld_in_countries")),
                           event_at=_time(_get(C, "event_at")))


def _classify(msg: dict, path: str, tweets: list, compliance: list) -> None:
    """Append the rows of one message (fields.md "Classifying a message")."""
    if "data" in msg:
        data = msg["data"]
        if isinstance(data, dict) and len(data) == 1 and next(iter(data)) in V2_COMPLIANCE_KINDS:
            K = next(iter(data))
            compliance.append(_v2_compliance(K, data[K], path))
            return
        inc = _Includes(msg.get("includes"))
        rules = _rules(msg.get("matching_rules"))
        n = 0
        if isinstance(data, dict):
            elems = [(data, f"{path}.data")]
        elif isinstance(data, list):
            elems = [(d, f"{path}.data[{i}]") for i, d in enumerate(data)]
        else:
            elems = []
        for d, p in elems:
            if isinstance(d, dict) and "text" in d:
                tweets.append(_v2_tweet(d, inc, rules, p))
                n += 1
        errors = msg.get("errors")
        if isinstance(errors, list):
            for X in errors:
                rid = _id(_get(X, "resource_id"))
                param = _get(X, "parameter")
                if isinstance(param, str) and param.endswith("username"):
                    rid = None                # resource_id is a username, e.g. "2245"
                rtype = _get(X, "resource_type")
                compliance.append(_compliance_row(
                    "api_error", "v2",
                    tweet_id=rid if rtype == "tweet" else None,
                    user_id=rid if rtype == "user" else None,
                    code=_string(_get(X, "title")), detail=_string(_get(X, "detail"))))
                n += 1
        if n == 0:
            compliance.append(_compliance_row("other", "v2", detail="data"))
        return
    if "verb" in msg:
        verb = msg["verb"]
        if verb in ("post", "share"):
            tweets.append(_activity_tweet(msg, verb, path))
        else:
            compliance.append(_activity_compliance(msg, verb, path))
        return
    for key in V11_COMPLIANCE_KEYS:
        if key in msg:
            compliance.append(_v11_compliance(key, msg[key], path))
            return
    if "action" in msg and "id" in msg and "reason" in msg:
        oid = _id(msg["id"])
        if oid is None:
            raise _missing(f"{path}.id", what="batch compliance record")
        compliance.append(_compliance_row(
            "batch_compliance", "v2", object_id=oid, code=_string(msg.get("action")),
            detail=_string(msg.get("reason")), event_at=_time(msg.get("created_at"))))
        return
    if "text" in msg or "full_text" in msg:
        if "user" in msg or "author_id" not in msg:
            tweets.append(_v11_tweet(msg, path))
        else:
            tweets.append(_v2_tweet(msg, _NO_INCLUDES, _rules(msg.get("matching_rules")), path))
        return
    compliance.append(_compliance_row("other", "v1.1", detail=next(iter(msg), None)))


def _messages(value: Any) -> list[tuple[dict, str]]:
    """Split a line's value into (message, JSON path) (fields.md "Pages")."""
    def objects(items, base):
        out = []
        for k, e in items:
            p = f"{base}[{k}]" if isinstance(k, int) else _path(base, k)
            if not isinstance(e, dict):
                raise _Reject("not_an_object", p, f"page element at {p} is "
                              f"{_kind_of(e)}, not an object")
            out.append((e, p))
        return out

    if isinstance(value, list):
        return objects(enumerate(value), "$")
    if not isinstance(value, dict):
        raise _Reject("not_an_object", "$", f"the line is {_kind_of(value)}, not an object")
    st = value.get("statuses")
    if isinstance(st, list) and st:
        return objects(enumerate(st), "$.statuses")
    m = value.get("id")
    if len(value) == 1 and isinstance(m, dict):
        items = [(k, v) for k, v in m.items() if v is not None]
        if items:
            return objects(items, "$.id")
    return [(value, "$")]


def _kind_of(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, _Num):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


# --------------------------------------------------------------------------------------------
# The decoder

def _plain(s: pa.Schema) -> pa.Schema:
    """The schema with dictionary columns as plain strings (cast back after building)."""
    return pa.schema([pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type,
                               nullable=f.nullable) for f in s])


_PLAIN = {id(s): _plain(s) for s in (schema.TWEETS, schema.COMPLIANCE, schema.REJECTS)}


_EMPTY = {id(s): s.empty_table() for s in (schema.TWEETS, schema.COMPLIANCE, schema.REJECTS)}


def _table(rows: list[dict], s: pa.Schema) -> pa.Table:
    if not rows:
        return _EMPTY[id(s)]
    return pa.Table.from_pylist(rows, schema=_PLAIN[id(s)]).cast(s)


class _Source:
    __slots__ = ("line", "pos")

    def __init__(self) -> None:
        self.line = 0       # line numbers handed out so far
        self.pos = 0        # source offset just past the last byte fed


SNOWFLAKE_MIN = 2**35
SNOWFLAKE_EPOCH_MS = 1288834974657


class ReferenceDecoder:
    """The decoder's job in plain Python; the same API as ``firehose.Decoder`` for the tests."""

    def __init__(self, dedupe: bool = True, dedupe_window_hours: float = 48,
                 max_line_bytes: int = 16 * 2**20, max_depth: int = 64):
        if not (isinstance(max_line_bytes, int) and max_line_bytes >= 1):
            raise ConfigError(f"max_line_bytes: must be a positive integer, got {max_line_bytes!r}")
        if not (isinstance(max_depth, int) and 1 <= max_depth <= 1000):
            raise ConfigError(f"max_depth: the reference supports 1..1000, got {max_depth!r}")
        window_ms = int(dedupe_window_hours * 3_600_000)
        if window_ms < 4:
            raise ConfigError(f"dedupe_window_hours: must be positive, got {dedupe_window_hours!r}")
        self.dedupe = bool(dedupe)
        self.dedupe_window_hours = dedupe_window_hours
        self.max_line_bytes = max_line_bytes
        self.max_depth = max_depth
        self._bucket_ms = window_ms // 4
        self._old_ids: set[int] = set()          # pre-snowflake ids, never pruned
        self._buckets: dict[int, set[int]] = {}  # bucket -> ids
        self._bmax: int | None = None
        self._cands: list[int] = []              # unconfirmed jumps ahead of _bmax, oldest first
        self._sources: dict[str, _Source] = {}
        self._cur: str | None = None             # the source the carry belongs to
        self._carry = bytearray()
        self._carry_start = 0
        self.stats = {"lines": 0, "blank": 0, "tweets": 0, "duplicates": 0, "dedupe_late": 0,
                      "compliance": 0, "rejects": 0, "bytes": 0}
        self._reset_out()

    # -- public API ---------------------------------------------------------------------------
    def feed(self, chunk: bytes, source: str = "", offset: int | None = None) -> DecodeResult:
        """Decode the complete lines of ``chunk`` (a piece of ``source`` cut anywhere)."""
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"chunk must be bytes, not {type(chunk).__name__}")
        if not isinstance(source, str):
            raise TypeError(f"source must be str, not {type(source).__name__}")
        if self._cur is not None and source != self._cur:
            self._flush()
        st = self._sources.setdefault(source, _Source())
        if offset is not None:
            if not (isinstance(offset, int) and offset >= 0):
                raise ValueError(f"offset must be a non-negative int or None, got {offset!r}")
            if offset != st.pos:
                if self._cur == source:
                    self._flush()
                st.pos = offset
        if self._cur != source:
            self._cur = source
            self._carry_start = st.pos
        chunk = bytes(chunk)
        self.stats["bytes"] += len(chunk)
        buf = self._carry
        search = len(buf)
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", search)
            if nl < 0:
                break
            self._line(source, st, bytes(buf[start:nl]), True, self._carry_start + start)
            start = search = nl + 1
        del buf[:start]
        self._carry_start += start
        st.pos = self._carry_start + len(buf)
        return self._take()

    def finish(self) -> DecodeResult:
        """Flush the last line of the current source (it needs no newline)."""
        self._flush()
        return self._take()

    # -- framing ------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._cur is not None and self._carry:
            st = self._sources[self._cur]
            self._line(self._cur, st, bytes(self._carry), False, self._carry_start)
            self._carry_start += len(self._carry)
            self._carry.clear()
        self._cur = None

    def _reset_out(self) -> None:
        self._tweets: list[dict] = []
        self._compliance: list[dict] = []
        self._rejects: list[dict] = []

    def _take(self) -> DecodeResult:
        out = DecodeResult(_table(self._tweets, schema.TWEETS),
                           _table(self._compliance, schema.COMPLIANCE),
                           _table(self._rejects, schema.REJECTS))
        self._reset_out()
        return out

    # -- one line -----------------------------------------------------------------------------
    def _line(self, source: str, st: _Source, raw: bytes, terminated: bool, offset: int) -> None:
        st.line += 1
        lineno = st.line
        self.stats["lines"] += 1
        body = raw[:-1] if terminated and raw.endswith(b"\r") else raw
        tweets: list[dict] = []
        compliance: list[dict] = []
        try:
            if len(raw) > self.max_line_bytes:
                raise _Reject("line_too_long", None, f"the line is {len(raw)} bytes, longer than "
                              f"max_line_bytes={self.max_line_bytes}")
            if not body.strip(b" \t\r"):
                self.stats["blank"] += 1
                return
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _Reject("invalid_utf8", None, f"invalid UTF-8 at byte {e.start} of the "
                              f"line ({e.reason})") from None
            value = self._parse(text)
            for msg, path in _messages(value):
                _classify(msg, path, tweets, compliance)
            if not tweets and not compliance:       # an empty top-level array
                compliance.append(_compliance_row("other", "v1.1", detail=None))
        except _Reject as r:
            self.stats["rejects"] += 1
            self._rejects.append({"source": source, "line": lineno, "byte_offset": offset,
                                  "reason": r.reason, "field": r.field, "detail": r.detail,
                                  "raw": raw})
            return
        prov = {"source_file": source, "line": lineno, "byte_offset": offset}
        for row in tweets:
            if self.dedupe and not self._first_sight(row["id"]):
                self.stats["duplicates"] += 1
                continue
            row.update(prov)
            self._tweets.append(row)
            self.stats["tweets"] += 1
        for row in compliance:
            row.update(prov)
            self._compliance.append(row)
            self.stats["compliance"] += 1

    def _parse(self, s: str) -> Any:
        """json.loads with fields.md's reject reasons (JSON-level: first error, left to right)."""
        q = _depth_exceeded_at(s, self.max_depth)
        text = s if q < 0 else s[:q + 1]     # never hand Python more nesting than max_depth + 1
        try:
            value = _loads(text)
        except _BadConstant as e:
            reason, pos = "invalid_json", _outside_strings_find(text, "NI")
            what = f"{e.args[0]} is not JSON"
            if pos > 0 and text[pos - 1] == "-":
                pos -= 1
        except json.JSONDecodeError as e:
            reason, pos = _classify_json_error(text, e)
            what = e.msg
        else:
            assert q < 0, "a prefix with an open bracket cannot parse"
            L = _lone_surrogate_at(s, len(s))
            field = _has_surrogate(value, "$")
            if L >= 0 or field is not None:
                assert L >= 0, "decoded a lone surrogate the escape scan did not see"
                raise _Reject("lone_surrogate", field,
                              f"lone surrogate escape {s[L:L + 6]} at character {L}")
            return value
        if q >= 0 and reason == "truncated":  # only the cut after the deep bracket was met
            reason, pos = "too_deep", q
        L = _lone_surrogate_at(s, pos)
        if 0 <= L < pos:
            raise _Reject("lone_surrogate", None,
                          f"lone surrogate escape {s[L:L + 6]} at character {L}")
        if reason == "truncated":
            raise _Reject("truncated", None, f"the line ends inside a value ({what})")
        if reason == "too_deep":
            raise _Reject("too_deep", None, f"arrays/objects nest deeper than max_depth="
                          f"{self.max_depth} at character {q}")
        raise _Reject(reason, None, f"{what.removesuffix(' at')} at character {pos}")

    # -- dedupe -------------------------------------------------------------------------------
    def _first_sight(self, tid: int) -> bool:
        """True if the tweet is to be emitted: first sight, or too late to know.

        The window is counted from the newest bucket (``_bmax``), and an id more than one bucket
        beyond it is a jump that one id alone cannot make: a corrupt or forged far-future id
        would otherwise make the dedupe forget everything. Such an id is remembered in its own
        bucket, a "candidate", and the window moves only when a second, distinct id lands within
        a window (four buckets) of a candidate (to the newer of the two), so sparse streams
        still confirm each next id. At most two candidates are held; a third unconfirmed jump
        forgets the oldest one's ids. The first id of a fresh dedupe is a jump too, so an odd
        first id cannot anchor the window either."""
        if tid < SNOWFLAKE_MIN:
            if tid in self._old_ids:
                return False
            self._old_ids.add(tid)
            return True
        b = ((tid >> 22) + SNOWFLAKE_EPOCH_MS) // self._bucket_ms
        if self._bmax is not None and b < self._bmax - 4:
            self.stats["dedupe_late"] += 1
            return True
        ids = self._buckets.setdefault(b, set())
        if tid in ids:
            return False
        ids.add(tid)
        if self._bmax is not None and b <= self._bmax + 1:
            if b > self._bmax:
                self._advance(b)
            return True
        near = [c for c in self._cands if abs(c - b) <= 4]
        if near:
            self._advance(max([b] + near))          # (which drops the near candidates)
        else:
            if len(self._cands) == 2:
                del self._buckets[self._cands.pop(0)]
            self._cands.append(b)
        return True

    def _advance(self, b: int) -> None:
        self._bmax = b
        for old in [k for k in self._buckets if k < b - 4]:
            del self._buckets[old]
        self._cands = [c for c in self._cands if c > b + 1]
