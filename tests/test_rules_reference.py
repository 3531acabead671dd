"""Golden tests of the rule language (docs/rules.md) against the oracle, ``_reference_rules``.

Tweets are small v1.1 statuses written here as JSON and decoded by ``firehose.Decoder``, so
the rows are the ones the matcher really sees.  ``GOLDEN`` (one rule, a few tweets, the rows it
must match) is shared with ``test_rules_differential.py``, which runs the fast matcher on the
same cases.  The last part checks facts read off real corpus files.
"""
from __future__ import annotations

import json
import math
import unicodedata
from functools import lru_cache
from typing import NamedTuple

import pyarrow as pa
import pytest
import xxhash

import firehose
from firehose import _reference_rules as ref
from firehose.rules import Rule, RuleError
from firehose.rules.tokens import TABLE_SIZE, tables

try:
    from corpus import corpus_file
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import corpus_file


# --------------------------------------------------------------------------------------------
# building tweets

def st(text: str | None, *, id: int | None = None, lang: str | None = "en",
       source: str | None = None, screen_name: str | None = "someone", user_id: int = 1,
       name: str | None = None, bio: str | None = None, location: str | None = None,
       followers: int | None = None, verified: bool | None = None,
       reply_to: tuple | None = None, retweet: dict | None = None, quote: str | None = None,
       hashtags=(), mentions=(), cashtags=(), urls=(), media=(), coords=None, geo=None,
       place: tuple | None = None) -> dict:
    """A v1.1 status.  ``reply_to`` is (status id, user id, screen name); ``retweet`` a dict
    with ``id``, ``user_id``, ``screen_name``, ``text``; ``quote`` the quoted tweet's text;
    ``mentions`` (screen name, id) pairs; ``coords`` (lon, lat); ``geo`` (lat, lon);
    ``place`` (id, country code)."""
    user = {"id_str": str(user_id), "screen_name": screen_name, "name": name,
            "description": bio, "location": location, "followers_count": followers,
            "verified": verified}
    t: dict = {"text": text, "lang": lang, "user": user,
               "entities": {"hashtags": [{"text": h} for h in hashtags],
                            "user_mentions": [{"screen_name": n, "id_str": str(i)}
                                              for n, i in mentions],
                            "symbols": [{"text": c} for c in cashtags],
                            "urls": [{"url": "https://t.co/x", "expanded_url": u} for u in urls]}}
    if id is not None:
        t["id_str"] = str(id)
    if source is not None:
        t["source"] = f'<a href="https://example.com/app" rel="nofollow">{source}</a>'
    if media:
        t["extended_entities"] = {"media": [{"type": m} for m in media]}
    if reply_to is not None:
        sid, uid, sname = reply_to
        t.update(in_reply_to_status_id_str=str(sid), in_reply_to_user_id_str=str(uid),
                 in_reply_to_screen_name=sname)
    if retweet is not None:
        t["retweeted_status"] = {"id_str": str(retweet.get("id", 777)),
                                 "text": retweet.get("text", "original"),
                                 "user": {"id_str": str(retweet.get("user_id", 888)),
                                          "screen_name": retweet.get("screen_name", "orig")}}
    if quote is not None:
        t["quoted_status_id_str"] = "999"
        t["quoted_status"] = {"id_str": "999", "text": quote,
                              "user": {"id_str": "5", "screen_name": "quoted"}}
        t["is_quote_status"] = True
    if coords is not None:
        t["coordinates"] = {"type": "Point", "coordinates": list(coords)}
    if geo is not None:
        t["geo"] = {"type": "Point", "coordinates": list(geo)}
    if place is not None:
        t["place"] = {"id": place[0], "country_code": place[1]}
    return t


def decode_statuses(statuses) -> pa.Table:
    """Decode v1.1 statuses written as JSON lines (ids 10000, 10001, ... unless given)."""
    lines = []
    for i, s in enumerate(statuses):
        s = dict(s)
        s.setdefault("id_str", str(10_000 + i))
        lines.append(json.dumps(s, ensure_ascii=True).encode())
    dec = firehose.Decoder(dedupe=False)
    data = b"\n".join(lines) + b"\n"
    out = firehose.DecodeResult.concat([dec.feed(data, source="t"), dec.finish()])
    assert out.rejects.num_rows == 0, out.rejects.to_pylist()
    assert out.tweets.num_rows == len(lines)
    return out.tweets


def sampled(tweet_id: int, n: int) -> bool:
    """docs/rules.md ``sample:N``, written out independently of the oracle."""
    return xxhash.xxh3_64_intdigest(tweet_id.to_bytes(8, "little")) % 100 < n


# --------------------------------------------------------------------------------------------
# the golden cases

class Golden(NamedTuple):
    name: str
    rule: Rule
    tweets: tuple
    hits: tuple          # row indices the rule must match

    def table(self) -> pa.Table:
        return _table(self.name)


