"""Inputs of the rule-matching benchmarks: decoded tweets and synthetic PowerTrack rule sets.

Shared by ``bench/test_rules.py`` (pytest-benchmark) and ``bench/compare/rules_run.py`` (the
peers: pyahocorasick, hyperscan). Everything is deterministic (fixed seeds).

* :func:`tweets` -- the first ``n`` tweets (default 20,000, ``$FIREHOSE_BENCH_RULES_TWEETS``) of
  the cached v1.1 capture the decoder benchmarks use (``_inputs.capture``), decoded once.
* :func:`vocabulary` -- what rules can hit: the text tokens (by the matcher's own tokeniser),
  hashtags, mentioned screen names and languages that occur in at least a few of those
  tweets.
* :func:`pseudo_words` -- what rules mostly ask for in real rule sets: words that do not occur
  in the sample (deterministic pronounceable pseudo-words, some with a digit or an accented
  letter).
* :func:`rules` (:func:`rule_values`) -- ``n`` rules, the first ``n`` of one seeded stream (so
  the 100-rule set is a prefix of the 10k set, and so on). Mix: 55% single keywords, 20%
  two-word ANDs, 6% quoted phrases of 2-3 words, 5% ORs of 2-4, 5% ``lang:``-qualified (a word
  or an OR of two; 70% a language the tweets have), 5% hashtags, 2% mentions, 2% ``a -b``. Each
  word is drawn from the tweets' vocabulary with probability ``HIT`` (5%), else from the
  pseudo-words; hashtags and mentions are real ones with probability 4 x ``HIT``.
* :func:`keywords` -- ``n`` distinct plain single-word keywords (same ``HIT`` share), the only
  rules all the engines of the comparison can answer.
* :func:`rule_mix` -- the three mixes of ``test_rules.py`` (``live5``, ``fixed``, ``keywords``).

Run as ``python bench/_rules_inputs.py --memory N [--mix M]`` it builds an N-rule RuleSet in
this fresh process and prints JSON with the RSS it took (used by ``test_rules.py``: a fresh
process keeps the number free of what earlier benchmarks left on the heap).
"""
from __future__ import annotations

import math
import os
import random
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _inputs  # noqa: E402

DEFAULT_TWEETS = 20_000
SIZES = (100, 10_000, 100_000, 250_000)
HIT = 0.05                 # share of rule words drawn from the words the tweets use
SEED = 20240501
MIN_DF = 3                 # a vocabulary token occurs in at least this many tweets
_BYTES_PER_TWEET = 4_200   # v1.1 capture bytes per tweet row (generous; ~3.8 KB measured)


def n_tweets() -> int:
    return int(os.environ.get("FIREHOSE_BENCH_RULES_TWEETS") or DEFAULT_TWEETS)


@lru_cache(maxsize=4)
def tweets(n: int | None = None):
    """The first ``n`` tweets of the cached capture, one-chunk pyarrow Table."""
    import pyarrow as pa
    import firehose
    n = n or n_tweets()
    need = n * _BYTES_PER_TWEET / 1e6 * 1.15
    mb = _inputs.bench_mb()
    if mb < need:
        mb = 100 * math.ceil(need / 100)
    path = _inputs.capture(mb)
    dec = firehose.Decoder()
    parts, rows = [], 0
    with open(path, "rb") as f:
        while rows < n:
            chunk = f.read(_inputs.CHUNK)
            if not chunk:
                parts.append(dec.finish().tweets)
                break
            t = dec.feed(chunk, source=path.name).tweets
            parts.append(t)
            rows += t.num_rows
    table = pa.concat_tables(parts).slice(0, n).combine_chunks()
    if table.num_rows < n:
        print(f"[rules inputs] only {table.num_rows} tweets in {path.name}", flush=True)
    return table


def texts(table) -> list[str]:
    """text and quoted_text of each row joined by a newline (the two fields a keyword looks at;
    the newline keeps a word from spanning them), as Python strings."""
    t = table.column("text").to_pylist()
    q = table.column("quoted_text").to_pylist()
    return [(a or "") + ("\n" + b if b else "") for a, b in zip(t, q)]


def _disk_cached(kind: str, n: int | None, make):
    """``make()`` (a JSON-able value), kept in the bench cache under a name that changes with
    the capture (hence the generator), the tweet count, and the source of this file and of the
    tokeniser; recomputing the vocabulary tokenises every tweet in Python (~10 s)."""
    import hashlib
    import json
    import firehose.rules.tokens as tok
    n = n or n_tweets()
    h = hashlib.sha1()
    for f in (__file__, tok.__file__):
        h.update(Path(f).read_bytes())
    h.update(f"{kind} {n} {_inputs._generator_hash()} {_inputs.bench_mb()}".encode())
    path = _inputs.cache_dir() / f"rules-{kind}-{n}-{h.hexdigest()[:10]}.json"
    if path.exists():
        return json.loads(path.read_text())
    value = make()
    for old in _inputs.cache_dir().glob(f"rules-{kind}-{n}-*.json"):
        old.unlink(missing_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, ensure_ascii=False))
    os.replace(tmp, path)
    return value


