"""The ``mirrorfuzz`` command.

Exit status: 0 when every trace ran clean, 1 when a run found something (a
finding or an ``=> expected`` mismatch), 2 for bad input (a malformed trace,
a missing file, a bad argument, a file that cannot be written) — reported as
one line ``mirrorfuzz: error: ...`` on stderr, argparse's own errors
included, never a traceback.  An internal error (a bug in mirrorfuzz) is one
line ``mirrorfuzz: internal error: ...`` and exit 3, never 1 (which means
"found something"); ``MIRRORFUZZ_TRACEBACK=1`` shows its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from fuzz import contracts, impls, plugins, validate
from fuzz.corpus import check_corpus, corpus_traces, trace_files
from fuzz.damage import annotate
from fuzz.errors import BadInput, check_mutant, one_line
from fuzz.executor import Settings, Verdict, run_trace
from fuzz.linux.replay import RACE_SECONDS, add_replay_options
from fuzz.minimize import DEFAULT_MAX_RUNS, NoFinding, Stats, minimize_file
from fuzz.safeio import describe, load_trace, write_atomic
from fuzz.trace import Trace, TraceError, format_step, format_trace

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

EXIT_OK, EXIT_FOUND, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _positive(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= validate.MAX_DIGITS):
        raise argparse.ArgumentTypeError(
            f"expected a whole number >= 0 of at most {validate.MAX_DIGITS} digits, "
            f"got {one_line(text, 40)!r}")
    return int(value)


class Parser(argparse.ArgumentParser):
    """argparse with errors in the one ``mirrorfuzz: error: ...`` style (exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{message} (see {self.prog} --help)")

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        """As argparse's, but a failed write is an error, not silence."""
        (file or sys.stdout).write(self.format_help())


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
    if verdict.broken is not None:
        print(f"contract: line {verdict.broken.line} ({verdict.broken.op}) breaks the "
              f"registration-cache contract: {verdict.broken.reason}; "
              f"{len(verdict.excused)} contract violation(s) after it", file=out)
    sides = "+".join(verdict.implementations)
    status = "ok" if verdict.ok else "FAILED"
    print(f"{status}: {trace.path}: {len(trace.steps)} lines, {verdict.steps} steps on {sides}, "
          f"{len(verdict.findings)} findings, {len(verdict.mismatches)} mismatches", file=out)


def cmd_replay(args: argparse.Namespace) -> int:
    check_mutant(args.mutant)
    if args.patch and not args.linux:
        raise BadInput("--patch needs --linux (it names the kernel's patches)")
    if args.kasan and not args.linux:
        raise BadInput("--kasan needs --linux (it picks the kernel the traces run on)")
    if args.race_seconds is not None and not args.linux:
        raise BadInput("--race-seconds needs --linux (it is how long a race loops on Linux)")
    if args.linux:  # Linux as a third side (fuzz.linux.replay)
        from fuzz.linux.replay import linux_replay

        return linux_replay(list(trace_files(args.files)), args.kasan,
                            args.race_seconds or RACE_SECONDS,
                            args.batch, args.patch)
    sides = impls.sides(args.impl)
    settings = Settings(observe_every=args.observe_every, budget=args.budget,
                        mutant=args.mutant, contract=args.contract)
    traces = [load_trace(path) for path in trace_files(args.files)]
    for trace in traces:
        plugins.check_headers(trace.headers, str(trace.path))
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
    check_mutant(args.mutant)
    source = Path(args.file)
    what = describe(source)
    if what != "a regular file":
        raise BadInput(f"{args.file}: " + ("no such file" if what == "absent"
                                           else f"{what}, not a trace file"))
    # (-o naming the input itself minimizes it in place: the user said so)
    output = validate.output_file(
        str(default_output(source)) if args.output is None else args.output, "--output")
    original = load_trace(source)
    plugins.check_headers(original.headers, str(source))
    sides = impls.sides(args.impl)
    settings = Settings(observe_every=args.observe_every, budget=args.budget,
                        mutant=args.mutant, contract=args.contract)
    stats = Stats()
    try:
        repro = minimize_file(source, sides, settings, max_runs=args.max_runs, stats=stats,
                              found_by=original.header("found-by") or "minimize")
    except NoFinding:
        names = "+".join(name for name, _ in sides)
        print(f"mirrorfuzz: {source}: no finding on {names}, nothing to minimize",
              file=sys.stderr)
        return EXIT_FOUND
    repro = annotate(repro, sides, settings)  # the first state difference, the consequence
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
    what = describe(root)
    if what != "a directory":
        raise BadInput(f"{args.dir}: " + ("no such directory" if what == "absent"
                                          else f"{what}, not a directory"))
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


def cmd_corpus_compact(args: argparse.Namespace) -> int:
    from fuzz.compact import compact_files

    paths = list(trace_files(args.files))
    for trace in [load_trace(path) for path in paths]:  # every file parses before any is written
        plugins.check_headers(trace.headers, str(trace.path))
    for path, (before, after) in zip(paths, compact_files([Path(p) for p in paths]),
                                     strict=True):
        print(f"{path}: {before} -> {after} step lines")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    _contract_option(replay)
    replay.add_argument("-q", "--quiet", action="store_true",
                        help="print only mismatched lines, findings and the summary")
    plugins.add_option(replay)
    add_replay_options(replay)
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
    _contract_option(mini)
    mini.add_argument("--max-runs", type=_positive, default=DEFAULT_MAX_RUNS, metavar="N",
                      help=f"stop after N trace runs (default {DEFAULT_MAX_RUNS})")
    mini.add_argument("--observe-every", type=_positive, default=1, metavar="K",
                      help="judge as an engine observing every K steps does, keeping the "
                           "signature it found (0: only at the end; default 1)")
    plugins.add_option(mini)
    mini.set_defaults(func=cmd_minimize)

    corpus = sub.add_parser("corpus", help="corpus tools")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    check = corpus_sub.add_parser("check", help="validate every trace of a corpus")
    check.add_argument("dir", nargs="?", default="corpus",
                       help="the corpus directory (default: corpus)")
    check.set_defaults(func=cmd_corpus_check)
    compact = corpus_sub.add_parser(
        "compact", help="rewrite runs of single-page reads and writes as range accesses "
                        "(each file only if both versions replay clean)")
    compact.add_argument("files", nargs="+", help="trace files or directories of *.trace")
    compact.set_defaults(func=cmd_corpus_compact)
    for register in _extra_commands():
        register(sub)
    return parser


def _contract_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contract", default=contracts.DEFAULT, choices=list(contracts.CONTRACTS),
                        help="what a finding breaks: hmm (default; every finding counts) or "
                             "registration-cache (remapping a range with device work in flight "
                             "is userspace's error: docs/the-2019-argument.md)")


