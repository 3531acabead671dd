"""The compiler's parser-free fast paths against the parser.

``compile_rule`` first tries ``_compile_simple`` (ASCII words joined by spaces), then
``_compile_flat`` (keywords in any script, phrases, #hashtags, @mentions, $cashtags, lang:,
is:, has:, negations, OR and groups), and only then parses. Each fast path must give exactly
what the parser and the general compiler give -- the same program, anchors and namespaces --
and must decline (so the parser reports the error, with its column) every rule the parser
rejects. Checked here on thousands of generated rules of every shape the fast paths take,
valid and broken, and by matching: a RuleSet compiled through the fast paths and one compiled
through the parser alone find the same pairs on tweets that contain the rules' terms.
"""
from __future__ import annotations

import json
import random
import re
import sys

import pyarrow as pa
import pytest

import firehose
from firehose.rules import Rule, RuleError, RuleSet
from firehose.rules import compile as rc
from firehose.rules.tokens import TABLE_SIZE, WORD, tables

# terms of every kind a flat rule can hold, and (BAD) many it must refuse
WORDS = ["apple", "Apple", "APPLE", "a", "x1", "_", "a_b", "42", "café", "Cumpleaños", "ǅemal",
         "İstanbul", "ΣΟΦΟΣ", "straße", "東京", "東", "みおタワー", "서울", "🍕", "🍕🍕", "a🍕b",
         "e\u0301", "a-b", "don't", "12:30", "https://t.co/x", "http://a.b/c?d=1",
         "h2o:x", "x.", "a/b", "or", "and", "lang:en", "lang:EN", "lang:zh-cn",
         "is:retweet", "is:Reply", "is:quote", "is:verified", "has:links", "has:media",
         "has:mentions", "has:hashtags", "has:symbols", "has:geo", "#tag", "#Tag", "#café",
         "#東京", "#a_1", "@bob", "@Bob_1", "@123", "@0042", "@9223372036854775807", "$TWTR",
         "$brk.a", '"a b"', '"Apple pie"', '"a  b"', '" a "', '"東京 a"', '"café au lait"',
         '"a-b c"', '"x OR y"', '"(a)"', '"🍕 x"', '"a\tb"', '"one"', '"İ i"']
BAD = [":)x", "x:y", "#🍕", "@é", "!!", ".", "...", "OR", "AND", "abc*", "ab*", "a*b", "a~3",
       'a"b', "fold:x", "from:bob", "foo:bar", "Lang:en", "lang:e", "lang:", "is:foo",
       "has:images", "has:videos", "has:x", "sample:10", "contains:x", "#a-b", "#",
       "@9223372036854775808", "@99999999999999999999", "@b-b", "@", "$1x", "$", "$a.b.c",
       '#"x"', '" "', '""', '"!!"', '"a b"~3', '"a\\"b"', '"a\\\\b"']


def _leaf(rng: random.Random) -> str:
    return rng.choice(BAD) if rng.random() < 0.04 else rng.choice(WORDS)


def _term(rng: random.Random, depth: int) -> str:
    x = rng.random()
    if x < 0.15 and depth < 3:
        return "(" + _expr(rng, depth + 1) + ")"
    t = _leaf(rng)
    return "-" + t if x > 0.9 else t


def _expr(rng: random.Random, depth: int = 0) -> str:
    parts = [_term(rng, depth)]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        parts.append(rng.choice([" "] * 12 + [" OR "] * 6 + ["  ", "", "(", ")"]))
        parts.append(_term(rng, depth))
    return "".join(parts)


def generated_rules(n: int, seed: int) -> list[Rule]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v = _expr(rng)
        x = rng.random()
        if x < 0.1:          # a stray character somewhere
            k = rng.randrange(len(v) + 1)
            v = v[:k] + rng.choice(["(", ")", '"', "-", " OR", "OR ", "\t", "\u00a0", "~", "*",
                                    "#", " ", "\\"]) + v[k:]
        elif x < 0.15:
            v = " " + v + " "
        out.append(Rule(f"g{i}", v, fold=rng.random() < 0.03))
    return out


def _outcome(rule: Rule, fast: bool):
    try:
        return rc.compile_rule(rule, fast=fast)
    except RuleError as e:
        return ("error", str(e), e.col)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_paths_compile_exactly_as_the_parser(seed):
    rules = generated_rules(4000, seed)
    cache: dict = {}
    flat = simple = 0
    for r in rules:
        slow = _outcome(r, fast=False)
        got = rc._compile_flat(r, cache)
        if got is not None:
            flat += 1
            assert got == slow, r.value
        s = rc._compile_simple(r)
        if s is not None:
            simple += 1
            assert s == slow, r.value
        assert _outcome(r, fast=True) == slow, r.value
    # the generator reaches both paths and the parser (valid rules and errors)
    assert simple > 30
    assert flat > 1000
    errors = sum(not isinstance(_outcome(r, False), rc.CompiledRule) for r in rules)
    assert 500 < errors < len(rules) - flat


