"""Kernel operations with no user contract, SPEC §7: migrate, reclaim, oomreap.

migrate P s n / reclaim P s n (no mmap_lock)::

  folios = the system folios (not zero, not shared-object pages) a present
           entry of P in [s,s+n) maps, ordered by their lowest such vpn
  for each folio F, a Y3 between folios:
    skip if F is freed, no longer mapped by P in the range, or held by a migrator
    hold F (refcount +1)
    repeat: in the first process, not dead, with a present entry mapping F, at
            its lowest such vpn v: PMD-mapped -> split that block; else
            I(clear, the maximal run from v mapping F); apply: each entry of the
            run still mapping F -> migration(F,i,w,x)
    until no process has a present entry mapping F
    in the step that runs the last end:
      no migration(F) entry left     -> release F; not counted
      refcount(F) > 1 (a pin), or no frames for G (migrate only)
                                     -> restore every migration entry; release F
      migrate -> new folio G, same order and words; entries -> present(G,i,w,x)
      reclaim -> a slot per page named; entries -> swap(slot)
  result: the number of pages of the folios moved

oomreap P: [R]; per private VMA a non-blockable I(unmap, VMA) zapping it;
then P is killed.
"""

from __future__ import annotations

from functools import partial

from model.ops import OK, Migrate, Num, Oomreap, OpResult, Reclaim

from .checks import EINVAL, proc_handle, range_ok, state_err
from .faults import split_block
from .locks import mmap_read
from .mm import (
    alloc_folio,
    alloc_slot,
    block_of,
    collect,
    get,
    map_pte,
    pmd_mapped,
    put,
    split_pmd,
    unmap_pte,
    unref_folio,
    vpns_in,
    zap_range,
)
from .notifier import invalidate
from .state import MigF, Present, Process, State, Swap
from .threads import Gen, Thread, y


def _maps(entry: object, fid: int) -> bool:
    return isinstance(entry, Present) and entry.f == fid


def _first_mapping(st: State, fid: int) -> tuple[Process, int] | None:
    for pid in sorted(st.procs):
        proc = st.procs[pid]
        if proc.state == "dead":
            continue
        vpns = [v for v, e in proc.pt.items() if _maps(e, fid)]
        if vpns:
            return proc, min(vpns)
    return None


def _to_migration(st: State, proc: Process, a: int, b: int, fid: int) -> None:
    for v in range(a, b):
        entry = get(st, proc, v)
        if isinstance(entry, Present) and entry.f == fid:
            if pmd_mapped(proc, v):
                split_pmd(st, proc, block_of(v))
            put(st, proc, v, MigF(fid, entry.i, entry.w, entry.x))
            unmap_pte(st, fid, entry.i)


def _finish(st: State, fid: int, reclaim: bool) -> int:
    """Move or restore the folio once no present entry maps it; pages moved."""
    folio = st.folios[fid]
    migs = [(proc, v, e) for pid in sorted(st.procs) for proc in [st.procs[pid]]
            for v, e in sorted(proc.pt.items()) if isinstance(e, MigF) and e.f == fid]
    moved = 0
    if migs:
        new = None
        if folio.refcount <= 1 and not reclaim:
            new = alloc_folio(st, folio.order, folio.words)
        if folio.refcount > 1 or (not reclaim and new is None):
            if folio.pincount > 0:
                st.costs["reclaim_failed_pinned" if reclaim else "migrate_failed_pinned"] += 1
            for proc, v, e in migs:
                put(st, proc, v, Present(fid, e.i, e.w, e.x))
                map_pte(st, fid, e.i)
        else:
            if folio.pincount > 0:
                st.violate("pins_are_stable", f"pinned folio {fid} moved")
            if new is not None:
                for proc, v, e in migs:
                    put(st, proc, v, Present(new.id, e.i, e.w, e.x))
                    map_pte(st, new.id, e.i)
            else:
                named = sorted({e.i for _, _, e in migs})
                slots = {i: alloc_slot(st, folio.words[i]) for i in named}
                for proc, v, e in migs:
                    put(st, proc, v, Swap(slots[e.i].id))
                    slots[e.i].count += 1
            moved = folio.size
    del st.held_folios[fid]
    unref_folio(st, folio)
    collect(st)
    return moved


def op_migrate_reclaim(st: State, th: Thread, op: Migrate | Reclaim) -> Gen[OpResult]:
    proc = proc_handle(st, op.p)
    if proc is None or not range_ok(op.s, op.n):
        return EINVAL
    if (e := state_err(proc, th)) is not None:
        return e
    a, b = op.s, op.s + op.n
    first: dict[int, int] = {}
    for v in vpns_in(proc, a, b):
        entry = proc.pt[v]
        if isinstance(entry, Present) and st.folios[entry.f].obj is None:
            first.setdefault(entry.f, v)
    moved = 0
    for idx, fid in enumerate(sorted(first, key=lambda f: first[f])):
        if idx > 0:
            yield from y()
        folio = st.folios[fid]
        if (folio.freed or fid in st.held_folios
                or not any(_maps(proc.pt[v], fid) for v in vpns_in(proc, a, b))):
            continue
        st.held_folios[fid] = th.name
        folio.refcount += 1
        st.note("folio", fid)
        while (found := _first_mapping(st, fid)) is not None:
            mproc, v = found
            if pmd_mapped(mproc, v):
                yield from split_block(st, th, mproc, block_of(v))
                continue
            end = v
            while _maps(mproc.pt.get(end), fid):
                end += 1
            yield from invalidate(st, th, mproc, "clear", v, end, None, True,
                                  partial(_to_migration, st, mproc, v, end, fid))
        moved += _finish(st, fid, isinstance(op, Reclaim))
    return Num(moved)


def op_oomreap(st: State, th: Thread, op: Oomreap) -> Gen[OpResult]:
    proc = proc_handle(st, op.p)
    if proc is None:
        return EINVAL
    if (e := state_err(proc, th)) is not None:
        return e
    yield from mmap_read(st, th, proc)
    if (e := state_err(proc, th)) is not None:
        return e
    for vma in [v for v in proc.vmas if v.kind == "private"]:
        lo, hi = vma.start, vma.end
        yield from invalidate(st, th, proc, "unmap", lo, hi, None, False,
                              partial(zap_range, st, proc, lo, hi))
    proc.state = "killed"
    return OK
