"""Entitlements: who may receive what, compiled once, applied per batch.

**Control plane.** :func:`compile_plans` turns a :class:`firehose.config.Config` into an
immutable :class:`PlanSet`: one :class:`Plan` per (client, source) with everything the data
plane needs — allowed or not (with every reason and, for the organisation graph, the path that
triggered it), the columns it may see, its delivery countries, caps — and a version and hash.
Deny by default; forbid overrides permit:

* no grant for the source → deny (``no_grant``);
* the licence's prohibited categories apply to the seat's organisation and to every ancestor
  reached through ``controlled_by``, ``acts_on_behalf_of`` and ``component_of``; through
  ``owned_by`` when prohibited owners hold, in aggregate, at least the licence's ownership
  threshold (default 50 %: 25 % + 25 % held by two prohibited owners counts as 50 %);
  → ``prohibited_category``, with the path (``frontco -> holding -> agency -> intelligence``);
* an organisation that is referenced but not defined, or a cycle, anywhere up the graph through
  any edge → ``unresolved_ownership``;
* seats of categories the licence lists as needing approval (government, homeland security,
  ...) need a recorded, unexpired approval for their use case → ``approval_missing``;
* a delivery country under the licence's embargo → ``embargoed_country``;
* government-like seats never get the exact-geo or author-profile columns (``field_denied``),
  and a column that no granted field group lists is never delivered.

**Data plane.** :class:`Entitlements` applies plans to a batch of tweets and the matches of
each client's rules: compliance masks once per batch (:mod:`firehose.compliance`), then per
plan the seat decision, withholding in its countries and caps in tweet-id order; the delivered
rows are projected to the plan's columns, with geo masked where scrub_geo says so. Every
matched row is either delivered or denied for exactly one reason, and the audit says so.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .compliance import DENY_REASONS, ComplianceState
from .config import Client, Config
from .schema import TWEETS

__all__ = ["Denial", "Plan", "PlanSet", "compile_plans", "Entitlements", "BatchResult", "Delivery",
           "GOVERNMENT_CATEGORIES", "SENSITIVE_GROUPS", "AUDIT", "DENIALS", "LEDGER"]

#: seats in these categories (or under an organisation in them) are treated as government
GOVERNMENT_CATEGORIES = frozenset({"government", "homeland_security", "law_enforcement",
                                   "military", "intelligence", "surveillance"})
#: field groups government seats never receive
SENSITIVE_GROUPS = ("geo_exact", "author_profile")
DEFAULT_OWNERSHIP_THRESHOLD = 50.0
_CONTROL_KINDS = ("controlled_by", "acts_on_behalf_of", "component_of")
_GEO_COLUMNS = ("coordinates", "place_id", "place_country_code")
#: reasons that do not depend on the seat, in the order they are checked
_GLOBAL_REASONS = ("null_id",) + DENY_REASONS


@dataclass(frozen=True)
class Denial:
    """Why a seat, a column or a row is refused."""

    reason: str                 # no_grant, prohibited_category, unresolved_ownership, ...
    policy: str                 # the licence (or "default") whose rule it is
    detail: str
    path: tuple[str, ...] = ()  # organisation path, ending with the category when there is one

    @property
    def path_text(self) -> str:
        return " -> ".join(self.path)


@dataclass(frozen=True)
class Plan:
    client: str
    source: str
    licence: str
    allowed: bool
    denials: tuple[Denial, ...]          # seat-level: non-empty iff not allowed
    columns: tuple[str, ...]             # delivered columns, in schema order
    column_denials: tuple[Denial, ...]   # columns withheld from a granted group
    delivery_countries: tuple[str, ...]
    redistribution: str
    objects_per_day: int | None
    group: str                           # affiliated group (root organisation) for group caps
    group_ids_per_30d: int | None
    #: the original payload may be delivered (a granted group lists ``raw_json``, the licence
    #: redistributes full objects, and the seat is not a government seat: the raw line holds
    #: the author profile and exact geo)
    raw_json: bool = False


@dataclass(frozen=True)
class PlanSet:
    plans: Mapping[tuple[str, str], Plan]
    version: int
    hash: str

    def plan(self, client: str, source: str) -> Plan:
        p = self.plans.get((client, source))
        if p is None:          # unknown seats are denied, never permitted by accident
            return Plan(client, source, "default", False,
                        (Denial("no_plan", "default", f"no plan for {client!r} on {source!r}"),),
                        (), (), (), "full", 0, client, 0)
        return p


# ------------------------------------------------------------------------ the organisation graph

class _Graph:
    def __init__(self, config: Config, prohibited: frozenset, threshold: float):
        self.orgs = config.organisations
        self.prohibited = prohibited
        self.threshold = threshold
        self.memo: dict[str, tuple[str, tuple[str, ...], str] | None] = {}
        self.active: set[str] = set()

    def verdict(self, name: str) -> tuple[str, tuple[str, ...], str] | None:
        """None if ``name`` is clear; else (reason, path, detail) of the first finding."""
        if name in self.memo:
            return self.memo[name]
        if name in self.active:
            return ("unresolved_ownership", (name,), f"ownership cycle through {name!r}")
        org = self.orgs.get(name)
        if org is None:
            return ("unresolved_ownership", (name,),
                    f"organisation {name!r} is referenced but not defined")
        self.active.add(name)
        try:
            found = self._judge(org)
        finally:
            self.active.discard(name)
        self.memo[name] = found
        return found

    def _judge(self, org):
        bad = sorted(set(org.categories) & self.prohibited)
        if bad:
            return ("prohibited_category", (org.name, bad[0]),
                    f"{org.name} is in prohibited category {bad[0]!r}")
        unresolved = None
        for e in org.edges:
            v = self.verdict(e.parent)
            if v is None:
                continue
            reason, path, detail = v
            if reason == "unresolved_ownership":
                # an unknown parent denies through any edge, whatever the share
                unresolved = unresolved or (reason, (org.name,) + path, detail)
            elif e.kind in _CONTROL_KINDS:
                return (reason, (org.name,) + path, f"{org.name} {e.kind} {path[0]}: {detail}")
        if unresolved:
            return unresolved
        owners = [(e, self.verdict(e.parent)) for e in org.edges if e.kind == "owned_by"]
        blocked = [(e, v) for e, v in owners if v is not None]
        share = sum(100.0 if e.percent is None else float(e.percent) for e, _ in blocked)
        if blocked and share >= self.threshold:
            e, (reason, path, detail) = max(blocked, key=lambda ev: ev[0].percent or 100.0)
            names = ", ".join(f"{b.parent} {b.percent or 100:g}%" for b, _ in blocked)
            return (reason, (org.name,) + path,
                    f"{org.name} is {share:g}% owned by prohibited owners ({names}): {detail}")
        return None

    def categories(self, name: str, seen=None) -> set[str]:
        """The organisation's categories and those of its control-type ancestors."""
        seen = set() if seen is None else seen
        if name in seen or name not in self.orgs:
            return set()
        seen.add(name)
        org = self.orgs[name]
        out = set(org.categories)
        for e in org.edges:
            if e.kind in _CONTROL_KINDS:
                out |= self.categories(e.parent, seen)
        return out

    def root(self, name: str) -> str:
        """The affiliated group: follow the largest owner / the controller up to the top."""
        seen = {name}
        while name in self.orgs:
            org = self.orgs[name]
            ups = [e for e in org.edges if e.kind in _CONTROL_KINDS or
                   (e.kind == "owned_by" and (e.percent or 100) > 50)]
            if not ups or ups[0].parent in seen:
                return name
            name = ups[0].parent
            seen.add(name)
        return name


