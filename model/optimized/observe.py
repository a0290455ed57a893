"""The observation of SPEC §8.1 from the optimized structures.

Raw ids: a folio is ``(head pfn, generation)``, a device page ``(d, gen)``,
a swap slot ``(slot, gen)``; ``model.observation.canonicalize`` renumbers
them.  Only the folios, device pages and slots the walk reaches are built.
A device's part (its table, its device pages in use, its regions) comes from
its driver's ``view`` (:class:`DriverView`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import NamedTuple, cast

import numpy as np
import numpy.typing as npt

from model.observation import (
    ZERO_REF,
    Changes,
    DevicePageView,
    DeviceView,
    EntryClass,
    EntryView,
    FolioView,
    JobView,
    LockView,
    NotifierView,
    ObjectView,
    Observation,
    PageViews,
    ProcessView,
    ProcState,
    RawObservation,
    Ref,
    RegionView,
    SubscriptionView,
    SwapSlotView,
    TableEntryView,
    ThreadView,
    VmaView,
    canonicalize,
)
from model.ops import ADDRESS_PAGES, thread_order
from model.optimized.pagetable import (
    DEVICE,
    KIND_MASK,
    MIG_D,
    MIG_F,
    PRESENT,
    SHIFT,
    SWAP,
    ZERO,
    Radix,
    W,
    X,
)
from model.optimized.state import Device, KernelState, Process, Region

_FEW = 16
"""Entries this few are read one by one: numpy's cost per call outweighs its
speed per element below about this many."""
_CLASS: dict[int, EntryClass] = {ZERO: "zero", PRESENT: "present", SWAP: "swap",
                                 MIG_F: "migration", MIG_D: "migration", DEVICE: "device"}


class DriverView(NamedTuple):
    """A device's part of the observation, as its driver's ``view`` gives it."""

    table: Radix | None  # its device table (vpn -> packed target), if it has one
    pages_in_use: int  # its device-private pages in use
    regions: list[Region]  # its regions, with their pins


def regions_of(k: KernelState, dev: Device) -> list[Region]:
    """A device's regions."""
    return [r for r in k.regions.values() if r.dev == dev.id]


def device_parts(k: KernelState, dev: Device) -> DriverView:
    """What the observation shows of ``dev``: its driver's view."""
    driver = k.drivers.get(dev.kind)
    if driver is None or driver.view is None:
        return DriverView(None, 0, regions_of(k, dev))
    view: DriverView = driver.view(k, dev)
    return view


def vma_views(proc: Process) -> tuple[VmaView, ...]:
    return tuple(VmaView(m.start, m.end, m.prot, m.kind, m.huge, m.obj,
                         m.pgoff if m.kind == "shared" else None) for m in proc.vmas)


