"""Hand-derived scenarios for the reference model (expected results from SPEC)."""

from __future__ import annotations

import time
from functools import partial

from model.ops import (
    ADDRESS_PAGES,
    OK,
    Blocked,
    Complete,
    Dma,
    Done,
    Dread,
    Dwrite,
    Err,
    Errno,
    Evict,
    Exit,
    Fork,
    HandleResult,
    Madvise,
    MigrateToDev,
    Mmap,
    Mremap,
    Munmap,
    Num,
    Ok,
    Oomreap,
    Open,
    Pin,
    Read,
    Reg,
    Segv,
    Snap,
    Snapshot,
    Submit,
    Unpin,
    Unreg,
    Values,
    Write,
    Yielded,
)
from model.reference import ReferenceKernel
from tests.driver import Driver as SharedDriver

Driver = partial(SharedDriver, ReferenceKernel)
Y = Yielded()


def err(e: Errno) -> Err:
    return Err(e)


def test_cow_after_fork() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 1, "rw", "private")) == OK
    assert d.run(Write(0, 0, 5)) == OK
    assert d.run(Fork(0, 1)) == HandleResult("P", 1)
    obs = d.k.observe()
    e0, e1 = obs.processes[0].entries[0], obs.processes[1].entries[0]
    assert (e0.w, e0.x, e1.w, e1.x) == (False, False, False, False)
    assert e0.ref == e1.ref and obs.folios[0].refcount == 2
    assert d.run(Write(1, 0, 7)) == OK
    assert d.run(Read(0, 0)) == Num(5)
    assert d.run(Read(1, 0)) == Num(7)
    obs = d.k.observe()
    assert obs.pages_in_use == 2
    assert [f.refcount for f in obs.folios] == [1, 1]
    # P0 is now the only mapper of an order-0 folio: reuse in place, no copy.
    assert d.run(Write(0, 0, 9)) == OK
    obs = d.k.observe()
    assert obs.pages_in_use == 2 and obs.processes[0].entries[0].x


def test_thp_split_by_partial_munmap() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 1024, "rw", "private", True)) == OK
    assert d.run(Open(0, "mirror", 0)) == HandleResult("D", 0)
    assert d.run(Write(0, 3, 1)) == OK
    assert d.run(Snapshot(0, 0, 2)) == Snap(("w+pmd", "w+pmd"))
    assert d.k.observe().pages_in_use == 512
    d.start("T1", Munmap(0, 0, 10))
    # split: I(clear, block) with the mirror's callback (Y1), apply (Y2);
    # then I(unmap, [0,10)): Y1, Y2; then done.
    assert [d.step("T1") for _ in range(4)] == [Y, Y, Y, Y]
    assert d.step("T1") == Done(OK)
    obs = d.k.observe()
    folio = obs.folios[0]
    assert folio.order == 9 and folio.refcount == 502
    assert folio.mapcount[:11] == (0,) * 10 + (1,)
    assert d.run(Snapshot(0, 9, 2)) == Snap(("error", "w"))
    assert d.run(Read(0, 3)) == Segv()
    assert d.run(Read(0, 13)) == Num(0)


def test_mirror_dread_racing_dontneed_retries() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Write(0, 1, 11)) == OK
    assert d.run(Open(0, "mirror", 0)) == HandleResult("D", 0)
    d.start("T1", Dread(0, 0, 4))
    assert d.step("T1") == Y  # check fails; read_begin; Y3
    assert d.step("T1") == Y  # walk 4 pages (last Y3)
    d.start("T2", Madvise(0, 0, 4, "dontneed"))
    assert d.step("T2") == Y  # callback, Y1
    assert d.step("T2") == Y  # apply, Y2
    assert d.step("T2") == Done(OK)
    assert d.step("T1") == Y  # commit: read_retry true; Y3 holding the lock
    assert d.step("T1") == Y  # failed_commits += 1; new round: read_begin; Y3
    assert d.k.failed_commits("T1") == 1
    assert d.step("T1") == Y  # walk
    assert d.step("T1") == Y  # commit ok, Y3
    assert d.step("T1") == Y  # install, release, Y3
    assert d.step("T1") == Done(Values((0, 0, 0, 0), 1))


def test_userptr_callback_blocks_until_complete() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Open(0, "userptr", 0)) == HandleResult("D", 0)
    assert d.run(Reg(0, 0, 4, "rw", 0)) == HandleResult("R", 0)
    assert d.run(Submit(0, "write", 0, 2, 5, None, 0)) == HandleResult("J", 0)
    assert d.k.active_jobs() == [0]
    d.start("T1", Munmap(0, 0, 4))
    assert d.step("T1") == Y  # the callback reaches its wait for jobs: Y4
    assert d.step("T1") == Blocked()
    assert d.step("T1") == Blocked()
    assert d.run(Complete(0)) == Ok()
    assert d.step("T1") == Y  # the callback unpins and returns: Y1
    assert d.k.observe().regions[0].pins == ()
    assert d.step("T1") == Y  # apply
    assert d.step("T1") == Done(OK)
    assert d.k.observe().pages_in_use == 0


