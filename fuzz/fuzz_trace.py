#!/usr/bin/env python3
"""Atheris target: codec bytes -> trace -> the executor on both implementations.

Rule this module enforces: **an input fails exactly when the executor judges
its decoded trace a finding**, and the failure carries the finding's
signature and the whole readable trace (the raised :class:`TraceFinding`
message, and a ``.trace`` file written beside libFuzzer's artifact).  The
input is ``fuzz.codec.decode(data)`` (total: every byte string is a trace);
the only judge is ``fuzz.executor.run_trace``.  Nothing else raises: a
well-formed trace never crashes the target for any other reason.

**Work cap.**  Decoded traces have a heavy tail: two mirrors' ``dwrite``
walks that keep invalidating each other while forked processes map thousands
of pages can take 50,000 steps and minutes of observations before both
commit, which is legal and not a livelock by SPEC §5.4.  So the executor
runs each input with a work cap per side, ``max_work`` (300,000 units, a few
CPU seconds; ``0``: no cap; the units are ``fuzz.verdict``'s): an input
whose verdict is ``capped`` was judged up to the cap, not a finding, and is
counted in :data:`CAPPED`.  A finding before
the cap is reported as usual; what the cap hides is a finding after it,
including the executor's own ``max_line_steps`` livelock (100,000 steps),
which the other engines keep.

Usage (inside the venv or tox env: libFuzzer's ``-fork``/``-jobs`` re-execute
this file through its shebang, so ``python3`` must be the one with atheris)::

    fuzz/fuzz_trace.py --make-seeds work/seeds          # corpus/**/*.trace -> bytes
    fuzz/fuzz_trace.py -max_total_time=60 -dict=fuzz/fuzz_trace.dict \\
        -artifact_prefix=work/artifacts/ work/corpus work/seeds
    fuzz/fuzz_trace.py -runs=1 crash-<sha1>             # reproduce one input

Settings, as environment variables or as ``--name=value`` flags (libFuzzer
ignores flags starting with ``--``; they are copied to the environment so
``-fork``/``-jobs`` children see them too):

===========================  =================  ==============================
variable                     flag               meaning (default)
===========================  =================  ==============================
``MIRRORFUZZ_SIDES``         ``--sides``        ``both``, ``auto``, ``reference``
                                                or ``optimized`` (``both``)
``MIRRORFUZZ_MUTANT``        ``--mutant``       a planted bug by name (none)
``MIRRORFUZZ_CONTRACT``      ``--contract``     ``hmm`` or ``registration-cache``
                                                (``hmm``; ``fuzz.contracts``)
``MIRRORFUZZ_OBSERVE_EVERY`` ``--observe-every`` compare observations every K
                                                steps (``fuzz.profiles.ATHERIS``'s;
                                                1 in replay)
``MIRRORFUZZ_MAX_WORK``      ``--max-work``     the work cap per side
                                                (``fuzz.profiles.MAX_WORK``)
``MIRRORFUZZ_FINDINGS``      ``--findings``     directory for readable finding
                                                traces (else beside the artifact)
``MIRRORFUZZ_INSTRUMENT``    ``--instrument``   coverage for ``model`` (``model``),
                                                or ``model`` and the judged ``fuzz``
                                                modules (``all``)
``MIRRORFUZZ_MUTATOR``       ``--mutator``      ``structure`` (fuzz.mutator with
                                                libFuzzer's byte mutation as a
                                                fallback) or ``bytes`` (libFuzzer's
                                                only) (``structure``)
===========================  =================  ==============================

Two more variables are for the campaign runner (``fuzz.campaign``):
``MIRRORFUZZ_PROGRESS`` (print a progress line with inputs and executor steps
at most once a second) and ``MIRRORFUZZ_KNOWN`` (a directory of finding traces
whose signatures are not reported again).

Besides the judged code's coverage, each input's race windows are features
(``fuzz.window_features``): an input that lands an op in a window of another
op that no earlier input reached is kept, as new coverage would be.

The target judges as ``fuzz.profiles.ATHERIS`` says, with the executor's
fast judge (``Settings.fast``):
observations every ``K`` steps and after the drain, the reference's
invariant scans every few steps and at the end; an input with a finding is
judged again by the full judge (every scan and observation at every step),
whose first finding is the one reported, so that a repro's line is the
earliest the full judge sees.

Modules are imported lazily, so that :func:`main` can import the judged code
under ``atheris.instrument_imports`` first; the mutator is never instrumented.
Importing this module needs no atheris (the unit tests call
:func:`TestOneInput` directly).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import pkgutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from fuzz.profiles import ATHERIS

if TYPE_CHECKING:
    from fuzz.executor import Finding, Settings
    from fuzz.trace import Trace
    from model.interface import Factory

ENV: Final = {
    "sides": "MIRRORFUZZ_SIDES",
    "mutant": "MIRRORFUZZ_MUTANT",
    "contract": "MIRRORFUZZ_CONTRACT",
    "observe-every": "MIRRORFUZZ_OBSERVE_EVERY",
    "max-work": "MIRRORFUZZ_MAX_WORK",
    "findings": "MIRRORFUZZ_FINDINGS",
    "instrument": "MIRRORFUZZ_INSTRUMENT",
    "mutator": "MIRRORFUZZ_MUTATOR",
    "artifact-prefix": "MIRRORFUZZ_ARTIFACT_PREFIX",  # set by main from -artifact_prefix
}
INSTRUMENT_LEVELS: Final = ("model", "all")
JUDGED: Final = ("fuzz.codec", "fuzz.executor", "fuzz.oracle", "fuzz.trace", "fuzz.impls")
"""Imported before fuzzing, under instrumentation, with every module of the chosen sides."""
NOT_INSTRUMENTED: Final = ("fuzz.mutator", "fuzz.seeds", "fuzz.fuzz_trace", "fuzz.cli",
                           "fuzz.minimize", "fuzz.corpus", "fuzz.profiles")
LIBFUZZER_DEFAULTS: Final = ("-entropic=0",)
"""libFuzzer flags :func:`main` adds unless the command line gives that flag.
``-entropic=0``: libFuzzer's entropic schedule keeps, for every corpus input,
the frequencies of the rare features it hit (every feature seen fewer than
255 times counts as rare), and this target's Python coverage has thousands:
the worker's native heap grew by about 16 KB per corpus input, 8 KB per
input run, while its Python heap stayed flat (issue 14; flat with the flag)."""
MESSAGE_LIMIT: Final = 4000
"""The finding's own description is cut to this many characters in the message."""


