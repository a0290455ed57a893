"""The worker pool: start, watch, restart.

Rules this module enforces:

* **A worker never takes the campaign down.**  A worker process that ends
  by itself is classified (``fuzz.campaign.workers.classify_exit``:
  ``finding`` -- an Atheris worker stops at its first finding, exit 77, its
  log having said ``mirrorfuzz finding`` anywhere, not only in its last
  lines --, ``oom``, ``hung`` or ``crashed``), recorded as a ``worker``
  statistics event and restarted with the next derived seed.
* A worker's ``seen`` lines (an example of a known cause it skipped) are
  passed on to :attr:`Pool.seen` as they are read.
* **Watchdog**: a worker whose log has shown no progress line for
  ``hang_s`` seconds is killed and recorded as ``hung`` (a hang is not a
  finding); one above ``rss_limit_mb`` resident MB is killed and recorded
  as ``oom``.
* **Backoff**: a worker that keeps dying within seconds of its start waits
  1, 2, 4 ... (at most 30) seconds before the next start.
* Counts are cumulative per worker: the execs and steps of its finished
  processes plus the latest report of the running one.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fuzz.campaign import layout
from fuzz.campaign.config import CampaignConfig, worker_seed
from fuzz.campaign.procs import child_env, kill, rss_mb, spawn, stop
from fuzz.campaign.workers import (
    atheris_command,
    classify_exit,
    hypothesis_command,
    log_path,
    parse_progress,
    parse_tally,
    pending_dir,
    worker_dir,
)
from fuzz.safeio import named, open_append

FINDING_LINE: Final = re.compile(r"\bmirrorfuzz finding (\S+)")
"""How the Atheris target's finding starts, in its worker's log (fuzz/fuzz_trace.py)."""
QUICK_DEATH: Final = 10.0
MAX_BACKOFF: Final = 30.0
TAIL_LINES: Final = 60


@dataclass
class Worker:
    id: int
    engine: str
    log: Path
    generation: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    last_progress: float = 0.0
    restart_at: float = 0.0
    quick_deaths: int = 0
    restart_detail: str = ""
    offset: int = 0
    partial: str = ""
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    done_execs: int = 0
    done_steps: int = 0
    execs: int = 0  # of the running process
    steps: int = 0
    rss: float | None = None
    state: str = "starting"
    found: str | None = None  # the finding the running process reported, if any

    @property
    def total_execs(self) -> int:
        return self.done_execs + self.execs

    @property
    def total_steps(self) -> int:
        return self.done_steps + self.steps

    @property
    def pending(self) -> Path:
        return self.log.parent / str(self.id) / "findings"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Pool:
    def __init__(self, out: Path, config: CampaignConfig, session: int,
                 event: Callable[..., object]) -> None:
        self.out = out
        self.config = config
        self.session = session
        self.event = event  # event(worker, engine, event, detail): a stats line
        self.workers = [Worker(i, config.engine_of(i), log_path(out, i))
                        for i in range(config.jobs)]
        self.tally: Callable[[str, str], object] = lambda kind, signature: None

    def start_all(self) -> None:
        layout.path(self.out, layout.WORKERS).mkdir(parents=True, exist_ok=True)
        for w in self.workers:
            self._start(w, "started", "")

    def _start(self, w: Worker, event: str, detail: str) -> None:
        seed = worker_seed(self.config.seed, w.id, self.session, w.generation)
        pending_dir(self.out, w.id).mkdir(parents=True, exist_ok=True)
        worker_dir(self.out, w.id).mkdir(parents=True, exist_ok=True)
        extra: dict[str, str | None] = {}
        if w.engine == "atheris":
            argv, extra = atheris_command(
                self.out, w.id, seed, mutant=self.config.mutant, contract=self.config.contract,
                rss_limit_mb=self.config.rss_limit_mb, timeout_s=int(self.config.hang_s))
        else:
            argv = hypothesis_command(self.out, w.id, seed, mutant=self.config.mutant,
                                      contract=self.config.contract,
                                      db=self.config.db,
                                      observe_every=self.config.observe_every,
                                      generation=w.generation)
        try:
            with open_append(w.log) as f:  # closing flushes too: name the file whatever fails
                f.write(f"=== mirrorfuzz: worker {w.id} ({w.engine}) generation "
                        f"{w.generation} seed {seed}\n".encode())
                f.flush()
                w.offset = f.tell()
                w.proc = spawn(argv, env=child_env(extra), stdout=f)
        except OSError as exc:
            raise named(exc, w.log) from None
        w.partial = ""
        w.found = None
        w.tail.clear()
        now = time.monotonic()
        w.started_at = w.last_progress = now
        w.execs = w.steps = 0
        w.state = "running"
        self.event(w.id, w.engine, event, detail or f"pid {w.proc.pid}, seed {seed}")

    def _read(self, w: Worker) -> None:
        try:
            fd = os.open(w.log, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            os.lseek(fd, w.offset, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        except OSError:
            return
        finally:
            os.close(fd)
        if not data:
            return
        w.offset += len(data)
        lines = (w.partial + data.decode("utf-8", errors="replace")).split("\n")
        w.partial = lines.pop()
        for line in lines:
            w.tail.append(line)
            said = FINDING_LINE.search(line) if w.found is None else None
            if said is not None:  # "TraceFinding: mirrorfuzz finding SIGNATURE"
                w.found = said.group(1)
            progress = parse_progress(line)
            if progress is None:
                tallied = parse_tally(line)
                if tallied is not None:
                    self.tally(*tallied)
                continue
            w.last_progress = time.monotonic()
            if progress.execs is not None:
                w.execs = max(w.execs, progress.execs)
            if progress.steps is not None:
                w.steps = max(w.steps, progress.steps)

    def poll(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.proc is None:
                if now >= w.restart_at:
                    self._start(w, "restarted", w.restart_detail)
                continue
            self._read(w)
            code = w.proc.poll()
            if code is not None:
                self._read(w)
                event, detail = classify_exit("\n".join(w.tail), code, found=w.found)
                self._ended(w, event, detail)
                continue
            if now - w.last_progress > self.config.hang_s:
                if w.engine == "hypothesis":  # its traceback, into the log (faulthandler)
                    w.proc.send_signal(signal.SIGUSR1)
                    time.sleep(0.5)
                kill(w.proc)
                self._read(w)
                self._ended(w, "hung", f"no progress for {self.config.hang_s:.0f} s")
                continue
            w.rss = rss_mb(w.proc.pid)
            if w.rss is not None and w.rss > self.config.rss_limit_mb:
                kill(w.proc)
                self._ended(w, "oom", f"{w.rss:.0f} MB resident, over "
                                      f"{self.config.rss_limit_mb} MB")

    def _ended(self, w: Worker, event: str, detail: str) -> None:
        now = time.monotonic()
        w.done_execs += w.execs
        w.done_steps += w.steps
        w.execs = w.steps = 0
        w.proc = None
        w.rss = None
        w.generation += 1
        if event != "restarted":
            self.event(w.id, w.engine, event, detail)
            detail = "after a finding" if event == "finding" else f"after {event}"
        quick = now - w.started_at < QUICK_DEATH and event != "finding"
        w.quick_deaths = w.quick_deaths + 1 if quick else 0
        delay = min(MAX_BACKOFF, 2.0 ** (w.quick_deaths - 1)) if w.quick_deaths else 0.0
        w.restart_at = now + delay
        w.restart_detail = detail + (f" (waited {delay:.0f} s)" if delay else "")
        w.state = event
        if delay == 0:
            self._start(w, "restarted", detail)

    def stop_all(self) -> None:
        for w in self.workers:
            if w.proc is not None:
                stop(w.proc)
                self._read(w)
                w.done_execs += w.execs
                w.done_steps += w.steps
                w.execs = w.steps = 0
                w.proc = None
                w.state = "stopped"

    def totals(self) -> dict[str, tuple[int, int, int]]:
        """engine -> (workers, execs, steps) of this session."""
        found: dict[str, tuple[int, int, int]] = {}
        for w in self.workers:
            n, e, s = found.get(w.engine, (0, 0, 0))
            found[w.engine] = (n + 1, e + w.total_execs, s + w.total_steps)
        return found
