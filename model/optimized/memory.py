"""Mapping and unmapping pages with the ledger of SPEC §1.

Mirrors ``mm/memory.c``: ``zap_pte_range``/``zap_huge_pmd`` (drop what each
entry holds, hand folios to the mmu_gather), ``set_pte_at`` with
``folio_add_new_anon_rmap``/``folio_ref_inc``, ``change_pte_range`` (write
protect), ``__split_huge_pmd_locked`` (PMD -> 512 PTEs, refcount +511),
``folio_put``.  Range operations work a leaf slice at a time with numpy.

The rule enforced here: every entry change keeps the ledger
``refcount(F) = PTEs + PMDs + pins + object + migrators``,
``mapcount(F,i) = PTEs of page i + PMDs``, ``refcount(d)`` = device entries
(+ migrators), ``count(S)`` = swap entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from model.optimized.folios import spans
from model.optimized.mmu_gather import MmuGather
from model.optimized.pagetable import (
    DEVICE,
    KIND_MASK,
    MIG_D,
    MIG_F,
    PRESENT,
    PTRS,
    SHIFT,
    SWAP,
    Arr,
    W,
    X,
    kind_of,
    mkentry,
    payload_of,
)
from model.optimized.state import KernelState, Process, SharedObject


def tlb_gather(k: KernelState) -> MmuGather:
    return MmuGather(k.frames, k.swap, k.dpages)


def hold_entry(k: KernelState, e: int) -> None:
    """Take the references one new entry ``e`` holds (PTE level)."""
    kind = e & KIND_MASK
    p = e >> SHIFT
    if kind == PRESENT:
        fr = k.frames
        fr.mapcount[p] += 1
        fr.refcount[fr.head(p)] += 1
    elif kind == SWAP:
        k.swap.count[p] += 1
    elif kind == DEVICE:
        k.dpages.refcount[p] += 1


def drop_entry(k: KernelState, e: int, tlb: MmuGather | None) -> None:
    """Drop the references one PTE-level entry held; free now if no gather."""
    kind = e & KIND_MASK
    p = e >> SHIFT
    if kind == PRESENT:
        fr = k.frames
        h = fr.head(p)
        fr.mapcount[p] -= 1
        fr.refcount[h] -= 1
        if tlb is not None:
            tlb.remove_folio(h)
        elif fr.refcount[h] == 0:
            fr.free(h)
    elif kind == SWAP:
        k.swap.count[p] -= 1
        if tlb is not None:
            tlb.remove_slots(np.array([p], np.int64))
        elif k.swap.count[p] == 0:
            k.swap.free(p)
    elif kind == DEVICE:
        k.dpages.refcount[p] -= 1
        if tlb is not None:
            tlb.remove_devs(np.array([p], np.int64))
        elif k.dpages.refcount[p] == 0:
            k.dpages.free(p)


def set_pte(k: KernelState, proc: Process, v: int, e: int, tlb: MmuGather | None) -> None:
    """Replace the PTE at v by e, moving references."""
    old = proc.pt.entry(v)
    hold_entry(k, e)
    proc.pt.set(v, e)
    drop_entry(k, old, tlb)
    k.pops += 1


def map_huge(k: KernelState, proc: Process, base: int, head: int, w: bool, x: bool) -> None:
    """do_huge_pmd_anonymous_page: one PMD mapping of an order-9 folio."""
    proc.pt.set_leaf(base, mkentry(PRESENT, head, w, x))
    fr = k.frames
    fr.refcount[head] += 1
    fr.mapcount[head: head + PTRS] += 1
    k.pops += PTRS


def split_huge_pmd(k: KernelState, proc: Process, base: int) -> bool:
    """__split_huge_pmd: replace a huge leaf by 512 PTEs (refcount +511)."""
    lf = proc.pt.leaf(base)
    if not isinstance(lf, int):
        return False
    table = lf + (np.arange(PTRS, dtype=np.int64) << SHIFT)
    proc.pt.set_leaf(base, table)
    k.frames.refcount[payload_of(lf)] += PTRS - 1
    k.pops += PTRS
    return True


def zap_range(k: KernelState, proc: Process, a: int, b: int, tlb: MmuGather) -> None:
    """zap_page_range: every entry in [a, b) becomes none."""
    fr = k.frames
    full: list[tuple[int, Arr]] = []
    for base, lf in proc.pt.blocks(a, b):
        if a <= base and base + PTRS <= b:  # the whole leaf
            if not isinstance(lf, int):
                full.append((base, lf))  # whole PTE tables: zapped together below
                continue
            h = payload_of(lf)
            fr.refcount[h] -= 1
            fr.mapcount[h: h + PTRS] -= 1
            tlb.remove_folio(h)
            proc.pt.clear_leaf(base)
            k.pops += PTRS
            continue
        lo, hi = max(a, base) - base, min(b, base + PTRS) - base
        if isinstance(lf, int):
            split_huge_pmd(k, proc, base)
            new = proc.pt.leaf(base)
            assert new is not None and not isinstance(new, int)
            lf = new
        sl = lf[lo:hi]
        nz = np.flatnonzero(sl)
        if nz.size == 0:
            continue
        e = sl[nz]
        drop_entries(k, e, tlb)
        sl[nz] = 0
        k.pops += int(nz.size)
        proc.pt.prune(base)
    if full:
        _zap_tables(k, proc, full, tlb)


def _zap_tables(k: KernelState, proc: Process, full: list[tuple[int, Arr]],
                tlb: MmuGather) -> None:
    """zap_pte_range over whole PTE tables at once (free_pte_range: each freed).
    A table that maps one order-9 folio whole is dropped as one batch
    (zap_present_ptes after folio_pte_batch); the other entries one by one."""
    tables = [lf for _, lf in full]
    batch, whole = folio_pte_batch(k, tables)
    if whole:
        whole.sort()  # distinct: the gather needs no sort
        runs = spans(whole)
        if runs is not None:  # a few runs of adjacent folios: slices
            k.frames.remove_rmap_spans(runs)
            tlb.remove_folio_spans(runs)
        else:
            heads = np.array(whole, np.int64)
            k.frames.remove_rmap_ptes(heads)
            tlb.remove_folios(heads, whole=True)
        k.pops += PTRS * len(whole)
    rest = [lf for lf, batched in zip(tables, batch, strict=True) if not batched]
    if rest:
        ents = np.concatenate(rest)
        e = ents[ents != 0]
        if e.size:
            drop_entries(k, e, tlb)
            k.pops += int(e.size)
    proc.pt.clear_leaves([base for base, _ in full])


RAMP = np.arange(PTRS, dtype=np.int64) << SHIFT
HEAD_BITS = KIND_MASK | ((PTRS - 1) << SHIFT)
"""An entry's kind and its frame's offset in a 512-aligned block."""


def folio_pte_batch(k: KernelState, tables: list[Arr]) -> tuple[list[bool], list[int]]:
    """folio_pte_batch over whole tables: for each table, whether it maps the
    512 pages of one order-9 folio in order, with one set of bits, and no
    other table maps that folio; and the heads of those folios, in table order.

    Less the ramp, a batched table holds one value 512 times, so its row's
    min and max agree; the per-table tests run on the row minima in Python
    (each numpy call has a fixed cost, so a range of a few tables pays for
    the calls, not for the tables)."""
    rows = np.concatenate(tables).reshape(len(tables), PTRS)
    rows -= RAMP
    lows = np.minimum.reduce(rows, axis=1).tolist()
    highs = np.maximum.reduce(rows, axis=1).tolist()
    order = k.frames.order
    ok: list[bool] = []
    heads: list[int] = []
    for lo, hi in zip(lows, highs, strict=True):
        # lo == hi: lo is the table's first entry, so a present lo names a frame
        whole = lo == hi and lo & HEAD_BITS == PRESENT and order.item(lo >> SHIFT) == 9
        ok.append(whole)
        if whole:
            heads.append(lo >> SHIFT)
    if len(set(heads)) != len(heads):
        return [False] * len(tables), []  # a folio in two tables: entry by entry
    return ok, heads


def free_zapped_early(k: KernelState, proc: Process, a: int, b: int) -> None:
    """Mutant ``free_at_invalidate_start`` only: at the start of the invalidation
    of [a, b), free (to the LIFO free list) every folio whose only references
    are the present entries of [a, b), while those entries (and the device's)
    still name it; the apply's zap then drops counts on a freed, maybe reused,
    frame."""
    fr = k.frames
    drops: dict[int, int] = {}
    for _, ents, pmd in proc.pt.populated(a, b):
        p = (ents >> SHIFT)[(ents & KIND_MASK) == PRESENT]
        if p.size == 0:
            continue
        heads = [fr.head(int(p[0]))] if pmd else fr.heads(p).tolist()
        for h in heads:
            drops[h] = drops.get(h, 0) + 1
    for h, n in drops.items():
        if fr.live[h] and int(fr.refcount[h]) == n:
            fr.free(h)


def drop_entries(k: KernelState, e: Arr, tlb: MmuGather) -> None:
    """Vectorized drop_entry for PTE-level entries."""
    kinds = e & KIND_MASK
    pay = e >> SHIFT
    fr = k.frames
    p = pay[kinds == PRESENT]
    if p.size:
        sub_counts(fr.mapcount, p)
        h = fr.heads(p)
        sub_counts(fr.refcount, h)
        tlb.remove_folios(h)
    s = pay[kinds == SWAP]
    if s.size:
        sub_counts(k.swap.count, s)
        tlb.remove_slots(s)
    d = pay[kinds == DEVICE]
    if d.size:
        sub_counts(k.dpages.refcount, d)
        tlb.remove_devs(d)


def sub_counts(counts: npt.NDArray[Any], idx: Arr) -> None:
    """np.subtract.at(counts, idx, 1); by bincount when idx is long."""
    if idx.size < 256:
        np.subtract.at(counts, idx, 1)
    else:
        c = np.bincount(idx)
        np.subtract(counts[: c.size], c, out=counts[: c.size], casting="unsafe")


def hold_entries(k: KernelState, e: Arr) -> None:
    """Vectorized hold_entry (used by fork's copy)."""
    kinds = e & KIND_MASK
    pay = e >> SHIFT
    fr = k.frames
    p = pay[kinds == PRESENT]
    if p.size:
        np.add.at(fr.mapcount, p, 1)
        np.add.at(fr.refcount, fr.heads(p), 1)
    s = pay[kinds == SWAP]
    if s.size:
        np.add.at(k.swap.count, s, 1)
    d = pay[kinds == DEVICE]
    if d.size:
        np.add.at(k.dpages.refcount, d, 1)


def wrprotect_range(k: KernelState, proc: Process, a: int, b: int) -> None:
    """change_protection without write: present, device and migration entries lose w."""
    for base, lf, lo, hi in proc.pt.chunks(a, b):
        if isinstance(lf, int):
            if lo == 0 and hi == PTRS:
                proc.pt.set_leaf(base, lf & ~W)
                k.pops += PTRS
                continue
            split_huge_pmd(k, proc, base)
            new = proc.pt.leaf(base)
            assert new is not None and not isinstance(new, int)
            lf = new
        sl = lf[lo:hi]
        kinds = sl & KIND_MASK
        m = (kinds == PRESENT) | (kinds == DEVICE) | (kinds == MIG_F) | (kinds == MIG_D)
        sl[m] &= ~W
        k.pops += int(np.count_nonzero(sl))


def put_folio(k: KernelState, head: int, tlb: MmuGather | None = None) -> None:
    """folio_put: drop one reference; free at 0 (now, or at the gather's finish)."""
    fr = k.frames
    fr.refcount[head] -= 1
    if tlb is not None:
        tlb.remove_folio(head)
    elif fr.refcount[head] == 0 and fr.live[head]:
        fr.free(head)


def put_dpage(k: KernelState, d: int) -> None:
    k.dpages.refcount[d] -= 1
    if k.dpages.refcount[d] == 0 and k.dpages.live[d]:
        k.dpages.free(d)


def object_page(k: KernelState, o: SharedObject, idx: int) -> int | None:
    """shmem_get_folio: the object's page at idx, allocated zeroed if absent."""
    cur = o.pages.entry(idx)
    if cur:
        return cur - 1
    pfn = k.frames.alloc(0, idx)
    if pfn is None:
        return None
    k.frames.obj[pfn] = o.id
    k.frames.refcount[pfn] = 1  # the object's reference
    o.pages.set(idx, pfn + 1)
    return pfn


def object_release(k: KernelState, o: SharedObject, tlb: MmuGather) -> None:
    """The object dies: its pages lose its reference."""
    o.live = False
    fr = k.frames
    for vpns, pfns1, _ in o.pages.populated(0, o.size):
        del vpns
        pfns = pfns1 - 1
        fr.obj[pfns] = -1
        np.subtract.at(fr.refcount, pfns, 1)
        tlb.remove_folios(pfns)
    o.pages = type(o.pages)()


def is_exclusive_w(e: int) -> bool:
    return bool(e & W) and bool(e & X)


def present_pfn(e: int) -> int | None:
    return payload_of(e) if kind_of(e) == PRESENT else None
