"""The PowerTrack rule parser (firehose.rules.syntax) and `firehose rules check`."""
from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

from firehose.cli import main
from firehose.errors import ConfigError
from firehose.rules import (And, Keyword, Not, Op, Or, Phrase, Rule, RuleError, check, parse)


def K(text, fold=False, prefix=False):
    return Keyword(text, fold, prefix)


def P(text, fold=False, proximity=None):
    return Phrase(text, fold, proximity)


def rejected(value, **kw) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse(value, **kw)
    return info.value


# ------------------------------------------------------------------------------------------
# every term and operator

@pytest.mark.parametrize("value, expected", [
    ("apple", K("apple")),
    ("Apple", K("Apple")),                              # as written: the compiler folds case
    ("🍕", K("🍕")),
    ("❤️", K("❤️")),
    ("e-mail", K("e-mail")),
    ("don't", K("don't")),
    ("12:30", K("12:30")),                              # digits before ':' are no operator
    ("https://x.com/a", K("https://x.com/a")),          # scheme:// is a keyword
    ("or", K("or")),                                    # lower-case or is a keyword
    ("and", K("and")),
    ("tech*", K("tech", prefix=True)),
    ("Añoranza*", K("Añoranza", prefix=True)),
    ("fold:cumpleanos", K("cumpleanos", fold=True)),
    ("fold:tech*", K("tech", fold=True, prefix=True)),
    ('"exact phrase"', P("exact phrase")),
    ('"say \\"hi\\" now"', P('say "hi" now')),
    ('"back\\\\slash x"', P("back\\slash x")),
    ('"happy birthday"~3', P("happy birthday", proximity=3)),
    ('"a b"~250', P("a b", proximity=250)),             # no PowerTrack cap of 6
    ('fold:"feliz cumpleanos"', P("feliz cumpleanos", fold=True)),
    ('fold:"feliz cumpleanos"~2', P("feliz cumpleanos", fold=True, proximity=2)),
    ('"🍕"', P("🍕")),
    ("#thankunext", Op("hashtag", "thankunext")),
    ("#日本語", Op("hashtag", "日本語")),
    ("#हिन्दी", Op("hashtag", "हिन्दी")),                        # combining marks are word characters
    ("@TwitterDev", Op("mention", "TwitterDev")),
    ("@2244994945", Op("mention", 2244994945)),
    ("$TWTR", Op("cashtag", "TWTR")),
    ("$BRK.A", Op("cashtag", "BRK.A")),
    ("from:TwitterDev", Op("from", "TwitterDev")),
    ("from:2244994945", Op("from", 2244994945)),
    ('from:"TwitterDev"', Op("from", "TwitterDev")),
    ("to:jack", Op("to", "jack")),
    ("retweets_of:jack", Op("retweets_of", "jack")),
    ("retweets_of:12", Op("retweets_of", 12)),
    ("url:developer", Op("url", "developer")),
    ('url:"https://developer.twitter.com"', Op("url", "https://developer.twitter.com")),
    ("url_contains:com/docs", Op("url_contains", "com/docs")),
    ('url_contains:"x.com/a b"', Op("url_contains", "x.com/a b")),
    ("contains:ignor", Op("contains", "ignor")),
    ('contains:"a b"', Op("contains", "a b")),
    ("bio:developer", Op("bio", "developer")),
    ('bio:"hello world"', Op("bio", "hello world")),
    ("bio_name:phd", Op("bio_name", "phd")),
    ('bio_location:"big apple"', Op("bio_location", "big apple")),
    ('source:"Twitter for iPhone"', Op("source", "Twitter for iPhone")),
    ("source:TweetDeck", Op("source", "TweetDeck")),
    ("place_country:US", Op("place_country", "US")),
    ("place_country:gb", Op("place_country", "GB")),
    ("bounding_box:[-105.301758 39.964069 -105.178505 40.09455]",
     Op("bounding_box", (-105.301758, 39.964069, -105.178505, 40.09455))),
    ("bounding_box:[  -105.3   39.96 -105.2  40  ]", Op("bounding_box", (-105.3, 39.96, -105.2, 40.0))),
    ("point_radius:[2.355128 48.861118 16km]", Op("point_radius", (2.355128, 48.861118, 16.0))),
    ("point_radius:[2.355128 48.861118 10mi]", Op("point_radius", (2.355128, 48.861118, 16.09344))),
    ("point_radius:[-0.1 51.5 .5km]", Op("point_radius", (-0.1, 51.5, 0.5))),
])
def test_standalone_terms(value, expected):
    node = parse(value)
    assert node == expected
    assert type(node.value if isinstance(node, Op) else node) is type(
        expected.value if isinstance(expected, Op) else expected)


