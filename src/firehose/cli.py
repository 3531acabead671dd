"""The ``firehose`` command line.

    firehose gen 300000 -o capture.ndjson.zst --seed 7 --malformed-rate 0.001
    firehose gen 1000 --mixed | head
    firehose demo --n 20000 --dir demo
    firehose replay 'captures/*.ndjson.gz' -c clients.toml -o out/
    firehose inspect capture.ndjson.gz
    firehose rules check rules.ndjson
    firehose config validate examples/clients.toml

``gen`` needs only the pure-Python generator (:mod:`firehose.testing`); ``demo`` also needs the
compiled decoder, imported lazily so that ``gen`` works in a checkout that is not built yet.
"""
from __future__ import annotations

import json
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



def _read_text(ctx: click.Context, file: str) -> tuple[str, str]:
    """(display name, UTF-8 text) of a file or ``-`` (stdin); exit 2 with one line if it cannot
    be read."""
    name = "<stdin>" if file == "-" else file
    try:
        if file == "-":
            stdin = sys.stdin
            data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
        else:
            with open(file, "rb") as f:
                data = f.read()
    except OSError as e:
        click.echo(f"{name}: cannot read: {e.strerror or e}", err=True)
        ctx.exit(2)
    try:
        return name, data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        click.echo(f"{name}: cannot read: not UTF-8 text (byte {e.start})", err=True)
        ctx.exit(2)

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
              type=click.Path(file_okay=False), help="Where the sample capture and output live.")
@click.option("-c", "--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Clients configuration [default: examples/clients.toml of this checkout].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def demo(ctx, n, directory, config_path, seed):
    """Replay a generated sample capture through examples/clients.toml and print the summary.

    The sample is made once (DIR/sample.ndjson.gz); each demo replaces DIR/out."""
    from .testing import write_capture

    if config_path is None:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                            "examples", "clients.toml")
        config_path = os.path.relpath(here) if os.path.exists(here) else \
            os.path.join("examples", "clients.toml")
    path = os.path.join(directory, "sample.ndjson.gz")
    if os.path.exists(path):
        click.echo(f"using existing {path} (delete it to generate a new one)")
    else:
        try:
            os.makedirs(directory, exist_ok=True)
            part = os.path.join(directory, ".sample.partial.ndjson.gz")
            t0 = time.perf_counter()
            raw = write_capture(part, n, seed=seed, dup_rate=0.02, malformed_rate=0.001,
                                compliance_rate=0.02)
            os.replace(part, path)
        except OSError as e:
            raise click.ClickException(f"cannot write {path}: {e.strerror or e}") from None
        click.echo(f"generated {path}: {n:,} lines, {_mb(raw)} raw, {_mb(os.path.getsize(path))} gzip, "
                   f"in {time.perf_counter() - t0:.2f} s")
    out = os.path.join(directory, "out")
    click.echo(f"firehose replay {path} -c {config_path} -o {out} --overwrite")
    _replay(ctx, [path], config_path, out, False, True, 64 << 20, 4, 0.01, None, False, None)
    try:
        import pyarrow.parquet as pq
        front = os.path.join(out, "audit", "denials")
        t = pq.read_table(front)
        fc = t.filter([c == "frontco" for c in t.column("client").to_pylist()])
        if fc.num_rows:
            row = fc.slice(0, 1).to_pylist()[0]
            click.echo(f"frontco: {fc.num_rows:,} matches denied ({row['reason']}: "
                       f"{row['path']})")
    except Exception:  # noqa: BLE001 - the summary above is the demo; this is a footnote
        pass


# --------------------------------------------------------------------------------------------
# firehose rules check

_RULE_KEYS = ("id", "value", "tag", "fold")


@main.group("rules")
def rules_group() -> None:
    """Work with PowerTrack rule files."""


