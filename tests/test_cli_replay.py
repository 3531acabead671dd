"""``firehose replay`` as users run it: exit codes, one-line errors, and kill -9 then
``--resume`` giving exactly the files of an uninterrupted run."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from firehose.checkpoint import Checkpoint
from firehose.cli import main
from firehose.pipeline import MANIFEST_NAME
from firehose.testing import write_capture

try:
    from corpus import output_tree
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.corpus import output_tree

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
EXAMPLE = os.path.join(ROOT, "examples", "clients.toml")


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cap") / "cap.ndjson.gz")
    write_capture(path, 2500, seed=11, dup_rate=0.02, malformed_rate=0.002, compliance_rate=0.04)
    return path


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_replay_writes_every_output_and_prints_the_summary(capture, tmp_path):
    out = str(tmp_path / "out")
    r = _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "--batch-bytes", "1MiB")
    assert r.exit_code == 0, r.output
    for stage in ("decode", "compliance", "route", "entitle", "sink"):
        assert f"\n{stage} " in r.output
    assert "frontco" in r.output
    assert os.path.exists(os.path.join(out, MANIFEST_NAME))
    assert os.listdir(os.path.join(out, "clients", "newsroom"))
    assert not os.path.exists(os.path.join(out, "clients", "frontco")) or not [
        f for f in os.listdir(os.path.join(out, "clients", "frontco")) if f.startswith("part-")]


def test_a_short_delivered_window_spills_and_changes_no_output(capture, tmp_path):
    """--delivered-window-hours: with two seconds of tweet time in memory (the capture spans
    about six) the deliveries before move to OUT/state/delivered/ as delivered files, and
    every output is the same as with the default window."""
    ref, out = str(tmp_path / "ref"), str(tmp_path / "out")
    assert _invoke("replay", capture, "-c", EXAMPLE, "-o", ref, "-q",
                   "--batch-bytes", "1MiB").exit_code == 0
    # (nothing spilled: the state directory holds only what checkpoints wrote of the
    # deliveries in memory)
    assert all(f.startswith(("held-", "held_authors-"))
               for f in os.listdir(os.path.join(ref, "state", "delivered")))
    r = _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "-q", "--batch-bytes", "1MiB",
                "--delivered-window-hours", str(2 / 3600))
    assert r.exit_code == 0, r.output
    assert [f for f in os.listdir(os.path.join(out, "state", "delivered"))
            if f.startswith("delivered-")]
    assert output_tree(out) == output_tree(ref)
    assert _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "-q",
                   "--delivered-window-hours", "0").exit_code == 2


def test_rejects_over_the_threshold_exit_1_with_complete_outputs(capture, tmp_path):
    out = str(tmp_path / "out")
    r = _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "--max-reject-rate", "0")
    assert r.exit_code == 1
    assert "lines rejected" in r.output and "rejects" in r.output
    assert os.path.exists(os.path.join(out, MANIFEST_NAME))


def test_bad_configuration_exits_2_naming_file_and_key(capture, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(EXAMPLE).read_text().replace('use_case = "news alerts"\n', 'use_case = "x"\nbogus = 1\n', 1))
    r = _invoke("replay", capture, "-c", str(bad), "-o", str(tmp_path / "o"))
    assert r.exit_code == 2
    assert "bad.toml" in r.output and "bogus" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_missing_input_exits_2(tmp_path):
    r = _invoke("replay", str(tmp_path / "none.ndjson"), "-c", EXAMPLE, "-o", str(tmp_path / "o"))
    assert r.exit_code == 2
    assert "none.ndjson: cannot open" in r.output


def test_existing_output_needs_resume_or_overwrite(capture, tmp_path):
    out = str(tmp_path / "out")
    assert _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "-q").exit_code == 0
    r = _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "-q")
    assert r.exit_code == 2 and "--resume" in r.output
    assert _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "-q", "--overwrite").exit_code == 0


def test_a_sink_that_cannot_write_exits_3(capture, tmp_path):
    out = tmp_path / "out"
    (out / "clients").mkdir(parents=True)
    (out / "clients" / "newsroom").write_text("not a directory")
    r = _invoke("replay", capture, "-c", EXAMPLE, "-o", str(out), "--resume")
    assert r.exit_code == 3, r.output
    assert "clients/newsroom" in r.output
    assert not os.path.exists(out / MANIFEST_NAME)


def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_files(capture, tmp_path):
    args = [capture, "-c", EXAMPLE, "--batch-bytes", "128KiB", "--commit-every", "1", "-q"]
    ref = str(tmp_path / "ref")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "firehose.cli", "replay", *args, "-o", ref],
                   check=True, cwd=ROOT)
    full = time.perf_counter() - t0
    out = str(tmp_path / "killed")
    rng = random.Random(5)
    kills = 0
    for attempt in range(4):
        cmd = [sys.executable, "-m", "firehose.cli", "replay", *args, "-o", out]
        if attempt:
            cmd.append("--resume")
        p = subprocess.Popen(cmd, cwd=ROOT)
        # kill only once this attempt has committed something past where it started, then
        # after a random extra delay: a kill during interpreter start-up would test nothing
        start_part = (Checkpoint.load(out).part if os.path.exists(
            os.path.join(out, "checkpoint.arrows")) else 0)
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            ck = Checkpoint.load(out) if os.path.exists(os.path.join(out, "checkpoint.arrows")) \
                else None
            if ck is not None and ck.part > start_part:
                break
            time.sleep(0.01)
        try:
            p.wait(timeout=rng.uniform(0.0, max(0.2, full / 3)))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
        else:
            assert p.returncode == 0
            break
    subprocess.run([sys.executable, "-m", "firehose.cli", "replay", *args, "-o", out, "--resume"],
                   check=True, cwd=ROOT)
    assert kills >= 1
    assert output_tree(out) == output_tree(ref)


def test_an_output_path_under_a_file_is_one_line_exit_2(capture, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = _invoke("replay", capture, "-c", EXAMPLE, "-o", str(f / "out"))
    assert r.exit_code == 2
    assert "cannot prepare the output directory" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_resume_with_other_batch_options_is_refused(capture, tmp_path):
    out = str(tmp_path / "out")
    assert _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "-q",
                   "--batch-bytes", "1MiB").exit_code == 0
    r = _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "-q", "--resume")
    assert r.exit_code == 2 and "other options" in r.output
    r = _invoke("replay", capture, "-c", EXAMPLE, "-o", out, "-q", "--resume",
                "--batch-bytes", "1MiB")
    assert r.exit_code == 0
