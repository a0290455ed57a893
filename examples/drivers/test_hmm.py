"""Linux's test_hmm ``dmirror`` as a mirrorfuzz driver plug-in (one file, both cores).

Linux: lib/test_hmm.c as of 6.1 (Debian's linux-source-6.1, 6.1.192), the
kernel test driver behind tools/testing/selftests/vm/hmm-tests.c.  Written
against docs/drivers.md.  Unlike the built-in ``mirror`` (SPEC §6.1, a
specification of what such a device must do), this is the driver's code
path by path, with its one known race as a switch::

    [fixed] the faults' own interval notifier (as nouveau has one; see
    below), called first, as Linux calls interval notifiers in insertion order:
      blockable ? mutex_lock : mutex_trylock or fail; set_seq; unlock

    dmirror_interval_invalidate(range, cur_seq):
      event == MIGRATE and owner == this device -> success, no set_seq
          (here it also drops the table entries of the range: the core
           frees a migrated page in the migration's apply, where Linux keeps
           the old page until migrate_vma_finalize, after the remap)
      blockable ? mutex_lock : mutex_trylock or fail
      set_seq; dmirror_do_update: erase the range's table entries; unlock

    dmirror_fault(start, end, write):       # per 64 pages, dmirror_range_fault
      again: seq = read_begin([fixed] the faults' notifier)
             hmm_range_fault (mmap_lock for reading)
             mutex_lock; read_retry(seq) -> unlock, again
             dmirror_do_fault: store each page (write tag if writable); unlock

    HMM_DMIRROR_READ / WRITE (dmirror_read, dmirror_write):
      loop: mutex_lock; every page in the table (write-tagged for a write)?
            -> copy, unlock, done; else unlock; dmirror_fault from the first
            page missing; again

    HMM_DMIRROR_MIGRATE_TO_DEV (dmirror_migrate_to_device), per 64 pages:
      [fixed] seq = read_begin
      migrate_vma_setup / alloc_and_copy / migrate_vma_pages   (Core.migrate_vma)
      dmirror_migrate_finalize_and_map:
        mutex_lock; [fixed] read_retry(seq) -> unlock, map nothing
        store each moved device page (write tag if its entry was w); unlock
      migrate_vma_finalize                  (Core.migrate_finalize: the pages'
                                             holds go; a CPU fault waited)
      then read the range back through the table (dmirror_do_read): the
      words, or ENOENT if a page is not mapped

    dmirror_devmem_fault (a CPU touch of one of its pages): the core's
      migrate-back; the page's table entry is erased (page_moved)

6.1 as shipped has no ``[fixed]`` lines: the mapping after the migration
does not check that no invalidation ran meanwhile, so a ``madvise
(MADV_DONTNEED)`` that zaps a moved page between its migration and its
mapping leaves the table pointing at a freed device page, which the same
ioctl's read-back then reads: DECISIONS D15, confirmed on Linux 6.1 with
KASAN (``use-after-free in dmirror_do_read``, ../shared/kernel/README.md).
Here the fixed protocol is the default and 6.1 is the planted bug
``test_hmm_migrate_maps_without_read_retry``, so that a campaign finds it.

6.1 has a second race, found by a campaign of this file (DECISIONS D28):
the skip above serves the migration's own ``read_begin``, but
``dmirror_fault`` reads the same notifier's seq, so a fault that walked a
page before the device's own migration moved it is not retried: it stores
the old page, which ``migrate_vma_finalize`` frees, and the next
``dmirror_do_read`` reads it (``mirrorfuzz confirm`` on 6.1:
docs/findings/test_hmm-fault-vs-own-migration.md).  The fix here gives the
faults an interval notifier of their own that never skips, as nouveau's
``nouveau_svm_range_invalidate`` does; 6.1's single notifier is the planted
bug ``test_hmm_fault_ignores_own_migration``.

Ops (device ops of Appendix B's "live" row):

* ``hmm_read D s n``: ``values``, the words of [s, s+n) as the device reads them.
* ``hmm_write D s n x [stride]``: the device writes x + k·stride at s + k; ``ok``.
* ``hmm_migrate D s n``: migrate [s, s+n) to the device's memory, then read
  it back through the table: ``values``, or ENOENT when a page did not move.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from model import bugs
from model.decl import Addr, Count, D, Stride, Word, declare
from model.driver import Core, Page, PluginDriver
from model.ops import (
    ADDRESS_PAGES,
    EINVAL,
    ENOENT,
    MAX_VALUE_PAGES,
    OK,
    Err,
    OpResult,
    Values,
    range_ok,
    words_ok,
)

KIND = "test_hmm"
CHUNK = 64
"""Pages per dmirror_fault / migrate_vma round (test_hmm's pfns[64] arrays)."""

Gen = Generator[Any, None, Any]


@dataclass(frozen=True)
class HmmRead:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class HmmWrite:
    d: int
    s: int
    n: int
    x: int
    stride: int | None = None


@dataclass(frozen=True)
class HmmMigrate:
    d: int
    s: int
    n: int


_COMMON: dict[str, Any] = {"device": KIND, "plugin": KIND, "racer": "device"}
declare(HmmRead, "hmm_read", 0, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=6, **_COMMON)
declare(HmmWrite, "hmm_write", 1, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), Word(), Stride(),
        weight=6, draw=("d", "s", "n", "stride", "x"), **_COMMON)
