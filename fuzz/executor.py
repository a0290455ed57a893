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
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import TypeVar

from fuzz import contracts, diff
from fuzz.oracle import Oracle
from fuzz.trace import StepLine, Trace
from model.interface import INVARIANT_NUMBERS, Config, Factory, Implementation
from model.observation import Observation, VmaView
from model.ops import (
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

T = TypeVar("T")
LIVELOCK_COMMITS = 64
WORK_CAPS = frozenset({"InputTooLong"})
"""Exceptions that are an engine's work cap, not a finding (``fuzz.fuzz_trace``)."""


@dataclass(frozen=True)
class Finding:
    kind: str  # divergence | violation | exception | budget
    detail: str
    op: str
    line: int  # index of the step line (from 1); len(steps) + 1 in the drain
    step: int  # thread steps taken so far, this one included
    message: str
    sides: tuple[tuple[str, str], ...] = ()  # (implementation, what it gave)
    obj: str = ""  # what the broken rule is about (the op when empty)
    differences: tuple[diff.Difference, ...] = ()  # of an observation divergence
    contract: str = contracts.DEFAULT  # the contract it breaks (fuzz/contracts.py)

    @property
    def signature(self) -> str:
        """The cause: ``kind/detail/object``."""
        return f"{self.kind}/{self.detail}/{self.obj or self.op}"

    @property
    def op_signature(self) -> str:
        """The older ``kind/detail/op`` form."""
        return f"{self.kind}/{self.detail}/{self.op}"

    def __str__(self) -> str:
        where = f"line {self.line}, step {self.step}, in {self.op}"
        text = f"{self.signature} at {where}: {self.message}"
        if self.differences:
            names = [name for name, _ in self.sides]
            for row in diff.side_by_side(self.differences, names):
                text += f"\n    {row}"
            return text
        for name, got in self.sides:
            text += f"\n    {name}: {got}"
        return text


@dataclass(frozen=True)
class Mismatch:
    line: int
    lineno: int
    implementation: str
    expected: str
    got: str

    def __str__(self) -> str:
        return (f"line {self.line} (text line {self.lineno}): {self.implementation} gave "
                f"{self.got!r}, expected {self.expected!r}")


@dataclass(frozen=True)
class LogEntry:
    """One step line as run: its index, its text and each side's result."""

    line: int
    step_line: StepLine
    results: tuple[str, ...]


@dataclass(frozen=True)
class ContractBreak:
    """Userspace broke the run's contract at step line ``line`` (``fuzz/contracts.py``)."""

    line: int
    op: str
    reason: str


@dataclass
class Verdict:
    implementations: tuple[str, ...]
    results: list[LineResult | None] = field(default_factory=list)  # first side, per line
    findings: list[Finding] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)
    steps: int = 0
    drain_rounds: int = 0
    broken: ContractBreak | None = None  # userspace broke the contract (then no findings)
    excused: list[Finding] = field(default_factory=list)  # what went wrong after that
    costs: dict[str, int] = field(default_factory=dict)  # the first side's, at the end

    @property
    def ok(self) -> bool:
        return not self.findings and not self.mismatches

    @property
    def finding(self) -> Finding | None:
        return self.findings[0] if self.findings else None


@dataclass(frozen=True)
class Settings:
    """Engine settings of a run."""

    observe_every: int = 1  # compare observations every K steps not blocked (0: never)
    budget: int = 1 << 22  # page ops one step may do (SPEC §5.4 B)
    max_line_steps: int = 100_000
    checks: bool = True
    mutant: str | None = None
    contract: str = contracts.DEFAULT
    drain: bool = True
    checked: tuple[str, ...] | None = None
    """The sides that check their invariants (None: every side, when
    ``checks``).  A mutant hunt checks the mutated side only: the reference
    has no mutant, and its checks, O(resident pages) a step, are there to
    find defects of SPEC itself, which a mutant hunt does not look for."""

    fast: bool = False
    """The fast judge (issue 14): the invariant scans of the sides not in
    ``scan_each_step`` run after every ``scan_every``-th step that changed
    something and at the end of the trace (their checks at events still run
    at their event); observations are compared every ``observe_every`` such
    steps and at the end (0: at the end only); and a trace the fast judge
    finds anything in is judged again by the full judge (:meth:`full`),
    whose first finding is the one reported.  So the fast judge reports what
    the full one does, or nothing where the trouble the full one would have
    seen is gone by the fast one's next comparison
    (``tests/quality/test_fast_judge.py`` measures that on the planted bugs)."""
    scan_every: int = 8
    scan_each_step: tuple[str, ...] = ("optimized",)
    """Sides whose scans cost what a step changed (the optimized side's
    ledger re-reads only the leaves a step dirtied): the fast judge leaves
    them after every step."""

    def deferred(self, side: str) -> bool:
        """True if the fast judge runs ``side``'s scans itself, every few steps."""
        return self.fast and self.checks_on(side) and side not in self.scan_each_step

    def checks_on(self, side: str) -> bool:
        return self.checks and (self.checked is None or side in self.checked)

    def full(self) -> Settings:
        """The full judge: every scan after every step, observations at every step."""
        return replace(self, fast=False, observe_every=1)


