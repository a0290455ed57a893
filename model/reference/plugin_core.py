"""The plug-in API on the reference: :class:`ReferenceCore`, the
:class:`model.driver.Core` a plug-in driver is written against, over the
reference :class:`State`, and :func:`adapt`, which wraps a plug-in in a
reference :class:`model.driver.Driver` record.

Each service is the reference's own, named after its Linux counterpart:

=====================  ===============================================
``subscribe``          ``notifier.insert`` (SPEC §4), owned by the device
``unsubscribe``        ``notifier.remove`` (a Y4 while seq is odd)
``read_begin``         ``notifier.read_begin`` (a Y4 on collision)
``read_retry``         ``notifier.read_retry``; false = a commit, checked
                       against invariant 6(d) as the mirror's commit is
``set_seq``            ``notifier.set_seq``
``range_fault``        ``hmm.range_fault``, the mirror walk (§6.1): the
                       device's own pages (from ``migrate_vma``) are
                       recorded, others' migrated back (§6.5)
``pin``/``unpin``      ``pinning.pin_range`` (§6.4) under mmap_lock, the
                       pins kept on the device (invariant 3 counts them)
``migrate_vma``        ``migrate_device.migrate_vma`` + ``to_device``: the
                       pages moved, for the plug-in to map; its
                       ``page_moved`` hears of their migrate-back (§6.5)
``dma_read/write``     a table target's word, use after free checked
``lock/trylock/...``   the device's driver lock (§5.2)
``wait``               ``threads.wait``: a Y4 until the condition holds
=====================  ===============================================

A page the core hands a plug-in is a reference :data:`Target`.  A THP
split renames its pages (SPEC §6.1: "pages keep word and identity"); the
core follows a target through the split (:func:`follow`) wherever it reads
one back (DMA, the table it shows), so a plug-in may keep pages it got
before a split, as a Linux driver keeps pfns.

The adapted record's ``extra["table"]`` is the plug-in's device table as
the invariants (1, 2, 9) and the observation read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from model.driver import Core, Driver, Gen, PluginDriver
from model.interface import Violation
from model.ops import Err, OpResult

from . import hmm
from .checks import EINVAL, device_handle, range_ok, state_err
from .cpu_ops import locked
from .devices import read_target, write_target
from .locks import driver_lock, driver_trylock, driver_unlock, mmap_read, mmap_release
from .migrate_back import Outcome, migrate_back
from .migrate_device import migrate_vma, to_device
from .mm import collect, release_dpage
from .notifier import insert, read_begin, read_retry, remove, set_seq
from .observe import device_view
from .pinning import pin_range, unpin_page
from .state import Device, State, Subscription, Target
from .threads import Thread, wait, y


def follow(st: State, target: Target) -> Target:
    """The page ``target`` names now: a split THP's page is the folio that took its frame."""
    kind, num, i = target
    into = st.folios[num].split_into if kind == "folio" else None
    return ("folio", into[i], 0) if into is not None and i in into else target


