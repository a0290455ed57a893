"""The contracts a driver design is judged under (docs/the-2019-argument.md).

The August 2019 dri-devel argument over i915 userptr comes down to which
promise a driver makes to userspace:

* ``hmm`` (Glisse): every CPU access sees the last write by anyone, the
  GPU's or the CPU's, under migration, reclaim, fork and munmap.  Every
  finding counts.
* ``registration-cache`` (Gunthorpe): userspace changing the mapping of a
  range while the device works on it is a programming error.  An op
  declared ``remaps`` (``model.decl``: mmap over a range, munmap, mremap,
  mprotect on its ranges; fork on the whole mm) that *starts* while its
  process has device work in flight on an overlapping range
  (``Implementation.busy``: active jobs' regions, a plug-in's ``busy``)
  breaks the contract on userspace's side.  A finding after that point is
  a **contract violation**, counted apart, not a finding.  Migration,
  reclaim and the OOM reaper are the kernel's doing and stay in contract.

The executor applies the rule (``fuzz/executor.py``); the engines, the
campaign and ``mirrorfuzz compare`` only read the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from model.decl import SCHEMA_BY_CLASS
from model.ops import ADDRESS_PAGES, Op

CONTRACTS: Final = {
    "hmm": "every CPU access sees the last write by anyone, under migration, reclaim, "
           "fork and munmap",
    "registration-cache": "userspace does not munmap, mremap, mprotect, mmap over or fork "
                          "a range while device work is in flight on it; migration, "
                          "reclaim and the OOM reaper stay in contract",
}
DEFAULT: Final = "hmm"


def check_name(name: str) -> str:
    """``name`` if it is a contract, else a ValueError naming the choices."""
    if name not in CONTRACTS:
        raise ValueError(f"unknown contract {name!r} (choose from {', '.join(CONTRACTS)})")
    return name


def remapped(op: Op) -> tuple[int, list[tuple[int, int]]] | None:
    """The process and the ranges whose mapping ``op`` changes, if it is
    declared ``remaps`` (the whole mm for an op with no address)."""
    decl = SCHEMA_BY_CLASS.get(type(op))
    if decl is None or not decl.remaps:
        return None
    pid_field = next(a.field for a in decl.args if a.role == "pid")
    counts = {a.of: getattr(op, a.field) for a in decl.args if a.role == "count"}
    source = next((a.field for a in decl.args if a.role == "addr" and not a.dest), None)
    ranges = []
    for a in decl.args:
        if a.role == "addr":
            n = counts.get(source if a.dest else a.field, 1)
            start = getattr(op, a.field)
            ranges.append((start, start + max(n, 1)))
    return getattr(op, pid_field), ranges or [(0, ADDRESS_PAGES)]


def userspace_breaks(contract: str, op: Op,
                     busy: Callable[[int], list[tuple[int, int]]]) -> str | None:
    """Why starting ``op`` now breaks ``contract`` on userspace's side, or None."""
    if contract != "registration-cache":
        return None
    touched = remapped(op)
    if touched is None:
        return None
    pid, ranges = touched
    for a, b in busy(pid):
        for s, e in ranges:
            if s < b and a < e:
                return (f"P{pid}'s [{max(a, s)}, {min(b, e)}) is remapped while device work "
                        f"is in flight on [{a}, {b})")
    return None
