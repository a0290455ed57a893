"""The whole state of the reference model (SPEC §1), as plain data.

Everything the model knows lives in one :class:`State`: processes (VMAs, a
page table ``vpn -> entry`` holding only non-``none`` entries, the set of
PMD-mapped blocks, a notifier and an ``mmap_lock``), system folios, device
pages, swap slots, shared objects, devices, regions and jobs, and the
drivers that own the devices (``drivers/``).  Ids are never reused.
Nothing here enforces a rule; the ledger of SPEC §1 is kept by the helpers
in ``mm.py`` and checked from scratch by ``invariants.py``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from model.driver import Registry
from model.interface import Config, Violation
from model.ops import Kind, Mode, Prot

# ----------------------------------------------------------------- entries
# A page-table entry is one of these frozen values; ``none`` is absence.


@dataclass(frozen=True)
class Zero:
    """The zero page, read-only."""


@dataclass(frozen=True)
class Present:
    """Page ``i`` of system folio ``f``."""

    f: int
    i: int
    w: bool
    x: bool


@dataclass(frozen=True)
class Swap:
    slot: int


@dataclass(frozen=True)
class MigF:
    """``migration(F, i, w, x)``: a folio page being migrated."""

    f: int
    i: int
    w: bool
    x: bool


@dataclass(frozen=True)
class MigD:
    """``migration(d, w, x)``: a device page being migrated back."""

    d: int
    w: bool
    x: bool


@dataclass(frozen=True)
class Dev:
    """``device(d, w, x)``: the word is in device page ``d``."""

    d: int
    w: bool
    x: bool


Entry = Zero | Present | Swap | MigF | MigD | Dev
ZERO = Zero()

# A device table target: ("folio", f, i), ("zero", 0, 0) or ("dpage", d, 0).
Target = tuple[str, int, int]
ZERO_TARGET: Target = ("zero", 0, 0)

# ------------------------------------------------------------------ memory


@dataclass
class Folio:
    id: int
    order: int
    words: list[int]
    mapcount: list[int]
    refcount: int = 0
    pincount: int = 0
    obj: int | None = None  # the live shared object holding it, if any
    index: int = 0  # its page index in that object
    freed: bool = False
    split_from: tuple[int, int] | None = None  # the THP page whose frame it took over (D23)
    split_into: dict[int, int] | None = None  # a split THP: page -> the folio taking its frame

    @property
    def size(self) -> int:
        return 1 << self.order


@dataclass
class DevicePage:
    id: int
    owner: int
    word: int = 0
    refcount: int = 0
    freed: bool = False


@dataclass
class SwapSlot:
    id: int
    word: int
    count: int = 0
    freed: bool = False


@dataclass
class SharedObject:
    id: int
    size: int
    pages: dict[int, int] = field(default_factory=dict)  # index -> folio id
    alive: bool = True


# -------------------------------------------------------------- processes


@dataclass
class Vma:
    start: int
    end: int
    prot: Prot
    kind: Kind
    huge: bool = False
    obj: int | None = None
    offset: int | None = None

    @property
    def readable(self) -> bool:
        return self.prot != "none"

    @property
    def writable(self) -> bool:
        return self.prot == "rw"


@dataclass
class Subscription:
    id: int
    pid: int
    start: int
    end: int
    owner_kind: str  # the device kind whose driver's callback it runs
    owner: int  # the device or region it belongs to (the driver's choice)
    invalidate_seq: int = 0
    in_tree: bool = False
    removed: bool = False
    successes: int = 0  # successful callback returns (for seq_protocol (d))
    begun: dict[int, int] = field(default_factory=dict)  # seq -> successes at a read_begin


@dataclass
class Invalidation:
    """A running invalidation (history for invariants 2(a), 7, 9)."""

    id: int
    pid: int
    event: str
    start: int
    end: int
    pending: set[int]  # subscription ids whose callback has not returned


@dataclass
class Notifier:
    seq: int = 2
    active: int = 0
    tree: set[int] = field(default_factory=set)  # subscription ids
    deferred: list[tuple[str, int]] = field(default_factory=list)
    running: dict[int, Invalidation] = field(default_factory=dict)
    tree_when_odd: frozenset[int] | None = None  # for seq_protocol (c)
    last_seq: int = 2


@dataclass
class MmapLock:
    writer: str | None = None
    readers: set[str] = field(default_factory=set)


@dataclass
class Process:
    pid: int
    state: str = "live"  # live | killed | dead
    valid: bool = False  # the handle is usable (its fork completed)
    vmas: list[Vma] = field(default_factory=list)  # address order
    pt: dict[int, Entry] = field(default_factory=dict)  # non-none entries
    pmds: set[int] = field(default_factory=set)  # PMD-mapped block bases
    notifier: Notifier = field(default_factory=Notifier)
    lock: MmapLock = field(default_factory=MmapLock)
    released: bool = False  # exit's release callbacks have all returned


# ----------------------------------------------------------------- devices


@dataclass
class Device:
    """A device of a driver's kind, with the driver lock; a page-faulting
    device also has a subscription and a table vpn -> (target, w)."""

    id: int
    kind: str
    pid: int
    dead: bool = False
    lock_holder: str | None = None
    sub: int | None = None
    table: dict[int, tuple[Target, bool]] = field(default_factory=dict)
    driver_state: Any = None  # a plug-in driver's own state (what its open returned)
    pins: list[Target] = field(default_factory=list)  # a plug-in's pins (Core.pin)


@dataclass
class Region:
    """Pages of a range of a device's process that its driver pins (a pin
    region, or a userptr object, which extends it with its own state)."""

    id: int
    kind: str
    device: int
    start: int
    n: int
    mode: Mode
    pins: dict[int, tuple[int, int]] = field(default_factory=dict)  # k -> (folio, i)
    sub: int | None = None
    gone: bool = False  # unregistered or unpinned


@dataclass
class Job:
    id: int
    region: int
    direction: str
    off: int
    cnt: int
    x: int
    stride: int


# ------------------------------------------------------------------ state


@dataclass
class State:
    config: Config
    drivers: Registry[State, Any]  # the device kinds, reached only through it
    procs: dict[int, Process] = field(default_factory=dict)
    folios: dict[int, Folio] = field(default_factory=dict)  # every folio ever
    live: set[int] = field(default_factory=set)  # ids of the folios not freed
    dpages: dict[int, DevicePage] = field(default_factory=dict)
    slots: dict[int, SwapSlot] = field(default_factory=dict)
    objects: dict[int, SharedObject] = field(default_factory=dict)
    devices: dict[int, Device] = field(default_factory=dict)
    regions: dict[int, Region] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)  # active jobs
    subs: dict[int, Subscription] = field(default_factory=dict)
    held_folios: dict[int, str] = field(default_factory=dict)  # folio -> migrator thread
    held_dpages: dict[int, str] = field(default_factory=dict)  # dpage -> migrator thread
    frames_used: int = 0
    dirty: set[tuple[str, int]] = field(default_factory=set)  # may have dropped to 0
    # The folios, device pages and slots ("folio", "dpage", "slot") written since an
    # observer (watch.py) last looked, once it starts the record: ``note`` at each
    # write, and ``dirty`` at each collect.
    touched: set[tuple[str, int]] | None = None
    next_id: dict[str, int] = field(default_factory=dict)
    page_ops: int = 0
    violations: list[Violation] = field(default_factory=list)
    applying: Invalidation | None = None  # the invalidation whose apply runs
    # What the drivers' designs cost (the compare command): callbacks, steps
    # blocked in a callback, device faults and retries, pages pinned, work
    # failed or skipped because of pins, failed non-blockable callbacks.
    costs: Counter[str] = field(default_factory=Counter)

    def new_id(self, kind: str) -> int:
        num = self.next_id.get(kind, 0)
        self.next_id[kind] = num + 1
        return num

    def note(self, kind: str, num: int) -> None:
        """A page's counts or words written, for an observer's record."""
        if self.touched is not None:
            self.touched.add((kind, num))

    def violate(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(invariant, detail))

    def live_folios(self) -> list[Folio]:
        return [self.folios[fid] for fid in sorted(self.live)]

    def device_pages_of(self, dev: int) -> int:
        return sum(1 for d in self.dpages.values() if d.owner == dev and not d.freed)
