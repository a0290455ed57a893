"""``mirrorfuzz compare``: the same workloads through each driver design,
judged under each contract, with what each design costs.

For every driver file (default: every ``examples/drivers/*.py``), loaded
alone: its own seed traces (``examples/drivers/<name>/*.trace``), then
generated traces, trace *i* decoded from the bytes of ``Random(f"{seed}/{i}")``
for every driver alike, with the built-in kinds' device lines deleted
(``fuzz.edit.delete_steps``), so that each design meets the same CPU op
stream through its own ops.  Each trace runs once on both sides under the
registration-cache contract; its verdict gives both contracts' answers (a
finding after userspace broke that contract is, under ``hmm``, a finding,
and under ``registration-cache``, a contract violation: ``fuzz/contracts.py``).

Reported per driver and contract: distinct findings and the CPU seconds to
the first; per driver, the costs the reference counted
(``model.reference.state.State.costs``) per 1,000 steps.  On the terminal
as tables, and in ``--out DIR`` as ``compare.json`` and ``compare.html``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import Any, Final

from fuzz import codec, contracts, impls, plugins, validate
from fuzz.campaign.plots import CSS, Series, line_chart
from fuzz.edit import delete_steps, op_of
from fuzz.errors import BadInput
from fuzz.executor import Verdict, run_trace
from fuzz.profiles import ATHERIS
from fuzz.safeio import describe, write_all_atomic
from fuzz.trace import Trace, format_trace, load_trace, with_headers
from fuzz.validate import duration
from model import bugs
from model.decl import SCHEMA_BY_CLASS, device_kinds
from model.driver import PLUGINS
from model.ops import Open

ROOT: Final = Path(__file__).resolve().parents[1]
EXAMPLES: Final = ROOT / "examples" / "drivers"
STEPS: Final = 40
COSTS: Final = ("callbacks", "blocked_in_callback", "device_faults", "retries", "pages_pinned",
                "migrate_failed_pinned", "reclaim_failed_pinned", "to_device_skipped_pinned",
                "nonblockable_failed")
"""The cost counters shown, in order (``State.costs`` keys)."""
WORK_CAP: Final = 50_000
"""Work units per side a trace may take (``fuzz_trace``'s cap, a sixth of the
engines'): a drain that never settles would otherwise hold a driver's whole
budget."""


@dataclass
class Cell:
    """One driver under one contract."""

    findings: dict[str, float] = field(default_factory=dict)  # signature -> CPU s to first
    repros: dict[str, str] = field(default_factory=dict)  # signature -> trace text
    ops: dict[str, str] = field(default_factory=dict)  # signature -> the op it came in
    violations: int = 0  # traces in which userspace broke the contract


@dataclass
class DriverRun:
    kind: str
    path: str
    traces: int = 0
    steps: int = 0
    capped: int = 0  # traces cut at the engines' work cap
    seconds: float = 0.0
    costs: Counter[str] = field(default_factory=Counter)
    cells: dict[str, Cell] = field(default_factory=dict)
    timeline: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def workload(kind: str, seed: int, i: int) -> Trace:
    """Generated trace ``i``: decoded bytes, the built-in kinds' device lines deleted."""
    trace = codec.random_trace(random.Random(f"{seed}/{i}"), STEPS, codec.CURRENT)
    builtin = set(device_kinds()) - set(PLUGINS)
    drop = set()
    for index, line in enumerate(trace.steps, start=1):
        op = op_of(line)
        if op is None:
            continue
        decl = SCHEMA_BY_CLASS.get(type(op))
        if isinstance(op, Open) and op.kind in builtin or \
                decl is not None and decl.device in builtin:
            drop.add(index)
    steps = delete_steps(trace.steps, drop)
    return with_headers(Trace(trace.headers, steps, trace.path), {"driver": kind})


def _judge(run: DriverRun, trace: Trace, verdict: Verdict, t: float) -> None:
    run.traces += 1
    run.steps += verdict.steps
    run.costs.update(verdict.costs)
    hmm_found = verdict.findings + verdict.excused
    for contract, found in (("hmm", hmm_found), ("registration-cache", verdict.findings)):
        cell = run.cells.setdefault(contract, Cell())
        if contract == "registration-cache" and verdict.broken is not None:
            cell.violations += 1
        for f in found[:1]:
            if f.signature not in cell.findings:
                cell.findings[f.signature] = t
                cell.ops[f.signature] = f.op
                cell.repros[f.signature] = format_trace(with_headers(trace, {
                    "signature": f.signature, "title": f"compare: {run.kind} under {contract}"}))
                run.timeline.setdefault(contract, []).append((t, len(cell.findings)))


def compare_driver(path: Path, seconds: float, seed: int, mutants: list[str]) -> DriverRun:
    """Run one driver's workloads for ``seconds`` of CPU time."""
    loaded = plugins.load_driver(path)
    try:
        run = DriverRun(loaded.kind, str(path))
        own = [b.name for b in bugs.all_bugs() if b.driver == loaded.kind]
        mutant = next((m for m in mutants if m in own), None)
        settings = replace(ATHERIS.settings(mutant), contract="registration-cache",
                           max_work=WORK_CAP)  # judged as the Atheris target judges
        sides = impls.sides("both")
        seeds = sorted((path.parent / path.stem).glob("*.trace"))
        start = time.process_time()
        i = 0
        while time.process_time() - start < seconds:
            trace = load_trace(str(seeds[i])) if i < len(seeds) else \
                workload(loaded.kind, seed, i - len(seeds))
            verdict = run_trace(trace, sides, settings)
            run.capped += verdict.capped  # judged up to the work cap, as the engines do
            _judge(run, trace, verdict, time.process_time() - start)
            i += 1
        print(f"compare: {run.kind}: {run.traces} traces, {run.steps} steps, "
              f"{time.process_time() - start:.1f} s CPU", file=sys.stderr)
        run.seconds = time.process_time() - start
        return run
    finally:
        plugins.unload(loaded.kind)


# ------------------------------------------------------------------ output


def tables(runs: list[DriverRun]) -> str:
    """The two terminal tables: findings by contract, then costs per 1,000 steps."""
    rows = ["driver            contract            findings  first at  violations  traces  steps"]
    for run in runs:
        for contract in contracts.CONTRACTS:
            cell = run.cells.get(contract, Cell())
            first = f"{min(cell.findings.values()):.1f}s" if cell.findings else "-"
            rows.append(f"{run.kind:<17} {contract:<19} {len(cell.findings):>8}  {first:>8}  "
                        f"{cell.violations if contract != 'hmm' else '-':>10}  "
                        f"{run.traces:>6}  {run.steps:>5}")
    rows += ["", "costs per 1,000 steps (reference)",
             "driver            " + "  ".join(f"{c[:12]:>12}" for c in COSTS)]
    for run in runs:
        per = 1000 / max(run.steps, 1)
        rows.append(f"{run.kind:<17} " + "  ".join(f"{run.costs[c] * per:>12.1f}"
                                                   for c in COSTS))
    return "\n".join(rows)


def as_json(runs: list[DriverRun], seed: int) -> dict[str, Any]:
    return {"seed": seed, "drivers": [{
        "kind": r.kind, "path": r.path, "traces": r.traces, "steps": r.steps,
        "cpu_seconds": round(r.seconds, 2), "costs": {c: r.costs[c] for c in COSTS},
        "contracts": {c: {"findings": cell.findings, "violations": cell.violations}
                      for c, cell in r.cells.items()}} for r in runs]}


def html(runs: list[DriverRun], seed: int) -> str:
    """A page in the campaign report's style: the tables and a findings chart per contract."""
    t_max = max((r.seconds for r in runs), default=1.0) or 1.0
    charts = [line_chart(f"distinct findings under {c} (CPU seconds per driver)",
                         [Series(r.kind, [(0.0, 0.0)] + r.timeline.get(c, []) +
                                 [(r.seconds, float(len(r.cells.get(c, Cell()).findings)))],
                                 step=True) for r in runs], t_max=t_max, counts=True)
              for c in contracts.CONTRACTS]
    cost_rows = "".join(
        "<tr><td>" + escape(r.kind) + "</td>" + "".join(
            f"<td>{r.costs[c] * 1000 / max(r.steps, 1):.1f}</td>" for c in COSTS) + "</tr>"
        for r in runs)
    finding_rows = "".join(
        f"<tr><td>{escape(r.kind)}</td><td>{escape(c)}</td><td>{len(cell.findings)}</td>"
        f"<td>{escape(', '.join(f'{sig} ({cell.ops[sig]})' for sig in sorted(cell.findings)))}"
        "</td>"
        f"<td>{cell.violations if c != 'hmm' else '-'}</td></tr>"
        for r in runs for c, cell in sorted(r.cells.items()))
    return (f"<!doctype html><html><head><meta charset=utf-8><title>mirrorfuzz compare</title>"
            f"<style>{CSS}</style></head><body><h1>Driver designs compared (seed {seed})</h1>"
            "<h2>Findings by contract</h2><table><tr><th>driver</th><th>contract</th>"
            "<th>findings</th><th>signatures</th><th>contract violations</th></tr>"
            f"{finding_rows}</table>{''.join(charts)}"
            "<h2>Costs per 1,000 steps (reference)</h2><table><tr><th>driver</th>"
            + "".join(f"<th>{escape(c)}</th>" for c in COSTS) +
            f"</tr>{cost_rows}</table></body></html>")


def write_out(out: Path, runs: list[DriverRun], seed: int) -> None:
    (out / "findings").mkdir(parents=True, exist_ok=True)
    files: list[tuple[str | Path, str | bytes]] = [
        (out / "compare.json", json.dumps(as_json(runs, seed), indent=1) + "\n"),
        (out / "compare.html", html(runs, seed))]
    for run in runs:
        for contract, cell in run.cells.items():
            for n, (_sig, text) in enumerate(sorted(cell.repros.items())):
                files.append((out / "findings" / f"{run.kind}-{contract}-{n}.trace", text))
    write_all_atomic(files)


# --------------------------------------------------------------------- cli


def cmd(args: Any) -> int:
    paths = [Path(p) for p in args.compare_drivers] if args.compare_drivers else \
        sorted(EXAMPLES.glob("*.py"))
    seconds = duration(args.time, "--time")
    if args.out:  # before any driver runs
        out = validate.out_dir(args.out, "--out")
        for name, can in (("compare.json", "a regular file"), ("compare.html", "a regular file"),
                          ("findings", "a directory")):
            if (what := describe(out / name)) not in ("absent", can):
                raise BadInput(f"--out {out}: its {name} is {what}, not {can}")
    try:
        seed = int(args.seed)
    except ValueError:
        raise BadInput(f"--seed {args.seed[:40]!r}: expected an integer") from None
    known = set()
    for path in paths:  # every driver loads, and every --mutant is one of theirs
        loaded = plugins.load_driver(path)
        known |= {b.name for b in bugs.all_bugs() if b.driver == loaded.kind}
        plugins.unload(loaded.kind)
    for m in args.mutant or []:
        if m not in known:
            raise BadInput(f"--mutant {m[:60]!r}: not a planted bug of the drivers compared")
    runs = [compare_driver(path, seconds, seed, args.mutant or []) for path in paths]
    shown = args.contract or list(contracts.CONTRACTS)
    for run in runs:
        run.cells = {c: cell for c, cell in run.cells.items() if c in shown}
    print(tables(runs))
    if args.out:
        write_out(Path(args.out), runs, seed)
        print(f"compare: {Path(args.out) / 'compare.html'}")
    return 0


def register(sub: Any) -> None:
    """Add ``compare`` to the ``mirrorfuzz`` subcommands."""
    parser = sub.add_parser("compare", help="the same workloads through each driver design, "
                                            "findings by contract and costs")
    parser.add_argument("--driver", dest="compare_drivers", action="append", metavar="FILE",
                        help="a driver plug-in (repeatable; default every examples/drivers/*.py)")
    parser.add_argument("--contract", action="append", choices=list(contracts.CONTRACTS),
                        help="the contracts shown (repeatable; default both)")
    parser.add_argument("--time", default="20s", help="CPU time per driver (default 20s)")
    parser.add_argument("--seed", default="0", help="the workloads' seed (default 0)")
    parser.add_argument("--mutant", action="append", metavar="NAME",
                        help="switch on a driver's planted bug (repeatable)")
    parser.add_argument("--out", metavar="DIR", help="write compare.json, compare.html and "
                                                      "the findings' traces there")
    parser.set_defaults(func=cmd)
