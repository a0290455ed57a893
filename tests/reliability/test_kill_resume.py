"""A campaign killed with ``kill -9`` at random moments loses nothing.

A two-worker campaign (one Hypothesis, one Atheris worker, a planted bug so
that there are findings to lose) is killed ``MIRRORFUZZ_RELIABILITY_ROUNDS``
times (3 by default) at a random moment and resumed each time.  After each
kill: no child process outlives the coordinator; every finding, raw example
and corpus entry seen after an earlier kill is still there, byte for byte;
every trace parses.  One kill is followed by a truncated last statistics
line, which the resume must tolerate.  The last resume runs to its end:
every raw example then has its repro and its ``finding`` line.

Corrupt state files on ``--resume`` give a one-line error and change nothing.
``MIRRORFUZZ_RELIABILITY_SEED`` fixes the random kill moments (printed on
failure).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fuzz.campaign import layout
from fuzz.campaign.config import CampaignConfig, save_config
from fuzz.campaign.findings import signature_of
from fuzz.campaign.stats import read_stats
from fuzz.cli import EXIT_BAD_INPUT, main
from fuzz.trace import load_trace

REPO = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("MIRRORFUZZ_RELIABILITY_ROUNDS") or 3)
SEED = int(os.environ.get("MIRRORFUZZ_RELIABILITY_SEED") or random.randrange(1 << 30))
MUTANT = "itree_inclusive_end"


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "fuzz.cli", "campaign", *args],
                                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)


def children_of(out: Path) -> list[int]:
    """Processes whose command line names ``out`` (workers, minimizer, coverage)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(out).encode() in cmdline and b"pytest" not in cmdline:
            found.append(int(entry.name))
    return found


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (seed {SEED})")
        time.sleep(0.1)


def started(out: Path, session: int) -> bool:
    """Session ``session`` (0: the first run) has started its two workers."""
    stats = out / layout.STATS
    return stats.is_file() and stats.read_bytes().count(b'"event":"started"') >= 2 * (session + 1)


