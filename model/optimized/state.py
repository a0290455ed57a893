"""The objects of SPEC §1 as the optimized implementation holds them.

``Process`` is ``struct mm_struct`` plus its task state; ``Vma`` is
``struct vm_area_struct`` (``vm_pgoff`` is the linear page index of
``start``: the object offset for shared VMAs, the anon index for private
ones, which is what the reverse map needs); ``SharedObject`` is a shmem
``address_space`` (its pages in a radix tree, like ``i_pages``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from model.ops import Direction, Mode
from model.optimized.mmu_notifier import Notifier, Subscription
from model.optimized.pagetable import Radix
from model.optimized.threads import Mutex, RwSem


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
    state: str = "live"
    vmas: list[Vma] = field(default_factory=list)
    pt: Radix = field(default_factory=Radix)
    mn: Notifier = field(default_factory=Notifier)
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


@dataclass(eq=False)
class Device:
    id: int
    kind: str
    pid: int
    lock: Mutex = field(default_factory=Mutex)
    dead: bool = False
    sub: Subscription | None = None  # mirror
    table: Radix = field(default_factory=Radix)  # mirror: vpn -> packed target


@dataclass(eq=False)
class Region:
    """A userptr object (``kind == "userptr"``) or a pin region (``"pin"``)."""

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
