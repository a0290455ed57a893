"""A campaign's findings: dedup by cause, the raw example first, then a
minimized repro, then the ``finding`` statistics line.

Rules this module enforces, in this order for each new signature:

1. **Dedup by cause**: a finding trace a worker left in
   ``OUT/workers/ID/findings/`` whose ``# signature:`` (the cause,
   ``kind/detail/object``: fuzz.executor) is already in ``OUT/findings/raw/``
   is dropped and counted on that cause (:attr:`Findings.seen`, with the
   examples the workers report having skipped: a ``seen`` statistics line
   of the totals every few seconds when they changed; the report shows
   them).  It is not minimized again.
2. **The raw example is written atomically before anything else**, into
   ``OUT/findings/raw/`` with ``found-by`` (``campaign ENGINE worker ID``)
   and the comments ``# found-at: ISO`` and ``# mutant: NAME``; only then is
   the worker's file removed.  A kill at any moment loses nothing.
3. **Minimizing runs in separate, niced processes** (``python -m
   fuzz.campaign.findings RAW ...``: ``fuzz.minimize`` with the mutant on, a
   run cap and **the judge settings the engine found it with** -- its
   observation period -- so that the repro keeps the engine's signature),
   up to :attr:`Findings.parallel` at a time, each with a time limit
   (:data:`MINIMIZE_LIMIT`) after which it saves the smallest trace so far
   marked ``# minimized: partial``; one that does not stop
   :data:`GRACE` seconds later is killed and the raw example saved as the
   repro (``# minimized: no``).  The repro is annotated (fuzz.damage) with
   the earliest point where the two sides' states differ and the
   consequence; it is saved by ``fuzz.corpus.save_repro`` into
   ``OUT/findings/``.  The coordinator keeps polling meanwhile.
4. **Then** the ``finding`` line is appended to ``stats.jsonl`` (with the
   minimization's ``seconds`` and whether it was ``partial``).

On ``--resume``, a raw example without a repro is minimized again, and a
repro without its ``finding`` line gets the line.  A raw example that cannot
be read or parsed (corrupt, not a regular file, too large) is **quarantined**:
moved to ``OUT/findings/quarantine/`` (a ``quarantine`` statistics line says
where and why, the report names it) and the campaign goes on without it.  So
is a worker's finding file that cannot be read once the worker is gone, and
a raw example that neither minimizes nor saves.  Every file is read through
fuzz.safeio: a FIFO or a device never blocks the coordinator.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from fuzz import contracts, safeio
from fuzz.campaign import layout
from fuzz.campaign.procs import child_env, kill, spawn
from fuzz.campaign.workers import TALLIED
from fuzz.corpus import repro_name, save_repro
from fuzz.errors import BadInput
from fuzz.plugins import driver_header
from fuzz.safeio import load_trace, write_atomic
from fuzz.trace import Comment, Trace, TraceError, format_trace

MAX_RUNS: Final = 2000
"""Trace runs one minimization may take."""
MINIMIZE_LIMIT: Final = 40.0
"""Seconds after which a minimization saves the smallest trace so far (partial)."""
GRACE: Final = 10.0
"""Seconds past its limit after which a minimization is killed and the raw example saved."""
PARALLEL: Final = 2
"""Minimizations at a time, at least (more with more workers: half of them)."""
SEEN_EVERY: Final = 10.0
"""Seconds between ``seen`` statistics lines (only when the counts changed)."""
SETTLE: Final = 1.0
"""Seconds a running worker's finding file must be left alone before it is taken."""
_FOUND_BY = re.compile(r"campaign (\w+) worker (\d+)")
_SIGNATURE_LINE = re.compile(r"# signature: (\S+)\s*$")


def signature_of(path: Path) -> str | None:
    """The ``# signature:`` header of a trace file, read from its first lines
    (None if it has none or is not a regular file)."""
    head = safeio.read_head(path, 4096)
    if head is None:
        return None
    for line in head.decode("utf-8", errors="replace").split("\n")[:12]:
        match = _SIGNATURE_LINE.match(line)
        if match:
            return match.group(1)
    return None


def cause_of(path: Path) -> str | None:
    """A repro's cause (its ``# cause:`` comment), else its signature."""
    return _notes(path).get("cause") or signature_of(path)


def known_signatures(out: Path) -> set[str]:
    """The signatures of the raw examples of ``OUT``."""
    raw = layout.path(out, layout.RAW)
    found = (signature_of(p) for p in sorted(raw.glob("*.trace"))) if raw.is_dir() else ()
    return {s for s in found if s}


