"""The minimizer: shrink a trace with a finding to a small trace with the same finding.

Rules this module enforces:

* **Never slip.**  The target is ``judge(original)``, the signature of the
  original's first finding (``ValueError`` -- :class:`NoFinding` -- if it has
  none).  A candidate replaces the current trace only if ``judge(candidate)``
  is exactly the target, never another finding.
* **Always smaller.**  A candidate is judged only if it is strictly smaller by
  :func:`size`: (step lines, sum of |numeric arguments|, text length).  So the
  minimizer terminates, and every accepted change is a simplification.
* **Deterministic.**  No randomness and no clock: the same trace and judge
  give the same output and the same number of judge runs.  Judge results are
  cached by candidate text; only real judge calls count against ``max_runs``
  (when they run out, the smallest trace so far is returned).  A caller's
  ``stop`` (a time limit) ends it the same way, before the next judge call:
  the smallest trace so far, ``Stats.partial`` set.
* **The engine's signature.**  :func:`minimize_file` keeps the signature the
  original gives under the judge settings it is given (those the engine
  found it with): a cheap first pass is used only when its result still
  gives that signature, never another one.
* **Named passes, to a fixed point** (:data:`PASSES`), each a list of
  candidates tried in a fixed order:

  ==================  ======================================================
  ``normalize``       drop comments, blank lines, ``=>`` annotations and the
                      ``title``/``found-by``/``signature`` headers (once)
  ``ddmin``           delta debugging over the step lines (Zeller's ddmin:
                      keep one chunk while n <= 8, drop one chunk, refine)
  ``merge_handles``   fewer processes and devices: point every use of a
                      forked ``Pk`` at its parent (of a ``Dk`` at an earlier
                      device of the same kind) and drop the creating line
  ``atomic_threads``  ``Tn = op`` (or a blocked plain op) with its later
                      ``step``/``run`` lines becomes one plain op at the
                      position of the last of them; consecutive ``step X``
                      lines become one ``run X``
  ``addresses``       an address used more than once (a write and the read
                      of the same vpn) lowered at all its uses together
  ``arguments``       counts ``n``/``cnt`` lowered (1 first, then bisection),
                      addresses and offsets likewise (0 first); values ``x``
                      -> 0, 1 (omitted where optional); ``stride`` omitted;
                      ``huge`` dropped
  ``translate``       every address of the trace moved down together (the
                      lowest to 0, else to its 512-aligned remainder)
  ``headers``         drop ``frames`` and ``device-frames`` (use defaults)
  ==================  ======================================================

* **Deleting lines is a syntactic renumbering** of reserved handles and
  ``Li`` threads: :func:`fuzz.edit.rebuild` states and enforces that rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from pathlib import Path
from typing import Final

from fuzz.edit import Edit, handle_fields, op_of, rebuild, thread_ref, with_changes
from fuzz.executor import Settings, run_trace
from fuzz.plugins import driver_header
from fuzz.trace import Comment, StepLine, Trace, format_trace, load_trace, renumber, with_expected
from model.interface import Factory
from model.ops import (
    HUGE_PAGES,
    SCHEMA_BY_CLASS,
    Fork,
    Op,
    Open,
    RunThread,
    StepThread,
)

Judge = Callable[[Trace], "str | None"]
DEFAULT_MAX_RUNS: Final = 5000
VOLATILE_HEADERS: Final = ("title", "found-by", "signature")
SEMANTIC_HEADERS: Final = ("frames", "device-frames", "driver")
DDMIN_SUBSETS_UP_TO: Final = 8


class NoFinding(ValueError):
    """The trace to minimize has no finding."""


@dataclass
class Stats:
    """What a minimization did."""

    signature: str | None = None
    runs: int = 0  # judge calls, the first (the original) included
    cheap_runs: int = 0  # judge calls of minimize_file's cheap first pass
    cached: int = 0  # candidates answered from the cache
    rounds: int = 0  # rounds of all passes
    accepted: dict[str, int] = field(default_factory=dict)  # pass -> accepted candidates
    exhausted: bool = False  # max_runs was reached
    partial: bool = False  # the caller's stop (a time limit) ended it
    lines_before: int = 0
    lines_after: int = 0


# ------------------------------------------------------------------ size


def _numbers(line: StepLine) -> int:
    op = op_of(line)
    if op is None:
        return 0
    total = 0
    for arg in SCHEMA_BY_CLASS[type(op)].args:
        value = getattr(op, arg.field)
        if arg.kind in ("nat", "word") and isinstance(value, int):
            total += abs(value)
    return total


def size(trace: Trace) -> tuple[int, int, int]:
    """The order the minimizer descends: (step lines, sum of |numbers|, text length)."""
    steps = trace.steps
    return (len(steps), sum(_numbers(s) for s in steps), len(format_trace(trace)))


# ---------------------------------------------------------------- passes


class _OutOfRuns(Exception):
    pass


def _chunks(count: int, n: int) -> list[list[int]]:
    """1..count split into n contiguous chunks, as even as possible."""
    bounds = [count * k // n for k in range(n + 1)]
    return [list(range(bounds[k] + 1, bounds[k + 1] + 1)) for k in range(n)
            if bounds[k] < bounds[k + 1]]


def _lowest(role: str) -> int | None:
    """The smallest value worth trying for a numeric argument (by its role
    in the op's declaration), None if not numeric."""
    if role in ("count", "cnt"):
        return 1
    if role in ("addr", "off"):
        return 0
    return None


def _other_values(name: str, value: object, optional: bool, op: Op) -> list[object]:
    """Candidate replacements of a flag or word argument, best first."""
    if name == "huge":
        return [False] if value is True else []
    if name == "stride":
        return [None] if value is not None else []
    if name == "x" and value is not None:
        out: list[object] = []
        if optional and getattr(op, "stride", None) is None:
            out.append(None)
        out.extend(c for c in (0, 1) if c != value)
        return out
    return []


class _Minimizer:
    def __init__(self, judge: Judge, trace: Trace, max_runs: int, stats: Stats,
                 stop: Callable[[], bool] | None = None, target: str | None = None) -> None:
        self.judge = judge
        self.max_runs = max_runs
        self.stats = stats
        self.stop = stop
        self.cache: dict[str, str | None] = {}
        self.current = trace
        self.target = judge(trace)  # the original always runs, whatever max_runs says
        stats.runs += 1
        self.cache[format_trace(trace)] = self.target
        if self.target is None:
            raise NoFinding(f"{trace.path}: the trace has no finding to minimize")
        if target is not None and self.target != target:
            raise NoFinding(f"{trace.path}: the trace gives {self.target}, not {target}")
        stats.signature = self.target

    def _judge(self, trace: Trace) -> str | None:
        text = format_trace(trace)
        if text in self.cache:
            self.stats.cached += 1
            return self.cache[text]
        if self.stats.runs >= self.max_runs:
            raise _OutOfRuns
        if self.stop is not None and self.stop():
            self.stats.partial = True
            raise _OutOfRuns
        self.stats.runs += 1
        result = self.judge(trace)
        self.cache[text] = result
        return result

    def attempt(self, candidate: Trace, name: str) -> bool:
        """Adopt ``candidate`` if it is smaller and keeps the target finding."""
        try:
            if size(candidate) >= size(self.current):
                return False
        except ValueError:  # no text gives it back: not a trace we can keep
            return False
        if self._judge(candidate) != self.target:
            return False
        self.current = candidate
        self.stats.accepted[name] = self.stats.accepted.get(name, 0) + 1
        return True

    def attempt_edits(self, edits: Sequence[Edit], name: str) -> bool:
        steps = rebuild(self.current.steps, edits)
        return self.attempt(replace(self.current, body=steps), name)

    def edits(self, skip: AbstractSet[int] = frozenset()) -> list[Edit]:
        return [Edit(i, line) for i, line in enumerate(self.current.steps, start=1)
                if i not in skip]

    # -------------------------------------------------------------- passes

    def normalize(self) -> bool:
        t = self.current
        headers = tuple((k, v) for k, v in t.headers if k not in VOLATILE_HEADERS)
        body = tuple(replace(s, expected=None, lineno=0) for s in renumber(t.steps))
        candidate = replace(t, headers=headers, body=body)
        if format_trace(candidate) == format_trace(t):
            return False
        return self.attempt(candidate, "normalize")

    def ddmin(self) -> bool:
        progress = False
        n = 2
        while self.current.steps:  # down to no lines: a factory may fail on its own
            count = len(self.current.steps)
            n = min(n, count)
            chunks = _chunks(count, n)
            reduced = False
            if 2 < n <= DDMIN_SUBSETS_UP_TO:
                for chunk in chunks:
                    if self.attempt_edits(self.edits(set(range(1, count + 1)) - set(chunk)),
                                          "ddmin"):
                        n, reduced = 2, True
                        break
            if not reduced:
                for chunk in chunks:
                    if self.attempt_edits(self.edits(set(chunk)), "ddmin"):
                        n, reduced = max(n - 1, 2), True
                        break
            if reduced:
                progress = True
                continue
            if n >= count:
                break
            n = min(count, 2 * n)
        return progress

    def _merge_candidates(self) -> Iterator[tuple[int, str, int, int]]:
        """(creating line, letter, handle, replacement) pairs, last creator first."""
        steps = self.current.steps
        devices: list[tuple[int, str]] = []  # (D number, kind), in order
        found: list[tuple[int, str, int, int]] = []
        for i, line in enumerate(steps, start=1):
            op = op_of(line)
            if isinstance(op, Fork):
                found.append((i, "P", op.child, op.p))
            elif isinstance(op, Open):
                found.extend((i, "D", op.dev, d) for d, k in devices if k == op.kind)
                devices.append((op.dev, op.kind))
        return reversed(found)

    def merge_handles(self) -> bool:
        progress = False
        restart = True
        while restart:
            restart = False
            for index, letter, number, target in self._merge_candidates():
                edits = []
                for e in self.edits({index}):
                    op = op_of(e.line)
                    if op is not None:
                        changes: dict[str, object] = {
                            fld: target for fld, ltr in handle_fields(op)
                            if ltr == letter and getattr(op, fld) == number}
                        if changes:
                            e = Edit(e.origin, replace(e.line, action=with_changes(op, changes)))
                    edits.append(e)
                if self.attempt_edits(edits, "merge_handles"):
                    progress = restart = True
                    break
        return progress

    def _thread_groups(self) -> list[tuple[int, list[int]]]:
        """(creating line, later step/run lines) of each thread, in line order."""
        groups: dict[int, list[int]] = {}
        open_by_name: dict[str, int] = {}
        for i, line in enumerate(self.current.steps, start=1):
            action = line.action
            if isinstance(action, StepThread | RunThread):
                g = open_by_name.get(action.thread)
                if g is not None:
                    groups[g].append(i)
            else:
                open_by_name[line.thread or f"L{i}"] = i
                groups[i] = []
        return sorted(groups.items())

    def atomic_threads(self) -> bool:
        progress = False
        restart = True
        while restart:
            restart = False
            for candidate in self._atomic_candidates():
                if self.attempt_edits(candidate, "atomic_threads"):
                    progress = restart = True
                    break
        return progress

    def _atomic_candidates(self) -> Iterator[list[Edit]]:
        steps = self.current.steps
        for creator, members in reversed(self._thread_groups()):
            line = steps[creator - 1]
            if not members and line.thread is None:
                continue
            last = members[-1] if members else len(steps)
            plain = Edit(creator, StepLine(line.action, None, None))
            edits: list[Edit] = []
            for e in self.edits({creator, *members}):
                if e.origin > last and plain not in edits:
                    edits.append(plain)
                edits.append(e)
            if plain not in edits:
                edits.append(plain)
            yield edits
        names = [thread_ref(line) for line in steps]
        i = 0
        while i < len(steps):  # a run of step/run lines of one thread -> one `run`
            j = i + 1
            while names[i] is not None and j < len(steps) and names[j] == names[i]:
                j += 1
            name = names[i]
            if name is not None and j > i + 1:
                yield [Edit(i + 1, StepLine(RunThread(name))) if e.origin == i + 1 else e
                       for e in self.edits(set(range(i + 2, j + 1)))]
            i = j

    def _bisect(self, make: Callable[[int], list[Edit]], low: int, value: int,
                name: str) -> bool:
        """Lower a number: ``low`` first, then bisection down from ``value``.

        ``make(v)`` gives the edits of the current trace with the number set to v.
        """
        if value <= low:
            return False
        if self.attempt_edits(make(low), name):
            return True
        lo, hi, progress = low + 1, value, False
        while lo < hi:
            mid = (lo + hi) // 2
            if self.attempt_edits(make(mid), name):
                hi, progress = mid, True
            else:
                lo = mid + 1
        return progress

    def _set(self, spots: Sequence[tuple[int, str]], value: object) -> list[Edit]:
        """The current lines with each (line, field) spot set to ``value``."""
        out = []
        for e in self.edits():
            fields = [f for i, f in spots if i == e.origin]
            op = op_of(e.line)
            if fields and op is not None:
                action = with_changes(op, dict.fromkeys(fields, value))
                e = Edit(e.origin, replace(e.line, action=action))
            out.append(e)
        return out

    def _address_spots(self) -> list[tuple[int, str, int]]:
        """(line, field, value) of every address argument >= 0."""
        return [(i, a.field, getattr(op, a.field))
                for i, op in enumerate(map(op_of, self.current.steps), start=1) if op is not None
                for a in SCHEMA_BY_CLASS[type(op)].args
                if a.role == "addr" and getattr(op, a.field) >= 0]

    def addresses(self) -> bool:
        """Lower each address used more than once, all its uses together."""
        progress = False
        for value in sorted({v for _, _, v in self._address_spots()}, reverse=True):
            spots = [(i, f) for i, f, v in self._address_spots() if v == value]
            if len(spots) >= 2:
                progress |= self._bisect(partial(self._set, spots), 0, value, "addresses")
        return progress

    def arguments(self) -> bool:
        progress = False
        for index in range(1, len(self.current.steps) + 1):
            first = op_of(self.current.steps[index - 1])
            if first is None:
                continue
            for arg in SCHEMA_BY_CLASS[type(first)].args:
                spot = [(index, arg.field)]
                value = getattr(first, arg.field)
                low = _lowest(arg.role)
                if low is not None and isinstance(value, int):
                    progress |= self._bisect(partial(self._set, spot), low, value, "arguments")
                    continue
                improved = True
                while improved:
                    improved = False
                    op = op_of(self.current.steps[index - 1])
                    assert op is not None
                    for new in _other_values(arg.field, getattr(op, arg.field), arg.optional, op):
                        if self.attempt_edits(self._set(spot, new), "arguments"):
                            progress = improved = True
                            break
        return progress

    def translate(self) -> bool:
        ops = [op for op in map(op_of, self.current.steps) if op is not None]
        addresses = [getattr(op, a.field) for op in ops
                     for a in SCHEMA_BY_CLASS[type(op)].args if a.role == "addr"]
        addresses = [a for a in addresses if isinstance(a, int) and a >= 0]
        if not addresses:
            return False
        low = min(addresses)
        for delta in dict.fromkeys((low, low - low % HUGE_PAGES)):
            if delta <= 0:
                continue
            edits = []
            for e in self.edits():
                op = op_of(e.line)
                if op is not None:
                    changes: dict[str, object] = {
                        a.field: getattr(op, a.field) - delta
                        for a in SCHEMA_BY_CLASS[type(op)].args
                        if a.role == "addr" and getattr(op, a.field) >= 0}
                    e = Edit(e.origin, replace(e.line, action=with_changes(op, changes)))
                edits.append(e)
            if self.attempt_edits(edits, "translate"):
                return True
        return False

    def headers(self) -> bool:
        progress = False
        for key in SEMANTIC_HEADERS:
            t = self.current
            if t.header(key) is not None:
                candidate = replace(t, headers=tuple((k, v) for k, v in t.headers if k != key))
                progress |= self.attempt(candidate, "headers")
        return progress

    def run(self) -> Trace:
        passes: list[Callable[[], bool]] = [getattr(self, name) for name in PASSES]
        try:
            self.normalize()
            progress = True
            while progress:
                self.stats.rounds += 1
                progress = False
                for step in passes:
                    progress |= step()
        except _OutOfRuns:
            self.stats.exhausted = True
        return self.current


PASSES: Final = ("ddmin", "merge_handles", "atomic_threads", "addresses", "arguments",
                  "translate", "headers")
"""The passes of one round, in order (``normalize`` runs once, first)."""


FIRST_PASS_RUNS: Final = 2
"""How many times more runs the cheap first pass of ``minimize_file`` may use."""


def minimize(trace: Trace, judge: Judge, *, max_runs: int = DEFAULT_MAX_RUNS,
             stats: Stats | None = None, stop: Callable[[], bool] | None = None,
             target: str | None = None) -> Trace:
    """The smallest trace the passes reach whose first finding is ``judge(trace)``.

    ``judge`` runs a candidate and gives the signature of its first finding,
    or ``None``.  :class:`NoFinding` if ``judge(trace)`` is ``None`` (or is
    not ``target``, when given).  ``stop()`` true ends it early (partial).
    """
    stats = stats if stats is not None else Stats()
    stats.lines_before = len(trace.steps)
    result = _Minimizer(judge, trace, max_runs, stats, stop, target).run()
    stats.lines_after = len(result.steps)
    return result


def judge_for(sides: Sequence[tuple[str, Factory]], settings: Settings) -> Judge:
    """A judge running traces on ``sides``: the signature of the first finding."""
    def judge(trace: Trace) -> str | None:
        finding = run_trace(trace, sides, settings).finding
        return None if finding is None else finding.signature
    return judge


def minimize_file(path: str | Path, sides: Sequence[tuple[str, Factory]], settings: Settings,
                  *, found_by: str, max_runs: int = DEFAULT_MAX_RUNS,
                  stats: Stats | None = None, today: date | None = None,
                  first: Settings | None = None,
                  stop: Callable[[], bool] | None = None) -> Trace:
    """The repro of the trace file at ``path``: minimized, with headers and results.

    With ``first`` (cheaper settings, such as observing only at the end), a
    first pass minimizes under those, and the final pass starts from its
    small result under ``settings``, so that most judge runs are cheap while
    the repro's signature is still the one ``settings`` give: when the first
    pass's result gives the same signature under ``settings``, it is the
    repro; otherwise it is minimized again under ``settings``.  The first
    pass may use ``FIRST_PASS_RUNS`` times ``max_runs`` runs.

    Headers ``title``, ``signature``, ``found-by``; a ``# minimized: DATE``
    comment; ``=> expected`` on every line the first side completes when it
    runs the minimized trace alone (all of them, unless that side has a
    finding of its own before the end).
    """
    stats = stats if stats is not None else Stats()
    original = load_trace(str(path))
    final = judge_for(sides, settings)
    target = final(original)  # the engine's signature, under the settings it was found with
    if target is None:
        raise NoFinding(f"{path}: the trace has no finding to minimize")
    small: Trace | None = None
    if first is not None:
        cheap = Stats()
        try:
            start = minimize(original, judge_for(sides, first),
                             max_runs=FIRST_PASS_RUNS * max_runs, stats=cheap, stop=stop)
        except NoFinding:
            start = original
        stats.cheap_runs += cheap.runs
        stats.partial |= cheap.partial
        if start is not original and final(start) == target:  # else the cheap pass slipped
            small = start
            stats.runs += 1
            stats.signature = target
            stats.lines_after = len(small.steps)
    if small is None:
        small = minimize(original, final, max_runs=max_runs, stats=stats, stop=stop,
                         target=target)
    stats.lines_before = len(original.steps)
    assert stats.signature is not None
    results = run_trace(small, list(sides)[:1], settings).results
    small = with_expected(small, results[: len(small.steps)])
    day = (today or date.today()).isoformat()
    title = original.header("title") or Path(path).name
    title = title.removeprefix("minimized: ")
    headers = [(k, v) for k, v in small.headers if k in SEMANTIC_HEADERS]
    if not small.header("driver") and (drivers := driver_header()) is not None:
        headers.append(("driver", drivers))
    headers += [("title", f"minimized: {title}"), ("signature", stats.signature),
                ("found-by", found_by)]
    done = f"partial ({stats.runs} runs, stopped by its time limit)" if stats.partial else day
    body = (Comment(f"# minimized: {done}"), *small.body)
    return Trace(tuple(headers), body, str(path))
