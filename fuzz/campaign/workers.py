"""Worker processes and what they print: the Hypothesis worker, the Atheris
command line, and the parsing of their output lines.

A worker is a child process whose stdout and stderr go to
``OUT/workers/ID.log``; the coordinator reads that log as it grows.  Rules
this module enforces:

* **Workers generate; the executor judges.**  A finding is whatever
  ``fuzz.executor.run_trace`` says; the worker only writes the failing
  trace, with its ``# signature:`` header, atomically into
  ``OUT/workers/ID/findings/`` (Atheris: through ``MIRRORFUZZ_FINDINGS``),
  where the coordinator takes it.
* **Progress is a line**: the Hypothesis worker prints
  ``@mirrorfuzz {"execs": N, "steps": S}`` (cumulative for the process) at
  most once a second; Atheris prints libFuzzer's ``#N ... exec/s: E`` lines
  and, with ``MIRRORFUZZ_PROGRESS`` set, ``mirrorfuzz-progress execs=N
  steps=S`` lines (``fuzz/fuzz_trace.py``).  :func:`parse_progress` reads
  either.
* **A heartbeat, not a timer**: a Hypothesis worker reports progress every
  second while its examples append lines (each line runs at once in the
  engine's executor session), so a long example is not taken for a hang
  while a step that never returns is.
* **The engines are ``fuzz.engine``'s**, with ``fuzz.profiles``' settings:
  the work cap bounds each Hypothesis example as it bounds each Atheris
  input; an example cut there counts as run, with no finding.
* **Known signatures are not found again**: a Hypothesis example whose
  finding has a signature already in ``OUT/findings/raw/`` when the chunk
  started passes (it is counted, not reported), so the engine moves on.

Run as ``python -m fuzz.campaign.workers hypothesis --out OUT --worker ID
--seed S [--mutant M] [--db SPEC] [--observe-every K]``.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fuzz import contracts
from fuzz.campaign import layout

PREFIX: Final = "@mirrorfuzz "
CHUNK: Final = 25
"""Hypothesis examples per run of the state machine (a new derived seed each)."""
STEP_COUNT: Final = 30
REPORT_EVERY: Final = 1.0
TEST_CRASH_ENV: Final = "MIRRORFUZZ_TEST_CRASH"
"""Test hook: the worker whose id this names crashes in its first process
(after its first example), so that tests can see it restarted."""
_LIBFUZZER = re.compile(r"^#(\d+)\s+\w+.*?exec/s:\s*(\d+)")
_HOOK = re.compile(r"^mirrorfuzz-progress execs=(\d+) steps=(\d+)")
_COV = re.compile(r"\bcov:\s*(\d+)")


def worker_dir(out: Path, worker: int) -> Path:
    """``OUT/workers/ID/``: the worker's scratch (pending findings, artifacts)."""
    return layout.path(out, layout.WORKERS) / str(worker)


def pending_dir(out: Path, worker: int) -> Path:
    return worker_dir(out, worker) / "findings"


def log_path(out: Path, worker: int) -> Path:
    return layout.path(out, layout.WORKERS) / f"{worker}.log"


# ------------------------------------------------------------ output lines


@dataclass(frozen=True)
class Progress:
    """Cumulative counts of the current worker process (None: not in this line)."""

    execs: int | None = None
    steps: int | None = None
    coverage: int | None = None  # libFuzzer's cov: (features of the instrumented code)


def parse_progress(line: str) -> Progress | None:
    """The progress a worker's output line reports, or None."""
    if line.startswith(PREFIX):
        try:
            event = json.loads(line[len(PREFIX):])
        except ValueError:
            return None
        if isinstance(event, dict) and isinstance(event.get("execs"), int):
            steps = event.get("steps")
            return Progress(event["execs"], steps if isinstance(steps, int) else None)
        return None
    hook = _HOOK.match(line)
    if hook is not None:
        return Progress(int(hook.group(1)), int(hook.group(2)))
    fuzzer = _LIBFUZZER.match(line)
    if fuzzer is not None:
        cov = _COV.search(line)
        return Progress(int(fuzzer.group(1)), None, int(cov.group(1)) if cov else None)
    return None


FINDING_EXIT: Final = 77
"""libFuzzer's exit status after a failing input (``-error_exitcode``)."""


TALLIED: Final = ("seen", "violation")
"""The events a worker tallies by signature (``@mirrorfuzz {"seen": SIG}``):
``seen``, an example of a known cause it skipped; ``violation``, a finding
after userspace broke the campaign's contract (``fuzz.contracts``)."""