class _Refs:
    """The refs a walk meets, and their pages' views: built as met, or, when
    ``lazy`` (a partial observation), only when looked up (``PageViews``)."""

    def __init__(self, k: KernelState, lazy: bool = False) -> None:
        self.k = k
        self.lazy = lazy
        self.folios: dict[Hashable, FolioView] = {}
        self.dpages: dict[Hashable, DevicePageView] = {}
        self.slots: dict[Hashable, SwapSlotView] = {}

    def folio_view(self, raw: Hashable) -> FolioView | None:
        """Folio ``(head, gen)``'s view (None if the frame has moved on)."""
        fr = self.k.frames
        head, gen = cast(tuple[int, int], raw)
        if not 0 <= head < fr.top or int(fr.gen[head]) != gen:
            return None
        n = fr.nr_pages(head)
        return FolioView(int(fr.order[head]), int(fr.refcount[head]), int(fr.pincount[head]),
                         tuple(fr.mapcount[head: head + n].tolist()),
                         tuple(fr.word[head: head + n].tolist()))

    def dpage_view(self, raw: Hashable) -> DevicePageView | None:
        dp = self.k.dpages
        d, gen = cast(tuple[int, int], raw)
        if not 0 <= d < dp.top or int(dp.gen[d]) != gen:
            return None
        return DevicePageView(int(dp.owner[d]), int(dp.refcount[d]), int(dp.word[d]))

    def slot_view(self, raw: Hashable) -> SwapSlotView | None:
        sw = self.k.swap
        s, gen = cast(tuple[int, int], raw)
        if not 0 <= s < sw.top or int(sw.gen[s]) != gen:
            return None
        return SwapSlotView(int(sw.word[s]), int(sw.count[s]))

    def folio(self, pfn: int) -> tuple[Ref, int]:
        fr = self.k.frames
        head = fr.head(pfn)
        raw = (head, int(fr.gen[head]))
        if not self.lazy and raw not in self.folios:
            self.folios[raw] = self.folio_view(raw)  # type: ignore[assignment]
        return Ref("folio", raw, pfn - head), int(fr.word[pfn])

    def dpage(self, d: int) -> tuple[Ref, int]:
        dp = self.k.dpages
        raw = (d, int(dp.gen[d]))
        if not self.lazy and raw not in self.dpages:
            self.dpages[raw] = self.dpage_view(raw)  # type: ignore[assignment]
        return Ref("dpage", raw), int(dp.word[d])

    def slot(self, s: int) -> tuple[Ref, int]:
        sw = self.k.swap
        raw = (s, int(sw.gen[s]))
        if not self.lazy and raw not in self.slots:
            self.slots[raw] = self.slot_view(raw)  # type: ignore[assignment]
        return Ref("swap", raw), int(sw.word[s])

    def folio_refs(self, pfns: npt.NDArray[np.int64]) -> list[Ref]:
        """The folio refs of the pages ``pfns`` (a region's pins, an object's
        pages): by whole arrays past a few (:meth:`targets`' way)."""
        if len(pfns) <= _FEW:
            return [self.folio(p)[0] for p in pfns.tolist()]
        fr = self.k.frames
        heads = fr.heads(pfns)
        gens = fr.gen[heads]
        if not self.lazy:
            self._folio_views(heads, gens)
        return [Ref("folio", (h, g), i) for h, g, i in
                zip(heads.tolist(), gens.tolist(), (pfns - heads).tolist(), strict=True)]

    def _folio_views(self, heads: npt.NDArray[np.int64], gens: npt.NDArray[np.int32]) -> None:
        """Build the views of the folios at ``heads`` not seen yet; those of
        order 0 (most of them) from whole-array reads."""
        fr = self.k.frames
        hs, first = np.unique(heads, return_index=True)
        small = fr.order[hs] == 0
        for h, g, rc, pc, mc, w in zip(
                hs[small].tolist(), gens[first][small].tolist(), fr.refcount[hs[small]].tolist(),
                fr.pincount[hs[small]].tolist(), fr.mapcount[hs[small]].tolist(),
                fr.word[hs[small]].tolist(), strict=True):
            if (h, g) not in self.folios:
                self.folios[(h, g)] = FolioView(0, rc, pc, (mc,), (w,))
        for h in hs[~small].tolist():
            self.folio(h)

    def target(self, e: int) -> tuple[Ref, int]:
        """The target (a raw ``Ref``) and the word of entry ``e`` (not NONE)."""
        kind = e & KIND_MASK
        if kind == ZERO:
            return ZERO_REF, 0
        one = self.folio if kind in (PRESENT, MIG_F) else (
            self.dpage if kind in (DEVICE, MIG_D) else self.slot)
        return one(e >> SHIFT)

    def targets(self, ents: npt.NDArray[np.int64]) -> tuple[list[Ref], list[int]]:
        """The target (a raw ``Ref``) and the word of each entry of ``ents``
        (none of them NONE), read from the tables by whole arrays: the ids,
        page indexes and words of a populated page-table chunk at once, and
        each folio, device page or slot view built once.  (A few entries are
        cheaper one by one: :meth:`target`.)"""
        if len(ents) <= _FEW:
            pairs = [self.target(e) for e in ents.tolist()]
            return [ref for ref, _ in pairs], [word for _, word in pairs]
        kind = ents & KIND_MASK
        pay = ents >> SHIFT
        refs: list[Ref] = [ZERO_REF] * len(ents)
        words = np.zeros(len(ents), np.int64)
        fr = self.k.frames
        at = np.flatnonzero((kind == PRESENT) | (kind == MIG_F))
        if at.size:
            pfns = pay[at]
            heads = fr.heads(pfns)
            words[at] = fr.word[pfns]
            gens = fr.gen[heads]
            if not self.lazy:
                self._folio_views(heads, gens)
            for i, h, g, idx in zip(at.tolist(), heads.tolist(), gens.tolist(),
                                    (pfns - heads).tolist(), strict=True):
                refs[i] = Ref("folio", (h, g), idx)
        for kinds, one in (((DEVICE, MIG_D), self.dpage), ((SWAP,), self.slot)):
            at = np.flatnonzero(np.isin(kind, kinds))
            for i, p in zip(at.tolist(), pay[at].tolist(), strict=True):
                refs[i], words[i] = one(p)
        return refs, words.tolist()


