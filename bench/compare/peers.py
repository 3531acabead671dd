"""One peer, one fresh process: ``python bench/compare/peers.py PEER CAPTURE [--reps N]``.

Imports only what ``PEER`` needs, notes the peak RSS so far (the interpreter with those imports:
the baseline), decodes the capture ``--reps`` times keeping the best time, notes the peak RSS
again, then, outside the timing, checksums the output, and prints one JSON object.

Every peer reads the same plain NDJSON file and produces the same projection, as 10 columns:

    id, created_at, text, lang, user_id, user_screen_name, user_followers_count,
    hashtags (list of strings), retweeted_status_id, quoted_status_id

with ``text`` = ``extended_tweet.full_text`` else ``text`` and ``hashtags`` from
``extended_tweet.entities`` else ``entities`` (the rules of docs/fields.md, which firehose
applies), so the checksums of all peers must agree. Peers get one thread where they have a knob
(``run.py`` sets ``POLARS_MAX_THREADS=1``; DuckDB ``SET threads=1``; pyarrow
``set_cpu_count(1)`` + ``use_threads=False``).
"""

import gc
import json
import os
import resource
import threading
import time

CHUNK = 4 << 20
PROJ = ("id", "created_at", "text", "lang", "user_id", "user_screen_name",
        "user_followers_count", "hashtags", "retweeted_status_id", "quoted_status_id")
#: firehose's TWEETS column for each projected name
FH_COLS = ("id", "created_at", "text", "lang", "author_id", "author_screen_name",
           "author_followers_count", "hashtags", "retweeted_status_id", "quoted_status_id")