class ReferenceCore:
    """:class:`model.driver.Core` over a reference state."""

    def __init__(self, st: State) -> None:
        self.st = st

    def device(self, d: int, kind: str) -> Any | None:
        dev = device_handle(self.st, d, kind)
        return None if dev is None else dev.driver_state

    def device_pid(self, d: int) -> int:
        return self.st.devices[d].pid

    def state_err(self, th: Thread, pid: int) -> Err | None:
        return state_err(self.st.procs[pid], th)

    def subscribe(self, d: int, start: int, end: int) -> int:
        dev = self.st.devices[d]
        sub = Subscription(self.st.new_id("sub"), dev.pid, start, end, dev.kind, dev.id)
        insert(self.st, self.st.procs[dev.pid], sub)
        return sub.id

    def unsubscribe(self, th: Thread, sub: int) -> Gen:
        s = self.st.subs[sub]
        yield from remove(self.st, th, self.st.procs[s.pid], s)

    def read_begin(self, th: Thread, sub: int) -> Gen:
        s = self.st.subs[sub]
        seq = yield from read_begin(self.st, th, s)
        s.begun[seq] = s.successes
        return seq

    def read_retry(self, sub: int, seq: int) -> bool:
        s = self.st.subs[sub]
        retry = read_retry(s, seq)
        self.st.costs["retries"] += retry
        if not retry and s.begun.get(seq, s.successes) != s.successes:
            self.st.violate("seq_protocol", f"D{s.owner} commit misses a callback on sub {sub}")
        return retry

    def set_seq(self, sub: int, seq: int) -> None:
        set_seq(self.st.subs[sub], seq)

    def range_fault(self, th: Thread, d: int, start: int, n: int, write: bool) -> Gen:
        if not range_ok(start, n):
            return EINVAL
        proc = self.st.procs[self.st.devices[d].pid]
        self.st.costs["device_faults"] += 1
        got: OpResult | hmm.Walked = yield from hmm.range_fault(self.st, th, proc, start, n,
                                                                 write, d)
        return got

    def pin(self, th: Thread, d: int, start: int, n: int, write: bool) -> Gen:
        proc = yield from locked(self.st, th, self.device_pid(d), range_ok(start, n), mmap_read)
        if isinstance(proc, Err):
            return proc
        got = yield from pin_range(self.st, th, proc, start, n, "rw" if write else "ro")
        mmap_release(self.st, th, proc.pid)
        if not isinstance(got, dict):
            return got
        pages = tuple(("folio", f, i) for f, i in (got[k] for k in range(n)))
        self.st.devices[d].pins.extend(pages)
        self.st.costs["pages_pinned"] += n
        return pages

    def unpin(self, d: int, pages: Sequence[Target]) -> None:
        pins = self.st.devices[d].pins
        for page in pages:
            if page not in pins:
                self.st.violate("pins_are_stable", f"D{d} unpins {page}, which it has not pinned")
                continue
            pins.remove(page)
            unpin_page(self.st, page[1])
            self.st.page_ops += 1
        collect(self.st)

    def migrate_vma(self, th: Thread, d: int, start: int, n: int) -> Gen:
        proc = yield from locked(self.st, th, self.device_pid(d), range_ok(start, n), mmap_read)
        if isinstance(proc, Err):
            return proc
        dev, end = self.st.devices[d], start + n
        got = yield from migrate_vma(self.st, th, dev, proc, start, end,  # held until finalize
                                     lambda: to_device(self.st, dev, proc, start, end, th.name))
        mmap_release(self.st, th, proc.pid)
        if isinstance(got, Err):
            return got
        return tuple((v, ("dpage", page, 0), w) for v, page, w in got or ())

    def migrate_finalize(self, th: Thread, pages: Sequence[tuple[int, Target, bool]]) -> None:
        for _v, (_kind, page, _i), _w in pages:
            if self.st.held_dpages.get(page) == th.name:
                release_dpage(self.st, page)
        collect(self.st)

    def dma_read(self, page: Target) -> int:
        return read_target(self.st, follow(self.st, page), "plug-in DMA")

    def dma_write(self, page: Target, word: int) -> None:
        write_target(self.st, follow(self.st, page), word, "plug-in DMA")

    def lock(self, th: Thread, d: int) -> Gen:
        yield from driver_lock(self.st, th, self.st.devices[d])

    def trylock(self, th: Thread, d: int) -> bool:
        return driver_trylock(th, self.st.devices[d])

    def unlock(self, th: Thread, d: int) -> None:
        driver_unlock(th, self.st.devices[d])

    def wait(self, th: Thread, cond: Callable[[], bool], what: str) -> Gen:
        yield from wait(self.st, th, cond, what)

    def y(self) -> Gen:
        yield from y()

    def bugged(self, bug: Any) -> bool:
        return self.st.config.bug is bug


def core(st: State) -> Core:
    """The core a plug-in's code is handed (type-checked against the protocol)."""
    return ReferenceCore(st)


def adapt(plugin: PluginDriver) -> Driver[State, Thread]:
    """The reference's record for a plug-in: its ops and callback run on a
    :class:`ReferenceCore`; its state is kept on the device."""

    def op_fn(fn: Callable[..., Gen]) -> Callable[[State, Thread, Any], Gen]:
        return lambda st, th, op: fn(core(st), th, op)

    def open_(st: State, dev: Device) -> None:
        dev.driver_state = plugin.open(core(st), dev.id)

    def invalidate(st: State, th: Thread, sub: Subscription, event: str, a: int, b: int,
                   owner: int | None, blockable: bool, c: int) -> Gen:
        state = st.devices[sub.owner].driver_state
        ok = yield from plugin.invalidate(core(st), th, state, sub.id, event, a, b,
                                          owner, blockable, c)
        return bool(ok)

    def migrate_to_ram(st: State, th: Thread, d: int) -> Gen:
        outcome: Outcome = yield from migrate_back(st, th, d)
        if outcome == "moved" and plugin.page_moved is not None:
            plugin.page_moved(st.devices[st.dpages[d].owner].driver_state, ("dpage", d, 0))
        return outcome

    def table(st: State, dev: Device) -> dict[int, tuple[Target, bool]]:
        return {v: (follow(st, page), w) for v, (page, w) in
                plugin.table(dev.driver_state).items()}

    def checks(st: State) -> list[Violation]:
        assert plugin.checks is not None
        return [Violation("device_entries_follow_cpu", f"D{dev.id} ({plugin.kind}): {problem}")
                for dev in st.devices.values() if dev.kind == plugin.kind
                for problem in plugin.checks(dev.driver_state)]

    return Driver(plugin.kind, ops={kw: op_fn(fn) for kw, fn in plugin.ops.items()},
                  open=open_, invalidate=invalidate, migrate_to_ram=migrate_to_ram,
                  view=lambda st, dev: (device_view(dev, st.device_pages_of(dev.id),
                                                    table(st, dev)), []),
                  checks=None if plugin.checks is None else checks,
                  busy=lambda st, dev: [] if plugin.busy is None else plugin.busy(dev.driver_state),
                  extra={"table": table})
