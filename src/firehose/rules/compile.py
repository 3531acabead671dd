"""Compiling rules into an immutable snapshot the core matches batch after batch.

Each rule becomes a small postfix program over term hashes and column predicates, and a set of
*anchor* terms: terms one of which must occur in a tweet for the rule to match at all (taken
from its rarest clause). The snapshot keeps every rule's program and an anchor → rules
postings table; the core tokenises each tweet, looks its terms up in the postings to find the
candidate rules and runs only their programs. Rules with no anchor (``contains:`` alone, a
bounding box alone, ...) are run on every tweet.

Snapshots are immutable; :meth:`RuleSet.add` and :meth:`RuleSet.remove` return new ones that
reuse the compiled programs of the rules they keep, so changing a few rules of 100,000 costs the
few, plus a vectorised re-concatenation.
"""
from __future__ import annotations

import gc
import re
import struct
from array import array
from functools import lru_cache
from typing import Iterable, NamedTuple

import numpy as np
import pyarrow as pa

from .syntax import (_CASHTAG_RE, _INT64_MAX, _LANG_RE, _OP_RE, _UINT_RE, _USER_RE, HAS_VALUES,
                     IS_VALUES, MAX_RULE_LENGTH, And, Keyword, Not, Op, Or, Phrase, Rule,
                     RuleError, _is_word_char)
from .tokens import BIGRAM, CJK, NS, WORD, tables, term_hash, tokenize

__all__ = ["RuleSet", "compile_rule", "CompiledRule"]

# opcodes (mirrored in _core_match.pxi)
OP_TERM, OP_SEQ, OP_AND, OP_OR, OP_NOT = 1, 2, 3, 4, 5
OP_NOTNULL, OP_TRUE, OP_NONEMPTY, OP_LISTHAS, OP_RANGE = 6, 7, 8, 9, 10
OP_BBOX, OP_RADIUS, OP_SAMPLE, OP_CONTAINS, OP_URLCONTAINS = 11, 12, 13, 14, 15

# columns the predicates read (indices mirrored in the core)
C_RT, C_REPLY, C_QUOTE, C_COORD, C_PLACE, C_VERIFIED = 0, 1, 2, 3, 4, 5
C_URLS, C_MEDIA, C_MENTIONS, C_HASHTAGS, C_CASHTAGS, C_FOLLOWERS = 6, 7, 8, 9, 10, 11

#: extra namespaces for whole-value terms the core adds for every tweet
VALUE_NS = {
    "from": b"f", "from_id": b"fi", "to": b"to", "to_id": b"toi", "retweets_of": b"rt",
    "retweets_of_id": b"rti", "lang": b"lg", "place_country": b"pc", "source": b"src",
}

_FIELD_NS = {"bio": NS["bio"], "bio_name": NS["bio_name"], "bio_location": NS["bio_location"],
             "url": NS["url"]}


def _lower(s: str) -> str:
    """Lower-case code point by code point, as the core does (docs/rules.md)."""
    if s.isascii():
        return s.lower()              # (the table lower-cases ASCII as str.lower does)
    _, lower, _ = tables()
    return "".join(chr(lower[ord(c)]) if ord(c) < len(lower) else c for c in s)


def _i64(h: int) -> int:
    return h - (1 << 64) if h >= 1 << 63 else h


def _f64_bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


class CompiledRule(NamedTuple):
    """One rule's compiled form (immutable; a named tuple because a bulk compile makes one per
    rule, and a frozen dataclass took a quarter of the fast paths' time to construct)."""
    rule: Rule
    program: bytes          # int64 words, native byte order (see _words)
    strings: tuple          # byte strings the program refers to (by index)
    anchors: bytes | None   # sorted term hashes, uint64 native (None: evaluate on every tweet)
    prefix_lengths: frozenset
    needs_fold: bool
    namespaces: frozenset = frozenset({b"t"})   # term namespaces the program looks up


def _words(prog) -> bytes:
    """A program's int64 words packed, as RuleSet concatenates them. Bytes, not a tuple: a set
    of 100k rules would otherwise hand the garbage collector 200k more tuples to scan once
    (a pass of 0.05-0.3 s on this VM) and _build 300k Python ints to convert."""
    return array("q", prog).tobytes()


def _anchor_bytes(anchors) -> bytes | None:
    """The (hash, estimate) anchors of a rule as its sorted distinct hashes, packed uint64."""
    return None if anchors is None else array("Q", sorted({h for h, _ in anchors})).tobytes()