def _approved(client: Client, today: _dt.date) -> bool:
    return any(a.use_case == client.use_case and (a.expires is None or a.expires >= today)
               for a in client.approvals)


def compile_plans(config: Config, *, version: int = 1, today: _dt.date | None = None) -> PlanSet:
    """Every (client, source) plan of a configuration."""
    today = today or _dt.date.today()
    plans = {}
    graphs: dict[str, _Graph] = {}
    for cname, client in sorted(config.clients.items()):
        for sname, source in sorted(config.sources.items()):
            lic = config.licences[source.licence]
            g = graphs.get(lic.name)
            if g is None:
                threshold = getattr(lic, "ownership_threshold_percent", None)
                g = graphs[lic.name] = _Graph(config, frozenset(lic.prohibited_categories),
                                              DEFAULT_OWNERSHIP_THRESHOLD if threshold is None
                                              else float(threshold))
            plans[(cname, sname)] = _plan(config, client, sname, lic, g, today)
    canon = json.dumps([_plan_dict(p) for _, p in sorted(plans.items())], sort_keys=True,
                       default=str)
    return PlanSet(plans, version, hashlib.sha256(canon.encode()).hexdigest()[:16])


def _plan(config, client, sname, lic, g: _Graph, today) -> Plan:
    denials: list[Denial] = []
    grants = [gr for gr in client.grants if gr.source == sname]
    if not grants:
        denials.append(Denial("no_grant", "default", f"{client.name} has no grant for {sname}"))
    v = g.verdict(client.organisation)
    if v is not None:
        reason, path, detail = v
        if reason == "prohibited_category":
            denials.append(Denial(reason, lic.name, detail, path))
        else:
            denials.append(Denial(reason, "default", detail, path))
    cats = g.categories(client.organisation)
    need = sorted(cats & set(lic.approval_required))
    if need and not _approved(client, today):
        denials.append(Denial("approval_missing", lic.name,
                              f"{client.name} is {need[0]} and has no current approval for use "
                              f"case {client.use_case!r}"))
    embargo = sorted(set(client.delivery_countries) & set(lic.embargoed_countries))
    if embargo:
        denials.append(Denial("embargoed_country", lic.name,
                              f"{client.name} delivers to embargoed {', '.join(embargo)}"))
    government = bool(cats & GOVERNMENT_CATEGORIES)
    cols: set[str] = set()
    col_denials = []
    for gr in grants:
        for fg in gr.field_groups:
            group = config.field_groups[fg]
            if government and fg in SENSITIVE_GROUPS:
                col_denials.append(Denial("field_denied", lic.name,
                                          f"{client.name} is a government seat: no {fg}"))
                continue
            cols |= set(group.columns)
    if government:     # whatever group lists them, sensitive columns stay out
        for fg in SENSITIVE_GROUPS:
            if fg in config.field_groups:
                cols -= set(config.field_groups[fg].columns)
    if lic.redistribution == "ids":
        cols &= {"id"}
    columns = tuple(n for n in TWEETS.names if n in cols)
    raw = "raw_json" in cols and not government
    if government and any("raw_json" in config.field_groups[fg].columns
                          for gr in grants for fg in gr.field_groups
                          if fg not in SENSITIVE_GROUPS):
        col_denials.append(Denial("field_denied", lic.name,
                                  f"{client.name} is a government seat: no raw_json (it holds "
                                  "the author profile and exact geo)"))
    caps = lic.caps
    return Plan(client.name, sname, lic.name, not denials, tuple(denials), columns,
                tuple(col_denials), tuple(client.delivery_countries), lic.redistribution,
                caps.objects_per_recipient_per_day, g.root(client.organisation),
                caps.post_ids_per_group_per_30d, raw)


