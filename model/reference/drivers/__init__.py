"""The reference model's drivers: one module per built-in device kind, each
building one :class:`model.driver.Driver` record on the core's services,
and every loaded plug-in (:data:`model.driver.PLUGINS`) wrapped in a record
of its own by :func:`model.reference.plugin_core.adapt`.

The core reaches a driver only through its record in the registry
(``kernel.py`` puts it in the state); no core module imports this package.
"""

from __future__ import annotations

from typing import Any

from model.driver import PLUGINS, PluginDriver, Registry

from ..plugin_core import adapt
from ..state import State
from . import mirror, pin, userptr

REGISTRY: Registry[State, Any] = Registry("reference")
"""The built-in kinds."""
for _driver in (mirror.DRIVER, userptr.DRIVER, pin.DRIVER):
    REGISTRY.register(_driver)

_last: tuple[tuple[PluginDriver, ...], Registry[State, Any]] = ((), REGISTRY)


def registry() -> Registry[State, Any]:
    """The built-ins and the plug-ins loaded now (rebuilt when PLUGINS changes)."""
    global _last
    plugins = tuple(PLUGINS.values())
    if [id(p) for p in plugins] != [id(p) for p in _last[0]]:  # the old ones are kept alive
        with_plugins: Registry[State, Any] = Registry("reference")
        for driver in REGISTRY.by_kind.values():
            with_plugins.register(driver)
        for plugin in plugins:
            with_plugins.register(adapt(plugin))
        _last = (plugins, with_plugins)
    return _last[1]
