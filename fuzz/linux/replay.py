"""Linux as a third side: ``mirrorfuzz replay --linux`` and ``mirrorfuzz confirm``.

Sequential traces run in batches, one QEMU boot per batch, through the guest
runner (``linux/guest/mfrun.c``); each line's kernel result is compared with
the reference model's.  Traces with interleavings (``Tn =``, ``step``) run as
stress races on the KASAN kernel: the plain lines before the first ``Tn =``
once, then every later op looping in its own thread for a bounded time.  A
race is **confirmed** when the kernel prints a KASAN, BUG, WARN or oops report
during it, or when a racer gives a result the rule of ``fuzz.linux.provenance``
says is impossible (a word read at a page no op of the trace writes there, a
count larger than the range), else **not reproduced** in the counted
iterations.  ``--patch FILE``
runs them on the kernel built with those patches (``fuzz.linux.kernel``); the
verdicts name the kernel and its patches.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fuzz import validate
from fuzz.errors import BadInput
from fuzz.linux import deviations, export, kernel, provenance
from fuzz.trace import StepLine, Trace, format_step
from model.ops import RunThread, StepThread, op_keyword

BATCH: Final = 400
MAX_BATCH: Final = 100_000
"""The most traces one boot runs (``--batch``)."""
RACE_SECONDS: Final = 120.0


@dataclass
class RunOutput:
    """What the guest runner printed for one trace."""

    path: str
    results: list[str] = field(default_factory=list)
    status: str = "no end (the run was cut off)"
    races: list[str] = field(default_factory=list)
    race_seen: list[str] = field(default_factory=list)  # "# race-seen: " lines, unprefixed
    race_words: list[str] = field(default_factory=list)  # "# race-words: " lines, unprefixed


def parse_output(text: str) -> dict[str, RunOutput]:
    """The runner's output, by trace path."""
    runs: dict[str, RunOutput] = {}
    current: RunOutput | None = None
    for line in text.splitlines():
        if line.startswith("# trace: "):
            current = runs.setdefault(line[9:], RunOutput(line[9:]))
        elif current is None:
            continue
        elif line.startswith("# end: "):
            rest = line[7:]
            current.status = rest[len(current.path) + 1:] if rest.startswith(current.path) else rest
            current = None
        elif line.startswith("# race: "):
            current.races.append(line[8:])
        elif line.startswith("# race-seen: "):
            current.race_seen.append(line[13:])
        elif line.startswith("# race-words: "):
            current.race_words.append(line[14:])
        elif " => " in line:
            current.results.append(line.rsplit(" => ", 1)[1])
    return runs


STATUSES: Final = ("agree", "disagree", "refused", "error")
"""How the comparison of one trace with the kernel's run ended."""


@dataclass
class Comparison:
    path: str
    lines: int
    status: str  # one of STATUSES
    detail: list[str] = field(default_factory=list)
    linux: list[str] = field(default_factory=list)  # the kernel's result of each line run
    deviation: str | None = None  # a disagreement's Appendix D id, or "unexplained"


def compare(trace: Trace, run: RunOutput | None) -> Comparison:
    """The kernel's results against the model's, line by line."""
    steps = trace.steps
    if run is None:
        return Comparison(trace.path, len(steps), "error", ["the runner printed nothing"])
    model = export.model_results(trace)
    detail = []
    first = None
    for index, (line, want) in enumerate(zip(steps, model, strict=True), start=1):
        if index > len(run.results):
            break
        got = run.results[index - 1]
        if want is not None and got != want:
            text = format_step(StepLine(line.action, line.thread))
            detail.append(f"line {line.lineno or index}: {text}: Linux {got}, model {want}")
            first = index - 1 if first is None else first
    if run.status != "ok":
        kind = "refused" if run.status.startswith("refused") else "error"
        return Comparison(trace.path, len(steps), kind, [run.status, *detail], run.results)
    if first is None:
        return Comparison(trace.path, len(steps), "agree", [], run.results)
    case = deviations.case_of(trace, run.results, model, first)
    return Comparison(trace.path, len(steps), "disagree", detail, run.results,
                      deviations.attribute(case))


