"""The invariants of SPEC §8.2 that an implementation checks on its own
structures: 1-3 and 6-10, as named predicates over the state.

Each predicate returns a list of problems (empty when it holds) and is run
after every step when ``config.checks`` is on.  The access clauses are
checked where the access happens: ``no_use_after_free`` in
``mm.live_folio``/``mm.live_dpage`` at every CPU, device, job or DMA
access, and ``no_block_when_nonblockable`` in ``threads.wait``.  The
history-dependent clauses are checked at their event: 6(d) at every commit
whose ``read_retry`` is false, 7's "ends exactly once" in the notifier's
``end``, 9's "no invalidation starts after exit" at invalidation start, 3's
"never freed or moved while pinned" where a folio is freed or moved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from model.ops import HUGE_PAGES

from .devices import table_of
from .mm import vma_at
from .state import Dev, MigD, MigF, Present, State, Swap, Zero
from .threads import Thread


def no_use_after_free(st: State) -> list[str]:
    """1: no entry, table entry or pin reaches a freed folio or device page."""
    out = []
    live = st.live
    for proc in st.procs.values():
        for v, e in proc.pt.items():
            cls = type(e)
            if cls is Present or cls is MigF:
                if e.f not in live:  # type: ignore[union-attr]
                    out.append(f"P{proc.pid} {v} maps freed folio {e.f}")  # type: ignore
            elif cls is Dev or cls is MigD:
                if st.dpages[e.d].freed:  # type: ignore[union-attr]
                    out.append(f"P{proc.pid} {v} names freed device page {e.d}")  # type: ignore
            elif isinstance(e, Swap) and st.slots[e.slot].freed:
                out.append(f"P{proc.pid} {v} names freed swap slot {e.slot}")
    for dev in st.devices.values():
        for v, (target, _w) in table_of(st, dev).items():
            kind, num, _i = target
            if (kind == "folio" and st.folios[num].freed) or (
                    kind == "dpage" and st.dpages[num].freed):
                out.append(f"D{dev.id} table {v} reaches freed {kind} {num}")
    for reg in st.regions.values():
        for k, (fid, _i) in reg.pins.items():
            if st.folios[fid].freed:
                out.append(f"R{reg.id} pin {k} reaches freed folio {fid}")
    return out


def device_entries_follow_cpu(st: State) -> list[str]:
    """2: every device table entry is justified by (a), (b), (c) or (d).
    (a): an invalidation covering v whose callback for a subscription of this
    device covering v has not returned (a mirror has one, over everything)."""
    out = []
    for dev in st.devices.values():
        table = table_of(st, dev)
        if not table:
            continue
        proc = st.procs[dev.pid]
        pending = [(max(inv.start, sub.start), min(inv.end, sub.end))
                   for inv in proc.notifier.running.values()
                   for sub in (st.subs[sid] for sid in inv.pending)
                   if sub.owner == dev.id and sub.owner_kind == dev.kind]
        for v, (target, w) in sorted(table.items()):
            if any(a <= v < b for a, b in pending):
                continue  # (a)
            entry = proc.pt.get(v)
            vma = vma_at(proc, v)
            kind, num, i = target
            if kind == "folio" and isinstance(entry, Present) and (entry.f, entry.i) == (num, i) \
                    or kind == "zero" and isinstance(entry, Zero):
                wok = not w or (isinstance(entry, Present) and entry.w
                                and vma is not None and vma.writable)
                if vma is not None and vma.readable and wok:
                    continue  # (b)
            if kind == "dpage" and isinstance(entry, Dev) and entry.d == num \
                    and st.dpages[num].owner == dev.id and (not w or entry.w):
                continue  # (c)
            if kind == "dpage" and isinstance(entry, MigD) and entry.d == num \
                    and st.dpages[num].owner == dev.id and num in st.held_dpages:
                continue  # (d)
            out.append(f"D{dev.id} table {v} -> {target} w={w} but CPU entry is {entry}")
    return out


def pins_are_stable(st: State) -> list[str]:
    """3: a pinned page stays the same live folio page; pincounts cover the pins."""
    out = []
    pins: dict[int, int] = defaultdict(int)
    for reg in st.regions.values():
        for fid, _i in reg.pins.values():
            pins[fid] += 1
    for dev in st.devices.values():
        for _kind, fid, _i in dev.pins:
            pins[fid] += 1
    for fid, count in pins.items():
        folio = st.folios[fid]
        if folio.pincount < count:
            out.append(f"folio {fid} has pincount {folio.pincount} < {count} pins")
    return out


def seq_protocol(st: State) -> list[str]:
    """6 (a)-(c): seq monotonic, odd only while active, invalidate_seq odd and
    <= seq, the tree frozen while seq is odd."""
    out = []
    for proc in st.procs.values():
        n = proc.notifier
        if n.seq < n.last_seq:
            out.append(f"P{proc.pid} seq decreased {n.last_seq} -> {n.seq}")
        n.last_seq = n.seq
        if n.seq % 2 == 1 and n.active <= 0:
            out.append(f"P{proc.pid} seq {n.seq} odd with active {n.active}")
        for sid in n.tree:
            s = st.subs[sid].invalidate_seq
            if s % 2 == 0 or s > n.seq or (s == n.seq and n.seq % 2 == 0):
                out.append(f"P{proc.pid} sub {sid} invalidate_seq {s}, seq {n.seq}")
        if n.seq % 2 == 1 and n.tree_when_odd is not None and frozenset(n.tree) != n.tree_when_odd:
            out.append(f"P{proc.pid} tree changed while seq {n.seq} is odd")
    return out


def pairing(st: State) -> list[str]:
    """7: active equals the number of invalidations between start and end."""
    return [f"P{p.pid} active {p.notifier.active} != {len(p.notifier.running)} running"
            for p in st.procs.values() if p.notifier.active != len(p.notifier.running)]


def release_is_final(st: State) -> list[str]:
    """9: once exit's release callbacks have returned, P's devices hold no
    table entry."""
    return [f"D{dev.id} has table entries after P{dev.pid}'s release"
            for dev in st.devices.values() if table_of(st, dev) and st.procs[dev.pid].released]


def accounting(st: State, threads: list[Thread]) -> list[str]:
    """10: the ledger of §1 holds; limits hold; writable private entries are
    exclusive; nothing is in use once every process is dead, every region
    with no subscription (a long-term pin, SPEC §6.3) released and no thread
    is in flight."""
    out = []
    ref: dict[int, int] = defaultdict(int)
    mapc: dict[int, list[int]] = {}
    dref: dict[int, int] = defaultdict(int)
    scount: dict[int, int] = defaultdict(int)
    for proc in st.procs.values():
        pmds = proc.pmds
        for v, e in proc.pt.items():
            if type(e) is Present:
                counts = mapc.get(e.f)
                if counts is None:
                    counts = mapc[e.f] = [0] * len(st.folios[e.f].mapcount)
                counts[e.i] += 1
                if not pmds or v % HUGE_PAGES == 0 or v - v % HUGE_PAGES not in pmds:
                    ref[e.f] += 1
                if e.w and not e.x:
                    vma = vma_at(proc, v)
                    if vma is not None and vma.kind == "private":
                        out.append(f"P{proc.pid} {v} writable private entry not exclusive")
            elif type(e) is Swap:
                scount[e.slot] += 1
            elif type(e) is Dev:
                dref[e.d] += 1
    for fid in st.held_folios:
        ref[fid] += 1
    for did in st.held_dpages:
        dref[did] += 1
    used = 0
    for folio in st.live_folios():
        used += folio.size
        own = 1 if folio.obj is not None and st.objects[folio.obj].alive else 0
        want = ref[folio.id] + folio.pincount + own
        if folio.refcount != want:
            out.append(f"folio {folio.id} refcount {folio.refcount} != {want}")
        expected = mapc.get(folio.id, [0] * folio.size)
        if folio.mapcount != expected:
            out.append(f"folio {folio.id} mapcount {folio.mapcount} != {expected}")
    if used != st.frames_used or used > st.config.frames:
        out.append(f"pages in use {used} (counted {st.frames_used}, frames {st.config.frames})")
    per_device: dict[int, int] = defaultdict(int)
    for page in st.dpages.values():
        if not page.freed:
            per_device[page.owner] += 1
            if page.refcount != dref[page.id]:
                out.append(f"device page {page.id} refcount {page.refcount} != {dref[page.id]}")
    out += [f"D{d} uses {n} device pages" for d, n in per_device.items()
            if n > st.config.device_frames]
    for slot in st.slots.values():
        if not slot.freed and slot.count != scount[slot.id]:
            out.append(f"swap slot {slot.id} count {slot.count} != {scount[slot.id]}")
    quiet = (all(p.state == "dead" for p in st.procs.values()) and not threads
             and all(r.gone or r.sub is not None for r in st.regions.values()))
    if quiet and (used or per_device or any(not s.freed for s in st.slots.values())):
        out.append("memory still in use after every process died")
    return out


CHECKS: dict[str, Callable[[State], list[str]]] = {
    "no_use_after_free": no_use_after_free,
    "device_entries_follow_cpu": device_entries_follow_cpu,
    "pins_are_stable": pins_are_stable,
    "seq_protocol": seq_protocol,
    "pairing": pairing,
    "release_is_final": release_is_final,
}


def check_all(st: State, threads: list[Thread]) -> None:
    """Run every predicate, then each driver's ``checks`` (a list of
    Violations); record each problem as a Violation."""
    for name, check in CHECKS.items():
        for problem in check(st):
            st.violate(name, problem)
    for problem in accounting(st, threads):
        st.violate("accounting", problem)
    for driver in st.drivers.by_kind.values():
        if driver.checks is not None:
            st.violations += driver.checks(st)

