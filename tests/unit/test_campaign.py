"""``mirrorfuzz campaign``: arguments, the directory layout, findings, restarts.

Two short real campaigns run once each (module fixtures): an Atheris one
with a planted bug, which must find it, minimize it and save a repro that
replays to the recorded signature; and an unmutated Hypothesis one whose
only worker crashes on purpose (``MIRRORFUZZ_TEST_CRASH``), which must
record the crash, restart the worker and find nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fuzz import impls
from fuzz.campaign import layout
from fuzz.campaign.config import CampaignConfig, load_config, parse_duration, worker_seed
from fuzz.campaign.stats import read_stats
from fuzz.campaign.workers import TEST_CRASH_ENV, classify_exit, parse_progress
from fuzz.cli import EXIT_BAD_INPUT, main
from fuzz.errors import BadInput
from fuzz.executor import Settings, run_trace
from fuzz.trace import load_trace

REPO = Path(__file__).resolve().parents[2]
MUTANT = "itree_inclusive_end"


def campaign(args: list[str], env: dict[str, str] | None = None,
             timeout: float = 240) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "fuzz.cli", "campaign", *args], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def stats_lines(out: Path) -> list[dict[str, Any]]:
    return read_stats(out).lines


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("argv, needle", [
    (["--mutant", "no_such_bug"], "unknown mutant"),
    (["--time", "soon"], "--time 'soon'"),
    (["--time", "0s"], "--time '0s'"),
    (["--jobs", "0"], "--jobs '0'"),
    (["--jobs", "two"], "--jobs 'two'"),
    (["--seed", "-1"], "--seed '-1'"),
    (["--db", "ftp://example/x"], "ftp://example/x"),
    (["--hang", "never"], "--hang 'never'"),
    (["--hang", "0"], "--hang '0'"),
    (["--rss-limit", "lots"], "--rss-limit 'lots'"),
    (["--rss-limit", "16"], "--rss-limit '16'"),
])
def test_bad_arguments_give_one_line_and_exit_2(
        argv: list[str], needle: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["campaign", "--out", str(tmp_path / "c"), *argv])
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    assert needle in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err
    assert not (tmp_path / "c").exists()


def test_hang_and_rss_limit_reach_the_configuration(tmp_path: Path) -> None:
    from fuzz.campaign.cli import _config
    from fuzz.cli import build_parser

    args = build_parser().parse_args(["campaign", "--out", str(tmp_path / "c"), "--hang",
                                      "5m", "--rss-limit", "512"])
    _, config, _, resumed = _config(args)
    assert (config.hang_s, config.rss_limit_mb, resumed) == (300.0, 512, False)
    _, default, _, _ = _config(build_parser().parse_args(["campaign", "--out",
                                                          str(tmp_path / "d")]))
    assert (default.hang_s, default.rss_limit_mb) == (120.0, 2048)


def test_resume_of_a_missing_or_foreign_directory_is_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaign", "--resume", str(tmp_path / "nothing")]) == EXIT_BAD_INPUT
    assert main(["campaign", "--resume", str(tmp_path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no such directory" in err and "not a campaign directory" in err


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "15m", "8h", "1.5m")] == [
        90, 90, 900, 28800, 90]
    with pytest.raises(BadInput):
        parse_duration("8 hours")


def test_same_seed_gives_the_same_worker_seeds() -> None:
    first = [worker_seed(42, w, 0, g) for w in range(4) for g in range(3)]
    assert first == [worker_seed(42, w, 0, g) for w in range(4) for g in range(3)]
    assert len(set(first)) == len(first)
    assert first != [worker_seed(43, w, 0, g) for w in range(4) for g in range(3)]
    assert worker_seed(42, 0, 0, 0) != worker_seed(42, 0, 1, 0)  # a resume draws anew


def test_engines_alternate_with_both() -> None:
    config = CampaignConfig(jobs=4, engine="both")
    assert [config.engine_of(w) for w in range(4)] == [
        "hypothesis", "atheris", "hypothesis", "atheris"]
    assert CampaignConfig(engine="atheris").engine_of(1) == "atheris"


def test_progress_lines_of_both_engines_parse() -> None:
    hyp = parse_progress('@mirrorfuzz {"execs": 12, "steps": 345}')
    assert hyp is not None and (hyp.execs, hyp.steps) == (12, 345)
    lib = parse_progress("#4096\tpulse  cov: 1234 ft: 2345 corp: 55/1210b lim: 4 exec/s: 41 "
                         "rss: 120Mb")
    assert lib is not None and (lib.execs, lib.steps, lib.coverage) == (4096, None, 1234)
    hook = parse_progress("mirrorfuzz-progress execs=7 steps=99")
    assert hook is not None and (hook.execs, hook.steps) == (7, 99)
    assert parse_progress("INFO: Seed: 1") is None


def test_exits_are_classified() -> None:
    assert classify_exit("==1== ERROR: libFuzzer: out-of-memory (used: 3000Mb)", 1)[0] == "oom"
    assert classify_exit("==1== ERROR: libFuzzer: timeout after 120 seconds", 1)[0] == "hung"
    assert classify_exit("fuzz_trace.TraceFinding: mirrorfuzz finding x", 1)[0] == "restarted"
    assert classify_exit("Segmentation fault", -11)[0] == "crashed"


# ------------------------------------------------------- a mutant campaign


@pytest.fixture(scope="module")
def mutant_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("campaign") / "mutant"
    done = campaign(["--time", "15s", "--jobs", "1", "--engine", "atheris", "--seed", "1",
                     "--mutant", MUTANT, "--out", str(out)])
    return out, done.returncode, done.stdout + done.stderr


def test_a_mutant_campaign_finds_minimizes_and_saves_a_replayable_repro(
        mutant_run: tuple[Path, int, str]) -> None:
    out, code, output = mutant_run
    assert code == 1, output
    findings = [line for line in stats_lines(out) if line["kind"] == "finding"]
    assert findings, output
    for line in findings:
        repro = out / line["path"]
        raw = out / line["raw"]
        assert repro.is_file() and raw.is_file()
        trace = load_trace(str(repro))
        assert trace.header("signature") == line["signature"]
        assert trace.header("found-by") == f"campaign atheris worker {line['worker']}"
        text = repro.read_text()
        assert f"# mutant: {MUTANT}" in text and "# found-at: " in text
        assert len(trace.steps) <= len(load_trace(str(raw)).steps)
        verdict = run_trace(trace, impls.sides("both"), Settings(mutant=MUTANT))
        assert verdict.finding is not None
        assert verdict.finding.signature == line["signature"]
        assert run_trace(trace, impls.sides("both"), Settings()).finding is None


def test_a_campaign_writes_the_layout(mutant_run: tuple[Path, int, str]) -> None:
    out, _, output = mutant_run
    config = load_config(out)
    assert (config.mutant, config.seed, config.engine, config.jobs) == (MUTANT, 1, "atheris", 1)
    for part in (layout.ATHERIS_CORPUS, layout.TRACE_CORPUS, layout.RAW, layout.WORKERS):
        assert layout.path(out, part).is_dir(), part
    assert any(layout.path(out, layout.ATHERIS_CORPUS).iterdir())  # seeded from corpus/
    assert (out / layout.WORKERS / "0.log").stat().st_size > 0
    kinds = [line["kind"] for line in stats_lines(out)]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "progress" in kinds
    last = [line for line in stats_lines(out) if line["kind"] == "progress"][-1]
    assert last["engines"]["atheris"]["execs"] > 0, output
    assert last["engines"]["atheris"]["steps"] > 0
    assert set(last["rss_mb"]) == {"0"}
    times = [line["t"] for line in stats_lines(out)]
    assert times == sorted(times)
    assert stats_lines(out)[-1]["reason"] == "time"


# ---------------------------------------- a clean campaign with a crashing worker


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("campaign") / "clean"
    done = campaign(["--time", "12s", "--jobs", "1", "--engine", "hypothesis", "--seed", "3",
                     "--out", str(out)], env={TEST_CRASH_ENV: "0"})
    return out, done.returncode, done.stdout + done.stderr


def test_an_unmutated_campaign_reports_no_finding(crash_run: tuple[Path, int, str]) -> None:
    out, code, output = crash_run
    assert code == 0, output
    assert not any(line["kind"] == "finding" for line in stats_lines(out))
    assert not list(layout.path(out, layout.FINDINGS).glob("*.trace"))
    assert "0 distinct findings" in output


def test_a_crashing_worker_is_recorded_and_restarted(crash_run: tuple[Path, int, str]) -> None:
    out, _, output = crash_run
    events = [(line["event"], line["detail"]) for line in stats_lines(out)
              if line["kind"] == "worker"]
    names = [e for e, _ in events]
    assert names[0] == "started", events
    assert "crashed" in names, (events, output)
    assert names.index("restarted") > names.index("crashed")
    assert "exit 3" in dict(events)["crashed"]
    last = [line for line in stats_lines(out) if line["kind"] == "progress"][-1]
    assert last["engines"]["hypothesis"]["execs"] >= 1
    log = (out / layout.WORKERS / "0.log").read_text()
    assert "crashing on purpose" in log and log.count("=== mirrorfuzz: worker 0") >= 2


def test_json_config_round_trips(mutant_run: tuple[Path, int, str]) -> None:
    out, _, _ = mutant_run
    data = json.loads((out / layout.CONFIG).read_text())
    assert CampaignConfig(**data) == load_config(out)


# ------------------------------------------------------------- the watchdog


def _pool_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: CampaignConfig,
                 script: str, seconds: float) -> list[tuple[str, str]]:
    import time

    from fuzz.campaign import pool as pool_module

    monkeypatch.setattr(pool_module, "hypothesis_command",
                        lambda *args, **kwargs: [sys.executable, "-c", script])
    events: list[tuple[str, str]] = []
    pool = pool_module.Pool(tmp_path, config, 0,
                            lambda worker, engine, event, detail: events.append((event, detail)))
    pool.start_all()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            pool.poll()
            time.sleep(0.1)
    finally:
        pool.stop_all()
    return events


def test_a_silent_worker_is_killed_as_hung_and_restarted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CampaignConfig(jobs=1, engine="hypothesis", hang_s=1.0)
    events = _pool_events(tmp_path, monkeypatch, config,
                          "print('@mirrorfuzz {\"execs\": 1}', flush=True)\n"
                          "import time; time.sleep(60)", 3.5)
    names = [e for e, _ in events]
    assert names[:3] == ["started", "hung", "restarted"], events
    assert "no progress for 1 s" in events[1][1]


def test_a_worker_over_its_memory_limit_is_killed_as_oom(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CampaignConfig(jobs=1, engine="hypothesis", rss_limit_mb=1, hang_s=60)
    events = _pool_events(tmp_path, monkeypatch, config, "import time; time.sleep(60)", 2.0)
    assert [e for e, _ in events][:3] == ["started", "oom", "restarted"], events
    assert "over 1 MB" in events[1][1]
