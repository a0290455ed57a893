"""Kernel operations: migrate, reclaim, oomreap (SPEC §7).

Mirrors ``mm/migrate.c`` (``migrate_pages`` -> ``migrate_folio_unmap`` with
``try_to_migrate``, ``migrate_folio_move``/``remove_migration_ptes``),
``mm/vmscan.c`` (``shrink_folio_list`` -> ``try_to_unmap`` +
``add_to_swap``) and ``mm/oom_kill.c`` (``__oom_reap_task_mm``: a
non-blockable ``I(unmap)`` per private VMA).

The rule of a migration: hold the folio, turn every present mapping into a
migration entry (splitting PMD mappings first, one run of vpns per
invalidation, first process in order), then in the step of the last end
move the folio (or swap it out) or, if it is pinned or no frames remain,
restore every migration entry.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from model.ops import ADDRESS_PAGES, Migrate, Num, Oomreap, OpResult, Reclaim
from model.optimized import common as C
from model.optimized.fault import split_block
from model.optimized.memory import put_folio, tlb_gather, zap_range
from model.optimized.mmu_notifier import Range, invalidate
from model.optimized.pagetable import (
    KIND_MASK,
    MIG_F,
    PRESENT,
    PTRS,
    SHIFT,
    SWAP,
    W,
    X,
)
from model.optimized.rmap import first_mapping, rmap_walk, vma_ranges
from model.optimized.state import KernelState, Process
from model.optimized.threads import Gen, Thread


def _folios_in(k: KernelState, proc: Process, a: int, b: int) -> list[tuple[int, int]]:
    """(head, generation) of the non-object folios P maps in [a, b), by lowest vpn."""
    fr = k.frames
    out: list[tuple[int, int]] = []
    seen: set[int] = set()
    for _, ents, _ in proc.pt.populated(a, b):
        kinds = ents & KIND_MASK
        pfns = (ents >> SHIFT)[kinds == PRESENT]
        if pfns.size == 0:
            continue
        heads = fr.heads(pfns)
        heads = heads[fr.obj[heads] < 0]
        for h in dict.fromkeys(heads.tolist()):
            if h not in seen:
                seen.add(h)
                out.append((h, int(fr.gen[h])))
        k.pops += int(pfns.size)
    return out


def _mapped_in(k: KernelState, proc: Process, head: int, a: int, b: int) -> bool:
    fr = k.frames
    n = fr.nr_pages(head)
    for lo, hi in vma_ranges(k, proc, int(fr.index[head]), n):
        lo, hi = max(lo, a), min(hi, b)
        for _, ents, _ in proc.pt.populated(lo, hi):
            pay = ents >> SHIFT
            if ((ents & KIND_MASK == PRESENT) & (pay >= head) & (pay < head + n)).any():
                return True
    return False


def _run_end(proc: Process, v: int, head: int, n: int) -> int:
    """End of the maximal run of consecutive vpns from v mapping the folio."""
    ents, _ = proc.pt.gather(v, v + n)
    pay = ents >> SHIFT
    m = ((ents & KIND_MASK) == PRESENT) & (pay >= head) & (pay < head + n)
    bad = np.flatnonzero(~m)
    return v + (int(bad[0]) if bad.size else n)


def _to_migration(k: KernelState, proc: Process, a: int, b: int, head: int, n: int) -> None:
    """try_to_migrate_one over a run: present PTEs of the folio -> migration entries."""
    fr = k.frames
    ents, pmd = proc.pt.gather(a, b)
    pay = ents >> SHIFT
    m = ((ents & KIND_MASK) == PRESENT) & (pay >= head) & (pay < head + n) & ~pmd
    if not m.any():
        return
    idx = np.flatnonzero(m)
    proc.pt.set_many(a + idx.astype(np.int64), (ents[idx] & ~KIND_MASK) | MIG_F)
    np.subtract.at(fr.mapcount, pay[idx], 1)
    fr.refcount[head] -= int(idx.size)
    k.pops += int(idx.size)


def migrate_folio(k: KernelState, t: Thread, head: int, reclaim: bool) -> Gen[int]:
    """Unmap, then move / swap out / restore one held folio; pages moved."""
    fr = k.frames
    n = fr.nr_pages(head)
    idx = int(fr.index[head])
    fr.holders[head] = t.name
    fr.refcount[head] += 1
    while True:
        fm = first_mapping(k, idx, n, PRESENT, head, head + n)
        if fm is None:
            break
        proc, v, pmd = fm
        if pmd:
            yield from split_block(k, t, proc, v & ~(PTRS - 1))
            continue
        end = _run_end(proc, v, head, n)
        yield from invalidate(t, proc.mn, Range("clear", v, end, None, True),
                              partial(_to_migration, k, proc, v, end, head, n))
    migs = list(rmap_walk(k, idx, n, MIG_F, head, head + n))
    moved = 0

    def restore(target: int) -> None:
        """remove_migration_ptes: migration entries -> present(target page)."""
        for proc, vpns, ents, _ in migs:
            pfns = target + (ents >> SHIFT) - head
            proc.pt.set_many(vpns, (ents & (W | X)) | PRESENT | (pfns << SHIFT))
            np.add.at(fr.mapcount, pfns, 1)
            fr.refcount[target] += int(vpns.size)
            k.pops += int(vpns.size)

    if not migs:
        pass
    elif int(fr.refcount[head]) > 1:
        restore(head)
    elif reclaim:
        slots: dict[int, int] = {}
        for proc, vpns, ents, _ in migs:
            pfns = ents >> SHIFT
            for pfn in pfns.tolist():  # one slot per page named, in walk order
                if pfn not in slots:
                    slots[pfn] = k.swap.alloc(int(fr.word[pfn]))
            sl = np.array([slots[p] for p in pfns.tolist()], np.int64)
            proc.pt.set_many(vpns, SWAP | (sl << SHIFT))
            np.add.at(k.swap.count, sl, 1)
            k.pops += int(vpns.size)
        moved = n
    else:
        g = fr.alloc(int(fr.order[head]), idx)
        if g is None:
            restore(head)
        else:
            fr.word[g: g + n] = fr.word[head: head + n]
            restore(g)
            moved = n
    fr.holders.pop(head, None)
    put_folio(k, head)
    return moved


def op_migrate(k: KernelState, t: Thread, op: Migrate | Reclaim) -> Gen[OpResult]:
    """migrate P s n / reclaim P s n."""
    proc = k.proc(op.p)
    if proc is None or not C.range_ok(op.s, op.n):
        return C.EINVAL
    if proc.state == "dead":
        return C.ESRCH
    a, b = op.s, op.s + op.n
    reclaim = isinstance(op, Reclaim)
    fr = k.frames
    total = 0
    for i, (head, gen) in enumerate(_folios_in(k, proc, a, b)):
        if i:
            yield None  # Y3 between folios
        if not fr.is_live(head, gen) or head in fr.holders or not _mapped_in(k, proc, head, a, b):
            continue
        total += yield from migrate_folio(k, t, head, reclaim)
    return Num(total)


def op_oomreap(k: KernelState, t: Thread, op: Oomreap) -> Gen[OpResult]:
    """__oom_reap_task_mm."""
    proc = k.proc(op.p)
    if proc is None:
        return C.EINVAL
    if proc.state != "live":
        return C.ESRCH
    yield from proc.mmap_lock.read_lock(t)
    if proc.state != "live":
        proc.mmap_lock.read_unlock(t)
        return C.ESRCH
    for m in list(proc.vmas):
        if m.kind != "private":
            continue

        def reap(a: int = m.start, b: int = m.end) -> None:
            tlb = tlb_gather(k)
            zap_range(k, proc, a, b, tlb)
            tlb.finish()

        yield from invalidate(t, proc.mn, Range("unmap", m.start, m.end, None, False), reap)
    proc.state = "killed"
    proc.mmap_lock.read_unlock(t)
    return C.OK_RESULT


__all__ = ["op_migrate", "op_oomreap", "ADDRESS_PAGES"]
