"""The driver seam: a device kind is a driver, reached only through its ops table.

Linux's core reaches a driver only through tables the driver hands it:
``interval_sub->ops->invalidate`` for a notifier callback and
``pgmap->ops->migrate_to_ram`` for a CPU fault on a device-private page.
mirrorfuzz does the same: each implementation keeps a registry of
:class:`Driver` records, one per device kind (``mirror``, ``userptr``,
``pin`` and plug-ins), and its core (the page table, faults, notifiers,
migration, ``open``, ``exit``, the observation and the invariants) names no
device kind: it calls the record.

A driver provides, per implementation (the reference model and the
optimized one each register their own twin; see ``docs/drivers.md``):

* ``kind``: its name, the word after ``open P``;
* ``ops``: its ops' generators by keyword (the ops themselves are declared
  once in ``model.decl``, with ``device=kind``);
* ``open``: what it sets up when ``open P kind`` makes a device (a mirror
  inserts its subscription over [0, 2^36));
* ``invalidate``: its notifier callback, blockable or not (a non-blockable
  call may fail: SPEC §4);
* ``migrate_to_ram``: for a driver owning device-private pages, the CPU
  fault's way back (SPEC §6.5);
* ``view``: its part of the observation (its device table and pages in
  use), from which the executor's comparison and the invariants read;
* ``checks``: optional invariant checks of its own.

The type parameters are the implementation's state and thread types: a
record is only ever called by the implementation that registered it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

S = TypeVar("S")  # an implementation's state
T = TypeVar("T")  # an implementation's thread

Gen = Generator[Any, None, Any]
OpFn = Callable[[Any, Any, Any], Gen]
"""fn(state, thread, op) -> a generator returning the op's result."""


class DriverError(ValueError):
    """A driver breaks the API (a missing callback, an op without a declaration)."""


@dataclass(frozen=True)
class Driver(Generic[S, T]):
    """One device kind, as one implementation reaches it."""

    kind: str
    ops: Mapping[str, OpFn]
    open: Callable[[S, Any], None] | None = None
    invalidate: Callable[..., Gen] | None = None
    migrate_to_ram: Callable[..., Gen] | None = None
    view: Callable[[S, Any], Any] | None = None
    checks: Callable[[S], list[Any]] | None = None
    busy: Callable[[S, Any], list[tuple[int, int]]] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[S, T]):
    """An implementation's drivers, by kind (``interval_sub->ops`` lookup)."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.by_kind: dict[str, Driver[S, T]] = {}

    def register(self, driver: Driver[S, T]) -> None:
        from model.decl import SCHEMA_BY_KEYWORD

        where = f"{self.side} driver {driver.kind!r}"
        if driver.kind in self.by_kind and self.by_kind[driver.kind] is not driver:
            raise DriverError(f"{where}: registered twice")
        for keyword, fn in driver.ops.items():
            decl = SCHEMA_BY_KEYWORD.get(keyword)
            if decl is None:
                raise DriverError(f"{where}: op {keyword!r} has no declaration (model.decl)")
            if decl.device != driver.kind:
                raise DriverError(f"{where}: op {keyword!r} is declared for {decl.device!r}")
            if not callable(fn):
                raise DriverError(f"{where}: op {keyword!r} is not a function")
        declared = {d.keyword for d in SCHEMA_BY_KEYWORD.values() if d.device == driver.kind}
        missing = declared - set(driver.ops)
        if missing:
            raise DriverError(f"{where}: no function for declared op(s) {sorted(missing)}")
        self.by_kind[driver.kind] = driver

    def get(self, kind: str) -> Driver[S, T] | None:
        return self.by_kind.get(kind)

    def ops(self) -> dict[str, OpFn]:
        """Every driver op's function, by keyword."""
        return {kw: fn for d in self.by_kind.values() for kw, fn in d.ops.items()}


# ------------------------------------------------------------- plug-ins
# A plug-in driver is one file that runs on both cores: its ops and its
# callback are written against Core, which each implementation provides
# over its own structures.  Its logic is then judged by the invariants
# (a device table is checked by device_entries_follow_cpu like a mirror's)
# and the coherence oracle; the two cores by the differential comparison.

