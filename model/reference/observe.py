"""The observation of SPEC §8.1, built from the reference state with the
model's own ids and handed to :func:`model.observation.canonicalize`.

Choices (DECISIONS D9): every process ever created is listed (a fork child
from its fork's first step, a failed fork's child as dead); a region is
listed from the op that makes it until it is gone (a userptr object until
its ``unreg`` completes, a pin region until ``unpin``); only live shared
objects are listed.  Each device and its regions are viewed by its
driver's ``view``.
"""

from __future__ import annotations

from collections.abc import Mapping

from model.observation import (
    ZERO_REF,
    Changes,
    DevicePageView,
    DeviceView,
    EntryView,
    FolioView,
    JobView,
    LockView,
    NotifierView,
    ObjectView,
    Observation,
    ProcessView,
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
from model.ops import thread_order

from .mm import entry_word, pmd_mapped
from .state import (
    Dev,
    Device,
    Entry,
    Folio,
    MigD,
    MigF,
    Present,
    Process,
    Region,
    State,
    Swap,
    Target,
    Zero,
)
from .threads import Thread


def entry_ref(entry: Entry) -> Ref:
    if isinstance(entry, Present | MigF):
        return Ref("folio", entry.f, entry.i)
    if isinstance(entry, Dev | MigD):
        return Ref("dpage", entry.d)
    if isinstance(entry, Swap):
        return Ref("swap", entry.slot)
    return ZERO_REF


def entry_class(entry: Entry) -> str:
    if isinstance(entry, Zero):
        return "zero"
    if isinstance(entry, Present):
        return "present"
    if isinstance(entry, Swap):
        return "swap"
    if isinstance(entry, Dev):
        return "device"
    return "migration"


def target_ref(target: Target) -> Ref:
    kind, num, i = target
    if kind == "folio":
        return Ref("folio", num, i)
    if kind == "dpage":
        return Ref("dpage", num)
    return ZERO_REF


def vma_views(proc: Process) -> tuple[VmaView, ...]:
    return tuple(VmaView(v.start, v.end, v.prot, v.kind, v.huge, v.obj, v.offset)
                 for v in proc.vmas)


def _process(st: State, proc: Process, vpns: set[int] | None = None) -> ProcessView:
    """P's view; with ``vpns``, its entries at those pages only."""
    if proc.state == "dead":
        return ProcessView(proc.pid, "dead")
    entries = []
    for v in sorted(proc.pt if vpns is None else vpns & proc.pt.keys()):
        e = proc.pt[v]
        w = getattr(e, "w", False)
        x = getattr(e, "x", False)
        entries.append(EntryView(v, entry_class(e), entry_word(st, e), w, x,  # type: ignore[arg-type]
                                 isinstance(e, Present) and pmd_mapped(proc, v), entry_ref(e)))
    n = proc.notifier
    subs = sorted((st.subs[sid] for sid in n.tree), key=lambda s: (s.start, s.id))
    notifier = NotifierView(n.seq, n.active,
                            tuple(SubscriptionView(s.id, s.start, s.end, s.invalidate_seq)
                                  for s in subs),
                            tuple(n.deferred))
    lock = LockView(proc.lock.writer, tuple(sorted(proc.lock.readers, key=thread_order)))
    return ProcessView(proc.pid, proc.state, vma_views(proc), tuple(entries),  # type: ignore
                       notifier, lock)


def device_view(dev: Device, pages_in_use: int = 0,
                table: Mapping[int, tuple[Target, bool]] | None = None) -> DeviceView:
    """A device's view: its table (``dev.table`` unless given) and the device
    pages it uses."""
    rows = dev.table if table is None else table
    table_view = tuple(TableEntryView(v, target_ref(rows[v][0]), rows[v][1]) for v in sorted(rows))
    return DeviceView(dev.id, dev.kind, dev.pid, dev.dead, dev.lock_holder, table_view,
                      pages_in_use)


def regions_of(st: State, dev: Device) -> list[Region]:
    """A device's regions that are not gone (the ones the observation lists)."""
    return [r for r in st.regions.values() if r.device == dev.id and not r.gone]


def region_view(r: Region, valid: bool = False, dying: bool = False, active: int = 0,
                valid_seq: int | None = None) -> RegionView:
    """A region's view: its pins, and a userptr object's state."""
    pins = tuple((k, Ref("folio", r.pins[k][0], r.pins[k][1])) for k in sorted(r.pins))
    return RegionView(r.id, r.kind, r.device, r.start, r.n, r.mode, pins, valid, dying, active,
                      valid_seq)


def folio_view(f: Folio) -> FolioView:
    return FolioView(f.order, f.refcount, f.pincount, tuple(f.mapcount), tuple(f.words))


def observe(st: State, threads: list[Thread]) -> Observation:
    return canonicalize(raw_observation(st, threads))


def raw_observation(st: State, threads: list[Thread], parts: Changes | None = None
                    ) -> RawObservation:
    """The observation with the model's ids; with ``parts``, only the entries
    and objects it names, and no page views (``watch.observe_parts``)."""
    processes = [_process(st, st.procs[pid], None if parts is None or pid in parts.processes
                          else parts.entries.get(pid, set()))
                 for pid in sorted(st.procs)]
    objects = [ObjectView(o.id, o.size, tuple((i, Ref("folio", o.pages[i], 0))
                                              for i in sorted(o.pages)))
               for o in st.objects.values() if o.alive and (parts is None or o.id in parts.objects)]
    devices, regions = [], []
    for dev in st.devices.values():
        driver = st.drivers.get(dev.kind)
        if driver is not None and driver.view is not None:
            view, its_regions = driver.view(st, dev)
        else:
            view, its_regions = device_view(dev), [region_view(r) for r in regions_of(st, dev)]
        devices.append(view)
        regions += its_regions
    jobs = [JobView(j.id, j.region, j.direction, j.off, j.cnt) for j in st.jobs.values()]
    thread_views = [ThreadView(t.name, t.text, t.failed_commits) for t in threads]
    raw = RawObservation(
        processes=processes, objects=objects, devices=devices, regions=regions, jobs=jobs,
        threads=thread_views,
        folios={f.id: folio_view(f) for f in st.live_folios()} if parts is None else {},
        device_pages={d.id: DevicePageView(d.owner, d.refcount, d.word)
                      for d in st.dpages.values() if not d.freed and parts is None},
        swap_slots={s.id: SwapSlotView(s.word, s.count)
                    for s in st.slots.values() if not s.freed and parts is None},
        pages_in_use=st.frames_used,
        swap_in_use=sum(1 for s in st.slots.values() if not s.freed),
    )
    return raw
