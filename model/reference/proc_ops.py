"""fork (SPEC §3.3) and exit (§3.1): the ops that make and end processes.

fork P::

    [W]; create child C (the reserved pid, live): a copy of every VMA
    for each private VMA of P in order:
      split the PMD mappings of folios with pincount > 0 in it
      I(protection_page, VMA); apply, for each entry of P in the VMA:
        present, pincount 0  -> both present(F,i,false,false), refcount/mapcount +1
                                (a PMD stays a PMD in both)
        present, pincount >0 -> C: present(G,0,w',true), G a new copy; P unchanged
        zero -> zero; swap(S) -> swap(S), count +1
        device(d,w,x) -> device(d,false,false) in both, refcount(d) +1
        migration -> the same target with w and x false, in both
      ENOMEM in a copy: the apply stops, C's entries are zapped and C dies;
      fork gives ENOMEM when that invalidation ends

Pinned status is judged at apply, after the callbacks.

exit P: [W]; I(release, all); I(unmap, all) zapping everything and removing
every VMA; then P and its devices are dead.
"""

from __future__ import annotations

from functools import partial

from model.ops import ADDRESS_PAGES, HUGE_PAGES, OK, Exit, Fork, HandleResult, OpResult

from .checks import EINVAL, ENOMEM, proc_handle, state_err
from .faults import split_blocks
from .locks import mmap_write
from .mm import (
    alloc_folio,
    block_of,
    map_pte,
    pmds_in,
    put,
    remove_vmas,
    split_pmd,
    vpns_in,
    zap_range,
)
from .notifier import invalidate
from .state import Dev, MigD, MigF, Present, Process, State, Swap, Vma, Zero
from .threads import Gen, Thread


def _fork_apply(st: State, parent: Process, child: Process, vma: Vma) -> bool:
    """Copy the entries of one private VMA; False (and C dead) on ENOMEM."""
    for v in vpns_in(parent, vma.start, vma.end):
        entry = parent.pt[v]
        base = block_of(v)
        if isinstance(entry, Present):
            folio = st.folios[entry.f]
            if base in parent.pmds and folio.pincount > 0:
                split_pmd(st, parent, base)
            if folio.pincount > 0:
                copy = alloc_folio(st, 0, [folio.words[entry.i]])
                if copy is None:
                    zap_range(st, child, 0, ADDRESS_PAGES)
                    child.state = "dead"
                    child.vmas = []
                    remove_vmas(st, child, 0, ADDRESS_PAGES)
                    return False
                map_pte(st, copy.id, 0)
                put(st, child, v, Present(copy.id, 0, vma.writable, True))
            elif base in parent.pmds:
                if v != base:
                    continue
                child.pmds.add(base)
                folio.refcount += 1
                st.note("folio", folio.id)
                for i in range(HUGE_PAGES):
                    folio.mapcount[i] += 1
                    shared = Present(entry.f, i, False, False)
                    put(st, parent, base + i, shared)
                    put(st, child, base + i, shared)
            else:
                map_pte(st, entry.f, entry.i)
                shared = Present(entry.f, entry.i, False, False)
                put(st, parent, v, shared)
                put(st, child, v, shared)
        elif isinstance(entry, Zero):
            put(st, child, v, Zero())
        elif isinstance(entry, Swap):
            st.slots[entry.slot].count += 1
            st.note("slot", entry.slot)
            put(st, child, v, entry)
        elif isinstance(entry, Dev):
            st.dpages[entry.d].refcount += 1
            st.note("dpage", entry.d)
            put(st, parent, v, Dev(entry.d, False, False))
            put(st, child, v, Dev(entry.d, False, False))
        elif isinstance(entry, MigF):
            put(st, parent, v, MigF(entry.f, entry.i, False, False))
            put(st, child, v, MigF(entry.f, entry.i, False, False))
        elif isinstance(entry, MigD):
            put(st, parent, v, MigD(entry.d, False, False))
            put(st, child, v, MigD(entry.d, False, False))
    return True


def op_fork(st: State, th: Thread, op: Fork) -> Gen[OpResult]:
    parent = proc_handle(st, op.p)
    if parent is None or op.child in st.procs or op.child < 0:
        return EINVAL
    if (e := state_err(parent, th)) is not None:
        return e
    yield from mmap_write(st, th, parent)
    if (e := state_err(parent, th)) is not None:
        return e
    child = Process(op.child)
    child.vmas = [Vma(v.start, v.end, v.prot, v.kind, v.huge, v.obj, v.offset)
                  for v in parent.vmas]
    st.procs[child.pid] = child
    for vma in list(parent.vmas):
        if vma.kind == "shared":
            continue
        pinned = [base for base in pmds_in(parent, vma.start, vma.end)
                  if st.folios[parent.pt[base].f].pincount > 0]  # type: ignore[union-attr]
        yield from split_blocks(st, th, parent, pinned)
        _ran, ok = yield from invalidate(
            st, th, parent, "protection_page", vma.start, vma.end, None, True,
            partial(_fork_apply, st, parent, child, vma))
        if ok is False:
            return ENOMEM
    child.valid = True
    return HandleResult("P", child.pid)


def op_exit(st: State, th: Thread, op: Exit) -> Gen[OpResult]:
    proc = proc_handle(st, op.p)
    if proc is None:
        return EINVAL
    if (e := state_err(proc, th)) is not None:
        return e
    yield from mmap_write(st, th, proc)
    if (e := state_err(proc, th)) is not None:
        return e

    def release() -> None:
        proc.released = True

    def unmap_all() -> None:
        zap_range(st, proc, 0, ADDRESS_PAGES)
        remove_vmas(st, proc, 0, ADDRESS_PAGES)

    yield from invalidate(st, th, proc, "release", 0, ADDRESS_PAGES, None, True, release)
    yield from invalidate(st, th, proc, "unmap", 0, ADDRESS_PAGES, None, True, unmap_all)
    proc.state = "dead"
    for dev in st.devices.values():
        if dev.pid == proc.pid:
            dev.dead = True
    return OK