_TERM_WORDS = struct.Struct("=qq").pack       # OP_TERM, hash: one term's program
_U64 = struct.Struct("=Q").pack


#: which term namespaces each bit of the core's field mask produces (mirrored in the core)
FIELD_BITS = {b"t": 0, b"tf": 0, b"p": 0, b"pf": 0, b"b": 1, b"bn": 2, b"bl": 3, b"u": 4,
              b"h": 5, b"m": 6, b"c": 7, b"mi": 8, b"f": 9, b"fi": 10, b"to": 11, b"toi": 12,
              b"rt": 13, b"rti": 14, b"lg": 15, b"pc": 16, b"src": 17}


class _Compiler:
    def __init__(self, rule: Rule):
        self.rule = rule
        self.prog: list[int] = []
        self.strings: list[bytes] = []
        self.prefix_lengths: set[int] = set()
        self.needs_fold = False
        self.namespaces: set[bytes] = set()

    # -- helpers -----------------------------------------------------------------------------
    def string(self, s: str) -> int:
        self.strings.append(s.encode("utf-8", "surrogatepass"))
        return len(self.strings) - 1

    def term(self, ns: bytes, token: str) -> tuple:
        self.namespaces.add(ns)
        h = term_hash(ns, token)
        self.prog += [OP_TERM, _i64(h)]
        return ((h, _estimate(ns, token)),)

    def text_terms(self, text: str, ns: bytes, fold: bool, proximity: int | None = None,
                   prefix: bool = False):
        """Keyword / phrase / proximity on a tokenised field. Returns the anchor hashes."""
        if fold:
            self.needs_fold = True
            if ns == NS["text"]:
                ns = NS["fold"]
        toks = tokenize(text, fold=fold)
        # CJK runs: bigrams, or the unigram of a lone character
        picked = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == CJK:
                run = [t]
                j = i + 1
                # U B U B U: a bigram at the position of the last unigram links the next one
                while (j + 1 < len(toks) and toks[j].kind == BIGRAM
                       and toks[j].pos == run[-1].pos and toks[j + 1].kind == CJK):
                    run.append(toks[j + 1])
                    j += 2
                if len(run) == 1:
                    picked.append((t.text, t.pos))
                else:
                    picked += [(a.text + b.text, a.pos) for a, b in zip(run, run[1:])]
                i = j
                continue
            if t.kind != BIGRAM:
                picked.append((t.text, t.pos))
            i += 1
        if not picked:
            raise RuleError(f"{text!r} has no token to match", rule_id=self.rule.id)
        if prefix:
            word = picked[-1][0]
            n = len(word)
            pns = NS["fold_prefix"] if fold else NS["prefix"]
            self.prefix_lengths.add(n)
            if len(picked) > 1:
                raise RuleError(f"a prefix must be one word: {text!r}", rule_id=self.rule.id)
            return self.term(pns, word)
        self.namespaces.add(ns)
        words, anchors = _text_program(ns, picked, proximity)
        self.prog += words
        return anchors

    # -- the tree ----------------------------------------------------------------------------
    def node(self, n) -> tuple | None:
        """Emit n's program; return its anchor set (None: cannot be anchored)."""
        fold_all = self.rule.fold
        if isinstance(n, Keyword):
            return self.text_terms(n.text, NS["text"], n.fold or fold_all, prefix=n.prefix)
        if isinstance(n, Phrase):
            return self.text_terms(n.text, NS["text"], n.fold or fold_all, n.proximity)
        if isinstance(n, Not):
            self.node(n.child)
            self.prog.append(OP_NOT)
            return None
        if isinstance(n, (And, Or)):
            anchors = [self.node(c) for c in n.children]
            self.prog += [OP_AND if isinstance(n, And) else OP_OR, len(n.children)]
            if isinstance(n, Or):
                if any(a is None for a in anchors):
                    return None
                return tuple(set().union(*anchors))
            # an AND needs all its children: anchor on the child whose anchors are rarest
            usable = [a for a in anchors if a is not None]
            return min(usable, key=lambda a: sum(e for _, e in a)) if usable else None
        if isinstance(n, Op):
            return self.op(n)
        raise TypeError(f"unknown rule node {n!r}")

    def op(self, n: Op):
        name, v = n.name, n.value
        if name in ("hashtag", "cashtag"):
            return self.term(NS[name], _lower(v))
        if name == "mention":
            if isinstance(v, int):
                return self.term(NS["mention_id"], str(v))
            return self.term(NS["mention"], _lower(v))
        if name in ("from", "to", "retweets_of"):
            if isinstance(v, int):
                return self.term(VALUE_NS[name + "_id"], str(v))
            return self.term(VALUE_NS[name], _lower(v))
        if name in ("lang", "place_country", "source"):
            return self.term(VALUE_NS[name], _lower(v))
        if name in _FIELD_NS:
            return self.text_terms(v, _FIELD_NS[name], False)
        if name in ("contains", "url_contains"):
            self.prog += [OP_CONTAINS if name == "contains" else OP_URLCONTAINS,
                          self.string(_lower(v)), 0]
            return None
        if name == "is":
            if v == "verified":
                self.prog += [OP_TRUE, C_VERIFIED]
            else:
                self.prog += [OP_NOTNULL, {"retweet": C_RT, "reply": C_REPLY, "quote": C_QUOTE}[v]]
            return None
        if name == "has":
            if v == "geo":
                self.prog += [OP_NOTNULL, C_COORD, OP_NOTNULL, C_PLACE, OP_OR, 2]
            elif v == "images":
                self.prog += [OP_LISTHAS, C_MEDIA, self.string("photo"), 0]
            elif v == "videos":
                self.prog += [OP_LISTHAS, C_MEDIA, self.string("video"), 0,
                              OP_LISTHAS, C_MEDIA, self.string("animated_gif"), 0, OP_OR, 2]
            else:
                col = {"links": C_URLS, "media": C_MEDIA, "mentions": C_MENTIONS,
                       "hashtags": C_HASHTAGS, "symbols": C_CASHTAGS}[v]
                self.prog += [OP_NONEMPTY, col]
            return None
        if name == "followers_count":
            lo, hi = v
            self.prog += [OP_RANGE, C_FOLLOWERS, int(lo), (1 << 63) - 1 if hi is None else int(hi)]
            return None
        if name == "bounding_box":
            self.prog += [OP_BBOX] + [_f64_bits(float(x)) for x in v]
            return None
        if name == "point_radius":
            self.prog += [OP_RADIUS] + [_f64_bits(float(x)) for x in v]
            return None
        if name == "sample":
            self.prog += [OP_SAMPLE, int(v)]
            return None
        raise RuleError(f"operator {name}: is not supported by the matcher", n.col,
                        rule_id=self.rule.id)