GOLDEN: list[Golden] = []


def g(name: str, value: str, tweets, hits, *, fold: bool = False) -> None:
    assert name not in {c.name for c in GOLDEN}, name
    GOLDEN.append(Golden(name, Rule(name, value, tag=f"tag {name}", fold=fold),
                         tuple(tweets), tuple(hits)))


@lru_cache(maxsize=None)
def _table(name: str) -> pa.Table:
    case = next(c for c in GOLDEN if c.name == name)
    return decode_statuses(case.tweets)


# keywords are tokens, case-insensitive
g("case", "Apple", [st("I love APPLE pie"), st("apple"), st("pineapple"), st("apples"),
                    st("APPLE.")], [0, 1, 4])
g("token-not-substring", "cat", [st("category"), st("cat's toy"), st("a cat"), st("concat")],
  [1, 2])
_DONT = [st("I don't know"), st("DON T"), st("don-t"), st("dont"), st("t don")]
g("punct-dont", "don't", _DONT, [0, 1, 2])
g("punct-dont-plain", "dont", _DONT, [3])
g("hyphen", "e-mail", [st("send e-mail"), st("e mail"), st("email"), st("mail e")], [0, 1])
g("dotted", "t.co", [st("https://t.co/abc"), st("t co"), st("tco")], [0, 1])
# diacritics kept unless folded
_CUMPLE = [st("Feliz cumpleaños!"), st("feliz cumpleanos"), st("CUMPLEAÑOS"), st("cumple")]
g("diacritics-kept", "cumpleaños", _CUMPLE, [0, 2])
g("diacritics-plain", "cumpleanos", _CUMPLE, [1])
g("fold-plain", "fold:cumpleanos", _CUMPLE, [0, 1, 2])
g("fold-accented", "fold:cumpleaños", _CUMPLE, [0, 1, 2])
g("fold-rule", "cumpleanos", _CUMPLE, [0, 1, 2], fold=True)
g("phrase-diacritics", '"feliz cumpleaños"', _CUMPLE, [0])
g("phrase-fold", 'fold:"feliz cumpleanos"', _CUMPLE, [0, 1])
g("phrase-fold-rule", '"feliz cumpleanos"', _CUMPLE, [0, 1], fold=True)
# lower-casing is per code point: İ stays İ, and there is no final-sigma rule
_ISTANBUL = [st("İSTANBUL"), st("istanbul"), st("Istanbul")]
g("dotted-capital-i", "İstanbul", _ISTANBUL, [0])
g("plain-i", "istanbul", _ISTANBUL, [1, 2])
g("sigma", "ΟΔΟΣ", [st("οδοσ"), st("ΟΔΟΣ"), st("Οδος")], [0, 1])
# hashtags are entities; a keyword matches the hashtag's text as a token
_TAGS = [st("#2016", hashtags=["2016"]), st("#2016election", hashtags=["2016election"]),
         st("in 2016"), st("#ThrowbackThursday"),
         st("tbt", hashtags=["throwbackthursday"])]
g("hashtag-exact", "#2016", _TAGS, [0])
g("hashtag-keyword", "2016", _TAGS, [0, 2])
g("hashtag-case", "#ThrowbackThursday", _TAGS, [4])
g("hashtag-needs-entity", "#2016election", _TAGS, [1])
# emoji are tokens of one code point; variation selectors and skin tones separate
_EMOJI = [st("I love 🍕!!"), st("🍕🍕"), st("pizza"), st("pizza🍕time"), st("pizzas")]
g("emoji", "🍕", _EMOJI, [0, 1, 3])
g("emoji-splits-words", "pizza", _EMOJI, [2, 3])
g("emoji-phrase", "pizza🍕time", _EMOJI, [3])
g("emoji-vs16", "❤️", [st("❤"), st("I ❤️ NY"), st("♥"), st("❤\ufe0e")], [0, 1, 3])
g("emoji-skin-tone", "👍🏽", [st("👍"), st("👍🏿 ok"), st("ok")], [0, 1])
# CJK: one character is the unigram, more are bigrams at consecutive positions
_TOKYO = [st("東京タワーに行った"), st("I love 東京!"), st("京東"), st("東 京"), st("東京"),
          st("東京 タワー"), st("東京・タワー"), st("東京tower")]
