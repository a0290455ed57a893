"""Struct-of-arrays frame, swap-slot and device-page tables.

Mirrors Linux's ``struct page``/``struct folio`` array (``mem_map``) with
``folio_ref_count``, ``folio_mapcount``/``page_mapcount``, the pin count
(``folio_maybe_dma_pinned``), ``folio_order`` and ``folio->index``, and the
buddy allocator's free lists (``__free_pages``, ``alloc_pages``), reduced to
two LIFO lists: order 0 and order 9.  A freed frame is reused at once, so a
stale reference reads another folio's word; every free bumps the frame's
``generation``, which is part of a folio's identity ``(pfn, generation)`` and
lets the checks catch a use after free.

Every page of an order-9 folio has ``order == 9``; its head is ``pfn & ~511``
(order-9 folios are allocated 512-aligned).  ``index`` is the folio's linear
page index (``linear_page_index``) used by the reverse map (``rmap.py``);
``obj`` is the shared object holding the page, or -1.

Swap slots (``swap_info_struct``'s ``swap_map``) and device pages
(``dmirror_devmem_alloc_page``) use the same shape: arrays plus a LIFO free
list and generations.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
HUGE: Final = 512


def _grow(a: npt.NDArray[np.generic], n: int) -> npt.NDArray[np.generic]:
    out = np.zeros(n, dtype=a.dtype)
    out[: a.size] = a
    return out


ONE: Final = np.int32(1)
ONE_HUGE: Final = np.int32(HUGE)
"""int32 scalars for the int32 count arrays (a Python int operand costs a
numpy call more: NEP 50's weak-scalar promotion)."""
SPANS_MAX: Final = 8
"""The batch paths over whole order-9 folios take one slice per run of
adjacent folios up to this many runs, and one fancy index beyond: a slice's
fixed cost is a fraction of a fancy index's."""

Span = tuple[int, int]


def spans(heads: list[int]) -> list[Span] | None:
    """The frames [lo, hi) of the maximal runs of adjacent order-9 folios
    among ``heads`` (sorted, distinct), or None past SPANS_MAX runs."""
    out: list[Span] = []
    lo = prev = heads[0]
    for h in heads[1:]:
        if h != prev + HUGE:
            if len(out) == SPANS_MAX - 1:
                return None
            out.append((lo, prev + HUGE))
            lo = h
        prev = h
    out.append((lo, prev + HUGE))
    return out


class FrameTable:
    """System frames (SPEC §1 'system folio')."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        cap = 1024
        self.word = np.zeros(cap, np.int64)
        self.mapcount = np.zeros(cap, np.int32)
        self.refcount = np.zeros(cap, np.int32)  # head only
        self.pincount = np.zeros(cap, np.int32)  # head only
        self.order = np.zeros(cap, np.int8)
        self.live = np.zeros(cap, np.int8)
        self.gen = np.zeros(cap, np.int32)
        self.obj = np.full(cap, -1, np.int32)
        self.index = np.zeros(cap, np.int64)
        self.top = 0  # bump pointer
        self.free_small: list[int] = []
        self.free_huge: list[int] = []
        self.in_use = 0
        self.holders: dict[int, str] = {}  # head -> migrator thread
        self._rows()

    def _rows(self) -> None:
        """Views of the per-page arrays as rows of 512 frames: row r is the
        order-9 folio at r * 512 (the capacity is a multiple of 512)."""
        self.mapcount_rows = self.mapcount.reshape(-1, HUGE)
        self.live_rows = self.live.reshape(-1, HUGE)
        self.gen_rows = self.gen.reshape(-1, HUGE)
        self.obj_rows = self.obj.reshape(-1, HUGE)

    def _ensure(self, n: int) -> None:
        cap = self.word.size
        if n <= cap:
            return
        new = max(n, cap + cap // 4)  # modest slack: memory stays near 40 bytes a frame
        new = -(-new // HUGE) * HUGE
        self.word = _grow(self.word, new)  # type: ignore[assignment]
        self.mapcount = _grow(self.mapcount, new)  # type: ignore[assignment]
        self.refcount = _grow(self.refcount, new)  # type: ignore[assignment]
        self.pincount = _grow(self.pincount, new)  # type: ignore[assignment]
        self.order = _grow(self.order, new)  # type: ignore[assignment]
        self.live = _grow(self.live, new)  # type: ignore[assignment]
        self.gen = _grow(self.gen, new)  # type: ignore[assignment]
        obj = np.full(new, -1, np.int32)
        obj[:cap] = self.obj
        self.obj = obj
        self.index = _grow(self.index, new)  # type: ignore[assignment]
        self._rows()

    def can_alloc(self, order: int) -> bool:
        return self.in_use + (1 << order) <= self.limit

    def alloc(self, order: int, index: int = 0) -> int | None:
        """A zeroed folio of ``order`` (0 or 9) with refcount 0, or None (no frames)."""
        order = int(order)
        size = 1 << order
        if self.in_use + size > self.limit:
            return None
        if order == 0:
            if self.free_small:
                pfn = self.free_small.pop()
            else:
                pfn = self.top
                self.top += 1
                self._ensure(self.top)
        elif self.free_huge:
            pfn = self.free_huge.pop()
        else:
            pfn = (self.top + HUGE - 1) & ~(HUGE - 1)
            self.free_small.extend(range(pfn - 1, self.top - 1, -1))
            self.top = pfn + HUGE
            self._ensure(self.top)
        if order == 0:
            self.word[pfn] = 0
            self.mapcount[pfn] = 0
            self.order[pfn] = 0
            self.live[pfn] = 1
            self.obj[pfn] = -1
            self.index[pfn] = index
        else:
            sl = slice(pfn, pfn + size)
            self.word[sl] = 0
            self.mapcount[sl] = 0
            self.order[sl] = order
            self.live[sl] = 1
            self.obj[sl] = -1
            self.index[sl] = np.arange(index, index + size, dtype=np.int64)
        self.refcount[pfn] = 0
        self.pincount[pfn] = 0
        self.in_use += size
        return pfn

    def head(self, pfn: int) -> int:
        return pfn & ~(HUGE - 1) if self.order[pfn] == 9 else pfn

    def heads(self, pfns: I64) -> I64:
        return np.where(self.order[pfns] == 9, pfns & ~(HUGE - 1), pfns)

    def nr_pages(self, head: int) -> int:
        return 1 << int(self.order[head])

    def is_live(self, head: int, gen: int) -> bool:
        return 0 <= head < self.top and bool(self.live[head]) and int(self.gen[head]) == gen

    def free(self, head: int) -> None:
        """__free_pages: the folio's frames go back to a free list (LIFO)."""
        size = self.nr_pages(head)
        sl = slice(head, head + size)
        self.live[sl] = 0
        self.gen[sl] += 1
        self.obj[sl] = -1
        self.in_use -= size
        if size == HUGE:
            self.free_huge.append(head)
        else:
            self.free_small.append(head)

    def free_many(self, heads: I64, huge: bool = False) -> list[int]:
        """free() for many heads at once (the mmu_gather's batch), in order;
        returns the heads (``huge``: the caller knows they are all order 9)."""
        out: list[int] = heads.tolist()
        is_huge = None if huge else self.order[heads] == 9
        if is_huge is not None and not is_huge.all():
            small = heads[~is_huge]
            self.live[small] = 0
            self.gen[small] += 1
            self.obj[small] = -1
            self.in_use -= int(small.size)
            self.free_small.extend(small.tolist())
            heads = heads[is_huge]
            if not heads.size:
                return out
        rows = heads >> 9
        self.live_rows[rows] = 0
        self.gen_rows[rows] += 1
        self.obj_rows[rows] = -1
        self.in_use -= HUGE * int(heads.size)
        self.free_huge.extend(heads.tolist() if heads.size < len(out) else out)
        return out

    def remove_rmap_ptes(self, heads: I64) -> None:
        """folio_remove_rmap_ptes + folio_ref_sub over whole PTE-mapped
        order-9 folios (distinct ``heads``): every page's mapcount -1, each
        head's refcount -512."""
        self.mapcount_rows[heads >> 9] -= 1
        self.refcount[heads] -= HUGE

    def remove_rmap_spans(self, runs: list[Span]) -> None:
        """remove_rmap_ptes over the folios of ``runs`` (see ``spans``)."""
        for lo, hi in runs:
            maps = self.mapcount[lo:hi]
            maps -= ONE
            refs = self.refcount[lo:hi:HUGE]
            refs -= ONE_HUGE

    def unused_spans(self, runs: list[Span]) -> list[int]:
        """The heads of the folios of ``runs`` that are live with refcount 0."""
        out: list[int] = []
        for lo, hi in runs:
            live = self.live[lo:hi:HUGE].tolist()
            refs = self.refcount[lo:hi:HUGE].tolist()
            out += [h for h, lv, rc in zip(range(lo, hi, HUGE), live, refs, strict=True)
                    if lv == 1 and rc == 0]
        return out

    def free_spans(self, runs: list[Span]) -> list[int]:
        """free_many for every folio of ``runs``; returns the heads."""
        heads: list[int] = []
        for lo, hi in runs:
            self.live[lo:hi] = 0
            gen = self.gen[lo:hi]
            gen += ONE
            self.obj[lo:hi] = -1
            self.in_use -= hi - lo
            heads += range(lo, hi, HUGE)
        self.free_huge.extend(heads)
        return heads

    def split(self, head: int) -> None:
        """split_folio: an order-9 folio becomes 512 order-0 folios in place;
        each page's refcount becomes its mapcount (the caller checked that
        only PTEs hold it)."""
        sl = slice(head, head + HUGE)
        self.order[sl] = 0
        self.refcount[sl] = self.mapcount[sl]
        self.pincount[sl] = 0


class SwapTable:
    """Swap slots: a word and a count (swap_map); unbounded."""

    def __init__(self) -> None:
        self.word = np.zeros(256, np.int64)
        self.count = np.zeros(256, np.int32)
        self.live = np.zeros(256, np.int8)
        self.gen = np.zeros(256, np.int32)
        self.top = 0
        self.free_list: list[int] = []
        self.in_use = 0

    def alloc(self, word: int) -> int:
        if self.free_list:
            s = self.free_list.pop()
        else:
            s = self.top
            self.top += 1
            if self.top > self.word.size:
                n = self.word.size * 2
                self.word = _grow(self.word, n)  # type: ignore[assignment]
                self.count = _grow(self.count, n)  # type: ignore[assignment]
                self.live = _grow(self.live, n)  # type: ignore[assignment]
                self.gen = _grow(self.gen, n)  # type: ignore[assignment]
        self.word[s] = word
        self.count[s] = 0
        self.live[s] = 1
        self.in_use += 1
        return s

    def free(self, s: int) -> None:
        self.live[s] = 0
        self.gen[s] += 1
        self.in_use -= 1
        self.free_list.append(s)


class DevicePages:
    """Device-private pages, each owned by one device (dmirror's chunks)."""

    def __init__(self, per_device: int) -> None:
        self.per_device = per_device
        self.word = np.zeros(256, np.int64)
        self.refcount = np.zeros(256, np.int32)
        self.owner = np.zeros(256, np.int32)
        self.index = np.zeros(256, np.int64)
        self.live = np.zeros(256, np.int8)
        self.gen = np.zeros(256, np.int32)
        self.top = 0
        self.free_list: list[int] = []
        self.used: dict[int, int] = {}  # owner -> pages in use
        self.holders: dict[int, str] = {}  # page -> migrator thread

    def can_alloc(self, owner: int) -> bool:
        return self.used.get(owner, 0) < self.per_device

    def alloc(self, owner: int, word: int, index: int) -> int | None:
        if not self.can_alloc(owner):
            return None
        if self.free_list:
            d = self.free_list.pop()
        else:
            d = self.top
            self.top += 1
            if self.top > self.word.size:
                n = self.word.size * 2
                self.word = _grow(self.word, n)  # type: ignore[assignment]
                self.refcount = _grow(self.refcount, n)  # type: ignore[assignment]
                self.owner = _grow(self.owner, n)  # type: ignore[assignment]
                self.index = _grow(self.index, n)  # type: ignore[assignment]
                self.live = _grow(self.live, n)  # type: ignore[assignment]
                self.gen = _grow(self.gen, n)  # type: ignore[assignment]
        self.word[d] = word
        self.refcount[d] = 0
        self.owner[d] = owner
        self.index[d] = index
        self.live[d] = 1
        self.used[owner] = self.used.get(owner, 0) + 1
        return d

    def free(self, d: int) -> None:
        self.live[d] = 0
        self.gen[d] += 1
        owner = int(self.owner[d])
        self.used[owner] -= 1
        self.free_list.append(d)

    def in_use(self) -> int:
        return sum(self.used.values())