def _process(k: KernelState, proc: Process, refs: _Refs, at: set[int] | None = None
             ) -> ProcessView:
    """P's view; with ``at``, its entries at those pages only."""
    state = _state(proc)
    if state == "dead":
        return ProcessView(proc.pid, state)  # its state only (DECISIONS D7)
    entries: list[EntryView] = []
    if at is not None and len(at) <= _FEW:
        for v in sorted(at):
            e, pmd = proc.pt.get(v)
            if e:
                ref, word = refs.target(e)
                entries.append(_entry(v, e, word, pmd, ref))
    else:
        chunks = proc.pt.populated(0, ADDRESS_PAGES) if at is None else _entries_at(proc.pt, at)
        for vpns, ents, pmd in chunks:
            targets, words = refs.targets(ents)
            for v, e, ref, word in zip(vpns.tolist(), ents.tolist(), targets, words, strict=True):
                entries.append(_entry(v, e, word, pmd, ref))
    return ProcessView(proc.pid, state, vma_views(proc), tuple(entries), _notifier(proc),
                       _lock(proc))


def _entry(v: int, e: int, word: int, pmd: bool, ref: Ref) -> EntryView:
    return EntryView(v, _CLASS[e & KIND_MASK], word, bool(e & W), bool(e & X), pmd, ref)


def _entries_at(pt: Radix, at: set[int]) -> Iterator[tuple[npt.NDArray[np.int64],
                                                           npt.NDArray[np.int64], bool]]:
    """(vpns, entries, pmd) of the non-none entries of ``pt`` at the pages
    ``at``, as ``Radix.populated`` gives them, a 512-page block at a time."""
    blocks: dict[int, list[int]] = {}
    for v in sorted(at):
        blocks.setdefault(v & ~511, []).append(v)
    for base, vs in blocks.items():
        vpns = np.array(vs, np.int64)
        ents, pmd = pt.gather(base, base + 512)
        keep = ents[vpns - base] != 0
        if keep.any():
            vpns = vpns[keep]
            yield vpns, ents[vpns - base], bool(pmd[0])


def _state(proc: Process) -> ProcState:
    return "dead" if proc.state == "dead" else ("killed" if proc.state == "killed" else "live")


def _notifier(proc: Process) -> NotifierView:
    mn = proc.mn
    subs = tuple(SubscriptionView(s.id, s.start, s.end, s.invalidate_seq)
                 for s in mn.itree.items())
    return NotifierView(mn.seq, mn.active, subs, tuple((kind, s.id) for kind, s in mn.deferred))


def _lock(proc: Process) -> LockView:
    return LockView(proc.mmap_lock.writer, tuple(sorted(proc.mmap_lock.readers, key=thread_order)))


def observe(k: KernelState) -> Observation:
    return canonicalize(raw_observation(k))


def _table(table: Radix, refs: _Refs, cache: dict[int, tuple[Radix, int, tuple[
        TableEntryView, ...]]] | None) -> tuple[TableEntryView, ...]:
    """A device table's entries; with ``cache`` (a partial observation's),
    those built when the table's ``version`` was what it is now, if any.
    (An entry's page id is then the one it had: if that page has since been
    freed, the page is among the changes, and the cheap comparison sees its
    view gone.)"""
    if cache is not None:
        was = cache.get(id(table))
        if was is not None and was[0] is table and was[1] == table.version:
            return was[2]
    out = []
    for vpns, ents, _ in table.populated(0, ADDRESS_PAGES):
        targets, _ = refs.targets(ents)
        for v, e, ref in zip(vpns.tolist(), ents.tolist(), targets, strict=True):
            out.append(TableEntryView(v, ref, bool(e & W)))
    if cache is not None:
        cache[id(table)] = (table, table.version, tuple(out))
    return tuple(out)


