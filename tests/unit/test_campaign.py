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
import re
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


def test_the_contract_reaches_the_configuration_and_resume_keeps_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fuzz.campaign.cli import _config
    from fuzz.cli import build_parser

    args = build_parser().parse_args(["campaign", "--out", str(tmp_path / "c"),
                                      "--contract", "registration-cache"])
    assert _config(args)[1].contract == "registration-cache"
    assert _config(build_parser().parse_args(
        ["campaign", "--out", str(tmp_path / "d")]))[1].contract == "hmm"
    out = _campaign_dir(tmp_path)
    before = _checksums(tmp_path)
    code = main(["campaign", "--resume", str(out), "--time", "1s",
                 "--contract", "registration-cache"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and err.count("\n") == 1
    assert "--resume keeps the campaign's contract (hmm)" in err
    assert _checksums(tmp_path) == before


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
    assert classify_exit("fuzz_trace.TraceFinding: mirrorfuzz finding x", 77)[0] == "finding"
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
        if line.get("duplicate"):  # another example of a known cause: its first repro
            continue
        trace = load_trace(str(repro))
        assert trace.header("signature") == line["signature"]
        assert "found_as" not in line  # the engine's signature, kept
        assert trace.header("found-by") == f"campaign atheris worker {line['worker']}"
        text = repro.read_text()
        assert f"# mutant: {MUTANT}" in text and "# found-at: " in text
        assert f"# cause: {line['cause']}" in text and "# consequence: " in text
        assert len(trace.steps) <= len(load_trace(str(raw)).steps)
        judged = re.search(r"# judged-with: .*--observe-every (\d+)\)", text)
        assert judged is not None, text
        settings = Settings(mutant=MUTANT, observe_every=int(judged.group(1)))
        verdict = run_trace(trace, impls.sides("both"), settings)
        assert verdict.finding is not None
        assert verdict.finding.signature == line["signature"]
        assert run_trace(trace, impls.sides("both"), Settings()).finding is None
    events = [line["event"] for line in stats_lines(out) if line["kind"] == "worker"]
    assert "crashed" not in events, events  # an exit 77 on a finding is a finding event


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


# ------------------------------------------------- hostile campaign directories


def _campaign_dir(tmp_path: Path, **config: Any) -> Path:
    from fuzz.campaign.config import save_config

    out = tmp_path / "c"
    out.mkdir()
    save_config(out, CampaignConfig(**{"time_s": 60, "jobs": 1, "engine": "hypothesis",
                                       "seed": 1, **config}))
    lines = [{"kind": "start", "t": 0, "at": "2026-01-01T00:00:00Z", "config": {}},
             {"kind": "progress", "t": 10, "at": "2026-01-01T00:00:10Z",
              "engines": {"hypothesis": {"workers": 1, "execs": 5, "steps": 50}}}]
    (out / layout.STATS).write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out


def _checksums(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a file's bytes digest, or what it is."""
    import hashlib
    import stat as st

    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        mode = os.lstat(path).st_mode
        if st.S_ISREG(mode):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[str(path.relative_to(root))] = f"{st.S_IFMT(mode):o}" + (
                os.readlink(path) if st.S_ISLNK(mode) else "")
    return found


def _config_edit(**changes: Any) -> Any:
    def edit(out: Path) -> None:
        data = json.loads((out / layout.CONFIG).read_text())
        data.update(changes)
        (out / layout.CONFIG).write_text(json.dumps(data))
    return edit


def _config_text(old: str, new: str) -> Any:
    def edit(out: Path) -> None:
        path = out / layout.CONFIG
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
    return edit


def _stats_append(text: str) -> Any:
    def edit(out: Path) -> None:
        with open(out / layout.STATS, "a") as f:
            f.write(text + "\n")
    return edit


def _replace_by_file(part: str) -> Any:
    def edit(out: Path) -> None:
        path = out / part
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    return edit


def _symlink(part: str, target: str) -> Any:
    def edit(out: Path) -> None:
        (out / part).unlink(missing_ok=True)
        (out / part).symlink_to(target)
    return edit


_PROGRESS = '{{"kind":"progress","t":{t},"engines":{{"hypothesis":{{"execs":{execs}}}}}}}'


@pytest.mark.parametrize("damage, needle", [
    (lambda out: (out / layout.CONFIG).write_text("[" * 100000), "nested more than"),
    (_stats_append('{"kind":"x","a":' + "[" * 100000), "nested more than"),
    (_stats_append(_PROGRESS.format(t=11, execs='"abc"')), "execs must be a number"),
    (_stats_append(_PROGRESS.format(t=11, execs="NaN")), "NaN"),
    (_stats_append(_PROGRESS.format(t=11, execs="Infinity")), "Infinity"),
    (_stats_append(_PROGRESS.format(t=11, execs="[1]")), "execs must be a number"),
    (_stats_append(_PROGRESS.format(t=11, execs="1.5")), "whole number"),
    (_stats_append(_PROGRESS.format(t="1e400", execs=1)), "out of range"),
    (_stats_append(_PROGRESS.format(t="1e300", execs=1)), "t must be between"),
    (_config_text('"time_s": 60', '"time_s": NaN'), "NaN"),
    (_config_text('"hang_s": 120.0', '"hang_s": Infinity'), "Infinity"),
    (_replace_by_file(layout.FINDINGS), "findings: a regular file"),
    (_replace_by_file(layout.RAW), "raw: a regular file"),
    (_replace_by_file(layout.TRACE_CORPUS), "traces: a regular file"),
    (_replace_by_file(layout.ATHERIS_CORPUS), "atheris: a regular file"),
    (_replace_by_file(layout.WORKERS), "workers: a regular file"),
    (_replace_by_file(layout.HYPOTHESIS_DB), "hypothesis-db: a regular file"),
    (_symlink(layout.STATS, "/nonexistent/stats"), "a dangling symbolic link"),
    (_symlink(layout.CONFIG, "/dev/zero"), "not a regular file (a character device)"),
    (lambda out: os.mkfifo(out / "workers" / "0.log") if (out / "workers").mkdir() is None
     else None, "0.log: a FIFO"),
    (lambda out: (out / layout.CONFIG).write_text("{}"), "no 'time_s'"),
    (_config_edit(mutant="nope"), "unknown mutant"),
    (_config_edit(rss_limit_mb=1), "rss_limit_mb must be between"),
    (_config_edit(hang_s=0), "hang_s must be between"),
    (_config_edit(db="ftp://x"), "unsupported database URL"),
    (_config_edit(db=""), "empty database"),
    (_config_edit(seed=1.5), "seed must be a whole number"),
    (_config_edit(seed=-1), "seed must be between"),
    (_config_edit(jobs=10**30), "jobs must be between"),
    (_config_edit(engine=["both"]), "engine must be a string"),
])
def test_resume_of_a_damaged_campaign_is_one_line_and_changes_nothing(
        tmp_path: Path, damage: Any, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _campaign_dir(tmp_path)
    damage(out)
    before = _checksums(tmp_path)
    code = main(["campaign", "--resume", str(out), "--time", "1s"])
    stdout, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT, stdout + err
    assert err.startswith("mirrorfuzz: error: ") and err.count("\n") == 1, err
    assert needle in err, err
    assert _checksums(tmp_path) == before


def test_report_skips_absurd_times_and_never_reads_a_fifo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _campaign_dir(tmp_path)
    _stats_append(_PROGRESS.format(t="1e308", execs=1))(out)
    (out / layout.FINDINGS).mkdir()
    os.mkfifo(out / layout.FINDINGS / "x.trace")
    (out / layout.RAW).mkdir()
    os.mkfifo(out / layout.RAW / "y.trace")
    _stats_append('{"kind":"finding","t":5,"path":"findings/fifo.trace","signature":"a/b/c"}')(
        out)
    os.mkfifo(out / layout.FINDINGS / "fifo.trace")
    assert main(["report", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert err == "" and "1 unparseable line skipped" in stdout
    assert "not a regular file (a FIFO)" in (out / layout.REPORT_MD).read_text()


def test_report_names_a_huge_finding_without_reading_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    out = _campaign_dir(tmp_path)
    (out / layout.FINDINGS).mkdir()
    big = out / layout.FINDINGS / "big.trace"
    big.write_text("# mirrorfuzz-trace 1\n" + "read P0 0\n" * 5_000_000)  # 48 MB
    started = time.monotonic()
    assert main(["report", str(out)]) == 0
    assert time.monotonic() - started < 10
    assert "too large" in (out / layout.REPORT_MD).read_text()
    capsys.readouterr()


def test_two_coordinators_on_a_fresh_out_the_loser_is_told_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fuzz.campaign.runner import lock

    out = tmp_path / "fresh"
    out.mkdir()
    held = lock(out)  # the winner has just made the directory and taken the lock
    try:
        code = main(["campaign", "--out", str(out), "--time", "1s"])
    finally:
        held.close()
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and "another mirrorfuzz campaign is running there" in err


@pytest.mark.parametrize("argv, needle", [
    (["--time", "9" * 400], "--time"),
    (["--hang", "9" * 400], "--hang"),
    (["--time", "400d"], "at most 366 days"),
    (["--seed", "9" * 400], "--seed"),
    (["--rss-limit", "9" * 400], "--rss-limit"),
    (["--db", "redis://[::1"], "malformed URL"),
    (["--db", "/dev/null"], "a character device, not a directory"),
    (["--db", ""], "--db: an empty value"),
    (["--db", "x\0y"], "NUL"),
    (["--jobs", "-5"], "--jobs"),
])
def test_absurd_arguments_are_one_line(argv: list[str], needle: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["campaign", "--out", str(tmp_path / "c"), *argv])
    _, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "c").exists()


def test_db_naming_a_file_and_long_out_names(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert main(["campaign", "--out", str(tmp_path / "c"), "--db", str(plain)]) == 2
    assert main(["campaign", "--out", str(tmp_path / ("x" * 300))]) == 2
    assert main(["campaign", "--out", str(plain)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "a regular file, not a directory" in err[0]
    assert "longer than 255 bytes" in err[1]
    assert "a regular file, not a directory" in err[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_absurd_jobs_are_capped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fuzz import validate
    from fuzz.campaign.cli import _config
    from fuzz.cli import build_parser

    for jobs in ("10000", "99999999999999999999"):
        args = build_parser().parse_args(["campaign", "--out", str(tmp_path / "c"), "--jobs",
                                          jobs])
        _, config, _, _ = _config(args)
        assert config.jobs == validate.max_jobs()
        assert "capped at" in args.jobs_note
    code = main(["campaign", "--out", str(tmp_path / "c"), "--jobs", "10000", "--time", "x"])
    assert code == EXIT_BAD_INPUT and capsys.readouterr().err.count("\n") == 1


def test_sighup_is_handled_like_sigterm() -> None:
    import signal

    from fuzz.campaign.runner import _sigterm_interrupts

    with _sigterm_interrupts():
        assert signal.getsignal(signal.SIGHUP) is signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGHUP)
            import time

            time.sleep(1)


# ---------------------------------------------------------- quarantine


def test_a_corrupt_raw_finding_is_quarantined_and_the_campaign_goes_on(tmp_path: Path) -> None:
    from fuzz.campaign.findings import Findings

    out = _campaign_dir(tmp_path)
    raw = out / layout.RAW
    raw.mkdir(parents=True)
    (raw / "bad.trace").write_text("# mirrorfuzz-trace 1\n# signature: violation/x/y\n"
                                   "frobnicate P0\n")
    os.mkfifo(raw / "fifo.trace")
    good = ("# mirrorfuzz-trace 1\n# signature: violation/a/b\nmmap P0 0 1 rw private\n")
    (raw / "good.trace").write_text(good)
    records: list[tuple[str, dict[str, Any]]] = []
    findings = Findings(out, None, lambda kind, **f: records.append((kind, f)), lambda _: None)
    findings.resume(set())
    assert [job.raw.name for job in findings.queue] == ["good.trace"]
    assert sorted(p.name for p in (out / layout.QUARANTINE).iterdir()) == ["bad.trace",
                                                                          "fifo.trace"]
    assert [k for k, _ in records] == ["quarantine", "quarantine"]
    assert "unknown op" in records[0][1]["reason"] and "FIFO" in records[1][1]["reason"]
    for kind, fields in records:
        with open(out / layout.STATS, "a") as f:
            f.write(json.dumps({"kind": kind, "t": 11, **fields}) + "\n")
    assert main(["report", str(out)]) == 0
    assert "findings/quarantine/bad.trace (line 3: unknown op" in (
        out / layout.REPORT_MD).read_text()


def test_a_corrupt_saved_repro_is_quarantined_and_its_raw_example_minimized_again(
        tmp_path: Path) -> None:
    from fuzz.campaign.findings import Findings

    out = _campaign_dir(tmp_path)
    raw, saved = out / layout.RAW, out / layout.FINDINGS
    raw.mkdir(parents=True)
    good = "# mirrorfuzz-trace 1\n# signature: violation/a/b\nmmap P0 0 1 rw private\n"
    (raw / "a.trace").write_text(good)
    (saved / "a.trace").write_text(good.replace("mmap", "frobnicate"))  # cut by a crash
    (saved / "junk.trace").write_bytes(b"\x00\xff" * 64)
    records: list[tuple[str, dict[str, Any]]] = []
    findings = Findings(out, None, lambda kind, **f: records.append((kind, f)), lambda _: None)
    findings.resume({"violation/a/b"})  # recorded as found: only its repro says otherwise
    assert sorted(p.name for p in (out / layout.QUARANTINE).iterdir()) == ["a.trace",
                                                                          "junk.trace"]
    assert [k for k, _ in records] == ["quarantine", "quarantine"]
    assert [job.raw.name for job in findings.queue] == ["a.trace"]
    assert findings.distinct() == 0 and not findings.causes


def test_a_raw_finding_that_cannot_be_saved_is_quarantined(tmp_path: Path) -> None:
    from fuzz.campaign.findings import Findings, Job

    out = _campaign_dir(tmp_path)
    records: list[str] = []
    findings = Findings(out, None, lambda kind, **f: records.append(kind), lambda _: None)
    raw = out / layout.RAW / "x.trace"
    raw.write_text("# mirrorfuzz-trace 1\n# signature: violation/x/y\nbad line\n")
    findings._finish(Job(raw, "violation/x/y", "hypothesis", 0), out / "no-result.json", 0.0)
    assert records == ["quarantine"] and not raw.exists()
    assert (out / layout.QUARANTINE / "x.trace").is_file()


# ------------------------------------------------------ full and read-only disks


def _fail_with(code: int) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code), "/injected/file")
    return fail


@pytest.mark.parametrize("where, code", [
    ("fuzz.campaign.runner.seed_atheris", 28),  # ENOSPC while seeding
    ("fuzz.campaign.pool.Pool._start", 28),  # ENOSPC starting a worker
])
def test_a_full_disk_stops_cleanly_and_resume_carries_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, code: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    module, _, name = where.rpartition(".")
    try:
        target: Any = importlib.import_module(module)
    except ImportError:
        module, _, cls = module.rpartition(".")
        target = getattr(importlib.import_module(module), cls)
    out = tmp_path / "c"
    with monkeypatch.context() as m:
        m.setattr(target, name, _fail_with(code))
        rc = main(["campaign", "--out", str(out), "--time", "2s", "--jobs", "1",
                   "--engine", "hypothesis", "--seed", "3"])
        stdout, err = capsys.readouterr()
    assert rc == EXIT_BAD_INPUT, stdout + err
    assert err == "mirrorfuzz: error: cannot write /injected/file: No space left on device\n"
    assert "mirrorfuzz: stopped: " in stdout and f"--resume {out}" in stdout
    assert load_config(out).seed == 3  # what was written is kept
    kinds = [line["kind"] for line in stats_lines(out)]
    if where.endswith("_start"):
        assert kinds[0] == "start" and kinds[-1] == "stop"
        assert stats_lines(out)[-1]["reason"] == "disk"
    rc = main(["campaign", "--resume", str(out), "--time", "1s"])
    stdout, err = capsys.readouterr()
    assert rc in (0, 1) and "Traceback" not in err, stdout + err
    assert [line["kind"] for line in stats_lines(out)][-1] == "stop"


def test_a_read_only_disk_at_a_stats_append_stops_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from fuzz.campaign import stats

    real = stats.StatsLog.append
    calls = {"n": 0}

    def append(self: Any, kind: str, t: float, **fields: Any) -> dict[str, Any]:
        calls["n"] += 1
        if kind == "progress" or calls["n"] > 3:
            raise OSError(30, os.strerror(30), str(self.path))
        return real(self, kind, t, **fields)

    monkeypatch.setattr(stats.StatsLog, "append", append)
    monkeypatch.setattr("fuzz.campaign.runner.STATS_EVERY", 0.0)
    out = tmp_path / "c"
    rc = main(["campaign", "--out", str(out), "--time", "20s", "--jobs", "1",
               "--engine", "hypothesis"])
    stdout, err = capsys.readouterr()
    assert rc == EXIT_BAD_INPUT
    assert err == f"mirrorfuzz: error: cannot write {out / layout.STATS}: " \
                  "Read-only file system\n"
    assert "mirrorfuzz: stopped: " in stdout
    assert stats_lines(out)[0]["kind"] == "start"
