"""The main job: captures in, every client's entitled matches out, with an audit and a report.

    pipe = firehose.Pipeline(firehose.config.load("clients.toml"), out_dir="out")
    report = pipe.run(["capture-*.ndjson.gz"])          # or resume=True after a crash
    print(report.summary())

    pipe = firehose.Pipeline(config, sinks={"newsroom": my_callback})   # embedding
    tables = pipe.process(chunk, source="live")         # {client: pyarrow.Table}

Stages per batch (docs/architecture.md): read (a thread: file, decompression) → decode (a
thread: the Cython core, GIL released) → compliance (forward deletes of what was delivered,
then fold the batch's events into the state) → routing (all clients' rules, one pass) →
entitlements (plans, masks, caps, audit) → sinks. Every stage counts what came in, what went
out and what it dropped, by reason; the counts balance and land in the report and manifest.

**Batches are cut by input position, not by timing.** A batch is every line whose newline
falls in one ``batch_bytes`` window of a decompressed input (and an input's unterminated last
line); inputs never share a batch. Compliance events of a batch are applied before its tweets
are judged. Since batches depend only on the input, the outputs are byte-identical whatever
the read size or the thread count, and a resumed run cuts the same batches as an
uninterrupted one.

**Commits.** Every ``commit_every`` batches (and at the end) each sink renames its part into
place, then the checkpoint (input position, dedupe memory, compliance and entitlement state,
counters) is written. ``resume=True`` removes parts above the checkpoint and temporary files,
then continues from the checkpoint: the result is the uninterrupted run's, file for file.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from .checkpoint import CHECKPOINT_NAME, Checkpoint
from .compliance import ComplianceState
from .config import Config
from .decoder import Decoder, DecodeResult
from .entitlements import AUDIT, DEFAULT_WINDOW_HOURS, DENIALS, LEDGER, Entitlements, compile_plans
from .errors import ConfigError, InputError, SinkError, StateError
from .reader import expand_paths, iter_chunks, prefetch
from .routing import Router
from .schema import COMPLIANCE, REJECTS
from .sinks import (PART_RE, CallbackSink, PartSink, Sink, _unlink, atomic_write,
                    raw_lines_with_rules, stores_schema, sync_all)

__all__ = ["Pipeline", "Report", "MANIFEST_NAME", "DEFAULT_BATCH_BYTES"]

MANIFEST_NAME = "manifest.json"
DEFAULT_BATCH_BYTES = 64 << 20
DEFAULT_COMMIT_EVERY = 4
_STDIN = "<stdin>"


# ------------------------------------------------------------------------------ counters

class Counters(dict):
    """Named integer counters (``stage.what[.reason]``) that survive a resume."""

    def add(self, key: str, n: int = 1) -> None:
        if n:
            self[key] = self.get(key, 0) + int(n)


@dataclass
class _Batch:
    res: DecodeResult
    position: tuple[int, int, int]       # (input index, offset, lines) to restart after it
    stats: dict                          # decoder counter deltas of this batch
    raw: tuple[bytes, int] | None        # (bytes, offset of bytes[0]) holding the batch's lines
    snapshot: bytes | None = None        # dedupe memory, when this batch ends a commit
    decode_s: float = 0.0
    nested: np.ndarray | None = None     # rows whose embedded copies' authors scrubbed geo
    offsets: np.ndarray | None = None    # byte_offset of every row, relative to raw
    routed: object = None                # the batch's rule matches, made on the decode thread
    route_s: float = 0.0


@dataclass
class Report:
    """What a run did: counters by stage, per-client figures, time per stage, outputs."""
    counters: dict
    clients: list[str]
    seconds: float
    stage_seconds: dict
    inputs: list[dict]
    out_dir: str | None
    resumed_from: int | None = None
    #: the counters when this session resumed (rates are of this session's work)
    base_counters: dict = field(default_factory=dict)

    def get(self, key: str) -> int:
        return int(self.counters.get(key, 0))

    @property
    def reject_rate(self) -> float:
        lines = self.get("decode.lines")
        return self.get("decode.rejects") / lines if lines else 0.0

    def summary(self) -> str:
        return format_summary(self)


# ------------------------------------------------------------------------------ the pipeline

class Pipeline:
    """Wires decoder, compliance, routing, entitlements and sinks.

    Parameters
    ----------
    config:
        A validated :class:`firehose.config.Config`.
    out_dir:
        Where a run writes (``clients/NAME/`` per client in the kind its sink names, their
        ``compliance/`` forwards, ``audit/``, ``rejects/``, the manifest and the checkpoint;
        ``state/delivered/``: what was delivered before the window, for forwarding).
        None: nothing is written except through ``sinks``.
    sinks:
        ``{client: callable or Sink}``: overrides a client's sink; a callable gets each batch's
        table (embedding, and the config's ``kind = "callback"`` seats).
    source:
        The configured source the captures come from (default: the only one).
    batch_bytes, commit_every:
        The batch window (decompressed bytes) and how many batches make a commit.
    delivered_window_hours:
        With ``out_dir``: how much tweet time of deliveries (who got which tweet, for forwarding
        deletes and user events) stays in memory; older deliveries move to
        ``state/delivered/`` and are read from there. Forwarding is exact either way.
    """

    def __init__(self, config: Config, *, out_dir: str | None = None,
                 sinks: Mapping[str, "Callable | Sink"] | None = None, source: str | None = None,
                 batch_bytes: int = DEFAULT_BATCH_BYTES, commit_every: int = DEFAULT_COMMIT_EVERY,
                 batch_rows: int = 65536, dedupe_window_hours: float = 48.0,
                 readahead: int = 2, today: _dt.date | None = None, sink_threads: int = 2,
                 delivered_window_hours: float = DEFAULT_WINDOW_HOURS):
        if not isinstance(config, Config):
            raise TypeError("Pipeline(config): a firehose.config.Config (config.load(path))")
        source = resolve_source(config, source)
        if batch_bytes < 1 or commit_every < 1:
            raise ValueError("batch_bytes and commit_every must be positive")
        self.config = config
        self.source = source
        self.out_dir = os.fspath(out_dir) if out_dir is not None else None
        self.batch_bytes = int(batch_bytes)
        self.commit_every = int(commit_every)
        self.readahead = int(readahead)
        self._dec_args = dict(batch_size=batch_rows, dedupe=True,
                              dedupe_window_hours=dedupe_window_hours)
        self.plans = compile_plans(config, today=today)
        self.clients = sorted(config.clients)
        self.router = Router.from_config(config)
        self.compliance = ComplianceState()
        self._ent_args = dict(
            spill_dir=os.path.join(self.out_dir, STATE_DIR, "delivered") if self.out_dir else None,
            window_hours=float(delivered_window_hours))
        #: makes the entitlement stage (here, after a restore, and for live's reloads)
        self.entitlements_factory: Callable[..., Entitlements] = Entitlements
        self.entitlements = self.new_entitlements(self.compliance)
        self.decoder = Decoder(**self._dec_args)
        self.counters = Counters()
        self.stage_seconds: dict[str, float] = {}
        self.part = 0                           # parts committed
        self._batches_since_commit = 0
        self._user_sinks = dict(sinks or {})
        for name in self._user_sinks:
            if name not in config.clients:
                raise ConfigError(f"sinks: no client {name!r} in {config.origin}")
        self._sinks: dict[str, Sink] = {}
        self._comp_sinks: dict[str, PartSink] = {}
        self._run_sinks: dict[str, PartSink] = {}
        self._raw_clients: set[str] = set()
        self._build_sinks()
        self._raw = _RawTail()
        self.progress: Callable[["Pipeline"], None] | None = None
        self._base_counters: dict = {}
        self._keep_tables = True                # process() returns tables; run() does not
        self._out_checked = False
        self._closer = None                     # closes parts in parallel during run()
        self._committer = None                  # runs one commit in the background in run()
        self._pending_commit = None
        self.sink_threads = int(sink_threads)

    # -------------------------------------------------------------------- sinks
    def _build_sinks(self) -> None:
        out = self.out_dir
        for name in self.clients:
            c = self.config.clients[name]
            user = self._user_sinks.get(name)
            kind = c.sink.kind if c.sink else "parquet"
            if user is not None:
                self._sinks[name] = user if isinstance(user, Sink) else CallbackSink(user)
            elif kind == "callback":
                raise ConfigError(f"clients.{name}.sink: kind \"callback\" needs a callable: "
                                  f"Pipeline(config, sinks={{{name!r}: fn}})")
            elif out is not None:
                comp = c.sink.compression if c.sink else None
                self._sinks[name] = PartSink(os.path.join(out, "clients", name), kind, comp)
            plan = self.plans.plan(name, self.source)
            if kind == "ndjson" and plan.raw_json and name in self._sinks:
                self._raw_clients.add(name)
            if out is not None:
                self._comp_sinks[name] = PartSink(
                    os.path.join(out, "clients", name, "compliance"), "parquet", schema=COMPLIANCE)
        if out is not None:
            for part, schema in (("audit", AUDIT), ("denials", DENIALS), ("ledger", LEDGER)):
                self._run_sinks[part] = PartSink(os.path.join(out, "audit", part), "parquet",
                                                 schema=schema, store_schema=stores_schema(schema))
            self._run_sinks["rejects"] = PartSink(os.path.join(out, "rejects"), "parquet",
                                                  schema=REJECTS)

    def new_entitlements(self, compliance: ComplianceState) -> Entitlements:
        """An entitlement stage for this pipeline's plans and source (``entitlements_factory``;
        with ``out_dir``, spilling old deliveries to ``state/delivered/``)."""
        return self.entitlements_factory(self.plans, compliance, self.source, **self._ent_args)

    def _all_sinks(self) -> list[Sink]:
        return ([self._sinks[c] for c in self.clients if c in self._sinks]
                + [self._comp_sinks[c] for c in self.clients if c in self._comp_sinks]
                + [self._run_sinks[k] for k in sorted(self._run_sinks)])

    # -------------------------------------------------------------------- embedding
    def process(self, chunk, source: str = "<stream>", offset: int | None = None
                ) -> dict[str, pa.Table]:
        """Decode a chunk (cut anywhere) and deliver what it completes: ``{client: table}``
        for every client (empty tables included). Sinks are written; file sinks commit every
        ``commit_every`` calls and at :meth:`close`."""
        self._check_out()
        dec = self.decoder
        cur, pos, _ = dec.position()
        first = None
        if cur is not None and (source != cur or (offset is not None
                                                  and offset != dec.next_offset)):
            # another source, or a jump: the decoder ends the current source's unfinished line
            # now; decode it here, while its bytes are still the raw tail
            first = self.finish()
        before = dec.stats
        res = dec.feed(chunk, source=source, offset=offset)
        raw = self._raw.add(source, bytes(chunk), offset) if self._raw_clients else None
        out = self._batch(_Batch(res, (0, 0, 0), _delta(before, dec.stats), raw))
        self._maybe_commit_embedded()
        if first:
            out = {c: pa.concat_tables([first[c], t]) if c in first else t
                   for c, t in out.items()}
        return out

    def _check_out(self) -> None:
        """Embedding into ``out_dir``: parts of an earlier session are never overwritten."""
        if self._out_checked or self.out_dir is None:
            return
        self._out_checked = True
        if _highest_part(self.out_dir) > self.part:
            raise StateError(f"{self.out_dir}: holds parts of an earlier session; restore() "
                             "continues it, or use another directory")

    def finish(self) -> dict[str, pa.Table]:
        """End the stream (its last line needs no newline) and deliver the rest."""
        dec = self.decoder
        before = dec.stats
        cur = dec.position()[0]
        res = dec.finish()
        raw = self._raw.add(cur, b"", None) if self._raw_clients and cur else None
        return self._batch(_Batch(res, (0, 0, 0), _delta(before, dec.stats), raw))

    def close(self) -> None:
        """Commit what the file sinks hold (embedding)."""
        if self._batches_since_commit:
            self._commit_sinks()

    def commit(self, position: dict | None = None) -> None:
        """Embedding: commit every sink, then (with ``out_dir``) write a checkpoint holding the
        dedupe memory, compliance and entitlement state, counters and ``position`` (your own
        JSON-able note of where the input stands, e.g. a broker sequence). Acknowledge your
        input only after this returns. The decoder must not hold an unfinished line: feed
        whole lines, or call :meth:`finish` first."""
        if self.decoder.position()[1] != self.decoder.next_offset:
            raise StateError("commit(): the decoder holds an unfinished line; feed whole "
                             "lines or call finish() first")
        self._checkpoint([], (0, 0, 0), self.decoder.dedupe_state(), dict(position or {}))

    def restore(self) -> dict | None:
        """Embedding: continue from the checkpoint in ``out_dir`` (made by :meth:`commit`):
        parts above it and temporary files are removed, the state is loaded. Returns the
        ``position`` given to that commit, or None when there is no checkpoint."""
        if self.out_dir is None:
            raise StateError("restore(): the pipeline has no out_dir")
        os.makedirs(self.out_dir, exist_ok=True)
        ck = Checkpoint.load(self.out_dir)
        if ck is not None and ck.config_hash != self.config.hash:
            raise StateError(f"{self.out_dir}: the checkpoint was made with another "
                             "configuration")
        if ck is None:
            _clean_parts(self.out_dir, None)        # temporary files only: no parts are lost
            return None
        _clean_parts(self.out_dir, ck.part)
        self._restore(ck)
        self._out_checked = True
        return dict(ck.extra)

    def _maybe_commit_embedded(self) -> None:
        if self._batches_since_commit >= self.commit_every:
            self._commit_sinks()

    # -------------------------------------------------------------------- one batch
    def _batch(self, b: _Batch) -> dict[str, pa.Table]:
        c = self.counters
        res = b.res
        tweets, comp, rejects = res.tweets, res.compliance, res.rejects
        seq = self.part + 1
        self._batches_since_commit += 1
        c.add("batches")
        self._count_decoder(b.stats)
        c.add("decode.tweets", tweets.num_rows)
        c.add("decode.compliance", comp.num_rows)
        c.add("decode.rejects", rejects.num_rows)
        if rejects.num_rows:
            for r, n in _value_counts(rejects.column("reason")):
                c.add(f"decode.rejects.{r}", n)
        if comp.num_rows:
            for k, n in _value_counts(comp.column("kind")):
                c.add(f"compliance.kind.{k}", n)
        self._time("decode", b.decode_s)

        t0 = time.perf_counter()
        forward = self.entitlements.forward(comp)
        events_before = self.compliance.events
        self.compliance.apply(comp)
        c.add("compliance.in", comp.num_rows)
        c.add("compliance.applied", self.compliance.events - events_before)
        c.add("compliance.ignored", comp.num_rows - (self.compliance.events - events_before))
        for client, t in forward.items():
            c.add("compliance.forwarded", t.num_rows)
        t1 = time.perf_counter()
        routed = b.routed                       # matched on the decode thread (run())
        if routed is None:
            routed = self.router.route(tweets)
        c.add("route.in", tweets.num_rows)
        c.add("route.matched", tweets.num_rows - routed.unmatched)
        c.add("route.unmatched", routed.unmatched)
        c.add("route.pairs", routed.matched_pairs)
        t2 = time.perf_counter()
        result = self.entitlements.apply(tweets, routed.by_client, source=self.source)
        for client, outcome, reason, rows in zip(*(result.audit.column(k).to_pylist() for k in
                                                   ("client", "outcome", "reason", "rows"))):
            if outcome == "matched":
                c.add("entitle.in", rows)
                c.add(f"client.{client}.matched", rows)
            elif outcome == "delivered":
                c.add("entitle.delivered", rows)
                c.add(f"client.{client}.delivered", rows)
            else:
                c.add(f"entitle.denied.{reason}", rows)
                c.add("entitle.denied", rows)
                c.add(f"client.{client}.denied", rows)
        t3 = time.perf_counter()
        self._time("compliance", t1 - t0)
        self._time("route", t2 - t1 + b.route_s)
        self._time("entitle", t3 - t2)

        def write() -> dict[str, pa.Table]:
            t4 = time.perf_counter()
            out: dict[str, pa.Table] = {}
            for client in self.clients:
                d = result.delivered.get(client)
                if d is None:
                    continue
                sink = self._sinks.get(client)
                if sink is None and not keep:
                    continue
                # a file sink takes the delivery itself and materialises its rows when it
                # writes them (in the background, at the commit), not on this thread
                lazy = not keep and type(sink) is PartSink     # (a subclass gets tables)
                table = d if lazy else d.table()
                if keep:
                    out[client] = table
                if sink is not None and table.num_rows:
                    raw = self._raw_lines(b, d) if client in self._raw_clients else None
                    sink.write(table, seq, raw)
                    c.add("sink.rows", table.num_rows)
                fwd = forward.get(client)
                if fwd is not None and client in self._comp_sinks:
                    self._comp_sinks[client].write(fwd, seq)
            if self._run_sinks:
                self._run_sinks["audit"].write(result.audit, seq)
                self._run_sinks["denials"].write(result.denials, seq)
                self._run_sinks["ledger"].write(result.ledger, seq)
                self._run_sinks["rejects"].write(rejects, seq)
            self._time("sink", time.perf_counter() - t4)
            return out

        keep = self._keep_tables
        try:
            out = write()
        except SinkError:
            self._abort()
            raise
        if self.progress is not None:
            self.progress(self)
        return out

    def _count_decoder(self, stats: dict) -> None:
        for k in ("lines", "blank", "duplicates", "bytes"):
            self.counters.add(f"decode.{k}", stats.get(k, 0))
        for k, v in stats.items():
            if k.startswith("input."):
                self.counters[k] = int(v)        # decompressed bytes read so far

    def _raw_lines(self, b: _Batch, d) -> list[bytes] | None:
        if b.raw is None or not d.num_rows:
            return None
        buf, base = b.raw
        if b.offsets is None:                     # once per batch, for every raw seat
            b.offsets = d.tweets.column("byte_offset").to_numpy() - base
        # a seat without the geo groups sees no geo in the payload either, nested copies
        # included; nor does anyone see the geo of an embedded copy whose author scrubbed it
        if b.nested is None:                      # once per batch, over two columns
            b.nested = self.compliance.scrub_nested_mask(d.tweets)
        exact, place = d.geo_grants
        return [raw_lines_with_rules(buf, b.offsets[d.rows], d.matching_rules(),
                                     d.scrub | b.nested[d.rows], exact_geo=exact, place=place)]

    def _time(self, stage: str, s: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + s

    # -------------------------------------------------------------------- commit
    def _commit_sinks(self) -> None:
        """Commit every sink now (embedding, and the end of a run)."""
        self._finish_commit(self._stage_commit(), None)

    def _stage_commit(self) -> list[PartSink]:
        """First half of a commit, on the caller's thread: take every open part off its sink
        (the sinks go on with the next part number) and commit the sinks without parts."""
        if not self._batches_since_commit:
            return []
        parts = []
        try:
            for s in self._all_sinks():
                if isinstance(s, PartSink):
                    part = s.detach()
                    if part is not None:
                        parts.append(part)
                else:
                    s.commit()
        except SinkError:
            for p in parts:
                p.abort()
            self._abort()
            raise
        self.part += 1
        self._batches_since_commit = 0
        return parts

    def _finish_commit(self, parts: list[PartSink], ck: Checkpoint | None,
                       spilled=(), retired=()) -> None:
        """Second half: close the parts (their buffered rows are encoded and compressed
        without the GIL, spread over the sink threads), make them durable together (one
        syncfs, not an fsync per file) with the spill files the checkpoint names (``spilled``),
        rename them into place, make the renames durable, and only then write the checkpoint;
        then delete the spill files merged away before its state (``retired``: no longer
        named). Runs on the committer thread during :meth:`run`."""
        t0 = time.perf_counter()
        staged = []
        try:
            if self._closer is not None and len(parts) > 1:
                futs = [(p, self._closer.submit(p.close_part, False)) for p in parts]
                error = None
                for p, f in futs:                   # every close finishes before we go on
                    try:
                        st = f.result()
                    except BaseException as e:  # noqa: BLE001 - raised below, after the rest
                        error = error or e
                        continue
                    if st is not None:
                        staged.append((p, st))
                if error is not None:
                    raise error
            else:
                for p in parts:
                    st = p.close_part(fsync=False)
                    if st is not None:
                        staged.append((p, st))
            if staged or spilled:
                sync_all(self.out_dir or os.path.dirname(staged[0][1][1]),
                         [tmp for _, (tmp, _) in staged] + list(spilled))
                self.entitlements.mark_synced(spilled)   # (still listed if this failed)
            for s, st in staged:
                s.publish(st)
            if staged:
                sync_all(self.out_dir or os.path.dirname(staged[0][1][1]), [])
            if ck is not None:
                ck.save(self.out_dir)
                if retired:
                    self.entitlements.remove_retired(retired)
        except BaseException:
            for p in parts:                         # the parts not closed yet: their .tmp
                p.abort()
            for _, (tmp, _) in staged:
                _unlink(tmp)
            raise
        finally:
            self._time("commit.background", time.perf_counter() - t0)

    def _wait_commit(self) -> None:
        """Wait for the commit running in the background (if any); raise its error."""
        fut, self._pending_commit = self._pending_commit, None
        if fut is not None:
            fut.result()

    def _abort(self) -> None:
        for s in self._all_sinks():
            s.abort()

    def _checkpoint(self, inputs: list[str], position, snapshot: bytes, extra: dict) -> None:
        """A commit and then its checkpoint (with ``out_dir``; ``extra`` is stored with it).
        During :meth:`run` the parts are closed in the background while the next batches are
        processed: at most one commit is in flight, its checkpoint is written only after its
        parts are in place, and an error in it is raised here at the next commit (or at the
        end of the run). Embedding commits finish here."""
        t0 = time.perf_counter()
        self._wait_commit()
        parts = self._stage_commit()
        try:
            ck, spilled, retired = None, [], []
            if self.out_dir is not None:
                idx, off, lines = position
                # the spill files this state names are made durable with the parts, on
                # the committer thread, before the checkpoint is written
                ck = Checkpoint(self.config.hash, inputs, self.part, idx, off, lines,
                                self.entitlements.batch, dict(self.counters), snapshot,
                                self.compliance.to_bytes(),
                                self.entitlements.state_to_bytes(sync=False), extra)
                spilled = self.entitlements.unsynced_files()
                retired = self.entitlements.retired_files()
            if self._committer is not None:
                self._pending_commit = self._committer.submit(self._finish_commit, parts, ck,
                                                              spilled, retired)
                return self._time("commit", time.perf_counter() - t0)
        except BaseException:                   # (e.g. Ctrl-C while the state is serialised)
            for p in parts:                     # nobody else owns the detached parts
                p.abort()
            raise
        self._finish_commit(parts, ck, spilled, retired)
        self._time("commit", time.perf_counter() - t0)

    # -------------------------------------------------------------------- replay
    def run(self, paths, *, resume: bool = False, overwrite: bool = False) -> Report:
        """Replay captures (paths, globs, ``-`` for stdin) through every client."""
        t_start = time.perf_counter()
        inputs = expand_paths(paths)
        if not inputs:
            raise InputError("no input given")
        names = [_STDIN if p == "-" else p for p in inputs]
        start = (0, 0, 0)
        resumed_from = None
        if self.out_dir is not None:
            try:
                ck = self._prepare_out(inputs, resume, overwrite)
            except OSError as e:
                raise StateError(f"{e.filename or self.out_dir}: cannot prepare the output "
                                 f"directory: {e.strerror or e}") from None
            if ck is not None:
                if ck.input_index < len(inputs) and inputs[ck.input_index] == "-":
                    raise InputError("-: standard input cannot be resumed")
                self._restore(ck)
                start = (ck.input_index, ck.offset, ck.lines)
                resumed_from = ck.part
            self._write_plans()
        self.decoder.register_sources(names)
        if start[1] or start[2]:
            self.decoder.seek(names[start[0]], start[1], start[2])
        items: Iterator[_Batch] = self._decoded(inputs, names, start)
        if self.readahead > 0:
            items = prefetch(items, self.readahead)
        end_snapshot = None
        self._closer = ThreadPoolExecutor(self.sink_threads, thread_name_prefix="firehose-sink") \
            if self.sink_threads > 1 else None
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="firehose-commit")
        self._keep_tables = False
        options = {"options": self._options()}
        try:
            for item in items:
                if isinstance(item, _End):
                    end_snapshot = item.snapshot
                    self._count_decoder(item.stats)
                    break
                self._batch(item)
                if item.snapshot is not None:
                    self._checkpoint(inputs, item.position, item.snapshot, options)
            self._checkpoint(inputs, (len(inputs), 0, 0), end_snapshot or b"", options)
            t0 = time.perf_counter()
            self._wait_commit()
            self._time("commit", time.perf_counter() - t0)
        except BaseException:
            try:
                self._wait_commit()     # no part is being written once we return
            except BaseException:       # noqa: BLE001 - the first error is the one raised
                pass
            finally:
                self._abort()
            raise
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            self.entitlements.close()       # (a spill merge in progress: its .tmp goes)
            self._committer.shutdown(wait=True)
            self._committer = None
            if self._closer is not None:
                self._closer.shutdown(wait=True)
                self._closer = None
            self._keep_tables = True
        report = Report(dict(self.counters), self.clients, time.perf_counter() - t_start,
                        dict(self.stage_seconds), [], self.out_dir, resumed_from,
                        base_counters=dict(self._base_counters))
        report.inputs = _describe_inputs(inputs, self.counters)
        if self.out_dir is not None:
            self._write_manifest(inputs, report)
        return report

    def _decoded(self, inputs, names, start) -> Iterator["_Batch | _End"]:
        """Decode thread: batches of the inputs from ``start``, each with what a checkpoint
        after it needs (position and, when it ends a commit, the dedupe memory). Decoder
        counters of windows that yield nothing ride on the next batch."""
        dec = self.decoder
        nbatch = self.entitlements.batch
        raw = _RawTail() if self._raw_clients else None
        pending: dict[str, int] = {}

        def batch(res, pos, before, rb, t0):
            nonlocal nbatch
            delta = _merge(_delta(before, dec.stats), pending)
            pending.clear()
            nbatch += 1
            b = _Batch(res, pos, delta, rb)
            if nbatch % self.commit_every == 0:
                b.snapshot = dec.dedupe_state()
            t1 = time.perf_counter()
            b.decode_s = t1 - t0
            # rule matching needs nothing but the batch (the rules are fixed for a run) and
            # runs without the GIL: done here, it overlaps the main thread's previous batch
            b.routed = self.router.route(res.tweets)
            b.route_s = time.perf_counter() - t1
            return b

        for i in range(start[0], len(inputs)):
            path, name = inputs[i], names[i]
            begin = start[1] if i == start[0] else 0
            chunks = iter_chunks(path, self.batch_bytes, start=begin)
            if self.readahead > 0:
                chunks = prefetch(chunks, self.readahead)
            for data, off in chunks:
                t0 = time.perf_counter()
                before = dec.stats
                res = dec.feed(data, source=name, offset=off)
                pending[f"input.{i}.bytes"] = off + len(data)    # a position: resume-safe
                rb = raw.add(name, data, off) if raw is not None else None
                if _empty(res):
                    _merge(pending, _delta(before, dec.stats))
                    continue
                _, p_off, p_lines = dec.position()
                yield batch(res, (i, p_off, p_lines), before, rb, t0)
            t0 = time.perf_counter()
            before = dec.stats
            res = dec.finish()
            if _empty(res):
                _merge(pending, _delta(before, dec.stats))
                continue
            rb = raw.add(name, b"", None) if raw is not None else None
            yield batch(res, (i + 1, 0, 0), before, rb, t0)
        yield _End(dec.dedupe_state(), dict(pending))

    # -------------------------------------------------------------------- out dir, state
    def _prepare_out(self, inputs, resume: bool, overwrite: bool) -> Checkpoint | None:
        out = self.out_dir
        ck = Checkpoint.load(out) if os.path.isdir(out) else None
        done = os.path.exists(os.path.join(out, MANIFEST_NAME))
        ours = existing_outputs(out)
        if ours and not resume and not overwrite:
            raise StateError(f"{out}: holds the output of an earlier run; --resume continues "
                             "it, --overwrite replaces it")
        if overwrite and not resume:
            remove_outputs(out, ours)
            ck, done = None, False
        os.makedirs(out, exist_ok=True)
        if ck is not None:
            if ck.config_hash != self.config.hash:
                raise StateError(f"{out}: the checkpoint was made with another configuration "
                                 f"(config hash {ck.config_hash[:12]}, now {self.config.hash[:12]})")
            if ck.inputs != list(inputs):
                raise StateError(f"{out}: the checkpoint was made for other inputs "
                                 f"({', '.join(ck.inputs)})")
            want = ck.extra.get("options")
            if want is not None and want != self._options():
                raise StateError(f"{out}: the checkpoint was made with other options "
                                 f"({json.dumps(want, sort_keys=True)}); resume with those")
        if done and ck is not None:
            os.unlink(os.path.join(out, MANIFEST_NAME))   # re-made identically at the end
        _clean_parts(out, ck.part if ck is not None else 0)
        return ck

    def _options(self) -> dict:
        """What decides a run's batches and outputs besides inputs and configuration."""
        return {"batch_bytes": self.batch_bytes, "commit_every": self.commit_every,
                "source": self.source,
                "dedupe_window_hours": self._dec_args["dedupe_window_hours"]}

    def _restore(self, ck: Checkpoint) -> None:
        self.decoder = Decoder(dedupe_state=ck.dedupe or None, **self._dec_args)
        self.compliance = ComplianceState.from_bytes(ck.compliance) if ck.compliance \
            else ComplianceState()
        self.entitlements = self.new_entitlements(self.compliance)
        if ck.entitlements:
            # the durable checkpoint: spill files it does not name are a crashed run's
            self.entitlements.load_state(ck.entitlements, clean=True)
        self.counters = Counters(ck.counters)
        self._base_counters = dict(ck.counters)
        self.part = ck.part

    def _write_plans(self) -> None:
        t = self.entitlements.plan_versions()
        sink = pa.BufferOutputStream()
        pq.write_table(t, sink, compression="zstd")
        atomic_write(os.path.join(self.out_dir, "audit", "plans.parquet"),
                     sink.getvalue().to_pybytes())

    def _write_manifest(self, inputs, report: Report) -> None:
        from . import __version__
        out = self.out_dir
        outputs = list_outputs(out, skip_dirs=(STATE_DIR,))
        manifest = {
            "firehose": __version__, "pyarrow": pa.__version__,
            "config": {"origin": str(self.config.origin), "hash": self.config.hash},
            "plans": {"version": self.plans.version, "hash": self.plans.hash},
            "source": self.source,
            "options": {"batch_bytes": self.batch_bytes, "commit_every": self.commit_every,
                        "dedupe_window_hours": self._dec_args["dedupe_window_hours"]},
            "inputs": report.inputs, "parts": self.part,
            "counters": dict(sorted(report.counters.items())), "outputs": outputs,
        }
        atomic_write(os.path.join(out, MANIFEST_NAME),
                     (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())


# ------------------------------------------------------------------------------ helpers

def resolve_source(config: Config, source: str | None) -> str:
    """The configured source the captures come from: the one named, or the only one."""
    if source is None:
        if len(config.sources) != 1:
            raise ConfigError(f"{config.origin}: {len(config.sources)} sources configured; "
                              "name the one the captures come from (source=...)")
        return next(iter(config.sources))
    if source not in config.sources:
        raise ConfigError(f"{config.origin}: no source {source!r} (sources: "
                          f"{', '.join(sorted(config.sources)) or 'none'})")
    return source


@dataclass
class _End:
    snapshot: bytes
    stats: dict


class _RawTail:
    """Keeps the bytes of the unfinished last line between chunks, so every line a batch
    finished can be found again (for NDJSON re-emission of the original payload)."""

    def __init__(self):
        self.source = None
        self.tail = b""
        self.tail_off = 0

    def add(self, source, data: bytes, offset: int | None) -> tuple[bytes, int]:
        if source != self.source or (offset is not None
                                     and offset != self.tail_off + len(self.tail)):
            self.tail, self.tail_off = b"", (offset or 0)
        self.source = source
        buf, base = self.tail + data, self.tail_off
        nl = buf.rfind(b"\n")
        if data:
            self.tail, self.tail_off = buf[nl + 1:], base + nl + 1
        else:                        # the end of the source: its last line is finished
            self.tail, self.tail_off = b"", base + len(buf)
        return buf, base


def _empty(res: DecodeResult) -> bool:
    return not (res.tweets.num_rows or res.compliance.num_rows or res.rejects.num_rows)


def _delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def _merge(into: dict, more: dict) -> dict:
    """Add counter deltas; ``input.*`` entries are positions and replace."""
    for k, v in more.items():
        into[k] = v if k.startswith("input.") else into.get(k, 0) + v
    return into


def _value_counts(col) -> list[tuple[str, int]]:
    vc = pc.value_counts(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    return sorted((str(v), int(n)) for v, n in zip(vc.field("values").to_pylist(),
                                                   vc.field("counts").to_pylist()))


#: the run's own state beside the checkpoint (not an output: not in the manifest)
STATE_DIR = "state"
#: what a run writes at the top of its output directory
OUTPUT_NAMES = ("clients", "audit", "rejects", STATE_DIR, CHECKPOINT_NAME, MANIFEST_NAME)


def existing_outputs(out: str, names=OUTPUT_NAMES) -> list[str]:
    """Which of ``names`` the output directory already holds."""
    return [n for n in names if os.path.exists(os.path.join(out, n))]


def remove_outputs(out: str, names) -> None:
    for n in names:
        p = os.path.join(out, n)
        shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)


def _clean_parts(out: str, committed: int | None) -> None:
    """Remove temporary files and parts numbered above ``committed`` (an interrupted commit;
    None: temporary files only)."""
    for root, _, files in os.walk(out):
        for f in files:
            m = PART_RE.match(f)
            if f.endswith(".tmp") or (m and committed is not None and int(m.group(1)) > committed):
                os.unlink(os.path.join(root, f))


def _highest_part(out: str) -> int:
    top = 0
    for _, _, files in os.walk(out):
        for f in files:
            m = PART_RE.match(f)
            if m:
                top = max(top, int(m.group(1)))
    return top


def list_outputs(out: str, skip_dirs=()) -> list[dict]:
    """Every output file under ``out`` (not the manifest, the checkpoint, temporary files or
    the directories ``skip_dirs`` directly under ``out``), sorted, with its size and XXH3-128:
    the manifest's ``outputs``."""
    outputs = []
    for root, dirs, files in os.walk(out):
        dirs[:] = sorted(d for d in dirs if root != out or d not in skip_dirs)
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, out)
            if rel in (MANIFEST_NAME, CHECKPOINT_NAME) or f.endswith(".tmp"):
                continue
            outputs.append({"path": rel.replace(os.sep, "/"), "bytes": os.path.getsize(p),
                            "xxh3_128": _file_hash(p)})
    return outputs


