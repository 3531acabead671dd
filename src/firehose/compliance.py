"""Compliance state: what must never be delivered, and what must be masked.

Fed the ``compliance`` tables the decoder produces (deletes, drops, user deletes / protects /
suspends and their reversals, withholding, scrub_geo), it keeps for every tweet and user the
*latest* state by event time (ties and missing times: the later arrival wins), so a delete
that arrives before its tweet still wins when the tweet comes, and an ``undrop`` that is older
than the ``drop`` it follows changes nothing.

Per batch of tweets it answers, vectorised:

* :meth:`ComplianceState.deny` — one boolean column per reason (``deleted``, ``dropped``,
  ``user_deleted``, ``user_suspended``, ``user_protected``), each true where the tweet itself,
  or the tweet it retweets or quotes, or any of their authors is in that state;
* :meth:`ComplianceState.withheld` — where the tweet or its author is withheld in any of a
  seat's delivery countries (``XX`` and ``XY`` mean everywhere);
* :meth:`ComplianceState.scrub_geo_mask` — where geo must be masked (``scrub_geo`` up to a
  status id for that author).

A row whose ids are null is not "unknown, so fine": callers treat the masks as denials and the
entitlement layer denies rows it cannot vouch for.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ComplianceState", "DENY_REASONS"]

#: tweet-level states, and the compliance kinds that set (True) or clear (False) them
_TWEET_KINDS = {"delete": ("deleted", True), "drop": ("dropped", True),
                "undrop": ("dropped", False)}
_USER_KINDS = {
    "user_delete": ("user_deleted", True), "user_undelete": ("user_deleted", False),
    "user_suspend": ("user_suspended", True), "user_unsuspend": ("user_suspended", False),
    "user_protect": ("user_protected", True), "user_unprotect": ("user_protected", False),
}
DENY_REASONS = ("deleted", "dropped", "user_deleted", "user_suspended", "user_protected")
_EVERYWHERE = {"XX", "XY"}
_NO_TIME = np.iinfo(np.int64).min
#: sets of up to 2**(_HASH_BITS - 4) ids are screened through a bitmap of their hashes
_HASH_BITS = 20
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def _hash(values: np.ndarray) -> np.ndarray:
    """Fibonacci hash of int64 values into [0, 2**_HASH_BITS)."""
    h = values.view(np.uint64) * _HASH_MUL
    h >>= np.uint64(64 - _HASH_BITS)
    return h.view(np.int64)


def _int64_values(col) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The values of an int64 column as numpy (whatever sits under a null) and where they
    are valid (None: all are); None when the column is not plain int64."""
    if isinstance(col, pa.ChunkedArray):    # one chunk (a combined batch) is not copied
        arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    else:
        arr = col
    if arr.type != pa.int64():
        return None
    if arr.null_count == 0:
        return arr.to_numpy(zero_copy_only=False), None
    data = arr.buffers()[1]
    values = np.frombuffer(data, np.int64, count=len(arr), offset=arr.offset * 8)
    return values, arr.is_valid().to_numpy(zero_copy_only=False)


class _IdSet:
    """A set of int64 ids tested against whole columns: a bitmap of the ids' hashes screens
    the rows (one gather from a 1 MB table), and only the rows that pass are looked up."""

    def __init__(self, ids):
        self.ids = np.unique(np.asarray(ids, np.int64))
        self.arrow = pa.array(self.ids, pa.int64())
        self.table = None
        # a table of bytes that several sets share, a bit each (see _share): a column is
        # gathered through it once for all of them
        self.shared: np.ndarray | None = None
        self.bit = 0
        if 0 < len(self.ids) <= 1 << (_HASH_BITS - 4):
            self.table = np.zeros(1 << _HASH_BITS, bool)
            self.table[_hash(self.ids)] = True

    def __len__(self) -> int:
        return len(self.ids)

    def isin(self, col, screen: "_Screen | None" = None) -> np.ndarray:
        """True where the column holds one of the ids (never where it is null). ``screen``:
        the batch's column reads and hashes, shared by every set tested against it."""
        n = len(col)
        if not len(self.ids):
            return np.zeros(n, bool)
        got = None if self.table is None else (screen or _Screen()).read(col)
        if got is None:
            return pc.fill_null(pc.is_in(col, value_set=self.arrow), False) \
                .to_numpy(zero_copy_only=False)
        values, valid, hashed = got
        if self.shared is not None and screen is not None:
            cand = np.flatnonzero(screen.gather(col, self.shared) & self.bit)
        else:
            cand = np.flatnonzero(self.table[hashed])
        if valid is not None:
            cand = cand[valid[cand]]
        out = np.zeros(n, bool)
        if len(cand):
            out[cand[in_sorted(self.ids, values[cand])]] = True
        return out


