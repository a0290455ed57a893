"""mmap, munmap, mremap, mprotect and madvise (SPEC §3.1).

Mirrors ``mm/mmap.c``/``mm/vma.c`` (``do_mmap`` with MAP_FIXED,
``do_vmi_munmap``, ``__split_vma``), ``mm/mremap.c`` (``move_vma``,
``move_page_tables``), ``mm/mprotect.c`` (``mprotect_fixup``,
``change_protection``) and ``mm/madvise.c`` (``madvise_dontneed_single_vma``,
``hugepage_madvise``).  The rule: split every PMD-mapped block the op cuts
(in address order) before its own invalidation; the invalidation's apply
makes the change.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from model import bugs
from model.ops import ADDRESS_PAGES, Err, Madvise, Mmap, Mprotect, Mremap, Munmap, OpResult
from model.optimized import common as C
from model.optimized.fault import split_block
from model.optimized.memory import (
    free_zapped_early,
    object_release,
    split_huge_pmd,
    tlb_gather,
    wrprotect_range,
    zap_range,
)
from model.optimized.mmu_gather import MmuGather
from model.optimized.mmu_notifier import Range, invalidate
from model.optimized.pagetable import PTRS, Arr
from model.optimized.state import KernelState, Process, SharedObject, Vma
from model.optimized.threads import Gen, Thread
from model.optimized.vma import (
    any_overlap,
    covered,
    find_vma,
    insert_vma,
    remove_range,
    split_at,
    vmas_in,
)

ALL = (0, ADDRESS_PAGES)


def cut_blocks(proc: Process, a: int, b: int,
               keep: Callable[[Vma], bool] | None = None) -> list[int]:
    """Bases of the PMD-mapped blocks [a, b) overlaps in part, in address order
    (only in VMAs ``keep`` accepts).  The list is taken once (DECISIONS D3)."""
    out = []
    for edge in (a, b):
        base = edge & ~(PTRS - 1)
        if base < edge and base not in out and isinstance(proc.pt.leaf(base), int):
            if keep is not None:
                vma = find_vma(proc, base)
                if vma is None or not keep(vma):
                    continue
            out.append(base)
    return out


def pmds_in(proc: Process, a: int, b: int) -> list[int]:
    """Bases of every PMD-mapped block overlapping [a, b), in address order."""
    return proc.pt.huge_bases(a, b)


def split_blocks(k: KernelState, t: Thread, proc: Process, bases: list[int]) -> Gen[None]:
    """S: one split invalidation per listed block, in address order; each apply
    does nothing if the block is no longer PMD-mapped."""
    for base in sorted(set(bases)):
        yield from split_block(k, t, proc, base)


def object_referenced(k: KernelState, oid: int) -> bool:
    return any(m.obj == oid for p in k.procs.values() for m in p.vmas)


def release_objects(k: KernelState, objs: set[int], tlb: MmuGather) -> None:
    for oid in sorted(objs):
        o: SharedObject = k.objects[oid]
        if o.live and not object_referenced(k, oid):
            object_release(k, o, tlb)


def unmap_apply(k: KernelState, proc: Process, a: int, b: int) -> None:
    """do_vmi_munmap's apply: zap [a, b), remove the VMA parts, free after the flush."""
    tlb = tlb_gather(k)
    zap_range(k, proc, a, b, tlb)
    objs = remove_range(proc, a, b)
    release_objects(k, objs, tlb)
    tlb.finish()


def munmap_range(k: KernelState, t: Thread, proc: Process, a: int, b: int) -> Gen[None]:
    """S; I(unmap, [a, b)) if any VMA overlaps."""
    cut = cut_blocks(proc, a, b)
    if cut:
        yield from split_blocks(k, t, proc, cut)
    if any_overlap(proc, a, b):
        if k.bugged(bugs.FREE_AT_INVALIDATE_START):
            free_zapped_early(k, proc, a, b)  # same step as the start below
        yield from invalidate(t, proc.mn, Range("unmap", a, b, None, True),
                              lambda: unmap_apply(k, proc, a, b))


