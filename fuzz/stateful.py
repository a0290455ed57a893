"""The Hypothesis stateful engine: traces built rule by rule from live handles.

:class:`MirrorMachine` is a ``RuleBasedStateMachine`` whose every rule appends
step lines to a growing trace: one rule per op of ``model.ops`` (run as a
plain op, or started as a thread ``Tn = op`` and maybe advanced a few steps),
plus rules that step and run threads, explicitly or by a scheduler's choice
(``fuzz.schedulers``), so that interleavings are explored, not only
sequences.  Rules this module keeps:

* **Engines build, the executor judges.**  The trace is judged only by
  ``fuzz.executor.run_trace`` on the configured sides (both implementations
  when available), at teardown and as soon as the guide (below) sees
  trouble; a finding fails the example.  Each rule is thin: pick arguments,
  append a ``StepLine``.
* **The guide steers, never judges.**  A private reference implementation
  runs each line as it is appended, the way the executor runs it, so that
  the rules see what exists: live threads, threads known to be blocked
  (their last step gave ``blocked`` and nothing has run since), processes,
  devices, regions and jobs created successfully, the VMAs of each process.
  If the guide raises or reports a violation, the trace is judged at once.
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
  than independent rules would arrange.
* **Bounded work**: a trace stops growing once the guide has done
  ``MAX_TRACE_WORK`` page operations, and a registered region spans at most
  ``REGION_PAGES``, so that no example takes the reference (which checks
  every invariant at every step) tens of seconds.
* **Swarm testing** (``fuzz.swarm``): each example switches a random
  subset of the op rules off, so that deep sequences of a few ops are
  common; the simplest draw switches none off.
* **A failure is a file.**  On the final (shrunk) example the failing trace
  is cut after the finding's line, annotated with the reference's results
  and a ``# signature:`` header, saved in the corpus format (by
  ``fuzz.corpus.save_repro``) into ``$MIRRORFUZZ_FAILURES`` (default
  ``./mirrorfuzz-failures/``) and printed with the command that replays it.

``machine_for(EngineConfig(...))`` gives a machine class bound to a
configuration (sides, mutant, observation period, failure directory).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Final

from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.errors import InvalidArgument
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
from fuzz.arguments import (
    ADVICE,
    DEVICE_KINDS,
    DIRECTIONS,
    KINDS,
    MODES,
    PROTS,
    REGION_PAGES,
    WILD,
    WINDOW,
    Arguments,
    Region,
)
from fuzz.corpus import save_repro
from fuzz.determinism import settle_constant_pool
from fuzz.executor import Settings, Verdict, run_trace
from fuzz.guide import DrawChooser, Guide
from fuzz.schedulers import PCT, Scheduler, Uniform
from fuzz.swarm import draw_disabled, gate
from fuzz.trace import StepLine, Trace, format_trace, make_trace, with_expected
from model import ops as m
from model.interface import Config, Factory
from model.ops import (
    HUGE_PAGES,
    MAX_VALUE_PAGES,
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
MAX_ADVANCE: Final = 4
MAX_BURST: Final = 6
MAX_PROCESSES: Final = 4
FAILURES_ENV: Final = "MIRRORFUZZ_FAILURES"
DEFAULT_FAILURES: Final = "mirrorfuzz-failures"

@dataclass(frozen=True)
class EngineConfig:
    """What a machine runs against and where its failures go."""

    sides: str = "auto"  # fuzz.impls.sides: auto, both, reference, optimized
    mutant: str | None = None  # passed to the executor (Settings.mutant)
    observe_every: int = 1  # the executor compares observations every K steps
    failures: str | None = None  # directory; None: $MIRRORFUZZ_FAILURES or the default
    max_work: int = MAX_TRACE_WORK  # the trace stops growing once the guide's work passes it
    checked: tuple[str, ...] | None = None  # Settings.checked: the sides checking invariants

    def failures_dir(self) -> Path:
        return Path(self.failures or os.environ.get(FAILURES_ENV) or DEFAULT_FAILURES)


class MirrorMachine(Arguments, RuleBasedStateMachine):
    """Builds one trace per example; see the module docstring."""

    config: ClassVar[EngineConfig] = EngineConfig()

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[StepLine] = []
        self.headers: dict[str, str] = {}
        self.guide = Guide(Config())
        self.scheduler: Scheduler | None = None
        self.chooser: DrawChooser | None = None
        self.judged = False
        self.verdict: Verdict | None = None
        self.swarm_off: frozenset[str] = frozenset()
        self.racing = False  # _emit starts every op as a thread (the race rule)
        self.raced: str | None = None  # the thread _emit started while racing

    # ------------------------------------------------------------ appending

    def _append(self, line: StepLine) -> LineResult | None:
        if self.guide.work > self.config.max_work:
            return None  # the trace is big enough (MAX_TRACE_WORK)
        schema = SCHEMA_BY_CLASS.get(type(line.action))
        if schema is not None and schema.reserves and schema.reserved_field:
            number = self.reserved[schema.reserves]
            self.reserved[schema.reserves] = number + 1
            action = replace(line.action, **{schema.reserved_field: number})  # type: ignore[arg-type]
            line = replace(line, action=action)
        before = set(self.guide.live())
        self.lines.append(line)
        result = self.guide.run_line(len(self.lines), line)
        for _name, op, out in self.guide.completed:
            self._register(op, out)
        for name in before - set(self.guide.live()):
            if self.scheduler is not None:
                self.scheduler.forget(name)
        return result

    def _register(self, op: Op, result: OpResult) -> None:
        """Remember the handles an op created or ended."""
        if isinstance(result, HandleResult):
            if isinstance(op, m.Fork):
                self.pids.append(result.num)
            elif isinstance(op, m.Open):
                self.devices[op.kind].append((result.num, op.p))
            elif isinstance(op, m.Reg | m.Pin):
                kind = "userptr" if isinstance(op, m.Reg) else "pin"
                p = next((p for d, p in self.devices[kind] if d == op.d), 0)
                self.regions[kind].append(Region(result.num, op.d, p, op.s, op.n, op.mode))
        elif result == OK and isinstance(op, m.Exit | m.Oomreap) and op.p in self.pids:
            self.pids.remove(op.p)
            self.gone.append(op.p)
        elif result == OK and isinstance(op, m.Unreg | m.Unpin):
            kind = "userptr" if isinstance(op, m.Unreg) else "pin"
            self.regions[kind] = [g for g in self.regions[kind] if g.r != op.r]

    def _emit(self, data: st.DataObject, op: Op) -> None:
        """Append ``op`` as a plain op, or as a new thread advanced 0-4 steps
        (as a thread not advanced when racing)."""
        slots = st.integers(0, THREAD_SLOTS - 1)
        slot = data.draw(slots if self.racing else st.none() | slots, label="thread slot")
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
        for _ in range(data.draw(st.integers(0, most), label=label)):
            if name is None or name not in self.guide.runnable():
                break
            self._append(StepLine(StepThread(name)))

    def _schedule(self, data: st.DataObject, most: int, label: str) -> None:
        """Step the scheduler's choice among runnable threads 1 to ``most``
        times (drawn), while any is runnable."""
        assert self.scheduler is not None and self.chooser is not None
        self.chooser.data = data
        for _ in range(data.draw(st.integers(1, most), label=label)):
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
        frames = data.draw(st.sampled_from((None, 64, 520, 1100)), label="frames")
        device_frames = data.draw(st.sampled_from((None, 8, 1)), label="device-frames")
        if frames is not None:
            self.headers["frames"] = str(frames)
        if device_frames is not None:
            self.headers["device-frames"] = str(device_frames)
        self.guide = Guide(Config(frames=frames or m.DEFAULT_FRAMES,
                                  device_frames=device_frames or m.DEFAULT_DEVICE_FRAMES))
        if data.draw(WILD.map(lambda w: not w), label="prelude mmap"):
            huge = data.draw(st.booleans(), label="prelude huge")
            n = data.draw(st.sampled_from((2 * HUGE_PAGES, 16, WINDOW)), label="prelude pages")
            self._append(StepLine(m.Mmap(0, 0, n, "rw", "private", huge)))
        for kind in ("mirror", "userptr", "pin"):
            if data.draw(st.booleans(), label=f"prelude {kind}"):
                self._append(StepLine(m.Open(0, kind)))
        self.swarm_off = draw_disabled(data, OP_RULES)
        self.chooser = DrawChooser(data)
        if data.draw(st.booleans(), label="uniform scheduler"):
            self.scheduler = Uniform(self.chooser)
        else:
            depth = data.draw(st.integers(1, 3), label="PCT depth")
            self.scheduler = PCT(self.chooser, depth=depth, max_steps=20)

    # ---------------------------------------------------------- thread rules

    @precondition(lambda self: any(t.startswith("T") for t in self.guide.live()))
    @rule(data=st.data())
    def step_thread(self, data: st.DataObject) -> None:
        name = self._live_thread(data.draw(st.integers(0, THREAD_SLOTS - 1), label="slot"))
        self._append(StepLine(StepThread(name)))

    @precondition(lambda self: any(t.startswith("T") for t in self.guide.live()))
    @rule(data=st.data())
    def run_thread(self, data: st.DataObject) -> None:
        name = self._live_thread(data.draw(st.integers(0, THREAD_SLOTS - 1), label="slot"))
        self._append(StepLine(RunThread(name)))

    @precondition(lambda self: bool(self.guide.runnable()))
    @rule(data=st.data())
    def step_scheduled(self, data: st.DataObject) -> None:
        """Step the scheduler's choice among runnable threads, 1-6 times."""
        self._schedule(data, MAX_BURST, "burst")

    @rule(data=st.data())
    def race(self, data: st.DataObject) -> None:
        """Interrupt a device op with an invalidation: start a device-side op
        (of ``DEVICE_RULES`` this example has on) as a thread, advance it 0-8
        steps, start an invalidating op as a thread, then step the
        scheduler's choices 1-24 times.  A device fault meets an
        invalidation mid-way, a job meets the OOM reaper, a DMA meets a
        fork, as syzkaller's collide mode races pairs of calls; without it,
        two ops overlap only when independent rules happen to leave a thread
        mid-way.

        SPEC has two invalidation paths, blockable and non-blockable, and
        only ``oomreap`` takes the second; so the invalidating racer is, half
        the time, an ``oomreap`` (when ``kill`` is on), else any op of
        ``CPU_RULES``, so that both paths meet a busy device about equally
        often."""
        device = self._draw_racer(data, DEVICE_RULES)
        if device is not None:
            self._start_racer(data, device)
            self._advance(data, self.raced, 2 * MAX_ADVANCE, "head start")
        if "kill" not in self.swarm_off and data.draw(st.booleans(), label="non-blockable"):
            self._start_racer(data, "oomreap")
        elif (cpu := self._draw_racer(data, CPU_RULES)) is not None:
            self._start_racer(data, cpu)
        self._schedule(data, 4 * MAX_BURST, "race steps")

    def _draw_racer(self, data: st.DataObject, rules: Sequence[str]) -> Rule | None:
        """One of ``rules`` that this example has on, if its preconditions hold."""
        names = [n for n in rules if n not in self.swarm_off]
        if not names:
            return None
        name = data.draw(st.sampled_from(names), label="racer")
        racer: Rule = getattr(getattr(type(self), name), RULE_MARKER)
        return racer if all(ok(self) for ok in racer.preconditions) else None

    def _start_racer(self, data: st.DataObject, racer: Rule | str) -> None:
        """Start ``racer`` (a rule, or ``"oomreap"``) as a thread; its name
        is left in ``self.raced``."""
        self.racing, self.raced = True, None
        try:
            if isinstance(racer, str):
                self._emit(data, m.Oomreap(self._pid(data)))
            else:
                racer.function(self, data=data)
        finally:
            self.racing = False

    # ------------------------------------------------------------- CPU ops

    @rule(data=st.data())
    def mmap(self, data: st.DataObject) -> None:
        p = self._pid(data)
        s, n = self._range(data, p)
        huge = data.draw(st.booleans(), label="huge")
        self._emit(data, m.Mmap(p, s, n, data.draw(PROTS), data.draw(KINDS), huge))

    @rule(data=st.data())
    def munmap(self, data: st.DataObject) -> None:
        p = self._pid(data)
        self._emit(data, m.Munmap(p, *self._range(data, p)))

    @rule(data=st.data())
    def mremap(self, data: st.DataObject) -> None:
        p = self._pid(data)
        old, n = self._range(data, p)
        self._emit(data, m.Mremap(p, old, n, self._address(data, p)))

    @rule(data=st.data())
    def mprotect(self, data: st.DataObject) -> None:
        p = self._pid(data)
        self._emit(data, m.Mprotect(p, *self._range(data, p), data.draw(PROTS)))

    @rule(data=st.data())
    def madvise(self, data: st.DataObject) -> None:
        p = self._pid(data)
        advice = data.draw(ADVICE, label="advice")
        self._emit(data, m.Madvise(p, *self._range(data, p), advice))

    @precondition(lambda self: len(self.pids) < MAX_PROCESSES)
    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        self._emit(data, m.Fork(self._pid(data)))

    @precondition(lambda self: bool(self.pids))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        """``exit`` or ``oomreap`` of any live process, P0 included: the
        OOM reaper's non-blockable invalidation racing a device is where
        several bugs live.  One rule for both, so that a process dies no more
        often than any other op runs."""
        p = self._pid(data)
        oomreap = data.draw(st.booleans(), label="oomreap, not exit")
        self._emit(data, m.Oomreap(p) if oomreap else m.Exit(p))

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        p = self._pid(data)
        self._emit(data, m.Read(p, self._address(data, p)))

    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        p = self._pid(data)
        self._emit(data, m.Write(p, self._address(data, p), self._word(data)))

    @rule(data=st.data())
    def migrate(self, data: st.DataObject) -> None:
        p = self._pid(data)
        self._emit(data, m.Migrate(p, *self._range(data, p)))

    @rule(data=st.data())
    def reclaim(self, data: st.DataObject) -> None:
        p = self._pid(data)
        self._emit(data, m.Reclaim(p, *self._range(data, p)))

    # ---------------------------------------------------------- device ops

    @rule(data=st.data())
    def open(self, data: st.DataObject) -> None:
        kind = data.draw(DEVICE_KINDS, label="device kind")
        self._emit(data, m.Open(self._pid(data), kind))

    @rule(data=st.data())
    def dread(self, data: st.DataObject) -> None:
        d, p = self._need_device(data, "mirror")
        self._emit(data, m.Dread(d, *self._range(data, p, MAX_VALUE_PAGES)))

    @rule(data=st.data())
    def dwrite(self, data: st.DataObject) -> None:
        d, p = self._need_device(data, "mirror")
        s, n = self._range(data, p)
        x, stride = self._payload(data, "write")
        assert x is not None
        self._emit(data, m.Dwrite(d, s, n, x, stride))

    @rule(data=st.data())
    def snapshot(self, data: st.DataObject) -> None:
        d, p = self._need_device(data, "mirror")
        self._emit(data, m.Snapshot(d, *self._range(data, p, MAX_VALUE_PAGES)))

    @rule(data=st.data())
    def migrate_to_dev(self, data: st.DataObject) -> None:
        d, p = self._need_device(data, "mirror")
        self._emit(data, m.MigrateToDev(d, *self._range(data, p)))

    @rule(data=st.data())
    def evict(self, data: st.DataObject) -> None:
        self._emit(data, m.Evict(self._need_device(data, "mirror")[0]))

    @rule(data=st.data())
    def reg(self, data: st.DataObject) -> None:
        d, p = self._need_device(data, "userptr")
        self._emit(data, m.Reg(d, *self._range(data, p, REGION_PAGES), data.draw(MODES)))

    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        g = self._need_region(data, "userptr")
        if g is None:
            return
        direction = data.draw(DIRECTIONS)
        off, cnt = self._window(data, g)
        self._emit(data, m.Submit(g.r, direction, off, cnt, *self._payload(data, direction)))

    @precondition(lambda self: bool(self.guide.jobs()))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        self._emit(data, m.Complete(data.draw(st.sampled_from(self.guide.jobs()), label="job")))

    @precondition(lambda self: bool(self.regions["userptr"]))
    @rule(data=st.data())
    def unreg(self, data: st.DataObject) -> None:
        self._emit(data, m.Unreg(self._region(data, "userptr").r))

    @rule(data=st.data())
    def pin(self, data: st.DataObject) -> None:
        d, p = self._need_device(data, "pin")
        self._emit(data, m.Pin(d, *self._range(data, p, REGION_PAGES), data.draw(MODES)))

    @rule(data=st.data())
    def dma(self, data: st.DataObject) -> None:
        g = self._need_region(data, "pin")
        if g is None:
            return
        direction = data.draw(DIRECTIONS)
        off, cnt = self._window(data, g)
        self._emit(data, m.Dma(g.r, direction, off, cnt, *self._payload(data, direction)))

    @precondition(lambda self: bool(self.regions["pin"]))
    @rule(data=st.data())
    def unpin(self, data: st.DataObject) -> None:
        self._emit(data, m.Unpin(self._region(data, "pin").r))

    # ------------------------------------------------------------- judging

    @invariant()
    def guide_sees_no_trouble(self) -> None:
        """Judge at once when the guide raised or saw a violation."""
        if self.guide.trouble is not None and not self.judged:
            self.judge()

    def teardown(self) -> None:
        if not self.judged and self.lines:
            self.judge()

    def judge(self) -> None:
        """Run the trace through the executor; a finding fails the example."""
        self.judged = True
        trace = self.trace()
        verdict = run_trace(trace, self._sides(), self._settings())
        self.verdict = verdict
        finding = verdict.finding
        if finding is None:
            return
        failing = failing_trace(trace, verdict, lambda t: run_trace(t, self._sides(),
                                                                     self._settings()))
        where = ""
        if _is_final():
            path = save_repro(self.config.failures_dir(), failing)
            where = f"saved as {path}\nreplay: mirrorfuzz replay --impl both {path}\n"
        raise AssertionError(f"{finding}\n{where}{format_trace(failing)}")

    def _sides(self) -> list[tuple[str, Factory]]:
        return impls.sides(self.config.sides)

    def _settings(self) -> Settings:
        return Settings(observe_every=self.config.observe_every, mutant=self.config.mutant,
                        checked=self.config.checked)


