"""``mirrorfuzz corpus compact``: runs of single-page CPU accesses become
range accesses (SPEC §3.2), so a trace that fills and checks whole buffers
reads in a few lines.

The rule: a run of two or more consecutive plain step lines (no comment
between them) that are all ``write P v+i x+i·stride => ok`` for one process,
consecutive pages and one stride, becomes ``write_range P v n x [stride] =>
ok``; a run of ``read P v+i => w_i`` becomes ``read_range P v n => values w_0
… w_(n-1)``.  Plain lines run alone, one after the other, and a range access
has exactly the steps and yields of the single-page ops in order (§3.2), so
the trace means the same; ``compacted`` checks it by replaying both on
every implementation before it writes.  A trace that names a plain line's
thread (``step Li``, ``run Li``, ``blocked Li``: names that depend on line
numbers) is left as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fuzz import impls
from fuzz.executor import Settings, run_trace
from fuzz.safeio import write_all_atomic
from fuzz.trace import BodyLine, StepLine, Trace, format_trace, load_trace, renumber
from model.ops import (
    MAX_VALUE_PAGES,
    OK,
    BlockedOn,
    ReadRange,
    RunThread,
    StepThread,
    Values,
    Write,
    WriteRange,
    words_ok,
)
from model.ops import Read as ReadOp


def _word(line: StepLine) -> int | None:
    text = str(line.expected) if line.expected is not None else ""
    return int(text) if text.lstrip("-").isdigit() else None


def _fits(run: Sequence[StepLine], line: StepLine) -> bool:
    """Whether ``line`` extends ``run`` (a run of one kind, process and stride)."""
    if line.thread is not None or line.expected is None:
        return False
    a, first = line.action, run[0].action
    if type(a) is not type(first) or not isinstance(a, Write | ReadOp):
        return False
    assert isinstance(first, Write | ReadOp)
    if a.p != first.p or a.v != first.v + len(run) or len(run) >= MAX_VALUE_PAGES:
        return False
    if isinstance(a, Write):
        assert isinstance(first, Write)
        if str(line.expected) != str(OK):
            return False
        if len(run) >= 2:
            second = run[1].action
            assert isinstance(second, Write)
            return a.x == first.x + len(run) * (second.x - first.x)
        return True
    return _word(line) is not None


def _starts_run(line: StepLine) -> bool:
    if line.thread is not None or line.expected is None:
        return False
    if isinstance(line.action, Write):
        return str(line.expected) == str(OK)
    return isinstance(line.action, ReadOp) and _word(line) is not None


def _stride(run: Sequence[StepLine]) -> int:
    a, b = run[0].action, run[1].action
    assert isinstance(a, Write) and isinstance(b, Write)
    return b.x - a.x


def _range_line(run: Sequence[StepLine]) -> StepLine:
    first = run[0].action
    n = len(run)
    if isinstance(first, Write):
        return StepLine(WriteRange(first.p, first.v, n, first.x, _stride(run) or None), None, OK)
    assert isinstance(first, ReadOp)
    return StepLine(ReadRange(first.p, first.v, n), None,
                    Values(tuple(_word(line) or 0 for line in run)))


def compact(trace: Trace) -> Trace:
    """``trace`` with its runs of single-page accesses as range accesses."""
    if any(isinstance(s.action, StepThread | RunThread) and s.action.thread.startswith("L")
           or isinstance(s.expected, BlockedOn) for s in trace.steps):
        return trace
    body: list[BodyLine] = []
    run: list[StepLine] = []

    def flush() -> None:
        first = run[0].action if run else None
        if len(run) >= 2 and (not isinstance(first, Write)
                              or words_ok(first.x, _stride(run), len(run))):
            body.append(_range_line(run))
        else:
            body.extend(run)
        run.clear()

    for line in trace.body:
        if isinstance(line, StepLine) and run and _fits(run, line):
            run.append(line)
            continue
        flush()
        if isinstance(line, StepLine) and _starts_run(line):
            run.append(line)
        else:
            body.append(line)
    flush()
    steps = iter(renumber([b for b in body if isinstance(b, StepLine)]))
    numbered = tuple(next(steps) if isinstance(b, StepLine) else b for b in body)
    return Trace(trace.headers, numbered, trace.path)


def compacted(path: Path) -> tuple[int, int, str | None]:
    """One trace file's compaction if that changes it and both versions
    replay clean with the same verdict: (lines before, lines after, the new
    text, or None to leave the file as it is)."""
    before = load_trace(str(path))
    after = compact(before)
    n0, n1 = len(before.steps), len(after.steps)
    if n1 == n0:
        return n0, n0, None
    sides = impls.sides("auto")
    old, new = run_trace(before, sides, Settings()), run_trace(after, sides, Settings())
    if not (old.ok and new.ok):
        return n0, n0, None  # a trace with a finding or a mismatch is a repro: keep it as it is
    return n0, n1, format_trace(after)


def compact_files(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """Compact the trace files ``paths`` (:func:`compacted`), written all or
    none once every one is checked: (lines before, lines after) of each."""
    plans = [compacted(path) for path in paths]
    write_all_atomic([(path, text) for path, (_, _, text) in zip(paths, plans, strict=True)
                      if text is not None])
    return [(n0, n1) for n0, n1, _ in plans]
