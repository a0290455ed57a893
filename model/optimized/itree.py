"""An augmented interval tree of subscriptions, keyed by (start, id).

Mirrors ``include/linux/interval_tree_generic.h`` (``INTERVAL_TREE_DEFINE``):
a balanced search tree ordered by start whose every node also keeps the
largest ``end`` in its subtree (the kernel's ``__subtree_last``), so that an
overlap query prunes every subtree that ends at or before the query start and
stops at the first node that starts at or after its end: O(log n + k).
Balance comes from treap priorities (a fixed hash of the id, so the shape is
deterministic) instead of red-black colours; the query contract is the same.
Ranges are half-open [start, end).
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


def _prio(key: int) -> int:
    z = (key * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


class _Node(Generic[V]):
    __slots__ = ("start", "end", "id", "value", "prio", "left", "right", "last")

    def __init__(self, start: int, end: int, ident: int, value: V) -> None:
        self.start = start
        self.end = end
        self.id = ident
        self.value = value
        self.prio = _prio(ident)
        self.left: _Node[V] | None = None
        self.right: _Node[V] | None = None
        self.last = end  # __subtree_last

    def key(self) -> tuple[int, int]:
        return (self.start, self.id)


def _fix(n: _Node[V]) -> None:
    last = n.end
    if n.left is not None and n.left.last > last:
        last = n.left.last
    if n.right is not None and n.right.last > last:
        last = n.right.last
    n.last = last


def _split(t: _Node[V] | None, key: tuple[int, int]) -> tuple[_Node[V] | None, _Node[V] | None]:
    """(nodes < key, nodes >= key)."""
    if t is None:
        return None, None
    if t.key() < key:
        lo, hi = _split(t.right, key)
        t.right = lo
        _fix(t)
        return t, hi
    lo, hi = _split(t.left, key)
    t.left = hi
    _fix(t)
    return lo, t


def _merge(a: _Node[V] | None, b: _Node[V] | None) -> _Node[V] | None:
    if a is None:
        return b
    if b is None:
        return a
    if a.prio > b.prio:
        a.right = _merge(a.right, b)
        _fix(a)
        return a
    b.left = _merge(a, b.left)
    _fix(b)
    return b


class IntervalTree(Generic[V]):
    """interval_tree_insert / interval_tree_remove / interval_tree_iter_first+next."""

    def __init__(self) -> None:
        self.root: _Node[V] | None = None
        self.size = 0

    def insert(self, start: int, end: int, ident: int, value: V) -> None:
        node = _Node(start, end, ident, value)
        lo, hi = _split(self.root, node.key())
        self.root = _merge(_merge(lo, node), hi)
        self.size += 1

    def remove(self, start: int, ident: int) -> bool:
        lo, rest = _split(self.root, (start, ident))
        mid, hi = _split(rest, (start, ident + 1))
        self.root = _merge(lo, hi)
        if mid is not None:
            self.size -= 1
            return True
        return False

    def overlaps(self, a: int, b: int) -> list[V]:
        """Values whose [start, end) intersects [a, b), in (start, id) order."""
        out: list[V] = []
        self._query(self.root, a, b, out)
        return out

    def _query(self, n: _Node[V] | None, a: int, b: int, out: list[V]) -> None:
        while n is not None:
            if n.last <= a:  # nothing in this subtree ends after a
                return
            self._query(n.left, a, b, out)
            if n.start >= b:  # this node and its right subtree start too late
                return
            if n.end > a:
                out.append(n.value)
            n = n.right

    def items(self) -> list[V]:
        """All values in (start, id) order."""
        return self.overlaps(-1, 1 << 62)
