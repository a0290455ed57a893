"""Coverage of ``model/`` reached by the corpus.

Run ``python -m bench.coverage_corpus [--branch] [DIR_OR_TRACE ...]`` (default
``corpus``).  Every ``*.trace`` below the given directories is replayed on both
implementations in lockstep (``fuzz.executor.run_trace`` on
``impls.sides("both")`` with the default ``Settings``: observations compared
every step, invariant checks on, as ``mirrorfuzz replay`` does) under
coverage.py, ``Coverage(source=["model"], branch=...)``.  The report gives
the line coverage (and with ``--branch`` the branch coverage) of ``model/``
overall, of ``model/reference`` and ``model/optimized`` separately, and the
least-covered files (``--least K``, default 10).

The measurement runs in a fresh interpreter (``sys.executable``, the checkout
as working directory), so that ``model`` is imported only once coverage has
started: module-level lines count the same whoever calls ``main`` (a test
process that already imported ``model`` included) and the figures are
reproducible.  ``config_file=False``: no ``.coveragerc`` changes them, and no
``.coverage`` data file is written.

A trace with a finding or a mismatch still counts (its lines ran); the
number of such traces is printed, since the corpus is meant to be clean.
``--limit N`` replays only the first N traces in sorted order (the quick mode
the unit test uses); ``--missing FILE`` prints the missing lines (and with
``--branch`` the missing branch arcs) of files whose path contains FILE;
``--json OUT`` writes the figures.

Bad input is one line on stderr and exit 2, found before the run (as
``mirrorfuzz replay`` finds it): every argument, the ``--json`` target
(absent or a regular file, in an existing directory), and every trace to be
replayed, each read as a regular file with a size bound (``fuzz.safeio``: a
FIFO or a device is refused, never opened) and parsed.  A trace whose
``# driver:`` header names a driver plug-in replays only with that driver
loaded, ``--driver FILE`` (or ``$MIRRORFUZZ_DRIVERS``) as for ``mirrorfuzz
replay``; the measuring interpreter loads the same files once coverage has
started.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bench.cli import (
    Parser,
    count,
    fail,
    output_file,
    parse_or_status,
    shown,
    write_output,
)

if TYPE_CHECKING:
    from fuzz.trace import TraceError

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m bench.coverage_corpus"
GROUPS = ("model", "model/reference", "model/optimized")
CHILD = "import sys; from bench.coverage_corpus import _child; sys.exit(_child(sys.argv[1:]))"


@dataclass
class Figures:
    """Statement and branch counts of a file or a group of files."""

    statements: int = 0
    missing: int = 0
    branches: int = 0
    missing_branches: int = 0
    files: int = 0

    def add(self, other: Figures) -> None:
        self.statements += other.statements
        self.missing += other.missing
        self.branches += other.branches
        self.missing_branches += other.missing_branches
        self.files += other.files

    @property
    def line_pct(self) -> float:
        return 100.0 * (self.statements - self.missing) / self.statements \
            if self.statements else 100.0

    @property
    def branch_pct(self) -> float:
        return 100.0 * (self.branches - self.missing_branches) / self.branches \
            if self.branches else 100.0


# ---------------------------------------------------------------- the measuring child


def _child(argv: list[str]) -> int:
    """In the fresh interpreter: measure, write coverage.py's JSON report to argv[0].

    argv = OUT BRANCH(0|1) TRACE...  Prints ``traces N dirty M`` on stdout."""
    out, branch, files = argv[0], argv[1] == "1", argv[2:]
    early = sorted(m for m in sys.modules if m == "model" or m.startswith("model."))
    if early:
        print(f"model imported before coverage started: {early}", file=sys.stderr)
        return 2
    import coverage

    cov = coverage.Coverage(source=[str(ROOT / "model")], branch=branch, data_file=None,
                            config_file=False)
    cov.start()
    try:
        from fuzz.executor import Settings, run_trace
        from fuzz.impls import sides
        from fuzz.plugins import load_for
        from fuzz.safeio import load_trace

        load_for(None)  # the parent's drivers ($MIRRORFUZZ_DRIVERS), measured like model
        both = sides("both")
        dirty = 0
        for name in files:
            verdict = run_trace(load_trace(name), both, Settings())
            dirty += not verdict.ok
    finally:
        cov.stop()
    cov.json_report(outfile=out)
    print(f"traces {len(files)} dirty {dirty}")
    return 0


# ---------------------------------------------------------------- the parent


@dataclass
class Report:
    traces: int
    dirty: int
    branch: bool
    groups: dict[str, Figures]
    files: dict[str, Figures]
    missing_lines: dict[str, list[int]]
    missing_arcs: dict[str, list[list[int]]]


def trace_paths(paths: Sequence[str]) -> list[Path]:
    """Each file, or every ``*.trace`` below a directory, in sorted order;
    :class:`~fuzz.errors.BadInput` (one line) for a path that is neither, a
    directory that cannot be listed or holds no trace."""
    from fuzz.corpus import trace_files
    from fuzz.errors import BadInput

    for name in paths:
        if not name or "\0" in name:
            raise BadInput(f"{name!r}: not a path")
    return list(trace_files(paths))


def load_traces(files: Sequence[Path]) -> list[Any]:
    """Every file read (a regular file, with a size bound: ``fuzz.safeio``)
    and parsed, and every driver its ``# driver:`` header names loaded
    (``--driver``), as ``mirrorfuzz replay`` checks them: before any is run.
    A :class:`~fuzz.trace.TraceError` or
    :class:`~fuzz.plugins.DriverLoadError` (one line) names the first bad file."""
    from fuzz.plugins import check_headers
    from fuzz.safeio import load_trace
    from fuzz.trace import TraceError

    traces = []
    for path in files:
        try:
            trace = load_trace(path)
        except TraceError as exc:
            _check_driver_headers(path, exc)
            raise
        check_headers(trace.headers, str(path))
        traces.append(trace)
    return traces


def _check_driver_headers(path: Path, exc: TraceError) -> None:
    """For a trace that does not parse: the ``DriverLoadError`` of its
    headers, if they name a driver not loaded (the likelier cause of an
    unknown op or device kind further down)."""
    from fuzz.errors import BadInput
    from fuzz.plugins import check_headers
    from fuzz.safeio import read_text
    from fuzz.trace import TraceError, parse_trace

    if exc.lineno <= 1:
        return
    try:
        head = read_text(path).split("\n")[: exc.lineno - 1]
        trace = parse_trace("\n".join(head) + "\n", str(path))
    except (TraceError, BadInput, ValueError):
        return
    check_headers(trace.headers, str(path))


def measure(files: Sequence[Path], branch: bool) -> Report:
    """Run the child on ``files`` and read its report (the child loads the
    driver files of ``$MIRRORFUZZ_DRIVERS``, which ``plugins.load_for`` set)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(out), "1" if branch else "0",
             *(str(f.resolve()) for f in files)],
            cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"coverage run failed ({done.returncode}): "
                               f"{done.stderr.strip()[-2000:]}")
        data: dict[str, Any] = json.loads(out.read_text())
    counts = done.stdout.split()
    traces, dirty = int(counts[counts.index("traces") + 1]), int(counts[counts.index("dirty") + 1])
    if traces != len(files):
        raise RuntimeError(f"coverage run replayed {traces} traces, not {len(files)}")
    files_fig: dict[str, Figures] = {}
    missing_lines: dict[str, list[int]] = {}
    missing_arcs: dict[str, list[list[int]]] = {}
    for name, entry in data["files"].items():
        rel = Path(name).resolve().relative_to(ROOT).as_posix()
        s = entry["summary"]
        files_fig[rel] = Figures(int(s["num_statements"]), int(s["missing_lines"]),
                                 int(s.get("num_branches", 0)), int(s.get("missing_branches", 0)),
                                 1)
        missing_lines[rel] = [int(v) for v in entry.get("missing_lines", [])]
        missing_arcs[rel] = [[int(a), int(b)] for a, b in entry.get("missing_branches", [])]
    groups = {g: Figures() for g in GROUPS}
    for rel, fig in files_fig.items():
        for g in GROUPS:
            if rel.startswith(g + "/"):
                groups[g].add(fig)
    return Report(traces, dirty, branch, groups, files_fig, missing_lines, missing_arcs)