g("cjk-word", "東京", _TOKYO, [0, 1, 4, 5, 6, 7])
g("cjk-unigram", "東", _TOKYO, [0, 1, 2, 3, 4, 5, 6, 7])
g("cjk-inner", "タワー", _TOKYO, [0, 5, 6])
g("cjk-across-words", "京タ", _TOKYO, [0])
g("cjk-long", "東京タワー", _TOKYO, [0])
g("cjk-mixed", "東京tower", _TOKYO + [st("東京タワー tower")], [7])
g("cjk-mixed-and", "東京 tower", _TOKYO + [st("東京タワー tower")], [7, 8])
g("cjk-mixed-phrase", '"東京 tower"', _TOKYO + [st("東京タワー tower")], [7])
# a space inside a CJK phrase takes no position: "東京 タワー" also matches 東京タワー
g("cjk-phrase", '"東京 タワー"', _TOKYO, [0, 5, 6])
g("hangul", "서울", [st("서울시 날씨"), st("서 울"), st("in 서울")], [0, 2])
# phrases
_NEWYEAR = [st("Happy New Year!"), st("happy, new-year"), st("happy year new"),
            st("new year happy"), st("HAPPY  NEW\nYEAR")]
g("phrase", '"happy new year"', _NEWYEAR, [0, 1, 4])
g("phrase-vs-and", "happy new year", _NEWYEAR, [0, 1, 2, 3, 4])
g("phrase-one-word", '"happy"', _NEWYEAR, [0, 1, 2, 3, 4])
# proximity: span <= N in the rule's order, <= N - 2 in reverse
_PROX = [st("happy new year"), st("happy big new year"), st("year happy"), st("year new happy"),
         st("happy a b year"), st("happy a b c year"), st("happy year")]
g("prox-1", '"happy year"~1', _PROX, [6])
g("prox-2", '"happy year"~2', _PROX, [0, 6])
g("prox-3", '"happy year"~3', _PROX, [0, 1, 2, 4, 6])
g("prox-4", '"happy year"~4', _PROX, [0, 1, 2, 3, 4, 5, 6])
g("prox-repeat", '"go go"~2', [st("go team"), st("go go"), st("go team go"),
                               st("go a b go")], [1, 2])
_RGB = [st("red x green y blue"), st("blue green red"), st("blue x green red"),
        st("red green x x x blue"), st("green red x green blue"), st("red green")]
g("prox-three", '"red green blue"~4', _RGB, [0, 1, 4])
g("prox-three-tight", '"red green blue"~3', _RGB, [4])
g("prox-three-wide", '"red green blue"~5', _RGB, [0, 1, 2, 3, 4])
g("prox-fold", 'fold:"feliz cumpleanos"~2', [st("cumpleaños feliz"), st("feliz gran cumpleaños"),
                                             st("cumpleanos x feliz")], [1])
# a CJK unigram and the bigram starting at it are two tokens at one position: each can stand
# for one of the phrase's tokens (span 0, in no order: N - 2 >= 0)
_SAME_POS = [st("東京"), st("東 東京"), st("京東"), st("東京東")]
g("prox-same-position", '"東 東京"~2', _SAME_POS, [0, 1, 3])
g("prox-same-position-tight", '"東 東京"~1', _SAME_POS, [1])
g("prox-cjk", '"東京 大阪"~4', [st("東京から大阪"), st("東京からの大阪"), st("大阪東京")], [0, 2])
g("prox-cjk-tight", '"東京 大阪"~3', [st("東京から大阪"), st("東京からの大阪"), st("大阪東京")],
  [])
g("prox-cjk-wide", '"東京 大阪"~5', [st("東京から大阪"), st("東京からの大阪"), st("大阪東京")],
  [0, 1, 2])
# keywords also match the quoted tweet's text; a phrase never spans the two
_QUOTE = [st("look at this", quote="best pizza ever"), st("no pizza here"),
          st("I love new", quote="york is great"), st("new york"),
          st("x", quote="New York"), st("happy", quote="year"), st("don", quote="t")]
g("quoted-keyword", "pizza", _QUOTE, [0, 1])
g("quoted-phrase", '"new york"', _QUOTE, [3, 4])
g("quoted-keyword-phrase", "new-york", _QUOTE, [3, 4])
g("quoted-and", "new york", _QUOTE, [2, 3, 4])
g("quoted-proximity", '"happy year"~5', _QUOTE, [])
g("quoted-multi-token", "don't", _QUOTE, [])
g("quoted-contains", "contains:pizza", _QUOTE, [0, 1])
g("quoted-prefix", "piz*", _QUOTE, [0, 1])
# prefixes
_TECH = [st("Technology"), st("tech"), st("biotech"), st("te-ch"), st("x", quote="technical"),
         st("Cafés"), st("cafes"), st("CAFÉ")]
g("prefix", "tech*", _TECH, [0, 1, 4])
g("prefix-accent", "café*", _TECH, [5, 7])
g("prefix-fold", "fold:cafe*", _TECH, [5, 6, 7])
g("prefix-fold-accent", "fold:café*", _TECH, [5, 6, 7])
g("prefix-fold-rule", "cafe*", _TECH, [5, 6, 7], fold=True)
# @mentions, $cashtags
_MENTIONS = [st("hi", mentions=[("twitterdev", 2244994945)]), st("@TwitterDev no entity"),
             st("hi", mentions=[("TwitterDevs", 5)]), st("$TWTR", cashtags=["twtr"]),
             st("$TWTR"), st("x", cashtags=["TWTRX"])]
