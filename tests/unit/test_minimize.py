"""The minimizer: exact minima on scripted fakes, no slipping, determinism,
and the syntactic renumbering that deleting lines needs (SPEC §2 handles,
``Li`` names)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.edit import delete_steps
from fuzz.executor import Settings, run_trace
from fuzz.minimize import NoFinding, Stats, minimize, minimize_file
from fuzz.trace import StepLine, Trace, format_step, format_trace, parse_trace
from model.interface import Config, Factory, Implementation, Violation
from model.observation import Observation, RawObservation, ThreadView, VmaView, canonicalize
from model.ops import (
    EINVAL,
    FIRST_HANDLE,
    OK,
    SCHEMA_BY_CLASS,
    Done,
    Err,
    Errno,
    Fork,
    HandleResult,
    Mmap,
    Munmap,
    Num,
    Op,
    OpResult,
    Pin,
    Read,
    Reg,
    RunThread,
    StepOutcome,
    StepThread,
    Write,
    Yielded,
    format_op,
)

Bug = Callable[["Fake", Op], "OpResult | None"]


@dataclass
class Fake:
    """Memory per (pid, vpn), fork copies it, writes take two steps; a bug may
    override the result of an op when it completes."""

    bug: Bug | None = None
    name: str = "fake"
    procs: set[int] = field(default_factory=lambda: {0})
    forked: set[int] = field(default_factory=set)  # pids created by fork
    memory: dict[tuple[int, int], int] = field(default_factory=dict)
    threads: dict[str, Op] = field(default_factory=dict)
    stepped: set[str] = field(default_factory=set)
    regions: int = 0

    def start(self, thread: str, op: Op) -> OpResult:
        if thread in self.threads:
            return EINVAL
        self.threads[thread] = op
        return OK

    def in_flight(self, p: int, v: int) -> bool:
        return any(isinstance(op, Write) and (op.p, op.v) == (p, v) and t in self.stepped
                   for t, op in self.threads.items())

    def step(self, thread: str) -> StepOutcome | Err:
        op = self.threads.get(thread)
        if op is None:
            return EINVAL
        if isinstance(op, Write) and thread not in self.stepped:
            self.stepped.add(thread)
            return Yielded()
        result = (self.bug(self, op) if self.bug else None) or self._do(op)
        del self.threads[thread]
        self.stepped.discard(thread)
        return Done(result)

    def _do(self, op: Op) -> OpResult:
        p = getattr(op, "p", 0)
        if p not in self.procs:
            return Err(Errno.ESRCH)
        if isinstance(op, Write):
            self.memory[(op.p, op.v)] = op.x
        elif isinstance(op, Read):
            return Num(self.memory.get((op.p, op.v), 0))
        elif isinstance(op, Fork):
            self.procs.add(op.child)
            self.forked.add(op.child)
            for (q, v), x in list(self.memory.items()):
                if q == op.p:
                    self.memory[(op.child, v)] = x
            return HandleResult("P", op.child)
        elif isinstance(op, Mmap | Munmap):
            for key in [k for k in self.memory if k[0] == op.p and op.s <= k[1] < op.s + op.n]:
                del self.memory[key]
        elif isinstance(op, Reg | Pin):
            return HandleResult("R", op.region)
        elif hasattr(op, "dev"):
            return HandleResult("D", op.dev)
        return OK

    def live_threads(self) -> list[str]:
        return sorted(self.threads)

    def failed_commits(self, thread: str) -> int:
        return 0

    def active_jobs(self) -> list[int]:
        return []

    def vmas(self, pid: int) -> tuple[VmaView, ...]:
        return (VmaView(0, 1 << 20, "rw", "private", False, None, None),)

    def observe(self) -> Observation:
        threads = [ThreadView(t, format_op(op), 0) for t, op in self.threads.items()]
        return canonicalize(RawObservation([], [], [], [], [], threads))

    def take_violations(self) -> list[Violation]:
        return []

    def page_ops(self) -> int:
        return 0

    def footprint(self) -> int:
        return 0


def side(name: str, bug: Bug | None = None) -> tuple[str, Factory]:
    def factory(config: Config) -> Implementation:
        return Fake(bug=bug, name=name)
    return (name, factory)


def write7_after_fork(fake: Fake, op: Op) -> OpResult | None:
    """A write to vpn 7 of a forked process fails."""
    if isinstance(op, Write) and op.v == 7 and op.p in fake.forked:
        return Err(Errno.EFAULT)
    return None


def read_during_write(fake: Fake, op: Op) -> OpResult | None:
    """A read of a page whose write is half done sees garbage."""
    if isinstance(op, Read) and fake.in_flight(op.p, op.v):
        return Num(99)
    return None


def read_before_fork(fake: Fake, op: Op) -> OpResult | None:
    """Before any fork, every read sees garbage."""
    if isinstance(op, Read) and not fake.forked:
        return Num(77)
    return write7_after_fork(fake, op)


def judge_with(bug: Bug, seen: list[str | None] | None = None) -> Callable[[Trace], str | None]:
    sides = [side("a"), side("b", bug)]

    def judge(trace: Trace) -> str | None:
        finding = run_trace(trace, sides).finding
        sig = None if finding is None else finding.signature
        if seen is not None:
            seen.append(sig)
        return sig
    return judge


def trace(body: str, headers: str = "") -> Trace:
    return parse_trace("# mirrorfuzz-trace 1\n" + headers + body)


def body(t: Trace) -> str:
    return "".join(format_step(s) + "\n" for s in t.steps)


FORK_NOISE = """\
mmap P0 0 64 rw private
open P0 mirror
write P0 1 5
# a comment in the way
fork P0
open P1 userptr
reg D1 0 4 rw
write P1 3 9
T4 = fork P1
step T4
mprotect P0 0 4 r
open P2 pin
pin D2 0 2 rw
fork P0
write P2 6 11
migrate P0 0 8
write P3 7 42 => ok
read P0 1
write P2 7 1
"""


def test_fork_then_write7_minimizes_to_the_two_lines_renumbered() -> None:
    stats = Stats()
    original = trace(FORK_NOISE, "# frames: 64\n# title: noisy\n")
    small = minimize(original, judge_with(write7_after_fork), stats=stats)
    assert stats.signature == "divergence/result/write"
    assert body(small) == "fork P0\nwrite P1 7 0\n"
    assert small.headers == ()  # frames not needed, title dropped
    assert (stats.lines_before, stats.lines_after) == (18, 2)
    assert not stats.exhausted
    assert stats.runs < 200, stats


def test_minimization_is_deterministic() -> None:
    outs = []
    for _ in range(2):
        stats = Stats()
        small = minimize(trace(FORK_NOISE), judge_with(write7_after_fork), stats=stats)
        outs.append((format_trace(small), stats.runs, stats.accepted))
    assert outs[0] == outs[1]


INTERLEAVED = """\
mmap P0 0 64 rw private
write P0 10 1
T1 = write P0 20 5
T2 = write P0 21 6
step T2
read P0 3
step T1
write P0 11 2
run T2
read P0 20
step T1
read P0 21
"""


def test_interleaving_is_kept_and_addresses_move_down() -> None:
    stats = Stats()
    small = minimize(trace(INTERLEAVED), judge_with(read_during_write), stats=stats)
    assert stats.signature == "divergence/result/read"
    assert body(small) == "T1 = write P0 0 0\nstep T1\nread P0 0\n"
    assert stats.accepted.get("addresses") == 1  # the write's and the read's vpn together


def read_below_last_write(fake: Fake, op: Op) -> OpResult | None:
    """A read of the page just below the last page written sees garbage."""
    if isinstance(op, Write):
        fake.regions = op.v  # (reused as "the last vpn written")
    if isinstance(op, Read) and op.v + 1 == fake.regions:
        return Num(55)
    return None


def test_related_addresses_move_down_together() -> None:
    stats = Stats()
    t = trace("write P0 900 4\nread P0 3\nwrite P0 701 4\nread P0 700\nread P0 900\n")
    small = minimize(t, judge_with(read_below_last_write), stats=stats)
    assert body(small) == "write P0 1 0\nread P0 0\n"
    assert stats.accepted.get("translate") == 1


def test_threads_become_plain_ops_when_the_finding_allows() -> None:
    t = trace("T3 = fork P0\nread P0 2\nstep T3\nT1 = write P1 7 5\nstep T1\nrun T1\n")
    stats = Stats()
    small = minimize(t, judge_with(write7_after_fork), stats=stats)
    assert body(small) == "fork P0\nwrite P1 7 0\n"
    assert stats.accepted.get("atomic_threads", 0) >= 1


def test_a_grandchild_is_merged_into_its_parent() -> None:
    # ddmin cannot drop either fork (the write needs P2, P2 needs P1):
    # merge_handles points P2's uses at P1 and drops `fork P1`.
    stats = Stats()
    t = trace("fork P0\nwrite P1 3 3\nfork P1\nread P2 3\nwrite P2 7 9\n")
    small = minimize(t, judge_with(write7_after_fork), stats=stats)
    assert body(small) == "fork P0\nwrite P1 7 0\n"
    assert stats.accepted.get("merge_handles") == 1


def test_a_candidate_with_another_finding_is_rejected() -> None:
    seen: list[str | None] = []
    t = trace("fork P0\nwrite P1 7 3\nread P0 1\n")
    small = minimize(t, judge_with(read_before_fork, seen))
    assert seen[0] == "divergence/result/write"
    assert "divergence/result/read" in seen  # dropping the fork slips onto the read
    assert body(small) == "fork P0\nwrite P1 7 0\n"
    assert judge_with(read_before_fork)(small) == "divergence/result/write"


def test_no_finding_is_refused() -> None:
    with pytest.raises(NoFinding):
        minimize(trace("write P0 7 1\n"), judge_with(write7_after_fork))


def test_run_budget_returns_the_best_so_far() -> None:
    stats = Stats()
    small = minimize(trace(FORK_NOISE), judge_with(write7_after_fork), max_runs=5, stats=stats)
    assert stats.exhausted and stats.runs == 5
    assert judge_with(write7_after_fork)(small) == "divergence/result/write"
    assert len(small.steps) < 18


def test_plain_op_threads_are_renamed_and_dropped_with_their_line() -> None:
    steps = trace("""\
