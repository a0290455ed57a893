"""Coverage of ``model/`` (lines and branches) by what a campaign has kept.

A coverage pass is a niced child process (``python -m
fuzz.campaign.coverage_pass OUT``) that replays, under coverage.py, the entries
of the campaign's corpora it has not replayed yet: ``findings/*.trace``,
``corpus/traces/*.trace`` and the byte inputs of ``corpus/atheris/``
(decoded by ``fuzz.codec``, run as the Atheris target runs them, with its
work cap), each on both implementations with the campaign's mutant.  It adds
to the coverage data kept in ``OUT/coverage/`` and writes
``OUT/coverage/summary.json`` (``{"lines": pct, "branches": pct,
"entries": n}``) atomically at the end, so passes are incremental and a pass
stopped early loses only its own work.  One pass replays for at most
``--budget`` seconds; the coordinator starts the next one later.

With no ``coverage`` package installed, :func:`available` is false and the
campaign reports coverage as null.

The same pass counts race windows reached (fuzz.windows): each replayed
entry's (op, window, intruding op) combinations are added to
``OUT/coverage/windows.json``, and the summary gains ``windows_reached`` and
``windows_possible``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fuzz import safeio
from fuzz.campaign import layout
from fuzz.campaign.procs import REPO, child_env, kill, spawn
from fuzz.corpus import write_atomic
from fuzz.errors import BadInput

if TYPE_CHECKING:
    from fuzz.windows import WindowCoverage

COVERAGE_DIR: Final = "coverage"
SUMMARY: Final = "summary.json"
DONE: Final = "replayed.txt"
WINDOWS: Final = "windows.json"
BUDGET: Final = 60.0
EVERY: Final = 30.0
"""Seconds between the end of one pass and the start of the next."""
FIRST: Final = 8.0
"""Seconds from the start of a run to its first pass (the corpora fill first)."""


def available() -> bool:
    return importlib.util.find_spec("coverage") is not None


def entries(out: Path) -> list[Path]:
    """Everything a pass may replay, in a stable order."""
    found: list[Path] = []
    for part, pattern in ((layout.FINDINGS, "*.trace"), (layout.TRACE_CORPUS, "*.trace"),
                          (layout.ATHERIS_CORPUS, "*")):
        directory = layout.path(out, part)
        if directory.is_dir():
            found += sorted(p for p in directory.glob(pattern)
                            if p.is_file() and not p.name.startswith("."))
    return found


def read_summary(out: Path) -> dict[str, float] | None:
    path = layout.path(out, COVERAGE_DIR) / SUMMARY
    try:
        data = safeio.loads_json(safeio.read_bytes(path, limit=safeio.MAX_JSON_BYTES))
        if not isinstance(data, dict):
            return None
        return {key: float(safeio.field_number(data, key, low=0, high=100))
                for key in ("lines", "branches")}
    except (BadInput, ValueError):
        return None


def read_windows(out: Path) -> WindowCoverage | None:
    """The race windows reached so far (None: none counted yet, or unreadable)."""
    from fuzz.windows import WindowCoverage

    path = layout.path(out, COVERAGE_DIR) / WINDOWS
    try:
        return WindowCoverage.from_json(
            safeio.loads_json(safeio.read_bytes(path, limit=safeio.MAX_STATS_BYTES)))
    except (BadInput, ValueError):
        return None


def run_pass(out: Path, mutant: str | None, budget: float) -> dict[str, Any]:
    import coverage

    state = layout.path(out, COVERAGE_DIR)
    state.mkdir(parents=True, exist_ok=True)
    done_path = state / DONE
    try:
        done = set(safeio.read_text(done_path, limit=safeio.MAX_STATS_BYTES).split("\n"))
    except BadInput:
        done = set()
    cov = coverage.Coverage(data_file=str(state / ".coverage"), branch=True,
                            source=[str(REPO / "model")])
    try:
        cov.load()
    except coverage.CoverageException:
        pass  # a data file cut short by a kill: start again
    todo = [p for p in entries(out) if _key(out, p) not in done]
    deadline = time.monotonic() + budget
    from fuzz.windows import WindowCoverage, reached

    windows = read_windows(out) or WindowCoverage()
    cov.start()
    try:
        from fuzz import fuzz_trace
        from fuzz.codec import decode
        from fuzz.executor import run_trace
        from fuzz.trace import TraceError

        fuzz_trace.configure(fuzz_trace.TargetConfig(mutant=mutant, findings=None))
        for path in todo:
            if time.monotonic() > deadline:
                break
            try:
                if path.suffix == ".trace":
                    trace = safeio.load_trace(path)
                else:  # decoded and run as the Atheris target runs it
                    trace = decode(safeio.read_bytes(path, limit=1 << 20))
            except (TraceError, OSError, BadInput):
                continue
            verdict = run_trace(trace, fuzz_trace._implementations(),
                                fuzz_trace.current().settings())
            windows.add(*reached(trace.steps, verdict.results))
            done.add(_key(out, path))
    finally:
        cov.stop()
    cov.save()
    write_atomic(state / WINDOWS, windows.to_json())
    report = state / "coverage.json"
    cov.json_report(outfile=str(report))
    totals = json.loads(report.read_text("utf-8"))["totals"]
    summary = {"lines": round(float(totals["percent_statements_covered"]), 2),
               "branches": round(float(totals.get("percent_branches_covered", 0.0)), 2),
               "entries": len(done), "windows_reached": len(windows.combos),
               "windows_possible": windows.possible}
    write_atomic(done_path, "".join(f"{k}\n" for k in sorted(done)))
    write_atomic(state / SUMMARY, json.dumps(summary) + "\n")
    return summary


def _key(out: Path, path: Path) -> str:
    return str(path.relative_to(out))


class CoverageRunner:
    """The coordinator's side: one pass at a time, every :data:`EVERY` seconds."""

    def __init__(self, out: Path, mutant: str | None, budget: float = BUDGET) -> None:
        self.out = out
        self.mutant = mutant
        self.budget = budget
        self.proc: subprocess.Popen[bytes] | None = None
        self.next_at = time.monotonic() + FIRST
        self.enabled = available()
        self.latest = read_summary(out) if self.enabled else None

    def poll(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.proc is not None:
            if self.proc.poll() is None:
                return
            self.proc = None
            self.latest = read_summary(self.out) or self.latest
            self.next_at = now + EVERY
        if now >= self.next_at:
            argv = [sys.executable, "-m", "fuzz.campaign.coverage_pass", str(self.out),
                    "--budget", str(self.budget)]
            if self.mutant:
                argv += ["--mutant", self.mutant]
            log = layout.path(self.out, layout.WORKERS) / "coverage.log"
            with safeio.open_append(log) as f:
                self.proc = spawn(argv, env=child_env(), stdout=f, niceness=19)

    def stop(self) -> None:
        if self.proc is not None:
            kill(self.proc)
            self.proc = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.campaign.coverage_pass")
    parser.add_argument("out")
    parser.add_argument("--mutant", default=None)
    parser.add_argument("--budget", type=float, default=BUDGET)
    args = parser.parse_args(argv)
    from fuzz.plugins import load_for

    load_for(None)  # the coordinator's --driver files ($MIRRORFUZZ_DRIVERS)
    summary = run_pass(Path(args.out), args.mutant, args.budget)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