def raw_observation(k: KernelState, parts: Changes | None = None,
                    tables: dict[int, tuple[Radix, int, tuple[TableEntryView, ...]]]
                    | None = None) -> RawObservation:
    """The observation with this implementation's ids; with ``parts``, the
    entries and objects it names, pages' views built when looked up
    (``Watched.observe_parts``), and device tables from ``tables`` when
    they have not changed."""
    refs = _Refs(k, lazy=parts is not None)
    processes = [_process(k, k.procs[pid], refs,
                          None if parts is None or pid in parts.processes
                          else parts.entries.get(pid, set()))
                 for pid in sorted(k.procs)]
    objects: list[ObjectView] = []
    for oid in sorted(k.objects):
        o = k.objects[oid]
        if not o.live or (parts is not None and oid not in parts.objects):
            continue
        resident: list[tuple[int, Ref]] = []
        for idxs, pfns1, _ in o.pages.populated(0, ADDRESS_PAGES):
            resident += zip(idxs.tolist(), refs.folio_refs(pfns1 - 1), strict=True)
        objects.append(ObjectView(oid, o.size, tuple(resident)))
    devices: list[DeviceView] = []
    shown: list[Region] = []
    for did in sorted(k.devices):
        dev = k.devices[did]
        dparts = device_parts(k, dev)
        table: tuple[TableEntryView, ...] = ()
        if dparts.table is not None:
            table = _table(dparts.table, refs, None if parts is None else tables)
        devices.append(DeviceView(did, dev.kind, dev.pid, dev.dead, dev.lock.holder,
                                  table, dparts.pages_in_use))
        shown.extend(dparts.regions)
    regions: list[RegionView] = []
    for reg in sorted(shown, key=lambda r: r.id):
        rid = reg.id
        pins = () if reg.pins is None else tuple(enumerate(refs.folio_refs(reg.pins)))
        regions.append(RegionView(rid, reg.kind, reg.dev, reg.start, reg.n, reg.mode, pins,
                                  reg.valid, reg.dying, reg.active, reg.valid_seq))
    jobs = [JobView(j.id, j.region, j.direction, j.off, j.count)
            for j in sorted(k.jobs.values(), key=lambda j: j.id)]
    threads = [ThreadView(t.name, t.text, t.failed_commits)
               for t in k.threads.values()]
    if parts is not None:
        return RawObservation(processes, objects, devices, regions, jobs, threads,
                              PageViews(refs.folio_view), PageViews(refs.dpage_view),
                              PageViews(refs.slot_view), k.frames.in_use, k.swap.in_use)
    return RawObservation(processes, objects, devices, regions, jobs, threads,
                          refs.folios, refs.dpages, refs.slots,
                          k.frames.in_use, k.swap.in_use)


class Watcher:
    """What changed since the last look (``Watched.changes``): the blocks of
    a page table it marked (``Radix.touched``), a table whose
    ``Radix.version`` moved, and the folios, device pages and slots whose
    array rows changed (``delta.ArrayWatch``)."""

    def __init__(self) -> None:
        self.procs: dict[int, Radix] = {}
        self.leaves: dict[tuple[int, int], tuple[npt.NDArray[np.int64], bool]] = {}
        self.objects: dict[int, tuple[bool, Radix, int]] = {}
        self.tables: dict[int, tuple[Radix, int, tuple[TableEntryView, ...]]] = {}

    def changes(self, k: KernelState) -> Changes:
        out = Changes()
        for pid, proc in k.procs.items():
            pt = proc.pt
            whole = self.procs.get(pid) is not pt
            if whole:
                out.processes.add(pid)
                self.procs[pid] = pt
                for key in [key for key in self.leaves if key[0] == pid]:
                    del self.leaves[key]
                pt.touched.update(base for base, _ in pt.peek_blocks(0, ADDRESS_PAGES))
            for base in pt.touched:
                ents, pmd = pt.gather(base, base + 512)
                was, was_pmd = self.leaves.get((pid, base), (None, False))
                self.leaves[(pid, base)] = (ents, bool(pmd[0]))
                if whole:
                    continue
                if was is None or was_pmd != bool(pmd[0]):
                    changed = ents.nonzero()[0] if was is None else np.arange(512)
                else:
                    changed = np.flatnonzero(ents != was)
                if changed.size:
                    out.entries.setdefault(pid, set()).update((changed + base).tolist())
            pt.touched.clear()
        for oid, o in k.objects.items():
            seen = self.objects.get(oid)
            if seen is None or seen[0] != o.live or seen[1] is not o.pages \
                    or seen[2] != o.pages.version:
                out.objects.add(oid)
                self.objects[oid] = (o.live, o.pages, o.pages.version)
        ids = k.arrays.take(k)
        out.folios, out.device_pages, out.swap_slots = ids["frames"], ids["dpages"], ids["swap"]
        return out
