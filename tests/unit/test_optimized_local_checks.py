"""The shortcuts of the fast judge's checks (issue 14) still report what the
whole scan reports: planted inconsistencies each shortcut could hide."""

from __future__ import annotations

from dataclasses import replace

from model.interface import Config
from model.ops import Dread, Mmap, Open, Write
from model.optimized import OptimizedKernel, checks
from tests.driver import Driver


def _mirrored() -> Driver:
    """A process whose mirror holds read entries for pages 0-3."""
    d = Driver(lambda config: OptimizedKernel(replace(config, incremental=True)))
    d.run(Mmap(0, 0, 8, "rw", "private"))
    d.run(Open(0, "mirror", 0))
    d.run(Write(0, 2, 11))
    d.run(Dread(0, 0, 4))
    d.clean()
    return d


def _found(d: Driver, *, whole: bool) -> set[str]:
    assert isinstance(d.k, OptimizedKernel)
    checks.run_checks(d.k.state, whole=whole)
    return {v.invariant for v in d.k.take_violations()}


def test_device_findings_follow_the_vmas() -> None:
    """A device table's findings are kept while what they read stays the
    same: a VMA's rights changed behind the tables' back (no table marked)
    must still be seen."""
    d = _mirrored()
    assert _found(d, whole=False) == set()  # (the findings are kept: none)
    assert isinstance(d.k, OptimizedKernel)
    d.k.state.procs[0].vmas[0].prot = "none"
    assert _found(d, whole=False) == {"device_entries_follow_cpu"}
    assert _found(d, whole=True) == {"device_entries_follow_cpu"}
    assert _found(d, whole=False) == {"device_entries_follow_cpu"}  # (kept, reported again)


def test_a_count_written_in_a_step_is_seen() -> None:
    """The page arrays are compared only after the kernel was entered; a
    refcount written then (as a step's stray store would) is checked."""
    d = _mirrored()
    assert isinstance(d.k, OptimizedKernel)
    k = d.k.state
    head = int(k.frames.live[: k.frames.top].nonzero()[0][0])
    k.frames.refcount[head] += 1
    k.entries += 1  # (what start and step do)
    assert "accounting" in _found(d, whole=False)
    assert Config().checks
