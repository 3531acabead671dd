"""Configuration: TOML in, frozen dataclasses out, every problem named by its key path.

    >>> from firehose.config import loads
    >>> cfg = loads('''
    ... [licences.std]
    ... [sources.firehose]
    ... licence = "std"
    ... [field_groups]
    ... core = ["id", "created_at", "text"]
    ... [organisations.paper]
    ... categories = ["media"]
    ... [clients.newsroom]
    ... organisation = "paper"
    ... delivery_countries = ["US"]
    ... use_case = "news"
    ... grants = [{ source = "firehose", field_groups = ["core"] }]
    ... rules = [{ id = "1", value = "#Ukraine", tag = "war" }]
    ... ''')
    >>> cfg.clients["newsroom"].grants[0]
    Grant(source='firehose', field_groups=('core',))
    >>> loads('[clients.x]\\norganisation = 7')
    Traceback (most recent call last):
    ...
    firehose.errors.ConfigError: clients.x.delivery_countries: required key is missing
    clients.x.use_case: required key is missing
    clients.x.organisation: expected a string, got an integer (7)

One frozen dataclass per layer (:class:`Config`, :class:`Source`, :class:`Licence`,
:class:`Caps`, :class:`FieldGroup`, :class:`Organisation`, :class:`Edge`, :class:`Client`,
:class:`Grant`, :class:`Approval`, :class:`SinkConfig`), each field documented where it is
declared.  The file's shape, section by section::

    [sources.NAME]            licence = "LICENCE", description = "..."
    [licences.NAME]           prohibited_categories, approval_required (category lists),
                              redistribution = "full" | "ids", embargoed_countries,
                              [licences.NAME.caps] post_ids_per_group_per_30d,
                                                   objects_per_recipient_per_day
    [field_groups]            NAME = ["column", ...]        (TWEETS columns or "raw_json")
    [organisations.NAME]      categories, owned_by = [{ org, percent }],
                              controlled_by / acts_on_behalf_of / component_of = ["org", ...]
    [clients.NAME]            organisation, delivery_countries, use_case,
                              grants = [{ source, field_groups }],
                              approvals = [{ use_case, by, date, ref, expires }],
                              rules = [{ id, value, tag, fold }],
                              sink = { kind, path, compression }

Validation collects every problem before raising one :class:`~firehose.errors.ConfigError`
whose message has one ``key.path: message`` line per problem (prefixed by the file name when the
config came from a file) and whose ``problems`` attribute holds them as :class:`Problem` objects.
Unknown keys are errors at every level; so are wrong types, missing required keys, references
that do not resolve, names outside the fixed vocabularies (:data:`CATEGORIES`,
:data:`EDGE_KINDS`, :data:`REDISTRIBUTION_MODES`, :data:`SINK_KINDS`, ISO 3166 country codes)
and rules that :func:`firehose.rules.check` rejects.

One reference is deliberately *not* an error: an organisation edge whose parent is not defined.
The edge is kept (the entitlement layer treats an unknown parent as deny, so a front company
cannot escape a guardrail by naming an owner the config does not describe) and reported in
:attr:`Config.warnings`.

Set-like fields (categories, country lists) are stored sorted, so two files that differ only in
the order of such lists give equal configs and the same :attr:`Config.hash`.  Lists whose order
means something (columns, grants, rules, approvals, edges) keep the order written.  Sink paths
are kept as written; relative paths are relative to the working directory of the process.
Dataclasses built by hand are not validated: build configs with :func:`loads`, :func:`load` or
:func:`from_dict`.
"""
from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from .errors import ConfigError
from .rules import Rule, RuleError
from .rules import check as check_rules
from .schema import TWEETS

__all__ = [
    "Config", "Source", "Licence", "Caps", "FieldGroup", "Organisation", "Edge", "Client", "Grant",
    "Approval", "SinkConfig", "Problem",
    "load", "loads", "from_dict",
    "CATEGORIES", "EDGE_KINDS", "REDISTRIBUTION_MODES", "SINK_KINDS", "SINK_COMPRESSIONS",
    "COUNTRY_CODES", "ALL_COUNTRIES", "RAW_JSON", "COLUMNS",
]

# --------------------------------------------------------------------------------------------
# vocabularies

#: The organisation categories a config may use (in ``organisations.*.categories`` and in a
#: licence's ``prohibited_categories`` / ``approval_required``), each with what it covers.  The
#: list is closed so that a typo (``"inteligence"``) cannot silently miss a guardrail.
CATEGORIES: Mapping[str, str] = MappingProxyType({
    "intelligence": "intelligence services (foreign or domestic) and units doing intelligence work",
    "surveillance": "organisations whose mission includes monitoring people, public or private",
    "law_enforcement": "police, prosecutors, investigative and regulatory enforcement agencies",
    "military": "armed forces, defence ministries and their units",
    "government": "any public authority not in a more specific category: ministries, agencies, "
                  "local government, public bodies",
    "homeland_security": "border, immigration, civil protection and counter-terrorism authorities",
    "media": "publishers, broadcasters and news agencies",
    "newsroom": "editorial teams that report the news",
    "finance": "banks, asset managers, insurers, payment companies",
    "trading": "trading desks, market makers and quantitative funds",
    "academic": "universities and research institutes",
    "ngo": "non-governmental and non-profit organisations",
    "commercial": "companies that fit no other category",
    "sanctioned": "persons and entities on a sanctions list",
})

