"""The observation of SPEC §8.1, and its canonical numbering.

An implementation describes its state as a :class:`RawObservation` whose
folio, device-page and swap-slot references carry the implementation's own
ids (any hashable value).  :func:`canonicalize` renumbers them by first
appearance in the walk of §8.1 and returns an :class:`Observation`: plain,
frozen, comparable with ``==``.  Two implementations agree on a state exactly
when their canonical observations are equal.

Walk order (§8.1): processes by pid and entries by vpn; then shared objects
by id and pages by index; then devices by id (a mirror's table by vpn); then
regions by R number and pins by page.  Folios, device pages and swap slots
are numbered separately, from 0.  Memory the walk does not reach is not
listed but counts in the totals.

Beyond the tuple of §8.1, an entry and a table entry also carry the page
index inside the folio (DECISIONS.md D2): stricter, never weaker.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeVar

from model.ops import thread_order

Space = Literal["folio", "dpage", "swap", "zero"]
V = TypeVar("V")
EntryClass = Literal["zero", "present", "swap", "migration", "device"]
ProcState = Literal["live", "killed", "dead"]


class Ref(NamedTuple):
    """A reference to a page: system folio page (``index`` in the folio),
    device page, swap slot, or the zero page.  ``raw`` is the
    implementation's id before canonicalization, the canonical int after."""

    space: Space
    raw: Hashable = None
    index: int = 0  # type: ignore[assignment]  # (shadows tuple.index)


ZERO_REF = Ref("zero")


class VmaView(NamedTuple):
    start: int
    end: int
    prot: str
    kind: str
    huge: bool
    obj: int | None  # shared object id
    offset: int | None  # object offset of start


class EntryView(NamedTuple):
    """A non-``none`` page-table entry.  ``word`` is the word the entry's
    target holds (0 for ``zero``).  (A named tuple, as are the other small
    views: an observation builds one per resident page, and a frozen
    dataclass costs several times as much to create and to compare.)"""

    vpn: int
    cls: EntryClass
    word: int
    w: bool
    x: bool
    pmd: bool
    ref: Ref


class SubscriptionView(NamedTuple):
    id: int
    start: int
    end: int
    invalidate_seq: int


class NotifierView(NamedTuple):
    seq: int
    active: int
    subscriptions: tuple[SubscriptionView, ...]  # in (start, id) order
    deferred: tuple[tuple[str, int], ...]  # ("insert" | "remove", subscription id)


class LockView(NamedTuple):
    """``mmap_lock`` holders: a writer, or readers in thread order, or none."""

    writer: str | None = None
    readers: tuple[str, ...] = ()


class ProcessView(NamedTuple):
    pid: int
    state: ProcState
    vmas: tuple[VmaView, ...] = ()
    entries: tuple[EntryView, ...] = ()  # vpn order
    notifier: NotifierView | None = None
    mmap_lock: LockView = LockView()


class FolioView(NamedTuple):
    order: int
    refcount: int
    pincount: int
    mapcount: tuple[int, ...]
    words: tuple[int, ...]


class DevicePageView(NamedTuple):
    owner: int  # device number of the mirror
    refcount: int
    word: int


class SwapSlotView(NamedTuple):
    word: int
    count: int  # type: ignore[assignment]  # (shadows tuple.count)


class ObjectView(NamedTuple):
    id: int
    size: int
    resident: tuple[tuple[int, Ref], ...]  # (page index, folio ref), index order


class TableEntryView(NamedTuple):
    vpn: int
    target: Ref  # folio page, zero page or own device page
    w: bool


class DeviceView(NamedTuple):
    id: int
    kind: str
    pid: int
    dead: bool
    lock_holder: str | None
    table: tuple[TableEntryView, ...] = ()  # mirror only, vpn order
    pages_in_use: int = 0  # mirror only


class RegionView(NamedTuple):
    """A userptr object (``kind == "userptr"``) or a pin region (``"pin"``).
    Released regions and unregistered objects are not listed."""

    id: int
    kind: str
    device: int
    start: int
    n: int
    mode: str
    pins: tuple[tuple[int, Ref], ...]  # (page k of the region, pinned folio page)
    valid: bool = False
    dying: bool = False
    active: int = 0
    valid_seq: int | None = None


class JobView(NamedTuple):
    id: int
    region: int
    direction: str
    off: int
    count: int  # type: ignore[assignment]  # (shadows tuple.count)


class ThreadView(NamedTuple):
    name: str
    op: str  # format_op text
    failed_commits: int


@dataclass
class RawObservation:
    """What an implementation reports; ids in ``Ref.raw`` are its own."""

    processes: list[ProcessView]
    objects: list[ObjectView]
    devices: list[DeviceView]
    regions: list[RegionView]
    jobs: list[JobView]
    threads: list[ThreadView]
    folios: Mapping[Hashable, FolioView] = field(default_factory=dict)
    device_pages: Mapping[Hashable, DevicePageView] = field(default_factory=dict)
    swap_slots: Mapping[Hashable, SwapSlotView] = field(default_factory=dict)
    pages_in_use: int = 0
    swap_in_use: int = 0


@dataclass(frozen=True)
class Observation:
    processes: tuple[ProcessView, ...]
    objects: tuple[ObjectView, ...]
    devices: tuple[DeviceView, ...]
    regions: tuple[RegionView, ...]
    jobs: tuple[JobView, ...]
    threads: tuple[ThreadView, ...]
    folios: tuple[FolioView, ...]  # canonical id order
    device_pages: tuple[DevicePageView, ...]
    swap_slots: tuple[SwapSlotView, ...]
    pages_in_use: int
    swap_in_use: int


