"""Which results of a stress race are impossible: value provenance.

In a stress race (``mirrorfuzz confirm``, ``replay --linux`` on a trace with
``Tn =`` lines) the plain lines before the first ``Tn =`` run once and every
later op loops in its own thread, so no exact result can be predicted.  What
can be bounded is where a word comes from.  **The rule**, stated once here:

* **Words.**  Memory holds only what something wrote into it.  A page that
  was never written, a fresh or zapped page, the zero page: 0.  Otherwise
  the word at page v was written to page v by an op of the trace: ``write P
  v x`` gives x, ``write_range P v n x [stride]`` and ``dwrite D v n x
  [stride]`` give x + k*stride (mod 2^64, signed) to page v + k, for any
  process and any run of the op, succeeded or not; a word the once-run
  prefix read at page v counts as written there.  No op that moves data
  between pages takes part (fork and COW keep the address; migration to the
  device and back, swap, THP split and collapse keep it): so a word read at
  page v (``read``, ``read_range``, ``dread``, and the read-back buffer
  ``HMM_DMIRROR_MIGRATE_TO_DEV`` returns on success) that is neither 0 nor
  written to page v is **impossible**.  ``mremap`` does move data between
  pages: a trace with an ``mremap`` anywhere falls back to the weaker rule
  that the word must be 0 or written to *some* page.  A stale word (one
  written to the same page earlier) is possible by this rule: a race that
  only returns old data of the right page is not caught.  ``snapshot``
  returns no words and is not judged.
* **Counts.**  ``migrate_to_dev D s n`` reports the pages test_hmm's
  read-back copied (``bounce.cpages``), which is at most n: a larger count is
  impossible.

Nothing else is judged: an errno is not, since under a race test_hmm's
ioctls and the fault paths can give several (``EBUSY``, ``ENOENT``,
``EFAULT``, ``ENOMEM`` ...) that no sequential run shows, and the spec does
not bound that set soundly.  A racer set that reads no word (only writes,
``madvise``, ``snapshot`` ...) is judged by kernel reports alone.

The guest runner reports what each racer saw (``linux/guest/mfrun.c``, its
header comment): ``# race-seen: R SRC PAGE WORD`` the first time racer R saw
WORD at PAGE (SRC ``value`` or ``readback``; these survive a panic),
``# race-seen: R capped`` when it kept its cap of distinct ones, and after
the race, per racer, its ``# race: LINE: N runs: KIND xC, ...`` summary and
``# race-words: R SRC PAGE:WORD:COUNT ...`` lines closed by ``# race-words:
R end DISTINCT DROPPED``.  :func:`parse` reads them, :func:`judge` applies
the rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from fuzz.trace import StepLine, Trace, format_step
from model.ops import (
    Dread,
    Dwrite,
    MigrateToDev,
    Mremap,
    Read,
    ReadRange,
    RunThread,
    StepThread,
    Write,
    WriteRange,
)

SOURCES: Final = ("value", "readback")
_RACE_RE: Final = re.compile(r"^(.*): (\d+) runs:(.*)$")
_KIND_RE: Final = re.compile(r" (.+?) x(\d+),")
_MOD: Final = 1 << 64


def word(x: int) -> int:
    """x as a signed 64-bit word (the guest computes x + k*stride in uint64_t)."""
    return (x + (1 << 63)) % _MOD - (1 << 63)


# ---------------------------------------------------------------- the trace


def racers(trace: Trace) -> list[StepLine]:
    """The racer lines, in the guest's order: every op line from the first ``Tn =`` on."""
    out: list[StepLine] = []
    racing = False
    for line in trace.steps:
        racing = racing or line.thread is not None
        if racing and not isinstance(line.action, StepThread | RunThread):
            out.append(line)
    return out


def prefix(trace: Trace) -> list[StepLine]:
    """The lines run once, before the first ``Tn =``."""
    out: list[StepLine] = []
    for line in trace.steps:
        if line.thread is not None:
            break
        out.append(line)
    return out


