"""The fast matcher (``firehose.rules.RuleSet``) against the oracle (``_reference_rules``).

Any difference in the (row, rule id) pairs is a bug in one of them:

* (a) every golden case of ``test_rules_reference.py``, one rule at a time and all at once;
* (b) the decoded tweets of every corpus file, with a few hundred rules generated from the
  corpus itself (hashtags, mentions, words, phrases, proximity, emoji, CJK fragments, users,
  urls, bios, geo, filters, combined with AND / OR / NOT; seeded);
* (c) thousands of rules generated from synthetic captures (``firehose.testing``, v1.1 and
  mixed dialects);
* (d) snapshots: ``RuleSet(a).add(b).remove(ids)`` matches what ``RuleSet`` of the remaining
  rules matches, and what the oracle says; earlier snapshots are unchanged;
* tricky Unicode, a tiny vocabulary (phrases, proximity, repeats and CJK runs collide all the
  time), and a proximity phrase of repeated words on a tweet of repeated words, which must not
  take exponential time (run in a subprocess with a timeout).

The module is skipped until ``firehose.rules.compile`` imports and ``firehose.rules.RuleSet``
exists.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import unicodedata
from functools import lru_cache

import pyarrow as pa
import pytest

pytest.importorskip("firehose.rules.compile")
import firehose.rules  # noqa: E402

if not hasattr(firehose.rules, "RuleSet"):
    pytest.skip("firehose.rules.RuleSet is not there yet", allow_module_level=True)

import firehose  # noqa: E402
import firehose.testing  # noqa: E402
from firehose import _reference_rules as ref  # noqa: E402
from firehose.rules import Rule, RuleSet, check  # noqa: E402
from firehose.rules.tokens import CJK, SYMBOL, WORD, tables, tokenize  # noqa: E402

try:  # noqa: E402
    from corpus import corpus_files, corpus_params, rel
    from test_rules_reference import GOLDEN
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import corpus_files, corpus_params, rel
    from tests.test_rules_reference import GOLDEN


# --------------------------------------------------------------------------------------------
# comparing

def fast_pairs(rs, tweets: pa.Table) -> list[tuple[int, str]]:
    out = rs.match(tweets)
    assert isinstance(out, pa.Table)
    assert out.schema.field("row").type == pa.int64()
    assert out.schema.field("rule_id").type == pa.string()
    return list(zip(out.column("row").to_pylist(), out.column("rule_id").to_pylist()))


def explain(rules: list[Rule], tweets: pa.Table, fast: list, want: list, what: str) -> str:
    by_id = {r.id: r for r in rules}
    rows = tweets.select([c for c in ("id", "text", "quoted_text") if c in tweets.column_names])
    fs, ws = set(fast), set(want)
    lines = [f"{what}: fast {len(fast)} pairs, oracle {len(want)}"]
    diff = sorted(fs ^ ws)
    for row, rid in diff[:12]:
        side = "only fast" if (row, rid) in fs else "only oracle"
        r = by_id.get(rid)
        rec = rows.slice(row, 1).to_pylist()[0] if row < rows.num_rows else {}
        lines.append(f"  {side}: row {row} id={rec.get('id')} rule {rid} "
                     f"{r.value if r else '?'!r} fold={r.fold if r else '?'} "
                     f"text={rec.get('text')!r} quoted={rec.get('quoted_text')!r}")
    if len(diff) > 12:
        lines.append(f"  ... {len(diff) - 12} more")
    if not diff:
        lines.append("  same pairs, different order")
    return "\n".join(lines)


def assert_same(rules: list[Rule], tweets: pa.Table, rs=None, what: str = "",
                want: list | None = None) -> list:
    rs = RuleSet(rules) if rs is None else rs
    want = ref.match(rules, tweets) if want is None else want
    got = fast_pairs(rs, tweets)
    assert got == want, explain(rules, tweets, got, want, what)
    return want


def expected_annotation(rules: list[Rule], n_rows: int, pairs: list) -> list:
    tags = {r.id: r.tag for r in rules}
    out: list[list] = [[] for _ in range(n_rows)]
    for row, rid in pairs:
        out[row].append({"id": rid, "tag": tags[rid]})
    return out


def assert_same_annotation(rs, rules: list[Rule], tweets: pa.Table, pairs: list) -> None:
    out = rs.annotate(tweets)
    assert out.column_names == tweets.column_names + ["matching_rules"]
    assert out.schema.field("matching_rules").type == ref.MATCHING_RULES_TYPE
    assert out.select(tweets.column_names).equals(tweets)
    assert out.column("matching_rules").to_pylist() == expected_annotation(
        rules, tweets.num_rows, pairs)


def decode(data: bytes, source: str) -> pa.Table:
    dec = firehose.Decoder(dedupe=True)
    return firehose.DecodeResult.concat([dec.feed(data, source=source), dec.finish()]).tweets


# --------------------------------------------------------------------------------------------
# (a) the golden cases

@pytest.mark.parametrize("case", GOLDEN, ids=[c.name for c in GOLDEN])
def test_golden_case(case):
    pairs = assert_same([case.rule], case.table(), what=case.name)
    assert pairs == [(i, case.rule.id) for i in case.hits]


def test_golden_all_rules_on_all_tables():
    rules = [c.rule for c in GOLDEN]
    rs = RuleSet(rules)
    seen = set()
    tables_ = []
    for c in GOLDEN:                              # each list of tweets once
        key = tuple(map(id, c.tweets))
        if key not in seen:
            seen.add(key)
            tables_.append(c.table())
    tweets = pa.concat_tables(tables_)
    pairs = assert_same(rules, tweets, rs, "all golden rules")
    assert_same_annotation(rs, rules, tweets, pairs)


# --------------------------------------------------------------------------------------------
# generating rules from tweets

_CLS = tables()[0]
_FILTER_HAS = ("links", "media", "images", "videos", "mentions", "hashtags", "symbols", "geo")
_FILTER_IS = ("retweet", "reply", "quote", "verified")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return cp < len(_CLS) and _CLS[cp] == CJK


def _quotable(s: str) -> bool:
    return '"' not in s and "\\" not in s and s.strip() != ""


class RuleGen:
    """Seeded random rules drawn from the values of the given rows (so many of them match)."""

    def __init__(self, rows: list[dict], seed):
        self.rows = rows
        self.rng = random.Random(seed)
        self.n = 0
        self._tok_cache: dict[int, dict] = {}

    # ---- helpers
    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))] if seq else None

    def recase(self, w: str) -> str:
        if w.isascii() and w.lower() not in ("or", "and"):
            r = self.rng.random()
            if r < 0.2:
                return w.upper()
            if r < 0.35:
                return w.title()
        return w

    def toks(self, k: int) -> dict:
        """Field name -> tokens, of row k."""
        if k not in self._tok_cache:
            row = self.rows[k]
            self._tok_cache[k] = {f: tokenize(row[f]) for f in
                                  ("text", "quoted_text", "author_description", "author_name",
                                   "author_location") if row.get(f)}
        return self._tok_cache[k]

    def field_tokens(self, k: int, fields=("text", "quoted_text"), kinds=(WORD, SYMBOL)):
        t = self.toks(k)
        f = self.pick([f for f in fields if f in t])
        if f is None:
            return None
        return [x for x in t[f] if x.kind in kinds]

    # ---- standalone atoms (None when the row has nothing for it)
    def a_word(self, k):
        toks = self.field_tokens(k)
        t = self.pick(toks)
        return self.recase(t.text) if t else None

    def a_emoji(self, k):
        t = self.pick(self.field_tokens(k, kinds=(SYMBOL,)))
        return t.text if t else None

    def a_phrase(self, k):
        toks = self.field_tokens(k)
        if not toks or len(toks) < 2:
            return None
        i = self.rng.randrange(len(toks) - 1)
        window = [toks[i]]
        for t in toks[i + 1:i + self.rng.randint(2, 4)]:
            if t.pos != window[-1].pos + 1:
                break
            window.append(t)
        words = [self.recase(t.text) for t in window]
        if self.rng.random() < 0.2 and all(w.isascii() for w in words):
            return "-".join(words)
        return '"' + " ".join(words) + '"'

    def a_prox(self, k):
        toks = self.field_tokens(k)
        if not toks or len(toks) < 2:
            return None
        i = self.rng.randrange(len(toks))
        near = [t for t in toks if t is not toks[i] and abs(t.pos - toks[i].pos) <= 7]
        if not near:
            return None
        chosen = [toks[i]] + self.rng.sample(near, min(len(near), self.rng.choice((1, 1, 2))))
        self.rng.shuffle(chosen)
        n = self.rng.randint(1, 8)
        return '"' + " ".join(self.recase(t.text) for t in chosen) + f'"~{n}'

    def a_prefix(self, k):
        toks = [t for t in (self.field_tokens(k, kinds=(WORD,)) or ()) if len(t.text) >= 3]
        t = self.pick(toks)
        if t is None:
            return None
        cut = self.rng.randint(3, len(t.text))
        p = t.text[:cut] + "*"
        if self.rng.random() < 0.2:
            p = "fold:" + ref.fold(p)
        return self.recase(p)

    def a_fold(self, k):
        toks = [t for t in (self.field_tokens(k, kinds=(WORD,)) or ()) if not t.text.isascii()]
        t = self.pick(toks)
        if t is None:
            return None
        w = ref.fold(t.text) if self.rng.random() < 0.6 else t.text
        return "fold:" + w

    def a_cjk(self, k):
        row = self.rows[k]
        text = row.get(self.pick(["text", "quoted_text"])) or row.get("text") or ""
        runs, cur = [], []
        for ch in text:
            if _is_cjk(ch):
                cur.append(ch)
            elif cur:
                runs.append("".join(cur))
                cur = []
        if cur:
            runs.append("".join(cur))
        run = self.pick(runs)
        if not run:
            return None
        i = self.rng.randrange(len(run))
        frag = run[i:i + self.rng.randint(1, 4)]
        r = self.rng.random()
        if r < 0.2 and len(frag) >= 2:
            return '"' + frag[:1] + " " + frag[1:] + '"'
        if r < 0.3:
            return "fold:" + frag
        return frag

    def a_hashtag(self, k):
        h = self.pick(self.rows[k].get("hashtags") or [])
        return "#" + self.recase(h) if h else None

    def a_cashtag(self, k):
        c = self.pick(self.rows[k].get("cashtags") or [])
        return "$" + self.recase(c) if c else None

    def a_mention(self, k):
        row = self.rows[k]
        if self.rng.random() < 0.3 and row.get("mention_ids"):
            return f"@{self.pick(row['mention_ids'])}"
        m = self.pick(row.get("mentions") or [])
        return "@" + self.recase(m) if m else None

    def _user(self, op, id_col, name_col, k):
        row = self.rows[k]
        if self.rng.random() < 0.4 and row.get(id_col) is not None:
            return f"{op}:{row[id_col]}"
        name = row.get(name_col)
        return f"{op}:{self.recase(name)}" if name else None

    def a_from(self, k):
        return self._user("from", "author_id", "author_screen_name", k)

    def a_to(self, k):
        return self._user("to", "in_reply_to_user_id", "in_reply_to_screen_name", k)

    def a_retweets_of(self, k):
        return self._user("retweets_of", "retweeted_user_id", "retweeted_screen_name", k)

    def a_url(self, k):
        u = self.pick(self.rows[k].get("urls") or [])
        if not u:
            return None
        toks = tokenize(u)
        if not toks:
            return None
        i = self.rng.randrange(len(toks))
        words = [t.text for t in toks[i:i + self.rng.randint(1, 3)]]
        return 'url:"' + self.rng.choice((".", "/", " ")).join(words) + '"'

    def a_url_contains(self, k):
        u = self.pick(self.rows[k].get("urls") or [])
        if not u:
            return None
        i = self.rng.randrange(len(u))
        frag = u[i:i + self.rng.randint(3, 15)]
        frag = frag.upper() if self.rng.random() < 0.2 else frag
        return f'url_contains:"{frag}"' if _quotable(frag) else None

    def a_contains(self, k):
        row = self.rows[k]
        text = row.get(self.pick(["text", "text", "quoted_text"])) or ""
        if len(text) < 3:
            return None
        i = self.rng.randrange(len(text) - 2)
        frag = text[i:i + self.rng.randint(3, 10)]
        if self.rng.random() < 0.2:
            frag = frag.upper()
        return f'contains:"{frag}"' if _quotable(frag) else None

    def a_bio(self, k):
        op, col = self.pick([("bio", "author_description"), ("bio_name", "author_name"),
                             ("bio_location", "author_location")])
        toks = self.toks(k).get(col)
        if not toks:
            return None
        i = self.rng.randrange(len(toks))
        words = [t.text for t in toks[i:i + self.rng.randint(1, 2)]]
        return f'{op}:"{" ".join(words)}"' if len(words) > 1 else f"{op}:{words[0]}"

    def a_place(self, k):
        c = self.rows[k].get("place_country_code")
        return f"place_country:{c.lower() if self.rng.random() < 0.5 else c}" if c else None

    def a_source(self, k):
        s = self.rows[k].get("source")
        if not s or not _quotable(s):
            return None
        return f'source:"{s.lower() if self.rng.random() < 0.3 else s}"'

    def a_geo(self, k):
        c = self.rows[k].get("coordinates")
        if not c:
            return None
        lon = c["lon"] + self.rng.uniform(-0.1, 0.1)
        lat = c["lat"] + self.rng.uniform(-0.1, 0.1)
        if self.rng.random() < 0.5:
            r = self.rng.uniform(0.5, 40.0)
            return f"point_radius:[{lon:.5f} {lat:.5f} {r:.2f}km]"
        dlon, dlat = self.rng.uniform(0.01, 0.2), self.rng.uniform(0.01, 0.2)
        w, e = max(-180.0, lon - dlon), min(180.0, lon + dlon)
        s, n = max(-90.0, lat - dlat), min(90.0, lat + dlat)
        return f"bounding_box:[{w:.5f} {s:.5f} {e:.5f} {n:.5f}]"

    STANDALONE = (("a_word", 30), ("a_phrase", 10), ("a_prox", 8), ("a_prefix", 6),
                  ("a_emoji", 5), ("a_fold", 4), ("a_cjk", 5), ("a_hashtag", 8),
                  ("a_cashtag", 2), ("a_mention", 6), ("a_from", 4), ("a_to", 2),
                  ("a_retweets_of", 2), ("a_url", 3), ("a_url_contains", 3), ("a_contains", 4),
                  ("a_bio", 4), ("a_place", 2), ("a_source", 2), ("a_geo", 3))

    # ---- filters (cannot stand alone)
    def a_filter(self, k):
        row = self.rows[k]
        r = self.rng.random()
        if r < 0.25 and row.get("lang"):
            return f"lang:{row['lang']}"
        if r < 0.45:
            return f"has:{self.pick(_FILTER_HAS)}"
        if r < 0.65:
            return f"is:{self.pick(_FILTER_IS)}"
        if r < 0.8:
            n = row.get("author_followers_count")
            if n is None:
                return "followers_count:0"
            lo = max(0, n - self.rng.randint(0, 50))
            return (f"followers_count:{lo}" if self.rng.random() < 0.4
                    else f"followers_count:{lo}..{n + self.rng.randint(0, 50)}")
        return f"sample:{self.rng.randint(1, 100)}"

    def standalone(self, k):
        names = [n for n, _ in self.STANDALONE]
        weights = [w for _, w in self.STANDALONE]
        for _ in range(20):
            a = getattr(self, self.rng.choices(names, weights)[0])(k)
            if a:
                return a
        return self.a_word(k) or "the"

    def atom(self, k):
        return self.a_filter(k) if self.rng.random() < 0.25 else self.standalone(k)

    def other(self) -> int:
        return self.rng.randrange(len(self.rows))

    def conj(self, k) -> str:
        parts = [self.standalone(k)]
        for _ in range(self.rng.choice((0, 0, 1, 1, 2))):
            parts.append(self.atom(k if self.rng.random() < 0.6 else self.other()))
        for _ in range(self.rng.choice((0, 0, 0, 1, 1, 2))):
            if self.rng.random() < 0.2:
                a, b = self.standalone(self.other()), self.standalone(self.other())
                parts.append(f"-({a} OR {b})")
            else:
                parts.append("-" + self.atom(self.other() if self.rng.random() < 0.7 else k))
        self.rng.shuffle(parts)
        return " ".join(parts)

    def value(self) -> str:
        k = self.other()
        r = self.rng.random()
        if r < 0.65:
            return self.conj(k)
        if r < 0.9:
            alts = [self.conj(k)] + [self.conj(self.other())
                                     for _ in range(self.rng.randint(1, 2))]
            return " OR ".join(f"({a})" if " " in a else a for a in alts)
        if r < 0.96:                      # a long OR of single terms, AND a filter or two
            alts = [self.standalone(self.other()) for _ in range(self.rng.randint(4, 12))]
            tail = " ".join(self.a_filter(k) for _ in range(self.rng.randint(0, 2)))
            return ("(" + " OR ".join(alts) + ") " + tail).strip()
        # nested groups
        inner = " OR ".join(f"({self.conj(self.other())})" for _ in range(2))
        return f"{self.standalone(k)} ({inner})"

    def rules(self, n: int, prefix: str = "r") -> list[Rule]:
        out: list[Rule] = []
        while len(out) < n:
            self.n += 1
            tag = None if self.rng.random() < 0.3 else f"tag-{self.n % 17}"
            rule = Rule(f"{prefix}{self.n}", self.value(), tag=tag,
                        fold=self.rng.random() < 0.1)
            if not check([rule]):
                out.append(rule)
                if self.rng.random() < 0.03:          # the same clause text in another rule
                    self.n += 1
                    out.append(Rule(f"{prefix}{self.n}", rule.value, tag=rule.tag))
        return out[:n]


def test_generated_rules_are_varied():
    rows = _synthetic("v1.1").to_pylist()
    rules = RuleGen(rows, 1).rules(300)
    text = " ".join(r.value for r in rules)
    for needle in ('"~', "*", "#", "@", "from:", " OR ", "-", "url", "contains:", "fold:",
                   "has:", "is:", "sample:", "lang:"):
        assert needle in text, needle
    # a good share of them match something, and not everything
    t = _synthetic("v1.1").slice(0, 300)
    hit = {rid for _, rid in ref.match(rules, t)}
    assert 0.2 * len(rules) < len(hit) < len(rules)


# --------------------------------------------------------------------------------------------
# (b) the corpus

@lru_cache(maxsize=None)
def _corpus_tables() -> dict[str, pa.Table]:
    return {rel(p): decode(p.read_bytes(), rel(p)) for p in corpus_files()}


@lru_cache(maxsize=None)
def _corpus_rules() -> tuple[list[Rule], object]:
    rows = [r for t in _corpus_tables().values() for r in t.to_pylist()]
    rules = RuleGen(rows, "corpus").rules(300, "c")
    return rules, RuleSet(rules)


@lru_cache(maxsize=None)
def _corpus_pairs(name: str) -> list:
    return ref.match(_corpus_rules()[0], _corpus_tables()[name])


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_file(path):
    name = rel(path)
    tweets = _corpus_tables()[name]
    rules, rs = _corpus_rules()
    pairs = assert_same(rules, tweets, rs, name, want=_corpus_pairs(name))
    if tweets.num_rows:
        assert_same_annotation(rs, rules, tweets, pairs)


def test_corpus_rules_do_match():
    rules, _ = _corpus_rules()
    hit = {rid for name in _corpus_tables() for _, rid in _corpus_pairs(name)}
    assert len(rules) // 3 < len(hit) < len(rules)


# --------------------------------------------------------------------------------------------
# (c) synthetic captures, thousands of rules

@lru_cache(maxsize=None)
def _synthetic(dialect: str) -> pa.Table:
    seed = {"v1.1": 101, "mixed": 202}[dialect]
    return decode(firehose.testing.generate_bytes(2000, seed=seed, dialect=dialect),
                  f"gen-{dialect}")


@lru_cache(maxsize=None)
def _synthetic_rules(dialect: str) -> list[Rule]:
    return RuleGen(_synthetic(dialect).to_pylist(), f"synthetic-{dialect}").rules(
        {"v1.1": 1200, "mixed": 800}[dialect], f"{dialect}-")


@lru_cache(maxsize=None)
def _synthetic_pairs(dialect: str) -> list:
    return ref.match(_synthetic_rules(dialect), _synthetic(dialect))


@pytest.mark.parametrize("dialect", ["v1.1", "mixed"])
def test_synthetic(dialect):
    rules = _synthetic_rules(dialect)
    tweets = _synthetic(dialect)
    assert tweets.num_rows > 1000
    rs = RuleSet(rules)
    pairs = assert_same(rules, tweets, rs, f"synthetic {dialect}", want=_synthetic_pairs(dialect))
    assert_same_annotation(rs, rules, tweets, pairs)
    # any slice of the batch: rows are numbered within the batch given
    part = tweets.slice(700, 300)
    want = [(i - 700, rid) for i, rid in pairs if 700 <= i < 1000]
    assert fast_pairs(rs, part) == want
    assert fast_pairs(rs, tweets.slice(0, 0)) == []


# --------------------------------------------------------------------------------------------
# (d) snapshots: add and remove

def _expected(universe_pairs: list, rules: list[Rule]) -> list:
    pos = {r.id: k for k, r in enumerate(rules)}
    return sorted(((i, rid) for i, rid in universe_pairs if rid in pos),
                  key=lambda p: (p[0], pos[p[1]]))


def test_add_remove_equivalence():
    universe = _synthetic_rules("v1.1")[:900]
    tweets = _synthetic("v1.1")
    by_id = {r.id: r for r in universe}
    all_pairs = [(i, rid) for i, rid in _synthetic_pairs("v1.1") if rid in by_id]
    rng = random.Random(7)
    for round_ in range(4):
        order = universe[:]
        rng.shuffle(order)
        a, b = order[:rng.randint(0, 400)], order[400:400 + rng.randint(1, 300)]
        gone = {r.id for r in rng.sample(a + b, rng.randint(0, len(a + b) // 2))}
        base = RuleSet(a)
        before = fast_pairs(base, tweets)
        assert before == _expected(all_pairs, a)
        grown = base.add(b)
        assert fast_pairs(grown, tweets) == _expected(all_pairs, a + b)
        shrunk = grown.remove(sorted(gone))
        kept = [r for r in a + b if r.id not in gone]
        want = _expected(all_pairs, kept)
        assert fast_pairs(shrunk, tweets) == want, f"round {round_}"
        assert fast_pairs(RuleSet(kept), tweets) == want
        # snapshots are values: the ones taken earlier still match as before
        assert fast_pairs(base, tweets) == before
        assert fast_pairs(grown, tweets) == _expected(all_pairs, a + b)
        # a removed rule added back goes to the end of the order
        if gone:
            back = [by_id[i] for i in sorted(gone)][:20]
            again = shrunk.add(back)
            assert fast_pairs(again, tweets) == _expected(all_pairs, kept + back)
        # removing everything leaves a set that matches nothing
        assert fast_pairs(shrunk.remove([r.id for r in kept]), tweets) == []


def test_add_remove_annotate():
    rules = _synthetic_rules("mixed")[:200]
    tweets = _synthetic("mixed").slice(0, 400)
    rs = RuleSet(rules[:100]).add(rules[100:]).remove([r.id for r in rules[::3]])
    kept = [r for k, r in enumerate(rules) if k % 3]
    pairs = ref.match(kept, tweets)
    assert fast_pairs(rs, tweets) == pairs
    assert_same_annotation(rs, kept, tweets, pairs)


def test_unicode_stress():
    # words with tricky code points, against text made of the same pieces
    pieces = ["İstanbul", "ISTANBUL", "straße", "STRASSE", "ǅemal", "ﬁnance", "ｶﾀｶﾅ", "カタカナ",
              "東京", "東 京", "σοφός", "ΣΟΦΟΣ", "e\u0301te", "été", "ete", "🍕", "❤️", "👍🏽",
              "a_b", "x²", "٣٤", "ʼn", "Ⅻ", "ⅻ", "ß", "ẞ", "ǈ", "Ǉ", "ﬀ", "ﾊﾟ", "パ", "한국어",
              "\U00020000\U00020001", "Ꭰ", "ꭰ", "𝐀𝐁", "ab\u200dcd", "x\ufe0fy"]
    rng = random.Random(3)
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    t = _statuses(texts, [rng.choice([None, None] + texts) for _ in texts])
    rules = []
    for k, p in enumerate(pieces):
        for fold in (False, True):
            for v in (p, f'"{p} {rng.choice(pieces)}"', f'"{p} {rng.choice(pieces)}"~3',
                      f"contains:{p}"):
                r = Rule(f"u{k}-{fold}-{len(rules)}", v, fold=fold)
                if not check([r]):
                    rules.append(r)
            w = unicodedata.normalize("NFC", p)
            if len(w) >= 3 and all(c.isalnum() for c in w[:3]):
                r = Rule(f"p{k}-{fold}", w[:3] + "*", fold=fold)
                if not check([r]):
                    rules.append(r)
    assert len(rules) > 100
    assert_same(rules, t, what="unicode")


def _statuses(texts: list, quoted: list, ids=None) -> pa.Table:
    lines = []
    for k, (text, q) in enumerate(zip(texts, quoted)):
        s = {"id_str": str(ids[k] if ids else k + 1), "text": text, "user": {"id_str": "1"}}
        if q is not None:
            s["quoted_status"] = {"id_str": "999", "text": q}
        lines.append(json.dumps(s).encode())
    t = decode(b"\n".join(lines), "statuses")
    assert t.num_rows == len(texts)
    return t


@pytest.mark.parametrize("seed", [1, 2])
def test_small_vocabulary(seed):
    # few words, many repeats: phrases, proximity (order, repeats, N vs N - 2), CJK runs and
    # prefixes collide all the time
    rng = random.Random(seed)
    vocab = ["a", "b", "c", "A", "Ä", "ä", "東", "京", "東京", "🍕", "don't", "x-y", "abc",
             "abcd", "Abce", "ñu", "nu"]
    seps = [" ", " ", " ", "", "-", ", ", "\n", "・"]

    def text():
        return "".join(rng.choice(vocab) + rng.choice(seps) for _ in range(rng.randint(0, 9)))

    texts = [text() for _ in range(400)]
    quoted = [text() if rng.random() < 0.3 else None for _ in texts]
    tweets = _statuses(texts, quoted, ids=[rng.getrandbits(62) for _ in texts])

    def term():
        r = rng.random()
        words = [rng.choice(vocab) for _ in range(rng.randint(1, 3))]
        if r < 0.3:
            return rng.choice(vocab)
        if r < 0.45:
            return '"' + " ".join(words) + '"'
        if r < 0.7:
            words = words if len(words) > 1 else words + [rng.choice(vocab)]
            return '"' + " ".join(words) + f'"~{rng.randint(1, 6)}'
        if r < 0.8:
            return rng.choice(["abc*", "Abc*", "abcd*", "fold:ñu", "fold:nu", "fold:Ä",
                               "fold:\"a ä\"~3"])
        if r < 0.9:
            return "contains:" + rng.choice(vocab).replace("'", "")
        return rng.choice(vocab) + " sample:" + str(rng.randint(1, 100))

    rules = []
    while len(rules) < 600:
        parts = [term() for _ in range(rng.randint(1, 3))]
        v = " ".join(parts)
        if rng.random() < 0.3:
            v = f"({v}) OR {term()}"
        if rng.random() < 0.3:
            v += " -" + rng.choice([term(), "(" + term() + " OR " + term() + ")"])
        r = Rule(f"s{len(rules)}", v, fold=rng.random() < 0.1)
        if not check([r]):
            rules.append(r)
    pairs = assert_same(rules, tweets, what=f"small vocabulary, seed {seed}")
    assert len({rid for _, rid in pairs}) > 300


_REPEATS_SCRIPT = r"""
import json, sys
import firehose
from firehose.rules import Rule, RuleSet
rules = [Rule(r["id"], r["value"]) for r in json.loads(sys.argv[1])]
text = sys.argv[2]
dec = firehose.Decoder(dedupe=False)
line = json.dumps({"id_str": "1", "text": text, "user": {"id_str": "1"}}).encode() + b"\n"
t = firehose.DecodeResult.concat([dec.feed(line, source="x"), dec.finish()]).tweets
print(json.dumps(RuleSet(rules).match(t).column("rule_id").to_pylist()))
"""


def test_proximity_with_many_repeats_stays_fast():
    # a proximity phrase repeating one word, on a tweet repeating it: choosing an occurrence
    # per token must not try every combination (80^6 here).  Run in a subprocess so that a
    # matcher that does cannot hang the suite.
    values = ['"a a a a a a"~3', '"a a a a a a"~6', '"a b a b a b"~5', '"a a a a a a"~12']
    rules = [Rule(f"r{k}", v) for k, v in enumerate(values)]
    text = "a " * 80 + "b a b a b a"
    want = [rid for _, rid in ref.match(rules, _statuses([text], [None]))]
    assert want == ["r1", "r2", "r3"]
    try:
        out = subprocess.run([sys.executable, "-c", _REPEATS_SCRIPT,
                              json.dumps([{"id": r.id, "value": r.value} for r in rules]), text],
                             capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("RuleSet.match took over 15 s on one tweet: proximity search explodes "
                    "on repeated tokens")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == want