def _row(name: str, fig: Figures, branch: bool) -> str:
    text = f"{name:<34} {fig.statements:>6} {fig.missing:>6} {fig.line_pct:>6.1f}%"
    if branch:
        text += f" {fig.branches:>6} {fig.missing_branches:>6} {fig.branch_pct:>6.1f}%"
    return text


def _header(first: str, branch: bool) -> str:
    text = f"{first:<34} {'stmts':>6} {'miss':>6} {'line':>7}"
    if branch:
        text += f" {'branch':>6} {'bmiss':>6} {'branch':>7}"
    return text


def least_covered(report: Report, k: int) -> list[tuple[str, Figures]]:
    """The k files with the lowest coverage (line%, then branch%, then name)."""
    def key(item: tuple[str, Figures]) -> tuple[float, float, str]:
        name, fig = item
        return (fig.line_pct, fig.branch_pct if report.branch else 0.0, name)
    return sorted(report.files.items(), key=key)[:k]


def print_report(report: Report, least: int, missing: Sequence[str], out: TextIO) -> None:
    kind = "line and branch" if report.branch else "line"
    print(f"{kind} coverage of model/ by {report.traces} traces replayed on "
          f"reference+optimized ({report.dirty} with a finding or mismatch)", file=out)
    print("", file=out)
    print(_header("group", report.branch), file=out)
    for g in GROUPS:
        print(_row(g + "/", report.groups[g], report.branch), file=out)
    print("", file=out)
    print(f"{least} least-covered files", file=out)
    print(_header("file", report.branch), file=out)
    for name, fig in least_covered(report, least):
        print(_row(name, fig, report.branch), file=out)
    for pattern in missing:
        for name in sorted(report.files):
            if pattern in name:
                print("", file=out)
                print(f"missing in {name}: lines {_ranges(report.missing_lines[name])}",
                      file=out)
                if report.branch:
                    arcs = " ".join(f"{a}->{b}" for a, b in report.missing_arcs[name])
                    print(f"missing in {name}: arcs {arcs or '-'}", file=out)


