"""Seed byte files for the byte-level fuzzers, made from the readable corpus.

Rule this module enforces: **a seed file holds exactly ``fuzz.codec.encode``
of one corpus trace**, so ``decode(seed)`` is that trace's step lines and
sizing headers (comments, ``=>`` results and other headers are not encoded).
The readable ``*.trace`` files are what is kept in git; seed directories are
working data, made again whenever they are needed.  A trace the codec cannot
reproduce is skipped and named, never approximated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fuzz.codec import encode
from fuzz.trace import TraceError, load_trace

DEFAULT_SOURCES: Final = ("corpus",)
SUFFIX: Final = ".seed"


@dataclass
class SeedReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (trace, why)


def trace_paths(sources: Iterable[str | Path]) -> list[Path]:
    """Every ``*.trace`` file below each source (a file is taken as is), sorted."""
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        found.extend(sorted(path.rglob("*.trace")) if path.is_dir() else [path])
    return found


def seed_name(path: Path) -> str:
    """``seeds-drain_completes_job.seed`` for ``corpus/seeds/drain_completes_job.trace``."""
    return f"{path.parent.name}-{path.stem}{SUFFIX}"


def make_seeds(out_dir: str | Path, sources: Sequence[str | Path] = DEFAULT_SOURCES) -> SeedReport:
    """Write one seed file per encodable corpus trace into ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = SeedReport()
    for path in trace_paths(sources):
        try:
            data = encode(load_trace(str(path)))
        except (TraceError, ValueError) as exc:
            report.skipped.append((path, str(exc)))
            continue
        target = out / seed_name(path)
        target.write_bytes(data)
        report.written.append(target)
    return report
