"""Generated sequential traces for Linux: ``mirrorfuzz kernel fuzz``.

A trace decoded from random bytes (``fuzz.codec.random_trace``) is projected
onto the exportable subset: thread lines become plain ops (``step``/``run``
lines go), ops with no Linux counterpart and lines outside the model's
argument ranges or the runner's window go, ``frames`` headers go, and the
handles are renumbered.  Each batch of traces runs in one boot; every line's
kernel result is compared with the reference model's, and the disagreements
are grouped by op and result kinds.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

from fuzz.codec import random_trace
from fuzz.errors import BadInput
from fuzz.linux import export
from fuzz.linux.kernel import find_kernel, load_patches
from fuzz.linux.replay import (
    MAX_BATCH,
    STATUSES,
    Comparison,
    RunOutput,
    compare,
    print_deviations,
    run_sequential,
    unexplained,
)
from fuzz.trace import StepLine, Trace, format_trace, make_trace
from fuzz.validate import whole_arg
from model.ops import RunThread, StepThread, op_keyword


def project(trace: Trace) -> Trace | None:
    """The trace's Linux-runnable lines as a sequential trace (None if none is left)."""
    kept: list[StepLine] = []
    mirrors = 0
    for line in trace.steps:
        if isinstance(line.action, StepThread | RunThread):
            continue
        if export.line_problem(line.action, mirrors) is not None:
            continue
        if op_keyword(line.action) == "open":
            mirrors += 1
        kept.append(StepLine(line.action))
    if not kept:
        return None
    return make_trace(kept)


MAX_TRACES: Final = 100_000
"""The most traces one ``kernel fuzz`` run generates (each is a file in --workdir)."""
MAX_STEPS: Final = 1_000
"""The most lines decoded per generated trace."""


def generate(count: int, seed: int, steps: int) -> list[Trace]:
    rng = random.Random(seed)
    out: list[Trace] = []
    while len(out) < count:
        projected = project(random_trace(rng, steps, 2))
        if projected is not None and export.exportable(projected):
            out.append(projected)
    return out


def _kind(result: str) -> str:
    head = result.split()[0] if result else "?"
    return head if head in ("values", "snap", "ok") or not re.fullmatch(r"-?\d+", head) else "INT"


def classify(comparisons: list[Comparison]) -> Counter[str]:
    """First disagreement of each trace, as ``op: Linux KIND, model KIND``."""
    classes: Counter[str] = Counter()
    for c in comparisons:
        if c.status != "disagree":
            continue
        m = re.match(r"line \d+: (\S+).*: Linux (.*), model (.*)$", c.detail[0])
        if m:
            classes[f"{m.group(1)}: Linux {_kind(m.group(2))}, model {_kind(m.group(3))}"] += 1
    return classes


def summary(comparisons: list[Comparison], reports: list[str], t0: float) -> int:
    """Print the counts, the classes and the deviations; the exit status."""
    counts = Counter(c.status for c in comparisons)
    lines = sum(c.lines for c in comparisons)
    print(f"traces: {len(comparisons)} ({lines} lines): agree {counts['agree']}, disagree "
          f"{counts['disagree']}, refused {counts['refused']}, error {counts['error']}; "
          f"{len(reports)} kernel reports; {time.monotonic() - t0:.0f} s wall")
    for text, n in classify(comparisons).most_common():
        print(f"  {n:6d}  {text}")
    print("disagreements by deviation (SPEC Appendix D):")
    print_deviations(comparisons)
    return 1 if unexplained(comparisons) or reports else 0


