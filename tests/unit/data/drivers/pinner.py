"""A plug-in that pins, for tests of ``Core.pin``/``Core.unpin`` on both cores.

``pinner_pin D s n rw|ro`` pins [s, s+n) (SPEC §6.4) into the device's one
set of pins and gives the number pinned; ``pinner_dma D k`` reads the word of
its k-th pinned page; ``pinner_unpin D`` drops every pin.  No notifier: its
pins outlive the mapping, like an RDMA memory region.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from model import bugs
from model.decl import Addr, Choice, Count, D, Off, declare
from model.driver import Core, Page, PluginDriver
from model.ops import EINVAL, MAX_VALUE_PAGES, OK, Err, Num, Values, range_ok

KIND = "pinner"
Gen = Generator[Any, None, Any]


@dataclass(frozen=True)
class PinnerPin:
    d: int
    s: int
    n: int
    mode: str


@dataclass(frozen=True)
class PinnerDma:
    d: int
    k: int


@dataclass(frozen=True)
class PinnerUnpin:
    d: int


_COMMON: dict[str, Any] = {"device": KIND, "plugin": KIND}
declare(PinnerPin, "pinner_pin", 0, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES),
        Choice("mode", ("rw", "ro")), **_COMMON)
declare(PinnerDma, "pinner_dma", 1, D(KIND), Off("k"), **_COMMON)
declare(PinnerUnpin, "pinner_unpin", 2, D(KIND), **_COMMON)


UNPINS_TWICE = bugs.declare(
    "pinner_unpins_twice", breaks="pinner_unpin drops every pin twice",
    imitates="a double unpin_user_pages (a test of the core's pin ledger)",
    implementation=bugs.PLUGIN, driver=KIND)


@dataclass
class Pinner:
    d: int
    pages: list[Page] = field(default_factory=list)


def op_pin(core: Core, th: Any, op: PinnerPin) -> Gen:
    dev = core.device(op.d, KIND)
    if dev is None or not range_ok(op.s, op.n):
        return EINVAL
    got = yield from core.pin(th, op.d, op.s, op.n, op.mode == "rw")
    if isinstance(got, Err):
        return got
    dev.pages.extend(got)
    return Num(len(got))


def op_dma(core: Core, th: Any, op: PinnerDma) -> Gen:
    dev = core.device(op.d, KIND)
    if dev is None or not 0 <= op.k < len(dev.pages):
        return EINVAL
    return Values((core.dma_read(dev.pages[op.k]),))
    yield  # a one-step op  # noqa: B901


def op_unpin(core: Core, th: Any, op: PinnerUnpin) -> Gen:
    dev = core.device(op.d, KIND)
    if dev is None:
        return EINVAL
    core.unpin(op.d, dev.pages)
    if core.bugged(UNPINS_TWICE):
        core.unpin(op.d, dev.pages)
    dev.pages.clear()
    return OK
    yield  # a one-step op  # noqa: B901


def _invalidate(core: Core, th: Any, state: Pinner, sub: int, event: str, a: int, b: int,
                owner: int | None, blockable: bool, seq: int) -> Gen:
    return True  # no subscription: never called
    yield  # noqa: B901


DRIVER = PluginDriver(
    kind=KIND,
    ops={"pinner_pin": op_pin, "pinner_dma": op_dma, "pinner_unpin": op_unpin},
    open=lambda core, d: Pinner(d),
    invalidate=_invalidate,
    table=lambda state: {},
)