@pytest.mark.parametrize("value, op", [
    ("lang:en", Op("lang", "en")),
    ("lang:EN", Op("lang", "en")),
    ("lang:und", Op("lang", "und")),
    ("lang:zh-cn", Op("lang", "zh-cn")),
    ("lang:zh-Hant-TW", Op("lang", "zh-hant-tw")),
    *[(f"has:{v}", Op("has", v)) for v in
      ("links", "media", "images", "videos", "mentions", "hashtags", "symbols", "geo")],
    *[(f"is:{v}", Op("is", v)) for v in ("retweet", "reply", "quote", "verified")],
    ("sample:1", Op("sample", 1)),
    ("sample:100", Op("sample", 100)),
    ("followers_count:1000", Op("followers_count", (1000, None))),
    ("followers_count:0..10", Op("followers_count", (0, 10))),
    ("followers_count:7..7", Op("followers_count", (7, 7))),
])
def test_operators_that_need_a_partner(value, op):
    assert parse(f"apple {value}") == And((K("apple"), op))
    assert parse(f"apple -{value}") == And((K("apple"), Not(op)))


def test_point_radius_in_miles_is_converted_to_km():
    _, _, r = parse("point_radius:[0 0 25mi]").value
    assert r == pytest.approx(40.2336)


# ------------------------------------------------------------------------------------------
# structure

def test_and_binds_tighter_than_or():
    assert parse("a b OR c d") == Or((And((K("a"), K("b"))), And((K("c"), K("d")))))
    assert parse("apple OR iphone ipad") == Or((K("apple"), And((K("iphone"), K("ipad")))))


def test_flattening_and_single_children():
    assert parse("a (b c) d") == And((K("a"), K("b"), K("c"), K("d")))
    assert parse("a OR (b OR c) OR d") == Or((K("a"), K("b"), K("c"), K("d")))
    assert parse("((a))") == K("a")
    assert parse("(a b)") == And((K("a"), K("b")))
    assert parse("a (b OR c)") == And((K("a"), Or((K("b"), K("c")))))
    assert parse("(a OR b) (c OR d)") == And((Or((K("a"), K("b"))), Or((K("c"), K("d")))))
    assert parse("  a\tb\n") == And((K("a"), K("b")))


def test_negation():
    assert parse("apple -ipad") == And((K("apple"), Not(K("ipad"))))
    assert parse('apple -"ipad mini"') == And((K("apple"), Not(P("ipad mini"))))
    assert parse("apple -(ipad OR iphone)") == And((K("apple"), Not(Or((K("ipad"), K("iphone"))))))
    assert parse("apple -(ipad mini)") == And((K("apple"), Not(And((K("ipad"), K("mini"))))))
    assert parse("apple -#tag -@x -$X -from:x -fold:y") == And((
        K("apple"), Not(Op("hashtag", "tag")), Not(Op("mention", "x")),
        Not(Op("cashtag", "X")), Not(Op("from", "x")), Not(K("y", fold=True))))
    assert parse("a -5") == And((K("a"), Not(K("5"))))


def test_no_space_needed_around_parentheses():
    assert parse("a(b OR c)d") == And((K("a"), Or((K("b"), K("c"))), K("d")))
    assert parse('(a)OR("b c")') == Or((K("a"), P("b c")))


def test_columns():
    v = '(happy OR party) "new year"~3 -is:retweet fold:x #t'
    node = parse(v)
    assert node.col == 1
    grp, phrase, neg, fold, tag = node.children
    assert grp.col == 1 and [c.col for c in grp.children] == [2, 11]
    assert phrase.col == v.index('"') + 1
    assert neg.col == v.index("-") + 1 and neg.child.col == v.index("is:") + 1
    assert fold.col == v.index("fold:") + 1
    assert tag.col == v.index("#") + 1
    node = parse("  a OR b")
    assert node.col == 3
    assert parse("x (a OR b) c").children[1].col == 3
    assert parse("x (a b) c").children[1].col == 4        # flattened: a keeps its own col


