"""The executor judges: tested against scripted fake implementations, so
that each kind of finding is produced on purpose and must be reported."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from fuzz.executor import Session, Settings, run_trace
from fuzz.trace import parse_trace
from model.interface import Config, Factory, Implementation, Violation
from model.observation import Observation, RawObservation, ThreadView, VmaView, canonicalize
from model.ops import (
    EINVAL,
    OK,
    Blocked,
    Done,
    Err,
    Num,
    Op,
    OpResult,
    Read,
    StepOutcome,
    Write,
    Yielded,
    format_op,
)

Script = Callable[[Op], list[StepOutcome]]


def one_step(op: Op) -> list[StepOutcome]:
    """Reads give back the vpn; every other op is ok.  One step each."""
    if isinstance(op, Read):
        return [Done(Num(0))]
    return [Done(OK)]


@dataclass
class Fake:
    """A scripted implementation: each op runs the outcomes its script gives."""

    script: Script = one_step
    name: str = "fake"
    raise_on: str | None = None
    violation_on: str | None = None
    budget_used: int = 0
    threads: dict[str, list[StepOutcome]] = field(default_factory=dict)
    ops: dict[str, Op] = field(default_factory=dict)
    fails: dict[str, int] = field(default_factory=dict)
    pending: list[Violation] = field(default_factory=list)
    memory: dict[int, int] = field(default_factory=dict)

    def start(self, thread: str, op: Op) -> OpResult:
        if thread in self.threads:
            return EINVAL
        self.threads[thread] = list(self.script(op))
        self.ops[thread] = op
        self.fails[thread] = 0
        return OK

    def step(self, thread: str) -> StepOutcome | Err:
        if thread not in self.threads:
            return EINVAL
        op = self.ops[thread]
        if self.raise_on and format_op(op).startswith(self.raise_on):
            raise KeyError("boom")
        if self.violation_on and format_op(op).startswith(self.violation_on):
            self.pending.append(Violation("no_use_after_free", "planted"))
            self.pending.append(Violation("accounting", "planted"))
        outs = self.threads[thread]
        out = outs.pop(0) if len(outs) > 1 else outs[0]
        if isinstance(out, Yielded) and outs and isinstance(outs[0], Yielded):
            self.fails[thread] += 1
        if isinstance(out, Done):
            if isinstance(op, Write):
                self.memory[op.v] = op.x
            if isinstance(op, Read) and isinstance(out.result, Num):
                out = Done(Num(self.memory.get(op.v, 0)))
            del self.threads[thread]
        return out

    def live_threads(self) -> list[str]:
        return sorted(self.threads)

    def failed_commits(self, thread: str) -> int:
        return self.fails.get(thread, 0)

    def active_jobs(self) -> list[int]:
        return []

    def vmas(self, pid: int) -> tuple[VmaView, ...]:
        return (VmaView(0, 1 << 20, "rw", "private", False, None, None),)

    def observe(self) -> Observation:
        threads = [ThreadView(t, format_op(self.ops[t]), self.fails[t]) for t in self.threads]
        return canonicalize(RawObservation([], [], [], [], [], threads))

    def take_violations(self) -> list[Violation]:
        out, self.pending = self.pending, []
        return out

    def page_ops(self) -> int:
        return self.budget_used

    def footprint(self) -> int:
        return 0


def side(name: str, make: Callable[[], Fake]) -> tuple[str, Factory]:
    def factory(config: Config) -> Implementation:
        fake = make()
        fake.name = name
        return fake
    return (name, factory)


def trace(body: str) -> str:
    return "# mirrorfuzz-trace 1\n" + body


def test_clean_run_records_results_and_no_findings() -> None:
    t = parse_trace(trace("write P0 5 7 => ok\nread P0 5 => 7\n"))
    verdict = run_trace(t, [side("a", Fake), side("b", Fake)])
    assert verdict.ok, verdict.findings
    assert [str(r) for r in verdict.results] == ["ok", "7"]


def test_expectation_mismatch_is_reported() -> None:
    t = parse_trace(trace("write P0 5 7 => ok\nread P0 5 => 8\n"))
    verdict = run_trace(t, [side("a", Fake)])
    assert not verdict.findings
    assert [(m.line, m.expected, m.got) for m in verdict.mismatches] == [(2, "8", "7")]


def test_result_divergence_names_the_op() -> None:
    def lying() -> Fake:
        fake = Fake()
        fake.memory = {1: 99}  # a stale word the other side does not have
        return fake
    t = parse_trace(trace("write P0 2 1\nread P0 1\n"))
    verdict = run_trace(t, [side("a", Fake), side("b", lying)])
    assert verdict.finding is not None
    assert verdict.finding.signature == "divergence/result/read"
    assert verdict.finding.line == 2


def test_coherence_violation_from_the_oracle() -> None:
    # A single side that reads back 0 after a write: the oracle must object.
    def forgetful() -> Fake:
        fake = Fake()
        fake.memory = {}
        original = fake.step

        def step(thread: str) -> StepOutcome | Err:
            out = original(thread)
            fake.memory.clear()
            return out
        fake.step = step  # type: ignore[method-assign]
        return fake
    t = parse_trace(trace("write P0 3 42\nread P0 3\n"))
    verdict = run_trace(t, [side("a", forgetful)])
    assert verdict.finding is not None
    assert verdict.finding.signature == "violation/coherence/process"
    assert verdict.finding.op_signature == "violation/coherence/read"


def test_exception_is_a_finding_not_a_crash() -> None:
    t = parse_trace(trace("write P0 1 1\nread P0 1\n"))
    verdict = run_trace(t, [side("a", lambda: Fake(raise_on="read"))])
    assert verdict.finding is not None
    assert verdict.finding.signature == "exception/KeyError/test_executor.step"  # where raised
    assert verdict.finding.op_signature == "exception/KeyError/read"


def test_lowest_numbered_violation_is_reported() -> None:
    t = parse_trace(trace("read P0 1\n"))
    verdict = run_trace(t, [side("a", lambda: Fake(violation_on="read"))])
    assert verdict.finding is not None
    assert verdict.finding.signature == "violation/no_use_after_free/state"


def test_budget_overrun() -> None:
    t = parse_trace(trace("read P0 1\n"))
    verdict = run_trace(t, [side("a", lambda: Fake(budget_used=50))], Settings(budget=10))
    assert verdict.finding is not None
    assert verdict.finding.signature == "budget/a/page_ops"


def test_blocked_thread_left_after_drain_is_a_deadlock() -> None:
    def stuck() -> Fake:
        return Fake(script=lambda op: [Yielded(), Blocked()] if isinstance(op, Write)
                    else [Done(OK)])
    t = parse_trace(trace("T1 = write P0 1 1 => ok\nstep T1 => yield\nstep T1 => blocked\n"))
    verdict = run_trace(t, [side("a", stuck)])
    assert not verdict.mismatches
    assert verdict.finding is not None
    assert verdict.finding.signature == "violation/liveness/deadlock"
    assert verdict.finding.op_signature == "violation/liveness/write"
    assert "deadlock" in verdict.finding.message


def test_plain_op_that_blocks_gives_blocked_li() -> None:
    def stuck() -> Fake:
        return Fake(script=lambda op: [Yielded(), Blocked()])
    t = parse_trace(trace("write P0 1 1 => blocked L1\n"))
    verdict = run_trace(t, [side("a", stuck)], Settings(drain=False))
    assert verdict.ok, (verdict.findings, verdict.mismatches)


def test_failed_commits_without_progress_is_a_livelock() -> None:
    def spinning() -> Fake:
        return Fake(script=lambda op: [Yielded()])  # yields forever, each a failed commit
    t = parse_trace(trace("read P0 1\n"))
    verdict = run_trace(t, [side("a", spinning)])
    assert verdict.finding is not None
    assert verdict.finding.signature == "violation/liveness/livelock"
    assert "livelock" in verdict.finding.message


def test_observation_divergence() -> None:
    def extra_thread() -> Fake:
        fake = Fake()
        fake.threads["T9"] = [Blocked()]
        fake.ops["T9"] = Read(0, 0)
        fake.fails["T9"] = 0
        return fake
    t = parse_trace(trace("read P0 1\n"))
    verdict = run_trace(t, [side("a", Fake), side("b", extra_thread)])
    assert verdict.finding is not None
    assert verdict.finding.kind == "divergence"
    assert verdict.finding.detail == "observation"


@pytest.mark.parametrize("text", ["step T1 => EINVAL\n", "run L4 => EINVAL\n"])
def test_step_of_a_thread_that_is_not_live_gives_einval(text: str) -> None:
    verdict = run_trace(parse_trace(trace(text)), [side("a", Fake)])
    assert verdict.ok, (verdict.findings, verdict.mismatches)


def test_observations_are_compared_after_the_last_step_too() -> None:
    def extra_thread_late() -> Fake:
        fake = Fake()
        original = fake.step

        def step(thread: str) -> StepOutcome | Err:
            out = original(thread)
            if isinstance(fake.ops.get(thread), Write):
                fake.threads["T9"] = [Blocked()]
                fake.ops["T9"] = Read(0, 0)
                fake.fails["T9"] = 0
            return out
        fake.step = step  # type: ignore[method-assign]
        return fake
    t = parse_trace(trace("read P0 1\nread P0 2\nwrite P0 1 1\n"))
    settings = Settings(observe_every=100, drain=False)
    verdict = run_trace(t, [side("a", Fake), side("b", extra_thread_late)], settings)
    assert verdict.finding is not None
    assert verdict.finding.detail == "observation"


def test_no_observation_after_a_blocked_step() -> None:
    """A blocked step changes nothing (SPEC 5.1): observations count only
    the starts and steps that were not blocked."""
    seen: list[str] = []

    def counting() -> Fake:
        fake = Fake(script=lambda op: [Yielded(), Blocked(), Blocked(), Blocked(), Done(OK)]
                    if isinstance(op, Write) else [Done(OK)])
        original = fake.observe

        def observe() -> Observation:
            seen.append(fake.name)
            return original()
        fake.observe = observe  # type: ignore[method-assign]
        return fake
    t = parse_trace(trace("T1 = write P0 1 1 => ok\nstep T1 => yield\nstep T1 => blocked\n"
                          "step T1 => blocked\nstep T1 => blocked\nstep T1 => done ok\n"))
    verdict = run_trace(t, [side("a", counting), side("b", counting)], Settings(drain=False))
    assert verdict.ok, (verdict.findings, verdict.mismatches)
    # before the first line, the start, the yield, the done, and after the last line
    assert seen == ["a", "b"] * 5


@pytest.mark.parametrize(("checked", "want"), [
    (None, {"a": True, "b": True}),
    (("b",), {"a": False, "b": True}),
    ((), {"a": False, "b": False}),
])
def test_checked_names_the_sides_that_check_their_invariants(
        checked: tuple[str, ...] | None, want: dict[str, bool]) -> None:
    """Settings.checked: a mutant hunt checks the mutated side only; every
    side gets the trace's other settings unchanged."""
    got: dict[str, Config] = {}

    def spy(name: str) -> tuple[str, Factory]:
        def factory(config: Config) -> Implementation:
            got[name] = config
            return Fake(name=name)
        return (name, factory)

    t = parse_trace(trace("# frames: 64\nwrite P0 5 7 => ok\n"))
    settings = Settings(checked=checked, mutant="itree_inclusive_end")
    assert run_trace(t, [spy("a"), spy("b")], settings).ok
    assert {name: c.checks for name, c in got.items()} == want
    assert all(c.frames == 64 and c.mutant == "itree_inclusive_end" for c in got.values())
    off = run_trace(t, [spy("a"), spy("b")], Settings(checks=False, checked=("a",)))
    assert off.ok and not any(c.checks for c in got.values())


