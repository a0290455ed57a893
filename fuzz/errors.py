"""The one error type the ``mirrorfuzz`` commands share for bad input.

A :class:`BadInput` is the user's mistake (a missing file, a corrupt state
file, a bad argument), never a finding: ``fuzz.cli.main`` prints its text as
one line and exits 2.
"""

from __future__ import annotations


class BadInput(Exception):
    """Input a command cannot use; its text is the one-line error."""


def one_line(text: str, limit: int = 1000) -> str:
    """``text`` as one printable line (control characters escaped), at most ``limit``."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def check_mutant(name: str | None, what: str = "--mutant") -> None:
    """BadInput unless ``name`` (when given) is a planted bug's name.

    The one place ``--mutant`` and a campaign's recorded mutant are checked.
    """
    if name is None:
        return
    from model.bugs import REGISTRY

    if name not in REGISTRY:
        shown = name if len(name) <= 60 and name.isprintable() else repr(name[:60])
        raise BadInput(f"{what} {shown}: unknown mutant (see mirrorfuzz mutants --help)")