def _note(trace: Trace, key: str, value: str) -> Trace:
    """``# key: value`` as a comment right after the headers."""
    return Trace(trace.headers, (Comment(f"# {key}: {value}"), *trace.body), trace.path)


def _notes(path: Path) -> dict[str, str]:
    notes: dict[str, str] = {}
    head = safeio.read_head(path, 8192)
    for line in (head or b"").decode("utf-8", errors="replace").split("\n")[:20]:
        match = re.match(r"# (found-at|mutant|found-by|cause): (.*)$", line)
        if match:
            notes.setdefault(match.group(1), match.group(2).strip())
    return notes


@dataclass
class Job:
    raw: Path
    signature: str
    engine: str
    worker: int


@dataclass
class Running:
    job: Job
    proc: subprocess.Popen[bytes]
    started: float
    result: Path
    limit: float
    asked: bool = False  # told (SIGTERM) to save what it has


class Findings:
    """The coordinator's side: takes workers' finding files, minimizes, records."""

    def __init__(self, out: Path, mutant: str | None,
                 record: Callable[..., object], log: Callable[[str], None], *,
                 observe: dict[str, int] | None = None, parallel: int = PARALLEL,
                 tallies: dict[str, dict[str, int]] | None = None,
                 contract: str = contracts.DEFAULT) -> None:
        self.out = out
        self.mutant = mutant
        self.contract = contract  # minimizations judge under it too
        self.record = record  # record(kind, **fields): a stats line
        self.log = log
        self.raw_dir = layout.path(out, layout.RAW)
        self.dir = layout.path(out, layout.FINDINGS)
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self.signatures = known_signatures(out)
        self.queue: list[Job] = []
        self.running: list[Running] = []
        self.observe = observe or {}  # engine -> the observation period it judges with
        self.parallel = max(1, parallel)
        self.limit = MINIMIZE_LIMIT
        self.finish_by: float | None = None  # when a coming stop stops waiting (monotonic)
        # per tallied event (fuzz.campaign.workers.TALLIED): signature -> examples;
        # "seen": later examples of a known cause, "violation": contract violations
        self.tallies = {kind: dict((tallies or {}).get(kind, {})) for kind in TALLIED}
        self.recorded = {kind: dict(counts) for kind, counts in self.tallies.items()}
        self.recorded_at = 0.0
        self.causes: dict[str, Path] = {}  # cause -> its repro
        for repro in sorted(self.dir.glob("*.trace")):
            cause = cause_of(repro)
            if cause:
                self.causes.setdefault(cause, repro)

    # ----------------------------------------------------------- counting

    @property
    def seen(self) -> dict[str, int]:
        """Later examples of each known cause."""
        return self.tallies["seen"]

    def count(self, signature: str, n: int = 1, kind: str = "seen") -> None:
        """``n`` more examples of ``kind`` (a known cause, by default) as ``signature``."""
        counts = self.tallies[kind]
        counts[signature] = counts.get(signature, 0) + n

    def tally(self, kind: str, signature: str) -> None:
        """A worker's tallied event (``fuzz.campaign.workers.parse_tally``)."""
        self.count(signature, 1, kind)

    def record_seen(self, force: bool = False) -> None:
        """A ``seen`` (and a ``violation``) line with the totals, when they
        changed (at most every :data:`SEEN_EVERY` seconds unless ``force``)."""
        now = time.monotonic()
        if self.tallies == self.recorded or (not force and now - self.recorded_at < SEEN_EVERY):
            return
        self.recorded_at = now
        for kind, counts in self.tallies.items():
            if counts != self.recorded[kind]:
                self.recorded[kind] = dict(counts)
                self.record(kind, counts=dict(sorted(counts.items())))

    # ----------------------------------------------------------- taking

    def take(self, pending: Path, engine: str, worker: int, alive: bool) -> list[str]:
        """Take the finding files a worker left; the new signatures."""
        new: list[str] = []
        if not pending.is_dir():
            return new
        for path in sorted(pending.glob("*.trace")):
            try:
                if alive and time.time() - path.stat().st_mtime < SETTLE:
                    continue  # libFuzzer's target writes in place: let it finish
                trace = load_trace(path)
            except FileNotFoundError:
                continue
            except TraceError as exc:
                if not alive:  # the worker died mid-write (a cut trace: nothing to save),
                    if exc.lineno > 0:  # or it is no regular file, or too large to read
                        path.unlink(missing_ok=True)
                    else:
                        self.quarantine(path, exc.message)
                continue
            signature = trace.header("signature")
            if signature and signature not in self.signatures:
                raw = self._write_raw(trace, signature, engine, worker)
                self.signatures.add(signature)
                self.queue.append(Job(raw, signature, engine, worker))
                new.append(signature)
            elif signature:
                self.count(signature)
            path.unlink(missing_ok=True)
        return new

    def _write_raw(self, trace: Trace, signature: str, engine: str, worker: int) -> Path:
        headers = dict(trace.headers)
        headers["found-by"] = f"campaign {engine} worker {worker}"
        if (drivers := driver_header()) is not None:
            headers.setdefault("driver", drivers)
        headers.setdefault("title", f"campaign finding {signature}")
        trace = Trace(tuple(headers.items()), trace.body, trace.path)
        if self.mutant:
            trace = _note(trace, "mutant", self.mutant)
        trace = _note(trace, "found-at", _now())
        path = self.raw_dir / repro_name(signature, trace)
        write_atomic(path, format_trace(trace))
        return path

    # -------------------------------------------------------- minimizing

    def quarantine(self, path: Path, reason: str) -> Path | None:
        """Move ``path`` into ``OUT/findings/quarantine/`` (a ``quarantine`` line
        says where and why); None if it cannot be moved (it is left alone)."""
        target_dir = layout.path(self.out, layout.QUARANTINE)
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / path.name
            k = 1
            while os.path.lexists(target):
                k += 1
                target = target_dir / f"{path.stem}-{k}{path.suffix}"
            os.rename(path, target)
        except OSError as exc:
            self.log(f"cannot quarantine {_rel(self.out, path)}: {exc.strerror or exc}")
            return None
        reason = " ".join(reason.split())[:300]
        self.record("quarantine", path=_rel(self.out, target), reason=reason)
        self.log(f"quarantined {_rel(self.out, path)} -> {_rel(self.out, target)}: {reason}")
        return target

    def resume(self, recorded: set[str]) -> None:
        """Quarantine repros and raw examples that cannot be read or parsed;
        queue raw examples without a repro (a quarantined repro's again);
        record repros without a line."""
        lost: set[str | None] = set()
        for saved in sorted(self.dir.glob("*.trace")):
            if (problem := _problem(saved)) is not None:
                lost.add(signature_of(saved))
                if self.quarantine(saved, problem) is not None:
                    self.causes = {c: p for c, p in self.causes.items() if p != saved}
        repros = {signature_of(p): p for p in sorted(self.dir.glob("*.trace"))}
        for raw in sorted(self.raw_dir.glob("*.trace")):
            try:
                trace = load_trace(raw)
                signature = trace.header("signature")
                problem = None if signature else "no '# signature:' header"
            except TraceError as exc:
                signature, problem = None, _why(exc)
            if problem is not None or signature is None:
                if repros.get(signature_of(raw)) is None:
                    self.quarantine(raw, problem or "unreadable")
                continue
            match = _FOUND_BY.search(_notes(raw).get("found-by", ""))
            engine, worker = (match.group(1), int(match.group(2))) if match else ("?", -1)
            job = Job(raw, signature, engine, worker)
            repro = repros.get(signature)
            if repro is None and (signature not in recorded or signature in lost):
                # (recorded, with no repro: a duplicate, unless its repro was quarantined)
                self.queue.append(job)
            elif repro is not None and signature not in recorded:
                self._record(job, repro, cause_of(repro) or signature)

    def distinct(self) -> int:
        """Distinct causes among the saved repros."""
        return len({cause_of(p) for p in self.dir.glob("*.trace")} - {None})

    def busy(self) -> bool:
        return bool(self.running) or bool(self.queue)

    def poll(self) -> None:
        """Start, finish or stop minimizer processes; never blocks."""
        now = time.monotonic()
        for run in list(self.running):
            if run.proc.poll() is None:
                if now - run.started >= run.limit and not run.asked:
                    run.asked = True
                    run.proc.terminate()  # save the smallest trace so far
                if now - run.started < run.limit + GRACE:
                    continue
                kill(run.proc)
                self.log(f"minimizing {run.job.signature} did not stop at its time limit: "
                         "saving it unminimized")
            self.running.remove(run)
            self._finish(run.job, run.result, now - run.started)
        while self.queue and len(self.running) < self.parallel:
            limit = self.limit
            if self.finish_by is not None:  # a stop is coming: what is left of its wait
                limit = max(1.0, min(limit, self.finish_by - now - GRACE))
            self._start(self.queue.pop(0), limit)

    def _start(self, job: Job, limit: float) -> None:
        result = self.raw_dir / f".{job.raw.stem}.result.json"
        result.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "fuzz.campaign.findings", str(job.raw),
                "--out", str(self.out), "--result", str(result),
                "--max-runs", str(MAX_RUNS), "--time-limit", f"{limit:.1f}",
                "--observe-every", str(self.observe_every(job.engine)),
                "--known-causes", ",".join(sorted(self.causes)), "--contract", self.contract]
        if self.mutant:
            argv += ["--mutant", self.mutant]
        proc = spawn(argv, env=child_env(), stdout=subprocess.DEVNULL, niceness=5)
        self.running.append(Running(job, proc, time.monotonic(), result, limit))

    def observe_every(self, engine: str) -> int:
        """The observation period ``engine``'s findings were judged with:
        ``observe``'s (the Hypothesis workers' profile), else the Atheris
        target's (``fuzz.profiles.ATHERIS``: its fast judge reports a finding
        as the full judge gives it, ``Settings.reported_every``)."""
        if engine in self.observe:
            return self.observe[engine]
        from fuzz.profiles import ATHERIS

        return ATHERIS.settings().reported_every()

    def wind_down(self, seconds: float) -> None:
        """A stop is coming within ``seconds``: no minimization may run past it
        (one past its limit is asked, by SIGTERM, to save what it has)."""
        now = time.monotonic()
        self.finish_by = now + seconds
        for run in self.running:
            run.limit = min(run.limit, now - run.started + max(1.0, seconds - GRACE))

    def stop(self) -> None:
        """Stop running minimizations (they are done again on resume)."""
        for run in self.running:
            kill(run.proc)
            run.result.unlink(missing_ok=True)
        self.running = []

    def _finish(self, job: Job, result: Path, seconds: float) -> None:
        extra: dict[str, object] = {"seconds": round(seconds, 1)}
        repro: Path | None = None
        cause: str | None = None
        try:
            data = safeio.loads_json(safeio.read_bytes(result, limit=safeio.MAX_JSON_BYTES))
            cause = str(data["cause"]) if data.get("cause") else None
            if data.get("path"):
                repro = self.out / str(data["path"])
            elif not data.get("duplicate"):
                raise ValueError("no repro")
            if data.get("partial"):
                extra["partial"] = "true"
        except (BadInput, ValueError, KeyError, TypeError, AttributeError):
            try:
                repro = save_unminimized(self.out, job.raw, self.mutant)
                extra["partial"] = "unminimized"
            except TraceError as exc:
                result.unlink(missing_ok=True)
                self.quarantine(job.raw, _why(exc))
                return
        result.unlink(missing_ok=True)
        self._record(job, repro, cause or job.signature, **extra)

    def _record(self, job: Job, repro: Path | None, cause: str, **more: object) -> None:
        """The ``finding`` line.  Its ``signature`` is the repro's, the engine's
        (``found_as`` is the engine's when that differs); ``cause`` is where the
        sides' states first differ in the raw example (observing every step).
        An example whose cause is known already is one more example of that
        finding: ``duplicate``, its path the first repro of the cause (the raw
        example stays)."""
        lines, signature = 0, job.signature
        if repro is not None:
            try:
                trace = load_trace(str(repro))
                lines, signature = len(trace.steps), trace.header("signature") or job.signature
            except TraceError:
                pass
        extra: dict[str, object] = {"found_as": job.signature} \
            if signature != job.signature else {}
        first = self.causes.get(cause)
        if first is not None and first != repro:
            if repro is not None and repro.parent == self.dir:
                repro.unlink(missing_ok=True)
            repro = first
            extra["duplicate"] = "true"
            try:
                lines = len(load_trace(str(first)).steps)
            except TraceError:
                pass
        elif repro is not None:
            self.causes[cause] = repro
        if repro is None:  # a known cause that has no repro any more: keep the raw example
            repro = save_unminimized(self.out, job.raw, self.mutant)
            self.causes[cause] = repro
        self.record("finding", signature=signature, cause=cause, path=_rel(self.out, repro),
                    raw=_rel(self.out, job.raw), engine=job.engine, worker=job.worker,
                    lines=lines, **extra, **more)
        what = "another example of" if "duplicate" in extra else "finding"
        self.log(f"{what} {cause} (as {signature}): {_rel(self.out, repro)} ({lines} lines)")


