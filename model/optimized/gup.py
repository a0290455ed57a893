"""Long-term pins, SPEC §6.4: the core service of the drivers that pin.

Mirrors ``mm/gup.c``: ``pin_user_pages`` -> ``__get_user_pages`` with
``faultin_page`` and FOLL_PIN (``gup_must_unshare`` for read-only pins of
non-exclusive anonymous pages, ``try_grab_folio``: pincount and refcount
+1), ``unpin_user_pages``; and the DMA of a region's pinned pages.  A
region's pins are numpy arrays of frames (and their generations, so that a
pin that no longer names its page is caught).  The drivers in ``drivers/``
call these; nothing here knows which driver pinned.
"""

from __future__ import annotations

import numpy as np

from model.ops import Ok, OpResult, Values
from model.optimized import common as C
from model.optimized.fault import (
    _replace_with_copy,
    handle_mm_fault,
    settle,
    split_block,
)
from model.optimized.pagetable import (
    NONE,
    PRESENT,
    PTRS,
    SWAP,
    ZERO,
    W,
    X,
    kind_of,
    mkentry,
    payload_of,
)
from model.optimized.state import KernelState, Process, Region
from model.optimized.threads import Gen, Thread
from model.optimized.vma import find_vma


def pin_page(k: KernelState, t: Thread, proc: Process, v: int,
             mode: str) -> Gen[int | OpResult]:
    """Pin the page at v (caller holds mmap_lock for reading): its pfn, or an errno."""
    rw = mode == "rw"
    vma = find_vma(proc, v)
    if vma is None or not vma.readable or (rw and not vma.writable):
        return C.EFAULT
    fr = k.frames
    while True:
        e, pmd = proc.pt.get(v)
        kind = kind_of(e)
        k.pops += 1
        again: bool | OpResult = yield from settle(k, t, proc, v, e)
        if again is True:
            continue
        if not isinstance(again, bool):
            return again
        if rw:
            if kind == PRESENT and e & W:
                break
            err = yield from handle_mm_fault(k, t, proc, vma, v, True)
            if err is not None:
                return err
            continue
        if vma.kind == "shared":
            if kind == PRESENT:
                break
            err = yield from handle_mm_fault(k, t, proc, vma, v, False)
            if err is not None:
                return err
            continue
        if kind == NONE:
            g = fr.alloc(0, vma.index_of(v))
            if g is None:
                return C.ENOMEM
            proc.pt.set(v, mkentry(PRESENT, g, False, True))
            fr.mapcount[g] += 1
            fr.refcount[g] += 1
            continue
        if kind == ZERO:
            nomem = yield from _replace_with_copy(k, t, proc, vma, v, e, zero=True,
                                                  writable=False)
            if nomem:
                return C.ENOMEM
            continue
        if kind == SWAP:
            err = yield from handle_mm_fault(k, t, proc, vma, v, False)
            if err is not None:
                return err
            continue
        # present in a private VMA
        if e & X:
            break
        if pmd:
            yield from split_block(k, t, proc, v & ~(PTRS - 1))
            continue
        pfn = payload_of(e)
        if fr.order[pfn] == 0 and int(fr.refcount[pfn]) == 1:
            proc.pt.set(v, e | X)
            continue
        nomem = yield from _replace_with_copy(k, t, proc, vma, v, e, zero=False, writable=False)
        if nomem:
            return C.ENOMEM
        continue
    pfn = payload_of(e)
    head = fr.head(pfn)
    fr.pincount[head] += 1
    fr.refcount[head] += 1
    return pfn


def unpin_pages(k: KernelState, pfns: np.ndarray, gens: np.ndarray | None) -> None:
    """unpin_user_pages: pincount and refcount -1; free at refcount 0."""
    fr = k.frames
    for i, pfn in enumerate(pfns.tolist()):
        head = fr.head(pfn)
        if gens is not None and (not fr.live[pfn] or int(fr.gen[pfn]) != int(gens[i])):
            k.violation("pins_are_stable", f"a pin on frame {pfn} no longer names its page")
            continue
        fr.pincount[head] -= 1
        fr.refcount[head] -= 1
        k.pops += 1
        if fr.refcount[head] == 0:
            fr.free(head)


def pin_range(k: KernelState, t: Thread, proc: Process, a: int, n: int,
              mode: str) -> Gen[tuple[np.ndarray, np.ndarray] | OpResult]:
    """Pin every page of [a, a+n) in order; on error unpin them and give it.
    Until the caller keeps or drops them, the pins are the thread's (``t.pins``)."""
    t.pins = []
    for v in range(a, a + n):
        r = yield from pin_page(k, t, proc, v, mode)
        if not isinstance(r, int):
            unpin_pages(k, np.array(t.pins, np.int64), None)
            t.pins = []
            return r
        t.pins.append(r)
    arr = np.array(t.pins, np.int64)
    return arr, k.frames.gen[arr].astype(np.int64)


def region_io(k: KernelState, reg: Region, direction: str, off: int, cnt: int,
              x: int, stride: int) -> OpResult:
    """Read or write pinned pages [off, off+cnt) of a region (DMA)."""
    fr = k.frames
    assert reg.pins is not None and reg.pin_gens is not None
    pfns = reg.pins[off: off + cnt]
    gens = reg.pin_gens[off: off + cnt]
    if not (fr.live[pfns] == 1).all() or not (fr.gen[pfns] == gens).all():
        k.violation("no_use_after_free", f"R{reg.id}: DMA reaches a freed page")
    k.pops += cnt
    if direction == "write":
        ks = np.arange(cnt, dtype=np.int64)
        fr.word[pfns] = np.int64(x) + ks * np.int64(stride)
        return Ok()
    return Values(tuple(int(w) for w in fr.word[pfns].tolist()))
