"""Tokens and term hashes: the Python side of what the core does to tweet text.

The character tables are built once from this interpreter's ``unicodedata`` and handed to the
Cython core too, so the core's tokeniser and this one classify, lower-case and fold every code
point identically by construction (docs/rules.md, "Tokens").
"""
from __future__ import annotations

import re
import unicodedata
from array import array
from functools import lru_cache
from typing import NamedTuple

import xxhash

__all__ = ["TABLE_SIZE", "SEP", "WORD", "SYMBOL", "CJK", "tables", "tokenize", "Token",
           "term_hash", "NS"]

#: code points at or above this are separators
TABLE_SIZE = 0x32400
SEP, WORD, SYMBOL, CJK = 0, 1, 2, 3

#: term namespaces (docs/rules.md, "Term hashes")
NS = {
    "text": b"t", "fold": b"tf", "bio": b"b", "bio_name": b"bn", "bio_location": b"bl",
    "hashtag": b"h", "mention": b"m", "mention_id": b"mi", "cashtag": b"c", "url": b"u",
    "prefix": b"p", "fold_prefix": b"pf",
}

_CJK_NAMES = ("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA", "HANGUL")


@lru_cache(maxsize=1)
def tables() -> tuple[bytes, array, array]:
    """(class per code point, lower-case per code point, folded per code point).

    ``fold[cp]`` is ``lower[cp]`` decomposed (NFKD) without its combining marks (Mn) when that
    leaves exactly one code point, else ``lower[cp]``."""
    cls = bytearray(TABLE_SIZE)
    lower = array("I", range(TABLE_SIZE))
    fold = array("I", range(TABLE_SIZE))
    for cp in range(TABLE_SIZE):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat[0] in "LMN" or ch == "_":
            name = unicodedata.name(ch, "")
            cls[cp] = CJK if name.startswith(_CJK_NAMES) else WORD
        elif cat == "So":
            cls[cp] = SYMBOL
        low = ch.lower()
        if len(low) == 1:
            lower[cp] = ord(low)
        fold[cp] = lower[cp]
        lc = chr(lower[cp])
        if unicodedata.decomposition(lc):
            dec = "".join(c for c in unicodedata.normalize("NFKD", lc)
                          if unicodedata.category(c) != "Mn")
            if len(dec) == 1:
                fold[cp] = ord(dec)
    # variation selectors, which follow emoji, join nothing
    for cp in range(0xFE00, 0xFE10):
        cls[cp] = SEP
    return bytes(cls), lower, fold


class Token(NamedTuple):
    text: str       # lower-cased (and folded when asked)
    pos: int        # position in the field
    kind: int       # WORD, SYMBOL, CJK (a unigram) or CJK + 1 (a bigram)


BIGRAM = CJK + 1


_ASCII_WORD = re.compile(r"[A-Za-z0-9_]+")


@lru_cache(maxsize=1 << 16)
def tokenize(text: str, fold: bool = False) -> tuple[Token, ...]:
    """The tokens of ``text`` in order: words, one-code-point symbols, CJK unigrams and bigrams
    (a bigram has the position of its first character)."""
    if text.isascii():
        # ASCII has no So symbols and no CJK; its word characters are [A-Za-z0-9_]
        return tuple(Token(m.group(), i, WORD)
                     for i, m in enumerate(_ASCII_WORD.finditer(text.lower())))
    cls, lower, folds = tables()
    out: list[Token] = []
    pos = 0
    word: list[str] = []
    prev_cjk: str | None = None

    def norm(cp: int) -> str:
        return chr(folds[cp] if fold else lower[cp])

    for ch in text:
        cp = ord(ch)
        k = cls[cp] if cp < TABLE_SIZE else SEP
        if k == WORD:
            word.append(norm(cp))
            prev_cjk = None
            continue
        if word:
            out.append(Token("".join(word), pos, WORD))
            pos += 1
            word = []
        if k == CJK:
            c = norm(cp)
            if prev_cjk is not None:
                out.append(Token(prev_cjk + c, pos - 1, BIGRAM))
            out.append(Token(c, pos, CJK))
            pos += 1
            prev_cjk = c
        else:
            prev_cjk = None
            if k == SYMBOL:
                out.append(Token(norm(cp), pos, SYMBOL))
                pos += 1
    if word:
        out.append(Token("".join(word), pos, WORD))
    return tuple(out)


def term_hash(ns: bytes, token: str) -> int:
    """The 64-bit term hash: ``xxh3_64(ns + b"\\x1f" + utf8(token))`` (unsigned)."""
    return xxhash.xxh3_64_intdigest(ns + b"\x1f" + token.encode("utf-8", "surrogatepass"))
