"""The Hypothesis stateful engine (fuzz/stateful.py) against both implementations.

Every example builds a trace rule by rule (ops, threads, steps, scheduler
choices) and the executor judges it at teardown; any finding fails the test,
prints the trace and saves it under $MIRRORFUZZ_FAILURES.  Examples and steps
are bounded so that the default (ci) run stays well under 90 s; dev and
nightly profiles raise the example count and keep Hypothesis's default
example database (.hypothesis/), while ci is derandomized, which in
Hypothesis implies no database.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fuzz import impls
from fuzz.engine import HypothesisEngine
from fuzz.executor import Finding, Settings, run_trace
from fuzz.profiles import pytest_profile
from fuzz.stateful import EngineConfig, machine_for
from fuzz.trace import StepLine, parse_trace, renumber
from model import ops as m

REPO = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
EXAMPLES = {"ci": 300, "dev": 1000}.get(PROFILE, 5000)
# Seed 0 in ci, not derandomize's seed: that one is a digest of the machine
# class's source, so any edit of fuzz/stateful.py drew other examples (one
# such edit made this test take 833 s instead of 46 s); dev and nightly keep
# Hypothesis's default example database (.hypothesis/), unseeded
TestStateful = HypothesisEngine(
    EngineConfig(sides="auto", judge=pytest_profile(PROFILE).settings())).test_case(
        0 if PROFILE == "ci" else None, EXAMPLES)


def test_a_planted_failure_is_saved_as_a_replayable_trace(tmp_path: object) -> None:
    """The failure path works: a finding in the session's verdict fails the
    example, saved with signature and results."""
    machine = machine_for(EngineConfig(sides="reference", failures=str(tmp_path)))()
    machine._append(StepLine(m.Mmap(0, 0, 4, "rw", "private")))
    machine._append(StepLine(m.Write(0, 1, 5)))
    machine.guide.session.verdict.findings.append(
        Finding("divergence", "result", "write", 2, 2, "planted"))
    with pytest.raises(AssertionError, match="divergence/result/write"):
        machine.judge()
    saved = list(tmp_path.iterdir())  # type: ignore[attr-defined]
    assert len(saved) == 1
    trace = parse_trace(saved[0].read_text())
    assert trace.header("signature") == "divergence/result/write"
    assert [str(s.expected) for s in trace.steps] == ["ok", "ok"]
    assert renumber(trace.steps) == trace.steps


def test_the_engine_judges_the_lines_as_it_appends_them() -> None:
    """One session: a line that gives a finding makes the session over at
    once; later lines are not appended, and the verdict is the one run_trace
    gives the same trace."""
    machine = machine_for(EngineConfig(sides="both",
                                       judge=Settings(mutant="flag_instead_of_seq")))()
    lines = parse_trace((REPO / "tests/quality/traces/flag_instead_of_seq.trace").read_text()).steps
    for line in lines:
        machine._append(line)
    assert machine.guide.over
    assert machine._append(StepLine(m.Mmap(0, 0, 4, "rw", "private"))) is None
    expected = run_trace(machine.trace(), impls.sides("both"),
                         Settings(mutant="flag_instead_of_seq"))
    with pytest.raises(AssertionError):
        machine.judge()
    assert machine.verdict is not None and machine.verdict.finding == expected.finding


def test_reserved_handles_match_renumber() -> None:
    machine = machine_for(EngineConfig(sides="reference"))()
    machine._append(StepLine(m.Fork(0)))
    machine._append(StepLine(m.Open(0, "mirror")))
    machine._append(StepLine(m.Open(1, "pin"), "T1"))
    assert tuple(machine.lines) == renumber(machine.lines)
    assert machine.pids == [0, 1] and machine.devices["mirror"] == [(0, 0)]
    verdict = run_trace(machine.trace(), impls.sides("reference"), Settings())
    assert verdict.ok
