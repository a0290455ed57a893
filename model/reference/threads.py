"""Threads as generators, and the step rule of SPEC §5.1.

Every op is a generator.  It yields ``None`` at a plain yield point (Y1
after a callback, Y2 after an apply, Y3 at an op-specific point) and a
:class:`WaitFor` at a Y4, just before a wait whose condition is false.
Returning from the generator finishes the op with its result.

The step rule:

* a step of a thread stopped at a Y4 whose condition is still false gives
  ``blocked`` and changes nothing;
* otherwise the thread runs to its next yield point (``yield``) or to its
  end (``done R``); a wait whose condition is true is passed without
  stopping, and the code right after the wait runs in the same step, so
  the condition still holds when the waiter acts on it.

A wait's parameters (the ``s`` of ``read_begin`` and ``remove``) are bound
in the condition's closure when the thread reaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TypeVar

from model.ops import Op, format_op

from .state import State

T = TypeVar("T")


@dataclass
class WaitFor:
    """A Y4: the thread waits until ``cond()`` is true."""

    cond: Callable[[], bool]
    what: str


Point = WaitFor | None
Gen = Generator[Point, None, T]


@dataclass
class Thread:
    """An op in progress (SPEC §1): its name, position and what it holds."""

    name: str
    op: Op
    gen: Gen[object] | None = None
    pending: WaitFor | None = None
    failed_commits: int = 0
    mmap: dict[int, str] = field(default_factory=dict)  # pid -> "r" | "w"
    driver: set[int] = field(default_factory=set)  # device ids whose lock it holds
    nonblockable: int = 0  # > 0 while inside a non-blockable callback
    in_callback: int = 0  # > 0 while inside an invalidation callback
    text: str = field(init=False, repr=False, compare=False)  # format_op(op), for observations

    def __post_init__(self) -> None:
        self.text = format_op(self.op)


def wait(st: State, th: Thread, cond: Callable[[], bool], what: str) -> Gen[None]:
    """Wait until ``cond()``: a Y4 if it is false now, else nothing."""
    if cond():
        return
    if th.nonblockable:
        st.violate("no_block_when_nonblockable", f"{th.name} waits for {what}")
    while not cond():
        yield WaitFor(cond, what)


def y() -> Gen[None]:
    """A plain yield point (Y1, Y2 or Y3)."""
    yield None
