"""VMAs, page tables, folios and the ledger of SPEC §1 and §3.1.

The ledger:

    refcount(F)   = present PTEs mapping pages of F + PMDs mapping F + pins
                  + 1 if F is a page of a live shared object + 1 per migrator
    mapcount(F,i) = present PTEs mapping page i + PMDs mapping F
    refcount(d)   = device entries naming d + 1 per migrator holding d
    count(S)      = swap entries naming S

Every helper that adds or drops a reference keeps it.  A folio, device page
or slot whose count reaches 0 is freed by :func:`collect`, which callers run
at the end of an apply, or right after the action that dropped the last
reference outside an apply.  A PMD-mapped block ``b`` is in ``proc.pmds``
and its 512 entries are ``Present(F, i, w, x)`` with one ``w`` and ``x``.

To zap an entry is to make it ``none`` and drop what it held.  Helpers
never loop over ``none`` pages: they walk the dict of existing entries and
the VMA list (SPEC §5.4).
"""

from __future__ import annotations

from collections.abc import Callable

from model.ops import HUGE_PAGES

from .state import (
    Dev,
    DevicePage,
    Entry,
    Folio,
    MigD,
    MigF,
    Present,
    Process,
    SharedObject,
    State,
    Swap,
    SwapSlot,
    Vma,
    Zero,
)

# ------------------------------------------------------------------ VMAs


def vma_at(proc: Process, v: int) -> Vma | None:
    for vma in proc.vmas:
        if vma.start <= v < vma.end:
            return vma
    return None


def vmas_in(proc: Process, a: int, b: int) -> list[Vma]:
    """The VMAs overlapping [a, b), in address order."""
    return [vma for vma in proc.vmas if vma.start < b and a < vma.end]


def covered(proc: Process, a: int, b: int) -> bool:
    """True if VMAs cover every page of [a, b)."""
    pos = a
    for vma in vmas_in(proc, a, b):
        if vma.start > pos:
            return False
        pos = max(pos, vma.end)
    return pos >= b


def split_vma(proc: Process, addr: int) -> None:
    """Create a VMA boundary at ``addr`` (if a VMA spans it strictly)."""
    for idx, vma in enumerate(proc.vmas):
        if vma.start < addr < vma.end:
            right = Vma(addr, vma.end, vma.prot, vma.kind, vma.huge, vma.obj,
                        None if vma.offset is None else vma.offset + addr - vma.start)
            vma.end = addr
            proc.vmas.insert(idx + 1, right)
            return


def add_vma(proc: Process, vma: Vma) -> None:
    proc.vmas.append(vma)
    proc.vmas.sort(key=lambda v: v.start)


def remove_vmas(st: State, proc: Process, a: int, b: int) -> None:
    """Remove the VMA parts in [a, b); objects left unreferenced die."""
    split_vma(proc, a)
    split_vma(proc, b)
    proc.vmas = [v for v in proc.vmas if not (a <= v.start and v.end <= b)]
    update_objects(st)


def update_objects(st: State) -> None:
    """A shared object dies when no VMA refers to it; its pages lose its reference."""
    used = {v.obj for p in st.procs.values() for v in p.vmas if v.obj is not None}
    for obj in st.objects.values():
        if obj.alive and obj.id not in used:
            obj.alive = False
            for fid in obj.pages.values():
                folio = st.folios[fid]
                folio.obj = None
                unref_folio(st, folio)
            obj.pages = {}


# ----------------------------------------------------------- page tables


def get(st: State, proc: Process, v: int) -> Entry | None:
    st.page_ops += 1
    return proc.pt.get(v)


def put(st: State, proc: Process, v: int, entry: Entry | None) -> None:
    st.page_ops += 1
    if entry is None:
        proc.pt.pop(v, None)
    else:
        proc.pt[v] = entry


def vpns_in(proc: Process, a: int, b: int) -> list[int]:
    """The vpns of [a, b) holding a non-``none`` entry, in order."""
    if b - a <= 64:
        return [v for v in range(a, b) if v in proc.pt]
    return sorted(v for v in proc.pt if a <= v < b)


