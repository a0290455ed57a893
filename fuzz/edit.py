"""Editing the step lines of a trace while keeping it consistent.

The rule this module enforces: **deleting lines is a syntactic
renumbering** (:func:`rebuild`).  Handles are reserved by the line that
creates them (SPEC §2), so when such a line goes, later references to higher
handles of its kind shift down; every line that *uses the deleted handle
itself* is deleted too, transitively (a deleted ``fork`` takes the child's
``open``, which takes that device's ``reg`` ...).  A reference to a number
no line reserves (an ``EINVAL`` case) stays unreserved: it shifts down by the
number of reservations lost.  ``Li`` names the plain op of step line i, so
``step Li``/``run Li`` are renamed to the line's new index, and deleted with
line i.  ``step Tn`` and ``run Tn`` are deleted with the ``Tn = op`` line
that governs them (the last one before them); ``Tn`` names never change.

The minimizer (``fuzz/minimize.py``) and the structure-aware mutators build
on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from fuzz.trace import StepLine, renumber
from model.ops import FIRST_HANDLE, SCHEMA_BY_CLASS, Op, RunThread, StepThread


@dataclass(frozen=True)
class Edit:
    """A line of a rebuilt trace and the index (from 1) of the base line it comes from."""

    origin: int
    line: StepLine


def op_of(line: StepLine) -> Op | None:
    """The op of a plain op or ``Tn = op`` line; None for ``step``/``run``."""
    action = line.action
    return None if isinstance(action, StepThread | RunThread) else action


def thread_ref(line: StepLine) -> str | None:
    """The thread a ``step``/``run`` line names; None for an op line."""
    action = line.action
    return action.thread if isinstance(action, StepThread | RunThread) else None


def with_changes(op: Op, changes: dict[str, object]) -> Op:
    """``op`` with some fields changed."""
    new: Op = replace(op, **changes)  # type: ignore[arg-type]
    return new


def handle_fields(op: Op) -> list[tuple[str, str]]:
    """(field, letter) of each handle argument ``op`` uses."""
    return [(a.field, a.kind) for a in SCHEMA_BY_CLASS[type(op)].args
            if isinstance(a.kind, str) and a.kind in FIRST_HANDLE]


def reserved_by(op: Op) -> tuple[str, str] | None:
    """(letter, field) of the handle ``op`` reserves, if any."""
    schema = SCHEMA_BY_CLASS[type(op)]
    if schema.reserves is None or schema.reserved_field is None:
        return None
    return schema.reserves, schema.reserved_field


def thread_number(name: str) -> int:
    return int(name[1:])


class _Base:
    """What the lines of a base trace reserve and refer to."""

    def __init__(self, steps: Sequence[StepLine]) -> None:
        self.steps = renumber(steps)
        self.reserver: dict[tuple[str, int], int] = {}
        self.counts = dict.fromkeys(FIRST_HANDLE, 0)
        for i, line in enumerate(self.steps, start=1):
            op = op_of(line)
            res = None if op is None else reserved_by(op)
            if res is not None:
                letter, fld = res
                self.reserver[(letter, getattr(op, fld))] = i
                self.counts[letter] += 1

    def governing(self, origin: int, name: str) -> int | None:
        """The base index of the ``name = op`` line governing a thread reference at ``origin``."""
        if name.startswith("L"):
            k = thread_number(name)
            return k if 1 <= k <= len(self.steps) else None
        for i in range(min(origin, len(self.steps) + 1) - 1, 0, -1):
            if self.steps[i - 1].thread == name:
                return i
        return None

    def needs(self, edit: Edit) -> set[int]:
        """Base indices of the lines ``edit`` cannot do without."""
        action = edit.line.action
        if isinstance(action, StepThread | RunThread):
            g = self.governing(edit.origin, action.thread)
            return set() if g is None else {g}
        found = set()
        for fld, letter in handle_fields(action):
            i = self.reserver.get((letter, getattr(action, fld)))
            if i is not None:
                found.add(i)
        return found


def rebuild(base: Sequence[StepLine], edits: Sequence[Edit]) -> tuple[StepLine, ...]:
    """The step lines ``edits`` (in base numbering) made consistent on their own.

    Lines that need a base line no longer present are dropped, transitively;
    handle arguments, reserved fields and ``Li`` names are renumbered (see the
    module docstring).  Origins must be distinct base indices.
    """
    b = _Base(base)
    origins = [e.origin for e in edits]
    if len(set(origins)) != len(origins) or not all(1 <= o <= len(b.steps) for o in origins):
        raise ValueError("edit origins must be distinct base line indices")
    alive = set(origins)
    keep = [True] * len(edits)
    changed = True
    while changed:
        changed = False
        for k, edit in enumerate(edits):
            if keep[k] and not b.needs(edit) <= alive:
                keep[k] = False
                alive.discard(edit.origin)
                changed = True
    kept = [e for e, k in zip(edits, keep, strict=True) if k]
    fresh = renumber([e.line for e in kept])
    handle_map: dict[tuple[str, int], int] = {}
    new_counts = dict.fromkeys(FIRST_HANDLE, 0)
    for e, new in zip(kept, fresh, strict=True):
        op = op_of(e.line)
        res = None if op is None else reserved_by(op)
        if res is not None:
            letter, fld = res
            handle_map[(letter, getattr(op, fld))] = getattr(new.action, fld)
            new_counts[letter] += 1
    position = {e.origin: i for i, e in enumerate(kept, start=1)}

    def handle(letter: str, num: int) -> int:
        if (letter, num) in handle_map:
            return handle_map[(letter, num)]
        first = FIRST_HANDLE[letter]
        if num < first:
            return num  # P0
        if num >= first + b.counts[letter]:  # unreserved: stays unreserved
            return num - b.counts[letter] + new_counts[letter]
        raise AssertionError(f"{letter}{num} survived without its creating line")

    def thread(name: str) -> str:
        if name.startswith("T"):
            return name
        k = thread_number(name)
        if 1 <= k <= len(b.steps):
            return f"L{position[k]}"
        return name if k == 0 else f"L{k - len(b.steps) + len(kept)}"

    out: list[StepLine] = []
    for line in fresh:
        action = line.action
        if isinstance(action, StepThread):
            action = StepThread(thread(action.thread))
        elif isinstance(action, RunThread):
            action = RunThread(thread(action.thread))
        else:
            action = with_changes(action, {fld: handle(letter, getattr(action, fld))
                                    for fld, letter in handle_fields(action)})
        out.append(replace(line, action=action, lineno=0))
    return renumber(out)


def delete_steps(steps: Sequence[StepLine], indices: set[int]) -> tuple[StepLine, ...]:
    """``steps`` without the lines at ``indices`` (from 1) and what depends on them."""
    return rebuild(steps, [Edit(i, line) for i, line in enumerate(steps, start=1)
                           if i not in indices])