def _enter_write(k: KernelState, t: Thread, pid: int,
                 args_ok: bool) -> Gen[Process | Err]:
    """The preamble of a write-locked mm op (Appendix C rules 1-2, SPEC §5.3):
    ``EINVAL`` for a bad handle or argument, ``ESRCH`` unless live; then
    ``mmap_write_lock`` and the state checked again once it is held."""
    proc = k.proc(pid)
    if proc is None or not args_ok:
        return C.EINVAL
    if proc.state != "live" or not (yield from _lock_write(k, t, proc)):
        return C.ESRCH
    return proc


def _lock_write(k: KernelState, t: Thread, proc: Process) -> Gen[bool]:
    """``mmap_write_lock``, then False (lock dropped) if P died meanwhile."""
    yield from proc.mmap_lock.write_lock(t)
    if proc.state != "live":
        proc.mmap_lock.write_unlock(t)
        return False
    return True


def op_mmap(k: KernelState, t: Thread, op: Mmap) -> Gen[OpResult]:
    proc = yield from _enter_write(k, t, op.p, C.range_ok(op.s, op.n))
    if isinstance(proc, Err):
        return proc
    a, b = op.s, op.s + op.n
    if any_overlap(proc, a, b):
        yield from munmap_range(k, t, proc, a, b)
    if op.kind == "shared":
        oid = k.next_obj
        k.next_obj += 1
        k.objects[oid] = SharedObject(oid, op.n)
        insert_vma(proc, Vma(a, b, op.prot, "shared", op.huge, oid, 0))
    else:
        insert_vma(proc, Vma(a, b, op.prot, "private", op.huge, None, a))
    proc.mmap_lock.write_unlock(t)
    return C.OK_RESULT


def op_munmap(k: KernelState, t: Thread, op: Munmap) -> Gen[OpResult]:
    proc = yield from _enter_write(k, t, op.p, C.range_ok(op.s, op.n))
    if isinstance(proc, Err):
        return proc
    yield from munmap_range(k, t, proc, op.s, op.s + op.n)
    proc.mmap_lock.write_unlock(t)
    return C.OK_RESULT


def move_entries(k: KernelState, proc: Process, old: int, new: int, n: int) -> None:
    """move_page_tables: every entry in [old, old+n) moves, unchanged, by new-old."""
    for base in proc.pt.huge_bases(old, old + n):
        split_huge_pmd(k, proc, base)
    vs: list[Arr] = []
    es: list[Arr] = []
    for vpns, ents, _ in proc.pt.populated(old, old + n):
        vs.append(vpns)
        es.append(ents)
    for base, lf, lo, hi in proc.pt.chunks(old, old + n):
        assert not isinstance(lf, int)
        lf[lo:hi] = 0
        proc.pt.prune(base)
    if vs:
        vpns = np.concatenate(vs)
        k.pops += int(vpns.size)
        proc.pt.set_many(vpns - old + new, np.concatenate(es))


def op_mremap(k: KernelState, t: Thread, op: Mremap) -> Gen[OpResult]:
    args_ok = C.range_ok(op.old, op.n) and C.range_ok(op.new, op.n)
    proc = yield from _enter_write(k, t, op.p, args_ok)
    if isinstance(proc, Err):
        return proc
    old, new, n = op.old, op.new, op.n
    src = find_vma(proc, old)
    error = (C.EFAULT if src is None else C.EINVAL if old < new + n and new < old + n
             else C.EFAULT if src.end < old + n else None)
    if error is not None:
        proc.mmap_lock.write_unlock(t)
        return error
    bases = pmds_in(proc, old, old + n) + cut_blocks(proc, new, new + n)
    yield from split_blocks(k, t, proc, bases)
    if any_overlap(proc, new, new + n):
        yield from invalidate(t, proc.mn, Range("unmap", new, new + n, None, True),
                              lambda: unmap_apply(k, proc, new, new + n))

    def move() -> None:
        split_at(proc, old)
        split_at(proc, old + n)
        piece = next((m for m in proc.vmas if m.start == old), None)
        if piece is None:
            return
        proc.vmas.remove(piece)
        piece.start, piece.end = new, new + n
        insert_vma(proc, piece)
        move_entries(k, proc, old, new, n)

    yield from invalidate(t, proc.mn, Range("unmap", old, old + n, None, True), move)
    proc.mmap_lock.write_unlock(t)
    return C.OK_RESULT


