"""fork (SPEC §3.3).

Mirrors ``kernel/fork.c`` ``dup_mmap`` and ``mm/memory.c``
``copy_page_range`` -> ``copy_pte_range``/``copy_huge_pmd``, with
``folio_try_dup_anon_rmap`` deciding between sharing a page read-only and
copying it eagerly (``copy_present_page``) when the folio may be DMA-pinned.
The rule: per private VMA, split the PMD mappings of pinned folios, then one
``I(protection_page, VMA)`` whose apply write-protects and shares every
unpinned page, copies every pinned one into the child, and on ENOMEM stops,
zaps the child and kills it.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from model import bugs
from model.ops import Fork, HandleResult, OpResult
from model.optimized import common as C
from model.optimized.memory import hold_entries, split_huge_pmd, tlb_gather, zap_range
from model.optimized.mmap import release_objects, split_blocks
from model.optimized.mmu_gather import MmuGather
from model.optimized.mmu_notifier import Range, invalidate
from model.optimized.pagetable import (
    DEVICE,
    KIND_MASK,
    MIG_D,
    MIG_F,
    PRESENT,
    PTRS,
    SHIFT,
    W,
    X,
    mkentry,
    payload_of,
)
from model.optimized.state import KernelState, Process, Vma
from model.optimized.threads import Gen, Thread
from model.optimized.vma import changed


def op_fork(k: KernelState, t: Thread, op: Fork) -> Gen[OpResult]:
    proc = k.proc(op.p)
    if proc is None or op.child < 1 or op.child in k.procs:
        return C.EINVAL
    if proc.state != "live":
        return C.ESRCH
    yield from proc.mmap_lock.write_lock(t)
    if proc.state != "live":
        proc.mmap_lock.write_unlock(t)
        return C.ESRCH
    child = k.new_process(op.child, handle_ok=False)
    child.vmas = [m.piece(m.start, m.end) for m in proc.vmas]
    k.procs[op.child] = child
    proc.forked = child.forked = True
    for m in list(proc.vmas):
        if m.kind != "private" or m not in proc.vmas:
            continue
        fr = k.frames
        bases = [b for b, lf in proc.pt.blocks(m.start, m.end)
                 if isinstance(lf, int) and fr.pincount[payload_of(lf)] > 0]
        yield from split_blocks(k, t, proc, bases)
        nomem = [False]
        yield from invalidate(t, proc.mn, Range("protection_page", m.start, m.end, None, True),
                              partial(_copy_apply, k, proc, child, m, nomem))
        if nomem[0]:
            proc.mmap_lock.write_unlock(t)
            return C.ENOMEM
    proc.mmap_lock.write_unlock(t)
    child.handle_ok = True
    return HandleResult("P", op.child)


def kill_child(k: KernelState, child: Process, tlb: MmuGather) -> None:
    """The failed child: its entries are zapped and it is dead (its VMAs go)."""
    zap_range(k, child, 0, 1 << 36, tlb)
    objs = {m.obj for m in child.vmas if m.obj is not None}
    child.vmas = []
    changed(child)
    child.state = "dead"
    child.mn.dead = True
    release_objects(k, objs, tlb)


def _copy_apply(k: KernelState, proc: Process, child: Process, m: Vma,
                nomem: list[bool]) -> None:
    """copy_page_range for one VMA."""
    fr = k.frames
    tlb = tlb_gather(k)
    share = PRESENT, DEVICE, MIG_F, MIG_D
    for base, lf, lo, hi in proc.pt.chunks(m.start, m.end):
        if isinstance(lf, int):
            head = payload_of(lf)
            if (fr.pincount[head] == 0 or k.bugged(bugs.FORK_SHARE_PINNED)) \
                    and lo == 0 and hi == PTRS:
                new = lf & ~(W | X)
                proc.pt.set_leaf(base, new)
                child.pt.set_leaf(base, new)
                fr.refcount[head] += 1
                fr.mapcount[head: head + PTRS] += 1
                k.pops += PTRS
                continue
            split_huge_pmd(k, proc, base)
            lf2 = proc.pt.leaf(base)
            assert lf2 is not None and not isinstance(lf2, int)
            lf = lf2
        sl = lf[lo:hi]
        nz = np.flatnonzero(sl)
        if nz.size == 0:
            continue
        e = sl[nz]
        kinds = e & KIND_MASK
        pay = e >> SHIFT
        present = kinds == PRESENT
        pinned = np.zeros(e.size, bool)
        if present.any() and not k.bugged(bugs.FORK_SHARE_PINNED):
            pinned[present] = fr.pincount[fr.heads(pay[present])] > 0
        cut = e.size
        copies: list[tuple[int, int]] = []  # (position, new pfn)
        for pos in np.flatnonzero(pinned).tolist():
            g = fr.alloc(0, int(fr.index[pay[pos]]))
            if g is None:
                cut = pos
                nomem[0] = True
                break
            fr.word[g] = fr.word[pay[pos]]
            copies.append((pos, g))
        e = e[:cut]
        kinds, pinned = kinds[:cut], pinned[:cut]
        shared_m = np.isin(kinds, share) & ~pinned
        ce = np.where(shared_m, e & ~(W | X), e)
        sl[nz[:cut]] = ce  # parent: shared entries read-only, pinned unchanged
        sl[nz[:cut][pinned]] = e[pinned]
        for pos, g in copies:
            ce[pos] = mkentry(PRESENT, g, m.writable, True)
        hold_entries(k, ce)
        child.pt.set_many(base + lo + nz[:cut].astype(np.int64), ce)
        k.pops += int(cut)
        if nomem[0]:
            break
    if nomem[0]:
        kill_child(k, child, tlb)
    tlb.finish()