def test_the_work_cap_is_an_outcome_not_a_finding() -> None:
    """Past Settings.max_work a side's step is not judged: the run stops
    ``capped``, with no finding, where a finding would otherwise be."""
    t = parse_trace(trace("write P0 5 7\nwrite P0 6 8\nread P0 1\n"))
    sides = [side("a", lambda: Fake(budget_used=3)),
             side("b", lambda: Fake(raise_on="read"))]
    found = run_trace(t, sides, Settings(max_work=100))
    assert found.outcome == "finding" and not found.capped
    assert found.finding is not None and found.finding.kind == "exception"
    # each step is 1 + 3 page ops of work on side a: the third step passes 10
    capped = run_trace(t, sides, Settings(max_work=10))
    assert capped.outcome == "capped" and capped.capped
    assert capped.finding is None and capped.ok
    assert [str(r) for r in capped.results] == ["ok", "ok"]


def test_observations_count_as_work() -> None:
    """A side's work is its steps and page ops plus what it observes: a cap
    the steps alone stay under stops a run that observes every step."""
    from fuzz import impls

    t = parse_trace(trace("mmap P0 0 64 rw private\nwrite P0 1 1\nwrite P0 2 2\n"))
    sides = impls.sides("reference") * 2
    work = {}
    for every in (0, 1):
        session = Session.for_trace(t, sides, Settings(observe_every=every))
        for line in t.steps:
            session.append(line)
        session.finish()
        work[every] = session.work[0]
    assert work[1] > work[0] + 2
    cap = work[0] + 1
    assert run_trace(t, sides, Settings(observe_every=0, max_work=cap)).outcome == "clean"
    assert run_trace(t, sides, Settings(observe_every=1, max_work=cap)).outcome == "capped"


