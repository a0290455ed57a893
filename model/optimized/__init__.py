"""The optimized implementation of SPEC v1, built like the Linux kernel.

Entry point: :class:`OptimizedKernel` (``model.interface.Implementation``,
name ``"optimized"``), a thin adapter in ``kernel.py`` over one
``state.KernelState`` (every object of SPEC §1, the counters, the violations
found, the planted bug, the drivers) with the step rule and the op dispatch
table.  The ops are functions of that state; layers, lowest first (nothing
imports a module above it, and nothing imports ``kernel.py``):

1. ``threads``, ``itree``, ``pagetable``, ``folios``, ``mmu_gather``,
   ``ledger``; ``mmu_notifier``; ``state``; ``vma``, ``common``, ``rmap``,
   ``memory``;
2. ``fault`` (a CPU fault on a device page calls the page's
   ``pgmap->ops->migrate_to_ram``, which its driver sets), ``mmap``,
   ``fork``, ``exit``, ``migrate``; the core services of the drivers:
   ``hmm`` (``hmm_range_fault``), ``gup`` (``pin_user_pages``, DMA of pinned
   pages), ``migrate_device`` (migrate-back and ``migrate_vma`` steps);
   ``devices`` (``open``: makes the device, calls its driver's ``open``);
3. ``checks``, ``observe`` (each asks the drivers' records: ``checks``,
   ``view``);
4. the drivers, ``drivers/``: one :class:`model.driver.Driver` record per
   device kind (``mirror.py``: test_hmm's dmirror; ``userptr.py``: i915
   userptr; ``pin.py``: an RDMA memory region), in ``drivers.REGISTRY``;
   the core reaches them only through their records;
5. ``kernel`` (the adapter: ``DISPATCH`` = the core's ops + ``REGISTRY.ops()``).

Module map, each named after its Linux counterpart:

* ``pagetable.py`` four-level radix page table, numpy leaf tables, PMD leaves
* ``folios.py`` struct-of-arrays frames / swap slots / device pages, LIFO reuse
* ``rmap.py`` reverse map by linear page index (``rmap_walk``)
* ``itree.py`` augmented interval tree of subscriptions
* ``mmu_notifier.py`` the sequence protocol (stated there once); a callback
  is its subscription's driver's ``invalidate``
* ``mmu_gather.py`` batch freeing after the flush
* ``memory.py`` zap / map / split with the ledger; ``vma.py`` VMA lists
* ``fault.py`` CPU access and faults; ``mmap.py`` mmap, munmap, mremap,
  mprotect, madvise; ``fork.py``; ``exit.py``
* ``hmm.py``, ``gup.py``, ``migrate_device.py``, ``devices.py`` (above)
* ``migrate.py`` migrate, reclaim, oomreap
* ``checks.py`` invariants 1-3 and 6-10; ``observe.py`` the observation
* ``threads.py`` generators, yield points, mmap_lock and the driver lock
* ``state.py`` ``KernelState`` and the objects (``mm_struct``, VMAs, devices
  with their ``dev_pagemap``, regions of pinned pages, jobs)
* ``drivers/`` the device kinds (above)
"""

from model.optimized.kernel import MUTANTS, OptimizedKernel

__all__ = ["MUTANTS", "OptimizedKernel"]
