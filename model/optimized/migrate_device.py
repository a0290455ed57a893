"""Device-private migration: migrate_to_dev, migrate-back, evict (SPEC §6.1, §6.5).

Mirrors ``mm/migrate_device.c`` (``migrate_vma_setup`` -> ``migrate_vma_collect``
/ ``migrate_vma_unmap``, ``migrate_vma_pages``, ``migrate_vma_finalize``,
``migrate_device_range``), lib/test_hmm.c's ``dmirror_migrate_to_device``,
``dmirror_devmem_fault`` (``migrate_to_ram``) and ``dmirror_device_evict_chunk``.

The rule of migrate-back: hold the device page (refcount +1), turn every
``device(d)`` entry into ``migration(d)`` one invalidation at a time (first
process in order, lowest vpn), then in the step of the last end either copy
d to a new folio and map it where the migration entries are, or restore
them (no frame: ENOMEM), and drop the owner's table entries naming d.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from model.ops import Evict, MigrateToDev, Num, OpResult
from model.optimized import common as C
from model.optimized.fault import split_block
from model.optimized.memory import put_dpage, tlb_gather
from model.optimized.mmu_gather import unique
from model.optimized.mmu_notifier import Range, invalidate
from model.optimized.pagetable import (
    DEVICE,
    KIND_MASK,
    MIG_D,
    NONE,
    PRESENT,
    PTRS,
    SHIFT,
    ZERO,
    W,
    X,
    kind_of,
    mkentry,
    payload_of,
)
from model.optimized.rmap import first_mapping, rmap_walk, vma_ranges
from model.optimized.state import Device, KernelState, Process
from model.optimized.threads import Gen, Thread, wait
from model.optimized.vma import covered, vmas_in


def migrate_back(k: KernelState, t: Thread, d: int) -> Gen[str]:
    """Returns "again" (waited on another migrator), "none", "moved" or "nomem"."""
    dp = k.dpages
    if dp.holders.get(d, t.name) != t.name:
        yield from wait(t, lambda: d not in dp.holders, "device page migrator")
        return "again"
    dp.holders[d] = t.name
    dp.refcount[d] += 1
    owner = int(dp.owner[d])
    idx = int(dp.index[d])
    while True:
        fm = first_mapping(k, idx, 1, -1, (DEVICE,), d, d + 1)
        if fm is None:
            break
        proc, v, _ = fm
        yield from invalidate(t, proc.mn, Range("migrate", v, v + 1, owner, True),
                              partial(_to_migration, k, proc, v, d))
    migs = list(rmap_walk(k, idx, 1, -1, (MIG_D,), d, d + 1))
    if not migs:
        _release(k, d)
        return "none"
    pfn = k.frames.alloc(0, idx)
    if pfn is None:
        for proc, vpns, ents, _ in migs:
            for v, e in zip(vpns.tolist(), ents.tolist(), strict=True):
                proc.pt.set(v, mkentry(DEVICE, d, bool(e & W), bool(e & X)))
                dp.refcount[d] += 1
        _release(k, d)
        return "nomem"
    fr = k.frames
    fr.word[pfn] = dp.word[d]
    for proc, vpns, ents, _ in migs:
        for v, e in zip(vpns.tolist(), ents.tolist(), strict=True):
            proc.pt.set(v, mkentry(PRESENT, pfn, bool(e & W), bool(e & X)))
            fr.mapcount[pfn] += 1
            fr.refcount[pfn] += 1
            k.pops += 1
    mirror = k.devices.get(owner)
    if mirror is not None:
        _drop_table_entries(k, mirror, d)
    _release(k, d)
    return "moved"


def _to_migration(k: KernelState, proc: Process, v: int, d: int) -> None:
    e = proc.pt.entry(v)
    if kind_of(e) == DEVICE and payload_of(e) == d:
        proc.pt.set(v, mkentry(MIG_D, d, bool(e & W), bool(e & X)))
        k.dpages.refcount[d] -= 1
        k.pops += 1


def _release(k: KernelState, d: int) -> None:
    k.dpages.holders.pop(d, None)
    put_dpage(k, d)


def _drop_table_entries(k: KernelState, mirror: Device, d: int) -> None:
    """The owner's table drops every entry naming d (looked for where d's
    index can be mapped in the mirror's process)."""
    proc = k.procs[mirror.pid]
    target = mkentry(DEVICE, d)
    for a, b in vma_ranges(k, proc, int(k.dpages.index[d]), 1, -1) or []:
        for v in range(a, b):
            e = mirror.table.entry(v)
            if e and (e & ~W) == target:
                mirror.table.set(v, 0)


def op_migrate_to_dev(k: KernelState, t: Thread, op: MigrateToDev) -> Gen[OpResult]:
    """dmirror_migrate_to_device."""
    dev = C.device(k, op.d, "mirror")
    if dev is None or not C.range_ok(op.s, op.n):
        return C.EINVAL
    proc = k.procs[dev.pid]
    if proc.state != "live":
        return C.ESRCH
    yield from proc.mmap_lock.read_lock(t)
    if proc.state != "live":
        proc.mmap_lock.read_unlock(t)
        return C.ESRCH
    a, b = op.s, op.s + op.n
    if not covered(proc, a, b) or any(not m.readable for m in vmas_in(proc, a, b)):
        proc.mmap_lock.read_unlock(t)
        return C.EINVAL
    for base in proc.pt.huge_bases(a, b):
        yield from split_block(k, t, proc, base)
    rng = Range("migrate", a, b, dev.id, True)
    yield from invalidate(t, proc.mn, rng, lambda: _migrate_apply(k, proc, dev, a, b, rng))
    moved = _count_device(k, proc, dev, a, b)
    proc.mmap_lock.read_unlock(t)
    return Num(op.n) if moved == op.n else C.ENOENT


