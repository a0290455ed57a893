"""Every planted bug (mutant) in the optimized model is caught by its trace.

Each name in ``model.optimized.kernel.MUTANTS`` has a small trace
``tests/quality/traces/<name>.trace``.  With the mutant switched on, running
that trace on both implementations in lockstep must give a finding; with no
mutant, the same trace must run clean (so the finding is the mutant's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.executor import Settings, run_trace
from fuzz.impls import sides
from fuzz.trace import load_trace
from model.optimized.kernel import MUTANTS

TRACES = Path(__file__).parent / "traces"
NAMES = sorted(MUTANTS)


def _trace_path(name: str) -> Path:
    return TRACES / f"{name}.trace"


def test_every_mutant_has_a_trace() -> None:
    missing = [name for name in NAMES if not _trace_path(name).is_file()]
    assert not missing, f"mutants without a trace: {missing}"


def test_every_trace_names_a_mutant() -> None:
    stray = sorted(p.stem for p in TRACES.glob("*.trace") if p.stem not in MUTANTS)
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
