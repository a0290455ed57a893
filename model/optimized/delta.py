"""What changed in the page arrays since the last look (issue 14).

The frame, device-page and swap arrays (``folios.py``) are written by many
paths with plain numpy stores; there is no single setter to hook.  So, like
``CONFIG_PAGE_OWNER`` snapshots rather than tracepoints, :class:`ArrayWatch`
keeps a copy of each array and compares the live arrays with it at each
look, whole-array: a write by any path, a planted bug's included, is seen.
The copies are bytes, so an unchanged table costs a ``tobytes`` and a
``memcmp`` per field.

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
from typing import Final

import numpy as np
import numpy.typing as npt

Arr = npt.NDArray[np.int64]

FIELDS: Final = {
    "frames": ("word", "mapcount", "refcount", "pincount", "order", "live", "gen"),
    "dpages": ("word", "refcount", "owner", "live", "gen"),
    "swap": ("word", "count", "live", "gen"),
}
"""The arrays of each table (a ``KernelState`` attribute) that a view reads."""
UNCHECKED: Final = frozenset({"word", "owner"})
"""Fields the invariant scans do not read (a CPU write changes only a word)."""


class ArrayWatch:
    def __init__(self) -> None:
        self.copies: dict[str, dict[str, bytes]] = {}
        self.pending: dict[str, set[Hashable]] = {name: set() for name in FIELDS}
        self.unchecked: dict[str, list[Arr]] = {name: [] for name in FIELDS}
        """Rows whose fields the checks read changed since they took them."""

    def look(self, k: object) -> None:
        """Compare ``k``'s arrays with the copies (then renewed); the ids of
        changed rows join ``pending``, and the rows of a change of a field
        the scans read join ``unchecked``."""
        for name, fields in FIELDS.items():
            table = getattr(k, name)
            top: int = table.top
            now = {f: getattr(table, f)[:top].tobytes() for f in fields}
            was = self.copies.get(name, {})
            if now == was:
                continue
            self.copies[name] = now
            changed = [f for f in fields if was.get(f) != now[f]]
            old = {f: np.frombuffer(was.get(f, b""), getattr(table, f).dtype) for f in fields}
            new = {f: getattr(table, f)[:top] for f in fields}
            n = min(top, len(old["live"]))
            differ = np.zeros(n, np.bool_)
            for f in changed:
                differ |= old[f][:n] != new[f][:n]
            rows = np.concatenate([np.flatnonzero(differ),
                                   np.arange(n, max(top, len(old["live"])), dtype=np.int64)])
            for arrays in (old, new):
                self.pending[name].update(_ids(arrays, rows))
            if not UNCHECKED.issuperset(changed):
                self.unchecked[name].append(rows)

    def take_rows(self, k: object) -> dict[str, Arr]:
        """Look, and hand over the rows the checks have not seen change."""
        self.look(k)
        out = {name: np.unique(np.concatenate(v)) if v else np.zeros(0, np.int64)
               for name, v in self.unchecked.items()}
        self.unchecked = {name: [] for name in FIELDS}
        return out

    def take(self, k: object) -> dict[str, set[Hashable]]:
        """Look, and hand over the ids changed since the last ``take``."""
        self.look(k)
        out = self.pending
        self.pending = {name: set() for name in FIELDS}
        return out


def _ids(arrays: dict[str, npt.NDArray[np.generic]], rows: Arr) -> list[tuple[int, int]]:
    """The live ids of ``rows`` in ``arrays`` (a folio by its head)."""
    live, gen = arrays["live"], arrays["gen"]
    rows = rows[rows < len(live)]
    if "order" in arrays:
        rows = np.unique(np.where(arrays["order"][rows] == 9, rows & ~511, rows))
    rows = rows[live[rows] != 0]
    return list(zip(rows.tolist(), gen[rows].tolist(), strict=True))