OP_RULES: Final = ("mmap", "munmap", "mremap", "mprotect", "madvise", "fork", "kill",
                   "read", "write", "migrate", "reclaim", "open", "dread", "dwrite", "snapshot",
                   "migrate_to_dev", "evict", "reg", "submit", "complete", "unreg", "pin", "dma",
                   "unpin")
"""The op rules swarm testing may switch off for an example (fuzz.swarm)."""
DEVICE_RULES: Final = ("dread", "dwrite", "snapshot", "migrate_to_dev", "evict", "submit",
                       "complete", "unreg", "dma", "reg", "pin", "unpin")
"""The race rule's first racer: ops of a device (faults, DMA, jobs, pins)."""
CPU_RULES: Final = ("mmap", "munmap", "mremap", "mprotect", "madvise", "fork", "kill",
                    "write", "migrate", "reclaim")
"""The race rule's second racer: CPU ops, the sources of invalidations."""
gate(MirrorMachine, OP_RULES)


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
    return make_trace(annotated.steps, {**dict(trace.headers), "signature": finding.signature,
                                        "found-by": "stateful"})


def _is_final() -> bool:
    """True in Hypothesis's final replay of the shrunk example (or outside a test)."""
    try:
        return current_build_context().is_final
    except InvalidArgument:
        return True


def machine_for(config: EngineConfig) -> type[MirrorMachine]:
    """A :class:`MirrorMachine` subclass bound to ``config``; the constant
    pool Hypothesis draws from is settled first (``fuzz.determinism``)."""
    settle_constant_pool()
    return type("MirrorMachine", (MirrorMachine,), {"config": config})