def maxrss_bytes() -> int:
    """Peak RSS of this process: VmHWM, the high-water mark of this address space.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux that also carries the parent's RSS at
    fork/exec time (exec folds the old address space's high-water mark into it), so a child of
    a 120 MB orchestrator would report at least 120 MB whatever it does."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # KiB on Linux


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------ peers
# Each setup_<peer>() does the imports and returns (version, run); run(path) returns the
# decoded output, kept alive until the timing stops (what a caller would hold).

def setup_firehose(project=True):
    import inspect
    import firehose
    # one thread: no read-ahead thread (iter_file reads ahead in a thread by default)
    kw = {"readahead": 0} if "readahead" in inspect.signature(firehose.iter_file).parameters else {}
    if project:
        kw["columns"] = list(FH_COLS)       # the projection, pushed into the core

    def run(path):
        """Streaming, one thread: each chunk's tables are dropped once counted (a consumer
        writing them to a sink). ``firehose``: builds the projection's columns only, as
        the peers do; ``firehose-37``: all columns, then a (free) select."""
        rows = 0
        for res in firehose.iter_file(path, **kw):
            rows += res.tweets.select(list(FH_COLS)).num_rows
        return rows
    return firehose.__version__, run


def setup_firehose_37():
    return setup_firehose(project=False)


def setup_firehose_2t():
    import inspect
    import firehose
    if "threads" not in inspect.signature(firehose.iter_file).parameters:
        return _setup_firehose_halves()

    def run(path):
        """iter_file(threads=2): two worker threads take the file's segments (mapped) as they
        come free; results in file order, deduped across the whole file as one thread does."""
        rows = 0
        for res in firehose.iter_file(path, threads=2, readahead=0, columns=list(FH_COLS)):
            rows += res.tweets.num_rows
        return rows
    return firehose.__version__, run


def _setup_firehose_halves():
    """For builds before iter_file(threads=): two Decoders on the file's two halves."""
    import firehose

    def part(path, start, end, out, i):
        from firehose.reader import map_chunks
        dec = firehose.Decoder(columns=list(FH_COLS))
        rows = 0
        for chunk, pos in map_chunks(path, CHUNK, start=start):
            if pos >= end:
                break
            view = chunk[:end - pos]
            rows += dec.feed(view, source=path, offset=pos).tweets.num_rows
            view.release()
        rows += dec.finish().tweets.num_rows
        out[i] = rows

    def run(path):
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(size // 2)
            f.readline()
            mid = f.tell()
        out = [0, 0]
        ts = [threading.Thread(target=part, args=(path, a, b, out, i))
              for i, (a, b) in enumerate(((0, mid), (mid, size)))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return sum(out)
    return firehose.__version__, run


def setup_firehose_all():
    import firehose

    def run(path):
        """decode_file: every chunk's tables kept and concatenated (all 37 columns)."""
        return firehose.decode_file(path).tweets.select(list(FH_COLS))
    return firehose.__version__, run


def _schema_arrow():
    import pyarrow as pa
    ht = pa.list_(pa.struct([("text", pa.string())]))
    return pa.schema([
        ("id", pa.int64()), ("created_at", pa.string()), ("text", pa.string()),
        ("lang", pa.string()),
        ("user", pa.struct([("id", pa.int64()), ("screen_name", pa.string()),
                            ("followers_count", pa.int64())])),
        ("entities", pa.struct([("hashtags", ht)])),
        ("extended_tweet", pa.struct([("full_text", pa.string()),
                                      ("entities", pa.struct([("hashtags", ht)]))])),
        ("retweeted_status", pa.struct([("id", pa.int64())])),
        ("quoted_status_id", pa.int64()),
    ])


def _texts_of(lst):
    """list<struct<text>> (nulls allowed) -> list<string>, null lists as empty lists."""
    import pyarrow as pa
    import pyarrow.compute as pc
    lens = pc.fill_null(pc.list_value_length(lst), 0)
    offsets = pa.array([0] + list(_cumsum(lens.to_numpy())), pa.int32())
    values = pc.struct_field(pc.list_flatten(lst), "text")
    return pa.ListArray.from_arrays(offsets, values)


def _cumsum(a):
    import numpy as np
    return np.cumsum(a, dtype=np.int64)


def setup_pyarrow():
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    schema = _schema_arrow()

    def project(t):
        def f(name, fn):
            return pa.chunked_array([fn(c) for c in t.column(name).chunks])
        cols = {
            "id": t.column("id"),
            "created_at": t.column("created_at"),
            "text": pa.chunked_array([pc.coalesce(pc.struct_field(e, "full_text"), x) for e, x in
                                      zip(t.column("extended_tweet").chunks,
                                          t.column("text").chunks)]),
            "lang": t.column("lang"),
            "user_id": f("user", lambda c: pc.struct_field(c, "id")),
            "user_screen_name": f("user", lambda c: pc.struct_field(c, "screen_name")),
            "user_followers_count": f("user", lambda c: pc.struct_field(c, "followers_count")),
            "hashtags": pa.chunked_array([
                _texts_of(pc.coalesce(pc.struct_field(e, ["entities", "hashtags"]),
                                      pc.struct_field(n, "hashtags")))
                for e, n in zip(t.column("extended_tweet").chunks, t.column("entities").chunks)]),
            "retweeted_status_id": f("retweeted_status", lambda c: pc.struct_field(c, "id")),
            "quoted_status_id": t.column("quoted_status_id"),
        }
        return pa.table(cols)

    def run(path):
        t = pj.read_json(path, read_options=pj.ReadOptions(use_threads=False),
                         parse_options=pj.ParseOptions(explicit_schema=schema,
                                                       unexpected_field_behavior="ignore"))
        return project(t)
    return pa.__version__, run


def setup_duckdb():
    import duckdb
    con = duckdb.connect()
    con.execute("SET threads=1")
    ht = "STRUCT(text VARCHAR)[]"
    columns = {
        "id": "BIGINT", "created_at": "VARCHAR", "text": "VARCHAR", "lang": "VARCHAR",
        "user": "STRUCT(id BIGINT, screen_name VARCHAR, followers_count BIGINT)",
        "entities": f"STRUCT(hashtags {ht})",
        "extended_tweet": f"STRUCT(full_text VARCHAR, entities STRUCT(hashtags {ht}))",
        "retweeted_status": "STRUCT(id BIGINT)",
        "quoted_status_id": "BIGINT",
    }
    cols_sql = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"

    def run(path):
        q = f"""
        SELECT id, created_at,
               coalesce(extended_tweet.full_text, text) AS text,
               lang,
               "user".id AS user_id, "user".screen_name AS user_screen_name,
               "user".followers_count AS user_followers_count,
               coalesce(list_transform(coalesce(extended_tweet.entities.hashtags,
                                                entities.hashtags), lambda h: h.text),
                        []::VARCHAR[]) AS hashtags,
               retweeted_status.id AS retweeted_status_id,
               quoted_status_id
        FROM read_json('{path}', format='newline_delimited', columns={cols_sql})"""
        return con.sql(q).to_arrow_table()
    return duckdb.__version__, run


def setup_polars():
    import polars as pl
    ht = pl.List(pl.Struct({"text": pl.String}))
    schema = {
        "id": pl.Int64, "created_at": pl.String, "text": pl.String, "lang": pl.String,
        "user": pl.Struct({"id": pl.Int64, "screen_name": pl.String,
                           "followers_count": pl.Int64}),
        "entities": pl.Struct({"hashtags": ht}),
        "extended_tweet": pl.Struct({"full_text": pl.String,
                                     "entities": pl.Struct({"hashtags": ht})}),
        "retweeted_status": pl.Struct({"id": pl.Int64}),
        "quoted_status_id": pl.Int64,
    }

    def run(path):
        df = pl.read_ndjson(path, schema=schema)
        u = pl.col("user").struct
        et = pl.col("extended_tweet").struct
        return df.select(
            "id", "created_at",
            pl.coalesce(et.field("full_text"), pl.col("text")).alias("text"),
            "lang",
            u.field("id").alias("user_id"), u.field("screen_name").alias("user_screen_name"),
            u.field("followers_count").alias("user_followers_count"),
            pl.coalesce(et.field("entities").struct.field("hashtags"),
                        pl.col("entities").struct.field("hashtags"))
            .list.eval(pl.element().struct.field("text"))
            .fill_null(pl.lit([], dtype=pl.List(pl.String))).alias("hashtags"),
            pl.col("retweeted_status").struct.field("id").alias("retweeted_status_id"),
            "quoted_status_id",
        )
    return pl.__version__, run


def _dict_row(d):
    if not isinstance(d, dict):
        return (None,) * 9 + ([],)
    u = d.get("user") or {}
    et = d.get("extended_tweet")
    et = et if isinstance(et, dict) else None
    ents = (et.get("entities") if et else None) or d.get("entities") or {}
    rs = d.get("retweeted_status") or {}
    text = et.get("full_text") if et else None
    return (d.get("id"), d.get("created_at"), text if text is not None else d.get("text"),
            d.get("lang"), u.get("id"), u.get("screen_name"), u.get("followers_count"),
            [h["text"] for h in ents.get("hashtags") or ()], rs.get("id"),
            d.get("quoted_status_id"))


def _loop(loads):
    def run(path):
        rows = []
        add = rows.append
        with open(path, "rb") as f:
            for line in f:
                add(_dict_row(loads(line)))
        return rows
    return run


def setup_orjson():
    import orjson
    return orjson.__version__, _loop(orjson.loads)


def setup_json():
    import json as js
    import platform
    return "stdlib " + platform.python_version(), _loop(js.loads)


def setup_msgspec():
    import msgspec
    from typing import Optional

    class Hashtag(msgspec.Struct):
        text: Optional[str] = None

    class Entities(msgspec.Struct):
        hashtags: Optional[list[Hashtag]] = None

    class Extended(msgspec.Struct):
        full_text: Optional[str] = None
        entities: Optional[Entities] = None

    class User(msgspec.Struct):
        id: Optional[int] = None
        screen_name: Optional[str] = None
        followers_count: Optional[int] = None

    class Ref(msgspec.Struct):
        id: Optional[int] = None

    class Tweet(msgspec.Struct):
        id: Optional[int] = None
        created_at: Optional[str] = None
        text: Optional[str] = None
        lang: Optional[str] = None
        user: Optional[User] = None
        entities: Optional[Entities] = None
        extended_tweet: Optional[Extended] = None
        retweeted_status: Optional[Ref] = None
        quoted_status_id: Optional[int] = None

    dec = msgspec.json.Decoder(Tweet)

    def run(path):
        rows = []
        add = rows.append
        decode = dec.decode
        with open(path, "rb") as f:
            for line in f:
                t = decode(line)
                u, et = t.user, t.extended_tweet
                ents = (et.entities if et is not None else None) or t.entities
                text = et.full_text if et is not None else None
                add((t.id, t.created_at, text if text is not None else t.text, t.lang,
                     u.id if u else None, u.screen_name if u else None,
                     u.followers_count if u else None,
                     [h.text for h in ents.hashtags or ()] if ents else [],
                     t.retweeted_status.id if t.retweeted_status else None,
                     t.quoted_status_id))
        return rows
    return msgspec.__version__, run


PEERS = {
    "firehose": setup_firehose,
    "firehose-37": setup_firehose_37,
    "firehose-2t": setup_firehose_2t,
    "firehose-all": setup_firehose_all,
    "duckdb": setup_duckdb,
    "pyarrow": setup_pyarrow,
    "polars": setup_polars,
    "msgspec": setup_msgspec,
    "orjson": setup_orjson,
    "json": setup_json,
}


# ------------------------------------------------------------------------------- checksums

class Checksum:
    """Order-independent sums over the projected columns (ids wrap mod 2^64), and row terms
    (``row_*``: the sum over rows of id x the row's value, mod 2^64) that change when a
    column's values are shifted against the ids (a misaligned column)."""

    INTS = ("id", "user_id", "user_followers_count", "retweeted_status_id", "quoted_status_id")

    def __init__(self):
        self.v = {"rows": 0, "tweets": 0, "lang": 0, "text_bytes": 0, "hashtags": 0,
                  "hashtag_bytes": 0, "screen_name_bytes": 0, "created_at": 0}
        self.v.update({f"sum_{c}": 0 for c in self.INTS})
        self.v.update({f"row_{c}": 0 for c in self.INTS[1:] + ("text", "user_screen_name",
                                                                 "hashtags")})

    def add_arrow(self, t):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        v = self.v
        v["rows"] += t.num_rows
        v["tweets"] += t.num_rows - t.column("id").null_count
        for c in self.INTS:
            a = t.column(c).fill_null(0).to_numpy().astype(np.uint64)
            v[f"sum_{c}"] = (v[f"sum_{c}"] + int(a.sum(dtype=np.uint64))) % (1 << 64)
        v["lang"] += t.column("lang").length() - t.column("lang").null_count
        v["created_at"] += t.column("created_at").length() - t.column("created_at").null_count

        def nbytes(col):
            col = col.cast(pa.string()) if not pa.types.is_string(col.type) else col
            s = pc.sum(pc.binary_length(col)).as_py()
            return s or 0
        v["text_bytes"] += nbytes(t.column("text"))
        v["screen_name_bytes"] += nbytes(t.column("user_screen_name"))
        h = t.column("hashtags")
        v["hashtags"] += pc.sum(pc.list_value_length(h)).as_py() or 0
        v["hashtag_bytes"] += nbytes(pc.list_flatten(h))
        ids = t.column("id").fill_null(0).to_numpy().astype(np.uint64)
        per_row = {c: t.column(c).fill_null(0).to_numpy() for c in self.INTS[1:]}
        for c in ("text", "user_screen_name"):
            col = t.column(c)
            col = col.cast(pa.string()) if not pa.types.is_string(col.type) else col
            per_row[c] = pc.binary_length(col).fill_null(0).to_numpy()
        per_row["hashtags"] = pc.list_value_length(h).fill_null(0).to_numpy()
        for c, a in per_row.items():
            term = int((ids * (a.astype(np.uint64) + np.uint64(1))).sum(dtype=np.uint64))
            v[f"row_{c}"] = (v[f"row_{c}"] + term) % (1 << 64)

    def add_rows(self, rows):
        import pyarrow as pa
        cols = list(zip(*rows)) if rows else [[] for _ in PROJ]
        types = [pa.int64(), pa.string(), pa.string(), pa.string(), pa.int64(), pa.string(),
                 pa.int64(), pa.list_(pa.string()), pa.int64(), pa.int64()]
        self.add_arrow(pa.table([pa.array(c, ty) for c, ty in zip(cols, types)], names=PROJ))


def checksum_of(peer, out, path):
    ck = Checksum()
    if peer.startswith("firehose"):
        # firehose dedupes (the others do not): checksum a dedupe=False pass, streaming,
        # with the peer's projection pushed down where it has one
        import firehose
        projected = peer in ("firehose", "firehose-2t")
        dec = firehose.Decoder(dedupe=False, columns=list(FH_COLS) if projected else None)
        threads = 2 if peer == "firehose-2t" else 1     # (the parallel path checked too)
        for res in firehose.iter_file(path, decoder=dec, threads=threads):
            ck.add_arrow(res.tweets.select(list(FH_COLS)).rename_columns(list(PROJ)))
        ck.v["rows"] = None            # firehose emits tweets only
    elif peer == "polars":
        ck.add_arrow(out.to_arrow())
    elif isinstance(out, list):
        ck.add_rows(out)
    else:
        ck.add_arrow(out)
    return ck.v


# ------------------------------------------------------------------------------------ main

def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("peer", choices=sorted(PEERS))
    ap.add_argument("path")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-checksum", action="store_true")
    ap.add_argument("--sample-rss", action="store_true",
                    help="firehose only: sample RSS after every chunk, report the curve")
    a = ap.parse_args(argv)

    t_imp = time.perf_counter()
    version, run = PEERS[a.peer]()
    t_imp = time.perf_counter() - t_imp
    gc.collect()
    settle = _settle()
    base = maxrss_bytes()
    base_now = rss_bytes()
    result = {"peer": a.peer, "version": version, "import_s": t_imp,
              "baseline_rss": base, "baseline_rss_now": base_now, "settle_s": settle}

    if a.sample_rss:
        result.update(_sample_rss(a.path))
        result["peak_rss"] = maxrss_bytes()
        print(json.dumps(result))
        return

    times = []
    cpu = []
    out = None
    for _ in range(a.reps):
        out = None
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = run(a.path)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    result["times"] = times
    result["cpu_times"] = cpu
    result["peak_rss"] = maxrss_bytes()
    if not a.no_checksum:
        result["checksum"] = checksum_of(a.peer, out, a.path)
    print(json.dumps(result))


def _settle(limit: float = 2.0, step: float = 0.05) -> float:
    """Wait, up to ``limit`` seconds, until the process is idle: importing numpy starts
    OpenBLAS's thread pool, whose threads spin on the other core for ~0.1 s (measured: 0.07-0.12
    s of CPU after ``import numpy``) before they sleep; a timing started at once shares the
    machine with them (the first rep of a 2-thread peer lost a core for a third of its run).
    Idle: less than 10% of one core used in a ``step``. Returns the time waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        c = time.process_time()
        time.sleep(step)
        if time.process_time() - c < 0.1 * step:
            break
    return time.perf_counter() - t0


def _sample_rss(path):
    """Stream ``path`` through one Decoder building all 37 columns (the most memory, not the
    projection the timed peers build); RSS after each chunk (for the flat-memory check)."""
    import firehose
    dec = firehose.Decoder()
    samples = []
    rows = 0
    nbytes = 0
    t0 = time.perf_counter()
    for chunk, off in __import__("firehose.reader", fromlist=["iter_chunks"]).iter_chunks(path):
        res = dec.feed(chunk, source=path, offset=off)
        rows += res.tweets.num_rows
        nbytes += len(chunk)
        del res
        samples.append((nbytes, rss_bytes()))
    rows += dec.finish().tweets.num_rows
    dt = time.perf_counter() - t0
    return {"seconds": dt, "bytes": nbytes, "rows": rows, "rss_samples": samples,
            "stats": dec.stats, "dedupe_memory": dec.dedupe_memory()}


if __name__ == "__main__":
    main()