def _files(traces: list[Trace], prefix: str) -> tuple[dict[str, Path | bytes], dict[str, Trace]]:
    files: dict[str, Path | bytes] = {}
    names: dict[str, Trace] = {}
    for i, trace in enumerate(traces):
        name = f"{prefix}/{i:05d}.trace"
        files[name] = Path(trace.path).read_bytes() if Path(trace.path).is_file() else b""
        names["/" + name] = trace
    return files, names


def run_sequential(traces: list[Trace], kasan: bool, batch: int = BATCH,
                   out: Any = sys.stdout, patches: Sequence[kernel.Patch] = ()
                   ) -> tuple[list[Comparison], list[str]]:
    """Each trace on the kernel, ``batch`` per boot: the comparisons and the kernel reports.

    A trace after which the kernel printed a report (an oops leaves the kernel tainted
    and may leave locks held) ends its boot's results: the traces after it run again in
    a fresh boot."""
    built = kernel.find_kernel(kasan, patches)
    runner = kernel.guest_binary("mfrun")
    comparisons: list[Comparison] = []
    reports: list[str] = []
    pending = list(traces)
    boots = 0
    while pending:
        chunk = pending[:batch]
        files, names = _files(chunk, "t")
        files["mfrun"] = runner
        t0 = time.monotonic()
        result = kernel.boot(built, ["/mfrun --timeout 15 /t"], files,
                             60.0 + 3.0 * len(chunk), oops_panic=False)
        boots += 1
        runs = parse_output(result.output)
        reports += result.reports
        done = len(chunk)
        if result.reports:  # keep the results up to the first trace that did not end ok
            bad = [i for i, name in enumerate(names) if name not in runs
                   or runs[name].status != "ok"]
            done = bad[0] + 1 if bad else len(chunk)
        for name in list(names)[:done]:
            comparisons.append(compare(names[name], runs.get(name)))
        pending = pending[done:]
        print(f"# boot {boots} ({built.label}): {done} of {len(chunk)} traces in "
              f"{time.monotonic() - t0:.1f} s wall, {len(result.reports)} kernel reports"
              + (", TIMED OUT" if result.timed_out else ""), file=out, flush=True)
    return comparisons, reports


@dataclass
class RaceVerdict:
    path: str
    confirmed: bool
    reports: list[str]
    races: list[str]
    wall: float
    status: str
    console: str = ""
    kernel: str = "KASAN"  # the kernel's label: its variant and patches
    impossible: list[provenance.Impossible] = field(default_factory=list)
    note: str | None = None  # why the impossibility criterion may be incomplete
    words: int = 0  # distinct (racer, source, page, word) the guest reported, all judged


def race_problems(trace: Trace) -> list[tuple[int, str]]:
    """Why a race trace cannot run on Linux (its threads are fine)."""
    found = [p for p in export.problems(trace) if not p[1].startswith("threads")]
    racing = False
    for line in trace.steps:
        racing = racing or line.thread is not None
        if racing and not isinstance(line.action, StepThread | RunThread):
            key = op_keyword(line.action)
            if key in ("fork", "exit", "open"):
                found.append((line.lineno, f"'{key}' cannot loop in a stress race"))
    return found


def run_race(trace: Trace, kasan: bool, seconds: float,
             patches: Sequence[kernel.Patch] = ()) -> RaceVerdict:
    """The trace as a stress race on the kernel."""
    bad = race_problems(trace)
    if bad:
        raise BadInput(f"{trace.path}:{bad[0][0]}: cannot run on Linux: {bad[0][1]}")
    built = kernel.find_kernel(kasan, patches)
    files, names = _files([trace], "r")
    files["mfrun"] = kernel.guest_binary("mfrun")
    result = kernel.boot(built, [f"/mfrun --race {seconds:g} /r"], files, seconds + 120.0)
    run = parse_output(result.output).get(next(iter(names)))
    return race_verdict(trace, run, result.reports, result.wall, result.console, built.label)