def _extra_commands() -> list[Callable[[Any], None]]:
    """The ``register(subparsers)`` of each command that lives in its own module."""
    from fuzz.campaign.cli import register as campaign
    from fuzz.campaign.commands import register as report_and_promote
    from fuzz.compare import register as compare
    from fuzz.linux.commands import register as linux
    from fuzz.mutants_table import register as mutants

    return [campaign, report_and_promote, mutants, compare, linux]


def no_empty_arguments(argv: Sequence[str]) -> None:
    """An empty argument is a mistake (an unset shell variable), never a
    value: as a path it would mean the working directory."""
    for i, token in enumerate(argv):
        if token == "" or (token.startswith("--") and token.endswith("=")):
            flag = token[:-1] if token else (argv[i - 1] if i and argv[i - 1].startswith("-")
                                              else f"argument {i + 1}")
            raise BadInput(f"{flag}: an empty value")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        if sys.stdout is None:  # (closed: every line printed would be lost)
            raise BadInput("standard output is closed")
        no_empty_arguments(sys.argv[1:] if argv is None else argv)
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:  # --help (and --version): printed; say if it could not be
            sys.stdout.flush()
            raise
        plugins.load_for(getattr(args, "driver", None))
        code: int = args.func(args)
        sys.stdout.flush()  # (a full disk shows here, not after the exit status)
    except (BadInput, TraceError, impls.UnknownImplementation, plugins.DriverLoadError) as exc:
        print(f"mirrorfuzz: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("mirrorfuzz: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the disk, not the program: say which file and why
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mirrorfuzz: error: {one_line(where + (exc.strerror or str(exc)))}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        if os.environ.get("MIRRORFUZZ_TRACEBACK"):
            import traceback

            traceback.print_exc()
        print(f"mirrorfuzz: internal error: {type(exc).__name__}: {one_line(str(exc), 300)} "
              "(a bug in mirrorfuzz; MIRRORFUZZ_TRACEBACK=1 shows where)", file=sys.stderr)
        return EXIT_INTERNAL
    return code


if __name__ == "__main__":
    sys.exit(main())