def block_of(v: int) -> int:
    return v - v % HUGE_PAGES


def pmd_mapped(proc: Process, v: int) -> bool:
    return block_of(v) in proc.pmds


# ---------------------------------------------------------------- folios


def alloc_folio(st: State, order: int, words: list[int] | None = None) -> Folio | None:
    """A new folio with no references, or None if ``frames`` would be exceeded."""
    size = 1 << order
    if st.frames_used + size > st.config.frames:
        return None
    folio = Folio(st.new_id("folio"), order, list(words) if words else [0] * size, [0] * size)
    st.folios[folio.id] = folio
    st.live.add(folio.id)
    st.frames_used += size
    st.dirty.add(("folio", folio.id))
    return folio


def alloc_dpage(st: State, owner: int, word: int) -> DevicePage | None:
    if st.device_pages_of(owner) >= st.config.device_frames:
        return None
    page = DevicePage(st.new_id("dpage"), owner, word)
    st.dpages[page.id] = page
    st.dirty.add(("dpage", page.id))
    return page


def alloc_slot(st: State, word: int) -> SwapSlot:
    slot = SwapSlot(st.new_id("slot"), word)
    st.slots[slot.id] = slot
    st.dirty.add(("slot", slot.id))
    return slot


def map_pte(st: State, fid: int, i: int) -> None:
    folio = st.folios[fid]
    folio.refcount += 1
    folio.mapcount[i] += 1
    st.note("folio", fid)


def unmap_pte(st: State, fid: int, i: int) -> None:
    folio = st.folios[fid]
    folio.refcount -= 1
    folio.mapcount[i] -= 1
    st.dirty.add(("folio", fid))


def unref_folio(st: State, folio: Folio) -> None:
    folio.refcount -= 1
    st.dirty.add(("folio", folio.id))


def unref_dpage(st: State, did: int) -> None:
    st.dpages[did].refcount -= 1
    st.dirty.add(("dpage", did))


def hold_dpage(st: State, did: int, holder: str) -> None:
    """A migrator holds device page ``did`` (refcount(d) += 1, SPEC §6.5)."""
    st.held_dpages[did] = holder
    st.dpages[did].refcount += 1
    st.note("dpage", did)


def release_dpage(st: State, did: int) -> None:
    """The migrator's hold goes (freed at the next collect if nothing names it)."""
    del st.held_dpages[did]
    unref_dpage(st, did)


def unref_slot(st: State, sid: int) -> None:
    st.slots[sid].count -= 1
    st.dirty.add(("slot", sid))


def collect(st: State) -> None:
    """Free every folio, device page and slot whose count reached 0."""
    for kind, num in sorted(st.dirty):
        if kind == "folio":
            folio = st.folios[num]
            if not folio.freed and folio.refcount <= 0:
                if folio.pincount > 0:
                    st.violate("pins_are_stable", f"folio {num} freed while pinned")
                folio.freed = True
                st.live.discard(num)
                st.frames_used -= folio.size
        elif kind == "dpage":
            page = st.dpages[num]
            if not page.freed and page.refcount <= 0:
                page.freed = True
        else:
            slot = st.slots[num]
            if not slot.freed and slot.count <= 0:
                slot.freed = True
    if st.touched is not None:
        st.touched |= st.dirty
    st.dirty.clear()


def live_folio(st: State, fid: int, what: str) -> Folio:
    """The folio ``fid`` for an access; a freed one is a use after free."""
    folio = st.folios[fid]
    if folio.freed:
        st.violate("no_use_after_free", f"{what} reaches freed folio {fid}")
    return folio


def live_dpage(st: State, did: int, what: str) -> DevicePage:
    page = st.dpages[did]
    if page.freed:
        st.violate("no_use_after_free", f"{what} reaches freed device page {did}")
    return page


def object_page(st: State, obj: SharedObject, index: int) -> Folio | None:
    """The object's page ``index``, allocated zeroed on first touch."""
    fid = obj.pages.get(index)
    if fid is not None:
        return st.folios[fid]
    folio = alloc_folio(st, 0)
    if folio is None:
        return None
    folio.obj = obj.id
    folio.index = index
    folio.refcount += 1
    obj.pages[index] = folio.id
    return folio


