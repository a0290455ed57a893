"""The live display of a campaign.

When stdout is a terminal and ``rich`` is installed (the ``fuzz`` extra), a
``rich.live.Live`` table is redrawn in place; otherwise a plain line is
printed every :data:`PLAIN_EVERY` seconds.  Both show the same
:class:`Snapshot`; the display never touches the campaign's files.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from fuzz.campaign.config import format_duration

PLAIN_EVERY: Final = 10.0


@dataclass(frozen=True)
class EngineLine:
    workers: int
    execs: int
    steps: int
    execs_per_s: float
    steps_per_s: float


@dataclass(frozen=True)
class WorkerLine:
    id: int
    engine: str
    state: str
    execs: int
    rss_mb: float | None


@dataclass(frozen=True)
class Snapshot:
    t: float
    time_left: float
    engines: dict[str, EngineLine]
    coverage: dict[str, float] | None
    corpus: int
    findings: int
    minimizing: int
    workers: list[WorkerLine] = field(default_factory=list)
    latest: list[str] = field(default_factory=list)  # recent messages


def plain_line(s: Snapshot) -> str:
    parts = [f"[{format_duration(s.t)}]"]
    for name, e in sorted(s.engines.items()):
        parts.append(f"{name}: {e.workers}w {e.execs} execs ({e.execs_per_s:.1f}/s) "
                     f"{e.steps} steps ({e.steps_per_s:.0f}/s)")
    cov = ("coverage n/a" if s.coverage is None else
           f"coverage {s.coverage['lines']:.1f}% lines {s.coverage['branches']:.1f}% branches")
    parts += [f"corpus {s.corpus}", f"findings {s.findings}", cov,
              f"left {format_duration(max(0.0, s.time_left))}"]
    return " | ".join(parts)


class Display:
    """``update`` often, ``message`` for events, ``close`` at the end."""

    def __init__(self, out: TextIO | None = None, *, live: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.last_plain = 0.0
        self.live: Any = None
        self.messages: list[str] = []
        want = self.out.isatty() if live is None else live
        if want:
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:
                return
            self.live = Live(console=Console(file=self.out), refresh_per_second=2,
                             transient=False)
            self.live.start()

    def message(self, text: str) -> None:
        self.messages = [*self.messages[-5:], text]
        if self.live is None:
            print(text, file=self.out, flush=True)

    def update(self, s: Snapshot, *, force: bool = False) -> None:
        if self.live is not None:
            self.live.update(self._table(s))
            return
        now = time.monotonic()
        if force or now - self.last_plain >= PLAIN_EVERY:
            self.last_plain = now
            print(plain_line(s), file=self.out, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _table(self, s: Snapshot) -> Any:
        from rich.console import Group
        from rich.table import Table

        head = Table.grid(padding=(0, 2))
        cov = ("n/a" if s.coverage is None else
               f"{s.coverage['lines']:.1f}% lines, {s.coverage['branches']:.1f}% branches")
        head.add_row("time", f"{format_duration(s.t)} (left {format_duration(s.time_left)})")
        head.add_row("findings", f"{s.findings} signatures"
                     + (f", {s.minimizing} minimizing" if s.minimizing else ""))
        head.add_row("corpus", f"{s.corpus} entries")
        head.add_row("coverage of model/", cov)
        engines = Table("engine", "workers", "execs", "execs/s", "steps", "steps/s")
        for name, e in sorted(s.engines.items()):
            engines.add_row(name, str(e.workers), str(e.execs), f"{e.execs_per_s:.1f}",
                            str(e.steps), f"{e.steps_per_s:.0f}")
        workers = Table("worker", "engine", "state", "execs", "RSS MB")
        for w in s.workers:
            workers.add_row(str(w.id), w.engine, w.state, str(w.execs),
                            "-" if w.rss_mb is None else f"{w.rss_mb:.0f}")
        return Group(head, engines, workers, *self.messages[-6:])
