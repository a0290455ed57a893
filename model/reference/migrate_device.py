"""Migration to a device's private memory, SPEC §6.1 (``migrate_to_dev``):
the core's part, which the mirror and plug-in drivers share (Linux's
``migrate_vma_setup``/``migrate_vma_pages``/``migrate_vma_finalize``)::

  mmap_lock held for reading; [a,b) covered by VMAs allowing r, else EINVAL
  split every PMD mapping in [a,b)   (a Y3 each, as a THP split)
  I(migrate, owner = D, [a,b)); apply:
    split every order-9 folio of [a,b) that no PMD maps and no one else holds
    for v in the private VMAs of [a,b), in order, while D has a free device frame:
      none or zero                   -> new device page d (word 0), device(d, r of VMA w, x)
      present(F,i,w,x), order 0, refcount(F) = 1
                                     -> new device page d with F's word, device(d, w, x)
      anything else                  -> stays
  the driver is told which pages moved, as (v, d, w); mapping them in its
  table is the driver's business (a mirror maps them unless it raced, D15)

The migrate-back of a device page is ``migrate_back.py`` (SPEC §6.5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from model.ops import Err

from .checks import EINVAL
from .faults import split_blocks
from .mm import alloc_dpage, covered, get, hold_dpage, pmds_in, put, unmap_pte, vmas_in, vpns_in
from .notifier import invalidate
from .state import Dev, Device, Folio, Present, Process, State, Zero
from .threads import Gen, Thread

T = TypeVar("T")


def migrate_vma(st: State, th: Thread, dev: Device, proc: Process, a: int, b: int,
                apply: Callable[[], T]) -> Gen[T | Err | None]:
    """Migrate [a,b) of ``proc`` (its mmap_lock held for reading) to ``dev``'s
    memory: EINVAL, or what ``apply`` (``to_device`` and the driver's mapping)
    gave (None if a callback failed: nothing moved)."""
    if not covered(proc, a, b) or any(not v.readable for v in vmas_in(proc, a, b)):
        return EINVAL
    yield from split_blocks(st, th, proc, pmds_in(proc, a, b))
    _ok, got = yield from invalidate(st, th, proc, "migrate", a, b, dev.id, True, apply)
    return got


def to_device(st: State, dev: Device, proc: Process, a: int, b: int,
              holder: str | None = None) -> list[tuple[int, int, bool]]:
    """The apply of a migration to D's memory, I(migrate, owner = D, [a,b))
    (``migrate_vma_pages`` and ``migrate_vma_finalize``): the pages moved,
    as (v, device page, w), in order.  The driver maps them, or not; with
    ``holder``, each stays held by that thread from its move until the
    driver's ``migrate_finalize`` (a CPU fault on it waits)."""
    moved: list[tuple[int, int, bool]] = []
    thps = []
    for u in vpns_in(proc, a, b):
        seen = proc.pt[u]
        if isinstance(seen, Present) and st.folios[seen.f].order == 9:
            if seen.f not in thps:
                thps.append(seen.f)
    for fid in thps:
        folio = st.folios[fid]
        if not _pmd_maps(st, fid) and folio.refcount == sum(folio.mapcount):
            if folio.pincount > 0:
                st.violate("pins_are_stable", f"pinned folio {fid} split")
            _split_folio(st, folio)
    free = st.config.device_frames - st.device_pages_of(dev.id)
    for vma in vmas_in(proc, a, b):
        if vma.kind != "private":
            continue
        for v in range(max(a, vma.start), min(b, vma.end)):
            if free <= 0:
                return moved
            entry = get(st, proc, v)
            if entry is None or isinstance(entry, Zero):
                free -= 1
                page = alloc_dpage(st, dev.id, 0)
                assert page is not None
                page.refcount += 1
                w, x = vma.writable, True
            elif (isinstance(entry, Present) and st.folios[entry.f].order == 0
                  and st.folios[entry.f].refcount == 1):
                folio = st.folios[entry.f]
                if folio.pincount > 0:
                    st.violate("pins_are_stable", f"pinned folio {folio.id} moved to a device")
                free -= 1
                page = alloc_dpage(st, dev.id, folio.words[0])
                assert page is not None
                page.refcount += 1
                unmap_pte(st, entry.f, entry.i)
                w, x = entry.w, entry.x
            else:
                if isinstance(entry, Present) and st.folios[entry.f].pincount > 0:
                    st.costs["to_device_skipped_pinned"] += 1
                continue
            put(st, proc, v, Dev(page.id, w, x))
            moved.append((v, page.id, w))
            if holder is not None:
                hold_dpage(st, page.id, holder)
    return moved


def _split_folio(st: State, folio: Folio) -> None:
    """Split an order-9 folio into 512 order-0 folios (migrate_to_dev's apply)."""
    new_ids: dict[int, int] = {}
    for i in range(folio.size):
        if folio.mapcount[i] > 0:
            new_ids[i] = _fresh_order0(st, folio.words[i], folio.mapcount[i])
            st.folios[new_ids[i]].split_from = (folio.id, i)
    folio.freed = True
    st.note("folio", folio.id)
    folio.split_into = new_ids
    st.live.discard(folio.id)
    folio.refcount = 0
    st.frames_used -= folio.size
    for other in st.procs.values():
        for v, entry in list(other.pt.items()):
            if isinstance(entry, Present) and entry.f == folio.id:
                other.pt[v] = Present(new_ids[entry.i], 0, entry.w, entry.x)
                st.page_ops += 1
    for dev in st.devices.values():
        for v, (target, w) in list(dev.table.items()):
            if target[0] == "folio" and target[1] == folio.id and target[2] in new_ids:
                dev.table[v] = (("folio", new_ids[target[2]], 0), w)


def _fresh_order0(st: State, word: int, maps: int) -> int:
    """An order-0 folio taking over one page of a split THP (its frame is reused)."""
    folio = Folio(st.new_id("folio"), 0, [word], [maps], refcount=maps)
    st.folios[folio.id] = folio
    st.live.add(folio.id)
    st.frames_used += 1
    st.note("folio", folio.id)
    return folio.id


def _pmd_maps(st: State, fid: int) -> bool:
    for proc in st.procs.values():
        for base in proc.pmds:
            entry = proc.pt.get(base)
            if isinstance(entry, Present) and entry.f == fid:
                return True
    return False