declare(HmmMigrate, "hmm_migrate", 2, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=4,
        **_COMMON)

MIGRATE_NO_READ_RETRY = bugs.declare(
    "test_hmm_migrate_maps_without_read_retry",
    breaks="dmirror_migrate_finalize_and_map stores the moved device pages with no "
           "read_begin before migrate_vma_setup and no read_retry under dmirror->mutex, so "
           "an invalidation between the migration and the store (madvise DONTNEED) leaves "
           "the table naming a freed device page",
    imitates="lib/test_hmm.c as of Linux 6.1 (dmirror_migrate_to_device); confirmed with "
             "KASAN: use-after-free in dmirror_do_read (docs/findings/, DECISIONS D15)",
    implementation=bugs.PLUGIN, driver=KIND)

FAULT_NO_READ_RETRY = bugs.declare(
    "test_hmm_fault_skips_read_retry",
    breaks="dmirror_range_fault stores the walked pages without mmu_interval_read_retry "
           "under dmirror->mutex, so pages an invalidation zapped after the walk are mapped",
    imitates="the store with no read_retry that the hmm_mirror conversion of drivers had "
             "to fix (Documentation/mm/hmm.rst's 'take_lock(driver->update); if "
             "(mmu_interval_read_retry(...)) goto again')",
    implementation=bugs.PLUGIN, driver=KIND)


FAULT_IGNORES_OWN_MIGRATION = bugs.declare(
    "test_hmm_fault_ignores_own_migration",
    breaks="dmirror_range_fault's read_begin/read_retry use dmirror->notifier, whose "
           "callback returns without set_seq for the device's own MMU_NOTIFY_MIGRATE, so a "
           "fault that walked a page before its own device migrated it stores the old page, "
           "which migrate_vma_finalize frees",
    imitates="lib/test_hmm.c as of Linux 6.1 (dmirror_interval_invalidate's owner check and "
             "dmirror_range_fault); found by a mirrorfuzz campaign (DECISIONS D28)",
    implementation=bugs.PLUGIN, driver=KIND)


@dataclass
class Dmirror:
    """A device's dmirror: its notifiers and its page table (``dmirror->pt``)."""

    d: int
    sub: int  # dmirror->notifier
    fault_sub: int  # [fixed] the faults' notifier (see the header)
    table: dict[int, tuple[Page, bool]] = field(default_factory=dict)

    def fault_notifier(self, core: Core) -> int:
        """The notifier whose seq dmirror_range_fault reads."""
        return self.sub if core.bugged(FAULT_IGNORES_OWN_MIGRATION) else self.fault_sub


def dmirror_open(core: Core, d: int) -> Dmirror:
    """dmirror_fops_open: a notifier over the whole address space (and, first,
    the faults' notifier of the fix)."""
    fault_sub = core.subscribe(d, 0, ADDRESS_PAGES)
    return Dmirror(d, sub=core.subscribe(d, 0, ADDRESS_PAGES), fault_sub=fault_sub)


def dmirror_interval_invalidate(core: Core, th: Any, dmirror: Dmirror, sub: int, event: str,
                                a: int, b: int, owner: int | None, blockable: bool,
                                seq: int) -> Gen:
    if event == "migrate" and owner == dmirror.d and sub == dmirror.sub:
        _erase(dmirror, a, b)  # the model's apply frees the old pages (see the header)
        return True
        yield  # a generator  # noqa: B901
    if blockable:
        yield from core.lock(th, dmirror.d)
    elif not core.trylock(th, dmirror.d):
        return False
    core.set_seq(sub, seq)
    if sub == dmirror.sub:
        _erase(dmirror, a, b)
    core.unlock(th, dmirror.d)
    return True


def _erase(dmirror: Dmirror, a: int, b: int) -> None:
    """dmirror_do_update: erase the table entries in [a, b)."""
    for v in [v for v in dmirror.table if a <= v < b]:
        del dmirror.table[v]


