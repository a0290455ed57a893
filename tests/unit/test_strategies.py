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


def test_draw_makes_the_same_choices_as_data_draw() -> None:
    """The engine's draws skip what ``DataObject.draw`` adds for readers; the
    values drawn from the same seed must be the same as through it."""
    from hypothesis import given, seed, settings
    from hypothesis import strategies as st

    from fuzz.strategies import draw

    def run(lean: bool) -> list[object]:
        values: list[object] = []

        @seed(7)
        @settings(database=None, max_examples=30)
        @given(st.data())
        def collect(data: st.DataObject) -> None:
            for strategy in (integers(0, 1000), sampled_from(("a", "b", "c")), booleans(),
                             st.lists(integers(0, 9), max_size=4)):
                values.append(draw(data, strategy) if lean else data.draw(strategy))

        collect()
        return values

    assert run(lean=True) == run(lean=False)
    assert len(set(map(repr, run(lean=True)))) > 10  # (the examples vary)