#: Organisation edge kinds: each names a parent of the organisation that declares it.
#: ``owned_by`` carries the percent held; the other three are plain.
EDGE_KINDS = ("owned_by", "controlled_by", "acts_on_behalf_of", "component_of")

#: ``licences.*.redistribution``: deliver whole objects, or post ids only.
REDISTRIBUTION_MODES = ("full", "ids")

#: ``clients.*.sink.kind`` values.
SINK_KINDS = ("parquet", "arrow", "ndjson", "callback")

#: ``clients.*.sink.compression`` values per sink kind; the first is the default
#: (for ``ndjson`` the default follows the path: ``.gz`` gzip, ``.zst`` zstd, else none).
SINK_COMPRESSIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "parquet": ("zstd", "snappy", "gzip", "lz4", "brotli", "none"),
    "arrow": ("none", "zstd", "lz4"),
    "ndjson": ("none", "gzip", "zstd"),
    "callback": (),
})

#: The country code that means "all countries" (as in ``withheld_in_countries``).  Accepted in
#: ``delivery_countries`` only (a seat that delivers worldwide), and only on its own.
ALL_COUNTRIES = "XX"

#: ISO 3166-1 alpha-2 codes (the 249 officially assigned ones, plus ``XK``, Kosovo, which is
#: user-assigned but used by X places and most registries).
COUNTRY_CODES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XK
""".split())

#: The pseudo-column for the raw input line; a field group may list it next to TWEETS columns.
RAW_JSON = "raw_json"

#: Every name a field group may list: the columns of :data:`firehose.schema.TWEETS` and
#: :data:`RAW_JSON`.
COLUMNS: tuple[str, ...] = tuple(TWEETS.names) + (RAW_JSON,)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_COLUMN_SET = frozenset(COLUMNS)


# --------------------------------------------------------------------------------------------
# the layers


@dataclass(frozen=True, slots=True)
class Problem:
    """One config problem (or warning): ``path`` is the key path (``clients.x.grants[0].source``,
    empty for the file as a whole), ``message`` says what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True, slots=True)
class Caps:
    """Delivery caps of a licence; ``None`` is unlimited (the default)."""

    #: at most this many distinct post ids per affiliated group (an organisation and everything
    #: it is connected to by edges) in any 30-day window
    post_ids_per_group_per_30d: int | None = None
    #: at most this many objects per recipient (client seat) per day
    objects_per_recipient_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class Licence:
    """The terms a source is held under (``[licences.NAME]``)."""

    #: the key under ``[licences]``
    name: str
    #: organisation categories that may never receive data under this licence; a client is
    #: covered if its organisation or any ancestor (through any edge) is in one (sorted)
    prohibited_categories: tuple[str, ...] = ()
    #: categories whose clients need a recorded :class:`Approval` for their use case (sorted)
    approval_required: tuple[str, ...] = ()
    #: ``"full"`` (whole objects, the default) or ``"ids"`` (post ids only)
    redistribution: str = "full"
    #: countries no client may deliver to (sorted ISO 3166 alpha-2; ``XX`` is not allowed here)
    embargoed_countries: tuple[str, ...] = ()
    #: delivery caps; absent caps are unlimited
    caps: Caps = Caps()
    #: free text for people
    description: str = ""


@dataclass(frozen=True, slots=True)
class Source:
    """A data source (``[sources.NAME]``): a capture or stream held under one licence."""

    #: the key under ``[sources]``; grants name it
    name: str
    #: the name of its :class:`Licence` (always defined)
    licence: str
    #: free text for people
    description: str = ""


@dataclass(frozen=True, slots=True)
class FieldGroup:
    """A named list of columns (``[field_groups] NAME = [...]``).  Grants give clients field
    groups, never bare columns; a column that no group lists is never delivered."""

    #: the key under ``[field_groups]``
    name: str
    #: TWEETS column names and/or ``"raw_json"``, in the order written, no duplicates
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Edge:
    """One edge of the organisation graph: ``child`` is ``kind`` ``parent`` (``frontco``
    owned_by ``holding``, 100 percent).  ``parent`` may name an organisation the config does not
    define (a warning, not an error): the entitlement layer must treat it as deny."""

    #: the organisation that declares the edge
    child: str
    #: one of :data:`EDGE_KINDS`
    kind: str
    #: the organisation it points to (possibly undefined: see :attr:`Config.warnings`)
    parent: str
    #: share held, in (0, 100], for ``owned_by``; ``None`` for the other kinds
    percent: float | None = None


