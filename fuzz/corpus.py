"""The corpus: readable traces, one per ``*.trace`` file, in three directories.

::

    corpus/seeds/        scenario traces campaigns start from
    corpus/conformance/  scenario traces that pin down SPEC rules
    corpus/repros/       minimized findings, kept as regression traces

Rules :func:`check_corpus` enforces.  Every file is checked, and every broken
rule is one :class:`Problem` (``path:line: message``); nothing stops at the
first:

* a ``*.trace`` file lies in one of the three directories;
* it reads and parses (SPEC §2; the parser's line is reported);
* it has at least one step line, and ``=> expected`` on every step line;
* seeds and conformance traces have a ``# title:`` header;
* repros have a ``# signature:`` header ``kind/detail/object`` (or the older
  ``kind/detail/op``), kind being ``divergence``, ``violation``,
  ``exception`` or ``budget`` (SPEC §8.4).

Naming and saving repros:

* :func:`repro_name` is ``<signature, '/' -> '-'>-<hash>.trace``: only
  ``[A-Za-z0-9._-]``, at most 100 characters before the hash; the hash is 12
  hex digits of SHA-256 over the trace's **identity**: its ``frames`` and
  ``device-frames`` headers, its signature and its step lines without
  annotations.  Titles, comments (the ``# minimized:`` date), ``found-by``
  and ``=>`` results do not change the name: they follow from the steps or
  say nothing about the finding.
* :func:`save_repro` writes atomically (a temporary file in the same
  directory, fsync, then a hard link to the final name, which fails rather
  than replace a file) and never overwrites: a file already there with the
  same identity is kept as it is (it is the same repro, maybe with edited
  comments) and its path returned; a different one makes the name take a
  suffix ``-2``, ``-3`` ...
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from fuzz import safeio
from fuzz.errors import BadInput
from fuzz.safeio import load_trace
from fuzz.trace import Trace, TraceError, format_step, format_trace

KINDS: Final = ("seeds", "conformance", "repros")
SCENARIO_KINDS: Final = ("seeds", "conformance")
FINDING_KINDS: Final = ("divergence", "violation", "exception", "budget")
SIGNATURE_RE: Final = re.compile(rf"(?:{'|'.join(FINDING_KINDS)})/[^/\s]+/[^/\s]+")
HASH_DIGITS: Final = 12
MAX_SLUG: Final = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Problem:
    """One broken rule in one corpus file (line 0: the whole file)."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


# -------------------------------------------------------------- checking


def trace_problems(path: Path, kind: str) -> list[Problem]:
    """The problems of one trace file of corpus directory ``kind``."""
    try:
        trace = load_trace(str(path))
    except TraceError as e:
        return [Problem(path, e.lineno, e.message)]
    found: list[Problem] = []
    steps = trace.steps
    if not steps:
        found.append(Problem(path, 1, "no step lines"))
    for line in steps:
        if line.expected is None:
            found.append(Problem(path, line.lineno, "step line without '=> expected'"))
    if kind in SCENARIO_KINDS and not trace.header("title"):
        found.append(Problem(path, 1, f"a {kind} trace needs a '# title:' header"))
    if kind == "repros":
        sig = trace.header("signature")
        if not sig:
            found.append(Problem(path, 1, "a repro needs a '# signature:' header"))
        elif SIGNATURE_RE.fullmatch(sig) is None:
            found.append(Problem(path, _header_line(path, "signature"),
                                 f"signature {sig!r} is not kind/detail/object with kind one of "
                                 + ", ".join(FINDING_KINDS)))
    return sorted(found, key=lambda p: p.line)


def _header_line(path: Path, key: str) -> int:
    try:
        text = safeio.read_text(path)
    except safeio.ReadError:
        return 1
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.startswith(f"# {key}:"):
            return lineno
    return 1


