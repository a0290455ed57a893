"""``hmm_range_fault``: a device driver's walk of a process's page table,
faulting as a CPU access would (SPEC §6.1; mm/hmm.c).

The walk of [a, b) for device ``owner`` (``hmm_range.dev_private_owner``):
take mmap_lock for reading ([R]); record, for each vpn, the packed target
the CPU entry names (a folio page or device page with ``w``, or the zero
page), faulting it in first when it is missing, not writable for a write,
or a device page of another owner (or the owner's own, read-only, for a
write), which goes back to RAM through its ``pgmap->ops->migrate_to_ram``;
a Y3 after every 64 pages and after the last, mmap_lock released before
that last Y3.  Errors: EFAULT (no VMA, or no r), EPERM (a write without w),
ENOMEM, ESRCH (the process is not live once the lock is taken).

Entries that need no fault are read for the rest of the range at once (a
:class:`WalkCache`), good only while no other thread has stepped since.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model.ops import OpResult
from model.optimized import common as C
from model.optimized.fault import handle_mm_fault, migrate_to_ram, no_fault_needed
from model.optimized.pagetable import (
    DEVICE,
    KIND_MASK,
    PRESENT,
    SHIFT,
    ZERO,
    Arr,
    W,
    X,
    kind_of,
    payload_of,
)
from model.optimized.state import KernelState, Process
from model.optimized.threads import Gen, Thread
from model.optimized.vma import find_vma

GROUP = 64

Walked = tuple[list[Arr], list[Arr]]
"""The walk's record: vpn arrays and their packed targets, group by group."""


class WalkCache:
    """hmm_range_fault's view of a round's whole range, read at one step and
    used by the groups of the following steps only while no other thread has
    stepped in between (nothing else can have changed it).

    ``good_end``: the groups before it need no fault (inside one readable
    VMA, every entry present or zero, or the owner's own, with write access
    when needed), so a group there is taken from ``vpns``/``ents`` as it is."""

    __slots__ = ("serial", "a", "vpns", "ents", "good_end")

    def __init__(self) -> None:
        self.serial = -1
        self.a = 0
        self.vpns: Arr = np.zeros(0, np.int64)
        self.ents: Arr = np.zeros(0, np.int64)
        self.good_end = 0

    def fill(self, k: KernelState, proc: Process, owner: int, a: int, end: int,
             write: bool) -> None:
        """Read [a, end): what the groups from ``a`` on may take without a walk."""
        self.serial = k.serial
        self.a = a
        self.good_end = a
        vma = find_vma(proc, a)
        if vma is None or not vma.readable or (write and not vma.writable):
            return
        end = min(end, vma.end)
        ents, _ = proc.pt.gather(a, end)
        kinds = ents & KIND_MASK
        if write:
            good = (kinds == PRESENT) & ((ents & W) != 0)
        else:
            good = (kinds == PRESENT) | (kinds == ZERO)
        dv = kinds == DEVICE
        if dv.any():  # the owner's own pages need no fault either
            own = dv & (k.dpages.owner[(ents >> SHIFT) * dv] == owner)
            good |= own & ((ents & W) != 0) if write else own
        n = int(good.argmin()) if not good.all() else good.size
        self.good_end = a + n
        self.vpns = np.arange(a, a + n, dtype=np.int64)
        self.ents = ents[:n] & ~X

    def fresh(self, k: KernelState, a: int) -> bool:
        """Read from ``a`` or before, at this step or at this thread's last
        one with no other thread stepping since."""
        return k.serial - self.serial <= 1 and self.a <= a

    def take(self, k: KernelState, a: int, b: int, rec_v: list[Arr],
             rec_e: list[Arr]) -> bool:
        """Record the group [a, b) from the cache if it is still good there."""
        if not self.fresh(k, a) or b > self.good_end:
            return False
        self.serial = k.serial
        rec_v.append(self.vpns[a - self.a: b - self.a])
        rec_e.append(self.ents[a - self.a: b - self.a])
        k.pops += b - a
        return True


def walk_group(k: KernelState, t: Thread, proc: Process, owner: int, a: int, b: int, end: int,
               write: bool, rec_v: list[Arr], rec_e: list[Arr],
               cache: WalkCache) -> Gen[OpResult | None]:
    """hmm_range_fault over [a, b) (of a round over [.., end)): record (vpn,
    target) pairs; faults inline.  Entries that need no fault are read for
    all of [a, end) at once and kept in ``cache`` for the next groups."""
    if not cache.fresh(k, a):  # (a fresh cache already said this group needs the walk)
        cache.fill(k, proc, owner, a, end, write)
        if cache.take(k, a, b, rec_v, rec_e):
            return None
    vma = find_vma(proc, a)
    cache.serial = -1  # the slow walk may fault: read again next time
    for v in range(a, b):
        if vma is None or not (vma.start <= v < vma.end):
            vma = find_vma(proc, v)
        if vma is None or not vma.readable:
            return C.EFAULT
        if write and not vma.writable:
            return C.EPERM
        while True:
            e = proc.pt.entry(v)
            k.pops += 1
            kind = kind_of(e)
            if kind == DEVICE:
                d = payload_of(e)
                if int(k.dpages.owner[d]) == owner and (not write or e & W):
                    break
                # hmm_range_fault faults it in (another device's page, or
                # the owner's own one read-only for a write): its owner's hook
                res = yield from migrate_to_ram(k, t, d)
                if res == "nomem":
                    return C.ENOMEM
                continue
            if not no_fault_needed(e, write):
                err = yield from handle_mm_fault(k, t, proc, vma, v, write)
                if err is not None:
                    return err
                continue
            break
        rec_v.append(np.array([v], np.int64))
        rec_e.append(np.array([e & ~X], np.int64))
    return None


def hmm_range_fault(k: KernelState, t: Thread, proc: Process, owner: int, a: int, b: int,
                    write: bool, before_group: Callable[[int], None] | None = None,
                    after_last: Callable[[], None] | None = None) -> Gen[Walked | OpResult]:
    """[R]; the walk of [a, b) by groups of 64 with a Y3 after each, mmap_lock
    released before the last one; the record, or an errno (mmap_lock released).

    ``before_group(g)`` runs before each group (a planted bug's hook) and
    ``after_last()`` just after mmap_lock is released (another one's)."""
    yield from proc.mmap_lock.read_lock(t)
    if proc.state != "live":
        proc.mmap_lock.read_unlock(t)
        return C.ESRCH
    rec_v: list[Arr] = []
    rec_e: list[Arr] = []
    cache = WalkCache()
    for g in range(a, b, GROUP):
        gend = min(g + GROUP, b)
        if before_group is not None:
            before_group(g)
        if not cache.take(k, g, gend, rec_v, rec_e):
            err = yield from walk_group(k, t, proc, owner, g, gend, b, write, rec_v, rec_e,
                                        cache)
            if err is not None:
                proc.mmap_lock.read_unlock(t)
                return err
        if gend == b:
            proc.mmap_lock.read_unlock(t)
            if after_last is not None:
                after_last()
        yield None  # Y3 after every 64 pages and after the last
    return rec_v, rec_e
