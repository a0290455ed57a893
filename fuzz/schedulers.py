"""Schedulers: which live thread steps next.

A schedule is data (shuttle): a scheduler only *chooses*; the engine writes
each choice into the trace as a ``step X`` line, so every finding replays
exactly without the scheduler.

Rules every scheduler here keeps:

* **Determinism.**  All randomness comes from one injected :class:`Chooser`
  (a ``random.Random`` or a wrapper over Hypothesis draws).  Given the same
  chooser state and the same sequence of ``choose`` and ``forget`` calls, a
  scheduler makes the same choices.  Nothing reads the clock, ``hash()`` or
  a global generator.
* **Totality.**  ``choose(threads)`` returns one of ``threads`` (a non-empty
  sequence of thread names, given in thread order) and raises ``ValueError``
  for an empty one.  The caller decides which threads count as runnable.
* **Names are identities until forgotten.**  A scheduler may keep state per
  thread name; ``forget(name)`` tells it that the thread is done, so a later
  thread reusing the name (SPEC §2: a ``Tn`` name may be reused) is new.

:class:`Uniform` picks uniformly among the threads given.

:class:`PCT` is probabilistic concurrency testing (Burckhardt, Kothari,
Musuvathi, Nagarakatte, ASPLOS 2010), as in shuttle's ``PctScheduler``:

* each thread gets a random initial priority when first seen, distinct from
  every other (a new thread is inserted at a uniformly random rank among the
  threads seen so far); initial priorities are all above the ``depth - 1``
  low priorities;
* ``depth - 1`` change points k_1 .. k_{d-1} are drawn at construction,
  distinct, uniformly in [1, max_steps];
* at each choice the highest-priority thread given runs; when the choice
  count reaches k_i, the thread that ran last (else the current highest)
  first drops to low priority i (below every initial priority, and k_i with
  a smaller i is lower), then the highest is chosen.

For a bug of depth d (d ordering constraints) among n threads and k steps,
one PCT run finds it with probability at least 1 / (n k^(d-1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Chooser(Protocol):
    """The one source of randomness: ``randrange(n)`` is in [0, n)."""

    def randrange(self, start: int, /) -> int: ...


class Scheduler(Protocol):
    def choose(self, threads: Sequence[str]) -> str:
        """One of ``threads`` (non-empty), the thread to step next."""
        ...

    def forget(self, thread: str) -> None:
        """``thread`` is done; a later thread of that name is a new one."""
        ...


def _check(threads: Sequence[str]) -> None:
    if not threads:
        raise ValueError("no thread to choose from")


class Uniform:
    """A uniform choice among the threads given, each time."""

    def __init__(self, rng: Chooser) -> None:
        self.rng = rng

    def choose(self, threads: Sequence[str]) -> str:
        _check(threads)
        return threads[self.rng.randrange(len(threads))]

    def forget(self, thread: str) -> None:
        pass


class PCT:
    """Probabilistic concurrency testing with ``depth - 1`` change points.

    ``max_steps`` is the expected number of choices in one run (k in the
    paper); change points are drawn in [1, max_steps].
    """

    def __init__(self, rng: Chooser, depth: int = 3, max_steps: int = 50) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.rng = rng
        self.depth = depth
        self.ranking: list[str] = []
        """Threads at their initial priority, highest first."""
        self.lowered: dict[str, int] = {}
        """Threads dropped at a change point -> their low priority (1 .. depth-1)."""
        self.steps = 0
        self.last: str | None = None
        candidates = list(range(1, max_steps + 1))
        self.change_points: dict[int, int] = {}
        """Choice count k_i -> low priority i."""
        for i in range(1, min(depth - 1, max_steps) + 1):
            self.change_points[candidates.pop(rng.randrange(len(candidates)))] = i

    def priority(self, thread: str) -> int:
        """The thread's priority now: larger runs first (unseen threads: 0)."""
        if thread in self.lowered:
            return self.lowered[thread]
        if thread in self.ranking:
            return self.depth + len(self.ranking) - 1 - self.ranking.index(thread)
        return 0

    def _see(self, threads: Sequence[str]) -> None:
        for name in threads:
            if name not in self.ranking and name not in self.lowered:
                self.ranking.insert(self.rng.randrange(len(self.ranking) + 1), name)

    def _highest(self, threads: Sequence[str]) -> str:
        return max(threads, key=self.priority)

    def choose(self, threads: Sequence[str]) -> str:
        _check(threads)
        self._see(threads)
        self.steps += 1
        low = self.change_points.get(self.steps)
        if low is not None:
            victim = self.last if self.last is not None else self._highest(threads)
            if victim in self.ranking:
                self.ranking.remove(victim)
            self.lowered[victim] = low
        chosen = self._highest(threads)
        self.last = chosen
        return chosen

    def forget(self, thread: str) -> None:
        if thread in self.ranking:
            self.ranking.remove(thread)
        self.lowered.pop(thread, None)
        if self.last == thread:
            self.last = None