def _share(sets: list) -> None:
    """Up to 8 of these sets' hash tables as the bits of one table of bytes: a batch's
    column is then gathered through it once, not once per set (the deny reasons, withholding
    and scrub_geo test six columns 18 times a batch)."""
    tabled = [st for st in sets if st.table is not None][:8]
    if len(tabled) < 2:
        return
    shared = np.zeros(1 << _HASH_BITS, np.uint8)
    for i, st in enumerate(tabled):
        shared[st.table] |= np.uint8(1 << i)
        st.shared, st.bit = shared, np.uint8(1 << i)


def in_sorted(run: np.ndarray, values: np.ndarray) -> np.ndarray:
    """True where a value is in ``run`` (sorted, non-empty)."""
    i = np.searchsorted(run, values)
    i[i == len(run)] = 0
    return run[i] == values


class _Screen:
    """A batch's id columns as the id sets read them (values, validity, hashes), each read
    once however many sets test it: the deny reasons, withholding and scrub_geo test the
    same six columns ~18 times per batch."""

    def __init__(self):
        self._got: dict[tuple, tuple] = {}
        self._gathered: dict[tuple, tuple] = {}

    @staticmethod
    def _key(col) -> tuple:
        chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
        return tuple((str(c.type), c.offset, len(c))
                     + tuple(0 if b is None else b.address for b in c.buffers()) for c in chunks)

    def gather(self, col, table: np.ndarray) -> np.ndarray:
        """``table`` at the column's hashes (read() must have said the column is int64), once
        per column and table: the sets sharing a table (a bit each) test it from there."""
        key = self._key(col)
        got = self._gathered.get(key)
        if got is None or got[0] is not table:
            got = self._gathered[key] = (table, table[self.read(col)[2]])
        return got[1]

    def read(self, col):
        """(values, validity, hashes) of an int64 column, as isin() needs them; None when
        the column is not plain int64. A column is known by its buffers (``Table.column``
        makes a new wrapper per call); the screen keeps each column it read alive."""
        key = self._key(col)
        got = self._got.get(key)
        if got is None:
            values = _int64_values(col)
            got = self._got[key] = (col, values and values + (_hash(values[0]),))
        return got[1]


@dataclass
class _Latest:
    """id -> (event time, arrival seq, value): the latest by (time, seq) wins."""
    entries: dict = field(default_factory=dict)

    def put(self, key: int, t: int, seq: int, value) -> None:
        cur = self.entries.get(key)
        if cur is None or (t, seq) >= (cur[0], cur[1]):
            self.entries[key] = (t, seq, value)

    def ids_where(self, pred) -> "_IdSet":
        return _IdSet(np.fromiter((k for k, (_, _, v) in self.entries.items() if pred(v)),
                                  np.int64))


