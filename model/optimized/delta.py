"""What changed in the page arrays since the last look (issue 14).

The frame, device-page and swap arrays (``folios.py``) are written by many
paths with plain numpy stores; there is no single setter to hook.  So, like
``CONFIG_PAGE_OWNER`` snapshots rather than tracepoints, :class:`ArrayWatch`
keeps a copy of each array and compares the live arrays with it at each
look, whole-array: a write by any path, a planted bug's included, is seen.
The copies are bytes, so an unchanged table costs a ``tobytes`` and a
``memcmp`` per field.  Only ``OptimizedKernel.start`` and ``step`` write
the arrays after boot, and each bumps ``KernelState.entries``: a look when
it has not moved since the last (the observation's after the checks' in the
same step) compares nothing.

Two readers share the looks:

* the invariant checks (``checks.run_checks``) take the rows whose fields
  they read changed since they last took them, to check those;
* the observation's watcher (``observe.Watcher``) takes the ids whose views
  may differ since it last took them: a folio ``(head, gen)``, a device
  page or a slot ``(index, gen)``, both the id a changed row had at the
  last look and the one it has now.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

Arr = npt.NDArray[np.int64]

FIELDS: Final = {
    "frames": ("word", "mapcount", "refcount", "pincount", "order", "live", "gen"),
    "dpages": ("word", "refcount", "owner", "live", "gen"),
    "swap": ("word", "count", "live", "gen"),
}
"""The arrays of each table (a ``KernelState`` attribute) that a view reads."""
IDS: Final = frozenset({"live", "gen", "order"})
"""Fields an id (a folio's head and generation) is read from."""
UNCHECKED: Final = frozenset({"word", "owner"})
"""Fields the invariant scans do not read (a CPU write changes only a word)."""


class Entered(Protocol):
    entries: int
    """Bumped by every entry point of the kernel that may write its state."""


class ArrayWatch:
    def __init__(self) -> None:
        self.copies: dict[str, tuple[int, list[bytes]]] = {}
        """Each table's ``top`` and its fields' bytes at the last look."""
        self.looked = -1
        """``k.entries`` at the last look."""
        self.pending: dict[str, set[Hashable]] = {name: set() for name in FIELDS}
        self.unchecked: dict[str, list[Arr]] = {}
        """Rows whose fields the checks read changed since they took them."""

    def look(self, k: Entered) -> None:
        """Compare ``k``'s arrays with the copies (then renewed); the ids of
        changed rows join ``pending``, and the rows of a change of a field
        the scans read join ``unchecked``.  Nothing can have changed, and
        nothing is compared, if ``k`` was not entered since the last look."""
        if k.entries == self.looked:
            return
        self.looked = k.entries
        for name, fields in FIELDS.items():
            table = getattr(k, name)
            top: int = table.top
            old_top, was = self.copies.get(name, (0, []))
            if not top and not old_top and was:
                continue  # (empty then and now)
            now = [getattr(table, f)[:top].tobytes() for f in fields]
            if now != was:
                self.copies[name] = (top, now)
                self._changed(name, table, top, old_top, was, now)

    def _changed(self, name: str, table: object, top: int, old_top: int,
                 was: list[bytes], now: list[bytes]) -> None:
        n = min(top, old_top)
        dtypes = [getattr(table, f).dtype for f in FIELDS[name]]
        old = was or [b""] * len(now)
        changed = [i for i, (a, b) in enumerate(zip(old, now, strict=True)) if a != b]
        if not changed:  # (the first look, at no rows)
            return
        differ = np.zeros(n, np.bool_)
        for i in changed:
            differ |= np.frombuffer(old[i], dtypes[i], n) != np.frombuffer(now[i], dtypes[i], n)
        rows = np.flatnonzero(differ)
        if top != old_top:
            rows = np.concatenate([rows, np.arange(n, max(top, old_top), dtype=np.int64)])
        fields = {FIELDS[name][i] for i in changed}
        # (the rows' ids at the last look are theirs now if no field of an id changed)
        for arrays in (was, now) if was and fields & IDS else (now,):
            views = {f: memoryview(b).cast(dtype.char)
                     for f, dtype, b in zip(FIELDS[name], dtypes, arrays, strict=True)
                     if f in IDS}
            self.pending[name].update(_ids(views, rows))
        if not UNCHECKED.issuperset(fields):
            self.unchecked.setdefault(name, []).append(rows)

    def take_rows(self, k: Entered) -> dict[str, Arr]:
        """Look, and hand over the rows the checks have not seen change
        (sorted; a table with none is left out)."""
        self.look(k)
        out = {name: v[0] if len(v) == 1 else np.unique(np.concatenate(v))
               for name, v in self.unchecked.items()}
        self.unchecked = {}
        return out

    def take(self, k: Entered) -> dict[str, set[Hashable]]:
        """Look, and hand over the ids changed since the last ``take``."""
        self.look(k)
        out = self.pending
        self.pending = {name: set() for name in FIELDS}
        return out


FEW: Final = 64
"""Past this many rows, a folio's rows are reduced to its head by numpy."""


def _ids(arrays: dict[str, memoryview], rows: Arr) -> list[tuple[int, int]]:
    """The live ids of ``rows`` (sorted) in ``arrays`` (a folio by its head)."""
    live, gen, order = arrays["live"], arrays["gen"], arrays.get("order")
    if order is not None and rows.size > FEW:
        rows = rows[rows < len(live)]
        rows = np.unique(np.where(np.asarray(order)[rows] == 9, rows & ~511, rows))
    out = []
    for r in rows.tolist():
        if r >= len(live):
            break
        if order is not None and order[r] == 9:
            r &= ~511
        if live[r]:
            out.append((r, gen[r]))
    return out
