"""The reverse map: every mapping of a folio or device page, across processes.

Mirrors ``mm/rmap.c`` (``rmap_walk_anon``, ``rmap_walk_file``,
``vma_address``): a page's linear index (``folio->index`` + i) and a VMA's
``vm_pgoff`` give the only vpn where that VMA can map it
(``start + index - pgoff``); entries only move with their VMA (mremap keeps
``pgoff``), so the candidates are found per VMA in O(1) and confirmed by the
page table.  Anonymous pages are looked for in private VMAs, object pages in
the VMAs of their object.  Dead processes are skipped (SPEC Appendix B).
"""

from __future__ import annotations

from collections.abc import Iterator

from model import bugs
from model.optimized.pagetable import KIND_MASK, SHIFT, Arr
from model.optimized.state import KernelState, Process


def vma_ranges(k: KernelState, proc: Process, index: int, npages: int,
               obj: int) -> list[tuple[int, int]]:
    """vpn ranges of ``proc`` where pages [index, index+npages) may be mapped."""
    out: list[tuple[int, int]] = []
    for m in proc.vmas:
        if obj >= 0:
            if m.obj != obj:
                continue
        elif m.kind != "private":
            continue
        lo = max(index, m.pgoff)
        hi = min(index + npages, m.pgoff + (m.end - m.start))
        if lo < hi:
            out.append((m.start + lo - m.pgoff, m.start + hi - m.pgoff))
    return out


def rmap_walk(k: KernelState, index: int, npages: int, obj: int, kinds: tuple[int, ...],
              lo: int, hi: int) -> Iterator[tuple[Process, Arr, Arr, bool]]:
    """(proc, vpns, entries, pmd) of the entries whose kind is in ``kinds`` and
    payload in [lo, hi), per process in pid order (not dead), vpn order."""
    found = False
    for pid in sorted(k.procs):
        proc = k.procs[pid]
        if proc.state == "dead":
            continue
        if found and k.bugged(bugs.RMAP_MISSES_SECOND_PROCESS):
            return  # the walk stops after the first process with a mapping
        for a, b in vma_ranges(k, proc, index, npages, obj):
            for vpns, ents, pmd in proc.pt.populated(a, b):
                kk = ents & KIND_MASK
                pay = ents >> SHIFT
                m = kk == kinds[0]
                for extra in kinds[1:]:
                    m |= kk == extra
                m &= (pay >= lo) & (pay < hi)
                if m.any():
                    k.pops += int(m.sum())
                    found = True
                    yield proc, vpns[m], ents[m], pmd


def first_mapping(k: KernelState, index: int, npages: int, obj: int, kinds: tuple[int, ...],
                  lo: int, hi: int) -> tuple[Process, int, bool] | None:
    """The first process in order with such an entry, at its lowest vpn."""
    for proc, vpns, _, pmd in rmap_walk(k, index, npages, obj, kinds, lo, hi):
        return proc, int(vpns[0]), pmd
    return None