def _ranges(values: Sequence[int]) -> str:
    """``1 2 3 7`` -> ``1-3 7``."""
    parts: list[str] = []
    start = prev = None
    for v in list(values) + [None]:
        if v is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = v
    return " ".join(parts) or "-"


def _pattern(text: str) -> str:
    """A ``--missing`` pattern: part of the path of some file of ``model/``."""
    if not text:
        raise argparse.ArgumentTypeError("an empty pattern (part of a path under model/)")
    if not any(text in p.relative_to(ROOT).as_posix() for p in (ROOT / "model").rglob("*.py")):
        raise argparse.ArgumentTypeError(f"{shown(text)} is part of no path of a file "
                                         "of model/ (e.g. model/optimized/mmu_notifier.py)")
    return text


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; a bad one is one line on stderr and ``SystemExit(2)``."""
    from fuzz import plugins

    parser = Parser(
        prog=PROG,
        description="line (and branch) coverage of model/ reached by replaying the corpus")
    parser.add_argument("paths", nargs="*", default=["corpus"],
                        help="trace files or directories of *.trace (default: corpus)")
    parser.add_argument("--branch", action="store_true", help="measure branch coverage too")
    parser.add_argument("--least", type=count(0), default=10,
                        help="how many least-covered files")
    parser.add_argument("--limit", type=count(0), default=0,
                        help="replay only the first N traces (0: all)")
    parser.add_argument("--missing", action="append", default=[], metavar="FILE", type=_pattern,
                        help="print the missing lines of files whose path contains FILE")
    parser.add_argument("--json", metavar="OUT", type=output_file,
                        help="write the figures as JSON")
    plugins.add_option(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    from fuzz import plugins
    from fuzz.errors import BadInput
    from fuzz.plugins import DriverLoadError
    from fuzz.trace import TraceError

    args = parse_or_status(parse, argv)
    if isinstance(args, int):
        return args
    try:  # every input checked before the run: paths, drivers, every trace
        files = trace_paths(args.paths)
        if args.limit > 0:
            files = files[: args.limit]
        plugins.load_for(args.driver)  # (and exported to the measuring child)
        load_traces(files)
    except TraceError as exc:
        where = f"{exc.path}:{exc.lineno}" if exc.lineno else exc.path
        return fail(PROG, f"{where}: {exc.message}")
    except (BadInput, DriverLoadError) as exc:
        return fail(PROG, str(exc))
    report = measure(files, args.branch)
    print_report(report, args.least, args.missing, out)
    if args.json is not None:
        data = {
            "traces": report.traces, "dirty": report.dirty, "branch": report.branch,
            "groups": {g: {**asdict(f), "line_pct": round(f.line_pct, 2),
                           "branch_pct": round(f.branch_pct, 2)}
                       for g, f in report.groups.items()},
            "files": {n: asdict(f) for n, f in sorted(report.files.items())},
        }
        return write_output(PROG, args.json, json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
