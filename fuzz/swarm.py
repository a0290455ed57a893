"""Swarm testing for the stateful engine: each example fuzzes with a random
subset of the op rules switched off.

Groce et al., "Swarm Testing" (ISSTA 2012): a test generator that offers
every feature in every test spreads its choices thin, and a feature can
*suppress* a bug (an `exit` or `munmap` that tears down the state a race
needs).  Drawing, per example, which features are on gives deep sequences
of a few ops (pin, fork, write, fork again) far more often, while the union
over examples still covers everything.

Rules this module keeps:

* **Generic.**  The gate knows op rule names only, never a planted bug.
* **Shrinks to the old engine.**  Each op's draw is a boolean whose
  simplest value (False) means *on*: a shrunk example has every op
  offered, as before swarm testing.
* **A few ops are always on** (``ALWAYS``), so that an example can always
  make progress: Hypothesis needs some rule to be runnable at every step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from hypothesis import strategies as st
from hypothesis.stateful import precondition

from fuzz.strategies import booleans, draw

ALWAYS: Final = frozenset({"mmap", "read", "write", "open"})
"""Op rules never switched off."""


def draw_disabled(data: st.DataObject, rules: Iterable[str]) -> frozenset[str]:
    """The op rules this example switches off (each with probability 1/2)."""
    off = set()
    for name in sorted(rules):
        if name not in ALWAYS and draw(data, booleans(), label=f"swarm off {name}"):
            off.add(name)
    return frozenset(off)


def gate(cls: Any, rules: Iterable[str]) -> None:
    """Add to each named rule of ``cls`` the precondition that this example's
    swarm (``self.swarm_off``, a set of rule names) leaves it on."""
    for name in rules:
        if name in ALWAYS:
            continue
        setattr(cls, name, precondition(_swarm_allows(name))(getattr(cls, name)))


def _swarm_allows(name: str) -> Callable[[Any], bool]:
    def allows(machine: Any) -> bool:
        return name not in machine.swarm_off
    return allows
