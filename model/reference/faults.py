"""CPU faults, SPEC §3.2, and the PMD splits of §3.1.

``fault(v)`` acts on the entry at v by this table, repeatedly, until no
fault is needed (read: present or zero; write: present with w):

| entry              | read fault            | write fault                          |
|--------------------|-----------------------|--------------------------------------|
| none, private      | zero                  | new zeroed folio w x (THP if it can) |
| none, shared       | the object's page     | same                                 |
| zero               | --                    | I(clear,[v,v+1)); apply: new folio   |
| swap(S)            | new folio, x iff count(S) was 1, w iff x and VMA w; always x on write |
| present, not w     | --                    | in place / reuse / split + copy      |
| migration          | wait until it is not migration (keeping mmap_lock)           |
| device(d)          | migrate d back (§6.5)                                        |

An apply that replaces an entry first checks that it is still the entry the
fault acted on; if not it changes nothing and the fault acts again.  A page
is allocated in the action that installs it; a failed allocation changes
nothing and the access gives ``ENOMEM``.

Return codes of :func:`fault`:

| result   | meaning                                            |
|----------|----------------------------------------------------|
| None     | no fault is needed any more at v                   |
| SIGSEGV  | no VMA at v, or the VMA lacks r / w                |
| ENOMEM   | an allocation failed (after any invalidation)      |
"""

from __future__ import annotations

from functools import partial

from model.ops import HUGE_PAGES, SIGSEGV, Err, Errno, Segv

from .migrate_back import migrate_to_ram
from .mm import (
    alloc_folio,
    block_of,
    get,
    map_pte,
    object_page,
    pmd_mapped,
    put,
    split_pmd,
    unmap_pte,
    unref_slot,
    vma_at,
)
from .notifier import invalidate
from .state import Dev, Entry, MigD, MigF, Present, Process, State, Swap, Zero
from .threads import Gen, Thread, wait

ENOMEM = Err(Errno.ENOMEM)


def split_block(st: State, th: Thread, proc: Process, base: int) -> Gen[None]:
    """A PMD split: ``I(clear, block)``; apply: PMD -> 512 PTEs, if still PMD-mapped."""
    yield from invalidate(st, th, proc, "clear", base, base + HUGE_PAGES, None, True,
                          lambda: split_pmd(st, proc, base))


def split_blocks(st: State, th: Thread, proc: Process, bases: list[int]) -> Gen[None]:
    for base in bases:
        yield from split_block(st, th, proc, base)


def needs_fault(entry: Entry | None, write: bool) -> bool:
    if write:
        return not (isinstance(entry, Present) and entry.w)
    return not isinstance(entry, Present | Zero)


def is_migration(entry: Entry | None) -> bool:
    return isinstance(entry, MigF | MigD)


def install_new(st: State, proc: Process, v: int, w: bool, x: bool,
                word: int = 0) -> bool:
    """Install a new order-0 folio holding ``word`` at v; False if no frame."""
    folio = alloc_folio(st, 0, [word])
    if folio is None:
        return False
    map_pte(st, folio.id, 0)
    put(st, proc, v, Present(folio.id, 0, w, x))
    return True


def _try_thp(st: State, proc: Process, v: int) -> bool:
    """Map a new PMD-mapped THP over v's block if the rules allow it."""
    vma = vma_at(proc, v)
    base = block_of(v)
    if vma is None or not vma.huge or base < vma.start or base + HUGE_PAGES > vma.end:
        return False
    if any(base <= u < base + HUGE_PAGES for u in proc.pt):
        return False
    folio = alloc_folio(st, 9)
    if folio is None:
        return False
    proc.pmds.add(base)
    folio.refcount += 1
    for i in range(HUGE_PAGES):
        folio.mapcount[i] += 1
        put(st, proc, base + i, Present(folio.id, i, True, True))
    return True