def snapshot(out: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every finding, raw example and corpus entry."""
    files: dict[str, str] = {}
    for part, pattern in ((layout.FINDINGS, "*.trace"), (layout.RAW, "*.trace"),
                          (layout.TRACE_CORPUS, "*.trace"), (layout.ATHERIS_CORPUS, "*")):
        directory = layout.path(out, part)
        for path in directory.glob(pattern) if directory.is_dir() else ():
            if path.is_file() and not path.name.startswith("."):
                files[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def test_kill_9_at_random_moments_and_resume_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    out = tmp_path / "c"
    log = tmp_path / "runs.log"
    proc = start(["--time", "90s", "--jobs", "2", "--engine", "both", "--seed", str(SEED),
                  "--mutant", MUTANT, "--out", str(out)], log)
    before: dict[str, str] = {}
    for round_ in range(ROUNDS):
        running = proc
        wait_for(lambda k=round_, p=running: started(out, k) or p.poll() is not None,
                 120, "the workers")
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(rng.uniform(1.0, 8.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not children_of(out), 15, "the children to die with the coordinator")
        now = snapshot(out)
        lost = {k: v for k, v in before.items() if now.get(k) != v}
        assert not lost, f"round {round_} (seed {SEED}): lost or changed {sorted(lost)}"
        for name in now:
            if name.endswith(".trace"):
                load_trace(str(out / name))  # a trace cut short would not parse
        read_stats(out)  # no corrupt line (a truncated last one is allowed)
        before = now
        if round_ == 0:
            with open(out / layout.STATS, "ab") as f:
                f.write(b'{"kind":"progress","t":1')  # as if killed mid-write
        last = round_ == ROUNDS - 1
        proc = start(["--resume", str(out), "--time", "20s" if last else "90s"], log)
    assert proc.wait(timeout=400) in (0, 1), log.read_text()[-3000:]
    now = snapshot(out)
    lost = {k: v for k, v in before.items() if now.get(k) != v}
    assert not lost, f"seed {SEED}: lost or changed {sorted(lost)}"
    lines = read_stats(out).lines
    kinds = [line["kind"] for line in lines]
    assert kinds.count("resume") == ROUNDS and kinds[-1] == "stop"
    times = [line["t"] for line in lines]
    assert times == sorted(times), "t must count on across resumes"
    recorded = {line.get("found_as", line["signature"]) for line in lines
                if line["kind"] == "finding"}
    raws = {signature_of(p) for p in layout.path(out, layout.RAW).glob("*.trace")}
    assert raws == recorded, f"seed {SEED}: raw examples without a finding line"
    assert raws, f"seed {SEED}: the planted bug was never found"
    for line in lines:
        if line["kind"] == "finding":
            assert (out / line["path"]).is_file(), f"seed {SEED}: {line['path']} missing"
            if line.get("duplicate"):  # a known cause: its path is that cause's first repro
                continue
            assert load_trace(str(out / line["path"])).header("signature") == line["signature"]


# -------------------------------------------------------- corrupt state files


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    out = tmp_path / "c"
    out.mkdir()
    save_config(out, CampaignConfig(time_s=60, jobs=1, engine="hypothesis", seed=1))
    start_line = {"kind": "start", "t": 0, "at": "2026-01-01T00:00:00Z", "config": {}}
    progress = {"kind": "progress", "t": 10, "at": "2026-01-01T00:00:10Z", "engines": {}}
    (out / layout.STATS).write_text(json.dumps(start_line) + "\n" + json.dumps(progress) + "\n")
    return out


def _state(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


@pytest.mark.parametrize("damage, needle", [
    (lambda out: (out / layout.CONFIG).write_text('{"time_s": 6'), "corrupt campaign"),
    (lambda out: (out / layout.CONFIG).write_text("[1, 2]\n"), "corrupt campaign"),
    (lambda out: (out / layout.CONFIG).write_text('{"jobs": "many"}\n'), "corrupt campaign"),
    (lambda out: (out / layout.CONFIG).write_text('{"colour": 1}\n'), "unknown key"),
    (lambda out: (out / layout.CONFIG).write_bytes(b"\xff\xfe"), "corrupt campaign"),
    (lambda out: (out / layout.CONFIG).unlink(), "not a campaign directory"),
    (lambda out: (out / layout.STATS).write_text('{"kind": "start"}\nnot json\n{"kind": "x"}\n'),
     "stats.jsonl:2: corrupt"),
    (lambda out: (out / layout.STATS).write_text('[1]\n{"kind": "x"}\n'), "stats.jsonl:1: corrupt"),
])
def test_corrupt_state_files_give_one_line_and_change_nothing(
        campaign_dir: Path, damage: object, needle: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    damage(campaign_dir)  # type: ignore[operator]
    state = _state(campaign_dir)
    code = main(["campaign", "--resume", str(campaign_dir), "--time", "1s"])
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err
    assert _state(campaign_dir) == state
    assert sorted(p.name for p in campaign_dir.iterdir()) == sorted(state)


def test_a_truncated_last_stats_line_is_skipped(campaign_dir: Path) -> None:
    with open(campaign_dir / layout.STATS, "ab") as f:
        f.write(b'{"kind":"progress","t":2')
    found = read_stats(campaign_dir)
    assert [line["kind"] for line in found.lines] == ["start", "progress"]
    assert found.truncated


def test_a_second_coordinator_on_a_running_campaign_is_refused(
        campaign_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fuzz.campaign.runner import lock

    state = _state(campaign_dir)
    held = lock(campaign_dir)
    try:
        code = main(["campaign", "--resume", str(campaign_dir), "--time", "1s"])
    finally:
        held.close()
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and "another mirrorfuzz campaign is running" in err
    assert _state(campaign_dir) == state