def reads_words(line: StepLine) -> bool:
    """True if the racer line returns words the rule judges."""
    return isinstance(line.action, Read | ReadRange | Dread | MigrateToDev)


@dataclass(frozen=True)
class _Run:
    """Page start + k gets x + k*stride for k < n."""

    start: int
    n: int
    x: int
    stride: int

    def at(self, page: int, w: int) -> bool:
        k = page - self.start
        return 0 <= k < self.n and word(self.x + k * self.stride) == w

    def anywhere(self, w: int) -> bool:
        """Some k < n with x + k*stride == w (mod 2^64): a linear congruence."""
        diff, stride = (w - self.x) % _MOD, self.stride % _MOD
        if stride == 0:
            return diff == 0
        g = stride & -stride  # gcd(stride, 2^64): its lowest set bit
        if diff % g:
            return False
        m = _MOD // g
        k = (diff // g) * pow(stride // g, -1, m) % m if m > 1 else 0
        return k < self.n


@dataclass(frozen=True)
class Allowed:
    """The words each page may hold: 0, or a word some op writes to it."""

    runs: tuple[_Run, ...]
    per_page: bool  # False: the trace has an mremap, any page's words will do

    def allows(self, page: int, w: int) -> bool:
        if w == 0:
            return True
        if self.per_page:
            return any(r.at(page, w) for r in self.runs)
        return any(r.anywhere(w) for r in self.runs)

    def written(self, page: int, limit: int = 4) -> list[int]:
        """Up to ``limit`` nonzero words written to page (for messages)."""
        out: list[int] = []
        for r in self.runs:
            if r.start <= page < r.start + r.n:
                w = word(r.x + (page - r.start) * r.stride)
                if w and w not in out:
                    out.append(w)
            if len(out) >= limit:
                break
        return out


def _result_words(result: str) -> list[int] | None:
    """The words of a read's result text (``values ...``, a number), else None."""
    tokens = result.split()
    if tokens and tokens[0] == "values":
        out = []
        for t in tokens[1:]:
            if t == "faults":
                break
            out.append(int(t))
        return out
    if len(tokens) == 1 and re.fullmatch(r"-?\d+", tokens[0]):
        return [int(tokens[0])]
    return None


def allowed(trace: Trace, prefix_results: Sequence[str] = ()) -> Allowed:
    """The rule's bound for this trace; ``prefix_results``: the kernel's results of the
    once-run lines, in order (their read words count as written where they were read)."""
    runs: list[_Run] = []
    per_page = True
    for line in trace.steps:
        a = line.action
        if isinstance(a, Write):
            runs.append(_Run(a.v, 1, a.x, 0))
        elif isinstance(a, WriteRange):
            runs.append(_Run(a.v, a.n, a.x, a.stride or 0))
        elif isinstance(a, Dwrite):
            runs.append(_Run(a.s, a.n, a.x, a.stride or 0))
        elif isinstance(a, Mremap):
            per_page = False
    for line, result in zip(prefix(trace), prefix_results, strict=False):
        a = line.action
        if isinstance(a, Read | ReadRange | Dread):
            start = a.v if isinstance(a, Read | ReadRange) else a.s
            for k, w in enumerate(_result_words(result) or []):
                runs.append(_Run(start + k, 1, w, 0))
    return Allowed(tuple(runs), per_page)


# --------------------------------------------------------- the guest's report


@dataclass
class Summary:
    """One racer's ``# race:`` line."""

    line: str
    runs: int
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class RaceReport:
    """What the guest said each racer saw."""

    summaries: list[Summary] = field(default_factory=list)
    # (racer, source, page, word) -> how many times, or None (seen; the run ended before
    # the racer's summary, so the count is unknown)
    seen: dict[tuple[int, str, int, int], int | None] = field(default_factory=dict)
    capped: set[int] = field(default_factory=set)  # racers that hit their cap
    complete: set[int] = field(default_factory=set)  # racers whose summary ended


def parse(races: Sequence[str], seen: Sequence[str], words: Sequence[str]) -> RaceReport:
    """The guest's ``# race:``, ``# race-seen:`` and ``# race-words:`` lines, each given
    without its prefix (``fuzz.linux.replay.parse_output`` collects them)."""
    report = RaceReport()
    for text in races:
        m = _RACE_RE.match(text)
        if m:
            kinds = {k: int(c) for k, c in _KIND_RE.findall(m.group(3))}
            report.summaries.append(Summary(m.group(1), int(m.group(2)), kinds))
    for text in seen:
        t = text.split()
        if len(t) == 2 and t[1] == "capped":
            report.capped.add(int(t[0]))
        elif len(t) == 4 and t[1] in SOURCES:
            report.seen.setdefault((int(t[0]), t[1], int(t[2]), int(t[3])), None)
    for text in words:
        t = text.split()
        if len(t) == 4 and t[1] == "end":
            report.complete.add(int(t[0]))
            if int(t[3]):
                report.capped.add(int(t[0]))
        elif len(t) >= 2 and t[1] in SOURCES:
            for triple in t[2:]:
                page, w, count = (int(v) for v in triple.split(":"))
                report.seen[(int(t[0]), t[1], page, w)] = count
    return report


# ----------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class Impossible:
    """Results of one racer line that the rule says no run can give."""

    racer: int
    line: str  # the racer line, in trace syntax
    lineno: int
    what: str  # the result(s)
    why: str
    count: int | None  # how many times, None if unknown


def judge(trace: Trace, report: RaceReport, prefix_results: Sequence[str] = ()
          ) -> list[Impossible]:
    """Every impossible result the report shows, grouped by racer line and kind."""
    lines = racers(trace)
    bound = allowed(trace, prefix_results)
    found: list[Impossible] = []
    for index, line in enumerate(lines):
        text = format_step(StepLine(line.action))
        for source in SOURCES if reads_words(line) else ():
            bad = sorted((page, w, c) for (r, s, page, w), c in report.seen.items()
                         if r == index and s == source and not bound.allows(page, w))
            if not bad:
                continue
            counts = [c for _, _, c in bad]
            total = None if any(c is None for c in counts) else sum(c for c in counts if c)
            shown = ", ".join(
                f"page {p} gave {w}" + (f" x{c}" if c is not None else "")
                + f" (written there: {_words(bound.written(p))})" for p, w, c in bad[:3])
            more = f", and {len(bad) - 3} more" if len(bad) > 3 else ""
            where = "its read-back" if source == "readback" else "its result"
            rule = ("a word is 0 or written to its own page" if bound.per_page
                    else "a word is 0 or written by some op (the trace has an mremap)")
            found.append(Impossible(index, text, line.lineno,
                                    f"{len(bad)} impossible (page, word) in {where}: "
                                    f"{shown}{more}", rule, total))
        if isinstance(line.action, MigrateToDev):
            n = line.action.n
            for kind, count in report.summaries[index].kinds.items() \
                    if index < len(report.summaries) else ():
                if re.fullmatch(r"\d+", kind) and int(kind) > n:
                    found.append(Impossible(index, text, line.lineno, f"count {kind}",
                                            f"migrate_to_dev reports at most n = {n} pages",
                                            count))
    return found


def _words(ws: list[int]) -> str:
    return "0 only" if not ws else "0, " + ", ".join(map(str, ws))


def coverage_note(trace: Trace, report: RaceReport) -> str | None:
    """Why the impossibility criterion may be incomplete for this run, if it may."""
    lines = racers(trace)
    readers = [i for i, line in enumerate(lines) if reads_words(line)]
    if not readers:
        return "no racer reads a word: judged by kernel reports only"
    notes = []
    if report.capped & set(readers):
        notes.append(f"racers {sorted(report.capped & set(readers))} hit the cap of distinct "
                     "words (the rest unjudged)")
    cut = [i for i in readers if i not in report.complete]
    if cut:
        notes.append("the run ended before the summary: words seen until then judged, "
                     "counts unknown")
    return "; ".join(notes) or None