def test_col_is_not_part_of_equality_or_hash():
    a, b = parse("apple"), parse("   apple")
    assert a == b and hash(a) == hash(b) and a.col != b.col
    assert "col" not in repr(a)
    assert {parse("x a"), parse("x  a")} == {And((K("x"), K("a")))}


def test_nodes_are_frozen():
    node = parse("apple")
    with pytest.raises(AttributeError):
        node.text = "pear"          # type: ignore[misc]
    assert And([K("a"), K("b")]).children == (K("a"), K("b"))


def test_rule_fold_folds_every_keyword_and_phrase():
    assert parse('a "b c" #d', fold=True) == And((K("a", fold=True), P("b c", fold=True),
                                                  Op("hashtag", "d")))
    assert Rule("1", "cumpleaños", fold=True).parse() == K("cumpleaños", fold=True)


# ------------------------------------------------------------------------------------------
# documented PowerTrack examples

@pytest.mark.parametrize("value, expected", [
    ("(happy OR party) (holiday OR house) -(birthday OR democrat OR republican)",
     And((Or((K("happy"), K("party"))), Or((K("holiday"), K("house"))),
          Not(Or((K("birthday"), K("democrat"), K("republican"))))))),
    ("skiing -snow -day -noschool",
     And((K("skiing"), Not(K("snow")), Not(K("day")), Not(K("noschool"))))),
    ("(grumpy cat) OR (#meme has:images)",
     Or((And((K("grumpy"), K("cat"))), And((Op("hashtag", "meme"), Op("has", "images")))))),
    ("cat #meme has:images -grumpy",
     And((K("cat"), Op("hashtag", "meme"), Op("has", "images"), Not(K("grumpy"))))),
    ('"happy birthday" OR "feliz cumpleaños"', Or((P("happy birthday"), P("feliz cumpleaños")))),
    ("from:TwitterDev has:media -is:retweet",
     And((Op("from", "TwitterDev"), Op("has", "media"), Not(Op("is", "retweet"))))),
    ("#nowplaying (happy OR exciting OR excited OR favorite OR fav OR amazing OR lovely OR "
     "incredible) (place_country:US OR place_country:MX OR place_country:CA) -horrible -worst "
     "-sucks -bad -disappointing",
     And((Op("hashtag", "nowplaying"),
          Or(tuple(K(w) for w in ("happy", "exciting", "excited", "favorite", "fav", "amazing",
                                  "lovely", "incredible"))),
          Or((Op("place_country", "US"), Op("place_country", "MX"), Op("place_country", "CA"))),
          *(Not(K(w)) for w in ("horrible", "worst", "sucks", "bad", "disappointing"))))),
    ("(iphone OR ipad) lang:en sample:10 followers_count:500",
     And((Or((K("iphone"), K("ipad"))), Op("lang", "en"), Op("sample", 10),
          Op("followers_count", (500, None))))),
    ('"social media"~10 -is:retweet', And((P("social media", proximity=10),
                                            Not(Op("is", "retweet"))))),
    ("@TwitterDev OR retweets_of:TwitterDev OR to:TwitterDev",
     Or((Op("mention", "TwitterDev"), Op("retweets_of", "TwitterDev"), Op("to", "TwitterDev")))),
    ("$TWTR OR $AAPL has:symbols", Or((Op("cashtag", "TWTR"),
                                        And((Op("cashtag", "AAPL"), Op("has", "symbols")))))),
    ('url_contains:"com/docs" bio:developer', And((Op("url_contains", "com/docs"),
                                                    Op("bio", "developer")))),
    ("has:geo (from:NWSNHC OR from:NHC_Atlantic OR from:NWSHouston)",
     And((Op("has", "geo"), Or((Op("from", "NWSNHC"), Op("from", "NHC_Atlantic"),
                                 Op("from", "NWSHouston")))))),
])
def test_powertrack_examples(value, expected):
    assert parse(value) == expected


