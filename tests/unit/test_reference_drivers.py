"""The reference's device kinds are drivers, reached only through their records."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from model.driver import Registry
from model.interface import Config, Violation
from model.ops import (
    DEVICE_KINDS,
    OK,
    Done,
    Dread,
    HandleResult,
    MigrateToDev,
    Mmap,
    Munmap,
    Num,
    Op,
    Open,
    Read,
    Values,
)
from model.reference import ReferenceKernel
from model.reference.drivers import REGISTRY
from model.reference.kernel import CORE_OPS, OPS


def run(k: ReferenceKernel, name: str, op: Op) -> object:
    assert k.start(name, op) == OK
    while True:
        out = k.step(name)
        if isinstance(out, Done):
            return out.result


def test_the_registry_holds_the_built_in_kinds() -> None:
    assert set(REGISTRY.by_kind) == set(DEVICE_KINDS)
    assert OPS == CORE_OPS | REGISTRY.ops()
    assert not set(CORE_OPS) & set(REGISTRY.ops())


def test_the_core_reaches_a_driver_through_its_record() -> None:
    """Swap the mirror's record for one whose hooks are wrapped: open, the
    observation, a CPU fault on its page, munmap's invalidation and the
    invariant checks go through it."""
    calls: list[str] = []
    mirror = REGISTRY.by_kind["mirror"]
    assert mirror.open is not None and mirror.invalidate is not None
    assert mirror.view is not None and mirror.migrate_to_ram is not None
    base_open, base_invalidate, base_view = mirror.open, mirror.invalidate, mirror.view
    base_to_ram = mirror.migrate_to_ram

    def open_(st: Any, dev: Any) -> None:
        calls.append("open")
        base_open(st, dev)

    def invalidate(*args: Any) -> Any:
        calls.append("invalidate")
        return (yield from base_invalidate(*args))

    def view(st: Any, dev: Any) -> Any:
        calls.append("view")
        return base_view(st, dev)

    def to_ram(*args: Any) -> Any:
        calls.append("migrate_to_ram")
        return (yield from base_to_ram(*args))

    def checks(st: Any) -> list[Violation]:
        return [Violation("accounting", "the mirror's own check")]

    registry: Registry[Any, Any] = Registry("reference")
    for driver in REGISTRY.by_kind.values():
        registry.register(driver)
    registry.by_kind["mirror"] = replace(mirror, open=open_, invalidate=invalidate, view=view,
                                          migrate_to_ram=to_ram, checks=checks)
    k = ReferenceKernel(Config())
    k.state.drivers = registry
    assert run(k, "L1", Mmap(0, 0, 4, "rw", "private")) == OK
    assert run(k, "L2", Open(0, "mirror", 0)) == HandleResult("D", 0)
    assert run(k, "L3", Dread(0, 0, 2)) == Values((0, 0), 1)
    k.observe()
    assert calls == ["open", "view"]
    assert run(k, "L4", MigrateToDev(0, 0, 1)) == Num(1)
    calls.clear()
    assert run(k, "L5", Read(0, 0)) == Num(0)
    assert calls == ["migrate_to_ram", "invalidate"]
    calls.clear()
    assert run(k, "L6", Munmap(0, 0, 4)) == OK
    assert calls == ["invalidate"]
    assert set(k.take_violations()) == {Violation("accounting", "the mirror's own check")}
