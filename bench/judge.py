"""Judging throughput (issue 14): what checking and comparing cost the engines.

    python -m bench.judge [--traces 200] [--seed 0] [--examples 40]
                          [--atheris 1000,10000] [--libfuzzer N] [--parts executor,...]
                          [--pages 64,1024,8192]
                          [--json FILE]

Parts, each printed as it finishes (CPU time, ``time.process_time``):

* ``executor``: ``--traces`` decoded traces (``fuzz.codec.decode`` of
  fixed-seed random bytes, 20 to 300 bytes, as the Atheris target sees
  them) run by ``fuzz.executor.run_trace`` on both implementations, **bare**
  (no invariant checks, no observations), **judged** (the Atheris target's
  settings, ``fuzz.profiles.ATHERIS``: the fast judge -- local checks, the
  cheap comparison of what changed, the full comparison at the end),
  **whole** (the same periods with every check and comparison whole: the
  judge before issue 14), **full** (every check, observations at every
  step: the judge the fast one is tested against) and **fast/1** (the fast
  judge comparing after every step).  traces/s, steps/s, each over bare.
* ``state``: whether the judge's cost follows what a step changed or the
  size of the state: a trace maps ``--pages`` N pages private (huge where
  N is a multiple of 512 above 4096), writes them all, then runs 200
  single-page writes and 200 reads; those 400 steps' CPU time per step,
  bare and judged (as above), for each N, and each judged figure over
  the smallest N's (flat is 1).
* ``hypothesis``: the stateful engine (``fuzz.engine``) as the campaign's
  Hypothesis worker runs it (both sides, ``fuzz.profiles.CAMPAIGN``: the
  fast judge, observations every 4 steps, the work cap counting the
  state), and again with the full judge in its place (the same examples:
  ``Settings.cap_by_state``), seeded with ``--seed``, for ``--examples``
  examples: examples/s and judged steps/s of each, and the fast one's as
  a fraction of the executor's steps/s on the same traces with the same
  settings.
* ``atheris``: the Atheris target's ``TestOneInput`` in a plain loop on
  fixed-seed random inputs, ``model`` instrumented by atheris as in the
  worker (when atheris is installed): execs/s and the process's RSS after
  each count of ``--atheris`` (maximum resident set, ``ru_maxrss``, and
  current, from ``/proc/self/statm``), in a fresh interpreter; once with
  atheris's comparison hook as it is (``unguarded``) and once guarded as
  the worker runs it (``fuzz_trace.guard_array_compares``).  ``--libfuzzer N`` also
  runs ``fuzz/fuzz_trace.py -runs=N`` under libFuzzer (when atheris is
  installed) and reads its ``rss:`` lines.

Timings on a shared machine are noisy: compare ratios within one run.
Targets (issue 14; printed, never asserted): judged >= 50% of bare; the
Hypothesis engine >= 50% of the judged executor's steps/s; Atheris RSS growth
< 10 MB per 10k inputs.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.cli import Parser, count, counts, names, output_file, write_output

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m bench.judge"


def corpus(traces: int, seed: int) -> list[Any]:
    from fuzz.codec import decode

    rng = random.Random(seed)
    return [decode(rng.randbytes(rng.randint(20, 300))) for _ in range(traces)]


@dataclass
class Rate:
    name: str
    traces: int
    steps: int
    seconds: float
    findings: int = 0
    capped: int = 0

    @property
    def traces_per_s(self) -> float:
        return self.traces / self.seconds if self.seconds > 0 else 0.0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"  {self.name:<8} {self.traces_per_s:8.1f} traces/s {self.steps_per_s:9.0f} "
                f"steps/s  ({self.traces} traces, {self.steps} steps, {self.seconds:.2f} s, "
                f"{self.findings} findings, {self.capped} capped)")


def run_executor(name: str, traces: Sequence[Any], settings: Any, cap: int) -> Rate:
    from fuzz import impls
    from fuzz.executor import run_trace
    sides = impls.sides("both")
    settings = replace(settings, max_work=cap)
    steps = findings = capped = 0
    gc.collect()
    t0 = time.process_time()
    for trace in traces:
        verdict = run_trace(trace, sides, settings)
        steps += verdict.steps
        capped += verdict.capped
        findings += verdict.finding is not None
    return Rate(name, len(traces), steps, time.process_time() - t0, findings, capped)


def executor_part(traces: int, seed: int) -> dict[str, Any]:
    from fuzz.executor import Settings
    from fuzz.fuzz_trace import TargetConfig
    from fuzz.profiles import MAX_WORK

    cases = corpus(traces, seed)
    judged_settings = TargetConfig().settings()
    bare = run_executor("bare", cases, Settings(observe_every=0, checks=False), 0)
    print(bare.line(), flush=True)
    judged = run_executor("judged", cases, judged_settings, MAX_WORK)
    print(judged.line(), flush=True)
    whole = run_executor("whole", cases, replace(judged_settings, fast=False), MAX_WORK)
    print(whole.line(), flush=True)
    full = run_executor("full", cases, Settings(observe_every=1), MAX_WORK)
    print(full.line(), flush=True)
    fast = run_executor("fast/1", cases, replace(judged_settings, observe_every=1), MAX_WORK)
    print(fast.line(), flush=True)

    def ratio(r: Rate) -> float:
        return r.steps_per_s / bare.steps_per_s if bare.steps_per_s else 0.0

    print(f"  judged/bare steps/s {ratio(judged):.1%}  (target >= 50%: "
          f"{'PASS' if ratio(judged) >= 0.5 else 'MISS'}); whole/bare {ratio(whole):.1%} "
          f"(the same periods judged whole, as before issue 14); full/bare {ratio(full):.1%}; "
          f"fast/1/bare {ratio(fast):.1%} (the fast judge comparing after every step)",
          flush=True)
    return {"bare": asdict(bare), "judged": asdict(judged), "whole": asdict(whole),
            "full": asdict(full), "fast_every_step": asdict(fast),
            "judged_over_bare": ratio(judged), "whole_over_bare": ratio(whole),
            "fast_every_step_over_bare": ratio(fast)}


def state_trace(pages: int, writes: int = 200) -> Any:
    """``pages`` pages mapped and written, then ``writes`` one-page writes and reads."""
    from fuzz.trace import parse_trace

    huge = " huge" if pages > 4096 and pages % 512 == 0 else ""
    lines = ["# mirrorfuzz-trace 1", f"# frames: {max(4096, 2 * pages)}",
             f"mmap P0 0 {pages} rw private{huge}", f"write_range P0 0 {pages} 1 1"]
    for i in range(writes):
        lines += [f"write P0 {i * 13 % pages} {i}", f"read P0 {i * 7 % pages}"]
    return parse_trace("\n".join(lines) + "\n", f"state-{pages}")


def per_step(trace: Any, settings: Any) -> float:
    """CPU seconds per step of ``trace``'s lines after its first two."""
    from fuzz import impls
    from fuzz.executor import Session

    session = Session.for_trace(trace, impls.sides("both"), replace(settings, max_work=0))
    for line in trace.steps[:2]:
        session.append(line)
    before = session.verdict.steps
    gc.collect()
    t0 = time.process_time()
    for line in trace.steps[2:]:
        session.append(line)
    seconds = time.process_time() - t0
    if session.verdict.finding is not None:
        raise SystemExit(f"bench.judge: a finding on a clean build: {session.verdict.finding}")
    return seconds / max(1, session.verdict.steps - before)