@lru_cache(maxsize=2)
def vocabulary(n: int | None = None) -> dict:
    """What occurs in the tweets: ``words`` (text tokens of at least 2 characters, CJK
    bigrams, one-code-point emoji), ``ascii`` (the ASCII ones), ``plain`` (the single-token words
    without combining marks or CJK: what a whole-word substring matcher tokenises the same way),
    ``hashtags``, ``mentions`` (screen names), ``langs``; each sorted, each token in at least
    ``MIN_DF`` tweets; and ``rare``: the text tokens in fewer (kept out of the pseudo-words)."""
    return _disk_cached("vocab", n, lambda: _vocabulary(n))


def _vocabulary(n: int | None) -> dict:
    import unicodedata
    from firehose.rules.tokens import CJK, SYMBOL, tokenize
    table = tweets(n)
    df: Counter = Counter()
    for s in texts(table):
        df.update({t.text for t in tokenize(s) if len(t.text) >= 2 or t.kind in (CJK, SYMBOL)})
    words = sorted(w for w, c in df.items() if c >= MIN_DF)

    def plain(w: str) -> bool:
        if len(w) < 2 or not all(c.isalnum() or c == "_" for c in w) or w.lower() != w:
            return False          # (İ: firehose keeps it, str.lower() makes i + U+0307)
        if any(unicodedata.category(c)[0] == "M" for c in w):
            return False
        toks = tokenize(w)
        return len(toks) == 1 and toks[0].kind not in (CJK, CJK + 1) and toks[0].text == w

    tags: Counter = Counter()
    for lst in table.column("hashtags").to_pylist():
        tags.update({t.lower() for t in lst})
    ments: Counter = Counter()
    for lst in table.column("mentions").to_pylist():
        ments.update({m.lower() for m in lst})
    langs = Counter(x for x in table.column("lang").to_pylist() if x)
    return {
        "words": words,
        "ascii": [w for w in words if w.isascii()],
        "plain": [w for w in words if plain(w)],
        "hashtags": sorted(t for t, c in tags.items() if c >= 2),
        "mentions": sorted(m for m, c in ments.items() if c >= 2),
        "langs": sorted(langs),
        "rare": sorted(w for w, c in df.items() if c < MIN_DF),
    }


_ONSETS = ("b c d f g h j k l m n p r s t v w z br ch cl cr dr fl gr kr pl pr sh st str th tr "
           "qu sk sp sl sn").split()
_NUCLEI = "a e i o u a e i o u ai ea ie oo ou y".split()
_CODAS = ("", "", "", "n", "r", "s", "t", "l", "m", "x", "ck", "nd", "rt", "st", "ng")
_ACCENTED = "é è á ñ ü ö ç ã".split()


@lru_cache(maxsize=2)
def pseudo_words(count: int = 400_000, seed: int = SEED) -> tuple[str, ...]:
    """``count`` distinct pronounceable words that occur in none of the tweets (checked against
    every token of their texts), 3-15 letters (mostly 5-10), in random order. ~8% end in
    digits (brand / model names), ~4% carry an accented letter."""
    return tuple(_disk_cached(f"pseudo{count}-{seed}", None, lambda: _pseudo_words(count, seed)))


def _pseudo_words(count: int, seed: int) -> list[str]:
    r = random.Random(seed)
    rnd = r.random
    v = vocabulary()
    avoid = set(v["words"]) | set(v["rare"])
    on, nu, co, ac = _ONSETS, _NUCLEI, _CODAS, _ACCENTED
    out: dict[str, None] = {}
    while len(out) < count:
        x = rnd()
        k = 1 if x < 0.2 else 2 if x < 0.8 else 3
        w = "".join(on[int(rnd() * len(on))] + nu[int(rnd() * len(nu))] + co[int(rnd() * len(co))]
                    for _ in range(k))
        x = rnd()
        if x < 0.08:
            w += str(int(rnd() * 1000))
        elif x < 0.12:
            i = int(rnd() * len(w))
            w = w[:i] + ac[int(rnd() * len(ac))] + w[i + 1:]
        if len(w) >= 3 and w not in avoid:
            out[w] = None
    return list(out)


_RARE_LANGS = ("am", "hy", "ka", "km", "lo", "my", "si", "ug", "bo", "dv")