class ComplianceState:
    """Latest-wins compliance state, applied to tweets batch by batch."""

    def __init__(self):
        self._seq = 0
        self._tweet = {name: _Latest() for name in ("deleted", "dropped")}
        self._user = {name: _Latest() for name in ("user_deleted", "user_suspended",
                                                    "user_protected")}
        self._withheld_tweet = _Latest()     # tweet id -> frozenset of countries
        self._withheld_user = _Latest()      # user id -> frozenset of countries
        self._scrub = {}                     # user id -> highest up_to_tweet_id
        self._cache = None
        self.events = 0

    # ------------------------------------------------------------------ updates
    def apply(self, compliance: pa.Table) -> None:
        """Fold a compliance table (firehose.schema.COMPLIANCE) into the state."""
        if compliance.num_rows == 0:
            return
        kinds = compliance.column("kind").to_pylist()
        tweet = compliance.column("tweet_id").to_pylist()
        user = compliance.column("user_id").to_pylist()
        upto = compliance.column("up_to_tweet_id").to_pylist()
        countries = compliance.column("countries").to_pylist()
        times = pc.cast(compliance.column("event_at"), pa.int64()).to_pylist()
        for kind, tid, uid, up, cs, t in zip(kinds, tweet, user, upto, countries, times):
            self._seq += 1
            t = _NO_TIME if t is None else t
            if kind in _TWEET_KINDS and tid is not None:
                name, on = _TWEET_KINDS[kind]
                self._tweet[name].put(tid, t, self._seq, on)
            elif kind in _USER_KINDS and uid is not None:
                name, on = _USER_KINDS[kind]
                self._user[name].put(uid, t, self._seq, on)
            elif kind == "status_withheld" and tid is not None:
                self._withheld_tweet.put(tid, t, self._seq, frozenset(cs))
            elif kind == "user_withheld" and uid is not None:
                self._withheld_user.put(uid, t, self._seq, frozenset(cs))
            elif kind == "scrub_geo" and uid is not None and up is not None:
                self._scrub[uid] = max(up, self._scrub.get(uid, 0))
            else:
                continue
            self.events += 1
        self._cache = None

    # ------------------------------------------------------------------ queries
    def _sets(self) -> dict:
        """The id sets the queries test columns against, built once per state change (every
        mask of every batch until the next :meth:`apply` shares them): a set per deny
        reason, the withheld tweets and users, and the scrub_geo users with their up_to ids
        sorted by user."""
        if self._cache is None:
            c = {name: st.ids_where(bool) for name, st in {**self._tweet, **self._user}.items()}
            for name, latest in (("withheld_tweet", self._withheld_tweet),
                                 ("withheld_user", self._withheld_user)):
                c[name] = _IdSet(np.fromiter(latest.entries, np.int64, len(latest.entries)))
            users = np.fromiter(self._scrub, np.int64, len(self._scrub))
            up_to = np.fromiter(self._scrub.values(), np.int64, len(self._scrub))
            by_user = np.argsort(users)
            c["scrub"] = _IdSet(users)
            c["scrub_up_to"] = up_to[by_user]           # aligned with c["scrub"].ids
            _share([v for v in c.values() if isinstance(v, _IdSet)])
            self._cache = c
        return self._cache

    def deny(self, tweets: pa.Table, screen: _Screen | None = None) -> dict[str, np.ndarray]:
        """Per reason, a boolean array over the rows: deny where true."""
        sets = self._sets()
        tweet_cols = [tweets.column(c) for c in ("id", "retweeted_status_id", "quoted_status_id")]
        user_cols = [tweets.column(c) for c in ("author_id", "retweeted_user_id",
                                                "quoted_user_id") if c in tweets.column_names]
        out = {}
        for name in DENY_REASONS:
            cols = tweet_cols if name in self._tweet else user_cols
            mask = np.zeros(tweets.num_rows, bool)
            if len(sets[name]):
                for col in cols:
                    mask |= sets[name].isin(col, screen)
            out[name] = mask
        return out

    def withheld_pairs(self, tweets: pa.Table, screen: _Screen | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(row, country) pairs saying where each row is withheld: its own
        ``withheld_in_countries``, status_withheld events for its id and user_withheld events
        for its author. Computed once per batch; :meth:`withheld_for` asks per seat."""
        col = tweets.column("withheld_in_countries")
        rows = [pc.list_parent_indices(col).to_numpy(zero_copy_only=False)]
        countries = [pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(object)]
        sets = self._sets()
        for latest, name, known in ((self._withheld_tweet, "id", sets["withheld_tweet"]),
                                    (self._withheld_user, "author_id", sets["withheld_user"])):
            if not latest.entries:
                continue
            col_ids = tweets.column(name)
            cand = np.nonzero(known.isin(col_ids, screen))[0]
            ids = pc.take(col_ids, pa.array(cand)).to_pylist()
            r, c = [], []
            for i, k in zip(cand, ids):
                for cc in latest.entries[k][2]:
                    r.append(i)
                    c.append(cc)
            rows.append(np.array(r, np.int64))
            countries.append(np.array(c, object))
        return np.concatenate(rows).astype(np.int64), np.concatenate(countries)

    @staticmethod
    def withheld_for(pairs: tuple[np.ndarray, np.ndarray], n: int, delivery_countries) -> np.ndarray:
        """Rows withheld in any of these delivery countries (``XX``/``XY``: everywhere)."""
        rows, countries = pairs
        mask = np.zeros(n, bool)
        if len(rows):
            want = {c.upper() for c in delivery_countries} | _EVERYWHERE
            hit = np.fromiter((c in want for c in countries), bool, len(countries))
            mask[rows[hit]] = True
        return mask

    def withheld(self, tweets: pa.Table, delivery_countries) -> np.ndarray:
        """True where the tweet or its author is withheld in a delivery country."""
        return self.withheld_for(self.withheld_pairs(tweets), tweets.num_rows, delivery_countries)

    def scrub_geo_mask(self, tweets: pa.Table, screen: _Screen | None = None) -> np.ndarray:
        """True where geo must be masked: the author scrubbed geo up to an id >= the tweet's."""
        mask = np.zeros(tweets.num_rows, bool)
        if not self._scrub:
            return mask
        sets = self._sets()
        users = sets["scrub"]
        authors = tweets.column("author_id")
        cand = np.nonzero(users.isin(authors, screen))[0]
        if len(cand):
            a = pc.take(authors, pa.array(cand)).to_numpy(zero_copy_only=False)
            i = pc.take(tweets.column("id"), pa.array(cand)).to_numpy(zero_copy_only=False)
            mask[cand] = i <= sets["scrub_up_to"][np.searchsorted(users.ids, a)]
        return mask

    def scrub_nested_mask(self, tweets: pa.Table) -> np.ndarray:
        """True where the author of an embedded copy (the retweeted or quoted tweet) has any
        scrub_geo: raw payloads carry those copies whole, so their geo goes too (a
        conservative reading: the copy's own id is not checked against ``up_to``)."""
        mask = np.zeros(tweets.num_rows, bool)
        if not self._scrub:
            return mask
        users = self._sets()["scrub"]
        for col in ("retweeted_user_id", "quoted_user_id"):
            if col in tweets.column_names:
                mask |= users.isin(tweets.column(col))
        return mask

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """The state as Arrow IPC (for checkpoints)."""
        rows = []
        for name, st in {**self._tweet, **self._user}.items():
            rows += [(name, k, t, s, v, None) for k, (t, s, v) in st.entries.items()]
        for name, st in (("withheld_tweet", self._withheld_tweet),
                         ("withheld_user", self._withheld_user)):
            rows += [(name, k, t, s, None, sorted(v)) for k, (t, s, v) in st.entries.items()]
        rows += [("scrub_geo", k, v, 0, None, None) for k, v in self._scrub.items()]
        cols = list(zip(*rows)) if rows else [[]] * 6
        table = pa.table({
            "state": pa.array(cols[0], pa.string()), "id": pa.array(cols[1], pa.int64()),
            "time": pa.array(cols[2], pa.int64()), "seq": pa.array(cols[3], pa.int64()),
            "on": pa.array(cols[4], pa.bool_()),
            "countries": pa.array(cols[5], pa.list_(pa.string())),
        }, metadata={"seq": str(self._seq), "events": str(self.events)})
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return sink.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ComplianceState":
        from .errors import StateError
        try:
            table = pa.ipc.open_stream(data).read_all()
        except (pa.ArrowInvalid, OSError) as e:
            raise StateError(f"compliance state is corrupt: {e}") from None
        self = cls()
        meta = table.schema.metadata or {}
        self._seq = int(meta.get(b"seq", b"0"))
        self.events = int(meta.get(b"events", b"0"))
        for name, k, t, s, on, cs in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            if name in self._tweet:
                self._tweet[name].entries[k] = (t, s, on)
            elif name in self._user:
                self._user[name].entries[k] = (t, s, on)
            elif name == "withheld_tweet":
                self._withheld_tweet.entries[k] = (t, s, frozenset(cs))
            elif name == "withheld_user":
                self._withheld_user.entries[k] = (t, s, frozenset(cs))
            elif name == "scrub_geo":
                self._scrub[k] = t
            else:
                raise StateError(f"compliance state has an unknown entry {name!r}")
        return self