CAPPED: list[int] = [0]
"""How many inputs this process cut at the work cap."""

PROGRESS_ENV: Final = "MIRRORFUZZ_PROGRESS"
"""When set (the campaign runner sets it), :func:`TestOneInput` prints
``mirrorfuzz-progress execs=N steps=S`` (inputs run and executor steps taken by
this process) to stderr at most once a second."""
_progress: list[float] = [0, 0, 0.0]  # inputs, steps, when last printed

KNOWN_ENV: Final = "MIRRORFUZZ_KNOWN"
"""A directory of finding traces (the campaign runner sets its ``findings/raw``):
a finding whose signature one of them names in its ``# signature:`` header is
not reported again, so that a worker moves on past a bug already found."""


_seen_known: dict[Path, str | None] = {}
"""Each known finding file read so far and the signature its header names:
the files are written once (atomically) and never change, so each is read
once, not again at every finding."""


def _known(signature: str) -> bool:
    directory = os.environ.get(KNOWN_ENV)
    if not directory:
        return False
    for path in Path(directory).glob("*.trace"):
        if path not in _seen_known:
            try:
                _seen_known[path] = _header_signature(path)
            except OSError:
                continue  # not remembered: read again next time
        if _seen_known[path] == signature:
            return True
    return False


def _header_signature(path: Path) -> str | None:
    """The ``# signature:`` of a finding trace (in its first 12 lines), or None."""
    prefix = "# signature: "
    with open(path, encoding="utf-8", errors="replace") as f:
        for _, line in zip(range(12), f, strict=False):
            if line.startswith(prefix) and line.endswith("\n"):
                return line[len(prefix):-1]
    return None


