"""VMA lists: lookup, split and removal (SPEC §1 'VMA').

Mirrors ``find_vma``, ``__split_vma``, ``vma_merge`` (never: SPEC forbids
merging) and the VMA side of ``do_vmi_munmap``.  A process keeps its VMAs in
a list sorted by start (they never overlap); lookups bisect it.
"""

from __future__ import annotations

from bisect import bisect_right

from model.optimized.state import Process, Vma


def _starts(proc: Process) -> list[int]:
    if proc.vma_starts_gen != proc.vma_gen:
        proc.vma_starts = [m.start for m in proc.vmas]
        proc.vma_starts_gen = proc.vma_gen
    return proc.vma_starts


def changed(proc: Process) -> None:
    """Every change to ``proc.vmas`` calls this (it invalidates the lookup cache)."""
    proc.vma_gen += 1


def find_vma(proc: Process, v: int) -> Vma | None:
    """The VMA containing ``v``, or None (bisect on the sorted starts)."""
    vmas = proc.vmas
    i = bisect_right(_starts(proc), v) - 1
    if i >= 0:
        m = vmas[i]
        return m if v < m.end else None
    return None


def vmas_in(proc: Process, a: int, b: int) -> list[Vma]:
    """VMAs intersecting [a, b), in order."""
    vmas = proc.vmas
    i = max(bisect_right(_starts(proc), a) - 1, 0)
    out = []
    while i < len(vmas) and vmas[i].start < b:
        if a < vmas[i].end:
            out.append(vmas[i])
        i += 1
    return out


def any_overlap(proc: Process, a: int, b: int) -> bool:
    return bool(vmas_in(proc, a, b))


def covered(proc: Process, a: int, b: int) -> bool:
    """True if [a, b) has no hole."""
    pos = a
    for m in vmas_in(proc, a, b):
        if m.start > pos:
            return False
        pos = m.end
    return pos >= b


def split_at(proc: Process, at: int) -> None:
    """__split_vma: make ``at`` a VMA boundary if it falls strictly inside one."""
    i = bisect_right(_starts(proc), at) - 1
    if i >= 0:
        m = proc.vmas[i]
        if m.start < at < m.end:
            proc.vmas[i: i + 1] = [m.piece(m.start, at), m.piece(at, m.end)]
            changed(proc)


def remove_range(proc: Process, a: int, b: int) -> set[int]:
    """Remove the VMA parts inside [a, b); returns the objects they referred to."""
    split_at(proc, a)
    split_at(proc, b)
    keep: list[Vma] = []
    objs: set[int] = set()
    for m in proc.vmas:
        if a <= m.start and m.end <= b:
            if m.obj is not None:
                objs.add(m.obj)
        else:
            keep.append(m)
    proc.vmas = keep
    changed(proc)
    return objs


def insert_vma(proc: Process, vma: Vma) -> None:
    proc.vmas.append(vma)
    proc.vmas.sort(key=lambda m: m.start)
    changed(proc)