def _file_hash(path: str) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _describe_inputs(inputs, counters) -> list[dict]:
    out = []
    for i, p in enumerate(inputs):
        d = {"path": p, "decompressed_bytes": int(counters.get(f"input.{i}.bytes", 0))}
        if p != "-":
            try:
                d["bytes"] = os.path.getsize(p)
                d["xxh3_128"] = _file_hash(p)
            except OSError as e:
                raise InputError(f"{p}: cannot read: {e.strerror or e}") from None
        out.append(d)
    return out


def format_summary(r: Report) -> str:
    g = r.get
    lines = []

    def reasons(prefix: str) -> str:
        items = [(k, v) for k, v in r.counters.items() if k.startswith(prefix)
                 and "." not in k[len(prefix):]]
        return ", ".join(f"{k[len(prefix):]} {v:,}" for k, v in sorted(items, key=lambda x: -x[1]))

    base = r.base_counters or {}
    tweets_now = g("decode.tweets") - int(base.get("decode.tweets", 0))
    mb = (g("decode.bytes") - int(base.get("decode.bytes", 0))) / 1e6
    rate = tweets_now / r.seconds if r.seconds else 0.0
    lines.append(f"replayed {len(r.inputs)} input(s), {mb:,.1f} MB in {r.seconds:,.2f} s: "
                 f"{rate:,.0f} tweets/s, {mb / r.seconds if r.seconds else 0:,.1f} MB/s"
                 + (f" (this session, resumed after part {r.resumed_from}; the counters below "
                    "cover the whole run)" if r.resumed_from is not None else ""))
    lines.append(f"{'stage':<11}{'in':>14}{'out':>14}{'dropped':>12}  by reason")
    rows = [
        ("decode", g("decode.lines"), g("decode.tweets"),
         g("decode.duplicates") + g("decode.rejects") + g("decode.blank"),
         "; ".join(x for x in (f"duplicates {g('decode.duplicates'):,}",
                               f"rejects {g('decode.rejects'):,}"
                               + (f" ({reasons('decode.rejects.')})" if g("decode.rejects") else ""),
                               f"blank {g('decode.blank'):,}",
                               f"compliance events {g('decode.compliance'):,} (not tweets)"))),
        ("compliance", g("compliance.in"), g("compliance.applied"), g("compliance.ignored"),
         f"forwarded to clients {g('compliance.forwarded'):,}"),
        ("route", g("route.in"), g("route.matched"), g("route.unmatched"),
         f"_unmatched {g('route.unmatched'):,}; (tweet, client) pairs {g('entitle.in'):,}"),
        ("entitle", g("entitle.in"), g("entitle.delivered"), g("entitle.denied"),
         reasons("entitle.denied.")),
        ("sink", g("entitle.delivered"), g("sink.rows"),
         g("entitle.delivered") - g("sink.rows"), ""),
    ]
    for name, a, b, d, why in rows:
        lines.append(f"{name:<11}{a:>14,}{b:>14,}{d:>12,}  {why}")
    lines.append(f"{'client':<16}{'matched':>10}{'delivered':>11}{'denied':>9}  output")
    for c in r.clients:
        where = os.path.join(r.out_dir, "clients", c) if r.out_dir else "-"
        lines.append(f"{c:<16}{g(f'client.{c}.matched'):>10,}{g(f'client.{c}.delivered'):>11,}"
                     f"{g(f'client.{c}.denied'):>9,}  {where}")
    if r.stage_seconds:
        lines.append("seconds by stage: " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(r.stage_seconds.items(), key=lambda x: -x[1])))
    return "\n".join(lines)
