"""The fast judge loses nothing: it reports the full judge's first finding.

For each planted bug (``model/bugs.py``) switched on in turn, traces are
judged twice on both implementations: by the **full** judge (every
invariant scan after every step, observations compared at every step) and
by the **fast** judge as the engines run it (``Settings(fast=True)``: scans
and observations every few steps and at the end, events at their event,
and the full judge again on a trace with any finding).  Where the full
judge finds something, the fast one must report the same first finding
(signature and line), or one on an earlier line.

The traces: each bug's own quality trace, structure-aware mutations of it
(``fuzz.mutator``, as the Atheris worker makes them) and decoded random
bytes, all from fixed seeds.  ``MIRRORFUZZ_FAST_JUDGE_TRACES`` (default 6)
is how many mutated and how many random traces per bug; raise it to run
thousands.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest

from fuzz.codec import decode, encode
from fuzz.executor import Settings, Verdict, run_trace
from fuzz.impls import sides
from fuzz.mutator import mutate
from fuzz.profiles import ATHERIS
from fuzz.trace import Trace, load_trace
from model import bugs

TRACES = Path(__file__).parent / "traces"
NAMES = [bug.name for bug in bugs.all_bugs()]
PER_BUG = int(os.environ.get("MIRRORFUZZ_FAST_JUDGE_TRACES") or 6)
FAST = Settings(fast=True, observe_every=int(os.environ.get("MIRRORFUZZ_FAST_JUDGE_OBSERVE")
                                             or ATHERIS.observe_every),
                scan_every=int(os.environ.get("MIRRORFUZZ_FAST_JUDGE_SCAN") or 8))
"""The Atheris target's (``MIRRORFUZZ_FAST_JUDGE_OBSERVE``/``_SCAN`` try others)."""


def traces_for(name: str, count: int) -> list[Trace]:
    own = load_trace(str(TRACES / f"{name}.trace"))
    seed = encode(own)
    rng = random.Random(name)
    out = [own]
    for i in range(count):
        out.append(decode(mutate(seed, 4096, rng.randrange(1 << 30) + i)))
        out.append(decode(rng.randbytes(rng.randint(20, 400))))
    return out


def agree(full: Verdict, fast: Verdict) -> bool:
    """The fast verdict reports the full one's first finding, or an earlier one."""
    want, got = full.finding, fast.finding
    if want is None:
        return True
    if got is None:
        return False
    return (got.signature, got.line) == (want.signature, want.line) or got.line < want.line


@pytest.mark.parametrize("name", NAMES)
def test_fast_judge_reports_the_full_judges_first_finding(name: str) -> None:
    both = sides("both")
    lost = []
    found = 0
    for i, trace in enumerate(traces_for(name, PER_BUG)):
        full = run_trace(trace, both, Settings(observe_every=1, mutant=name))
        fast = run_trace(trace, both, replace(FAST, mutant=name))
        found += full.finding is not None
        if not agree(full, fast):
            lost.append(f"trace {i}: full {full.finding} / fast {fast.finding}")
    assert found, f"no trace of {name} gave the full judge a finding: the test tests nothing"
    assert not lost, "\n".join(lost)


def test_a_missed_finding_fails() -> None:
    """The comparison can fail: a verdict with no finding does not agree
    with one that has a finding."""
    trace = load_trace(str(TRACES / f"{NAMES[0]}.trace"))
    full = run_trace(trace, sides("both"), Settings(mutant=NAMES[0]))
    assert full.finding is not None
    assert not agree(full, Verdict(full.implementations))
