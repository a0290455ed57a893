"""A plug-in driver on the reference: model.reference.plugin_core.

``toy`` is a one-notifier device written only against model.driver.Core:
``toy_bind D s n`` mirrors [s, s+n) into its table (read_begin, range_fault,
lock, read_retry, install), ``toy_read D s n`` reads through its table, and
its callback drops the table entries in the invalidated range.  A planted
bug makes the bind skip read_retry; the reference's invariants catch it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from model import bugs
from model.decl import Addr, Count, D, declare, unregister
from model.driver import PLUGINS, Core, Gen, Page, PluginDriver, add_plugin
from model.interface import Config
from model.ops import (
    EFAULT,
    EINVAL,
    ENOENT,
    OK,
    Done,
    Err,
    HandleResult,
    MigrateToDev,
    Mmap,
    Mprotect,
    Munmap,
    Num,
    Open,
    Read,
    Values,
    Write,
    Yielded,
    range_ok,
)
from model.reference import ReferenceKernel
from model.reference.drivers import REGISTRY, registry
from model.reference.state import Dev, Present

KIND = "toy"
WINDOW = 1024  # the toy's one notifier: [0, WINDOW)
SKIP_RETRY_NAME = "toy_bind_skips_read_retry"


@dataclass(frozen=True)
class ToyBind:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class ToyRead:
    d: int
    s: int
    n: int


@dataclass
class Toy:
    d: int
    sub: int
    table: dict[int, tuple[Page, bool]] = field(default_factory=dict)


def toy_open(core: Core, d: int) -> Toy:
    return Toy(d, core.subscribe(d, 0, WINDOW))


def op_bind(core: Core, th: Any, op: ToyBind) -> Gen:
    toy = core.device(op.d, KIND)
    if toy is None or not range_ok(op.s, op.n) or op.s + op.n > WINDOW:
        return EINVAL
    if (e := core.state_err(th, core.device_pid(op.d))) is not None:
        return e
    while True:
        seq = yield from core.read_begin(th, toy.sub)
        got = yield from core.range_fault(th, op.d, op.s, op.n, False)
        if isinstance(got, Err):
            return got
        yield from core.lock(th, op.d)
        if not core.bugged(bugs.lookup(SKIP_RETRY_NAME)) and core.read_retry(toy.sub, seq):
            core.unlock(th, op.d)
            continue
        for k, page_w in enumerate(got):
            toy.table[op.s + k] = page_w
        core.unlock(th, op.d)
        return OK


def op_read(core: Core, th: Any, op: ToyRead) -> Gen:
    toy = core.device(op.d, KIND)
    if toy is None or not range_ok(op.s, op.n):
        return EINVAL
    yield from core.lock(th, op.d)
    entries = [toy.table.get(op.s + k) for k in range(op.n)]
    words = None if None in entries else tuple(core.dma_read(e[0]) for e in entries if e)
    core.unlock(th, op.d)
    return ENOENT if words is None else Values(words)


def toy_invalidate(core: Core, th: Any, toy: Toy, sub: int, event: str, a: int, b: int,
                   owner: int | None, blockable: bool, seq: int) -> Gen:
    if blockable:
        yield from core.lock(th, toy.d)
    elif not core.trylock(th, toy.d):
        return False
    core.set_seq(sub, seq)
    for v in [v for v in toy.table if a <= v < b]:
        del toy.table[v]
    core.unlock(th, toy.d)
    return True


DRIVER = PluginDriver(KIND, ops={"toy_bind": op_bind, "toy_read": op_read}, open=toy_open,
                      invalidate=toy_invalidate, table=lambda toy: toy.table)


@pytest.fixture
def toy() -> Iterator[None]:
    """Declare the toy's ops and bug and load it; forget them afterwards."""
    common: dict[str, Any] = {"device": KIND, "plugin": KIND, "racer": "device"}
    declare(ToyBind, "toy_bind", 0, D(KIND), Addr(), Count(cap=WINDOW), **common)
    declare(ToyRead, "toy_read", 1, D(KIND), Addr(), Count(cap=WINDOW), **common)
    bugs.declare(SKIP_RETRY_NAME, breaks="the toy's bind installs what it walked without "
                 "read_retry", imitates="a driver committing without mmu_interval_read_retry",
                 driver=KIND)
    add_plugin(DRIVER)
    try:
        yield
    finally:
        PLUGINS.pop(KIND, None)
        unregister("toy_bind")
        unregister("toy_read")
        bugs.REGISTRY._bugs.pop(SKIP_RETRY_NAME, None)  # no public unregister for bugs


def start_all(k: ReferenceKernel, name: str, op: Any) -> list[object]:
    """Run ``op`` alone to its end: the outcome of each step."""
    assert k.start(name, op) == OK
    outcomes: list[object] = []
    while not outcomes or not isinstance(outcomes[-1], Done):
        outcomes.append(k.step(name))
    return outcomes


def run(k: ReferenceKernel, name: str, op: Any) -> object:  # a plug-in op is no model.ops.Op
    last = start_all(k, name, op)[-1]
    assert isinstance(last, Done)
    return last.result


def kernel(mutant: str | None = None) -> ReferenceKernel:
    k = ReferenceKernel(Config(mutant=mutant))
    assert run(k, "T0", Open(0, KIND, 0)) == HandleResult("D", 0)
    return k


