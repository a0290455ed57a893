"""The optimized implementation of SPEC v1, built like the Linux kernel.

Entry point: :class:`OptimizedKernel` (``model.interface.Implementation``,
name ``"optimized"``).  Module map, each named after its Linux counterpart:

* ``pagetable.py`` four-level radix page table, numpy leaf tables, PMD leaves
* ``folios.py`` struct-of-arrays frames / swap slots / device pages, LIFO reuse
* ``rmap.py`` reverse map by linear page index (``rmap_walk``)
* ``itree.py`` augmented interval tree of subscriptions
* ``mmu_notifier.py`` the sequence protocol (stated there once)
* ``mmu_gather.py`` batch freeing after the flush
* ``memory.py`` zap / map / split with the ledger; ``vma.py`` VMA lists
* ``fault.py`` CPU access and faults; ``mmap.py`` mmap, munmap, mremap,
  mprotect, madvise; ``fork.py``; ``exit.py``
* ``mirror.py`` (test_hmm dmirror), ``migrate_device.py`` (migrate_to_dev,
  migrate-back, evict), ``userptr.py`` (i915 userptr), ``pin.py`` (GUP pins)
* ``migrate.py`` migrate, reclaim, oomreap
* ``checks.py`` invariants 1-3 and 6-10; ``observe.py`` the observation
* ``threads.py`` generators, yield points, mmap_lock and the driver lock
"""

from model.optimized.kernel import MUTANTS, OptimizedKernel

__all__ = ["MUTANTS", "OptimizedKernel"]
