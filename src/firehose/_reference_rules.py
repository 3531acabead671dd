"""The oracle for rule matching: ``docs/rules.md`` "What each clause matches", rule by rule.

Every rule is evaluated on every row, clause by clause, over plain Python strings: no term
hashes, no candidate index (each rule's tree is turned into nested predicates once, so the
clauses are not re-read per row).  It is written to be read, not to be fast; the tests run the
fast matcher (``firehose.rules.RuleSet``) and this module on the same rules and tweets and treat
any difference as a bug in one of them.

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
from bisect import bisect_left
from collections import Counter
from functools import lru_cache
from typing import Any, Callable

import pyarrow as pa
import xxhash

from .rules.syntax import And, Keyword, Node, Not, Op, Or, Phrase, Rule, check
from .rules.tokens import BIGRAM, CJK, tokenize
from .schema import MATCHING_RULES

__all__ = ["match", "annotate", "matches", "sampled", "haversine_km", "lower", "fold",
           "terms", "MATCHING_RULES_TYPE"]

EARTH_RADIUS_KM = 6371.0088

#: the type of the ``matching_rules`` column :func:`annotate` adds
MATCHING_RULES_TYPE = MATCHING_RULES


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


@lru_cache(maxsize=1 << 16)
def lower(s: str) -> str:
    """``s`` lower-cased code point by code point (a code point whose lower case is several
    code points, such as ``İ``, is kept as it is)."""
    return "".join(_lower_char(c) for c in s)


@lru_cache(maxsize=1 << 16)
def fold(s: str) -> str:
    """``s`` lower-cased and folded code point by code point (``ñ`` -> ``n``)."""
    return "".join(_fold_char(c) for c in s)


# --------------------------------------------------------------------------------------------
# keyword and phrase text -> terms

@lru_cache(maxsize=1 << 16)
def terms(text: str, folded: bool = False) -> tuple[tuple[str, int], ...]:
    """The terms a keyword or phrase looks for: ``(token text, position relative to the
    first)``.  A run of two or more CJK characters is its bigrams (its unigrams are dropped);
    a lone CJK character is its unigram."""
    toks = tokenize(text, folded)
    bigram_at = {t.pos for t in toks if t.kind == BIGRAM}
    kept = [t for t in toks
            if not (t.kind == CJK and (t.pos in bigram_at or t.pos - 1 in bigram_at))]
    kept.sort(key=lambda t: t.pos)            # tokenize puts a bigram before its 2nd unigram
    if not kept:
        return ()
    first = kept[0].pos
    return tuple((t.text, t.pos - first) for t in kept)


class _Field:
    """One tokenised field: its tokens as (position, text) pairs and the positions of each
    token text."""

    __slots__ = ("pairs", "positions", "_sorted")

    def __init__(self, text: str, folded: bool):
        self.pairs: set[tuple[int, str]] = set()
        self.positions: dict[str, list[int]] = {}
        self._sorted: list[str] | None = None
        for tok in tokenize(text, folded):
            self.pairs.add((tok.pos, tok.text))
            self.positions.setdefault(tok.text, []).append(tok.pos)
        for ps in self.positions.values():
            ps.sort()

    def has_sequence(self, seq: tuple[tuple[str, int], ...]) -> bool:
        """Every term at its relative position, all shifted by the same amount."""
        if not seq:
            return False
        first_text, _ = seq[0]
        if len(seq) == 1:
            return first_text in self.positions
        for start in self.positions.get(first_text, ()):
            if all((start + rel, text) in self.pairs for text, rel in seq):
                return True
        return False

    def has_prefix(self, prefix: str) -> bool:
        """A token starts with ``prefix``: in the sorted token texts, those that do come first
        among the texts from ``prefix`` on."""
        if self._sorted is None:
            self._sorted = sorted(self.positions)
        i = bisect_left(self._sorted, prefix)
        return i < len(self._sorted) and self._sorted[i].startswith(prefix)

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
        # any order: some window of positions [s, s + n - 2] holds enough tokens of every
        # word (a field has at most one token of a given text at a position, so tokens of
        # different words never compete)
        width = n - 2
        if width < 0:
            return False
        need = Counter(words)
        for s in sorted({p for w in need for p in self.positions[w]}):
            if all(sum(1 for p in self.positions[w] if s <= p <= s + width) >= k
                   for w, k in need.items()):
                return True
        return False


# --------------------------------------------------------------------------------------------
# one row

class _Row(dict):
    """A tweets row: the dict ``to_pylist`` gives (``get`` reads a column, None when the
    table lacks it), with text and quoted_text tokenised up front, other fields on first
    use."""

    __slots__ = ("_fields", "words")

    def __init__(self, row: dict[str, Any]):
        super().__init__(row)
        self._fields: dict[tuple[str, bool], list[_Field]] = {}
        #: every token text of text and quoted_text: [plain, folded]
        self.words = [{w for f in self.fields("text", folded) for w in f.positions}
                      for folded in (False, True)]

    def fields(self, what: str, folded: bool = False) -> list[_Field]:
        """``what``: ``text`` (text and quoted_text, each its own field), ``bio``,
        ``bio_name``, ``bio_location`` or ``urls`` (each URL its own field)."""
        key = (what, folded)
        fields = self._fields.get(key)
        if fields is None:
            if what == "text":
                values = [self.get("text"), self.get("quoted_text")]
            elif what == "urls":
                values = list(self.get("urls") or ())
            else:
                values = [self.get(_BIO_COLUMNS[what])]
            fields = self._fields[key] = [_Field(v, folded) for v in values if v is not None]
        return fields


_BIO_COLUMNS = {"bio": "author_description", "bio_name": "author_name",
                "bio_location": "author_location"}


# --------------------------------------------------------------------------------------------
# clauses: each node becomes a predicate on a row, built once per rule

Pred = Callable[[_Row], bool]


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
    """Equal case-insensitively (both lower-cased code point by code point); null is not."""
    return a is not None and lower(a) == lower(b)


def _in_fields(what: str, folded: bool, test: Callable[[_Field], bool]) -> Pred:
    """True when ``test`` holds for one of the row's ``what`` fields."""
    def pred(row: _Row) -> bool:
        for f in row.fields(what, folded):
            if test(f):
                return True
        return False
    return pred