def test_a_session_judges_each_line_as_it_is_appended() -> None:
    """The session gives each line's result at once, stops running lines at
    the first finding (keeping them), and finishes as run_trace judges the
    whole trace."""
    text = trace("write P0 5 7\nread P0 1\nwrite P0 6 8\n")
    sides = [side("a", Fake), side("b", lambda: Fake(raise_on="read"))]
    session = Session(sides)
    lines = parse_trace(text).steps
    assert str(session.append(lines[0])) == "ok" and not session.over
    assert [s.thread for s in session.steps] == ["L1"]
    assert session.append(lines[1]) is None and session.over
    assert session.verdict.finding is not None and session.verdict.finding.line == 2
    assert session.append(lines[2]) is None and len(session.lines) == 3
    assert session.finish() == run_trace(parse_trace(text), sides)
    with pytest.raises(RuntimeError):
        session.append(lines[0])


def test_a_cap_counting_the_state_stops_both_judges_at_the_same_step() -> None:
    """With ``cap_by_state`` each side is charged its footprint at every
    point the period compares at, under either judge; so the fast judge,
    whose cheap comparisons cost no work of their own, stops a capped run
    where the full judge does.  (With the cap counting observations it runs
    further: the test can fail.)"""
    from fuzz import impls
    from fuzz.codec import decode

    rng = random.Random(14)
    cases = [decode(rng.randbytes(rng.randint(40, 300))) for _ in range(60)]
    sides = impls.sides("both")

    def stops(fast: bool, by_state: bool) -> list[tuple[bool, int]]:
        settings = Settings(observe_every=4, fast=fast, max_work=400, cap_by_state=by_state)
        out = []
        for t in cases:
            verdict = run_trace(t, sides, settings)
            out.append((verdict.capped, verdict.steps))
        return out

    by_state = stops(False, True)
    assert sum(capped for capped, _ in by_state) >= 10  # the cap does bite
    assert stops(True, True) == by_state
    assert stops(True, False) != stops(False, False)