def _text_program(ns: bytes, picked: list, proximity: int | None = None) -> tuple:
    """(program words, anchors) of a keyword / phrase / proximity whose (token, position) list
    is ``picked``: one TERM for one token, else a SEQ -- a phrase (in_order == -1: token i at
    relative position rel[i]) or a proximity (all tokens in one field, span <= in_order in the
    rule's order, <= other otherwise) -- anchored on its rarest-looking token (every token of a
    phrase is required)."""
    if len(picked) == 1:
        tok = picked[0][0]
        h = term_hash(ns, tok)
        return (OP_TERM, _i64(h)), ((h, _estimate(ns, tok)),)
    if proximity is None:
        in_order = other = -1
    else:
        in_order, other = proximity, proximity - 2
    words = [OP_SEQ, len(picked), in_order, other]
    first = picked[0][1]
    best = None
    for i, (tok, pos) in enumerate(picked):
        h = term_hash(ns, tok)
        words += (_i64(h), pos - first)
        e = _estimate(ns, tok)
        if best is None or e < best[1]:        # the first of the rarest
            best = (h, e)
    return tuple(words), (best,)


def _sample_nodes(n) -> list:
    if isinstance(n, Op) and n.name == "sample":
        return [n]
    if isinstance(n, (And, Or)):
        return [s for c in n.children for s in _sample_nodes(c)]
    return []


_SIMPLE = re.compile(r"[A-Za-z0-9_]+(?: [A-Za-z0-9_]+)*")
_TEXT_NS = frozenset({b"t"})
_NO_PREFIX: frozenset = frozenset()


def _simple_words(rule: Rule) -> list[str] | None:
    """The words of the commonest rules -- ASCII words separated by single spaces, without
    OR/AND, not folded -- or None for any other rule."""
    v = rule.value
    if rule.fold or len(v) > MAX_RULE_LENGTH or not _SIMPLE.fullmatch(v):
        return None
    words = v.split(" ")
    if "OR" in words or "AND" in words:
        return None
    return words


