"""Migrate-back of a device page, SPEC §6.5.

A CPU fault, another device's walk, the owner's write walk on a read-only
entry, a pin, or an eviction triggers the migrate-back of device page d; M
is the device that owns d.  The trigger calls :func:`migrate_to_ram`, which
reaches M's driver through its record (``pgmap->ops->migrate_to_ram``); the
driver runs :func:`migrate_back` and keeps its own table::

    if another migrator holds d: wait until none does; the trigger acts again
    hold d (refcount(d) += 1)
    repeat: the first process in order, not dead, with device(d, ...) at some v:
            I(migrate, owner = M, [v,v+1)); apply: if the entry at v is still
            device(d, w, x), it becomes migration(d, w, x)
    until no process has a device(d, ...) entry
    in the step that runs the last end:
      no migration(d) entry left -> release d; nothing moved
      no frame for a folio       -> every migration(d,w,x) -> device(d,w,x);
                                    release d; ENOMEM to the trigger
      else -> new folio G with d's word; migration(d,w,x) -> present(G,0,w,x);
              M's table drops every entry naming d (M's driver); release d
"""

from __future__ import annotations

from typing import Literal

from .mm import alloc_folio, collect, get, hold_dpage, map_pte, put, release_dpage, unref_dpage
from .notifier import invalidate
from .state import Dev, MigD, Present, Process, State
from .threads import Gen, Thread, wait

Outcome = Literal["moved", "nothing", "again", "nomem"]


def _first_device_entry(st: State, d: int) -> tuple[Process, int] | None:
    for pid in sorted(st.procs):
        proc = st.procs[pid]
        if proc.state == "dead":
            continue
        vpns = [v for v, e in proc.pt.items() if isinstance(e, Dev) and e.d == d]
        if vpns:
            return proc, min(vpns)
    return None


def _migration_entries(st: State, d: int) -> list[tuple[Process, int, MigD]]:
    out = []
    for pid in sorted(st.procs):
        proc = st.procs[pid]
        for v in sorted(proc.pt):
            e = proc.pt[v]
            if isinstance(e, MigD) and e.d == d:
                out.append((proc, v, e))
    return out


def migrate_to_ram(st: State, th: Thread, d: int) -> Gen[Outcome]:
    """Migrate device page ``d`` back through its owner's driver."""
    driver = st.drivers.get(st.devices[st.dpages[d].owner].kind)
    hook = driver.migrate_to_ram if driver is not None else None
    outcome: Outcome = yield from (hook or migrate_back)(st, th, d)
    return outcome


def migrate_back(st: State, th: Thread, d: int) -> Gen[Outcome]:
    """Migrate device page ``d`` back to a system folio (SPEC §6.5), all but
    the owner's table: the driver's ``migrate_to_ram`` drops those entries."""
    holder = st.held_dpages.get(d)
    if holder is not None and holder != th.name:
        yield from wait(st, th, lambda: d not in st.held_dpages, f"migrator of device page {d}")
        return "again"
    page = st.dpages[d]
    owner = page.owner
    hold_dpage(st, d, th.name)
    while True:
        found = _first_device_entry(st, d)
        if found is None:
            break
        proc, v = found

        def to_migration(proc: Process = proc, v: int = v) -> None:
            entry = get(st, proc, v)
            if isinstance(entry, Dev) and entry.d == d:
                put(st, proc, v, MigD(d, entry.w, entry.x))
                unref_dpage(st, d)

        yield from invalidate(st, th, proc, "migrate", v, v + 1, owner, True, to_migration)
    migs = _migration_entries(st, d)
    outcome: Outcome
    if not migs:
        outcome = "nothing"
    else:
        folio = alloc_folio(st, 0, [page.word])
        if folio is None:
            for proc, v, e in migs:
                put(st, proc, v, Dev(d, e.w, e.x))
                page.refcount += 1
                st.note("dpage", d)
            outcome = "nomem"
        else:
            for proc, v, e in migs:
                put(st, proc, v, Present(folio.id, 0, e.w, e.x))
                map_pte(st, folio.id, 0)
            outcome = "moved"
    release_dpage(st, d)
    collect(st)
    return outcome
