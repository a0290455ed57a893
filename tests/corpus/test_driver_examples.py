"""The example driver plug-ins replay their own seed traces, and their planted
bugs are caught on them (examples/drivers/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import impls, plugins
from fuzz.executor import Settings, run_trace
from fuzz.trace import load_trace

ROOT = Path(__file__).resolve().parents[2]
GPUSVM = ROOT / "examples" / "drivers" / "drm_gpusvm.py"
SEEDS = sorted((ROOT / "examples" / "drivers" / "drm_gpusvm").glob("*.trace"))
SIDES = "both"
"""A plug-in runs on both cores: its logic judged by the invariants, the cores by the comparison."""


@pytest.fixture(autouse=True)
def gpusvm() -> Iterator[None]:
    plugins.load_driver(GPUSVM)
    yield
    plugins.unload("gpusvm")


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_gpusvm_seed_replays_as_annotated(path: Path) -> None:
    trace = load_trace(path)
    plugins.check_headers(trace.headers, str(path))
    verdict = run_trace(trace, impls.sides(SIDES), Settings())
    assert verdict.ok, verdict.finding
    assert not verdict.mismatches


def test_the_planted_bug_binds_freed_pages() -> None:
    trace = load_trace(ROOT / "examples" / "drivers" / "drm_gpusvm" /
                       "invalidation_between_get_pages_and_bind.trace")
    verdict = run_trace(trace, impls.sides(SIDES),
                        Settings(mutant="gpusvm_bind_skips_pages_valid"))
    assert verdict.finding is not None
    assert verdict.finding.signature == "violation/no_use_after_free/device"
    assert verdict.finding.op_signature == "violation/no_use_after_free/svm_bind"