def _fast_tree(rule: Rule):
    """The AST the parser gives a simple rule (tests check that it does), or None."""
    words = _simple_words(rule)
    if words is None:
        return None
    if len(words) == 1:
        return Keyword(words[0])
    return And(tuple(Keyword(w) for w in words))


# Anchor choice: an estimate of how common a term is (smaller is rarer). Without a sample of
# the stream, longer tokens are taken as rarer, and whole-value terms that almost every tweet
# has (language, source app, country) as common.
_COMMON_NS = (b"lg", b"src", b"pc")


def _estimate(ns: bytes, token: str) -> float:
    if ns in _COMMON_NS:
        return 1.0
    return 1.0 / (1 + len(token)) ** 2


def _compile_simple(rule: Rule) -> CompiledRule | None:
    """ASCII words joined by spaces compile straight to TERM ... AND, anchored on the rarest
    looking word: what the general path gives for them (tests compare), 10x sooner."""
    words = _simple_words(rule)
    if words is None:
        return None
    if len(words) == 1:
        tok = words[0].lower()
        h = term_hash(b"t", tok)
        return CompiledRule(rule, _TERM_WORDS(OP_TERM, _i64(h)), (), _U64(h), _NO_PREFIX, False,
                            _TEXT_NS)
    words = [w.lower() for w in words]
    hashes = [term_hash(b"t", w) for w in words]
    prog = []
    for h in hashes:
        prog += [OP_TERM, _i64(h)]
    if len(words) > 1:
        prog += [OP_AND, len(words)]
    # rarest-looking = longest (ties: the first), as _estimate ranks text tokens
    k = 0
    for i in range(1, len(words)):
        if len(words[i]) > len(words[k]):
            k = i
    return CompiledRule(rule, _words(prog), (), _U64(hashes[k]), _NO_PREFIX, False, _TEXT_NS)


# -- the flat fast path --------------------------------------------------------------------
# Most rules that are not plain words are still flat: keywords (any letters), quoted phrases,
# #hashtags, @mentions, $cashtags, lang:/is:/has:, each maybe negated, joined by spaces and OR,
# with groups in parentheses. _compile_flat recognises such rules when they are certainly valid
# and compiles them without the parser's AST; anything else, or anything the parser might
# reject, goes to the parser. It builds the same program, anchors and namespaces as the general
# path (tests compare the two on generated rules of every shape it takes).

# one lexeme: "(", ")", or an optionally negated term followed by a delimiter -- a phrase
# without backslashes, a sigil and its value, or a bare word (not starting with - # @ $) --
# or else any other character (the last group: the rule is not flat). Every character but a
# space is in some lexeme, so findall() cuts a rule as matching lexeme after lexeme would.
_FLAT_TOKENS = re.compile(r' *(?:(\()|(\))|(-?)(?:"([^"\\]*)"|([#@$])([^ ()"]+)'
                          r'|([^ ()"#@$-][^ ()"]*))(?=[ ()]|\Z)|([^ ]))')
_OTHER_SPACE = re.compile(r"[^\S ]")          # whitespace other than " " (\s is str.isspace)
_ASCII_WORD_RE = re.compile(r"[A-Za-z0-9_]+")
_FLAT_OPS = ("lang", "is", "has")

# tree nodes of the flat path: (kind, payload, stands alone); a leaf's payload is the tuple
# _flat_node gives, a _NOT's its child, an _AND's / _OR's the list of children
_LEAF, _NOT, _AND, _OR = 0, 1, 2, 3


def _flat_node(key: str):
    """The tree node of one term, ``key`` as written (a phrase's text after a '"', a sigil's
    value after the sigil): (_LEAF, leaf, stands alone) with leaf = (program words, anchors,
    namespace or None, stands alone, the namespaces of a rule of this term alone); False when
    the parser would reject the term or it is not flat."""
    kind = key[0]
    if kind in _SIGIL_KINDS:
        leaf = _make_flat_leaf(kind, key[1:])
    else:
        leaf = _make_flat_leaf("k", key)
    if leaf is None:
        return False
    ns = leaf[2]
    return (_LEAF, leaf + (_ns_set(() if ns is None else (ns,)),), leaf[3])


