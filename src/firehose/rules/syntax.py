"""The PowerTrack rule language: parser, AST and checks.

    >>> parse('(happy OR party) "new year"~3 -is:retweet lang:EN') == And((
    ...     Or((Keyword("happy"), Keyword("party"))), Phrase("new year", proximity=3),
    ...     Not(Op("is", "retweet")), Op("lang", "en")))
    True

Grammar (space is AND, AND binds tighter than OR)::

    rule    := or_expr
    or_expr := and_expr ("OR" and_expr)*
    and_expr:= unary unary*
    unary   := "-" primary | primary          (no space after "-")
    primary := "(" or_expr ")" | term

Terms: a keyword (``apple``, ``🍕``, ``tech*``), a phrase (``"a b"``, ``"a b"~N``), a modified
keyword or phrase (``fold:cumpleanos``, ``fold:"feliz cumpleanos"``), a sigil (``#tag``,
``@name``, ``@12345``, ``$TWTR``) or an operator ``name:value``.

Lexical decisions (the parts PowerTrack leaves open):

* A bare word runs to the next whitespace, ``(`` or ``)``.  A ``"`` inside a bare word is an
  error (put a space before a phrase).  After a closing quote, ``~N`` or ``]`` there must be
  whitespace, a parenthesis or the end of the rule.
* Inside quotes ``\\"`` is a literal quote and ``\\\\`` a literal backslash; any other
  backslash is kept as written.
* A word is an *operator* when it starts with ASCII letters/underscores directly followed by
  ``:`` (``from:``, ``bio_name:``), unless the ``:`` is followed by ``//`` (``https://x.com``
  is a keyword).  A word whose part before ``:`` is not of that form (``12:30``, ``:)x``,
  ``h2o:x``) is a keyword.  An operator name that is not known (``foo:bar``, ``re:invent``,
  ``From:x`` -- names are lower-case) is an error; quote it to match the text.
* ``-`` negates only at the start of a term (``e-mail`` is one keyword) and must be followed
  directly by a term or a ``(``.  Upper-case ``OR`` is the operator, ``or`` a keyword;
  upper-case ``AND`` is an error.
* Columns are 1-based code-point positions in the rule value.

AST: frozen dataclasses, each with a ``col``.  ``col`` takes no part in equality, hashing or
``repr``, so trees written by hand compare equal to parsed ones and equal clauses of different
rules hash alike.  Keyword and phrase text is kept as written (case, punctuation); the
compiler tokenises.  Operator values are validated and put in canonical form (see
:class:`Op`).
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence, Union

from ..errors import ConfigError
from .tokens import BIGRAM, tokenize

__all__ = [
    "And", "Or", "Not", "Keyword", "Phrase", "Op", "Node",
    "Rule", "RuleError", "parse", "check",
    "MAX_RULE_LENGTH", "MAX_GEO_KM", "STANDALONE_OPS", "NON_STANDALONE_OPS",
    "HAS_VALUES", "IS_VALUES",
]

MAX_RULE_LENGTH = 2048
EARTH_RADIUS_KM = 6371.0088
KM_PER_MILE = 1.609344
MAX_GEO_KM = 25 * KM_PER_MILE          # 40.2336 km: longest bounding-box side, largest radius
_GEO_SLACK_KM = 1e-9                    # float noise when a value is exactly 25 mi

HAS_VALUES = frozenset({"links", "media", "images", "videos", "mentions", "hashtags",
                        "symbols", "geo"})
IS_VALUES = frozenset({"retweet", "reply", "quote", "verified"})

# name as written before ":" -> AST name
_OPERATORS = {
    "from": "from", "to": "to", "retweets_of": "retweets_of",
    "url": "url", "url_contains": "url_contains", "contains": "contains",
    "bio": "bio", "bio_name": "bio_name", "bio_location": "bio_location",
    "lang": "lang", "has": "has", "is": "is", "place_country": "place_country",
    "source": "source", "sample": "sample", "followers_count": "followers_count",
    "bounding_box": "bounding_box", "point_radius": "point_radius",
}
_SIGILS = {"#": "hashtag", "@": "mention", "$": "cashtag"}
STANDALONE_OPS = frozenset({
    "hashtag", "mention", "cashtag", "from", "to", "retweets_of", "url", "url_contains",
    "contains", "bio", "bio_name", "bio_location", "place_country", "bounding_box",
    "point_radius", "source",
})
NON_STANDALONE_OPS = frozenset({"lang", "has", "is", "sample", "followers_count"})
_QUOTABLE = frozenset({"from", "to", "retweets_of", "url", "url_contains", "contains", "bio",
                       "bio_name", "bio_location", "source", "place_country"})
_GEO = frozenset({"bounding_box", "point_radius"})

_OP_RE = re.compile(r"[A-Za-z][A-Za-z_]*:")
_USER_RE = re.compile(r"[A-Za-z0-9_]+\Z")
_CASHTAG_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?\Z")
_LANG_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*\Z")
_COUNTRY_RE = re.compile(r"[A-Za-z]{2}\Z")
_UINT_RE = re.compile(r"[0-9]+\Z")
_RANGE_RE = re.compile(r"([0-9]+)\.\.([0-9]+)\Z")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_RADIUS_RE = re.compile(r"((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(mi|km)\Z")
_TRAILING_PROXIMITY_RE = re.compile(r"~[0-9]+\Z")
_INT64_MAX = 2**63 - 1
_CJK_PREFIXES = ("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA", "HANGUL")


# --------------------------------------------------------------------------------------------
# errors and rules


class RuleError(ConfigError):
    """A rule is invalid.

    ``col`` is the 1-based column in the rule value (``None`` for problems of the rule as a
    whole, such as a duplicate id), ``reason`` a human sentence, ``rule_id`` the id of the rule
    when one is known and ``index`` its position in the list given to :func:`check`.
    ``str(err)`` is ``"col N: reason"``, prefixed by ``"rule ID: "`` when the id is known.
    """

    def __init__(self, reason: str, col: int | None = None, *, rule_id: str | None = None,
                 index: int | None = None):
        self.reason = reason
        self.col = col
        self.rule_id = rule_id
        self.index = index
        parts = []
        if rule_id is not None:
            parts.append(f"rule {rule_id}")
        if col is not None:
            parts.append(f"col {col}")
        parts.append(reason)
        super().__init__(": ".join(parts))

    def for_rule(self, rule_id: str | None, index: int | None = None) -> "RuleError":
        """The same error, naming the rule it belongs to."""
        return RuleError(self.reason, self.col, rule_id=rule_id,
                         index=self.index if index is None else index)

    def __reduce__(self):
        return (_rebuild_rule_error, (self.reason, self.col, self.rule_id, self.index))


def _rebuild_rule_error(reason, col, rule_id, index):
    return RuleError(reason, col, rule_id=rule_id, index=index)


@dataclass(frozen=True, slots=True)
class Rule:
    """One client rule: ``id`` (non-empty), ``value`` (the rule text), optional ``tag``, and
    ``fold`` (every keyword and phrase of the rule matches accent-insensitively, as if each
    were written with ``fold:``)."""

    id: str
    value: str
    tag: str | None = None
    fold: bool = False

    def __post_init__(self):
        if not isinstance(self.id, str):
            raise TypeError(f"rule id must be a str, not {type(self.id).__name__}")
        if not self.id.strip():
            raise RuleError("rule id must be a non-empty string")
        if not isinstance(self.value, str):
            raise TypeError(f"rule {self.id}: value must be a str, not {type(self.value).__name__}")
        if self.tag is not None and not isinstance(self.tag, str):
            raise TypeError(f"rule {self.id}: tag must be a str or None, not {type(self.tag).__name__}")
        if not isinstance(self.fold, bool):
            raise TypeError(f"rule {self.id}: fold must be a bool, not {type(self.fold).__name__}")

    def parse(self) -> "Node":
        """The rule's AST; a :class:`RuleError` naming this rule's id if it is invalid."""
        node, errors = _analyse(self.value, self.fold)
        if errors:
            raise errors[0].for_rule(self.id)
        return node


# --------------------------------------------------------------------------------------------
# AST

_COL = dict(default=0, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class And:
    """All children match.  Two or more children, none of them an ``And``."""
    children: tuple
    col: int = field(**_COL)

    def __post_init__(self):
        if not isinstance(self.children, tuple):
            object.__setattr__(self, "children", tuple(self.children))


@dataclass(frozen=True, slots=True)
class Or:
    """Any child matches.  Two or more children, none of them an ``Or`` or a ``Not``."""
    children: tuple
    col: int = field(**_COL)

    def __post_init__(self):
        if not isinstance(self.children, tuple):
            object.__setattr__(self, "children", tuple(self.children))


@dataclass(frozen=True, slots=True)
class Not:
    """The child does not match (``-term`` or ``-( ... )``)."""
    child: "Node"
    col: int = field(**_COL)


@dataclass(frozen=True, slots=True)
class Keyword:
    """A keyword as written (no quotes, case kept; without the ``*`` when ``prefix``)."""
    text: str
    fold: bool = False
    prefix: bool = False
    col: int = field(**_COL)


@dataclass(frozen=True, slots=True)
class Phrase:
    """A quoted phrase (text unescaped, case kept); ``proximity`` is N of ``"a b"~N``."""
    text: str
    fold: bool = False
    proximity: int | None = None
    col: int = field(**_COL)


@dataclass(frozen=True, slots=True)
class Op:
    """An operator.  ``name`` and ``value``:

    ``hashtag`` str without ``#``; ``cashtag`` str without ``$``; ``mention``, ``from``,
    ``to``, ``retweets_of``: str screen name, or int user id when the value is all digits;
    ``url``, ``url_contains``, ``contains``, ``bio``, ``bio_name``, ``bio_location``,
    ``source``: str as written (unquoted); ``lang`` str lower-cased; ``has``, ``is`` str
    lower-cased; ``place_country`` str upper-cased; ``sample`` int 1..100;
    ``followers_count`` (lo, hi) ints, hi None for open; ``bounding_box`` (west, south, east,
    north) floats in degrees; ``point_radius`` (lon, lat, radius_km) floats.
    """
    name: str
    value: object
    col: int = field(**_COL)


Node = Union[And, Or, Not, Keyword, Phrase, Op]


# --------------------------------------------------------------------------------------------
# characters


def _is_word_char(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] in "LMN"


def _is_cjk(ch: str) -> bool:
    return ord(ch) >= 0x1100 and unicodedata.name(ch, "").startswith(_CJK_PREFIXES)


def _count_tokens(text: str) -> int:
    """How many tokens the matcher cuts ``text`` into (CJK characters, words, symbols; bigrams
    are not counted), by the shared tokeniser of :mod:`.tokens`."""
    return sum(1 for t in tokenize(text) if t.kind != BIGRAM)


# --------------------------------------------------------------------------------------------
# lexer

class _Syntax(Exception):
    """A syntax error: parsing stops here."""

    def __init__(self, col: int, reason: str):
        super().__init__(reason)
        self.col = col
        self.reason = reason


# token kinds
_LP, _RP, _OR, _AND, _NEG, _TERM, _END = "(", ")", "OR", "AND", "-", "term", "end"


class _Lexer:
    def __init__(self, s: str, fold: bool):
        self.s = s
        self.n = len(s)
        self.fold = fold
        self.errors: list[RuleError] = []       # value errors: parsing goes on

    # -- helpers
    def err(self, i: int, reason: str) -> None:
        self.errors.append(RuleError(reason, i + 1))

    def is_delim(self, i: int) -> bool:
        return i >= self.n or self.s[i].isspace() or self.s[i] in "()"

    def expect_delim(self, i: int, what: str) -> None:
        if not self.is_delim(i):
            raise _Syntax(i + 1, f"put a space between {what} and {self.s[i]!r}")

    def bare(self, i: int) -> int:
        """End of the bare word starting at i."""
        s, n = self.s, self.n
        j = i
        while j < n:
            c = s[j]
            if c.isspace() or c == "(" or c == ")":
                break
            if c == '"':
                raise _Syntax(j + 1, "a quote inside a word: put a space before a quoted phrase "
                                     "(or quote the whole term)")
            j += 1
        return j

    def quoted(self, i: int) -> tuple[str, int]:
        """s[i] is '"': the unescaped text and the index after the closing quote."""
        s, n = self.s, self.n
        out = []
        j = i + 1
        while j < n:
            c = s[j]
            if c == "\\" and j + 1 < n and s[j + 1] in '"\\':
                out.append(s[j + 1])
                j += 2
            elif c == '"':
                return "".join(out), j + 1
            else:
                out.append(c)
                j += 1
        raise _Syntax(i + 1, "unclosed quote")

    # -- tokens
    def tokens(self) -> list[tuple]:
        s, n = self.s, self.n
        out: list[tuple] = []
        i = 0
        while True:
            while i < n and s[i].isspace():
                i += 1
            if i >= n:
                out.append((_END, i + 1, None))
                return out
            c = s[i]
            if c == "(":
                out.append((_LP, i + 1, None))
                i += 1
            elif c == ")":
                out.append((_RP, i + 1, None))
                i += 1
            elif c == "-":
                nxt = s[i + 1] if i + 1 < n else ""
                if not nxt or nxt.isspace() or nxt == ")":
                    raise _Syntax(i + 1, "dangling '-': it must be followed directly by a term "
                                         "or a '(' (no space)")
                if nxt == "-":
                    raise _Syntax(i + 1, "'--': a term can be negated only once")
                out.append((_NEG, i + 1, None))
                i += 1
            else:
                i = self.term(i, out)

    def term(self, i: int, out: list) -> int:
        s = self.s
        c = s[i]
        if c == '"':
            node, j = self.phrase(i, i, fold=self.fold)
            out.append((_TERM, i + 1, node))
            return j
        if c in _SIGILS:
            if i + 1 < self.n and s[i + 1] == '"':
                raise _Syntax(i + 1, f"{c} cannot take a quoted value")
            j = self.bare(i + 1)
            if j == i + 1:
                raise _Syntax(i + 1, f"{c!r} needs a value right after it (no space)")
            out.append((_TERM, i + 1, self.sigil(i, c, s[i + 1:j])))
            return j
        m = _OP_RE.match(s, i)
        if m and not s.startswith("//", m.end()):
            return self.operator(i, m.end(), out)
        j = self.bare(i)
        word = s[i:j]
        if word == "OR":
            out.append((_OR, i + 1, None))
        elif word == "AND":
            out.append((_AND, i + 1, None))
        else:
            out.append((_TERM, i + 1, self.keyword(i, word, fold=self.fold, col=i + 1)))
        return j

    def phrase(self, start: int, i: int, *, fold: bool) -> tuple[Phrase, int]:
        """A phrase whose quote is at i; the node starts at ``start`` (a ``fold:`` before)."""
        s, n = self.s, self.n
        text, j = self.quoted(i)
        proximity = None
        words = _count_tokens(text)
        if not text.strip():
            self.err(i, "empty phrase")
        elif words == 0:
            self.err(i, f"phrase {s[i:j]} has no letters, digits or emoji to match")
        if j < n and s[j] == "~":
            k = j + 1
            while k < n and "0" <= s[k] <= "9":
                k += 1
            if k == j + 1:
                raise _Syntax(j + 1, "'~' after a phrase must be followed by a whole number "
                                     '(e.g. "a b"~3)')
            proximity = int(s[j + 1:k])
            if proximity < 1:
                self.err(j, f"proximity ~{s[j + 1:k]} must be at least 1")
            elif words == 1:
                self.err(i, "proximity (~N) needs a phrase of two or more words")
            j = k
        self.expect_delim(j, "a quoted phrase")
        return Phrase(text, fold, proximity, col=start + 1), j

    def keyword(self, i: int, word: str, *, fold: bool, col: int) -> Keyword:
        if _TRAILING_PROXIMITY_RE.search(word):
            self.err(i, f"{word!r}: proximity '~N' applies to a quoted phrase, e.g. \"a b\"~3")
            return Keyword(word, fold, False, col=col)
        prefix = word.endswith("*")
        text = word[:-1] if prefix else word
        if "*" in text:
            self.err(i, f"{word!r}: '*' is allowed only once, at the end of a keyword")
        elif prefix:
            if not all(_is_word_char(ch) for ch in text):
                self.err(i, f"{word!r}: a prefix (word*) must be letters, digits or '_' only")
            elif len(text) < 3:
                self.err(i, f"{word!r}: a prefix needs at least 3 characters before '*'")
            elif any(_is_cjk(ch) for ch in text):
                self.err(i, f"{word!r}: prefix matching does not apply to CJK text")
        elif _count_tokens(text) == 0:
            self.err(i, f"keyword {word!r} has no letters, digits or emoji to match")
        return Keyword(text, fold, prefix, col=col)

    def sigil(self, i: int, sigil: str, value: str) -> Op:
        name = _SIGILS[sigil]
        v: object = value
        if name == "hashtag":
            if not all(_is_word_char(ch) for ch in value):
                self.err(i + 1, f"bad hashtag #{value}: letters, digits and '_' only")
        elif name == "cashtag":
            if not _CASHTAG_RE.match(value):
                self.err(i + 1, f"bad cashtag ${value}: a letter, then letters, digits or '_' "
                                "(e.g. $TWTR, $BRK.A)")
        else:
            v = self.user(i + 1, "@", value)
        return Op(name, v, col=i + 1)

    def user(self, i: int, what: str, value: str) -> object:
        if _UINT_RE.match(value):
            uid = int(value)
            if uid > _INT64_MAX:
                self.err(i, f"{what}{value}: user id too large")
            return uid
        if not _USER_RE.match(value):
            self.err(i, f"bad user {what}{value}: a screen name (letters, digits, '_') "
                        "or a numeric user id")
        return value

    def operator(self, i: int, j: int, out: list) -> int:
        """``s[i:j]`` is ``name:``."""
        s, n = self.s, self.n
        name = s[i:j - 1]
        col = i + 1
        if name == "fold":
            node, k = self.fold_term(i, j)
            out.append((_TERM, col, node))
            return k
        if name not in _OPERATORS:
            k = self.quoted(j)[1] if j < n and s[j] == '"' else self.bare(j)
            hint = (f"; operator names are lower-case ({name.lower()}:)"
                    if name.lower() in _OPERATORS or name.lower() == "fold"
                    else f'; to match the text, quote it: "{s[i:k]}"')
            self.err(i, f"unknown operator {name}:{hint}")
            out.append((_TERM, col, Op(name, s[j:k], col=col)))
            return k
        op = _OPERATORS[name]
        if op in _GEO:
            value, k = self.geo(i, j, op)
        elif j < n and s[j] == '"':
            if op not in _QUOTABLE:
                raise _Syntax(j + 1, f"{name}: cannot take a quoted value")
            text, k = self.quoted(j)
            if k < n and s[k] == "~":
                raise _Syntax(k + 1, "proximity '~N' applies only to a phrase")
            self.expect_delim(k, "a quoted value")
            if not text.strip():
                self.err(j, f"{name}: has an empty value")
                value = text
            else:
                value = self.op_value(j, op, text)
        else:
            k = self.bare(j)
            if k == j:
                raise _Syntax(col, f"{name}: needs a value right after the ':' (no space)")
            value = self.op_value(j, op, s[j:k])
        out.append((_TERM, col, Op(op, value, col=col)))
        return k

    def fold_term(self, i: int, j: int) -> tuple[Node, int]:
        s, n = self.s, self.n
        if j < n and s[j] == '"':
            return self.phrase(i, j, fold=True)
        k = self.bare(j)
        word = s[j:k]
        if not word:
            raise _Syntax(i + 1, "fold: needs a keyword or a quoted phrase right after it")
        m = _OP_RE.match(s, j)
        if word in ("OR", "AND") or word[0] in "-#@$" or (m and not s.startswith("//", m.end())):
            raise _Syntax(j + 1, f"fold: applies to a keyword or a quoted phrase, not {word!r}")
        return self.keyword(j, word, fold=True, col=i + 1), k

    def op_value(self, j: int, op: str, text: str) -> object:
        """Validate and canonicalise the value of a non-geo operator; ``j`` its index."""
        if op in ("from", "to", "retweets_of"):
            return self.user(j, f"{op}:", text)
        if op in ("url", "bio", "bio_name", "bio_location"):
            if _count_tokens(text) == 0:
                self.err(j, f"{op}:{text}: no letters, digits or emoji to match")
            return text
        if op in ("url_contains", "contains", "source"):
            return text
        if op == "lang":
            if not _LANG_RE.match(text):
                self.err(j, f"bad language code lang:{text}: two or three letters (en, und), "
                            "or a BCP 47 tag such as zh-cn")
            return text.lower()
        if op == "has":
            v = text.lower()
            if v not in HAS_VALUES:
                self.err(j, f"bad has:{text}: one of " + ", ".join(sorted(HAS_VALUES)))
            return v
        if op == "is":
            v = text.lower()
            if v not in IS_VALUES:
                self.err(j, f"bad is:{text}: one of " + ", ".join(sorted(IS_VALUES)))
            return v
        if op == "place_country":
            if not _COUNTRY_RE.match(text):
                self.err(j, f"bad place_country:{text}: a two-letter ISO country code (US, GB)")
            return text.upper()
        if op == "sample":
            if not _UINT_RE.match(text) or not 1 <= int(text) <= 100:
                self.err(j, f"bad sample:{text}: a whole percentage from 1 to 100")
                return text
            return int(text)
        if op == "followers_count":
            m = _RANGE_RE.match(text)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi:
                    self.err(j, f"followers_count:{text}: the lower bound is above the upper")
                return (lo, hi)
            if _UINT_RE.match(text):
                return (int(text), None)
            self.err(j, f"bad followers_count:{text}: N (N or more) or N..M, "
                        "whole numbers of 0 or more")
            return text
        raise AssertionError(op)  # pragma: no cover

    def geo(self, i: int, j: int, op: str) -> tuple[object, int]:
        """``bounding_box:[w s e n]`` / ``point_radius:[lon lat r]``; ``s[j]`` should be '['."""
        s, n = self.s, self.n
        if j >= n or s[j] != "[":
            shape = "[west south east north]" if op == "bounding_box" else "[lon lat radius]"
            raise _Syntax(j + 1, f"{op}: needs {shape} right after the ':'")
        k = s.find("]", j + 1)
        if k < 0:
            raise _Syntax(j + 1, "unclosed '['")
        end = k + 1
        self.expect_delim(end, f"{op}:[...]")
        parts: list[tuple[int, str]] = []        # (index, text)
        p = j + 1
        while p < k:
            if s[p].isspace():
                p += 1
                continue
            q = p
            while q < k and not s[q].isspace():
                q += 1
            parts.append((p, s[p:q]))
            p = q
        want = 4 if op == "bounding_box" else 3
        if len(parts) != want:
            shape = "[west south east north]" if op == "bounding_box" else "[lon lat radius]"
            self.err(j, f"{op}: needs {shape}: {want} values separated by spaces, "
                        f"got {len(parts)}")
            return s[j:end], end
        nums: list[float] = []
        ok = True
        for idx, (p, text) in enumerate(parts):
            if op == "point_radius" and idx == 2:
                m = _RADIUS_RE.match(text)
                if not m:
                    self.err(p, f"bad radius {text!r}: a number followed by mi or km (e.g. 10km)")
                    ok = False
                    continue
                r = float(m.group(1)) * (KM_PER_MILE if m.group(2) == "mi" else 1.0)
                if r <= 0:
                    self.err(p, f"radius {text} must be more than 0")
                    ok = False
                elif r > MAX_GEO_KM + _GEO_SLACK_KM:
                    self.err(p, f"radius {text} is over 25 miles ({MAX_GEO_KM:g} km)")
                    ok = False
                nums.append(r)
                continue
            if not _NUMBER_RE.match(text):
                self.err(p, f"bad coordinate {text!r}: a decimal number of degrees")
                ok = False
                continue
            x = float(text)
            is_lon = idx % 2 == 0
            lim = 180.0 if is_lon else 90.0
            if not -lim <= x <= lim:
                self.err(p, f"{'longitude' if is_lon else 'latitude'} {text} is outside "
                            f"-{lim:g}..{lim:g}")
                ok = False
            nums.append(x)
        if not ok:
            return s[j:end], end
        if op == "point_radius":
            return (nums[0], nums[1], nums[2]), end
        west, south, east, north = nums
        if west >= east:
            self.err(j, f"bounding_box: west {west:g} must be less than east {east:g}")
            ok = False
        if south >= north:
            self.err(j, f"bounding_box: south {south:g} must be less than north {north:g}")
            ok = False
        if ok:
            sides = (("south", _haversine_km(west, south, east, south)),
                     ("north", _haversine_km(west, north, east, north)),
                     ("west/east", _haversine_km(west, south, west, north)))
            side, km = max(sides, key=lambda t: t[1])
            if km > MAX_GEO_KM + _GEO_SLACK_KM:
                self.err(j, f"bounding_box: the {side} side is {km:.1f} km "
                            f"({km / KM_PER_MILE:.1f} mi), over the 25-mile limit")
        return (west, south, east, north), end


def _haversine_km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


# --------------------------------------------------------------------------------------------
# parser


class _Parser:
    def __init__(self, tokens: list[tuple]):
        self.toks = tokens
        self.pos = 0

    def peek(self) -> tuple:
        return self.toks[self.pos]

    def take(self) -> tuple:
        t = self.toks[self.pos]
        self.pos += 1
        return t

    def rule(self) -> Node:
        kind, col, _ = self.peek()
        if kind == _END:
            raise _Syntax(1, "empty rule")
        node = self.or_expr(None)
        kind, col, _ = self.peek()
        if kind == _RP:
            raise _Syntax(col, "unmatched ')'")
        assert kind == _END
        return node

    def or_expr(self, lparen: int | None) -> Node:
        branches = [self.and_expr(lparen)]
        while self.peek()[0] == _OR:
            _, col, _ = self.take()
            if self.peek()[0] in (_END, _RP, _OR):
                raise _Syntax(col, "dangling OR: it needs a term on both sides")
            branches.append(self.and_expr(lparen))
        if len(branches) == 1:
            return branches[0]
        flat: list[Node] = []
        for b in branches:
            flat.extend(b.children if isinstance(b, Or) else (b,))
        return Or(tuple(flat), col=lparen if lparen is not None else branches[0].col)

    def and_expr(self, lparen: int | None) -> Node:
        items: list[Node] = []
        while True:
            kind, col, _ = self.peek()
            if kind in (_END, _RP, _OR):
                break
            items.append(self.unary())
        if not items:
            kind, col, _ = self.peek()
            if kind == _OR:
                raise _Syntax(col, "dangling OR: it needs a term on both sides")
            if kind == _RP and lparen is not None:
                raise _Syntax(lparen, "empty group '()'")
            if kind == _RP:
                raise _Syntax(col, "unmatched ')'")
            raise _Syntax(col, "empty rule")             # pragma: no cover (caught in rule())
        if len(items) == 1:
            return items[0]
        flat: list[Node] = []
        for it in items:
            flat.extend(it.children if isinstance(it, And) else (it,))
        return And(tuple(flat), col=lparen if lparen is not None else items[0].col)

    def unary(self) -> Node:
        kind, col, _ = self.peek()
        if kind == _NEG:
            self.take()
            nkind, ncol, _ = self.peek()
            if nkind in (_OR, _AND):
                raise _Syntax(col, f"'-' must be followed by a term, not {nkind}")
            return Not(self.primary(), col=col)
        return self.primary()

    def primary(self) -> Node:
        kind, col, node = self.take()
        if kind == _TERM:
            return node
        if kind == _LP:
            inner = self.or_expr(col)
            rkind, _, _ = self.take()
            if rkind != _RP:
                raise _Syntax(col, "unclosed '('")
            return inner
        if kind == _AND:
            raise _Syntax(col, "explicit AND is not an operator: use a space")
        raise AssertionError(kind)  # pragma: no cover


# --------------------------------------------------------------------------------------------
# structural checks


def _standalone(node: Node) -> bool:
    """Every way to match ``node`` includes a positive term that can stand alone."""
    if isinstance(node, (Keyword, Phrase)):
        return True
    if isinstance(node, Op):
        return node.name not in NON_STANDALONE_OPS
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_standalone(c) for c in node.children)
    return all(_standalone(c) for c in node.children)


def _positive_ops(node: Node, out: list[str]) -> None:
    if isinstance(node, Op):
        if node.name in NON_STANDALONE_OPS and node.name not in out:
            out.append(node.name)
    elif isinstance(node, (And, Or)):
        for c in node.children:
            _positive_ops(c, out)


def _standalone_problem(node: Node, in_or: bool) -> RuleError | None:
    if _standalone(node):
        return None
    if isinstance(node, Or):
        for c in node.children:
            e = _standalone_problem(c, True)
            if e is not None:
                return e
        raise AssertionError("an Or that is not standalone has a branch that is not")  # pragma: no cover
    where = "this OR alternative" if in_or else "the rule"
    names: list[str] = []
    _positive_ops(node, names)
    if not names:
        return RuleError(f"{where} has only negated terms: add a keyword, phrase or "
                         "operator to match (negations only remove matches)", node.col)
    ops = ", ".join(n + ":" for n in names)
    return RuleError(f"{ops} cannot stand alone: {where} needs a keyword, phrase or standalone "
                     "operator (such as from: or #hashtag)", node.col)


def _negated_alternatives(node: Node, out: list[RuleError]) -> None:
    if isinstance(node, Or):
        for c in node.children:
            if isinstance(c, Not):
                out.append(RuleError("a negated term cannot be an OR alternative "
                                     "(negate outside the group: -(a OR b))", c.col))
    if isinstance(node, (And, Or)):
        for c in node.children:
            _negated_alternatives(c, out)
    elif isinstance(node, Not):
        _negated_alternatives(node.child, out)


# --------------------------------------------------------------------------------------------
# public


def _analyse(value: str, fold: bool = False) -> tuple[Node | None, list[RuleError]]:
    """The AST (None after a syntax error) and every problem found, by column."""
    if not isinstance(value, str):
        raise TypeError(f"a rule value must be a str, not {type(value).__name__}")
    if len(value) > MAX_RULE_LENGTH:
        return None, [RuleError(f"the rule is {len(value):,} characters long, over the "
                                f"{MAX_RULE_LENGTH:,} limit", MAX_RULE_LENGTH + 1)]
    lexer = _Lexer(value, fold)
    node = None
    try:
        node = _Parser(lexer.tokens()).rule()
    except _Syntax as e:
        errors = lexer.errors + [RuleError(e.reason, e.col)]
    else:
        errors = list(lexer.errors)
        structural: list[RuleError] = []
        _negated_alternatives(node, structural)
        if not structural:
            e2 = _standalone_problem(node, False)
            if e2 is not None:
                structural.append(e2)
        errors += structural
    errors.sort(key=lambda e: e.col or 0)
    return node, errors


def parse(value: str, *, fold: bool = False) -> Node:
    """Parse a rule value into its AST.  Raises :class:`RuleError` (the leftmost problem).

    ``fold=True`` makes every keyword and phrase accent-insensitive (``Rule.fold``)."""
    node, errors = _analyse(value, fold)
    if errors:
        raise errors[0]
    assert node is not None
    return node


def check(rules: Iterable[Rule], *, where: Sequence[str] | None = None) -> list[RuleError]:
    """Every problem of a list of rules, in order: each rule's problems by column (all of them,
    not just the first) and duplicated ids.  Each error names its rule (``rule_id``) and its
    position (``index``).  ``where[i]``, when given, names rule i's place in messages
    ("line 7"); by default ``rules[i]``."""
    errors: list[RuleError] = []
    first: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if not isinstance(rule, Rule):
            raise TypeError(f"check() takes Rule objects, got {type(rule).__name__} at {i}")
        _, errs = _analyse(rule.value, rule.fold)
        errors.extend(e.for_rule(rule.id, i) for e in errs)
        if rule.id in first:
            j = first[rule.id]
            label = where[j] if where is not None else f"rules[{j}]"
            errors.append(RuleError(f"duplicate rule id (first used at {label})",
                                    rule_id=rule.id, index=i))
        else:
            first[rule.id] = i
    return errors