def test_a_plugin_is_registered_per_kernel(toy: None) -> None:
    assert REGISTRY.get(KIND) is None
    assert registry().get(KIND) is not None
    assert registry() is registry()  # rebuilt only when PLUGINS changes
    k = kernel()
    toy_state = k.state.devices[0].driver_state
    assert isinstance(toy_state, Toy)
    sub = k.state.subs[toy_state.sub]
    assert (sub.start, sub.end, sub.owner, sub.owner_kind, sub.in_tree) == (0, WINDOW, 0, KIND,
                                                                            True)
    PLUGINS.pop(KIND)
    assert registry().get(KIND) is None
    assert run(ReferenceKernel(), "T0", Open(0, KIND, 0)) == EINVAL  # an unknown kind
    # a kernel keeps the drivers it was built with
    assert k.start("T1", ToyRead(0, 0, 1)) == OK  # type: ignore[arg-type]


def test_bind_walks_and_the_table_is_read_and_observed(toy: None) -> None:
    k = kernel()
    assert run(k, "T1", Mmap(0, 0, 130, "rw", "private")) == OK
    assert run(k, "T2", Write(0, 1, 7)) == OK
    steps = start_all(k, "T3", ToyBind(0, 0, 130))
    # a Y3 after pages 64 and 128 and after the last; the commit runs in the last step
    assert steps == [Yielded(), Yielded(), Yielded(), Done(OK)]
    table = k.state.devices[0].driver_state.table
    assert len(table) == 130 and table[0] == (("zero", 0, 0), False)
    assert run(k, "T4", ToyRead(0, 0, 3)) == Values((0, 7, 0))
    assert run(k, "T5", ToyRead(0, 129, 2)) == ENOENT
    view = k.observe().devices[0]
    assert (view.kind, len(view.table)) == (KIND, 130)
    assert view.table[1].vpn == 1 and view.table[1].w  # the entry's w, as hmm gives it
    assert k.take_violations() == []


def test_munmap_invalidates_the_table(toy: None) -> None:
    k = kernel()
    assert run(k, "T1", Mmap(0, 0, 8, "rw", "private")) == OK
    assert run(k, "T2", Write(0, 2, 5)) == OK
    assert run(k, "T3", ToyBind(0, 0, 8)) == OK
    assert run(k, "T4", Munmap(0, 0, 4)) == OK
    assert sorted(k.state.devices[0].driver_state.table) == [4, 5, 6, 7]
    assert run(k, "T5", ToyBind(0, 0, 1)) == EFAULT
    assert k.take_violations() == []


def race(k: ReferenceKernel) -> object:
    """T3's bind walks page 2; munmap runs whole before its commit."""
    assert run(k, "T1", Mmap(0, 0, 8, "rw", "private")) == OK
    assert run(k, "T2", Write(0, 2, 5)) == OK
    assert k.start("T3", ToyBind(0, 2, 1)) == OK  # type: ignore[arg-type]
    assert k.step("T3") == Yielded()  # the walk's last Y3: mmap_lock released
    assert run(k, "T4", Munmap(0, 0, 8)) == OK
    out = k.step("T3")  # the commit (or its retry, which finds no VMA)
    assert isinstance(out, Done)
    return out.result


def test_the_bind_retries_after_an_invalidation(toy: None) -> None:
    k = kernel()
    assert race(k) == EFAULT
    assert k.state.devices[0].driver_state.table == {}
    assert k.take_violations() == []


def test_a_bind_skipping_read_retry_is_caught(toy: None) -> None:
    k = kernel(SKIP_RETRY_NAME)
    assert race(k) == OK
    found = {v.invariant for v in k.take_violations()}
    assert {"device_entries_follow_cpu", "no_use_after_free"} <= found


def test_range_fault_migrates_device_pages_back(toy: None) -> None:
    k = kernel()
    assert run(k, "T1", Mmap(0, 0, 4, "rw", "private")) == OK
    assert run(k, "T2", Write(0, 0, 9)) == OK
    assert run(k, "T3", Open(0, "mirror", 1)) == HandleResult("D", 1)
    assert run(k, "T4", MigrateToDev(1, 0, 1)) == Num(1)
    assert isinstance(k.state.procs[0].pt[0], Dev)
    assert run(k, "T5", ToyBind(0, 0, 1)) == OK
    assert isinstance(k.state.procs[0].pt[0], Present)
    assert run(k, "T6", ToyRead(0, 0, 1)) == Values((9,))
    assert k.take_violations() == []


def test_a_table_follows_its_pages_through_a_thp_split(toy: None) -> None:
    """migrate_to_dev splits a THP: the toy's entry at a page that did not
    move still names that page (its new folio) and reads its word."""
    k = kernel()
    assert run(k, "T1", Mmap(0, 0, 512, "rw", "private", True)) == OK
    assert run(k, "T2", Write(0, 1, 4)) == OK
    assert run(k, "T3", Mprotect(0, 511, 1, "r")) == OK  # the PMD is split: PTEs map the THP
    entry = k.state.procs[0].pt[1]
    assert isinstance(entry, Present) and k.state.folios[entry.f].order == 9
    assert not k.state.procs[0].pmds
    assert run(k, "T3", ToyBind(0, 1, 1)) == OK
    assert run(k, "T4", Open(0, "mirror", 1)) == HandleResult("D", 1)
    assert run(k, "T5", MigrateToDev(1, 0, 1)) == Num(1)
    assert k.state.folios[entry.f].freed  # split
    assert k.take_violations() == []
    assert run(k, "T6", ToyRead(0, 1, 1)) == Values((4,))
    assert run(k, "T7", Read(0, 1)) == Num(4)
    assert k.take_violations() == []
