"""Hand-derived scenarios for the optimized implementation (expected results
and yield structure worked out from SPEC, not from the code)."""

from __future__ import annotations

from functools import partial

from model.interface import Config
from model.observation import Observation
from model.ops import (
    OK,
    Blocked,
    Complete,
    Dma,
    Done,
    Dread,
    Dwrite,
    Err,
    Errno,
    Exit,
    Fork,
    HandleResult,
    Madvise,
    MigrateToDev,
    Mmap,
    Mprotect,
    Mremap,
    Munmap,
    Num,
    Ok,
    Oomreap,
    Op,
    Open,
    Pin,
    Read,
    Reclaim,
    Reg,
    Segv,
    Snap,
    Snapshot,
    Submit,
    Unpin,
    Values,
    Write,
    Yielded,
)
from model.optimized import OptimizedKernel
from tests.driver import Driver as SharedDriver

Driver = partial(SharedDriver, OptimizedKernel)
def test_write_then_read_private() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 16, "rw", "private")) == OK
    assert d.run(Read(0, 3)) == Num(0)
    assert d.run(Write(0, 3, 42)) == OK
    assert d.run(Read(0, 3)) == Num(42)
    e = d.obs().processes[0].entries
    assert [(x.vpn, x.cls, x.word, x.w, x.x) for x in e] == [(3, "present", 42, True, True)]
    assert d.obs().pages_in_use == 1


def test_access_errors() -> None:
    d = Driver()
    assert d.run(Read(0, 0)) == Segv()
    assert d.run(Mmap(0, 0, 4, "r", "private")) == OK
    assert d.run(Write(0, 0, 1)) == Segv()
    assert d.run(Read(5, 0)) == Err(Errno.EINVAL)  # no such process
    assert d.run(Mprotect(0, 0, 8, "rw")) == Err(Errno.ENOMEM)  # hole at 4..8
    assert d.run(Madvise(0, 0, 8, "dontneed")) == Err(Errno.ENOMEM)


def test_thp_write_fault_and_split_by_munmap() -> None:
    d = Driver()
    d.run(Mmap(0, 0, 1024, "rw", "private", True))
    assert d.run(Write(0, 5, 7)) == OK
    o = d.obs()
    assert len(o.processes[0].entries) == 512 and all(e.pmd for e in o.processes[0].entries)
    assert o.folios[0].order == 9 and o.folios[0].refcount == 1
    # munmap of one page cuts the block: split (refcount +511), then unmap one page
    assert d.run(Munmap(0, 100, 1)) == OK
    o = d.obs()
    assert len(o.processes[0].entries) == 511
    assert not any(e.pmd for e in o.processes[0].entries)
    assert o.folios[0].refcount == 511 and o.pages_in_use == 512  # no deferred split
    assert d.run(Munmap(0, 0, 1024)) == OK
    assert d.obs().pages_in_use == 0


def test_zero_page_write_yield_structure() -> None:
    d = Driver()
    d.run(Mmap(0, 0, 4, "rw", "private"))
    d.run(Read(0, 1))  # maps the zero page
    assert d.obs().processes[0].entries[0].cls == "zero"
    # no subscription: I(clear) is start, apply, Y2; end and the access next step
    assert d.steps(Write(0, 1, 9)) == [Yielded(), Done(OK)]
    d.run(Open(0, "mirror", 0))
    d.run(Read(0, 2))
    # a mirror subscribes: Y1 after its callback, then Y2
    assert d.steps(Write(0, 2, 9)) == [Yielded(), Yielded(), Done(OK)]