def state_part(sizes: Sequence[int]) -> dict[str, Any]:
    from fuzz.executor import Settings
    from fuzz.fuzz_trace import TargetConfig

    out: dict[str, Any] = {}
    per_step(state_trace(64, 20), TargetConfig().settings())  # warm up (imports, caches)
    for pages in sizes:
        trace = state_trace(pages)
        bare = per_step(trace, Settings(observe_every=0, checks=False))
        judged = per_step(trace, TargetConfig().settings())
        out[str(pages)] = {"bare_us": bare * 1e6, "judged_us": judged * 1e6}
        first = out[str(sizes[0])]["judged_us"]
        print(f"  {pages:>6} pages: bare {bare * 1e6:6.0f} us/step, judged {judged * 1e6:6.0f} "
              f"us/step ({judged / bare if bare else 0:.1f} x bare; "
              f"{judged * 1e6 / first if first else 0:.2f} x judged at {sizes[0]} pages)",
              flush=True)
    return out


def hypothesis_part(examples: int, seed: int) -> dict[str, Any]:
    from fuzz.profiles import CAMPAIGN, MAX_WORK

    out: dict[str, Any] = {}
    made: list[Any] = []
    for fast in (False, True):
        name = "fast" if fast else "full"
        engine, made = engine_rate(examples, seed, fast)
        out[name] = asdict(engine)
        print(f"  {name:<8} {engine.traces_per_s:8.2f} examples/s {engine.steps_per_s:9.0f} "
              f"steps/s  ({engine.traces} examples, {engine.steps} steps, "
              f"{engine.seconds:.2f} s{', stopped at a finding' if engine.findings else ''})",
              flush=True)
    rejudged = run_executor("rejudged", made, CAMPAIGN.settings(), MAX_WORK)
    print(rejudged.line(), flush=True)
    ratio = out["fast"]["steps"] / out["fast"]["seconds"] / rejudged.steps_per_s \
        if rejudged.steps_per_s and out["fast"]["seconds"] else 0.0
    print(f"  engine/executor steps/s {ratio:.1%}  (target >= 50%: "
          f"{'PASS' if ratio >= 0.5 else 'MISS'})", flush=True)
    out["executor"], out["engine_over_executor"] = asdict(rejudged), ratio
    return out


