"""``mirrorfuzz mutants``: how fast each engine finds each planted bug.

For each engine x mutant (declared in ``model/bugs.py``) the engine runs
with that mutant switched on, under a time budget, until its first finding;
the finding's trace is minimized by ``fuzz.minimize`` (on both sides, the
mutant on, observations every step) and a table is printed: mutant, engine,
found or not, CPU seconds to the finding, examples (Hypothesis) or executions
(Atheris) and step lines until then, lines of the minimized repro, its
signature.  ``found`` is ``yes`` only when the minimized repro also runs
clean with the mutant off (else ``other``: a finding that is not the
mutant's).

* **Hypothesis** runs in this process: ``fuzz.engine.HypothesisEngine``
  (both sides, the mutant on, ``fuzz.profiles.HUNT``'s judging), seeded, no
  database, no shrinking (``fuzz.minimize`` does that); the budget is
  checked before each example.  :func:`hunt_hypothesis` is also what the quality tests call, with
  an example budget instead of a time budget.
* **Atheris** runs as a subprocess, ``fuzz.engine.atheris_command`` with
  ``-max_total_time`` and the seed, on a fresh corpus
  directory and the seeds ``--make-seeds`` makes from ``corpus/``.  Its time
  is the child's CPU time (it stops at its first finding).

Engines generate; the only judge is ``fuzz.executor.run_trace``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from fuzz import impls
from fuzz.corpus import write_atomic
from fuzz.errors import BadInput, check_mutant
from fuzz.executor import Settings, Verdict, run_trace
from fuzz.minimize import Stats, minimize_file
from fuzz.profiles import HUNT, STEP_COUNT, Profile
from fuzz.trace import Trace, TraceError, format_trace
from model import bugs

ENGINES: Final = ("hypothesis", "atheris")
MAX_RUNS: Final = 1000
"""Judge runs one minimization may use."""
REPO: Final = Path(__file__).resolve().parent.parent


@dataclass
class Hunt:
    """One engine's hunt for one mutant."""

    mutant: str
    engine: str
    found: bool = False
    cpu_to_find: float | None = None  # CPU seconds until the first finding
    execs: int = 0  # examples or executions, until the finding (or in all)
    steps: int | None = None  # step lines generated, likewise (None: not counted)
    cpu: float = 0.0  # CPU seconds of the whole hunt
    wall: float = 0.0
    raw: Path | None = None  # the unminimized finding trace
    repro: Trace | None = None  # minimized
    signature: str | None = None
    mutants_own: bool | None = None  # the repro runs clean with the mutant off
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if not self.found:
            return "no"
        return "yes" if self.mutants_own in (True, None) else "other"


# ------------------------------------------------------------ hypothesis


class _OutOfTime(BaseException):
    """The time budget ran out (a BaseException: Hypothesis lets it through)."""


class _Probe:
    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.examples = 0
        self.lines = 0
        self.found: tuple[int, int, float] | None = None  # examples, lines, cpu
        self.timed_out = False
        self.capped = 0
        self.done = False
        self.start = time.process_time()


