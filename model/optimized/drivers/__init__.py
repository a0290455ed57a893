"""The optimized implementation's drivers: one module per built-in device
kind, each building one :class:`model.driver.Driver` record on the core's
services (``hmm.py``, ``gup.py``, ``migrate_device.py``, ``mmu_notifier.py``,
``fault.py``, the locks of ``threads.py``).

The core reaches a driver only through its record in :data:`REGISTRY`
(``kernel.py`` hands it to the ``KernelState``); no core module imports
this package.
"""

from __future__ import annotations

from model.driver import Registry
from model.optimized.drivers.mirror import DRIVER as MIRROR
from model.optimized.drivers.pin import DRIVER as PIN
from model.optimized.drivers.userptr import DRIVER as USERPTR
from model.optimized.state import KernelState
from model.optimized.threads import Thread

REGISTRY: Registry[KernelState, Thread] = Registry("optimized")
for _driver in (MIRROR, USERPTR, PIN):
    REGISTRY.register(_driver)