def test_fork_cow_isolation_and_ledger() -> None:
    d = Driver()
    d.run(Mmap(0, 0, 4, "rw", "private"))
    d.run(Write(0, 0, 1))
    assert d.run(Fork(0, 1)) == HandleResult("P", 1)
    o = d.obs()
    assert o.folios[0].refcount == 2 and o.folios[0].mapcount == (2,)
    assert not o.processes[0].entries[0].w and not o.processes[1].entries[0].x
    assert d.run(Write(1, 0, 2)) == OK  # COW copy in the child
    assert d.run(Read(0, 0)) == Num(1)
    assert d.run(Read(1, 0)) == Num(2)
    assert d.run(Write(0, 0, 3)) == OK  # parent: order 0, refcount 1: reuse in place
    assert d.obs().pages_in_use == 2


def test_fork_child_handle_invalid_until_done() -> None:
    d = Driver()
    d.run(Open(0, "mirror", 0))
    d.run(Mmap(0, 0, 4, "rw", "private"))
    d.start("T1", Fork(0, 1))
    assert d.step("T1") == Yielded()  # the mirror's callback of I(protection_page)
    assert d.run(Read(1, 0)) == Err(Errno.EINVAL)
    while not isinstance(out := d.step("T1"), Done):
        pass
    assert out == Done(HandleResult("P", 1))
    assert d.run(Read(1, 0)) == Num(0)


def test_mmap_lock_blocks_a_fault() -> None:
    d = Driver()
    d.run(Open(0, "mirror", 0))
    d.run(Mmap(0, 0, 8, "rw", "private"))
    d.start("T1", Munmap(0, 4, 4))
    assert d.step("T1") == Yielded()  # holds mmap_lock for writing, Y1
    d.start("T2", Write(0, 1, 5))
    assert d.step("T2") == Yielded()  # reaches the false wait (Y4)
    assert d.step("T2") == Blocked()
    assert d.obs().processes[0].mmap_lock.writer == "T1"
    assert d.step("T1") == Yielded()  # apply, Y2
    assert d.step("T1") == Done(OK)
    assert d.step("T2") == Done(OK)


def test_mirror_fault_and_coherence() -> None:
    d = Driver()
    d.run(Mmap(0, 0, 8, "rw", "private"))
    d.run(Open(0, "mirror", 0))
    d.run(Write(0, 2, 11))
    assert d.run(Dread(0, 0, 4)) == Values((0, 0, 11, 0), 1)
    assert d.run(Dread(0, 0, 4)) == Values((0, 0, 11, 0), 0)  # table complete
    assert d.run(Dwrite(0, 0, 4, 100, 1)) == Ok(1)
    assert [d.run(Read(0, v)) for v in range(4)] == [Num(100), Num(101), Num(102), Num(103)]
    assert d.run(Snapshot(0, 0, 10)) == Snap(("w",) * 4 + ("none",) * 4 + ("error",) * 2)
    assert d.run(Dwrite(0, 0, 9, 1)) == Err(Errno.EFAULT)  # page 8 has no VMA
    d.run(Mprotect(0, 0, 8, "r"))
    assert d.obs().devices[0].table == ()  # protection_vma dropped the table
    assert d.run(Dwrite(0, 0, 1, 1)) == Err(Errno.EPERM)


def test_migrate_to_device_and_back() -> None:
    d = Driver(device_frames=4)
    d.run(Mmap(0, 0, 8, "rw", "private"))
    d.run(Open(0, "mirror", 0))
    d.run(Write(0, 1, 77))
    assert d.run(MigrateToDev(0, 0, 4)) == Num(4)
    o = d.obs()
    assert [e.cls for e in o.processes[0].entries] == ["device"] * 4
    assert o.pages_in_use == 0 and o.devices[0].pages_in_use == 4
    assert d.run(MigrateToDev(0, 4, 1)) == Err(Errno.ENOENT)  # no free device page
    assert d.run(Read(0, 1)) == Num(77)  # CPU fault migrates it back
    o = d.obs()
    assert o.devices[0].pages_in_use == 3 and o.pages_in_use == 1
    assert d.run(Dread(0, 0, 2)) == Values((0, 77), 1)