g("mention-name", "@TwitterDev", _MENTIONS, [0])
g("mention-id", "@2244994945", _MENTIONS, [0])
g("mention-id-other", "@5", _MENTIONS, [2])
g("cashtag", "$TWTR", _MENTIONS, [3])
# users
_USERS = [st("a"), st("a", screen_name="Other", user_id=2), st("a", screen_name=None, user_id=3),
          st("a", reply_to=(50, 2244994945, "TwitterDev")),
          st("a", reply_to=(51, 7, "someone_else")),
          st("RT @TwitterDev: a", retweet={"user_id": 2244994945, "screen_name": "TwitterDev"}),
          st("RT @orig: a", retweet={})]
g("from-name", "from:SomeOne", _USERS, [0, 3, 4, 5, 6])
g("from-name-other", "from:other", _USERS, [1])
g("from-id", "from:3", _USERS, [2])
g("to-name", "to:twitterdev", _USERS, [3])
g("to-id", "to:2244994945", _USERS, [3])
g("to-id-other", "to:7", _USERS, [4])
g("retweets-of-name", "retweets_of:TWITTERDEV", _USERS, [5])
g("retweets-of-id", "retweets_of:2244994945", _USERS, [5])
g("retweets-of-default", "retweets_of:888", _USERS, [6])
# urls and contains
_URLS = [st("x", urls=["https://www.example.com/news/1"]), st("x", urls=["https://example.com/newsroom"]),
         st("example.com/news"), st("x", urls=["https://a.b/", "https://EXAMPLE.com/News"]),
         st("x")]
g("url", 'url:"example.com/news"', _URLS, [0, 3])
g("url-bare", "url:example.com/news", _URLS, [0, 3])
g("url-one-token", "url:newsroom", _URLS, [1])
g("url-contains", 'url_contains:"example.com/ne"', _URLS, [0, 1, 3])
g("url-contains-case", "url_contains:EXAMPLE.COM/NEWS", _URLS, [0, 1, 3])
g("keyword-not-url", "newsroom", _URLS, [])
_CONTAINS = [st("Example"), st("AMPLE"), st("am pl"), st("x", quote="sample"), st("PIZZA!!"),
             st("pizza !"), st("café"), st("cafe")]
g("contains", "contains:ampl", _CONTAINS, [0, 1, 3])
g("contains-punct", 'contains:"pizza!"', _CONTAINS, [4])
g("contains-space", 'contains:"am pl"', _CONTAINS, [2])
g("contains-not-folded", "contains:cafe", _CONTAINS, [7], fold=True)
g("contains-accent", "contains:CAFÉ", _CONTAINS, [6])
# bio
_BIO = [st("a", bio="Senior Software Engineer at X", name="John Smith",
           location="New York, NY"),
        st("a", bio="engineer, software", name="Johnny", location="York"),
        st("software engineer"),
        st("a", bio="Ingeniería", name="JOHN", location="new-york")]
g("bio", 'bio:"software engineer"', _BIO, [0])
g("bio-word", "bio:software", _BIO, [0, 1])
g("bio-not-folded", "bio:ingenieria", _BIO, [], fold=True)
g("bio-accent", "bio:ingeniería", _BIO, [3])
g("bio-star-is-not-prefix", "bio:engin*", _BIO, [])
g("bio-name", "bio_name:john", _BIO, [0, 3])
g("bio-location", 'bio_location:"new york"', _BIO, [0, 3])
# lang, source, place, is:, has:
_LANG = [st("a", lang="en"), st("a", lang="es"), st("a", lang=None), st("a", lang="EN"),
         st("b", lang="en")]
g("lang", "a lang:en", _LANG, [0, 3])
g("lang-negated-null", "a -lang:en", _LANG, [1, 2])
g("lang-or", "a (lang:es OR lang:en)", _LANG, [0, 1, 3])
_SOURCE = [st("a", source="Twitter for iPhone"), st("a", source="Twitter for iPad"), st("a"),
           st("a", source="twitter FOR iphone")]
g("source", 'source:"Twitter for iPhone"', _SOURCE, [0, 3])
g("source-negated", 'a -source:"twitter for iphone"', _SOURCE, [1, 2])
_KINDS = [st("a"), st("a", media=["photo"]), st("a", media=["video"]),
          st("a", media=["animated_gif"]), st("a", urls=["https://x.y/"]),
          st("a", mentions=[("m", 9)]), st("a", hashtags=["h"]), st("a", cashtags=["c"]),
          st("a", coords=(1.5, 2.5)), st("a", place=("p", "FR")), st("a", geo=(2.5, 1.5)),
          st("RT @orig: a", retweet={}), st("a", reply_to=(5, 6, "u")), st("a", quote="q"),
          st("a", verified=True), st("a", verified=False)]