def test_flat_path_takes_every_kind_of_term():
    for v in ["café", "東京 x", "🍕", "a-b", "12:30", "https://t.co/x", '"a b"', '"東京 a"',
              "#tag", "#東京", "@bob", "@123", "$TWTR", "$brk.a", "x lang:en", "x lang:zh-cn",
              "x -is:retweet", "x is:verified", "x has:geo", "x -has:links", "a OR b",
              "(a OR b) lang:fr", "(a b) OR (c d)", "((a OR b) OR c) -d", "a (b OR #c) -@d",
              "x (lang:en OR is:quote)"]:
        r = Rule("1", v)
        got = rc._compile_flat(r)
        assert got is not None, v
        assert got == rc.compile_rule(r, fast=False), v


def test_flat_path_declines_what_the_parser_rejects_or_it_does_not_take():
    for v in ["", " ", "a OR", "OR a", "a OR OR b", "-a", "a OR -b", "lang:en", "is:retweet",
              "(lang:en OR x) is:quote", "()", "(a", "a)", "a\tb", "a\u00a0b", "a AND b",
              "-OR", "- a", "--a", "a -", 'a"b', '"a"b', '"a b"~2', '"a\\"b"', "abc*", "a~2",
              "#a-b", "#", "@b-b", "@9223372036854775808", "$1x", "lang:e", "Lang:en",
              "is:foo", "has:images", "fold:x", "from:bob", "foo:bar", "!!", '"!!"', '" "',
              "-(a OR b) c", "x sample:10", "x" * 3000]:
        assert rc._compile_flat(Rule("1", v)) is None, v
    assert rc._compile_flat(Rule("1", "café", fold=True)) is None


def test_other_whitespace_is_what_the_lexer_calls_whitespace():
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    assert rc._OTHER_SPACE.findall(every) == [c for c in every if c.isspace() and c != " "]


def test_word_run_is_the_tokenisers_word_class():
    cls = tables()[0]
    want = [m.span() for m in re.finditer(re.escape(bytes([WORD])) + b"+", cls)]
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    got = [m.span() for m in rc._word_run().finditer(every)]
    assert got == want
    assert all(e <= TABLE_SIZE for _, e in got)


# --------------------------------------------------------------------------------------------
# matching: the fast-compiled set and the parser-compiled set find the same pairs

def _tweets(rng: random.Random, n: int) -> pa.Table:
    words = [w.strip('"') for w in WORDS + ["b", "pie", "au", "lait", "x", "y", "one", "i"]
             if w[0] not in "#@$" and (":" not in w or w in ("12:30", "https://t.co/x"))]
    tags = ["tag", "Tag", "café", "東京", "a_1", "TAG"]
    users = [("bob", "123"), ("Bob_1", "42"), ("al", "7")]
    cash = ["TWTR", "BRK.A", "twtr"]
    langs = ["en", "fr", "zh-cn", "EN", "ja"]
    lines = []
    for k in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        ments = rng.sample(users, rng.randint(0, 2))
        s = {"id_str": str(k + 1), "text": text, "user": {"id_str": "1", "screen_name": "u",
                                                            "verified": rng.random() < 0.3},
             "lang": rng.choice(langs),
             "entities": {"hashtags": [{"text": t} for t in rng.sample(tags, rng.randint(0, 2))],
                          "user_mentions": [{"screen_name": a, "id_str": b} for a, b in ments],
                          "symbols": [{"text": t} for t in rng.sample(cash, rng.randint(0, 1))],
                          "urls": ([{"expanded_url": "https://x.com/a"}]
                                   if rng.random() < 0.3 else [])}}
        if rng.random() < 0.3:
            s["retweeted_status"] = {"id_str": "9", "text": "rt", "user": {"id_str": "2"}}
        if rng.random() < 0.2:
            s["in_reply_to_status_id_str"] = "77"
        if rng.random() < 0.2:
            s["quoted_status"] = {"id_str": "8", "text": rng.choice(words) + " " +
                                  rng.choice(words), "user": {"id_str": "3"}}
        if rng.random() < 0.2:
            s["coordinates"] = {"type": "Point", "coordinates": [1.0, 2.0]}
        lines.append(json.dumps(s).encode())
    dec = firehose.Decoder(dedupe=False)
    return firehose.DecodeResult.concat([dec.feed(b"\n".join(lines) + b"\n", source="t"),
                                         dec.finish()]).tweets


def test_fast_compiled_set_matches_like_the_parser_compiled_set():
    rng = random.Random(11)
    tweets = _tweets(rng, 1500)
    rules = [r for r in generated_rules(6000, 5)
             if isinstance(_outcome(r, False), rc.CompiledRule)]
    fast = [r for r in rules if rc._compile_simple(r) or rc._compile_flat(r)]
    assert len(fast) > 2000
    a = RuleSet(fast)
    b = RuleSet((), _compiled={r.id: rc.compile_rule(r, fast=False) for r in fast})
    got, want = a.match(tweets), b.match(tweets)
    assert got.equals(want)
    assert got.num_rows > 5000 and len(set(got.column("rule_id").to_pylist())) > len(fast) // 4