def parse_tally(line: str) -> tuple[str, str] | None:
    """(event, signature) for a tallied event line (:data:`TALLIED`), or None."""
    if not line.startswith(PREFIX + '{"'):
        return None
    try:
        event = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    if not isinstance(event, dict) or len(event) != 1:
        return None
    ((kind, signature),) = event.items()
    if kind in TALLIED and isinstance(signature, str) and signature:
        return kind, signature
    return None


def tally(kind: str, signature: str) -> None:
    """Print a tallied event line for the coordinator (both engines' workers)."""
    assert kind in TALLIED, kind
    _emit(**{kind: signature})


def classify_exit(log_tail: str, code: int, found: str | None = None) -> tuple[str, str]:
    """(event, detail) for a worker process that ended by itself.

    ``finding`` when it stopped on a finding (libFuzzer stops at the first
    one: exit 77 and its log said ``mirrorfuzz finding SIGNATURE``, ``found``
    -- a long trace printed after that line may push it out of the last
    lines), ``oom``, ``hung`` (libFuzzer's own timeout), ``restarted`` (it
    ended cleanly) or ``crashed``.
    """
    if found is not None and code != 0:
        return "finding", f"exit {code}: {found}"
    if "TraceFinding" in log_tail or "mirrorfuzz finding" in log_tail:
        match = re.search(r"mirrorfuzz finding (\S+)", log_tail)
        return "finding", f"exit {code}: {match.group(1) if match else 'a finding'}"
    if "out-of-memory" in log_tail or "MemoryError" in log_tail:
        return "oom", f"out of memory (exit {code})"
    if "libFuzzer: timeout" in log_tail or "ALARM: working on the last Unit" in log_tail:
        return "hung", f"libFuzzer timeout (exit {code})"
    if code == 0:
        return "restarted", "the process ended (exit 0)"
    last = [line for line in log_tail.splitlines() if line.strip()][-1:] or [""]
    return "crashed", f"exit {code}: {last[0][:200]}"


# ---------------------------------------------------------------- atheris


def atheris_command(out: Path, worker: int, seed: int, *, mutant: str | None, contract: str,
                    rss_limit_mb: int, timeout_s: int) -> tuple[list[str], dict[str, str | None]]:
    """The argv and environment of an Atheris worker process."""
    from fuzz.engine import atheris_command as command

    return command([layout.path(out, layout.ATHERIS_CORPUS)], seed_=seed, mutant=mutant,
                   findings=pending_dir(out, worker), artifacts=worker_dir(out, worker),
                   contract=contract,
                   options=[f"-rss_limit_mb={rss_limit_mb}", f"-timeout={timeout_s}"],
                   env={"MIRRORFUZZ_PROGRESS": "1",
                        "MIRRORFUZZ_KNOWN": str(layout.path(out, layout.RAW))})


def hypothesis_command(out: Path, worker: int, seed: int, *, mutant: str | None,
                       contract: str, db: str | None, observe_every: int,
                       generation: int) -> list[str]:
    argv = [sys.executable, "-m", "fuzz.campaign.workers", "hypothesis", "--out", str(out),
            "--worker", str(worker), "--seed", str(seed), "--observe-every", str(observe_every),
            "--generation", str(generation), "--contract", contract]
    if mutant:
        argv += ["--mutant", mutant]
    if db:
        argv += ["--db", db]
    return argv


# ------------------------------------------------------------- hypothesis


_EMIT_LOCK = threading.Lock()


def _emit(**event: object) -> None:
    with _EMIT_LOCK:
        sys.stdout.write(PREFIX + json.dumps(event) + "\n")
        sys.stdout.flush()


def _heartbeat(activity: Callable[[], int], counts: dict[str, int]) -> None:
    """Report progress every second while lines are built or steps are taken,
    so that a long example is not taken for a hang, and a hang still is."""
    seen = -1
    while True:
        time.sleep(REPORT_EVERY)
        now = activity()
        if now != seen:
            seen = now
            _emit(execs=counts["execs"], steps=counts["steps"])


def _features(trace_steps: Sequence[object], results: Sequence[object]) -> set[str]:
    """What a clean trace showed: (op keyword, result shape) pairs."""
    from fuzz.trace import StepLine

    found = set()
    for line, result in zip(trace_steps, results, strict=False):
        if isinstance(line, StepLine) and result is not None:
            shape = re.sub(r"\d+", "#", str(result))[:40]
            found.add(f"{type(line.action).__name__}:{shape}")
    return found


