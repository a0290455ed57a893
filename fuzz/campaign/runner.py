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
``--resume``), then ``stop`` is appended and the report written.  SIGHUP
(a closed terminal) stops it like SIGTERM.

A disk that fills up or turns read-only (any ``OSError`` from the
coordinator's own writes) stops the campaign the same clean way: the
workers are stopped, a ``stop`` line with reason ``disk`` is appended when
the disk still takes it, and :func:`run` gives the reason as one line
(``cannot write OUT/stats.jsonl: No space left on device``).  Everything
already written stays as it is: a resume, once space is back, carries on.

:func:`check_layout` is what ``--resume`` checks before anything is
written: each directory of the layout is a directory (or absent), each file
the coordinator appends to is a regular file (or absent) -- never a FIFO,
a device or a dangling symbolic link.
"""

from __future__ import annotations

import fcntl
import os
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
from fuzz.campaign.findings import PARALLEL, Findings
from fuzz.campaign.pool import Pool
from fuzz.campaign.progress import Display, EngineLine, Snapshot, WorkerLine
from fuzz.campaign.stats import StatsLog, Totals, read_stats, totals
from fuzz.campaign.workers import log_path, pending_dir, worker_dir
from fuzz.errors import BadInput
from fuzz.profiles import CAMPAIGN
from fuzz.safeio import describe, open_append

DIRECTORIES: Final = (layout.FINDINGS, layout.RAW, layout.QUARANTINE, layout.ATHERIS_CORPUS,
                      layout.TRACE_CORPUS, layout.WORKERS, layout.HYPOTHESIS_DB, "corpus",
                      "coverage")

POLL: Final = 0.5
STATS_EVERY: Final = 10.0
RATE_WINDOW: Final = 30.0
FINISH_CAP: Final = 50.0
"""Seconds a time-limited stop waits for pending minimizations (each saves the
smallest trace it has by then: fuzz.campaign.findings)."""


def check_layout(out: Path, config: CampaignConfig) -> None:
    """BadInput (one line, nothing written) unless every directory of ``out``'s
    layout is a directory or absent and every file the coordinator appends to
    or reads back is a regular file or absent."""
    dirs = [layout.path(out, part) for part in DIRECTORIES]
    for i in range(config.jobs):
        dirs += [worker_dir(out, i), pending_dir(out, i)]
    for path in dirs:
        what = describe(path)
        if what not in ("absent", "a directory"):
            raise BadInput(f"{path}: {what}, where the campaign keeps a directory")
    files = [layout.path(out, layout.CONFIG), layout.path(out, layout.STATS),
             layout.path(out, layout.WORKERS) / "coverage.log",
             layout.path(out, "coverage") / "summary.json"]
    files += [log_path(out, i) for i in range(config.jobs)]
    for path in files:
        what = describe(path)
        if what not in ("absent", "a regular file"):
            raise BadInput(f"{path}: {what}, where the campaign keeps a regular file")


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
        from fuzz.safeio import named
        from fuzz.seeds import make_seeds

        try:
            make_seeds(corpus, [REPO / "corpus"])
        except OSError as exc:  # a full disk: name the directory being seeded
            raise named(exc, corpus) from None


def corpus_size(out: Path) -> int:
    count = 0
    for part in (layout.ATHERIS_CORPUS, layout.TRACE_CORPUS):
        directory = layout.path(out, part)
        if directory.is_dir():
            count += sum(1 for p in directory.iterdir() if not p.name.startswith("."))
    return count


STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the campaign as Ctrl-C does."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def disk_reason(exc: OSError, out: Path) -> str:
    """One line saying which write failed and why: the file, or the campaign
    directory when the error names none (a write or flush of an open file)."""
    return f"cannot write {exc.filename or out}: " + (
        exc.strerror or str(exc) or type(exc).__name__)


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
        self.findings = Findings(out, config.mutant, self.record, display.message,
                                 observe={"hypothesis": CAMPAIGN.settings(
                                     observe_every=config.observe_every).reported_every()},
                                 parallel=max(PARALLEL, config.jobs // 2),
                                 tallies=before.tallies, contract=config.contract)
        self.pool.tally = self.findings.tally
        self.coverage = CoverageRunner(out, config.mutant)
        self.history: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self.last_stats = 0.0
        self.problem: str | None = None  # why a disk error stopped the campaign

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
            minimizing=len(self.findings.queue) + len(self.findings.running),
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
            windows=self.windows(),
            rss_mb={str(w.id): None if w.rss_mb is None else round(w.rss_mb, 1)
                    for w in s.workers})

    def windows(self) -> dict[str, int] | None:
        """Race windows reached and possible so far (fuzz.windows), if counted."""
        from fuzz.campaign.coverage_pass import read_windows

        found = read_windows(self.out)
        return None if found is None else {"reached": len(found.combos),
                                           "possible": found.possible}

    # ---------------------------------------------------------------- loop

    def take_findings(self) -> None:
        for w in self.pool.workers:
            for signature in self.findings.take(w.pending, w.engine, w.id, w.alive()):
                self.display.message(f"new finding {signature} (worker {w.id}, {w.engine}); "
                                     "minimizing")

    def run(self, time_s: float, resumed: bool) -> str:
        reason = "time"
        try:
            self.record("resume" if resumed else "start", config=self.config.to_json())
            self.findings.resume(self.before.signatures)
            self.take_findings()  # what workers left before a kill
            self.pool.start_all()
            while time.monotonic() - self.started < time_s:
                self.pool.poll()
                self.take_findings()
                self.findings.poll()
                self.findings.record_seen()
                self.coverage.poll()
                snap = self.snapshot(time_s)
                if time.monotonic() - self.last_stats >= STATS_EVERY:
                    self.last_stats = time.monotonic()
                    self.progress_line(snap)
                self.display.update(snap)
                time.sleep(POLL)
        except KeyboardInterrupt:
            reason = "interrupted"
        except OSError as exc:  # a full or read-only disk: stop cleanly, keep what is there
            reason, self.problem = "disk", disk_reason(exc, self.out)
        return self.shutdown(reason, time_s)

    def shutdown(self, reason: str, time_s: float) -> str:
        try:
            self.pool.stop_all()
            self.coverage.stop()
            if reason != "disk":
                self.take_findings()
            if reason == "time":
                deadline = time.monotonic() + FINISH_CAP
                self.findings.wind_down(FINISH_CAP)
                while self.findings.busy() and time.monotonic() < deadline:
                    self.findings.poll()
                    time.sleep(POLL)
            self.findings.stop()
            self.findings.record_seen(force=True)
        except KeyboardInterrupt:
            reason = "interrupted"
            self.findings.stop()
        except OSError as exc:
            reason, self.problem = "disk", self.problem or disk_reason(exc, self.out)
            self.findings.stop()
        snap = self.snapshot(time_s)
        self.display.update(snap, force=True)
        try:
            self.progress_line(snap)
            self.record("stop", reason=reason, **({"detail": self.problem}
                                                  if self.problem else {}))
        except OSError as exc:  # the disk takes nothing more: the next resume repairs
            reason, self.problem = "disk", self.problem or disk_reason(exc, self.out)
        return reason


def run(out: Path, config: CampaignConfig, time_s: float, *, resumed: bool,
        display: Display) -> tuple[str, int, str | None]:
    """Run (or carry on) the campaign in ``out``: (stop reason, findings so far,
    the one-line problem when a disk error stopped it)."""
    found = read_stats(out) if resumed else None
    before = totals(found.lines) if found is not None else Totals()
    try:
        if found is not None:
            StatsLog(out).repair(found)
        prepare(out, config, new=not resumed)
        seed_atheris(out, config)
        campaign = Campaign(out, config, before, display)
    except OSError as exc:  # nothing started yet: what was written stays
        return "disk", 0, disk_reason(exc, out)
    with _sigterm_interrupts():
        try:
            reason = campaign.run(time_s, resumed)
        finally:
            campaign.pool.stop_all()
            campaign.coverage.stop()
            campaign.findings.stop()
    return reason, campaign.findings.distinct(), campaign.problem


def lock(out: Path) -> IO[bytes]:
    """An exclusive lock on ``stats.jsonl``: one coordinator per campaign directory
    (the kernel drops it when the process dies, even by ``kill -9``)."""
    try:
        f = open_append(layout.path(out, layout.STATS))
    except OSError as exc:
        raise BadInput(f"{layout.path(out, layout.STATS)}: cannot open: "
                       f"{exc.strerror or exc}") from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise BadInput(f"{out}: another mirrorfuzz campaign is running there") from None
    return f


def locked(out: Path) -> bool:
    """Whether a coordinator holds ``out``'s lock now (nothing is created)."""
    path = layout.path(out, layout.STATS)
    if describe(path) != "a regular file":
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def write_report(out: Path) -> tuple[Path, Path] | None:
    """``fuzz.campaign.report.write_report(out)`` when that module exists."""
    try:
        from fuzz.campaign import report
    except ImportError:
        return None
    paths: tuple[Path, Path] = report.write_report(out)
    return paths