def _count_progress(steps: int) -> None:
    if not os.environ.get(PROGRESS_ENV):
        return
    _progress[0] += 1
    _progress[1] += steps
    now = time.monotonic()
    if now - _progress[2] >= 1.0:
        _progress[2] = now
        print(f"mirrorfuzz-progress execs={int(_progress[0])} steps={int(_progress[1])}",
              file=sys.stderr, flush=True)


class TraceFinding(Exception):
    """The executor judged the input's trace a finding; the message is readable."""

    def __init__(self, signature: str, message: str, path: Path | None) -> None:
        super().__init__(message)
        self.signature = signature
        self.path = path


@dataclass(frozen=True)
class TargetConfig:
    sides: str = "both"
    mutant: str | None = None
    contract: str = "hmm"  # fuzz.contracts.DEFAULT
    observe_every: int = ATHERIS.observe_every
    max_work: int = ATHERIS.max_work
    findings: Path | None = None
    artifact_prefix: str | None = None  # None: no file beside the artifact

    @classmethod
    def from_env(cls) -> TargetConfig:
        env = os.environ
        findings = env.get(ENV["findings"]) or None
        return cls(sides=env.get(ENV["sides"]) or "both",
                   mutant=env.get(ENV["mutant"]) or None,
                   contract=env.get(ENV["contract"]) or "hmm",
                   observe_every=int(env.get(ENV["observe-every"]) or ATHERIS.observe_every),
                   max_work=int(env.get(ENV["max-work"]) or ATHERIS.max_work),
                   findings=Path(findings) if findings else None,
                   artifact_prefix=env.get(ENV["artifact-prefix"]))

    def settings(self) -> Settings:
        from dataclasses import replace

        chosen: Settings = replace(ATHERIS.settings(self.mutant, observe_every=self.observe_every,
                                                    contract=self.contract),
                                   max_work=self.max_work)
        return chosen


_config: TargetConfig | None = None
_sides: list[tuple[str, Factory]] | None = None


def configure(config: TargetConfig | None) -> None:
    """Use ``config`` from now on (``None``: read the environment again)."""
    global _config, _sides
    _config, _sides = config, None


def current() -> TargetConfig:
    global _config
    if _config is None:
        _config = TargetConfig.from_env()
    return _config


def _implementations() -> list[tuple[str, Factory]]:
    global _sides
    if _sides is None:
        from fuzz import impls

        _sides = impls.sides(current().sides)
    return _sides


# ---------------------------------------------------------------- findings


def finding_trace(trace: Trace, finding: Finding, config: TargetConfig) -> Trace:
    """The trace with its signature and provenance as headers and a replay comment."""
    from dataclasses import replace

    from fuzz.trace import Comment, with_headers

    headers = {"title": f"atheris finding {finding.signature}",
               "found-by": "atheris fuzz/fuzz_trace.py"
                           + (f" --mutant={config.mutant}" if config.mutant else ""),
               "signature": finding.signature}
    from fuzz.plugins import driver_header

    if (drivers := driver_header()) is not None:
        headers["driver"] = drivers
    marked = with_headers(replace(trace, headers=()), headers)
    sized = tuple((k, v) for k, v in trace.headers if k in ("frames", "device-frames"))
    note = Comment(f"# replay with: {replay_command(config, '<this file>')}")
    return replace(marked, headers=marked.headers + sized, body=(note, *trace.body))


def replay_command(config: TargetConfig, path: str) -> str:
    impl = config.sides if config.sides != "auto" else "auto"
    mutant = f" --mutant {config.mutant}" if config.mutant else ""
    return f"python -m fuzz.cli replay --impl {impl}{mutant} {path}"


def finding_path(data: bytes, signature: str, config: TargetConfig) -> Path | None:
    """Where the readable trace goes: the findings directory, or beside the artifact."""
    sha1 = hashlib.sha1(data).hexdigest()  # libFuzzer names its artifact crash-<sha1>
    if config.findings is not None:
        slug = signature.replace("/", "-")
        return config.findings / f"{slug}-{sha1[:16]}.trace"
    if config.artifact_prefix is not None:
        return Path(f"{config.artifact_prefix}crash-{sha1}.trace")
    return None