def engine_rate(examples: int, seed: int, fast: bool) -> tuple[Rate, list[Any]]:
    """The stateful engine as the campaign's Hypothesis worker runs it
    (``fuzz.engine``, both sides, ``fuzz.profiles.CAMPAIGN``), judging with
    the fast judge or not; the traces it judged."""
    from fuzz.engine import HypothesisEngine
    from fuzz.executor import Verdict
    from fuzz.profiles import CAMPAIGN
    from fuzz.stateful import EngineConfig, Hooks, MirrorMachine

    made: list[Any] = []
    steps = [0]

    class Counted(Hooks):
        def judged(self, machine: MirrorMachine, verdict: Verdict) -> bool:
            made.append(machine.trace())
            steps[0] += verdict.steps
            return True

    profile = replace(CAMPAIGN, fast=fast)
    engine = HypothesisEngine(EngineConfig(sides="both", judge=profile.settings(),
                                           failures=os.devnull), Counted())
    gc.collect()
    t0 = time.process_time()
    failed = False
    try:
        engine.run(seed, examples)
    except AssertionError:
        failed = True  # a finding on a clean build: reported, still timed
    seconds = time.process_time() - t0
    return Rate("engine", len(made), steps[0], seconds, int(failed)), made


def _rss_kb() -> tuple[int, int]:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    return peak, current


def atheris_loop(counts: Sequence[int], seed: int, guard: bool = True) -> dict[str, Any]:
    """In this process: TestOneInput on random inputs; RSS at each count.
    With atheris installed, ``model`` is imported instrumented as the
    worker imports it, and ``guard`` is whether its comparison hook is
    guarded (``fuzz_trace.guard_array_compares``, as the worker does)."""
    from fuzz import fuzz_trace

    fuzz_trace.configure(fuzz_trace.TargetConfig())
    if importlib.util.find_spec("atheris") is not None:
        atheris = importlib.import_module("atheris")
        fuzz_trace.load_judged(atheris, "model")
        if guard:
            fuzz_trace.guard_array_compares(atheris)
    rng = random.Random(seed)
    marks: list[dict[str, float]] = []
    done = findings = 0
    start_rss = _rss_kb()
    t0 = time.process_time()
    for target in sorted(counts):
        while done < target:
            data = rng.randbytes(rng.randint(20, 300))
            try:
                fuzz_trace.TestOneInput(data)
            except fuzz_trace.TraceFinding:
                findings += 1
            done += 1
        peak, current = _rss_kb()
        marks.append({"inputs": done, "seconds": time.process_time() - t0,
                      "maxrss_kb": peak, "rss_kb": current})
    return {"start_maxrss_kb": start_rss[0], "start_rss_kb": start_rss[1], "marks": marks,
            "findings": findings, "capped": fuzz_trace.CAPPED[0]}