@rules_group.command("check")
@click.argument("file", type=click.Path(allow_dash=True))
@click.pass_context
def rules_check(ctx, file):
    """Check every rule of a rules file and print each problem.

    Problems print as FILE:LINE: rule ID: col N: reason; a clean file prints "N rules OK".
    FILE holds NDJSON objects {"id", "value", "tag", "fold"} (one a line), a JSON array of such
    objects, or plain text with one rule value a line (ids are then line-N).  The format is
    told by the first character that is not whitespace: '[' array, '{' NDJSON, else text.
    Blank lines are skipped.  An object without "id" gets line-N.  Exit status: 0 all rules
    are valid, 1 some problem, 2 the file cannot be read.
    """
    from .rules import check

    name, text = _read_text(ctx, file)
    try:
        entries = _read_rule_entries(text)
    except _RulesFileError as e:
        click.echo(f"{name}:{e.line}: cannot read: {e}", err=True)
        ctx.exit(2)

    problems = []                              # (line, order, message)
    rules, lines = [], []
    for line, rule, errs in entries:
        problems.extend((line, 0, m) for m in errs)
        if rule is not None:
            rules.append(rule)
            lines.append(line)
    for err in check(rules, where=[f"line {n}" for n in lines]):
        problems.append((lines[err.index], 1, str(err)))
    problems.sort(key=lambda p: (p[0], p[1]))  # stable: a rule's problems stay by column
    for line, _, message in problems:
        click.echo(f"{name}:{line}: {message}")
    if problems:
        bad = len({p[0] for p in problems})
        click.echo(f"{len(problems)} problem{'s' * (len(problems) != 1)} in {bad} of "
                   f"{len(entries)} rule{'s' * (len(entries) != 1)}", err=True)
        ctx.exit(1)
    click.echo(f"{len(rules)} rule{'s' * (len(rules) != 1)} OK")