def _report(data: bytes, trace: Trace, finding: Finding, config: TargetConfig) -> TraceFinding:
    from fuzz.trace import format_trace

    text = format_trace(finding_trace(trace, finding, config))
    path = finding_path(data, finding.signature, config)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    described = str(finding)
    if len(described) > MESSAGE_LIMIT:
        described = described[:MESSAGE_LIMIT] + " ..."
    lines = [f"mirrorfuzz finding {finding.signature}", described]
    if path is not None:
        lines += [f"readable trace: {path}", f"replay: {replay_command(config, str(path))}"]
    lines += ["----- trace -----", text.rstrip("\n"), "----- end of trace -----"]
    return TraceFinding(finding.signature, "\n".join(lines), path)


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    """Decode ``data``, run it on the configured sides; raise :class:`TraceFinding`."""
    from fuzz import window_features
    from fuzz.codec import decode
    from fuzz.executor import run_trace

    for atheris in _guarded:
        guard_array_compares(atheris)
    config = current()
    trace = decode(data)
    verdict = run_trace(trace, _implementations(), config.settings())
    window_features.feed(trace.steps, verdict.results)  # race windows as coverage
    _count_progress(verdict.steps)
    CAPPED[0] += verdict.capped
    if verdict.excused and os.environ.get(PROGRESS_ENV):
        from fuzz.campaign.workers import tally

        tally("violation", verdict.excused[0].signature)
    finding = verdict.finding
    if finding is None:
        return
    if _known(finding.signature):
        return
    raise _report(data, trace, finding, config)


# ------------------------------------------------------------------- main


def _atheris() -> ModuleType | None:
    try:
        return importlib.import_module("atheris")
    except ImportError:
        return None


@contextlib.contextmanager
def _instrumented(atheris: ModuleType, level: str) -> Iterator[None]:
    include = ["model", "fuzz"] if level == "all" else ["model"]
    with atheris.instrument_imports(include=include, exclude=list(NOT_INSTRUMENTED)):
        yield


_guarded: list[ModuleType] = []
"""The atheris module whose comparison hook :func:`TestOneInput` keeps guarded."""


def guard_array_compares(atheris: ModuleType) -> None:
    """Stop atheris leaking the result of every comparison with a numpy array.

    Instrumented code calls ``atheris._trace_cmp(left, right, op, counter,
    is_const)`` for each ``<``, ``==``, ... ; atheris 3.0's native hook keeps
    a reference to the result when it is an array (one leaked array per
    comparison, and the optimized model compares arrays at every step): the
    worker's RSS grew by some 165 KB per input under libFuzzer, and as much
    in a plain loop over instrumented modules (``bench.judge`` measures it).
    The hook is looked up on the module at each call, so it is replaced by
    one that compares an array operand directly (libFuzzer's comparison
    tracing takes integers and bytes, so an array gave it nothing) and
    hands every other comparison to the native hook."""
    native = getattr(atheris, "_trace_cmp", None)
    if native is None or getattr(native, "guarded", False):
        return
    import dis
    import operator

    import numpy as np

    bytecode = importlib.import_module("atheris.instrument_bytecode")
    shift = int(getattr(bytecode, "CMP_OP_SHIFT_AMOUNT", 0))
    by_symbol: dict[str, Callable[[Any, Any], object]] = {
        "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
        ">": operator.gt, ">=": operator.ge}
    ops = [by_symbol[symbol] for symbol in dis.cmp_op]
    ndarray = np.ndarray

    def trace_cmp(left: Any, right: Any, arg: int, counter: int, is_const: bool) -> object:
        if isinstance(left, ndarray) or isinstance(right, ndarray):
            return ops[arg >> shift](left, right)
        return native(left, right, arg, counter, is_const)

    trace_cmp.guarded = True  # type: ignore[attr-defined]
    setattr(atheris, "_trace_cmp", trace_cmp)  # noqa: B010 (a module's attribute, replaced)


