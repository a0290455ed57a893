"""The mirror device (SPEC §6.1), after lib/test_hmm.c's dmirror.

Mirrors ``dmirror_interval_invalidate`` (the callback), ``dmirror_fault`` /
``dmirror_range_fault`` with ``hmm_range_fault`` (the walk) and
``dmirror_do_read``/``dmirror_do_write`` (the access check), and
``dmirror_snapshot``; opening a mirror registers its device memory
(``dmirror_devmem_ops``: a CPU fault on one of its pages calls its
``migrate_to_ram``).  The device table is a radix tree (``dmirror->pt``
is an xarray) of packed targets: a folio page or device page with ``w``,
or the zero page; it holds no references.

The rule: a table entry is installed only by a commit whose
``mmu_interval_read_retry`` was false under the driver lock; every callback
drops the invalidated range under that lock (except the device's own
migrate events, fixed in their apply).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from model import bugs
from model.ops import (
    ADDRESS_PAGES,
    MAX_VALUE_PAGES,
    Dread,
    Dwrite,
    HandleResult,
    Ok,
    Open,
    OpResult,
    Snap,
    Snapshot,
    Values,
)
from model.optimized import common as C
from model.optimized.fault import handle_mm_fault, migrate_to_ram, no_fault_needed
from model.optimized.migrate_device import migrate_back
from model.optimized.mmu_notifier import Notifier, Range, Subscription
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
from model.optimized.state import Device, DevPagemap, DevPagemapOps, KernelState
from model.optimized.threads import Gen, Thread, lazily
from model.optimized.vma import find_vma

GROUP = 64

DMIRROR_DEVMEM_OPS = DevPagemapOps(migrate_to_ram=migrate_back)
"""``dmirror_devmem_ops``: a CPU fault on a mirror's device page runs
``dmirror_devmem_fault`` (``migrate_device.migrate_back``)."""


class WalkCache:
    """hmm_range_fault's view of a round's whole range, read at one step and
    used by the groups of the following steps only while no other thread has
    stepped in between (nothing else can have changed it).

    ``good_end``: the groups before it need no fault (inside one readable
    VMA, every entry present or zero, or the device's own, with write access
    when needed), so a group there is taken from ``vpns``/``ents`` as it is."""

    __slots__ = ("serial", "a", "vpns", "ents", "good_end")

    def __init__(self) -> None:
        self.serial = -1
        self.a = 0
        self.vpns: Arr = np.zeros(0, np.int64)
        self.ents: Arr = np.zeros(0, np.int64)
        self.good_end = 0

    def fill(self, k: KernelState, dev: Device, a: int, end: int, write: bool) -> None:
        """Read [a, end): what the groups from ``a`` on may take without a walk."""
        proc = k.procs[dev.pid]
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
        if dv.any():  # the device's own pages need no fault either
            own = dv & (k.dpages.owner[(ents >> SHIFT) * dv] == dev.id)
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


def mirror_invalidate(k: KernelState, t: Thread, sub: Subscription, rng: Range) -> Gen[bool]:
    """dmirror_interval_invalidate."""
    dev = k.devices[sub.owner]
    if rng.blockable or k.bugged(bugs.NONBLOCK_CALLBACK_BLOCKS):  # B4/B15 when mutated
        yield from dev.lock.lock(t)
    elif not dev.lock.trylock(t):
        return False
    if not (k.bugged(bugs.MIRROR_SKIP_SET_SEQ_OWN_MIGRATE)
            and rng.event == "migrate" and rng.owner == dev.id):
        Notifier.mmu_interval_set_seq(sub, rng.cur_seq)
    if not (rng.event == "migrate" and rng.owner == dev.id):
        k.pops += dev.table.clear_range(rng.start, rng.end)
    dev.lock.unlock(t)
    return True


def _open(k: KernelState, op: Open) -> OpResult:
    proc = k.proc(op.p)
    if proc is None or op.dev < 0 or op.dev in k.devices:
        return C.EINVAL
    if proc.state != "live":
        return C.ESRCH
    dev = Device(op.dev, op.kind, op.p)
    k.devices[op.dev] = dev
    if op.kind == "mirror":
        dev.pgmap = DevPagemap(op.dev, DMIRROR_DEVMEM_OPS)
        sub = Subscription(k.new_sub_id(), 0, ADDRESS_PAGES, "mirror", op.dev,
                           partial(mirror_invalidate, k))
        dev.sub = sub
        proc.mn.mmu_interval_notifier_insert(sub)
    return HandleResult("D", op.dev)


def op_open(k: KernelState, t: Thread, op: Open) -> Gen[OpResult]:
    return lazily(lambda: _open(k, op))


def _complete_table(k: KernelState, dev: Device, a: int, b: int, write: bool) -> Arr | None:
    """The device entries of [a, b) if every one is there (and writable for
    a write), else None."""
    ents, _ = dev.table.gather(a, b)
    have = int(np.count_nonzero((ents & W) != 0 if write else ents))
    k.pops += have
    return ents if have == b - a else None


def _device_access(k: KernelState, dev: Device, ents: Arr, op: Dread | Dwrite,
                   faults: int) -> OpResult:
    """dmirror_do_read / dmirror_do_write on a complete table."""
    kinds = ents & KIND_MASK
    pay = ents >> SHIFT
    fol = kinds == PRESENT
    dv = kinds == DEVICE
    pf, pd = pay[fol], pay[dv]
    if not k.frames.live[pf].all() or not k.dpages.live[pd].all():
        k.violation("no_use_after_free", f"D{dev.id} access reaches a freed page")
    k.pops += ents.size
    if isinstance(op, Dwrite):
        vals = np.int64(op.x) + np.arange(ents.size, dtype=np.int64) * np.int64(op.stride or 0)
        k.frames.word[pf] = vals[fol]
        k.dpages.word[pd] = vals[dv]
        return Ok(faults)
    w = np.zeros(ents.size, np.int64)
    w[fol] = k.frames.word[pf]
    w[dv] = k.dpages.word[pd]
    return Values(tuple(w.tolist()), faults)


def op_dread_dwrite(k: KernelState, t: Thread, op: Dread | Dwrite) -> Gen[OpResult]:
    """dread D s n / dwrite D s n x [stride] (dmirror_fault loop)."""
    write = isinstance(op, Dwrite)
    dev = C.device(k, op.d, "mirror")
    if dev is None or not C.range_ok(op.s, op.n):
        return C.EINVAL
    if isinstance(op, Dwrite):
        if not C.words_ok(op.x, op.stride or 0, op.n):
            return C.EINVAL
    elif op.n > MAX_VALUE_PAGES:
        return C.EINVAL
    proc = k.procs[dev.pid]
    if proc.state != "live":
        return C.ESRCH
    sub = dev.sub
    assert sub is not None
    a, b = op.s, op.s + op.n
    faults = 0
    committed = False
    while True:
        yield from dev.lock.lock(t)
        ents = _complete_table(k, dev, a, b, write)
        if ents is not None:
            res = _device_access(k, dev, ents, op, faults)
            dev.lock.unlock(t)
            return res
        dev.lock.unlock(t)
        if committed:
            t.failed_commits += 1
        stale = False
        s0 = 0
        early = False
        while True:  # a round
            if not stale:
                s0 = yield from proc.mn.mmu_interval_read_begin(t, sub)
            if proc.state != "live":
                return C.ESRCH
            yield None  # Y3
            yield from proc.mmap_lock.read_lock(t)
            if proc.state != "live":
                proc.mmap_lock.read_unlock(t)
                return C.ESRCH
            rec_v: list[Arr] = []
            rec_e: list[Arr] = []
            cache = WalkCache()
            for g in range(a, b, GROUP):
                gend = min(g + GROUP, b)
                if k.bugged(bugs.PER_CHUNK_READ_BEGIN) and g != a \
                        and sub.invalidate_seq != proc.mn.seq:
                    # B9a: read_begin again for every chunk (it would not wait
                    # here); the commit validates only the last one
                    s0 = sub.invalidate_seq
                    proc.mn.note_begin(t, sub)
                if not cache.take(k, g, gend, rec_v, rec_e):
                    err = yield from _walk_group(k, t, dev, g, gend, b, write, rec_v, rec_e,
                                                 cache)
                    if err is not None:
                        proc.mmap_lock.read_unlock(t)
                        return err
                if gend == b:
                    proc.mmap_lock.read_unlock(t)
                    if k.bugged(bugs.UNLOCK_BEFORE_PROGRAM):  # B16: check outside the lock
                        early = Notifier.mmu_interval_read_retry(sub, s0)
                yield None  # Y3 after every 64 pages and after the last
            yield from dev.lock.lock(t)
            if proc.state != "live":
                dev.lock.unlock(t)
                return C.ESRCH
            if k.bugged(bugs.FLAG_INSTEAD_OF_SEQ):
                # B1: a "valid" flag, false only while an invalidation runs
                retry = bool(proc.mn.seq & 1)
            elif k.bugged(bugs.UNLOCK_BEFORE_PROGRAM):
                retry = early  # B16: checked before the lock, programmed under it
            else:
                retry = Notifier.mmu_interval_read_retry(sub, s0)
            yield None  # Y3 holding the driver lock
            if retry:
                t.failed_commits += 1
                dev.lock.unlock(t)
                stale = k.bugged(bugs.MIRROR_RETRY_WITHOUT_READ_BEGIN)
                continue
            proc.mn.check_commit(t, sub)
            if rec_v:
                vv = np.concatenate(rec_v)
                dev.table.set_many(vv, np.concatenate(rec_e))
                k.pops += int(vv.size)
            faults += 1
            dev.lock.unlock(t)
            yield None  # Y3
            committed = True
            break


def _walk_group(k: KernelState, t: Thread, dev: Device, a: int, b: int, end: int,
                write: bool, rec_v: list[Arr], rec_e: list[Arr],
                cache: WalkCache) -> Gen[OpResult | None]:
    """hmm_range_fault over [a, b) (of a round over [.., end)): record (vpn,
    target) pairs; faults inline.  Entries that need no fault are read for
    all of [a, end) at once and kept in ``cache`` for the next groups."""
    proc = k.procs[dev.pid]
    if not cache.fresh(k, a):  # (a fresh cache already said this group needs the walk)
        cache.fill(k, dev, a, end, write)
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
                if int(k.dpages.owner[d]) == dev.id and (not write or e & W):
                    break
                # hmm_range_fault faults it in (another device's page, or
                # its own one read-only for a write): its owner's hook
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


def _snapshot(k: KernelState, dev: Device, op: Snapshot) -> list[str]:
    proc = k.procs[dev.pid]
    out: list[str] = []
    for v in range(op.s, op.s + op.n):
        k.pops += 1
        vma = find_vma(proc, v)
        if vma is None or not vma.readable:
            out.append("error")
            continue
        e, pmd = proc.pt.get(v)
        kind = kind_of(e)
        if kind == ZERO:
            out.append("zero")
        elif kind == PRESENT:
            out.append(("w" if e & W else "r") + ("+pmd" if pmd else ""))
        elif kind == DEVICE and int(k.dpages.owner[payload_of(e)]) == dev.id:
            out.append("dev-w" if e & W else "dev-r")
        else:
            out.append("none")
    return out


def op_snapshot(k: KernelState, t: Thread, op: Snapshot) -> Gen[OpResult]:
    dev = C.device(k, op.d, "mirror")
    if dev is None or not C.range_ok(op.s, op.n) or op.n > MAX_VALUE_PAGES:
        return C.EINVAL
    proc = k.procs[dev.pid]
    if proc.state != "live":
        return C.ESRCH
    yield from proc.mmap_lock.read_lock(t)
    if proc.state != "live":
        proc.mmap_lock.read_unlock(t)
        return C.ESRCH
    words = _snapshot(k, dev, op)
    proc.mmap_lock.read_unlock(t)
    return Snap(tuple(words))