def test_powertrack_doc_point_radius_with_swapped_coordinates_is_rejected():
    # the docs' own "Wellington" example has longitude and latitude the wrong way round
    v = "point_radius:[2.355128 48.861118 16km] OR point_radius:[-41.287336 174.761070 20mi]"
    e = rejected(v)
    assert e.col == v.index("174.76") + 1 and "latitude" in e.reason


# ------------------------------------------------------------------------------------------
# rejections: (value, col, part of the reason)

REJECTIONS = [
    # syntax
    ("", 1, "empty rule"),
    ("   ", 1, "empty rule"),
    ("(a b", 1, "unclosed '('"),
    ("a ((b) c", 3, "unclosed '('"),
    ("a b)", 4, "unmatched ')'"),
    (") a", 1, "unmatched ')'"),
    ('"a b', 1, "unclosed quote"),
    ('a "b c', 3, "unclosed quote"),
    ('from:"x', 6, "unclosed quote"),
    ("()", 1, "empty group"),
    ("a ( ) b", 3, "empty group"),
    ("a -", 3, "dangling '-'"),
    ("a - b", 3, "dangling '-'"),
    ("a -)", 3, "dangling '-'"),
    ("--a b", 1, "negated only once"),
    ("a -OR b", 3, "'-' must be followed by a term"),
    ("OR a", 1, "dangling OR"),
    ("a OR", 3, "dangling OR"),
    ("a OR OR b", 3, "dangling OR"),
    ("(a OR) b", 4, "dangling OR"),
    ("a AND b", 3, "explicit AND is not an operator: use a space"),
    ("AND a", 1, "explicit AND is not an operator"),
    ('a"b c"', 2, "a quote inside a word"),
    ('"a b"c', 6, "put a space between a quoted phrase and 'c'"),
    ('"a b"~', 6, "whole number"),
    ('"a b"~x', 6, "whole number"),
    ("#", 1, "needs a value"),
    ("# a", 1, "needs a value"),
    ('#"a b"', 1, "cannot take a quoted value"),
    ("from: x", 1, "from: needs a value"),
    ("lang:", 1, "lang: needs a value"),
    ('lang:"en" a', 6, "lang: cannot take a quoted value"),
    ('bio:"a b"~2', 10, "proximity '~N' applies only to a phrase"),
    ("fold:", 1, "fold: needs a keyword or a quoted phrase"),
    ("fold: a", 1, "fold: needs a keyword"),
    ("fold:#a", 6, "fold: applies to a keyword or a quoted phrase"),
    ("fold:from:x", 6, "fold: applies to a keyword"),
    ("bounding_box:1 2 3 4", 14, "needs [west south east north]"),
    ("bounding_box:[1 2 3 4", 14, "unclosed '['"),
    ("point_radius:[1 2 3km]x", 23, "put a space between"),
    # over-long
    ("a" * 2049, 2049, "over the 2,048 limit"),
    # standalone and negation
    ("-apple", 1, "only negated terms"),
    ("-(a b)", 1, "only negated terms"),
    ("-a -b -c", 1, "only negated terms"),
    ("a OR (-b -c)", 6, "this OR alternative has only negated terms"),
    ("lang:en is:retweet", 1, "lang:, is: cannot stand alone"),
    ("has:links", 1, "has: cannot stand alone"),
    ("sample:10 -apple", 1, "sample: cannot stand alone"),
    ("followers_count:10", 1, "followers_count: cannot stand alone"),
    ("apple OR lang:en", 10, "lang: cannot stand alone: this OR alternative"),
    ("(a OR lang:en) (b OR is:retweet)", 1, "lang:, is: cannot stand alone"),
    ("apple OR -ipad", 10, "a negated term cannot be an OR alternative"),
    ("a (b OR -(c d))", 9, "a negated term cannot be an OR alternative"),
    # unknown operators
    ("foo:bar", 1, "unknown operator foo:"),
    ("apple re:invent", 7, 'quote it: "re:invent"'),
    ("From:jack", 1, "operator names are lower-case (from:)"),
    ("Fold:x", 1, "operator names are lower-case (fold:)"),
    # values
    ("a lang:english", 8, "bad language code"),
    ("a lang:e", 8, "bad language code"),
    ("a lang:zh_cn", 8, "bad language code"),
    ("a has:pictures", 7, "bad has:pictures"),
    ("a is:deleted", 6, "bad is:deleted"),
    ("a sample:0", 10, "bad sample:0"),
    ("a sample:101", 10, "bad sample:101"),
    ("a sample:5.5", 10, "bad sample"),
    ("a followers_count:10..5", 19, "lower bound is above the upper"),
    ("a followers_count:-5", 19, "bad followers_count"),
    ("a followers_count:..5", 19, "bad followers_count"),
    ("a followers_count:1,000", 19, "bad followers_count"),
    ("place_country:USA", 15, "two-letter ISO"),
    ("#tag!", 2, "bad hashtag"),
    ("$100", 2, "bad cashtag"),
    ("@jack.", 2, "bad user"),
    ("from:ja-ck", 6, "bad user"),
    ("from:99999999999999999999", 6, "user id too large"),
    ("url:!!!", 5, "no letters, digits or emoji"),
    ('bio:""', 5, "empty value"),
    # geo
    ("bounding_box:[-181 0 -180.9 0.1]", 15, "longitude -181 is outside -180..180"),
    ("bounding_box:[0 -91 0.1 -90]", 17, "latitude -91 is outside"),
    ("bounding_box:[0 0 0.1 x]", 23, "bad coordinate"),
    ("bounding_box:[0 0 0.1]", 14, "4 values"),
    ("bounding_box:[0.1 0 0 0.1]", 14, "west 0.1 must be less than east 0"),
    ("bounding_box:[0 0 0 0.1]", 14, "west 0 must be less than east 0"),
    ("bounding_box:[0 0.1 0.1 0.1]", 14, "south 0.1 must be less than north 0.1"),
    ("bounding_box:[0 0 0.1 0.3619]", 14, "the west/east side is 40.2 km (25.0 mi)"),
    ("bounding_box:[0 0 1 1]", 14, "the south side is 111.2 km"),
    ("bounding_box:[10 59.7 10.723 60]", 14, "the south side"),   # north (at 60) would pass
    ("point_radius:[0 0 0km]", 19, "must be more than 0"),
    ("point_radius:[0 0 25.01mi]", 19, "over 25 miles"),
    ("point_radius:[0 0 40.24km]", 19, "over 25 miles"),
    ("point_radius:[0 0 10]", 19, "followed by mi or km"),
    ("point_radius:[0 0 10 km]", 14, "3 values"),
    ("point_radius:[0 0 10KM]", 19, "followed by mi or km"),
    ("point_radius:[0 91 1km]", 17, "latitude 91 is outside"),
    # keywords, phrases, prefixes, proximity
    ('"a b"~0', 6, "proximity ~0 must be at least 1"),
    ('"hello"~3', 1, "two or more words"),
    ('fold:"hello"~3', 6, "two or more words"),
    ('""', 1, "empty phrase"),
    ('"!!"', 1, "no letters, digits or emoji"),
    ("a —", 3, "no letters, digits or emoji"),
    ("te*", 1, "at least 3 characters before '*'"),
    ("fold:te*", 6, "at least 3 characters before '*'"),
    ("*", 1, "at least 3 characters"),
    ("te*ch", 1, "'*' is allowed only once, at the end"),
    ("tech**", 1, "'*' is allowed only once"),
    ("e-ma*", 1, "letters, digits or '_' only"),
    ("中文字*", 1, "does not apply to CJK"),
    ("apple~3", 1, "applies to a quoted phrase"),
]