def hunt_hypothesis(mutant: str, failures: Path, *, seed: int = 0,
                    max_examples: int = 1000, seconds: float | None = None, cpu: bool = False,
                    step_count: int = STEP_COUNT, profile: Profile = HUNT,
                    generation: int | None = None) -> Hunt:
    """Run the stateful engine against ``mutant`` until its first finding.

    ``generation`` limits the engine to the ops of that byte-codec generation
    (``fuzz.stateful.EngineConfig.generation``; None: every declared op).
    ``profile`` is how it judges (``fuzz.profiles.HUNT``: observations at the
    end only, the mutated side checking its invariants, the engines' work
    cap: an example past the cap is dropped, not a finding, so that one
    heavy-tailed example cannot eat the budget).

    ``seconds`` is a budget of wall time (of this process's CPU time if
    ``cpu``), checked before each example and, in the main thread, by a
    timer that stops a long example too.  Deterministic for a given seed and
    ``max_examples`` when the budget is not reached.  The finding's trace, as
    the engine saves it, is ``Hunt.raw``.
    """
    from fuzz.engine import HypothesisEngine
    from fuzz.stateful import EngineConfig, Hooks, MirrorMachine

    now = time.process_time if cpu else time.monotonic
    failures.mkdir(parents=True, exist_ok=True)
    before = set(failures.glob("*.trace"))
    wall0 = time.monotonic()
    probe = _Probe(None if seconds is None else now() + seconds)

    class Probed(Hooks):
        """Counts examples and lines, and stops at the time budget."""

        def example(self) -> None:
            if (probe.found is None and probe.deadline is not None
                    and now() > probe.deadline):
                probe.timed_out = True
                raise _OutOfTime
            probe.examples += probe.found is None

        def judged(self, machine: MirrorMachine, verdict: Verdict) -> bool:
            probe.capped += verdict.capped  # past the work cap: dropped, as Atheris drops it
            if verdict.finding is not None and probe.found is None:
                probe.found = (probe.examples, probe.lines + len(machine.lines),
                               time.process_time() - probe.start)
            return True

        def done(self, machine: MirrorMachine) -> None:
            if probe.found is None:
                probe.lines += len(machine.lines)

    engine = HypothesisEngine(EngineConfig(sides="both", judge=profile.settings(mutant),
                                           failures=str(failures), generation=generation),
                              Probed())
    hunt = Hunt(mutant, "hypothesis")

    def out_of_time(signum: int, frame: object) -> None:
        if probe.found is None and not probe.done:  # a long example: stop it too
            probe.timed_out = True
            signal.setitimer(timer, 0.2)  # again, should this one be swallowed (gc callback)
            raise _OutOfTime

    alarm = seconds is not None and threading.current_thread() is threading.main_thread()
    timer, signum = ((signal.ITIMER_PROF, signal.SIGPROF) if cpu
                     else (signal.ITIMER_REAL, signal.SIGALRM))
    previous = signal.signal(signum, out_of_time) if alarm else None
    if alarm and seconds is not None:
        signal.setitimer(timer, seconds + 1.0)
    try:
        engine.run(seed, max_examples, step_count=step_count)
    except _OutOfTime:
        hunt.note = "time budget reached"
    except Exception:  # the finding (AssertionError), or Hypothesis upset by the timer
        if probe.timed_out and probe.found is None:
            hunt.note = "time budget reached"
        elif probe.found is None:
            raise
    finally:
        probe.done = True
        if alarm:
            signal.setitimer(timer, 0)
            signal.signal(signum, previous)
    hunt.cpu = time.process_time() - probe.start
    hunt.wall = time.monotonic() - wall0
    hunt.execs, hunt.steps = probe.examples, probe.lines
    hunt.extra["capped"] = probe.capped
    if probe.found is not None:
        hunt.execs, hunt.steps, hunt.cpu_to_find = probe.found
        saved = sorted(set(failures.glob("*.trace")) - before)
        if saved:
            hunt.found, hunt.raw = True, saved[0]
        else:
            hunt.note = "a finding, but no trace was saved"
    return hunt


# --------------------------------------------------------------- atheris

_EXECS = re.compile(r"^#(\d+)\s", re.MULTILINE)
_DONE = re.compile(r"Done (\d+) runs")
_STAT = re.compile(r"stat::number_of_executed_units:\s*(\d+)")


def make_seeds(directory: Path) -> None:
    """Seeds for Atheris, made by ``fuzz_trace.py --make-seeds`` from ``corpus/``."""
    from fuzz.engine import TARGET

    subprocess.run([sys.executable, str(TARGET), "--make-seeds", str(directory)], cwd=REPO,
                   check=True, capture_output=True, text=True)