def _plan_dict(p: Plan) -> dict:
    d = dict(p.__dict__)
    d["denials"] = [x.__dict__ for x in p.denials]
    d["column_denials"] = [x.__dict__ for x in p.column_denials]
    return d


# ------------------------------------------------------------------------ the data plane

AUDIT = pa.schema([
    ("batch", pa.int64()), ("client", pa.string()), ("source", pa.string()),
    ("plan_version", pa.int64()), ("plan_hash", pa.string()),
    ("outcome", pa.string()),          # "matched", "delivered" or "denied"
    ("reason", pa.string()), ("policy", pa.string()), ("rows", pa.int64()),
])
DENIALS = pa.schema([
    ("batch", pa.int64()), ("client", pa.string()), ("tweet_id", pa.int64()),
    ("reason", pa.string()), ("policy", pa.string()), ("rules", pa.list_(pa.string())),
    ("path", pa.string()), ("detail", pa.string()),
])
LEDGER = pa.schema([("batch", pa.int64()), ("client", pa.string()), ("tweet_id", pa.int64()),
                    ("plan_version", pa.int64())])


@dataclass
class Delivery:
    """What one client gets from a batch: row indices into the batch (in tweet-id order), the
    plan's columns, each row's matching rules, and where geo must be masked. The table is made
    only when a sink asks for it (:meth:`table`)."""
    tweets: pa.Table
    rows: np.ndarray
    columns: tuple[str, ...]
    rules: pa.Array              # matching_rules of the client's matched rows, in match order
    rules_at: np.ndarray         # for each delivered row, its index into ``rules``
    scrub: np.ndarray

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        t = self.tweets.select(list(self.columns)).take(pa.array(self.rows, pa.int64()))
        if len(self.rows) and self.scrub.any():
            t = _mask_geo(t, self.scrub)
        return t.append_column("matching_rules", self.rules.take(pa.array(self.rules_at)))