@pytest.mark.parametrize("value, col, reason", REJECTIONS,
                         ids=[v[:40] for v, _, _ in REJECTIONS])
def test_rejections(value, col, reason):
    e = rejected(value)
    assert e.col == col, e
    assert reason in e.reason, e
    assert str(e) == f"col {col}: {e.reason}"


def test_values_up_to_the_limits_are_accepted():
    assert parse("a" * 2048) == K("a" * 2048)
    assert parse("bounding_box:[0 0 0.1 0.3618]").value == (0.0, 0.0, 0.1, 0.3618)
    assert parse("bounding_box:[10 60 10.72 60.1]").name == "bounding_box"
    assert parse("bounding_box:[-180 -90 -179.9 -89.9]").name == "bounding_box"
    assert parse("point_radius:[0 0 40.2336km]").value == (0.0, 0.0, 40.2336)
    assert parse("point_radius:[180 90 25mi]").name == "point_radius"
    assert parse("tec*") == K("tec", prefix=True)
    assert parse('"a b"~1') == P("a b", proximity=1)


def test_value_errors_are_all_found_and_the_first_is_raised():
    node_errors = check([Rule("r", "lang:xx-! a has:nope sample:0")])
    assert [e.col for e in node_errors] == [6, 17, 29]
    e = rejected("lang:xx-! a has:nope sample:0")
    assert e.col == 6