@dataclass(frozen=True, slots=True)
class Organisation:
    """An organisation (``[organisations.NAME]``): what it is and who stands behind it."""

    #: the key under ``[organisations]``
    name: str
    #: categories from :data:`CATEGORIES` (at least one; sorted)
    categories: tuple[str, ...]
    #: edges to its parents, kinds in :data:`EDGE_KINDS` order, each kind in the order written
    edges: tuple[Edge, ...] = ()
    #: free text for people
    description: str = ""

    def parents(self, kind: str | None = None) -> tuple[str, ...]:
        """The parents named by this organisation's edges (of one ``kind``, or all)."""
        return tuple(e.parent for e in self.edges if kind is None or e.kind == kind)


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for a client to receive a source's field groups (``grants = [...]``).
    A client has at most one grant per source."""

    #: the name of a defined :class:`Source`
    source: str
    #: names of defined :class:`FieldGroup` s (at least one, in the order written)
    field_groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Approval:
    """A recorded approval of a use case (``approvals = [...]``), needed by clients whose
    organisation is in a licence's ``approval_required`` categories."""

    #: the use case approved; it should equal the client's ``use_case`` (a warning otherwise)
    use_case: str
    #: who approved it (a person, a team, a committee)
    by: str
    #: the day it was approved (a TOML date: ``date = 2025-01-10``, unquoted)
    date: _dt.date
    #: the approval's reference in the approver's records
    ref: str = ""
    #: the last day it is valid, if it expires (after ``date``)
    expires: _dt.date | None = None


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """Where a client's rows go (``sink = { kind = "parquet", path = "out/x" }``)."""

    #: one of :data:`SINK_KINDS`
    kind: str
    #: where a file sink writes (required for parquet/arrow/ndjson; ``"-"`` is stdout, ndjson
    #: only); ``None`` for ``callback`` (the caller registers a callback under the client's name)
    path: str | None = None
    #: one of ``SINK_COMPRESSIONS[kind]``, defaulted (``None`` for ``callback``)
    compression: str | None = None


@dataclass(frozen=True, slots=True)
class Client:
    """A delivery seat (``[clients.NAME]``)."""

    #: the key under ``[clients]``; sinks, audit and routing name the client by it
    name: str
    #: the name of a defined :class:`Organisation`
    organisation: str
    #: where the seat delivers (sorted ISO 3166 alpha-2; ``("XX",)`` is everywhere)
    delivery_countries: tuple[str, ...]
    #: what the data is for, in words; approvals refer to it
    use_case: str
    #: what it may receive; no grants, nothing delivered
    grants: tuple[Grant, ...] = ()
    #: recorded approvals
    approvals: tuple[Approval, ...] = ()
    #: its PowerTrack rules (ids unique within the client), in the order written
    rules: tuple[Rule, ...] = ()
    #: its sink; ``None`` when the caller supplies one at run time
    sink: SinkConfig | None = None
    #: free text for people
    description: str = ""


def _frozen_map(m) -> Mapping:
    return m if isinstance(m, MappingProxyType) else MappingProxyType(dict(m))


@dataclass(frozen=True)
class Config:
    """A whole validated configuration.  Mappings are read-only, keyed by name, in file order.

    Equality compares the configuration only (not ``warnings`` or ``origin``); :attr:`hash` is
    the sha256 of its canonical form, so equal configs have equal hashes.
    """

    #: sources by name
    sources: Mapping[str, Source] = field(default_factory=dict)
    #: licences by name
    licences: Mapping[str, Licence] = field(default_factory=dict)
    #: field groups by name
    field_groups: Mapping[str, FieldGroup] = field(default_factory=dict)
    #: organisations by name
    organisations: Mapping[str, Organisation] = field(default_factory=dict)
    #: clients by name
    clients: Mapping[str, Client] = field(default_factory=dict)
    #: things worth knowing that are not errors: edges to undefined organisations (deny at run
    #: time), cycles in the organisation graph, approvals for another use case, categories both
    #: prohibited and approval-required
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    #: where the config came from (a file name, ``"<string>"``)
    origin: str = field(default="<string>", compare=False)

    def __post_init__(self):
        for name in ("sources", "licences", "field_groups", "organisations", "clients"):
            object.__setattr__(self, name, _frozen_map(getattr(self, name)))

    def __reduce__(self):                # mapping proxies do not pickle; their dicts do
        return (Config, (dict(self.sources), dict(self.licences), dict(self.field_groups),
                         dict(self.organisations), dict(self.clients), self.warnings, self.origin))

    def to_dict(self) -> dict:
        """The config as plain data in the TOML shape, every default written out (``None`` values
        left out, as TOML has no null).  ``from_dict(cfg.to_dict()) == cfg``."""
        return {
            "sources": {n: {"licence": s.licence, "description": s.description}
                        for n, s in self.sources.items()},
            "licences": {n: _licence_dict(x) for n, x in self.licences.items()},
            "field_groups": {n: list(g.columns) for n, g in self.field_groups.items()},
            "organisations": {n: _org_dict(o) for n, o in self.organisations.items()},
            "clients": {n: _client_dict(c) for n, c in self.clients.items()},
        }

    def canonical(self) -> bytes:
        """The canonical form :attr:`hash` is taken of: :meth:`to_dict` as compact JSON with
        sorted keys, dates as ``YYYY-MM-DD``, UTF-8."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False, default=_json_default).encode()

    @cached_property
    def hash(self) -> str:
        """sha256 (hex) of :meth:`canonical`: names a configuration in plans and audit records."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def __hash__(self) -> int:
        return int(self.hash[:16], 16)

    @property
    def unclassified_columns(self) -> tuple[str, ...]:
        """TWEETS columns (and ``raw_json``) that no field group lists: never delivered."""
        listed = {c for g in self.field_groups.values() for c in g.columns}
        return tuple(c for c in COLUMNS if c not in listed)


