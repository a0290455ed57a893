"""The implementations a run can use, by name, imported lazily."""

from __future__ import annotations

import importlib
from typing import Final, cast

from model.interface import Factory

IMPLEMENTATIONS: Final = {
    "reference": ("model.reference", "ReferenceKernel"),
    "optimized": ("model.optimized", "OptimizedKernel"),
}


class UnknownImplementation(Exception):
    pass


def factory(name: str) -> Factory:
    """The factory of implementation ``name``."""
    if name not in IMPLEMENTATIONS:
        raise UnknownImplementation(
            f"unknown implementation {name!r} (choose from {', '.join(IMPLEMENTATIONS)})")
    module, attr = IMPLEMENTATIONS[name]
    try:
        return cast(Factory, getattr(importlib.import_module(module), attr))
    except (ImportError, AttributeError) as exc:
        raise UnknownImplementation(f"implementation {name!r} is not available: {exc}") from exc


def available() -> list[str]:
    names = []
    for name in IMPLEMENTATIONS:
        try:
            factory(name)
        except UnknownImplementation:
            continue
        names.append(name)
    return names


def sides(spec: str) -> list[tuple[str, Factory]]:
    """``reference``, ``optimized``, ``both`` (reference first), or ``auto``:
    both if the optimized implementation is available, else the reference."""
    if spec == "both":
        names = ["reference", "optimized"]
    elif spec == "auto":
        names = available()
    else:
        names = [spec]
    return [(name, factory(name)) for name in names]
