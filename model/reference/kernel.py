"""``ReferenceKernel``: the reference model behind ``model.interface.Implementation``.

It owns the state and the live threads and applies the step rule of SPEC
§5.1 (see ``threads.py``): a thread stopped at a Y4 whose condition is still
false gives ``Blocked`` and nothing changes; otherwise its generator runs to
the next yield point.  When an op finishes, the locks its thread still holds
are released in that same step.  After every step that ran, folios whose
count reached 0 are freed and, with ``config.checks``, the invariants are
checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model.interface import Config, Violation
from model.observation import Observation, VmaView, canonicalize
from model.ops import (
    EINVAL,
    OK,
    SCHEMA_BY_CLASS,
    Blocked,
    Done,
    Err,
    Op,
    OpResult,
    StepOutcome,
    Yielded,
    is_thread_name,
    thread_order,
)

from .cpu_ops import (
    op_access,
    op_madvise,
    op_mmap,
    op_mprotect,
    op_mremap,
    op_munmap,
    op_range,
)
from .devices import op_open
from .drivers import REGISTRY, registry
from .invariants import check_all
from .kernel_ops import op_migrate_reclaim, op_oomreap
from .locks import release_all
from .mm import collect
from .observe import vma_views
from .proc_ops import op_exit, op_fork
from .state import Process, State
from .threads import Gen, Thread
from .watch import Watching

OpFn = Callable[[State, Thread, Any], Gen[OpResult]]

CORE_OPS: dict[str, OpFn] = {
    "mmap": op_mmap, "munmap": op_munmap, "mremap": op_mremap, "mprotect": op_mprotect,
    "madvise": op_madvise, "fork": op_fork, "exit": op_exit, "read": op_access,
    "write": op_access, "open": op_open, "migrate": op_migrate_reclaim,
    "reclaim": op_migrate_reclaim, "oomreap": op_oomreap, "read_range": op_range,
    "write_range": op_range,
}
OPS: dict[str, OpFn] = CORE_OPS | REGISTRY.ops()
"""Keyword -> the op's generator: the core's and the built-in drivers' (each
declared op has one: tests/unit/test_decl.py); a plug-in's are in its record."""


class ReferenceKernel(Watching):
    """The executable specification (SPEC v1)."""

    name = "reference"

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.state = State(self.config, registry())
        self.state.procs[0] = Process(0, valid=True)
        self.threads: dict[str, Thread] = {}

    # ------------------------------------------------------------ threads

    def start(self, thread: str, op: Op) -> OpResult:
        decl = SCHEMA_BY_CLASS.get(type(op))
        driver = None if decl is None or decl.device is None else \
            self.state.drivers.get(decl.device)
        fn = None if decl is None else (driver.ops if driver else CORE_OPS).get(decl.keyword)
        if thread in self.threads or not is_thread_name(thread) or fn is None:
            return EINVAL
        th = Thread(thread, op)
        th.gen = fn(self.state, th, op)
        self.threads[thread] = th
        return OK

    def step(self, thread: str) -> StepOutcome | Err:
        st = self.state
        th = self.threads.get(thread)
        if th is None or th.gen is None:
            return EINVAL
        st.page_ops = 0
        if th.pending is not None and not th.pending.cond():
            if th.in_callback:
                st.costs["blocked_in_callback"] += 1
            return Blocked()
        th.pending = None
        outcome: StepOutcome
        try:
            point = next(th.gen)
        except StopIteration as stop:
            release_all(st, th)
            del self.threads[thread]
            outcome = Done(stop.value)
        else:
            th.pending = point
            outcome = Yielded()
        collect(st)
        if self.config.checks and not self.config.deferred:
            check_all(st, list(self.threads.values()))
        return outcome

    def check_invariants(self) -> None:
        if self.config.checks:
            check_all(self.state, list(self.threads.values()))

    def live_threads(self) -> list[str]:
        return sorted(self.threads, key=thread_order)

    def failed_commits(self, thread: str) -> int:
        th = self.threads.get(thread)
        return 0 if th is None else th.failed_commits

    def active_jobs(self) -> list[int]:
        return sorted(self.state.jobs)

    def vmas(self, pid: int) -> tuple[VmaView, ...]:
        proc = self.state.procs.get(pid)
        if proc is None or proc.state == "dead":
            return ()
        return vma_views(proc)

    def observe(self) -> Observation:
        return canonicalize(self.observe_raw())

    def take_violations(self) -> list[Violation]:
        out = self.state.violations
        self.state.violations = []
        return out

    def page_ops(self) -> int:
        return self.state.page_ops

    def costs(self) -> dict[str, int]:
        return dict(self.state.costs)

    def busy(self, pid: int) -> list[tuple[int, int]]:
        st = self.state
        out = []
        for job in st.jobs.values():
            region = st.regions[job.region]
            if st.devices[region.device].pid == pid:
                out.append((region.start, region.start + region.n))
        for dev in st.devices.values():
            driver = st.drivers.get(dev.kind)
            if dev.pid == pid and driver is not None and driver.busy is not None:
                out += driver.busy(st, dev)
        return sorted(out)
