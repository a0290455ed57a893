"""The guide of the stateful engine: what the rules of ``fuzz.stateful``
see, read from the executor's session as the trace grows.

The rule this module keeps: **the guide steers, never judges.**  The engine
appends each line to its ``fuzz.executor.Session``, which runs and judges
it; the guide reads the session's first side (the reference, when it runs)
and reports what exists: live threads, threads known to be blocked (their
last step gave ``blocked`` and nothing has run since), the VMAs of each
process, the active jobs.  There is no second reference run for steering
(before the session there was one, without invariant checks).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from fuzz.executor import Session
from fuzz.strategies import draw, integers
from fuzz.trace import StepLine
from model.interface import Implementation
from model.observation import VmaView
from model.ops import Blocked, Done, Err, LineResult, Op, OpResult


class DrawChooser:
    """A ``fuzz.schedulers.Chooser`` drawing from the current rule's data."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def randrange(self, start: int, /) -> int:
        return draw(self.data, integers(0, start - 1)) if start > 1 else 0


class Guide:
    """What the rules see: the session's first side, read after each line.

    The session (``fuzz.executor.Session``) runs and judges each line as it
    is appended; the guide only reads what its first side (the reference,
    when it runs) did: the threads its steps blocked or completed, and the
    work they took.  Once the session is over (a finding or the work cap),
    nothing exists for the rules: the engine judges at once.
    """

    def __init__(self, start: Callable[[], Session]) -> None:
        self._start = start
        self._session: Session | None = None
        self.blocked: set[str] = set()  # live threads known to be blocked
        self.completed: list[tuple[str, Op, OpResult]] = []  # by the last line
        self.work = 0  # as the work cap counts it: 1 + the page operations of each step

    @property
    def session(self) -> Session:
        """The session, started at first use (a machine's first guide is
        replaced in its setup rule, before any line: its sides were never
        needed)."""
        if self._session is None:
            self._session = self._start()
        return self._session

    @property
    def over(self) -> bool:
        """The session is over: judge now."""
        return self.session.over

    def run_line(self, line: StepLine) -> LineResult | None:
        """Append ``line`` to the session; its first side's result."""
        self.completed = []
        result = self.session.append(line)
        for step in self.session.steps:
            self.work += step.work
            out = step.outcome
            if isinstance(out, Blocked):
                self.blocked.add(step.thread)
            elif not isinstance(out, Err):
                self.blocked.clear()  # something ran: any wait may have come true
            if isinstance(out, Done) and step.op is not None:
                self.completed.append((step.thread, step.op, out.result))
        return result

    def _first(self) -> Implementation | None:
        return None if self.session.over else self.session.first

    def live(self) -> list[str]:
        first = self._first()
        return [] if first is None else first.live_threads()

    def runnable(self) -> list[str]:
        return [t for t in self.live() if t not in self.blocked]

    def vmas(self, pid: int) -> tuple[VmaView, ...]:
        first = self._first()
        return () if first is None else first.vmas(pid)

    def jobs(self) -> list[int]:
        first = self._first()
        return [] if first is None else first.active_jobs()