class _Stop(Exception):
    """Raised inside a run once a finding is recorded."""


class _Run:
    def __init__(self, trace: Trace, sides: Sequence[tuple[str, Factory]],
                 settings: Settings) -> None:
        self.trace = trace
        self.settings = settings
        self.verdict = Verdict(tuple(name for name, _ in sides))
        self.oracle = Oracle()
        self.thread_ops: dict[str, Op] = {}
        self.commit_base: dict[str, int] = {}
        self.last_runner: str | None = None
        self.line = 0
        self.op_kw = "-"
        self.sides = sides
        self.impls: list[Implementation] = []
        self.changes = 0  # starts and steps that were not Blocked
        self.scans = 0  # steps not Blocked, counted for the fast judge's scans

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
        outs = self._all(lambda impl: impl.step(name))
        self.verdict.steps += 1
        if self.settings.fast and not isinstance(outs[0], Blocked):
            self._scan()
        self._violations()
        self._same(f"a step of {name}", outs)
        for impl in self.impls:
            used = self._call(impl.name, impl.page_ops)
            if used > self.settings.budget:
                self._find("budget", impl.name,
                           f"{used} page ops in one step (budget {self.settings.budget})",
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
        observations = self._all(lambda impl: impl.observe())
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
        self.line = len(self.trace.steps) + 1
        extra = len(self.trace.steps)
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

    def run(self) -> Verdict:
        config = Config(frames=self.trace.frames, device_frames=self.trace.device_frames,
                        mutant=self.settings.mutant)
        try:
            for name, factory in self.sides:
                checked = replace(config, checks=self.settings.checks_on(name),
                                  deferred=self.settings.deferred(name))
                self.impls.append(self._call(name, partial(factory, checked)))
            if not self.settings.fast:  # the fast judge compares fresh sides at its first period
                self._after_step()
            for index, line in enumerate(self.trace.steps, start=1):
                self.line = index
                result = self.line_result(index, line)
                self.verdict.results.append(result)
                self.verdict.log.append(LogEntry(index, line, (str(result),)))
                self._expect(index, line, result)
            if self.settings.drain:
                self.drain()
            if self.settings.fast:
                self._scan(last=True)
                self._violations()
            self._after_step(last=True)
        except _Stop:
            pass
        if self.impls:
            first = self.impls[0]
            try:
                self.verdict.costs = first.costs()
            except Exception:  # noqa: BLE001 - a crash was already judged; costs are extra
                self.verdict.costs = {}
        return self.verdict

    def _expect(self, index: int, line: StepLine, result: LineResult) -> None:
        if line.expected is not None and str(line.expected) != str(result):
            self.verdict.mismatches.append(Mismatch(index, line.lineno, self.impls[0].name,
                                                    str(line.expected), str(result)))


def describe_difference(a: Observation, b: Observation) -> str:
    """The first field where two observations differ, as a short path."""
    for f in fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va == vb:
            continue
        if isinstance(va, tuple) and isinstance(vb, tuple):
            if len(va) != len(vb):
                return f"{f.name}: {len(va)} vs {len(vb)} items"
            for i, (x, y) in enumerate(zip(va, vb, strict=True)):
                if x != y:
                    return f"{f.name}[{i}]: {x} vs {y}"
        return f"{f.name}: {va} vs {vb}"
    return "observations differ"


def run_trace(trace: Trace, sides: Sequence[tuple[str, Factory]],
              settings: Settings | None = None) -> Verdict:
    """Run ``trace`` on ``sides`` (name, factory) in lockstep and judge it.

    With ``settings.fast``, a trace the fast judge finds anything in is
    judged again by the full judge, and the full judge's verdict is given
    when it has a finding (it has, unless the work cap of a wrapped side,
    which counts observations, stops it first).  A trace stopped at the work
    cap is not judged again."""
    settings = settings or Settings()
    verdict = _Run(trace, sides, settings).run()
    if settings.fast and verdict.finding is not None and not capped(verdict.finding):
        full = _Run(trace, sides, settings.full()).run()
        if full.finding is not None and not capped(full.finding):
            return full
    return verdict


def capped(finding: Finding) -> bool:
    """Whether ``finding`` is an engine's work cap (judged up to it), not a finding."""
    return finding.kind == "exception" and finding.detail in WORK_CAPS