def load_judged(atheris: ModuleType | None, level: str) -> None:
    """Import the code under test (instrumented per ``level``) before anything else."""
    if level not in INSTRUMENT_LEVELS:
        raise SystemExit(f"fuzz_trace: --instrument must be one of {INSTRUMENT_LEVELS}")
    context = (_instrumented(atheris, level) if atheris is not None
               else contextlib.nullcontext())
    with context:
        for name in JUDGED:
            importlib.import_module(name)
        from fuzz.impls import IMPLEMENTATIONS

        for side, _ in _implementations():
            package = IMPLEMENTATIONS[side][0]
            module = importlib.import_module(package)
            for sub in pkgutil.iter_modules(getattr(module, "__path__", [])):
                importlib.import_module(f"{package}.{sub.name}")  # those imported lazily too


def split_flags(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Our ``--name=value`` flags (and ``--make-seeds DIR``), and the rest for libFuzzer."""
    ours: dict[str, str] = {}
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg[2:].partition("=")
        if arg.startswith("--") and name == "make-seeds":
            if not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            ours[name] = value
        elif arg.startswith("--") and name in ENV and eq:
            ours[name] = value
        else:
            rest.append(arg)
        i += 1
    return ours, rest


def libfuzzer_args(args: Sequence[str]) -> list[str]:
    """``args`` (the program name first) with each of :data:`LIBFUZZER_DEFAULTS`
    the command line does not set."""
    given = {arg.partition("=")[0] for arg in args[1:] if arg.startswith("-")}
    added = [flag for flag in LIBFUZZER_DEFAULTS if flag.partition("=")[0] not in given]
    return [*args[:1], *added, *args[1:]]


def _artifact_prefix(args: Sequence[str]) -> str:
    prefix = ""
    for arg in args:
        if arg.startswith("-artifact_prefix="):
            prefix = arg.partition("=")[2]
    return prefix


def main(argv: Sequence[str] | None = None) -> int:
    ours, args = split_flags(sys.argv if argv is None else argv)
    if "make-seeds" in ours:
        from fuzz.seeds import make_seeds

        if not ours["make-seeds"]:
            print("fuzz_trace: --make-seeds needs a directory", file=sys.stderr)
            return 2
        report = make_seeds(ours["make-seeds"])
        for path, why in report.skipped:
            print(f"fuzz_trace: skipped {path}: {why}", file=sys.stderr)
        print(f"fuzz_trace: wrote {len(report.written)} seeds to {ours['make-seeds']}")
        return 0
    for name, value in ours.items():
        os.environ[ENV[name]] = value  # -fork/-jobs children inherit the environment
    os.environ.setdefault(ENV["artifact-prefix"], _artifact_prefix(args))
    from fuzz.plugins import load_for

    load_for(None)  # the campaign's --driver files ($MIRRORFUZZ_DRIVERS)
    configure(None)
    atheris = _atheris()
    if atheris is None:
        print("fuzz_trace: atheris is not installed (pip install '.[fuzz]')", file=sys.stderr)
        return 2
    load_judged(atheris, os.environ.get(ENV["instrument"]) or "model")
    from fuzz import window_features

    window_features.instrument(atheris)
    kwargs = {}
    if (os.environ.get(ENV["mutator"]) or "structure") == "structure":
        from fuzz import mutator

        def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
            return mutator.mutate(data, max_size, seed, byte_mutate=atheris.Mutate)

        kwargs = {"custom_mutator": custom_mutator, "custom_crossover": mutator.crossover}
    atheris.Setup(libfuzzer_args(args), TestOneInput, **kwargs)
    _guarded.append(atheris)  # guarded at each input: Fuzz sets atheris._trace_cmp again
    atheris.Fuzz()
    return 0


def _import_the_repository() -> None:
    """Run as ``fuzz/fuzz_trace.py``: import from the repository root, not ``fuzz/``
    (whose ``trace.py`` would shadow the standard library's ``trace``)."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))


if __name__ == "__main__":
    _import_the_repository()
    sys.exit(main())
