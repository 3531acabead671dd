"""What is in a capture: the report of ``firehose inspect``.

    >>> from firehose.survey import survey, format_report
    >>> report = survey(["captures/*.ndjson.gz"])      # globs, "-" for stdin; plain, .gz, .zst
    >>> report["total"]["tweets"], report["files"][0]["rejects_by_reason"]
    >>> print(format_report(report))

Every capture is streamed through one shared :class:`firehose.Decoder` (chunk by chunk, so a file
is never held in memory whole), so a tweet already seen in an earlier file counts as a duplicate
of the later one, as in a replay of all the files in that order. The counts are the decoder's own
(``Decoder.stats`` and the rows of its tables), i.e. what ``firehose.decode_file`` reports.

The report is a dict of plain JSON values with fixed keys (``REPORT_KEYS`` per file and in total;
per file also ``path`` and ``compression``):

* ``bytes_compressed`` (on disk; ``None`` for compressed standard input, whose size is not known),
  ``bytes_decompressed`` (bytes decoded), ``lines``, ``blank_lines``;
* ``tweets`` (rows kept), ``duplicates`` (tweets dropped by dedupe), ``duplicate_rate``
  (``duplicates / (tweets + duplicates)``, 0.0 when there is no tweet), ``dedupe_late``,
  ``tweets_by_dialect`` (always the keys ``v1.1``, ``v2``, ``activity``);
* ``compliance`` and ``compliance_by_kind``, ``rejects`` and ``rejects_by_reason`` (only the
  kinds / reasons met, by name), ``first_rejects`` (the first few: ``source``, ``line``,
  ``byte_offset``, ``reason``, ``detail``);
* ``created_at_min`` / ``created_at_max`` (UTC ISO 8601 with milliseconds, ``None`` when no tweet
  has a time), ``tweet_id_min`` / ``tweet_id_max`` (integers or ``None``);
* ``languages_top``: ``[{"lang": code, "tweets": n}, ...]``, most frequent first (ties by code),
  tweets without a language not counted.

Errors are :class:`firehose.errors.InputError` naming the file and where (no file matches a
pattern, cannot open, corrupt gzip/zstd at a decompressed byte offset).
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
from collections import Counter

from .errors import InputError
from .reader import expand_paths
from .schema import DIALECTS

__all__ = ["survey", "format_report", "REPORT_KEYS"]

#: the keys of each report (per file and ``total``), in the order they are written
REPORT_KEYS = (
    "bytes_compressed", "bytes_decompressed", "lines", "blank_lines",
    "tweets", "duplicates", "duplicate_rate", "dedupe_late", "tweets_by_dialect",
    "compliance", "compliance_by_kind", "rejects", "rejects_by_reason", "first_rejects",
    "created_at_min", "created_at_max", "tweet_id_min", "tweet_id_max", "languages_top",
)

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_STAT_KEYS = ("bytes", "lines", "blank", "tweets", "duplicates", "dedupe_late", "compliance",
              "rejects")


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    t = _EPOCH + _dt.timedelta(milliseconds=int(ms))
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class _Tally:
    """Running counts of one file (or of all of them)."""

    def __init__(self, samples: int):
        self.samples = samples
        self.dialects: Counter = Counter()
        self.kinds: Counter = Counter()
        self.reasons: Counter = Counter()
        self.langs: Counter = Counter()
        self.first_rejects: list[dict] = []
        self.ms_min = self.ms_max = self.id_min = self.id_max = None
        self.stats = dict.fromkeys(_STAT_KEYS, 0)
        self.bytes_compressed: int | None = 0

    def add(self, res) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        t = res.tweets
        if t.num_rows:
            self.dialects.update(_value_counts(t.column("dialect")))
            self.langs.update(_value_counts(t.column("lang")))
            for what, col in (("id", t.column("id")),
                              ("ms", t.column("created_at").cast(pa.int64()))):
                mm = pc.min_max(col)
                self._range(what, mm["min"].as_py(), mm["max"].as_py())
        if res.compliance.num_rows:
            self.kinds.update(_value_counts(res.compliance.column("kind")))
        r = res.rejects
        if r.num_rows:
            self.reasons.update(_value_counts(r.column("reason")))
            want = self.samples - len(self.first_rejects)
            if want > 0:
                cols = ["source", "line", "byte_offset", "reason", "detail"]
                self.first_rejects.extend(r.select(cols).slice(0, want).to_pylist())

    def _range(self, what: str, lo, hi) -> None:
        if lo is None:
            return
        a, b = f"{what}_min", f"{what}_max"
        cur_lo, cur_hi = getattr(self, a), getattr(self, b)
        setattr(self, a, lo if cur_lo is None else min(cur_lo, lo))
        setattr(self, b, hi if cur_hi is None else max(cur_hi, hi))

    def merge(self, other: "_Tally") -> None:
        for mine, theirs in ((self.dialects, other.dialects), (self.kinds, other.kinds),
                             (self.reasons, other.reasons), (self.langs, other.langs)):
            mine.update(theirs)
        for k in _STAT_KEYS:
            self.stats[k] += other.stats[k]
        if self.bytes_compressed is not None:
            self.bytes_compressed = (None if other.bytes_compressed is None
                                     else self.bytes_compressed + other.bytes_compressed)
        want = self.samples - len(self.first_rejects)
        if want > 0:
            self.first_rejects.extend(other.first_rejects[:want])
        for what in ("id", "ms"):
            self._range(what, getattr(other, f"{what}_min"), getattr(other, f"{what}_max"))

    def report(self, top: int) -> dict:
        s = self.stats
        seen = s["tweets"] + s["duplicates"]
        langs = sorted(self.langs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return {
            "bytes_compressed": self.bytes_compressed,
            "bytes_decompressed": s["bytes"],
            "lines": s["lines"],
            "blank_lines": s["blank"],
            "tweets": s["tweets"],
            "duplicates": s["duplicates"],
            "duplicate_rate": s["duplicates"] / seen if seen else 0.0,
            "dedupe_late": s["dedupe_late"],
            "tweets_by_dialect": {d: self.dialects.get(d, 0) for d in DIALECTS},
            "compliance": s["compliance"],
            "compliance_by_kind": dict(sorted(self.kinds.items())),
            "rejects": s["rejects"],
            "rejects_by_reason": dict(sorted(self.reasons.items())),
            "first_rejects": list(self.first_rejects),
            "created_at_min": _iso(self.ms_min),
            "created_at_max": _iso(self.ms_max),
            "tweet_id_min": self.id_min,
            "tweet_id_max": self.id_max,
            "languages_top": [{"lang": k, "tweets": v} for k, v in langs],
        }


def _value_counts(col) -> dict:
    import pyarrow.compute as pc

    out: dict = {}
    for row in pc.value_counts(col).to_pylist():
        if row["values"] is not None:
            out[row["values"]] = out.get(row["values"], 0) + row["counts"]
    return out


def _compression(path: str) -> tuple[str, int | None]:
    """(``plain`` | ``gzip`` | ``zstd``, size on disk or None) of a capture, without consuming
    standard input."""
    if path == "-":
        raw = getattr(sys.stdin, "buffer", None)
        head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
        size = None
    else:
        try:
            with open(path, "rb") as f:
                head = f.read(4)
                size = os.fstat(f.fileno()).st_size
        except OSError as e:
            raise InputError(f"{path}: cannot open: {e.strerror or e}") from None
    kind = "gzip" if head.startswith(b"\x1f\x8b") else "zstd" if head.startswith(b"\x28\xb5\x2f\xfd") \
        else "plain"
    return kind, size


def survey(paths, *, chunk_size: int | None = None, dedupe: bool = True,
           dedupe_window_hours: float = 48.0, samples: int = 5, top: int = 5,
           threads: int = 1) -> dict:
    """Stream the captures at ``paths`` (files, globs, ``-`` for stdin) through one Decoder and
    return ``{"files": [report, ...], "total": report}`` (see the module docstring).

    ``samples`` is how many rejects are listed in ``first_rejects``, ``top`` how many languages
    in ``languages_top``; ``threads`` decodes each file on that many threads (``iter_file``:
    the same report). Raises :class:`firehose.errors.InputError` for a missing or unreadable
    file (naming it and, for a corrupt stream, the decompressed byte offset)."""
    from .decoder import Decoder, iter_file

    names = expand_paths(paths)
    if not names:
        raise InputError("no capture given")
    dec = Decoder(dedupe=dedupe, dedupe_window_hours=dedupe_window_hours)
    total = _Tally(samples)
    files = []
    for name in names:
        kind, size = _compression(name)
        tally = _Tally(samples)
        before = dec.stats
        source = "<stdin>" if name == "-" else name
        for res in iter_file(name, decoder=dec, chunk_size=chunk_size, source=source,
                             threads=threads):
            tally.add(res)
        after = dec.stats
        tally.stats = {k: after[k] - before[k] for k in _STAT_KEYS}
        if size is None and kind == "plain":
            size = tally.stats["bytes"]
        tally.bytes_compressed = size
        total.merge(tally)
        files.append({"path": source, "compression": kind, **tally.report(top)})
    return {"files": files, "total": {"files": len(files), **total.report(top)}}


# --------------------------------------------------------------------------------------------
# text

def _n(v) -> str:
    return "-" if v is None else f"{v:,}"


def _pairs(d: dict) -> str:
    items = sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v:,}" for k, v in items if v) or "-"


def _section(title: str, r: dict) -> list[str]:
    comp = r["bytes_compressed"]
    ratio = (f" ({r['bytes_decompressed'] / comp:.1f}x)"
             if comp and comp != r["bytes_decompressed"] else "")
    if r.get("compression") == "plain":
        size = f"  bytes        {_n(r['bytes_decompressed'])}"
    else:
        size = f"  bytes        {_n(comp)} compressed, {_n(r['bytes_decompressed'])} decompressed{ratio}"
    lines = [
        title,
        size,
        f"  lines        {_n(r['lines'])} ({_n(r['blank_lines'])} blank)",
        f"  tweets       {_n(r['tweets'])}   by dialect: {_pairs(r['tweets_by_dialect'])}",
        f"  duplicates   {_n(r['duplicates'])} ({r['duplicate_rate']:.2%} of tweets seen)"
        + (f", {_n(r['dedupe_late'])} too late to check" if r["dedupe_late"] else ""),
        f"  compliance   {_n(r['compliance'])}   {_pairs(r['compliance_by_kind'])}",
        f"  rejects      {_n(r['rejects'])}   {_pairs(r['rejects_by_reason'])}",
    ]
    for rej in r["first_rejects"]:
        lines.append(f"               {rej['source']}:{rej['line']} (byte {rej['byte_offset']}): "
                     f"{rej['reason']}: {rej['detail']}")
    if r["created_at_min"] is not None:
        lines.append(f"  created_at   {r['created_at_min']} .. {r['created_at_max']}")
    else:
        lines.append("  created_at   -")
    if r["tweet_id_min"] is not None:
        lines.append(f"  tweet ids    {r['tweet_id_min']} .. {r['tweet_id_max']}")
    else:
        lines.append("  tweet ids    -")
    langs = ", ".join(f"{x['lang']} {x['tweets']:,}" for x in r["languages_top"]) or "-"
    lines.append(f"  languages    {langs}")
    return lines


def format_report(report: dict) -> str:
    """The report of :func:`survey` as text: a section per file, then the total (when there is
    more than one file)."""
    out: list[str] = []
    for f in report["files"]:
        out += _section(f"{f['path']} ({f['compression']})", f)
    if len(report["files"]) > 1:
        out += _section(f"total ({report['total']['files']} files)", report["total"])
    return "\n".join(out)
