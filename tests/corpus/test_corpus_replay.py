"""Corpus replay: every trace under corpus/ replays on every available
implementation with no finding and every ``=> expected`` reproduced."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz import impls
from fuzz.executor import run_trace
from fuzz.trace import load_trace

ROOT = Path(__file__).resolve().parents[2]
TRACES = sorted((ROOT / "corpus").rglob("*.trace"))


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT / "corpus"))


@pytest.mark.parametrize("path", TRACES, ids=_id)
def test_trace_replays_clean(path: Path) -> None:
    trace = load_trace(str(path))
    verdict = run_trace(trace, impls.sides("auto"))
    problems = [str(f) for f in verdict.findings] + [str(m) for m in verdict.mismatches]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", [p for p in TRACES if "repros" not in p.parts], ids=_id)
def test_scenario_traces_state_every_expectation(path: Path) -> None:
    trace = load_trace(str(path))
    assert trace.steps, "a corpus trace has at least one step line"
    missing = [line.lineno for line in trace.steps if line.expected is None]
    assert not missing, f"lines without => expected: {missing}"
    assert trace.header("title"), "a scenario trace has a # title: header"
