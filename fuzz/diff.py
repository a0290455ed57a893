"""Readable differences between two observations, and the causes findings are named by.

Rules this module enforces:

* **Only what differs, named.**  :func:`differences` walks two observations
  (frozen dataclasses, named tuples and tuples of them) in the order of SPEC
  §8.1 and gives one :class:`Difference` per differing leaf field: a path
  such as ``devices[D1].table[vpn 5].target`` and each side's value.  Tuples
  of views are matched by their identity field (``pid``, ``id``, ``vpn``,
  ``name``), not by position, so one missing entry is one difference
  (``absent`` on one side), not a cascade over every entry after it.
* **The cause is the rule broken, not the op that showed it** (in the style
  of syzkaller's crash titles): :func:`cause_field` is the first
  difference's path without its keys, cut to the object kind and its field
  (``devices.table``); :func:`object_kind` names the object an invariant's
  message is about (``P3: ...`` -> ``process``).
* :func:`side_by_side` renders differences as an aligned table, one field a
  line, the way ``replay``, repro annotations and the report show them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Final

MAX_DIFFERENCES: Final = 8
"""Differences listed at most (the count says how many more)."""
MAX_VALUE: Final = 60
"""Characters of one side's value shown at most."""
KEYS: Final = ("id", "pid", "vpn", "name")
_KEY_LABEL: Final = {"pid": "P", "vpn": "vpn ", "name": ""}
_HANDLES: Final = {"P": "process", "D": "device", "S": "subscription", "R": "region",
                   "J": "job", "O": "object", "T": "thread", "L": "thread"}
_HANDLE = re.compile(r"\b([PDSRJOTL])(\d+)\b")
_KEYED = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class Difference:
    path: str
    left: str
    right: str


def _fields(value: object) -> list[str] | None:
    if is_dataclass(value) and not isinstance(value, type):
        return [f.name for f in fields(value)]
    names = getattr(type(value), "_fields", None)  # a named tuple
    return list(names) if isinstance(names, tuple) else None


def _key(value: object) -> str | None:
    names = _fields(value)
    for k in KEYS:
        if names is not None and k in names:
            return k
    return None


_ID_PREFIX: Final = {"DeviceView": "D", "RegionView": "R", "JobView": "J", "ObjectView": "O",
                     "SubscriptionView": "S"}


def _label(element: object, key: str, value: object) -> str:
    if key == "id":
        return f"{_ID_PREFIX.get(type(element).__name__, '#')}{value}"
    return f"{_KEY_LABEL.get(key, '')}{value}"


def _text(value: object) -> str:
    if value is _ABSENT:
        return "absent"
    if type(value).__name__ == "Ref":  # model.observation.Ref: folio#3[0], dpage#1, zero
        space, raw, index = (getattr(value, k) for k in ("space", "raw", "index"))
        return str(space) if space == "zero" else f"{space}#{raw}" + (f"[{index}]" if index else "")
    names = _fields(value)
    if names is not None:
        return "(" + " ".join(f"{n}={_text(getattr(value, n))}" for n in names) + ")"
    if isinstance(value, tuple):
        return "(" + ", ".join(_text(v) for v in value) + ")"
    return str(value)


def _short(value: object) -> str:
    text = _text(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


_ABSENT: Final = object()


def _walk(a: object, b: object, path: str, name: str, out: list[Difference]) -> None:
    if a == b:
        return
    if a is _ABSENT or b is _ABSENT:
        out.append(Difference(path, _short(a), _short(b)))
        return
    names = _fields(a)
    if type(a).__name__ == "Ref":
        names = None
    if names is not None and _fields(b) == names and type(a) is type(b):
        for f in names:
            _walk(getattr(a, f), getattr(b, f), f"{path}.{f}" if path else f, f, out)
        return
    if isinstance(a, tuple) and isinstance(b, tuple):
        key = _key(a[0]) if a else (_key(b[0]) if b else None)
        if key is not None and all(_key(x) == key for x in (*a, *b)):
            left = {getattr(x, key): x for x in a}
            right = {getattr(x, key): x for x in b}
            if len(left) == len(a) and len(right) == len(b):
                for k in sorted({*left, *right}, key=lambda v: (str(type(v)), v)):
                    x, y = left.get(k, _ABSENT), right.get(k, _ABSENT)
                    label = _label(y if x is _ABSENT else x, key, k)
                    _walk(x, y, f"{path}[{label}]", name, out)
                return
        if len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _walk(x, y, f"{path}[{i}]", name, out)
            return
        for i in range(max(len(a), len(b))):
            _walk(a[i] if i < len(a) else _ABSENT, b[i] if i < len(b) else _ABSENT,
                  f"{path}[{i}]", name, out)
        return
    out.append(Difference(path, _short(a), _short(b)))


def differences(a: object, b: object) -> list[Difference]:
    """Every differing leaf field of two observations (or any views), in walk order."""
    out: list[Difference] = []
    _walk(a, b, "", "", out)
    return out


def cause_field(found: Sequence[Difference]) -> str:
    """The object kind and field of the first difference: ``devices.table``."""
    if not found:
        return "state"
    parts = [p for p in _KEYED.sub("", found[0].path).split(".") if p]
    return ".".join(parts[:2]) or "state"


def object_kind(message: str) -> str:
    """The kind of the first object a violation's message names (``state`` if none)."""
    match = _HANDLE.search(message)
    return _HANDLES[match.group(1)] if match else "state"


def side_by_side(found: Sequence[Difference], names: Sequence[str],
                 limit: int = MAX_DIFFERENCES) -> list[str]:
    """An aligned table: a header line, then one line per difference (at most ``limit``)."""
    if not found:
        return []
    shown = list(found[:limit])
    head = ("field", *names[:2])
    rows = [(d.path, d.left, d.right) for d in shown]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(2)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in (head, *rows)]
    if len(found) > limit:
        lines.append(f"... and {len(found) - limit} more differing fields")
    return lines


def summary(found: Sequence[Difference]) -> str:
    """One line: the first difference and how many more."""
    if not found:
        return "observations differ"
    first = found[0]
    more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
    return f"{first.path}: {first.left} vs {first.right}{more}"
