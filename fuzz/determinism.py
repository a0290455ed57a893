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
goes on (a module imported lazily mid-run would otherwise grow it).  It then
replaces the pool's contents by :data:`POOL`, a fixed set of SPEC's edge
values: otherwise any integer written anywhere in our sources (a new
constant in the campaign CLI, say) changed the examples a seed generates,
and so which example of a seed-0 quality hunt finds which planted bug.  The
engines call it before they generate.  (This reaches into Hypothesis's
internals; with a release that lacks them, the import alone still holds.)
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Final

PACKAGES: Final = ("model", "fuzz", "bench")
"""Our packages: every module of each one found is imported."""
POOL: Final = frozenset({0, 1, -1, 2, 7, 63, 64, 65, 511, 512, 513, 4096, 1 << 36, (1 << 63) - 1,
                         -(1 << 63)})
"""The local constants Hypothesis may draw: page, huge-page, walk-chunk and
address-space edges and the word limits (SPEC §2)."""

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
    _pin_pool()
    _settled = True


def _pin_pool() -> None:
    """Let Hypothesis scan every module loaded now (so none is scanned again),
    then make its local-constant pool :data:`POOL`."""
    try:
        from hypothesis.internal.conjecture import providers
        pool = providers._get_local_constants()
        for kind in ("integers", "floats", "bytes", "strings"):
            getattr(pool, kind).clear()
        pool.integers |= POOL
        providers.CONSTANTS_CACHE.cache.clear()
    except (ImportError, AttributeError):  # another Hypothesis: the import alone
        return