def test_rule_error_is_a_config_error_and_pickles():
    e = rejected("apple OR -ipad")
    assert isinstance(e, ConfigError) and isinstance(e, ValueError)
    e2 = pickle.loads(pickle.dumps(e.for_rule("r7", 3)))
    assert (e2.col, e2.reason, e2.rule_id, e2.index) == (10, e.reason, "r7", 3)
    assert str(e2) == f"rule r7: col 10: {e.reason}"


# ------------------------------------------------------------------------------------------
# Rule and check()

def test_rule_fields_and_validation():
    r = Rule("1", "apple", "fruit")
    assert (r.id, r.value, r.tag, r.fold) == ("1", "apple", "fruit", False)
    with pytest.raises(AttributeError):
        r.id = "2"                  # type: ignore[misc]
    with pytest.raises(RuleError, match="non-empty"):
        Rule("", "apple")
    with pytest.raises(RuleError, match="non-empty"):
        Rule("  ", "apple")
    with pytest.raises(TypeError):
        Rule(1, "apple")            # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Rule("1", None)             # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Rule("1", "a", tag=3)       # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse(b"apple")             # type: ignore[arg-type]


def test_rule_parse_names_the_rule():
    with pytest.raises(RuleError) as info:
        Rule("r-9", "-apple").parse()
    assert info.value.rule_id == "r-9"
    assert str(info.value) == "rule r-9: col 1: " + info.value.reason


def test_check_reports_every_problem_and_duplicate_ids():
    rules = [Rule("a", "apple"), Rule("b", "lang:en"), Rule("a", "pear"),
             Rule("c", "apple OR -ipad"), Rule("d", "x"), Rule("b", "x")]
    errs = check(rules)
    assert [(e.rule_id, e.index, e.col) for e in errs] == [
        ("b", 1, 1), ("a", 2, None), ("c", 3, 10), ("b", 5, None)]
    assert str(errs[1]) == "rule a: duplicate rule id (first used at rules[0])"
    assert check(rules, where=["l1", "l2", "l3", "l4", "l5", "l6"])[3].reason.endswith("at l2)")
    assert check([Rule("a", "apple"), Rule("b", "pear")]) == []


# ------------------------------------------------------------------------------------------
# firehose rules check

def run(tmp_path, name, content, *args):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    return CliRunner().invoke(main, ["rules", "check", str(p), *args]), str(p)


def test_cli_ndjson(tmp_path):
    lines = [json.dumps({"id": "a", "value": "apple", "tag": "fruit"}),
             "",
             json.dumps({"id": "b", "value": "apple OR -ipad"}),
             json.dumps({"id": 7, "value": "lang:en is:retweet"}),
             json.dumps({"id": "a", "value": "pear"}),
             "{not json",
             json.dumps({"value": "x", "tags": "t"}),
             json.dumps({"id": "e", "value": 3}),
             json.dumps({"id": "", "value": "x"}),
             json.dumps({"id": "f", "value": "fold:cumpleaños", "fold": True})]
    res, p = run(tmp_path, "rules.ndjson", "\n".join(lines) + "\n")
    assert res.exit_code == 1, res.output
    out = res.stdout.splitlines()
    assert out[0] == f"{p}:3: rule b: col 10: a negated term cannot be an OR alternative " \
                     "(negate outside the group: -(a OR b))"
    assert out[1].startswith(f"{p}:4: rule 7: col 1: lang:, is: cannot stand alone")
    assert out[2] == f"{p}:5: rule a: duplicate rule id (first used at line 1)"
    assert out[3].startswith(f"{p}:6: invalid JSON:")
    assert out[4] == f"{p}:7: rule line-7: unknown key 'tags' (a rule has id, value, tag, fold)"
    assert out[5] == f"{p}:8: rule e: value must be a string, not 3"
    assert out[6] == f"{p}:9: rule id must be a non-empty string"
    assert len(out) == 7