def _json_default(v):
    if isinstance(v, _dt.date):
        return v.isoformat()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def _licence_dict(x: Licence) -> dict:
    caps = {k: getattr(x.caps, k) for k in _CAPS_KEYS if getattr(x.caps, k) is not None}
    return {"prohibited_categories": list(x.prohibited_categories),
            "approval_required": list(x.approval_required),
            "redistribution": x.redistribution,
            "embargoed_countries": list(x.embargoed_countries),
            "caps": caps, "description": x.description}


def _org_dict(o: Organisation) -> dict:
    d: dict[str, Any] = {"categories": list(o.categories)}
    for kind in EDGE_KINDS:
        d[kind] = [{"org": e.parent, "percent": e.percent} if kind == "owned_by" else e.parent
                   for e in o.edges if e.kind == kind]
    d["description"] = o.description
    return d


def _client_dict(c: Client) -> dict:
    d: dict[str, Any] = {
        "organisation": c.organisation,
        "delivery_countries": list(c.delivery_countries),
        "use_case": c.use_case,
        "grants": [{"source": g.source, "field_groups": list(g.field_groups)} for g in c.grants],
        "approvals": [_drop_none({"use_case": a.use_case, "by": a.by, "date": a.date,
                                  "ref": a.ref, "expires": a.expires}) for a in c.approvals],
        "rules": [_drop_none({"id": r.id, "value": r.value, "tag": r.tag, "fold": r.fold})
                  for r in c.rules],
        "description": c.description,
    }
    if c.sink is not None:
        d["sink"] = _drop_none({"kind": c.sink.kind, "path": c.sink.path,
                                "compression": c.sink.compression})
    return d


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------------------------
# entry points


