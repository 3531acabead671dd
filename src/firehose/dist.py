"""A replay scaled out on Dask (``dask.distributed``), with the same results as one machine.

    from distributed import Client
    from firehose import dist
    report = dist.replay(["captures/*.ndjson.gz"], config, Client("tcp://HOST:8786"), "out/")
    report = dist.replay(paths, config, None, "out/", scheduler="sync")   # in-process, no Dask

Dask is optional (``pip install 'firehose[dask]'``): this module imports it only when a run is
given a cluster, and the single-machine path (:mod:`firehose.pipeline`) never imports it.

**Stages** (docs/architecture.md, "Distributed (Dask)"):

1. *decode*, one task per segment (a whole compressed file, or a byte range of a plain file:
   the lines that start in it): the core decodes it without dedupe and splits its tweets by
   the core's partition key (XXH3_64 of the tweet id's 8 little-endian bytes, modulo the
   partition count; :func:`partition_of`) into one Arrow IPC file in the staging directory,
   record batch ``p`` holding partition ``p``, so every copy of a tweet lands in one partition;
2. *compliance*, one task: every segment's compliance events, in input order, folded into one
   :class:`~firehose.compliance.ComplianceState` that every partition task then reads;
3. *route*, one task per partition: batch ``p`` of every segment's file, exact dedupe (the
   first occurrence in input order wins),
   rows put in tweet-id order, routing through a :class:`~firehose.routing.Router` compiled once
   per worker process (cached by the configuration's hash), entitlements without caps;
4. *caps*, on the client: the rows still deliverable, as (tweet id, day, client) only, taken
   in tweet-id order per affiliated group — the one sequential step;
5. *write*, one task per partition (and one per segment for rejects): cap denials applied,
   deletes of delivered tweets forwarded, every output written as committed part files into a
   private staging directory of that attempt, whose paths the task returns.

The client then moves the returned files into place (one ``rename`` each), writes
``audit/plans.parquet`` and, last, ``manifest.json``: an output directory with a manifest is
complete. Tasks are pure functions of their inputs, so when a worker dies Dask re-runs what it
held and nothing is lost; a retried attempt writes to a new staging directory and only the
files of the attempt whose result reached the client are moved, so nothing is duplicated.

**Semantics** (what "the same result" means, and where it differs from
:class:`~firehose.pipeline.Pipeline`, which works batch by batch in input order):

* every compliance event of the run is applied before any tweet is judged (the state is the
  latest by event time, as in the pipeline), so a tweet deleted anywhere in the inputs is never
  delivered; events naming a tweet that *was* delivered (a drop later undone, a withholding
  elsewhere) are forwarded to the clients that got it;
* dedupe is exact per tweet id over the whole run (no time window): the first occurrence in
  input order (inputs in the given order, then byte position) wins;
* caps are counted in tweet-id order, per seat per day and per affiliated group over 30 days,
  clients of one group interleaved by tweet id (then client name);
* every output is a set of parts, part ``p + 1`` holding partition ``p``'s rows in tweet-id
  order (rejects: part ``s + 1`` for segment ``s``). Outputs are byte-identical for the same
  inputs, configuration, ``partitions`` and ``segment_bytes``, whatever the cluster, the
  number of workers or the failures on the way; ``scheduler="sync"`` runs the same stages in
  this process and is the single-machine reference.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .compliance import ComplianceState
from .config import Config
from .errors import ConfigError, FirehoseError, InputError, StateError
from .schema import COMPLIANCE, REJECTS

__all__ = ["replay", "partition_of", "plan_segments", "Segment", "SchedulerUnreachable",
           "auto_partitions", "PARTITION_BYTES", "DEFAULT_SEGMENT_BYTES"]

#: decompressed input per partition when the partition count is left to the run
PARTITION_BYTES = 128 << 20
#: compressed inputs are counted as this many times their size
COMPRESSION_RATIO = 8
DEFAULT_SEGMENT_BYTES = 256 << 20
_CHUNK = 4 << 20
_STAGING = ".dist-staging"
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_MS_PER_DAY = 86_400_000


class SchedulerUnreachable(FirehoseError):
    """The Dask scheduler could not be reached (or a local cluster could not start)."""


# ------------------------------------------------------------------------------ partition key

def partition_of(ids, n: int) -> np.ndarray:
    """Each tweet id's partition (uint32): ``XXH3_64(id as 8 little-endian bytes) % n``,
    computed in the core without the GIL. Equal to
    ``xxhash.xxh3_64_intdigest(struct.pack("<q", id)) % n``. Nulls count as id -1."""
    from . import _core
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = pc.fill_null(ids, -1).to_numpy(zero_copy_only=False)
    a = np.ascontiguousarray(ids, dtype=np.int64)
    if n < 1:
        raise ValueError("partitions must be positive")
    out = np.empty(len(a), np.uint32)
    _core.partition_ids(a, int(n), out)
    return out


# ------------------------------------------------------------------------------ segments

@dataclass(frozen=True)
class Segment:
    """A unit of decoding: input ``input`` (``path``), the lines that start in byte range
    [``start``, ``end``) of the decompressed stream (``end`` None: to the end)."""
    index: int
    input: int
    path: str
    start: int
    end: int | None


def _sniff(path: str) -> tuple[int, bool]:
    """(size on disk, compressed?) of an input, by its magic bytes."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror or e}") from None
    return size, head.startswith(_GZIP) or head.startswith(_ZSTD)