def rule_values(n: int, seed: int = SEED, hit: float = HIT) -> list[str]:
    """The first ``n`` rule values of the seeded stream (see the module docstring)."""
    r = random.Random(seed)
    v = vocabulary()
    hit_words = v["words"]
    ps = pseudo_words()
    rnd = r.random

    def word() -> str:
        if rnd() < hit:
            return hit_words[int(rnd() * len(hit_words))]
        return ps[int(rnd() * len(ps))]

    def pick(seq, fallback):
        return seq[int(rnd() * len(seq))] if seq and rnd() < hit * 4 else fallback()

    def ascii_word() -> str:
        while True:
            w = ps[int(rnd() * len(ps))]
            if w.isascii():
                return w

    def quoted(w: str) -> str:
        return w if w.isalnum() else '"' + w.replace('"', "") + '"'

    out = []
    for _ in range(n):
        x = rnd()
        if x < 0.55:
            val = quoted(word())
        elif x < 0.75:
            val = f"{quoted(word())} {quoted(word())}"
        elif x < 0.81:
            k = 2 + int(rnd() * 2)
            val = '"' + " ".join(word().replace('"', "") for _ in range(k)) + '"'
        elif x < 0.86:
            k = 2 + int(rnd() * 3)
            val = " OR ".join(quoted(word()) for _ in range(k))
        elif x < 0.91:
            lang = (v["langs"][int(rnd() * len(v["langs"]))] if rnd() < 0.7
                    else _RARE_LANGS[int(rnd() * len(_RARE_LANGS))])
            if rnd() < 0.5:
                val = f"{quoted(word())} lang:{lang}"
            else:
                val = f"({quoted(word())} OR {quoted(word())}) lang:{lang}"
        elif x < 0.96:
            val = "#" + pick(v["hashtags"], ascii_word)
        elif x < 0.98:
            val = "@" + pick(v["mentions"], lambda: "u_" + ascii_word()[:12])
        else:
            val = f"{quoted(word())} -{quoted(word())}"
        out.append(val)
    return out


def rules(n: int, seed: int = SEED, hit: float = HIT, id_prefix: str = "r") -> list:
    """``rule_values`` as ``Rule`` objects (ids ``r0``, ``r1``...; every 10th has a tag)."""
    from firehose.rules import Rule
    return [Rule(f"{id_prefix}{i}", val, tag=f"t{i % 97}" if i % 10 == 0 else None)
            for i, val in enumerate(rule_values(n, seed, hit))]


def keywords(n: int, seed: int = SEED, hit: float = HIT) -> list[str]:
    """``n`` distinct single-word keywords, lower-case: with probability ``hit`` the next unused
    ``plain`` word of the tweets (in a seeded order), else the next pseudo-word. Prefixes of one
    stream, as for the rules."""
    r = random.Random(seed + 1)
    plain = list(vocabulary()["plain"])
    r.shuffle(plain)
    ps = pseudo_words()
    out, i, j = [], 0, 0
    while len(out) < n:
        if i < len(plain) and r.random() < hit:
            out.append(plain[i].lower())
            i += 1
        else:
            out.append(ps[j].lower())
            j += 1
    return out


MIXES = ("live5", "fixed", "keywords")


def rule_mix(mix: str, n: int) -> list:
    """``n`` rules of one of the benchmark mixes: ``live5`` (:func:`rules`), ``fixed`` (the first
    100 ``live5`` rules, then rules whose words never occur), ``keywords`` (:func:`keywords`)."""
    from firehose.rules import Rule
    if mix == "live5":
        return rules(n)
    if mix == "fixed":
        return rules(min(n, 100)) + rules(max(0, n - 100), seed=SEED + 7, hit=0.0,
                                          id_prefix="z")
    if mix == "keywords":
        return [Rule(f"k{i}", k) for i, k in enumerate(keywords(n))]
    raise ValueError(f"unknown mix {mix!r}")


# ---------------------------------------------------------------------- memory (child process)

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _memory_child(n: int, mix: str = "live5") -> dict:
    """Memory of an n-rule RuleSet, in this (fresh) process, above the RSS with the rules list
    and a 1-row table made: the peak while building it and making its matcher (VmHWM, reset
    first through /proc/self/clear_refs), what it holds once ready, and once the input list is
    dropped (what the snapshot keeps)."""
    import gc
    import time
    from firehose.rules import RuleSet
    one = tweets().slice(0, 1)
    rl = rule_mix(mix, n)
    RuleSet(rules(10)).match(one)              # imports and Unicode tables loaded
    gc.collect()
    base = rss_bytes()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                       # reset VmHWM to the current RSS
        peak_ok = True
    except OSError:
        peak_ok = False
    t0 = time.perf_counter()
    rs = RuleSet(rl)
    rs.match(one)
    t1 = time.perf_counter()
    ready = rss_bytes()
    peak = status_kib("VmHWM") * 1024 if peak_ok else 0
    del rl
    gc.collect()
    kept = rss_bytes()
    out = {"rules": n, "mix": mix, "seconds": round(t1 - t0, 3),
           "rss_ready_MiB": round((ready - base) / 2**20, 1),
           "rss_kept_without_input_MiB": round((kept - base) / 2**20, 1),
           "bytes_per_rule": round((kept - base) / max(n, 1))}
    if peak_ok:
        out["rss_peak_building_MiB"] = round((peak - base) / 2**20, 1)
    return out


if __name__ == "__main__":
    import argparse
    import json
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory", type=int, required=True, help="rules in the set")
    ap.add_argument("--mix", default="live5", choices=MIXES)
    a = ap.parse_args()
    print(json.dumps(_memory_child(a.memory, a.mix)))
