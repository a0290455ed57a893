"""The core's pinning and migration services for plug-ins (``Core.pin``,
``Core.unpin``, ``Core.migrate_vma`` and ``page_moved``), on both cores:
each trace replays with the results written in it, no finding, no mismatch
between the reference and the optimized implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import impls, plugins
from fuzz.executor import Settings, run_trace
from fuzz.trace import parse_trace

ROOT = Path(__file__).resolve().parents[2]
PINNER = Path(__file__).resolve().parent / "data" / "drivers" / "pinner.py"
TEST_HMM = ROOT / "examples" / "drivers" / "test_hmm.py"

TRACES = {
    "pins outlive munmap": """
mmap P0 0 8 rw private => ok
write P0 0 11 => ok
write P0 1 12 => ok
open P0 pinner => D0
pinner_pin D0 0 2 rw => 2
munmap P0 0 8 => ok
pinner_dma D0 1 => values 12
pinner_unpin D0 => ok
pinner_dma D0 0 => EINVAL
""",
    "pin errors pin nothing": """
mmap P0 0 4 r private => ok
open P0 pinner => D0
pinner_pin D0 0 2 rw => EFAULT
pinner_pin D0 2 4 ro => EFAULT
pinner_pin D0 0 2 ro => 2
pinner_dma D0 0 => values 0
pinner_dma D0 2 => EINVAL
""",
    "a read-only pin of a private page breaks COW after fork": """
mmap P0 0 4 rw private => ok
write P0 0 7 => ok
fork P0 => P1
open P0 pinner => D0
pinner_pin D0 0 1 ro => 1
write P1 0 9 => ok
pinner_dma D0 0 => values 7
read P0 0 => 7
""",
    "a pin brings a device page back; a pinned page does not migrate": """
mmap P0 0 8 rw private => ok
write P0 0 5 => ok
write P0 1 6 => ok
open P0 test_hmm => D0
open P0 pinner => D1
hmm_migrate D0 0 1 => values 5
pinner_pin D1 0 2 rw => 2
hmm_migrate D0 1 1 => ENOENT
pinner_dma D1 0 => values 5
hmm_read D0 0 2 => values 5 6
pinner_unpin D1 => ok
hmm_migrate D0 0 2 => values 5 6
hmm_write D0 0 2 1 1 => ok
read P0 1 => 2
""",
    "a CPU fault on a plug-in's device page migrates it back and the driver drops it": """
mmap P0 0 4 rw private => ok
open P0 test_hmm => D0
hmm_write D0 0 2 3 1 => ok
hmm_migrate D0 0 2 => values 3 4
write P0 0 8 => ok
hmm_read D0 0 2 => values 8 4
read P0 1 => 4
""",
}


@pytest.fixture(autouse=True)
def drivers() -> Iterator[None]:
    kinds = [plugins.load_driver(PINNER).kind, plugins.load_driver(TEST_HMM).kind]
    yield
    for kind in kinds:
        plugins.unload(kind)


@pytest.mark.parametrize("name", sorted(TRACES))
def test_core_services_on_both_sides(name: str) -> None:
    text = "# mirrorfuzz-trace 1\n" + TRACES[name].lstrip()
    verdict = run_trace(parse_trace(text), impls.sides("both"), Settings())
    assert verdict.finding is None, verdict.finding
    assert not verdict.mismatches, verdict.mismatches


def test_unpinning_a_page_not_pinned_is_a_finding() -> None:
    """A driver that unpins what it does not hold breaks invariant 3 on each
    core (a finding, not an errno: the driver is wrong, not the op)."""
    text = ("# mirrorfuzz-trace 1\nmmap P0 0 2 rw private => ok\nwrite P0 0 1 => ok\n"
            "open P0 pinner => D0\npinner_pin D0 0 1 rw => 1\npinner_unpin D0 => ok\n")
    for side in ("reference", "optimized"):
        clean = run_trace(parse_trace(text), impls.sides(side), Settings())
        assert clean.finding is None, clean.finding
        verdict = run_trace(parse_trace(text), impls.sides(side),
                            Settings(mutant="pinner_unpins_twice"))
        assert verdict.finding is not None
        assert verdict.finding.op_signature == "violation/pins_are_stable/pinner_unpin"
