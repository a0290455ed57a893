"""A campaign's findings: dedup by signature, the raw example first, then a
minimized repro, then the ``finding`` statistics line.

Rules this module enforces, in this order for each new signature:

1. **Dedup by signature**: a finding trace a worker left in
   ``OUT/workers/ID/findings/`` whose ``# signature:`` is already in
   ``OUT/findings/raw/`` is dropped.
2. **The raw example is written atomically before anything else**, into
   ``OUT/findings/raw/`` with ``found-by`` (``campaign ENGINE worker ID``)
   and the comments ``# found-at: ISO`` and ``# mutant: NAME``; only then is
   the worker's file removed.  A kill at any moment loses nothing.
3. **Minimizing runs in a separate, niced process** (``python -m
   fuzz.campaign.findings RAW ...``: ``fuzz.minimize`` with the mutant on and
   a run cap, observing every step as ``mirrorfuzz replay`` does), one at a
   time, with a wall-clock cap after which the raw example itself is saved
   as the repro; the coordinator keeps polling meanwhile.  The repro is
   saved by ``fuzz.corpus.save_repro`` into ``OUT/findings/``.
4. **Then** the ``finding`` line is appended to ``stats.jsonl``.

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
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fuzz import safeio
from fuzz.campaign import layout
from fuzz.campaign.procs import child_env, kill, spawn
from fuzz.corpus import repro_name, save_repro
from fuzz.errors import BadInput
from fuzz.plugins import driver_header
from fuzz.safeio import load_trace, write_atomic
from fuzz.trace import Comment, Trace, TraceError, format_trace

MAX_RUNS: Final = 2000
"""Trace runs one minimization may take."""
MINIMIZE_TIMEOUT: Final = 300.0
"""Seconds after which a minimization is stopped and the raw example saved as is."""
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
        match = re.match(r"# (found-at|mutant|found-by): (.*)$", line)
        if match:
            notes.setdefault(match.group(1), match.group(2).strip())
    return notes


@dataclass
class Job:
    raw: Path
    signature: str
    engine: str
    worker: int


class Findings:
    """The coordinator's side: takes workers' finding files, minimizes, records."""

    def __init__(self, out: Path, mutant: str | None,
                 record: Callable[..., object], log: Callable[[str], None]) -> None:
        self.out = out
        self.mutant = mutant
        self.record = record  # record(kind, **fields): a stats line
        self.log = log
        self.raw_dir = layout.path(out, layout.RAW)
        self.dir = layout.path(out, layout.FINDINGS)
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self.signatures = known_signatures(out)
        self.queue: list[Job] = []
        self.running: tuple[Job, subprocess.Popen[bytes], float, Path] | None = None

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
        """Queue raw examples without a repro; record repros without a line;
        quarantine raw examples that cannot be read or parsed."""
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
            if repro is None:
                self.queue.append(job)
            elif signature not in recorded:
                self._record(job, repro)

    def distinct(self) -> int:
        """Distinct signatures among the saved repros (what ``replay`` gives)."""
        return len({signature_of(p) for p in self.dir.glob("*.trace")} - {None})

    def busy(self) -> bool:
        return self.running is not None or bool(self.queue)

    def poll(self) -> None:
        """Start, finish or stop the minimizer process; never blocks."""
        if self.running is not None:
            job, proc, started, result = self.running
            if proc.poll() is None:
                if time.monotonic() - started < MINIMIZE_TIMEOUT:
                    return
                kill(proc)
                self.log(f"minimizing {job.signature} took too long: saving it unminimized")
            self.running = None
            self._finish(job, result)
        if self.queue:
            job = self.queue.pop(0)
            result = self.raw_dir / f".{job.raw.stem}.result.json"
            result.unlink(missing_ok=True)
            argv = [sys.executable, "-m", "fuzz.campaign.findings", str(job.raw),
                    "--out", str(self.out), "--result", str(result),
                    "--max-runs", str(MAX_RUNS)]
            if self.mutant:
                argv += ["--mutant", self.mutant]
            proc = spawn(argv, env=child_env(), stdout=subprocess.DEVNULL, niceness=5)
            self.running = (job, proc, time.monotonic(), result)

    def stop(self) -> None:
        """Stop a running minimization (it is done again on resume)."""
        if self.running is not None:
            kill(self.running[1])
            self.running[3].unlink(missing_ok=True)
            self.running = None

    def _finish(self, job: Job, result: Path) -> None:
        try:
            data = safeio.loads_json(safeio.read_bytes(result, limit=safeio.MAX_JSON_BYTES))
            repro = self.out / str(data["path"])
        except (BadInput, ValueError, KeyError, TypeError):
            try:
                repro = save_unminimized(self.out, job.raw, self.mutant)
            except TraceError as exc:
                result.unlink(missing_ok=True)
                self.quarantine(job.raw, _why(exc))
                return
        result.unlink(missing_ok=True)
        self._record(job, repro)

    def _record(self, job: Job, repro: Path) -> None:
        """The ``finding`` line.  Its ``signature`` is the repro's (what ``mirrorfuzz
        replay`` gives, observing every step); ``found_as`` is the engine's when
        that differs (an engine observing less often sees a later symptom)."""
        try:
            trace = load_trace(str(repro))
            lines, signature = len(trace.steps), trace.header("signature") or job.signature
        except TraceError:
            lines, signature = 0, job.signature
        extra = {"found_as": job.signature} if signature != job.signature else {}
        same = [p for p in sorted(self.dir.glob("*.trace"))
                if p != repro and signature_of(p) == signature]
        if same and repro.parent == self.dir:
            # Engines observing less often report one bug under several signatures; its
            # repros all replay to one.  Keep the first repro (the raw example stays).
            repro.unlink(missing_ok=True)
            repro = same[0]
            extra["duplicate"] = "true"
        self.record("finding", signature=signature, path=_rel(self.out, repro),
                    raw=_rel(self.out, job.raw), engine=job.engine, worker=job.worker,
                    lines=lines, **extra)
        self.log(f"finding {signature}: {_rel(self.out, repro)} ({lines} lines)")


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
    return save_repro(layout.path(out, layout.FINDINGS), trace)


def minimize_raw(out: Path, raw: Path, mutant: str | None, max_runs: int) -> Path:
    """Minimize ``raw`` (observing every step) and save the repro in ``OUT/findings``."""
    from fuzz import impls
    from fuzz.executor import Settings
    from fuzz.minimize import NoFinding, minimize_file

    original = load_trace(raw)
    settings = Settings(observe_every=1, mutant=mutant)
    try:
        small = minimize_file(raw, impls.sides("both"), settings, max_runs=max_runs,
                              found_by=original.header("found-by") or "campaign",
                              first=Settings(observe_every=0, mutant=mutant))
    except NoFinding:
        return save_unminimized(out, raw, mutant)
    return save_repro(layout.path(out, layout.FINDINGS), _with_notes(small, raw))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.campaign.findings")
    parser.add_argument("raw")
    parser.add_argument("--out", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--mutant", default=None)
    parser.add_argument("--max-runs", type=int, default=MAX_RUNS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    repro = minimize_raw(out, Path(args.raw), args.mutant, args.max_runs)
    write_atomic(args.result, json.dumps({"path": _rel(out, repro)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