def plan_segments(inputs: list[str], segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> list[Segment]:
    """Cut the inputs into segments: a compressed file is one segment (it cannot be entered
    in the middle), a plain file one per ``segment_bytes`` of it."""
    segs: list[Segment] = []
    for i, path in enumerate(inputs):
        if path == "-":
            raise InputError("-: standard input cannot be replayed on a cluster")
        size, packed = _sniff(path)
        if packed or size <= segment_bytes:
            segs.append(Segment(len(segs), i, path, 0, None))
            continue
        for a in range(0, size, segment_bytes):
            b = a + segment_bytes
            segs.append(Segment(len(segs), i, path, a, b if b < size else None))
    return segs


def auto_partitions(inputs: list[str]) -> int:
    """The partition count of a run that does not name one: one per :data:`PARTITION_BYTES`
    of (estimated) decompressed input, from the file sizes alone, so the same inputs always
    get the same count (and the same output files) whatever the cluster."""
    total = 0
    for path in inputs:
        size, packed = _sniff(path)
        total += size * (COMPRESSION_RATIO if packed else 1)
    return max(1, -(-total // PARTITION_BYTES))


def _line_start(path: str, a: int) -> int:
    """The first line start at or after ``a``: ``a`` when a newline ends at ``a - 1``."""
    if a == 0:
        return 0
    with open(path, "rb") as f:
        f.seek(a - 1)
        pos = a - 1
        while True:
            block = f.read(1 << 16)
            if not block:
                return pos
            nl = block.find(b"\n")
            if nl >= 0:
                return pos + nl + 1
            pos += len(block)


def _segment_chunks(seg: Segment, chunk: int):
    """(bytes, offset) covering exactly the lines that start in the segment."""
    from .reader import iter_chunks
    start = _line_start(seg.path, seg.start) if seg.start else 0
    end = seg.end
    if end is not None and start >= end:
        return                       # one line longer than the segment: the previous has it
    for data, off in iter_chunks(seg.path, chunk, start=start):
        if end is None or off + len(data) <= end - 1:
            yield data, off
            continue
        nl = data.find(b"\n", max(end - 1 - off, 0))
        if nl >= 0:
            yield data[:nl + 1], off
            return
        yield data, off


# ------------------------------------------------------------------------------ worker side

_ROUTERS: dict[str, object] = {}
_ROUTER_LOCK = threading.Lock()
_COMPILES: dict[str, int] = {}       # config hash -> rule compilations in this process (tests)
_FAULT: dict[str, str] = {}          # stage -> marker file (tests: a worker kills itself once)


def _router(config: Config):
    """This process's Router for ``config``: rules are compiled once per worker process."""
    key = config.hash
    r = _ROUTERS.get(key)
    if r is None:
        with _ROUTER_LOCK:
            r = _ROUTERS.get(key)
            if r is None:
                from .routing import Router
                r = _ROUTERS[key] = Router.from_config(config)
                _COMPILES[key] = _COMPILES.get(key, 0) + 1
    return r


def _arm_fault(stage: str, marker: str) -> None:
    """Tests: the next task of ``stage`` run in a Dask worker while ``marker`` exists deletes
    it and kills its own worker process (SIGKILL)."""
    _FAULT[stage] = marker


def _compile_counts() -> dict[str, int]:
    return dict(_COMPILES)


def _maybe_die(stage: str) -> None:
    marker = _FAULT.get(stage)
    if not marker or "distributed" not in sys.modules:
        return
    try:
        from distributed import get_worker
        get_worker()
    except ValueError:              # not in a worker (the sync scheduler): never
        return
    try:
        os.unlink(marker)
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _decode_segment(seg: Segment, names: list[str], nparts: int, raw: bool,
                    stage_root: str) -> dict:
    """Stage 1: decode one segment; its tweets split by partition key into one Arrow IPC file
    (record batch ``p`` holds partition ``p``) in this attempt's own staging file, whose path
    is returned with the segment's compliance events, rejects and counts."""
    from .decoder import Decoder, DecodeResult
    from .pipeline import _RawTail
    _maybe_die("decode")
    dec = Decoder(dedupe=False)
    dec.register_sources(names)
    name = names[seg.input]
    if seg.start:
        dec.seek(name, _line_start(seg.path, seg.start), 0)
    tail = _RawTail() if raw else None
    results, raws = [], []

    def take(res, rb):
        results.append(res)
        if raw:
            raws.append(_raw_lines(res.tweets, rb))

    for data, off in _segment_chunks(seg, _CHUNK):
        res = dec.feed(data, source=name, offset=off)
        rb = tail.add(name, data, off) if raw else None
        take(res, rb)
    res = dec.finish()
    take(res, tail.add(name, b"", None) if raw and tail.source is not None else None)
    out = DecodeResult.concat(results)
    tweets = out.tweets
    if raw:
        tweets = tweets.append_column("_raw", pa.concat_arrays(raws) if raws else
                                      pa.array([], pa.binary()))
    tweets = tweets.unify_dictionaries().combine_chunks()   # one dictionary per file
    part = partition_of(tweets.column("id"), nparts)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(nparts + 1))
    os.makedirs(stage_root, exist_ok=True)
    path = os.path.join(stage_root, f"seg{seg.index + 1:06d}-{uuid.uuid4().hex}.arrow")
    with pa.OSFile(path, "wb") as f, pa.ipc.new_file(f, tweets.schema) as w:
        for p in range(nparts):
            piece = tweets.take(pa.array(order[bounds[p]:bounds[p + 1]], pa.int64()))
            batches = piece.combine_chunks().to_batches()
            # an empty partition keeps the file's dictionaries (a batch made from nothing
            # would carry empty ones, which an IPC file cannot replace)
            w.write_batch(batches[0] if batches else pa.RecordBatch.from_arrays(
                [c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in piece.columns],
                schema=tweets.schema))
    st = dec.stats
    info = {"segment": seg.index, "input": seg.input,
            "lines": int(st.get("lines", 0)), "blank": int(st.get("blank", 0)),
            "bytes": int(st.get("bytes", 0)), "tweets": tweets.num_rows,
            "rejects": out.rejects.num_rows, "path": path}
    return {"compliance": out.compliance, "rejects": out.rejects, "info": info}


def _raw_lines(tweets: pa.Table, rb) -> pa.Array:
    if rb is None or not tweets.num_rows:
        return pa.array([], pa.binary())
    buf, base = rb
    out = []
    for off in tweets.column("byte_offset").to_pylist():
        i = off - base
        j = buf.find(b"\n", i)
        out.append(buf[i:j if j >= 0 else len(buf)])
    return pa.array(out, pa.binary())


def _pick(obj, key):
    return obj[key]


def _const(x):
    return x


def _fix_lines(table: pa.Table, add: int) -> pa.Table:
    if not add or not table.num_rows:
        return table
    i = table.schema.get_field_index("line")
    return table.set_column(i, table.schema.field(i), pc.add(table.column(i), pa.scalar(add,
                                                                                      pa.int64())))


def _compliance(tables: list[pa.Table], offsets: list[int], nparts: int) -> dict:
    """Stage 2: the run's compliance events in input order, one state every partition reads,
    and the events naming a tweet split by its partition (for forwarding)."""
    comp = [_fix_lines(t, o) for t, o in zip(tables, offsets) if t.num_rows]
    table = pa.concat_tables(comp) if comp else COMPLIANCE.empty_table()
    state = ComplianceState()
    state.apply(table)
    state._sets()                   # built once here, not in every partition task
    tid = table.column("tweet_id")
    valid = pc.is_valid(tid).to_numpy(zero_copy_only=False)
    part = partition_of(tid, nparts)
    by_part = []
    for p in range(nparts):
        m = valid & (part == p)
        by_part.append(table.filter(pa.array(m)) if m.any() else COMPLIANCE.empty_table())
    counters = {"compliance.in": table.num_rows, "compliance.applied": state.events,
                "compliance.ignored": table.num_rows - state.events}
    return {"state": state, "by_part": by_part, "counters": counters}


def _uncapped(plans):
    from .entitlements import PlanSet
    return PlanSet({k: dataclasses.replace(p, objects_per_day=None, group_ids_per_30d=None)
                    for k, p in plans.plans.items()}, plans.version, plans.hash)


def _read_piece(path: str, p: int) -> pa.Table:
    with pa.OSFile(path, "rb") as f:
        return pa.Table.from_batches([pa.ipc.open_file(f).get_batch(p)])


def _route_partition(p: int, paths: list[str], offsets: list[int], config: Config,
                     plans, state: ComplianceState, source: str) -> dict:
    """Stage 3: one partition: exact dedupe, id order, routing, entitlements without caps."""
    from .entitlements import Entitlements
    _maybe_die("route")
    pieces = [_read_piece(path, p) for path in paths]
    tables = [_fix_lines(t, o) for t, o in zip(pieces, offsets) if t.num_rows]
    if tables:
        t = pa.concat_tables(tables)
    else:
        from .schema import TWEETS
        t = TWEETS.empty_table()
        if pieces and "_raw" in pieces[0].column_names:
            t = t.append_column("_raw", pa.array([], pa.binary()))
    ids = t.column("id").to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)      # first occurrence, in id order
    seen = t.num_rows
    t = t.take(pa.array(first, pa.int64()))
    routed = _router(config).route(t)
    ent = Entitlements(_uncapped(plans), state, source)
    ent.batch = p
    result = ent.apply(t, routed.by_client, source=source)
    days = _days(t)
    ids = t.column("id").to_numpy(zero_copy_only=False)
    cands = {}
    for client, d in result.delivered.items():
        plan = plans.plan(client, source)
        if (plan.objects_per_day is not None or plan.group_ids_per_30d is not None) \
                and d.num_rows:
            cands[client] = (ids[d.rows], days[d.rows])
    counters = {"decode.tweets": t.num_rows, "decode.duplicates": seen - t.num_rows,
                "route.in": t.num_rows, "route.matched": t.num_rows - routed.unmatched,
                "route.unmatched": routed.unmatched, "route.pairs": routed.matched_pairs}
    # raw payloads carry embedded copies whole: their geo goes where their author scrubbed it
    # (as in the pipeline)
    nested = state.scrub_nested_mask(t) if "_raw" in t.column_names else None
    return {"result": result, "cands": cands, "counters": counters,
            "nested": nested if nested is not None and nested.any() else None}


def _days(t: pa.Table) -> np.ndarray:
    ms = pc.fill_null(pc.cast(t.column("created_at"), pa.int64()), 0)
    return ms.to_numpy(zero_copy_only=False) // _MS_PER_DAY


def _sink_specs(config: Config, plans, source: str) -> dict:
    specs = {}
    for name in sorted(config.clients):
        c = config.clients[name]
        kind = c.sink.kind if c.sink else "parquet"
        if kind == "callback":
            raise ConfigError(f"clients.{name}.sink: kind \"callback\" cannot be served by a "
                              "distributed replay (its outputs are files)")
        plan = plans.plan(name, source)
        specs[name] = (kind, c.sink.compression if c.sink else None,
                       kind == "ndjson" and plan.raw_json)
    return specs


def _write_partition(p: int, routed: dict, capped: dict, comp: pa.Table, specs: dict,
                     plans, source: str, stage_root: str) -> dict:
    """Stage 5: cap denials, forwards, and every output of partition ``p`` written as part
    ``p + 1`` into this attempt's own staging directory."""
    from .entitlements import AUDIT, DENIALS, LEDGER, Delivery, label_array, rule_id_lists
    from .sinks import PartSink, raw_with_rules, stores_schema
    result = routed["result"]
    seq = p + 1
    c: dict[str, int] = dict(routed["counters"])

    def add(k, n):
        if n:
            c[k] = c.get(k, 0) + int(n)

    audit = result.audit.to_pylist()
    denials = [result.denials]
    ledger = result.ledger
    delivered = dict(result.delivered)
    for client, ids_over in sorted(capped.items()):
        d = delivered[client]
        ids = d.tweets.column("id").to_numpy(zero_copy_only=False)[d.rows]
        over = np.isin(ids, ids_over)
        if not over.any():
            continue
        plan = plans.plan(client, source)
        keep = ~over
        delivered[client] = Delivery(d.tweets, d.rows[keep], d.columns, d.rules,
                                     d.rules_at[keep], d.scrub[keep])
        n = int(over.sum())
        denials.append(pa.table({
            "batch": pa.array(np.full(n, seq), pa.int64()),
            "client": pa.repeat(pa.scalar(client, pa.string()), n),
            "tweet_id": pa.array(ids[over], pa.int64()),
            "reason": label_array("cap_exceeded", n),
            "policy": label_array(plan.licence, n),
            "rules": rule_id_lists([(d.rules, d.rules_at[over])]),
            "path": label_array("", n),
            "detail": label_array("", n),
        }, schema=DENIALS))
        drop = pc.and_(pc.equal(ledger.column("client"), client),
                       pc.is_in(ledger.column("tweet_id"), pa.array(ids[over], pa.int64())))
        ledger = ledger.filter(pc.invert(drop))
        last = max(i for i, a in enumerate(audit) if a["client"] == client)
        for a in audit:
            if a["client"] == client and a["outcome"] == "delivered":
                a["rows"] -= n
                base = dict(a)
        audit.insert(last + 1, dict(base, outcome="denied", reason="cap_exceeded",
                                    policy=plan.licence, rows=n))
    audit_t = pa.Table.from_pylist(audit, schema=AUDIT)
    denials_t = pa.concat_tables(denials)
    if denials_t.num_rows:
        denials_t = denials_t.take(pc.sort_indices(denials_t, [("client", "ascending"),
                                                               ("tweet_id", "ascending")]))
    for a in audit:
        client, outcome, reason, rows = a["client"], a["outcome"], a["reason"], a["rows"]
        if outcome == "matched":
            add("entitle.in", rows)
            add(f"client.{client}.matched", rows)
        elif outcome == "delivered":
            add("entitle.delivered", rows)
            add(f"client.{client}.delivered", rows)
        else:
            add(f"entitle.denied.{reason}", rows)
            add("entitle.denied", rows)
            add(f"client.{client}.denied", rows)

    root = os.path.join(stage_root, f"p{seq:06d}-{uuid.uuid4().hex}")
    jobs: list = []

    def put(sink, table, raw=None):
        jobs.append((sink, table, raw))

    def run(job) -> str | None:
        sink, table, raw = job
        sink.write(table, seq, raw)
        staged = sink.close_part(fsync=False)        # made durable together below
        return os.path.relpath(sink.publish(staged), root) if staged else None

    tid = comp.column("tweet_id")
    for client, (kind, compression, raw) in specs.items():
        d = delivered.get(client)
        if d is None:
            continue
        table = d.table()
        if table.num_rows:
            lines = None
            if raw:
                rules = table.column("matching_rules").to_pylist()
                src = d.tweets.column("_raw").take(pa.array(d.rows, pa.int64())).to_pylist()
                # as the pipeline: no geo group, no geo in the payload (nested copies too)
                exact, place = d.geo_grants
                scrub = d.scrub if routed.get("nested") is None else \
                    d.scrub | routed["nested"][d.rows]
                lines = [raw_with_rules(line, rl, bool(s), exact_geo=exact, place=place)
                         for line, rl, s in zip(src, rules, scrub.tolist())]
            put(PartSink(os.path.join(root, "clients", client), kind, compression), table,
                lines)
            add("sink.rows", table.num_rows)
        if comp.num_rows and d.num_rows:
            got = pa.array(d.tweets.column("id").to_numpy(zero_copy_only=False)[d.rows],
                           pa.int64())
            fwd = comp.filter(pc.fill_null(pc.is_in(tid, value_set=got), False))
            if fwd.num_rows:
                put(PartSink(os.path.join(root, "clients", client, "compliance"), "parquet",
                             schema=COMPLIANCE), fwd)
                add("compliance.forwarded", fwd.num_rows)
    for part, schema, table in (("audit", AUDIT, audit_t), ("denials", DENIALS, denials_t),
                                ("ledger", LEDGER, ledger)):
        put(PartSink(os.path.join(root, "audit", part), "parquet", schema=schema,
                     store_schema=stores_schema(schema)), table)
    # many small files: Parquet encoding and fsync release the GIL, so a few threads overlap
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4, thread_name_prefix="firehose-dist-write") as pool:
        files = [f for f in pool.map(run, jobs) if f]
    if files:        # one syncfs (Linux) for the attempt's files, not an fsync each
        from .sinks import sync_all
        sync_all(root, [os.path.join(root, f) for f in files])
    _maybe_die("write")          # tests: the files exist, the result never reaches the client
    return {"root": root, "files": files, "counters": c}