def test_cli_json_array(tmp_path):
    rules = [{"id": "1", "value": "apple"}, {"id": "2", "value": "#ok"}]
    res, p = run(tmp_path, "rules.json", json.dumps(rules, indent=1))
    assert res.exit_code == 0, res.output
    assert res.stdout == "2 rules OK\n"
    content = '[\n  {"id": "1", "value": "apple"},\n  {"id": "2",\n   "value": "-x"},\n' \
              '  {"id": "3", "value": "a lang:xx-!"}\n]\n'
    res, p = run(tmp_path, "bad.json", content)
    assert res.exit_code == 1
    assert res.stdout.splitlines() == [
        f"{p}:3: rule 2: col 1: the rule has only negated terms: add a keyword, phrase or "
        "operator to match (negations only remove matches)",
        f"{p}:5: rule 3: col 8: bad language code lang:xx-!: two or three letters (en, und), "
        "or a BCP 47 tag such as zh-cn",
    ]
    res, p = run(tmp_path, "empty.json", " [ ] ")
    assert (res.exit_code, res.stdout) == (0, "0 rules OK\n")


def test_cli_plain_text(tmp_path):
    res, p = run(tmp_path, "rules.txt", "apple\n\n#nowplaying has:media\r\n")
    assert (res.exit_code, res.stdout) == (0, "2 rules OK\n")
    res, p = run(tmp_path, "rules.txt", "apple\n\nfoo:bar a\n(x\n")
    assert res.exit_code == 1
    assert res.stdout.splitlines() == [
        f'{p}:3: rule line-3: col 1: unknown operator foo:; to match the text, quote it: "foo:bar"',
        f"{p}:4: rule line-4: col 1: unclosed '('",
    ]
    res = CliRunner().invoke(main, ["rules", "check", "-"], input="apple\nlang:en\n")
    assert res.exit_code == 1
    assert res.stdout.startswith("<stdin>:2: rule line-2: col 1: lang: cannot stand alone")


def test_cli_unreadable(tmp_path):
    res = CliRunner().invoke(main, ["rules", "check", str(tmp_path / "missing.ndjson")])
    assert res.exit_code == 2
    assert "cannot read" in res.stderr and res.stdout == ""
    res = CliRunner().invoke(main, ["rules", "check", str(tmp_path)])
    assert res.exit_code == 2
    p = tmp_path / "latin1.txt"
    p.write_bytes(b"caf\xe9\n")
    res = CliRunner().invoke(main, ["rules", "check", str(p)])
    assert res.exit_code == 2 and "not UTF-8" in res.stderr
    res, p = run(tmp_path, "broken.json", '[{"id": "a", "value": "x"},\n]')
    assert res.exit_code == 2 and f"{p}:2: cannot read: not a JSON array" in res.stderr


# ------------------------------------------------------------------------------------------
# robustness

_PIECES = ['a', 'b', ' ', 'OR', 'AND', '(', ')', '"', '-', '~', '2', '*', '#', '@', '$', ':',
           '[', ']', '.', '\\', 'fold:', 'lang:en', 'from:', 'bounding_box:[0 0 0.1 0.1]',
           'point_radius:[0 0 1km]', 'é', '🍕', '中', 'tech', 'x:y', 'http://']


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14).map("".join))
def test_parse_returns_a_tree_or_a_rule_error(value):
    try:
        node = parse(value)
    except RuleError as e:
        assert e.col is not None and 1 <= e.col <= len(value) + 1
        return

    def walk(n):
        assert 1 <= n.col <= len(value)
        if isinstance(n, (And, Or)):
            assert len(n.children) >= 2
            assert not any(type(c) is type(n) for c in n.children)
            for c in n.children:
                walk(c)
        elif isinstance(n, Not):
            walk(n.child)
    walk(node)
