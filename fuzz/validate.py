"""Argument validation for every ``mirrorfuzz`` command: one layer, one style.

Each function takes the text of an argument (as argparse gives it) and
returns the value, or raises :class:`~fuzz.errors.BadInput` with one line
naming the flag and what is wrong with it (``fuzz.cli.main`` prints it as
``mirrorfuzz: error: ...`` and exits 2).  Numbers are bounded (no 400-digit
``--time``, no ``--jobs 10**20``), paths are checked before anything is
written (an over-long name, a device where a file or directory goes), and a
``--db`` is a directory or a ``redis://`` URL, checked here rather than in a
worker.  ``--mutant`` names go through :func:`fuzz.errors.check_mutant`.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from fuzz.errors import BadInput, check_mutant
from fuzz.safeio import describe

__all__ = ["check_mutant", "database", "duration", "jobs", "out_dir", "output_file", "whole"]

MAX_DIGITS: Final = 19
"""A whole-number argument has at most this many digits (< 2^63)."""
MAX_SECONDS: Final = 366 * 86400.0
"""The longest duration an argument may give (a year)."""
NAME_MAX: Final = 255
PATH_MAX: Final = 4095
JOBS_PER_CORE: Final = 4
_WHOLE = re.compile(rf"\+?[0-9]{{1,{MAX_DIGITS}}}")
_DURATION = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?)\s*([smhd]?)")
_UNIT: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _shown(text: str) -> str:
    """``text`` as an error message quotes it: printable, one line, short."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def whole(text: str, flag: str, low: int = 0, high: int = (1 << 63) - 1) -> int:
    """A whole number in [low, high] given as ``flag``."""
    value = text.strip()
    if _WHOLE.fullmatch(value) is None:
        raise BadInput(f"{flag} {_shown(text)}: expected a whole number")
    number = int(value)
    if number < low:
        raise BadInput(f"{flag} {_shown(text)}: expected a number >= {low}")
    if number > high:
        raise BadInput(f"{flag} {_shown(text)}: expected a number <= {high}")
    return number


def duration(text: str, flag: str, low: float = 0.0, high: float = MAX_SECONDS) -> float:
    """``90`` or ``90s``, ``15m``, ``8h``, ``1d`` -> seconds, above ``low`` and at
    most ``high``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise BadInput(f"{flag} {_shown(text)}: expected a duration like 90s, 15m or 8h")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not seconds > low:
        raise BadInput(f"{flag} {_shown(text)}: expected a duration above {low:g}s")
    if seconds > high:
        raise BadInput(f"{flag} {_shown(text)}: at most {high / 86400:g} days")
    return seconds


def max_jobs() -> int:
    return JOBS_PER_CORE * (os.cpu_count() or 1)


def jobs(text: str, flag: str = "--jobs") -> tuple[int, str | None]:
    """A worker count, capped at :data:`JOBS_PER_CORE` per core: (count, the
    note to print once every argument is checked, or None)."""
    value = text.strip().lstrip("+")
    if not value.isascii() or not value.isdigit():
        raise BadInput(f"{flag} {_shown(text)}: expected a whole number")
    number = int(value) if len(value) <= MAX_DIGITS else None
    if number is not None and number < 1:
        raise BadInput(f"{flag} {_shown(text)}: expected a number >= 1")
    cap = max_jobs()
    if number is None or number > cap:
        return cap, f"mirrorfuzz: {flag} {_shown(text)}: capped at {cap} ({JOBS_PER_CORE} per core)"
    return number, None


def path_text(text: str, flag: str) -> Path:
    """A path as given: not empty, no NUL, not longer than the system takes."""
    if not text:
        raise BadInput(f"{flag}: an empty path")
    if "\0" in text:
        raise BadInput(f"{flag} {_shown(text)}: a path cannot hold a NUL character")
    encoded = os.fsencode(text)
    if len(encoded) > PATH_MAX:
        raise BadInput(f"{flag} {_shown(text)}: path too long ({len(encoded)} bytes; "
                       f"at most {PATH_MAX})")
    for part in encoded.split(b"/"):
        if len(part) > NAME_MAX:
            raise BadInput(f"{flag} {_shown(text)}: a file name longer than {NAME_MAX} bytes")
    return Path(text)


def out_dir(text: str, flag: str = "--out") -> Path:
    """A directory to create or use: absent or a directory (not a file, device ...)."""
    path = path_text(text, flag)
    what = describe(path)
    if what not in ("absent", "a directory"):
        raise BadInput(f"{flag} {_shown(text)}: {what}, not a directory")
    for parent in path.absolute().parents:
        kind = describe(parent)
        if kind == "a directory":
            break
        if kind != "absent":
            raise BadInput(f"{flag} {_shown(text)}: {parent} is {kind}, not a directory")
    return path


def output_file(text: str, flag: str) -> Path:
    """A file to write: absent or a regular file, in an existing directory."""
    path = path_text(text, flag)
    what = describe(path)
    if what not in ("absent", "a regular file", "a dangling symbolic link"):
        raise BadInput(f"{flag} {_shown(text)}: {what}, not a regular file: "
                       "refusing to write over it")
    parent = path.parent
    kind = describe(parent)
    if kind != "a directory":
        raise BadInput(f"{flag} {_shown(text)}: {parent} is "
                       f"{'missing' if kind == 'absent' else kind}, not a directory")
    return path


def output_file_for(text: str, flag: str, source: Path) -> Path:
    """:func:`output_file`, and not the file ``source`` read from (what is
    written must not replace what it was made from)."""
    path = output_file(text, flag)
    try:
        same = path.exists() and os.path.samefile(path, source)
    except OSError:
        same = False
    if same:
        raise BadInput(f"{flag} {_shown(text)}: the input file itself: refusing to write over it")
    return path


def database(spec: str, flag: str = "--db") -> str:
    """A ``--db``: a directory (absent or one) or a ``redis://`` URL (checked,
    not yet connected to)."""
    if not spec.strip():
        raise BadInput(f"{flag}: an empty database spec (a directory or redis://host:port/N)")
    if "://" in spec:
        from fuzz.dbs import REDIS_SCHEMES, parse_redis_url, redacted

        scheme = spec.partition("://")[0].lower()
        if scheme not in REDIS_SCHEMES:
            raise BadInput(f"{flag} {_shown(redacted(spec))}: unsupported database URL "
                           "(a directory, or redis://host:port/N)")
        parse_redis_url(spec)
        return spec
    out_dir(spec, flag)
    return spec


def whole_arg(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [``low``, ``high``]."""
    def number(text: str) -> int:
        try:
            return whole(text, "", low, high)
        except BadInput as exc:
            raise argparse.ArgumentTypeError(str(exc).lstrip()) from None

    return number


def seconds_arg(high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds in (0, ``high``]."""
    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text[:40]!r}") from None
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"expected seconds in (0, {high:g}], "
                                             f"got {text[:40]!r}")
        return value

    return seconds