_SIGIL_KINDS = frozenset('"#@$')      # (a bare word never starts with one of them)


@lru_cache(maxsize=1)
def _word_run():
    """A regex matching a run of word characters (class WORD of the tokeniser's table: not
    CJK, not a symbol)."""
    runs = re.finditer(re.escape(bytes([WORD])) + b"+", tables()[0])
    return re.compile("[" + "".join(f"\\U{m.start():08x}-\\U{m.end() - 1:08x}" for m in runs)
                      + "]+")


def _text_leaf(text: str, ns: bytes):
    """A keyword or phrase (not folded, no proximity): tokenised as tokenize() would -- its
    ASCII branch, or a single word of word characters -- else by tokenize() itself."""
    if text.isascii():
        low = text.lower()
        if _ASCII_WORD_RE.fullmatch(low):
            picked = ((low, 0),)
        else:
            picked = [(t, i) for i, t in enumerate(_ASCII_WORD_RE.findall(low))]
    elif _word_run().fullmatch(text):
        picked = [(_lower(text), 0)]
    else:
        if not any(t.kind != BIGRAM for t in tokenize(text)):
            return None                             # "no letters, digits or emoji to match"
        c = _Compiler(_NO_RULE)
        anchors = c.text_terms(text, ns, False)
        return tuple(c.prog), anchors, ns, True
    if not picked:
        return None
    words, anchors = _text_program(ns, picked)
    return words, anchors, ns, True


def _value_leaf(ns: bytes, value: str, standalone: bool = True):
    h = term_hash(ns, value)
    return (OP_TERM, _i64(h)), ((h, _estimate(ns, value)),), ns, standalone


def _make_flat_leaf(kind: str, text: str):
    if kind == "k":                                    # a bare word
        if "*" in text or "~" in text:                 # prefix / misplaced proximity
            return None
        if ":" in text:
            m = _OP_RE.match(text)
            if m and not text.startswith("//", m.end()):
                return _op_leaf(text[:m.end() - 1], text[m.end():])
        return _text_leaf(text, NS["text"])
    if kind == '"':
        if not text.strip():
            return None                                # "empty phrase"
        return _text_leaf(text, NS["text"])
    if kind == "#":
        if _ASCII_WORD_RE.fullmatch(text) is None and not all(map(_is_word_char, text)):
            return None
        return _value_leaf(NS["hashtag"], _lower(text))
    if kind == "$":
        if _CASHTAG_RE.match(text) is None:
            return None
        return _value_leaf(NS["cashtag"], _lower(text))
    if kind == "@":
        if _UINT_RE.match(text):
            uid = int(text)
            if uid > _INT64_MAX:
                return None
            return _value_leaf(NS["mention_id"], str(uid))
        if _USER_RE.match(text) is None:
            return None
        return _value_leaf(NS["mention"], _lower(text))
    raise AssertionError(kind)  # pragma: no cover


def _op_leaf(name: str, value: str):
    if not value or name not in _FLAT_OPS:
        return None
    if name == "lang":
        if _LANG_RE.match(value) is None:
            return None
        return _value_leaf(VALUE_NS["lang"], _lower(value.lower()), False)
    v = value.lower()
    if name == "is":
        if v not in IS_VALUES:
            return None
        if v == "verified":
            return (OP_TRUE, C_VERIFIED), None, None, False
        return (OP_NOTNULL, {"retweet": C_RT, "reply": C_REPLY, "quote": C_QUOTE}[v]), None, \
            None, False
    if v not in HAS_VALUES or v in ("images", "videos"):   # (those two use strings)
        return None
    if v == "geo":
        return (OP_NOTNULL, C_COORD, OP_NOTNULL, C_PLACE, OP_OR, 2), None, None, False
    col = {"links": C_URLS, "media": C_MEDIA, "mentions": C_MENTIONS,
           "hashtags": C_HASHTAGS, "symbols": C_CASHTAGS}[v]
    return (OP_NONEMPTY, col), None, None, False


class _NotFlat(Exception):
    pass


