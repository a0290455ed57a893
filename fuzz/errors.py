"""The one error type the ``mirrorfuzz`` commands share for bad input.

A :class:`BadInput` is the user's mistake (a missing file, a corrupt state
file, a bad argument), never a finding: ``fuzz.cli.main`` prints its text as
one line and exits 2.
"""

from __future__ import annotations


class BadInput(Exception):
    """Input a command cannot use; its text is the one-line error."""