def walk_traces(root: Path) -> tuple[list[Path], list[Problem]]:
    """The ``*.trace`` paths under ``root`` (sorted), and a problem for each
    directory that cannot be listed (never skipped silently)."""
    found: list[Path] = []
    problems: list[Problem] = []

    def failed(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        problems.append(Problem(where, 0, f"cannot list this directory: "
                                          f"{exc.strerror or exc}"))

    for directory, dirs, files in os.walk(root, onerror=failed):
        dirs.sort()
        found.extend(Path(directory) / name for name in files if name.endswith(".trace"))
        found.extend(Path(directory) / name for name in dirs if name.endswith(".trace"))
    return sorted(found), problems


def trace_files(paths: Sequence[str]) -> Iterator[Path]:
    """Each path, or every ``*.trace`` below a directory, in sorted order."""
    for name in paths:
        path = Path(name)
        what = safeio.describe(path)
        if what == "a directory":
            found, problems = walk_traces(path)
            if problems:
                raise BadInput(str(problems[0]).replace(":0: ", ": ", 1))
            if not found:
                raise BadInput(f"{name}: no *.trace files in this directory")
            yield from found
        elif what == "a regular file":
            yield path
        elif what == "absent":
            raise BadInput(f"{name}: no such file or directory")
        else:
            raise BadInput(f"{name}: {what}, not a trace file or a directory")


def check_corpus(root: str | Path) -> list[Problem]:
    """Every problem of every ``*.trace`` file under ``root``, by path then line.

    ``FileNotFoundError`` if ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    paths, found = walk_traces(root)
    for path in paths:
        kind = path.relative_to(root).parts[0]
        if kind not in KINDS:
            found.append(Problem(path, 0, "a corpus trace belongs in "
                                 + ", ".join(f"{k}/" for k in KINDS)))
            continue
        found.extend(trace_problems(path, kind))
    return found


def corpus_traces(root: str | Path) -> list[Path]:
    """The ``*.trace`` paths under ``root``, sorted."""
    return walk_traces(Path(root))[0]


# ---------------------------------------------------------------- naming


def identity(trace: Trace) -> str:
    """What makes two repros the same: semantic headers, signature, bare steps."""
    lines = [f"{k}: {v}" for k, v in trace.headers
             if k in ("frames", "device-frames", "signature")]
    lines += [format_step(replace(s, expected=None)) for s in trace.steps]
    return "\n".join(lines) + "\n"


def repro_name(signature: str, trace: Trace) -> str:
    """A filesystem-safe file name for a repro of ``signature``."""
    slug = _UNSAFE.sub("_", signature.replace("/", "-"))[:MAX_SLUG].strip(".") or "finding"
    digest = hashlib.sha256(identity(trace).encode("utf-8")).hexdigest()[:HASH_DIGITS]
    return f"{slug}-{digest}.trace"


# ---------------------------------------------------------------- saving


_fsync_dir = safeio.fsync_dir
_temp_copy = safeio.temp_copy
write_atomic = safeio.write_atomic
"""Replace a regular file all at once; never a device, FIFO or directory
(fuzz.safeio.write_atomic)."""


def _link_new(tmp: Path, path: Path) -> bool:
    """Give ``tmp``'s file the name ``path`` unless that name exists."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # no hard links here: O_EXCL claims the name, then replace fills it
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        os.replace(tmp, path)
    return True


def _same_repro(path: Path, trace: Trace) -> bool:
    try:
        return identity(load_trace(str(path))) == identity(trace)
    except TraceError:
        return False


def save_repro(directory: str | Path, trace: Trace) -> Path:
    """Save ``trace`` (it needs a ``# signature:`` header) in ``directory``.

    Gives the path of the file holding it: a new one, or an existing file
    with the same identity.  Never overwrites or removes another file.
    """
    signature = trace.header("signature")
    if not signature:
        raise ValueError("a repro needs a '# signature:' header")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = repro_name(signature, trace).removesuffix(".trace")
    tmp = _temp_copy(directory, format_trace(trace))
    try:
        suffix = 1
        while True:
            path = directory / (f"{stem}.trace" if suffix == 1 else f"{stem}-{suffix}.trace")
            if path.exists():
                if _same_repro(path, trace):
                    return path
                suffix += 1
            elif _link_new(tmp, path):
                _fsync_dir(directory)
                return path
    finally:
        tmp.unlink(missing_ok=True)