def run_hypothesis(args: argparse.Namespace) -> int:
    """Run the stateful engine in chunks of :data:`CHUNK` examples, forever."""
    from hypothesis import Phase, Verbosity

    from fuzz.campaign.findings import known_signatures
    from fuzz.corpus import repro_name, write_atomic
    from fuzz.dbs import open_database
    from fuzz.engine import HypothesisEngine
    from fuzz.profiles import CAMPAIGN
    from fuzz.stateful import EngineConfig, Hooks, MirrorMachine
    from fuzz.trace import Trace, format_trace, with_headers

    out = Path(args.out)
    pending = pending_dir(out, args.worker)
    pending.mkdir(parents=True, exist_ok=True)
    traces = layout.path(out, layout.TRACE_CORPUS)
    traces.mkdir(parents=True, exist_ok=True)
    crash = os.environ.get(TEST_CRASH_ENV) == str(args.worker) and args.generation == 0
    database = open_database(args.db, layout.path(out, layout.HYPOTHESIS_DB))
    config = EngineConfig(sides="both", failures=str(pending),
                          judge=CAMPAIGN.settings(args.mutant, observe_every=args.observe_every,
                                                  contract=args.contract))
    counts = {"execs": 0, "steps": 0, "duplicates": 0, "capped": 0}
    seen: set[str] = set()
    known: set[str] = set()
    reported: set[str] = set()
    last = [0.0]
    lines = [0]
    current: list[MirrorMachine] = []  # the example running

    def activity() -> int:
        """Lines appended, and the executor steps of the example running (its
        drain at teardown too)."""
        return lines[0] + sum(m.guide.session.verdict.steps for m in current[-1:])

    def report(force: bool = False) -> None:
        now = time.monotonic()
        if force or now - last[0] >= REPORT_EVERY:
            last[0] = now
            _emit(execs=counts["execs"], steps=counts["steps"])

    class Campaign(Hooks):
        def line(self, machine: MirrorMachine) -> None:
            lines[0] += 1
            current[:] = [machine]

        def judged(self, machine: MirrorMachine, verdict: Any) -> bool:
            counts["steps"] += verdict.steps
            if verdict.excused:
                tally("violation", verdict.excused[0].signature)
            finding = verdict.finding
            if verdict.capped:
                counts["capped"] += 1  # judged up to the work cap, as the Atheris target does
            elif finding is None:
                trace = machine.trace()
                new = _features(trace.steps, verdict.results) - seen
                if new:
                    seen.update(new)
                    text = format_trace(with_headers(trace, {"title": "campaign: new results"}))
                    write_atomic(traces / f"hypothesis-{repro_name('trace', trace)}", text)
            elif finding.signature in known:
                counts["duplicates"] += 1
                tally("seen", finding.signature)  # counted on its cause by the coordinator
                return False
            return True

        def failed(self, machine: MirrorMachine, failing: Trace) -> str:
            signature = failing.header("signature") or "?"
            write_atomic(pending / repro_name(signature, failing), format_trace(failing))
            _emit(finding=signature)
            reported.add(signature)
            return ""

        def done(self, machine: MirrorMachine) -> None:
            counts["execs"] += 1
            report()
            if crash:
                print("MIRRORFUZZ_TEST_CRASH: crashing on purpose", flush=True)
                os._exit(3)

    engine = HypothesisEngine(config, Campaign())
    chunk = 0
    faulthandler.register(signal.SIGUSR1)  # the pool asks for a traceback before killing a hang
    report(force=True)
    threading.Thread(target=_heartbeat, args=(activity, counts), daemon=True).start()
    while True:
        known = known_signatures(out) | reported
        try:
            engine.run((args.seed << 20) + chunk, CHUNK, database=database,
                       phases=(Phase.explicit, Phase.reuse, Phase.generate),
                       verbosity=Verbosity.quiet, report_multiple_bugs=False)
        except Exception as exc:  # a finding (or Hypothesis's complaint about one)
            print(f"chunk {chunk}: {type(exc).__name__}: {str(exc).splitlines()[:1]}",
                  flush=True)
        chunk += 1
        report(force=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.campaign.workers")
    sub = parser.add_subparsers(dest="engine", required=True)
    hyp = sub.add_parser("hypothesis")
    hyp.add_argument("--out", required=True)
    hyp.add_argument("--worker", type=int, required=True)
    hyp.add_argument("--seed", type=int, required=True)
    hyp.add_argument("--generation", type=int, default=0)
    hyp.add_argument("--mutant", default=None)
    hyp.add_argument("--contract", default=contracts.DEFAULT, choices=list(contracts.CONTRACTS))
    hyp.add_argument("--db", default=None)
    hyp.add_argument("--observe-every", type=int, default=None,
                     help="observation period (default: fuzz.profiles.CAMPAIGN's)")
    args = parser.parse_args(argv)
    from fuzz.plugins import load_for

    load_for(None)  # the coordinator's --driver files ($MIRRORFUZZ_DRIVERS)
    try:
        return run_hypothesis(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