def _flat_or(toks: list, i: int, end: int):
    """or_expr over toks[i:end]: (node, next index); raises _NotFlat where the parser would
    reject the rule."""
    node, i = _flat_and(toks, i, end)
    if i >= end or toks[i] != "OR":
        return node, i
    branches = [node]
    while i < end and toks[i] == "OR":
        i += 1
        node, i = _flat_and(toks, i, end)       # (a dangling OR leaves an empty branch)
        branches.append(node)
    flat = []
    for b in branches:
        if b[0] == _OR:
            flat += b[1]
        elif b[0] == _NOT:
            raise _NotFlat                      # "a negated term cannot be an OR alternative"
        else:
            flat.append(b)
    return (_OR, flat, all(c[2] for c in flat)), i


def _flat_and(toks: list, i: int, end: int):
    items = []
    while i < end:
        t = toks[i]
        if t == "OR" or t == ")":
            break
        if t == "(":
            node, i = _flat_or(toks, i + 1, end)
            if i >= end or toks[i] != ")":
                raise _NotFlat                  # unclosed '('
            i += 1
        else:
            node = t
            i += 1
        items.append(node)
    if not items:
        raise _NotFlat                          # empty rule / group, dangling OR, ...
    if len(items) == 1:
        return items[0], i
    flat = []
    for it in items:
        if it[0] == _AND:
            flat += it[1]
        else:
            flat.append(it)
    return (_AND, flat, any(c[2] for c in flat)), i


def _flat_emit(node, prog: list, nss: set):
    """_Compiler.node for a flat tree: emit the program, return the anchors."""
    kind, x, _ = node
    if kind == _LEAF:
        prog += x[0]
        if x[2] is not None:
            nss.add(x[2])
        return x[1]
    if kind == _NOT:
        _flat_emit(x, prog, nss)
        prog.append(OP_NOT)
        return None
    anchors = [_flat_emit(c, prog, nss) for c in x]
    if kind == _OR:
        prog += (OP_OR, len(x))
        if any(a is None for a in anchors):
            return None
        return tuple(set().union(*anchors))
    prog += (OP_AND, len(x))
    usable = [a for a in anchors if a is not None]
    return min(usable, key=_anchor_weight) if usable else None


def _anchor_weight(a) -> float:
    return sum(e for _, e in a)


_NS_SETS: dict = {}


def _ns_set(nss) -> frozenset:
    """One shared frozenset per distinct set of namespaces (there are a handful)."""
    fs = frozenset(nss)
    return _NS_SETS.setdefault(fs, fs)


def _compile_flat(rule: Rule, cache: dict | None = None) -> CompiledRule | None:
    """A flat rule (see above) compiled without the parser, or None."""
    v = rule.value
    if rule.fold or len(v) > MAX_RULE_LENGTH or _OTHER_SPACE.search(v):
        return None
    if cache is None:
        cache = {}
    toks = []
    plain = True                                # no parentheses, no OR
    for lp, rp, neg, phrase, sigil, sval, word, other in _FLAT_TOKENS.findall(v):
        if other:
            return None
        if lp or rp:
            toks.append("(" if lp else ")")
            plain = False
            continue
        if word:
            if word == "OR" or word == "AND":
                if neg or word == "AND":
                    return None
                toks.append("OR")
                plain = False
                continue
            key = word
        elif sigil:
            key = sigil + sval
        else:
            key = '"' + phrase
        node = cache.get(key)
        if node is None:
            node = cache[key] = _flat_node(key)
        if node is False:
            return None
        toks.append((_NOT, node, False) if neg else node)
    if plain:                                   # terms joined by spaces
        if not toks:
            return None
        tree = toks[0] if len(toks) == 1 else (_AND, toks, any(t[2] for t in toks))
    else:
        try:
            tree, i = _flat_or(toks, 0, len(toks))
        except _NotFlat:
            return None
        if i != len(toks):
            return None                         # an unmatched ')'
    if not tree[2]:
        return None                             # nothing that stands alone
    if tree[0] == _LEAF:                        # one term: its program as it is
        words, anchors, _, _, nss = tree[1]
        return CompiledRule(rule, _words(words), (), _anchor_bytes(anchors), _NO_PREFIX, False,
                            nss)
    prog: list = []
    nss = set()
    anchors = _flat_emit(tree, prog, nss)
    return CompiledRule(rule, _words(prog), (), _anchor_bytes(anchors), _NO_PREFIX, False,
                        _ns_set(nss))


_NO_RULE = Rule("-", "-")