def test_cpu_fault_on_a_device_page_calls_its_pgmap_hook() -> None:
    """do_swap_page -> page_pgmap(page)->ops->migrate_to_ram: the fault path
    finds migrate-back on the device page's owner, not by importing it."""
    from model.optimized.state import DevPagemap, DevPagemapOps, KernelState
    from model.optimized.threads import Gen, Thread

    d = Driver(device_frames=4)
    d.run(Mmap(0, 0, 8, "rw", "private"))
    d.run(Open(0, "mirror", 0))
    d.run(Write(0, 1, 77))
    assert d.run(MigrateToDev(0, 0, 2)) == Num(2)
    dev = d.k.state.devices[0]  # type: ignore[attr-defined]
    assert dev.pgmap is not None and dev.pgmap.owner == 0
    calls: list[tuple[str, int]] = []
    real = dev.pgmap.ops.migrate_to_ram

    def spy(k: KernelState, t: Thread, page: int) -> Gen[str]:
        calls.append((t.name, page))
        return (yield from real(k, t, page))

    dev.pgmap = DevPagemap(0, DevPagemapOps(migrate_to_ram=spy))
    assert d.run(Read(0, 1)) == Num(77)
    assert [name for name, _ in calls] == [f"L{d.line}"]
    assert d.run(Read(0, 1)) == Num(77)  # back in a folio: no more calls
    assert len(calls) == 1


def test_reclaim_then_swap_in() -> None:
    d = Driver()
    d.run(Mmap(0, 0, 4, "rw", "private"))
    d.run(Write(0, 0, 5))
    d.run(Write(0, 1, 6))
    assert d.run(Reclaim(0, 0, 4)) == Num(2)
    o = d.obs()
    assert [e.cls for e in o.processes[0].entries] == ["swap", "swap"]
    assert o.pages_in_use == 0 and o.swap_in_use == 2
    assert d.run(Read(0, 1)) == Num(6)
    o = d.obs()
    assert o.swap_in_use == 1 and o.processes[0].entries[1].x  # count was 1: exclusive


def test_pin_survives_munmap() -> None:
    d = Driver()
    d.run(Mmap(0, 0, 4, "rw", "private"))
    d.run(Open(0, "pin", 0))
    d.run(Write(0, 0, 9))
    assert d.run(Pin(0, 0, 2, "ro", 0)) == HandleResult("R", 0)
    assert d.run(Reclaim(0, 0, 4)) == Num(0)  # pinned folios are restored
    assert d.run(Munmap(0, 0, 4)) == OK
    assert d.obs().pages_in_use == 2  # the pins keep both pages
    assert d.run(Dma(0, "read", 0, 2)) == Values((9, 0))
    assert d.run(Dma(0, "write", 0, 1, 3)) == Err(Errno.EPERM)
    assert d.run(Unpin(0)) == OK
    assert d.obs().pages_in_use == 0


def test_userptr_job_and_oomreap_failure() -> None:
    d = Driver()
    d.run(Mmap(0, 0, 4, "rw", "private"))
    d.run(Open(0, "userptr", 0))
    d.run(Write(0, 1, 8))
    assert d.run(Reg(0, 0, 2, "rw", 0)) == HandleResult("R", 0)
    assert d.run(Submit(0, "read", 0, 2, job=0)) == HandleResult("J", 0)
    assert d.k.active_jobs() == [0]
    # oomreap: the non-blockable callback fails while a job is active: no change
    assert d.run(Oomreap(0)) == OK
    o = d.obs()
    assert o.processes[0].state == "killed" and len(o.processes[0].entries) == 2
    assert d.run(Complete(0)) == Values((0, 8))
    assert d.run(Write(0, 0, 1)) == Err(Errno.ESRCH)
    assert d.run(Exit(0)) == OK
    o = d.obs()
    assert o.pages_in_use == 0 and o.processes[0].state == "dead"


