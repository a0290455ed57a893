"""Race windows as libFuzzer features: state feedback for the Atheris target.

libFuzzer keeps an input when it covers new code.  The races mirrorfuzz
looks for are not new code: a ``madvise dontneed`` landing in window 3 of a
``migrate_to_dev`` runs the same lines as one landing in window 2 or after
it.  So each input's race windows (``fuzz.windows.reached``: the (op A,
window k, intruding op B) combinations its judged trace reached) are made
visible as coverage, as IJON annotates state for AFL (Aschermann et al.,
"IJON: Exploring Deep State Spaces via Fuzzing", S&P 2020): every
combination hashes to one of ``LEAVES`` leaves of generated decision trees
(:func:`_leaf`: ``TREES`` functions of ``2**LOW`` leaves each, whose bytecode
atheris instruments like the judged code; atheris's instrumentation time
grows faster than a function's size, 20 s of CPU for one 4,096-leaf tree
against 1 s for 64 trees of 64).  An
input that lands an op in a window no earlier input reached reaches a new
leaf, libFuzzer keeps it, and mutating it tries its neighbours (other
windows, other arguments of the intruding op).

Rules this module keeps:

* **Stable.**  A combination's leaf is a CRC-32 of its text, the same in every
  process and run (``hash`` of a str is salted per process).
* **Engines generate, the executor judges.**  Features only steer which
  inputs libFuzzer keeps; nothing here judges or raises.
* **Cheap.**  One tree descent of ``BITS`` comparisons per combination reached.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any, Final

from fuzz.windows import Combo, reached

BITS: Final = 12
LEAVES: Final = 1 << BITS
"""Leaves in all: combinations beyond this many share leaves (a hash)."""
LOW: Final = 6
"""Bits of a leaf's index decided inside one tree (the others pick the tree)."""
TREES: Final = LEAVES >> LOW


def _tree_source(bits: int) -> str:
    """``def _leaf(i)``: a tree of ``if`` on each bit of i whose 2^bits leaves
    are distinct basic blocks (each returns its own constant)."""
    lines = ["def _leaf(i):"]

    def node(depth: int, prefix: int, indent: str) -> None:
        if depth == bits:
            lines.append(f"{indent}return {prefix}")
            return
        lines.append(f"{indent}if i & {1 << depth}:")
        node(depth + 1, prefix | (1 << depth), indent + "    ")
        lines.append(f"{indent}else:")
        node(depth + 1, prefix, indent + "    ")

    node(0, 0, "    ")
    return "\n".join(lines) + "\n"


def _compile(bits: int, name: str = "tree") -> Callable[[int], int]:
    """A tree of ``bits`` levels, a code object of its own."""
    namespace: dict[str, Any] = {}
    exec(compile(_tree_source(bits), f"<mirrorfuzz window features {name}>", "exec"),  # noqa: S102
         namespace)
    leaf: Callable[[int], int] = namespace["_leaf"]
    return leaf


_trees = [_compile(LOW, f"tree {j}") for j in range(TREES)]


def _leaf(i: int) -> int:
    """Descend to leaf ``i`` (0 <= i < LEAVES): its tree, then its leaf there."""
    return (i >> LOW) << LOW | _trees[i >> LOW](i & ((1 << LOW) - 1))


def leaf_of(combo: Combo) -> int:
    """The leaf a combination reaches (stable across processes)."""
    a, k, b = combo
    return zlib.crc32(f"{a}|{k}|{b}".encode()) & (LEAVES - 1)


def feed(steps: Sequence[Any], results: Sequence[object]) -> set[Combo]:
    """Descend to the leaf of every combination the judged trace reached; the combinations."""
    combos, _deepest = reached(steps, results)
    for combo in sorted(combos):
        _leaf(leaf_of(combo))
    return combos


def instrument(atheris: Any) -> None:
    """Give the trees atheris's coverage instrumentation (once, before fuzzing)."""
    _trees[:] = [atheris.instrument_func(tree) for tree in _trees]