def _loses(old: str, new: str) -> bool:
    rank = {"none": 0, "r": 1, "rw": 2}
    return rank[new] < rank[old]


def op_mprotect(k: KernelState, t: Thread, op: Mprotect) -> Gen[OpResult]:
    proc = yield from _enter_write(k, t, op.p, C.range_ok(op.s, op.n))
    if isinstance(proc, Err):
        return proc
    a, b, prot = op.s, op.s + op.n, op.prot
    if not covered(proc, a, b):
        proc.mmap_lock.write_unlock(t)
        return C.ENOMEM
    yield from split_blocks(k, t, proc, cut_blocks(proc, a, b, lambda m: m.prot != prot))

    def change() -> None:
        for edge in (a, b):
            for m in proc.vmas:
                if m.start < edge < m.end and m.prot != prot:
                    split_at(proc, edge)
                    break
        for m in vmas_in(proc, a, b):
            if m.prot != prot:
                if m.prot == "rw":
                    wrprotect_range(k, proc, m.start, m.end)
                m.prot = prot

    lose = any(_loses(m.prot, prot) for m in vmas_in(proc, a, b))
    if lose:
        yield from invalidate(t, proc.mn, Range("protection_vma", a, b, None, True), change)
    else:
        change()
    proc.mmap_lock.write_unlock(t)
    return C.OK_RESULT


def op_madvise(k: KernelState, t: Thread, op: Madvise) -> Gen[OpResult]:
    proc = k.proc(op.p)
    if proc is None or not C.range_ok(op.s, op.n):
        return C.EINVAL
    if proc.state != "live":
        return C.ESRCH
    a, b = op.s, op.s + op.n
    if op.advice == "dontneed":
        yield from proc.mmap_lock.read_lock(t)
        if proc.state != "live":
            proc.mmap_lock.read_unlock(t)
            return C.ESRCH
        hole = not covered(proc, a, b)
        for m in vmas_in(proc, a, b):
            lo, hi = max(m.start, a), min(m.end, b)
            yield from split_blocks(k, t, proc, cut_blocks(proc, lo, hi))
            if k.bugged(bugs.FREE_AT_INVALIDATE_START):
                free_zapped_early(k, proc, lo, hi)  # same step as the start below
            yield from invalidate(t, proc.mn, Range("clear", lo, hi, None, True),
                                  partial(_zap_apply, k, proc, lo, hi),
                                  not k.bugged(bugs.ZAP_WITHOUT_INVALIDATE))  # B10 if mutated
        proc.mmap_lock.read_unlock(t)
        return C.ENOMEM if hole else C.OK_RESULT
    huge = op.advice == "hugepage"
    if not (yield from _lock_write(k, t, proc)):
        return C.ESRCH
    hole = not covered(proc, a, b)
    yield from split_blocks(k, t, proc, cut_blocks(proc, a, b, lambda m: m.huge != huge))
    for edge in (a, b):
        for m in proc.vmas:
            if m.start < edge < m.end and m.huge != huge:
                split_at(proc, edge)
                break
    for m in vmas_in(proc, a, b):
        m.huge = huge
    proc.mmap_lock.write_unlock(t)
    return C.ENOMEM if hole else C.OK_RESULT


def _zap_apply(k: KernelState, proc: Process, a: int, b: int) -> None:
    tlb = tlb_gather(k)
    zap_range(k, proc, a, b, tlb)
    tlb.finish()
