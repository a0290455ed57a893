"""What the ``bench`` commands share on their command lines.

The project's rule for every command: a bad argument is **one line** on
stderr and exit status 2, never a traceback or argparse's usage dump, and it
is found before any long work starts and before anything is written.
:class:`Parser` makes argparse's own errors one line; the ``type=``
functions here (:func:`count`, :func:`counts`, :func:`names`,
:func:`seconds`, :func:`output_file`) check every value as it is parsed, so
a value is checked even when another option (``--quick``) later replaces
it; :func:`write_output` writes a result file all at once (a temporary file
renamed over it) and gives a failure as one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn, TypeVar

from fuzz.errors import one_line

T = TypeVar("T")

MAX_NUMBER: Final = 10**9
"""The default largest whole number an argument may give."""


def shown(text: str, limit: int = 40) -> str:
    """An argument's text as an error message quotes it: short, one line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def fail(prog: str, message: str) -> int:
    """Print ``prog: error: message`` as one line on stderr; the exit status (2)."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return 2


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (exit 2), as every mirrorfuzz command's."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(fail(self.prog, message))


def parse_or_status(parse: Callable[[Sequence[str] | None], T],
                    argv: Sequence[str] | None) -> T | int:
    """``parse(argv)``, or the exit status it stopped with (2 for a bad
    argument, 0 for ``--help``): for a ``main`` that returns its status
    rather than raising ``SystemExit``."""
    try:
        return parse(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


# ------------------------------------------------------------------ numbers


def whole(text: str, least: int, most: int = MAX_NUMBER) -> int:
    """One whole number in [least, most]."""
    value = text.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 10
            and least <= int(value) <= most):
        raise argparse.ArgumentTypeError(f"expected a whole number from {least} to {most}, "
                                         f"got {shown(text)}")
    return int(value)


def count(least: int, most: int = MAX_NUMBER) -> Callable[[str], int]:
    """An argparse type: a whole number in [least, most]."""
    return lambda text: whole(text, least, most)


def items(text: str, what: str) -> list[str]:
    """The items of a comma-separated list, stripped: at least one, none empty."""
    parts = [x.strip() for x in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, "
                                         f"got {shown(text)} (no {what})")
    if not all(parts):
        raise argparse.ArgumentTypeError(f"an empty item in {shown(text)} "
                                         f"(a comma-separated list of {what})")
    return parts


def counts(least: int, most: int = MAX_NUMBER) -> Callable[[str], list[int]]:
    """An argparse type: a non-empty comma-separated list of whole numbers in [least, most]."""
    return lambda text: [whole(x, least, most) for x in items(text, "whole numbers")]


def names(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type: a non-empty comma-separated list of ``choices`` (each a ``what``)."""
    def parse(text: str) -> list[str]:
        chosen = items(text, what + "s")
        unknown = [x for x in chosen if x not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {shown(unknown[0])} "
                                             f"(the {what}s: {', '.join(choices)})")
        return chosen

    return parse


def seconds(high: float) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds in (0, ``high``] (the
    ``mirrorfuzz`` command's own check)."""
    from fuzz.validate import seconds_arg

    return seconds_arg(high)


# -------------------------------------------------------------------- paths


def path_text(text: str) -> Path:
    """A path as given: not empty, no NUL, not longer than the system takes
    (``fuzz.validate.path_text``)."""
    from fuzz.errors import BadInput
    from fuzz.validate import path_text as checked

    try:
        return checked(text, "path")
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def output_file(text: str) -> Path:
    """An argparse type: a file to write at the end of a run, checked now:
    absent or a regular file (a symbolic link is followed), in an existing
    directory this process may write in."""
    from fuzz.safeio import WriteError, describe, writable_target

    path = path_text(text)
    try:
        target = writable_target(path)
    except WriteError as exc:
        raise argparse.ArgumentTypeError(f"{shown(text)}: {exc.reason}") from None
    parent = target.parent
    kind = describe(parent)
    if kind != "a directory":
        raise argparse.ArgumentTypeError(
            f"{shown(text)}: its directory {shown(str(parent))} is "
            f"{'missing' if kind == 'absent' else kind + ', not a directory'}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{shown(text)}: cannot write in its directory "
                                         f"{shown(str(parent))} (permission denied)")
    return path


def write_output(prog: str, path: Path, text: str) -> int:
    """Write ``text`` to ``path`` all at once (never a partial file): 0, or 2
    with one line on stderr (a full disk, a file replaced meanwhile)."""
    from fuzz.safeio import WriteError, write_atomic

    try:
        write_atomic(path, text)
    except WriteError as exc:
        return fail(prog, f"cannot write {path}: {exc.reason}")
    except OSError as exc:
        return fail(prog, f"cannot write {path}: {exc.strerror or exc}")
    return 0