def test_mremap_moves_entries() -> None:
    d = Driver()
    d.run(Mmap(0, 0, 8, "rw", "private"))
    d.run(Write(0, 2, 4))
    assert d.run(Mremap(0, 0, 4, 2)) == Err(Errno.EINVAL)  # overlap
    assert d.run(Mremap(0, 6, 4, 100)) == Err(Errno.EFAULT)  # not inside one VMA
    assert d.run(Mremap(0, 0, 4, 100)) == OK
    assert d.run(Read(0, 102)) == Num(4)
    assert [(v.start, v.end) for v in d.k.vmas(0)] == [(4, 8), (100, 104)]


def test_enomem_and_exit_frees_everything() -> None:
    d = Driver(frames=1)
    d.run(Mmap(0, 0, 4, "rw", "shared"))
    assert d.run(Write(0, 0, 1)) == OK
    assert d.run(Write(0, 1, 1)) == Err(Errno.ENOMEM)
    assert d.run(Fork(0, 1)) == HandleResult("P", 1)
    assert d.run(Read(1, 0)) == Num(1)  # the object's page, shared
    assert d.run(Exit(0)) == OK
    assert d.obs().pages_in_use == 1  # P1's VMA keeps the object alive
    assert d.run(Exit(1)) == OK
    assert d.obs().pages_in_use == 0 and d.obs().objects == ()


def test_mutants_switch_one_behaviour() -> None:
    def pinned_then_fork(mutant: str | None) -> Observation:
        k = OptimizedKernel(Config(mutant=mutant))
        ops: list[Op] = [Mmap(0, 0, 4, "rw", "private"), Write(0, 0, 1),
                         Open(0, "pin", 0), Pin(0, 0, 1, "rw", 0), Fork(0, 1)]
        for i, op in enumerate(ops):
            k.start(f"L{i}", op)
            while isinstance(k.step(f"L{i}"), Yielded):
                pass
        return k.observe()

    good, bad = pinned_then_fork(None), pinned_then_fork("fork_share_pinned")
    # SPEC §3.3: the child gets its own copy of a pinned page
    assert good.processes[0].entries[0].ref != good.processes[1].entries[0].ref
    assert bad.processes[0].entries[0].ref == bad.processes[1].entries[0].ref

    k = OptimizedKernel(Config(mutant="skip_end_after_failed_callback"))
    ops2: list[Op] = [Mmap(0, 0, 4, "rw", "private"), Open(0, "userptr", 0),
                      Reg(0, 0, 1, "rw", 0), Submit(0, "read", 0, 1, job=0), Oomreap(0)]
    for i, op in enumerate(ops2):
        k.start(f"L{i}", op)
        while isinstance(k.step(f"L{i}"), Yielded):
            pass
    assert {v.invariant for v in k.take_violations()} & {"pairing", "seq_protocol"}


def test_checks_catch_corrupted_structures() -> None:
    from model.optimized.pagetable import PRESENT, mkentry

    d = Driver()
    d.run(Mmap(0, 0, 8, "rw", "private"))
    d.run(Open(0, "mirror", 0))
    d.run(Dwrite(0, 0, 2, 5))
    k = d.k
    pfn = int(k.state.procs[0].pt.entry(0)) >> 5
    k.state.frames.refcount[pfn] += 1  # a leaked reference
    d.start("T1", Read(0, 0))
    k.step("T1")
    assert [v.invariant for v in k.take_violations()] == ["accounting"]
    k.state.frames.refcount[pfn] -= 1
    # a table entry naming a page the CPU entry does not map
    k.state.devices[0].table.set(1, mkentry(PRESENT, pfn, True))
    d.start("T2", Read(0, 0))
    k.step("T2")
    assert [v.invariant for v in k.take_violations()] == ["device_entries_follow_cpu"]
    k.state.devices[0].table.set(1, 0)
    # an odd seq with no invalidation running
    k.state.procs[0].mn.seq = 5
    d.start("T3", Read(0, 0))
    k.step("T3")
    assert "seq_protocol" in [v.invariant for v in k.take_violations()]
