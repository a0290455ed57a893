"""The optimized implementation's plug-in core (model/optimized/plugin_core.py).

A tiny plug-in driver, written against ``model.driver.Core`` only, runs on
the optimized kernel: its ops are dispatched, its callback is called by the
notifier, its table is shown by the observation (entry for entry as a
mirror's over the same pages) and checked by the invariants, and it is
registered when a kernel is built and dropped once it is unloaded.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from model import decl
from model.decl import Addr, Count, D, declare
from model.driver import PLUGINS, Core, Page, PluginDriver, add_plugin
from model.interface import Config
from model.ops import (
    ADDRESS_PAGES,
    EINVAL,
    MAX_VALUE_PAGES,
    OK,
    Done,
    Dread,
    Err,
    HandleResult,
    Mmap,
    Munmap,
    Op,
    Open,
    OpResult,
    Values,
    Write,
    Yielded,
)
from model.optimized import OptimizedKernel
from model.optimized.drivers import REGISTRY
from model.optimized.plugin_core import PluginCore

KIND = "tinydev"
Gen = Generator[Any, None, Any]


@dataclass(frozen=True)
class TinyFault:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class TinyRead:
    d: int
    s: int
    n: int


@dataclass
class Tiny:
    d: int
    sub: int
    table: dict[int, tuple[Page, bool]] = field(default_factory=dict)
    callbacks: int = 0


def tiny_open(core: Core, d: int) -> Tiny:
    return Tiny(d, core.subscribe(d, 0, ADDRESS_PAGES))


def op_fault(core: Core, th: Any, op: TinyFault) -> Gen:
    """The mirror's protocol: read_begin; Y3; walk; commit under the lock
    only if read_retry is false."""
    tiny = core.device(op.d, KIND)
    if tiny is None or op.n < 1 or op.n > MAX_VALUE_PAGES:
        return EINVAL
    if (e := core.state_err(th, core.device_pid(op.d))) is not None:
        return e
    while True:
        seq = yield from core.read_begin(th, tiny.sub)
        yield from core.y()
        got = yield from core.range_fault(th, op.d, op.s, op.n, False)
        if isinstance(got, Err):
            return got
        yield from core.lock(th, op.d)
        if core.read_retry(tiny.sub, seq):
            core.unlock(th, op.d)
            continue
        for k, pw in enumerate(got):
            tiny.table[op.s + k] = pw
        core.unlock(th, op.d)
        return OK


def op_read(core: Core, th: Any, op: TinyRead) -> Gen:
    tiny = core.device(op.d, KIND)
    if tiny is None or op.n < 1 or op.n > MAX_VALUE_PAGES:
        return EINVAL
    yield from core.lock(th, op.d)
    words = tuple(core.dma_read(tiny.table[op.s + k][0]) for k in range(op.n)
                  if op.s + k in tiny.table)
    core.unlock(th, op.d)
    return Values(words)


def tiny_invalidate(core: Core, th: Any, tiny: Tiny, sub: int, event: str, a: int, b: int,
                    owner: int | None, blockable: bool, seq: int) -> Gen:
    if blockable:
        yield from core.lock(th, tiny.d)
    elif not core.trylock(th, tiny.d):
        return False
    core.set_seq(sub, seq)
    tiny.callbacks += 1
    for v in [v for v in tiny.table if a <= v < b]:
        del tiny.table[v]
    core.unlock(th, tiny.d)
    return True


DRIVER = PluginDriver(KIND, ops={"tiny_fault": op_fault, "tiny_read": op_read},
                      open=tiny_open, invalidate=tiny_invalidate, table=lambda t: t.table)


@pytest.fixture
def tiny() -> Iterator[PluginDriver]:
    common: dict[str, Any] = {"device": KIND, "plugin": KIND}
    declare(TinyFault, "tiny_fault", 0, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), **common)
    declare(TinyRead, "tiny_read", 1, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), **common)
    add_plugin(DRIVER)
    try:
        yield DRIVER
    finally:
        PLUGINS.pop(KIND, None)
        decl.unregister("tiny_fault")
        decl.unregister("tiny_read")
        OptimizedKernel()  # drops the unloaded plug-in from the registry


def run(k: OptimizedKernel, op: Op, thread: str = "T1") -> OpResult:
    assert k.start(thread, op) == OK
    while True:
        out = k.step(thread)
        if isinstance(out, Done):
            return out.result


def steps(k: OptimizedKernel, thread: str, n: int) -> None:
    for _ in range(n):
        assert isinstance(k.step(thread), Yielded)


def tables(k: OptimizedKernel) -> dict[str, Any]:
    return {d.kind: d.table for d in k.observe().devices}


def test_a_loaded_plugin_is_registered_when_a_kernel_is_built(tiny: PluginDriver) -> None:
    k = OptimizedKernel()
    driver = REGISTRY.get(KIND)
    assert driver is not None and driver.extra["plugin"] is tiny
    assert set(driver.ops) == {"tiny_fault", "tiny_read"}
    assert OptimizedKernel().state.drivers.get(KIND) is driver  # registered once
    assert run(k, Open(0, KIND, 1)) == HandleResult("D", 1)
    assert isinstance(k.state.devices[1].drv, Tiny)


def test_an_unloaded_plugin_leaves_the_registry() -> None:
    OptimizedKernel()
    assert KIND not in REGISTRY.by_kind
    assert {"mirror", "userptr", "pin"} <= set(REGISTRY.by_kind)


def test_its_table_shows_and_follows_like_a_mirror(tiny: PluginDriver) -> None:
    k = OptimizedKernel(Config(checks=True))
    run(k, Mmap(0, 0, 8, "rw", "private"))
    assert run(k, Write(0, 1, 7)) == OK
    assert run(k, Open(0, "mirror", 1)) == HandleResult("D", 1)
    assert run(k, Open(0, KIND, 2)) == HandleResult("D", 2)
    assert run(k, Dread(1, 0, 4)) == Values((0, 7, 0, 0), 1)
    assert run(k, TinyFault(2, 0, 4)) == OK
    t = tables(k)
    assert len(t[KIND]) == 4 and t[KIND] == t["mirror"]
    assert run(k, TinyRead(2, 0, 4)) == Values((0, 7, 0, 0))
    assert run(k, Munmap(0, 1, 2)) == OK  # the callback drops [1, 3)
    t = tables(k)
    assert [e.vpn for e in t[KIND]] == [0, 3] and t[KIND] == t["mirror"]
    assert k.state.devices[2].drv.callbacks == 1
    assert k.take_violations() == []


def test_a_callback_between_read_begin_and_commit_makes_it_retry(tiny: PluginDriver) -> None:
    k = OptimizedKernel(Config(checks=True))
    run(k, Mmap(0, 0, 4, "rw", "private"))
    run(k, Write(0, 0, 5))
    run(k, Open(0, KIND, 2))
    assert k.start("T1", TinyFault(2, 0, 2)) == OK
    steps(k, "T1", 2)  # read_begin, Y3; the walk's [R] and its last Y3
    assert run(k, Write(0, 1, 3), "T2") == OK  # the zero page at 1 replaced: I(clear, [1, 2))
    while not isinstance(out := k.step("T1"), Done):
        pass
    assert out.result == OK
    tiny_state = k.state.devices[2].drv
    assert tiny_state.callbacks == 1
    assert PluginCore(k.state).dma_read(tiny_state.table[1][0]) == 3  # walked again
    assert run(k, TinyRead(2, 0, 2)) == Values((5, 3))
    assert k.take_violations() == []


def test_a_stale_table_entry_is_a_violation(tiny: PluginDriver) -> None:
    """Invariant 2 checks a plug-in's table like a mirror's."""
    k = OptimizedKernel(Config(checks=True))
    run(k, Mmap(0, 0, 4, "rw", "private"))
    run(k, Write(0, 0, 5))
    run(k, Open(0, KIND, 2))
    assert run(k, TinyFault(2, 0, 1)) == OK
    tiny_state = k.state.devices[2].drv
    page, _ = tiny_state.table[0]
    tiny_state.table[1] = (page, False)  # names page 0's frame at vpn 1
    run(k, Write(0, 2, 1))
    assert {v.invariant for v in k.take_violations()} == {"device_entries_follow_cpu"}


def test_the_core_pages_are_packed_targets(tiny: PluginDriver) -> None:
    k = OptimizedKernel()
    run(k, Mmap(0, 0, 2, "rw", "private"))
    run(k, Write(0, 0, 9))
    run(k, Open(0, KIND, 2))
    run(k, TinyFault(2, 0, 2))
    core = PluginCore(k.state)
    (p0, w0), (p1, w1) = (k.state.devices[2].drv.table[v] for v in (0, 1))
    assert core.dma_read(p0) == 9 and core.dma_read(p1) == 0
    core.dma_write(p0, 11)
    assert run(k, TinyRead(2, 0, 1)) == Values((11,))
    assert (w0, w1) == (True, False)