g("has-links", "a has:links", _KINDS, [4])
g("has-media", "a has:media", _KINDS, [1, 2, 3])
g("has-images", "a has:images", _KINDS, [1])
g("has-videos", "a has:videos", _KINDS, [2, 3])
g("has-mentions", "a has:mentions", _KINDS, [5])
g("has-hashtags", "a has:hashtags", _KINDS, [6])
g("has-symbols", "a has:symbols", _KINDS, [7])
g("has-geo", "a has:geo", _KINDS, [8, 9, 10])
g("is-retweet", "a is:retweet", _KINDS, [11])
g("is-reply", "a is:reply", _KINDS, [12])
g("is-quote", "a is:quote", _KINDS, [13])
g("is-verified", "a is:verified", _KINDS, [14])
g("not-verified-null", "a -is:verified", _KINDS, [i for i in range(len(_KINDS)) if i != 14])
g("place-country", "a place_country:fr", _KINDS, [9])
g("not-has-media", "a -has:media -has:links", _KINDS,
  [0] + list(range(5, len(_KINDS))))
# geo
_GEO = [st("a", coords=(-74.0, 40.7)), st("a", coords=(-74.1, 40.7)), st("a", coords=(-73.9, 40.8)),
        st("a", coords=(-74.2, 40.7)), st("a", place=("p", "US")), st("a"),
        st("a", geo=(40.7, -74.0)),
        st("a", coords=(-73.9855, 40.758)), st("a", coords=(-73.9855, 40.7665)),
        st("a", coords=(-73.9855, 40.768)), st("a", geo=(40.758, -73.9855))]
g("bounding-box", "bounding_box:[-74.1 40.6 -73.9 40.8]", _GEO, [0, 1, 2, 6, 7, 8, 9, 10])
g("point-radius-km", "point_radius:[-73.9855 40.758 1km]", _GEO, [7, 8, 10])
g("point-radius-mi", "point_radius:[-73.9855 40.758 1mi]", _GEO, [7, 8, 9, 10])
g("point-radius-negated", "a -point_radius:[-73.9855 40.758 1km]", _GEO,
  [0, 1, 2, 3, 4, 5, 6, 9])
# followers
_FOLLOWERS = [st("a", followers=100), st("a", followers=200), st("a", followers=99),
              st("a", followers=201), st("a"), st("a", followers=1000),
              st("a", followers=10**12), st("a", followers=0)]
g("followers-range", "a followers_count:100..200", _FOLLOWERS, [0, 1])
g("followers-open", "a followers_count:1000", _FOLLOWERS, [5, 6])
g("followers-zero", "a followers_count:0..0", _FOLLOWERS, [7])
g("followers-negated-null", "a -followers_count:100", _FOLLOWERS, [2, 4, 7])
# null text: keywords look for nothing there, negations hold
_NULLS = [st(None, hashtags=["x"]), st(None, hashtags=["x"], quote="word"), st("word")]
g("null-text", "word", _NULLS, [1, 2])
g("null-text-negated", "#x -word", _NULLS, [0])
g("null-text-contains", "contains:wor", _NULLS, [1, 2])
# AND binds tighter than OR; - negates one term or a group
_BOOL = [st("a"), st("b"), st("b c"), st("c"), st("a c"), st("a b"), st("x"), st("a d"),
         st("a b c"), st("a c b")]
g("or-and", "a OR b c", _BOOL, [0, 2, 4, 5, 7, 8, 9])
g("group-and", "(a OR b) c", _BOOL, [2, 4, 8, 9])
g("not", "a -b", _BOOL, [0, 4, 7])
g("not-group", "a -(b OR c)", _BOOL, [0, 7])
g("not-phrase", 'a -"b c"', _BOOL, [0, 4, 5, 7, 9])
g("or-not", "a OR b -c", _BOOL, [0, 1, 4, 5, 7, 8, 9])
g("or-three", "x OR d OR c", _BOOL, [2, 3, 4, 6, 7, 8, 9])
g("lowercase-or", "a or", [st("a"), st("a or b"), st("or")], [1])
g("nested", "(a (b OR d)) OR (c -a)", _BOOL, [2, 3, 5, 7, 8, 9])
# sample: by id; a positive sample: limits the whole rule, across OR
_SAMPLE_IDS = list(range(1, 121))
_SAMPLE = [st("go" if i % 3 else "stop", id=i) for i in _SAMPLE_IDS]
g("sample", "go sample:30", _SAMPLE,
  [k for k, i in enumerate(_SAMPLE_IDS) if i % 3 and sampled(i, 30)])
