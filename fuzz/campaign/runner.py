"""The campaign coordinator: one loop that polls workers, findings, coverage.

``run(out, config, time_s, resume=...)`` runs a campaign for ``time_s``
seconds of its own time (``t`` in ``stats.jsonl`` counts on from where a
resumed campaign stopped).  Each poll (every :data:`POLL` seconds) it reads
the workers' logs (``fuzz.campaign.pool``), takes the finding files they
left (``fuzz.campaign.findings``), advances the minimizer and the coverage
pass (each a separate child process, so nothing here blocks for long),
appends a ``progress`` line every :data:`STATS_EVERY` seconds and redraws
the display.  It stops at the time limit or on Ctrl-C / SIGTERM: workers
are stopped, their last finding files taken, a time-limited stop lets
pending minimizations finish (an interrupted one leaves them for
``--resume``), then ``stop`` is appended and the report written.
"""

from __future__ import annotations

import fcntl
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

from fuzz.campaign import layout
from fuzz.campaign.config import CampaignConfig, save_config
from fuzz.campaign.coverage_pass import CoverageRunner
from fuzz.campaign.findings import Findings
from fuzz.campaign.pool import Pool
from fuzz.campaign.progress import Display, EngineLine, Snapshot, WorkerLine
from fuzz.campaign.stats import StatsLog, Totals, read_stats, totals
from fuzz.errors import BadInput

POLL: Final = 0.5
STATS_EVERY: Final = 10.0
RATE_WINDOW: Final = 30.0
FINISH_CAP: Final = 600.0
"""Seconds a time-limited stop waits for pending minimizations."""


def prepare(out: Path, config: CampaignConfig, *, new: bool) -> None:
    """Create the campaign directory's layout (and ``campaign.json`` when ``new``)."""
    for part in (layout.FINDINGS, layout.RAW, layout.ATHERIS_CORPUS, layout.TRACE_CORPUS,
                 layout.WORKERS):
        layout.path(out, part).mkdir(parents=True, exist_ok=True)
    if config.db is None:
        layout.path(out, layout.HYPOTHESIS_DB).mkdir(parents=True, exist_ok=True)
    if new:
        save_config(out, config)


def seed_atheris(out: Path, config: CampaignConfig) -> None:
    """Seed an empty Atheris corpus from the repository's ``corpus/`` (when used)."""
    corpus = layout.path(out, layout.ATHERIS_CORPUS)
    if (any(config.engine_of(i) == "atheris" for i in range(config.jobs))
            and not any(corpus.iterdir())):
        from fuzz.campaign.procs import REPO
        from fuzz.seeds import make_seeds

        make_seeds(corpus, [REPO / "corpus"])