def _keyword(node: Keyword) -> Pred:
    folded = node.fold
    if node.prefix:
        prefix = fold(node.text) if folded else lower(node.text)
        return _in_fields("text", folded, lambda f: f.has_prefix(prefix))
    seq = terms(node.text, folded)
    if len(seq) == 1:                     # the common case: the token occurs in a field
        token = seq[0][0]
        return lambda row: token in row.words[folded]
    return _in_fields("text", folded, lambda f: f.has_sequence(seq))


def _phrase(node: Phrase) -> Pred:
    folded = node.fold
    seq = terms(node.text, folded)
    if node.proximity is None:
        return _in_fields("text", folded, lambda f: f.has_sequence(seq))
    words = [text for text, _ in seq]
    n = node.proximity
    return _in_fields("text", folded, lambda f: f.near(words, n))


def _user(value: object, id_column: str, name_column: str) -> Pred:
    if isinstance(value, int):
        return lambda row: row.get(id_column) == value
    return lambda row: _same_name(row.get(name_column), value)


def _any_named(column: str, value: str) -> Pred:
    return lambda row: any(_same_name(x, value) for x in row.get(column) or ())


def _nonempty(column: str) -> Pred:
    return lambda row: bool(row.get(column))


def _not_null(column: str) -> Pred:
    return lambda row: row.get(column) is not None


def _has(v: str) -> Pred:
    if v == "links":
        return _nonempty("urls")
    if v == "media":
        return _nonempty("media_types")
    if v == "images":
        return lambda row: "photo" in (row.get("media_types") or ())
    if v == "videos":
        return lambda row: any(t in ("video", "animated_gif")
                               for t in row.get("media_types") or ())
    if v == "mentions":
        return _nonempty("mentions")
    if v == "hashtags":
        return _nonempty("hashtags")
    if v == "symbols":
        return _nonempty("cashtags")
    if v == "geo":
        return lambda row: (row.get("coordinates") is not None
                            or row.get("place_id") is not None)
    raise ValueError(f"unknown has:{v}")


def _is(v: str) -> Pred:
    if v == "verified":
        return lambda row: row.get("author_verified") is True
    return _not_null({"retweet": "retweeted_status_id", "reply": "in_reply_to_status_id",
                      "quote": "quoted_status_id"}[v])


