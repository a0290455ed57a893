"""The executor: the only judge in mirrorfuzz.

It runs a trace on one or more implementations in lockstep, one thread step
at a time, and after every step compares what they did.  Engines generate
traces; they never judge.  A **finding** (SPEC §8.4) is one of:

=============  =========================================  ===================
kind           detail                                     found by
=============  =========================================  ===================
divergence     ``result`` or ``observation``              comparing sides
violation      the invariant's name (SPEC §8.2)           an implementation
                                                          (1-3, 6-10) or this
                                                          executor (4, 5, 11)
exception      the exception's type name                  an implementation
budget         the implementation's name                  its page-op count
=============  =========================================  ===================

The signature names the cause, ``kind/detail/object`` (fuzz.diff): the
object is what the broken rule is about, not the op that happened to show
it, so that one bug gives one signature -- the kind of object a violated
invariant's message names (``process``, ``device``, ``subscription`` ...;
``deadlock`` or ``livelock`` for liveness), the object kind and field of the
first differing observation field (``devices.table``), the function an
exception was raised in (``module.function``), ``page_ops`` for a budget;
for a result divergence the op is the object (its result is what differs).
``op_signature`` is the older ``kind/detail/op`` (``op`` being the keyword
of the op in the step where the finding appeared; for a deadlock or
livelock, the thread's op), which repros saved before keep in their
headers.  Running stops at the first finding: what follows it is noise.

A line's ``=> expected`` annotation that a side does not reproduce is a
**mismatch**, reported beside the findings (replay fails on either).

Liveness (SPEC §5.4): after the last line the executor drains: each round
completes every active job in J order (each as a one-step thread, named
``L<n>`` after the last line's number, DECISIONS.md D16), then steps each live
thread once in name order; it stops after a round that leaves no active job
and in which every step gave ``blocked``.  A thread still live then is a
deadlock.  A thread whose ``failed_commits`` grows by more than 64 while no
other thread takes a non-blocked step is livelocked.  A plain op, ``run`` or
drain that takes more than ``max_line_steps`` steps (or rounds) without
finishing is a livelock too (D17): SPEC's ops all finish in bounded steps.

**A session runs a trace line by line** (:class:`Session`): start it on the
sides (their factories get the trace's ``frames`` and ``device-frames``),
``append`` lines one at a time -- each is run and judged at once, and the
verdict so far is ``session.verdict`` -- then ``finish`` (the drain, the
end-of-trace checks, and the fast judge's rejudging).  :func:`run_trace` is
a session fed a whole trace; the stateful engine feeds one as it builds its
trace, and its guide (``fuzz.guide``) reads the session's first side
instead of running one of its own.  Once the session is **over** (a finding,
or the work cap: ``fuzz.verdict``), appended lines are kept but not run.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar, cast

from fuzz import contracts, diff
from fuzz.observe_diff import CheapJudge
from fuzz.oracle import Oracle
from fuzz.trace import StepLine, Trace
from fuzz.verdict import (
    ContractBreak,
    Finding,
    LogEntry,
    Mismatch,
    Settings,
    Verdict,
    observation_work,
)
from model.interface import INVARIANT_NUMBERS, Config, Factory, Implementation, Watched
from model.observation import Observation, RawObservation, VmaView, canonicalize_numbered
from model.ops import (
    DEFAULT_DEVICE_FRAMES,
    DEFAULT_FRAMES,
    EINVAL,
    OK,
    Blocked,
    BlockedOn,
    Complete,
    Done,
    Err,
    LineResult,
    Op,
    RunThread,
    StepOutcome,
    StepThread,
    op_keyword,
    plain_thread,
    thread_order,
)

__all__ = ["ContractBreak", "Finding", "LogEntry", "Mismatch", "Session", "Settings", "Step",
           "Verdict", "run_trace"]

T = TypeVar("T")
LIVELOCK_COMMITS = 64


@dataclass(frozen=True)
class Step:
    """One step of the first side, as a session ran it (what ``fuzz.guide`` reads)."""

    thread: str
    op: Op | None  # the thread's op (None: the thread was not running one)
    outcome: StepOutcome | Err
    work: int  # 1 + the page operations of the step


class _Stop(Exception):
    """Raised inside a run once a finding is recorded (or the work cap passed)."""


class Session:
    """One trace run line by line: see the module docstring."""

    def __init__(self, sides: Sequence[tuple[str, Factory]], settings: Settings | None = None,
                 *, frames: int = DEFAULT_FRAMES, device_frames: int = DEFAULT_DEVICE_FRAMES
                 ) -> None:
        self.settings = settings or Settings()
        self.sides = list(sides)
        self.frames, self.device_frames = frames, device_frames
        self.verdict = Verdict(tuple(name for name, _ in sides))
        self.lines: list[StepLine] = []  # every line appended, run or not
        self.steps: list[Step] = []  # the first side's steps in the last line appended
        self.work = [0] * len(self.sides)  # per side, in the work cap's units (fuzz.verdict)
        self.over = False  # a finding or the work cap: lines are no longer run
        self.finished = False
        self.oracle = Oracle()
        self.thread_ops: dict[str, Op] = {}
        self.commit_base: dict[str, int] = {}
        self.last_runner: str | None = None
        self.line = 0
        self.op_kw = "-"
        self.impls: list[Implementation] = []
        self.changes = 0  # starts and steps that were not Blocked
        self.scans = 0  # steps not Blocked, counted for the fast judge's scans
        self.cheap: CheapJudge | None = None  # the fast judge's cheap comparisons
        self._guard(self._begin)

    @classmethod
    def for_trace(cls, trace: Trace, sides: Sequence[tuple[str, Factory]],
                  settings: Settings | None = None) -> Session:
        """A session with ``trace``'s frame headers (its lines not appended yet)."""
        return cls(sides, settings, frames=trace.frames, device_frames=trace.device_frames)

    @property
    def first(self) -> Implementation | None:
        """The first side (the reference, when it runs), for reading only."""
        return self.impls[0] if len(self.impls) == len(self.sides) and self.impls else None

    def append(self, line: StepLine) -> LineResult | None:
        """Run and judge ``line``: the first side's result, or None when the
        session is over (the line is kept, not run) or stopped in it."""
        if self.finished:
            raise RuntimeError("a line appended to a finished session")
        self.lines.append(line)
        self.steps = []
        index = len(self.lines)
        results: list[LineResult] = []

        def run() -> None:
            self.line = index
            result = self.line_result(index, line)
            results.append(result)
            self.verdict.results.append(result)
            self.verdict.log.append(LogEntry(index, line, (str(result),)))
            self._expect(index, line, result)

        self._guard(run)
        return results[0] if results else None

    def finish(self) -> Verdict:
        """The drain and the end-of-trace checks (once): the verdict.  With
        ``settings.fast``, a finding is judged again by the full judge on the
        same lines, whose verdict is given when it has a finding (it has,
        unless the work cap stops it first)."""
        if self.finished:
            return self.verdict
        self.finished = True
        self._guard(self._end)
        if self.impls:
            first = self.impls[0]
            try:
                self.verdict.costs = first.costs()
            except Exception:  # noqa: BLE001 - a crash was already judged; costs are extra
                self.verdict.costs = {}
        if self.settings.fast and self.verdict.finding is not None:
            full = Session(self.sides, self.settings.full(), frames=self.frames,
                           device_frames=self.device_frames)
            for line in self.lines:
                full.append(line)
            if full.finish().finding is not None:
                self.verdict = full.verdict
        return self.verdict

    def _guard(self, fn: Callable[[], None]) -> None:
        if self.over:
            return
        try:
            fn()
        except _Stop:
            self.over = True

    def _begin(self) -> None:
        config = Config(frames=self.frames, device_frames=self.device_frames,
                        mutant=self.settings.mutant)
        for name, factory in self.sides:
            checked = replace(config, checks=self.settings.checks_on(name),
                              deferred=self.settings.deferred(name),
                              incremental=self.settings.fast)
            self.impls.append(self._call(name, partial(factory, checked)))
        if self.settings.fast and len(self.impls) > 1 \
                and all(isinstance(impl, Watched) for impl in self.impls):
            self.cheap = CheapJudge(cast(list[Watched], self.impls))
        # The full judge compares the fresh sides at once; so does the fast one
        # when the cap counts the state (its periods are then the full one's),
        # else it compares them at its first period.
        if not self.settings.fast or self.settings.cap_by_state:
            self._after_step()

    def _end(self) -> None:
        if self.settings.drain:
            self.drain()
        if self.settings.fast:
            self._scan(last=True)
            self._violations()
        self._after_step(last=True)

    def _charge(self, side: int, units: int) -> None:
        """Count ``units`` of work on ``side``: past ``max_work``, the run is capped."""
        self.work[side] += units
        if self.settings.max_work and self.work[side] > self.settings.max_work:
            self.verdict.capped = True
            raise _Stop

    def _charge_observation(self, side: int, obs: Observation | RawObservation) -> None:
        """An observation's work, unless the cap counts footprints instead."""
        if not self.settings.cap_by_state:
            self._charge(side, observation_work(obs))

    # -------------------------------------------------------------- findings

    def _find(self, kind: str, detail: str, message: str,
              sides: Sequence[tuple[str, str]] = (), obj: str = "",
              differences: Sequence[diff.Difference] = ()) -> None:
        finding = Finding(kind, detail, self.op_kw, self.line, self.verdict.steps, message,
                          tuple(sides), obj, tuple(differences), self.settings.contract)
        if self.verdict.broken is not None and kind != "exception":
            self.verdict.excused.append(finding)  # a contract violation, not a finding
        else:
            self.verdict.findings.append(finding)
        raise _Stop

    def _call(self, name: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except _Stop:
            raise
        except Exception as exc:  # an implementation crashed: a finding
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
            function = (f"{tb[-1].filename.rsplit('/', 1)[-1].removesuffix('.py')}."
                        f"{tb[-1].name}") if tb else "?"
            self._find("exception", type(exc).__name__, f"{name} raised {exc!r}{where}",
                       [(name, "".join(traceback.format_exception_only(exc)).strip())],
                       obj=function.replace("<", "").replace(">", "").replace(" ", "_"))
            raise AssertionError("unreachable") from exc

    def _all(self, fn: Callable[[Implementation], T]) -> list[T]:
        return [self._call(impl.name, partial(fn, impl)) for impl in self.impls]

    def _same(self, what: str, outs: Sequence[object]) -> None:
        texts = [str(o) for o in outs]
        if any(t != texts[0] for t in texts):
            self._find("divergence", "result", f"the sides disagree on {what}",
                       [(impl.name, t) for impl, t in zip(self.impls, texts, strict=True)])

    # ------------------------------------------------------------- stepping

    def _vma_lookup(self, op: Op | None) -> Callable[[int], tuple[VmaView, ...]]:
        pids = self.oracle.pids_for(op) if op is not None else set()
        first = self.impls[0]
        snap = {pid: self._call(first.name, partial(first.vmas, pid)) for pid in pids}
        return lambda pid: snap.get(pid, ())

    def _start(self, name: str, op: Op) -> LineResult:
        self.op_kw = op_keyword(op)
        if self.verdict.broken is None and self.settings.contract != contracts.DEFAULT:
            first = self.impls[0]
            why = contracts.userspace_breaks(
                self.settings.contract, op,
                lambda pid: self._call(first.name, partial(first.busy, pid)))
            if why is not None:
                self.verdict.broken = ContractBreak(self.line, self.op_kw, why)
        outs = self._all(lambda impl: impl.start(name, op))
        self._same(f"starting {name}", outs)
        if outs[0] == OK:
            self.thread_ops[name] = op
            self.commit_base.pop(name, None)
            first = self.impls[0]
            self.oracle.started(name, op, lambda pid: self._call(
                first.name, partial(first.vmas, pid)))
        self._after_step()
        return outs[0]

    def _step(self, name: str) -> StepOutcome | Err:
        op = self.thread_ops.get(name)
        self.op_kw = op_keyword(op) if op is not None else "step"
        first = self.impls[0]
        lookup = self._vma_lookup(op)
        if self.last_runner != name and name in self.thread_ops:
            self.commit_base[name] = self._call(first.name, lambda: first.failed_commits(name))
        outs: list[StepOutcome | Err] = []
        used: list[int] = []
        for side, impl in enumerate(self.impls):
            self._charge(side, 1)
            outs.append(self._call(impl.name, partial(impl.step, name)))
            used.append(self._call(impl.name, impl.page_ops))
            self._charge(side, used[-1])
        self.steps.append(Step(name, op, outs[0], 1 + used[0]))
        self.verdict.steps += 1
        if self.settings.fast and not isinstance(outs[0], Blocked):
            self._scan()
        self._violations()
        self._same(f"a step of {name}", outs)
        for impl, pops in zip(self.impls, used, strict=True):
            if pops > self.settings.budget:
                self._find("budget", impl.name,
                           f"{pops} page ops in one step (budget {self.settings.budget})",
                           obj="page_ops")
        out = outs[0]
        if not isinstance(out, Blocked | Err):
            self.oracle.stepped(name)
        if isinstance(out, Done) and op is not None:
            problems = self.oracle.completed(name, op, out.result, lookup)
            if problems:
                self._find("violation", problems[0].invariant, str(problems[0]),
                           obj=diff.object_kind(str(problems[0])))
        if isinstance(out, Done | Err):
            self.thread_ops.pop(name, None)
        if not isinstance(out, Blocked | Err):
            self._livelock(name, done=isinstance(out, Done))
        self._after_step(changed=not isinstance(out, Blocked))
        return out

    def _violations(self) -> None:
        found = []
        for impl in self.impls:
            for v in self._call(impl.name, impl.take_violations):
                found.append((INVARIANT_NUMBERS.get(v.invariant, 99), v.invariant, impl.name,
                              v.detail))
        if found:
            found.sort()
            _, invariant, name, detail = found[0]
            self._find("violation", invariant, f"{name}: {detail}",
                       [(n, f"{i}: {d}") for _, i, n, d in found],
                       obj=diff.object_kind(detail) if invariant != "liveness"
                       else "livelock")

    def _scan(self, *, last: bool = False) -> None:
        """The fast judge's scans: every ``scan_every``-th changing step, and last."""
        count = self.scans
        self.scans += not last
        k = self.settings.scan_every
        if not last and k > 1 and count % k:
            return
        for impl in self.impls:
            if self.settings.deferred(impl.name):
                self._call(impl.name, impl.check_invariants)

    def _livelock(self, name: str, *, done: bool) -> None:
        self.last_runner = name
        if done or name not in self.commit_base:
            return
        first = self.impls[0]
        fails = self._call(first.name, lambda: first.failed_commits(name)) - self.commit_base[name]
        if fails > LIVELOCK_COMMITS:
            self._find("violation", "liveness",
                       f"livelock: {name} failed {fails} commits with no other thread running",
                       obj="livelock")

    def _after_step(self, *, last: bool = False, changed: bool = True) -> None:
        """Compare observations every K starts and steps that were not
        ``blocked``, and once more after the last step (so a divergence in
        the last K - 1 is not missed).  A blocked step changes nothing (SPEC
        §5.1), so observing after it would only repeat the last comparison:
        in a drain of many waiting threads, most steps are blocked."""
        if not changed and not last:
            return
        count = self.changes
        self.changes += not last
        k = self.settings.observe_every
        if len(self.impls) < 2 or (not last and (k <= 0 or count % k)):
            return
        if last and k <= 0 and not self.settings.fast:
            return  # observations off (the fast judge compares once more at the end)
        if self.settings.cap_by_state:
            for side, impl in enumerate(self.impls):
                self._charge(side, self._call(impl.name, impl.footprint))
        if self.cheap is not None:
            self._compare_watched(last)
            return
        observations = []
        for side, impl in enumerate(self.impls):
            observations.append(self._call(impl.name, impl.observe))
            self._charge_observation(side, observations[-1])
        self._judge(observations)

    def _compare_watched(self, last: bool) -> None:
        """The fast judge's comparison (``fuzz.observe_diff``): the cheap one
        of what changed, except after the last step; when it disagrees, or
        last, the full one of both whole observations (through a fresh
        pairing of ids, which agrees exactly when the canonical observations
        are equal); when that disagrees too, the canonical observations are
        judged."""
        assert self.cheap is not None
        first = self.impls[0].name
        if not last and self._call(first, partial(self.cheap.agree, self._side_call)):
            return
        raws = []
        for side, impl in enumerate(self.cheap.sides):
            raws.append(self._side_call(side, impl.observe_raw))
            self._charge_observation(side, raws[-1])
        if self._call(first, partial(self.cheap.full_agree, raws)):
            return
        numbered = [self._side_call(side, partial(canonicalize_numbered, raw))
                    for side, raw in enumerate(raws)]
        self._judge([obs for obs, _ in numbered])
        self.cheap.seed([numbering for _, numbering in numbered])

    def _side_call(self, side: int, fn: Callable[[], T]) -> T:
        return self._call(self.impls[side].name, fn)

    def _judge(self, observations: Sequence[Observation]) -> None:
        """A divergence if a side's observation differs from the first's."""
        for impl, obs in zip(self.impls[1:], observations[1:], strict=True):
            if obs != observations[0]:
                found = diff.differences(observations[0], obs)
                self._find("divergence", "observation", diff.summary(found),
                           [(self.impls[0].name, "see the table"), (impl.name, "differs")],
                           obj=diff.cause_field(found), differences=found)

    def _drive(self, name: str, *, plain: bool) -> LineResult:
        for _ in range(self.settings.max_line_steps):
            out = self._step(name)
            if isinstance(out, Blocked):
                return BlockedOn(name) if plain else out
            if isinstance(out, Done):
                return out.result if plain else out
            if isinstance(out, Err):
                return out
        self._find("violation", "liveness",
                   f"livelock: {name} took {self.settings.max_line_steps} steps without finishing",
                   obj="livelock")
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- lines

    def line_result(self, index: int, line: StepLine) -> LineResult:
        action = line.action
        if isinstance(action, StepThread):
            return self._step(action.thread)
        if isinstance(action, RunThread):
            if not self._live(action.thread):
                return EINVAL
            return self._drive(action.thread, plain=False)
        name = line.thread or plain_thread(index)
        started = self._start(name, action)
        if line.thread is not None or started != OK:
            return started
        return self._drive(name, plain=True)

    def _live(self, name: str) -> bool:
        first = self.impls[0]
        return name in self._call(first.name, first.live_threads)

    def drain(self) -> None:
        first = self.impls[0]
        self.line = len(self.lines) + 1
        extra = len(self.lines)
        for _ in range(self.settings.max_line_steps):
            self.verdict.drain_rounds += 1
            for job in self._call(first.name, first.active_jobs):
                extra += 1
                self._start(plain_thread(extra), Complete(job))
                self._drive(plain_thread(extra), plain=True)
            all_blocked = True
            for name in sorted(self._call(first.name, first.live_threads), key=thread_order):
                if not isinstance(self._step(name), Blocked):
                    all_blocked = False
            if all_blocked and not self._call(first.name, first.active_jobs):
                break
        else:
            self._find("violation", "liveness", "livelock: the drain does not settle",
                       obj="livelock")
        live = sorted(self._call(first.name, first.live_threads), key=thread_order)
        if live:
            op = self.thread_ops.get(live[0])
            self.op_kw = op_keyword(op) if op is not None else "-"
            self._find("violation", "liveness",
                       f"deadlock: {', '.join(live)} still blocked after the drain",
                       obj="deadlock")

    def _expect(self, index: int, line: StepLine, result: LineResult) -> None:
        if line.expected is not None and str(line.expected) != str(result):
            self.verdict.mismatches.append(Mismatch(index, line.lineno, self.impls[0].name,
                                                    str(line.expected), str(result)))


def run_trace(trace: Trace, sides: Sequence[tuple[str, Factory]],
              settings: Settings | None = None) -> Verdict:
    """Run ``trace`` on ``sides`` (name, factory) in lockstep and judge it: a
    :class:`Session` given the whole trace, finished."""
    session = Session.for_trace(trace, sides, settings)
    for line in trace.steps:
        session.append(line)
    return session.finish()
