"""fuzz.strategies: one strategy per distinct arguments, options told apart
by type as well as by value."""

from __future__ import annotations

from hypothesis import find

from fuzz.strategies import booleans, integers, sampled_from


def test_the_same_arguments_give_the_same_strategy() -> None:
    assert sampled_from((3, 5, 7)) is sampled_from([3, 5, 7])
    assert integers(2, 9) is integers(2, 9)
    assert booleans() is booleans()
    assert sampled_from((3, 5)) is not sampled_from((5, 3))


def test_equal_options_of_other_types_are_not_shared() -> None:
    """``(0, 1) == (False, True)``: a cache keyed by value alone would draw
    ``False`` where the rule asked for ``0``."""
    ints, bools = sampled_from((0, 1)), sampled_from((False, True))
    assert type(find(ints, lambda _: True)) is int
    assert type(find(bools, lambda _: True)) is bool


def test_options_that_cannot_be_hashed_still_draw() -> None:
    options = [[1], [2]]
    assert find(sampled_from(options), lambda x: x == [2]) == [2]
