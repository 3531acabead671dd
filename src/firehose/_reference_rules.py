"""The oracle for rule matching: ``docs/rules.md`` "What each clause matches", rule by rule.

Every rule is evaluated on every row, clause by clause, over plain Python strings: no term
hashes, no candidate index.  It is written to be read, not to be fast; the tests run the fast
matcher (``firehose.rules.RuleSet``) and this module on the same rules and tweets and treat any
difference as a bug in one of them.

    >>> import pyarrow as pa
    >>> from firehose.rules import Rule
    >>> rows = pa.table({"id": [1, 2], "text": ["Don't panic", "dont panic"]})
    >>> match([Rule("r1", "don't"), Rule("r2", "panic")], rows)
    [(0, 'r1'), (0, 'r2'), (1, 'r2')]

Rows are read with ``tweets.to_pylist()``; a column the rules need but the table lacks reads as
null (so a table with just ``id`` and ``text`` is enough for keyword rules).

Tokens come from :func:`firehose.rules.tokens.tokenize` (the "Tokens" section of the contract);
lower-casing and folding of the non-token comparisons (hashtags, names, ``contains:``, prefixes)
are written out here from the contract's wording, and the tests check them against
``tokens.tables()``.
"""
from __future__ import annotations

import math
import unicodedata
from collections import Counter
from typing import Any

import pyarrow as pa
import xxhash

from .rules.syntax import And, Keyword, Node, Not, Op, Or, Phrase, Rule, check
from .rules.tokens import BIGRAM, CJK, tokenize
from .schema import RULE_TYPE

__all__ = ["match", "annotate", "matches", "sampled", "haversine_km", "lower", "fold",
           "terms", "MATCHING_RULES_TYPE"]

EARTH_RADIUS_KM = 6371.0088

#: the type of the ``matching_rules`` column :func:`annotate` adds
MATCHING_RULES_TYPE = pa.list_(RULE_TYPE)


# --------------------------------------------------------------------------------------------
# characters (docs/rules.md, "Tokens")

def _lower_char(c: str) -> str:
    low = c.lower()
    return low if len(low) == 1 else c


def _fold_char(c: str) -> str:
    low = _lower_char(c)
    bare = "".join(x for x in unicodedata.normalize("NFKD", low)
                   if unicodedata.category(x) != "Mn")
    return bare if len(bare) == 1 else low


def lower(s: str) -> str:
    """``s`` lower-cased code point by code point (a code point whose lower case is several
    code points, such as ``İ``, is kept as it is)."""
    return "".join(_lower_char(c) for c in s)


def fold(s: str) -> str:
    """``s`` lower-cased and folded code point by code point (``ñ`` -> ``n``)."""
    return "".join(_fold_char(c) for c in s)


# --------------------------------------------------------------------------------------------
# keyword and phrase text -> terms

def terms(text: str, folded: bool = False) -> list[tuple[str, int]]:
    """The terms a keyword or phrase looks for: ``(token text, position relative to the
    first)``.  A run of two or more CJK characters is its bigrams (its unigrams are dropped);
    a lone CJK character is its unigram."""
    toks = tokenize(text, folded)
    bigram_at = {t.pos for t in toks if t.kind == BIGRAM}
    kept = [t for t in toks
            if not (t.kind == CJK and (t.pos in bigram_at or t.pos - 1 in bigram_at))]
    kept.sort(key=lambda t: t.pos)            # tokenize puts a bigram before its 2nd unigram
    if not kept:
        return []
    first = kept[0].pos
    return [(t.text, t.pos - first) for t in kept]


class _Field:
    """One tokenised field: its tokens as (position, text) pairs and the positions of each
    token text."""

    __slots__ = ("pairs", "positions")

    def __init__(self, text: str, folded: bool):
        self.pairs: set[tuple[int, str]] = set()
        self.positions: dict[str, list[int]] = {}
        for tok in tokenize(text, folded):
            self.pairs.add((tok.pos, tok.text))
            self.positions.setdefault(tok.text, []).append(tok.pos)
        for ps in self.positions.values():
            ps.sort()

    def has_sequence(self, seq: list[tuple[str, int]]) -> bool:
        """Every term at its relative position, all shifted by the same amount."""
        if not seq:
            return False
        first_text, _ = seq[0]
        for start in self.positions.get(first_text, ()):
            if all((start + rel, text) in self.pairs for text, rel in seq):
                return True
        return False

    def has_prefix(self, prefix: str) -> bool:
        return any(text.startswith(prefix) for text in self.positions)

    def near(self, words: list[str], n: int) -> bool:
        """Each of ``words`` matched by its own token, positions spanning at most ``n`` when
        strictly increasing in the order of ``words``, at most ``n - 2`` in any order."""
        if not words or any(w not in self.positions for w in words):
            return False
        # in the rule's order: from each occurrence of the first word take, word by word, the
        # earliest occurrence after the previous one (the earliest possible end for that start)
        for start in self.positions[words[0]]:
            prev = start
            for w in words[1:]:
                later = [p for p in self.positions[w] if p > prev]
                if not later:
                    prev = None
                    break
                prev = later[0]
            if prev is not None and prev - start <= n:
                return True
        # any order: some window of positions [s, s + n - 2] holds enough of every word
        width = n - 2
        if width < 0:
            return False
        need = Counter(words)
        starts = sorted({p for w in need for p in self.positions[w]})
        for s in starts:
            if all(sum(1 for p in self.positions[w] if s <= p <= s + width) >= k
                   for w, k in need.items()):
                return True
        return False