def load(path: str | os.PathLike) -> Config:
    """Read and validate a TOML config file.  ``OSError`` if it cannot be read,
    :class:`~firehose.errors.ConfigError` (every problem, each line prefixed by the file name)
    if it is not valid."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.fspath(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _error([Problem("", f"not UTF-8 text (byte {e.start})")], [], name) from None
    return loads(text, source=name)


def loads(text: str, source: str = "<string>") -> Config:
    """Validate the TOML ``text``; ``source`` names it in messages and :attr:`Config.origin`
    (messages are prefixed by it unless it is the default ``"<string>"``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _error([Problem("", f"invalid TOML: {e}")], [], source) from None
    return from_dict(data, source=source)


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate data of the TOML shape (what ``tomllib`` returns, or :meth:`Config.to_dict`)."""
    v = _Validator()
    cfg = v.config(data, source)
    if v.problems or cfg is None:
        raise _error(v.problems, v.warnings, source)
    return cfg


def _error(problems: Sequence[Problem], warnings: Sequence[Problem], origin: str) -> ConfigError:
    prefix = "" if origin in ("<string>", "<dict>") else f"{origin}: "
    err = ConfigError("\n".join(prefix + str(p) for p in problems))
    err.problems = tuple(problems)
    err.warnings = tuple(warnings)
    err.origin = origin
    return err


# --------------------------------------------------------------------------------------------
# validation

_TOP_KEYS = ("sources", "licences", "field_groups", "organisations", "clients")
_SOURCE_KEYS = ("licence", "description")
_LICENCE_KEYS = ("prohibited_categories", "approval_required", "redistribution",
                 "embargoed_countries", "caps", "description")
_CAPS_KEYS = ("post_ids_per_group_per_30d", "objects_per_recipient_per_day")
_ORG_KEYS = ("categories",) + EDGE_KINDS + ("description",)
_CLIENT_KEYS = ("organisation", "delivery_countries", "use_case", "grants", "approvals", "rules",
                "sink", "description")
_GRANT_KEYS = ("source", "field_groups")
_APPROVAL_KEYS = ("use_case", "by", "date", "ref", "expires")
_RULE_KEYS = ("id", "value", "tag", "fold")
_SINK_KEYS = ("kind", "path", "compression")

# what a table of each kind is called in "unknown key" messages
_WHAT = {_TOP_KEYS: "the top level", _SOURCE_KEYS: "a source", _LICENCE_KEYS: "a licence",
         _CAPS_KEYS: "caps", _ORG_KEYS: "an organisation", _CLIENT_KEYS: "a client",
         _GRANT_KEYS: "a grant", _APPROVAL_KEYS: "an approval", _RULE_KEYS: "a rule",
         _SINK_KEYS: "a sink", ("org",): "an edge", ("org", "percent"): "an owned_by edge"}


def _key(path: str, key: str) -> str:
    k = key if _BARE_KEY_RE.match(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{k}" if path else k


def _describe(v: Any) -> str:
    """A TOML value's type, in TOML words, with a short look at the value."""
    if isinstance(v, bool):
        return f"a boolean ({'true' if v else 'false'})"
    if isinstance(v, int):
        return f"an integer ({v})"
    if isinstance(v, float):
        return f"a float ({v})"
    if isinstance(v, str):
        shown = v if len(v) <= 40 else v[:39] + "\u2026"
        return f"a string ({shown!r})"
    if isinstance(v, _dt.datetime):
        return f"a datetime ({v.isoformat()})"
    if isinstance(v, _dt.date):
        return f"a date ({v.isoformat()})"
    if isinstance(v, _dt.time):
        return f"a time ({v.isoformat()})"
    if isinstance(v, (list, tuple)):
        return "an array"
    if isinstance(v, Mapping):
        return "a table"
    if v is None:
        return "nothing (null)"
    return f"a {type(v).__name__}"


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Validator:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    # -- reporting -------------------------------------------------------------------------

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message))

    # -- shapes ----------------------------------------------------------------------------

    def table(self, v: Any, path: str, keys: tuple[str, ...], required: tuple[str, ...] = (),
              hint: str = "") -> Mapping | None:
        """``v`` if it is a table; report its unknown and missing keys."""
        if not isinstance(v, Mapping):
            self.error(path, f"expected a table{hint}, got {_describe(v)}")
            return None
        for k in v:
            if not isinstance(k, str):
                self.error(path, f"keys must be strings, got {_describe(k)}")
            elif k not in keys:
                self.error(_key(path, k), self._unknown(k, keys))
        for k in required:
            if k not in v:
                self.error(_key(path, k), "required key is missing")
        return v

    def _unknown(self, k: str, keys: tuple[str, ...]) -> str:
        if k == "percent" and keys == ("org",):
            return "unknown key: percent is for owned_by edges only"
        what = _WHAT.get(keys, "this table")
        return (f"unknown key{_suggest(k, keys)}; {what} has "
                + (", ".join(keys) if keys else "no keys"))

    def section(self, v: Any, path: str) -> dict[str, Any]:
        """A table of named entries: ``{name: value}`` for entries with a valid name."""
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            self.error(path, f"expected a table, got {_describe(v)}")
            return {}
        out = {}
        for name, value in v.items():
            if not isinstance(name, str) or not _NAME_RE.match(name):
                self.error(_key(path, str(name)),
                           "invalid name: names start with a letter or digit and hold only "
                           "letters, digits, '_' and '-' (at most 64)")
                continue
            out[name] = value
        return out

    def string(self, v: Any, path: str, *, empty: bool = False) -> str | None:
        if not isinstance(v, str):
            self.error(path, f"expected a string, got {_describe(v)}")
            return None
        if not empty and not v.strip():
            self.error(path, "must not be empty")
            return None
        return v

    def choice(self, v: Any, path: str, choices: Sequence[str], what: str) -> str | None:
        s = self.string(v, path)
        if s is None:
            return None
        if s not in choices:
            self.error(path, f"unknown {what} {s!r}{_suggest(s, choices)}; "
                             f"expected one of: {', '.join(choices)}")
            return None
        return s

    def array(self, v: Any, path: str, *, nonempty: bool = False, of: str = "") -> list | None:
        if not isinstance(v, (list, tuple)):
            self.error(path, f"expected an array{of}, got {_describe(v)}")
            return None
        if nonempty and not v:
            self.error(path, "must not be empty")
            return None
        return list(v)

    def names(self, v: Any, path: str, check, *, nonempty: bool = False,
              what: str = "string") -> list[str] | None:
        """An array of strings, each passed to ``check(item, item_path) -> str | None``;
        duplicates are errors.  ``None`` if anything is wrong."""
        items = self.array(v, path, nonempty=nonempty, of=f" of {what}s")
        if items is None:
            return None
        before = len(self.problems)
        out: list[str] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            p = f"{path}[{i}]"
            s = check(item, p)
            if s is None:
                continue
            if s in seen:
                self.error(p, f"duplicate {s!r} (also at [{seen[s]}])")
                continue
            seen[s] = i
            out.append(s)
        return out if len(self.problems) == before else None

    def category(self, v: Any, path: str) -> str | None:
        return self.choice(v, path, tuple(CATEGORIES), "category")

    def country(self, v: Any, path: str, *, allow_all: bool = False) -> str | None:
        s = self.string(v, path)
        if s is None:
            return None
        if s == ALL_COUNTRIES:
            if allow_all:
                return s
            self.error(path, f"{ALL_COUNTRIES!r} (all countries) is not allowed here")
            return None
        if s.upper() != s and s.upper() in COUNTRY_CODES | {ALL_COUNTRIES}:
            self.error(path, f"country codes are upper-case: {s.upper()!r}, not {s!r}")
            return None
        if s not in COUNTRY_CODES:
            hint = " (the United Kingdom is 'GB')" if s == "UK" else ""
            self.error(path, f"{s!r} is not an ISO 3166-1 alpha-2 country code{hint}")
            return None
        return s

    def countries(self, v: Any, path: str, *, allow_all: bool, nonempty: bool) -> tuple | None:
        cc = self.names(v, path, lambda x, p: self.country(x, p, allow_all=allow_all),
                        nonempty=nonempty, what="country code")
        if cc is None:
            return None
        if ALL_COUNTRIES in cc and len(cc) > 1:
            self.error(path, f"{ALL_COUNTRIES!r} means all countries: list it on its own")
            return None
        return tuple(sorted(cc))

    def count(self, v: Any, path: str) -> int | None:
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(path, f"expected an integer, got {_describe(v)}")
            return None
        if v < 0:
            self.error(path, f"must be 0 or more, got {v}")
            return None
        return v

    def date(self, v: Any, path: str) -> _dt.date | None:
        if isinstance(v, _dt.datetime) or not isinstance(v, _dt.date):
            self.error(path, f"expected a date such as 2025-01-10 (unquoted), got {_describe(v)}")
            return None
        return v

    def description(self, tbl: Mapping, path: str) -> str:
        if "description" not in tbl:
            return ""
        s = self.string(tbl["description"], _key(path, "description"), empty=True)
        return "" if s is None else s

    # -- layers ----------------------------------------------------------------------------

    def config(self, data: Any, origin: str) -> Config | None:
        top = self.table(data, "", _TOP_KEYS)
        if top is None:
            return None
        raw = {k: self.section(top.get(k), k) for k in _TOP_KEYS}
        # references resolve against every validly named entry, parsed cleanly or not, so one
        # broken organisation does not also make each client that names it "unknown"
        names = {k: set(v) for k, v in raw.items()}

        licences = {n: self.licence(n, v) for n, v in raw["licences"].items()}
        sources = {n: self.source(n, v, names["licences"]) for n, v in raw["sources"].items()}
        groups = {n: self.field_group(n, v) for n, v in raw["field_groups"].items()}
        orgs = {n: self.organisation(n, v, names["organisations"])
                for n, v in raw["organisations"].items()}
        clients = {n: self.client(n, v, names) for n, v in raw["clients"].items()}
        if self.problems:
            return None
        self._cycles(orgs)
        return Config(sources=sources, licences=licences, field_groups=groups,
                      organisations=orgs, clients=clients, warnings=tuple(self.warnings),
                      origin=origin)

    def source(self, name: str, v: Any, licences: set[str]) -> Source | None:
        path = _key("sources", name)
        before = len(self.problems)
        t = self.table(v, path, _SOURCE_KEYS, ("licence",))
        if t is None:
            return None
        licence = None
        if "licence" in t:
            licence = self.string(t["licence"], _key(path, "licence"))
            if licence is not None and licence not in licences:
                self.error(_key(path, "licence"),
                           f"unknown licence {licence!r}{_suggest(licence, licences)}")
        description = self.description(t, path)
        if len(self.problems) > before:
            return None
        return Source(name, licence, description)

    def licence(self, name: str, v: Any) -> Licence | None:
        path = _key("licences", name)
        before = len(self.problems)
        t = self.table(v, path, _LICENCE_KEYS)
        if t is None:
            return None
        kw: dict[str, Any] = {}
        for key in ("prohibited_categories", "approval_required"):
            if key in t:
                cats = self.names(t[key], _key(path, key), self.category, what="category")
                if cats is not None:
                    kw[key] = tuple(sorted(cats))
        if "redistribution" in t:
            kw["redistribution"] = self.choice(t["redistribution"], _key(path, "redistribution"),
                                               REDISTRIBUTION_MODES, "redistribution mode")
        if "embargoed_countries" in t:
            kw["embargoed_countries"] = self.countries(t["embargoed_countries"],
                                                       _key(path, "embargoed_countries"),
                                                       allow_all=False, nonempty=False)
        if "caps" in t:
            cpath = _key(path, "caps")
            ct = self.table(t["caps"], cpath, _CAPS_KEYS)
            if ct is not None:
                kw["caps"] = Caps(**{k: self.count(ct[k], _key(cpath, k))
                                     for k in _CAPS_KEYS if k in ct})
        kw["description"] = self.description(t, path)
        if len(self.problems) > before:
            return None
        both = set(kw.get("prohibited_categories", ())) & set(kw.get("approval_required", ()))
        for i, c in enumerate(t.get("approval_required", ())):
            if c in both:
                self.warn(f"{_key(path, 'approval_required')}[{i}]",
                          f"{c!r} is also prohibited; the prohibition wins")
        return Licence(name, **kw)

    def field_group(self, name: str, v: Any) -> FieldGroup | None:
        path = _key("field_groups", name)

        def column(x, p):
            s = self.string(x, p)
            if s is not None and s not in _COLUMN_SET:
                self.error(p, f"unknown column {s!r}{_suggest(s, COLUMNS)}; a field group lists "
                              f"firehose.schema.TWEETS columns or {RAW_JSON!r}")
                return None
            return s

        cols = self.names(v, path, column, nonempty=True, what="column name")
        return None if cols is None else FieldGroup(name, tuple(cols))

    def organisation(self, name: str, v: Any, orgs: set[str]) -> Organisation | None:
        path = _key("organisations", name)
        before = len(self.problems)
        t = self.table(v, path, _ORG_KEYS, ("categories",))
        if t is None:
            return None
        categories = None
        if "categories" in t:
            categories = self.names(t["categories"], _key(path, "categories"), self.category,
                                    nonempty=True, what="category")
        edges: list[Edge] = []
        for kind in EDGE_KINDS:
            if kind in t:
                edges.extend(self._edges(name, kind, t[kind], _key(path, kind), orgs))
        description = self.description(t, path)
        if len(self.problems) > before:
            return None
        return Organisation(name, tuple(sorted(categories)), tuple(edges), description)

    def _edges(self, child: str, kind: str, v: Any, path: str, orgs: set[str]) -> list[Edge]:
        owned = kind == "owned_by"
        items = self.array(v, path, of=" of tables { org, percent }" if owned
                           else " of organisation names")
        if items is None:
            return []
        out: list[Edge] = []
        seen: dict[str, int] = {}
        total = 0.0
        for i, item in enumerate(items):
            p = f"{path}[{i}]"
            percent = None
            if owned:
                hint = ' { org = "...", percent = N }: owned_by needs the percent held'
                t = self.table(item, p, ("org", "percent"), ("org", "percent"), hint=hint)
                if t is None or "org" not in t:
                    continue
                parent = self.string(t["org"], _key(p, "org"))
                if "percent" in t:
                    percent = self._percent(t["percent"], _key(p, "percent"))
                    total += percent or 0.0
                ppath = _key(p, "org")
            elif isinstance(item, Mapping):
                t = self.table(item, p, ("org",), ("org",))
                if t is None or "org" not in t:
                    continue
                parent = self.string(t["org"], _key(p, "org"))
                ppath = _key(p, "org")
            else:
                if not isinstance(item, str):
                    self.error(p, f"expected an organisation name (or a table {{ org = \"...\" }}),"
                                  f" got {_describe(item)}")
                    continue
                parent = self.string(item, p)
                ppath = p
            if parent is None:
                continue
            if parent == child:
                self.error(ppath, f"an organisation cannot be {kind} itself")
                continue
            if parent in seen:
                self.error(ppath, f"duplicate {parent!r} (also at [{seen[parent]}])")
                continue
            seen[parent] = i
            if parent not in orgs:
                self.warn(ppath, f"organisation {parent!r} is not defined{_suggest(parent, orgs)}; "
                                 "kept as an unresolved parent, which the entitlement layer "
                                 "treats as deny")
            out.append(Edge(child, kind, parent, percent))
        if total > 100 + 1e-9:
            self.error(path, f"owners hold {total:g} percent in total; at most 100")
        return out

    def _percent(self, v: Any, path: str) -> float | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.error(path, f"expected a number in (0, 100], got {_describe(v)}")
            return None
        if not (math.isfinite(v) and 0 < v <= 100):
            self.error(path, f"must be more than 0 and at most 100, got {v}")
            return None
        return float(v)

    def client(self, name: str, v: Any, names: Mapping[str, set[str]]) -> Client | None:
        path = _key("clients", name)
        before = len(self.problems)
        t = self.table(v, path, _CLIENT_KEYS, ("organisation", "delivery_countries", "use_case"))
        if t is None:
            return None
        org = countries = use_case = None
        if "organisation" in t:
            org = self.string(t["organisation"], _key(path, "organisation"))
            if org is not None and org not in names["organisations"]:
                self.error(_key(path, "organisation"),
                           f"unknown organisation {org!r}{_suggest(org, names['organisations'])}")
        if "delivery_countries" in t:
            countries = self.countries(t["delivery_countries"], _key(path, "delivery_countries"),
                                       allow_all=True, nonempty=True)
        if "use_case" in t:
            use_case = self.string(t["use_case"], _key(path, "use_case"))
        grants = self._grants(t.get("grants", ()), _key(path, "grants"), names)
        approvals = self._approvals(t.get("approvals", ()), _key(path, "approvals"))
        rules = self._rules(t.get("rules", ()), _key(path, "rules"))
        sink = self._sink(t["sink"], _key(path, "sink")) if "sink" in t else None
        description = self.description(t, path)
        if len(self.problems) > before:
            return None
        for i, a in enumerate(approvals):
            if a.use_case != use_case:
                self.warn(_key(f"{path}.approvals[{i}]", "use_case"),
                          f"approves {a.use_case!r}, not the client's use case {use_case!r}; "
                          "it approves nothing the client does")
        return Client(name, org, countries, use_case, grants, approvals, rules, sink, description)

    def _grants(self, v: Any, path: str, names: Mapping[str, set[str]]) -> tuple[Grant, ...]:
        items = self.array(v, path, of=" of tables { source, field_groups }")
        out: list[Grant] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(items or ()):
            p = f"{path}[{i}]"
            t = self.table(item, p, _GRANT_KEYS, _GRANT_KEYS)
            if t is None:
                continue
            source = groups = None
            if "source" in t:
                sp = _key(p, "source")
                source = self.string(t["source"], sp)
                if source is not None and source not in names["sources"]:
                    self.error(sp, f"unknown source {source!r}{_suggest(source, names['sources'])}")
                    source = None
                elif source in seen:
                    self.error(sp, f"source {source!r} is already granted at {path}[{seen[source]}]"
                                   "; list all its field groups in one grant")
                    source = None
                elif source is not None:
                    seen[source] = i
            if "field_groups" in t:
                def group(x, gp):
                    s = self.string(x, gp)
                    if s is not None and s not in names["field_groups"]:
                        self.error(gp, f"unknown field group {s!r}"
                                       f"{_suggest(s, names['field_groups'])}")
                        return None
                    return s
                groups = self.names(t["field_groups"], _key(p, "field_groups"), group,
                                    nonempty=True, what="field group name")
            if source is not None and groups is not None:
                out.append(Grant(source, tuple(groups)))
        return tuple(out)

    def _approvals(self, v: Any, path: str) -> tuple[Approval, ...]:
        items = self.array(v, path, of=" of tables { use_case, by, date, ref }")
        out: list[Approval] = []
        for i, item in enumerate(items or ()):
            p = f"{path}[{i}]"
            before = len(self.problems)
            t = self.table(item, p, _APPROVAL_KEYS, ("use_case", "by", "date"))
            if t is None:
                continue
            use_case = self.string(t["use_case"], _key(p, "use_case")) if "use_case" in t else None
            by = self.string(t["by"], _key(p, "by")) if "by" in t else None
            day = self.date(t["date"], _key(p, "date")) if "date" in t else None
            ref = self.string(t["ref"], _key(p, "ref"), empty=True) if "ref" in t else ""
            expires = self.date(t["expires"], _key(p, "expires")) if "expires" in t else None
            if day is not None and expires is not None and expires < day:
                self.error(_key(p, "expires"), f"expires ({expires}) before it was given ({day})")
            if len(self.problems) == before:
                out.append(Approval(use_case, by, day, ref, expires))
        return tuple(out)

    def _rules(self, v: Any, path: str) -> tuple[Rule, ...]:
        items = self.array(v, path, of=" of tables { id, value, tag }")
        rules: list[Rule] = []
        where: list[int] = []                    # index in the file of each rules[] entry
        for i, item in enumerate(items or ()):
            p = f"{path}[{i}]"
            before = len(self.problems)
            t = self.table(item, p, _RULE_KEYS, ("id", "value"))
            if t is None:
                continue
            rid = t.get("id")
            if isinstance(rid, int) and not isinstance(rid, bool):
                rid = str(rid)
            elif "id" in t and not isinstance(rid, str):
                self.error(_key(p, "id"), f"expected a string or an integer, got {_describe(rid)}")
            elif "id" in t and not rid.strip():
                self.error(_key(p, "id"), "must not be empty")
            value = self.string(t["value"], _key(p, "value"), empty=True) if "value" in t else None
            tag = t.get("tag")
            if tag is not None and not isinstance(tag, str):
                self.error(_key(p, "tag"), f"expected a string, got {_describe(tag)}")
            fold = t.get("fold", False)
            if not isinstance(fold, bool):
                self.error(_key(p, "fold"), f"expected true or false, got {_describe(fold)}")
            if len(self.problems) > before:
                continue
            try:
                rules.append(Rule(rid, value, tag, fold))
            except (RuleError, TypeError) as e:     # pragma: no cover - checked above
                self.error(p, str(e))
                continue
            where.append(i)
        for err in check_rules(rules, where=[f"{path}[{i}]" for i in where]):
            i = where[err.index]
            field_ = "id" if err.reason.startswith("duplicate rule id") else "value"
            self.error(_key(f"{path}[{i}]", field_), str(err))
        return tuple(rules)

    def _sink(self, v: Any, path: str) -> SinkConfig | None:
        before = len(self.problems)
        t = self.table(v, path, _SINK_KEYS, ("kind",))
        if t is None or "kind" not in t:
            return None
        kind = self.choice(t["kind"], _key(path, "kind"), SINK_KINDS, "sink kind")
        if kind is None:
            return None
        sink_path = compression = None
        if kind == "callback":
            for k in ("path", "compression"):
                if k in t:
                    self.error(_key(path, k), f"a callback sink takes no {k} (the caller "
                                              "registers the callback under the client's name)")
        else:
            if "path" not in t:
                self.error(_key(path, "path"), f"required key is missing (a {kind} sink writes "
                                               "to a path)")
            else:
                sink_path = self.string(t["path"], _key(path, "path"))
                if sink_path == "-" and kind != "ndjson":
                    self.error(_key(path, "path"), f"a {kind} sink cannot write to stdout ('-')")
            choices = SINK_COMPRESSIONS[kind]
            implied = None
            if kind == "ndjson" and sink_path is not None:
                implied = ("gzip" if sink_path.endswith(".gz") else
                           "zstd" if sink_path.endswith((".zst", ".zstd")) else None)
            if "compression" in t:
                compression = self.choice(t["compression"], _key(path, "compression"), choices,
                                          f"{kind} compression")
                if compression is not None and implied and compression != implied:
                    self.error(_key(path, "compression"),
                               f"{compression!r} contradicts the path's suffix ({implied})")
            else:
                compression = implied or choices[0]
        if len(self.problems) > before:
            return None
        return SinkConfig(kind, sink_path, compression)

    # -- graph -----------------------------------------------------------------------------

    def _cycles(self, orgs: Mapping[str, Organisation | None]) -> None:
        """Warn about each strongly connected group of organisations (Tarjan, iterative)."""
        graph = {n: [p for p in o.parents() if p in orgs] for n, o in orgs.items() if o}
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()
        counter = 0
        for root in graph:
            if root in index:
                continue
            work = [(root, 0)]
            while work:
                node, i = work.pop()
                if i == 0:
                    index[node] = low[node] = counter
                    counter += 1
                    stack.append(node)
                    on.add(node)
                succ = graph.get(node, [])
                if i < len(succ):
                    work.append((node, i + 1))
                    nxt = succ[i]
                    if nxt not in index:
                        work.append((nxt, 0))
                    elif nxt in on:
                        low[node] = min(low[node], index[nxt])
                    continue
                if low[node] == index[node]:
                    group = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        group.append(w)
                        if w == node:
                            break
                    if len(group) > 1:
                        first = min(group, key=list(graph).index)
                        self.warn(_key("organisations", first),
                                  "cycle in the organisation graph: "
                                  + ", ".join(sorted(group)) + " reach each other through "
                                  "their edges")
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
