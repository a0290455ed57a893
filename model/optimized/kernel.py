"""OptimizedKernel: SPEC v1 built like the kernel, driven through threads.

This module is the :class:`~model.interface.Implementation` adapter: it owns
one :class:`~model.optimized.state.KernelState` (processes, frames, swap,
device pages, devices, regions, jobs, threads, counters, violations, the
planted bug) and applies the step rule of SPEC §5.1 to its threads.  Each
op is a generator ``op(k, t, op)`` over that state in the module named after
its Linux counterpart (``mmap.py`` for ``do_mmap``/``do_munmap``/...,
``fault.py`` for ``handle_mm_fault``, ...) or in its device kind's driver
(``drivers/``, one :class:`model.driver.Driver` record per kind, reached
only through :data:`drivers.REGISTRY`); :data:`DISPATCH` maps each op class
to it: the core's ops and the drivers' ``registry.ops()``.  Nothing below
imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from model import bugs
from model import ops as O
from model.interface import Config, Violation
from model.observation import Changes, Observation, RawObservation, VmaView
from model.ops import EINVAL, Blocked, Done, Err, Op, OpResult, StepOutcome, Yielded
from model.optimized import checks, devices, fault, fork, migrate, mmap, observe
from model.optimized import exit as exit_
from model.optimized.drivers import REGISTRY
from model.optimized.plugin_core import register_plugins
from model.optimized.state import KernelState
from model.optimized.threads import Gen, Thread

_YIELDED: Final = Yielded()
_BLOCKED: Final = Blocked()

OpFn = Callable[[KernelState, Thread, Any], Gen[OpResult]]

CORE_OPS: Final[dict[type[Op], OpFn]] = {
    O.Mmap: mmap.op_mmap, O.Munmap: mmap.op_munmap, O.Mremap: mmap.op_mremap,
    O.Mprotect: mmap.op_mprotect, O.Madvise: mmap.op_madvise,
    O.Fork: fork.op_fork, O.Exit: exit_.op_exit,
    O.Read: fault.op_access, O.Write: fault.op_access, O.Open: devices.op_open,
    O.Migrate: migrate.op_migrate, O.Reclaim: migrate.op_migrate,
    O.Oomreap: migrate.op_oomreap, O.ReadRange: fault.op_range_access,
    O.WriteRange: fault.op_range_access,
}


def _by_class(ops: dict[str, OpFn]) -> dict[type[Op], OpFn]:
    """A registry's ops (by keyword) keyed by their op class."""
    return {O.SCHEMA_BY_KEYWORD[kw].cls: fn for kw, fn in ops.items()}


DISPATCH: Final[dict[type[Op], OpFn]] = CORE_OPS | _by_class(REGISTRY.ops())
"""Op class -> the function that runs it (the only dispatch table): the
core's ops and the built-in drivers'; a kernel adds the loaded plug-ins'
(``plugin_core.register_plugins``)."""

MUTANTS = bugs.MUTANTS
"""The older name -> description view of the planted bugs (declared in
``model/bugs.py``; ``config.mutant`` switches one on)."""


class OptimizedKernel:
    """model.interface.Implementation for the optimized model."""

    name = "optimized"

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        plugins = register_plugins(REGISTRY)  # model.driver.PLUGINS, adapted
        self.dispatch = DISPATCH | plugins if plugins else DISPATCH
        self.state = KernelState.boot(self.config, REGISTRY)
        self.watcher = observe.Watcher()
        self._last_pops = 0

    # ------------------------------------------------------------ protocol
    def start(self, thread: str, op: Op) -> OpResult:
        k = self.state
        k.entries += 1
        fn = self.dispatch.get(type(op))
        if thread in k.threads or not O.is_thread_name(thread) or fn is None:
            return EINVAL
        t = Thread(thread, op)
        t.gen = fn(k, t, op)
        k.threads[thread] = t
        return O.OK

    def step(self, thread: str) -> StepOutcome | Err:
        k = self.state
        t = k.threads.get(thread)
        if t is None or t.gen is None:
            return EINVAL
        k.pops = 0
        k.serial += 1
        k.entries += 1
        if t.waiting is not None:
            if not t.waiting.pred():
                self._last_pops = 0
                return _BLOCKED
            t.waiting = None
        out: StepOutcome
        try:
            y = t.gen.send(None)
        except StopIteration as stop:
            del k.threads[thread]
            res = stop.value
            out = Done(res if res is not None else O.OK)
            for dev in k.devices.values():  # an op's locks end with it
                dev.lock.unlock(t)
            for proc in k.procs.values():
                proc.mmap_lock.release_all(thread)
                if any(r.thread == thread for r in proc.mn.running):
                    k.violation("pairing", f"{thread} ended with an invalidation not ended")
        else:
            if y is not None:  # a Wait
                t.waiting = y
            out = _YIELDED
        self._last_pops = k.pops
        if t.violations:
            for msg in t.violations:
                k.violations.append(Violation("no_block_when_nonblockable", msg))
            t.violations.clear()
        if self.config.checks and not self.config.deferred:
            checks.run_checks(k, whole=not self.config.incremental)
        return out

    def check_invariants(self) -> None:
        if self.config.checks:
            checks.run_checks(self.state)

    def live_threads(self) -> list[str]:
        return sorted(self.state.threads, key=O.thread_order)

    def failed_commits(self, thread: str) -> int:
        t = self.state.threads.get(thread)
        return 0 if t is None else t.failed_commits

    def active_jobs(self) -> list[int]:
        return sorted(self.state.jobs)

    def vmas(self, pid: int) -> tuple[VmaView, ...]:
        proc = self.state.procs.get(pid)
        if proc is None or proc.state == "dead":
            return ()
        return observe.vma_views(proc)

    def observe(self) -> Observation:
        return observe.observe(self.state)

    def observe_raw(self) -> RawObservation:
        return observe.raw_observation(self.state)

    def changes(self) -> Changes:
        return self.watcher.changes(self.state)

    def observe_parts(self, parts: Changes) -> RawObservation:
        return observe.raw_observation(self.state, parts, self.watcher.tables)

    def footprint(self) -> int:
        k = self.state
        return (sum(p.pt.count() for p in k.procs.values() if p.state != "dead")
                + k.frames.in_use + k.dpages.in_use() + k.swap.in_use)

    def take_violations(self) -> list[Violation]:
        out = self.state.violations
        self.state.violations = []
        return out

    def page_ops(self) -> int:
        return self._last_pops

    def costs(self) -> dict[str, int]:
        return {}

    def busy(self, pid: int) -> list[tuple[int, int]]:
        k = self.state
        out = []
        for job in k.jobs.values():
            reg = k.regions[job.region]
            if k.devices[reg.dev].pid == pid:
                out.append((reg.start, reg.start + reg.n))
        for dev in k.devices.values():
            driver = k.drivers.by_kind.get(dev.kind)
            if dev.pid == pid and driver is not None and driver.busy is not None:
                out += driver.busy(k, dev)
        return sorted(out)
