"""The same seed gives the same Hypothesis run, whatever was imported before.

Hypothesis draws about 1 integer in 20 from a pool of constants, and the
pool includes every constant written in the *local* modules (not the
standard library, not site-packages, not test files) present in
``sys.modules`` when it draws (``hypothesis.internal.conjecture.providers.
_get_local_constants``).  Under an editable install ``model/``, ``fuzz/`` and
``bench/`` are local, so the examples a seed generates depended on which of
our modules the process had happened to import: a pytest-xdist worker that
had run other tests generated different examples from a fresh interpreter,
and a hunt that imported the minimizer first from one that did not.

:func:`settle_constant_pool` imports every module of those packages, so that
the pool is the same in every process, and stays the same while the run
goes on (a module imported lazily mid-run would otherwise grow it).  The
engines call it before they generate.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Final

PACKAGES: Final = ("model", "fuzz", "bench")
"""Our packages: every module of each one found is imported."""

_settled = False


def settle_constant_pool() -> None:
    """Import every module of :data:`PACKAGES` that can be found (once)."""
    global _settled
    if _settled:
        return
    for name in PACKAGES:
        if importlib.util.find_spec(name) is None:
            continue
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            importlib.import_module(info.name)
    _settled = True
