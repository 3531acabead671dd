"""The ``firehose`` command line.

    firehose gen 300000 -o capture.ndjson.zst --seed 7 --malformed-rate 0.001
    firehose gen 1000 --mixed | head
    firehose demo --n 20000 --dir demo

``gen`` needs only the pure-Python generator (:mod:`firehose.testing`); ``demo`` also needs the
compiled decoder, imported lazily so that ``gen`` works in a checkout that is not built yet.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter

import click

from . import __version__

__all__ = ["main"]


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _counts(values) -> str:
    c = Counter(v for v in values if v is not None)
    return ", ".join(f"{k} {v:,}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def _clip(text, width: int = 70) -> str:
    if text is None:
        return "(no text)"
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "\u2026"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="firehose")
def main() -> None:
    """Replay and ingest the tweet firehose into deduplicated Apache Arrow batches."""


@main.command()
@click.argument("n", type=click.IntRange(min=0))
@click.option("-o", "--output", default="-", show_default=True, metavar="PATH",
              help="Where to write: .gz and .zst are compressed, '-' is stdout.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes).")
@click.option("--dup-rate", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="Share of lines that re-send a recent tweet line byte for byte.")
@click.option("--malformed-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of broken lines (cut off, bad JSON/UTF-8/escapes, missing id).")
@click.option("--compliance-rate", type=click.FloatRange(0, 1), default=0.03, show_default=True,
              help="Share of stream messages (delete, limit, scrub_geo, withheld, ...).")
@click.option("--mixed", is_flag=True, help="Interleave v1.1, v2 envelopes and Gnip activities.")
@click.option("--dialect", type=click.Choice(["v1.1", "v2", "activity", "mixed"]), default=None,
              help="Write one dialect only (default v1.1; --mixed is --dialect mixed).")
@click.option("--start", default=None, metavar="ISO",
              help="Time of the first tweet, e.g. 2022-03-01T00:00:00Z (the default).")
@click.option("--level", type=int, default=None, help="Compression level (gzip 6, zstd 3 by default).")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def gen(n, output, seed, dup_rate, malformed_rate, compliance_rate, mixed, dialect, start, level, quiet):
    """Write N lines of a deterministic synthetic firehose capture."""
    from .testing import write_capture

    if mixed and dialect not in (None, "mixed"):
        raise click.ClickException("--mixed and --dialect %s contradict each other" % dialect)
    dialect = "mixed" if mixed else (dialect or "v1.1")
    to_stdout = output == "-"
    t0 = time.perf_counter()
    try:
        kw = dict(seed=seed, dup_rate=dup_rate, malformed_rate=malformed_rate,
                  compliance_rate=compliance_rate, start=start, dialect=dialect, level=level)
        if to_stdout:
            with click.open_file("-", "wb") as out:       # binary stdout, left open
                total = write_capture(out, n, **kw)
        else:
            total = write_capture(output, n, **kw)
    except BrokenPipeError:                                # `firehose gen N | head`: stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        sys.exit(0)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        raise click.ClickException(" ".join(str(e).split()) or type(e).__name__) from None
    dt = time.perf_counter() - t0
    if not quiet:
        where = "stdout" if to_stdout else output
        disk = "" if to_stdout else f", {_mb(os.path.getsize(output))} on disk"
        click.echo(f"wrote {n:,} lines ({_mb(total)}{disk}) to {where} in {dt:.2f} s "
                   f"({n / dt if dt else 0:,.0f} lines/s, {total / dt / 1e6 if dt else 0:,.1f} MB/s)", err=True)


@main.command()
@click.option("--n", "n", type=click.IntRange(min=1), default=20000, show_default=True,
              help="Lines in the sample capture (used only when it has to be generated).")
@click.option("--dir", "directory", default="demo", show_default=True,
              type=click.Path(file_okay=False), help="Where the sample capture lives.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(n, directory, seed):
    """Generate a sample capture (if missing), decode it and print a short report."""
    from .testing import write_capture

    path = os.path.join(directory, "sample.ndjson.gz")
    if os.path.exists(path):
        click.echo(f"using existing {path} (delete it to generate a new one)")
    else:
        try:
            os.makedirs(directory, exist_ok=True)
            part = os.path.join(directory, ".sample.partial.ndjson.gz")
            t0 = time.perf_counter()
            raw = write_capture(part, n, seed=seed, dup_rate=0.02, malformed_rate=0.001)
            os.replace(part, path)
        except OSError as e:
            raise click.ClickException(f"cannot write {path}: {e.strerror or e}") from None
        click.echo(f"generated {path}: {n:,} lines, {_mb(raw)} raw, {_mb(os.path.getsize(path))} gzip, "
                   f"in {time.perf_counter() - t0:.2f} s")
    try:
        from firehose import decode_file
    except (ImportError, AttributeError) as e:
        raise click.ClickException(f"the decoder is not available ({e}); build it with `make compile`") from None

    t0 = time.perf_counter()
    try:
        res = decode_file(path)
    except Exception as e:  # the report must stay one line whatever the core raises
        raise click.ClickException(f"decoding {path} failed: {type(e).__name__}: "
                                   + " ".join(str(e).split())) from None
    dt = time.perf_counter() - t0
    stats = dict(getattr(res, "stats", None) or {})
    packed = os.path.getsize(path)
    raw = stats.get("bytes") or 0
    tweets, compliance, rejects = res.tweets, res.compliance, res.rejects

    click.echo(f"decoded {path} in {dt:.2f} s: "
               + (f"{raw / dt / 1e6:,.1f} MB/s uncompressed ({_mb(raw)}), " if raw and dt else "")
               + (f"{packed / dt / 1e6:,.1f} MB/s compressed ({_mb(packed)})" if dt else ""))
    click.echo(f"  lines       {stats.get('lines', 0):>10,}   blank {stats.get('blank', 0):,}")
    click.echo(f"  tweets      {tweets.num_rows:>10,}")
    click.echo(f"  duplicates  {stats.get('duplicates', 0):>10,}")
    click.echo(f"  compliance  {compliance.num_rows:>10,}   {_counts(compliance.column('kind').to_pylist())}")
    click.echo(f"  rejects     {rejects.num_rows:>10,}   {_counts(rejects.column('reason').to_pylist())}")
    if tweets.num_rows:
        click.echo("first tweets:")
        for row in tweets.select(["id", "lang", "text"]).slice(0, 3).to_pylist():
            click.echo(f"  {row['id']}  {row['lang'] or '-':<3}  {_clip(row['text'])}")


if __name__ == "__main__":
    main()
