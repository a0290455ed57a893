"""The invariants SPEC §8.2 assigns to each implementation (1-3, 6-10).

Checked after every step when ``config.checks`` is on, against the
optimized structures themselves (frame arrays, radix tables, notifier
state); a broken one is recorded as a :class:`model.interface.Violation`,
never raised.  Like ``CONFIG_DEBUG_VM``'s ``VM_BUG_ON_FOLIO`` checks, off
for benchmarks.

* 1 ``no_use_after_free``: no entry, table entry or pin names a freed frame,
  device page or slot (access-time clauses are checked at the access).
* 2 ``device_entries_follow_cpu``: each device table entry is excused by a
  running invalidation whose callback for it has not returned, or matches
  the CPU entry (present/zero with r, w => w; own device page, w => w'; or a
  migration entry of its page during a migrate-back).
* 3 ``pins_are_stable``: a pin names the same live page (generation).
* 6 ``seq_protocol`` (a)(b) here, (c)(d) in ``mmu_notifier.py``.
* 7 ``pairing``: ``active`` equals the running invalidations.
* 8 ``no_block_when_nonblockable``: in ``threads.wait``.
* 9 ``release_is_final``: a dead process's devices have empty tables.
* 10 ``accounting``: the ledger of SPEC §1, the limits, exclusivity of
  writable private entries, and nothing in use once everything is gone.

What the tables reference comes from :class:`ledger.Ledger`, which re-reads
only the leaves changed since the last check; the comparisons with the
frame, device-page and swap arrays are whole-array numpy operations.  Only
when one of them fails are the tables scanned in full, for the report.  Then
each driver's own ``checks`` run (its record's, a list of Violations).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from model.ops import ADDRESS_PAGES
from model.optimized.ledger import CPU, DEV, OBJ, Ledger
from model.optimized.pagetable import (
    DEVICE,
    KIND_MASK,
    MIG_D,
    MIG_F,
    PRESENT,
    PTRS,
    SHIFT,
    SWAP,
    ZERO,
    Radix,
    W,
)
from model.optimized.state import Device, KernelState, Process

_EMPTY = np.zeros(0, np.int64)


def run_checks(k: KernelState, *, whole: bool = True) -> None:
    """The checks.  Unless ``whole``, invariants 1, 3 and 10 are checked only
    where the step could have broken them (:func:`_local`); the whole scan
    runs when that cannot be told, and when a local check fails."""
    found: list[tuple[str, str]] = []
    for proc in k.procs.values():
        if proc.mn.violations:
            found.extend(proc.mn.violations)
            proc.mn.violations.clear()
    _seq_and_pairing(k, found)
    lg = k.ledger
    tables = ([(p.pt, CPU) for p in k.procs.values()]
              + [(d.table, DEV) for d in k.devices.values()]
              + [(o.pages, OBJ) for o in k.objects.values() if o.live])
    lg.update(tables)
    moved, rows = lg.take_moved(), k.arrays.take_rows(k)
    if whole or all(p.state == "dead" for p in k.procs.values()) \
            or not _local(k, lg, moved, rows):
        bad = _references_live(k, found) if _tables_maybe_bad(k, lg) else _pins_live(k, found)
        if not bad:
            _ledger(k, lg, found)
    else:
        _pins_live(k, found)
    _device_entries(k, found)
    for inv, detail in found:
        k.violation(inv, detail)
    for driver in k.drivers.by_kind.values():
        if driver.checks is not None:
            k.violations += driver.checks(k)


def _pins_by_head(k: KernelState) -> npt.NDArray[np.int64]:
    """How many pins each frame holds (regions', threads' in flight,
    plug-ins'), by the head of its folio."""
    fr = k.frames
    pc = np.zeros(fr.top + 1, np.int64)
    for reg in k.regions.values():
        if reg.pins is not None:
            np.add.at(pc, fr.heads(reg.pins), 1)
    for held in [th.pins for th in k.threads.values()] + [dev.pins for dev in k.devices.values()]:
        if held:
            np.add.at(pc, fr.heads(np.array(held, np.int64)), 1)
    return pc


FEW: Final = 16
"""Up to this many indexes, a local check reads them one by one: numpy's
fixed cost per call is that of a few scalar reads."""


def _live_targets(lg: Ledger, name: str, idx: npt.NDArray[np.int64], n: int,
                  live: npt.NDArray[np.int8]) -> bool:
    """Whether every index of ``idx`` that count ``name`` holds is a live
    page below ``n``."""
    counts = lg.counts[name]  # (it covers every index it was moved at)
    if idx.size <= FEW:
        return all(i < n and live[i] for i in idx.tolist() if counts[i] > 0)
    held = idx[counts[idx] > 0]
    return not (held >= n).any() and bool(live[held].all())


def _folio_counts(k: KernelState, lg: Ledger, at: npt.NDArray[np.int64],
                  pins: npt.NDArray[np.int64]) -> bool:
    """Invariant 10's counts of the live folios of the frames ``at``:
    refcount, pincount and each page's mapcount as the tables and ``pins``
    (by head) give them."""
    fr = k.frames
    nf = fr.top
    pte, objp, pmd = lg.get("pte", nf), lg.get("objp", nf), lg.get("pmd", nf)
    at = at[at < nf]
    if at.size > FEW:  # the order-0 folios by whole arrays, the others one by one
        heads = np.unique(fr.heads(at))
        heads = heads[fr.live[heads] != 0]
        small = heads[fr.order[heads] == 0]
        held = np.array([h in fr.holders for h in small.tolist()], np.int64) if fr.holders else 0
        if ((fr.refcount[small] != objp[small] + pte[small] + pmd[small] + pins[small] + held).any()
                or (fr.pincount[small] != pins[small]).any()
                or (fr.mapcount[small] != pte[small] + pmd[small & ~(PTRS - 1)]).any()):
            return False
        each = heads[fr.order[heads] != 0].tolist()
    else:
        each = sorted({h & ~(PTRS - 1) if fr.order[h] == 9 else h for h in at.tolist()})
    for h in each:
        if not fr.live[h]:
            continue
        n = fr.nr_pages(h)
        mapped = int(pte[h]) if n == 1 else int(pte[h: h + n].sum())
        if (int(fr.refcount[h]) != int(objp[h]) + mapped + int(pmd[h]) + int(pins[h])
                + (h in fr.holders) or int(fr.pincount[h]) != int(pins[h])):
            return False
        maps = pmd[h & ~(PTRS - 1)]
        if (int(fr.mapcount[h]) != mapped + int(maps) if n == 1
                else (fr.mapcount[h: h + n] != pte[h: h + n] + maps).any()):
            return False
    return True


def _pin_key(k: KernelState) -> tuple[list[bytes], list[tuple[int, ...]], list[tuple[int, ...]]]:
    """What the pins by head follow, besides the frames' orders (a copy)."""
    return ([r.pins.tobytes() for r in k.regions.values() if r.pins is not None],
            [tuple(t.pins) for t in k.threads.values() if t.pins],
            [tuple(d.pins) for d in k.devices.values() if d.pins])


def _local(k: KernelState, lg: Ledger, moved: dict[str, npt.NDArray[np.int64]],
           rows: dict[str, npt.NDArray[np.int64]]) -> bool:
    """Invariants 1 and 10 where a step could have broken them: at the
    indexes whose ledger counts moved, the rows of the page arrays that
    changed (``delta.ArrayWatch``), the folios whose pins changed and the
    pages whose holders changed; True if they hold there.  (A table made
    or gone moves the counts of its entries; the exclusivity of writable
    private entries is checked whole, from the ledger's few leaves with
    such entries.)"""
    fr, dp, sw = k.frames, k.dpages, k.swap
    nf, nd, ns = fr.top, dp.top, sw.top
    if fr.in_use > fr.limit or any(n > dp.per_device for n in dp.used.values()):
        return False
    pin_key = _pin_key(k)
    pins_moved = pin_key != k.pin_key
    if not (pins_moved or moved or rows or fr.holders.keys() != k.held
            or dp.holders.keys() != k.dheld):
        return _exclusive(k, lg, [])  # nothing else could have changed
    k.pin_key = pin_key
    # 1: no reference to a page that is not live, from a count that moved ...
    for names, n, live in ((("pte", "migf", "devp"), nf, fr.live),
                           (("dev", "migd", "devd"), nd, dp.live), (("swp",), ns, sw.live)):
        if not all(_live_targets(lg, name, moved[name], n, live)
                   for name in names if name in moved):
            return False
    if "pmd" in moved:
        pmd = lg.counts["pmd"]
        if any(pmd[h] > 0 and (h + PTRS > nf or not fr.live[h: h + PTRS].all())
               for h in set(moved["pmd"].tolist())):
            return False
    # ... or to a page whose row changed and is not live now
    frames, dpages, slots = (rows.get(name, _EMPTY) for name in ("frames", "dpages", "swap"))
    gone = frames[fr.live[frames] == 0] if frames.size else frames
    if gone.size and any(lg.get(name, nf)[g].any() for name, g in (
            ("pte", gone), ("migf", gone), ("devp", gone), ("pmd", gone & ~(PTRS - 1)))):
        return False
    gone = dpages[dp.live[dpages] == 0] if dpages.size else dpages
    if gone.size and any(lg.get(name, nd)[gone].any() for name in ("dev", "migd", "devd")):
        return False
    gone = slots[sw.live[slots] == 0] if slots.size else slots
    if gone.size and lg.get("swp", ns)[gone].any():
        return False
    # 10: the counts of the folios (and of pins and holders) that moved, ...
    at = [frames] + [moved[name] for name in ("pte", "objp", "pmd") if name in moved]
    pins = k.pins_by_head
    if pins_moved or (frames.size and any(pin_key)) or pins.size <= nf:  # (heads follow orders)
        pins = _pins_by_head(k)
        was = np.zeros(pins.size, np.int64)
        was[:min(pins.size, k.pins_by_head.size)] = k.pins_by_head[:pins.size]
        k.pins_by_head = pins
        at.append(np.flatnonzero(pins != was))
    if fr.holders.keys() != k.held:
        held = set(fr.holders)
        at.append(np.array(sorted(held ^ k.held), np.int64))
        k.held = held
    frames_at = np.concatenate(at)
    if frames_at.size and not _folio_counts(k, lg, frames_at, pins):
        return False
    # ... of the device pages and the slots
    at = [dpages, moved.get("dev", _EMPTY)]
    if dp.holders.keys() != k.dheld:
        dheld = set(dp.holders)
        at.append(np.array(sorted(dheld ^ k.dheld), np.int64))
        k.dheld = dheld
    dpages_at = _live_at(at, nd, dp.live)
    if dpages_at.size:
        holding = np.array([d in dp.holders for d in dpages_at.tolist()], np.int64)
        if (lg.get("dev", nd)[dpages_at] + holding != dp.refcount[dpages_at]).any():
            return False
    slots_at = _live_at([slots, moved.get("swp", _EMPTY)], ns, sw.live)
    if slots_at.size and (lg.get("swp", ns)[slots_at] != sw.count[slots_at]).any():
        return False
    return _exclusive(k, lg, [])


def _live_at(parts: list[npt.NDArray[np.int64]], n: int,
             live: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
    """The indexes of ``parts`` below ``n`` whose page is live."""
    parts = [p for p in parts if p.size]
    if not parts:
        return _EMPTY
    at: npt.NDArray[np.int64] = np.concatenate(parts)
    at = at[at < n]
    live_at: npt.NDArray[np.int64] = at[live[at] != 0]
    return live_at


def _seq_and_pairing(k: KernelState, found: list[tuple[str, str]]) -> None:
    for pid, proc in k.procs.items():
        mn = proc.mn
        last = k.last_seq.get(pid, 2)
        if mn.seq < last:
            found.append(("seq_protocol", f"P{pid}: seq decreased {last} -> {mn.seq}"))
        k.last_seq[pid] = mn.seq
        if mn.seq & 1 and mn.active <= 0:
            found.append(("seq_protocol", f"P{pid}: seq odd with active 0"))
        for sub in mn.itree.items() if mn.itree.size else ():
            s = sub.invalidate_seq
            if not s & 1 or s > mn.seq or (s == mn.seq and not mn.seq & 1):
                found.append(("seq_protocol",
                              f"P{pid}: S{sub.id} invalidate_seq {s}, seq {mn.seq}"))
        if mn.active != len(mn.running) or mn.active < 0:
            found.append(("pairing", f"P{pid}: active {mn.active}, running {len(mn.running)}"))


def _tables_maybe_bad(k: KernelState, lg: Ledger) -> bool:
    """Whether some entry or table entry names a freed (or never allocated)
    frame, device page or swap slot, from the ledger's counts."""
    fr, dp, sw = k.frames, k.dpages, k.swap
    nf, nd, ns = fr.top, dp.top, sw.top
    if any(lg.beyond(n, nf) for n in ("pte", "migf", "devp", "pmd")) \
            or any(lg.beyond(n, nd) for n in ("dev", "migd", "devd")) or lg.beyond("swp", ns):
        return True
    f = lg.get("pte", nf) + lg.get("migf", nf) + lg.get("devp", nf)
    if f[fr.live[:nf] == 0].any():
        return True
    for h in np.flatnonzero(lg.get("pmd", nf)).tolist():
        if h + PTRS > nf or not fr.live[h: h + PTRS].all():
            return True
    d = lg.get("dev", nd) + lg.get("migd", nd) + lg.get("devd", nd)
    if d[dp.live[:nd] == 0].any():
        return True
    return bool(lg.get("swp", ns)[sw.live[:ns] == 0].any())


def _references_live(k: KernelState, found: list[tuple[str, str]]) -> bool:
    """Invariants 1 and 3 on entries, table entries and pins (a full scan,
    for the report); True if broken."""
    fr, dp, sw = k.frames, k.dpages, k.swap
    bad = False
    for proc in k.procs.values():
        for vpns, ents, _ in proc.pt.populated(0, ADDRESS_PAGES):
            kinds = ents & KIND_MASK
            pay = ents >> SHIFT
            f = pay[(kinds == PRESENT) | (kinds == MIG_F)]
            d = pay[(kinds == DEVICE) | (kinds == MIG_D)]
            s = pay[kinds == SWAP]
            if ((f >= fr.top).any() or not fr.live[f[f < fr.top]].all()
                    or (d >= dp.top).any() or not dp.live[d[d < dp.top]].all()
                    or (s >= sw.top).any() or not sw.live[s[s < sw.top]].all()):
                found.append(("no_use_after_free",
                              f"P{proc.pid}: an entry near {int(vpns[0])} names a freed page"))
                bad = True
    for dev in k.devices.values():
        for _, ents, _ in dev.table.populated(0, ADDRESS_PAGES):
            kinds = ents & KIND_MASK
            pay = ents >> SHIFT
            f = pay[kinds == PRESENT]
            d = pay[kinds == DEVICE]
            if not fr.live[f].all() or not dp.live[d].all():
                found.append(("no_use_after_free", f"D{dev.id}: a table entry names a freed page"))
                bad = True
    return _pins_live(k, found) or bad


def _pins_live(k: KernelState, found: list[tuple[str, str]]) -> bool:
    """Invariants 1 and 3 on the pins of regions; True if broken."""
    fr = k.frames
    bad = False
    for reg in k.regions.values():
        if reg.pins is not None and reg.pin_gens is not None:
            if (not fr.live[reg.pins].all()
                    or not (fr.gen[reg.pins] == reg.pin_gens).all()):
                found.append(("no_use_after_free", f"R{reg.id}: a pin names a freed page"))
                bad = True
            elif not (fr.pincount[fr.heads(reg.pins)] > 0).all():
                found.append(("pins_are_stable", f"R{reg.id}: a pinned folio lost its pin"))
    return bad


def _ledger(k: KernelState, lg: Ledger, found: list[tuple[str, str]]) -> None:
    """Invariant 10 (every reference is live: the ledger's counts index the arrays)."""
    fr, dp, sw = k.frames, k.dpages, k.swap
    n = fr.top + 1
    pte = lg.get("pte", n)
    mc = pte.copy()
    ref = lg.get("objp", n).copy()
    nz = np.flatnonzero(pte)
    if nz.size:
        np.add.at(ref, fr.heads(nz), pte[nz])
    pmd = lg.get("pmd", n)
    for hd in np.flatnonzero(pmd).tolist():
        mc[hd: hd + PTRS] += pmd[hd]
        ref[hd] += pmd[hd]
    dref = lg.get("dev", dp.top + 1).copy()
    cnt = lg.get("swp", sw.top + 1)
    _exclusive(k, lg, found)
    pc = _pins_by_head(k)  # n long, as ref: each pin holds a reference too
    ref += pc
    k.pins_by_head, k.held, k.dheld = pc, set(fr.holders), set(dp.holders)
    k.pin_key = None
    for hh in fr.holders:
        ref[hh] += 1
    for dd in dp.holders:
        dref[dd] += 1
    live = np.flatnonzero(fr.live[: fr.top])
    heads = live[(fr.order[live] == 0) | ((live & (PTRS - 1)) == 0)]
    if (ref[heads] != fr.refcount[heads]).any() or (pc[heads] != fr.pincount[heads]).any():
        bad = heads[(ref[heads] != fr.refcount[heads]) | (pc[heads] != fr.pincount[heads])]
        h0 = int(bad[0])
        found.append(("accounting", f"frame {h0}: refcount {int(fr.refcount[h0])} expected "
                      f"{int(ref[h0])}, pincount {int(fr.pincount[h0])} expected {int(pc[h0])}"))
    elif (mc[live] != fr.mapcount[live]).any():
        found.append(("accounting", "a page's mapcount differs from its mappings"))
    dlive = np.flatnonzero(dp.live[: dp.top])
    if (dref[dlive] != dp.refcount[dlive]).any():
        found.append(("accounting", "a device page's refcount differs from its entries"))
    slive = np.flatnonzero(sw.live[: sw.top])
    if (cnt[slive] != sw.count[slive]).any():
        found.append(("accounting", "a swap slot's count differs from its entries"))
    if fr.in_use > fr.limit or any(n > dp.per_device for n in dp.used.values()):
        found.append(("accounting", "more pages in use than the limit"))
    if (all(p.state == "dead" for p in k.procs.values())
            and not any(r.sub is None for r in k.regions.values())  # pins no notifier drops
            and not fr.holders and not dp.holders and not k.threads):
        if fr.in_use or dp.in_use() or sw.in_use:
            found.append(("accounting", "memory in use after every process died"))


def _exclusive(k: KernelState, lg: Ledger, found: list[tuple[str, str]]) -> bool:
    """Invariant 10's exclusivity of writable private entries; True if it holds."""
    ok = True
    for proc in k.procs.values():
        leaves = lg.wx(proc.pt)
        if not leaves:
            continue
        private = [(m.start, m.end) for m in proc.vmas if m.kind == "private"]
        if not private:
            continue
        starts = np.array([a for a, _ in private], np.int64)
        ends = np.array([b for _, b in private], np.int64)
        for _, vpns in leaves:
            inside = ((vpns[:, None] >= starts) & (vpns[:, None] < ends)).any(axis=1)
            if inside.any():
                v = int(vpns[inside][0])
                found.append(("accounting",
                              f"P{proc.pid}:{v} writable private entry not exclusive"))
                ok = False
    return ok


def _outside_rights(proc: Process, vpns: npt.NDArray[np.int64],
                    tw: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """The vpns (in order) outside every VMA, in a VMA without r, or with a
    writable table entry (``tw``) in a VMA without w."""
    vmas = proc.vmas
    if vpns.size == 0 or not vmas:
        return vpns
    starts = np.array([m.start for m in vmas], np.int64)
    ends = np.array([m.end for m in vmas], np.int64)
    rd = np.array([m.readable for m in vmas], np.bool_)
    wr = np.array([m.writable for m in vmas], np.bool_)
    i = np.searchsorted(starts, vpns, side="right") - 1  # find_vma's bisect
    j = np.maximum(i, 0)
    inside = (i >= 0) & (vpns < ends[j])
    return vpns[~inside | ~rd[j] | (tw & ~wr[j])]


def _device_entries(k: KernelState, found: list[tuple[str, str]]) -> None:
    """Invariants 2 and 9.  What a device's table was found to break is
    kept with all that the finding read (the two tables' versions, the
    VMAs' bounds and rights, the ranges excusing it): while that stays the
    same, so does the finding."""
    for dev in k.devices.values():
        if not dev.table.pgd:  # (only a page-faulting device has table entries)
            continue
        proc = k.procs[dev.pid]
        key = (dev.table.version, proc.pt, proc.pt.version, proc.state,
               [(m.start, m.end, m.prot) for m in proc.vmas], _excused(proc, dev))
        was = k.followed.get(dev.id)
        if was is None or was[0] != key:
            was = k.followed[dev.id] = (key, [])
            table_follows_cpu(k, dev, dev.table, was[1])
        found.extend(was[1])


def table_pages_live(k: KernelState, dev: Device, table: Radix,
                     found: list[tuple[str, str]]) -> None:
    """Invariant 1 on a device table kept outside ``dev.table`` (a plug-in's,
    which the ledger does not see)."""
    for _, ents, _ in table.populated(0, ADDRESS_PAGES):
        kinds = ents & KIND_MASK
        pay = ents >> SHIFT
        f = pay[kinds == PRESENT]
        d = pay[kinds == DEVICE]
        if (f >= k.frames.top).any() or not k.frames.live[f[f < k.frames.top]].all() \
                or (d >= k.dpages.top).any() or not k.dpages.live[d[d < k.dpages.top]].all():
            found.append(("no_use_after_free", f"D{dev.id}: a table entry names a freed page"))
            return


def _excused(proc: Process, dev: Device) -> list[tuple[int, int]]:
    """The ranges of the running invalidations whose callback for one of
    ``dev``'s subscriptions has not returned."""
    return [(r.start, r.end) for r in proc.mn.running
            if any(s is dev.sub or (s.owner == dev.id and s.owner_kind == dev.kind)
                   for s in r.hits[r.returned:])]


def table_follows_cpu(k: KernelState, dev: Device, table: Radix,
                      found: list[tuple[str, str]]) -> None:
    """Invariants 2 and 9 on ``table``, device ``dev``'s table: an entry is
    excused while an invalidation whose callback for one of ``dev``'s
    subscriptions has not returned covers it."""
    proc = k.procs[dev.pid]
    if proc.state == "dead":
        found.append(("release_is_final", f"D{dev.id}: table entries after exit"))
        return
    excused = _excused(proc, dev)
    for vpns, te, _ in table.populated(0, ADDRESS_PAGES):
        a, b = int(vpns[0]), int(vpns[-1]) + 1
        cpu, _ = proc.pt.gather(a, b)
        ce = cpu[vpns - a]
        tk = te & KIND_MASK
        ck = ce & KIND_MASK
        same = (ce >> SHIFT) == (te >> SHIFT)
        tw = (te & W) != 0
        cw = (ce & W) != 0
        ok = ((tk == PRESENT) & (ck == PRESENT) & same & (~tw | cw)) \
            | ((tk == ZERO) & (ck == ZERO) & ~tw) \
            | ((tk == DEVICE) & (ck == DEVICE) & same & (~tw | cw)) \
            | ((tk == DEVICE) & (ck == MIG_D) & same)
        for v in vpns[~ok].tolist():
            if any(s <= v < e for s, e in excused):
                continue
            found.append(("device_entries_follow_cpu", f"D{dev.id}: table entry at {v}"))
            break
        sel = ok & ((tk == PRESENT) | (tk == ZERO)) | (ok & tw)
        for v in _outside_rights(proc, vpns[sel], tw[sel]).tolist():
            if not any(s <= v < e for s, e in excused):
                found.append(("device_entries_follow_cpu",
                              f"D{dev.id}: table entry at {v} outside its VMA rights"))
                break