Page = Any
"""A page as the core names it to a driver: a folio page, the zero page or
a device page.  Opaque to the driver: it only stores, compares and hands it
back (for DMA, or as a device-table target)."""


class Core(Protocol):
    """What the core offers a driver (Linux counterparts named)."""

    def device(self, d: int, kind: str) -> Any | None:
        """Driver state of device ``d`` if it is a live handle of ``kind``, else None."""

    def device_pid(self, d: int) -> int:
        """The process device ``d`` is bound to."""

    def state_err(self, th: Any, pid: int) -> Any | None:
        """``ESRCH`` if ``pid``'s state does not let ``th``'s op run (Appendix B)."""

    def subscribe(self, d: int, start: int, end: int) -> int:
        """``mmu_interval_notifier_insert`` on d's process: a subscription id."""

    def unsubscribe(self, th: Any, sub: int) -> Gen:
        """``mmu_interval_notifier_remove`` (SPEC §4: a Y4 while an invalidation runs)."""

    def read_begin(self, th: Any, sub: int) -> Gen:
        """``mmu_interval_read_begin``: the seq (a Y4 while it is the current odd seq)."""

    def read_retry(self, sub: int, seq: int) -> bool:
        """``mmu_interval_read_retry``."""

    def set_seq(self, sub: int, seq: int) -> None:
        """``mmu_interval_set_seq``: in every successful callback."""

    def range_fault(self, th: Any, d: int, start: int, n: int, write: bool) -> Gen:
        """``hmm_range_fault`` on d's process: take mmap_lock for reading,
        walk [start, start+n) faulting as a CPU access would (device pages of
        other owners migrated back), a Y3 after every 64 pages and after the
        last (mmap_lock released before it).  Returns a tuple of (page, w)
        per vpn, or EFAULT (no VMA or no r), EPERM (write without w),
        ENOMEM, ESRCH."""

    def pin(self, th: Any, d: int, start: int, n: int, write: bool) -> Gen:
        """``pin_user_pages(FOLL_LONGTERM)`` on d's process (SPEC §6.4): take
        mmap_lock for reading, pin every page of [start, start+n) in order
        (device pages migrated back first, COW broken for a write or a
        private read-only pin), release the lock.  A tuple of pages (each
        pinned once more, held for ``d`` until :meth:`unpin`), or EINVAL,
        EFAULT (no VMA, no r, or write without w), ENOMEM, ESRCH; an error
        pins nothing."""

    def unpin(self, d: int, pages: Sequence[Page]) -> None:
        """``unpin_user_pages``: drop one of d's pins on each page (a page
        whose count reaches 0 is freed)."""

    def migrate_vma(self, th: Any, d: int, start: int, n: int) -> Gen:
        """``migrate_vma_setup``/``_pages``/``_finalize`` of [start, start+n) of
        d's process to d's device-private memory (SPEC §6.1's migrate, the
        core's part): take mmap_lock for reading; EINVAL unless VMAs allowing
        r cover the range; split the PMDs; then I(migrate, owner = d), whose
        apply moves each private page that is none, zero, or an order-0 page
        mapped once, while d has a free device frame; release the lock.
        Returns the pages moved as a tuple of (v, device page, w), in order,
        each still held by this migration (as Linux's migrate_vma holds the
        pages until ``migrate_vma_finalize``: a CPU fault on one waits); the
        driver maps them in its table (after the invalidation has ended: the
        window of DECISIONS D15), then calls :meth:`migrate_finalize`.  A
        device page of d that a CPU access or another device later needs
        goes back to RAM through the core's migrate-back (SPEC §6.5), which
        then calls the driver's ``page_moved``."""

    def migrate_finalize(self, th: Any, pages: Sequence[tuple[int, Page, bool]]) -> None:
        """``migrate_vma_finalize``: release the pages :meth:`migrate_vma` gave
        (one no CPU entry names any more is freed)."""

    def dma_read(self, page: Page) -> int:
        """The word of ``page`` (a use-after-free if it is freed)."""

    def dma_write(self, page: Page, word: int) -> None:
        """Store ``word`` in ``page``."""

    def lock(self, th: Any, d: int) -> Gen:
        """Take d's driver lock (a Y4 while held)."""

    def trylock(self, th: Any, d: int) -> bool:
        """Take d's driver lock if free (non-blockable callbacks)."""

    def unlock(self, th: Any, d: int) -> None:
        """Release d's driver lock."""

    def wait(self, th: Any, cond: Callable[[], bool], what: str) -> Gen:
        """Sleep until ``cond()`` holds (``wait_event``): nothing if it holds
        now, else a Y4 until it does; in a non-blockable callback a wait is a
        finding (``no_block_when_nonblockable``)."""

    def y(self) -> Gen:
        """A plain yield point (Y3)."""

    def bugged(self, bug: Any) -> bool:
        """Whether planted bug ``bug`` (a ``model.bugs`` declaration) is on."""