def entry_word(st: State, entry: Entry) -> int:
    """The word the entry's target holds (0 for ``zero``)."""
    if isinstance(entry, Present | MigF):
        return st.folios[entry.f].words[entry.i]
    if isinstance(entry, Dev | MigD):
        return st.dpages[entry.d].word
    if isinstance(entry, Swap):
        return st.slots[entry.slot].word
    return 0


# --------------------------------------------------------------- zapping


def split_pmd(st: State, proc: Process, base: int) -> None:
    """Replace the PMD at ``base`` by 512 PTEs to the same pages (refcount +511)."""
    if base not in proc.pmds:
        return
    proc.pmds.discard(base)
    entry = proc.pt[base]
    assert isinstance(entry, Present)
    folio = st.folios[entry.f]
    folio.refcount += HUGE_PAGES - 1
    st.page_ops += HUGE_PAGES
    st.note("folio", folio.id)


def zap(st: State, proc: Process, v: int) -> None:
    """Make the entry at ``v`` ``none`` and drop what it held (a PTE)."""
    entry = get(st, proc, v)
    if entry is None:
        return
    if isinstance(entry, Present):
        if pmd_mapped(proc, v):
            split_pmd(st, proc, block_of(v))
        unmap_pte(st, entry.f, entry.i)
    elif isinstance(entry, Swap):
        unref_slot(st, entry.slot)
    elif isinstance(entry, Dev):
        unref_dpage(st, entry.d)
    put(st, proc, v, None)


def zap_range(st: State, proc: Process, a: int, b: int) -> None:
    """Zap every entry of [a, b); whole PMD blocks are dropped as one mapping."""
    for base in sorted(proc.pmds):
        if a <= base and base + HUGE_PAGES <= b:
            entry = proc.pt[base]
            assert isinstance(entry, Present)
            folio = st.folios[entry.f]
            proc.pmds.discard(base)
            folio.refcount -= 1
            for i in range(HUGE_PAGES):
                folio.mapcount[i] -= 1
                put(st, proc, base + i, None)
            st.dirty.add(("folio", folio.id))
    for v in vpns_in(proc, a, b):
        zap(st, proc, v)


def cut_blocks(proc: Process, a: int, b: int,
               vma_changes: Callable[[Vma], bool] | None = None) -> list[int]:
    """PMD-mapped blocks that [a, b) overlaps partly, in address order
    (only in VMAs ``vma_changes`` accepts, if given)."""
    out = []
    for base in sorted(proc.pmds):
        end = base + HUGE_PAGES
        if base < b and a < end and not (a <= base and end <= b):
            vma = vma_at(proc, base)
            if vma_changes is None or (vma is not None and vma_changes(vma)):
                out.append(base)
    return out


def pmds_in(proc: Process, a: int, b: int) -> list[int]:
    """Every PMD-mapped block overlapping [a, b), in address order."""
    return [base for base in sorted(proc.pmds) if base < b and a < base + HUGE_PAGES]


def make_readonly(st: State, proc: Process, a: int, b: int) -> None:
    """Present, device and migration entries of [a, b) lose ``w``."""
    for v in vpns_in(proc, a, b):
        entry = proc.pt[v]
        if isinstance(entry, Present | MigF | Dev | MigD) and entry.w:
            put(st, proc, v, _with_w(entry, False))


def _with_w(entry: Entry, w: bool) -> Entry:
    if isinstance(entry, Present):
        return Present(entry.f, entry.i, w, entry.x)
    if isinstance(entry, MigF):
        return MigF(entry.f, entry.i, w, entry.x)
    if isinstance(entry, Dev):
        return Dev(entry.d, w, entry.x)
    if isinstance(entry, MigD):
        return MigD(entry.d, w, entry.x)
    return entry


def is_none_or_zero(entry: Entry | None) -> bool:
    return entry is None or isinstance(entry, Zero)
