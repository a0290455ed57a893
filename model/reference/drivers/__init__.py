"""The reference model's drivers: one module per built-in device kind, each
building one :class:`model.driver.Driver` record on the core's services.

The core reaches a driver only through its record in :data:`REGISTRY`
(``kernel.py`` puts it in the state); no core module imports this package.
"""

from __future__ import annotations

from typing import Any

from model.driver import Registry

from ..state import State
from . import mirror, pin, userptr

REGISTRY: Registry[State, Any] = Registry("reference")
for _driver in (mirror.DRIVER, userptr.DRIVER, pin.DRIVER):
    REGISTRY.register(_driver)