def _write_rejects(seg_index: int, rejects: pa.Table, add_lines: int, stage_root: str) -> dict:
    from .sinks import PartSink
    root = os.path.join(stage_root, f"r{seg_index + 1:06d}-{uuid.uuid4().hex}")
    sink = PartSink(os.path.join(root, "rejects"), "parquet", schema=REJECTS)
    sink.write(_fix_lines(rejects, add_lines), seg_index + 1)
    staged = sink.close_part(fsync=False)
    final = sink.publish(staged) if staged else None
    if final:
        from .sinks import sync_all
        sync_all(root, [final])
    return {"root": root, "files": [os.path.relpath(final, root)] if final else []}


# ------------------------------------------------------------------------------ caps (client)

def _decide_caps(plans, source: str, cands: list[dict]) -> list[dict]:
    """Cap decisions over the whole run: per partition, ``{client: sorted ids over a cap}``.

    Rows are the ones every other check let through. A seat's daily cap and its group's 30-day
    cap are consumed in tweet-id order (clients of one group interleaved by id, then name); a
    row over a cap is denied and consumes neither, as in :class:`Entitlements`."""
    nparts = len(cands)
    out: list[dict] = [{} for _ in range(nparts)]
    units: dict[tuple, list[str]] = {}
    clients = sorted({c for part in cands for c in part})
    for client in clients:
        plan = plans.plan(client, source)
        key = ("group", plan.group) if plan.group_ids_per_30d is not None else ("seat", client)
        units.setdefault(key, []).append(client)
    for key, members in sorted(units.items()):
        ids, days, who, part = [], [], [], []
        for ci, client in enumerate(members):
            for p, cp in enumerate(cands):
                if client in cp:
                    i, d = cp[client]
                    ids.append(i)
                    days.append(d)
                    who.append(np.full(len(i), ci, np.int32))
                    part.append(np.full(len(i), p, np.int32))
        if not ids:
            continue
        ids, days = np.concatenate(ids), np.concatenate(days)
        who, part = np.concatenate(who), np.concatenate(part)
        cplans = [plans.plan(c, source) for c in members]
        if not _caps_bind(cplans, days, who):
            continue
        # as the pipeline's one batch: seat by seat in name order, each in tweet-id order
        order = np.lexsort((ids, who))
        over = np.zeros(len(ids), bool)
        day_counts: dict[tuple[int, int], int] = {}
        group_counts: dict[int, int] = {}
        window: dict[int, int] = {}
        for i in order.tolist():
            ci, day = int(who[i]), int(days[i])
            pl = cplans[ci]
            if pl.objects_per_day is not None and day_counts.get((ci, day), 0) >= pl.objects_per_day:
                over[i] = True
                continue
            if pl.group_ids_per_30d is not None:
                used = window.get(day)
                if used is None:
                    used = window[day] = sum(group_counts.get(x, 0)
                                             for x in range(day - 29, day + 1))
                if used >= pl.group_ids_per_30d:
                    over[i] = True
                    continue
                group_counts[day] = group_counts.get(day, 0) + 1
                for k in window:
                    if day <= k <= day + 29:
                        window[k] += 1
            if pl.objects_per_day is not None:
                day_counts[(ci, day)] = day_counts.get((ci, day), 0) + 1
        for i in np.nonzero(over)[0].tolist():
            out[int(part[i])].setdefault(members[int(who[i])], []).append(int(ids[i]))
    return [{c: np.sort(np.array(v, np.int64)) for c, v in o.items()} for o in out]


