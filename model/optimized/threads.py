"""Threads, yield points and locks (SPEC §5.1, §5.2).

A thread is a Python generator.  A plain ``yield`` is a yield point (Y1, Y2,
Y3); ``yield Wait(pred)`` is a Y4, reached only when ``pred`` is false (see
:func:`wait`).  The step rule: a step that starts at a Y4 whose ``pred`` is
still false gives ``Blocked`` and changes nothing; otherwise the generator
runs to its next yield (``Yielded``) or returns (``Done``).

``mmap_lock`` mirrors ``mmap_read_lock``/``mmap_write_lock`` as SPEC §5.2
describes it: reader-preferring, no queue, reentrant for a thread that holds
it (a fault inside an op reuses the op's hold).  The driver lock is a mutex.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from model.ops import Op, format_op

T = TypeVar("T")


@dataclass
class Wait:
    """A Y4: the thread stops here until ``pred()`` holds."""

    pred: Callable[[], bool]
    what: str


Gen = Generator[Wait | None, None, T]


@dataclass
class Thread:
    name: str
    op: Op
    gen: Gen[object] | None = None
    waiting: Wait | None = None
    failed_commits: int = 0
    nonblocking: int = 0  # > 0 inside a non-blockable callback
    pins: list[int] = field(default_factory=list)  # frames pinned by an attempt in flight
    violations: list[str] = field(default_factory=list)

    @cached_property
    def text(self) -> str:
        """format_op(op), for observations: made once, at the first one (a
        thread that ends unobserved, most of them, never formats its op)."""
        return format_op(self.op)


def wait(t: Thread, pred: Callable[[], bool], what: str) -> Gen[None]:
    """Pass at once if ``pred`` holds, else stop at a Y4 until it does."""
    if pred():
        return
    if t.nonblocking:
        t.violations.append(f"{t.name}: non-blockable callback reached a wait ({what})")
    yield Wait(pred, what)


class RwSem:
    """mmap_lock: a writer, or readers (with hold counts for reentrancy)."""

    __slots__ = ("writer", "readers")

    def __init__(self) -> None:
        self.writer: str | None = None
        self.readers: dict[str, int] = {}

    def held_by(self, name: str) -> bool:
        return self.writer == name or name in self.readers

    def read_lock(self, t: Thread) -> Iterable[Wait | None]:
        """mmap_read_lock, for ``yield from``: taken at once, without making a
        generator, unless another thread holds it for writing (then a Y4)."""
        if self.writer == t.name:
            return ()  # reuse the write hold
        if t.name in self.readers:
            self.readers[t.name] += 1
            return ()
        if self.writer is None:
            self.readers[t.name] = 1
            return ()
        return self._read_lock_slow(t)

    def _read_lock_slow(self, t: Thread) -> Gen[None]:
        yield from wait(t, lambda: self.writer is None, "mmap_lock (read)")
        self.readers[t.name] = 1

    def read_unlock(self, t: Thread) -> None:
        n = self.readers.get(t.name)
        if n is None:
            return
        if n <= 1:
            del self.readers[t.name]
        else:
            self.readers[t.name] = n - 1

    def write_lock(self, t: Thread) -> Iterable[Wait | None]:
        """mmap_write_lock, for ``yield from``: a free lock is taken at once,
        without making a generator; else a Y4 until it is free."""
        if self.writer is None and not self.readers:
            self.writer = t.name
            return ()
        return self._write_lock_slow(t)

    def _write_lock_slow(self, t: Thread) -> Gen[None]:
        yield from wait(t, lambda: self.writer is None and not self.readers, "mmap_lock (write)")
        self.writer = t.name

    def write_unlock(self, t: Thread) -> None:
        if self.writer == t.name:
            self.writer = None

    def release_all(self, name: str) -> None:
        if self.writer == name:
            self.writer = None
        self.readers.pop(name, None)


class Mutex:
    """A device's driver lock."""

    __slots__ = ("holder",)

    def __init__(self) -> None:
        self.holder: str | None = None

    def lock(self, t: Thread) -> Iterable[Wait | None]:
        """mutex_lock, for ``yield from``: a free mutex is taken at once,
        without making a generator (callbacks and faults take it on every
        step that programs the device); else a Y4 until it is free."""
        if self.holder is None:
            self.holder = t.name
            return ()
        return self._lock_slow(t)

    def _lock_slow(self, t: Thread) -> Gen[None]:
        yield from wait(t, lambda: self.holder is None, "driver lock")
        self.holder = t.name

    def trylock(self, t: Thread) -> bool:
        if self.holder is not None:
            return False
        self.holder = t.name
        return True

    def unlock(self, t: Thread) -> None:
        if self.holder == t.name:
            self.holder = None


def lazily(fn: Callable[[], T]) -> Gen[T]:
    """A one-step op: ``fn`` runs at the thread's first step."""
    return fn()
    yield None  # noqa: B901 - makes this a generator