def test_deferred_insert_during_active_invalidation() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Open(0, "mirror", 0)) == HandleResult("D", 0)
    d.start("T1", Munmap(0, 0, 1))
    assert d.step("T1") == Y  # start: seq 3; mirror callback; Y1
    assert d.run(Open(0, "userptr", 1)) == HandleResult("D", 1)
    assert d.run(Reg(1, 2, 2, "rw", 0)) == HandleResult("R", 0)
    n = d.k.observe().processes[0].notifier
    assert n is not None and (n.seq, n.active) == (3, 1)
    assert n.deferred == (("insert", 1),) and [s.id for s in n.subscriptions] == [0]
    d.start("T2", Submit(0, "read", 0, 1, None, None, 0))
    assert d.step("T2") == Y  # read_begin: invalidate_seq == seq: Y4
    assert d.step("T2") == Blocked()
    assert d.step("T1") == Y  # apply, Y2
    assert d.step("T1") == Done(OK)  # end: seq 4, the insert lands
    n = d.k.observe().processes[0].notifier
    assert n is not None and n.seq == 4 and n.deferred == ()
    assert [(s.id, s.invalidate_seq) for s in n.subscriptions] == [(0, 3), (1, 3)]
    assert d.step("T2") == Y  # read_begin returns 3; Y3
    assert d.step("T2") == Y  # slow path: pin; Y3
    assert d.step("T2") == Done(HandleResult("J", 0))


def test_migrate_to_dev_then_cpu_read_faults_back() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Write(0, 1, 77)) == OK
    assert d.run(Open(0, "mirror", 0)) == HandleResult("D", 0)
    assert d.run(MigrateToDev(0, 0, 4)) == Num(4)
    assert d.run(Snapshot(0, 0, 4)) == Snap(("dev-w",) * 4)
    obs = d.k.observe()
    assert obs.pages_in_use == 0 and len(obs.device_pages) == 4
    assert d.run(Read(0, 1)) == Num(77)
    assert d.run(Snapshot(0, 0, 4)) == Snap(("dev-w", "w", "dev-w", "dev-w"))
    obs = d.k.observe()
    assert [t.vpn for t in obs.devices[0].table] == [0, 2, 3]
    assert obs.pages_in_use == 1 and obs.devices[0].pages_in_use == 3
    assert d.run(Evict(0)) == Num(3)
    assert d.run(Dread(0, 0, 4)) == Values((0, 77, 0, 0), 1)


def test_enomem_at_frame_limit() -> None:
    d = Driver(frames=2)
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Write(0, 0, 1)) == OK
    assert d.run(Write(0, 1, 1)) == OK
    assert d.run(Write(0, 2, 1)) == err(Errno.ENOMEM)
    assert d.run(Read(0, 3)) == Num(0)  # the zero page takes no frame
    assert d.run(Write(0, 3, 1)) == err(Errno.ENOMEM)  # after the zero page's I(clear)
    assert d.k.observe().pages_in_use == 2


def test_fork_enomem_kills_the_child() -> None:
    d = Driver(frames=2)
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Write(0, 0, 1)) == OK
    assert d.run(Write(0, 1, 2)) == OK
    assert d.run(Open(0, "pin", 0)) == HandleResult("D", 0)
    assert d.run(Pin(0, 1, 1, "rw", 0)) == HandleResult("R", 0)
    assert d.run(Fork(0, 1)) == err(Errno.ENOMEM)
    obs = d.k.observe()
    assert obs.processes[1].state == "dead"
    e0 = obs.processes[0].entries[0]
    assert (e0.w, e0.x) == (False, False)  # changed before the failing copy
    assert obs.folios[0].refcount == 1
    assert d.run(Read(1, 0)) == err(Errno.EINVAL)  # the fork did not complete
    assert d.run(Dma(0, "read", 0, 1)) == Values((2,))


