"""``stats.jsonl``: one JSON object per line, appended; read back on resume.

Rules this module enforces (the line kinds are in ``fuzz.campaign.layout``):

* **Append only, one line at a time**: each line is written with one
  ``write`` of a complete ``...\\n`` and flushed, so a campaign killed with
  ``kill -9`` leaves at worst one truncated last line.
* **A truncated last line is tolerated** (skipped, and cut off before the
  next append, so that it never ends up in the middle of the file); a line
  that does not parse anywhere else, or a line that is not an object with a
  ``kind``, is corruption: :func:`read_stats` raises ``BadInput`` and
  nothing is changed.
* :class:`Totals` is what a resumed campaign carries on: campaign time
  ``t``, cumulative execs and steps per engine, the session count.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzz.campaign import layout
from fuzz.campaign.config import now_iso
from fuzz.errors import BadInput


@dataclass
class StatsFile:
    """What :func:`read_stats` found: the lines, and where a truncated tail starts."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    good_bytes: int = 0  # bytes up to the end of the last complete line
    truncated: bool = False


def read_stats(out: Path) -> StatsFile:
    """Every line of ``OUT/stats.jsonl``; BadInput on a corrupt line (not the last)."""
    path = layout.path(out, layout.STATS)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return StatsFile()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    found = StatsFile()
    offset = 0
    chunks = data.split(b"\n")
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        if last and not chunk:
            break
        parsed = _parse(chunk)
        if parsed is None:
            if last:  # no newline: a line cut short by a kill
                found.truncated = True
                break
            raise BadInput(f"{path}:{index + 1}: corrupt statistics line "
                           "(not a JSON object with a 'kind')")
        if last:  # complete JSON but no newline: keep it, a newline is added on append
            found.lines.append(parsed)
            found.truncated = True
            found.good_bytes = offset + len(chunk)
            break
        found.lines.append(parsed)
        offset += len(chunk) + 1
        found.good_bytes = offset
    return found


def _parse(chunk: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(chunk.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        return None
    return value


class StatsLog:
    """Appends lines to ``OUT/stats.jsonl``."""

    def __init__(self, out: Path) -> None:
        self.path = layout.path(out, layout.STATS)

    def repair(self, found: StatsFile) -> None:
        """Cut a truncated last line off (or end a complete one with a newline)."""
        if not found.truncated:
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
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
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
    coverage: dict[str, float] | None = None


def totals(lines: list[dict[str, Any]]) -> Totals:
    found = Totals()
    for line in lines:
        t = line.get("t")
        if isinstance(t, int | float):
            found.t = max(found.t, float(t))
        kind = line["kind"]
        if kind in ("start", "resume"):
            found.sessions += 1
        elif kind == "progress":
            engines = line.get("engines")
            if isinstance(engines, dict):
                for name, value in engines.items():
                    if isinstance(value, dict):
                        found.engines[name] = EngineTotals(int(value.get("execs") or 0),
                                                           int(value.get("steps") or 0))
            coverage = line.get("coverage")
            if isinstance(coverage, dict):
                found.coverage = coverage
        elif kind == "finding":
            for key in ("signature", "found_as"):
                if isinstance(line.get(key), str):
                    found.signatures.add(line[key])
    return found
