"""The optimized implementation's :class:`model.driver.Core`: what a plug-in
driver (one file that runs on both cores, ``model.driver.PluginDriver``)
is offered here, and :func:`adapt`, which wraps a plug-in in a
:class:`model.driver.Driver` record of this implementation.

A page, opaque to the plug-in, is named here by its packed target without
permission bits (``pagetable.mkentry(kind, payload)``: a folio page, the
zero page or a device page), as a mirror's table holds it.  A plug-in's
device keeps its driver state in ``Device.drv``; its table (``table(state)``,
vpn -> (page, w)) is shown by the observation like a mirror's and checked
by invariants 1, 2 and 9 like a mirror's (``checks.table_*``); its own
``checks`` messages are reported under invariant 2.

Every ``model.driver.PLUGINS`` entry is registered in the registry when a
kernel is built (:func:`register_plugins`, from ``kernel.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from model import ops as O
from model.bugs import Bug
from model.driver import PLUGINS, Driver, OpFn, PluginDriver, Registry
from model.interface import Violation
from model.ops import ESRCH, Err, OpResult
from model.optimized import checks
from model.optimized import common as C
from model.optimized.gup import pin_range, unpin_pages
from model.optimized.hmm import hmm_range_fault
from model.optimized.memory import put_dpage
from model.optimized.migrate_device import migrate_back, migrate_vma, to_device
from model.optimized.mmu_notifier import Notifier, Range, Subscription
from model.optimized.observe import DriverView, regions_of
from model.optimized.pagetable import DEVICE, KIND_MASK, PRESENT, SHIFT, Radix, W, mkentry
from model.optimized.state import Device, DevPagemap, DevPagemapOps, KernelState, Process
from model.optimized.threads import Gen, Thread, wait

Page = int
"""A packed target without W (and X): ``mkentry(PRESENT, pfn)``,
``mkentry(ZERO)`` or ``mkentry(DEVICE, d)``."""


class PluginCore:
    """``model.driver.Core`` over one :class:`KernelState`."""

    __slots__ = ("k",)

    def __init__(self, k: KernelState) -> None:
        self.k = k

    # ------------------------------------------------------------ handles
    def device(self, d: int, kind: str) -> Any | None:
        dev = self.k.devices.get(d)
        if dev is None or dev.kind != kind:
            return None
        return dev.drv

    def device_pid(self, d: int) -> int:
        return self.k.devices[d].pid

    def state_err(self, th: Thread, pid: int) -> Err | None:
        """Appendix B: the op's declared process states."""
        proc = self.k.procs[pid]
        return None if proc.state in O.SCHEMA_BY_CLASS[type(th.op)].states else ESRCH

    # ------------------------------------------------------------ notifier
    def subscribe(self, d: int, start: int, end: int) -> int:
        k = self.k
        dev = k.devices[d]
        sub = Subscription(k.new_sub_id(), start, end, dev.kind, d)
        k.subs[sub.id] = sub
        k.procs[dev.pid].mn.mmu_interval_notifier_insert(sub)
        return sub.id

    def _mn(self, sub: Subscription) -> Notifier:
        return self.k.procs[self.k.devices[sub.owner].pid].mn

    def unsubscribe(self, th: Thread, sub: int) -> Gen[None]:
        s = self.k.subs[sub]
        yield from self._mn(s).mmu_interval_notifier_remove(th, s)

    def read_begin(self, th: Thread, sub: int) -> Gen[int]:
        s = self.k.subs[sub]
        return (yield from self._mn(s).mmu_interval_read_begin(th, s))

    def read_retry(self, sub: int, seq: int) -> bool:
        return Notifier.mmu_interval_read_retry(self.k.subs[sub], seq)

    def set_seq(self, sub: int, seq: int) -> None:
        Notifier.mmu_interval_set_seq(self.k.subs[sub], seq)

    # ------------------------------------------------------------ pages
    def range_fault(self, th: Thread, d: int, start: int, n: int,
                    write: bool) -> Gen[tuple[tuple[Page, bool], ...] | OpResult]:
        """``hmm_range_fault`` (``hmm.py``, the mirror's walk): [R], the walk,
        a Y3 after every 64 pages and after the last, mmap_lock released
        before that last one."""
        k = self.k
        dev = k.devices[d]
        got = yield from hmm_range_fault(k, th, k.procs[dev.pid], d, start, start + n, write)
        if not isinstance(got, tuple):
            return got
        rec_v, rec_e = got
        ents = np.concatenate(rec_e) if rec_e else np.zeros(0, np.int64)
        return tuple((int(e) & ~W, bool(e & W)) for e in ents.tolist())

    def pin(self, th: Thread, d: int, start: int, n: int,
            write: bool) -> Gen[tuple[Page, ...] | OpResult]:
        """``pin_user_pages(FOLL_LONGTERM)`` (``gup.pin_range``) under
        mmap_lock; the pins are then the device's (``Device.pins``)."""
        k = self.k
        dev = k.devices[d]
        proc = yield from self._mmap_read_lock(th, dev.pid, C.range_ok(start, n))
        if not isinstance(proc, Process):
            return proc
        got = yield from pin_range(k, th, proc, start, n, "rw" if write else "ro")
        th.pins = []
        proc.mmap_lock.read_unlock(th)
        if not isinstance(got, tuple):
            return got
        pfns = got[0].tolist()
        dev.pins.extend(pfns)
        return tuple(mkentry(PRESENT, pfn) for pfn in pfns)

    def unpin(self, d: int, pages: Sequence[Page]) -> None:
        """``unpin_user_pages`` of pins the device holds."""
        k = self.k
        pins = k.devices[d].pins
        for page in pages:
            pfn = page >> SHIFT
            if page & KIND_MASK != PRESENT or pfn not in pins:
                k.violation("pins_are_stable", f"D{d} unpins page {page}, which it has not pinned")
                continue
            pins.remove(pfn)
            unpin_pages(k, np.array([pfn], np.int64), None)

    def migrate_vma(self, th: Thread, d: int, start: int,
                    n: int) -> Gen[tuple[tuple[int, Page, bool], ...] | OpResult]:
        """``migrate_vma_setup``/``_pages``/``_finalize`` to d's memory
        (``migrate_device.migrate_vma`` + ``to_device``) under mmap_lock."""
        k = self.k
        dev = k.devices[d]
        proc = yield from self._mmap_read_lock(th, dev.pid, C.range_ok(start, n))
        if not isinstance(proc, Process):
            return proc
        end = start + n
        got = yield from migrate_vma(k, th, proc, dev, start, end,  # held until finalize
                                     lambda _rng: to_device(k, proc, dev, start, end, th.name))
        proc.mmap_lock.read_unlock(th)
        if isinstance(got, Err):
            return got
        return tuple((v, mkentry(DEVICE, page), w) for v, page, w in got or ())

    def migrate_finalize(self, th: Thread, pages: Sequence[tuple[int, Page, bool]]) -> None:
        """``migrate_vma_finalize``: the migration's holds on its pages go."""
        dp = self.k.dpages
        for _v, page, _w in pages:
            d = page >> SHIFT
            if dp.holders.get(d) == th.name:
                del dp.holders[d]
                put_dpage(self.k, d)

    def _mmap_read_lock(self, th: Thread, pid: int, args_ok: bool) -> Gen[Process | OpResult]:
        """EINVAL, ESRCH (the op's declared states, before and after), or
        the process with its mmap_lock held for reading."""
        if not args_ok:
            return C.EINVAL
        proc = self.k.procs[pid]
        e = yield from C.read_locked(th, proc, O.SCHEMA_BY_CLASS[type(th.op)].states)
        return proc if e is None else e

    def _words(self, page: Page, verb: str) -> tuple[Any, int] | None:
        """The word array holding ``page`` and its index (None: the zero
        page); a freed page is a use-after-free, reported as the DMA ``verb``s it."""
        k = self.k
        k.pops += 1
        kind, num = page & KIND_MASK, page >> SHIFT
        if kind == PRESENT:
            live, words, what = k.frames.live, k.frames.word, "frame"
        elif kind == DEVICE:
            live, words, what = k.dpages.live, k.dpages.word, "device page"
        else:
            return None
        if not live[num]:
            k.violation("no_use_after_free", f"DMA {verb} freed {what} {num}")
        return words, num

    def dma_read(self, page: Page) -> int:
        at = self._words(page, "reads")
        return 0 if at is None else int(at[0][at[1]])

    def dma_write(self, page: Page, word: int) -> None:
        at = self._words(page, "writes")
        if at is not None:
            at[0][at[1]] = word

    # ------------------------------------------------------------ locks, yields
    def lock(self, th: Thread, d: int) -> Gen[None]:
        yield from self.k.devices[d].lock.lock(th)

    def trylock(self, th: Thread, d: int) -> bool:
        return self.k.devices[d].lock.trylock(th)

    def unlock(self, th: Thread, d: int) -> None:
        self.k.devices[d].lock.unlock(th)

    def wait(self, th: Thread, cond: Callable[[], bool], what: str) -> Gen[None]:
        yield from wait(th, cond, what)

    def y(self) -> Gen[None]:
        yield None  # Y3

    def bugged(self, bug: Bug) -> bool:
        return self.k.bugged(bug)


