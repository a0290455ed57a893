"""Byte schemes: small invertible codecs from bytes to values, the building
blocks of ``fuzz.codec``.

The rule every scheme keeps: **decoding is total and encoding inverts it.**
``decode`` reads bytes from a :class:`Reader` (which gives 0 once the data is
exhausted, so any byte string decodes) and returns a value;
``encode(value)`` returns the bytes that ``decode`` would read to give that
value back, or None if the scheme cannot produce it.  A choice among k
options is ``byte % k``, and its encoding is the option's index; numbers are
little-endian.

A scheme may consult a *state* (what earlier lines of the trace created) and
a *context* (the fields already decoded on this line); the schemes here only
pass the state on to the callbacks they are given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

State = Any
"""The codec's state (``fuzz.codec``); opaque to the schemes."""
PICK_LIMIT: Final = 64
"""A pick chooses among the 64 most recent items of a list."""



class Reader:
    """The next byte, or 0 once the data is exhausted."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return self.data[pos] if pos < len(self.data) else 0

    def uint(self, n: int) -> int:
        """An ``n``-byte little-endian number."""
        return int.from_bytes(bytes(self.byte() for _ in range(n)), "little")

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.data)


def same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


Ctx = dict[str, object]

# ---------------------------------------------------------------- schemes


class Scheme(Protocol):
    def decode(self, r: Reader, st: State, ctx: Ctx) -> object: ...

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None: ...


@dataclass(frozen=True)
class Computed:
    fn: Callable[[State, Ctx], object]

    def decode(self, r: Reader, st: State, ctx: Ctx) -> object:
        return self.fn(st, ctx)

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None:
        return b"" if same(v, self.fn(st, ctx)) else None


@dataclass(frozen=True)
class Enum:
    """One byte: ``fn(byte % count)``; a table when ``fn`` indexes a tuple."""

    fn: Callable[[int], object]
    count: int

    def decode(self, r: Reader, st: State, ctx: Ctx) -> object:
        return self.fn(r.byte() % self.count)

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None:
        for i in range(self.count):
            if same(self.fn(i), v):
                return bytes([i])
        return None


def table(*values: object) -> Enum:
    return Enum(values.__getitem__, len(values))


@dataclass(frozen=True)
class Range:
    """``lo + uint % size`` from as few little-endian bytes as ``size`` needs."""

    lo: int
    size: int

    @property
    def nbytes(self) -> int:
        return max(1, ((self.size - 1).bit_length() + 7) // 8)

    def decode(self, r: Reader, st: State, ctx: Ctx) -> object:
        return self.lo + r.uint(self.nbytes) % self.size

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None:
        if type(v) is not int or not 0 <= v - self.lo < self.size:
            return None
        return (v - self.lo).to_bytes(self.nbytes, "little")


@dataclass(frozen=True)
class Pick:
    """One byte choosing among the 64 most recent of a list, most recent first."""

    getter: Callable[[State, Ctx], Sequence[object]]
    default: object

    def decode(self, r: Reader, st: State, ctx: Ctx) -> object:
        b = r.byte()
        items = self.getter(st, ctx)[-PICK_LIMIT:]
        return items[-1 - b % len(items)] if items else self.default

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None:
        items = self.getter(st, ctx)[-PICK_LIMIT:]
        if not items:
            return b"\0" if same(v, self.default) else None
        for i in range(len(items)):
            if same(items[-1 - i], v):
                return bytes([i])
        return None


@dataclass(frozen=True)
class Below:
    """``lo + byte % k`` for ``k = bound(...)`` clamped to [1, 256]."""

    lo: int
    bound: Callable[[State, Ctx], int]

    def decode(self, r: Reader, st: State, ctx: Ctx) -> object:
        return self.lo + r.byte() % max(1, min(256, self.bound(st, ctx)))

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None:
        k = max(1, min(256, self.bound(st, ctx)))
        return bytes([v - self.lo]) if type(v) is int and 0 <= v - self.lo < k else None


@dataclass(frozen=True)
class Relative:
    """``target - ctx[base]`` for a target above the base, else 1."""

    target: Scheme
    base: str

    def decode(self, r: Reader, st: State, ctx: Ctx) -> object:
        t, b = self.target.decode(r, st, ctx), ctx[self.base]
        if isinstance(t, int) and isinstance(b, int) and t > b:
            return t - b
        return 1

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None:
        b = ctx[self.base]
        if type(v) is not int or v <= 0 or not isinstance(b, int):
            return None
        return self.target.encode(b + v, st, ctx)


@dataclass(frozen=True)
class Switch:
    """The scheme chosen by an earlier field's value."""

    key: str
    cases: dict[object, Scheme]

    def decode(self, r: Reader, st: State, ctx: Ctx) -> object:
        return self.cases[ctx[self.key]].decode(r, st, ctx)

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None:
        return self.cases[ctx[self.key]].encode(v, st, ctx)


class Mix:
    """One byte ``% total weight`` picks a category; its bytes follow."""

    def __init__(self, *cases: tuple[int, Scheme]) -> None:
        self.selector: list[Scheme] = []
        self.first: list[tuple[int, Scheme]] = []
        for weight, scheme in cases:
            self.first.append((len(self.selector), scheme))
            self.selector.extend([scheme] * weight)
        assert len(self.selector) <= 256

    def decode(self, r: Reader, st: State, ctx: Ctx) -> object:
        return self.selector[r.byte() % len(self.selector)].decode(r, st, ctx)

    def encode(self, v: object, st: State, ctx: Ctx) -> bytes | None:
        for index, scheme in self.first:
            rest = scheme.encode(v, st, ctx)
            if rest is not None:
                return bytes([index]) + rest
        return None