def _caps_bind(cplans, days, who) -> bool:
    """Whether any cap can deny a row (else every row passes: no sequential pass)."""
    group_cap = None
    for ci, pl in enumerate(cplans):
        mine = days[who == ci]
        if pl.objects_per_day is not None and len(mine):
            if np.unique(mine, return_counts=True)[1].max() > pl.objects_per_day:
                return True
        if pl.group_ids_per_30d is not None:
            group_cap = pl.group_ids_per_30d if group_cap is None else \
                min(group_cap, pl.group_ids_per_30d)
    if group_cap is None:
        return False
    ud, cnt = np.unique(days, return_counts=True)
    csum = np.concatenate([[0], np.cumsum(cnt)])
    lo = np.searchsorted(ud, ud - 29)
    return bool(((csum[np.arange(len(ud)) + 1] - csum[lo]) > group_cap).any())


# ------------------------------------------------------------------------------ executors

class _Done:
    def __init__(self, value):
        self.value = value


class _SyncExec:
    """The same stages, in this process, one after the other (the single-machine reference)."""
    name = "sync"

    def submit(self, fn, *args, key=None):
        return _Done(fn(*(_resolve(a) for a in args)))

    def gather(self, futs):
        return [f.value for f in futs]


def _resolve(a):
    if isinstance(a, _Done):
        return a.value
    if isinstance(a, list):
        return [_resolve(x) for x in a]
    return a


