"""The ``mirrorfuzz`` command.

Exit status: 0 when every trace ran clean, 1 when a run found something (a
finding or an ``=> expected`` mismatch), 2 for bad input (a malformed trace,
a missing file, a bad argument) — reported as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from fuzz import impls
from fuzz.corpus import check_corpus, corpus_traces, write_atomic
from fuzz.errors import BadInput
from fuzz.executor import Settings, Verdict, run_trace
from fuzz.minimize import DEFAULT_MAX_RUNS, NoFinding, Stats, minimize_file
from fuzz.trace import Trace, TraceError, format_step, format_trace, load_trace
from model.bugs import UnknownBug

EXIT_OK, EXIT_FOUND, EXIT_BAD_INPUT = 0, 1, 2


def trace_files(paths: Sequence[str]) -> Iterator[Path]:
    """Each path, or every ``*.trace`` below a directory, in sorted order."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.rglob("*.trace"))
            if not found:
                raise BadInput(f"{name}: no *.trace files in this directory")
            yield from found
        elif path.is_file():
            yield path
        else:
            raise BadInput(f"{name}: no such file or directory")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def print_verdict(trace: Trace, verdict: Verdict, out: TextIO, *, verbose: bool) -> None:
    mismatched = {m.line: m for m in verdict.mismatches}
    finding = verdict.finding
    for entry in verdict.log:
        line = entry.step_line
        mark = "!!" if entry.line in mismatched else "  "
        if verbose or entry.line in mismatched:
            shown = format_step(line.__class__(line.action, line.thread, None))
            text = f"{mark}{entry.line:>5}  {shown} => {entry.results[0]}"
            if entry.line in mismatched:
                text += f"    (expected {mismatched[entry.line].expected})"
            print(text, file=out)
    if finding is not None:
        where = ("the drain" if finding.line > len(trace.steps)
                 else f"line {finding.line}")
        print(f"!! FINDING in {where}: {finding}", file=out)
    sides = "+".join(verdict.implementations)
    status = "ok" if verdict.ok else "FAILED"
    print(f"{status}: {trace.path}: {len(trace.steps)} lines, {verdict.steps} steps on {sides}, "
          f"{len(verdict.findings)} findings, {len(verdict.mismatches)} mismatches", file=out)


def cmd_replay(args: argparse.Namespace) -> int:
    sides = impls.sides(args.impl)
    settings = Settings(observe_every=args.observe_every, budget=args.budget,
                        mutant=args.mutant)
    traces = [load_trace(str(path)) for path in trace_files(args.files)]
    failed = 0
    for trace in traces:
        verdict = run_trace(trace, sides, settings)
        print_verdict(trace, verdict, sys.stdout, verbose=not args.quiet)
        failed += not verdict.ok
    if len(traces) > 1:
        print(f"{len(traces) - failed} of {len(traces)} traces clean")
    return EXIT_FOUND if failed else EXIT_OK


def default_output(path: Path) -> Path:
    """``x.trace`` -> ``x.min.trace`` (any other name gets ``.min.trace`` added)."""
    name = path.name.removesuffix(".trace") if path.name.endswith(".trace") else path.name
    return path.with_name(f"{name}.min.trace")


def cmd_minimize(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise BadInput(f"{args.file}: no such file")
    output = Path(args.output) if args.output else default_output(source)
    if not output.parent.is_dir():
        raise BadInput(f"{output}: no such directory")
    original = load_trace(str(source))
    sides = impls.sides(args.impl)
    settings = Settings(observe_every=1, budget=args.budget, mutant=args.mutant)
    stats = Stats()
    try:
        repro = minimize_file(source, sides, settings, max_runs=args.max_runs, stats=stats,
                              found_by=original.header("found-by") or "minimize")
    except NoFinding:
        names = "+".join(name for name, _ in sides)
        print(f"mirrorfuzz: {source}: no finding on {names}, nothing to minimize",
              file=sys.stderr)
        return EXIT_FOUND
    try:
        write_atomic(output, format_trace(repro))
    except OSError as exc:
        raise BadInput(f"{output}: cannot write: {exc.strerror or exc}") from None
    print(f"signature: {stats.signature}")
    print(f"step lines: {stats.lines_before} -> {stats.lines_after} "
          f"({stats.runs} runs{', run limit reached' if stats.exhausted else ''})")
    print(f"wrote {output}")
    return EXIT_OK


def cmd_corpus_check(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        raise BadInput(f"{args.dir}: no such directory")
    problems = check_corpus(root)
    for problem in problems:
        print(problem)
    total = len(corpus_traces(root))
    bad = len({p.path for p in problems})
    if problems:
        print(f"{len(problems)} problems in {bad} of {total} traces")
        return EXIT_FOUND
    print(f"corpus ok: {total} traces")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mirrorfuzz",
        description="Fuzz MMU-notifier pipelines: a reference model against an optimized one.")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="run traces and check every step and expectation")
    replay.add_argument("files", nargs="+", help="trace files or directories of *.trace")
    replay.add_argument("--impl", default="auto",
                        choices=["auto", "both", *impls.IMPLEMENTATIONS],
                        help="which implementations to run (auto: every one available)")
    replay.add_argument("--observe-every", type=_positive, default=1, metavar="K",
                        help="compare observations every K steps not blocked (0: never; default 1)")
    replay.add_argument("--budget", type=_positive, default=Settings.budget,
                        help="page operations one step may do")
    replay.add_argument("--mutant", default=None, help="switch on a planted bug by name")
    replay.add_argument("-q", "--quiet", action="store_true",
                        help="print only mismatched lines, findings and the summary")
    replay.set_defaults(func=cmd_replay)

    mini = sub.add_parser("minimize", help="shrink a trace to a small one with the same finding")
    mini.add_argument("file", help="a trace file with a finding")
    mini.add_argument("-o", "--output", default=None, metavar="OUT",
                      help="where to write the repro (default: FILE with .min.trace)")
    mini.add_argument("--impl", default="auto", choices=["auto", "both", *impls.IMPLEMENTATIONS],
                      help="which implementations to run (auto: every one available)")
    mini.add_argument("--budget", type=_positive, default=Settings.budget,
                      help="page operations one step may do")
    mini.add_argument("--mutant", default=None, help="switch on a planted bug by name")
    mini.add_argument("--max-runs", type=_positive, default=DEFAULT_MAX_RUNS, metavar="N",
                      help=f"stop after N trace runs (default {DEFAULT_MAX_RUNS})")
    mini.set_defaults(func=cmd_minimize)

    corpus = sub.add_parser("corpus", help="corpus tools")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    check = corpus_sub.add_parser("check", help="validate every trace of a corpus")
    check.add_argument("dir", nargs="?", default="corpus",
                       help="the corpus directory (default: corpus)")
    check.set_defaults(func=cmd_corpus_check)
    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """The ``register(subparsers)`` of each command that lives in its own module."""
    from fuzz.campaign.cli import register as campaign
    from fuzz.campaign.commands import register as report_and_promote
    from fuzz.mutants_table import register as mutants

    return [campaign, report_and_promote, mutants]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (BadInput, TraceError, impls.UnknownImplementation, UnknownBug) as exc:
        print(f"mirrorfuzz: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("mirrorfuzz: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
