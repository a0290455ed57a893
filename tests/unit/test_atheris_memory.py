"""The Atheris target does not leak a numpy array per comparison (issue 14).

atheris 3.0's comparison hook keeps the result of a comparison with a numpy
array; ``fuzz_trace.guard_array_compares`` replaces the hook with one that
compares arrays directly and passes everything else to atheris.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import numpy as np
import pytest

from fuzz.fuzz_trace import guard_array_compares


def fake_atheris(calls: list[tuple[Any, ...]]) -> types.ModuleType:
    module = types.ModuleType("atheris")

    def native(left: object, right: object, arg: int, counter: int, is_const: bool) -> object:
        calls.append((left, right, arg, counter, is_const))
        return left == right

    module._trace_cmp = native  # type: ignore[attr-defined]
    return module


def test_array_comparisons_bypass_the_native_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    atheris = fake_atheris(calls)
    bytecode = types.ModuleType("atheris.instrument_bytecode")
    monkeypatch.setitem(sys.modules, "atheris.instrument_bytecode", bytecode)
    guard_array_compares(atheris)
    hook = atheris._trace_cmp  # type: ignore[attr-defined]
    a = np.arange(4)
    assert (hook(a, np.array([0, 9, 2, 9]), 2, 7, False) == [True, False, True, False]).all()
    assert (hook(a, 2, 0, 7, False) == [True, True, False, False]).all()  # <
    assert calls == []
    assert hook(5, 5, 2, 8, True) is True
    assert calls == [(5, 5, 2, 8, True)]
    guard_array_compares(atheris)  # a second call keeps the one guard
    assert atheris._trace_cmp is hook  # type: ignore[attr-defined]


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_instrumented_array_comparisons_do_not_leak() -> None:
    import atheris

    @atheris.instrument_func  # type: ignore[misc]
    def compare(x: Any, y: Any) -> Any:
        return x == y

    guard_array_compares(atheris)
    a = np.arange(64)
    compare(a, a)
    before = sys.getallocatedblocks()
    for _ in range(2000):
        result = compare(a, a)
    del result
    grown = sys.getallocatedblocks() - before
    assert grown < 200, f"{grown} blocks kept by 2000 array comparisons"


def test_libfuzzer_runs_without_the_entropic_schedule() -> None:
    """libFuzzer's entropic schedule grew the worker's native heap with every
    corpus input (issue 14): the target turns it off unless told otherwise."""
    from fuzz.fuzz_trace import libfuzzer_args

    assert libfuzzer_args(["fuzz_trace.py", "-runs=5", "corpus"]) == [
        "fuzz_trace.py", "-entropic=0", "-runs=5", "corpus"]
    assert libfuzzer_args(["fuzz_trace.py", "-entropic=1"]) == ["fuzz_trace.py", "-entropic=1"]
