"""Differential and property runs on decoded random byte strings.

* Every byte string decodes to a trace (fuzz.codec is total); the reference
  model runs it with no finding at all: no crash, no invariant violation,
  no incoherent read, no deadlock or livelock.
* Where the optimized implementation is available, both run in lockstep and
  agree on every step's result and every observation.

The number of examples follows the Hypothesis profile (tests/conftest.py);
``test_many_seeded_traces`` adds a fixed, seeded batch of a few thousand
short traces that runs the same way every time.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz import impls
from fuzz.codec import decode
from fuzz.executor import Settings, Verdict, run_trace
from fuzz.trace import format_trace

SEEDED_TRACES = 2000


def judge(data: bytes, sides: str, observe_every: int) -> Verdict:
    trace = decode(data)
    verdict = run_trace(trace, impls.sides(sides), Settings(observe_every=observe_every))
    assert not verdict.findings, f"{verdict.findings[0]}\n{format_trace(trace)}"
    return verdict


@given(st.binary(max_size=400))
def test_reference_alone_finds_nothing(data: bytes) -> None:
    judge(data, "reference", 0)


@pytest.mark.skipif("optimized" not in impls.available(), reason="no optimized implementation")
@given(st.binary(max_size=400))
def test_both_agree_on_every_step(data: bytes) -> None:
    judge(data, "both", 1)


def test_many_seeded_traces() -> None:
    rng = random.Random(20261124)
    sides = "both" if "optimized" in impls.available() else "reference"
    steps = 0
    for _ in range(SEEDED_TRACES):
        data = rng.randbytes(rng.randrange(0, 120))
        steps += judge(data, sides, 4).steps
    assert steps > SEEDED_TRACES  # the traces did run steps
