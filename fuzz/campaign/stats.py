"""``stats.jsonl``: one JSON object per line, appended; read back on resume.

Rules this module enforces (the line kinds are in ``fuzz.campaign.layout``):

* **Append only, one line at a time**: each line is written with one
  ``write`` of a complete ``...\\n`` and flushed, so a campaign killed with
  ``kill -9`` leaves at worst one truncated last line.
* **A truncated last line is tolerated** (skipped, and cut off before the
  next append, so that it never ends up in the middle of the file); a line
  that does not parse anywhere else, or a line that is not an object with a
  ``kind``, is corruption: :func:`read_stats` raises ``BadInput`` and
  nothing is changed.  So is a field of a known kind that a resume adds up
  and that is not what the runner writes: ``t`` not a finite number in
  [0, :data:`MAX_T`], ``execs``/``steps`` not whole numbers >= 0 (NaN,
  Infinity, ``"abc"``, a list), nesting deeper than JSON needs here.
  ``stats.jsonl`` is read only as a regular file (fuzz.safeio: a FIFO, a
  device, a dangling symbolic link is bad input), with a size bound.
* :class:`Totals` is what a resumed campaign carries on: campaign time
  ``t``, cumulative execs and steps per engine, the session count.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fuzz import safeio
from fuzz.campaign import layout
from fuzz.campaign.config import now_iso
from fuzz.campaign.workers import TALLIED
from fuzz.errors import BadInput

MAX_T: Final = 1e9
"""The largest campaign time (seconds, ~31 years) a line may give."""
MAX_COUNT: Final = (1 << 63) - 1


@dataclass
class StatsFile:
    """What :func:`read_stats` found: the lines, and where a truncated tail starts."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    good_bytes: int = 0  # bytes up to the end of the last complete line
    truncated: bool = False


def read_stats(out: Path) -> StatsFile:
    """Every line of ``OUT/stats.jsonl``; BadInput on a corrupt line (not the last)."""
    path = layout.path(out, layout.STATS)
    if safeio.describe(path) == "absent":
        return StatsFile()
    data = safeio.read_bytes(path, limit=safeio.MAX_STATS_BYTES)
    found = StatsFile()
    offset = 0
    chunks = data.split(b"\n")
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        if last and not chunk:
            break
        parsed, why = _parse(chunk)
        if parsed is None:
            if last:  # no newline: a line cut short by a kill
                found.truncated = True
                break
            raise BadInput(f"{path}:{index + 1}: corrupt statistics line ({why})")
        problem = _check_line(parsed)
        if problem is not None:
            raise BadInput(f"{path}:{index + 1}: corrupt statistics line ({problem})")
        if last:  # complete JSON but no newline: keep it, a newline is added on append
            found.lines.append(parsed)
            found.truncated = True
            found.good_bytes = offset + len(chunk)
            break
        found.lines.append(parsed)
        offset += len(chunk) + 1
        found.good_bytes = offset
    return found


def _parse(chunk: bytes) -> tuple[dict[str, Any] | None, str]:
    """(the line's object, or None and why not)."""
    try:
        value = safeio.loads_json(chunk)
    except ValueError as exc:
        return None, str(exc)
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        return None, "not a JSON object with a 'kind'"
    return value, ""


def _check_line(line: dict[str, Any]) -> str | None:
    """What is wrong with the fields of ``line`` a resume adds up (None: nothing)."""
    try:
        if "t" in line:
            safeio.field_number(line, "t", low=0, high=MAX_T)
        if line["kind"] == "progress":
            engines = line.get("engines")
            if engines is not None and not isinstance(engines, dict):
                raise ValueError("engines must be an object")
            for name, value in (engines or {}).items():
                if not isinstance(value, dict):
                    raise ValueError(f"engines.{name[:20]} must be an object")
                for key in ("execs", "steps"):
                    if value.get(key) is not None:
                        safeio.field_number(value, key, low=0, high=MAX_COUNT, integer=True)
            coverage = line.get("coverage")
            if coverage is not None:
                if not isinstance(coverage, dict):
                    raise ValueError("coverage must be an object or null")
                for key in ("lines", "branches"):
                    safeio.field_number(coverage, key, low=0, high=100)
        elif line["kind"] == "finding":
            for key in ("signature", "found_as"):
                if line.get(key) is not None:
                    safeio.field_text(line, key)
    except ValueError as exc:
        return safeio.first_line(exc)
    return None


class StatsLog:
    """Appends lines to ``OUT/stats.jsonl``."""

    def __init__(self, out: Path) -> None:
        self.path = layout.path(out, layout.STATS)

    def repair(self, found: StatsFile) -> None:
        """Cut a truncated last line off (or end a complete one with a newline)."""
        if not found.truncated:
            return
        if safeio.describe(self.path) != "a regular file":
            return
        with open(self.path, "r+b") as f:
            f.truncate(found.good_bytes)
            if found.good_bytes:
                f.seek(found.good_bytes - 1)
                if f.read(1) != b"\n":
                    f.seek(0, os.SEEK_END)
                    f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())

    def append(self, kind: str, t: float, **fields: Any) -> dict[str, Any]:
        line = {"kind": kind, "t": round(t, 3), "at": now_iso(), **fields}
        text = json.dumps(line, sort_keys=False, separators=(",", ":")) + "\n"
        try:
            with safeio.open_append(self.path) as f:
                f.write(text.encode("utf-8"))
                f.flush()
        except OSError as exc:
            raise safeio.named(exc, self.path) from None
        return line


@dataclass
class EngineTotals:
    execs: int = 0
    steps: int = 0


@dataclass
class Totals:
    """What the lines so far add up to."""

    t: float = 0.0
    sessions: int = 0  # start and resume lines
    engines: dict[str, EngineTotals] = field(default_factory=dict)
    signatures: set[str] = field(default_factory=set)  # of finding lines
    tallies: dict[str, dict[str, int]] = field(default_factory=dict)  # the last seen
    # and violation lines' counts (fuzz.campaign.workers.TALLIED)
    coverage: dict[str, float] | None = None

    @property
    def seen(self) -> dict[str, int]:
        return self.tallies.get("seen", {})


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def totals(lines: list[dict[str, Any]]) -> Totals:
    found = Totals()
    for line in lines:
        t = line.get("t")
        if isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= MAX_T:
            found.t = max(found.t, float(t))
        kind = line["kind"]
        if kind in ("start", "resume"):
            found.sessions += 1
        elif kind == "progress":
            engines = line.get("engines")
            if isinstance(engines, dict):
                for name, value in engines.items():
                    if isinstance(value, dict):
                        found.engines[name] = EngineTotals(_count(value.get("execs")),
                                                           _count(value.get("steps")))
            coverage = line.get("coverage")
            if isinstance(coverage, dict):
                found.coverage = coverage
        elif kind == "finding":
            for key in ("signature", "found_as"):
                if isinstance(line.get(key), str):
                    found.signatures.add(line[key])
        elif kind in TALLIED and isinstance(line.get("counts"), dict):
            found.tallies[kind] = {k: _count(v) for k, v in line["counts"].items()
                                   if isinstance(k, str)}
    return found