def race_verdict(trace: Trace, run: RunOutput | None, reports: list[str], wall: float,
                 console: str = "", label: str = "KASAN") -> RaceVerdict:
    """The verdict on a race from the guest's output and the kernel's reports."""
    races = run.races if run else []
    status = run.status if run else "no output"
    report = provenance.parse(races, run.race_seen if run else [],
                              run.race_words if run else [])
    once = len(provenance.prefix(trace))
    impossible = provenance.judge(trace, report, run.results[:once] if run else [])
    return RaceVerdict(trace.path, bool(reports) or bool(impossible), reports, races, wall,
                       status, console, label, impossible,
                       provenance.coverage_note(trace, report), len(report.seen))


def print_race(verdict: RaceVerdict, out: Any = sys.stdout) -> None:
    for line in verdict.races:
        print(f"  race: {line}", file=out)
    kinds = Counter(re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", r) for r in verdict.reports)
    for text, count in kinds.most_common(5):
        print(f"  kernel report x{count}: {text}", file=out)
    for bad in verdict.impossible:
        times = f"seen {bad.count} times" if bad.count is not None else "count unknown"
        print(f"  impossible result of racer `{bad.line}` (trace line {bad.lineno}; {times}): "
              f"{bad.what}; the rule: {bad.why}", file=out)
    if verdict.words:
        print(f"  words judged: {verdict.words} distinct (racer, page, word) seen", file=out)
    if verdict.note:
        print(f"  note: {verdict.note}", file=out)
    runs = sum(int(m) for line in verdict.races for m in re.findall(r": (\d+) runs:", line))
    if verdict.status != "ok" and not verdict.confirmed:
        word = f"NOT RUN ({verdict.status})"
    else:
        word = ("CONFIRMED" if verdict.confirmed else "not reproduced") + (
            f" ({len(verdict.reports)} kernel reports, {len(verdict.impossible)} racer lines "
            f"with impossible results, in {runs} op runs)" if verdict.confirmed
            else f" in {runs} op runs (no kernel report, no impossible result)")
    print(f"{word}: {verdict.path} ({verdict.wall:.0f} s wall; kernel {verdict.kernel})",
          file=out)


def print_table(comparisons: list[Comparison], out: Any = sys.stdout) -> None:
    counts = Counter(c.status for c in comparisons)
    for c in comparisons:
        if c.status != "agree":
            print(f"{c.status.upper()}: {c.path}" + (f" ({c.deviation})" if c.deviation else ""),
                  file=out)
            for d in c.detail[:6]:
                print(f"    {d}", file=out)
    print("| traces | agree | disagree | refused | error |", file=out)
    print("|---|---|---|---|---|", file=out)
    print(f"| {len(comparisons)} | {counts['agree']} | {counts['disagree']} | "
          f"{counts['refused']} | {counts['error']} |", file=out)
    print_deviations(comparisons, out)


def print_deviations(comparisons: list[Comparison], out: Any = None) -> None:
    """The disagreements by the SPEC Appendix D deviation that explains them."""
    out = out or sys.stdout
    counts = Counter(c.deviation for c in comparisons if c.deviation is not None)
    for d in deviations.DEVIATIONS:
        if counts[d.id]:
            print(f"  {counts[d.id]:6d}  Appendix {d.id}: {d.title}", file=out)
    print(f"  {counts[deviations.UNEXPLAINED]:6d}  unexplained", file=out)


def unexplained(comparisons: list[Comparison]) -> int:
    """Traces that did not agree with no deviation to explain it (errors included)."""
    return sum(c.status != "agree" and c.deviation in (None, deviations.UNEXPLAINED)
               for c in comparisons)


def linux_replay(files: list[Path], kasan: bool, seconds: float, batch: int,
                 patch_files: Sequence[str] | None = None) -> int:
    from fuzz.safeio import load_trace

    patches = kernel.load_patches(patch_files)
    traces = [load_trace(p) for p in files]
    sequential: list[Trace] = []
    races: list[Trace] = []
    skipped: list[str] = []
    for trace in traces:
        race = export.is_race(trace)
        problems = race_problems(trace) if race else export.problems(trace)
        if problems:
            skipped.append(f"{'cannot run on Linux' if race else 'not exportable'}: "
                           f"{trace.path}:{problems[0][0]}: {problems[0][1]}")
        else:
            (races if race else sequential).append(trace)
    if not sequential and not races:
        raise BadInput(skipped[0] if skipped else "no traces to run on Linux")
    if sequential:  # the kernels needed, before anything runs
        kernel.find_kernel(kasan, patches)
    if races:
        kernel.find_kernel(True, patches)
    for line in skipped:
        print(line)
    found = 0
    if sequential:
        comparisons, reports = run_sequential(sequential, kasan, batch, patches=patches)
        print_table(comparisons)
        for report in reports:
            print(f"kernel report: {report}")
        found += unexplained(comparisons) + len(reports)
    for trace in races:
        try:
            verdict = run_race(trace, True, seconds, patches)
        except BadInput as exc:
            print(f"NOT RUN: {exc}")
            continue
        print_race(verdict)
        found += verdict.confirmed
    return 1 if found else 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from fuzz.corpus import trace_files
    from fuzz.linux.commands import write_log
    from fuzz.safeio import load_trace

    if args.console:
        validate.output_file(args.console, "--console")
    patches = kernel.load_patches(args.patch)
    paths = list(trace_files([args.file]))
    trace = load_trace(paths[0])
    t0 = time.monotonic()
    if export.is_race(trace):
        verdict = run_race(trace, True, args.seconds, patches)
        write_log(Path(args.console) if args.console else None, verdict.console)
        print_race(verdict)
        print(f"confirm: {time.monotonic() - t0:.0f} s wall")
        return 0 if verdict.confirmed else 1
    problems = export.problems(trace)
    if problems:
        raise BadInput(f"{trace.path}:{problems[0][0]}: cannot run on Linux: {problems[0][1]}")
    comparisons, reports = run_sequential([trace], True, patches=patches)
    print_table(comparisons)
    for report in reports:
        print(f"kernel report: {report}")
    confirmed = bool(reports) or comparisons[0].deviation == deviations.UNEXPLAINED
    print(f"{'CONFIRMED' if confirmed else 'not reproduced'}: {trace.path} "
          f"({time.monotonic() - t0:.0f} s wall; kernel {kernel.label(True, patches)})")
    return 0 if confirmed else 1


def register(sub: Any) -> None:
    conf = sub.add_parser("confirm", help="a repro in, a verdict out, on the KASAN kernel")
    conf.add_argument("file", help="a repro trace (a race runs as a stress test)")
    conf.add_argument("--seconds", type=validate.seconds_arg(3600), default=RACE_SECONDS,
                      metavar="S",
                      help=f"how long a race loops (default {RACE_SECONDS:g})")
    conf.add_argument("--console", default=None, metavar="FILE",
                      help="write the kernel console log of a race to FILE")
    from fuzz.linux.commands import add_patch_option

    add_patch_option(conf)
    conf.set_defaults(func=cmd_confirm)


def add_replay_options(replay: Any) -> None:
    """``replay --linux`` and its options (called by ``fuzz.cli``)."""
    replay.add_argument("--linux", action="store_true",
                        help="also run the traces on Linux 6.1 test_hmm under QEMU "
                             "(mirrorfuzz kernel build first)")
    replay.add_argument("--kasan", action="store_true",
                        help="with --linux: sequential traces on the KASAN kernel too")
    replay.add_argument("--race-seconds", type=validate.seconds_arg(3600), default=None,
                        metavar="S",
                        help=f"with --linux: how long each race loops (default {RACE_SECONDS:g})")
    replay.add_argument("--batch", type=validate.whole_arg(1, MAX_BATCH), default=BATCH,
                        metavar="N", help=f"with --linux: traces per boot (default {BATCH})")
    from fuzz.linux.commands import PATCH_HELP, add_patch_option

    add_patch_option(replay, "with --linux: " + PATCH_HELP)