def atheris_part(counts: Sequence[int], seed: int, libfuzzer: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    guards = (False, True) if importlib.util.find_spec("atheris") is not None else (True,)
    for guard in guards:
        name = "guarded" if guard else "unguarded"
        result[name] = atheris_loop_run(counts, seed, guard, name)
    if libfuzzer:
        result["libfuzzer"] = libfuzzer_run(libfuzzer, seed)
    return result


def atheris_loop_run(counts: Sequence[int], seed: int, guard: bool, name: str) -> dict[str, Any]:
    code = ("import json, sys; from bench.judge import atheris_loop; "
            f"print(json.dumps(atheris_loop({list(counts)!r}, {seed}, {guard})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    base = result["start_rss_kb"]
    for m in result["marks"]:
        rate = m["inputs"] / m["seconds"] if m["seconds"] else 0.0
        print(f"  {name:<9} {m['inputs']:>6} inputs {rate:7.1f} execs/s  rss "
              f"{m['rss_kb'] / 1024:7.1f} MB (+{(m['rss_kb'] - base) / 1024:.1f})  maxrss "
              f"{m['maxrss_kb'] / 1024:7.1f} MB",
              flush=True)
    marks = result["marks"]
    if len(marks) >= 2:
        a, b = marks[0], marks[-1]
        per10k = (b["rss_kb"] - a["rss_kb"]) / max(1, b["inputs"] - a["inputs"]) * 10_000 / 1024
        result["growth_mb_per_10k"] = per10k
        print(f"  {name} RSS growth {per10k:.1f} MB per 10k inputs (target < 10: "
              f"{'PASS' if per10k < 10 else 'MISS'})", flush=True)
    return result


def libfuzzer_run(runs: int, seed: int) -> dict[str, Any]:
    """``fuzz/fuzz_trace.py -runs=N`` under libFuzzer, seeded from ``corpus/``
    as the campaign seeds it; its ``rss:`` lines."""
    if importlib.util.find_spec("atheris") is None:
        print("  libfuzzer: atheris is not installed, skipped", flush=True)
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-judge-") as tmp:
        seeds, work = Path(tmp, "seeds"), Path(tmp, "corpus")
        work.mkdir()
        subprocess.run([sys.executable, "fuzz/fuzz_trace.py", "--make-seeds", str(seeds)],
                       cwd=ROOT, capture_output=True, check=True)
        env = dict(os.environ, MIRRORFUZZ_FINDINGS=str(Path(tmp, "findings")))
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "fuzz/fuzz_trace.py", f"-runs={runs}",
                              f"-seed={seed + 1}", "-print_final_stats=1", "-rss_limit_mb=0",
                              "-error_exitcode=0", "-dict=fuzz/fuzz_trace.dict",
                              f"-artifact_prefix={tmp}/",
                              str(work), str(seeds)],
                             cwd=ROOT, capture_output=True, text=True, env=env)
        seconds = time.monotonic() - t0
    points = [(int(n), int(r)) for n, r in re.findall(r"#(\d+)\s+\w+.*?rss: (\d+)Mb", out.stderr)]
    execs = re.search(r"stat::number_of_executed_units: (\d+)", out.stderr)
    peak = re.search(r"stat::peak_rss_mb: (\d+)", out.stderr)
    result: dict[str, Any] = {"wall_s": seconds,
                              "execs": int(execs.group(1)) if execs else None,
                              "peak_rss_mb": int(peak.group(1)) if peak else None}
    inited = [p for p in points if p[0] >= min(1000, runs // 4)]
    if len(inited) >= 2:
        (n0, r0), (n1, r1) = inited[0], inited[-1]
        result["from"], result["to"] = [n0, r0], [n1, r1]
        result["growth_mb_per_10k"] = (r1 - r0) / max(1, n1 - n0) * 10_000
    print(f"  libfuzzer {result}", flush=True)
    return result


PARTS = ("executor", "state", "hypothesis", "atheris")


@dataclass
class Args:
    traces: int = 200
    seed: int = 0
    examples: int = 40
    atheris: list[int] = field(default_factory=lambda: [1000, 10000])
    libfuzzer: int = 0
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    json: str | None = None
    pages: list[int] = field(default_factory=lambda: [64, 1024, 8192])


MAX_PAGES = 1 << 20  # the state part's largest size (bench.scale's largest: MAX_LOG2)


def parse(argv: Sequence[str] | None) -> Args:
    """The arguments, every one checked (``--json`` too: absent or a regular
    file, in an existing directory) before any part runs; a bad one is one
    line on stderr and ``SystemExit(2)``."""
    p = Parser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--traces", type=count(1), default=200)
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--examples", type=count(1), default=40)
    p.add_argument("--atheris", type=counts(1), default="1000,10000",
                   help="RSS after these many inputs")
    p.add_argument("--libfuzzer", type=count(0), default=0,
                   help="also run N inputs under libFuzzer")
    p.add_argument("--parts", type=names(PARTS, "part"), default=",".join(PARTS))
    p.add_argument("--json", type=output_file, metavar="FILE",
                   help="also write the results as JSON")
    p.add_argument("--pages", type=counts(16, MAX_PAGES), default="64,1024,8192",
                   help=f"the state part's sizes (16 to {MAX_PAGES})")
    a = p.parse_args(argv)
    return Args(a.traces, a.seed, a.examples, a.atheris, a.libfuzzer, a.parts,
                None if a.json is None else str(a.json), a.pages)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    report: dict[str, Any] = {}
    if "executor" in args.parts:
        print(f"executor: {args.traces} decoded traces, seed {args.seed}", flush=True)
        report["executor"] = executor_part(args.traces, args.seed)
    if "state" in args.parts and args.pages:
        print("state: 400 one-page steps on a state of N pages", flush=True)
        report["state"] = state_part(args.pages)
    if "hypothesis" in args.parts:
        print(f"hypothesis: {args.examples} examples (both sides, fuzz.profiles.CAMPAIGN)",
              flush=True)
        report["hypothesis"] = hypothesis_part(args.examples, args.seed)
    if "atheris" in args.parts and args.atheris:
        print(f"atheris: TestOneInput in a plain loop, RSS after {args.atheris} inputs",
              flush=True)
        report["atheris"] = atheris_part(args.atheris, args.seed, args.libfuzzer)
    if args.json is not None:
        return write_output(PROG, Path(args.json), json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
