"""A four-level radix page table with numpy leaf tables and PMD-level leaves.

Mirrors Linux's ``pgd -> pud -> pmd -> pte`` walk (``include/linux/pgtable.h``,
``mm/pagewalk.c``, ``pmd_trans_huge``, ``__split_huge_pmd``, ``free_pgtables``):
9 bits a level over the 36-bit vpn space.  Upper levels are sparse dicts; a
PMD slot holds either a PTE table (an int64 numpy array of 512 packed
entries) or a *huge leaf* (a Python int: one packed ``present`` entry naming
the head frame of an order-9 folio, mapping the whole 512-aligned block).

Tables are allocated on demand and freed when empty (``prune``).  Range
operations visit only populated tables (``chunks``) and hand back a table's
slice so callers work on it with numpy, never page by page.

``dirty`` collects the base of every leaf handed out for writing or changed
(``leaf``, ``blocks``/``chunks``, the setters, ``prune``) since the
invariant checks last took it, so the checks rescan only what changed;
``touched`` keeps the same marks until the observation's watcher takes them
(``version`` counts the marks).  Read-only walks (``populated``,
``gather``, ``get``) do not mark.  Callers write a leaf only in the step that
looked it up (no leaf is held across a yield).

Packed entry (int64): bits 0-2 the kind, bit 3 ``w``, bit 4 ``x``, bits 5..
the payload (frame number, swap slot or device page).  0 is ``none``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

import numpy as np
import numpy.typing as npt

Arr = npt.NDArray[np.int64]
Leaf = Arr | int

NONE: Final = 0
ZERO: Final = 1
PRESENT: Final = 2
SWAP: Final = 3
MIG_F: Final = 4  # migration entry of a folio page
MIG_D: Final = 5  # migration entry of a device page
DEVICE: Final = 6
KIND_MASK: Final = 7
W: Final = 8
X: Final = 16
SHIFT: Final = 5
PTRS: Final = 512
ZERO_ENTRY: Final = ZERO


def mkentry(kind: int, payload: int = 0, w: bool = False, x: bool = False) -> int:
    """Pack one entry."""
    return kind | (W if w else 0) | (X if x else 0) | (payload << SHIFT)


def kind_of(e: int) -> int:
    return e & KIND_MASK


def payload_of(e: int) -> int:
    return e >> SHIFT


def w_of(e: int) -> bool:
    return bool(e & W)


def x_of(e: int) -> bool:
    return bool(e & X)


def new_table() -> Arr:
    return np.zeros(PTRS, dtype=np.int64)


class Radix:
    """pgd -> pud -> pmd -> leaf.  Used for CPU page tables (with huge leaves),
    mirror device tables and shared-object page indexes (without)."""

    __slots__ = ("pgd", "dirty", "version", "touched")

    def __init__(self) -> None:
        self.pgd: dict[int, dict[int, dict[int, Leaf]]] = {}
        self.dirty: set[int] = set()
        self.version = 0  # bumped with every mark
        self.touched: set[int] = set()  # the marks the observation's watcher has not taken

    def _mark(self, base: int) -> None:
        self.dirty.add(base)
        self.touched.add(base)
        self.version += 1

    def _mark_all(self, bases: Iterable[int]) -> None:
        bases = list(bases)
        self.dirty.update(bases)
        self.touched.update(bases)
        self.version += 1

    # ------------------------------------------------------------ lookup
    def _pmd(self, vpn: int, create: bool) -> dict[int, Leaf] | None:
        i1 = vpn >> 27
        pud = self.pgd.get(i1)
        if pud is None:
            if not create:
                return None
            pud = self.pgd[i1] = {}
        i2 = (vpn >> 18) & 511
        pmd = pud.get(i2)
        if pmd is None:
            if not create:
                return None
            pmd = pud[i2] = {}
        return pmd

    def leaf(self, base: int) -> Leaf | None:
        """The leaf of the 512-block at ``base`` (aligned), or None."""
        self._mark(base)
        return self.peek(base)

    def peek(self, base: int) -> Leaf | None:
        """leaf() for reading only (not marked dirty)."""
        pmd = self._pmd(base, False)
        return None if pmd is None else pmd.get((base >> 9) & 511)

    def get(self, vpn: int) -> tuple[int, bool]:
        """(entry, pmd_mapped) at ``vpn``; a huge leaf gives its page's entry."""
        pmd = self._pmd(vpn, False)
        if pmd is None:
            return 0, False
        lf = pmd.get((vpn >> 9) & 511)
        if lf is None:
            return 0, False
        if isinstance(lf, int):
            return lf + ((vpn & 511) << SHIFT), True
        return int(lf[vpn & 511]), False

    def entry(self, vpn: int) -> int:
        return self.get(vpn)[0]

    # ------------------------------------------------------------ update
    def set(self, vpn: int, e: int) -> None:
        """Set a PTE-level entry (the block must not be a huge leaf)."""
        pmd = self._pmd(vpn, e != 0)
        if pmd is None:
            return
        self._mark(vpn & ~511)
        i3 = (vpn >> 9) & 511
        lf = pmd.get(i3)
        if lf is None:
            if e == 0:
                return
            lf = pmd[i3] = new_table()
        assert not isinstance(lf, int), "set() inside a huge leaf"
        lf[vpn & 511] = e
        if e == 0 and not lf.any():
            self.prune(vpn & ~511)

    def set_leaf(self, base: int, lf: Leaf) -> None:
        pmd = self._pmd(base, True)
        assert pmd is not None
        self._mark(base)
        pmd[(base >> 9) & 511] = lf

    def prune(self, base: int) -> None:
        """Free the leaf at ``base`` if empty, then empty upper tables (free_pgtables)."""
        i1, i2, i3 = base >> 27, (base >> 18) & 511, (base >> 9) & 511
        pud = self.pgd.get(i1)
        if pud is None:
            return
        pmd = pud.get(i2)
        if pmd is None:
            return
        lf = pmd.get(i3)
        if lf is not None and not isinstance(lf, int) and lf.any():
            return
        if lf is not None and isinstance(lf, int):
            return
        self._mark(base)
        pmd.pop(i3, None)
        if not pmd:
            del pud[i2]
            if not pud:
                del self.pgd[i1]

    def clear_leaf(self, base: int) -> None:
        pmd = self._pmd(base, False)
        self._mark(base)
        if pmd is not None:
            pmd.pop((base >> 9) & 511, None)
            self.prune(base)

    def clear_leaves(self, bases: list[int]) -> None:
        """clear_leaf for many leaves (free_pgtables over a range): upper
        tables are pruned once per PMD table."""
        last: dict[int, int] = {}
        for base in bases:
            pmd = self._pmd(base, False)
            if pmd is not None:
                pmd.pop((base >> 9) & 511, None)
                last[base >> 18] = base
        self._mark_all(bases)
        for base in last.values():
            self.prune(base)

    # ------------------------------------------------------------ walks
    def blocks(self, a: int, b: int) -> list[tuple[int, Leaf]]:
        """Populated 512-blocks overlapping [a, b), in order, as (base, leaf).

        A list (not a generator) so that callers may change the table."""
        out = self.peek_blocks(a, b)
        self._mark_all(base for base, _ in out)
        return out

    def peek_blocks(self, a: int, b: int) -> list[tuple[int, Leaf]]:
        """blocks() for reading only (not marked dirty)."""
        out: list[tuple[int, Leaf]] = []
        if a >= b:
            return out
        last = b - 1
        if a >> 9 == last >> 9:  # one leaf: a direct walk
            lf = self.peek(a & ~(PTRS - 1))
            if lf is not None:
                out.append((a & ~(PTRS - 1), lf))
            return out
        for i1 in sorted(k for k in self.pgd if (a >> 27) <= k <= (last >> 27)):
            pud = self.pgd[i1]
            for i2 in sorted(pud):
                hi2 = (i1 << 9) | i2
                if hi2 < (a >> 18) or hi2 > (last >> 18):
                    continue
                pmd = pud[i2]
                for i3 in sorted(pmd):
                    base = (hi2 << 18) | (i3 << 9)
                    if base + PTRS <= a or base > last:
                        continue
                    out.append((base, pmd[i3]))
        return out

    def chunks(self, a: int, b: int, mark: bool = True) -> Iterator[tuple[int, Leaf, int, int]]:
        """(base, leaf, lo, hi): the slice [lo, hi) of each populated leaf inside [a, b)
        (``mark=False``: for reading only)."""
        for base, lf in (self.blocks(a, b) if mark else self.peek_blocks(a, b)):
            lo = max(a, base) - base
            hi = min(b, base + PTRS) - base
            yield base, lf, lo, hi

    def populated(self, a: int, b: int) -> Iterator[tuple[Arr, Arr, bool]]:
        """(vpns, entries, pmd) of the non-none entries in [a, b), in vpn order,
        one leaf at a time (a huge leaf expands to its 512 entries)."""
        for base, lf, lo, hi in self.chunks(a, b, mark=False):
            if isinstance(lf, int):
                idx = np.arange(lo, hi, dtype=np.int64)
                yield base + idx, lf + (idx << SHIFT), True
            else:
                sl = lf[lo:hi]
                nz = np.flatnonzero(sl).astype(np.int64)
                if nz.size:
                    yield base + lo + nz, sl[nz], False

    def any_in(self, a: int, b: int) -> bool:
        return any(True for _ in self.populated(a, b))

    def set_many(self, vpns: Arr, entries: Arr) -> None:
        """Set PTE-level entries at sorted, distinct ``vpns`` (no huge leaf among them)."""
        if vpns.size == 0:
            return
        if int(vpns[-1]) - int(vpns[0]) == vpns.size - 1:  # consecutive: slices
            self._set_range(int(vpns[0]), entries)
            return
        keys = vpns >> 9
        cuts = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [vpns.size]))
        for s0, e0 in zip(starts.tolist(), ends.tolist(), strict=True):
            base = int(keys[s0]) << 9
            lf = self.leaf(base)
            vals = entries[s0:e0]
            if lf is None:
                if not vals.any():
                    continue
                lf = new_table()
                self.set_leaf(base, lf)
            assert not isinstance(lf, int)
            lf[vpns[s0:e0] & 511] = vals
            if not lf.any():
                self.prune(base)

    def _set_range(self, a: int, entries: Arr) -> None:
        """set_many for the consecutive vpns ``a, a + 1, ..``: a slice a leaf."""
        b = a + entries.size
        v = a
        while v < b:
            base = v & ~(PTRS - 1)
            hi = min(b, base + PTRS)
            vals = entries[v - a: hi - a]
            lf = self.leaf(base)
            if lf is None:
                if vals.any():
                    lf = new_table()
                    lf[v - base: hi - base] = vals
                    self.set_leaf(base, lf)
            else:
                assert not isinstance(lf, int)
                lf[v - base: hi - base] = vals
                if not lf.any():
                    self.prune(base)
            v = hi

    def count(self) -> int:
        """Non-none entries (for tests and accounting)."""
        n = 0
        for pud in self.pgd.values():
            for pmd in pud.values():
                for lf in pmd.values():
                    n += PTRS if isinstance(lf, int) else int(np.count_nonzero(lf))
        return n

    def huge_bases(self, a: int, b: int) -> list[int]:
        """Bases of the huge leaves overlapping [a, b), in order."""
        return [base for base, lf in self.peek_blocks(a, b) if isinstance(lf, int)]

    def gather(self, a: int, b: int) -> tuple[Arr, npt.NDArray[np.bool_]]:
        """Dense (entries, pmd) of [a, b) (for short ranges)."""
        out = np.zeros(b - a, np.int64)
        pmd = np.zeros(b - a, np.bool_)
        for base, lf, lo, hi in self.chunks(a, b, mark=False):
            dst = slice(base + lo - a, base + hi - a)
            if isinstance(lf, int):
                out[dst] = lf + (np.arange(lo, hi, dtype=np.int64) << SHIFT)
                pmd[dst] = True
            else:
                out[dst] = lf[lo:hi]
        return out, pmd

    def clear_range(self, a: int, b: int) -> int:
        """Make [a, b) none without accounting (device tables); returns entries cleared."""
        n = 0
        for base, lf, lo, hi in self.chunks(a, b):
            if isinstance(lf, int):
                self.clear_leaf(base)
                n += PTRS
                continue
            n += int(np.count_nonzero(lf[lo:hi]))
            lf[lo:hi] = 0
            self.prune(base)
        return n