class _RulesFileError(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _read_rule_entries(text: str) -> list:
    """``[(line, Rule | None, [problem, ...]), ...]`` from the text of a rules file."""
    head = text.lstrip()
    if head.startswith("["):
        return [(line, *_rule_from_object(obj, line)) for line, obj in _json_array_items(text)]
    out = []
    for n, raw in enumerate(text.split("\n"), 1):
        raw = raw[:-1] if raw.endswith("\r") else raw
        if not raw.strip():
            continue
        if head.startswith("{"):
            try:
                obj = json.loads(raw)
            except ValueError as e:
                out.append((n, None, [f"invalid JSON: {getattr(e, 'msg', e)} "
                                      f"(col {getattr(e, 'colno', '?')})"]))
                continue
            out.append((n, *_rule_from_object(obj, n)))
        else:
            out.append((n, *_rule_from_value(f"line-{n}", raw)))
    return out


def _rule_from_value(rule_id: str, value: str):
    from .rules import Rule
    return Rule(rule_id, value), []


def _rule_from_object(obj, line: int):
    """``(Rule | None, [problem, ...])`` from one decoded JSON value."""
    from .rules import Rule, RuleError

    if not isinstance(obj, dict):
        return None, [f"expected a JSON object with id, value and tag, got {type(obj).__name__}"]
    problems = []
    rid = obj.get("id", f"line-{line}")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    who = f"rule {rid}: " if isinstance(rid, str) and rid.strip() else ""
    for key in obj:
        if key not in _RULE_KEYS:
            problems.append(f"{who}unknown key {key!r} (a rule has {', '.join(_RULE_KEYS)})")
    value, tag, fold = obj.get("value"), obj.get("tag"), obj.get("fold", False)
    if not isinstance(rid, str):
        problems.append(f"id must be a string or an integer, not {json.dumps(rid)}")
    if "value" not in obj:
        problems.append(f"{who}missing \"value\"")
    elif not isinstance(value, str):
        problems.append(f"{who}value must be a string, not {json.dumps(value)}")
    if tag is not None and not isinstance(tag, str):
        problems.append(f"{who}tag must be a string or null, not {json.dumps(tag)}")
    if not isinstance(fold, bool):
        problems.append(f"{who}fold must be true or false, not {json.dumps(fold)}")
    if len(problems) > sum(p.startswith(f"{who}unknown key") for p in problems):
        return None, problems                  # something other than unknown keys is wrong
    try:
        return Rule(rid, value, tag, fold), problems
    except RuleError as e:
        return None, problems + [str(e)]


def _json_array_items(text: str):
    """``(line, value)`` of each element of the JSON array that is the whole of ``text``."""
    import bisect

    newlines = [i for i, c in enumerate(text) if c == "\n"]

    def line_of(pos: int) -> int:
        return bisect.bisect_left(newlines, pos) + 1

    dec = json.JSONDecoder()
    n = len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if i >= n or text[i] != "[":
        raise _RulesFileError(line_of(i), "not a JSON array of rules")
    start = i
    i = skip(i + 1)
    items = []
    if i < n and text[i] == "]":
        i += 1
    else:
        while True:
            try:
                value, end = dec.raw_decode(text, i)
            except ValueError as e:
                raise _RulesFileError(line_of(i), f"not a JSON array of rules: "
                                      f"{getattr(e, 'msg', e)}") from None
            items.append((line_of(i), value))
            i = skip(end)
            if i < n and text[i] == ",":
                i = skip(i + 1)
            elif i < n and text[i] == "]":
                i += 1
                break
            else:
                raise _RulesFileError(line_of(min(i, n - 1)) if i < n else line_of(start),
                                      "not a JSON array of rules: expected ',' or ']'")
    i = skip(i)
    if i < n:
        raise _RulesFileError(line_of(i), "not a JSON array of rules: extra data after the array")
    return items


# --------------------------------------------------------------------------------------------
# firehose config validate


@main.group("config")
def config_group() -> None:
    """Work with client configuration files (TOML)."""


@config_group.command("validate")
@click.argument("file", type=click.Path(allow_dash=True))
@click.pass_context
def config_validate(ctx, file):
    """Validate a configuration file and print each problem.

    Problems print as FILE: key.path: message, warnings as FILE: key.path: warning: message.
    A valid file prints its warnings, then one line: what it defines and its sha256.
    Exit status: 0 valid (warnings or not), 2 problems or the file cannot be read.
    """
    from .config import loads
    from .errors import ConfigError

    name, text = _read_text(ctx, file)

    def where(p) -> str:
        return f"{name}: {p.path}: " if p.path else f"{name}: "

    try:
        cfg = loads(text, source=name)
    except ConfigError as e:
        problems = getattr(e, "problems", ())
        for p in problems:
            click.echo(f"{where(p)}{p.message}")
        for w in getattr(e, "warnings", ()):
            click.echo(f"{where(w)}warning: {w.message}")
        n = len(problems)
        click.echo(f"{name}: {n} problem{'s' * (n != 1)}", err=True)
        ctx.exit(2)
    for w in cfg.warnings:
        click.echo(f"{where(w)}warning: {w.message}")

    def k(n: int, word: str, plural: str | None = None) -> str:
        return f"{n} {word if n == 1 else (plural or word + 's')}"

    n_rules = sum(len(c.rules) for c in cfg.clients.values())
    click.echo(f"{name}: OK: {k(len(cfg.clients), 'client')} ({k(n_rules, 'rule')}), "
               f"{k(len(cfg.organisations), 'organisation')}, {k(len(cfg.sources), 'source')}, "
               f"{k(len(cfg.licences), 'licence')}, {k(len(cfg.field_groups), 'field group')}, "
               f"{k(len(cfg.warnings), 'warning')}; sha256 {cfg.hash}")


# --------------------------------------------------------------------------------------------
# firehose inspect


class _InputFailure(click.ClickException):
    """An input that cannot be read: one line naming the file and where, exit status 2."""

    exit_code = 2


@main.command()
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--no-dedupe", is_flag=True, help="Count repeated tweet ids as tweets.")
@click.option("--samples", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many rejects to list with their line and byte offset.")
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many languages to list.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              hidden=True, help="Bytes read (decompressed) per step [4 MiB; 12 MiB segments "
              "with --threads > 1].")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Decode each capture on this many threads (the same report).")
def inspect(captures, as_json, no_dedupe, samples, top, chunk_size, threads):
    """Stream captures through the decoder and report what they hold.

    CAPTURE is a file (plain, .gz or .zst, told by its magic bytes), a glob or '-' for stdin.
    Per file and in total: bytes, lines, tweets by dialect, duplicates (one dedupe across all
    files, in the order given), compliance events by kind, rejects by reason with the first
    few, the created_at and tweet id ranges and the top languages.  Exit status: 0 the report
    was printed (rejects or not), 2 a capture cannot be read.
    """
    try:
        from .survey import format_report, survey
        from .decoder import Decoder  # noqa: F401 - the compiled core, checked up front
    except (ImportError, AttributeError) as e:
        raise click.ClickException(f"the decoder is not available ({e}); "
                                   "build it with `make compile`") from None
    from .errors import FirehoseError

    try:
        report = survey(list(captures), chunk_size=chunk_size, dedupe=not no_dedupe,
                        samples=samples, top=top, threads=threads)
    except (FirehoseError, OSError) as e:
        raise _InputFailure(" ".join(str(e).split()) or type(e).__name__) from None
    if as_json:
        click.echo(json.dumps(report, indent=None, ensure_ascii=False))
    else:
        click.echo(format_report(report))


# --------------------------------------------------------------------------------------------
# firehose bench


def _bench_candidates() -> list:
    """Directories that may hold the checkout's ``bench/``: the checkout this package was
    imported from (an editable install), then the working directory and its parents."""
    from pathlib import Path

    here = Path(__file__).resolve()
    out = [here.parents[2]] if len(here.parents) > 2 else []
    cwd = Path.cwd().resolve()
    out += [cwd, *cwd.parents]
    return out


def _find_bench_root(candidates):
    """The first candidate with ``bench/conftest.py`` and ``pyproject.toml``, or None."""
    for root in candidates:
        if (root / "bench" / "conftest.py").is_file() and (root / "pyproject.toml").is_file():
            return root
    return None


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED, metavar="[PYTEST_ARGS]...")
@click.pass_context
def bench(ctx, pytest_args):
    """Run the benchmark suite: pytest bench --benchmark-only -q [PYTEST_ARGS]...

    Runs from the root of the source checkout (the benchmarks are not installed with the
    package), e.g. `firehose bench -k decode` or `firehose bench -- --help`.  Exit status is
    pytest's; 2 when bench/ or pytest-benchmark is missing.
    """
    import subprocess

    root = _find_bench_root(_bench_candidates())
    if root is None:
        raise _InputFailure("bench/ not found: the benchmarks live in a source checkout of "
                            "firehose; run this inside one (or `make bench` there)")
    missing = [m for m in ("pytest", "pytest_benchmark") if not _has_module(m)]
    if missing:
        raise _InputFailure(f"{' and '.join(missing)} not installed: "
                            "pip install 'firehose[bench]'")
    cmd = [sys.executable, "-m", "pytest", "bench", "--benchmark-only", "-q", *pytest_args]
    try:
        rc = subprocess.run(cmd, cwd=str(root)).returncode
    except KeyboardInterrupt:
        rc = 2
    ctx.exit(rc)




