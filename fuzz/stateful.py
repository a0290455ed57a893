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
* **Arguments as bugs like them**: 512-page boundaries of a window of 8
  huge pages at page 0, VMA edges, edges of pinned and registered ranges,
  pages inside VMAs, recently used addresses, small counts, counts that
  reach or straddle the next edge; values are fresh (distinct, so reads
  tell writes apart); about 1 draw in 20 is wild (EINVAL paths).
* **Shrinks well.**  Every choice is a Hypothesis draw whose simplest value
  is the plainest trace (a plain op, P0, the first address category, count
  1).  Threads are named by a drawn slot, ``T1`` .. ``T4``, never by line
  index: deleting an unrelated rule leaves the names, and so the step lines
  naming them, unchanged.
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
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Final

from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from fuzz import impls
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
    ADDRESS_PAGES,
    FIRST_HANDLE,
    HUGE_PAGES,
    MAX_VALUE_PAGES,
    OK,
    SCHEMA_BY_CLASS,
    WORD_MAX,
    WORD_MIN,
    HandleResult,
    LineResult,
    Op,
    OpResult,
    RunThread,
    StepThread,
)

BLOCKS: Final = 8
WINDOW: Final = BLOCKS * HUGE_PAGES
"""Addresses mostly lie in [0, WINDOW): 8 huge pages from page 0."""
MAX_TRACE_WORK: Final = 8_000
"""Work (as ``fuzz.fuzz_trace`` counts it) after which an example's trace
stops growing: the reference checks every invariant at every step, so a
trace of thousands of steps over thousands of pages took it tens of
seconds; bugs need races, not size."""
REGION_PAGES: Final = HUGE_PAGES + 1
"""The most pages a userptr object or a pin region spans: registering
faults every page in, and the reference checks every invariant over every
resident page at every step, so that big regions only slow examples down."""
THREAD_SLOTS: Final = 4
"""Threads are named T1 .. T4."""
MAX_ADVANCE: Final = 4
MAX_BURST: Final = 6
MAX_PROCESSES: Final = 4
RECENT: Final = 8
FAILURES_ENV: Final = "MIRRORFUZZ_FAILURES"
DEFAULT_FAILURES: Final = "mirrorfuzz-failures"
WILD_ADDRESSES: Final = (-1, ADDRESS_PAGES - 1, ADDRESS_PAGES, 1 << 40)
WILD_COUNTS: Final = (0, -1, MAX_VALUE_PAGES + 1, ADDRESS_PAGES)
WILD_WORDS: Final = (WORD_MAX, WORD_MIN, 1 << 63, -(1 << 64))

PROTS: Final[st.SearchStrategy[m.Prot]] = st.sampled_from(("rw", "r", "none"))
KINDS: Final[st.SearchStrategy[m.Kind]] = st.sampled_from(("private", "shared"))
MODES: Final[st.SearchStrategy[m.Mode]] = st.sampled_from(("rw", "ro"))
DIRECTIONS: Final[st.SearchStrategy[m.Direction]] = st.sampled_from(("read", "write"))
ADVICE: Final[st.SearchStrategy[m.Advice]] = st.sampled_from(
    ("dontneed", "hugepage", "nohugepage"))
DEVICE_KINDS: Final[st.SearchStrategy[m.DeviceKind]] = st.sampled_from(
    ("mirror", "userptr", "pin"))
STRIDES: Final = st.sampled_from((None, 1, 0, -1, 7))
WILD: Final = st.integers(0, 19).map(lambda k: k == 19)
"""True about one time in 20; shrinks to False."""


@dataclass(frozen=True)
class EngineConfig:
    """What a machine runs against and where its failures go."""

    sides: str = "auto"  # fuzz.impls.sides: auto, both, reference, optimized
    mutant: str | None = None  # passed to the executor (Settings.mutant)
    observe_every: int = 1  # the executor compares observations every K steps
    failures: str | None = None  # directory; None: $MIRRORFUZZ_FAILURES or the default
    max_work: int = MAX_TRACE_WORK  # the trace stops growing once the guide's work passes it

    def failures_dir(self) -> Path:
        return Path(self.failures or os.environ.get(FAILURES_ENV) or DEFAULT_FAILURES)


@dataclass(frozen=True)
class Region:
    """A userptr object or pin region created successfully."""

    r: int
    d: int
    p: int
    s: int
    n: int
    mode: str