def _problem(path: Path) -> str | None:
    """Why the trace file at ``path`` is no finding (None if it is one: it
    reads, parses and has a signature)."""
    try:
        signature = load_trace(path).header("signature")
    except TraceError as exc:
        return _why(exc)
    return None if signature else "no '# signature:' header"


def _why(exc: TraceError) -> str:
    return f"line {exc.lineno}: {exc.message}" if exc.lineno else exc.message


def _rel(out: Path, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


def _now() -> str:
    from fuzz.campaign.config import now_iso

    return now_iso()


def _with_notes(trace: Trace, raw: Path) -> Trace:
    notes = _notes(raw)
    for key in ("mutant", "found-at"):
        if key in notes:
            trace = _note(trace, key, notes[key])
    return trace


def save_unminimized(out: Path, raw: Path, mutant: str | None) -> Path:
    """Save the raw example itself as the repro (TraceError if it cannot be read)."""
    trace = load_trace(raw)
    if not trace.header("signature"):
        raise TraceError(str(raw), 1, "no '# signature:' header")
    trace = _note(trace, "minimized", "no (the minimizer did not finish)")
    return save_repro(layout.path(out, layout.FINDINGS), trace)


def minimize_raw(out: Path, raw: Path, mutant: str | None, max_runs: int, *,
                 observe_every: int = 1, time_limit: float | None = None,
                 stop: Callable[[], bool] | None = None,
                 known: AbstractSet[str] = frozenset(),
                 contract: str = contracts.DEFAULT) -> tuple[Path | None, bool, str | None]:
    """Find ``raw``'s cause (the first finding observing every step); unless it is
    ``known``, minimize ``raw`` under the engine's settings (observing every
    ``observe_every`` steps), annotate it (fuzz.damage) and save the repro in
    ``OUT/findings``: (its path or None, whether the time limit cut it short,
    the cause).  Every judge runs under ``contract``: the repro is a finding
    under the campaign's contract, never a trace userspace broke it in."""
    from fuzz import impls
    from fuzz.damage import annotate, first_difference
    from fuzz.executor import Settings
    from fuzz.minimize import NoFinding, Stats, minimize_file

    original = load_trace(raw)
    settings = Settings(observe_every=observe_every, mutant=mutant, contract=contract)
    deadline = None if time_limit is None else time.monotonic() + time_limit

    def out_of_time() -> bool:
        return (deadline is not None and time.monotonic() > deadline) or \
            (stop is not None and stop())

    sides = impls.sides("both")
    root = first_difference(original, sides, settings)
    cause = root.signature if root is not None else None
    if cause is not None and cause in known:
        return None, False, cause
    stats = Stats()
    try:
        small = minimize_file(raw, sides, settings, max_runs=max_runs, stats=stats,
                              found_by=original.header("found-by") or "campaign",
                              first=replace(settings, observe_every=0),
                              stop=out_of_time)
    except NoFinding:
        return save_unminimized(out, raw, mutant), False, cause
    small = _with_notes(annotate(small, sides, settings), raw)
    if cause is not None:
        small = _note(small, "cause", cause)
    return save_repro(layout.path(out, layout.FINDINGS), small), stats.partial, cause


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.campaign.findings")
    parser.add_argument("raw")
    parser.add_argument("--out", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--mutant", default=None)
    parser.add_argument("--max-runs", type=int, default=MAX_RUNS)
    parser.add_argument("--observe-every", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=None)
    parser.add_argument("--known-causes", default="")
    parser.add_argument("--contract", default=contracts.DEFAULT, choices=list(contracts.CONTRACTS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    stopping = [False]

    def on_term(signum: int, frame: object) -> None:
        stopping[0] = True  # the coordinator is stopping: save what there is

    signal.signal(signal.SIGTERM, on_term)
    known = frozenset(c for c in args.known_causes.split(",") if c)
    repro, partial, cause = minimize_raw(out, Path(args.raw), args.mutant, args.max_runs,
                                         observe_every=args.observe_every,
                                         time_limit=args.time_limit, stop=lambda: stopping[0],
                                         known=known, contract=args.contract)
    result = {"path": _rel(out, repro) if repro is not None else None, "partial": partial,
              "cause": cause, "duplicate": repro is None}
    write_atomic(args.result, json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
