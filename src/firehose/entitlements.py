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
import os
import re
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _core
from .compliance import DENY_REASONS, ComplianceState, _Screen, in_sorted
from .config import Client, Config
from .errors import SinkError, StateError
from .schema import MATCHING_RULES, TWEETS
from .sinks import _unlink, fsync_dir, sync_all

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
#: the per-row byte apply() reads: in the low bits the batch-wide reason code, or
#: _MAYBE_WITHHELD when there is none but the row is withheld somewhere (the seat's
#: countries decide); the top bit says scrub_geo applies
_REASON_BITS, _MAYBE_WITHHELD, _SCRUB_BIT = 0x0F, 0x0F, 0x80
#: denial labels (reason, policy, path, detail) by code: 0 is "delivered", then the
#: batch-wide reasons, withholding; code 8 is the seat's own (its plan's denial, or caps)
_FIXED = ((("", "", "", ""),)
          + tuple((name, "default" if name == "null_id" else "compliance", "", "")
                  for name in _GLOBAL_REASONS)
          + (("withheld", "compliance", "", ""),))
_WITHHELD_CODE, _EXTRA_CODE = len(_FIXED) - 1, len(_FIXED)
assert _EXTRA_CODE < _MAYBE_WITHHELD


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
# a denial's reason, policy, path and detail repeat for every row of its seat and cause (a
# barred seat's 40k rows share one ~150-byte detail): dictionary columns, one copy per value
LABEL = pa.dictionary(pa.int32(), pa.string())
_SNOWFLAKE_SHIFT = 22   # a snowflake id's time: its bits from 22 up (milliseconds)
#: tweet time of deliveries kept in memory (with a spill directory) for forwarding
DEFAULT_WINDOW_HOURS = 6.0
_PENDING_BATCHES = 4    # batches of delivered (author, id) pairs held before they are sorted
#: blocks of the delivery memory (seat pairs) and runs of the author index (pairs) smaller
#: than these are merged as they come (small batches: a live stream's); larger ones are kept
#: as they are, and a lookup searches each (merging them doubled, in bursts, a stream's cost)
_BLOCK_PAIRS = 1 << 22
_AUTHOR_RUN_PAIRS = 1 << 20
_BLOCK_LOOKBACK = 8     # the newest blocks searched for the one of a new block's slot
_RULE_IDS = pa.list_(pa.string())       # a denial's rules: the ids of the seat's that matched
DENIALS = pa.schema([
    ("batch", pa.int64()), ("client", pa.string()), ("tweet_id", pa.int64()),
    ("reason", LABEL), ("policy", LABEL), ("rules", _RULE_IDS),
    ("path", LABEL), ("detail", LABEL),
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
        return t.append_column("matching_rules", self.matching_rules())

    def matching_rules(self) -> pa.Array:
        """Each delivered row's matching rules (list<struct<id, tag>>), in row order: the
        router's rule indices written out as strings here, for the delivered rows only."""
        got = self.rules.take(pa.array(self.rules_at))
        return got if got.type == MATCHING_RULES else got.cast(MATCHING_RULES)

    @property
    def geo_grants(self) -> tuple[bool, bool]:
        """(exact geo, place) as the plan grants them: what a raw payload may keep."""
        return "coordinates" in self.columns, "place_id" in self.columns


@dataclass
class BatchResult:
    delivered: dict[str, Delivery]       # client -> its delivery (``.table()`` to materialise)
    audit: pa.Table
    denials: pa.Table
    ledger: pa.Table

    def table(self, client: str) -> pa.Table:
        return self.delivered[client].table()


class _Arena:
    """The stage's large arrays, recycled from batch to batch.

    A 1M-tweet batch writes about half a gigabyte of arrays. Memory new to the process costs
    a page fault per page on first write (on this project's VMs about as much as the writing
    itself, more for huge pages), and allocators give large blocks back to the system after
    a while, so a stage that allocates afresh pays those faults again and again. The arena
    keeps the buffers it handed out and hands one out again once nothing refers to it any
    more: the previous batch's outputs, once the caller dropped them, are the next batch's.
    A buffer that stays unused (or still referred to) for ``keep`` batches is let go."""

    MIN_BYTES = 1 << 20          # smaller arrays come from numpy directly

    def __init__(self, keep: int = 2):
        self._bufs: list[np.ndarray] = []
        self._idle: list[int] = []
        self.keep = keep

    def empty(self, size: int, dtype) -> np.ndarray:
        """An uninitialised array of ``size`` items."""
        dtype = np.dtype(dtype)
        nbytes = size * dtype.itemsize
        if nbytes < self.MIN_BYTES:
            return np.empty(size, dtype)
        best = -1
        for i in range(len(self._bufs)):
            cap = len(self._bufs[i])
            # free: referred to by this list and getrefcount's argument only
            if nbytes <= cap <= 2 * nbytes and sys.getrefcount(self._bufs[i]) == 2 \
                    and (best < 0 or cap < len(self._bufs[best])):
                best = i
        if best < 0:
            self._bufs.append(np.empty(nbytes, np.uint8))
            self._idle.append(0)
            best = len(self._bufs) - 1
        self._idle[best] = 0
        return self._bufs[best][:nbytes].view(dtype)

    def next_batch(self) -> None:
        """Counts a batch; lets go of buffers not handed out for ``keep`` batches."""
        self._idle = [k + 1 for k in self._idle]
        kept = [i for i, k in enumerate(self._idle) if k <= self.keep]
        self._bufs = [self._bufs[i] for i in kept]
        self._idle = [self._idle[i] for i in kept]


_AUTHORS = pa.schema([("author_id", pa.int64()), ("tweet_id", pa.int64())])
_SPILL_NAME = re.compile(r"^\.?(delivered|authors|held|held_authors)-(\d+)\.arrow(\.tmp)?$")


class _Spill:
    """What was delivered longer ago than the window, on disk: immutable Arrow IPC files under
    ``directory``, read through memory maps (the pages a lookup touches, not the files, are
    what it costs; the kernel keeps or drops them as memory allows).

    ``delivered-<seq>.arrow``: the delivery blocks of a slot (see :class:`_Block`), a record
    batch each: ``tweet_id`` ascending and ``clients``, the seats it went to as a list of
    codes, their names in the schema's metadata (``clients``, JSON). (Files of earlier
    versions, (tweet_id, client) per seat a tweet went to, sorted by id, the client
    dictionary-encoded, are read as one block.) ``authors-<seq>.arrow``: (author_id,
    tweet_id) of every delivered row, sorted by author then id. ``held-<seq>.arrow`` and
    ``held_authors-<seq>.arrow``: the blocks and author runs still in memory that a checkpoint
    names (same layouts; see :meth:`Entitlements.state_to_bytes`). Each file is written once,
    atomically and synced, before a checkpoint can name it; a checkpoint lists the files it
    relies on with their id range (``lo``, ``hi``).

    A delete is looked up only in the delivered files whose id range holds its id, but a
    user event must search every authors file: so authors files are merged, ``fanout`` files
    of one size class (``fanout``-fold steps of rows) into one, as they accumulate (a merge
    streams, in batches of about ``chunk_rows`` rows in author order, each a batch of the new
    file). The files stay ``fanout - 1`` per size class at most, O(log n) in all, and a row
    is rewritten once per class. A merged-away file is *retired*: still named by the states
    serialised before the merge, it is deleted only once a later state is durable (see
    :meth:`Entitlements.retired_files`)."""

    fanout = 4
    chunk_rows = 1 << 20         # rows of a merge's chunk (one record batch of its file)
    merge_rows = 8 << 20         # rows a compact() call merges at most, when not told
    max_merge_rows = 1 << 28     # files are not merged past this (a merge's length bounded)

    def __init__(self, directory: str):
        self.directory = directory
        self.files: list[tuple[str, str, int, int]] = []     # (kind, name, lo, hi)
        self.seq = 0
        self._maps: dict[str, tuple] = {}
        self._unsynced: list[str] = []      # written, not yet known durable
        self.retired: list[str] = []        # merged away or no longer held, to delete after
                                            # the next checkpoint
        self._releasable: list[str] = []    # those retired before the last state was made
        self._merges: list[_Merge] = []     # the authors merges in progress
        self._lock = threading.Lock()       # the pipeline's committer marks and deletes

    def write(self, kind: str, table: pa.Table, lo: int, hi: int) -> str:
        """A new file of ``kind``: ``table``, a record batch per chunk."""
        self.seq += 1
        name = f"{kind}-{self.seq:06d}.arrow"
        if not os.path.isdir(self.directory):
            os.makedirs(self.directory)
            up = os.path.dirname(os.path.abspath(self.directory))
            fsync_dir(up)                           # the new directories' entries
            fsync_dir(os.path.dirname(up))
        path = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, f".{name}.tmp")
        try:
            with open(tmp, "wb") as f:
                with pa.ipc.new_file(f, table.schema) as w:
                    for batch in table.to_batches():
                        w.write_batch(batch)
            os.replace(tmp, path)
        except OSError as e:
            _unlink(tmp)
            raise SinkError(f"{path}: write failed: {e.strerror or e}") from None
        self.files.append((kind, name, int(lo), int(hi)))
        with self._lock:
            self._unsynced.append(path)
        return name

    def write_blocks(self, blocks: list, names: list[str], kind: str = "delivered") -> str:
        """A new ``delivered`` (or ``held``) file of these blocks, as they are (no copy but
        the seat codes when they must widen to the file's type), ``names`` naming their seat
        codes. Returns its name."""
        wide = any(b.codes.dtype != np.uint16 for b in blocks)
        ctype = pa.int32() if wide else pa.uint16()
        schema = pa.schema([("tweet_id", pa.int64()), ("clients", pa.large_list(ctype))],
                           metadata={"clients": json.dumps(names)})
        batches = [pa.record_batch([
            pa.array(b.ids, pa.int64()),
            pa.LargeListArray.from_arrays(pa.array(b.off, pa.int64()),
                                          pa.array(b.codes.astype(ctype.to_pandas_dtype(),
                                                                  copy=False), ctype))],
            schema=schema) for b in blocks]
        return self.write(kind, pa.Table.from_batches(batches, schema),
                          min(int(b.ids[0]) for b in blocks),
                          max(int(b.ids[-1]) for b in blocks))

    def write_runs(self, kind: str, runs: list) -> str:
        """A new ``authors`` (or ``held_authors``) file of these sorted (author, tweet id)
        runs, a record batch each, as they are. Returns its name."""
        return self.write(kind, pa.Table.from_batches([_author_batch(a, t) for a, t in runs]),
                          min(int(t.min()) for _, t in runs), max(int(t.max()) for _, t in runs))

    def retire(self, names) -> None:
        """Files no longer needed by this run's state (merged away, or a held file whose
        blocks all left memory): no longer named, deleted once a state made after this is
        durable (one no state named yet needs no syncing)."""
        gone = set(names)
        if not gone:
            return
        self.files = [f for f in self.files if f[1] not in gone]
        for name in gone:
            self._maps.pop(name, None)
        paths = {os.path.join(self.directory, n) for n in gone}
        with self._lock:
            self._unsynced = [p for p in self._unsynced if p not in paths]
            self.retired += sorted(gone)

    def unsynced(self) -> list[str]:
        with self._lock:
            return list(self._unsynced)

    def mark_synced(self, paths) -> None:
        done = set(paths)
        with self._lock:
            self._unsynced = [p for p in self._unsynced if p not in done]

    def sync(self) -> None:
        """The files not yet known durable made durable (before a checkpoint names them;
        until then the kernel writes them back in its own time)."""
        paths = self.unsynced()
        if paths:
            sync_all(self.directory, paths)
        self.mark_synced(paths)

    # ---------------------------------------------------------------- retired files
    def snapshot(self) -> list[str]:
        """The retired files, as a state is made that no longer names them: deletable once
        that state is durable (:meth:`release`)."""
        with self._lock:
            self._releasable = list(self.retired)
            return list(self.retired)

    def releasable(self) -> list[str]:
        with self._lock:
            return [os.path.join(self.directory, n) for n in self._releasable]

    def release(self, paths) -> None:
        """Delete retired files (a state that does not name them is durable). One that cannot
        be deleted stays retired: the next checkpoint tries again."""
        gone = set()
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            gone.add(os.path.basename(path))
        with self._lock:
            self.retired = [n for n in self.retired if n not in gone]
            self._releasable = [n for n in self._releasable if n not in gone]

    # ---------------------------------------------------------------- reading
    def _read(self, name: str) -> list[pa.RecordBatch]:
        path = os.path.join(self.directory, name)
        try:
            reader = pa.ipc.open_file(pa.memory_map(path))
            return [reader.get_batch(i) for i in range(reader.num_record_batches)]
        except (OSError, pa.ArrowInvalid) as e:
            raise StateError(f"{path}: a spilled delivery index cannot be read: {e}") from None

    def _columns(self, name: str) -> tuple:
        """A delivered or held file: (its blocks, each a record batch (slot -1: unknown);
        their first ids; their last ids; the seat names of the codes)."""
        got = self._maps.get(name)
        if got is None:
            batches = [b for b in self._read(name) if b.num_rows]
            if batches and pa.types.is_dictionary(batches[0].schema.field(1).type):
                # an earlier version's file: a row per (id, seat), sorted by id
                b = pa.Table.from_batches(batches).combine_chunks()
                tid, c = b.column(0).chunk(0).to_numpy(), b.column(1).chunk(0)
                blocks = [_Block(-1, *_csr(tid, c.indices.to_numpy()))]
                names = c.dictionary.to_pylist()
            else:
                try:
                    names = json.loads(batches[0].schema.metadata[b"clients"]) \
                        if batches else []
                except (KeyError, TypeError, ValueError) as e:
                    raise StateError(f"{os.path.join(self.directory, name)}: a spilled "
                                     f"delivery index names no clients: {e}") from None
                blocks = [_Block(-1, b.column(0).to_numpy(), b.column(1).offsets.to_numpy(),
                                 b.column(1).values.to_numpy()) for b in batches]
            got = self._maps[name] = (blocks, *_bounds(blocks), names)
        return got

    def _author_parts(self, name: str) -> tuple:
        """An authors file: ([(authors, tweet ids)] per batch, each batch's first and last
        author, rows); a merged file has many batches, each a range of authors."""
        got = self._maps.get(name)
        if got is None:
            parts = [(b.column(0).to_numpy(), b.column(1).to_numpy())
                     for b in self._read(name) if b.num_rows]
            first = np.array([a[0] for a, _ in parts], np.int64)
            last = np.array([a[-1] for a, _ in parts], np.int64)
            got = self._maps[name] = (parts, first, last, sum(len(a) for a, _ in parts))
        return got

    def restore(self, files: list[tuple[str, str, int, int]], seq: int,
                retired: list[str] = (), clean: bool = False) -> None:
        """The files a saved state names, each checked to be there and readable (a resumed
        run must not find out late); new files are numbered after ``seq``. ``clean`` (the
        state is the durable one a run resumes from, and nothing else uses the directory):
        every other spill file goes, since no durable state names it (merged away before the
        state, or written after it, or a merge's unfinished file)."""
        self.abandon()
        self.files, self.seq, self._maps = files, seq, {}
        with self._lock:
            # (clean: the retired files go below with every other unnamed one)
            self.retired = [] if clean else list(retired)
            self._releasable, self._unsynced = [], []
        for kind, name, _, _ in files:
            self._author_parts(name) if kind in ("authors", "held_authors") \
                else self._columns(name)
        if not clean:
            return
        try:
            names = os.listdir(self.directory)
        except OSError:
            names = []
        keep = {name for _, name, _, _ in files}
        for name in names:
            if _SPILL_NAME.match(name) and name not in keep:
                _unlink(os.path.join(self.directory, name))

    def hits(self, q: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Where the ascending ids ``q`` were delivered, from the spilled files: per file
        that has any, (seat codes, indices in ``q``, the file's seat names)."""
        out = []
        for kind, name, lo, hi in self.files:
            if kind != "delivered":
                continue
            a, b = np.searchsorted(q, lo, "left"), np.searchsorted(q, hi, "right")
            if a == b:
                continue
            blocks, first, last, names = self._columns(name)
            seat, at = _block_hits(blocks, first, last, q[a:b])
            if len(seat):
                out.append((seat, at + a, names))
        return out

    def tweets_by(self, users: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(tweet ids, authors) of spilled rows written by ``users`` (sorted, distinct)."""
        out = []
        for kind, name, _, _ in self.files:
            if kind != "authors":
                continue
            parts, first, last, _ = self._author_parts(name)
            a = np.searchsorted(users, first, "left")
            b = np.searchsorted(users, last, "right")
            for i in np.flatnonzero(b > a).tolist():
                author, tid = parts[i]
                at, _ = _ranges(author, users[a[i]:b[i]])
                if len(at):
                    out.append((tid[at], author[at]))
        return out

    # ---------------------------------------------------------------- merging
    def _size_class(self, rows: int) -> int:
        k = 0
        while rows >= self.fanout:
            rows //= self.fanout
            k += 1
        return k

    def compact(self, budget: int | None = None) -> None:
        """Go on merging authors files for about ``budget`` rows (default ``merge_rows``).
        Every size class holding ``fanout`` files not being merged starts a merge of its
        oldest ones (one merge a class at a time, never two over one file; none past
        ``max_merge_rows`` rows); the smallest merge in progress goes first, so a long merge
        of the largest files never holds up the small ones. A merge is written a chunk at a
        time, so one batch never waits for a whole merge; until it is done the files it
        reads stay as they are, named and searched."""
        if self.fanout < 2:
            raise ValueError("the spill's fanout must be at least 2")
        left = self.merge_rows if budget is None else budget
        while left > 0:
            while (got := self._next_merge()) is not None:
                k, at = got
                self.seq += 1
                self._merges.append(_Merge(self, [self.files[i] for i in at], self.seq, k))
            if not self._merges:
                return
            merge = min(self._merges, key=lambda m: m.total)
            left -= merge.step(left)
            if merge.done:
                self._merges.remove(merge)
                self._swap(merge)

    def _next_merge(self) -> tuple[int, list[int]] | None:
        """(size class, positions in ``files``) of the oldest ``fanout`` files of the smallest
        class that has that many files not being merged (and no merge of its own in
        progress), within ``max_merge_rows``."""
        busy = {name for m in self._merges for _, name, _, _ in m.picked}
        merging = {m.size_class for m in self._merges}
        classes: dict[int, list[tuple[int, int]]] = {}     # class -> (position, rows)
        for i, (kind, name, _, _) in enumerate(self.files):
            if kind == "authors" and name not in busy:
                r = self._author_parts(name)[3]
                classes.setdefault(self._size_class(r), []).append((i, r))
        for k in sorted(classes):
            group = classes[k][:self.fanout]
            if k not in merging and len(group) == self.fanout \
                    and sum(r for _, r in group) <= self.max_merge_rows:
                return k, [i for i, _ in group]
        return None

    def _swap(self, merge: "_Merge") -> None:
        """A finished merge's file replaces its inputs, which are retired."""
        self.retire({f[1] for f in merge.picked})
        self.files.append(("authors", merge.name, merge.lo, merge.hi))
        with self._lock:
            self._unsynced.append(os.path.join(self.directory, merge.name))

    def abandon(self) -> None:
        """Drop the merges in progress (their temporary files go; their inputs stay)."""
        merges, self._merges = self._merges, []
        for merge in merges:
            merge.abort()

    def hand_over(self, to: "_Spill") -> None:
        """Move the merges in progress to ``to``, a spill over the same directory restored
        from this one's state (a reload): they go on where they are instead of starting
        over. A merge whose inputs ``to`` does not name is dropped."""
        named = {name for _, name, _, _ in to.files}
        merges, self._merges = self._merges, []
        for merge in merges:
            if to.directory == self.directory and all(f[1] in named for f in merge.picked) \
                    and merge.seq <= to.seq:
                merge.spill = to
                to._merges.append(merge)
            else:
                merge.abort()


class _Merge:
    """One merge of authors files into a new one, a chunk at a time: the inputs' author
    range is cut at sampled authors into chunks of about ``chunk_rows`` rows; each chunk's
    slices of the inputs are merged pairwise by the core and written as one record batch of
    the new file (under a temporary name until the last)."""

    def __init__(self, spill: _Spill, picked: list[tuple[str, str, int, int]], seq: int,
                 size_class: int):
        self.spill, self.picked, self.seq, self.size_class = spill, picked, seq, size_class
        self.name = f"authors-{seq:06d}.arrow"
        self.lo, self.hi = min(f[2] for f in picked), max(f[3] for f in picked)
        self.parts = [p for _, name, _, _ in picked for p in spill._author_parts(name)[0]]
        total = self.total = sum(len(a) for a, _ in self.parts)
        chunks = -(-total // spill.chunk_rows)
        cuts = np.zeros(0, np.int64)
        if chunks > 1:
            step = max(1, spill.chunk_rows // 64)
            sample = np.sort(np.concatenate([a[::step] for a, _ in self.parts]))
            cuts = np.unique(sample[np.arange(1, chunks) * len(sample) // chunks])
        self.chunks = len(cuts) + 1
        self.bounds = [np.r_[0, np.searchsorted(a, cuts, "left"), len(a)] for a, _ in self.parts]
        self.next = 0
        self.done = False
        self.path = os.path.join(spill.directory, self.name)
        self.tmp = os.path.join(spill.directory, f".{self.name}.tmp")
        self._file = self._writer = None

    def step(self, budget: int) -> int:
        """Merge and write chunks until ``budget`` rows are done (one chunk at least);
        returns the rows done. Finishing renames the file into place."""
        rows = 0
        try:
            if self._writer is None:
                # (an Arrow file: one left open by a dropped merge closes without a warning)
                self._file = pa.OSFile(self.tmp, "wb")
                self._writer = pa.ipc.new_file(self._file, _AUTHORS)
            while self.next < self.chunks and (rows == 0 or rows < budget):
                j = self.next
                runs = [(a[c[j]:c[j + 1]], t[c[j]:c[j + 1]])
                        for (a, t), c in zip(self.parts, self.bounds) if c[j + 1] > c[j]]
                if runs:
                    author, tid = _merged_runs_of_pairs(runs)
                    self._writer.write_batch(_author_batch(author, tid))
                    rows += sum(len(a) for a, _ in runs)
                self.next += 1                      # (only once the chunk is written)
            if self.next >= self.chunks:
                self._writer.close()
                self._file.close()
                self._writer = self._file = None
                os.replace(self.tmp, self.path)
                self.done = True
        except BaseException as e:
            # any failure (a full disk, MemoryError, Ctrl-C) drops the merge whole: a chunk
            # half done is never skipped; the inputs stay, and the merge starts over later
            self.abort()
            if self in self.spill._merges:
                self.spill._merges.remove(self)
            if isinstance(e, (OSError, pa.ArrowException)):
                raise SinkError(f"{self.path}: write failed: "
                                f"{getattr(e, 'strerror', None) or e}") from None
            raise
        return max(rows, 1)

    def abort(self) -> None:
        for x in (self._writer, self._file):
            try:
                if x is not None:
                    x.close()
            except (OSError, pa.ArrowException):
                pass
        self._writer = self._file = None
        _unlink(self.tmp)


def _ranges(run: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where ``keys`` occur in the sorted ``run``: (positions in run, the key's index for
    each), every occurrence."""
    lo = np.searchsorted(run, keys, "left")
    hi = np.searchsorted(run, keys, "right")
    n = hi - lo
    total = int(n.sum())
    if not total:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _spans(lo, n, total), np.repeat(np.arange(len(keys)), n)


def _spans(start: np.ndarray, count: np.ndarray, total: int) -> np.ndarray:
    """The positions ``start[i] .. start[i] + count[i] - 1`` of every span, one after another
    (``total``: the counts' sum)."""
    return np.repeat(start - (np.cumsum(count) - count), count) + np.arange(total)


def _csr(tid: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tweet id, seat code) pairs sorted by id as a block's (ids, off, codes)."""
    cut = _runs_of(tid)
    return tid[cut[:-1]], cut.astype(np.int64), codes


def _bounds(blocks) -> tuple[np.ndarray, np.ndarray]:
    """The blocks' first ids and last ids (what :func:`_block_hits` asks about)."""
    return (np.array([b.ids[0] for b in blocks], np.int64),
            np.array([b.ids[-1] for b in blocks], np.int64))


def _pair_ids(blk) -> np.ndarray:
    """A block's id for each of its (seat, id) pairs, aligned with its codes."""
    return np.repeat(blk.ids, np.diff(blk.off))


def _mergeable(older: int, newer: int, cap: int) -> bool:
    """Whether a run (or block) of ``newer`` items merges with the one before, of ``older``:
    while that is not twice as large and the two hold at most ``cap`` (runs under ``cap`` grow
    geometrically, an item copied log2(cap) times at most; larger ones stay as they came)."""
    return older <= 2 * newer and older + newer <= cap


class _Block(NamedTuple):
    """What one batch (or a few small ones, merged) delivered in one slot of tweet time:
    ``ids`` ascending (an id may repeat: a batch held it twice, or merged blocks both did;
    lookups find every occurrence) and the seats of ``ids[k]``, ``codes[off[k]:off[k + 1]]``
    (codes of the owner's seat names; a CSR index). A batch of 1M tweets delivered to 200
    seats, 7M (seat, id) pairs, holds 8 bytes an id and 2 a pair (~30 MB): per seat sorted
    runs held 8 a pair (56 MB) and had to be merged as batches came."""
    slot: int
    ids: np.ndarray
    off: np.ndarray
    codes: np.ndarray
    src: str | None = None      # the spill's ``held`` file holding it (a checkpoint named it)
    part: int = -1              # and its record batch there


def _merged_blocks(a: _Block, b: _Block) -> _Block:
    """Two blocks of one slot as one (ids ascending, an id in both kept twice, each with its
    own seats): side by side when one lies wholly before the other, else by a stable sort."""
    if b.ids[-1] < a.ids[0]:
        a, b = b, a
    codes = np.concatenate([a.codes, b.codes])
    if a.ids[-1] < b.ids[0]:
        return _Block(a.slot, np.concatenate([a.ids, b.ids]),
                      np.concatenate([a.off, b.off[1:] + a.off[-1]]), codes)
    ids = np.concatenate([a.ids, b.ids])
    o = np.argsort(ids, kind="stable")
    start = np.concatenate([a.off[:-1], b.off[:-1] + a.off[-1]])[o]
    count = np.concatenate([np.diff(a.off), np.diff(b.off)])[o]
    return _Block(a.slot, ids[o], np.r_[0, np.cumsum(count)].astype(np.int64),
                  codes[_spans(start, count, len(codes))])


def _block_hits(blocks, lo: np.ndarray, hi: np.ndarray, q: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Where the ascending ids ``q`` were delivered in ``blocks`` (``lo``/``hi`` their first
    and last ids): (seat code, index in ``q``) for every
    seat an id went to, in any order. Each block is asked about the slice of ``q`` within
    its range only."""
    a = np.searchsorted(q, lo, "left")
    b = np.searchsorted(q, hi, "right")
    seats, at = [], []
    for i in np.flatnonzero(b > a).tolist():
        blk = blocks[i]
        ids, off, codes = blk.ids, blk.off, blk.codes
        pos, which = _ranges(ids, q[a[i]:b[i]])
        if not len(pos):
            continue
        start = off[pos]
        count = off[pos + 1] - start
        total = int(count.sum())
        if not total:
            continue
        seats.append(codes[_spans(start, count, total)])
        at.append(np.repeat(which + a[i], count))
    if not seats:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(seats), np.concatenate(at)


class Entitlements:
    """Applies a PlanSet batch by batch; keeps the cap counters and what was delivered to whom
    (to forward later deletes and user events to exactly those clients).

    With ``spill_dir``, what was delivered holds in memory for ``window_hours`` of tweet time
    (the ids are snowflakes: their time is in them) behind the newest batch; older ids go,
    a quarter of the window at a time, to immutable files there (see :class:`_Spill`), which
    forwarding reads through memory maps. Memory is then about the window's deliveries, not
    the run's. Without it everything stays in memory."""

    def __init__(self, plans: PlanSet, compliance: ComplianceState | None = None,
                 source: str | None = None, *, spill_dir: str | None = None,
                 window_hours: float = DEFAULT_WINDOW_HOURS):
        if not window_hours > 0:
            raise ValueError("window_hours must be positive")
        self.plans = plans
        self.compliance = compliance or ComplianceState()
        self.source = source
        self._day_counts: dict[tuple[str, int], int] = {}
        self._group_counts: dict[tuple[str, int], int] = {}
        # what was delivered to whom (to forward deletes): a block per batch and slot of
        # tweet time (a quarter of the window, when there is a spill; else one slot), each
        # the distinct ids delivered to any seat and, for each, the seats' codes (see
        # _Block); nothing is merged as batches come, a lookup searches the blocks whose id
        # range holds an id
        self._blocks: list[_Block] = []
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None    # the blocks' lo, hi
        self._seat_code: dict[str, int] = {}
        self._seat_names: list[str] = []
        # authors delivered per client, as checkpoints before the author index kept them
        # (loaded, consulted and saved again; nothing new is added)
        self._delivered_users: dict[str, list[np.ndarray]] = {}
        # who wrote what was delivered: (author, tweet id) of every row delivered to any
        # seat, as runs sorted by author then id (see _push_run); a batch's pairs wait
        # unsorted until a user event asks, or a few batches at most
        self._authors: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_authors: list[tuple[np.ndarray, np.ndarray]] = []
        # runs a state named: id of the run's author array -> (a weak reference to it, its
        # held_authors file, record batch); the reference tells a run from a later one that
        # happens to get the same id
        self._author_held: dict[int, tuple] = {}
        self._constants: tuple[int, pa.Array] | None = None
        self._arena = _Arena()
        self.batch = 0
        self._spill = _Spill(spill_dir) if spill_dir is not None else None
        self.window_ms = int(window_hours * 3_600_000)
        self._slot_ms = max(self.window_ms // 4, 1) if spill_dir is not None else None
        self._newest_ms: int | None = None      # the newest batch's median id time
        self._evicted_ms: int | None = None     # ids older than this are in the spill

    def _constant(self, value: int, size: int) -> pa.Array:
        """An int64 column of ``size`` copies of ``value`` (the plan version of the ledger):
        the last one made is kept and sliced while it is long enough."""
        got = self._constants
        if got is None or got[0] != value or len(got[1]) < size:
            got = self._constants = (value, _filled(size, value))
        return got[1].slice(0, size)

    def replace_plans(self, plans: PlanSet) -> None:
        """A new configuration takes effect at the next batch."""
        self.plans = plans

    def apply(self, tweets: pa.Table, matches: Mapping[str, tuple[np.ndarray, pa.Array]],
              source: str | None = None) -> BatchResult:
        """``matches``: client -> (matched row indices, matching_rules list array aligned with
        them). Returns what each client gets and the audit of the batch.

        All seats' matches are handled together, as one array of (seat, row) pairs in seat
        order: each row's rank in tweet-id order is computed once (a stable argsort of the
        ids), and a helper of the core lays every seat's pairs out by rank with, per pair, its
        row's rank, its position among the seat's matches, its id and its row's flags byte
        (the batch-wide reason, withheld somewhere, scrub_geo). Decisions are then numpy passes over
        all pairs; a second helper moves the delivered pairs to the front and copies the denied
        ones out. What a seat gets (rows, rules, scrub mask, ledger and remembered ids) are
        slices of those arrays."""
        self.batch += 1
        self._arena.next_batch()
        source = source or self.source
        if source is None:
            raise ValueError("apply(): no source named")
        n = tweets.num_rows
        idcol = tweets.column("id")
        # (a batch without null ids, the usual one, is not converted bit by bit)
        id_null = pc.is_null(idcol).to_numpy(zero_copy_only=False) if idcol.null_count \
            else np.zeros(n, bool)
        ids = pc.fill_null(idcol, -1).to_numpy(zero_copy_only=False)
        authors = pc.fill_null(tweets.column("author_id"), -1).to_numpy(zero_copy_only=False)
        screen = _Screen()          # each id column read and hashed once for all id sets
        deny = self.compliance.deny(tweets, screen)
        scrub = self.compliance.scrub_geo_mask(tweets, screen)
        withheld_pairs = self.compliance.withheld_pairs(tweets, screen)
        # per row, one byte: the first batch-wide reason (0: none; _MAYBE_WITHHELD: none, but
        # the row is withheld somewhere) and scrub_geo
        flags = np.zeros(n, np.uint8)
        any_withheld = len(withheld_pairs[0]) > 0
        if any_withheld:
            flags[withheld_pairs[0]] = _MAYBE_WITHHELD
        for k in range(len(_GLOBAL_REASONS), 0, -1):     # the earlier reason wins
            name = _GLOBAL_REASONS[k - 1]
            m = id_null if name == "null_id" else deny[name]
            if m.any():
                flags[m] = k
        if scrub.any():
            flags[scrub] |= _SCRUB_BIT
        # rows already in id order (a stream usually is): nothing to sort
        in_id_order = n < 2 or bool((ids[1:] >= ids[:-1]).all())
        if in_id_order:
            rank = np.arange(n, dtype=np.int64)     # nothing to sort
            perm = None                             # the row is the rank
            # rows sharing an id: a seat whose rows do not ascend is put in match order
            # below, as in a batch out of id order
            dup_ids = n > 1 and bool((ids[1:] == ids[:-1]).any())
        else:
            # the rows in id order (stably) and each row's rank: rank[perm] = 0..n-1
            perm = self._arena.empty(n, np.int64)
            rank = self._arena.empty(n, np.int64)
            dup = _core.id_order(ids, perm, rank)
            if dup < 0:         # ids too far apart to share a 64-bit key with the row
                perm = np.argsort(ids, kind="stable")
                dup = _core.id_ranks(perm, ids, rank)
            dup_ids = bool(dup)

        # ---- every seat's pairs, concatenated in seat order, each seat's in id order
        seats = sorted(matches.items())
        plans = [self.plans.plan(client, source) for client, _ in seats]
        arrays = [np.ascontiguousarray(rows, np.int64) for _, (rows, _) in seats]
        asc = np.empty(len(arrays), np.uint8)
        _core.strictly_ascending(arrays, asc)
        ascending = asc.view(bool).tolist()
        sizes = np.array([len(r) for r in arrays], np.int64)
        starts = np.zeros(len(seats) + 1, np.int64)
        np.cumsum(sizes, out=starts[1:])
        total = int(starts[-1])
        # for each pair: its row's rank, its position among its seat's matches (``order``:
        # its rules stay in match order), its id and its row's flags byte
        ranks_p = self._arena.empty(total, np.int64)
        order = self._arena.empty(total, np.int64)
        ids_p = self._arena.empty(total, np.int64)
        f = self._arena.empty(total, np.uint8)
        # each seat's pairs by rank in the id order (a batch in id order: the row is the rank;
        # a seat whose ranks ascend is copied as it is), ties (a row matched twice) by match
        # position
        _core.seat_pairs_by_rank(arrays, asc, rank, ids, flags,
                                 ranks_p, order, ids_p, f,
                                 self._arena.empty(14 * n + 64, np.uint8))

        def rows_at(ranks):
            """The rows of these ranks (a seat's ranks ascend: a sequential read of perm;
            mode="clip": the ranks are in range)."""
            if perm is None:
                return ranks
            return np.take(perm, ranks, mode="clip")

        if dup_ids:
            # repeated ids and rows not ascending: ties go by match position, not by row
            for s in [s for s, a in enumerate(ascending) if not a]:
                lo, hi, r = starts[s], starts[s + 1], arrays[s]
                o = np.argsort(ids[r], kind="stable")
                ranks_p[lo:hi] = rank[r[o]]
                order[lo:hi] = o
                ids_p[lo:hi] = ids[r[o]]
                f[lo:hi] = flags[r[o]]
        code = np.bitwise_and(f, _REASON_BITS,
                              out=self._arena.empty(total, np.uint8)).view(np.int8)
        # the seat's extra reason (its own denial, or caps) is code 8
        extra: list[tuple[str, str, str, str] | None] = [None] * len(seats)
        for s, plan in enumerate(plans):
            if not plan.allowed:
                d = plan.denials[0]
                extra[s] = (d.reason, d.policy, d.path_text, d.detail)
                code[starts[s]:starts[s + 1]] = _EXTRA_CODE
        if any_withheld:
            # withheld somewhere, nothing else against it, an allowed seat: its countries say
            cand = np.flatnonzero(code == _MAYBE_WITHHELD)
            if len(cand):
                cut = np.searchsorted(cand, starts)       # seat s's: cand[cut[s]:cut[s+1]]
                cache: dict[tuple, np.ndarray] = {}
                for s in np.flatnonzero(np.diff(cut)).tolist():
                    key_c = tuple(plans[s].delivery_countries)
                    if key_c not in cache:
                        cache[key_c] = self.compliance.withheld_for(withheld_pairs, n, key_c)
                    c = cand[cut[s]:cut[s + 1]]
                    code[c] = np.where(cache[key_c][rows_at(ranks_p[c])], _WITHHELD_CODE, 0)
        days = None
        for s, plan in enumerate(plans):
            if plan.allowed and (plan.objects_per_day is not None
                                 or plan.group_ids_per_30d is not None):
                if days is None:
                    days = _days(tweets)
                seg = code[starts[s]:starts[s + 1]]

                def mark(mask, r, pol, pth="", det="", seg=seg, s=s):
                    mk = mask & (seg == 0)
                    if mk.any():
                        extra[s] = (r, pol, pth, det)
                        seg[mk] = _EXTRA_CODE
                self._caps(plan, rows_at(ranks_p[starts[s]:starts[s + 1]]), days, seg, mark)

        # ---- what is delivered: those pairs move to the front (in place, seat order kept);
        # the denied ones' positions, orders, ids and codes are copied out
        n_bad = int(np.count_nonzero(code))
        n_kept = total - n_bad
        bad = self._arena.empty(n_bad, np.int64)
        bad_order = self._arena.empty(n_bad, np.int64)
        bad_ids = self._arena.empty(n_bad, np.int64)
        bad_code = self._arena.empty(n_bad, np.int8)
        scrubbed = self._arena.empty(n_kept, bool)
        hit = self._arena.empty(n, bool)    # the ranks delivered to any seat (author index)
        hit.fill(False)
        # (and, out of id order, each delivered pair's rank replaced by its row: no take)
        _core.split_pairs(code, ranks_p, order, ids_p, f, _SCRUB_BIT, scrubbed.view(np.uint8),
                          bad, bad_order, bad_ids, bad_code, hit.view(np.uint8), perm)
        bad_at = np.searchsorted(bad, starts)          # seat s's denied pairs: bad[bad_at[s]:bad_at[s+1]]
        kept_at = starts - bad_at                      # and its delivered ones
        rows_k, order_k = ranks_p[:n_kept], order[:n_kept]     # the delivered rows
        got = ids_p[:n_kept]                           # delivered ids, each seat's in id order
        batch_col = _filled(max(n_kept, len(bad)), self.batch, self._arena.empty)
        delivered: dict[str, Delivery] = {}
        audit = []
        denial_parts = []
        names = []
        for s, (client, (_, rules)) in enumerate(seats):
            lo, hi = int(starts[s]), int(starts[s + 1])
            ka, kb = int(kept_at[s]), int(kept_at[s + 1])
            names.append(client)
            delivered[client] = Delivery(tweets, rows_k[ka:kb], plans[s].columns, rules,
                                         order_k[ka:kb], scrubbed[ka:kb])
            base = (self.batch, client, source, self.plans.version, self.plans.hash)
            audit.append(base + ("matched", None, None, hi - lo))
            audit.append(base + ("delivered", None, None, kb - ka))
            ba, bb = int(bad_at[s]), int(bad_at[s + 1])
            if bb > ba:
                counts = np.bincount(bad_code[ba:bb], minlength=_EXTRA_CODE + 1)
                by_reason: dict = {}
                for k in range(1, _EXTRA_CODE + 1):
                    if counts[k]:
                        r, pol = (_FIXED[k] if k < _EXTRA_CODE else extra[s])[:2]
                        by_reason[(r, pol)] = by_reason.get((r, pol), 0) + int(counts[k])
                for (r, pol), cnt in by_reason.items():
                    audit.append(base + ("denied", r, pol, cnt))
                denial_parts.append((rules, bad_order[ba:bb]))
        new_pairs = 0
        if n_kept:
            # (author, id) of each row delivered to any seat, once, in id order: the author
            # index (gathered by the core in one pass, the rows fetched ahead)
            new_pairs = int(np.count_nonzero(hit))
            pend = np.empty(new_pairs, np.int64), np.empty(new_pairs, np.int64)
            _core.gather_marked(hit.view(np.uint8), perm, np.ascontiguousarray(authors, np.int64),
                                ids, *pend)
            self._pending_authors.append(pend)
            if len(self._pending_authors) > _PENDING_BATCHES:
                self._author_runs()
            self._remember_batch(pend[1], hit, names, kept_at, rows_k,
                                 None if perm is None else rank)
        if self._spill is not None and n:
            # the batch's time: its median id's (a stray id far ahead cannot move it)
            mid = ids[n // 2] if perm is None else ids[perm[n // 2]]
            self._maybe_spill(int(mid) >> _SNOWFLAKE_SHIFT, new_pairs)

        denials = DENIALS.empty_table()
        if len(bad):
            seat_bad = np.diff(bad_at)
            # labels: the fixed reasons, then each seat's extra one
            labels = list(_FIXED) + [e or _FIXED[0] for e in extra]
            lab = self._arena.empty(len(bad), np.int64)
            lab[:] = bad_code
            for s in range(len(seats)):
                # only a seat with an extra reason has pairs of that code
                if extra[s] is not None and bad_at[s + 1] > bad_at[s]:
                    seg = lab[bad_at[s]:bad_at[s + 1]]
                    seg[seg == _EXTRA_CODE] = len(_FIXED) + s
            used = (np.bincount(lab, minlength=len(labels)) > 0).tolist()
            denials = pa.table({
                "batch": batch_col.slice(0, len(bad)),
                "client": _repeat_names(names, seat_bad, self._arena.empty),
                "tweet_id": pa.array(bad_ids, pa.int64()),
                "reason": _label_column(labels, 0, lab, used),
                "policy": _label_column(labels, 1, lab, used),
                "rules": rule_id_lists(denial_parts),
                "path": _label_column(labels, 2, lab, used),
                "detail": _label_column(labels, 3, lab, used),
            }, schema=DENIALS)
        ledger = pa.table({
            "batch": batch_col.slice(0, n_kept),
            "client": _repeat_names(names, np.diff(kept_at), self._arena.empty),
            "tweet_id": pa.array(got, pa.int64()),
            "plan_version": self._constant(self.plans.version, n_kept),
        }, schema=LEDGER)
        return BatchResult(
            delivered,
            pa.Table.from_pylist([dict(zip(AUDIT.names, a)) for a in audit], schema=AUDIT),
            denials, ledger)

    # ------------------------------------------------------------------ checkpoints
    def unsynced_files(self) -> list[str]:
        """The spill files not yet known durable: a caller that serialised the state with
        ``sync=False`` makes them durable before it stores that state, then calls
        :meth:`mark_synced` (until then they stay listed, so a failed commit loses none)."""
        return self._spill.unsynced() if self._spill is not None else []

    def mark_synced(self, paths) -> None:
        if self._spill is not None:
            self._spill.mark_synced(paths)

    def retired_files(self) -> list[str]:
        """The spill files merged away (or held files whose blocks all left memory) before the
        last :meth:`state_to_bytes`, which that state no longer names (earlier states may):
        once the caller has made that state durable, :meth:`remove_retired` deletes them. (A
        state also lists them, so a resumed run deletes what a crash left.)"""
        return self._spill.releasable() if self._spill is not None else []

    def remove_retired(self, paths) -> None:
        if self._spill is not None:
            self._spill.release(paths)

    def state_to_bytes(self, sync: bool = True) -> bytes:
        """Batch counter, cap counters, the ids delivered per client (for forwarding
        deletes) and the author index (kind ``author``: key the author, value the tweet id;
        for forwarding user events), as Arrow IPC: with :meth:`load_state` a resumed run
        carries on exactly.
        One row per counter and per (client, id) delivered (kind ``delivered``: in no
        particular order); ``kind`` and ``name`` are dictionary columns (millions of ids: no
        string per row)."""
        rows = [("day", k[0], k[1], v) for k, v in sorted(self._day_counts.items())]
        rows += [("group", k[0], k[1], v) for k, v in sorted(self._group_counts.items())]
        kinds = ["day", "group", "delivered", "delivered_user", "author", "spilled_delivered",
                 "spilled_authors", "retired_file", "spilled_held", "held_block",
                 "spilled_held_authors", "held_authors_run"]
        if self._spill is not None:
            # the delivery blocks go to files once: those no state has named yet are written
            # to one ``held`` file, and the state names each block's file and record batch
            # (a checkpoint costs the deliveries since the last, not the whole window); a
            # held file none of whose blocks is still in memory is retired
            new = [i for i, b in enumerate(self._blocks) if b.src is None]
            if new:
                name = self._spill.write_blocks([self._blocks[i] for i in new],
                                                self._seat_names, kind="held")
                for part, i in enumerate(new):
                    self._blocks[i] = self._blocks[i]._replace(src=name, part=part)
            # the author index's runs likewise, to ``held_authors`` files
            runs = self._author_runs()
            held = self._author_held
            new = [(a, t) for a, t in runs if id(a) not in held or held[id(a)][0]() is not a]
            if new:
                name = self._spill.write_runs("held_authors", new)
                for part, (a, _) in enumerate(new):
                    held[id(a)] = (weakref.ref(a), name, part)
            held = self._author_held = {id(a): held[id(a)] for a, _ in runs}
            live = {b.src for b in self._blocks} | {h[1] for h in held.values()}
            self._spill.retire([n for k, n, _, _ in self._spill.files
                                if k in ("held", "held_authors") and n not in live])
            rows += [("held_block", b.src, b.part, 0) for b in self._blocks]
            rows += [("held_authors_run",) + held[id(a)][1:] + (0,) for a, _ in runs]
            # the spill's files (name, lo, hi), made durable before this checkpoint names them
            # (or, ``sync=False``, by the caller: see unsynced_files); and those merged away,
            # to delete once this state is durable
            if sync:
                self._spill.sync()
            rows += [("spilled_" + kind, name, lo, hi) for kind, name, lo, hi in self._spill.files]
            rows += [("retired_file", name, 0, 0) for name in self._spill.snapshot()]
        names: dict[str, int] = {}
        kind_idx = [kinds.index(r[0]) for r in rows]
        name_idx = [names.setdefault(r[1], len(names)) for r in rows]
        keys = [np.array([r[2] for r in rows], np.int64)]
        vals = [np.array([r[3] for r in rows], np.int64)]
        kind_parts = [np.array(kind_idx, np.int8)]
        name_parts = [np.array(name_idx, np.int32)]
        if self._blocks and self._spill is None:
            # a row per (seat, id) of every block held, as the blocks hold them (no sort:
            # load_state sorts them into a block again)
            name_of = np.array([names.setdefault(c, len(names)) for c in self._seat_names],
                               np.int32)
            for b in self._blocks:
                keys.append(_pair_ids(b))
                vals.append(np.zeros(len(b.codes), np.int64))
                kind_parts.append(np.full(len(b.codes), kinds.index("delivered"), np.int8))
                name_parts.append(name_of[b.codes])
        for client in sorted(self._delivered_users):
            got = _merged(self._delivered_users[client])
            keys.append(got)
            vals.append(np.zeros(len(got), np.int64))
            kind_parts.append(np.full(len(got), kinds.index("delivered_user"), np.int8))
            name_parts.append(np.full(len(got), names.setdefault(client, len(names)), np.int32))
        # without a spill, the author index: key the author, value the tweet id (its runs one
        # after another: load_state sorts them into one)
        for author, tid in (self._author_runs() if self._spill is None else ()):
            keys.append(author)
            vals.append(tid)
            kind_parts.append(np.full(len(author), kinds.index("author"), np.int8))
            name_parts.append(np.full(len(author), names.setdefault("", len(names)), np.int32))
        key = np.concatenate(keys)
        value = np.concatenate(vals)
        table = pa.table({
            "kind": pa.DictionaryArray.from_arrays(np.concatenate(kind_parts),
                                                   pa.array(kinds, pa.string())),
            "name": pa.DictionaryArray.from_arrays(np.concatenate(name_parts),
                                                   pa.array(list(names), pa.string())),
            "key": pa.array(key, pa.int64()),
            "value": pa.array(value, pa.int64()),
        }, metadata={"batch": str(self.batch),
                     "spill": json.dumps({"seq": self._spill.seq if self._spill else 0,
                                          "newest_ms": self._newest_ms,
                                          "evicted_ms": self._evicted_ms})})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return sink.getvalue().to_pybytes()

    def load_state(self, data: bytes, *, clean: bool = False) -> None:
        """Carry on from a state of :meth:`state_to_bytes`. ``clean``: the state is the
        durable one a run resumes from and nothing else uses the spill directory, so spill
        files it does not name are removed (merged away before it, written after it, a
        merge's unfinished file); only the pipeline's resume says so."""
        try:
            table = pa.ipc.open_stream(data).read_all()
            kind_codes, kinds = _codes(table.column("kind"))
            name_codes, names = _codes(table.column("name"))
            key = table.column("key").to_numpy()
            value = table.column("value").to_numpy()
        except (pa.ArrowInvalid, OSError, KeyError) as e:
            raise StateError(f"entitlement state is corrupt: {e}") from None
        meta = table.schema.metadata or {}
        self.batch = int(meta.get(b"batch", b"0"))
        self._day_counts, self._group_counts = {}, {}
        self._blocks, self._bounds, self._delivered_users = [], None, {}
        self._authors, self._pending_authors, self._author_held = [], [], {}
        code = {k: i for i, k in enumerate(kinds)}
        for label, counts in (("day", self._day_counts), ("group", self._group_counts)):
            for i in np.flatnonzero(kind_codes == code.get(label, -1)).tolist():
                counts[(names[name_codes[i]], int(key[i]))] = int(value[i])
        sel = np.flatnonzero(kind_codes == code.get("delivered", -1))
        if len(sel):
            # the (client, id) rows as one block (split by slot)
            seat = np.full(len(names), -1, np.int64)
            for k in np.unique(name_codes[sel]).tolist():
                seat[k] = self._code(names[k])
            self._add_pairs(key[sel], seat[name_codes[sel]])
        sel = np.flatnonzero(kind_codes == code.get("delivered_user", -1))
        if len(sel):
            who, ids = name_codes[sel], key[sel]
            order = np.argsort(who, kind="stable")
            who, ids = who[order], ids[order]
            cuts = np.flatnonzero(who[1:] != who[:-1]) + 1
            for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(who)].tolist()):
                self._delivered_users[names[who[lo]]] = [np.sort(ids[lo:hi])]
        sel = np.flatnonzero(kind_codes == code.get("author", -1))
        if len(sel):
            self._authors = [_sorted_pairs(key[sel], value[sel])]
        spill = json.loads(meta.get(b"spill", b"{}"))
        self._newest_ms, self._evicted_ms = spill.get("newest_ms"), spill.get("evicted_ms")
        spilled = [i for i, k in enumerate(kinds) if k.startswith("spilled_")]
        files = [(kinds[kind_codes[i]][len("spilled_"):], names[name_codes[i]], int(key[i]),
                  int(value[i]))
                 for i in np.flatnonzero(np.isin(kind_codes, spilled)).tolist()]
        retired = [names[name_codes[i]]
                   for i in np.flatnonzero(kind_codes == code.get("retired_file", -1)).tolist()]
        if self._spill is not None:
            self._spill.restore(files, spill.get("seq", 0), retired, clean=clean)
            # the blocks the state names, read back from their held files (memory-mapped)
            code_of: dict[str, np.ndarray | None] = {}
            for i in np.flatnonzero(kind_codes == code.get("held_block", -1)).tolist():
                src, part = names[name_codes[i]], int(key[i])
                blocks, _, _, seat_names = self._spill._columns(src)
                if not 0 <= part < len(blocks):
                    raise StateError(f"entitlement state names block {part} of {src}, "
                                     f"which holds {len(blocks)}")
                b = blocks[part]
                if src not in code_of:
                    # the file's seat codes as this run's (None when they agree: the codes
                    # then stay mapped, not copied)
                    got = np.array([self._code(c) for c in seat_names], np.int64)
                    code_of[src] = got if (got != np.arange(len(got))).any() else None
                codes = b.codes if code_of[src] is None \
                    else code_of[src][b.codes].astype(self._code_dtype())
                # the slot from the ids (a block lies in one slot), not the state's: a run
                # resumed with another window has slots of another size
                self._blocks.append(_Block(self._slot_of(b.ids[-1]), b.ids, b.off, codes, src,
                                           part))
            for i in np.flatnonzero(kind_codes == code.get("held_authors_run", -1)).tolist():
                src, part = names[name_codes[i]], int(key[i])
                parts = self._spill._author_parts(src)[0]
                if not 0 <= part < len(parts):
                    raise StateError(f"entitlement state names run {part} of {src}, "
                                     f"which holds {len(parts)}")
                self._authors.append(parts[part])
                self._author_held[id(parts[part][0])] = (weakref.ref(parts[part][0]), src, part)
        elif files:
            raise StateError("the entitlement state relies on spilled delivery files "
                             f"({files[0][1]}, ...): give Entitlements the spill_dir they are in")

    # ------------------------------------------------------------------ deletes to forward
    def _maybe_spill(self, batch_ms: int, pairs: int = 0) -> None:
        """Moves what was delivered more than the window before the newest batch to the spill,
        a quarter of the window at a time (so a batch rarely pays for it)."""
        if self._newest_ms is None or batch_ms > self._newest_ms:
            self._newest_ms = batch_ms
        before = (self._newest_ms - self.window_ms) // self._slot_ms   # slots wholly older
        if self._evicted_ms is None or before * self._slot_ms > self._evicted_ms:
            self._spill_slots(before)
            self._evicted_ms = before * self._slot_ms
        # authors files are merged a few chunks a batch: about 4x the batch's delivered
        # (author, id) pairs (a pair is rewritten once per size class), one chunk at least
        self._spill.compact(max(self._spill.chunk_rows, 4 * pairs))

    def close(self) -> None:
        """This Entitlements is done with (the run ended): the merges of spill files in
        progress are dropped, their temporary files removed (the files they read stay
        named; the next run starts them over)."""
        if self._spill is not None:
            self._spill.abandon()

    def hand_over(self, new: "Entitlements") -> None:
        """A reload: ``new`` carries on from this one's state (``load_state``) over the same
        spill directory; the merges in progress move to it and go on where they are (else
        they would start over at every reload and a long one might never finish). This
        one is then closed."""
        if self._spill is not None and new._spill is not None:
            self._spill.hand_over(new._spill)
        self.close()

    def _spill_slots(self, before: int) -> None:
        """The delivery blocks of slots before ``before`` (and the author pairs of ids as old)
        out of memory into one file each of the spill (see :class:`_Spill`): the blocks as
        they are, (author, id) sorted by author. Late tweets (slots spilled before, delivered
        since) go to a file of their own: in with the rest they would stretch its id range
        over the past, and a file is searched by every id in its range."""
        prev = self._evicted_ms
        groups: dict[bool, list[_Block]] = {False: [], True: []}
        keep = []
        for blk in self._blocks:
            if blk.slot < before:
                groups[prev is not None and blk.slot * self._slot_ms < prev].append(blk)
            else:
                keep.append(blk)
        self._blocks, self._bounds = keep, None
        for blocks in groups.values():
            if blocks:
                self._spill.write_blocks(blocks, self._seat_names)
        limit = max(before * self._slot_ms, 0) << _SNOWFLAKE_SHIFT
        old_a, old_t, keep_a = [], [], []
        for author, tid in self._author_runs():
            m = tid < limit
            if not m.any():
                keep_a.append((author, tid))
                continue
            # (a row without an author, filled -1, is never asked for: it is not spilled)
            old = m & (author != -1)
            old_a.append(author[old])
            old_t.append(tid[old])
            if not m.all():
                keep_a.append((author[~m], tid[~m]))
        self._authors = keep_a
        runs = [(a, t) for a, t in zip(old_a, old_t) if len(a)]
        if runs:
            # each run's old pairs are still sorted: a record batch each, as they are (the
            # spill's merges of authors files, a few chunks a batch, put them in one order;
            # merging them here cost the batch that spills ~0.5 s at 1M tweets a batch)
            self._spill.write_runs("authors", runs)

    def _code(self, client: str) -> int:
        """The client's seat code in the delivery blocks (given on first sight, kept)."""
        got = self._seat_code.get(client)
        if got is None:
            got = self._seat_code[client] = len(self._seat_names)
            self._seat_names.append(client)
        return got

    def _slot_of(self, tid) -> int:
        """The memory slot of tweet id ``tid`` (with a spill: without one, slots are not cut)."""
        return (int(tid) >> _SNOWFLAKE_SHIFT) // self._slot_ms

    def _code_dtype(self):
        """Seat codes take two bytes while there are at most 65536 seats, else four."""
        return np.uint16 if len(self._seat_names) <= 0x10000 else np.int32

    def _add_block(self, ids: np.ndarray, off: np.ndarray, codes: np.ndarray) -> None:
        """Keep a block (ascending ``ids``, the seats of ``ids[k]`` being ``codes[off[k]:
        off[k + 1]]``), cut where the ids cross into another slot (a slot leaves memory
        whole). A piece is a view of the caller's arrays, which it keeps alive; a late
        tweet's piece may sit in an old slot until the slot is spilled: all pieces but the
        largest are copied."""
        if not len(ids):
            return
        self._bounds = None
        if self._slot_ms is None:
            self._append_block(_Block(0, ids, off, codes))
            return
        first = self._slot_of(ids[0])
        if first == self._slot_of(ids[-1]):
            self._append_block(_Block(first, ids, off, codes))
            return
        slot = (ids >> _SNOWFLAKE_SHIFT) // self._slot_ms
        cut = _runs_of(slot)
        big = int(np.argmax(np.diff(cut)))
        for j, (a, b) in enumerate(zip(cut[:-1].tolist(), cut[1:].tolist())):
            o = off[a:b + 1]
            piece_ids, piece_codes = ids[a:b], codes[o[0]:o[-1]]
            if j != big:
                piece_ids, piece_codes = piece_ids.copy(), piece_codes.copy()
            self._append_block(_Block(int(slot[a]), piece_ids, o - o[0], piece_codes))

    def _append_block(self, blk: _Block) -> None:
        """Keep ``blk``, merged with the newest block of its slot (among the last few) as
        :func:`_mergeable` says, in seat pairs up to ``_BLOCK_PAIRS``: small batches' blocks
        grow geometrically, so there are O(history / _BLOCK_PAIRS) blocks to search; a
        1M-tweet batch's block (7M pairs at 200 seats) is kept as it came. (The newest block
        of the slot, not the newest: a late tweet's piece comes between a slot's blocks.)"""
        blocks = self._blocks
        while True:
            j = len(blocks) - 1
            lo = max(0, len(blocks) - _BLOCK_LOOKBACK)
            while j >= lo and blocks[j].slot != blk.slot:
                j -= 1
            if j < lo:
                break
            prev = blocks[j]
            if not _mergeable(len(prev.codes), len(blk.codes), _BLOCK_PAIRS):
                break
            del blocks[j]
            blk = _merged_blocks(prev, blk)
        blocks.append(blk)

    def _remember_batch(self, ids: np.ndarray, hit: np.ndarray, clients: list[str],
                        starts: np.ndarray, pairs: np.ndarray,
                        rank_of: np.ndarray | None = None) -> None:
        """A batch's block of the delivery memory: ``ids``, those of the ranks ``hit``
        marks (in rank order, the batch's id order), and for each, the seats it went to:
        ``clients[s]`` got ``pairs[starts[s]:starts[s + 1]]``, ranks (or rows, with their
        ranks in ``rank_of``). The core regroups the pairs by rank (each seat's ids kept as
        a sorted run and merged with the earlier ones as batches came cost ~3x as much, in
        bursts, and twice the memory)."""
        seat_codes = np.array([self._code(client) for client in clients], np.int64)
        off = np.empty(len(ids) + 1, np.int64)
        seat_of = np.empty(int(starts[-1]), self._code_dtype())
        _core.seats_by_rank(starts, seat_codes, pairs, rank_of, hit.view(np.uint8), off,
                            seat_of, self._arena.empty(len(hit) + 1, np.int64))
        self._add_block(ids, off, seat_of)

    def _add_pairs(self, tid: np.ndarray, seat: np.ndarray) -> None:
        """(tweet id, seat code) pairs in any order, repeats allowed, kept as a block."""
        if not len(tid):
            return
        tid, seat = _sorted_pairs(tid, seat)
        self._add_block(*_csr(tid, seat.astype(self._code_dtype())))

    def _remember(self, client: str, ids) -> None:
        """Record ``ids`` as delivered to ``client`` (for tests)."""
        ids = np.asarray(ids, np.int64)
        self._add_pairs(ids, np.full(len(ids), self._code(client), np.int64))

    def _held_ids(self) -> dict[str, np.ndarray]:
        """client -> the distinct ids delivered to it that memory holds, ascending (for
        inspection and tests: a sort of every pair held)."""
        if not self._blocks:
            return {}
        seat, tid = _sorted_pairs(np.concatenate([b.codes.astype(np.int64) for b in self._blocks]),
                                  np.concatenate([_pair_ids(b) for b in self._blocks]))
        cut = _runs_of(seat).tolist()
        return {self._seat_names[seat[a]]: tid[a:b] for a, b in zip(cut[:-1], cut[1:])}

    def _author_runs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The author index with the pending batches sorted in: runs of (author, tweet id)
        pairs sorted by author then id, a new run merged with the previous while that is not
        twice as long, up to ``_AUTHOR_RUN_PAIRS`` (a 1M-tweet batch's run is not merged)."""
        runs = self._authors
        for author, tid in self._pending_authors:
            if len(tid) > 1 and not (tid[1:] >= tid[:-1]).all():
                run = _sorted_pairs(author, tid)
            else:
                # a batch's ids ascend (its rows by rank): a stable sort by author is enough
                run = np.empty(len(author), np.int64), np.empty(len(author), np.int64)
                _core.sort_pairs_by_key(author, tid, *run,
                                        self._arena.empty(32 * len(author) + 16, np.uint8))
            if len(run[0]):
                _push_run(runs, run)
        self._pending_authors = []
        return runs

    def _tweets_by(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The delivered tweet ids (to any seat) whose author is one of ``users``, and for
        each, its author: two arrays."""
        users = np.unique(users)
        tids, whose = [], []
        if self._spill is not None:
            for tid, author in self._spill.tweets_by(users):
                tids.append(tid)
                whose.append(author)
        for author, tid in self._author_runs():
            at, _ = _ranges(author, users)
            if len(at):
                tids.append(tid[at])
                whose.append(author[at])
        if not tids:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(tids), np.concatenate(whose)

    def _was_delivered(self, client: str, ids: np.ndarray, store: dict) -> np.ndarray:
        hit = np.zeros(len(ids), bool)
        for run in store.get(client, ()):
            hit |= in_sorted(run, ids)
        return hit

    def _delivered_to(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """client -> where ``ids`` were delivered to it (memory and spill). The ids are
        sorted once; a block is asked only about the ids within its range, in ascending
        order (a binary search of a large array per id, in random order, was a cache miss a
        step), and answers for every seat at once."""
        out: dict[str, np.ndarray] = {}
        if not len(ids):
            return out
        order = np.argsort(ids, kind="stable")
        q = ids[order]
        found = []
        if self._blocks:
            if self._bounds is None:
                self._bounds = _bounds(self._blocks)
            found.append((*_block_hits(self._blocks, *self._bounds, q), self._seat_names))
        if self._spill is not None:
            found += self._spill.hits(q)
        for seat, at, names in found:
            if not len(seat):
                continue
            o = np.argsort(seat, kind="stable")
            seat, pos = seat[o], order[at[o]]
            cut = _runs_of(seat).tolist()
            for a, b in zip(cut[:-1], cut[1:]):
                client = names[seat[a]]
                m = out.get(client)
                if m is None:
                    m = out[client] = np.zeros(len(ids), bool)
                m[pos[a:b]] = True
        return out

    def forward(self, compliance: pa.Table) -> dict[str, pa.Table]:
        """The compliance events each client must be sent: deletes (and drops, user deletes
        and withholdings) of tweets or authors it was delivered. Call with each batch's
        compliance table before or after :meth:`apply`; the state is updated separately."""
        if compliance.num_rows == 0 or not (self._blocks or self._delivered_users
                                            or (self._spill is not None and self._spill.files)):
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
        picks = []
        any_user = u_valid.any()
        by_tweet = self._delivered_to(ids) if t_valid.any() else {}
        by_author = {}
        if any_user:
            # the delivered tweets those users wrote: a seat that got one gets the event
            by_tid, by_user = self._tweets_by(users[u_valid])
            if len(by_tid):
                by_author = {c: by_user[m] for c, m in self._delivered_to(by_tid).items()}
        for client in sorted(set(by_tweet) | set(by_author) | set(self._delivered_users)):
            hit = by_tweet[client] & t_valid if client in by_tweet else np.zeros(len(ids), bool)
            if any_user:
                if client in by_author:
                    hit |= np.isin(users, by_author[client]) & u_valid
                if client in self._delivered_users:
                    hit |= self._was_delivered(client, users, self._delivered_users) & u_valid
            idx = np.flatnonzero(hit)
            if len(idx):
                picks.append((client, idx))
        if not picks:
            return {}
        # one take for every client (a filter per client cost ~0.4 ms each, x100 seats per
        # batch), then zero-copy slices
        rows = compliance.take(pa.array(np.concatenate([i for _, i in picks])))
        out, at = {}, 0
        for client, idx in picks:
            out[client] = rows.slice(at, len(idx))
            at += len(idx)
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


def rule_id_lists(parts: list) -> pa.Array:
    """The rule id lists (list<string>) of the denied pairs: ``parts`` holds, seat after seat,
    (the seat's matching_rules list array, its denied pairs' positions in it). Each seat's
    ids are read as indices into its own rule ids (the router's dictionary columns; other id
    columns are encoded here), the chosen lists of all seats gathered in one pass of the
    core, and the strings taken once from all seats' rule ids."""
    if not parts:
        return pa.array([], _RULE_IDS)
    dicts, offsets, codes, orders, bases, valid = [], [], [], [], [], []
    base = 0
    for rules, order in parts:
        if not isinstance(rules, pa.ListArray):
            rules = rules.cast(pa.list_(rules.type.value_type))
        values = rules.values
        ids = values.field("id") if values.offset == 0 and not values.null_count \
            else pc.struct_field(values, "id")
        if not pa.types.is_dictionary(ids.type):
            ids = ids.dictionary_encode()
        d = ids.dictionary
        if d.type != pa.string():
            d = d.cast(pa.string())
        idx = ids.indices
        if idx.null_count:                 # a null id: an index to a null past the ids
            idx = pc.fill_null(idx.cast(pa.int32()), len(d))
            d = pa.concat_arrays([d, pa.nulls(1, pa.string())])
        offsets.append(rules.offsets.to_numpy())
        codes.append(np.asarray(idx.to_numpy(zero_copy_only=False), np.int32))
        orders.append(np.ascontiguousarray(order, np.int64))
        # a null list stays null (its offsets give it no rules)
        valid.append(rules.is_valid().to_numpy(zero_copy_only=False)[order]
                     if rules.null_count else None)
        dicts.append(d)
        bases.append(base)
        base += len(d)
    n = sum(len(o) for o in orders)
    out_offsets = np.empty(n + 1, np.int32)
    at = _core.gather_list_codes(offsets, codes, orders, np.array(bases, np.int64), out_offsets)
    values = pa.concat_arrays(dicts).take(pa.array(at))
    mask = None
    if any(v is not None for v in valid):
        mask = pa.array(~np.concatenate([np.ones(len(o), bool) if v is None else v
                                         for v, o in zip(valid, orders)]))
    return pa.ListArray.from_arrays(pa.array(out_offsets), values, mask=mask)


def _filled(size: int, value: int, empty=np.empty) -> pa.Array:
    """An int64 column of ``size`` copies of ``value`` (in memory from ``empty``)."""
    out = empty(size, np.int64)
    out.fill(value)
    return pa.array(out, pa.int64())


def _days(tweets: pa.Table) -> np.ndarray:
    """Each row's day (days since the epoch, UTC) of created_at; 0 where it is missing."""
    created = pc.cast(tweets.column("created_at"), pa.int64())
    if created.null_count:
        created = pc.fill_null(created, 0)
    return created.to_numpy(zero_copy_only=False) // 86_400_000


def _repeat_names(names, counts, empty=np.empty) -> pa.ChunkedArray:
    """Each of ``names`` repeated ``counts`` times, one chunk per name. The chunks share one
    offsets buffer per name length; only the characters are written per chunk, into one
    array from ``empty`` (the arena's: a 1M-row ledger's names are ~20 MB of memory that,
    new, cost a page fault per 4 KB)."""
    counts = [int(c) for c in counts]
    data = [name.encode() for name in names]
    chunks = []
    offsets: dict[int, np.ndarray] = {}
    longest = max(counts, default=0)
    chars = empty(sum(len(d) * c for d, c in zip(data, counts) if len(d) * c < 2**31),
                  np.uint8)
    at = 0
    for name, d, c in zip(names, data, counts):
        size = len(d)
        if size * c >= 2**31:
            chunks.append(pa.repeat(pa.scalar(name, pa.string()), c))
            continue
        if size not in offsets:
            offsets[size] = np.arange(0, size * (longest + 1), size or 1, np.int32) \
                if size else np.zeros(longest + 1, np.int32)
        part = chars[at:at + size * c]
        if size * c:
            part[:] = np.frombuffer(d * c, np.uint8)
        at += size * c
        chunks.append(pa.StringArray.from_buffers(
            c, pa.py_buffer(offsets[size][:c + 1]), pa.py_buffer(part)))
    return pa.chunked_array(chunks, pa.string())


def _label_column(labels, k, lab: np.ndarray, used: list[bool]) -> pa.DictionaryArray:
    """Field ``k`` of ``labels[lab[j]]`` for every row j (``used[i]``: whether ``i`` occurs
    in ``lab``), as a dictionary column whose dictionary holds each value used once."""
    at: dict[str, int] = {}
    code = np.array([at.setdefault(t[k], len(at)) if u else -1
                     for t, u in zip(labels, used)], np.int32)
    # the codes index the dictionary made here: not checked again (safe=False)
    return pa.DictionaryArray.from_arrays(np.take(code, lab), pa.array(list(at), pa.string()),
                                          safe=False)


def label_array(value: str, n: int) -> pa.DictionaryArray:
    """``n`` copies of ``value`` as a denial label column (:data:`LABEL`)."""
    return pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([value], pa.string()))


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


def _sorted_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) pairs in any order sorted by x then y, each pair once: (author, tweet id) for
    the author index, (tweet id, seat) for a block, (seat, tweet id) for each seat's ids."""
    o = np.lexsort((y, x))
    x, y = x[o], y[o]
    if len(x) > 1:
        keep = np.ones(len(x), bool)
        keep[1:] = (x[1:] != x[:-1]) | (y[1:] != y[:-1])
        if not keep.all():
            x, y = x[keep], y[keep]
    return x, y


def _author_batch(author: np.ndarray, tid: np.ndarray) -> pa.RecordBatch:
    """A run of (author, tweet id) pairs as a record batch of an authors file."""
    return pa.record_batch([pa.array(author, pa.int64()), pa.array(tid, pa.int64())],
                           schema=_AUTHORS)


def _runs_of(x: np.ndarray) -> np.ndarray:
    """Where the runs of equal values of ``x`` start, and ``len(x)`` after the last."""
    return np.r_[0, np.flatnonzero(x[1:] != x[:-1]) + 1, len(x)]


def _merged_pairs(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Two runs of sorted (author, tweet id) pairs as one (a linear pass of the core)."""
    size = len(a[0]) + len(b[0])
    ko, vo = np.empty(size, np.int64), np.empty(size, np.int64)
    k = _core.merge_pairs(a[0], a[1], b[0], b[1], ko, vo)
    return _fit(ko, k), _fit(vo, k)


def _merged_runs_of_pairs(runs: list[tuple[np.ndarray, np.ndarray]]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted runs of (author, tweet id) pairs as one sorted run, each pair once: merged
    pairwise, each pair copied log2(runs) times (a pair repeated within a run, a tweet
    delivered twice in a batch, is dropped at the end)."""
    while len(runs) > 1:
        runs = [_merged_pairs(runs[i], runs[i + 1]) if i + 1 < len(runs) else runs[i]
                for i in range(0, len(runs), 2)]
    author, tid = runs[0]
    if len(author) > 1:
        again = (author[1:] == author[:-1]) & (tid[1:] == tid[:-1])
        if again.any():
            keep = np.ones(len(author), bool)
            keep[1:] = ~again
            author, tid = author[keep], tid[keep]
    return author, tid


def _push_run(runs: list, run) -> None:
    """Append a sorted run of (author, tweet id) pairs to the author index's ``runs``, merged
    with the previous as :func:`_mergeable` says, up to ``_AUTHOR_RUN_PAIRS`` pairs (a batch
    costs about its own size, and a lookup one search a run)."""
    runs.append(run)
    while len(runs) > 1 and _mergeable(len(runs[-2][0]), len(runs[-1][0]), _AUTHOR_RUN_PAIRS):
        b, a = runs.pop(), runs.pop()
        runs.append(_merged_pairs(a, b))


def _merged(runs: list[np.ndarray]) -> np.ndarray:
    """The distinct ids of ascending runs (repeats allowed), ascending: merged in linear
    passes by the core, the smallest (newest) runs first."""
    ids = runs[-1]
    for run in reversed(runs[:-1] or [ids[:0]]):
        out = np.empty(len(run) + len(ids), np.int64)
        ids = _fit(out, _core.merge_distinct(run, ids, out))
    return ids


def _fit(out: np.ndarray, k: int) -> np.ndarray:
    """``out[:k]``; when a merge dropped many repeats, ``out`` itself shrunk to ``k`` (the
    room it does not need goes back; a realloc shrinks in place, where a copy cost as much
    as the merge). ``out`` must be an array of the caller's own that nothing else views."""
    if 4 * k >= 3 * len(out):
        return out[:k]
    out.resize(k, refcheck=False)
    return out


def _codes(col) -> tuple[np.ndarray, list]:
    """(codes, values) of a string column, dictionary-encoded or not (older checkpoints)."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    return col.indices.to_numpy(zero_copy_only=False), col.dictionary.to_pylist()