g("sample-100", "go sample:100", _SAMPLE, [k for k, i in enumerate(_SAMPLE_IDS) if i % 3])
g("sample-or", "(go sample:30) OR stop", _SAMPLE,
  [k for k, i in enumerate(_SAMPLE_IDS) if sampled(i, 30)])
g("sample-two", "go sample:50 sample:20", _SAMPLE,
  [k for k, i in enumerate(_SAMPLE_IDS) if i % 3 and sampled(i, 20)])
g("sample-negated", "go -sample:30", _SAMPLE,
  [k for k, i in enumerate(_SAMPLE_IDS) if i % 3 and not sampled(i, 30)])
g("sample-double-negated", "go -(-sample:30 stop)", _SAMPLE,
  [k for k, i in enumerate(_SAMPLE_IDS) if i % 3])


@pytest.mark.parametrize("case", GOLDEN, ids=[c.name for c in GOLDEN])
def test_golden(case: Golden):
    got = ref.match([case.rule], case.table())
    want = [(i, case.rule.id) for i in case.hits]
    texts = case.table().column("text").to_pylist()
    assert got == want, (f"{case.rule.value!r}: matched {[texts[i] for i, _ in got]}, "
                         f"want {[texts[i] for i in case.hits]}")


def test_golden_rules_together():
    # every golden rule on every golden table: each table's own rule gives its own hits
    rules = [c.rule for c in GOLDEN]
    for case in GOLDEN[::7]:
        pairs = ref.match(rules, case.table())
        assert [i for i, rid in pairs if rid == case.rule.id] == list(case.hits), case.name
        order = {r.id: k for k, r in enumerate(rules)}
        assert pairs == sorted(pairs, key=lambda p: (p[0], order[p[1]]))


# --------------------------------------------------------------------------------------------
# the decoded rows are what the cases assume

def test_rows_are_built_as_intended():
    t = _table("has-links").to_pylist()
    assert t[1]["media_types"] == ["photo"] and t[9]["place_country_code"] == "FR"
    assert t[10]["coordinates"] == {"lon": 1.5, "lat": 2.5}           # geo is [lat, lon]
    assert t[11]["retweeted_status_id"] == 777 and t[13]["quoted_text"] == "q"
    q = _table("quoted-keyword").to_pylist()
    assert q[0]["text"] == "look at this" and q[0]["quoted_text"] == "best pizza ever"
    s = _table("source").to_pylist()
    assert s[0]["source"] == "Twitter for iPhone" and s[2]["source"] is None
    assert _table("emoji").column("text").to_pylist()[0] == "I love 🍕!!"


# --------------------------------------------------------------------------------------------
# sample:

def test_sample_rate_and_determinism():
    ids = [1_300_000_000_000_000_000 + 7919 * k for k in range(10_000)]
    tweets = decode_statuses([st("go", id=i) for i in ids])
    rules = [Rule("s10", "go sample:10"), Rule("s20", "go sample:20"),
             Rule("s100", "go sample:100"), Rule("n10", "go -sample:10")]
    pairs = ref.match(rules, tweets)
    by_rule = {r.id: {ids[i] for i, rid in pairs if rid == r.id} for r in rules}
    assert by_rule["s10"] == {i for i in ids if sampled(i, 10)}
    assert 850 <= len(by_rule["s10"]) <= 1150
    assert 1750 <= len(by_rule["s20"]) <= 2250
    assert by_rule["s10"] < by_rule["s20"]                # the same hash: samples nest
    assert by_rule["s100"] == set(ids)
    assert by_rule["n10"] == set(ids) - by_rule["s10"]
    # deterministic: the same ids in another order, in another table, sample alike
    again = decode_statuses([st("go", id=i) for i in reversed(ids[:500])])
    got = {again.column("id")[i].as_py() for i, _ in ref.match(rules[:1], again)}
    assert got == by_rule["s10"] & set(ids[:500])


def test_sample_boundary():
    i9 = next(i for i in range(1, 10_000) if xxhash.xxh3_64_intdigest(
        i.to_bytes(8, "little")) % 100 == 9)
    t = decode_statuses([st("go", id=i9)])
    assert ref.match([Rule("a", "go sample:10"), Rule("b", "go sample:9")], t) == [(0, "a")]


# --------------------------------------------------------------------------------------------
# match() and annotate()

