"""The example driver plug-ins replay their own seed traces, and each planted
bug of each is caught on one of them (examples/drivers/<name>.py with its
seeds in examples/drivers/<name>/)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import impls, plugins
from fuzz.executor import Settings, run_trace
from fuzz.trace import load_trace
from model import bugs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "drivers"
DRIVERS = sorted(EXAMPLES.glob("*.py"))
SEEDS = [(driver, seed) for driver in DRIVERS
         for seed in sorted((EXAMPLES / driver.stem).glob("*.trace"))]
SIDES = "both"
"""A plug-in runs on both cores: its logic judged by the invariants, the cores by the comparison."""

CATCHES = {
    "gpusvm_get_pages_keeps_mappings_on_error":
        ("drm_gpusvm", "mixed_range_error_unmaps.trace", "violation/no_use_after_free/madvise"),
    "nouveau_migrate_maps_without_read_retry":
        ("nouveau_svm", "migrate_then_dontneed.trace", "violation/no_use_after_free/nv_migrate"),
    "nouveau_fault_reuses_stale_pfns":
        ("nouveau_svm", "fault_retry_after_dontneed.trace", "violation/no_use_after_free/nv_read"),
    "amdgpu_cs_skips_get_user_pages_done":
        ("amdgpu_userptr_2019", "invalidation_between_get_user_pages_and_submit.trace",
         "violation/no_use_after_free/amdgpu_read"),
    "amdgpu_mn_sleeps_when_nonblockable":
        ("amdgpu_userptr_2019", "callback_waits_for_fence.trace",
         "violation/no_block_when_nonblockable/oomreap"),
    "i915_userptr_get_pages_without_seqcount":
        ("i915_userptr_2019", "pin_between_reclaim_callback_and_apply.trace",
         "violation/device_entries_follow_cpu/reclaim"),
    "i915_userptr_invalidate_does_not_wait":
        ("i915_userptr_2019", "unbind_waits_for_request.trace",
         "violation/device_entries_follow_cpu/madvise"),
    "i915_userptr_sleeps_when_nonblockable":
        ("i915_userptr_2019", "oomreap_of_busy_object.trace",
         "violation/no_block_when_nonblockable/oomreap"),
    "gpusvm_bind_skips_pages_valid":
        ("drm_gpusvm", "invalidation_between_get_pages_and_bind.trace",
         "violation/no_use_after_free/svm_bind"),
    "test_hmm_migrate_maps_without_read_retry":
        ("test_hmm", "migrate_then_dontneed.trace", "violation/no_use_after_free/hmm_migrate"),
    "test_hmm_fault_ignores_own_migration":
        ("test_hmm", "fault_during_own_migration.trace", "violation/no_use_after_free/hmm_read"),
    "test_hmm_fault_skips_read_retry":
        ("test_hmm", "fault_then_dontneed.trace", "violation/no_use_after_free/hmm_read"),
}
"""Each example driver's planted bug: the seed that shows it, and the finding."""


@pytest.fixture
def loaded(request: pytest.FixtureRequest) -> Iterator[str]:
    kind = plugins.load_driver(request.param).kind
    yield kind
    plugins.unload(kind)


@pytest.mark.parametrize(("loaded", "seed"), SEEDS, indirect=["loaded"],
                         ids=[f"{d.stem}/{s.name}" for d, s in SEEDS])
def test_seed_replays_as_annotated(loaded: str, seed: Path) -> None:
    trace = load_trace(seed)
    plugins.check_headers(trace.headers, str(seed))
    verdict = run_trace(trace, impls.sides(SIDES), Settings())
    assert verdict.ok, verdict.finding
    assert not verdict.mismatches


@pytest.mark.parametrize("bug", sorted(CATCHES))
def test_each_planted_bug_is_caught_by_its_seed(bug: str) -> None:
    stem, seed, signature = CATCHES[bug]
    kind = plugins.load_driver(EXAMPLES / f"{stem}.py").kind
    try:
        trace = load_trace(EXAMPLES / stem / seed)
        verdict = run_trace(trace, impls.sides(SIDES), Settings(mutant=bug))
        assert verdict.finding is not None
        assert verdict.finding.op_signature == signature
    finally:
        plugins.unload(kind)


def test_every_example_bug_has_a_seed_that_catches_it() -> None:
    declared = set()
    for path in DRIVERS:
        kind = plugins.load_driver(path).kind
        declared |= {b.name for b in bugs.all_bugs() if b.driver == kind}
        plugins.unload(kind)
    assert declared and declared == set(CATCHES)


def test_a_gpusvm_range_is_compared_by_identity() -> None:
    """A range removed and another inserted over the same pages are two ranges:
    a fault of the old one must not find itself in ``svm.ranges`` through the
    new one (a 5-minute campaign found the old one then mapping pages that no
    invalidation of the new one unmapped)."""
    kind = plugins.load_driver(EXAMPLES / "drm_gpusvm.py").kind
    try:
        module = sys.modules[f"mirrorfuzz_driver_{plugins.LOADED[kind].sha256[:16]}"]
        old, new = module.Range(512, 1024, 1), module.Range(512, 1024, 1)
        assert old not in [new] and old in [old]
    finally:
        plugins.unload(kind)
