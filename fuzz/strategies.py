"""The engine's draws from Hypothesis, at Hypothesis's cost of choosing only.

Two costs of Hypothesis's own were most of a hunt's generation time
(``mirrorfuzz mutants``), and neither changes what is chosen:

* **Making strategies.**  Hypothesis builds, validates and measures a
  strategy each time one is made (``st.sampled_from(...)``,
  ``st.integers(...)``), and the rules made one at every draw.  A strategy
  is an immutable description: :func:`sampled_from`, :func:`integers` and
  :func:`booleans` make one per distinct arguments and hand it out again.
  Options are told apart by type as well as value (``1`` is not ``True``);
  options that cannot be hashed get a strategy of their own.
* **Annotating draws.**  ``DataObject.draw`` adds, for a person reading a
  failure, a "Draw n" note, a span for the explain phase and a check that
  the strategy left the global ``random`` alone; :func:`draw` skips them
  (the engine's failure message is its trace).

The choices, so the examples, are the same (``tests/unit/test_strategies.py``).
Measured on the seed-0 hunts, found at the same examples: ``per_chunk_read_begin``
2.10 CPU s to find, 1.81 with the strategies made once, 1.66 with the lean
draws too; ``flag_instead_of_seq`` 2.12, 1.83, 1.56.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import Any, Final, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")
CACHED: Final = 4096
"""Distinct arguments kept (least recently used first out)."""
BOOLEANS: Final = st.booleans()


@lru_cache(maxsize=CACHED)
def _sampled(key: tuple[tuple[type, Hashable], ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(tuple(value for _, value in key))


def sampled_from(options: Sequence[T]) -> st.SearchStrategy[T]:
    """``st.sampled_from(options)``."""
    try:
        return _sampled(tuple((type(value), value) for value in options))
    except TypeError:  # an option that cannot be hashed
        return st.sampled_from(options)


@lru_cache(maxsize=CACHED)
def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """``st.integers(low, high)``."""
    return st.integers(low, high)


def booleans() -> st.SearchStrategy[bool]:
    """``st.booleans()``."""
    return BOOLEANS


def draw(data: st.DataObject, strategy: st.SearchStrategy[T], label: object = None) -> T:
    """``data.draw(strategy, label)`` without what ``DataObject.draw`` adds to
    each draw for a person reading a failure: its "Draw n" notes, a span for
    the explain phase, a check that the strategy left the global ``random``
    alone (two ``random.getstate()`` a draw).  That was a fifth to a quarter
    of a hunt's CPU.  The choices, so the examples, are the same (the
    engine's failure message is its trace); ``label`` says what is drawn,
    for the reader of the rule."""
    value: T = data.conjecture_data.draw(strategy)
    return value
