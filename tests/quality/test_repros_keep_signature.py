"""A repro keeps the signature the engine found, on every planted bug (issue 15).

For each bug's trace (``tests/quality/traces/<name>.trace``) and each
engine's observation period (Hypothesis workers 4, the Atheris target 8),
the campaign's minimizer -- a cheap first pass observing only at the end,
then the engine's own settings -- must give a repro whose signature is the
one the engine's settings give the original, never the earlier state
difference the minimizer could slide to, and that replays to it under those
settings.  The annotations name that signature as the consequence.  The
run cap is low (cheap): a partial minimization must keep the signature too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.damage import annotate
from fuzz.executor import Settings, run_trace
from fuzz.impls import sides
from fuzz.minimize import Stats, minimize_file
from fuzz.trace import format_trace, load_trace
from model import bugs

TRACES = Path(__file__).parent / "traces"
NAMES = [bug.name for bug in bugs.all_bugs()]
MAX_RUNS = 40


@pytest.mark.parametrize("observe_every", [4, 8])
@pytest.mark.parametrize("name", NAMES)
def test_the_repro_keeps_the_engines_signature(name: str, observe_every: int) -> None:
    path = TRACES / f"{name}.trace"
    both = sides("both")
    settings = Settings(observe_every=observe_every, mutant=name)
    engine = run_trace(load_trace(str(path)), both, settings).finding
    assert engine is not None, f"{name}: its trace gives no finding"
    stats = Stats()
    repro = minimize_file(path, both, settings, found_by="test", max_runs=MAX_RUNS,
                          stats=stats, first=Settings(observe_every=0, mutant=name))
    assert repro.header("signature") == engine.signature, (stats, engine)
    again = run_trace(repro, both, settings).finding
    assert again is not None and again.signature == engine.signature
    assert len(repro.steps) <= len(load_trace(str(path)).steps)
    text = format_trace(annotate(repro, both, settings))
    assert "consequence: " in text and f": {engine.signature}: " in text