# --------------------------------------------------------------------------------------------
# firehose replay

EXIT_OK, EXIT_REJECTS, EXIT_USAGE, EXIT_SINK = 0, 1, 2, 3


def _size(text: str) -> int:
    """``16MiB``, ``64k``, ``1048576`` -> bytes."""
    t = text.strip().lower().replace("ib", "").replace("b", "")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    try:
        n = int(float(t[:-1] if t[-1:] in "kmg" else t) * mult)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 16MiB, 512k)") from None
    if n < 1:
        raise click.BadParameter("must be positive")
    return n


class _Progress:
    """One status line on stderr, redrawn at most twice a second; nothing when not a TTY."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.drawn = False

    def __call__(self, pipe) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < 0.5:
            return
        self.last = now
        c = pipe.counters
        dt = max(now - self.t0, 1e-9)
        line = (f"\r{c.get('decode.bytes', 0) / 1e6:,.0f} MB read  "
                f"{c.get('decode.tweets', 0) / dt:,.0f} tweets/s  "
                f"delivered {c.get('entitle.delivered', 0):,}  denied {c.get('entitle.denied', 0):,}  "
                f"rejects {c.get('decode.rejects', 0):,}")
        click.echo(line + "\x1b[K", err=True, nl=False)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            click.echo("\r\x1b[K", err=True, nl=False)


def _replay(ctx, captures, config_path, out, resume, overwrite, batch_bytes, commit_every,
            max_reject_rate, source, quiet, progress, delivered_window_hours=None) -> None:
    from .entitlements import DEFAULT_WINDOW_HOURS
    from .errors import ConfigError, InputError, SinkError, StateError
    from .pipeline import Pipeline

    def fail(code: int, msg: str):
        click.echo(f"firehose replay: {' '.join(str(msg).split())}", err=True)
        ctx.exit(code)

    config = _load_config(fail, config_path)
    bar = _Progress(progress if progress is not None else (sys.stderr.isatty() and not quiet))
    try:
        pipe = Pipeline(config, out_dir=out, batch_bytes=batch_bytes, commit_every=commit_every,
                        source=source,
                        delivered_window_hours=delivered_window_hours or DEFAULT_WINDOW_HOURS)
        pipe.progress = bar
        report = pipe.run(list(captures), resume=resume, overwrite=overwrite)
    except (ConfigError, StateError, InputError) as e:
        bar.close()
        fail(EXIT_USAGE, str(e))
    except SinkError as e:
        bar.close()
        fail(EXIT_SINK, str(e))
    except KeyboardInterrupt:
        bar.close()
        fail(130, "interrupted; committed output is kept, continue with --resume")
    bar.close()
    _report(fail, report, out, quiet, max_reject_rate)


def _load_config(fail, config_path: str):
    """The configuration, or one line naming the file, the key path and the first problem
    (exit 2)."""
    from .config import load
    from .errors import ConfigError
    try:
        return load(config_path)
    except ConfigError as e:
        problems = getattr(e, "problems", ())
        first = problems[0] if problems else None
        where = f"{first.path}: " if first is not None and first.path else ""
        fail(EXIT_USAGE, f"{config_path}: {where}{first.message if first else e}"
             + (f" (and {len(problems) - 1} more; see firehose config validate)"
                if len(problems) > 1 else ""))
    except OSError as e:
        fail(EXIT_USAGE, f"{config_path}: cannot read: {e.strerror or e}")


def _report(fail, report, out: str, quiet: bool, max_reject_rate: float) -> None:
    """The end of a replay (single machine or distributed): the summary, then exit status 1
    when rejects are over the threshold."""
    if not quiet:
        click.echo(report.summary())
        click.echo(f"manifest: {os.path.join(out, 'manifest.json')}")
    if report.reject_rate > max_reject_rate:
        fail(EXIT_REJECTS, f"{report.get('decode.rejects'):,} of {report.get('decode.lines'):,} "
             f"lines rejected ({report.reject_rate:.2%} > --max-reject-rate "
             f"{max_reject_rate:.2%}); see {os.path.join(out, 'rejects')}")


@main.command()
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The clients configuration (TOML).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output directory (clients/, audit/, rejects/, manifest.json).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the output of an earlier run.")
@click.option("--batch-bytes", default="64MiB", show_default=True, callback=lambda c, p, v: _size(v),
              help="Batch window of decompressed input; outputs are identical for equal values.")
@click.option("--commit-every", type=click.IntRange(min=1), default=4, show_default=True,
              help="Batches per commit (parts renamed into place, then the checkpoint).")
@click.option("--max-reject-rate", type=click.FloatRange(min=0, max=1), default=0.01,
              show_default=True, help="Exit 1 when more than this share of lines is rejected.")
@click.option("--source", default=None, help="The configured source of the captures "
              "(default: the only one).")
@click.option("--delivered-window-hours", type=click.FloatRange(min=0, min_open=True),
              default=6.0, show_default=True,
              help="Tweet time of deliveries kept in memory for forwarding deletes; older ones "
              "are read from OUT/state/delivered/. Outputs do not depend on it.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@click.option("--progress/--no-progress", default=None,
              help="Force the progress line on or off (default: on when stderr is a terminal).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:8786",
              help="Run on this Dask cluster (firehose[dask]; docs/architecture.md).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Run on a local Dask cluster of N worker processes (firehose[dask]).")
@click.pass_context
def replay(ctx, captures, config_path, out, resume, overwrite, batch_bytes, commit_every,
           max_reject_rate, source, delivered_window_hours, quiet, progress, scheduler=None,
           workers=None):
    """Replay captures through every client: matches, entitlements, sinks, audit.

    CAPTURE is a file (plain, .gz, .zst), a glob, or - for standard input. Exit status:
    0 done, 1 rejects over --max-reject-rate (outputs complete), 2 bad usage, configuration or
    input, 3 a sink failed (committed parts are kept; --resume continues).
    """
    if scheduler or workers:
        from .dist import cli_replay
        return cli_replay(ctx, captures, config_path, out, resume, overwrite, max_reject_rate,
                          source, quiet, scheduler, workers)
    _replay(ctx, captures, config_path, out, resume, overwrite, batch_bytes, commit_every,
            max_reject_rate, source, quiet, progress, delivered_window_hours)



# --------------------------------------------------------------------------------------------
# firehose consume (live ingestion from NATS JetStream; firehose/live.py)

@main.command()
@click.argument("url", metavar="NATS_URL")
@click.option("--stream", required=True, help="The JetStream stream holding the firehose.")
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The clients configuration (TOML); re-read on SIGHUP or when it changes.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output directory (clients/, audit/, rejects/, the checkpoint).")
@click.option("--publish", is_flag=True,
              help="Send each client's rows to <out-prefix>.<client> (NDJSON, one row a "
                   "message) instead of writing client files.")
@click.option("--out-prefix", default="firehose.out", show_default=True)
@click.option("--out-stream", default="FIREHOSE_OUT", show_default=True,
              help="JetStream stream capturing <out-prefix>.> (created when missing).")
@click.option("--dup-window", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds a re-published row is recognised as a duplicate (new out-stream).")
@click.option("--durable", default="firehose", show_default=True, help="Durable consumer name.")
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="Messages per fetch.")
@click.option("--commit-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Fetches per commit (a fetch that finds the stream caught up commits).")
@click.option("--max-ack-pending", type=click.IntRange(min=1), default=None,
              help="Delivered but unacknowledged messages (default 2 x batch x commit-every).")
@click.option("--ack-wait", type=click.FloatRange(min=0.1), default=30, show_default=True,
              help="Seconds before the broker redelivers an unacknowledged message.")
@click.option("--drain", is_flag=True, help="Exit once nothing is pending for the consumer.")
@click.option("--reload-check", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between looks at the config file (0: only on SIGHUP).")
@click.option("--source", default=None, help="The configured source (default: the only one).")
@click.option("-q", "--quiet", is_flag=True, help="No summary at exit.")
@click.pass_context
def consume(ctx, url, stream, config_path, out, publish, out_prefix, out_stream, dup_window,
            durable, batch, commit_every, max_ack_pending, ack_wait, drain, reload_check,
            source, quiet):
    """Consume the firehose live from NATS JetStream, as replay does with files.

    Messages hold whole NDJSON lines; each batch is committed to the sinks (or published and
    acknowledged by the output stream) before its messages are acknowledged; a restart
    continues from the checkpoint. SIGTERM/SIGINT stop after the current batch, SIGHUP reloads
    the configuration. Exit status: 0 stopped, 2 bad usage, configuration, state or an
    unreachable broker, 3 a sink, the output stream or the broker failed while running
    (restart continues).
    """
    import asyncio

    from .errors import ConfigError, SinkError, StateError

    def fail(code: int, msg: str):
        click.echo(f"firehose consume: {' '.join(str(msg).split())}", err=True)
        ctx.exit(code)

    try:                        # the config file's own errors are configuration errors
        with open(config_path, "rb") as f:
            f.read(1)
    except OSError as e:
        fail(EXIT_USAGE, f"{config_path}: cannot read: {e.strerror or e}")
    consumer = None
    try:
        from .live import BrokerError, Consumer, install_signal_handlers
        consumer = Consumer(url, stream, config_path, out, publish=publish,
                            out_prefix=out_prefix, out_stream=out_stream, dup_window=dup_window,
                            durable=durable, batch=batch, commit_every=commit_every,
                            max_ack_pending=max_ack_pending, ack_wait=ack_wait, drain=drain,
                            reload_check=reload_check or None, source=source)

        async def go():
            install_signal_handlers(consumer, asyncio.get_running_loop())
            return await consumer.run()

        report = asyncio.run(go())
    except BrokerError as e:    # unreachable at start: usage; lost mid-run: restart continues
        fail(EXIT_SINK if e.mid_run else EXIT_USAGE, str(e))
    except (ConfigError, StateError, ValueError) as e:
        fail(EXIT_USAGE, str(e))
    except SinkError as e:
        fail(EXIT_SINK, str(e))
    except OSError as e:        # the output directory (a broker time-out is a BrokerError)
        where = getattr(e, "filename", None)
        fail(EXIT_SINK if consumer is not None and consumer.started else EXIT_USAGE,
             f"{where}: {e.strerror or e}" if where else str(e))
    if not quiet:
        click.echo(report.summary())


if __name__ == "__main__":
    main()
