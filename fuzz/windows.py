"""Race windows as coverage: which (op, window, intruding op) a trace reached.

A thread running a multi-step op is **in window k** of that op after its
k-th ``yield`` (k >= 1): between two yield points, where another op can land
-- between an invalidation's callbacks and its apply, between a fault's walk
and its commit.  An op **started** (a plain op or a ``Tn = op`` line) while
another thread is in window k of op A reaches the combination ``(A, k, B)``,
whatever the racers are (device op first or CPU op first).

:func:`reached` reads them off a judged trace (its lines and the results the
executor gave), nothing else: ``step`` results count yields, ``done`` and
errors end a thread, a ``run`` line leaves its thread's window unknown (it
is not counted again until it ends).  :class:`WindowCoverage` accumulates
over a campaign; *possible* is the windows seen so far (each op kind up to
the deepest window any of its threads reached) times the op kinds, so what
has not been tried is visible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from fuzz.trace import StepLine
from model.ops import SCHEMA_BY_CLASS, RunThread, StepThread, op_keyword

Combo = tuple[str, int, str]
MAX_WINDOW: Final = 64
"""Windows deeper than this are counted as this one (a bound on the table)."""


def op_kinds() -> list[str]:
    """Every op keyword (madvise once)."""
    return sorted({schema.keyword for schema in SCHEMA_BY_CLASS.values()})


def reached(steps: Sequence[StepLine], results: Sequence[object]) -> tuple[set[Combo],
                                                                         dict[str, int]]:
    """(the combinations a judged trace reached, the deepest window of each op kind)."""
    live: dict[str, tuple[str, int | None]] = {}  # thread -> (op keyword, window or None)
    combos: set[Combo] = set()
    deepest: dict[str, int] = {}
    for index, (line, result) in enumerate(zip(steps, results, strict=False), start=1):
        text = str(result)
        action = line.action
        if isinstance(action, StepThread | RunThread):
            name = action.thread
            if name not in live:
                continue
            kind, window = live[name]
            if text.startswith("yield") and isinstance(action, StepThread) and window is not None:
                window = min(window + 1, MAX_WINDOW)
                deepest[kind] = max(deepest.get(kind, 0), window)
                live[name] = (kind, window)
            elif text.startswith("blocked") and isinstance(action, RunThread):
                live[name] = (kind, None)
            elif not text.startswith(("yield", "blocked")):
                live.pop(name)
            continue
        kind = op_keyword(action)
        for other, window in live.values():
            if window is not None and window >= 1:
                combos.add((other, window, kind))
        if line.thread is not None and text == "ok":
            live[line.thread] = (kind, 0)
        elif text.startswith("blocked L"):
            live[f"L{index}"] = (kind, None)
    return combos, deepest


@dataclass
class WindowCoverage:
    combos: set[Combo] = field(default_factory=set)
    deepest: dict[str, int] = field(default_factory=dict)

    def add(self, combos: Iterable[Combo], deepest: dict[str, int]) -> None:
        self.combos.update(combos)
        for kind, depth in deepest.items():
            self.deepest[kind] = max(self.deepest.get(kind, 0), depth)

    @property
    def possible(self) -> int:
        return sum(self.deepest.values()) * len(op_kinds())

    def to_json(self) -> str:
        return json.dumps({"reached": sorted(self.combos), "deepest": self.deepest,
                           "possible": self.possible, "op_kinds": len(op_kinds())}) + "\n"

    @classmethod
    def from_json(cls, data: object) -> WindowCoverage:
        """From :meth:`to_json`'s object; whatever does not fit is left out."""
        found = cls()
        if not isinstance(data, dict):
            return found
        for item in data.get("reached") or ():
            if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], int) and isinstance(item[2], str)):
                found.combos.add((item[0], item[1], item[2]))
        deepest = data.get("deepest")
        if isinstance(deepest, dict):
            found.deepest = {k: v for k, v in deepest.items()
                             if isinstance(k, str) and isinstance(v, int) and 0 <= v <= MAX_WINDOW}
        return found

    def table(self) -> list[tuple[str, int, list[str]]]:
        """(op, window, intruding ops reached) for every window seen, in order."""
        rows = []
        for kind in sorted(self.deepest):
            for window in range(1, self.deepest[kind] + 1):
                rows.append((kind, window, sorted(b for a, k, b in self.combos
                                                  if a == kind and k == window)))
        return rows