@dataclass(frozen=True)
class PluginDriver:
    """A driver that runs on both cores (one file, see docs/drivers.md).

    ``ops[keyword](core, th, op)`` is each op's generator; ``open(core, d)``
    returns the device's driver state; ``invalidate(core, th, state, sub,
    event, a, b, owner, blockable, seq)`` is the callback (a generator
    returning True on success; a non-blockable call may return False);
    ``table(state)`` is the device table, vpn -> (page, w), that the
    observation shows and invariant 2 checks; ``page_moved(state, page)``,
    if given, is told that one of the device's own pages (from
    ``Core.migrate_vma``) went back to RAM, before it is freed: the driver
    drops its table entries naming it (``pgmap->ops->migrate_to_ram``)."""

    kind: str
    ops: Mapping[str, Callable[..., Gen]]
    open: Callable[[Core, int], Any]
    invalidate: Callable[..., Gen]
    table: Callable[[Any], Mapping[int, tuple[Page, bool]]]
    checks: Callable[[Any], list[str]] | None = None
    page_moved: Callable[[Any, Page], None] | None = None
    busy: Callable[[Any], list[tuple[int, int]]] | None = None
    """The ranges ``[s, e)`` of the device's process with device work in
    flight (an active job, DMA under way): what ``--contract
    registration-cache`` forbids userspace to munmap, mremap, mprotect or
    fork (docs/the-2019-argument.md)."""


PLUGINS: dict[str, PluginDriver] = {}
"""Plug-in drivers loaded in this process, by kind; each implementation
wraps every one in a :class:`Driver` of its own over its :class:`Core`."""


def add_plugin(driver: PluginDriver) -> None:
    """Register a plug-in after checking it against the API: a
    :class:`DriverError` naming the rule it breaks."""
    from model.decl import SCHEMA_BY_KEYWORD

    where = f"driver {driver.kind!r}"
    if not isinstance(driver, PluginDriver):
        raise DriverError(f"DRIVER is a {type(driver).__name__}, not a model.driver.PluginDriver")
    if not driver.kind.isidentifier() or driver.kind in ("mirror", "userptr", "pin"):
        raise DriverError(f"{where}: the kind must be a new identifier")
    for name in ("open", "invalidate", "table"):
        if not callable(getattr(driver, name)):
            raise DriverError(f"{where}: {name} is not a function")
    for name in ("checks", "page_moved", "busy"):
        if getattr(driver, name) is not None and not callable(getattr(driver, name)):
            raise DriverError(f"{where}: {name} is not a function")
    for keyword, fn in driver.ops.items():
        decl = SCHEMA_BY_KEYWORD.get(keyword)
        if decl is None:
            raise DriverError(f"{where}: op {keyword!r} has no declaration (model.decl.declare)")
        if decl.device != driver.kind or decl.plugin != driver.kind:
            raise DriverError(f"{where}: op {keyword!r} must be declared with "
                              f"device={driver.kind!r}, plugin={driver.kind!r}")
        if not callable(fn):
            raise DriverError(f"{where}: op {keyword!r} is not a function")
    declared = {d.keyword for d in SCHEMA_BY_KEYWORD.values() if d.plugin == driver.kind}
    if declared - set(driver.ops):
        raise DriverError(f"{where}: no function for declared op(s) "
                          f"{sorted(declared - set(driver.ops))}")
    if not driver.ops:
        raise DriverError(f"{where}: no ops")
    if driver.kind in PLUGINS and PLUGINS[driver.kind] is not driver:
        raise DriverError(f"{where}: loaded twice")
    PLUGINS[driver.kind] = driver