def corpus_size(out: Path) -> int:
    count = 0
    for part in (layout.ATHERIS_CORPUS, layout.TRACE_CORPUS):
        directory = layout.path(out, part)
        if directory.is_dir():
            count += sum(1 for p in directory.iterdir() if not p.name.startswith("."))
    return count


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Campaign:
    def __init__(self, out: Path, config: CampaignConfig, before: Totals,
                 display: Display) -> None:
        self.out = out
        self.config = config
        self.before = before
        self.display = display
        self.stats = StatsLog(out)
        self.started = time.monotonic()
        self.pool = Pool(out, config, before.sessions, self._worker_event)
        self.findings = Findings(out, config.mutant, self.record, display.message)
        self.coverage = CoverageRunner(out, config.mutant)
        self.history: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self.last_stats = 0.0

    def t(self) -> float:
        return self.before.t + time.monotonic() - self.started

    def record(self, kind: str, **fields: Any) -> None:
        self.stats.append(kind, self.t(), **fields)

    def _worker_event(self, worker: int, engine: str, event: str, detail: str) -> None:
        self.record("worker", worker=worker, engine=engine, event=event, detail=detail)
        if event not in ("started", "restarted"):
            self.display.message(f"worker {worker} ({engine}) {event}: {detail}")

    # ------------------------------------------------------------- figures

    def engines(self) -> dict[str, EngineLine]:
        now = time.monotonic()
        counts: dict[str, tuple[int, int]] = {}
        workers: dict[str, int] = {}
        for name, (n, e, s) in self.pool.totals().items():
            base = self.before.engines.get(name)
            counts[name] = (e + (base.execs if base else 0), s + (base.steps if base else 0))
            workers[name] = n
        for name, base in self.before.engines.items():
            counts.setdefault(name, (base.execs, base.steps))
            workers.setdefault(name, 0)
        self.history.append((now, counts))
        while len(self.history) > 2 and now - self.history[1][0] >= RATE_WINDOW:
            self.history.pop(0)
        then, old = self.history[0]
        span = max(now - then, 1e-9)
        lines = {}
        for name, (e, s) in counts.items():
            e0, s0 = old.get(name, (e, s))
            rate_e = (e - e0) / span if now > then else 0.0
            rate_s = (s - s0) / span if now > then else 0.0
            lines[name] = EngineLine(workers[name], e, s, rate_e, rate_s)
        return lines

    def snapshot(self, time_s: float) -> Snapshot:
        return Snapshot(
            t=self.t(), time_left=time_s - (time.monotonic() - self.started),
            engines=self.engines(), coverage=self.coverage.latest,
            corpus=corpus_size(self.out), findings=self.findings.distinct(),
            minimizing=len(self.findings.queue) + (self.findings.running is not None),
            workers=[WorkerLine(w.id, w.engine, w.state, w.total_execs, w.rss)
                     for w in self.pool.workers])

    def progress_line(self, s: Snapshot) -> None:
        self.record(
            "progress",
            engines={name: {"workers": e.workers, "execs": e.execs, "steps": e.steps,
                            "execs_per_s": round(e.execs_per_s, 2),
                            "steps_per_s": round(e.steps_per_s, 1)}
                     for name, e in s.engines.items()},
            coverage=s.coverage, corpus=s.corpus, findings=s.findings,
            rss_mb={str(w.id): None if w.rss_mb is None else round(w.rss_mb, 1)
                    for w in s.workers})

    # ---------------------------------------------------------------- loop

    def take_findings(self) -> None:
        for w in self.pool.workers:
            for signature in self.findings.take(w.pending, w.engine, w.id, w.alive()):
                self.display.message(f"new finding {signature} (worker {w.id}, {w.engine}); "
                                     "minimizing")

    def run(self, time_s: float, resumed: bool) -> str:
        self.record("resume" if resumed else "start", config=self.config.to_json())
        self.findings.resume(self.before.signatures)
        self.take_findings()  # what workers left before a kill
        self.pool.start_all()
        reason = "time"
        try:
            while time.monotonic() - self.started < time_s:
                self.pool.poll()
                self.take_findings()
                self.findings.poll()
                self.coverage.poll()
                snap = self.snapshot(time_s)
                if time.monotonic() - self.last_stats >= STATS_EVERY:
                    self.last_stats = time.monotonic()
                    self.progress_line(snap)
                self.display.update(snap)
                time.sleep(POLL)
        except KeyboardInterrupt:
            reason = "interrupted"
        self.shutdown(reason, time_s)
        return reason

    def shutdown(self, reason: str, time_s: float) -> None:
        try:
            self.pool.stop_all()
            self.coverage.stop()
            self.take_findings()
            if reason == "time":
                deadline = time.monotonic() + FINISH_CAP
                while self.findings.busy() and time.monotonic() < deadline:
                    self.findings.poll()
                    time.sleep(POLL)
            self.findings.stop()
        except KeyboardInterrupt:
            reason = "interrupted"
            self.findings.stop()
        snap = self.snapshot(time_s)
        self.progress_line(snap)
        self.display.update(snap, force=True)
        self.record("stop", reason=reason)


def run(out: Path, config: CampaignConfig, time_s: float, *, resumed: bool,
        display: Display) -> tuple[str, int]:
    """Run (or carry on) the campaign in ``out``: (stop reason, findings so far)."""
    found = read_stats(out) if resumed else None
    log = StatsLog(out)
    if found is not None:
        log.repair(found)
    before = totals(found.lines) if found is not None else Totals()
    prepare(out, config, new=not resumed)
    seed_atheris(out, config)
    campaign = Campaign(out, config, before, display)
    with _sigterm_interrupts():
        try:
            reason = campaign.run(time_s, resumed)
        finally:
            campaign.pool.stop_all()
            campaign.coverage.stop()
            campaign.findings.stop()
    return reason, campaign.findings.distinct()


def lock(out: Path) -> IO[bytes]:
    """An exclusive lock on ``stats.jsonl``: one coordinator per campaign directory
    (the kernel drops it when the process dies, even by ``kill -9``)."""
    f = open(layout.path(out, layout.STATS), "ab")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise BadInput(f"{out}: another mirrorfuzz campaign is running there") from None
    return f


def write_report(out: Path) -> tuple[Path, Path] | None:
    """``fuzz.campaign.report.write_report(out)`` when that module exists."""
    try:
        from fuzz.campaign import report
    except ImportError:
        return None
    paths: tuple[Path, Path] = report.write_report(out)
    return paths
