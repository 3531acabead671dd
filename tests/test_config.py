"""firehose.config: TOML -> frozen dataclasses, every problem named by its key path."""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import pickle
import tomllib
from collections import Counter

import pytest
from click.testing import CliRunner

from firehose.cli import main
from firehose.config import (CATEGORIES, COLUMNS, COUNTRY_CODES, EDGE_KINDS, Approval, Caps,
                             Client, Config, Edge, FieldGroup, Grant, Licence,
                             Problem, SinkConfig, Source, from_dict, load, loads)
from firehose.errors import ConfigError, FirehoseError
from firehose.rules import Rule
from firehose.schema import TWEETS

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "clients.toml")

FULL = """
[sources.firehose]
licence = "x-enterprise"
description = "the stream"
[sources.archive]
licence = "ids-only"

[licences.x-enterprise]
prohibited_categories = ["surveillance", "intelligence"]
approval_required = ["government", "law_enforcement", "homeland_security"]
redistribution = "full"
embargoed_countries = ["KP", "IR"]
[licences.x-enterprise.caps]
post_ids_per_group_per_30d = 1_500_000
objects_per_recipient_per_day = 50000
[licences.ids-only]
redistribution = "ids"

[field_groups]
core = ["id", "created_at", "text", "lang", "source_file", "line", "byte_offset"]
author_profile = ["author_screen_name", "author_name", "author_description", "author_location",
                  "author_followers_count", "author_verified"]
geo_exact = ["coordinates"]
geo_place = ["place_id", "place_country_code"]
raw = ["raw_json"]

[organisations.agency]
categories = ["intelligence"]
[organisations.ministry]
categories = ["government"]
[organisations.holding]
categories = ["commercial"]
owned_by = [{ org = "agency", percent = 60 }, { org = "ministry", percent = 12.5 }]
[organisations.frontco]
categories = ["commercial", "finance"]
owned_by = [{ org = "holding", percent = 100 }]
controlled_by = ["agency"]
acts_on_behalf_of = [{ org = "ministry" }]
component_of = ["holding"]
description = "a front"
[organisations.paper]
categories = ["media", "newsroom"]

[clients.frontco-seat]
organisation = "frontco"
delivery_countries = ["US"]
use_case = "market research"
grants = [{ source = "firehose", field_groups = ["core", "author_profile"] }]
sink = { kind = "parquet", path = "out/frontco" }
rules = [{ id = "1", value = "apple OR banana", tag = "fruit" }]

[clients.newsroom]
organisation = "paper"
delivery_countries = ["US", "GB", "FR"]
use_case = "news"
grants = [
    { source = "firehose", field_groups = ["core", "geo_place"] },
    { source = "archive", field_groups = ["core"] },
]
approvals = [{ use_case = "news", by = "legal", date = 2025-01-10, ref = "APP-7", expires = 2026-01-09 }]
sink = { kind = "ndjson", path = "out/newsroom.ndjson.gz" }
rules = [
    { id = 7, value = "#Ukraine OR #WorldCup", tag = "world" },
    { id = "cafe", value = "cafe", fold = true },
]

[clients.alerts]
organisation = "ministry"
delivery_countries = ["XX"]
use_case = "news alerts"
approvals = [{ use_case = "news alerts", by = "committee", date = 2024-12-01 }]
grants = [{ source = "firehose", field_groups = ["core"] }]
sink = { kind = "callback" }
rules = [{ id = "b", value = "breaking news" }]

[clients.desk]
organisation = "holding"
delivery_countries = ["GB"]
use_case = "signals"
sink = { kind = "arrow", path = "out/desk", compression = "lz4" }
"""


def full() -> dict:
    return tomllib.loads(FULL)


def problems_of(data, source="<dict>") -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        from_dict(data, source=source)
    return list(info.value.problems)


def paths(problems) -> list[str]:
    return [p.path for p in problems]


# --------------------------------------------------------------------------------------------
# a valid config


