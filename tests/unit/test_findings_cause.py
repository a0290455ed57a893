"""Findings a user trusts: one cause one finding, readable divergences,
workers reported as they ended, repros that keep the engine's signature and
show the damage, bounded minimization (issue 15)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from fuzz import diff, impls
from fuzz.campaign import layout
from fuzz.campaign.config import CampaignConfig
from fuzz.campaign.findings import Findings
from fuzz.campaign.stats import totals
from fuzz.campaign.workers import FINDING_EXIT, classify_exit, parse_tally
from fuzz.cli import main
from fuzz.damage import annotate
from fuzz.executor import Settings, run_trace
from fuzz.trace import format_trace, load_trace, parse_trace

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO / "tests" / "quality" / "traces"


# ------------------------------------------------------------ the cause


def test_a_bug_seen_through_different_ops_has_one_signature() -> None:
    """The same planted bug, shown by a write in one trace and a read in another:
    one cause (the old op signatures differ)."""
    header = "# mirrorfuzz-trace 1\n"
    a = parse_trace(header + "mmap P0 0 2 rw private\nwrite P0 0 1\nfork P0\n"
                    "migrate P0 0 1\n")
    b = parse_trace(header + "mmap P0 0 2 rw private\nwrite P0 0 1\nfork P0\n"
                    "reclaim P0 0 1\n")
    settings = Settings(mutant="rmap_misses_second_process")
    found = [run_trace(t, impls.sides("both"), settings).finding for t in (a, b)]
    assert all(f is not None for f in found), found
    assert found[0] is not None and found[1] is not None
    if found[0].op_signature != found[1].op_signature:
        assert found[0].signature == found[1].signature
    assert "/migrate" not in found[0].signature


def test_differences_name_only_the_differing_fields() -> None:
    from model.observation import ZERO_REF, DeviceView, TableEntryView

    a = DeviceView(1, "mirror", 0, False, None, (TableEntryView(3, ZERO_REF, False),))
    b = DeviceView(1, "mirror", 0, False, None, (TableEntryView(3, ZERO_REF, False),
                                                  TableEntryView(4, ZERO_REF, True)))
    found = diff.differences((a,), (b,))
    assert [d.path for d in found] == ["[D1].table[vpn 4]"]
    assert found[0].left == "absent" and "vpn=4" in found[0].right
    table = diff.side_by_side(found, ["reference", "optimized"])
    assert table[0].split() == ["field", "reference", "optimized"]
    assert diff.object_kind("S2: a callback succeeded") == "subscription"
    assert diff.object_kind("nothing named") == "state"


def test_replay_shows_a_divergence_field_by_field(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", "--quiet", "--mutant", "split_without_invalidate",
                 str(TRACES / "split_without_invalidate.trace")])
    printed = capsys.readouterr().out
    assert code == 1
    assert "divergence/observation/processes.notifier" in printed
    assert "see message" not in printed
    rows = [line for line in printed.splitlines() if line.startswith("    ")]
    assert rows[0].split() == ["field", "reference", "optimized"]
    assert any(r.split()[0].startswith("devices[D0].table[vpn") for r in rows[1:])
    assert all(len(r) < 200 for r in rows)


# ------------------------------------------------------ workers' exits


def test_a_finding_exit_is_a_finding_even_with_a_long_trace_after_it() -> None:
    tail = "\n".join(f"write P0 {i} 1" for i in range(100))
    assert classify_exit(tail, FINDING_EXIT, found="violation/x/y") == \
        ("finding", "exit 77: violation/x/y")
    assert classify_exit(tail, FINDING_EXIT)[0] == "crashed"  # no finding said: a crash
    assert parse_tally('@mirrorfuzz {"seen": "violation/x/y"}') == ("seen", "violation/x/y")
    assert parse_tally('@mirrorfuzz {"violation": "violation/x/y"}') == \
        ("violation", "violation/x/y")
    assert parse_tally('@mirrorfuzz {"execs": 3}') is None
    assert parse_tally('@mirrorfuzz {"seen": ""}') is None
    assert parse_tally('@mirrorfuzz {"seen": "a", "violation": "b"}') is None


def test_the_pool_records_an_atheris_finding_exit_as_a_finding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fuzz.campaign import pool as pool_module

    script = ("import sys\nprint('TraceFinding: mirrorfuzz finding "
              "violation/seq_protocol/subscription')\n"
              "for i in range(200): print('write P0', i, 1)\n"
              "print('==1== ERROR: libFuzzer: fuzz target exited'); sys.exit(77)")
    monkeypatch.setattr(pool_module, "atheris_command",
                        lambda *a, **k: ([sys.executable, "-c", script], {}))
    events: list[tuple[str, str]] = []
    config = CampaignConfig(jobs=1, engine="atheris", hang_s=60)
    pool = pool_module.Pool(tmp_path, config, 0, lambda w, e, event, detail:
                            events.append((event, detail)))
    pool.start_all()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and len(events) < 3:
            pool.poll()
            time.sleep(0.1)
    finally:
        pool.stop_all()
    names = [e for e, _ in events]
    assert names[:3] == ["started", "finding", "restarted"], events
    assert "violation/seq_protocol/subscription" in events[1][1]
    assert events[2][1].startswith("after a finding")


# ------------------------------------------------- counting and minimizing


def _finding_file(directory: Path, signature: str, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(f"# mirrorfuzz-trace 1\n# signature: {signature}\n"
                                  "mmap P0 0 1 rw private\n")


def test_later_examples_of_a_known_cause_are_counted_not_minimized(tmp_path: Path) -> None:
    records: list[tuple[str, dict[str, object]]] = []
    findings = Findings(tmp_path, None, lambda kind, **f: records.append((kind, f)),
                        lambda text: None)
    pending = tmp_path / "pending"
    _finding_file(pending, "violation/seq_protocol/subscription", "a.trace")
    assert findings.take(pending, "hypothesis", 0, alive=False) == [
        "violation/seq_protocol/subscription"]
    _finding_file(pending, "violation/seq_protocol/subscription", "b.trace")
    assert findings.take(pending, "atheris", 1, alive=False) == []
    findings.count("violation/seq_protocol/subscription", 2)
    assert len(findings.queue) == 1
    findings.record_seen(force=True)
    assert records[-1] == ("seen", {"counts": {"violation/seq_protocol/subscription": 3}})
    assert totals([{"kind": "seen", "t": 1, **records[-1][1]}]).seen == {
        "violation/seq_protocol/subscription": 3}


def test_minimizations_run_in_parallel_and_within_their_limit(tmp_path: Path) -> None:
    """Two findings at once, each with a time limit far shorter than a full
    minimization: both repros are saved in time, marked partial or minimized."""
    records: list[tuple[str, dict[str, object]]] = []
    findings = Findings(tmp_path, "flag_instead_of_seq",
                        lambda kind, **f: records.append((kind, f)), lambda text: None,
                        parallel=2, observe={"hypothesis": 8})
    findings.limit = 3.0
    pending = tmp_path / "pending"
    pending.mkdir()
    for i, name in enumerate(("flag_instead_of_seq", "per_chunk_read_begin")):
        text = (TRACES / f"{name}.trace").read_text()
        trace = load_trace(str(TRACES / f"{name}.trace"))
        verdict = run_trace(trace, impls.sides("both"),
                            Settings(observe_every=8, mutant="flag_instead_of_seq"))
        signature = verdict.finding.signature if verdict.finding else f"violation/x{i}/y"
        first, rest = text.split("\n", 1)
        (pending / f"{i}.trace").write_text(f"{first}\n# signature: {signature}\n{rest}")
    assert len(findings.take(pending, "hypothesis", 0, alive=False)) >= 1
    started = time.monotonic()
    findings.poll()
    assert len(findings.running) == len(findings.signatures) and len(findings.running) >= 1
    while findings.busy() and time.monotonic() - started < 60:
        findings.poll()
        time.sleep(0.2)
    assert not findings.busy()
    done = [f for kind, f in records if kind == "finding"]
    assert len(done) == len(findings.signatures)
    firsts = {f["cause"]: f for f in done if "duplicate" not in f}
    assert firsts
    for f in done:
        assert float(str(f["seconds"])) < 3.0 + 15
        repro = load_trace(str(tmp_path / str(f["path"])))
        assert "found_as" not in f, f  # the engine's signature is kept
        if "duplicate" in f:  # the same cause: counted on the first repro
            assert f["path"] == firsts[f["cause"]]["path"]
            continue
        assert repro.header("signature") == f["signature"]
        assert f"# cause: {f['cause']}" in format_trace(repro) or \
            (tmp_path / str(f["path"])).read_text().count(f"# cause: {f['cause']}") == 1


# ------------------------------------------------------- repros keep damage


def test_the_repro_says_where_states_first_differ_and_the_consequence() -> None:
    mutant = "split_without_invalidate"
    trace = load_trace(str(TRACES / f"{mutant}.trace"))
    settings = Settings(observe_every=0, mutant=mutant)
    consequence = run_trace(trace, impls.sides("both"), settings).finding
    assert consequence is not None
    text = format_trace(annotate(trace, impls.sides("both"), settings))
    assert "# consequence: " in text and consequence.signature in text
    assert "# first difference: line 6 (mprotect), step 10: " \
           "divergence/observation/processes.notifier" in text
    assert "# ^ the two sides' states first differ here" in text
    again = parse_trace(text)
    assert run_trace(again, impls.sides("both"), settings).finding == consequence or \
        run_trace(again, impls.sides("both"), settings).finding.signature == consequence.signature


def test_stats_count_json_round_trip(tmp_path: Path) -> None:
    line = {"kind": "seen", "t": 1.0, "counts": {"a/b/c": 2}}
    (tmp_path / layout.STATS).write_text(json.dumps(line) + "\n")
    from fuzz.campaign.stats import read_stats

    assert totals(read_stats(tmp_path).lines).seen == {"a/b/c": 2}


# ------------------------------------------------------------ race windows


def test_race_windows_reached_are_read_off_a_judged_trace() -> None:
    from fuzz.windows import WindowCoverage, reached

    text = ("# mirrorfuzz-trace 1\nmmap P0 0 4 rw private\nopen P0 mirror\n"
            "T1 = dread D0 0 4\nstep T1\nstep T1\nT2 = munmap P0 0 4\nstep T2\n"
            "migrate P0 0 1\nrun T1\nrun T2\n")
    trace = parse_trace(text)
    verdict = run_trace(trace, impls.sides("both"), Settings())
    combos, deepest = reached(trace.steps, verdict.results)
    assert ("dread", 2, "munmap") in combos  # a CPU op inside a device op's window
    assert ("munmap", 1, "migrate") in combos or ("dread", 2, "migrate") in combos
    assert deepest["dread"] == 2
    cov = WindowCoverage()
    cov.add(combos, deepest)
    again = WindowCoverage.from_json(json.loads(cov.to_json()))
    assert again.combos == cov.combos and again.possible == cov.possible > len(combos)
    assert ("dread", 1, []) in cov.table()


# ------------------------------------------------------------- the report


def test_the_report_shows_one_finding_per_cause_with_its_examples(tmp_path: Path) -> None:
    from fuzz.campaign.report import write_report
    from fuzz.corpus import save_repro
    from fuzz.windows import WindowCoverage

    out = tmp_path / "camp"
    (out / "coverage").mkdir(parents=True)
    (out / layout.CONFIG).write_text(json.dumps({"time_s": 60, "jobs": 2, "engine": "both"}))
    repro = save_repro(out / layout.FINDINGS, parse_trace(
        "# mirrorfuzz-trace 1\n# signature: violation/seq_protocol/subscription\n"
        "# cause: divergence/observation/devices.table\n"
        "# judged-with: observations compared every 8 steps (mirrorfuzz replay "
        "--observe-every 8)\nmmap P0 0 1 rw private => ok\n"))
    name = repro.relative_to(out).as_posix()
    cause = "divergence/observation/devices.table"

    def rec(kind: str, t: float, **fields: object) -> str:
        return json.dumps({"kind": kind, "t": t, "at": "2026-01-01T00:00:00Z", **fields})

    lines = [rec("start", 0, config={}),
             rec("worker", 5, worker=1, engine="atheris", event="finding",
                 detail="exit 77: violation/seq_protocol/subscription"),
             rec("finding", 6, signature="violation/seq_protocol/subscription", cause=cause,
                 path=name, raw="findings/raw/a.trace", engine="atheris", worker=1, lines=1,
                 seconds=2.5, partial="true"),
             rec("finding", 9, signature="violation/no_use_after_free/device", cause=cause,
                 path=name, raw="findings/raw/b.trace", engine="atheris", worker=1, lines=1,
                 duplicate="true"),
             rec("seen", 10, counts={"violation/seq_protocol/subscription": 3,
                                     "violation/no_use_after_free/device": 2}),
             rec("stop", 60, reason="time")]
    (out / layout.STATS).write_text("".join(line + "\n" for line in lines))
    windows = WindowCoverage({("dread", 1, "munmap")}, {"dread": 2})
    (out / "coverage" / "windows.json").write_text(windows.to_json())
    _, md_path = write_report(out)
    md = md_path.read_text()
    assert "1 distinct cause, 1 repro file, 7 examples, 1 not fully minimized" in md
    assert "after a finding 1, crashed 0" in md
    assert "examples met: 7; also seen as violation/no_use_after_free/device (3)" in md
    assert "minimization: partial (stopped by its time limit), 2.5 s" in md
    assert "--observe-every 8" in md
    assert "| dread | 1 | 1/" in md and "| dread | 2 | 0/" in md
    assert "1 of " in md and "race windows reached" in md


def test_a_coming_stop_bounds_every_minimization(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from fuzz.campaign import findings as findings_module
    from fuzz.campaign.findings import GRACE, Job, Running

    findings = Findings(tmp_path, None, lambda kind, **f: None, lambda text: None, parallel=2)
    limits: list[float] = []
    monkeypatch.setattr(findings, "_start", lambda job, limit: limits.append(limit))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        findings.running.append(Running(Job(tmp_path / "r.trace", "a/b/c", "atheris", 0),
                                        sleeper, time.monotonic(), tmp_path / "r.json", 40.0))
        findings.queue.append(Job(tmp_path / "q.trace", "d/e/f", "hypothesis", 1))
        findings.wind_down(GRACE + 1.5)
        monkeypatch.setattr(findings_module, "save_unminimized",
                            lambda out, raw, mutant: tmp_path / "saved.trace")
        findings.poll()
        assert limits and limits[0] <= 1.5  # queued: only what is left of the wait
        assert findings.running[0].limit <= 1.6
        time.sleep(1.8)
        findings.poll()
        assert sleeper.poll() is not None or findings.running[0].asked  # told to stop
    finally:
        sleeper.kill()
        sleeper.wait()