def same_entry(st: State, entry: Entry | None, seen: Entry) -> bool:
    """``entry`` is still ``seen``: equal, or the same page with the same
    bits under a new folio id, as a THP split leaves it (DECISIONS D23)."""
    if entry == seen:
        return True
    if not (isinstance(entry, Present) and isinstance(seen, Present)):
        return False

    def page(e: Present) -> tuple[int, int]:
        return st.folios[e.f].split_from or (e.f, e.i)
    return (entry.w, entry.x) == (seen.w, seen.x) and page(entry) == page(seen)


def replace_entry(st: State, proc: Process, v: int, seen: Entry, w: bool, x: bool) -> str:
    """Apply of a fault's I(clear,[v,v+1)): replace ``seen`` by a new folio
    (a copy of its page if ``seen`` is present, else zeroed)."""
    entry = get(st, proc, v)
    if entry is None or not same_entry(st, entry, seen) or pmd_mapped(proc, v):
        return "stale"
    word = st.folios[entry.f].words[entry.i] if isinstance(entry, Present) else 0
    folio = alloc_folio(st, 0, [word])
    if folio is None:
        return "nomem"
    if isinstance(entry, Present):
        unmap_pte(st, entry.f, entry.i)
    map_pte(st, folio.id, 0)
    put(st, proc, v, Present(folio.id, 0, w, x))
    return "ok"


def fault(st: State, th: Thread, proc: Process, v: int, write: bool) -> Gen[Err | Segv | None]:
    """Fault v in until no fault is needed (the caller holds mmap_lock)."""
    while True:
        vma = vma_at(proc, v)
        if vma is None or not vma.readable or (write and not vma.writable):
            return SIGSEGV
        entry = get(st, proc, v)
        if not needs_fault(entry, write):
            return None
        if entry is None:
            if vma.kind == "shared":
                assert vma.obj is not None and vma.offset is not None
                folio = object_page(st, st.objects[vma.obj], vma.offset + v - vma.start)
                if folio is None:
                    return ENOMEM
                map_pte(st, folio.id, 0)
                put(st, proc, v, Present(folio.id, 0, vma.writable, False))
            elif not write:
                put(st, proc, v, Zero())
            elif not _try_thp(st, proc, v) and not install_new(st, proc, v, True, True):
                return ENOMEM
        elif isinstance(entry, Zero):
            _ran, res = yield from invalidate(
                st, th, proc, "clear", v, v + 1, None, True,
                partial(replace_entry, st, proc, v, entry, True, True))
            if res == "nomem":
                return ENOMEM
        elif isinstance(entry, Swap):
            slot = st.slots[entry.slot]
            x = write or slot.count == 1
            if not install_new(st, proc, v, x and vma.writable, x, slot.word):
                return ENOMEM
            unref_slot(st, entry.slot)
        elif isinstance(entry, Present):
            result = yield from _write_protected(st, th, proc, v, entry)
            if result is not None:
                return result
        elif is_migration(entry):
            yield from wait(st, th, lambda: not is_migration(proc.pt.get(v)),
                            f"migration entry at P{proc.pid} {v}")
        elif isinstance(entry, Dev):
            outcome = yield from migrate_to_ram(st, th, entry.d)
            if outcome == "nomem":
                return ENOMEM


def _write_protected(st: State, th: Thread, proc: Process, v: int,
                     entry: Present) -> Gen[Err | None]:
    """A write fault on a present entry without w."""
    vma = vma_at(proc, v)
    assert vma is not None
    folio = st.folios[entry.f]
    if vma.kind == "shared" or entry.x:
        if pmd_mapped(proc, v):
            base = block_of(v)
            for i in range(HUGE_PAGES):
                put(st, proc, base + i, Present(entry.f, i, True, entry.x))
        else:
            put(st, proc, v, Present(entry.f, entry.i, True, entry.x))
        return None
    if folio.order == 0 and folio.refcount == 1:
        put(st, proc, v, Present(entry.f, entry.i, True, True))
        return None
    if pmd_mapped(proc, v):
        yield from split_block(st, th, proc, block_of(v))
        return None
    _ran, res = yield from invalidate(
        st, th, proc, "clear", v, v + 1, None, True,
        lambda: replace_entry(st, proc, v, entry, True, True))
    return ENOMEM if res == "nomem" else None