def compile_rule(rule: Rule, *, fast: bool = True, cache: dict | None = None) -> CompiledRule:
    """Parse and compile one rule (raises RuleError naming the rule and column). ``fast=False``
    always takes the parser; ``cache`` (a dict kept across the rules of one bulk compile) lets
    rules that share terms compile each term once."""
    if fast:
        done = _compile_simple(rule)
        if done is None:
            done = _compile_flat(rule, cache)
        if done is not None:
            return done
    tree = rule.parse()
    c = _Compiler(rule)
    anchors = c.node(tree)
    # a positive sample: anywhere applies to the whole rule (docs/rules.md)
    top = tree.children if isinstance(tree, And) else (tree,)
    extra = [s for s in _sample_nodes(tree) if not any(s is t for t in top)]
    if extra:
        for s in extra:
            c.prog += [OP_SAMPLE, int(s.value)]
        c.prog += [OP_AND, 1 + len(extra)]
    return CompiledRule(rule, _words(c.prog), tuple(c.strings), _anchor_bytes(anchors),
                        frozenset(c.prefix_lengths), c.needs_fold, frozenset(c.namespaces))


class RuleSet:
    """An immutable, compiled set of rules: build once, match batch after batch.

    >>> rs = RuleSet([Rule("1", "apple OR banana", tag="fruit")])
    >>> rs.match(tweets)          # pyarrow.Table: row (int64), rule_id (string)
    >>> rs.annotate(tweets)       # tweets + matching_rules list<struct<id, tag>>
    """

    def __init__(self, rules: Iterable[Rule] = (), *, _compiled: dict | None = None):
        compiled: dict[str, CompiledRule] = dict(_compiled or {})
        errors = []
        terms: dict = {}      # terms compiled once for all the rules that share them
        gc_was = gc.isenabled()
        gc.disable()          # compiling makes many small objects and no cycles
        try:
            for r in rules:
                if r.id in compiled:
                    errors.append(RuleError(f"duplicate rule id {r.id!r}", rule_id=r.id))
                    continue
                try:
                    compiled[r.id] = compile_rule(r, cache=terms)
                except RuleError as e:
                    errors.append(e)
            del terms
            if errors:
                if len(errors) == 1:
                    raise errors[0]
                raise RuleError(f"{len(errors)} rules are invalid; the first: {errors[0]}",
                                rule_id=errors[0].rule_id) from errors[0]
            self._compiled = compiled
            self._order = list(compiled)
            self._build()
        finally:
            if gc_was:
                gc.enable()

    # ---------------------------------------------------------------------- snapshots
    def add(self, rules: Iterable[Rule]) -> "RuleSet":
        """A new snapshot with these rules added (the others are not recompiled)."""
        return RuleSet(rules, _compiled=self._compiled)

    def remove(self, ids: Iterable[str]) -> "RuleSet":
        """A new snapshot without the rules of these ids (unknown ids are an error)."""
        ids = set(ids)
        missing = ids - self._compiled.keys()
        if missing:
            raise KeyError(f"no such rule: {sorted(missing)[:5]}")
        return RuleSet((), _compiled={k: v for k, v in self._compiled.items() if k not in ids})

    def __len__(self) -> int:
        return len(self._order)

    @property
    def rules(self) -> list[Rule]:
        return [self._compiled[k].rule for k in self._order]

    @property
    def version(self) -> str:
        """A content hash of the snapshot (rule ids, values, tags and options, in order)."""
        import hashlib
        h = hashlib.sha256()
        for k in self._order:
            r = self._compiled[k].rule
            h.update(repr((r.id, r.value, r.tag, r.fold)).encode())
        return h.hexdigest()[:16]

    # ---------------------------------------------------------------------- the arrays
    def _build(self) -> None:
        crs = [self._compiled[k] for k in self._order]
        n = len(crs)
        # one pass over the rules (this runs for every snapshot, add and remove included):
        # programs, with string references rewritten to (offset, length) pairs of one pool;
        # the anchors -> rules pairs; rules without anchors, which run always; and the flags
        pool = bytearray()
        programs = []
        always = []
        anchors = []
        counts = []
        namespaces: dict[int, frozenset] = {}
        prefix_mask = 0
        needs_fold = False
        for i, c in enumerate(crs):
            words = c.program
            if c.strings:
                offs = []
                for s in c.strings:
                    offs.append((len(pool), len(s)))
                    pool += s
                words = _words(_relocate(array("q", words).tolist(), offs))
            programs.append(words)
            a = c.anchors
            if a is None:
                always.append(i)
                counts.append(0)
            else:
                anchors.append(a)
                counts.append(len(a) >> 3)
            if c.prefix_lengths:
                for k in c.prefix_lengths:
                    prefix_mask |= 1 << min(k, 63)
            if c.needs_fold:
                needs_fold = True
            namespaces[id(c.namespaces)] = c.namespaces
        self._prog_off = np.zeros(n + 1, np.int64)
        np.cumsum(np.fromiter(map(len, programs), np.int64, n) >> 3, out=self._prog_off[1:])
        self._prog = np.frombuffer(b"".join(programs), np.int64)
        self._pool = bytes(pool)
        # anchors -> rules (CSR, sorted by hash)
        h = np.frombuffer(b"".join(anchors), np.uint64)
        r = np.repeat(np.arange(n, dtype=np.int32), np.array(counts, np.int64))
        order = np.lexsort((r, h))
        h, r = h[order], r[order]
        uniq, starts = np.unique(h, return_index=True)
        self._anchor_hash = uniq
        self._anchor_off = np.append(starts, len(h)).astype(np.int64)
        self._anchor_rule = r
        self._always = np.array(always, np.int32)
        self._prefix_mask = prefix_mask
        self._needs_fold = needs_fold
        self._field_mask = 0
        for ns in set().union(*namespaces.values()):
            self._field_mask |= 1 << FIELD_BITS[ns]
        self._ids = pa.array([c.rule.id for c in crs], pa.string())
        self._tags = pa.array([c.rule.tag for c in crs], pa.string())
        self._matcher = None

    def _core(self):
        if self._matcher is None:
            from .. import _core
            _core.set_unicode_tables(*tables())
            self._matcher = _core.Matcher(self._prog, self._prog_off, self._pool,
                                          self._anchor_hash, self._anchor_off,
                                          self._anchor_rule, self._always,
                                          self._prefix_mask, self._needs_fold,
                                          self._field_mask)
        return self._matcher

    # ---------------------------------------------------------------------- matching
    def match_indices(self, tweets: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(row, rule index) arrays of every match, sorted by row then rule order."""
        if len(self._order) == 0 or tweets.num_rows == 0:
            return np.empty(0, np.int64), np.empty(0, np.int32)
        return self._core().match(tweets.combine_chunks())

    def match(self, tweets: pa.Table) -> pa.Table:
        """Every (row, rule_id) pair whose rule matches the row."""
        rows, idx = self.match_indices(tweets)
        return pa.table({"row": pa.array(rows, pa.int64()),
                         "rule_id": self._ids.take(pa.array(idx, pa.int32()))})

    def annotate(self, tweets: pa.Table) -> pa.Table:
        """``tweets`` with a ``matching_rules`` column: list<struct<id, tag>> per row."""
        rows, idx = self.match_indices(tweets)
        counts = np.bincount(rows, minlength=tweets.num_rows) if len(rows) else \
            np.zeros(tweets.num_rows, np.int64)
        offsets = np.zeros(tweets.num_rows + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        take = pa.array(idx, pa.int32())
        items = pa.StructArray.from_arrays([self._ids.take(take), self._tags.take(take)],
                                           names=["id", "tag"])
        col = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), items)
        return tweets.append_column("matching_rules", col)


def _relocate(words: list[int], offs: list[tuple[int, int]]) -> list[int]:
    """Rewrite string references (index, 0) after OP_CONTAINS / OP_URLCONTAINS / OP_LISTHAS
    into (pool offset, length), in place."""
    out = list(words)
    i = 0
    while i < len(out):
        op = out[i]
        if op in (OP_CONTAINS, OP_URLCONTAINS):
            out[i + 1], out[i + 2] = offs[out[i + 1]]
        elif op == OP_LISTHAS:
            out[i + 2], out[i + 3] = offs[out[i + 2]]
        width = _WIDTH.get(op)
        if width is None:                # OP_SEQ: variable
            width = 4 + 2 * out[i + 1]
        i += width
    return out


_WIDTH = {OP_TERM: 2, OP_AND: 2, OP_OR: 2, OP_NOT: 1, OP_NOTNULL: 2, OP_TRUE: 2,
          OP_NONEMPTY: 2, OP_LISTHAS: 4, OP_RANGE: 4, OP_BBOX: 5, OP_RADIUS: 4, OP_SAMPLE: 2,
          OP_CONTAINS: 3, OP_URLCONTAINS: 3}
