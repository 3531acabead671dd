"""The core's tokeniser and term hashes agree with firehose.rules.tokens on tricky Unicode."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from firehose import _core
from firehose.rules.tokens import BIGRAM, NS, tables, term_hash, tokenize

TRICKY = [
    "Hello, World! don't stop", "cumpleaños CUMPLEAÑOS Cumpleaños", "café naïve façade",
    "🍕🍕 pizza🍕time ❤️ 👩🏽‍💻", "東京タワー 東京 大阪", "서울특별시 한국어", "ひらがな カタカナ 漢字",
    "İstanbul ǅemal ẞtraße ΣΊΣΥΦΟΣ", "x\u0301y e\u0301", "ﬁnance ﬂow", "１２３ ＡＢＣ",
    "mixed東京text tokyo東京", "tabs\tand\nnew\rlines", "", "   ", "#hashtag @mention $CASH",
    "https://example.com/a_b-c?d=e", "\U0001F1FA\U0001F1F8 flags", "a\u200db zero\u200bwidth",
    "العربية النص", "हिन्दी पाठ", "ภาษาไทย", "ещё ЁЛКА",
]


@pytest.fixture(scope="module", autouse=True)
def _tables():
    _core.set_unicode_tables(*tables())


def python_terms(text, fold=False, prefix_mask=0):
    """What the core should emit for ``text`` in the text field, from the Python tokeniser."""
    out = []
    for t, f in zip(tokenize(text), tokenize(text, fold=True)):
        out.append((term_hash(NS["text"], t.text), t.pos))
        if fold:
            out.append((term_hash(NS["fold"], f.text), f.pos))
        if t.kind == 1:              # words only: symbols and CJK pieces are shorter than 3
            for k in range(3, min(len(t.text), 63) + 1):
                if prefix_mask >> k & 1:
                    out.append((term_hash(NS["prefix"], t.text[:k]), t.pos))
                    if fold:
                        out.append((term_hash(NS["fold_prefix"], f.text[:k]), t.pos))
    return out


@pytest.mark.parametrize("text", TRICKY)
def test_core_and_python_agree(text):
    assert sorted(_core.tokenize_text(text)) == sorted(python_terms(text))


@pytest.mark.parametrize("text", TRICKY)
def test_core_and_python_agree_folded_with_prefixes(text):
    mask = (1 << 3) | (1 << 4) | (1 << 6)
    assert sorted(_core.tokenize_text(text, True, mask)) == sorted(python_terms(text, True, mask))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=40))
def test_core_and_python_agree_on_any_text(text):
    assert sorted(_core.tokenize_text(text, True, 1 << 3)) == sorted(python_terms(text, True, 1 << 3))


def test_hashes_are_xxh3_of_namespace_and_token():
    import xxhash
    for tok in ["café", "東京", "🍕", "ǅ"]:
        want = xxhash.xxh3_64_intdigest(b"t\x1f" + tok.encode())
        assert term_hash(b"t", tok) == want == _core.term_hash(b"t", tok)


def test_cjk_runs_give_unigrams_and_bigrams():
    toks = [(t.text, t.pos, t.kind) for t in tokenize("東京タワー")]
    assert ("東京", 0, BIGRAM) in toks and ("タワ", 2, BIGRAM) in toks
    assert [t for t in toks if t[2] != BIGRAM] == [("東", 0, 3), ("京", 1, 3), ("タ", 2, 3),
                                                   ("ワ", 3, 3), ("ー", 4, 3)]


def test_diacritics_kept_unless_folded():
    assert [t.text for t in tokenize("Cumpleaños")] == ["cumpleaños"]
    assert [t.text for t in tokenize("Cumpleaños", fold=True)] == ["cumpleanos"]


def test_the_fast_compile_path_equals_the_general_one():
    import random
    from firehose.rules import Rule, parse
    from firehose.rules.compile import _fast_tree, compile_rule
    rnd = random.Random(7)
    alphabet = "abcXYZ019_"
    for i in range(300):
        words = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 8)))
                 for _ in range(rnd.randint(1, 4))]
        r = Rule(str(i), " ".join(words))
        assert _fast_tree(r) == parse(r.value)
        assert compile_rule(r) == compile_rule(r, fast=False)
    for v in ["a OR b", "AND", "a  b", "-a", "a-b", "café", "fold:x"]:
        assert _fast_tree(Rule("x", v)) is None