@dataclass
class Changes:
    """What a side says may have changed since it last said (SPEC §8.1's
    parts, with its own ids): the processes whose entries may all differ,
    the pages of other processes whose entries may differ, the shared
    objects, and the folios, device pages and swap slots whose views
    may differ.  The executor's cheap comparison (``fuzz.observe_diff``)
    compares only these, and what every partial observation carries whole:
    each process's state, VMAs, notifier and lock, the devices, regions,
    jobs, threads and totals."""

    processes: set[int] = field(default_factory=set)
    entries: dict[int, set[int]] = field(default_factory=dict)  # pid -> vpns
    objects: set[int] = field(default_factory=set)
    folios: set[Hashable] = field(default_factory=set)
    device_pages: set[Hashable] = field(default_factory=set)
    swap_slots: set[Hashable] = field(default_factory=set)


class PageViews(Mapping[Hashable, V]):
    """The views of a partial observation's pages (``Watched.observe_parts``),
    each built when first looked up: ``build`` gives an id's view, or None
    if no such page is alive.  The cheap comparison looks up only the pages
    it pairs for the first time and the ones a side says changed."""

    def __init__(self, build: Callable[[Hashable], V | None]) -> None:
        self.build = build
        self.built: dict[Hashable, V | None] = {}

    def __getitem__(self, raw: Hashable) -> V:
        if raw not in self.built:
            self.built[raw] = self.build(raw)
        view = self.built[raw]
        if view is None:
            raise KeyError(raw)
        return view

    def __iter__(self) -> Iterator[Hashable]:
        return (raw for raw, view in self.built.items() if view is not None)

    def __len__(self) -> int:
        return sum(1 for view in self.built.values() if view is not None)


Numbering = dict[Space, dict[Hashable, int]]
"""An implementation's ids -> canonical numbers, per space."""


class _Numbering:
    def __init__(self) -> None:
        self.ids: dict[Space, dict[Hashable, int]] = {"folio": {}, "dpage": {}, "swap": {}}

    def ref(self, ref: Ref) -> Ref:
        if ref.space == "zero":
            return ref
        table = self.ids[ref.space]
        num = table.setdefault(ref.raw, len(table))
        return Ref(ref.space, num, ref.index)

    def listed(self, space: Space, raws: dict[Hashable, object]) -> list[object]:
        order = sorted(self.ids[space].items(), key=lambda kv: kv[1])
        return [raws[raw] for raw, _ in order if raw in raws]


def _renumber_pins(num: _Numbering, pins: Iterable[tuple[int, Ref]]) -> tuple[tuple[int, Ref], ...]:
    return tuple((k, num.ref(ref)) for k, ref in sorted(pins, key=lambda p: p[0]))


def canonicalize(raw: RawObservation) -> Observation:
    """Renumber ``raw``'s references in walk order and freeze it."""
    return canonicalize_numbered(raw)[0]


def canonicalize_numbered(raw: RawObservation) -> tuple[Observation, Numbering]:
    """:func:`canonicalize`, and the numbering it gave ``raw``'s ids."""
    num = _Numbering()
    processes = []
    for proc in sorted(raw.processes, key=lambda p: p.pid):
        entries = tuple(
            EntryView(e.vpn, e.cls, e.word, e.w, e.x, e.pmd, num.ref(e.ref))
            for e in sorted(proc.entries, key=lambda e: e.vpn)
        )
        processes.append(ProcessView(proc.pid, proc.state, proc.vmas, entries,
                                     proc.notifier, proc.mmap_lock))
    objects = [ObjectView(o.id, o.size, _renumber_pins(num, o.resident))
               for o in sorted(raw.objects, key=lambda o: o.id)]
    devices = []
    for dev in sorted(raw.devices, key=lambda d: d.id):
        table = tuple(TableEntryView(t.vpn, num.ref(t.target), t.w)
                      for t in sorted(dev.table, key=lambda t: t.vpn))
        devices.append(DeviceView(dev.id, dev.kind, dev.pid, dev.dead, dev.lock_holder,
                                  table, dev.pages_in_use))
    regions = []
    for reg in sorted(raw.regions, key=lambda r: r.id):
        regions.append(RegionView(reg.id, reg.kind, reg.device, reg.start, reg.n, reg.mode,
                                  _renumber_pins(num, reg.pins), reg.valid, reg.dying,
                                  reg.active, reg.valid_seq))
    folios = num.listed("folio", dict(raw.folios))
    dpages = num.listed("dpage", dict(raw.device_pages))
    slots = num.listed("swap", dict(raw.swap_slots))
    return (Observation(
        processes=tuple(processes),
        objects=tuple(objects),
        devices=tuple(devices),
        regions=tuple(regions),
        jobs=tuple(sorted(raw.jobs, key=lambda j: j.id)),
        threads=tuple(sorted(raw.threads, key=lambda t: thread_order(t.name))),
        folios=tuple(f for f in folios if isinstance(f, FolioView)),
        device_pages=tuple(d for d in dpages if isinstance(d, DevicePageView)),
        swap_slots=tuple(s for s in slots if isinstance(s, SwapSlotView)),
        pages_in_use=raw.pages_in_use,
        swap_in_use=raw.swap_in_use,
    ), num.ids)