def test_match_order_and_annotate():
    rules = [Rule("z", "b", tag="bee"), Rule("y", "a"), Rule("x", "a OR b", tag="either")]
    t = decode_statuses([st("a"), st("c"), st("a b"), st("b")])
    assert ref.match(rules, t) == [(0, "y"), (0, "x"), (2, "z"), (2, "y"), (2, "x"),
                                   (3, "z"), (3, "x")]
    out = ref.annotate(rules, t)
    assert out.schema.field("matching_rules").type == pa.list_(
        pa.struct([pa.field("id", pa.string()), pa.field("tag", pa.string())]))
    assert out.column_names == t.column_names + ["matching_rules"]
    assert out.column("matching_rules").to_pylist() == [
        [{"id": "y", "tag": None}, {"id": "x", "tag": "either"}],
        [],
        [{"id": "z", "tag": "bee"}, {"id": "y", "tag": None}, {"id": "x", "tag": "either"}],
        [{"id": "z", "tag": "bee"}, {"id": "x", "tag": "either"}]]
    assert out.column("matching_rules").null_count == 0
    assert out.select(t.column_names).equals(t)
    again = ref.annotate(rules[:1], out)                  # an existing column is replaced
    assert again.column_names == out.column_names
    assert again.column("matching_rules").to_pylist()[0] == []


def test_no_rules_and_no_rows():
    t = decode_statuses([st("a")])
    assert ref.match([], t) == []
    assert ref.annotate([], t).column("matching_rules").to_pylist() == [[]]
    empty = t.slice(0, 0)
    assert ref.match([Rule("1", "a")], empty) == []
    assert ref.annotate([Rule("1", "a")], empty).num_rows == 0


def test_invalid_rules_raise():
    t = decode_statuses([st("a")])
    with pytest.raises(RuleError, match="rule bad"):
        ref.match([Rule("ok", "a"), Rule("bad", "lang:en")], t)
    with pytest.raises(RuleError, match="duplicate"):
        ref.match([Rule("1", "a"), Rule("1", "b")], t)


def test_plain_table_needs_only_the_columns_used():
    t = pa.table({"id": [1, 2], "text": ["Don't panic", None]})
    assert ref.match([Rule("r", "don't OR #x"), Rule("s", "-lang:en panic")], t) == [
        (0, "r"), (0, "s")]


# --------------------------------------------------------------------------------------------
# the oracle's own helpers against the contract's tables

def test_lower_and_fold_agree_with_the_token_tables():
    _, lower, folded = tables()
    bad = [cp for cp in range(TABLE_SIZE)
           if ref.lower(chr(cp)) != chr(lower[cp]) or ref.fold(chr(cp)) != chr(folded[cp])]
    assert not bad, [hex(cp) for cp in bad[:20]]


def test_terms():
    assert ref.terms("東京タワー") == (("東京", 0), ("京タ", 1), ("タワ", 2), ("ワー", 3))
    assert ref.terms("a東京b") == (("a", 0), ("東京", 1), ("b", 3))
    assert ref.terms("東") == (("東", 0),)
    assert ref.terms("Don't") == (("don", 0), ("t", 1))
    assert ref.terms("Cumpleaños", folded=True) == (("cumpleanos", 0),)
    assert ref.terms("❤️🍕") == (("❤", 0), ("🍕", 1))
    assert ref.terms("...") == ()


def test_haversine():
    # one degree of latitude is R * pi / 180
    assert math.isclose(ref.haversine_km(0, 0, 0, 1), 6371.0088 * math.pi / 180, rel_tol=1e-12)
    assert ref.haversine_km(10, 20, 10, 20) == 0.0
    assert math.isclose(ref.haversine_km(-73.9855, 40.758, -0.1276, 51.5072), 5570, rel_tol=1e-2)


def test_fold_is_per_code_point():
    assert ref.fold("ÑANDÚ") == "nandu"
    assert ref.fold("ﬁ") == "ﬁ"                       # NFKD gives two code points: kept
    assert ref.fold("ｶ") == "カ"                      # half-width katakana: NFKD is one
    assert ref.lower("İ") == "İ" and ref.lower("ΣΑΣ") == "σασ"
    assert unicodedata.normalize("NFKD", "ﬁ") == "fi"


# --------------------------------------------------------------------------------------------
# real corpus files: facts read off the JSON

def _corpus_tweets(name: str) -> pa.Table:
    path = corpus_file(name)
    dec = firehose.Decoder(dedupe=True)
    return firehose.DecodeResult.concat([dec.feed(path.read_bytes(), source=name),
                                         dec.finish()]).tweets


def _ids(rules: list[Rule], tweets: pa.Table) -> dict[str, set[int]]:
    ids = tweets.column("id").to_pylist()
    out: dict[str, set[int]] = {r.id: set() for r in rules}
    for i, rid in ref.match(rules, tweets):
        out[rid].add(ids[i])
    return out