def _count_device(k: KernelState, proc: Process, dev: Device, a: int, b: int) -> int:
    n = 0
    for _, ents, _ in proc.pt.populated(a, b):
        kinds = ents & KIND_MASK
        pay = ents >> SHIFT
        m = kinds == DEVICE
        n += int(np.count_nonzero(k.dpages.owner[pay[m]] == dev.id))
    return n


def _split_folios(k: KernelState, proc: Process, a: int, b: int) -> None:
    """Split each order-9 folio with a page present in [a, b) into 512 order-0
    folios if only PTEs map it and its refcount equals their number."""
    fr = k.frames
    seen: set[int] = set()
    for _, ents, pmd in proc.pt.populated(a, b):
        if pmd:
            continue
        kinds = ents & KIND_MASK
        pfns = (ents >> SHIFT)[kinds == PRESENT]
        if pfns.size == 0:
            continue
        huge = pfns[fr.order[pfns] == 9]
        for h in unique(huge & ~(PTRS - 1)).tolist():
            if h in seen:
                continue
            seen.add(h)
            nmaps = int(fr.mapcount[h: h + PTRS].sum())
            if _pmd_mapped(k, h) or int(fr.refcount[h]) != nmaps:
                continue
            fr.split(h)
            for i in range(PTRS):
                if fr.refcount[h + i] == 0:
                    fr.free(h + i)


def _pmd_mapped(k: KernelState, head: int) -> bool:
    for _, _, _, pmd in rmap_walk(k, int(k.frames.index[head]), PTRS, -1, (PRESENT,),
                                  head, head + PTRS):
        if pmd:
            return True
    return False


def _migrate_apply(k: KernelState, proc: Process, dev: Device, a: int, b: int,
                   rng: Range) -> None:
    """migrate_vma_pages + finalize for [a, b).  A moved page that another
    running invalidation of the mm covers is not mapped in D's table
    (DECISIONS D15): that invalidation may still zap it.  Nor is any page
    while D's subscription waits on the deferred list (D21): no invalidation
    would reach D until it enters the tree."""
    others = [(r.start, r.end) for r in proc.mn.running if r is not rng]
    deferred = dev.sub is None or not dev.sub.in_tree
    _split_folios(k, proc, a, b)
    fr, dp = k.frames, k.dpages
    tlb = tlb_gather(k)
    for m in vmas_in(proc, a, b):
        if m.kind != "private":
            continue
        v = max(a, m.start)
        end = min(b, m.end)
        while v < end and dp.can_alloc(dev.id):
            e, pmd = proc.pt.get(v)
            kind = kind_of(e)
            k.pops += 1
            d: int | None = None
            w = x = False
            if kind in (NONE, ZERO):
                d = dp.alloc(dev.id, 0, m.index_of(v))
                w, x = m.writable, True
            elif kind == PRESENT and not pmd:
                pfn = payload_of(e)
                if fr.order[pfn] == 0 and int(fr.refcount[pfn]) == 1 and fr.obj[pfn] < 0:
                    d = dp.alloc(dev.id, int(fr.word[pfn]), int(fr.index[pfn]))
                    w, x = bool(e & W), bool(e & X)
                    if d is not None:
                        fr.mapcount[pfn] -= 1
                        fr.refcount[pfn] -= 1
                        tlb.remove_folio(pfn)
            if d is not None:
                proc.pt.set(v, mkentry(DEVICE, d, w, x))
                dp.refcount[d] += 1
                if deferred or any(lo <= v < hi for lo, hi in others):
                    dev.table.set(v, 0)
                else:
                    dev.table.set(v, mkentry(DEVICE, d, w))
            v += 1
    tlb.finish()


def op_evict(k: KernelState, t: Thread, op: Evict) -> Gen[OpResult]:
    """dmirror_device_evict_chunk over every page of the mirror."""
    dev = C.device(k, op.d, "mirror")
    if dev is None:
        return C.EINVAL
    found: dict[int, tuple[int, int]] = {}
    for pid in sorted(k.procs):
        proc = k.procs[pid]
        if proc.state == "dead":
            continue
        for vpns, ents, _ in proc.pt.populated(0, 1 << 36):
            kinds = ents & KIND_MASK
            pay = ents >> SHIFT
            m = (kinds == DEVICE) | (kinds == MIG_D)
            m[m] = k.dpages.owner[pay[m]] == dev.id
            for v, d in zip(vpns[m].tolist(), pay[m].tolist(), strict=True):
                found.setdefault(d, (pid, v))
    order = sorted(found, key=lambda d: found[d])
    gens = {d: int(k.dpages.gen[d]) for d in order}
    moved = 0
    for i, d in enumerate(order):
        if i:
            yield None  # Y3 between pages
        while k.dpages.live[d] and int(k.dpages.gen[d]) == gens[d]:
            res = yield from migrate_back(k, t, d)
            if res == "again":
                continue
            if res == "nomem":
                return C.ENOMEM
            if res == "moved":
                moved += 1
            break
    return Num(moved)
