"""The observation of SPEC §8.1 from the optimized structures.

Raw ids: a folio is ``(head pfn, generation)``, a device page ``(d, gen)``,
a swap slot ``(slot, gen)``; ``model.observation.canonicalize`` renumbers
them.  Only the folios, device pages and slots the walk reaches are built.
A device's part (its table, its device pages in use, its regions) comes from
its driver's ``view`` (:class:`DriverView`).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from model.observation import (
    ZERO_REF,
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
    def __init__(self, k: KernelState) -> None:
        self.k = k
        self.folios: dict[Hashable, FolioView] = {}
        self.dpages: dict[Hashable, DevicePageView] = {}
        self.slots: dict[Hashable, SwapSlotView] = {}

    def folio(self, pfn: int) -> tuple[Ref, int]:
        fr = self.k.frames
        head = fr.head(pfn)
        raw = (head, int(fr.gen[head]))
        if raw not in self.folios:
            n = fr.nr_pages(head)
            self.folios[raw] = FolioView(
                int(fr.order[head]), int(fr.refcount[head]), int(fr.pincount[head]),
                tuple(int(x) for x in fr.mapcount[head: head + n].tolist()),
                tuple(int(x) for x in fr.word[head: head + n].tolist()))
        return Ref("folio", raw, pfn - head), int(fr.word[pfn])

    def dpage(self, d: int) -> tuple[Ref, int]:
        dp = self.k.dpages
        raw = (d, int(dp.gen[d]))
        if raw not in self.dpages:
            self.dpages[raw] = DevicePageView(int(dp.owner[d]), int(dp.refcount[d]),
                                              int(dp.word[d]))
        return Ref("dpage", raw), int(dp.word[d])

    def slot(self, s: int) -> tuple[Ref, int]:
        sw = self.k.swap
        raw = (s, int(sw.gen[s]))
        if raw not in self.slots:
            self.slots[raw] = SwapSlotView(int(sw.word[s]), int(sw.count[s]))
        return Ref("swap", raw), int(sw.word[s])

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

    def targets(self, ents: npt.NDArray[np.int64]) -> tuple[list[Ref], list[int]]:
        """The target (a raw ``Ref``) and the word of each entry of ``ents``
        (none of them NONE), read from the tables by whole arrays: the ids,
        page indexes and words of a populated page-table chunk at once, and
        each folio, device page or slot view built once."""
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
            self._folio_views(heads, gens)
            for i, h, g, idx in zip(at.tolist(), heads.tolist(), gens.tolist(),
                                    (pfns - heads).tolist(), strict=True):
                refs[i] = Ref("folio", (h, g), idx)
        for kinds, one in (((DEVICE, MIG_D), self.dpage), ((SWAP,), self.slot)):
            at = np.flatnonzero(np.isin(kind, kinds))
            for i, p in zip(at.tolist(), pay[at].tolist(), strict=True):
                refs[i], words[i] = one(p)
        return refs, words.tolist()


def _process(k: KernelState, proc: Process, refs: _Refs) -> ProcessView:
    state: ProcState = "dead" if proc.state == "dead" else (
        "killed" if proc.state == "killed" else "live")
    lock = LockView(proc.mmap_lock.writer,
                    tuple(sorted(proc.mmap_lock.readers, key=thread_order)))
    if state == "dead":
        return ProcessView(proc.pid, state)  # its state only (DECISIONS D7)
    entries: list[EntryView] = []
    for vpns, ents, pmd in proc.pt.populated(0, ADDRESS_PAGES):
        targets, words = refs.targets(ents)
        for v, e, ref, word in zip(vpns.tolist(), ents.tolist(), targets, words, strict=True):
            entries.append(EntryView(v, _CLASS[e & KIND_MASK], word, bool(e & W), bool(e & X),
                                     pmd, ref))
    mn = proc.mn
    subs = tuple(SubscriptionView(s.id, s.start, s.end, s.invalidate_seq)
                 for s in mn.itree.items())
    notifier = NotifierView(mn.seq, mn.active, subs,
                            tuple((kind, s.id) for kind, s in mn.deferred))
    return ProcessView(proc.pid, state, vma_views(proc), tuple(entries), notifier, lock)


def observe(k: KernelState) -> Observation:
    refs = _Refs(k)
    processes = [_process(k, k.procs[pid], refs) for pid in sorted(k.procs)]
    objects: list[ObjectView] = []
    for oid in sorted(k.objects):
        o = k.objects[oid]
        if not o.live:
            continue
        resident = []
        for idxs, pfns1, _ in o.pages.populated(0, ADDRESS_PAGES):
            for i, p1 in zip(idxs.tolist(), pfns1.tolist(), strict=True):
                resident.append((i, refs.folio(p1 - 1)[0]))
        objects.append(ObjectView(oid, o.size, tuple(resident)))
    devices: list[DeviceView] = []
    shown: list[Region] = []
    for did in sorted(k.devices):
        dev = k.devices[did]
        parts = device_parts(k, dev)
        table: list[TableEntryView] = []
        if parts.table is not None:
            for vpns, ents, _ in parts.table.populated(0, ADDRESS_PAGES):
                targets, _ = refs.targets(ents)
                for v, e, ref in zip(vpns.tolist(), ents.tolist(), targets, strict=True):
                    table.append(TableEntryView(v, ref, bool(e & W)))
        devices.append(DeviceView(did, dev.kind, dev.pid, dev.dead, dev.lock.holder,
                                  tuple(table), parts.pages_in_use))
        shown.extend(parts.regions)
    regions: list[RegionView] = []
    for reg in sorted(shown, key=lambda r: r.id):
        rid = reg.id
        pins: list[tuple[int, Ref]] = []
        if reg.pins is not None:
            for i, pfn in enumerate(reg.pins.tolist()):
                pins.append((i, refs.folio(pfn)[0]))
        regions.append(RegionView(rid, reg.kind, reg.dev, reg.start, reg.n, reg.mode,
                                  tuple(pins), reg.valid, reg.dying, reg.active,
                                  reg.valid_seq))
    jobs = [JobView(j.id, j.region, j.direction, j.off, j.count)
            for j in sorted(k.jobs.values(), key=lambda j: j.id)]
    threads = [ThreadView(t.name, t.text, t.failed_commits)
               for t in k.threads.values()]
    raw = RawObservation(processes, objects, devices, regions, jobs, threads,
                         refs.folios, refs.dpages, refs.slots,
                         k.frames.in_use, k.swap.in_use)
    return canonicalize(raw)