def table_radix(table: Mapping[int, tuple[Page, bool]]) -> Radix:
    """A plug-in's table as a device table (vpn -> packed target with W)."""
    rx = Radix()
    if table:
        vpns = np.array(sorted(table), np.int64)
        ents = np.array([table[v][0] | (W if table[v][1] else 0) for v in vpns.tolist()],
                        np.int64)
        rx.set_many(vpns, ents)
    return rx


def adapt(plugin: PluginDriver) -> Driver[KernelState, Thread]:
    """The plug-in as a driver record of this implementation."""
    kind = plugin.kind

    def wrap(fn: Any) -> OpFn:
        def op(k: KernelState, t: Thread, o: Any) -> Gen[OpResult]:
            res: OpResult = yield from fn(PluginCore(k), t, o)
            return res
        return op

    def page_moved(k: KernelState, dev: Device, d: int) -> None:
        if plugin.page_moved is not None:
            plugin.page_moved(dev.drv, mkentry(DEVICE, d))

    def migrate_to_ram(k: KernelState, t: Thread, d: int) -> Gen[str]:
        """The plug-in's ``pgmap->ops->migrate_to_ram``: the core's migrate-back."""
        return (yield from migrate_back(k, t, d, page_moved))

    def open_(k: KernelState, dev: Device) -> None:
        dev.pgmap = DevPagemap(dev.id, DevPagemapOps(migrate_to_ram=migrate_to_ram))
        dev.drv = plugin.open(PluginCore(k), dev.id)

    def invalidate(k: KernelState, t: Thread, sub: Subscription, rng: Range) -> Gen[bool]:
        state = k.devices[sub.owner].drv
        ok = yield from plugin.invalidate(PluginCore(k), t, state, sub.id, rng.event, rng.start,
                                          rng.end, rng.owner, rng.blockable, rng.cur_seq)
        return bool(ok)

    def view(k: KernelState, dev: Device) -> DriverView:
        return DriverView(table_radix(plugin.table(dev.drv)), k.dpages.used.get(dev.id, 0),
                          regions_of(k, dev))

    def checks_(k: KernelState) -> list[Violation]:
        found: list[tuple[str, str]] = []
        for dev in k.devices.values():
            if dev.kind != kind:
                continue
            table = plugin.table(dev.drv)
            if table:
                rx = table_radix(table)
                checks.table_pages_live(k, dev, rx, found)
                checks.table_follows_cpu(k, dev, rx, found)
            if plugin.checks is not None:
                found += [("device_entries_follow_cpu", f"D{dev.id} ({kind}): {msg}")
                          for msg in plugin.checks(dev.drv)]
        return [Violation(inv, detail) for inv, detail in found]

    def busy(k: KernelState, dev: Device) -> list[tuple[int, int]]:
        return [] if plugin.busy is None else list(plugin.busy(dev.drv))

    return Driver(kind, ops={kw: wrap(fn) for kw, fn in plugin.ops.items()}, open=open_,
                  invalidate=invalidate, view=view, checks=checks_, busy=busy,
                  extra={"plugin": plugin})


def register_plugins(registry: Registry[KernelState, Thread]) -> dict[type[O.Op], OpFn]:
    """Register every loaded plug-in (``model.driver.PLUGINS``) in
    ``registry``, each once (a plug-in loaded again replaces its old record;
    one no longer loaded is dropped); their ops by op class."""
    for kind, have in list(registry.by_kind.items()):
        if "plugin" in have.extra and PLUGINS.get(kind) is not have.extra["plugin"]:
            del registry.by_kind[kind]
    out: dict[type[O.Op], OpFn] = {}
    for kind, plugin in PLUGINS.items():
        if kind not in registry.by_kind:
            registry.register(adapt(plugin))
        for kw, fn in registry.by_kind[kind].ops.items():
            out[O.SCHEMA_BY_KEYWORD[kw].cls] = fn
    return out