class MirrorMachine(RuleBasedStateMachine):
    """Builds one trace per example; see the module docstring."""

    config: ClassVar[EngineConfig] = EngineConfig()

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[StepLine] = []
        self.headers: dict[str, str] = {}
        self.guide = Guide(Config())
        self.scheduler: Scheduler | None = None
        self.chooser: DrawChooser | None = None
        self.reserved = dict(FIRST_HANDLE)
        self.pids: list[int] = [0]  # created, not exited nor reaped
        self.gone: list[int] = []
        self.devices: dict[str, list[tuple[int, int]]] = {"mirror": [], "userptr": [], "pin": []}
        self.regions: dict[str, list[Region]] = {"userptr": [], "pin": []}
        self.recent: deque[int] = deque(maxlen=RECENT)
        self.judged = False
        self.verdict: Verdict | None = None
        self.swarm_off: frozenset[str] = frozenset()

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
        """Append ``op`` as a plain op, or as a new thread advanced 0-4 steps."""
        slot = data.draw(st.none() | st.integers(0, THREAD_SLOTS - 1), label="thread slot")
        name = None if slot is None else self._free_thread(slot)
        if name is None:
            self._append(StepLine(op))
            return
        self._append(StepLine(op, name))
        for _ in range(data.draw(st.integers(0, MAX_ADVANCE), label="advance")):
            if name not in self.guide.runnable():
                break
            self._append(StepLine(StepThread(name)))

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

    # ------------------------------------------------------------ arguments

    def _pid(self, data: st.DataObject, choices: Sequence[int] | None = None) -> int:
        """A live pid; rarely a gone one (ESRCH) or one not yet created (EINVAL)."""
        if data.draw(WILD, label="wild pid"):
            return data.draw(st.sampled_from([*self.gone, self.reserved["P"]]))
        return data.draw(st.sampled_from(choices or self.pids), label="pid")

    def _device(self, data: st.DataObject, kind: str) -> tuple[int, int]:
        """(device, its pid); rarely a device of another kind (EINVAL)."""
        pool = self.devices[kind]
        if data.draw(WILD, label="wild device"):
            pool = [dev for k, devs in self.devices.items() if k != kind for dev in devs] or pool
        return data.draw(st.sampled_from(pool), label="device")

    def _region(self, data: st.DataObject, kind: str) -> Region:
        return data.draw(st.sampled_from(self.regions[kind]), label="region")

    def _edges(self, pid: int) -> list[int]:
        edges = {HUGE_PAGES * k for k in range(BLOCKS + 1)}
        for vma in self.guide.vmas(pid):
            edges.update((vma.start, vma.end))
        for kind in self.regions.values():
            for g in kind:
                edges.update((g.s, g.s + g.n))
        return sorted(edges)

    def _address(self, data: st.DataObject, pid: int) -> int:
        how = "wild" if data.draw(WILD, label="wild address") else data.draw(st.sampled_from(
            ("boundary", "inside", "inside", "edge", "recent", "window", "region")),
            label="address kind")
        vmas = self.guide.vmas(pid)
        regions = [g for kind in self.regions.values() for g in kind]
        if how == "inside" and vmas:
            vma = data.draw(st.sampled_from(vmas))
            v = vma.start + data.draw(st.integers(0, vma.end - vma.start - 1))
        elif how == "edge" and vmas:
            vma = data.draw(st.sampled_from(vmas))
            v = data.draw(st.sampled_from((vma.start, vma.end))) + data.draw(
                st.sampled_from((0, -1, 1, -2, 2)))
        elif how == "recent" and self.recent:
            v = data.draw(st.sampled_from(list(self.recent)))
        elif how == "region" and regions:
            g = data.draw(st.sampled_from(regions))
            v = data.draw(st.sampled_from((g.s, g.s + g.n - 1, g.s + g.n, g.s - 1)))
        elif how == "window":
            v = data.draw(st.integers(0, WINDOW - 1))
        elif how == "wild":
            v = data.draw(st.sampled_from(WILD_ADDRESSES))
        else:
            v = HUGE_PAGES * data.draw(st.integers(0, BLOCKS - 1)) + data.draw(
                st.sampled_from((0, 1, -1, 4, -4)))
        v = max(v, 0) if how != "wild" else v
        self.recent.appendleft(v)
        return v

    def _count(self, data: st.DataObject, pid: int, s: int, cap: int = WINDOW) -> int:
        how = "wild" if data.draw(WILD, label="wild count") else data.draw(st.sampled_from(
            ("small", "fit", "fit", "to_edge", "to_edge", "huge", "big")), label="count kind")
        if how == "fit":  # stay inside the VMA holding s
            room = next((v.end - s for v in self.guide.vmas(pid) if v.start <= s < v.end), 0)
            if room > 0:
                return min(cap, data.draw(st.sampled_from((room, 1, min(room, 16)))))
        if how == "to_edge":
            above = [e for e in self._edges(pid) if e > s]
            if above:
                e = data.draw(st.sampled_from(above))
                return max(1, e - s + data.draw(st.sampled_from((0, 1, -1, 3))))
        if how == "huge":
            return data.draw(st.sampled_from((HUGE_PAGES, 2 * HUGE_PAGES, HUGE_PAGES + 1,
                                              HUGE_PAGES - 1, 4 * HUGE_PAGES)))
        if how == "big":
            return data.draw(st.integers(1, cap))
        if how == "wild":
            return data.draw(st.sampled_from(WILD_COUNTS))
        return data.draw(st.integers(1, 16))

    def _word(self, data: st.DataObject) -> int:
        if data.draw(WILD, label="wild word"):
            return data.draw(st.sampled_from(WILD_WORDS))
        return 100 + len(self.lines)  # fresh: reads tell writes apart

    def _range(self, data: st.DataObject, pid: int, cap: int = WINDOW) -> tuple[int, int]:
        s = self._address(data, pid)
        return s, self._count(data, pid, s, cap)

    def _window(self, data: st.DataObject, g: Region) -> tuple[int, int]:
        """(off, cnt) into a region of ``g.n`` pages."""
        how = data.draw(st.sampled_from(("all", "one", "tail")), label="window")
        if data.draw(WILD, label="wild window"):
            how = data.draw(st.sampled_from(("past", "wild")))
        if how == "one":
            return data.draw(st.integers(0, g.n - 1)), 1
        if how == "tail":
            off = data.draw(st.integers(0, g.n - 1))
            return off, g.n - off
        if how == "past":
            return 0, g.n + 1
        if how == "wild":
            return data.draw(st.sampled_from(((-1, 1), (g.n, 1), (0, 0))))
        return 0, g.n

    def _payload(self, data: st.DataObject, direction: str) -> tuple[int | None, int | None]:
        if direction == "read":
            return None, None
        stride = data.draw(STRIDES, label="stride")
        return self._word(data), stride

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
        assert self.scheduler is not None and self.chooser is not None
        self.chooser.data = data
        for _ in range(data.draw(st.integers(1, MAX_BURST), label="burst")):
            runnable = self.guide.runnable()
            if not runnable:
                break
            self._append(StepLine(StepThread(self.scheduler.choose(runnable))))

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

    @precondition(lambda self: len(self.pids) > 1)
    @rule(data=st.data())
    def exit(self, data: st.DataObject) -> None:
        self._emit(data, m.Exit(self._pid(data, self.pids[1:])))

    @precondition(lambda self: len(self.pids) > 1)
    @rule(data=st.data())
    def oomreap(self, data: st.DataObject) -> None:
        self._emit(data, m.Oomreap(self._pid(data, self.pids[1:])))

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

    @precondition(lambda self: bool(self.devices["mirror"]))
    @rule(data=st.data())
    def dread(self, data: st.DataObject) -> None:
        d, p = self._device(data, "mirror")
        self._emit(data, m.Dread(d, *self._range(data, p, MAX_VALUE_PAGES)))

    @precondition(lambda self: bool(self.devices["mirror"]))
    @rule(data=st.data())
    def dwrite(self, data: st.DataObject) -> None:
        d, p = self._device(data, "mirror")
        s, n = self._range(data, p)
        x, stride = self._payload(data, "write")
        assert x is not None
        self._emit(data, m.Dwrite(d, s, n, x, stride))

    @precondition(lambda self: bool(self.devices["mirror"]))
    @rule(data=st.data())
    def snapshot(self, data: st.DataObject) -> None:
        d, p = self._device(data, "mirror")
        self._emit(data, m.Snapshot(d, *self._range(data, p, MAX_VALUE_PAGES)))

    @precondition(lambda self: bool(self.devices["mirror"]))
    @rule(data=st.data())
    def migrate_to_dev(self, data: st.DataObject) -> None:
        d, p = self._device(data, "mirror")
        self._emit(data, m.MigrateToDev(d, *self._range(data, p)))

    @precondition(lambda self: bool(self.devices["mirror"]))
    @rule(data=st.data())
    def evict(self, data: st.DataObject) -> None:
        self._emit(data, m.Evict(self._device(data, "mirror")[0]))

    @precondition(lambda self: bool(self.devices["userptr"]))
    @rule(data=st.data())
    def reg(self, data: st.DataObject) -> None:
        d, p = self._device(data, "userptr")
        self._emit(data, m.Reg(d, *self._range(data, p, REGION_PAGES), data.draw(MODES)))

    @precondition(lambda self: bool(self.regions["userptr"]))
    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        g = self._region(data, "userptr")
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

    @precondition(lambda self: bool(self.devices["pin"]))
    @rule(data=st.data())
    def pin(self, data: st.DataObject) -> None:
        d, p = self._device(data, "pin")
        self._emit(data, m.Pin(d, *self._range(data, p, REGION_PAGES), data.draw(MODES)))

    @precondition(lambda self: bool(self.regions["pin"]))
    @rule(data=st.data())
    def dma(self, data: st.DataObject) -> None:
        g = self._region(data, "pin")
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
        return Settings(observe_every=self.config.observe_every, mutant=self.config.mutant)


OP_RULES: Final = ("mmap", "munmap", "mremap", "mprotect", "madvise", "fork", "exit", "oomreap",
                   "read", "write", "migrate", "reclaim", "open", "dread", "dwrite", "snapshot",
                   "migrate_to_dev", "evict", "reg", "submit", "complete", "unreg", "pin", "dma",
                   "unpin")
"""The op rules swarm testing may switch off for an example (fuzz.swarm)."""
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