# --------------------------------------------------------------------------------------------
# one row

class _Row:
    """A tweets row (a dict from ``to_pylist``) with its fields tokenised on first use."""

    __slots__ = ("row", "_fields")

    def __init__(self, row: dict[str, Any]):
        self.row = row
        self._fields: dict[tuple[str, bool], list[_Field]] = {}

    def get(self, column: str) -> Any:
        return self.row.get(column)

    def fields(self, what: str, folded: bool = False) -> list[_Field]:
        """``what``: ``text`` (text and quoted_text, each its own field), ``bio``,
        ``bio_name``, ``bio_location`` or ``urls`` (each URL its own field)."""
        key = (what, folded)
        if key not in self._fields:
            if what == "text":
                values = [self.row.get("text"), self.row.get("quoted_text")]
            elif what == "urls":
                values = list(self.row.get("urls") or ())
            else:
                values = [self.row.get(_BIO_COLUMNS[what])]
            self._fields[key] = [_Field(v, folded) for v in values if v is not None]
        return self._fields[key]


_BIO_COLUMNS = {"bio": "author_description", "bio_name": "author_name",
                "bio_location": "author_location"}


# --------------------------------------------------------------------------------------------
# clauses

def sampled(tweet_id: int, percent: int) -> bool:
    """``sample:percent`` keeps the tweet: ``xxh3_64(id as 8 little-endian bytes) % 100 <
    percent``."""
    h = xxhash.xxh3_64_intdigest(tweet_id.to_bytes(8, "little", signed=True))
    return h % 100 < percent


def haversine_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in km (R = 6371.0088), the formula written in docs/rules.md."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _same_name(a: str | None, b: str) -> bool:
    return a is not None and lower(a) == lower(b)


def _user(row: _Row, value: object, id_column: str, name_column: str) -> bool:
    if isinstance(value, int):
        return row.get(id_column) == value
    return _same_name(row.get(name_column), value)


def _keyword(node: Keyword, row: _Row) -> bool:
    if node.prefix:
        prefix = fold(node.text) if node.fold else lower(node.text)
        return any(f.has_prefix(prefix) for f in row.fields("text", node.fold))
    seq = terms(node.text, node.fold)
    return any(f.has_sequence(seq) for f in row.fields("text", node.fold))


def _phrase(node: Phrase, row: _Row) -> bool:
    seq = terms(node.text, node.fold)
    fields = row.fields("text", node.fold)
    if node.proximity is None:
        return any(f.has_sequence(seq) for f in fields)
    words = [text for text, _ in seq]
    return any(f.near(words, node.proximity) for f in fields)


def _op(node: Op, row: _Row, negated: bool) -> bool:
    name, v = node.name, node.value
    if name == "hashtag":
        return any(_same_name(h, v) for h in row.get("hashtags") or ())
    if name == "cashtag":
        return any(_same_name(c, v) for c in row.get("cashtags") or ())
    if name == "mention":
        if isinstance(v, int):
            return v in (row.get("mention_ids") or ())
        return any(_same_name(m, v) for m in row.get("mentions") or ())
    if name == "from":
        return _user(row, v, "author_id", "author_screen_name")
    if name == "to":
        return _user(row, v, "in_reply_to_user_id", "in_reply_to_screen_name")
    if name == "retweets_of":
        return _user(row, v, "retweeted_user_id", "retweeted_screen_name")
    if name in ("bio", "bio_name", "bio_location", "url"):
        seq = terms(v)
        return any(f.has_sequence(seq) for f in row.fields("urls" if name == "url" else name))
    if name == "url_contains":
        return any(lower(v) in lower(u) for u in row.get("urls") or ())
    if name == "contains":
        return any(t is not None and lower(v) in lower(t)
                   for t in (row.get("text"), row.get("quoted_text")))
    if name == "lang":
        return _same_name(row.get("lang"), v)
    if name == "place_country":
        return _same_name(row.get("place_country_code"), v)
    if name == "source":
        return _same_name(row.get("source"), v)
    if name == "has":
        return _has(v, row)
    if name == "is":
        if v == "verified":
            return row.get("author_verified") is True
        column = {"retweet": "retweeted_status_id", "reply": "in_reply_to_status_id",
                  "quote": "quoted_status_id"}[v]
        return row.get(column) is not None
    if name == "followers_count":
        lo, hi = v
        n = row.get("author_followers_count")
        return n is not None and lo <= n and (hi is None or n <= hi)
    if name == "bounding_box":
        c = row.get("coordinates")
        west, south, east, north = v
        return c is not None and west <= c["lon"] <= east and south <= c["lat"] <= north
    if name == "point_radius":
        c = row.get("coordinates")
        lon, lat, r = v
        return c is not None and haversine_km(lon, lat, c["lon"], c["lat"]) <= r
    if name == "sample":
        # outside any negation the clause is true here and applies to the whole rule
        # (see matches()); inside a negation it is the predicate "sampled"
        return sampled(row.get("id"), v) if negated else True
    raise ValueError(f"unknown operator {name}:")


