"""The reverse map: every mapping of a folio or device page, across processes.

Mirrors ``mm/rmap.c`` (``rmap_walk_anon``, ``rmap_walk_file``,
``vma_address``): a page's linear index (``folio->index`` + i) and a VMA's
``vm_pgoff`` give the only vpn where that VMA can map it
(``start + index - pgoff``); entries only move with their VMA (mremap keeps
``pgoff``), so the candidates are found per VMA in O(1) and confirmed by the
page table.  Its callers walk anonymous pages only (migration moves no
shared object's page), so only private VMAs are looked in.  Dead processes
are skipped (SPEC Appendix B).
"""

from __future__ import annotations

from collections.abc import Iterator

from model import bugs
from model.optimized.pagetable import KIND_MASK, SHIFT, Arr
from model.optimized.state import KernelState, Process


def vma_ranges(k: KernelState, proc: Process, index: int, npages: int
               ) -> list[tuple[int, int]]:
    """vpn ranges of ``proc`` where anonymous pages [index, index+npages) may
    be mapped."""
    out: list[tuple[int, int]] = []
    for m in proc.vmas:
        if m.kind != "private":
            continue
        lo = max(index, m.pgoff)
        hi = min(index + npages, m.pgoff + (m.end - m.start))
        if lo < hi:
            out.append((m.start + lo - m.pgoff, m.start + hi - m.pgoff))
    return out


def rmap_walk(k: KernelState, index: int, npages: int, kind: int, lo: int, hi: int
              ) -> Iterator[tuple[Process, Arr, Arr, bool]]:
    """(proc, vpns, entries, pmd) of the entries of ``kind`` whose payload is
    in [lo, hi), per process in pid order (not dead), vpn order."""
    found = False
    for pid in sorted(k.procs):
        proc = k.procs[pid]
        if proc.state == "dead":
            continue
        if found and k.bugged(bugs.RMAP_MISSES_SECOND_PROCESS):
            return  # the walk stops after the first process with a mapping
        for a, b in vma_ranges(k, proc, index, npages):
            for vpns, ents, pmd in proc.pt.populated(a, b):
                pay = ents >> SHIFT
                m = ((ents & KIND_MASK) == kind) & (pay >= lo) & (pay < hi)
                if m.any():
                    k.pops += int(m.sum())
                    found = True
                    yield proc, vpns[m], ents[m], pmd


def first_mapping(k: KernelState, index: int, npages: int, kind: int, lo: int, hi: int
                  ) -> tuple[Process, int, bool] | None:
    """The first process in order with such an entry, at its lowest vpn."""
    for proc, vpns, _, pmd in rmap_walk(k, index, npages, kind, lo, hi):
        return proc, int(vpns[0]), pmd
    return None
