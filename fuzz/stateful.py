"""The Hypothesis stateful engine: traces built rule by rule from live handles.

:class:`MirrorMachine` is a ``RuleBasedStateMachine`` whose every rule appends
step lines to a growing trace: one rule per op of ``model.ops`` (run as a
plain op, or started as a thread ``Tn = op`` and maybe advanced a few steps),
plus rules that step and run threads, explicitly or by a scheduler's choice
(``fuzz.schedulers``), so that interleavings are explored, not only
sequences.  Rules this module keeps:

* **Engines build, the executor judges.**  Each line is appended to a
  ``fuzz.executor.Session`` on the configured sides (both implementations
  when available), which runs and judges it at once; the trace is finished
  (drained, checked at its end) at teardown, or as soon as the session is
  over (a finding or the work cap); a finding fails the example, or, found
  at the teardown of an example that ran out of Hypothesis's data (which
  Hypothesis throws away), is saved at once and stops the run.  Each rule
  is thin: pick arguments, append a ``StepLine``.
* **The guide steers, never judges** (``fuzz.guide``): it reads the
  session's first side after each line, so that the rules see what exists:
  live threads, threads known to be blocked (their last step gave
  ``blocked`` and nothing has run since), processes, devices, regions and
  jobs created successfully, the VMAs of each process.
* **Handles are static** (SPEC §2): a line that creates a handle gets the
  next reserved number of its kind when appended, as ``fuzz.trace.renumber``
  would give it; the guide and the judged trace agree on every number.
* **Arguments as bugs like them** (``fuzz.arguments``): huge-page
  boundaries, VMA edges, edges of registered ranges, recently used
  addresses, the process of the device last used; about 1 draw in 20 is
  wild (EINVAL paths).
* **Shrinks well.**  Every choice is a Hypothesis draw whose simplest value
  is the plainest trace (a plain op, P0, the first address category, count
  1).  Threads are named by a drawn slot, ``T1`` .. ``T4``, never by line
  index: deleting an unrelated rule leaves the names, and so the step lines
  naming them, unchanged.
* **Resources on demand** (as syzkaller creates them): an op that needs a
  device or a registered region, and finds none, first appends the lines
  that open one (and register a range of its process), so that chains like
  open, reg, submit, invalidate are common rather than a coincidence.
* **Races on purpose**: the ``race`` rule starts a device op as a thread,
  gives it a head start of a few steps, starts an invalidating op (half the
  time the non-blockable ``oomreap``) and lets the scheduler interleave
  them, so that a device fault meets an invalidation mid-way far more often
  than independent rules would arrange.  With driver plug-ins loaded, half
  the racers drawn are the plug-ins' own ops (driver focus).
* **Bounded work**: a trace stops growing once the guide has done
  ``MAX_TRACE_WORK`` page operations, and a registered region spans at most
  ``REGION_PAGES``, so that no example takes the reference (which checks
  every invariant at every step) tens of seconds; a session past its work
  cap (``Settings.max_work``) is over, judged up to there, not a finding.
* **Swarm testing** (``fuzz.swarm``): each example switches a random
  subset of the op rules off, so that deep sequences of a few ops are
  common; the simplest draw switches none off.
* **A failure is a file.**  On the final (shrunk) example the failing trace
  is cut after the finding's line, annotated with the reference's results
  and a ``# signature:`` header, saved in the corpus format (by
  ``fuzz.corpus.save_repro``) into ``$MIRRORFUZZ_FAILURES`` (default
  ``./mirrorfuzz-failures/``) and printed with the command that replays it.

``machine_for(EngineConfig(...), Hooks())`` gives a machine class bound to a
configuration (sides, the executor's settings, failure directory) and to
the hooks its user is told through; ``fuzz.engine`` is the one place that
runs it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Final

from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.errors import InvalidArgument, StopTest
from hypothesis.stateful import (
    RULE_MARKER,
    Rule,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from fuzz import impls
from fuzz.arguments import WILD, WINDOW, Arguments, Region
from fuzz.corpus import save_repro
from fuzz.determinism import settle_constant_pool
from fuzz.executor import Session, Settings, Verdict, run_trace
from fuzz.guide import DrawChooser, Guide
from fuzz.plugins import driver_header
from fuzz.schedulers import PCT, Scheduler, Uniform
from fuzz.strategies import booleans, draw, integers, sampled_from
from fuzz.swarm import draw_disabled, gate
from fuzz.trace import StepLine, Trace, format_trace, make_trace, with_expected
from model import ops as m
from model.decl import OpDecl, declared
from model.interface import Factory
from model.ops import (
    HUGE_PAGES,
    OK,
    SCHEMA_BY_CLASS,
    HandleResult,
    LineResult,
    Op,
    OpResult,
    RunThread,
    StepThread,
)

MAX_TRACE_WORK: Final = 8_000
"""Work (as ``fuzz.fuzz_trace`` counts it) after which an example's trace
stops growing: the reference checks every invariant at every step, so a
trace of thousands of steps over thousands of pages took it tens of
seconds; bugs need races, not size."""
THREAD_SLOTS: Final = 4
"""Threads are named T1 .. T4."""
SLOTS: Final = integers(0, THREAD_SLOTS - 1)
SLOT_OR_NONE: Final = st.none() | SLOTS
"""A thread slot, or none (a plain op)."""
MAX_ADVANCE: Final = 4
MAX_BURST: Final = 6
MAX_PROCESSES: Final = 4
FAILURES_ENV: Final = "MIRRORFUZZ_FAILURES"
DEFAULT_FAILURES: Final = "mirrorfuzz-failures"

@dataclass(frozen=True)
class EngineConfig:
    """What a machine runs against and where its failures go."""

    sides: str = "auto"  # fuzz.impls.sides: auto, both, reference, optimized
    judge: Settings = field(default_factory=Settings)  # the executor's (fuzz.profiles)
    failures: str | None = None  # directory; None: $MIRRORFUZZ_FAILURES or the default
    trace_work: int = MAX_TRACE_WORK  # the trace stops growing once the guide's work passes it
    generation: int | None = None  # only ops of this codec generation or older (None: all)

    def failures_dir(self) -> Path:
        return Path(self.failures or os.environ.get(FAILURES_ENV) or DEFAULT_FAILURES)


class DiscardedFinding(BaseException):
    """A finding in an example Hypothesis threw away (it ran out of data):
    raised in place of Hypothesis's ``StopTest``, a ``BaseException`` it does
    not catch, so the run stops there (the example stays marked as out of
    data, as Hypothesis's tree has it); ``fuzz.engine`` turns it into the
    ``AssertionError`` of a finding."""


class Hooks:
    """What a user of the engine is told (``fuzz.engine``); each does nothing here.

    A user overrides these, never the machine: the machine stays the one
    wrapper of the engine."""

    def example(self) -> None:
        """Before each example (raise a ``BaseException`` to stop the run)."""

    def line(self, machine: MirrorMachine) -> None:
        """At each line the rules append (or would, past the trace's work)."""

    def judged(self, machine: MirrorMachine, verdict: Verdict) -> bool:
        """Each example's verdict, once; False lets its finding pass."""
        return True

    def failed(self, machine: MirrorMachine, failing: Trace) -> str:
        """A finding fails the example: ``failing`` is its repro (the
        finding's signature in its header).  By default it is saved in the
        failures directory in Hypothesis's final replay, or at once when
        Hypothesis discards the example (``machine.discarding``: no replay
        will come); the text returned goes into the failure's message."""
        if not (_is_final() or machine.discarding):
            return ""
        path = save_repro(machine.config.failures_dir(), failing)
        return f"saved as {path}\nreplay: mirrorfuzz replay --impl both {path}\n"

    def done(self, machine: MirrorMachine) -> None:
        """After each example (its teardown), failing or not."""


class MirrorMachine(Arguments, RuleBasedStateMachine):
    """Builds one trace per example; see the module docstring."""

    config: ClassVar[EngineConfig] = EngineConfig()
    hooks: ClassVar[Hooks] = Hooks()
    _swarm_gated: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self.hooks.example()
        self.discarding = False
        super().__init__()
        self.lines: list[StepLine] = []
        self.headers: dict[str, str] = {}
        self.guide = self._start(m.DEFAULT_FRAMES, m.DEFAULT_DEVICE_FRAMES)
        self.scheduler: Scheduler | None = None
        self.chooser: DrawChooser | None = None
        self.judged = False
        self.verdict: Verdict | None = None
        self.swarm_off: frozenset[str] = frozenset()
        self.racing = False  # _emit starts every op as a thread (the race rule)
        self.whole = False  # _emit appends a plain op (an intruder that runs whole)
        self.raced: str | None = None  # the thread _emit started while racing

    # ------------------------------------------------------------ appending

    def _start(self, frames: int, device_frames: int) -> Guide:
        """A guide reading a new session on the sides (started at first use)."""
        return Guide(lambda: Session(self._sides(), self._settings(), frames=frames,
                                     device_frames=device_frames))

    def _append(self, line: StepLine) -> LineResult | None:
        self.hooks.line(self)
        if self.guide.work > self.config.trace_work or self.guide.over:
            return None  # the trace is big enough (MAX_TRACE_WORK), or judged
        schema = SCHEMA_BY_CLASS.get(type(line.action))
        if schema is not None and schema.reserves and schema.reserved_field:
            number = self.reserved[schema.reserves]
            self.reserved[schema.reserves] = number + 1
            action = replace(line.action, **{schema.reserved_field: number})  # type: ignore[arg-type]
            line = replace(line, action=action)
        before = set(self.guide.live())
        self.lines.append(line)
        result = self.guide.run_line(line)
        for _name, op, out in self.guide.completed:
            self._register(op, out)
        for name in before - set(self.guide.live()):
            if self.scheduler is not None:
                self.scheduler.forget(name)
        return result

    def _register(self, op: Op, result: OpResult) -> None:
        """Remember the handles an op created or ended (by its declaration)."""
        decl = SCHEMA_BY_CLASS[type(op)]
        if isinstance(result, HandleResult):
            if decl.reserves == "P":
                self.pids.append(result.num)
            elif decl.reserves == "D" and decl.kind_field is not None:
                self.devices[str(getattr(op, decl.kind_field))].append(
                    (result.num, getattr(op, "p", 0)))
            elif decl.reserves == "R":
                self.regions[decl.keyword].append(self._made_region(decl, op, result.num))
        elif result == OK and decl.has("victim"):
            victim: int = next(getattr(op, a.field) for a in decl.args if a.role == "victim")
            if victim in self.pids:
                self.pids.remove(victim)
                self.gone.append(victim)
        elif result == OK and decl.retires is not None and decl.arg(decl.retires).role == "region":
            r = getattr(op, decl.retires)
            made_by = decl.arg(decl.retires).of or ""
            self.regions[made_by] = [g for g in self.regions[made_by] if g.r != r]

    def _made_region(self, decl: OpDecl, op: Op, r: int) -> Region:
        dev = next(a for a in decl.args if a.role == "device")
        d = getattr(op, dev.field)
        p = next((p for dd, p in self.devices[dev.of or ""] if dd == d), 0)
        s = next(getattr(op, a.field) for a in decl.args if a.role == "addr")
        n = next(getattr(op, a.field) for a in decl.args if a.role == "count")
        return Region(r, d, p, s, n, str(getattr(op, "mode", "rw")))

    def _emit(self, data: st.DataObject, op: Op) -> None:
        """Append ``op`` as a plain op, or as a new thread advanced 0-4 steps
        (as a thread not advanced when racing)."""
        if self.whole:
            self._append(StepLine(op))
            return
        slot = draw(data, SLOTS if self.racing else SLOT_OR_NONE, label="thread slot")
        name = None if slot is None else self._free_thread(slot)
        if name is None:
            self._append(StepLine(op))
            return
        self._append(StepLine(op, name))
        if self.racing:
            self.raced = name
            return
        self._advance(data, name, MAX_ADVANCE, "advance")

    def _advance(self, data: st.DataObject, name: str | None, most: int, label: str) -> None:
        """Step thread ``name`` 0 to ``most`` times (drawn), while it is runnable."""
        for _ in range(draw(data, integers(0, most), label=label)):
            if name is None or name not in self.guide.runnable():
                break
            self._append(StepLine(StepThread(name)))

    def _schedule(self, data: st.DataObject, most: int, label: str) -> None:
        """Step the scheduler's choice among runnable threads 1 to ``most``
        times (drawn), while any is runnable."""
        assert self.scheduler is not None and self.chooser is not None
        self.chooser.data = data
        for _ in range(draw(data, integers(1, most), label=label)):
            runnable = self.guide.runnable()
            if not runnable:
                break
            self._append(StepLine(StepThread(self.scheduler.choose(runnable))))

    def _free_thread(self, slot: int) -> str | None:
        live = set(self.guide.live())
        for k in range(THREAD_SLOTS):
            name = f"T{(slot + k) % THREAD_SLOTS + 1}"
            if name not in live:
                return name
        return None

    def _live_thread(self, slot: int) -> str:
        """``T<slot+1>`` if live, else the next live ``Tn`` after it, cyclically."""
        live = [t for t in self.guide.live() if t.startswith("T")]
        numbers = sorted(int(t[1:]) for t in live)
        after = [n for n in numbers if n >= slot + 1]
        return f"T{(after or numbers)[0]}"

    def trace(self) -> Trace:
        return make_trace(self.lines, self.headers)

    # ---------------------------------------------------------- setup rules

    @initialize(data=st.data())
    def setup(self, data: st.DataObject) -> None:
        frames = draw(data, sampled_from((None, 64, 520, 1100)), label="frames")
        device_frames = draw(data, sampled_from((None, 8, 1)), label="device-frames")
        if frames is not None:
            self.headers["frames"] = str(frames)
        if device_frames is not None:
            self.headers["device-frames"] = str(device_frames)
        self.guide = self._start(frames or m.DEFAULT_FRAMES,
                                 device_frames or m.DEFAULT_DEVICE_FRAMES)
        if draw(data, WILD.map(lambda w: not w), label="prelude mmap"):
            huge = draw(data, booleans(), label="prelude huge")
            n = draw(data, sampled_from((2 * HUGE_PAGES, 16, WINDOW)), label="prelude pages")
            self._append(StepLine(m.Mmap(0, 0, n, "rw", "private", huge)))
        for kind in ("mirror", "userptr", "pin"):
            if draw(data, booleans(), label=f"prelude {kind}"):
                self._append(StepLine(m.Open(0, kind)))
        self.swarm_off = draw_disabled(data, op_rules(self.config.generation))
        self.chooser = DrawChooser(data)
        if draw(data, booleans(), label="uniform scheduler"):
            self.scheduler = Uniform(self.chooser)
        else:
            depth = draw(data, integers(1, 3), label="PCT depth")
            self.scheduler = PCT(self.chooser, depth=depth, max_steps=20)

    # ---------------------------------------------------------- thread rules

    @precondition(lambda self: any(t.startswith("T") for t in self.guide.live()))
    @rule(data=st.data())
    def step_thread(self, data: st.DataObject) -> None:
        name = self._live_thread(draw(data, integers(0, THREAD_SLOTS - 1), label="slot"))
        self._append(StepLine(StepThread(name)))

    @precondition(lambda self: any(t.startswith("T") for t in self.guide.live()))
    @rule(data=st.data())
    def run_thread(self, data: st.DataObject) -> None:
        name = self._live_thread(draw(data, integers(0, THREAD_SLOTS - 1), label="slot"))
        self._append(StepLine(RunThread(name)))

    @precondition(lambda self: bool(self.guide.runnable()))
    @rule(data=st.data())
    def step_scheduled(self, data: st.DataObject) -> None:
        """Step the scheduler's choice among runnable threads, 1-6 times."""
        self._schedule(data, MAX_BURST, "burst")

    @rule(data=st.data())
    def race(self, data: st.DataObject) -> None:
        """Interrupt a device op with an invalidation: start a device-side op
        (a ``device`` racer this example has on) as a thread, advance it 0-8
        steps, start an invalidating op as a thread (or, from generation 2,
        half the time as a plain op: :meth:`_intruder_whole`), then step the
        scheduler's choices 1-24 times.  A device fault meets an
        invalidation mid-way, a job meets the OOM reaper, a DMA meets a
        fork, as syzkaller's collide mode races pairs of calls; without it,
        two ops overlap only when independent rules happen to leave a thread
        mid-way.

        SPEC has two invalidation paths, blockable and non-blockable, and
        only ``oomreap`` takes the second; so the invalidating racer is, half
        the time, an ``oomreap`` (when ``kill`` is on), else any op of
        the ``cpu`` racers, so that both paths meet a busy device about equally
        often."""
        device = self._draw_racer(data, racers("device", self.config.generation))
        if device is not None:
            self._start_racer(data, device)
            self._advance(data, self.raced, 2 * MAX_ADVANCE, "head start")
        if "kill" not in self.swarm_off and draw(data, booleans(), label="non-blockable"):
            self._start_racer(data, "oomreap", whole=self._intruder_whole(data))
        elif (cpu := self._draw_racer(data, racers("cpu", self.config.generation))) is not None:
            self._start_racer(data, cpu, whole=self._intruder_whole(data))
        self._schedule(data, 4 * MAX_BURST, "race steps")

    @rule(data=st.data())
    def window(self, data: st.DataObject) -> None:
        """Land an op inside another op's yield window, on purpose: start
        any racer A (a device op *or* an invalidating CPU op: both orders)
        as a thread, step it into its window k (0-16 steps, while it
        runs), start any racer B of either kind there (half the time as
        a plain op, which runs whole inside A's window: :meth:`_intruder_whole`),
        then step the scheduler's choices.  ``race`` covers device-first pairs from its
        head start; this rule makes every (A, window, B) of
        ``fuzz.windows`` a choice of the engine, not luck.  Generation 2
        and later only (generation 1's stream is frozen)."""
        everyone = racers("device", self.config.generation) + racers("cpu",
                                                                     self.config.generation)
        first = self._draw_racer(data, everyone)
        if first is None:
            return
        self._start_racer(data, first)
        self._advance(data, self.raced, 4 * MAX_ADVANCE, "window")
        second = self._draw_racer(data, everyone)
        if second is not None:
            self._start_racer(data, second, whole=self._intruder_whole(data))
        self._schedule(data, 4 * MAX_BURST, "window steps")

    def _intruder_whole(self, data: st.DataObject) -> bool:
        """Whether the racer that intrudes on a racer mid-way runs whole, as a
        plain op (half the time): landing in one window of the first racer
        then takes one draw, where as a thread each of its steps must win
        the scheduler's draw before the first racer's next one.  Generation
        1's stream is frozen: there, always a thread, with no draw."""
        if self.config.generation is not None and self.config.generation < 2:
            return False
        return draw(data, booleans(), label="intruder whole")

    def _draw_racer(self, data: st.DataObject, rules: Sequence[str]) -> Rule | None:
        """One of ``rules`` that this example has on, if its preconditions hold.

        **Driver focus**: when driver plug-ins are loaded (``--driver``), half
        the draws are among the plug-ins' own ops, so that the driver under
        test is raced as often as all the built-in devices together (its 2
        or 3 ops would otherwise be 1 draw in 10 or 15).  No plug-in, no
        extra draw: the built-in engine's stream is unchanged."""
        names = [n for n in rules if n not in self.swarm_off]
        if not names:
            return None
        focus = [n for n in names if n in plugin_rules()]
        if focus and len(focus) < len(names) and draw(data, booleans(), label="driver focus"):
            names = focus
        name = draw(data, sampled_from(names), label="racer")
        racer: Rule = getattr(getattr(type(self), name), RULE_MARKER)
        return racer if all(ok(self) for ok in racer.preconditions) else None

    def _start_racer(self, data: st.DataObject, racer: Rule | str, *,
                     whole: bool = False) -> None:
        """Start ``racer`` (a rule, or ``"oomreap"``) as a thread, its name
        left in ``self.raced``; or, ``whole``, append it as a plain op."""
        self.racing, self.raced, self.whole = not whole, None, whole
        try:
            if isinstance(racer, str):
                self._emit(data, m.Oomreap(self._pid(data)))
            else:
                racer.function(self, data=data)
        finally:
            self.racing = self.whole = False

    # ------------------------------------------------------------ op rules
    # One rule per declared op (model.decl), made by _op_rule below; kill
    # is the one rule of two ops.

    @precondition(lambda self: bool(self.pids))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        """``exit`` or ``oomreap`` of any live process, P0 included: the
        OOM reaper's non-blockable invalidation racing a device is where
        several bugs live.  One rule for both, so that a process dies no more
        often than any other op runs."""
        p = self._pid(data)
        oomreap = draw(data, booleans(), label="oomreap, not exit")
        self._emit(data, m.Oomreap(p) if oomreap else m.Exit(p))

    # ------------------------------------------------------------- judging

    @invariant()
    def session_not_over(self) -> None:
        """Judge at once when the session is over (a finding, or the work cap)."""
        if self.guide.over and not self.judged:
            self.judge()

    def teardown(self) -> None:
        try:
            if not self.judged and self.lines:
                self.judge()
        finally:
            self.hooks.done(self)

    def judge(self) -> None:
        """Finish the session; a finding fails the example (unless the hooks
        let it pass).  At the teardown of an example that ran out of data
        (``StopTest`` on its way out), Hypothesis has already thrown the
        example away and would not count it as failing: the finding is
        reported at once (``Hooks.failed``, with ``discarding`` set) and the
        run stops (:class:`DiscardedFinding`)."""
        self.judged = True
        verdict = self.guide.session.finish()
        self.verdict = verdict
        finding = verdict.finding
        if not self.hooks.judged(self, verdict) or finding is None:
            return
        failing = failing_trace(self.trace(), verdict,
                                lambda t: run_trace(t, self._sides(), self._settings()))
        self.discarding = isinstance(sys.exc_info()[1], StopTest)
        where = self.hooks.failed(self, failing)
        message = f"{finding}\n{where}{format_trace(failing)}"
        raise DiscardedFinding(message) if self.discarding else AssertionError(message)

    def _sides(self) -> list[tuple[str, Factory]]:
        return impls.sides(self.config.sides)

    def _settings(self) -> Settings:
        return self.config.judge


def _op_rule(decl: OpDecl) -> Callable[..., None]:
    """The rule of one declared op: its fields drawn by role
    (``Arguments._draw_op``), appended as a plain op or a thread."""

    def op_rule(self: MirrorMachine, data: st.DataObject) -> None:
        op = self._draw_op(data, decl)
        if op is not None:
            self._emit(data, op)

    op_rule.__name__ = op_rule.__qualname__ = decl.rule_name
    op_rule.__doc__ = f"``{decl.keyword}``, fields drawn by role (model.decl, fuzz.arguments)."
    made: Callable[..., None] = rule(data=st.data())(op_rule)
    gate_ = _GATES.get(decl.gate)
    if gate_ is not None:
        made = precondition(gate_(decl))(made)
    return made


def _region_gate(decl: OpDecl) -> Callable[[MirrorMachine], bool]:
    made_by = next(a.of for a in decl.args if a.role == "region")
    return lambda self: bool(self.regions[made_by or ""])


_GATES: Final[dict[str, Callable[[OpDecl], Callable[[MirrorMachine], bool]]]] = {
    "processes": lambda decl: lambda self: len(self.pids) < MAX_PROCESSES,
    "jobs": lambda decl: lambda self: bool(self.guide.jobs()),
    "regions": _region_gate,
}


def install_rules(cls: type[MirrorMachine]) -> None:
    """Give ``cls`` a rule for every declared op that has none yet (plug-ins'
    ops too, once loaded), and the swarm gate on each rule not gated yet."""
    for decl in declared():
        if not hasattr(cls, decl.rule_name):
            setattr(cls, decl.rule_name, _op_rule(decl))
    gated: frozenset[str] = getattr(cls, "_swarm_gated", frozenset())
    todo = [name for name in op_rules() if name not in gated]
    gate(cls, todo)
    cls._swarm_gated = gated | frozenset(todo)


def _generated(generation: int | None) -> list[OpDecl]:
    """The ops an engine of ``generation`` generates (None: every declared op)."""
    return [d for d in declared()
            if generation is None or (d.plugin is None and d.since <= generation)]


def plugin_rules() -> frozenset[str]:
    """The rules of ops declared by driver plug-ins (``--driver``)."""
    return frozenset(d.rule_name for d in declared() if d.plugin is not None)


def op_rules(generation: int | None = None) -> tuple[str, ...]:
    """The op rules swarm testing may switch off for an example (fuzz.swarm)."""
    return tuple(dict.fromkeys(d.rule_name for d in _generated(generation)))


RACE_ORDER_V1: Final = ("dread", "dwrite", "snapshot", "migrate_to_dev", "evict", "submit",
                        "complete", "unreg", "dma", "reg", "pin", "unpin")
"""The order the race rule drew generation 1's device racers in before ops
were declared (frozen, as the codec's v1 tables are, so that a seed draws
the same racer); later ops follow in codec-id order."""


def racers(kind: str, generation: int | None = None) -> tuple[str, ...]:
    """The race rule's racers: ``device`` ops (faults, DMA, jobs, pins) go
    first, ``cpu`` ops (the sources of invalidations) second."""
    names = list(dict.fromkeys(d.rule_name for d in _generated(generation) if d.racer == kind))
    return tuple(sorted(names, key=lambda n: (RACE_ORDER_V1.index(n) if n in RACE_ORDER_V1
                                              else len(RACE_ORDER_V1), names.index(n))))


install_rules(MirrorMachine)


def failing_trace(trace: Trace, verdict: Verdict, rejudge: Callable[[Trace], Verdict]) -> Trace:
    """The failing trace as a repro: cut after the finding's line when the cut
    still gives the same signature, annotated with the first side's results,
    with ``signature`` and ``found-by`` headers."""
    finding = verdict.finding
    assert finding is not None
    results: Sequence[LineResult | None] = verdict.results
    if finding.line < len(trace.steps):
        cut = make_trace(trace.steps[:finding.line], dict(trace.headers))
        again = rejudge(cut)
        if again.finding is not None and again.finding.signature == finding.signature:
            trace, results = cut, again.results
    annotated = with_expected(trace, results[:len(trace.steps)])
    drivers = {"driver": d} if (d := driver_header()) is not None else {}
    return make_trace(annotated.steps, {**dict(trace.headers), **drivers,
                                        "signature": finding.signature, "found-by": "stateful"})


def _is_final() -> bool:
    """True in Hypothesis's final replay of the shrunk example (or outside a test)."""
    try:
        return current_build_context().is_final
    except InvalidArgument:
        return True


def machine_for(config: EngineConfig, hooks: Hooks | None = None) -> type[MirrorMachine]:
    """A :class:`MirrorMachine` subclass bound to ``config`` and ``hooks``; the
    constant pool Hypothesis draws from is settled first (``fuzz.determinism``)."""
    settle_constant_pool()
    cls = type("MirrorMachine", (MirrorMachine,), {"config": config, "hooks": hooks or Hooks()})
    install_rules(cls)  # the ops of drivers loaded since this module was imported
    if config.generation is not None:  # no rule for the ops of later generations
        for name in set(op_rules()) - set(op_rules(config.generation)):
            setattr(cls, name, None)
        if config.generation < 2:  # generation 1's stream had no window rule
            setattr(cls, "window", None)  # noqa: B010 - as the op rules above
    return cls
