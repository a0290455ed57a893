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

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

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
