"""The state of the optimized implementation: the objects of SPEC §1 and
:class:`KernelState`, the one structure that holds them all.

``Process`` is ``struct mm_struct`` plus its task state; ``Vma`` is
``struct vm_area_struct`` (``vm_pgoff`` is the linear page index of
``start``: the object offset for shared VMAs, the anon index for private
ones, which is what the reverse map needs); ``SharedObject`` is a shmem
``address_space`` (its pages in a radix tree, like ``i_pages``); ``Device``
is a driver's device (``struct dmirror_device``, an i915 or RDMA device),
with what belongs to it hanging off it: its driver lock and, for the drivers
that use them, an interval subscription, a device table and device-private
memory (``struct dev_pagemap``: ``pgmap->ops->migrate_to_ram`` is how a CPU
fault on one of its pages reaches the driver).  The drivers themselves
(``drivers/``, one :class:`model.driver.Driver` record per device kind) are
in :attr:`KernelState.drivers`; nothing here knows a kind.

Every op is a function ``op(k: KernelState, t: Thread, op)``; the op modules
import this module and the lower layers (``threads``, ``mmu_notifier``,
``pagetable``, ``folios``, ...), never ``kernel.py``, which is only the
``Implementation`` adapter over a :class:`KernelState`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from model.bugs import Bug
from model.driver import Registry
from model.interface import Config, Violation
from model.ops import Direction, Mode
from model.optimized.delta import ArrayWatch
from model.optimized.folios import DevicePages, FrameTable, SwapTable
from model.optimized.ledger import Ledger
from model.optimized.mmu_notifier import Notifier, Subscription
from model.optimized.pagetable import Radix
from model.optimized.threads import Gen, Mutex, RwSem, Thread


@dataclass(eq=False)
class Vma:
    start: int
    end: int
    prot: str
    kind: str
    huge: bool
    obj: int | None
    pgoff: int

    def piece(self, start: int, end: int) -> Vma:
        return Vma(start, end, self.prot, self.kind, self.huge, self.obj,
                   self.pgoff + (start - self.start))

    def index_of(self, v: int) -> int:
        return self.pgoff + (v - self.start)

    @property
    def readable(self) -> bool:
        return self.prot != "none"

    @property
    def writable(self) -> bool:
        return self.prot == "rw"


@dataclass(eq=False)
class Process:
    pid: int
    mn: Notifier
    state: str = "live"
    vmas: list[Vma] = field(default_factory=list)
    pt: Radix = field(default_factory=Radix)
    mmap_lock: RwSem = field(default_factory=RwSem)
    forked: bool = False
    vma_gen: int = 0  # bumped by every VMA list change (find_vma's cache)
    vma_starts: list[int] = field(default_factory=list)
    vma_starts_gen: int = -1
    handle_ok: bool = True  # False until the fork creating it completes (DECISIONS D6)


@dataclass(eq=False)
class SharedObject:
    id: int
    size: int
    pages: Radix = field(default_factory=Radix)  # index -> pfn + 1
    vma_count: int = 0
    live: bool = True


MigrateToRam = Callable[["KernelState", Thread, int], Gen[str]]
"""``dev_pagemap_ops.migrate_to_ram`` for device page d: "again" (waited on
another migrator), "none" (no entry left), "moved" or "nomem"."""


@dataclass(frozen=True)
class DevPagemapOps:
    """``struct dev_pagemap_ops``: what the core calls on a device-private page."""

    migrate_to_ram: MigrateToRam


@dataclass(frozen=True)
class DevPagemap:
    """``struct dev_pagemap`` of a device's private memory (``pgmap->owner``
    is the device: its own migrate events are told apart by it)."""

    owner: int
    ops: DevPagemapOps


@dataclass(eq=False)
class Device:
    id: int
    kind: str
    pid: int
    lock: Mutex = field(default_factory=Mutex)  # the driver lock
    dead: bool = False
    sub: Subscription | None = None  # a page-faulting device's subscription
    table: Radix = field(default_factory=Radix)  # its device table: vpn -> packed target
    pgmap: DevPagemap | None = None  # its device-private memory, if it has any
    drv: Any = None  # its driver's own state (a plug-in's, ``plugin_core.py``)
    pins: list[int] = field(default_factory=list)  # pfns a plug-in pinned (``Core.pin``)


@dataclass(eq=False)
class Region:
    """Pages of a range of a device's process that its driver pins: a region
    no notifier reaches (``sub`` None: its pins outlive the mapping), or an
    object whose pins are valid only under its subscription (``valid``,
    ``dying``, ``active`` jobs, ``valid_seq``)."""

    id: int
    kind: str
    dev: int
    start: int
    n: int
    mode: Mode
    pins: npt.NDArray[np.int64] | None = None  # pfn per page, when pinned
    pin_gens: npt.NDArray[np.int64] | None = None
    valid: bool = False
    dying: bool = False
    active: int = 0
    valid_seq: int | None = None
    sub: Subscription | None = None


@dataclass(eq=False)
class Job:
    id: int
    region: int
    direction: Direction
    off: int
    count: int
    x: int
    stride: int


@dataclass(eq=False)
class KernelState:
    """Everything the optimized implementation holds (SPEC §1), for the ops.

    Built by :meth:`boot` in the initial state (P0 live).  ``pops`` counts
    the page operations of the step running (SPEC §5.4), ``serial`` the
    steps taken (a device walk's cache is good for its next step only),
    ``entries`` the calls of ``OptimizedKernel.start`` and ``step``, the
    only entry points that write the state after :meth:`boot`;
    ``ledger`` and the fields from ``pins_by_head`` to ``followed`` are
    what the invariant checks keep between steps (``checks.py``); ``arrays``
    what the page arrays were at the last look, which is skipped if
    ``entries`` has not moved since (``delta.py``)."""

    config: Config
    drivers: Registry[KernelState, Thread]  # the device kinds, reached only through it
    bug: Bug | None
    frames: FrameTable
    swap: SwapTable
    dpages: DevicePages
    procs: dict[int, Process] = field(default_factory=dict)
    objects: dict[int, SharedObject] = field(default_factory=dict)
    devices: dict[int, Device] = field(default_factory=dict)
    regions: dict[int, Region] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)
    threads: dict[str, Thread] = field(default_factory=dict)
    next_obj: int = 0
    next_sub: int = 0
    violations: list[Violation] = field(default_factory=list)
    pops: int = 0
    serial: int = 0
    entries: int = 0
    ledger: Ledger = field(default_factory=Ledger)
    arrays: ArrayWatch = field(default_factory=ArrayWatch)
    # what the local checks compare with (checks.py): pins by head, held pages
    pins_by_head: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    held: set[int] = field(default_factory=set)
    dheld: set[int] = field(default_factory=set)
    pin_key: object = None
    last_seq: dict[int, int] = field(default_factory=dict)
    # a device table's findings (invariant 2), with what they were found from
    followed: dict[int, tuple[object, list[tuple[str, str]]]] = field(default_factory=dict)
    subs: dict[int, Subscription] = field(default_factory=dict)  # those drivers name by id

    @classmethod
    def boot(cls, config: Config, drivers: Registry[KernelState, Thread]) -> KernelState:
        k = cls(config, drivers, config.bug, FrameTable(config.frames), SwapTable(),
                DevicePages(config.device_frames))
        k.procs[0] = k.new_process(0)
        return k

    def new_process(self, pid: int, handle_ok: bool = True) -> Process:
        """A process with an empty mm (``mm_alloc``); not yet in ``procs``."""
        return Process(pid, mn=Notifier(self, self.bug), handle_ok=handle_ok)

    def bugged(self, bug: Bug) -> bool:
        """Whether the planted bug ``bug`` (a declaration of ``model/bugs.py``) is on."""
        return self.bug is bug

    def violation(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(invariant, detail))

    def proc(self, pid: int) -> Process | None:
        """P's process if its handle is valid (DECISIONS D6)."""
        proc = self.procs.get(pid)
        return proc if proc is not None and proc.handle_ok else None

    def new_sub_id(self) -> int:
        n = self.next_sub
        self.next_sub += 1
        return n

    def pgmap_of(self, d: int) -> DevPagemap:
        """``page_pgmap()``: the dev_pagemap device page ``d`` belongs to."""
        pgmap = self.devices[int(self.dpages.owner[d])].pgmap
        assert pgmap is not None, f"device page {d} of a device without device memory"
        return pgmap