def _has(v: str, row: _Row) -> bool:
    def nonempty(column: str) -> bool:
        return bool(row.get(column))

    if v == "links":
        return nonempty("urls")
    if v == "media":
        return nonempty("media_types")
    if v == "images":
        return "photo" in (row.get("media_types") or ())
    if v == "videos":
        types = row.get("media_types") or ()
        return "video" in types or "animated_gif" in types
    if v == "mentions":
        return nonempty("mentions")
    if v == "hashtags":
        return nonempty("hashtags")
    if v == "symbols":
        return nonempty("cashtags")
    if v == "geo":
        return row.get("coordinates") is not None or row.get("place_id") is not None
    raise ValueError(f"unknown has:{v}")


def _eval(node: Node, row: _Row, negated: bool = False) -> bool:
    if isinstance(node, And):
        return all(_eval(c, row, negated) for c in node.children)
    if isinstance(node, Or):
        return any(_eval(c, row, negated) for c in node.children)
    if isinstance(node, Not):
        return not _eval(node.child, row, True)
    if isinstance(node, Keyword):
        return _keyword(node, row)
    if isinstance(node, Phrase):
        return _phrase(node, row)
    if isinstance(node, Op):
        return _op(node, row, negated)
    raise TypeError(f"not a rule node: {node!r}")


def _rule_sample(node: Node) -> int | None:
    """The smallest N of the ``sample:N`` clauses outside any negation (None without one)."""
    if isinstance(node, Op):
        return node.value if node.name == "sample" else None
    if isinstance(node, (And, Or)):
        found = [n for c in node.children if (n := _rule_sample(c)) is not None]
        return min(found) if found else None
    return None                                 # Not, Keyword, Phrase


def matches(node: Node, row: dict[str, Any]) -> bool:
    """Whether a parsed rule matches one tweets row (a dict as given by ``to_pylist``)."""
    r = _Row(row)
    n = _rule_sample(node)
    if n is not None and not sampled(r.get("id"), n):
        return False
    return _eval(node, r)


# --------------------------------------------------------------------------------------------
# public

def _parsed(rules: list[Rule]) -> list[tuple[Rule, Node]]:
    rules = list(rules)
    errors = check(rules)
    if errors:
        raise errors[0]
    return [(rule, rule.parse()) for rule in rules]


def _match_rows(parsed: list[tuple[Rule, Node]], tweets: pa.Table) -> list[list[Rule]]:
    out = []
    for row in tweets.to_pylist():
        r = _Row(row)
        hits = []
        for rule, node in parsed:
            n = _rule_sample(node)
            if n is not None and not sampled(r.get("id"), n):
                continue
            if _eval(node, r):
                hits.append(rule)
        out.append(hits)
    return out


def match(rules: list[Rule], tweets: pa.Table) -> list[tuple[int, str]]:
    """Every ``(row index, rule id)`` where the rule matches the row, by row, then in the
    order of ``rules``.  Invalid rules and duplicate ids raise :class:`RuleError`."""
    per_row = _match_rows(_parsed(rules), tweets)
    return [(i, rule.id) for i, hits in enumerate(per_row) for rule in hits]


def annotate(rules: list[Rule], tweets: pa.Table) -> pa.Table:
    """``tweets`` with a ``matching_rules`` column (``list<struct<id, tag>>``, the matching
    rules in the order given; an empty list where none matched)."""
    per_row = _match_rows(_parsed(rules), tweets)
    column = pa.array([[{"id": rule.id, "tag": rule.tag} for rule in hits] for hits in per_row],
                      type=MATCHING_RULES_TYPE)
    if "matching_rules" in tweets.column_names:
        i = tweets.column_names.index("matching_rules")
        return tweets.set_column(i, pa.field("matching_rules", MATCHING_RULES_TYPE), column)
    return tweets.append_column(pa.field("matching_rules", MATCHING_RULES_TYPE), column)