write P0 1 1
T1 = write P0 2 2
write P0 3 3
step L3
run L3
step T1
step L1
""").steps
    assert body(trace(_text(delete_steps(steps, {1})))) == (
        "T1 = write P0 2 2\nwrite P0 3 3\nstep L2\nrun L2\nstep T1\n")
    assert body(trace(_text(delete_steps(steps, {3})))) == (
        "write P0 1 1\nT1 = write P0 2 2\nstep T1\nstep L1\n")
    assert body(trace(_text(delete_steps(steps, {2})))) == (
        "write P0 1 1\nwrite P0 3 3\nstep L2\nrun L2\nstep L1\n")


def test_tn_lines_follow_the_start_that_governs_them() -> None:
    steps = trace("T1 = write P0 1 1\nrun T1\nT1 = write P0 2 2\nstep T1\n").steps
    assert _text(delete_steps(steps, {3})) == "T1 = write P0 1 1\nrun T1\n"
    assert _text(delete_steps(steps, {1})) == "T1 = write P0 2 2\nstep T1\n"


HANDLES = """\
fork P0
open P1 mirror
dread D0 0 1
open P0 pin
pin D1 0 1 rw
read P9 0
dma R0 read 0 1
fork P0
write P2 1 1
reg D1 0 1 rw
unreg R1
"""


def test_deleting_a_creator_takes_its_users_and_shifts_later_handles() -> None:
    steps = trace(HANDLES).steps
    assert _text(delete_steps(steps, {1})) == (
        "open P0 pin\npin D0 0 1 rw\nread P8 0\ndma R0 read 0 1\nfork P0\nwrite P1 1 1\n"
        "reg D0 0 1 rw\nunreg R1\n")
    assert _text(delete_steps(steps, {5})) == (
        "fork P0\nopen P1 mirror\ndread D0 0 1\nopen P0 pin\nread P9 0\nfork P0\n"
        "write P2 1 1\nreg D1 0 1 rw\nunreg R0\n")


def test_rebuilt_lines_round_trip_through_text() -> None:
    steps = delete_steps(trace(HANDLES).steps, {2, 8})
    again = trace(_text(steps)).steps
    assert again == steps


def _text(steps: tuple[object, ...]) -> str:
    return "".join(format_step(s) + "\n" for s in steps)  # type: ignore[arg-type]


def test_minimize_file_writes_a_replayable_repro(tmp_path: Path) -> None:
    path = tmp_path / "noisy.trace"
    path.write_text("# mirrorfuzz-trace 1\n# title: noisy\n# found-by: stateful\n" + FORK_NOISE)
    sides = [side("a"), side("b", write7_after_fork)]
    stats = Stats()
    repro = minimize_file(path, sides, Settings(), found_by="stateful", stats=stats,
                          today=date(2026, 11, 24))
    assert format_trace(repro) == (
        "# mirrorfuzz-trace 1\n"
        "# title: minimized: noisy\n"
        "# signature: divergence/result/write\n"
        "# found-by: stateful\n"
        "# minimized: 2026-11-24\n"
        "fork P0 => P1\n"
        "write P1 7 0 => ok\n")
    verdict = run_trace(parse_trace(format_trace(repro)), sides)
    assert verdict.finding is not None
    assert verdict.finding.signature == "divergence/result/write"
    print(f"\nminimize_file: {stats.lines_before} -> {stats.lines_after} lines, "
          f"{stats.runs} judge runs ({stats.cached} cached), {stats.accepted}")


def test_a_cheap_first_pass_gives_the_same_repro(tmp_path: Path) -> None:
    """``first=`` minimizes under cheaper settings first; the repro and its
    signature are those of the final settings, in fewer expensive runs."""
    path = tmp_path / "noisy.trace"
    path.write_text("# mirrorfuzz-trace 1\n# title: noisy\n" + FORK_NOISE)
    sides = [side("a"), side("b", write7_after_fork)]
    plain, staged = Stats(), Stats()
    expected = minimize_file(path, sides, Settings(), found_by="t", stats=plain,
                             today=date(2026, 11, 24))
    repro = minimize_file(path, sides, Settings(), found_by="t", stats=staged,
                          today=date(2026, 11, 24), first=Settings(observe_every=0))
    assert format_trace(repro) == format_trace(expected)
    assert staged.signature == plain.signature == "divergence/result/write"
    assert staged.lines_before == plain.lines_before
    assert staged.cheap_runs > 0 and staged.runs < plain.runs


def test_real_reference_against_a_planted_copy_of_itself() -> None:
    reference = pytest.importorskip("model.reference")

    def planted(config: Config) -> Implementation:
        kernel: Implementation = reference.ReferenceKernel(config)
        kernel.name = "planted"
        ops: dict[str, Op] = {}
        start, step = kernel.start, kernel.step

        def start2(thread: str, op: Op) -> OpResult:
            ops[thread] = op
            return start(thread, op)

        def step2(thread: str) -> StepOutcome | Err:
            out = step(thread)
            op = ops.get(thread)
            if isinstance(op, Read) and op.p >= 1 and isinstance(out, Done) \
                    and isinstance(out.result, Num):
                return Done(Num(out.result.value + 1))  # a child's reads are off by one
            return out
        kernel.start, kernel.step = start2, step2  # type: ignore[method-assign]
        return kernel

    sides = [("reference", reference.ReferenceKernel), ("planted", planted)]

    def judge(t: Trace) -> str | None:
        finding = run_trace(t, sides).finding
        return None if finding is None else finding.signature
    t = trace("mmap P0 0 16 rw private huge\nwrite P0 5 1\nopen P0 mirror\nfork P0\n"
              "write P0 3 3\nread P0 5\nread P1 5\nread P1 6\n")
    stats = Stats()
    small = minimize(t, judge, stats=stats)
    assert stats.signature == "divergence/result/read"
    assert body(small) == "mmap P0 0 1 rw private\nfork P0\nread P1 0\n"


# ------------------------------------------------- renumbering, as a property
# An independent model of deletion: every reference is resolved to the line it
# names (a handle to its creating line, Li to line i, Tn to its governing
# start), dependants of deleted lines go too, and the names are read back.

LINES = st.one_of(
    st.builds("fork P{}".format, st.integers(0, 4)),
    st.builds("open P{} mirror".format, st.integers(0, 4)),
    st.builds("reg D{} 0 1 rw".format, st.integers(0, 3)),
    st.builds("pin D{} 0 1 rw".format, st.integers(0, 3)),
    st.builds("submit R{} read 0 1".format, st.integers(0, 3)),
    st.builds("complete J{}".format, st.integers(0, 3)),
    st.builds("read P{} 0".format, st.integers(0, 4)),
    st.builds("T{} = read P{} 0".format, st.integers(1, 2), st.integers(0, 4)),
    st.builds("{} T{}".format, st.sampled_from(["step", "run"]), st.integers(1, 2)),
    st.builds("T{} = fork P{}".format, st.integers(1, 2), st.integers(0, 4)),
    st.builds("{} L{}".format, st.sampled_from(["step", "run"]), st.integers(0, 30)),
)
Ref = tuple[str, object]


def _symbolic(steps: tuple[StepLine, ...]) -> list[tuple[StepLine, list[tuple[str, Ref]]]]:
    creators: dict[tuple[str, int], int] = {}
    counts = dict.fromkeys(FIRST_HANDLE, 0)
    for i, line in enumerate(steps, start=1):
        schema = SCHEMA_BY_CLASS.get(type(line.action))
        if schema is not None and schema.reserves and schema.reserved_field:
            creators[(schema.reserves, getattr(line.action, schema.reserved_field))] = i
            counts[schema.reserves] += 1
    out = []
    for i, line in enumerate(steps, start=1):
        refs: list[tuple[str, Ref]] = []
        action = line.action
        if isinstance(action, StepThread | RunThread):
            name = action.thread
            k = int(name[1:])
            if name[0] == "L":
                ref: Ref = (("line", k) if 1 <= k <= len(steps) else ("T", name) if k == 0
                            else ("Lfree", k - len(steps)))
            else:
                starts = [j for j in range(1, i) if steps[j - 1].thread == name]
                ref = ("line", starts[-1]) if starts else ("T", name)
            refs.append(("thread", ref))
        else:
            for arg in SCHEMA_BY_CLASS[type(action)].args:
                if isinstance(arg.kind, str) and arg.kind in FIRST_HANDLE:
                    num = getattr(action, arg.field)
                    first = FIRST_HANDLE[arg.kind]
                    if num < first:
                        ref = ("fixed", num)
                    elif (arg.kind, num) in creators:
                        ref = ("line", creators[(arg.kind, num)])
                    else:
                        ref = ("free", num - first - counts[arg.kind])
                    refs.append((arg.field, ref))
        out.append((line, refs))
    return out


def _expected_deletion(steps: tuple[StepLine, ...], gone: set[int]) -> str:
    sym = _symbolic(steps)
    alive = set(range(1, len(steps) + 1)) - gone
    changed = True
    while changed:
        changed = False
        for i in sorted(alive):
            if any(r[0] == "line" and r[1] not in alive for _, r in sym[i - 1][1]):
                alive.discard(i)
                changed = True
    kept = sorted(alive)
    rank: dict[int, int] = {}
    counts = dict.fromkeys(FIRST_HANDLE, 0)
    for i in kept:
        schema = SCHEMA_BY_CLASS.get(type(steps[i - 1].action))
        if schema is not None and schema.reserves:
            rank[i] = FIRST_HANDLE[schema.reserves] + counts[schema.reserves]
            counts[schema.reserves] += 1
    text = ""
    for i in kept:
        line, refs = sym[i - 1]
        words = format_step(replace(line, expected=None)).split()
        for fld, (kind, value) in refs:
            if fld == "thread":
                head = words[-1][0]
                if kind == "line" and head == "L":
                    assert isinstance(value, int)
                    words[-1] = f"L{kept.index(value) + 1}"
                elif kind == "Lfree":
                    assert isinstance(value, int)
                    words[-1] = f"L{len(kept) + value}"
            else:
                schema = SCHEMA_BY_CLASS[type(line.action)]
                arg = next(a for a in schema.args if a.field == fld)
                assert isinstance(arg.kind, str) and isinstance(value, int)
                num = {"fixed": value, "line": rank.get(value, -1),
                       "free": FIRST_HANDLE[arg.kind] + counts[arg.kind] + value}[kind]
                position = [a.field for a in schema.args].index(fld) + 1
                offset = 2 if line.thread else 0
                words[position + offset] = f"{arg.kind}{num}"
        text += " ".join(words) + "\n"
    return text


@given(st.lists(LINES, min_size=1, max_size=25), st.data())
def test_deletion_renumbers_like_the_symbolic_model(lines: list[str], data: st.DataObject) -> None:
    steps = trace("".join(f"{line}\n" for line in lines)).steps
    gone = data.draw(st.sets(st.integers(1, len(steps))))
    got = delete_steps(steps, gone)
    assert _text(got) == _expected_deletion(steps, gone)
    assert trace(_text(got)).steps == got  # reserved fields as the parser sets them