def test_full_config_values_and_defaults():
    cfg = loads(FULL)
    assert cfg.warnings == ()
    assert cfg.sources["firehose"] == Source("firehose", "x-enterprise", "the stream")
    lic = cfg.licences["x-enterprise"]
    assert lic == Licence("x-enterprise", ("intelligence", "surveillance"),
                          ("government", "homeland_security", "law_enforcement"), "full",
                          ("IR", "KP"), Caps(1_500_000, 50_000))
    ids = cfg.licences["ids-only"]
    assert ids.redistribution == "ids" and ids.caps == Caps(None, None)
    assert ids.prohibited_categories == ids.approval_required == ids.embargoed_countries == ()
    assert cfg.field_groups["geo_place"] == FieldGroup("geo_place", ("place_id", "place_country_code"))
    front = cfg.organisations["frontco"]
    assert front.categories == ("commercial", "finance")
    assert front.edges == (
        Edge("frontco", "owned_by", "holding", 100.0), Edge("frontco", "controlled_by", "agency"),
        Edge("frontco", "acts_on_behalf_of", "ministry"), Edge("frontco", "component_of", "holding"))
    assert front.parents("owned_by") == ("holding",)
    assert front.parents() == ("holding", "agency", "ministry", "holding")
    assert cfg.organisations["holding"].edges[1].percent == 12.5

    news = cfg.clients["newsroom"]
    assert news == Client(
        "newsroom", "paper", ("FR", "GB", "US"), "news",
        (Grant("firehose", ("core", "geo_place")), Grant("archive", ("core",))),
        (Approval("news", "legal", dt.date(2025, 1, 10), "APP-7", dt.date(2026, 1, 9)),),
        (Rule("7", "#Ukraine OR #WorldCup", "world"), Rule("cafe", "cafe", None, True)),
        SinkConfig("ndjson", "out/newsroom.ndjson.gz", "gzip"))
    assert cfg.clients["alerts"].delivery_countries == ("XX",)
    assert cfg.clients["alerts"].sink == SinkConfig("callback", None, None)
    assert cfg.clients["frontco-seat"].sink == SinkConfig("parquet", "out/frontco", "zstd")
    assert cfg.clients["desk"].sink == SinkConfig("arrow", "out/desk", "lz4")
    desk = cfg.clients["desk"]
    assert desk.grants == desk.approvals == desk.rules == () and desk.description == ""
    assert list(cfg.clients) == ["frontco-seat", "newsroom", "alerts", "desk"]   # file order
    assert set(cfg.unclassified_columns) == set(COLUMNS) - {
        c for g in cfg.field_groups.values() for c in g.columns}


def test_round_trip_and_hash():
    cfg = loads(FULL)
    again = from_dict(cfg.to_dict())
    assert again == cfg and again.hash == cfg.hash and hash(again) == hash(cfg)
    assert again.to_dict() == cfg.to_dict()
    assert len(cfg.hash) == 64 and int(cfg.hash, 16) >= 0
    assert cfg.canonical() == again.canonical()
    # the order of set-like lists does not matter; the order of rules does
    d = full()
    d["licences"]["x-enterprise"]["embargoed_countries"].reverse()
    d["organisations"]["frontco"]["categories"].reverse()
    assert from_dict(d).hash == cfg.hash
    d["clients"]["newsroom"]["rules"].reverse()
    assert from_dict(d).hash != cfg.hash
    # defaults written out or left implicit give the same config
    d = full()
    d["licences"]["ids-only"].update(prohibited_categories=[], caps={})
    d["clients"]["frontco-seat"]["sink"]["compression"] = "zstd"
    d["clients"]["desk"]["rules"] = []
    assert from_dict(d) == cfg and from_dict(d).hash == cfg.hash
    # any value changes the hash
    d = full()
    d["organisations"]["holding"]["owned_by"][0]["percent"] = 61
    assert from_dict(d).hash != cfg.hash