class _DaskExec:
    name = "dask"

    def __init__(self, client, token: str):
        self.client = client
        self.token = token

    def submit(self, fn, *args, key=None):
        return self.client.submit(fn, *args, key=f"firehose-{key}-{self.token}", pure=False)

    def gather(self, futs):
        return self.client.gather(list(futs))


# ------------------------------------------------------------------------------ the driver

def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` for ``address``, or :class:`SchedulerUnreachable`. ``timeout``
    (seconds) defaults to Dask's ``distributed.comm.timeouts.connect`` (30 s; the environment
    variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT`` sets it)."""
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerUnreachable("a distributed replay needs Dask: pip install "
                                   "'firehose[dask]'") from None
    try:
        if timeout is None:
            return Client(address)
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as e:
        raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {address}: "
                                   f"{' '.join(str(e).split()) or type(e).__name__}") from None


def replay(paths, config, client=None, out_dir=None, *, partitions: int | None = None,
           scheduler: str | None = None, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
           source: str | None = None, overwrite: bool = False, today: _dt.date | None = None,
           on_stage: Callable[[str], None] | None = None, connect_timeout: float | None = None):
    """Replay captures through every client on a Dask cluster; returns a
    :class:`firehose.pipeline.Report`.

    ``client``: a ``distributed.Client``, or a scheduler address (``tcp://HOST:8786``), or
    None with ``scheduler="sync"`` (or nothing) to run the same stages in this process without
    Dask. ``out_dir`` must be visible at the same path to the workers and here (a shared file
    system), as must the inputs. ``partitions`` fixes the tweet partitioning (outputs depend
    on it, not on the cluster; default :func:`auto_partitions`, one per 128 MB of input: a
    partition is held whole by one task); ``segment_bytes`` how plain files are cut for
    decoding.
    ``on_stage(name)`` is called as each stage starts (``decode``, ``compliance``, ``route``,
    ``caps``, ``write``, ``commit``).
    """
    from .config import load
    from .pipeline import Counters, Report, _describe_inputs
    from .reader import expand_paths
    t_start = time.perf_counter()
    if not isinstance(config, Config):
        config = load(config)
    if out_dir is None:
        raise ValueError("replay(): out_dir is required")
    if (partitions is not None and partitions < 1) or segment_bytes < 1:
        raise ValueError("partitions and segment_bytes must be positive")
    from .pipeline import resolve_source
    source = resolve_source(config, source)
    from .entitlements import compile_plans
    plans = compile_plans(config, today=today)
    specs = _sink_specs(config, plans, source)
    raw = any(r for _, _, r in specs.values())
    inputs = expand_paths(paths)
    if not inputs:
        raise InputError("no input given")
    segs = [dataclasses.replace(sg, path=os.path.abspath(sg.path))
            for sg in plan_segments(inputs, segment_bytes)]
    if partitions is None:
        partitions = auto_partitions(inputs)
    # workers open inputs and write staging files by path, and need not share this process's
    # working directory: every path they see is absolute (the names in `source_file` and the
    # manifest stay as given)
    out = os.path.abspath(os.fspath(out_dir))

    own_client = None             # connect first: an unreachable cluster leaves OUT alone
    if client is None and scheduler not in (None, "sync"):
        client = own_client = connect(scheduler, connect_timeout)
    elif isinstance(client, str):
        if client == "sync":
            client = None
        else:
            client = own_client = connect(client, connect_timeout)
    try:
        _prepare_out(out, overwrite)
    except BaseException:
        if own_client is not None:
            own_client.close()
        raise
    token = uuid.uuid4().hex[:12]
    ex = _DaskExec(client, token) if client is not None else _SyncExec()
    stage_root = os.path.join(out, _STAGING, token)
    os.makedirs(stage_root, exist_ok=True)
    stage_s: dict[str, float] = {}
    counters = Counters()
    clock = [time.perf_counter()]

    def stage(name: str) -> None:
        now = time.perf_counter()
        if stage_s:
            last = list(stage_s)[-1]
            stage_s[last] += now - clock[0]
        stage_s[name] = 0.0
        clock[0] = now
        if on_stage is not None:
            on_stage(name)

    try:
        stage("decode")
        names = list(inputs)
        decoded = [ex.submit(_decode_segment, s, names, partitions, raw, stage_root,
                             key=f"decode-{s.index}") for s in segs]
        infos = ex.gather([ex.submit(_pick, d, "info", key=f"info-{i}")
                           for i, d in enumerate(decoded)])
        offsets, seen = [], {}
        for info in infos:                   # line numbers continue across an input's segments
            offsets.append(seen.get(info["input"], 0))
            seen[info["input"]] = offsets[-1] + info["lines"]
            for k in ("lines", "blank", "bytes"):
                counters.add(f"decode.{k}", info[k])
            counters.add("decode.rejects", info["rejects"])
            counters[f"input.{info['input']}.bytes"] = \
                counters.get(f"input.{info['input']}.bytes", 0) + info["bytes"]
        counters["dist.segments"] = len(segs)
        counters["dist.partitions"] = partitions

        stage("compliance")
        comp_t = [ex.submit(_pick, d, "compliance", key=f"comp-{i}")
                  for i, d in enumerate(decoded)]
        comp = ex.submit(_compliance, comp_t, offsets, partitions, key="compliance")
        state = ex.submit(_pick, comp, "state", key="state")
        cfg = ex.submit(_const, config, key="config")
        pl = ex.submit(_const, plans, key="plans")
        rejected = [ex.submit(_write_rejects, i, ex.submit(_pick, d, "rejects",
                                                            key=f"rej-{i}"),
                              offsets[i], stage_root, key=f"write-rejects-{i}")
                    for i, (d, info) in enumerate(zip(decoded, infos)) if info["rejects"]]
        ccount, kinds, rreasons = ex.gather([
            ex.submit(_pick, comp, "counters", key="comp-counters"),
            ex.submit(_kinds, comp_t, key="comp-kinds"),
            ex.submit(_reject_reasons, [ex.submit(_pick, d, "rejects", key=f"rej2-{i}")
                                        for i, d in enumerate(decoded)], key="rej-reasons")])
        counters.add("decode.compliance", ccount["compliance.in"])
        for k, v in ccount.items():
            counters.add(k, v)
        for k, v in kinds.items():
            counters.add(f"compliance.kind.{k}", v)
        for k, v in rreasons.items():
            counters.add(f"decode.rejects.{k}", v)

        stage("route")
        routed = []
        for p in range(partitions):
            routed.append(ex.submit(_route_partition, p, [i["path"] for i in infos], offsets,
                                    cfg, pl, state, source, key=f"route-{p}"))
        cands = ex.gather([ex.submit(_pick, r, "cands", key=f"cands-{p}")
                           for p, r in enumerate(routed)])
        del decoded, comp_t

        stage("caps")
        capped = _decide_caps(plans, source, cands)

        stage("write")
        by_part = [ex.submit(_pick_part_comp, comp, p, key=f"comp-part-{p}")
                   for p in range(partitions)]
        written = [ex.submit(_write_partition, p, routed[p], capped[p], by_part[p], specs, pl,
                             source, stage_root, key=f"write-{p}") for p in range(partitions)]
        results = ex.gather(written + rejected)

        stage("commit")
        for r in results[:partitions]:
            for k, v in r["counters"].items():
                counters.add(k, v)
        _commit(out, results)
        shutil.rmtree(os.path.join(out, _STAGING), ignore_errors=True)
        ent_versions = _plan_versions(plans)
        _write_plans(out, ent_versions)
        report = Report(dict(sorted(counters.items())), sorted(config.clients), 0.0, {},
                        [], out)
        report.inputs = _describe_inputs(inputs, counters)
        _write_manifest(out, config, plans, source, partitions, segment_bytes, report)
        stage("done")
        stage_s.pop("done", None)
        report.seconds = time.perf_counter() - t_start
        report.stage_seconds = stage_s
        return report
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
        try:
            os.rmdir(os.path.join(out, _STAGING))
        except OSError:
            pass
        if own_client is not None:
            own_client.close()


def _pick_part_comp(res: dict, p: int) -> pa.Table:
    return res["by_part"][p]


def _count_values(tables: list[pa.Table], column: str) -> dict:
    from .pipeline import _value_counts
    out: dict[str, int] = {}
    for t in tables:
        if t.num_rows:
            for k, n in _value_counts(t.column(column)):
                out[k] = out.get(k, 0) + n
    return out


def _kinds(tables: list[pa.Table]) -> dict:
    return _count_values(tables, "kind")


def _reject_reasons(tables: list[pa.Table]) -> dict:
    return _count_values(tables, "reason")


# ------------------------------------------------------------------------------ out dir

def _prepare_out(out: str, overwrite: bool) -> None:
    from .pipeline import OUTPUT_NAMES, existing_outputs, remove_outputs
    ours = existing_outputs(out, OUTPUT_NAMES + (_STAGING,))
    if ours and not overwrite:
        if ours == [_STAGING]:
            ours = []                       # only the leftovers of a crashed client: retry
        else:
            raise StateError(f"{out}: holds the output of an earlier run; --overwrite "
                             "replaces it (a distributed run is not resumed: it is re-run)")
    remove_outputs(out, ours)
    os.makedirs(out, exist_ok=True)


def _commit(out: str, results: list[dict]) -> None:
    """Move every returned file into place: a rename each (same file system), then fsync the
    directories. Files of attempts that did not return (a killed worker) are never moved."""
    from .sinks import sync_all
    dirs = set()
    for r in results:
        for rel in r["files"]:
            dst = os.path.join(out, rel)
            d = os.path.dirname(dst)
            if d not in dirs:
                os.makedirs(d, exist_ok=True)
                dirs.add(d)
            os.replace(os.path.join(r["root"], rel), dst)
    if dirs:
        sync_all(out, [])        # the renames: one syncfs, or an fsync of ``out`` elsewhere
        if not _has_syncfs():
            from .sinks import fsync_dir
            for d in sorted(dirs):
                fsync_dir(d)


def _has_syncfs() -> bool:
    from . import sinks
    return getattr(sinks, "_syncfs", None) is not None


def _plan_versions(plans) -> pa.Table:
    from .entitlements import Entitlements
    return Entitlements(plans).plan_versions()


def _write_plans(out: str, table: pa.Table) -> None:
    from .sinks import atomic_write
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write(os.path.join(out, "audit", "plans.parquet"), sink.getvalue().to_pybytes())


def _write_manifest(out, config, plans, source, partitions, segment_bytes, report) -> None:
    from . import __version__
    from .pipeline import MANIFEST_NAME, list_outputs
    from .sinks import atomic_write
    outputs = list_outputs(out, skip_dirs=(_STAGING,))
    manifest = {
        "firehose": __version__, "pyarrow": pa.__version__,
        "config": {"origin": str(config.origin), "hash": config.hash},
        "plans": {"version": plans.version, "hash": plans.hash},
        "source": source,
        "options": {"mode": "distributed", "partitions": partitions,
                    "segment_bytes": segment_bytes, "dedupe": "exact",
                    "compliance": "all events before any delivery",
                    "caps": "tweet-id order per group"},
        "inputs": report.inputs, "parts": partitions,
        "counters": dict(sorted(report.counters.items())), "outputs": outputs,
    }
    atomic_write(os.path.join(out, MANIFEST_NAME),
                 (json.dumps(manifest, indent=2) + "\n").encode())


# ------------------------------------------------------------------------------ command line

def cli_replay(ctx, captures, config_path, out, resume, overwrite, max_reject_rate, source,
               quiet, scheduler: str | None, workers: int | None) -> None:
    """``firehose replay --scheduler ADDRESS`` / ``--workers N`` (firehose.cli)."""
    import click

    from .cli import EXIT_SINK, EXIT_USAGE, _load_config, _report
    from .errors import SinkError

    def fail(code: int, msg: str):
        click.echo(f"firehose replay: {' '.join(str(msg).split())}", err=True)
        ctx.exit(code)

    if scheduler and workers:
        fail(EXIT_USAGE, "--scheduler and --workers exclude each other")
    if resume:
        fail(EXIT_USAGE, "--resume: a distributed run is not resumed; re-run it with "
             "--overwrite")
    config = _load_config(fail, config_path)
    cluster = client = None
    try:
        if scheduler:
            client = connect(scheduler)
        else:
            try:
                from distributed import Client, LocalCluster
            except ImportError:
                raise SchedulerUnreachable("--workers needs Dask: pip install "
                                           "'firehose[dask]'") from None
            try:
                # workers log their connection teardown at exit as errors: keep stderr to ours
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                       silence_logs=logging.CRITICAL)
                client = Client(cluster)
            except (OSError, TimeoutError) as e:
                raise SchedulerUnreachable(f"could not start {workers} local workers: {e}") \
                    from None
        report = replay(list(captures), config, client, out, source=source,
                        overwrite=overwrite)
    except (ConfigError, StateError, InputError, SchedulerUnreachable) as e:
        fail(EXIT_USAGE, str(e))
    except SinkError as e:
        fail(EXIT_SINK, str(e))
    except click.exceptions.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - a cluster failing mid-run: KilledWorker, a lost
        # scheduler connection, a file system the workers cannot reach: one line, not a trace
        # (outputs move into place at the end and the manifest comes last: without it the
        # output directory is not a finished run)
        fail(EXIT_SINK, f"the distributed run failed: {type(e).__name__}: {e}; {out} has no "
                        f"manifest: re-run with --overwrite")
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    _report(fail, report, out, quiet, max_reject_rate)
