"""Live ingestion: consume the firehose from NATS JetStream, deliver each match once.

    consumer = Consumer("nats://127.0.0.1:4222", "FIREHOSE", "clients.toml", "out/")
    report = asyncio.run(consumer.run())          # until stop() / SIGTERM (or drained)

or ``firehose consume nats://127.0.0.1:4222 --stream FIREHOSE -c clients.toml -o out/``.

**The loop.** A durable pull consumer; each round fetches at most ``batch`` messages (each
holds one or more whole NDJSON lines), joins their data into one chunk, hands it to
:meth:`Pipeline.process` (in a worker thread, so the connection keeps being served), and after
``commit_every`` rounds (or as soon as the stream is caught up) calls
:meth:`Pipeline.commit` with the position ``{"stream_seq": last stream sequence, ...}``; only
then are the messages acknowledged. Nothing else is buffered: memory is one batch, and a slow
sink slows the fetches (the broker holds the rest; ``max_ack_pending`` caps what is delivered
and unacknowledged).

**Position.** The checkpoint, not the broker, owns the position. On start the consumer
restores it and makes sure the next message delivered is the first one after it: the durable
consumer is kept when it has nothing in flight and has delivered no further than the
checkpoint (messages it redelivers are at or below the committed sequence and are acknowledged
without being processed), otherwise it is re-created to start at ``stream_seq + 1``. A message
whose stream sequence is at or below the highest one already processed (an ``ack_wait``
redelivery) is skipped the same way; the decoder's dedupe absorbs tweets sent twice by the
publisher. A gap in the sequence that the stream still holds (a delivery went missing) makes
the consumer commit and re-seat itself at the first missing message. The checkpoint also
records the stream's creation time: a stream deleted and re-created (or reset) behind the
committed sequence is refused with a StateError rather than silently skipped up to it.

**Failures.** A broker call that fails or times out raises :class:`BrokerError`
(``mid_run`` once the consumer is running: a restart continues from the checkpoint); PubAcks
not all received within ``max(5, ack_wait)`` seconds raise SinkError. Either way nothing
after the last commit is acknowledged.

**Publishing** (``publish=True``): each client's rows go out as NDJSON, one row per message,
on ``<prefix>.<client>``, to a JetStream stream (created when missing) with a duplicate window;
each message carries ``Nats-Msg-Id: <client>:<tweet id>``. The batch's rows are published and
their PubAcks awaited before the commit; a crash in between re-publishes the same rows after
the restart, and the server drops them as duplicates as long as that happens within the
duplicate window. A row larger than the server's ``max_payload`` is split into chunks
(``Firehose-Chunk: i/n``, ids ``<client>:<id>:<i>``).

**Configuration** changes take effect between batches: on :meth:`reload` (SIGHUP) or when the
file's contents change, everything in flight is committed and acknowledged, then a pipeline
built on the new configuration takes over the state (dedupe memory, compliance, caps, delivered
ids, counters) with the plan version incremented; the audit rows and ``audit/plans.parquet``
carry the version in force. A copy of every configuration used is kept in ``OUT/live/configs/``
so that a restart with an edited file resumes from the checkpoint's configuration and then
switches at the first batch.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from .checkpoint import Checkpoint
from .config import Config, load, loads
from .entitlements import Entitlements, compile_plans
from .errors import ConfigError, FirehoseError, SinkError, StateError
from .pipeline import Pipeline
from .sinks import Sink, atomic_write, ndjson_lines

__all__ = ["Consumer", "LiveReport", "BrokerError", "PublishSink", "publish_lines",
           "DEFAULT_DURABLE", "DEFAULT_OUT_PREFIX", "DEFAULT_OUT_STREAM"]

DEFAULT_DURABLE = "firehose"
DEFAULT_OUT_PREFIX = "firehose.out"
DEFAULT_OUT_STREAM = "FIREHOSE_OUT"
_NO_COMMIT = 1 << 62            # Pipeline.process never commits on its own: we do, per round
_HDR_SLACK = 256                # bytes kept free of max_payload for the protocol line/headers


class BrokerError(FirehoseError, ConnectionError):
    """The broker cannot be reached, or a stream / consumer operation failed. ``mid_run``:
    it happened after the consumer was running (a restart continues from the checkpoint),
    not while starting."""

    def __init__(self, message: str, *, mid_run: bool = False):
        super().__init__(message)
        self.mid_run = mid_run


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}{': ' + str(e) if str(e) else ''}"


def _nats():
    try:
        import nats  # noqa: F401
        import nats.errors
        import nats.js.api
        import nats.js.errors
    except ImportError:
        raise BrokerError("live ingestion needs nats-py: pip install 'firehose[live]'") from None
    return nats


def _subject_token(name: str) -> str:
    """A client name as one subject token (``.``, ``*``, ``>`` and white space replaced)."""
    return "".join("_" if (c in ".*>" or c.isspace()) else c for c in name) or "_"


# ------------------------------------------------------------------------------ publishing sink

class PublishSink(Sink):
    """Holds one batch's rows of one client until the consumer publishes them (a list that
    is emptied every round, so it never grows beyond a batch). ``batch_ids`` is filled by
    the pipeline's entitlement step (:class:`_IdTap`) with each client's delivered tweet ids,
    in the order of the rows written next: the message ids come from them, whatever columns
    the client's plan projects."""

    def __init__(self, client: str, batch_ids: dict | None = None):
        self.client = client
        self.batch_ids = batch_ids if batch_ids is not None else {}
        self.pending: list[tuple[pa.Table, list[bytes] | None, list | None]] = []
        self._rows = 0

    def write(self, table, seq, raw=None):
        if table.num_rows:
            ids = self.batch_ids.pop(self.client, None)
            if ids is not None and len(ids) != table.num_rows:
                raise SinkError(f"publishing {self.client}: {table.num_rows} rows but "
                                f"{len(ids)} tweet ids")
            self.pending.append((table, raw, ids))
            self._rows += table.num_rows

    def take(self):
        out, self.pending = self.pending, []
        return out

    @property
    def rows(self) -> int:
        return self._rows


