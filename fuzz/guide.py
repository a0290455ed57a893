"""The guide of the stateful engine: a reference implementation run line by
line, so that the rules of ``fuzz.stateful`` see what exists.

The rule this module keeps: **the guide steers, never judges.**  It runs a
line exactly as ``fuzz.executor`` does (a plain op is thread ``Li`` stepped
until done or blocked; ``run`` steps until done or blocked) and reports what
exists: live threads, threads known to be blocked (their last step gave
``blocked`` and nothing has run since), the VMAs of each process, the active
jobs.  Findings are the executor's business: the guide runs without the
invariant checks (the executor's reference side makes them), and if it
raises or reports a violation, it only says so (``trouble``) so that the
engine judges the trace at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from hypothesis import strategies as st

from fuzz import impls
from fuzz.trace import StepLine
from model.interface import Config, Implementation
from model.observation import VmaView
from model.ops import (
    EINVAL,
    OK,
    Blocked,
    BlockedOn,
    Done,
    Err,
    LineResult,
    Op,
    OpResult,
    RunThread,
    StepThread,
    plain_thread,
)

MAX_LINE_STEPS: Final = 100_000


class DrawChooser:
    """A ``fuzz.schedulers.Chooser`` drawing from the current rule's data."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def randrange(self, start: int, /) -> int:
        return self.data.draw(st.integers(0, start - 1)) if start > 1 else 0


class Guide:
    """A reference implementation run line by line to steer the rules.

    It runs a line exactly as ``fuzz.executor`` does (a plain op is thread
    ``Li`` stepped until done or blocked; ``run`` steps until done or
    blocked), but compares nothing: findings are the executor's business.
    """

    def __init__(self, config: Config) -> None:
        # no invariant checks: the executor's reference side makes them, at
        # the same steps; here they only doubled the cost of every step
        self.impl: Implementation = impls.factory("reference")(replace(config, checks=False))
        self.ops: dict[str, Op] = {}  # live thread -> its op
        self.blocked: set[str] = set()  # live threads known to be blocked
        self.completed: list[tuple[str, Op, OpResult]] = []  # by the last line
        self.trouble: str | None = None  # an exception or violation: judge now
        self.work = 0  # as fuzz_trace counts it: 1 + the page operations of each step

    def run_line(self, index: int, line: StepLine) -> LineResult | None:
        self.completed = []
        try:
            result = self._line(index, line)
            violations = self.impl.take_violations()
        except Exception as exc:  # the executor will report it
            self.trouble = f"the guide raised {exc!r}"
            return None
        if violations:
            self.trouble = f"the guide reports {violations[0]}"
        return result

    def _line(self, index: int, line: StepLine) -> LineResult:
        action = line.action
        if isinstance(action, StepThread):
            return self._step(action.thread)
        if isinstance(action, RunThread):
            if action.thread not in self.impl.live_threads():
                return EINVAL
            return self._drive(action.thread, plain=False)
        name = line.thread or plain_thread(index)
        started = self.impl.start(name, action)
        if started == OK:
            self.ops[name] = action
        if line.thread is not None or started != OK:
            return started
        return self._drive(name, plain=True)

    def _step(self, name: str) -> LineResult:
        out = self.impl.step(name)
        self.work += 1 + self.impl.page_ops()
        if isinstance(out, Blocked):
            self.blocked.add(name)
        elif not isinstance(out, Err):
            self.blocked.clear()  # something ran: any wait may have come true
        if isinstance(out, Done | Err):
            op = self.ops.pop(name, None)
            if isinstance(out, Done) and op is not None:
                self.completed.append((name, op, out.result))
        return out

    def _drive(self, name: str, *, plain: bool) -> LineResult:
        for _ in range(MAX_LINE_STEPS):
            out = self._step(name)
            if isinstance(out, Blocked):
                return BlockedOn(name) if plain else out
            if isinstance(out, Done):
                return out.result if plain else out
            if isinstance(out, Err):
                return out
        raise RuntimeError(f"{name} does not finish")

    def live(self) -> list[str]:
        return [] if self.trouble else self.impl.live_threads()

    def runnable(self) -> list[str]:
        return [t for t in self.live() if t not in self.blocked]

    def vmas(self, pid: int) -> tuple[VmaView, ...]:
        return () if self.trouble else self.impl.vmas(pid)

    def jobs(self) -> list[int]:
        return [] if self.trouble else self.impl.active_jobs()