def atheris_available() -> bool:
    try:
        import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def hunt_atheris(mutant: str, work: Path, seeds: Path | None, *, seed: int = 0,
                 seconds: float = 60.0) -> Hunt:
    """Run ``fuzz/fuzz_trace.py`` against ``mutant`` until its first finding."""
    from fuzz.engine import atheris_command

    hunt = Hunt(mutant, "atheris")
    findings, corpus = work / "findings", work / "corpus"
    for directory in (findings, corpus):
        directory.mkdir(parents=True, exist_ok=True)
    command, variables = atheris_command(
        [corpus, *([seeds] if seeds is not None else [])], seed_=seed, mutant=mutant,
        findings=findings, artifacts=work, options=[f"-max_total_time={max(1, round(seconds))}"])
    env = {**os.environ, **{k: v for k, v in variables.items() if v is not None}}
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=seconds * 3 + 120)
        output = done.stderr + done.stdout
    except subprocess.TimeoutExpired as exc:
        output = str(exc.stderr or "")
        hunt.note = "killed: the run overran its budget"
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    hunt.wall = time.monotonic() - wall0
    hunt.cpu = (usage.ru_utime + usage.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    (work / "fuzz.log").write_text(output, encoding="utf-8")
    counts = [int(n) for n in _EXECS.findall(output) + _DONE.findall(output)
              + _STAT.findall(output)]
    hunt.execs = max(counts, default=0)
    traces = sorted(findings.glob("*.trace"))
    if traces:
        hunt.found, hunt.raw, hunt.cpu_to_find = True, traces[0], hunt.cpu
    return hunt


# ------------------------------------------------------------- minimizing


def minimize_hunt(hunt: Hunt, *, max_runs: int = MAX_RUNS) -> None:
    """Minimize ``hunt.raw`` (both sides, the mutant on) and check it without the mutant.

    Two passes: first under the hunt's own judge (``fuzz.profiles.HUNT``,
    with no work cap), keeping the signature the engine found; then,
    from that small trace, under the full judge (every side checked,
    observing every step), keeping the signature the full judge gives it,
    which is the repro's.  The full judge never runs the raw example: a
    drain of a few blocked forks and long device accesses is thousands of
    steps, each observing every process's pages, so one full judge of a raw
    example can take minutes where the hunt's took a second.
    """
    if hunt.raw is None:
        return
    sides = impls.sides("both")
    stats = Stats()
    hunting = replace(HUNT.settings(hunt.mutant), max_work=0)
    found_by = f"mirrorfuzz mutants {hunt.engine}"
    try:
        small = minimize_file(hunt.raw, sides, hunting, found_by=found_by,
                              max_runs=max_runs, stats=Stats())
        cheap = hunt.raw.with_name(f"hunt-small-{hunt.raw.name}")
        write_atomic(cheap, format_trace(small))
        hunt.repro = minimize_file(cheap, sides, Settings(mutant=hunt.mutant),
                                   found_by=found_by, max_runs=max_runs, stats=stats)
    except ValueError as exc:  # NoFinding: the finding does not replay
        hunt.note = f"the finding does not replay: {exc}"
        return
    hunt.signature = stats.signature
    hunt.mutants_own = run_trace(hunt.repro, sides, Settings()).ok


# ------------------------------------------------------------------ table

COLUMNS: Final = ("mutant", "engine", "found", "CPU s to find", "examples/execs",
                  "steps", "repro lines", "signature")


def row(hunt: Hunt) -> tuple[str, ...]:
    found = hunt.found
    return (hunt.mutant, hunt.engine, hunt.status,
            f"{hunt.cpu_to_find:.1f}" if found and hunt.cpu_to_find is not None
            else f">{hunt.cpu:.0f}",
            str(hunt.execs), "-" if hunt.steps is None else str(hunt.steps),
            str(len(hunt.repro.steps)) if hunt.repro is not None else "-",
            hunt.signature or hunt.note or "-")


def render(hunts: Sequence[Hunt], *, markdown: bool) -> str:
    rows = [COLUMNS, *(row(h) for h in hunts)]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "|".join(" --- " for _ in COLUMNS) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def throughput(hunts: Sequence[Hunt]) -> list[str]:
    """Examples (executions) and steps per CPU second, per engine."""
    out = []
    for engine in ENGINES:
        mine = [h for h in hunts if h.engine == engine]
        cpu = sum(h.cpu_to_find if h.found and h.cpu_to_find else h.cpu for h in mine)
        if not mine or cpu <= 0:
            continue
        execs = sum(h.execs for h in mine)
        text = f"{engine}: {execs / cpu:.1f} {'examples' if engine == 'hypothesis' else 'execs'}"
        if all(h.steps is not None for h in mine):
            text += f"/s, {sum(h.steps or 0 for h in mine) / cpu:.0f} steps"
        out.append(text + f"/s of CPU over {cpu:.1f} CPU s")
    return out


# -------------------------------------------------------------------- cli


def _number(text: str, what: str, kind: type[float] | type[int]) -> Any:
    """``--time`` (seconds, at most a year) or ``--seed`` (a whole number), through
    the one argument-validation layer (fuzz.validate)."""
    from fuzz import validate

    if kind is float:
        return validate.duration(text, f"--{what}")
    return validate.whole(text, f"--{what}")


def _save(hunt: Hunt, out: Path) -> None:
    if hunt.repro is not None:
        write_atomic(out / f"{hunt.mutant}.{hunt.engine}.trace", format_trace(hunt.repro))


def list_bugs() -> str:
    """``mirrorfuzz mutants --list``: every declared bug, what it breaks and
    what it imitates."""
    out = []
    for bug in bugs.all_bugs():
        out += [f"{bug.name}  [{bug.lives_in}]", f"    breaks:   {bug.breaks}",
                f"    imitates: {bug.imitates}"]
    out.append(f"{len(out) // 3} planted bugs")
    return "\n".join(out)


def cmd(args: argparse.Namespace) -> int:
    if args.list:
        print(list_bugs())
        return 0
    if args.engine not in (*ENGINES, "both"):
        raise BadInput(f"--engine: expected hypothesis, atheris or both, got {args.engine!r}")
    seconds: float = _number(args.time, "time", float)
    seed: int = _number(args.seed, "seed", int)
    names: list[str] = args.mutant or [bug.name for bug in bugs.all_bugs()]
    for name in names:
        check_mutant(name)
    engines = list(ENGINES) if args.engine == "both" else [args.engine]
    if "atheris" in engines and not atheris_available():
        raise BadInput("atheris is not installed (pip install '.[fuzz]')")
    from fuzz import validate

    out = (validate.out_dir(args.out) if args.out
           else Path(tempfile.mkdtemp(prefix="mirrorfuzz-mutants-")))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{out}: cannot make the directory: {exc.strerror or exc}") from None
    seeds: Path | None = None
    if "atheris" in engines:
        seeds = out / "work" / "seeds"
        make_seeds(seeds)
    hunts = []
    for engine in engines:
        for name in names:
            work = out / "work" / f"{engine}-{name}"
            if engine == "hypothesis":
                hunt = hunt_hypothesis(name, work / "failures", seed=seed,
                                       max_examples=10**9, seconds=seconds)
            else:
                hunt = hunt_atheris(name, work, seeds, seed=seed, seconds=seconds)
            try:
                minimize_hunt(hunt)
            except TraceError as exc:
                hunt.note = f"unreadable finding trace: {exc}"
            _save(hunt, out)
            hunts.append(hunt)
            print(f"{engine} {name}: {hunt.status} ({hunt.cpu:.1f} CPU s)", file=sys.stderr,
                  flush=True)
    print(render(hunts, markdown=args.markdown))
    for line in throughput(hunts):
        print(line)
    print(f"repros in {out}")
    return 0


def register(sub: Any) -> None:
    """Add ``mutants`` to the ``mirrorfuzz`` subcommands."""
    parser = sub.add_parser("mutants", help="how fast each engine finds each planted bug")
    parser.add_argument("--engine", default="both", metavar="hypothesis|atheris|both",
                        help="which engines to run (default both)")
    parser.add_argument("--time", default="60", metavar="SECONDS",
                        help="budget per engine and mutant (default 60)")
    parser.add_argument("--mutant", action="append", default=None, metavar="NAME",
                        help="a mutant to hunt (repeatable; default all)")
    parser.add_argument("--seed", default="0", help="the engines' seed (default 0)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where the repros and working data go (default a new temp dir)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--list", action="store_true",
                        help="only list the planted bugs: what each breaks and imitates")
    from fuzz.plugins import add_option

    add_option(parser)
    parser.set_defaults(func=cmd)