def _row_messages(client: str, table: pa.Table, raw, limit: int, ids=None):
    """(msg id, payload, chunk label or None) per row: NDJSON, one row a message, split into
    chunks of at most ``limit`` bytes when a row is larger. The message id is
    ``<client>:<tweet id>``, the tweet ids given in ``ids`` (one per row) or else the table's
    ``id`` column: stable across restarts (so the server's duplicate window drops a
    re-publish) and distinct for distinct tweets whatever the rows hold."""
    lines = raw if raw is not None else ndjson_lines(table).split(b"\n")[:-1]
    if ids is None:
        if "id" not in table.column_names:
            raise SinkError(f"publishing {client}: no tweet ids for its rows")
        ids = table.column("id").to_pylist()
    if len(ids) != len(lines):
        raise SinkError(f"publishing {client}: {len(lines)} rows but {len(ids)} tweet ids")
    for tid, line in zip(ids, lines):
        if tid is None:
            raise SinkError(f"publishing {client}: a row without a tweet id")
        if not line.endswith(b"\n"):
            line += b"\n"
        key = f"{client}:{int(tid)}"
        if len(line) <= limit:
            yield key, line, None
        else:
            n = -(-len(line) // limit)
            for i in range(n):
                yield f"{key}:{i + 1}", line[i * limit:(i + 1) * limit], f"{i + 1}/{n}"


class _IdTap(Entitlements):
    """The entitlement step, also noting each batch's delivered tweet ids per client (in the
    order of the rows its sink is given) into ``batch_ids`` for the PublishSinks:
    a plan need not project ``id``, and the pipeline hands sinks only the projected rows."""

    def __init__(self, plans, compliance, source, *, batch_ids: dict, **kw):
        super().__init__(plans, compliance, source, **kw)
        self.batch_ids = batch_ids

    def apply(self, tweets, matches, source=None):
        result = super().apply(tweets, matches, source=source)
        self.batch_ids.clear()
        for client, d in result.delivered.items():
            if d.num_rows:
                self.batch_ids[client] = (d.tweets.column("id")
                                          .take(pa.array(d.rows, pa.int64())).to_pylist())
        return result


# ------------------------------------------------------------------------------ report

@dataclass
class LiveReport:
    """What a consumer run did (the pipeline's counters are in ``counters``)."""
    counters: dict
    messages: int = 0                 # messages processed
    skipped: int = 0                  # redelivered or already committed: acknowledged only
    gaps: int = 0                     # sequence numbers gone from the stream before consumed
    batches: int = 0
    commits: int = 0
    published: int = 0                # messages published (rows or chunks)
    publish_duplicates: int = 0       # dropped by the output stream's duplicate window
    reloads: int = 0
    plan_version: int = 1
    stream_seq: int = 0               # last committed stream sequence
    seconds: float = 0.0
    latencies: list = field(default_factory=list)   # publish -> commit, seconds (recent ones)

    def get(self, key: str) -> int:
        return int(self.counters.get(key, 0))

    def summary(self) -> str:
        g = self.get
        rate = self.messages / self.seconds if self.seconds else 0.0
        lines = [f"consumed {self.messages:,} messages ({self.skipped:,} skipped as already "
                 f"committed) up to stream sequence {self.stream_seq:,} in {self.seconds:,.1f} s "
                 f"({rate:,.0f} msg/s), {self.batches:,} batches, {self.commits:,} commits, "
                 f"plan version {self.plan_version}"
                 + (f" ({self.reloads} reload(s))" if self.reloads else "")]
        lines.append(f"decode: lines {g('decode.lines'):,}, tweets {g('decode.tweets'):,}, "
                     f"duplicates {g('decode.duplicates'):,}, rejects {g('decode.rejects'):,}; "
                     f"matched pairs {g('entitle.in'):,}, delivered {g('entitle.delivered'):,}, "
                     f"denied {g('entitle.denied'):,}")
        if self.published:
            lines.append(f"published {self.published:,} messages "
                         f"({self.publish_duplicates:,} dropped as duplicates by the server)")
        if self.gaps:
            lines.append(f"warning: {self.gaps:,} stream sequence number(s) were gone "
                         "(retention) before they were consumed")
        if self.latencies:
            xs = sorted(self.latencies)
            p = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3  # noqa: E731
            lines.append(f"latency publish->commit: p50 {p(0.5):,.1f} ms, p99 {p(0.99):,.1f} ms")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ the consumer

class Consumer:
    """Consume ``stream`` from the NATS server at ``url`` through the clients of
    ``config_path`` into ``out_dir`` (files as a replay writes them, plus the checkpoint), or
    with ``publish=True`` onto per-client subjects (``out_dir`` then holds the audit and the
    checkpoint).

    Parameters: ``batch`` messages per fetch; ``commit_every`` fetch rounds per commit (a
    round that finds the stream caught up commits at once); ``max_ack_pending`` (default
    ``batch * commit_every * 2``); ``ack_wait`` seconds; ``durable`` consumer name;
    ``drain``: stop once the consumer has nothing pending; ``reload_check`` seconds between
    looks at the config file (None: only :meth:`reload`); ``sinks`` overrides client sinks
    (embedding, tests); ``log`` gets one-line notes (default: stderr).
    """

    def __init__(self, url: str, stream: str, config_path: str, out_dir: str, *,
                 publish: bool = False, out_prefix: str = DEFAULT_OUT_PREFIX,
                 out_stream: str = DEFAULT_OUT_STREAM, dup_window: float = 300.0,
                 durable: str = DEFAULT_DURABLE, batch: int = 256, commit_every: int = 1,
                 max_ack_pending: int | None = None, ack_wait: float = 30.0,
                 fetch_timeout: float = 0.5, drain: bool = False,
                 reload_check: float | None = 1.0, source: str | None = None,
                 sinks: Mapping[str, "Callable | Sink"] | None = None,
                 connect_timeout: float = 2.0, log: Callable[[str], None] | None = None):
        if batch < 1 or commit_every < 1:
            raise ValueError("batch and commit_every must be positive")
        self.url = url
        self.stream = stream
        self.config_path = os.fspath(config_path)
        self.out_dir = os.fspath(out_dir)
        self.publish = publish
        self.out_prefix = out_prefix.rstrip(".")
        self.out_stream = out_stream
        self.dup_window = float(dup_window)
        self.durable = durable
        self.batch = int(batch)
        self.commit_every = int(commit_every)
        self.max_ack_pending = int(max_ack_pending or self.batch * self.commit_every * 2)
        if self.max_ack_pending < self.batch:
            raise ValueError("max_ack_pending must be at least batch")
        self.ack_wait = float(ack_wait)
        self.fetch_timeout = float(fetch_timeout)
        self.drain = drain
        self.reload_check = reload_check
        self.source = source
        self.user_sinks = dict(sinks or {})
        self.connect_timeout = float(connect_timeout)
        self.log = log or (lambda m: print(f"firehose consume: {m}", file=sys.stderr,
                                           flush=True))
        self.source_name = f"nats:{stream}"
        self.latencies: collections.deque = collections.deque(maxlen=1 << 18)
        self.pipe: Pipeline | None = None
        self.report = LiveReport({})
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pub_sinks: dict[str, PublishSink] = {}
        self._batch_ids: dict[str, list] = {}   # a batch's delivered tweet ids (publishing)
        self.pub_ack_timeout = max(5.0, self.ack_wait)   # seconds to wait for PubAcks
        self.started = False             # past start-up: broker failures are mid-run
        self._stream_created: str | None = None   # the stream's creation time (ISO)
        self._ck_created: str | None = None       # ... as the checkpoint recorded it
        self._offset = 0                 # bytes of the stream's data fed to the decoder
        self._lines = 0
        self._processed = 0              # highest stream sequence processed
        self._committed = 0              # highest stream sequence committed
        self._plan_version = 1
        self._cfg_stat = None
        self._last_check = 0.0
        self.max_held = 0                # most messages held unacknowledged at once
        self.t_first = self.t_last = None  # first message fetched, last commit (perf_counter)

    # ---------------------------------------------------------------- control (any thread)
    def stop(self) -> None:
        """Finish the current batch, commit, acknowledge and return from :meth:`run`."""
        self._stop.set()

    def reload(self) -> None:
        """Re-read the configuration at the next batch boundary."""
        self._reload.set()

    # ---------------------------------------------------------------- pipeline, config
    def _config_copy(self, h: str) -> str:
        return os.path.join(self.out_dir, "live", "configs", f"{h}.toml")

    def _keep_config(self, cfg: Config, text: str) -> None:
        p = self._config_copy(cfg.hash)
        if not os.path.exists(p):
            atomic_write(p, text.encode())

    def _read_config(self) -> tuple[Config, str]:
        try:
            with open(self.config_path, "rb") as f:
                data = f.read()
            st = os.stat(self.config_path)
        except OSError as e:
            raise ConfigError(f"{self.config_path}: cannot read: {e.strerror or e}") from None
        self._cfg_stat = (st.st_mtime_ns, st.st_size)
        text = data.decode("utf-8-sig")
        return loads(text, source=self.config_path), text

    def _sinks_for(self, cfg: Config) -> tuple[dict, dict[str, PublishSink]]:
        """The sinks of a pipeline on ``cfg`` and, publishing, its PublishSinks (the caller
        makes them the ones :meth:`_publish` reads once that pipeline is in use)."""
        sinks = {c: s for c, s in self.user_sinks.items() if c in cfg.clients}
        pub: dict[str, PublishSink] = {}
        if self.publish:
            pub = {c: PublishSink(c, self._batch_ids) for c in sorted(cfg.clients)
                   if c not in self.user_sinks}
            sinks.update(pub)
        return sinks, pub

    def _new_pipeline(self, cfg: Config, version: int
                      ) -> tuple[Pipeline, dict[str, PublishSink]]:
        sinks, pub = self._sinks_for(cfg)
        pipe = Pipeline(cfg, out_dir=self.out_dir, sinks=sinks,
                        source=self.source, commit_every=_NO_COMMIT, readahead=0)
        if version != pipe.plans.version:
            pipe.plans = compile_plans(cfg, version=version)
        if self.publish:
            # the stage notes each batch's delivered ids for the PublishSinks (after a
            # restore too: the pipeline makes it through the factory)
            pipe.entitlements_factory = functools.partial(_IdTap, batch_ids=self._batch_ids)
        pipe.entitlements = pipe.new_entitlements(pipe.compliance)
        return pipe, pub

    def _open(self) -> None:
        """Build the pipeline and restore the checkpoint (its configuration first when the
        file has changed since; the switch then happens at the first batch boundary)."""
        os.makedirs(self.out_dir, exist_ok=True)
        cfg, text = self._read_config()
        ck = Checkpoint.load(self.out_dir)
        pos = dict(ck.extra) if ck is not None else {}
        if ck is not None and pos.get("stream") not in (None, self.stream):
            raise StateError(f"{self.out_dir}: the checkpoint is of stream {pos['stream']!r}, "
                             f"not {self.stream!r}")
        if ck is not None and ck.config_hash != cfg.hash:
            copy = self._config_copy(ck.config_hash)
            if not os.path.exists(copy):
                raise StateError(f"{self.out_dir}: the checkpoint was made with another "
                                 f"configuration (hash {ck.config_hash[:12]}) and no copy of "
                                 f"it is kept in {os.path.dirname(copy)}")
            start_cfg = load(copy)
            self._reload.set()               # switch to the file's config at the first batch
        else:
            start_cfg = cfg
            self._keep_config(cfg, text)
        version = int(pos.get("plan_version", 1))
        self.pipe, self._pub_sinks = self._new_pipeline(start_cfg, version)
        restored = self.pipe.restore()
        self._plan_version = version
        if restored:
            self._committed = self._processed = int(restored.get("stream_seq", 0))
            self._offset = int(restored.get("offset", 0))
            self._lines = int(restored.get("lines", 0))
            self._ck_created = restored.get("stream_created")
            self.pipe.decoder.seek(self.source_name, self._offset, self._lines)
        self._write_plans()

    def _write_plans(self) -> None:
        """``audit/plans.parquet``: every plan version in force so far (one row per plan)."""
        path = os.path.join(self.out_dir, "audit", "plans.parquet")
        t = self.pipe.entitlements.plan_versions()
        if os.path.exists(path):
            old = pq.read_table(path)
            import pyarrow.compute as pc
            old = old.filter(pc.not_equal(old.column("plan_version"), self._plan_version))
            if old.num_rows:
                t = pa.concat_tables([old, t.cast(old.schema)])
        sink = pa.BufferOutputStream()
        pq.write_table(t, sink, compression="zstd")
        atomic_write(path, sink.getvalue().to_pybytes())

    def _config_changed(self) -> bool:
        if self._reload.is_set():
            return True
        if self.reload_check is None:
            return False
        now = time.monotonic()
        if now - self._last_check < self.reload_check:
            return False
        self._last_check = now
        try:
            st = os.stat(self.config_path)
        except OSError:
            return False
        return (st.st_mtime_ns, st.st_size) != self._cfg_stat

    def _swap_config(self) -> bool:
        """At a batch boundary (everything committed): switch to the file's configuration
        when it differs. A configuration that does not load is reported and not used."""
        self._reload.clear()
        try:
            cfg, text = self._read_config()
        except (ConfigError, OSError, UnicodeDecodeError) as e:
            self.log(f"configuration not reloaded, plan version {self._plan_version} stays: "
                     f"{' '.join(str(e).split())}")
            return False
        old = self.pipe
        if cfg.hash == old.config.hash:
            return False
        version = self._plan_version + 1
        try:
            new, pub = self._new_pipeline(cfg, version)
        except ConfigError as e:
            self.log(f"configuration not reloaded, plan version {self._plan_version} stays: "
                     f"{' '.join(str(e).split())}")
            return False
        self._keep_config(cfg, text)
        # the state carries over; the Pipeline offers no hand-over, so it is moved here
        new.decoder = old.decoder
        new.compliance = old.compliance
        new.entitlements = new.new_entitlements(old.compliance)
        new.entitlements.load_state(old.entitlements.state_to_bytes())
        old.entitlements.hand_over(new.entitlements)
        new.counters = old.counters
        new.part = old.part
        self.pipe = new
        self._pub_sinks = pub        # only now: the old pipeline wrote to the old ones
        self._plan_version = version
        self.report.reloads += 1
        self.pipe.commit(self._position())         # the checkpoint now names the new config
        self._write_plans()
        self.log(f"configuration reloaded: plan version {version} "
                 f"(config {cfg.hash[:12]}, plans {new.plans.hash})")
        return True

    def _position(self) -> dict:
        return {"stream": self.stream, "stream_seq": self._processed, "offset": self._offset,
                "lines": self._lines, "plan_version": self._plan_version,
                "config_hash": self.pipe.config.hash,
                "stream_created": self._stream_created or self._ck_created}

    # ---------------------------------------------------------------- broker
    async def _broker(self, what: str, aw):
        """Await a broker call: a nats error or a time-out becomes a :class:`BrokerError`
        (``mid_run`` once the consumer is running)."""
        nats = _nats()
        try:
            return await aw
        except BrokerError:
            raise
        except (nats.errors.Error, asyncio.TimeoutError) as e:
            raise BrokerError(f"{self.url}: {what}: {_why(e)}", mid_run=self.started) \
                from None

    async def _connect(self):
        nats = _nats()

        async def quiet(e):            # errors surface as exceptions where they matter
            pass

        try:
            nc = await nats.connect(self.url, connect_timeout=self.connect_timeout,
                                    max_reconnect_attempts=2, reconnect_time_wait=0.2,
                                    error_cb=quiet, disconnected_cb=None)
        except (nats.errors.NoServersError, OSError, asyncio.TimeoutError,
                nats.errors.Error) as e:
            raise BrokerError(f"cannot connect to {self.url}: "
                              f"{type(e).__name__}{': ' + str(e) if str(e) else ''}") from None
        # once connected, ride out a broker restart for about a minute
        try:
            nc.options["max_reconnect_attempts"] = 60
            nc.options["reconnect_time_wait"] = 1.0
        except (AttributeError, TypeError):
            pass
        return nc

    async def _consumer_config(self, start_seq: int):
        api = _nats().js.api
        kw = dict(durable_name=self.durable, ack_policy=api.AckPolicy.EXPLICIT,
                  ack_wait=self.ack_wait, max_ack_pending=self.max_ack_pending,
                  max_waiting=64)
        if start_seq > 1:
            kw.update(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
        else:
            kw.update(deliver_policy=api.DeliverPolicy.ALL)
        return api.ConsumerConfig(**kw)

    async def _seat_consumer(self, js, force: bool = False):
        """The durable consumer, positioned so that the next new message is the one after the
        committed sequence (kept when it already is, re-created otherwise)."""
        nats = _nats()
        jsm = js
        want = self._committed + 1

        async def current():
            try:
                return await jsm.consumer_info(self.stream, self.durable)
            except nats.js.errors.NotFoundError:
                return None
        info = await self._broker(f"consumer {self.durable!r}", current())
        keep = (info is not None and not force
                and (info.num_ack_pending or 0) == 0
                and info.delivered is not None
                and (info.delivered.stream_seq or 0) <= self._committed
                and (info.config.max_ack_pending or 0) == self.max_ack_pending
                and abs((info.config.ack_wait or 0) - self.ack_wait) < 1e-3)
        if keep and (info.delivered.stream_seq or 0) == 0:
            # nothing delivered yet: it starts where its policy says, which must not be later
            # than the message after the checkpoint
            api = nats.js.api
            pol = info.config.deliver_policy
            keep = (pol in (None, api.DeliverPolicy.ALL)
                    or (pol == api.DeliverPolicy.BY_START_SEQUENCE
                        and (info.config.opt_start_seq or 0) <= want))
        what = f"seating consumer {self.durable!r}"
        if not keep:
            if info is not None:
                await self._broker(what, jsm.delete_consumer(self.stream, self.durable))
            await self._broker(what, jsm.add_consumer(
                self.stream, config=await self._consumer_config(want)))
        return await self._broker(what, js.pull_subscribe_bind(
            durable=self.durable, stream=self.stream, pending_msgs_limit=self.batch * 4,
            pending_bytes_limit=-1))

    async def _ensure_out_stream(self, js) -> None:
        nats = _nats()

        async def ensure():
            try:
                await js.stream_info(self.out_stream)
                return
            except nats.js.errors.NotFoundError:
                pass
            await js.add_stream(name=self.out_stream, subjects=[f"{self.out_prefix}.>"],
                                duplicate_window=self.dup_window)
        await self._broker(f"output stream {self.out_stream!r}", ensure())

    def _check_stream(self, sinfo) -> None:
        """The stream must be the one the checkpoint consumed: not deleted and re-created,
        nor purged back behind the committed sequence (messages up to it would be lost)."""
        created = sinfo.created
        self._stream_created = created.isoformat() if created is not None else None
        last = int(sinfo.state.last_seq or 0)
        if self._committed > last:
            raise StateError(
                f"{self.out_dir}: the checkpoint is at sequence {self._committed:,} of stream "
                f"{self.stream!r}, which now ends at {last:,}: it was deleted and re-created or "
                "reset; remove the checkpoint (or use another output directory) to consume it "
                "from the start")
        if (self._ck_created and self._stream_created
                and self._ck_created != self._stream_created):
            raise StateError(
                f"{self.out_dir}: stream {self.stream!r} was re-created (created "
                f"{self._stream_created}, the checkpoint's at {self._ck_created}); its "
                f"sequences up to {self._committed:,} are not the ones consumed; remove the "
                "checkpoint (or use another output directory) to consume it from the start")

    # ---------------------------------------------------------------- the loop
    async def run(self) -> LiveReport:
        """Consume until :meth:`stop` (or, with ``drain``, until nothing is pending)."""
        nats = _nats()
        t0 = time.perf_counter()
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open)
        nc = await self._connect()
        try:
            js = nc.jetstream()
            try:
                sinfo = await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                raise BrokerError(f"{self.url}: no stream {self.stream!r}") from None
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                raise BrokerError(f"{self.url}: JetStream is not enabled (no answer about "
                                  f"stream {self.stream!r})") from None
            except nats.errors.Error as e:
                raise BrokerError(f"{self.url}: stream {self.stream!r}: {_why(e)}") from None
            self._check_stream(sinfo)
            if self.publish:
                await self._ensure_out_stream(js)
            first = int(sinfo.state.first_seq or 0)
            if self._committed + 1 < first:
                self.log(f"warning: stream sequences {self._committed + 1}..{first - 1} are "
                         "gone from the stream (retention) and were never consumed")
            sub = await self._seat_consumer(js)
            self.started = True
            try:
                await self._loop_until_done(nc, js, sub)
            except nats.errors.Error as e:      # a broker call not wrapped where it is made
                raise BrokerError(f"{self.url}: {_why(e)}", mid_run=True) from None
        finally:
            try:
                await nc.close()
            except Exception:  # noqa: BLE001 - closing on the way out
                pass
        r = self.report
        r.counters = dict(self.pipe.counters)
        r.plan_version = self._plan_version
        r.stream_seq = self._committed
        r.seconds = time.perf_counter() - t0
        r.latencies = list(self.latencies)
        return r

    async def _loop_until_done(self, nc, js, sub) -> None:
        nats = _nats()
        held: list = []                   # messages to acknowledge after the next commit
        stamps: list[float] = []          # their publish times (for latency)
        rounds = 0
        caught_up = False
        while True:
            if self._stop.is_set():
                break
            if self._config_changed():
                if held:
                    await self._commit_and_ack(nc, held, stamps)
                    rounds = 0
                await asyncio.to_thread(self._swap_config)
            try:
                msgs = await self._fetch(sub, caught_up)
            except nats.errors.ConnectionClosedError:
                raise BrokerError(f"{self.url}: connection closed", mid_run=True) from None
            except nats.errors.Error as e:
                raise BrokerError(f"{self.url}: fetch: {_why(e)}", mid_run=True) from None
            caught_up = len(msgs) < self.batch
            if not msgs:
                if held:
                    await self._commit_and_ack(nc, held, stamps)
                    rounds = 0
                if self.drain and await self._drained(js):
                    break
                continue
            chunks = []
            reseat = False
            for m in msgs:
                md = m.metadata
                seq = md.sequence.stream
                if seq <= self._processed:
                    self.report.skipped += 1  # redelivered: committed, or in this commit
                    held.append(m)
                    continue
                if seq > self._processed + 1 and await self._missing(js, self._processed + 1):
                    reseat = True             # a message before this one went astray
                    break
                if seq > self._processed + 1:
                    self.report.gaps += seq - self._processed - 1
                data = m.data
                if data and not data.endswith(b"\n"):
                    data += b"\n"
                chunks.append(data)
                self._processed = seq
                held.append(m)
                stamps.append(md.timestamp.timestamp() if md.timestamp else time.time())
            self.max_held = max(self.max_held, len(held))
            if chunks and self.t_first is None:
                self.t_first = time.perf_counter()
            if chunks:
                chunk = b"".join(chunks)
                await asyncio.to_thread(self.pipe.process, chunk, self.source_name,
                                        self._offset)
                self._offset += len(chunk)
                self._lines += chunk.count(b"\n")
                self.report.messages += len(chunks)
                self.report.batches += 1
                rounds += 1
                if self.publish:
                    await self._publish(js, nc)
            if reseat:
                await self._commit_and_ack(nc, held, stamps)
                rounds = 0
                await self._broker("unsubscribe", sub.unsubscribe())
                sub = await self._seat_consumer(js, force=True)
                continue
            if held and (rounds >= self.commit_every or len(msgs) < self.batch or not chunks
                         or self._stop.is_set()):
                await self._commit_and_ack(nc, held, stamps)
                rounds = 0
        if held:
            await self._commit_and_ack(nc, held, stamps)

    async def _fetch(self, sub, caught_up: bool) -> list:
        """A batch. Behind: one request for ``batch`` messages. Caught up: wait for the first
        message (a batch request would wait for a full batch or its timeout), then take what
        else has arrived."""
        nats = _nats()
        timeouts = (nats.errors.TimeoutError, asyncio.TimeoutError)
        try:
            if not caught_up or self.batch == 1:
                return await sub.fetch(self.batch, timeout=self.fetch_timeout)
            msgs = await sub.fetch(1, timeout=self.fetch_timeout)
        except timeouts:
            return []
        try:
            msgs += await sub.fetch(self.batch - 1, timeout=0.005)
        except timeouts:
            pass
        return msgs

    async def _missing(self, js, seq: int) -> bool:
        """True when the stream still holds ``seq``: it was not delivered in order."""
        nats = _nats()

        async def get():
            try:
                await js.get_msg(self.stream, seq)
                return True
            except nats.js.errors.NotFoundError:
                return False
            except nats.js.errors.APIError:
                return False
        return await self._broker(f"stream {self.stream!r} message {seq}", get())

    async def _drained(self, js) -> bool:
        info = await self._broker(f"consumer {self.durable!r}",
                                  js.consumer_info(self.stream, self.durable))
        return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0

    async def _commit_and_ack(self, nc, held: list, stamps: list) -> None:
        """Commit every sink and the checkpoint (with the stream position), then acknowledge."""
        try:
            await asyncio.to_thread(self.pipe.commit, self._position())
        except SinkError:
            raise
        self._committed = self._processed
        self.report.commits += 1
        for m in held:
            try:
                await m.ack()
            except Exception:  # noqa: BLE001 - already acknowledged; the checkpoint rules
                pass
        await self._broker("acknowledging", nc.flush())
        now = time.time()
        self.t_last = time.perf_counter()
        self.latencies.extend(now - s for s in stamps)
        held.clear()
        stamps.clear()

    async def _publish(self, js, nc) -> None:
        """Publish this batch's rows and wait for every PubAck (before the commit)."""
        limit = max(1024, nc.max_payload - _HDR_SLACK)
        version = str(self._plan_version)
        futs = []
        use_async = hasattr(js, "publish_async")
        for client in sorted(self._pub_sinks):
            subject = f"{self.out_prefix}.{_subject_token(client)}"
            for table, raw, ids in self._pub_sinks[client].take():
                for key, payload, part in _row_messages(client, table, raw, limit, ids):
                    hdr = {"Nats-Msg-Id": key, "Firehose-Plan-Version": version}
                    if part is not None:
                        hdr["Firehose-Chunk"] = part
                    if use_async:
                        futs.append(await self._broker(f"publishing to {subject}",
                                                       js.publish_async(subject, payload,
                                                                        headers=hdr)))
                    else:
                        futs.append(asyncio.ensure_future(
                            js.publish(subject, payload, headers=hdr)))
                    if len(futs) >= 2048:
                        await self._settle(futs)
        await self._settle(futs)

    async def _settle(self, futs: list) -> None:
        """Wait for the PubAcks of ``futs`` (at most ``pub_ack_timeout`` seconds: a lost
        PubAck is a failed publish, not a hang; the batch's messages stay unacknowledged)."""
        nats = _nats()
        if not futs:
            return
        try:
            acks = await asyncio.wait_for(asyncio.gather(*futs), timeout=self.pub_ack_timeout)
        except asyncio.TimeoutError:
            for f in futs:
                f.cancel()
            raise SinkError(f"publishing to {self.out_prefix}.*: no PubAck from the output "
                            f"stream within {self.pub_ack_timeout:g} s") from None
        except nats.errors.Error as e:
            for f in futs:
                f.cancel()
            raise SinkError(f"publishing to {self.out_prefix}.*: {_why(e)}") from None
        self.report.published += len(acks)
        self.report.publish_duplicates += sum(1 for a in acks if getattr(a, "duplicate", False))
        futs.clear()


# ------------------------------------------------------------------------------ helpers

async def publish_lines(js, subject: str, lines, *, lines_per_message: int = 1,
                        max_bytes: int | None = None, window: int = 1024) -> int:
    """Publish whole NDJSON ``lines`` to JetStream, ``lines_per_message`` to a message (fewer
    when ``max_bytes`` would be passed); waits for every PubAck. Returns the message count."""
    futs, buf, size, n = [], [], 0, 0

    async def send():
        nonlocal buf, size, n
        if buf:
            futs.append(asyncio.ensure_future(js.publish(subject, b"".join(buf))))
            n += 1
            buf, size = [], 0
        if len(futs) >= window:
            await asyncio.gather(*futs)
            futs.clear()

    for line in lines:
        if not line.endswith(b"\n"):
            line += b"\n"
        if buf and (len(buf) >= lines_per_message
                    or (max_bytes is not None and size + len(line) > max_bytes)):
            await send()
        buf.append(line)
        size += len(line)
    await send()
    await asyncio.gather(*futs)
    return n


def install_signal_handlers(consumer: Consumer, loop: asyncio.AbstractEventLoop) -> None:
    """SIGTERM/SIGINT: stop after the current batch; SIGHUP: reload the configuration."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop)
    if hasattr(signal, "SIGHUP"):
        loop.add_signal_handler(signal.SIGHUP, consumer.reload)