def test_errno_precedence() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 4, "r", "private")) == OK
    assert d.run(Open(0, "mirror", 0)) == HandleResult("D", 0)
    assert d.run(Open(0, "userptr", 1)) == HandleResult("D", 1)
    assert d.run(Open(0, "pin", 2)) == HandleResult("D", 2)
    assert d.run(Reg(1, 0, 4, "ro", 0)) == HandleResult("R", 0)
    assert d.run(Pin(2, 0, 2, "ro", 1)) == HandleResult("R", 1)
    assert d.run(Dread(1, 0, 4)) == err(Errno.EINVAL)  # wrong device kind
    assert d.run(Dwrite(0, 0, 4, 1)) == err(Errno.EPERM)  # walk: VMA without w
    assert d.run(Pin(2, 0, 1, "rw", 2)) == err(Errno.EFAULT)  # write pin without w
    assert d.run(Dma(1, "write", 0, 1, 3)) == err(Errno.EPERM)
    assert d.run(Dma(1, "read", 1, 2)) == err(Errno.EINVAL)  # off + count > size
    assert d.run(Mremap(0, 0, 4, 2)) == err(Errno.EINVAL)  # overlap
    assert d.run(Mremap(0, 2, 4, 100)) == err(Errno.EFAULT)  # not inside one VMA
    assert d.run(Submit(0, "write", 0, 1, 1, None, 0)) == err(Errno.EPERM)
    assert d.run(Oomreap(0)) == OK
    assert d.run(Dread(0, 0, 5000)) == err(Errno.EINVAL)  # rule 1 before rule 2
    assert d.run(Dread(0, 0, 4)) == err(Errno.ESRCH)
    assert d.run(Submit(0, "write", 0, 1, 1, None, 1)) == err(Errno.ESRCH)  # before EPERM
    assert d.run(Mremap(0, 0, 4, 2)) == err(Errno.ESRCH)  # before the overlap check
    assert d.run(Dma(1, "read", 0, 1)) == Values((0,))  # dma runs on a killed process
    assert d.run(Read(0, 0)) == err(Errno.ESRCH)
    assert d.run(Exit(0)) == OK
    assert d.run(Exit(0)) == err(Errno.ESRCH)
    assert d.run(Unreg(0)) == OK
    assert d.run(Unreg(0)) == err(Errno.EINVAL)
    assert d.k.step("T9") == err(Errno.EINVAL)


def test_huge_ranges_are_fast() -> None:
    d = Driver()
    began = time.perf_counter()
    assert d.run(Mmap(0, 0, ADDRESS_PAGES, "rw", "private", True)) == OK
    assert d.run(Open(0, "mirror", 0)) == HandleResult("D", 0)
    for v in (0, 5, 1 << 30, ADDRESS_PAGES - 1):
        assert d.run(Write(0, v, v + 1)) == OK
    assert d.run(Dread(0, 0, 6)) == Values((1, 0, 0, 0, 0, 6), 1)
    assert d.run(Fork(0, 1)) == HandleResult("P", 1)
    assert d.run(Madvise(0, 0, ADDRESS_PAGES, "nohugepage")) == OK
    assert d.run(Munmap(0, 0, ADDRESS_PAGES)) == OK
    assert d.run(Read(1, ADDRESS_PAGES - 1)) == Num(ADDRESS_PAGES)
    assert d.run(Exit(1)) == OK
    assert d.k.observe().pages_in_use == 0
    assert time.perf_counter() - began < 2.0


def test_migrate_to_dev_racing_dontneed_leaves_no_stale_table_entry() -> None:
    """DECISIONS D15: the racing page moves but D's table does not map it."""
    d = Driver()
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Open(0, "mirror", 0)) == HandleResult("D", 0)
    d.start("T1", Madvise(0, 0, 4, "dontneed"))
    assert d.step("T1") == Y  # D0's callback has returned
    assert d.run(MigrateToDev(0, 0, 4)) == Num(4)
    assert d.k.observe().devices[0].table == ()
    assert d.step("T1") == Y  # the zap frees the device pages
    assert d.step("T1") == Done(OK)
    obs = d.k.observe()
    assert obs.device_pages == () and obs.processes[0].entries == ()


def test_oomreap_callback_fails_while_a_commit_holds_the_driver_lock() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Open(0, "mirror", 0)) == HandleResult("D", 0)
    assert d.run(Write(0, 0, 1)) == OK
    d.start("T1", Dread(0, 0, 4))
    assert [d.step("T1") for _ in range(3)] == [Y, Y, Y]  # stopped holding the lock
    assert d.run(Oomreap(0)) == OK  # the non-blockable callback fails: no change
    obs = d.k.observe()
    assert obs.processes[0].state == "killed"
    assert [e.cls for e in obs.processes[0].entries] == ["present", "zero", "zero", "zero"]
    assert d.step("T1") == Y  # install, release
    assert d.step("T1") == Done(Values((1, 0, 0, 0), 1))
    assert d.run(Read(0, 0)) == err(Errno.ESRCH)


def test_exit_keeps_pinned_folio_until_unpin() -> None:
    d = Driver()
    assert d.run(Mmap(0, 0, 4, "rw", "private")) == OK
    assert d.run(Write(0, 0, 9)) == OK
    assert d.run(Open(0, "pin", 0)) == HandleResult("D", 0)
    assert d.run(Pin(0, 0, 1, "ro", 0)) == HandleResult("R", 0)
    assert d.run(Exit(0)) == OK
    obs = d.k.observe()
    assert obs.pages_in_use == 1 and obs.regions[0].pins[0][0] == 0
    assert d.run(Dma(0, "read", 0, 1)) == err(Errno.ESRCH)  # dma on a dead process
    assert d.run(Unpin(0)) == OK
    assert d.k.observe().pages_in_use == 0
