"""Promoting campaign findings into the corpus (``mirrorfuzz promote``).

The candidates are the minimized repros ``OUT/findings/*.trace`` (not the raw
examples under ``findings/raw/``).  A chosen one is:

* **checked first** with the corpus rules for ``repros/``
  (:func:`fuzz.corpus.trace_problems`: it parses, has step lines, ``=>
  expected`` on each, a ``kind/detail/op`` signature); a bad one is reported
  as ``path:line: message`` and not copied, and the others still go;
* **deduplicated by identity** (:func:`fuzz.corpus.identity`: size headers,
  signature, bare steps): if any trace of the target directory already has
  it, under whatever name, nothing is written and that file is named;
* otherwise **saved with** :func:`fuzz.corpus.save_repro`: atomically, named
  by signature and hash, never overwriting a different file.

**Repros found under a mutant** (a ``mutant`` header or ``# mutant:`` line,
or a campaign run with ``mutant`` in ``campaign.json``) are refused unless
``--allow-mutant`` is given.  ``corpus/repros`` is replayed by the test suite
on the real, unmutated code and must replay clean there once the bug is
fixed; a mutant's repro replays clean from the start (the bug is planted, not
real), so in the corpus it would pass trivially and pin nothing down about the
real code.  Its place is ``tests/quality/traces/<mutant>.trace`` (the test
that every mutant is detected), by hand.  With ``--allow-mutant`` it is kept
as an ordinary regression trace, its ``mutant`` line kept as it is so a reader
knows where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz.campaign import layout
from fuzz.campaign.report import mutant_of
from fuzz.corpus import Problem, identity, save_repro, trace_problems
from fuzz.errors import BadInput
from fuzz.safeio import load_trace
from fuzz.trace import Trace, TraceError


@dataclass(frozen=True)
class Candidate:
    """One minimized repro of a campaign."""

    path: Path
    trace: Trace | None  # None if it does not parse
    problems: tuple[Problem, ...]
    mutant: str | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def signature(self) -> str:
        return (self.trace.header("signature") if self.trace else None) or "?"


@dataclass(frozen=True)
class Outcome:
    """What promoting one candidate did: ``promoted``, ``present`` (already in
    the corpus), ``invalid``, ``mutant`` (refused) or ``failed`` (not written)."""

    candidate: Candidate
    status: str
    lines: tuple[str, ...]
    dest: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("promoted", "present")


def candidates(out: Path, config: Mapping[str, Any]) -> list[Candidate]:
    """The repros of ``OUT/findings/``, by name, each checked."""
    found: list[Candidate] = []
    directory = layout.path(out, layout.FINDINGS)
    for path in sorted(directory.glob("*.trace")) if directory.is_dir() else []:
        if not path.is_file():
            continue
        problems = tuple(trace_problems(path, "repros"))
        try:
            trace: Trace | None = load_trace(str(path))
        except TraceError:
            trace = None
        found.append(Candidate(path, trace, problems,
                               mutant_of(trace, config) if trace is not None else None))
    return found


def choose(found: Sequence[Candidate], names: Sequence[str]) -> list[Candidate]:
    """The candidates ``names`` pick (a file name, its stem, a signature, or a
    path to the file); :class:`BadInput` naming the first that picks none."""
    chosen: list[Candidate] = []
    for name in names:
        target = Path(name)
        picked = [c for c in found
                  if name in (c.name, c.path.stem, c.signature)
                  or (target.is_file() and target.resolve() == c.path.resolve())]
        if not picked:
            raise BadInput(f"{name}: no such finding (run 'mirrorfuzz promote DIR' to list them)")
        chosen += [c for c in picked if c not in chosen]
    return chosen


def check_target(to: Path) -> None:
    """:class:`BadInput` unless ``to`` is a directory or can be made one."""
    if to.exists() and not to.is_dir():
        raise BadInput(f"{to}: not a directory")
    if not to.exists() and not to.parent.is_dir():
        raise BadInput(f"{to}: no such directory (nor its parent {to.parent})")


def in_corpus(to: Path, trace: Trace) -> Path | None:
    """A trace file of ``to`` with the identity of ``trace``, if there is one."""
    if not to.is_dir():
        return None
    want = identity(trace)
    for path in sorted(to.glob("*.trace")):
        try:
            if identity(load_trace(str(path))) == want:
                return path
        except TraceError:
            continue
    return None


def promote(candidate: Candidate, to: Path, *, allow_mutant: bool) -> Outcome:
    """Check ``candidate`` and save it in ``to`` unless it is bad, a refused
    mutant repro, or there already."""
    if candidate.problems or candidate.trace is None:
        return Outcome(candidate, "invalid", tuple(str(p) for p in candidate.problems)
                       + (f"{candidate.path}: not promoted (fails the corpus checks)",))
    if candidate.mutant and not allow_mutant:
        return Outcome(candidate, "mutant", (
            f"{candidate.path}: found with mutant {candidate.mutant} switched on; it replays "
            "clean without it, so it is not promoted (--allow-mutant keeps it anyway)",))
    present = in_corpus(to, candidate.trace)
    if present is not None:
        return Outcome(candidate, "present", (f"{candidate.name}: already in the corpus as "
                                              f"{present}",), present)
    try:
        dest = save_repro(to, candidate.trace)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return Outcome(candidate, "failed", (f"{candidate.path}: cannot save in {to}: "
                                             f"{reason}",))
    note = f" (mutant {candidate.mutant})" if candidate.mutant else ""
    return Outcome(candidate, "promoted", (f"promoted {candidate.name} -> {dest}{note}",), dest)


def listing(found: Sequence[Candidate], to: Path) -> list[str]:
    """One line per candidate: name, signature, step lines and what stands in its way."""
    lines = []
    for c in found:
        notes = []
        if c.trace is not None:
            notes.append(f"{len(c.trace.steps)} lines")
            present = in_corpus(to, c.trace)
            if present is not None:
                notes.append(f"already in the corpus as {present}")
        if c.mutant:
            notes.append(f"mutant {c.mutant}: needs --allow-mutant")
        if c.problems:
            notes.append(f"invalid: {c.problems[0]}")
        lines.append(f"  {c.name}  {c.signature}  ({'; '.join(notes)})")
    return lines
