"""OptimizedKernel: SPEC v1 built like the kernel, driven through threads.

This module holds the global state (processes, frames, swap, device pages,
devices, regions, jobs, threads) and the step rule of SPEC §5.1; each op is
a generator in the module named after its Linux counterpart (``mmap.py``
for ``do_mmap``/``do_munmap``/..., ``fault.py`` for ``handle_mm_fault``,
``mirror.py`` for test_hmm's dmirror, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from model import bugs
from model import ops as O
from model.bugs import Bug
from model.interface import Config, Violation
from model.observation import Observation, VmaView
from model.ops import EINVAL, Blocked, Done, Err, Op, OpResult, StepOutcome, Yielded
from model.optimized import checks, observe
from model.optimized.folios import DevicePages, FrameTable, SwapTable
from model.optimized.state import Device, Job, Process, Region, SharedObject
from model.optimized.threads import Gen, Thread

_YIELDED: Final = Yielded()
_BLOCKED: Final = Blocked()

OpFn = Callable[[Any, Thread, Any], Gen[OpResult]]

MUTANTS = bugs.MUTANTS
"""The older name -> description view of the planted bugs (declared in
``model/bugs.py``; ``config.mutant`` switches one on)."""


def _dispatch() -> dict[type, OpFn]:
    from model.optimized import (
        exit as exit_,
    )
    from model.optimized import (
        fault,
        fork,
        migrate,
        migrate_device,
        mirror,
        mmap,
        pin,
        userptr,
    )
    return {
        O.Mmap: mmap.op_mmap, O.Munmap: mmap.op_munmap, O.Mremap: mmap.op_mremap,
        O.Mprotect: mmap.op_mprotect, O.Madvise: mmap.op_madvise,
        O.Fork: fork.op_fork, O.Exit: exit_.op_exit,
        O.Read: fault.op_access, O.Write: fault.op_access,
        O.Open: mirror.op_open, O.Dread: mirror.op_dread_dwrite,
        O.Dwrite: mirror.op_dread_dwrite, O.Snapshot: mirror.op_snapshot,
        O.MigrateToDev: migrate_device.op_migrate_to_dev, O.Evict: migrate_device.op_evict,
        O.Reg: userptr.op_reg, O.Submit: userptr.op_submit, O.Complete: userptr.op_complete,
        O.Unreg: userptr.op_unreg, O.Pin: pin.op_pin, O.Dma: pin.op_dma,
        O.Unpin: pin.op_unpin, O.Migrate: migrate.op_migrate, O.Reclaim: migrate.op_migrate,
        O.Oomreap: migrate.op_oomreap,
    }


class OptimizedKernel:
    """model.interface.Implementation for the optimized model."""

    name = "optimized"

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.bug: Bug | None = self.config.bug
        self.checks = self.config.checks
        self.frames = FrameTable(self.config.frames)
        self.swap = SwapTable()
        self.dpages = DevicePages(self.config.device_frames)
        self.procs: dict[int, Process] = {0: Process(0)}
        self.procs[0].mn.bug = self.bug
        self.objects: dict[int, SharedObject] = {}
        self.next_obj = 0
        self.devices: dict[int, Device] = {}
        self.regions: dict[int, Region] = {}
        self.jobs: dict[int, Job] = {}
        self.threads: dict[str, Thread] = {}
        self.next_sub = 0
        self.violations: list[Violation] = []
        self.pops = 0
        self._last_pops = 0
        self.serial = 0  # steps taken (a walk's cache is good for its next step only)
        self.dispatch = _dispatch()
        self.check_state = checks.CheckState()

    # ------------------------------------------------------------ protocol
    def start(self, thread: str, op: Op) -> OpResult:
        if thread in self.threads or not O.is_thread_name(thread):
            return EINVAL
        t = Thread(thread, op)
        t.gen = self.dispatch[type(op)](self, t, op)
        self.threads[thread] = t
        return O.OK

    def step(self, thread: str) -> StepOutcome | Err:
        t = self.threads.get(thread)
        if t is None or t.gen is None:
            return EINVAL
        self.pops = 0
        self.serial += 1
        if t.waiting is not None:
            if not t.waiting.pred():
                self._last_pops = 0
                return _BLOCKED
            t.waiting = None
        out: StepOutcome
        try:
            y = t.gen.send(None)
        except StopIteration as stop:
            del self.threads[thread]
            res = stop.value
            out = Done(res if res is not None else O.OK)
            for dev in self.devices.values():  # an op's locks end with it
                dev.lock.unlock(t)
            for proc in self.procs.values():
                proc.mmap_lock.release_all(thread)
                if any(r.thread == thread for r in proc.mn.running):
                    self.violation("pairing", f"{thread} ended with an invalidation not ended")
        else:
            if y is not None:  # a Wait
                t.waiting = y
            out = _YIELDED
        self._last_pops = self.pops
        if t.violations:
            for msg in t.violations:
                self.violations.append(Violation("no_block_when_nonblockable", msg))
            t.violations.clear()
        if self.checks:
            checks.run_checks(self)
        return out

    def live_threads(self) -> list[str]:
        return sorted(self.threads, key=O.thread_order)

    def failed_commits(self, thread: str) -> int:
        t = self.threads.get(thread)
        return 0 if t is None else t.failed_commits

    def active_jobs(self) -> list[int]:
        return sorted(self.jobs)

    def vmas(self, pid: int) -> tuple[VmaView, ...]:
        proc = self.procs.get(pid)
        if proc is None or proc.state == "dead":
            return ()
        return observe.vma_views(proc)

    def observe(self) -> Observation:
        return observe.observe(self)

    def take_violations(self) -> list[Violation]:
        out = self.violations
        self.violations = []
        return out

    def page_ops(self) -> int:
        return self._last_pops

    # ------------------------------------------------------------ helpers
    def bugged(self, bug: Bug) -> bool:
        """Whether the planted bug ``bug`` (a declaration of ``model/bugs.py``) is on."""
        return self.bug is bug

    def violation(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(invariant, detail))

    def proc(self, pid: int) -> Process | None:
        """P's process if its handle is valid (DECISIONS D6)."""
        proc = self.procs.get(pid)
        return proc if proc is not None and proc.handle_ok else None

    def new_sub_id(self) -> int:
        n = self.next_sub
        self.next_sub += 1
        return n