def cmd_kernel_fuzz(args: argparse.Namespace) -> int:
    save = Path(args.save) if args.save else None
    if save is not None and not save.is_dir():
        raise BadInput(f"--save {args.save}: not a directory")
    patches = load_patches(args.patch)
    find_kernel(args.kasan, patches)  # before anything is generated or written
    t0 = time.monotonic()
    traces = generate(args.traces, args.seed, args.steps)
    tmp = Path(args.workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    named = []
    for i, trace in enumerate(traces):
        path = tmp / f"gen-{args.seed}-{i:06d}.trace"
        path.write_text(format_trace(trace))
        named.append(Trace(trace.headers, trace.body, str(path)))
    print(f"# {len(named)} traces generated in {time.monotonic() - t0:.1f} s", flush=True)
    comparisons, reports = run_sequential(named, args.kasan, args.batch, patches=patches)
    with (tmp / f"linux-{args.seed}.jsonl").open("w") as fh:  # for `kernel attribute`
        for c in comparisons:
            saved: dict[str, Any] = {"path": c.path, "status": c.status, "linux": c.linux}
            if c.status in ("error", "refused"):  # the runner's end status, or why none
                saved["end"] = c.detail[0] if c.detail else ""
            fh.write(json.dumps(saved) + "\n")
    status = summary(comparisons, reports, t0)
    if save is not None:
        notes = []
        for c in comparisons:
            if c.status != "agree":
                Path(c.path).replace(save / Path(c.path).name)
                notes += [f"{Path(c.path).name}: {c.status} {c.deviation or ''}",
                          *(f"    {d}" for d in c.detail[:3])]
        with (save / "disagreements.txt").open("a") as fh:
            fh.write("".join(n + "\n" for n in notes))
    for report in reports[:20]:
        print(f"kernel report: {report}")
    return status


def cmd_kernel_attribute(args: argparse.Namespace) -> int:
    """The saved kernel results of ``kernel fuzz`` runs, compared with the model again."""
    from fuzz.safeio import load_trace, read_text

    t0 = time.monotonic()
    comparisons = []
    runs: list[RunOutput] = []
    for name in args.results:
        lines = read_text(Path(name)).splitlines()
        if not lines:
            raise BadInput(f"{name}: no kernel fuzz result lines")
        runs += (_saved_run(line, f"{name}:{n}") for n, line in enumerate(lines, start=1))
    traces = [load_trace(Path(run.path)) for run in runs]  # every one read before any is judged
    comparisons = [compare(trace, run) for trace, run in zip(traces, runs, strict=True)]
    if args.list:
        for c in comparisons:
            if c.status == "disagree" and (args.list == "all" or c.deviation == args.list):
                print(f"{c.path} ({c.deviation}): {c.detail[0]}")
    return summary(comparisons, [], t0)


def _saved_run(line: str, where: str) -> RunOutput:
    """One line of a ``linux-SEED.jsonl`` (``kernel fuzz``): the trace's path,
    the kernel's result of each line, and how the comparison ended."""
    try:
        saved = json.loads(line)
        path, linux, status = saved["path"], saved["linux"], saved["status"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{where}: not a kernel fuzz result line ({exc})") from None
    if not (isinstance(path, str) and path and isinstance(linux, list)
            and all(isinstance(word, str) for word in linux) and status in STATUSES):
        raise BadInput(f"{where}: not a kernel fuzz result line (a path, the kernel's results "
                       f"as strings and a status: {', '.join(STATUSES)})")
    return RunOutput(path, linux, "ok" if status in ("agree", "disagree") else "error")


def register(ksub: Any) -> None:
    from fuzz.linux.commands import add_patch_option

    kf = ksub.add_parser("fuzz", help="generated sequential traces on Linux, against the model")
    kf.add_argument("--traces", type=whole_arg(1, MAX_TRACES), default=1000, metavar="N",
                    help="how many (1000)")
    kf.add_argument("--seed", type=whole_arg(0, 2**64 - 1), default=0, help="random seed (0)")
    kf.add_argument("--steps", type=whole_arg(1, MAX_STEPS), default=24, metavar="K",
                    help="lines decoded per trace before projection (24)")
    kf.add_argument("--batch", type=whole_arg(1, MAX_BATCH), default=500, metavar="B",
                    help="traces per boot (500)")
    kf.add_argument("--kasan", action="store_true", help="on the KASAN kernel")
    add_patch_option(kf)
    kf.add_argument("--workdir", default="work/linux-fuzz", help="where the traces are written")
    kf.add_argument("--save", default=None, metavar="DIR",
                    help="move the traces that disagree into DIR")
    kf.set_defaults(func=cmd_kernel_fuzz)
    ka = ksub.add_parser("attribute", help="compare saved kernel fuzz results with the model "
                         "again, by deviation (no kernel needed)")
    ka.add_argument("results", nargs="+", metavar="FILE",
                    help="linux-SEED.jsonl files that kernel fuzz wrote in its --workdir")
    ka.add_argument("--list", default=None, metavar="ID",
                    help="list the disagreeing traces attributed to ID ('unexplained', 'D7', "
                         "...; 'all')")
    ka.set_defaults(func=cmd_kernel_attribute)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
