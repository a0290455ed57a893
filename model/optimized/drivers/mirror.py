"""The ``mirror`` device (SPEC §6.1), after lib/test_hmm.c's dmirror.

Mirrors ``dmirror_interval_invalidate`` (the callback), ``dmirror_fault`` /
``dmirror_range_fault`` with the core's ``hmm_range_fault`` (the walk, in
``hmm.py``) and ``dmirror_do_read``/``dmirror_do_write`` (the access
check), ``dmirror_snapshot``, ``dmirror_migrate_to_device`` (over the core's
``migrate_vma`` steps in ``migrate_device.py``), ``dmirror_devmem_fault``
(``migrate_to_ram``) and ``dmirror_device_evict_chunk``.  Opening a mirror
registers its device memory (``dmirror_devmem_ops``: a CPU fault on one of
its pages calls its ``migrate_to_ram``) and its subscription over
[0, 2^36).  The device table is a radix tree (``dmirror->pt`` is an xarray)
of packed targets: a folio page or device page with ``w``, or the zero
page; it holds no references.

The rule: a table entry is installed only by a commit whose
``mmu_interval_read_retry`` was false under the driver lock; every callback
drops the invalidated range under that lock (except the device's own
migrate events, fixed in their apply).
"""

from __future__ import annotations

import numpy as np

from model import bugs
from model.driver import Driver
from model.ops import (
    ADDRESS_PAGES,
    MAX_VALUE_PAGES,
    Dread,
    Dwrite,
    Err,
    Evict,
    MigrateToDev,
    Num,
    Ok,
    OpResult,
    Snap,
    Snapshot,
    Values,
)
from model.optimized import common as C
from model.optimized.hmm import hmm_range_fault
from model.optimized.migrate_device import (
    count_owned,
    migrate_back,
    migrate_vma,
    owned_pages,
    to_device,
)
from model.optimized.mmu_notifier import Notifier, Range, Subscription
from model.optimized.observe import DriverView
from model.optimized.pagetable import (
    DEVICE,
    KIND_MASK,
    PRESENT,
    SHIFT,
    ZERO,
    Arr,
    W,
    kind_of,
    mkentry,
    payload_of,
)
from model.optimized.rmap import vma_ranges
from model.optimized.state import Device, DevPagemap, DevPagemapOps, KernelState, Process
from model.optimized.threads import Gen, Thread
from model.optimized.vma import find_vma

KIND = "mirror"


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


def mirror_open(k: KernelState, dev: Device) -> None:
    """``open``: its device memory (``devm_memremap_pages`` with
    ``dmirror_devmem_ops``) and its subscription over [0, 2^36)."""
    dev.pgmap = DevPagemap(dev.id, DMIRROR_DEVMEM_OPS)
    sub = Subscription(k.new_sub_id(), 0, ADDRESS_PAGES, KIND, dev.id)
    dev.sub = sub
    k.procs[dev.pid].mn.mmu_interval_notifier_insert(sub)


def _complete_table(k: KernelState, dev: Device, a: int, b: int, write: bool) -> Arr | None:
    """The device entries of [a, b) if every one is there (and writable for
    a write), else None."""
    if b - a > dev.table.count():  # cannot be complete: gather nothing (n may be 2^36)
        return None
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
    dev = C.device(k, op.d, KIND)
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
    assert dev.sub is not None
    sub: Subscription = dev.sub
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

            def per_chunk_read_begin(g: int) -> None:
                # B9a: read_begin again for every chunk (it would not wait
                # here); the commit validates only the last one
                nonlocal s0
                if g != a and sub.invalidate_seq != proc.mn.seq:
                    s0 = sub.invalidate_seq
                    proc.mn.note_begin(t, sub)

            def check_before_lock() -> None:
                nonlocal early  # B16: check outside the lock
                early = Notifier.mmu_interval_read_retry(sub, s0)  # noqa: B023 (this round's)

            got = yield from hmm_range_fault(
                k, t, proc, dev.id, a, b, write,
                per_chunk_read_begin if k.bugged(bugs.PER_CHUNK_READ_BEGIN) else None,
                check_before_lock if k.bugged(bugs.UNLOCK_BEFORE_PROGRAM) else None)
            if not isinstance(got, tuple):
                return got
            rec_v, rec_e = got
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
    dev = C.device(k, op.d, KIND)
    if dev is None or not C.range_ok(op.s, op.n) or op.n > MAX_VALUE_PAGES:
        return C.EINVAL
    proc = k.procs[dev.pid]
    if (e := (yield from C.read_locked(t, proc))) is not None:
        return e
    words = _snapshot(k, dev, op)
    proc.mmap_lock.read_unlock(t)
    return Snap(tuple(words))


