"""An mmu_gather batch: what an apply releases is freed once, after the flush.

Mirrors ``mm/mmu_gather.c`` (``tlb_gather_mmu``, ``__tlb_remove_folio_pages``,
``tlb_finish_mmu``): while an apply zaps entries it only drops counts and
records the folios, device pages and swap slots whose count may have reached
0; ``tlb_finish_mmu`` (the end of the apply, after the TLB flush, SPEC §1)
frees each one whose count is still 0.  Shared-object pages keep the object's
reference and so are not freed while the object lives.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from model.optimized.folios import HUGE, DevicePages, FrameTable, Span, SwapTable

I64 = npt.NDArray[np.int64]


def unique(a: I64) -> I64:
    """Sorted distinct values (np.unique without its lazy numpy.ma import):
    ``a`` itself when already strictly increasing (the gather's usual
    batch); a long array through a mask over [0, max] instead of a sort."""
    if a.size < 2 or (a[1:] > a[:-1]).all():
        return a
    if a.size > 4096:
        top = int(a.max()) + 1
        if top <= 4 * a.size:
            mask = np.zeros(top, np.bool_)
            mask[a] = True
            return np.flatnonzero(mask).astype(np.int64)
    a = np.sort(a)
    keep = np.empty(a.size, np.bool_)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def gathered(parts: list[I64]) -> I64:
    """The distinct values of the gathered arrays, sorted."""
    return unique(parts[0] if len(parts) == 1 else np.concatenate(parts))


def span_heads(runs: list[Span]) -> I64:
    """The heads of the order-9 folios of ``runs``, in order."""
    return np.concatenate([np.arange(lo, hi, HUGE, dtype=np.int64) for lo, hi in runs])


class MmuGather:
    """tlb_gather_mmu .. tlb_finish_mmu."""

    __slots__ = ("frames", "swap", "dpages", "folios", "whole", "spans", "slots", "devs")

    def __init__(self, frames: FrameTable, swap: SwapTable, dpages: DevicePages) -> None:
        self.frames = frames
        self.swap = swap
        self.dpages = dpages
        self.folios: list[I64] = []
        self.whole = False  # folios holds one strictly increasing array of order-9 heads
        self.spans: list[Span] = []  # whole order-9 folios, when nothing else is gathered
        self.slots: list[I64] = []
        self.devs: list[I64] = []

    def remove_folios(self, heads: I64, whole: bool = False) -> None:
        """__tlb_remove_folio_pages: these heads lost a reference (``whole``:
        they are strictly increasing heads of order-9 folios, so that
        ``finish`` needs neither a sort nor an order test if they are all
        it gathered)."""
        if heads.size:
            self._spill()
            self.whole = whole and not self.folios
            self.folios.append(heads)

    def remove_folio(self, head: int) -> None:
        self._spill()
        self.whole = False
        self.folios.append(np.array([head], np.int64))

    def remove_folio_spans(self, runs: list[Span]) -> None:
        """remove_folios for whole order-9 folios given as runs of adjacent
        folios (``folios.spans``): kept as runs while nothing else is
        gathered, so that ``finish`` tests and frees them with slices."""
        if self.spans or self.folios:
            self._spill()
            self.whole = False
            self.folios.append(span_heads(runs))
        else:
            self.spans = runs

    def _spill(self) -> None:
        """The runs join the gathered arrays (another folio is gathered)."""
        if self.spans:
            self.folios.append(span_heads(self.spans))
            self.spans = []

    def remove_slots(self, slots: I64) -> None:
        if slots.size:
            self.slots.append(slots)

    def remove_devs(self, devs: I64) -> None:
        if devs.size:
            self.devs.append(devs)

    def finish(self) -> list[int]:
        """tlb_finish_mmu: free every gathered object whose count is 0.
        Returns the heads of the folios freed."""
        freed: list[int] = []
        fr = self.frames
        if self.spans:  # nothing else gathered
            unused = fr.unused_spans(self.spans)
            if len(unused) * HUGE == sum(hi - lo for lo, hi in self.spans):
                freed = fr.free_spans(self.spans)
            elif unused:
                freed = fr.free_many(np.array(unused, np.int64), huge=True)
        elif self.folios:
            heads = self.folios[0] if self.whole else gathered(self.folios)
            heads = heads[(fr.live[heads] == 1) & (fr.refcount[heads] == 0)]
            if heads.size:
                freed = fr.free_many(heads, huge=self.whole)
        if self.slots:
            slots = gathered(self.slots)
            slots = slots[(self.swap.live[slots] == 1) & (self.swap.count[slots] == 0)]
            for s in slots.tolist():
                self.swap.free(s)
        if self.devs:
            devs = gathered(self.devs)
            devs = devs[(self.dpages.live[devs] == 1) & (self.dpages.refcount[devs] == 0)]
            for d in devs.tolist():
                self.dpages.free(d)
        self.folios.clear()
        self.whole = False
        self.spans = []
        self.slots.clear()
        self.devs.clear()
        return freed
