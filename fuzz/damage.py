"""Repro annotations: where the two sides' states first differ, and the harm it led to.

A repro keeps the signature the engine found (``fuzz.minimize``), which is
often a consequence -- a stale commit, a wrong result, a use after free --
some lines after the sides' states first differ.  :func:`annotate` runs the
repro twice and says both, as comments a user reads before the steps:

* ``# judged-with: ...``: the settings the signature holds under (the
  replay command that gives it);
* ``# consequence: line N (op): SIGNATURE: message``: the finding under
  those settings;
* ``# first difference: line M (op), step S: ...`` followed by the
  differing fields side by side: the first finding when observations are
  compared after every step and the implementations' invariant checks are
  off (:func:`first_difference`), when that comes before the consequence;
  otherwise ``# first difference: at the consequence``.  The campaign names
  a finding's cause by it (fuzz.campaign.findings).

And one marker comment after each of those step lines (``# ^ ...``), so the
lines are found in the trace itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from fuzz import diff
from fuzz.executor import Finding, Settings, run_trace
from fuzz.trace import BodyLine, Comment, StepLine, Trace
from model.interface import Factory

MAX_MESSAGE: Final = 160


def _where(finding: Finding, trace: Trace) -> str:
    if finding.line > len(trace.steps):
        return f"the drain ({finding.op})"
    return f"line {finding.line} ({finding.op})"


def _message(finding: Finding) -> str:
    text = " ".join(finding.message.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def first_difference(trace: Trace, sides: Sequence[tuple[str, Factory]],
                     settings: Settings) -> Finding | None:
    """Where the two sides' states first differ: the first finding with
    observations compared after every step and the implementations' own
    invariant checks off (a check names a consequence -- a stale commit, a
    freed page still mapped -- of a difference that may have come earlier or
    at the same step); with the checks on if the states never differ."""
    every = replace(settings, observe_every=1)
    found = run_trace(trace, sides, replace(every, checks=False)).finding
    return found if found is not None else run_trace(trace, sides, every).finding


def notes(trace: Trace, sides: Sequence[tuple[str, Factory]],
                settings: Settings) -> tuple[list[str], dict[int, str]]:
    """(comment lines for the top, marker comments by step line index)."""
    consequence = run_trace(trace, sides, settings).finding
    if consequence is None:
        return [], {}
    k = settings.observe_every
    judged = ("observations compared every step" if k == 1 else
              "observations compared only at the end" if k <= 0 else
              f"observations compared every {k} steps")
    top = [f"# judged-with: {judged} (mirrorfuzz replay --observe-every {max(k, 0)})",
           f"# consequence: {_where(consequence, trace)}: {consequence.signature}: "
           f"{_message(consequence)}"]
    names = [name for name, _ in sides]
    top += [f"#   {row}" for row in diff.side_by_side(consequence.differences, names)]
    marks = {consequence.line: f"# ^ consequence: {consequence.signature}"}
    first = first_difference(trace, sides, settings)
    if first is None or first.signature == consequence.signature:
        top.append("# first difference: at the consequence")
        return top, marks
    here, there = (first.line, first.step), (consequence.line, consequence.step)
    when = "" if here < there else "at the consequence, " if here == there \
        else "after the consequence (its check fired first), "
    top.append(f"# first difference: {when}{_where(first, trace)}, step {first.step}: "
               f"{first.signature}" + ("" if first.differences else f": {_message(first)}"))
    top += [f"#   {row}" for row in diff.side_by_side(first.differences, names)]
    marks.setdefault(first.line, "# ^ the two sides' states first differ here")
    return top, marks


def annotate(trace: Trace, sides: Sequence[tuple[str, Factory]], settings: Settings) -> Trace:
    """``trace`` with the annotations above (unchanged if it has no finding)."""
    top, marks = notes(trace, sides, settings)
    if not top:
        return trace
    body: list[BodyLine] = []
    index = 0
    placed = False
    for line in trace.body:
        if not placed and isinstance(line, StepLine):
            body += [Comment(text) for text in top]
            placed = True
        body.append(line)
        if isinstance(line, StepLine):
            index += 1
            if index in marks:
                body.append(Comment(marks[index]))
    if not placed:
        body += [Comment(text) for text in top]
    return Trace(trace.headers, tuple(body), trace.path)
