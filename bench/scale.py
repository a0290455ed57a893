"""Scaling benchmark of the two implementations (issue 3).

Run ``python -m bench.scale`` (``--help`` for the options; a bad argument is
one line on stderr and exit 2, before anything runs).  It drives each
implementation directly through :class:`model.interface.Implementation`
(``start``/``step`` until ``Done``), with invariant checks off, so it
measures the implementations and not the executor.  Each workload has a
set-up phase (not timed) and a measured phase (timed with ``perf_counter``,
the garbage collector disabled as ``timeit`` does).  Times are the process's
CPU time (``time.process_time``: the implementations are single-threaded, and
CPU time is robust to other load on a shared machine).  With ``--repeat N``
each (workload, size, implementation) is run up to N times on a fresh kernel
(a point whose run took over REPEAT_WALL_S wall seconds is not repeated) and
the fastest measured phase is kept.

The reference implementation is capped: once a run of a workload (set-up
plus measured phase) exceeds ``--ref-limit`` seconds, or the previous size's
run scaled linearly to the next size would exceed three times that, the
larger sizes of that workload are skipped and printed as ``—``.  The
optimized implementation has its own, larger cap (``--opt-limit``).

Besides the table it prints the optimized implementation's bytes per
resident page (tracemalloc: the ``current`` delta between the freshly built
kernel and the populated state, over the resident pages; numpy registers its
buffers with tracemalloc, so arrays are included), a sparse-memory figure,
and the executor's steps/second on decoded random traces on the reference
alone against the pair.  Targets are printed as PASS/MISS, never asserted.

See ``bench/README.md`` for the workloads and how to read the output.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TextIO

from bench.cli import (
    Parser,
    count,
    counts,
    fail,
    names,
    output_file,
    parse_or_status,
    seconds,
    write_output,
)
from model.interface import Config, Factory, Implementation
from model.ops import (
    DEFAULT_DEVICE_FRAMES,
    HUGE_ORDER,
    HUGE_PAGES,
    MAX_VALUE_PAGES,
    OK,
    Blocked,
    Done,
    Dread,
    Err,
    Fork,
    Migrate,
    Mmap,
    Mprotect,
    Munmap,
    Op,
    Open,
    OpResult,
    Reclaim,
    Reg,
    Segv,
    Write,
)

BASE = 1 << 21
"""First vpn of the populated range (512-aligned)."""
THREAD = "L1"
REG_PAGES = 64
"""Pages per userptr object in the ``inval-subs`` workload."""
SPARSE_SPAN = 1 << 36
SPARSE_TOUCH = 4
"""Pages touched in each block of the sparse workload."""
REPEAT_WALL_S = 5.0
"""A point whose run took longer (wall) than this is not repeated."""
SHORT_S = 0.02
"""A point whose measured phase took less CPU time than this is measured
again, SHORT_RUNS times back to back (see ``time_workload``)."""
SHORT_RUNS = 5
TARGET_RATIO = 50.0
TARGET_RATIO_SIZE = 18
TARGET_FLAT = 2.0
TARGET_FLAT_SIZES = (14, 20)
TARGET_BYTES = 64.0
TARGET_PAIR = 2.0
DASH = "—"


class BenchError(Exception):
    """An op of a workload did not give what the workload needs."""


# ------------------------------------------------------------------ driving


def run_op(k: Implementation, op: Op) -> OpResult:
    """Run ``op`` as a plain thread to completion; raise on errno or SIGSEGV."""
    started = k.start(THREAD, op)
    if started != OK:
        raise BenchError(f"{k.name}: start {op} gave {started}")
    while True:
        out = k.step(THREAD)
        if isinstance(out, Done):
            if isinstance(out.result, Err | Segv):
                raise BenchError(f"{k.name}: {op} gave {out.result}")
            return out.result
        if isinstance(out, Blocked | Err):
            raise BenchError(f"{k.name}: {op} gave {out}")


def populate_thp(k: Implementation, n: int) -> None:
    """A huge private rw VMA of n pages, one write per 512-block: THPs."""
    run_op(k, Mmap(0, BASE, n, "rw", "private", True))
    for b in range(0, n, HUGE_PAGES):
        run_op(k, Write(0, BASE + b, b + 1))


def populate_pte(k: Implementation, n: int) -> None:
    """Every page present and PTE-mapped: THPs, then ``migrate`` (which
    splits every PMD and copies each folio to a PTE-mapped order-9 folio)."""
    populate_thp(k, n)
    run_op(k, Migrate(0, BASE, n))


def _nothing(k: Implementation, n: int) -> None:
    del k, n


def _touch_thp(k: Implementation, n: int) -> None:
    populate_thp(k, n)


def _touch_4k(k: Implementation, n: int) -> None:
    run_op(k, Mmap(0, BASE, n, "rw", "private", False))
    for v in range(n):
        run_op(k, Write(0, BASE + v, v + 1))


def _fork_cow(k: Implementation, n: int) -> None:
    run_op(k, Fork(0, child=1))
    for v in range(n):
        run_op(k, Write(0, BASE + v, -v))


def _mprotect(k: Implementation, n: int) -> None:
    run_op(k, Mprotect(0, BASE, n, "r"))


def _migrate(k: Implementation, n: int) -> None:
    run_op(k, Migrate(0, BASE, n))


def _reclaim(k: Implementation, n: int) -> None:
    run_op(k, Reclaim(0, BASE, n))


def _setup_mirror(k: Implementation, n: int) -> None:
    populate_pte(k, n)
    run_op(k, Open(0, "mirror", dev=0))


def _mirror_fault(k: Implementation, n: int) -> None:
    for s in range(0, n, MAX_VALUE_PAGES):
        run_op(k, Dread(0, BASE + s, min(MAX_VALUE_PAGES, n - s)))


def _setup_subs(k: Implementation, n: int) -> None:
    populate_thp(k, n)
    run_op(k, Open(0, "userptr", dev=0))
    for i in range(n // REG_PAGES):
        run_op(k, Reg(0, BASE + i * REG_PAGES, REG_PAGES, "rw", region=i))


def _munmap(k: Implementation, n: int) -> None:
    run_op(k, Munmap(0, BASE, n))


@dataclass(frozen=True)
class Workload:
    name: str
    setup: Callable[[Implementation, int], None]
    measure: Callable[[Implementation, int], None]
    what: str
    device: bool = False


WORKLOADS: tuple[Workload, ...] = (
    Workload("touch", _nothing, _touch_thp,
             "mmap huge rw private + 1 write per 512-block (THP faults)"),
    Workload("touch-4k", _nothing, _touch_4k,
             "mmap rw private + 1 write per page (per-op overhead)"),
    Workload("fork-cow", populate_pte, _fork_cow, "fork, then a write to every page (COW)"),
    Workload("mprotect", populate_pte, _mprotect, "mprotect rw->r over the populated range"),
    Workload("migrate", populate_thp, _migrate, "migrate over the range of THPs"),
    Workload("reclaim", populate_pte, _reclaim, "reclaim the populated range to swap"),
    Workload("mirror-fault", _setup_mirror, _mirror_fault,
             "dread in 4096-page chunks over the populated range", device=True),
    Workload("inval-subs", _setup_subs, _mprotect,
             f"mprotect rw->r over n/{REG_PAGES} userptr subscriptions (THP range)",
             device=True),
    Workload("munmap", populate_pte, _munmap, "munmap the populated range"),
)
WORKLOAD_NAMES = tuple(w.name for w in WORKLOADS)


def config_for(n: int, device: bool) -> Config:
    frames = 2 * n + 1024
    return Config(frames=frames, device_frames=frames if device else DEFAULT_DEVICE_FRAMES,
                  checks=False)


@dataclass
class Timing:
    setup_s: float
    measure_s: float
    single_s: float | None = None
    """For a short point: the fastest single run, which measure_s replaced."""


def time_workload(factory: Factory, wl: Workload, n: int, repeat: int) -> Timing:
    """Best measured time of ``repeat`` runs (each on a fresh kernel); for a
    short point, the median of SHORT_RUNS back-to-back runs instead."""
    best: Timing | None = None
    for _ in range(repeat):
        k = factory(config_for(n, wl.device))
        w0 = time.perf_counter()
        t0 = time.process_time()
        wl.setup(k, n)
        t1 = time.process_time()
        gc.collect()
        gc.disable()
        try:
            t2 = time.process_time()
            wl.measure(k, n)
            t3 = time.process_time()
        finally:
            gc.enable()
        t = Timing(t1 - t0, t3 - t2)
        if best is None or t.measure_s < best.measure_s:
            best = t
        del k
        if time.perf_counter() - w0 > REPEAT_WALL_S:
            break  # a long point: one run is precise enough
    assert best is not None
    if best.measure_s < SHORT_S:
        best = Timing(best.setup_s, back_to_back(factory, wl, n), best.measure_s)
    return best


def back_to_back(factory: Factory, wl: Workload, n: int) -> float:
    """The median measured phase of SHORT_RUNS runs whose set-ups are all
    done first (each on its own fresh kernel), then one collection, then the
    measured phases one after another.

    A short point's single run times one op of a few hundred microseconds
    (munmap, mprotect) right after a full collection has walked the heap:
    the interpreter's and numpy's code and data come back from memory
    during the op, a fixed cost of the order of 100 microseconds that is
    not per page and that an op run among others (as under fuzzing) does
    not pay.  Back to back, only the first run pays it; the median is the
    op's cost among others."""
    kernels = [factory(config_for(n, wl.device)) for _ in range(SHORT_RUNS)]
    for k in kernels:
        wl.setup(k, n)
    times: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for k in kernels:
            t0 = time.process_time()
            wl.measure(k, n)
            times.append(time.process_time() - t0)
    finally:
        gc.enable()
    return sorted(times)[len(times) // 2]


# ------------------------------------------------------------------- memory


def bytes_per_page(factory: Factory, n: int) -> tuple[float, float]:
    """(current, peak) tracemalloc delta of the PTE-populated state of n pages
    over the freshly built kernel, per resident page."""
    gc.collect()
    tracemalloc.start()
    try:
        k = factory(config_for(n, False))
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        populate_pte(k, n)
        gc.collect()
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del k
    return (cur - base) / n, (peak - base) / n


@dataclass
class SparseResult:
    impl: str
    blocks: int
    touched: int
    vmas: int
    bytes_per_touched: float


def sparse_memory(factory: Factory, name: str, blocks: int, seed: int = 1) -> SparseResult:
    """``blocks`` 512-page VMAs at random 512-aligned bases, one per
    2^36/blocks slice of the address space, SPARSE_TOUCH pages written in
    each; tracemalloc ``current`` delta per touched page."""
    rng = random.Random(seed)
    slot = SPARSE_SPAN // blocks
    bases = [i * slot + rng.randrange(0, slot - HUGE_PAGES + 1, HUGE_PAGES)
             for i in range(blocks)]
    offsets = [sorted(rng.sample(range(HUGE_PAGES), SPARSE_TOUCH)) for _ in range(blocks)]
    touched = blocks * SPARSE_TOUCH
    gc.collect()
    tracemalloc.start()
    try:
        k = factory(Config(frames=touched + 1024, checks=False))
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        for b, offs in zip(bases, offsets, strict=True):
            run_op(k, Mmap(0, b, HUGE_PAGES, "rw", "private", False))
            for o in offs:
                run_op(k, Write(0, b + o, o + 1))
        gc.collect()
        cur, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del k
    return SparseResult(name, blocks, touched, blocks, (cur - base) / touched)


# --------------------------------------------------------------- fuzz pair


@dataclass
class PairResult:
    observe_every: int
    traces: int
    ref_steps: int
    ref_s: float
    pair_steps: int
    pair_s: float
    pair_findings: int

    @property
    def ref_rate(self) -> float:
        return self.ref_steps / self.ref_s if self.ref_s > 0 else 0.0

    @property
    def pair_rate(self) -> float:
        return self.pair_steps / self.pair_s if self.pair_s > 0 else 0.0

    @property
    def slowdown(self) -> float:
        return self.ref_rate / self.pair_rate if self.pair_rate > 0 else float("inf")


def fuzz_pair(traces: int, observe_every: int, checks: bool, seed: int = 0) -> PairResult:
    """Executor steps/second on decoded random traces: reference alone vs both."""
    from fuzz import impls
    from fuzz.codec import decode
    from fuzz.executor import Settings, run_trace

    rng = random.Random(seed)
    corpus = [decode(rng.randbytes(64 * 200 + 8)) for _ in range(traces)]
    settings = Settings(observe_every=observe_every, checks=checks)
    totals: dict[str, tuple[int, float, int]] = {}
    for spec in ("reference", "both"):
        sides = impls.sides(spec)
        steps = findings = 0
        t0 = time.process_time()
        for trace in corpus:
            verdict = run_trace(trace, sides, settings)
            steps += verdict.steps
            findings += len(verdict.findings)
        totals[spec] = (steps, time.process_time() - t0, findings)
    (rs, rt, _), (ps, pt, pf) = totals["reference"], totals["both"]
    return PairResult(observe_every, traces, rs, rt, ps, pt, pf)


# ------------------------------------------------------------------- report


@dataclass
class Row:
    workload: str
    log2: int
    pages: int
    ref_ns: float | None = None
    opt_ns: float | None = None
    ref_setup_s: float | None = None
    opt_setup_s: float | None = None
    ref_single_ns: float | None = None
    """A short point's fastest single run (ns/page), which ref_ns replaced."""
    opt_single_ns: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.ref_ns is None or self.opt_ns is None or self.opt_ns == 0:
            return None
        return self.ref_ns / self.opt_ns


@dataclass
class Report:
    impl: str
    sizes: list[int]
    repeat: int
    rows: list[Row] = field(default_factory=list)
    memory: dict[int, tuple[float, float]] = field(default_factory=dict)
    sparse: list[SparseResult] = field(default_factory=list)
    pair: list[PairResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return DASH if x is None else format(x, spec)


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(rep: Report, out: TextIO) -> None:
    head = (f"{'workload':<13} {'pages':>9} {'ref ns/page':>12} {'opt ns/page':>12} "
            f"{'ratio':>8}")
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rep.rows:
        print(f"{r.workload:<13} {'2^' + str(r.log2):>9} {_fmt(r.ref_ns):>12} "
              f"{_fmt(r.opt_ns):>12} {_fmt(r.ratio, ',.1f'):>8}", file=out)


def target_lines(rep: Report) -> list[str]:
    lines: list[str] = []
    by_wl: dict[str, list[Row]] = {}
    for r in rep.rows:
        by_wl.setdefault(r.workload, []).append(r)
    if rep.impl == "both":
        lines.append(f"target: >= {TARGET_RATIO:.0f}x faster at 2^{TARGET_RATIO_SIZE} "
                     "(if the reference was skipped there: at its largest size, a bound)")
        for wl, rows in by_wl.items():
            both = [r for r in rows if r.ratio is not None and r.log2 <= TARGET_RATIO_SIZE]
            if not both:
                lines.append(f"  {wl:<13} n/a")
                continue
            r = both[-1]
            assert r.ratio is not None
            capped = any(x.ref_ns is None and x.opt_ns is not None for x in rows)
            where = f"2^{r.log2}" + ("" if r.log2 == TARGET_RATIO_SIZE
                                     else " (ref capped)" if capped else " (largest run)")
            lines.append(f"  {wl:<13} {r.ratio:>8.1f}x at {where:<18} "
                         f"{_mark(r.ratio >= TARGET_RATIO)}")
    lo, hi = TARGET_FLAT_SIZES
    lines.append(f"target: optimized ns/page flat within {TARGET_FLAT:.0f}x from 2^{lo} to 2^{hi}")
    for wl, rows in by_wl.items():
        pts = [(r.log2, r.opt_ns) for r in rows if lo <= r.log2 <= hi and r.opt_ns is not None]
        if len(pts) < 2:
            lines.append(f"  {wl:<13} n/a (fewer than 2 sizes in range)")
            continue
        vals = [v for _, v in pts if v is not None]
        spread = max(vals) / min(vals)
        span = f"2^{pts[0][0]}..2^{pts[-1][0]}"
        lines.append(f"  {wl:<13} max/min {spread:>6.2f} over {span:<12} "
                     f"{_mark(spread <= TARGET_FLAT)}")
    if rep.memory:
        lines.append(f"target: <= {TARGET_BYTES:.0f} bytes per resident page (optimized; "
                     "tracemalloc current delta of the PTE-populated state / resident pages)")
        for log2, (cur, peak) in sorted(rep.memory.items()):
            lines.append(f"  2^{log2:<3} current {cur:>8.1f} B/page  (peak {peak:>8.1f})  "
                         f"{_mark(cur <= TARGET_BYTES)}")
    return lines


def print_report(rep: Report, out: TextIO) -> None:
    print(f"# mirrorfuzz scale benchmark: impl={rep.impl} sizes="
          f"{','.join(str(s) for s in rep.sizes)} repeat={rep.repeat} checks=off", file=out)
    print_table(rep, out)
    print(file=out)
    for line in target_lines(rep):
        print(line, file=out)
    if rep.sparse:
        print(file=out)
        print(f"sparse: {SPARSE_TOUCH} pages written in each 512-page VMA, one VMA per "
              "2^36/blocks slice (tracemalloc current delta)", file=out)
        for s in rep.sparse:
            print(f"  {s.impl:<10} {s.blocks:>6} blocks {s.touched:>7} touched pages "
                  f"{s.bytes_per_touched:>9.1f} B/touched page", file=out)
    if rep.pair:
        print(file=out)
        print(f"pair on fuzz traces (executor, target slowdown <= {TARGET_PAIR:.0f}x)", file=out)
        for p in rep.pair:
            print(f"  observe_every={p.observe_every:<2} traces={p.traces} reference "
                  f"{p.ref_rate:>9,.0f} steps/s  both {p.pair_rate:>9,.0f} steps/s  "
                  f"slowdown {p.slowdown:5.2f}x  {_mark(p.slowdown <= TARGET_PAIR)}"
                  f"  (pair findings: {p.pair_findings})", file=out)
    for e in rep.errors:
        print(f"error: {e}", file=out)


def report_json(rep: Report) -> dict[str, object]:
    return {
        "impl": rep.impl, "sizes": rep.sizes, "repeat": rep.repeat,
        "rows": [dict(asdict(r), ratio=r.ratio) for r in rep.rows],
        "bytes_per_resident_page": {str(k): {"current": c, "peak": p}
                                    for k, (c, p) in rep.memory.items()},
        "sparse": [asdict(s) for s in rep.sparse],
        "pair": [dict(asdict(p), ref_rate=p.ref_rate, pair_rate=p.pair_rate,
                      slowdown=p.slowdown) for p in rep.pair],
        "errors": rep.errors,
    }


# --------------------------------------------------------------------- main


def predicted_seconds(history: Sequence[tuple[int, float]], n: int) -> float:
    """A run's seconds at n pages from the runs so far ((pages, seconds), in
    order): the last scaled linearly, times the growth of the per-page cost
    between the last two runs if it grew (superlinear implementations)."""
    if not history:
        return 0.0
    last_n, last_s = history[-1]
    growth = 1.0
    if len(history) >= 2:
        prev_n, prev_s = history[-2]
        if prev_s > 0.05:  # below that, the per-page cost is noise
            growth = max(1.0, (last_s / last_n) / (prev_s / prev_n))
    return last_s * n / last_n * growth


MIN_LOG2 = HUGE_ORDER
"""The smallest size (log2 of the pages): one 512-page huge page, the unit
of the THP workloads (a smaller huge mapping holds no THP, and ``inval-subs``
fewer than 8 subscriptions)."""
MAX_LOG2 = 20
"""The largest size: the flatness target's top (2^20 pages; beyond it the
populated state alone takes gigabytes)."""
MAX_REPEAT = 1000
MAX_TRACES = 1_000_000
MAX_SPARSE_BLOCKS = SPARSE_SPAN // HUGE_PAGES
"""Each block is a 512-page VMA in its own 2^36/blocks slice."""
MAX_LIMIT_S = 366 * 86400.0
PROG = "python -m bench.scale"
QUICK = {"sizes": [10, 12], "repeat": 1, "traces": 2, "sparse_blocks": [64, 256]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, every one checked (``--json`` too: absent or a regular
    file, in an existing directory) before anything runs, even one that
    ``--quick`` or ``--pair-only`` then replaces; a bad one is one line on
    stderr and ``SystemExit(2)``."""
    p = Parser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=counts(MIN_LOG2, MAX_LOG2), default="10,12,14,16,18,20",
                   help=f"log2 of the page counts, from {MIN_LOG2} to {MAX_LOG2} "
                        "(default 10,12,14,16,18,20)")
    p.add_argument("--impl", choices=("both", "optimized", "reference"), default="both")
    p.add_argument("--repeat", type=count(1, MAX_REPEAT), default=1,
                   help="runs per point; the fastest is kept")
    p.add_argument("--workloads", type=names(WORKLOAD_NAMES, "workload"),
                   default=",".join(WORKLOAD_NAMES),
                   help="comma-separated subset of: " + ", ".join(WORKLOAD_NAMES))
    p.add_argument("--json", type=output_file, metavar="FILE",
                   help="also write the results as JSON")
    p.add_argument("--quick", action="store_true",
                   help="sizes 10,12, repeat 1, small sparse and fuzz figures (for tests)")
    p.add_argument("--ref-limit", type=seconds(MAX_LIMIT_S), default=20.0,
                   help="seconds; skip larger sizes of a workload on the reference after")
    p.add_argument("--opt-limit", type=seconds(MAX_LIMIT_S), default=60.0,
                   help="seconds; the same cap for the optimized implementation")
    p.add_argument("--no-memory", action="store_true", help="skip bytes per resident page")
    p.add_argument("--no-sparse", action="store_true", help="skip the sparse figure")
    p.add_argument("--no-pair", action="store_true", help="skip the fuzz-trace pair figure")
    p.add_argument("--traces", type=count(1, MAX_TRACES), default=200,
                   help="traces for the pair figure")
    p.add_argument("--pair-checks", action="store_true",
                   help="run the pair figure with invariant checks on (default off)")
    p.add_argument("--pair-only", action="store_true",
                   help="only the fuzz-trace pair figure (no workloads, memory or sparse); "
                        "with --pair-checks, issue 3's pair target as under fuzzing")
    p.add_argument("--sparse-blocks", type=counts(1, MAX_SPARSE_BLOCKS), default="1024,4096",
                   help=f"block counts of the sparse figure (1 to {MAX_SPARSE_BLOCKS})")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if args.pair_only:
        args.workloads, args.no_memory, args.no_sparse, args.no_pair = [], True, True, False
    args.sizes = sorted(set(args.sizes))
    return args


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    from fuzz import impls

    stream = out if out is not None else sys.stdout
    args = parse_or_status(parse_args, argv)
    if isinstance(args, int):
        return args
    sizes: list[int] = args.sizes
    wls = [w for w in WORKLOADS if w.name in args.workloads]
    sides = ["reference", "optimized"] if args.impl == "both" else [args.impl]
    try:
        factories = {name: impls.factory(name) for name in sides}
    except impls.UnknownImplementation as exc:
        return fail(PROG, str(exc))
    limits = {"reference": args.ref_limit, "optimized": args.opt_limit}
    rep = Report(args.impl, sizes, args.repeat)

    for wl in wls:
        history: dict[str, list[tuple[int, float]]] = {side: [] for side in sides}
        skipped: set[str] = set()
        for log2 in sizes:
            n = 1 << log2
            row = Row(wl.name, log2, n)
            for side in sides:
                if side in skipped:
                    continue
                if predicted_seconds(history[side], n) > 3 * limits[side]:
                    skipped.add(side)
                    continue
                try:
                    t = time_workload(factories[side], wl, n, args.repeat)
                except Exception as exc:  # a BenchError, or an implementation's crash
                    rep.errors.append(f"{wl.name} 2^{log2} {side}: {exc!r}")
                    skipped.add(side)
                    continue
                total = t.setup_s + t.measure_s
                history[side].append((n, total))
                if total > limits[side]:
                    skipped.add(side)
                ns = t.measure_s * 1e9 / n
                single = None if t.single_s is None else t.single_s * 1e9 / n
                if side == "reference":
                    row.ref_ns, row.ref_setup_s, row.ref_single_ns = ns, t.setup_s, single
                else:
                    row.opt_ns, row.opt_setup_s, row.opt_single_ns = ns, t.setup_s, single
                note = ("" if t.single_s is None else
                        f" (median of {SHORT_RUNS} back to back; single run "
                        f"{t.single_s * 1e6:,.0f} us)")
                print(f"  [{wl.name} 2^{log2} {side}: setup {t.setup_s:.2f}s, "
                      f"measured {t.measure_s:.3f}s{note}]", file=sys.stderr, flush=True)
            rep.rows.append(row)

    if "optimized" in factories and not args.no_memory:
        for log2 in sizes:
            try:
                rep.memory[log2] = bytes_per_page(factories["optimized"], 1 << log2)
            except Exception as exc:
                rep.errors.append(f"memory 2^{log2}: {exc}")
    if not args.no_sparse:
        for side in sides:
            for blocks in args.sparse_blocks:
                try:
                    rep.sparse.append(sparse_memory(factories[side], side, blocks))
                except Exception as exc:
                    rep.errors.append(f"sparse {side} {blocks}: {exc}")
    if not args.no_pair and args.impl == "both":
        for obs in (0, 8):
            rep.pair.append(fuzz_pair(args.traces, obs, args.pair_checks))

    print_report(rep, stream)
    if args.json is not None:
        return write_output(PROG, args.json, json.dumps(report_json(rep), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