def _op(node: Op, negated: bool) -> Pred:
    name, v = node.name, node.value
    if name == "hashtag":
        return _any_named("hashtags", v)
    if name == "cashtag":
        return _any_named("cashtags", v)
    if name == "mention":
        if isinstance(v, int):
            return lambda row: v in (row.get("mention_ids") or ())
        return _any_named("mentions", v)
    if name == "from":
        return _user(v, "author_id", "author_screen_name")
    if name == "to":
        return _user(v, "in_reply_to_user_id", "in_reply_to_screen_name")
    if name == "retweets_of":
        return _user(v, "retweeted_user_id", "retweeted_screen_name")
    if name in ("bio", "bio_name", "bio_location", "url"):
        seq = terms(v)                                    # never folded
        return _in_fields("urls" if name == "url" else name, False,
                          lambda f: f.has_sequence(seq))
    if name == "url_contains":
        part = lower(v)
        return lambda row: any(part in lower(u) for u in row.get("urls") or ())
    if name == "contains":
        part = lower(v)
        return lambda row: any(t is not None and part in lower(t)
                               for t in (row.get("text"), row.get("quoted_text")))
    if name == "lang":
        return lambda row: _same_name(row.get("lang"), v)
    if name == "place_country":
        return lambda row: _same_name(row.get("place_country_code"), v)
    if name == "source":
        return lambda row: _same_name(row.get("source"), v)
    if name == "has":
        return _has(v)
    if name == "is":
        return _is(v)
    if name == "followers_count":
        lo, hi = v
        return lambda row: ((n := row.get("author_followers_count")) is not None
                            and lo <= n and (hi is None or n <= hi))
    if name == "bounding_box":
        west, south, east, north = v
        return lambda row: ((c := row.get("coordinates")) is not None
                            and west <= c["lon"] <= east and south <= c["lat"] <= north)
    if name == "point_radius":
        lon, lat, r = v
        return lambda row: ((c := row.get("coordinates")) is not None
                            and haversine_km(lon, lat, c["lon"], c["lat"]) <= r)
    if name == "sample":
        # outside any negation the clause is true where it stands and applies to the whole
        # rule (see _rule_sample); inside a negation it is the predicate "sampled"
        if negated:
            return lambda row: sampled(row.get("id"), v)
        return lambda row: True
    raise ValueError(f"unknown operator {name}:")


def _compile(node: Node, negated: bool = False) -> Pred:
    """The predicate of ``node``; ``negated``: the node is inside a ``Not``."""
    if isinstance(node, And):
        parts = [_compile(c, negated) for c in node.children]

        def all_of(row: _Row) -> bool:
            for p in parts:
                if not p(row):
                    return False
            return True
        return all_of
    if isinstance(node, Or):
        parts = [_compile(c, negated) for c in node.children]

        def any_of(row: _Row) -> bool:
            for p in parts:
                if p(row):
                    return True
            return False
        return any_of
    if isinstance(node, Not):
        inner = _compile(node.child, True)
        return lambda row: not inner(row)
    if isinstance(node, Keyword):
        return _keyword(node)
    if isinstance(node, Phrase):
        return _phrase(node)
    if isinstance(node, Op):
        return _op(node, negated)
    raise TypeError(f"not a rule node: {node!r}")


def _rule_sample(node: Node) -> int | None:
    """The smallest N of the ``sample:N`` clauses outside any negation (None without one)."""
    if isinstance(node, Op):
        return node.value if node.name == "sample" else None
    if isinstance(node, (And, Or)):
        found = [n for c in node.children if (n := _rule_sample(c)) is not None]
        return min(found) if found else None
    return None                                 # Not, Keyword, Phrase


def _rule_predicate(node: Node) -> Pred:
    """The whole rule: its clauses, and the tweet sampled when a positive ``sample:`` says so."""
    pred = _compile(node)
    n = _rule_sample(node)
    if n is None:
        return pred
    return lambda row: sampled(row.get("id"), n) and pred(row)


def matches(node: Node, row: dict[str, Any]) -> bool:
    """Whether a parsed rule matches one tweets row (a dict as given by ``to_pylist``)."""
    return _rule_predicate(node)(_Row(row))


# --------------------------------------------------------------------------------------------
# public

def _compiled(rules: list[Rule]) -> list[tuple[Rule, Pred]]:
    rules = list(rules)
    if len({rule.id for rule in rules}) != len(rules):
        raise check(rules)[0]
    return [(rule, _rule_predicate(rule.parse())) for rule in rules]


def _match_rows(compiled: list[tuple[Rule, Pred]], tweets: pa.Table) -> list[list[Rule]]:
    out = []
    for row in tweets.to_pylist():
        r = _Row(row)
        out.append([rule for rule, pred in compiled if pred(r)])
    return out


def match(rules: list[Rule], tweets: pa.Table) -> list[tuple[int, str]]:
    """Every ``(row index, rule id)`` where the rule matches the row, by row, then in the
    order of ``rules``.  Invalid rules and duplicate ids raise :class:`RuleError`."""
    per_row = _match_rows(_compiled(rules), tweets)
    return [(i, rule.id) for i, hits in enumerate(per_row) for rule in hits]


def annotate(rules: list[Rule], tweets: pa.Table) -> pa.Table:
    """``tweets`` with a ``matching_rules`` column (``list<struct<id, tag>>``, the matching
    rules in the order given; an empty list where none matched)."""
    per_row = _match_rows(_compiled(rules), tweets)
    column = pa.array([[{"id": rule.id, "tag": rule.tag} for rule in hits] for hits in per_row],
                      type=MATCHING_RULES_TYPE)
    if "matching_rules" in tweets.column_names:
        i = tweets.column_names.index("matching_rules")
        return tweets.set_column(i, pa.field("matching_rules", MATCHING_RULES_TYPE), column)
    return tweets.append_column(pa.field("matching_rules", MATCHING_RULES_TYPE), column)