# ------------------------------------------------- device-private memory


def mirror_migrate_to_ram(k: KernelState, t: Thread, d: int) -> Gen[str]:
    """dmirror_devmem_fault: the core's migrate-back of device page d; a page
    that moved leaves the mirror's table."""
    return (yield from migrate_back(k, t, d, _drop_table_entries))


DMIRROR_DEVMEM_OPS = DevPagemapOps(migrate_to_ram=mirror_migrate_to_ram)
"""``dmirror_devmem_ops``: what a CPU fault on a mirror's device page runs."""


def _drop_table_entries(k: KernelState, dev: Device, d: int) -> None:
    """The owner's table drops every entry naming d (looked for where d's
    index can be mapped in the mirror's process)."""
    mirror = dev
    proc = k.procs[mirror.pid]
    target = mkentry(DEVICE, d)
    for a, b in vma_ranges(k, proc, int(k.dpages.index[d]), 1) or []:
        for v in range(a, b):
            e = mirror.table.entry(v)
            if e and (e & ~W) == target:
                mirror.table.set(v, 0)


def op_migrate_to_dev(k: KernelState, t: Thread, op: MigrateToDev) -> Gen[OpResult]:
    """dmirror_migrate_to_device."""
    dev = C.device(k, op.d, KIND)
    if dev is None or not C.range_ok(op.s, op.n):
        return C.EINVAL
    proc = k.procs[dev.pid]
    if (e := (yield from C.read_locked(t, proc))) is not None:
        return e
    a, b = op.s, op.s + op.n
    got = yield from migrate_vma(k, t, proc, dev, a, b,
                                 lambda rng: _migrate_apply(k, proc, dev, a, b, rng))
    moved = count_owned(k, proc, dev, a, b)
    proc.mmap_lock.read_unlock(t)
    if isinstance(got, Err):
        return got
    return Num(op.n) if moved == op.n else C.ENOENT


def _migrate_apply(k: KernelState, proc: Process, dev: Device, a: int, b: int,
                   rng: Range) -> None:
    """``dmirror_migrate_finalize_and_map`` after the core's
    ``migrate_vma_pages`` + finalize (``migrate_device.to_device``).  A moved
    page that another running invalidation of the mm covers is not mapped in
    D's table (DECISIONS D15): that invalidation may still zap it.  Nor is
    any page while D's subscription waits on the deferred list (D21): no
    invalidation would reach D until it enters the tree."""
    others = [(r.start, r.end) for r in proc.mn.running if r is not rng]
    deferred = dev.sub is None or not dev.sub.in_tree
    for v, d, w in to_device(k, proc, dev, a, b):
        if deferred or any(lo <= v < hi for lo, hi in others):
            dev.table.set(v, 0)
        else:
            dev.table.set(v, mkentry(DEVICE, d, w))


def op_evict(k: KernelState, t: Thread, op: Evict) -> Gen[OpResult]:
    """dmirror_device_evict_chunk over every page of the mirror."""
    dev = C.device(k, op.d, KIND)
    if dev is None:
        return C.EINVAL
    order = owned_pages(k, dev.id)
    gens = {d: int(k.dpages.gen[d]) for d in order}
    moved = 0
    for i, d in enumerate(order):
        if i:
            yield None  # Y3 between pages
        while k.dpages.live[d] and int(k.dpages.gen[d]) == gens[d]:
            res = yield from mirror_migrate_to_ram(k, t, d)
            if res == "again":
                continue
            if res == "nomem":
                return C.ENOMEM
            if res == "moved":
                moved += 1
            break
    return Num(moved)


def mirror_view(k: KernelState, dev: Device) -> DriverView:
    """Its table and the device pages it uses; no regions."""
    return DriverView(dev.table, k.dpages.used.get(dev.id, 0), [])


DRIVER: Driver[KernelState, Thread] = Driver(
    KIND,
    ops={"dread": op_dread_dwrite, "dwrite": op_dread_dwrite, "snapshot": op_snapshot,
         "migrate_to_dev": op_migrate_to_dev, "evict": op_evict},
    open=mirror_open,
    invalidate=mirror_invalidate,
    migrate_to_ram=mirror_migrate_to_ram,
    view=mirror_view,
)
