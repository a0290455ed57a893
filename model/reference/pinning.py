"""Pinning a page, SPEC §6.4 (``pin_user_pages`` with FOLL_LONGTERM): a
core service for the drivers that pin.

pin_page(v, mode), the caller holding mmap_lock for reading::

  no VMA at v, or the VMA lacks r, or mode == rw and it lacks w -> EFAULT
  repeat, acting on the entry at v:
    migration -> wait until it is not;   device -> migrate back (§6.5)
    rw: unless present with w, a CPU write fault
    ro, shared VMA: none -> a CPU read fault
    ro, private VMA:
      none -> a new zeroed order-0 folio, present(G,0,false,true), no event
      zero -> I(clear,[v,v+1)); apply: the same
      swap -> a CPU read fault (swap-in)
      present(F,i,w,false) -> PMD-mapped: split it; order 0, refcount 1: set x;
                              else I(clear,[v,v+1)); apply: a copy, not w, x
  until the entry is present (writable for rw; exclusive for ro, private)
  then pincount(F) += 1 and refcount(F) += 1

A pinned folio is never migrated, reclaimed, split or freed.
"""

from __future__ import annotations

from functools import partial

from model.ops import Mode, OpResult, Segv

from .checks import EFAULT, ENOMEM
from .faults import fault, install_new, is_migration, replace_entry, split_block
from .migrate_back import migrate_to_ram
from .mm import block_of, collect, get, pmd_mapped, put, vma_at
from .notifier import invalidate
from .state import Dev, Present, Process, State, Swap, Zero
from .threads import Gen, Thread, wait


def _fault(st: State, th: Thread, proc: Process, v: int, write: bool) -> Gen[OpResult | None]:
    res = yield from fault(st, th, proc, v, write)
    return EFAULT if isinstance(res, Segv) else res


def pin_page(st: State, th: Thread, proc: Process, v: int,
             mode: Mode) -> Gen[OpResult | tuple[int, int]]:
    """Pin the page at v: the pinned (folio, index), or the error."""
    while True:
        vma = vma_at(proc, v)
        if vma is None or not vma.readable or (mode == "rw" and not vma.writable):
            return EFAULT
        entry = get(st, proc, v)
        res: OpResult | None = None
        if is_migration(entry):
            yield from wait(st, th, lambda: not is_migration(proc.pt.get(v)),
                            f"migration entry at P{proc.pid} {v}")
            continue
        if isinstance(entry, Dev):
            outcome = yield from migrate_to_ram(st, th, entry.d)
            if outcome == "nomem":
                return ENOMEM
            continue
        if mode == "rw" or vma.kind == "shared":
            done = isinstance(entry, Present) and (entry.w or mode == "ro")
            if not done:
                res = yield from _fault(st, th, proc, v, mode == "rw")
                if res is not None:
                    return res
                continue
        elif entry is None:
            if not install_new(st, proc, v, False, True):
                return ENOMEM
            continue
        elif isinstance(entry, Zero | Present) and not (isinstance(entry, Present) and entry.x):
            if isinstance(entry, Present):
                folio = st.folios[entry.f]
                if pmd_mapped(proc, v):
                    yield from split_block(st, th, proc, block_of(v))
                    continue
                if folio.order == 0 and folio.refcount == 1:
                    put(st, proc, v, Present(entry.f, entry.i, entry.w, True))
                    continue
            _ran, out = yield from invalidate(
                st, th, proc, "clear", v, v + 1, None, True,
                partial(replace_entry, st, proc, v, entry, False, True))
            if out == "nomem":
                return ENOMEM
            continue
        elif isinstance(entry, Swap):
            res = yield from _fault(st, th, proc, v, False)
            if res is not None:
                return res
            continue
        assert isinstance(entry, Present)
        folio = st.folios[entry.f]
        folio.pincount += 1
        folio.refcount += 1
        st.note("folio", entry.f)
        return (entry.f, entry.i)


def unpin_page(st: State, fid: int) -> None:
    folio = st.folios[fid]
    folio.pincount -= 1
    folio.refcount -= 1
    st.dirty.add(("folio", fid))


def unpin_all(st: State, pins: dict[int, tuple[int, int]]) -> None:
    """Drop the pins; pages whose count reaches 0 are freed at once."""
    for k in sorted(pins):
        unpin_page(st, pins[k][0])
        st.page_ops += 1
    pins.clear()
    collect(st)


def pin_range(st: State, th: Thread, proc: Process, s: int, n: int,
              mode: Mode) -> Gen[OpResult | dict[int, tuple[int, int]]]:
    """Pin every page of [s, s+n) in order; an error unpins what was pinned."""
    pins: dict[int, tuple[int, int]] = {}
    for k in range(n):
        got = yield from pin_page(st, th, proc, s + k, mode)
        if not isinstance(got, tuple):
            unpin_all(st, pins)
            return got
        pins[k] = got
    return pins