def test_corpus_pizza_search():
    # twitter-ruby premium_search_emoji: a Premium Search for 🍕, 100 v1.1 statuses
    t = _corpus_tweets("twitter-ruby-fixtures/premium_search_emoji.ndjson")
    assert t.num_rows == 100
    all_ids = set(t.column("id").to_pylist())
    ariana = {932386773459767296, 932386734876262400, 932386703079301126, 932386658359660551,
              932386605058461697, 932386571248160769, 932386538490613760, 932386507264090113,
              932386474078691328, 932386444127166464, 932386414548934656, 932386380621205504,
              932386348862005248, 932386239352852482, 932386181844754433, 932386136693067779}
    # three retweets whose 🍕 is only in the retweeted tweet (their own text is cut with …);
    # the search matched them on the retweeted text, the contract looks at text and
    # quoted_text only
    rt_only = {932386368940015616, 932386200773677056, 932386131810889729}
    rules = [Rule("pizza-emoji", "🍕"), Rule("tag", "#ariasedsheeran"),
             Rule("x43", "x43"), Rule("pt", "pizza lang:pt"), Rule("pt-prefix", "pizz* lang:pt"),
             Rule("pizzaday", "ピザの日"), Rule("pizza-and-day", "ピザ の日"),
             Rule("tag-pizzaday", "#ピザの日"), Rule("commander", "#CommanderUnePizza"),
             Rule("garrix", "@martingarrix")]
    got = _ids(rules, t)
    assert got["pizza-emoji"] == all_ids - rt_only
    assert got["tag"] == ariana
    assert got["x43"] == {932386773459767296}
    assert got["pt"] == {932386772763467777, 932386692488744961}
    # ... plus "pizzaria" and "#pizzaboa"
    assert got["pt-prefix"] == got["pt"] | {932386587492700160, 932386499114520578}
    # "ピザ🍕の日" is two CJK runs: not the keyword ピザの日, but both of its halves
    assert 932386585051463681 not in got["pizzaday"]
    assert 932386585051463681 in got["pizza-and-day"]
    assert len(got["pizzaday"]) == 37 and got["pizzaday"] < got["pizza-and-day"]
    assert {932386786193547264, 932386658699243521, 932386547327836160} <= got["tag-pizzaday"]
    assert got["tag-pizzaday"] < got["pizzaday"]
    assert got["commander"] == {932386173577781249}
    assert got["garrix"] == {932386418713915392}


def test_corpus_from_to_url_geo():
    frm = _corpus_tweets("twitter-ruby-fixtures/premium_search_from.ndjson")
    got = _ids([Rule("n", "from:TwitterDev"), Rule("i", "from:2244994945"),
                Rule("j", "from:jack"), Rule("t", "to:TwitterDev")], frm)
    assert frm.num_rows == 58
    assert got["n"] == got["i"] == set(frm.column("id").to_pylist())
    assert got["j"] == set() and got["t"] < got["n"]

    to = _corpus_tweets("twitter-ruby-fixtures/premium_search_to.ndjson")
    got = _ids([Rule("n", "to:twitterdev"), Rule("i", "to:2244994945"),
                Rule("f", "from:TwitterDev")], to)
    assert got["n"] == got["i"] == set(to.column("id").to_pylist()) and len(got["n"]) == 100
    assert got["f"] == set()

    url = _corpus_tweets("twitter-ruby-fixtures/premium_search_url.ndjson")
    got = _ids([Rule("u", 'url:"github.com/sferik/twitter"'),
                Rule("c", 'url_contains:"/issues/"'), Rule("k", "github")], url)
    assert got["u"] == {928847027336646656, 928404132498612225, 927447480832212992}
    assert got["c"] == {927447480832212992}
    assert got["k"] == {923108418931507202}       # "· GitHub”" in the text; the others
                                                  # have only t.co links there

    geo = _corpus_tweets("twitter-ruby-fixtures/premium_search_point_radius.ndjson")
    got = _ids([Rule("r", "point_radius:[-105.259 40.0194 1km]"),
                Rule("us", "place_country:US"), Rule("gb", "place_country:gb"),
                Rule("geo", "place_country:us has:geo")], geo)
    assert got["r"] == {932408542790762502, 932407873480679425, 932405913851387904,
                        932405646418309121, 932403717055246336, 932400352447614977,
                        932398804799594497, 932398651711918080, 932396207833518081,
                        932395165146329088, 932390068123082752}
    assert got["us"] == got["geo"] == set(geo.column("id").to_pylist())
    assert got["gb"] == set()


def test_corpus_single_status():
    t = _corpus_tweets("twitter-ruby-fixtures/status.ndjson")
    rules = [Rule("m", "@billbramhall"), Rule("f", "from:sferik"),
             Rule("s", 'source:"twitter for mac"'), Rule("p", '"powerful cartoon"'),
             Rule("r1", '"cartoon powerful"~3'), Rule("r2", '"cartoon powerful"~2'),
             Rule("c", "cartoon -is:retweet lang:en"), Rule("u", "url_contains:t.co")]
    assert [rid for _, rid in ref.match(rules, t)] == ["m", "f", "s", "p", "r1", "c"]
