"""Every planted bug (mutant) in the optimized model is caught by its trace.

Each bug declared in ``model/bugs.py`` has a small trace
``tests/quality/traces/<name>.trace``.  With the mutant switched on, running
that trace on both implementations in lockstep must give a finding; with no
mutant, the same trace must run clean (so the finding is the mutant's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from fuzz.executor import Settings, run_trace
from fuzz.impls import factory, sides
from fuzz.trace import load_trace
from model import bugs
from model.interface import Config, Implementation, Violation

TRACES = Path(__file__).parent / "traces"
NAMES = [bug.name for bug in bugs.all_bugs()]


def _trace_path(name: str) -> Path:
    return TRACES / f"{name}.trace"


def test_every_mutant_has_a_trace() -> None:
    missing = [name for name in NAMES if not _trace_path(name).is_file()]
    assert not missing, f"mutants without a trace: {missing}"


def test_every_trace_names_a_mutant() -> None:
    stray = sorted(p.stem for p in TRACES.glob("*.trace") if p.stem not in bugs.REGISTRY)
    assert not stray, f"traces for unknown mutants: {stray}"


@pytest.mark.parametrize("name", NAMES)
def test_mutant_is_detected(name: str) -> None:
    trace = load_trace(str(_trace_path(name)))
    verdict = run_trace(trace, sides("both"), Settings(mutant=name))
    assert verdict.findings, f"mutant {name} not detected by its trace"


@pytest.mark.parametrize("name", NAMES)
def test_trace_is_clean_without_mutant(name: str) -> None:
    trace = load_trace(str(_trace_path(name)))
    verdict = run_trace(trace, sides("both"), Settings())
    assert verdict.ok, f"trace for {name} fails without the mutant: {verdict.finding}"


class _Recorder:
    """The optimized implementation, recording after every step what an
    engine can see of it: the outcome, the page operations, the violations
    and the observation."""

    def __init__(self, inner: Implementation, record: list[object]) -> None:
        self.inner = inner
        self.name = inner.name
        self.record = record
        self.pending: list[Violation] = []

    def step(self, thread: str) -> object:
        out = self.inner.step(thread)
        violations = self.inner.take_violations()
        self.record.append((thread, out, self.inner.page_ops(), violations,
                            self.inner.observe()))
        self.pending = violations
        return out

    def take_violations(self) -> list[Violation]:
        out, self.pending = self.pending, []
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("name", NAMES)
def test_switching_the_bug_on_changes_behaviour(name: str) -> None:
    """Each declared bug is reachable: on its trace (which must exist: a new
    bug without one fails here), the optimized implementation alone does
    something else with the bug on than with it off."""
    path = _trace_path(name)
    assert path.is_file(), f"bug {name} has no trace {path.relative_to(TRACES.parent)}"
    trace = load_trace(str(path))
    optimized = factory("optimized")
    runs = []
    for mutant in (None, name):
        record: list[object] = []

        def recorded(config: Config, record: list[object] = record) -> Implementation:
            return cast(Implementation, _Recorder(optimized(config), record))

        run_trace(trace, [("optimized", recorded)], Settings(mutant=mutant))
        runs.append(record)
    assert runs[0] != runs[1], f"bug {name} changes nothing on its trace"
