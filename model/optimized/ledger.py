"""What every table references, kept up to date a changed leaf at a time.

The invariant checks (``checks.py``) need, after every step, how many
entries name each frame, device page and swap slot.  Like the kernel's
``CONFIG_DEBUG_VM`` counters (``NR_ANON_MAPPED`` and friends, updated where
the page tables change rather than recounted), :class:`Ledger` keeps those
counts as arrays and, at each check, re-reads only the leaves a table marked
dirty (``Radix.dirty``) since the last one: the cost of the checks follows
what a step changed, not the size of the state.  A table seen for the first
time is read whole; one that is gone (a dead object's index) is taken out.
The indexes whose counts changed are kept until the checks take them
(``take_moved``), so that they can check only those.

Counts (each indexed by frame, device page or swap slot):

* ``pte``: present PTEs of CPU tables naming the frame; ``pmd``: huge leaves
  naming the head; ``migf``: folio migration entries; ``devp``: present
  entries of device tables; ``objp``: shared objects holding the frame;
* ``dev``: device entries of CPU tables; ``migd``: device-page migration
  entries; ``devd``: device entries of device tables;
* ``swp``: swap entries.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from model.optimized.pagetable import (
    DEVICE,
    KIND_MASK,
    MIG_D,
    MIG_F,
    PRESENT,
    PTRS,
    SHIFT,
    SWAP,
    Radix,
    W,
    X,
)

I64 = npt.NDArray[np.int64]
CPU: Final = 0
DEV: Final = 1
OBJ: Final = 2
NAMES: Final = ("pte", "pmd", "migf", "devp", "objp", "dev", "migd", "devd", "swp")
_EMPTY = np.zeros(0, np.int64)
FEW: Final = 8


class Contribution:
    """What one leaf adds to the counts, and its CPU leaf's writable
    non-exclusive present pages (``wx``, for the exclusivity check)."""

    __slots__ = ("parts", "wx")

    def __init__(self, parts: list[tuple[str, I64]], wx: I64) -> None:
        self.parts = parts
        self.wx = wx


def contribution(kind: int, base: int, lf: object) -> Contribution | None:
    """The leaf's contribution (None for an empty leaf)."""
    if lf is None:
        return None
    if isinstance(lf, int):  # a huge leaf of a CPU table
        wx = (np.arange(base, base + PTRS, dtype=np.int64)
              if lf & W and not lf & X and lf & KIND_MASK == PRESENT else _EMPTY)
        return Contribution([("pmd", np.array([lf >> SHIFT], np.int64))], wx)
    assert isinstance(lf, np.ndarray)
    nz = np.flatnonzero(lf)
    if nz.size == 0:
        return None
    ents = lf[nz]
    if kind == OBJ:
        return Contribution([("objp", ents - 1)], _EMPTY)
    kinds = ents & KIND_MASK
    pay = ents >> SHIFT
    if kind == DEV:
        return Contribution([("devp", pay[kinds == PRESENT]), ("devd", pay[kinds == DEVICE])],
                            _EMPTY)
    per_kind = np.bincount(kinds, minlength=KIND_MASK + 1).tolist()
    parts = [(name, pay if per_kind[k] == nz.size else pay[kinds == k])
             for name, k in (("pte", PRESENT), ("migf", MIG_F), ("dev", DEVICE),
                             ("migd", MIG_D), ("swp", SWAP)) if per_kind[k]]
    wx = (ents & (KIND_MASK | W | X)) == PRESENT | W
    return Contribution(parts, base + nz[wx] if per_kind[PRESENT] and wx.any() else _EMPTY)


def _same_parts(a: Contribution | None, b: Contribution | None) -> bool:
    """Whether ``a`` and ``b`` add the same to every count, index by index."""
    return (a is not None and b is not None and len(a.parts) == len(b.parts)
            and all(na == nb and ia.tobytes() == ib.tobytes()
                    for (na, ia), (nb, ib) in zip(a.parts, b.parts, strict=True)))


class TableCache:
    __slots__ = ("kind", "leaves", "wx_bases")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.leaves: dict[int, Contribution] = {}
        self.wx_bases: set[int] = set()


class Ledger:
    """The counts over a set of tables (CPU tables, device tables, object indexes)."""

    def __init__(self) -> None:
        self.counts: dict[str, I64] = {n: np.zeros(1024, np.int64) for n in NAMES}
        self.tables: dict[Radix, TableCache] = {}
        self.moved: dict[str, list[I64]] = {}

    def take_moved(self) -> dict[str, I64]:
        """The indexes whose counts changed since the last call (possibly
        repeated), per count; a count none of whose indexes changed is left out."""
        out = {n: v[0] if len(v) == 1 else np.concatenate(v) for n, v in self.moved.items()}
        self.moved = {}
        return out

    def _add(self, c: Contribution, sign: int) -> None:
        for name, idx in c.parts:
            if idx.size == 0:
                continue
            self.moved.setdefault(name, []).append(idx)
            few = idx.tolist() if idx.size <= FEW else None
            top = (int(idx.max()) if few is None else max(few)) + 1
            arr = self.counts[name]
            if top > arr.size:
                grown = np.zeros(max(top, 2 * arr.size), np.int64)
                grown[: arr.size] = arr
                arr = self.counts[name] = grown
            if few is None:
                np.add.at(arr, idx, sign)
            else:  # (np.add.at's fixed cost is that of a few scalar stores)
                for i in few:
                    arr[i] += sign

    def _set_leaf(self, tc: TableCache, base: int, c: Contribution | None) -> None:
        old = tc.leaves.pop(base, None)
        if not _same_parts(old, c):  # (a leaf marked for writing may name the same pages)
            if old is not None:
                self._add(old, -1)
            if c is not None:
                self._add(c, 1)
        tc.wx_bases.discard(base)
        if c is not None:
            tc.leaves[base] = c
            if c.wx.size:
                tc.wx_bases.add(base)

    def update(self, tables: list[tuple[Radix, int]]) -> None:
        """Bring the counts to the current state of ``tables`` (any other
        table previously included is taken out)."""
        seen: set[Radix] = set()
        for rdx, kind in tables:
            seen.add(rdx)
            tc = self.tables.get(rdx)
            if tc is None:
                tc = self.tables[rdx] = TableCache(kind)
                rdx.dirty.clear()
                for base, lf in rdx.peek_blocks(0, 1 << 36):
                    self._set_leaf(tc, base, contribution(kind, base, lf))
                continue
            if not rdx.dirty:
                continue
            dirty = sorted(rdx.dirty)
            rdx.dirty.clear()
            for base in dirty:
                self._set_leaf(tc, base, contribution(kind, base, rdx.peek(base)))
        for rdx in [r for r in self.tables if r not in seen]:
            tc = self.tables.pop(rdx)
            for c in tc.leaves.values():
                self._add(c, -1)

    def get(self, name: str, n: int) -> I64:
        """Counts ``name`` over indexes [0, n) (zero-padded)."""
        arr = self.counts[name]
        if arr.size >= n:
            return arr[:n]
        out = np.zeros(n, np.int64)
        out[: arr.size] = arr
        return out

    def beyond(self, name: str, n: int) -> bool:
        """Whether some entry names an index >= n."""
        arr = self.counts[name]
        return arr.size > n and bool(arr[n:].any())

    def wx(self, rdx: Radix) -> list[tuple[int, I64]]:
        """(base, vpns) of the leaves of ``rdx`` with writable non-exclusive pages."""
        tc = self.tables.get(rdx)
        if tc is None or not tc.wx_bases:
            return []
        return [(b, tc.leaves[b].wx) for b in sorted(tc.wx_bases)]