@dataclass
class BatchResult:
    delivered: dict[str, Delivery]       # client -> its delivery (``.table()`` to materialise)
    audit: pa.Table
    denials: pa.Table
    ledger: pa.Table

    def table(self, client: str) -> pa.Table:
        return self.delivered[client].table()


class Entitlements:
    """Applies a PlanSet batch by batch; keeps the cap counters."""

    def __init__(self, plans: PlanSet, compliance: ComplianceState | None = None,
                 source: str | None = None):
        self.plans = plans
        self.compliance = compliance or ComplianceState()
        self.source = source
        self._day_counts: dict[tuple[str, int], int] = {}
        self._group_counts: dict[tuple[str, int], int] = {}
        self._delivered: dict[str, list[np.ndarray]] = {}
        self._delivered_users: dict[str, list[np.ndarray]] = {}
        # authors delivered, not yet sorted in: sorted only when a user event asks (rare), not
        # for every seat of every batch
        self._pending_users: dict[str, list[np.ndarray]] = {}
        self.batch = 0

    def replace_plans(self, plans: PlanSet) -> None:
        """A new configuration takes effect at the next batch."""
        self.plans = plans

    def apply(self, tweets: pa.Table, matches: Mapping[str, tuple[np.ndarray, pa.Array]],
              source: str | None = None) -> BatchResult:
        """``matches``: client -> (matched row indices, matching_rules list array aligned with
        them). Returns what each client gets and the audit of the batch."""
        self.batch += 1
        source = source or self.source
        if source is None:
            raise ValueError("apply(): no source named")
        idcol = tweets.column("id")
        id_null = pc.is_null(idcol).to_numpy(zero_copy_only=False)
        ids = pc.fill_null(idcol, -1).to_numpy(zero_copy_only=False)
        authors = pc.fill_null(tweets.column("author_id"), -1).to_numpy(zero_copy_only=False)
        deny = self.compliance.deny(tweets)
        scrub = self.compliance.scrub_geo_mask(tweets)
        withheld_pairs = self.compliance.withheld_pairs(tweets)
        global_code = np.zeros(tweets.num_rows, np.int8)
        for k, name in enumerate(_GLOBAL_REASONS, 1):
            m = id_null if name == "null_id" else deny[name]
            global_code[m & (global_code == 0)] = k
        withheld_cache: dict[tuple, np.ndarray] = {}
        created = tweets.column("created_at")
        days = pc.cast(created, pa.int64()).to_numpy(zero_copy_only=False) if created.null_count \
            == 0 else pc.fill_null(pc.cast(created, pa.int64()), 0).to_numpy(zero_copy_only=False)
        days = days // 86_400_000
        delivered: dict[str, pa.Table] = {}
        audit, denials, ledger = [], [], []
        # rows already in id order (a stream usually is): no per-client sort for the caps
        in_id_order = len(ids) < 2 or bool((ids[1:] >= ids[:-1]).all())
        any_withheld = len(withheld_pairs[0]) > 0
        fixed = [("", "", "", "")] + [
            (name, "default" if name == "null_id" else "compliance", "", "")
            for name in _GLOBAL_REASONS] + [("withheld", "compliance", "", "")]
        withheld_code = len(fixed) - 1
        for client, (rows, rules) in sorted(matches.items()):
            plan = self.plans.plan(client, source)
            rows = np.asarray(rows, np.int64)
            if in_id_order:
                order = np.arange(len(rows))
            else:
                order = np.argsort(ids[rows], kind="stable")      # caps go in tweet-id order
                rows = rows[order]
            # rules stay in matched order: ``order`` maps id order back to them
            # one reason code per row (0: deliver); the first reason that applies wins:
            # the seat's own denial, then the batch-wide reasons (null id, compliance) in
            # their order, withholding in the seat's countries, caps
            table_r: list[tuple[str, str, str, str]] = list(fixed)

            def mark(mask, r, pol, pth="", det=""):
                m = mask & (code == 0)
                if m.any():
                    table_r.append((r, pol, pth, det))
                    code[m] = len(table_r) - 1

            if not plan.allowed:
                d = plan.denials[0]
                table_r.append((d.reason, d.policy, d.path_text, d.detail))
                code = np.full(len(rows), len(table_r) - 1, np.int16)
            else:
                code = global_code[rows].astype(np.int16)       # one gather per client
                if any_withheld:
                    key = tuple(plan.delivery_countries)
                    if key not in withheld_cache:
                        withheld_cache[key] = self.compliance.withheld_for(
                            withheld_pairs, tweets.num_rows, key)
                    w = withheld_cache[key][rows]
                    code[w & (code == 0)] = withheld_code
                self._caps(plan, rows, days, code, mark)
            ok = code == 0
            keep = rows[ok]
            delivered[client] = Delivery(tweets, keep, plan.columns, rules, order[ok],
                                         scrub[keep])
            base = (self.batch, client, source, self.plans.version, self.plans.hash)
            audit.append(base + ("matched", None, None, len(rows)))
            audit.append(base + ("delivered", None, None, int(ok.sum())))
            counts = np.bincount(code, minlength=len(table_r))
            by_reason: dict = {}
            for k in range(1, len(table_r)):
                if counts[k]:
                    r, pol = table_r[k][0], table_r[k][1]
                    by_reason[(r, pol)] = by_reason.get((r, pol), 0) + int(counts[k])
            for (r, pol), n in by_reason.items():
                audit.append(base + ("denied", r, pol, n))
            bad = np.nonzero(~ok)[0]
            if len(bad):
                rl = rules.take(pa.array(order[bad]))
                denials.append(pa.table({
                    "batch": pa.array(np.full(len(bad), self.batch), pa.int64()),
                    "client": pa.repeat(pa.scalar(client, pa.string()), len(bad)),
                    "tweet_id": pa.array(ids[rows[bad]], pa.int64()),
                    "reason": _labels(table_r, 0).take(pa.array(code[bad])),
                    "policy": _labels(table_r, 1).take(pa.array(code[bad])),
                    "rules": pa.ListArray.from_arrays(rl.offsets,
                                                      pc.struct_field(rl.values, "id")),
                    "path": _labels(table_r, 2).take(pa.array(code[bad])),
                    "detail": _labels(table_r, 3).take(pa.array(code[bad])),
                }, schema=DENIALS))
            self._remember(client, ids[keep])
            if len(keep):
                self._pending_users.setdefault(client, []).append(authors[keep])
            ledger.append(pa.table({
                "batch": pa.array(np.full(len(keep), self.batch), pa.int64()),
                "client": pa.repeat(pa.scalar(client, pa.string()), len(keep)),
                "tweet_id": pa.array(ids[keep], pa.int64()),
                "plan_version": pa.array(np.full(len(keep), self.plans.version), pa.int64()),
            }, schema=LEDGER))
        return BatchResult(
            delivered,
            pa.Table.from_pylist([dict(zip(AUDIT.names, a)) for a in audit], schema=AUDIT),
            pa.concat_tables(denials) if denials else DENIALS.empty_table(),
            pa.concat_tables(ledger) if ledger else LEDGER.empty_table())

    # ------------------------------------------------------------------ checkpoints
    def state_to_bytes(self) -> bytes:
        """Batch counter, cap counters and the ids delivered per client (for forwarding
        deletes), as Arrow IPC: with :meth:`load_state` a resumed run carries on exactly."""
        rows = [("day", k[0], k[1], v) for k, v in sorted(self._day_counts.items())]
        rows += [("group", k[0], k[1], v) for k, v in sorted(self._group_counts.items())]
        kinds, names, keys, vals = (list(x) for x in zip(*rows)) if rows else ([], [], [], [])
        extra_kinds, extra_names, extra_keys = [], [], []
        for label, store in (("delivered", self._delivered),
                             ("delivered_user", self._users())):
            for client in sorted(store):
                got = np.unique(np.concatenate(store[client]))
                store[client] = [got]
                extra_kinds.append(pa.repeat(pa.scalar(label), len(got)))
                extra_names.append(pa.repeat(pa.scalar(client), len(got)))
                extra_keys.append(pa.array(got, pa.int64()))
        n_extra = sum(len(k) for k in extra_keys)
        table = pa.table({
            "kind": pa.concat_arrays([pa.array(kinds, pa.string())] + extra_kinds),
            "name": pa.concat_arrays([pa.array(names, pa.string())] + extra_names),
            "key": pa.concat_arrays([pa.array(keys, pa.int64())] + extra_keys),
            "value": pa.concat_arrays([pa.array(vals, pa.int64()),
                                       pa.array(np.zeros(n_extra, np.int64))]),
        }, metadata={"batch": str(self.batch)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return sink.getvalue().to_pybytes()

    def load_state(self, data: bytes) -> None:
        from .errors import StateError
        try:
            table = pa.ipc.open_stream(data).read_all()
        except (pa.ArrowInvalid, OSError) as e:
            raise StateError(f"entitlement state is corrupt: {e}") from None
        self.batch = int((table.schema.metadata or {}).get(b"batch", b"0"))
        self._day_counts, self._group_counts = {}, {}
        self._delivered, self._delivered_users, self._pending_users = {}, {}, {}
        is_del = pc.is_in(table.column("kind"), value_set=pa.array(["delivered",
                                                                    "delivered_user"]))
        counters = table.filter(pc.invert(is_del))
        for kind, name, key, value in zip(*(counters.column(c).to_pylist()
                                            for c in ("kind", "name", "key", "value"))):
            (self._day_counts if kind == "day" else self._group_counts)[(name, key)] = value
        for label, store in (("delivered", self._delivered),
                             ("delivered_user", self._delivered_users)):
            delivered = table.filter(pc.equal(table.column("kind"), label))
            names = delivered.column("name")
            for client in pc.unique(names).to_pylist():
                ids = delivered.filter(pc.equal(names, client)).column("key")
                store[client] = [np.sort(ids.to_numpy())]

    # ------------------------------------------------------------------ deletes to forward
    def _remember(self, client: str, ids: np.ndarray, store: dict | None = None) -> None:
        """Keep the ids delivered to ``client`` as sorted runs of roughly doubling sizes (a
        new run merges with the previous while that is not twice as long), so there are
        O(log n) runs, membership is a binary search per run, and a batch costs about its own
        size, not the whole history."""
        if not len(ids):
            return
        runs = (self._delivered if store is None else store).setdefault(client, [])
        ids = np.asarray(ids, np.int64)
        # apply() passes its delivered ids in id order: drop repeats without a sort
        if len(ids) > 1:
            step = ids[1:] - ids[:-1]
            if (step < 0).any():
                ids = np.unique(ids)
            elif not step.all():
                ids = ids[np.concatenate(([True], step != 0))]
        runs.append(ids)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            b, a = runs.pop(), runs.pop()
            m = np.concatenate([a, b])
            m.sort(kind="stable")            # two sorted runs: a linear merge
            keep = np.ones(len(m), bool)
            keep[1:] = m[1:] != m[:-1]
            runs.append(m[keep])

    def _users(self) -> dict[str, list[np.ndarray]]:
        """The delivered-authors memory, with the authors of recent batches sorted in."""
        for client, parts in self._pending_users.items():
            self._remember(client, np.concatenate(parts), self._delivered_users)
        self._pending_users = {}
        return self._delivered_users

    def _was_delivered(self, client: str, ids: np.ndarray, store: dict | None = None
                       ) -> np.ndarray:
        hit = np.zeros(len(ids), bool)
        for run in (self._delivered if store is None else store).get(client, ()):
            i = np.searchsorted(run, ids)
            i[i == len(run)] = 0
            hit |= run[i] == ids
        return hit

    def forward(self, compliance: pa.Table) -> dict[str, pa.Table]:
        """The compliance events each client must be sent: deletes (and drops, user deletes
        and withholdings) of tweets or authors it was delivered. Call with each batch's
        compliance table before or after :meth:`apply`; the state is updated separately."""
        if compliance.num_rows == 0 or not self._delivered:
            return {}
        tid = compliance.column("tweet_id")
        t_valid = pc.is_valid(tid).to_numpy(zero_copy_only=False)
        ids = pc.fill_null(tid, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        # events about a user (deleted, suspended, protected, withheld, scrub_geo and their
        # reversals) go to every client that was delivered a tweet by that user
        kind = pc.cast(compliance.column("kind"), pa.string())
        about_user = pc.or_(pc.starts_with(kind, "user_"), pc.equal(kind, "scrub_geo"))
        uid = compliance.column("user_id")
        u_valid = pc.and_(pc.fill_null(about_user, False), pc.is_valid(uid)) \
            .to_numpy(zero_copy_only=False)
        users = pc.fill_null(uid, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if not t_valid.any() and not u_valid.any():
            return {}
        out = {}
        for client in sorted(self._delivered):
            hit = self._was_delivered(client, ids) & t_valid
            if u_valid.any():
                hit |= self._was_delivered(client, users, self._users()) & u_valid
            if hit.any():
                out[client] = compliance.filter(pa.array(hit))
        return out

    def plan_versions(self) -> pa.Table:
        """The plan set in force: version, hash and each plan's decision (for the audit)."""
        ps = self.plans
        rows = [{"plan_version": ps.version, "plan_hash": ps.hash, "client": p.client,
                 "source": p.source, "allowed": p.allowed,
                 "reasons": [d.reason for d in p.denials], "columns": list(p.columns)}
                for p in ps.plans.values()]
        return pa.Table.from_pylist(rows)

    def _caps(self, plan: Plan, rows, days, code, mark) -> None:
        """Caps in tweet-id order: a row over the seat's daily cap or its group's 30-day cap
        is denied and consumes neither. When no cap can bind in this batch (the usual case)
        the counters move by whole days at once; otherwise rows are taken one by one."""
        if plan.objects_per_day is None and plan.group_ids_per_30d is None:
            return
        elig = np.nonzero(code == 0)[0]
        if not len(elig):
            return
        d = days[rows[elig]]
        uniq, cnt = np.unique(d, return_counts=True)
        uniq, cnt = uniq.tolist(), cnt.tolist()
        per_day, per_group = plan.objects_per_day, plan.group_ids_per_30d
        binds = False
        if per_day is not None:
            binds = any(self._day_counts.get((plan.client, u), 0) + c > per_day
                        for u, c in zip(uniq, cnt))
        if not binds and per_group is not None:
            total = len(d)
            binds = any(self._window(plan.group, u) + total > per_group for u in uniq)
        if not binds:
            for u, c in zip(uniq, cnt):
                if per_day is not None:
                    self._day_counts[(plan.client, u)] = self._day_counts.get((plan.client, u), 0) + c
                if per_group is not None:
                    self._group_counts[(plan.group, u)] = \
                        self._group_counts.get((plan.group, u), 0) + c
            return
        over = np.zeros(len(rows), bool)
        window: dict[int, int] = {}          # day -> the group's 30-day total, kept current
        for i, day in zip(elig.tolist(), d.tolist()):
            if per_day is not None and self._day_counts.get((plan.client, day), 0) >= per_day:
                over[i] = True
                continue
            if per_group is not None:
                used = window.get(day)
                if used is None:
                    used = window[day] = self._window(plan.group, day)
                if used >= per_group:
                    over[i] = True
                    continue
                self._group_counts[(plan.group, day)] = \
                    self._group_counts.get((plan.group, day), 0) + 1
                for k in window:
                    if day <= k <= day + 29:
                        window[k] += 1
            if per_day is not None:
                self._day_counts[(plan.client, day)] = self._day_counts.get((plan.client, day), 0) + 1
        mark(over, "cap_exceeded", plan.licence)

    def _window(self, group: str, day: int) -> int:
        g = self._group_counts
        return sum(g.get((group, x), 0) for x in range(day - 29, day + 1))


def _labels(table_r, k) -> pa.Array:
    return pa.array([t[k] for t in table_r], pa.string())


def _mask_geo(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """Null the geo columns where mask is true (scrub_geo). A struct is nulled through its own
    validity, its children untouched, so non-nullable children (``lon``, ``lat``) stay valid
    for writers that check them (Parquet)."""
    m = pa.array(mask)
    for name in _GEO_COLUMNS:
        if name in table.column_names:
            i = table.column_names.index(name)
            col = table.column(i).combine_chunks()
            if pa.types.is_struct(col.type):
                null = pc.or_(pc.is_null(col), m)
                children = [col.field(k) for k in range(col.type.num_fields)]
                new = pa.StructArray.from_arrays(children, fields=list(col.type), mask=null)
            else:
                new = pc.if_else(m, pa.nulls(len(mask), col.type), col)
            table = table.set_column(i, table.field(i), new)
    return table