def _fault(core: Core, th: Any, dmirror: Dmirror, start: int, end: int, write: bool) -> Gen:
    """dmirror_fault: None, or the error."""
    for a in range(start, end, CHUNK):
        b = min(end, a + CHUNK)
        notifier = dmirror.fault_notifier(core)
        while True:
            seq = yield from core.read_begin(th, notifier)
            got = yield from core.range_fault(th, dmirror.d, a, b - a, write)
            if isinstance(got, Err):
                return got
            yield from core.lock(th, dmirror.d)
            if core.read_retry(notifier, seq) and not core.bugged(FAULT_NO_READ_RETRY):
                core.unlock(th, dmirror.d)
                continue
            for k, (page, w) in enumerate(got):
                dmirror.table[a + k] = (page, w)
            core.unlock(th, dmirror.d)
            break
    return None


def _device(core: Core, th: Any, d: int, s: int, n: int) -> Dmirror | OpResult:
    dmirror = core.device(d, KIND)
    if dmirror is None or not range_ok(s, n) or n > MAX_VALUE_PAGES:
        return EINVAL
    err: OpResult | None = core.state_err(th, core.device_pid(d))
    return dmirror if err is None else err


def _missing(dmirror: Dmirror, s: int, n: int, write: bool) -> int | None:
    """The first page of [s, s+n) the table lacks (or lacks w for a write)."""
    for v in range(s, s + n):
        entry = dmirror.table.get(v)
        if entry is None or (write and not entry[1]):
            return v
    return None


def op_access(core: Core, th: Any, op: HmmRead | HmmWrite) -> Gen:
    """dmirror_read / dmirror_write."""
    dmirror = _device(core, th, op.d, op.s, op.n)
    if not isinstance(dmirror, Dmirror):
        return dmirror
    write = isinstance(op, HmmWrite)
    x = op.x if isinstance(op, HmmWrite) else 0
    stride = (op.stride or 0) if isinstance(op, HmmWrite) else 0
    if not words_ok(x, stride, op.n):
        return EINVAL
    while True:
        yield from core.lock(th, dmirror.d)
        first = _missing(dmirror, op.s, op.n, write)
        if first is None:
            pages = [dmirror.table[op.s + k][0] for k in range(op.n)]
            if write:
                for k, page in enumerate(pages):
                    core.dma_write(page, x + k * stride)
            words = tuple(core.dma_read(page) for page in pages) if not write else ()
            core.unlock(th, dmirror.d)
            return Values(words) if not write else OK
        core.unlock(th, dmirror.d)
        err = yield from _fault(core, th, dmirror, first, op.s + op.n, write)
        if err is not None:
            return err
        if (e := core.state_err(th, core.device_pid(op.d))) is not None:
            return e


def op_migrate(core: Core, th: Any, op: HmmMigrate) -> Gen:
    """dmirror_migrate_to_device, then dmirror_do_read of the range."""
    dmirror = _device(core, th, op.d, op.s, op.n)
    if not isinstance(dmirror, Dmirror):
        return dmirror
    bugged = core.bugged(MIGRATE_NO_READ_RETRY)
    for a in range(op.s, op.s + op.n, CHUNK):
        b = min(op.s + op.n, a + CHUNK)
        seq = None if bugged else (yield from core.read_begin(th, dmirror.sub))
        moved = yield from core.migrate_vma(th, dmirror.d, a, b - a)
        if isinstance(moved, Err):
            return moved
        yield from core.lock(th, dmirror.d)  # dmirror_migrate_finalize_and_map
        if seq is None or not core.read_retry(dmirror.sub, seq):
            for v, page, w in moved:
                dmirror.table[v] = (page, w)
        core.unlock(th, dmirror.d)
        core.migrate_finalize(th, moved)  # migrate_vma_finalize
    yield from core.lock(th, dmirror.d)
    if _missing(dmirror, op.s, op.n, False) is not None:
        core.unlock(th, dmirror.d)
        return ENOENT
    words = tuple(core.dma_read(dmirror.table[op.s + k][0]) for k in range(op.n))
    core.unlock(th, dmirror.d)
    return Values(words)


def dmirror_page_moved(dmirror: Dmirror, page: Page) -> None:
    """dmirror_devmem_fault_alloc_and_copy: the moved page's entry is erased."""
    for v in [v for v, (p, _w) in dmirror.table.items() if p == page]:
        del dmirror.table[v]


DRIVER = PluginDriver(
    kind=KIND,
    ops={"hmm_read": op_access, "hmm_write": op_access, "hmm_migrate": op_migrate},
    open=dmirror_open,
    invalidate=dmirror_interval_invalidate,
    table=lambda dmirror: dmirror.table,
    page_moved=dmirror_page_moved,
)