def test_config_is_frozen_and_read_only():
    cfg = loads(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.clients = {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.clients["desk"].organisation = "x"
    with pytest.raises(TypeError):
        cfg.clients["x"] = cfg.clients["desk"]
    assert Config().clients == {} and Config().hash == from_dict({}).hash
    assert loads("").to_dict() == {"sources": {}, "licences": {}, "field_groups": {},
                                   "organisations": {}, "clients": {}}


def test_vocabularies():
    assert set(CATEGORIES) == {"intelligence", "surveillance", "law_enforcement", "military",
                               "government", "homeland_security", "media", "newsroom", "finance",
                               "trading", "academic", "ngo", "commercial", "sanctioned"}
    assert all(CATEGORIES.values())
    assert EDGE_KINDS == ("owned_by", "controlled_by", "acts_on_behalf_of", "component_of")
    assert {"US", "GB", "KP", "IR", "JP"} <= COUNTRY_CODES and "UK" not in COUNTRY_CODES
    assert COLUMNS == tuple(TWEETS.names) + ("raw_json",)


# --------------------------------------------------------------------------------------------
# errors, each with its key path


def test_error_message_is_the_key_path():
    d = full()
    d["clients"]["newsroom"]["grants"][0]["source"] = "gnip2"
    with pytest.raises(ConfigError) as info:
        from_dict(d)
    assert str(info.value) == "clients.newsroom.grants[0].source: unknown source 'gnip2'"
    assert isinstance(info.value, ValueError) and isinstance(info.value, FirehoseError)
    text = FULL.replace('"gnip2"', "").replace('source = "archive"', 'source = "gnip2"')
    with pytest.raises(ConfigError) as info:
        loads(text, source="clients.toml")
    assert str(info.value) == "clients.toml: clients.newsroom.grants[1].source: unknown source 'gnip2'"
    assert info.value.origin == "clients.toml"


def _set(*keys, value):
    def apply(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return apply


def _drop(*keys):
    def apply(d):
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return apply


C = ("clients", "newsroom")
O = ("organisations", "frontco")
L = ("licences", "x-enterprise")

ERRORS = [
    # missing required keys
    (_drop("sources", "firehose", "licence"), "sources.firehose.licence", "required key is missing"),
    (_drop(*O, "categories"), "organisations.frontco.categories", "required key is missing"),
    (_drop(*C, "organisation"), "clients.newsroom.organisation", "required key is missing"),
    (_drop(*C, "delivery_countries"), "clients.newsroom.delivery_countries", "required key is missing"),
    (_drop(*C, "use_case"), "clients.newsroom.use_case", "required key is missing"),
    (_drop(*C, "grants", 0, "field_groups"), "clients.newsroom.grants[0].field_groups", "required key is missing"),
    (_drop(*C, "approvals", 0, "date"), "clients.newsroom.approvals[0].date", "required key is missing"),
    (_drop(*C, "approvals", 0, "by"), "clients.newsroom.approvals[0].by", "required key is missing"),
    (_drop(*C, "rules", 0, "value"), "clients.newsroom.rules[0].value", "required key is missing"),
    (_drop(*C, "rules", 0, "id"), "clients.newsroom.rules[0].id", "required key is missing"),
    (_drop(*C, "sink", "path"), "clients.newsroom.sink.path", "required key is missing"),
    (_drop(*O, "owned_by", 0, "percent"), "organisations.frontco.owned_by[0].percent", "required key is missing"),
    # wrong types
    (_set("sources", value=[]), "sources", "expected a table, got an array"),
    (_set("sources", "firehose", value="x-enterprise"), "sources.firehose", "expected a table, got a string"),
    (_set("field_groups", "core", value="id"), "field_groups.core", "expected an array of column names"),
    (_set(*C, "organisation", value=7), "clients.newsroom.organisation", "expected a string, got an integer (7)"),
    (_set(*C, "delivery_countries", value="US"), "clients.newsroom.delivery_countries", "expected an array"),
    (_set(*C, "grants", value={"source": "firehose"}), "clients.newsroom.grants", "expected an array"),
    (_set(*C, "grants", 0, value="firehose"), "clients.newsroom.grants[0]", "expected a table, got a string"),
    (_set(*C, "approvals", 0, "date", value="2025-01-10"), "clients.newsroom.approvals[0].date", "expected a date"),
    (_set(*C, "approvals", 0, "date", value=dt.datetime(2025, 1, 10, 9)), "clients.newsroom.approvals[0].date", "got a datetime"),
    (_set(*C, "rules", 0, "id", value=1.5), "clients.newsroom.rules[0].id", "expected a string or an integer"),
    (_set(*C, "rules", 0, "id", value=" "), "clients.newsroom.rules[0].id", "must not be empty"),
    (_set(*C, "rules", 0, "tag", value=3), "clients.newsroom.rules[0].tag", "expected a string"),
    (_set(*C, "rules", 0, "fold", value="yes"), "clients.newsroom.rules[0].fold", "expected true or false"),
    (_set(*C, "sink", value="parquet"), "clients.newsroom.sink", "expected a table"),
    (_set(*L, "caps", "objects_per_recipient_per_day", value=True), "licences.x-enterprise.caps.objects_per_recipient_per_day", "expected an integer, got a boolean"),
    (_set(*L, "caps", "objects_per_recipient_per_day", value=-1), "licences.x-enterprise.caps.objects_per_recipient_per_day", "must be 0 or more"),
    (_set(*O, "owned_by", value=["holding"]), "organisations.frontco.owned_by[0]", "owned_by needs the percent held"),
    (_set(*O, "controlled_by", value=[3]), "organisations.frontco.controlled_by[0]", "expected an organisation name"),
    (_set(*C, "description", value=1), "clients.newsroom.description", "expected a string"),
    # references
    (_set("sources", "firehose", "licence", value="x-enterprize"), "sources.firehose.licence", "unknown licence 'x-enterprize' (did you mean 'x-enterprise'?)"),
    (_set(*C, "organisation", value="papers"), "clients.newsroom.organisation", "unknown organisation 'papers'"),
    (_set(*C, "grants", 0, "field_groups", value=["core", "geo"]), "clients.newsroom.grants[0].field_groups[1]", "unknown field group 'geo'"),
    (_set(*C, "grants", 1, "source", value="firehose"), "clients.newsroom.grants[1].source", "already granted at clients.newsroom.grants[0]"),
    (_set(*C, "grants", 0, "field_groups", value=[]), "clients.newsroom.grants[0].field_groups", "must not be empty"),
    # vocabularies and ranges
    (_set(*O, "categories", value=["commercial", "inteligence"]), "organisations.frontco.categories[1]", "unknown category 'inteligence' (did you mean 'intelligence'?)"),
    (_set(*O, "categories", value=[]), "organisations.frontco.categories", "must not be empty"),
    (_set(*O, "categories", value=["media", "media"]), "organisations.frontco.categories[1]", "duplicate 'media'"),
    (_set(*L, "prohibited_categories", value=["spies"]), "licences.x-enterprise.prohibited_categories[0]", "unknown category 'spies'"),
    (_set(*L, "approval_required", value=["Government"]), "licences.x-enterprise.approval_required[0]", "unknown category 'Government'"),
    (_set(*L, "redistribution", value="partial"), "licences.x-enterprise.redistribution", "unknown redistribution mode 'partial'"),
    (_set(*L, "embargoed_countries", value=["KP", "ir"]), "licences.x-enterprise.embargoed_countries[1]", "upper-case: 'IR'"),
    (_set(*L, "embargoed_countries", value=["XX"]), "licences.x-enterprise.embargoed_countries[0]", "'XX' (all countries) is not allowed here"),
    (_set(*C, "delivery_countries", value=["UK"]), "clients.newsroom.delivery_countries[0]", "not an ISO 3166-1 alpha-2 country code (the United Kingdom is 'GB')"),
    (_set(*C, "delivery_countries", value=["USA"]), "clients.newsroom.delivery_countries[0]", "not an ISO 3166-1 alpha-2"),
    (_set(*C, "delivery_countries", value=["US", "XX"]), "clients.newsroom.delivery_countries", "list it on its own"),
    (_set(*C, "delivery_countries", value=[]), "clients.newsroom.delivery_countries", "must not be empty"),
    (_set(*O, "owned_by", 0, "percent", value=0), "organisations.frontco.owned_by[0].percent", "more than 0 and at most 100"),
    (_set(*O, "owned_by", 0, "percent", value=100.5), "organisations.frontco.owned_by[0].percent", "more than 0 and at most 100"),
    (_set(*O, "owned_by", 0, "percent", value=float("nan")), "organisations.frontco.owned_by[0].percent", "more than 0 and at most 100"),
    (_set(*O, "owned_by", 0, "percent", value="60%"), "organisations.frontco.owned_by[0].percent", "expected a number"),
    (_set("organisations", "holding", "owned_by", 1, "percent", value=50), "organisations.holding.owned_by", "owners hold 110 percent in total"),
    (_set(*O, "component_of", value=["frontco"]), "organisations.frontco.component_of[0]", "cannot be component_of itself"),
    (_set(*O, "controlled_by", value=["agency", "agency"]), "organisations.frontco.controlled_by[1]", "duplicate 'agency'"),
    (_set("field_groups", "core", value=["id", "txt"]), "field_groups.core[1]", "unknown column 'txt' (did you mean 'text'?)"),
    (_set("field_groups", "core", value=["id", "id"]), "field_groups.core[1]", "duplicate 'id'"),
    (_set("field_groups", "core", value=[]), "field_groups.core", "must not be empty"),
    (_set(*C, "sink", "kind", value="kafka"), "clients.newsroom.sink.kind", "unknown sink kind 'kafka'"),
    (_set(*C, "sink", value={"kind": "parquet", "path": "o", "compression": "xz"}), "clients.newsroom.sink.compression", "unknown parquet compression 'xz'"),
    (_set(*C, "sink", value={"kind": "ndjson", "path": "o.gz", "compression": "zstd"}), "clients.newsroom.sink.compression", "contradicts the path's suffix"),
    (_set(*C, "sink", value={"kind": "callback", "path": "o"}), "clients.newsroom.sink.path", "a callback sink takes no path"),
    (_set(*C, "sink", value={"kind": "parquet", "path": "-"}), "clients.newsroom.sink.path", "cannot write to stdout"),
    (_set(*C, "sink", "path", value=""), "clients.newsroom.sink.path", "must not be empty"),
    (_set(*C, "approvals", 0, "expires", value=dt.date(2024, 1, 1)), "clients.newsroom.approvals[0].expires", "before it was given"),
    # names
    (_set("clients", "my seat", value={}), 'clients."my seat"', "invalid name"),
    (_set("organisations", "_unmatched", value={"categories": ["media"]}), "organisations._unmatched", "invalid name"),
]


@pytest.mark.parametrize("mutate, path, message", ERRORS, ids=[e[1] + ":" + e[2][:20] for e in ERRORS])
def test_every_error_names_its_key_path(mutate, path, message):
    d = full()
    mutate(d)
    found = problems_of(d)
    assert [p for p in found if p.path == path and message in p.message], found


def test_all_problems_are_reported_at_once():
    d = full()
    d["clients"]["newsroom"]["organisation"] = "nobody"
    d["clients"]["desk"]["delivery_countries"] = ["ZZ"]
    d["licences"]["ids-only"]["redistribution"] = "some"
    d["field_groups"]["raw"] = ["raw_jsn"]
    with pytest.raises(ConfigError) as info:
        from_dict(d)
    assert sorted(paths(info.value.problems)) == sorted([
        "clients.newsroom.organisation", "clients.desk.delivery_countries[0]",
        "licences.ids-only.redistribution", "field_groups.raw[0]"])
    assert str(info.value).count("\n") == 3


def test_a_broken_entry_does_not_break_its_references():
    d = full()
    d["organisations"]["paper"]["categories"] = ["press"]        # paper is invalid ...
    d["field_groups"]["core"] = ["nope"]
    # ... but clients naming it, and grants naming core, get no second error
    assert paths(problems_of(d)) == ["field_groups.core[0]", "organisations.paper.categories[0]"]


def test_invalid_toml():
    with pytest.raises(ConfigError) as info:
        loads("[clients.x\n", source="bad.toml")
    (p,) = info.value.problems
    assert p.path == "" and p.message.startswith("invalid TOML: ") and "line 1" in p.message
    assert str(info.value).startswith("bad.toml: invalid TOML: ")


def test_load_prefixes_the_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[clients.x]\norganisation = "o"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(f)
    assert all(line.startswith(f"{f}: clients.x") for line in str(info.value).splitlines())
    f.write_bytes(b"[sources.s]\nlicence = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(f)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.toml")
    f.write_text(FULL, encoding="utf-8")
    cfg = load(str(f))
    assert cfg == loads(FULL) and cfg.origin == str(f)


# --------------------------------------------------------------------------------------------
# unknown keys, at every level

UNKNOWN = [
    ((), "sinks", "sinks"),
    (("sources", "firehose"), "licenses", "sources.firehose.licenses"),
    (L, "prohibited", "licences.x-enterprise.prohibited"),
    (L + ("caps",), "posts_per_day", "licences.x-enterprise.caps.posts_per_day"),
    (O, "subsidiary_of", "organisations.frontco.subsidiary_of"),
    (O + ("owned_by", 0), "share", "organisations.frontco.owned_by[0].share"),
    (O + ("acts_on_behalf_of", 0), "percent", "organisations.frontco.acts_on_behalf_of[0].percent"),
    (C, "sinks", "clients.newsroom.sinks"),
    (C + ("grants", 0), "columns", "clients.newsroom.grants[0].columns"),
    (C + ("approvals", 0), "approved_by", "clients.newsroom.approvals[0].approved_by"),
    (C + ("rules", 0), "name", "clients.newsroom.rules[0].name"),
    (C + ("sink",), "format", "clients.newsroom.sink.format"),
    (C, "odd key", 'clients.newsroom."odd key"'),
]


@pytest.mark.parametrize("where, key, path", UNKNOWN, ids=[u[2] for u in UNKNOWN])
def test_unknown_keys_at_every_level(where, key, path):
    d = full()
    t = d
    for k in where:
        t = t[k]
    t[key] = 1
    found = problems_of(d)
    assert paths(found) == [path]
    assert found[0].message.startswith("unknown key")


def test_unknown_key_messages_help():
    d = full()
    d["clients"]["newsroom"]["sinks"] = {}
    d["organisations"]["frontco"]["acts_on_behalf_of"][0]["percent"] = 5
    d["organisations"]["frontco"]["subsidiary_of"] = ["holding"]
    msgs = {p.path: p.message for p in problems_of(d)}
    assert "did you mean 'sink'?" in msgs["clients.newsroom.sinks"]
    assert "a client has organisation, delivery_countries" in msgs["clients.newsroom.sinks"]
    assert "percent is for owned_by edges only" in msgs["organisations.frontco.acts_on_behalf_of[0].percent"]
    assert "owned_by, controlled_by, acts_on_behalf_of, component_of" in msgs["organisations.frontco.subsidiary_of"]


# --------------------------------------------------------------------------------------------
# warnings: dangling parents and friends


def test_dangling_parents_are_kept_and_warned():
    d = full()
    front = d["organisations"]["frontco"]
    front["owned_by"][0]["percent"] = 99.5
    front["owned_by"].append({"org": "shell-ltd", "percent": 0.5})
    front["controlled_by"] = ["agencyy"]
    front["acts_on_behalf_of"] = [{"org": "..."}]
    cfg = from_dict(d)
    assert cfg.organisations["frontco"].parents() == ("holding", "shell-ltd", "agencyy", "...", "holding")
    assert Edge("frontco", "owned_by", "shell-ltd", 0.5) in cfg.organisations["frontco"].edges
    got = {w.path: w.message for w in cfg.warnings}
    assert set(got) == {"organisations.frontco.owned_by[1].org", "organisations.frontco.controlled_by[0]",
                        "organisations.frontco.acts_on_behalf_of[0].org"}
    assert "organisation 'shell-ltd' is not defined" in got["organisations.frontco.owned_by[1].org"]
    assert "treats as deny" in got["organisations.frontco.owned_by[1].org"]
    assert "(did you mean 'agency'?)" in got["organisations.frontco.controlled_by[0]"]
    assert str(cfg.warnings[0]).startswith("organisations.frontco.owned_by[1].org: organisation")
    # warnings are not part of the configuration's identity, the dangling edge is
    assert cfg.hash != loads(FULL).hash


def test_other_warnings():
    d = full()
    d["organisations"]["agency"]["controlled_by"] = ["frontco"]                 # a cycle
    d["clients"]["newsroom"]["approvals"][0]["use_case"] = "news alerts"        # not its use case
    d["licences"]["x-enterprise"]["approval_required"].append("intelligence")   # also prohibited
    cfg = from_dict(d)
    got = {w.path: w.message for w in cfg.warnings}
    assert "agency, frontco, holding reach each other" in got["organisations.agency"]
    assert "approves 'news alerts', not the client's use case 'news'" in \
        got["clients.newsroom.approvals[0].use_case"]
    assert "also prohibited" in got["licences.x-enterprise.approval_required[3]"]
    assert len(cfg.warnings) == 3


def test_warnings_travel_with_errors():
    d = full()
    d["organisations"]["frontco"]["controlled_by"] = ["ghost"]
    d["clients"]["desk"]["organisation"] = "ghost"
    with pytest.raises(ConfigError) as info:
        from_dict(d)
    assert paths(info.value.problems) == ["clients.desk.organisation"]
    assert paths(info.value.warnings) == ["organisations.frontco.controlled_by[0]"]


# --------------------------------------------------------------------------------------------
# rules


def test_rule_problems_carry_client_path_and_column():
    d = full()
    d["clients"]["newsroom"]["rules"] = [
        {"id": "ok", "value": "apple"},
        {"id": "bad-op", "value": "apple foo:bar"},
        {"id": "alone", "value": "lang:en"},
        {"id": "ok", "value": "banana"},
        {"id": "two", "value": "foo:x bar:y"},
    ]
    found = problems_of(d)
    got = [(p.path, p.message) for p in found]
    assert got[0][0] == "clients.newsroom.rules[1].value"
    assert got[0][1].startswith("rule bad-op: col 7: ")
    assert got[1][0] == "clients.newsroom.rules[2].value" and "cannot stand alone" in got[1][1]
    assert got[2] == ("clients.newsroom.rules[3].id",
                      "rule ok: duplicate rule id (first used at clients.newsroom.rules[0])")
    two = [m for p, m in got if p == "clients.newsroom.rules[4].value"]
    assert two == ['rule two: col 1: unknown operator foo:; to match the text, quote it: "foo:x"',
                   'rule two: col 7: unknown operator bar:; to match the text, quote it: "bar:y"']


def test_rule_ids_are_per_client():
    d = full()
    d["clients"]["desk"]["rules"] = [{"id": "1", "value": "apple"}]      # frontco-seat has "1" too
    assert from_dict(d).clients["desk"].rules == (Rule("1", "apple"),)


def test_rule_positions_survive_skipped_entries():
    d = full()
    d["clients"]["newsroom"]["rules"] = [{"id": "a", "value": 5}, {"id": "b", "value": "x foo:y"}]
    assert paths(problems_of(d)) == ["clients.newsroom.rules[0].value", "clients.newsroom.rules[1].value"]


# --------------------------------------------------------------------------------------------
# the example


def test_example_validates():
    cfg = load(EXAMPLE)
    assert cfg.warnings == ()
    assert set(cfg.clients) == {"newsroom", "trading-desk", "news-alerts", "frontco"}
    alerts = cfg.clients["news-alerts"]
    assert "government" in cfg.organisations[alerts.organisation].categories
    assert [a.use_case for a in alerts.approvals] == [alerts.use_case]
    # frontco: owned through a holding by an intelligence agency, which the licence prohibits
    lic = cfg.licences[cfg.sources["firehose"].licence]
    chain, org = [], cfg.clients["frontco"].organisation
    while org is not None:
        chain.append(org)
        o = cfg.organisations[org]
        org = next((e.parent for e in o.edges if e.kind == "owned_by"), None)
    assert len(chain) == 3
    assert set(cfg.organisations[chain[-1]].categories) & set(lic.prohibited_categories)


def test_example_rules_match_generated_tweets():
    from firehose import Decoder
    from firehose.rules import RuleSet
    from firehose.testing import generate_bytes

    tweets = Decoder(dedupe=True).feed(generate_bytes(1500, seed=0), source="gen").tweets
    for client in load(EXAMPLE).clients.values():
        hits = Counter(RuleSet(client.rules).match(tweets).column("rule_id").to_pylist())
        assert sum(hits.values()) >= 5, client.name
        assert len(hits) >= len(client.rules) - 1, (client.name, hits)


# --------------------------------------------------------------------------------------------
# firehose config validate


def test_cli_ok():
    res = CliRunner().invoke(main, ["config", "validate", EXAMPLE])
    assert res.exit_code == 0, res.output
    (line,) = res.output.splitlines()
    assert line.startswith(f"{EXAMPLE}: OK: 4 clients (")
    assert line.endswith(f"sha256 {load(EXAMPLE).hash}")


def test_cli_warnings_still_ok(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(FULL.replace('controlled_by = ["agency"]', 'controlled_by = ["ghost"]'), "utf-8")
    res = CliRunner().invoke(main, ["config", "validate", str(f)])
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert lines[0].startswith(f"{f}: organisations.frontco.controlled_by[0]: warning: organisation 'ghost'")
    assert "1 warning;" in lines[-1]


def test_cli_problems_exit_2(tmp_path):
    f = tmp_path / "c.toml"
    d = FULL.replace('source = "archive"', 'source = "gnip2"').replace('"UK"', "")
    f.write_text(d.replace('delivery_countries = ["GB"]', 'delivery_countries = ["UK"]'), "utf-8")
    res = CliRunner().invoke(main, ["config", "validate", str(f)])
    assert res.exit_code == 2
    out = [line for line in res.output.splitlines() if not line.endswith("problems")]
    assert out == [
        f"{f}: clients.newsroom.grants[1].source: unknown source 'gnip2'",
        f"{f}: clients.desk.delivery_countries[0]: 'UK' is not an ISO 3166-1 alpha-2 country code "
        "(the United Kingdom is 'GB')",
    ]


def test_cli_unreadable_and_stdin(tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["config", "validate", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "cannot read" in res.output
    res = r.invoke(main, ["config", "validate", "-"], input="a = [")
    assert res.exit_code == 2 and res.output.startswith("<stdin>: invalid TOML: ")
    res = r.invoke(main, ["config", "validate", "-"], input=FULL)
    assert res.exit_code == 0 and res.output.startswith("<stdin>: OK: 4 clients (4 rules)")


def test_copy_and_pickle():
    # configs travel to worker processes
    cfg = loads(FULL.replace('controlled_by = ["agency"]', 'controlled_by = ["ghost"]'))
    for other in (copy.deepcopy(cfg), copy.copy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert other == cfg and other.hash == cfg.hash
        assert other.warnings == cfg.warnings and other.origin == cfg.origin
        with pytest.raises(TypeError):
            other.clients["x"] = None
