"""Device-private migration, the core's steps (SPEC §6.1, §6.5).

Mirrors ``mm/migrate_device.c``: the migrate-back of one device page
(``migrate_vma_setup`` -> ``migrate_vma_collect`` / ``migrate_vma_unmap``,
``migrate_vma_pages``, ``migrate_vma_finalize`` as a driver's
``migrate_to_ram`` runs them), the folio split and the count of a device's
pages that ``migrate_to_dev`` needs, and the scan of a device's pages
``migrate_device_range`` evicts.  The drivers owning device-private pages
(``drivers/``) call these; the CPU fault reaches them only through the
page's ``pgmap->ops->migrate_to_ram``.

The rule of migrate-back: hold the device page (refcount +1), turn every
``device(d)`` entry into ``migration(d)`` one invalidation at a time (first
process in order, lowest vpn), then in the step of the last end either copy
d to a new folio and map it where the migration entries are, or restore
them (no frame: ENOMEM), and let the owner drop its table entries naming d
(the driver's ``moved`` hook).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np

from model.ops import Err
from model.optimized.common import EINVAL
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
from model.optimized.rmap import first_mapping, rmap_walk
from model.optimized.state import Device, KernelState, Process
from model.optimized.threads import Gen, Thread, wait
from model.optimized.vma import covered, vmas_in

T = TypeVar("T")

Moved = Callable[[KernelState, Device, int], None]
"""The owner driver's part of a migrate-back that moved device page d: its
table drops every entry naming d (called before d is released)."""


def migrate_back(k: KernelState, t: Thread, d: int, moved: Moved | None = None) -> Gen[str]:
    """Returns "again" (waited on another migrator), "none", "moved" or "nomem"."""
    dp = k.dpages
    if dp.holders.get(d, t.name) != t.name:
        # bound to this page: once it is freed, a page allocated at the same
        # index (a later generation) is another page, as in the reference
        gen = int(dp.gen[d])
        yield from wait(t, lambda: d not in dp.holders or int(dp.gen[d]) != gen,
                        "device page migrator")
        return "again"
    dp.holders[d] = t.name
    dp.refcount[d] += 1
    owner = int(dp.owner[d])
    idx = int(dp.index[d])
    while True:
        fm = first_mapping(k, idx, 1, DEVICE, d, d + 1)
        if fm is None:
            break
        proc, v, _ = fm
        yield from invalidate(t, proc.mn, Range("migrate", v, v + 1, owner, True),
                              partial(_to_migration, k, proc, v, d))
    migs = list(rmap_walk(k, idx, 1, MIG_D, d, d + 1))
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
    dev = k.devices.get(owner)
    if dev is not None and moved is not None:
        moved(k, dev, d)
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


def migrate_vma(k: KernelState, t: Thread, proc: Process, dev: Device, a: int, b: int,
                apply: Callable[[Range], T]) -> Gen[T | Err | None]:
    """``migrate_vma_setup`` .. ``migrate_vma_finalize`` of [a, b) of ``proc``
    (its mmap_lock held for reading) to ``dev``'s memory: EINVAL unless VMAs
    allowing r cover it; split every PMD mapping; then I(migrate, owner =
    dev) whose apply is ``apply(range)`` (``to_device`` and the driver's
    mapping).  What the apply gave, or None if a callback failed."""
    if not covered(proc, a, b) or any(not m.readable for m in vmas_in(proc, a, b)):
        return EINVAL
    for base in proc.pt.huge_bases(a, b):
        yield from split_block(k, t, proc, base)
    rng = Range("migrate", a, b, dev.id, True)
    got: list[T] = []
    ok = yield from invalidate(t, proc.mn, rng, lambda: got.append(apply(rng)))
    return got[0] if ok and got else None


def to_device(k: KernelState, proc: Process, dev: Device, a: int, b: int,
              holder: str | None = None) -> list[tuple[int, int, bool]]:
    """``migrate_vma_pages`` + ``migrate_vma_finalize`` in the apply of
    I(migrate, owner = dev, [a, b)): split the THPs no one else holds, then
    move each private page that is none, zero, or an order-0 page with
    refcount 1, while ``dev`` has a free device frame.  The pages moved, as
    (v, device page, w), in order; with ``holder``, each is held by that
    thread from its move until ``migrate_vma_finalize``."""
    split_folios(k, proc, a, b)
    fr, dp = k.frames, k.dpages
    moved: list[tuple[int, int, bool]] = []
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
                moved.append((v, d, w))
                if holder is not None:
                    dp.holders[d] = holder
                    dp.refcount[d] += 1
            v += 1
    tlb.finish()
    return moved


def count_owned(k: KernelState, proc: Process, dev: Device, a: int, b: int) -> int:
    """How many entries of [a, b) are device entries of ``dev``'s pages."""
    n = 0
    for _, ents, _ in proc.pt.populated(a, b):
        kinds = ents & KIND_MASK
        pay = ents >> SHIFT
        m = kinds == DEVICE
        n += int(np.count_nonzero(k.dpages.owner[pay[m]] == dev.id))
    return n


def split_folios(k: KernelState, proc: Process, a: int, b: int) -> None:
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
            if pmd_mapped(k, h) or int(fr.refcount[h]) != nmaps:
                continue
            fr.split(h)
            for i in range(PTRS):
                if fr.refcount[h + i] == 0:
                    fr.free(h + i)


def pmd_mapped(k: KernelState, head: int) -> bool:
    """Whether some huge leaf maps the order-9 folio at ``head``."""
    for _, _, _, pmd in rmap_walk(k, int(k.frames.index[head]), PTRS, PRESENT,
                                  head, head + PTRS):
        if pmd:
            return True
    return False


def owned_pages(k: KernelState, owner: int) -> list[int]:
    """``owner``'s device pages some CPU entry names (device or migration
    entry), ordered by their first mapping (pid, vpn): what
    ``migrate_device_range`` over all of a device's memory visits."""
    found: dict[int, tuple[int, int]] = {}
    for pid in sorted(k.procs):
        proc = k.procs[pid]
        if proc.state == "dead":
            continue
        for vpns, ents, _ in proc.pt.populated(0, 1 << 36):
            kinds = ents & KIND_MASK
            pay = ents >> SHIFT
            m = (kinds == DEVICE) | (kinds == MIG_D)
            m[m] = k.dpages.owner[pay[m]] == owner
            for v, d in zip(vpns[m].tolist(), pay[m].tolist(), strict=True):
                found.setdefault(d, (pid, v))
    return sorted(found, key=lambda d: found[d])
