"""nouveau's SVM as a mirrorfuzz driver plug-in (one file, both cores).

Linux: drivers/gpu/drm/nouveau/nouveau_svm.c and nouveau_dmem.c as of 6.1.
Written against docs/drivers.md.  A GPU fault is served one page at a time
with the sequence protocol under ``svmm->mutex``; migration to VRAM maps the
moved pages under the same mutex with no ``read_retry``, the race test_hmm
has (DECISIONS D15)::

    nouveau_svm_fault -> nouveau_range_fault(page):   # one page at a time
      again: seq = mmu_interval_read_begin(the faults' interval notifier)
             hmm_range_fault (mmap_lock for reading)
             mutex_lock(svmm->mutex)
             read_retry(seq) -> unlock; again
             nouveau_hmm_convert_pfn; nvif ioctl: map the page; unlock

    Two notifiers, as in Linux (each a subscription here, whole-space):

    nouveau_svm_range_invalidate(range, cur_seq):   # the faults' interval
      (Linux inserts it around each fault; here it is always there, which
       only adds set_seqs that no commit is waiting on)
      blockable ? mutex_lock(svmm->mutex) : mutex_trylock or fail
      set_seq -- for every event, a migration by this device included
      unlock

    nouveau_svmm_invalidate_range_start(range):     # the svmm's notifier
      not blockable -> -EAGAIN
      mutex_lock(svmm->mutex)
      MIGRATE event whose owner is this device -> skip (no set_seq)
          (here it also drops the table entries of the range: the core frees
           a migrated page in the migration's apply)
      set_seq (the seq [fixed] migrate-and-map reads); nouveau_svmm_invalidate:
        the GPU range's PTEs go; unlock

    A fault's commit is thus checked against every invalidation, its own
    device's migration included (a fault that walked a page before that
    migration moved and freed it retries), while migrate-and-map's [fixed]
    read_retry ignores its own migration: the separation test_hmm lacks
    (test_hmm.py, DECISIONS D28).

    NOUVEAU_SVM_BIND migrate to VRAM -> nouveau_dmem_migrate_vma:
      [fixed] seq = read_begin(the svmm's notifier)
      migrate_vma_setup / copy / migrate_vma_pages     (Core.migrate_vma)
      nouveau_pfns_map: mutex_lock(svmm->mutex);
        [fixed] read_retry(seq) -> unlock, map nothing
        map each moved VRAM page; unlock
      migrate_vma_finalize

    nouveau_dmem_migrate_to_ram (a CPU touch of a VRAM page): the core's
      migrate-back; the page's GPU PTE goes (page_moved)

6.1 as shipped has no ``[fixed]`` lines: a madvise(DONTNEED) between
``migrate_vma_pages`` and ``nouveau_pfns_map`` leaves the GPU mapping a
freed VRAM page.  Here the fixed protocol is the default and 6.1 is the
planted bug ``nouveau_migrate_maps_without_read_retry``, as test_hmm.py does.

Planted bugs:

* ``nouveau_migrate_maps_without_read_retry``: 6.1's nouveau_pfns_map, above.
* ``nouveau_fault_reuses_stale_pfns`` imitates what commit "nouveau/hmm:
  fault one page at a time" (Ralph Campbell, v5.9) fixed: "a corner case
  where the input hmm_pfns array is not reinitialized after
  hmm_range_fault() returns -EBUSY and must be called again".  Here the
  round that has to be repeated is the one ``read_retry`` rejects: the next
  round's walk succeeds, but the pfns mapped are the stale ones of the
  rejected round.

Ops (device ops of Appendix B's "live" row):

* ``nv_read D s n``: a GPU read through its page table, faulting the pages
  it lacks; ``values``.
* ``nv_write D s n x [stride]``: a GPU write (faults for writing); ``ok``.
* ``nv_migrate D s n``: NOUVEAU_SVM_BIND's migrate of [s, s+n) to VRAM; ``ok``.
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
    MAX_VALUE_PAGES,
    OK,
    Err,
    OpResult,
    Values,
    range_ok,
    words_ok,
)

KIND = "nouveau_svm"
MIGRATE_CHUNK = 64
"""Pages per migrate_vma round (here; SG_MAX_SINGLE_ALLOC in nouveau)."""

Gen = Generator[Any, None, Any]


@dataclass(frozen=True)
class NvRead:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class NvWrite:
    d: int
    s: int
    n: int
    x: int
    stride: int | None = None


@dataclass(frozen=True)
class NvMigrate:
    d: int
    s: int
    n: int


_COMMON: dict[str, Any] = {"device": KIND, "plugin": KIND, "racer": "device"}
declare(NvRead, "nv_read", 0, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=6, **_COMMON)
declare(NvWrite, "nv_write", 1, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), Word(), Stride(),
        weight=6, draw=("d", "s", "n", "stride", "x"), **_COMMON)
declare(NvMigrate, "nv_migrate", 2, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=4,
        **_COMMON)

MIGRATE_NO_READ_RETRY = bugs.declare(
    "nouveau_migrate_maps_without_read_retry",
    breaks="nouveau_dmem_migrate_vma maps the moved VRAM pages (nouveau_pfns_map under "
           "svmm->mutex) with no read_begin before migrate_vma_setup and no read_retry, so an "
           "invalidation between the migration and the mapping (madvise DONTNEED) leaves the "
           "GPU mapping a freed VRAM page",
    imitates="drivers/gpu/drm/nouveau/nouveau_dmem.c as of Linux 6.1 (nouveau_dmem_migrate_chunk "
             "-> nouveau_pfns_map), the same race as test_hmm's dmirror_migrate_finalize_and_map "
             "(DECISIONS D15)",
    implementation=bugs.PLUGIN, driver=KIND)

STALE_PFNS = bugs.declare(
    "nouveau_fault_reuses_stale_pfns",
    breaks="nouveau_range_fault's retry does not reinitialize its pfn array: after a round "
           "that read_retry rejected, the next round maps the rejected round's pages (which "
           "the invalidation that forced the retry may have freed)",
    imitates="commit 'nouveau/hmm: fault one page at a time' (Ralph Campbell, v5.9), which "
             "fixed 'a corner case where the input hmm_pfns array is not reinitialized after "
             "hmm_range_fault() returns -EBUSY and must be called again'",
    implementation=bugs.PLUGIN, driver=KIND)


@dataclass
class Svmm:
    """A channel's nouveau_svmm: its two notifiers and the GPU page table."""

    d: int
    sub: int  # the svmm's notifier (nouveau_svmm_invalidate_range_start)
    fault_sub: int  # the faults' interval notifier (nouveau_svm_range_invalidate)
    table: dict[int, tuple[Page, bool]] = field(default_factory=dict)


def svmm_open(core: Core, d: int) -> Svmm:
    """nouveau_svmm_init: a notifier over the whole address space (and the
    faults' interval notifier, see the header).  The faults' is subscribed
    first, so that its callback runs first, as Linux runs interval notifiers
    before the others (mn_itree_invalidate, then mn_hlist_invalidate_range_start):
    nouveau_svm_range_invalidate's comment says its set_seq "only works
    because the normal notifier that does invalidation is always called after
    the range notifier"."""
    fault_sub = core.subscribe(d, 0, ADDRESS_PAGES)
    return Svmm(d, sub=core.subscribe(d, 0, ADDRESS_PAGES), fault_sub=fault_sub)


def svmm_invalidate(core: Core, th: Any, svmm: Svmm, sub: int, event: str, a: int, b: int,
                    owner: int | None, blockable: bool, seq: int) -> Gen:
    """nouveau_svm_range_invalidate on the faults' notifier,
    nouveau_svmm_invalidate_range_start on the svmm's."""
    if sub == svmm.fault_sub:
        if blockable:
            yield from core.lock(th, svmm.d)
        elif not core.trylock(th, svmm.d):
            return False
        core.set_seq(sub, seq)
        core.unlock(th, svmm.d)
        return True
    if not blockable:
        return False
    yield from core.lock(th, svmm.d)
    if event == "migrate" and owner == svmm.d:
        _erase(svmm, a, b)  # the model's apply frees the old pages (see the header)
        core.unlock(th, svmm.d)
        return True
    core.set_seq(sub, seq)
    _erase(svmm, a, b)
    core.unlock(th, svmm.d)
    return True


def _erase(svmm: Svmm, a: int, b: int) -> None:
    """nouveau_svmm_invalidate: the GPU PTEs in [a, b) go."""
    for v in [v for v in svmm.table if a <= v < b]:
        del svmm.table[v]


def _range_fault(core: Core, th: Any, svmm: Svmm, v: int, write: bool) -> Gen:
    """nouveau_range_fault of one page: None, or the error."""
    stale: tuple[Any, ...] | None = None
    while True:
        seq = yield from core.read_begin(th, svmm.fault_sub)
        got = yield from core.range_fault(th, svmm.d, v, 1, write)
        if isinstance(got, Err):
            return got
        yield from core.lock(th, svmm.d)
        if core.read_retry(svmm.fault_sub, seq):
            core.unlock(th, svmm.d)
            if core.bugged(STALE_PFNS) and stale is None:
                stale = got  # the array keeps this round's pfns
            continue
        page, w = (stale if stale is not None else got)[0]
        svmm.table[v] = (page, w)
        core.unlock(th, svmm.d)
        return None


def _device(core: Core, th: Any, d: int, s: int, n: int) -> Svmm | OpResult:
    svmm = core.device(d, KIND)
    if svmm is None or not range_ok(s, n) or n > MAX_VALUE_PAGES:
        return EINVAL
    err: OpResult | None = core.state_err(th, core.device_pid(d))
    return svmm if err is None else err


def _missing(svmm: Svmm, s: int, n: int, write: bool) -> int | None:
    """The first page of [s, s+n) the GPU table lacks (or lacks w for a write)."""
    for v in range(s, s + n):
        entry = svmm.table.get(v)
        if entry is None or (write and not entry[1]):
            return v
    return None


def op_access(core: Core, th: Any, op: NvRead | NvWrite) -> Gen:
    """A GPU access: through the GPU page table, replaying faults (nouveau_svm_fault)
    one page at a time until every page is mapped."""
    svmm = _device(core, th, op.d, op.s, op.n)
    if not isinstance(svmm, Svmm):
        return svmm
    write = isinstance(op, NvWrite)
    x = op.x if isinstance(op, NvWrite) else 0
    stride = (op.stride or 0) if isinstance(op, NvWrite) else 0
    if not words_ok(x, stride, op.n):
        return EINVAL
    while True:
        yield from core.lock(th, svmm.d)
        first = _missing(svmm, op.s, op.n, write)
        if first is None:
            pages = [svmm.table[op.s + k][0] for k in range(op.n)]
            if write:
                for k, page in enumerate(pages):
                    core.dma_write(page, x + k * stride)
            words = tuple(core.dma_read(page) for page in pages) if not write else ()
            core.unlock(th, svmm.d)
            return Values(words) if not write else OK
        core.unlock(th, svmm.d)
        err = yield from _range_fault(core, th, svmm, first, write)
        if err is not None:
            return err
        if (e := core.state_err(th, core.device_pid(op.d))) is not None:
            return e


def op_migrate(core: Core, th: Any, op: NvMigrate) -> Gen:
    """nouveau_svmm_bind(NOUVEAU_SVM_BIND_TARGET__GPU_VRAM) -> nouveau_dmem_migrate_vma."""
    svmm = _device(core, th, op.d, op.s, op.n)
    if not isinstance(svmm, Svmm):
        return svmm
    bugged = core.bugged(MIGRATE_NO_READ_RETRY)
    for a in range(op.s, op.s + op.n, MIGRATE_CHUNK):
        b = min(op.s + op.n, a + MIGRATE_CHUNK)
        seq = None if bugged else (yield from core.read_begin(th, svmm.sub))
        moved = yield from core.migrate_vma(th, svmm.d, a, b - a)
        if isinstance(moved, Err):
            return moved
        yield from core.lock(th, svmm.d)  # nouveau_pfns_map
        if seq is None or not core.read_retry(svmm.sub, seq):
            for v, page, w in moved:
                svmm.table[v] = (page, w)
        core.unlock(th, svmm.d)
        core.migrate_finalize(th, moved)  # migrate_vma_finalize
    return OK


def svmm_page_moved(svmm: Svmm, page: Page) -> None:
    """nouveau_dmem_migrate_to_ram: the moved page's GPU PTE goes."""
    for v in [v for v, (p, _w) in svmm.table.items() if p == page]:
        del svmm.table[v]


DRIVER = PluginDriver(
    kind=KIND,
    ops={"nv_read": op_access, "nv_write": op_access, "nv_migrate": op_migrate},
    open=svmm_open,
    invalidate=svmm_invalidate,
    table=lambda svmm: svmm.table,
    page_moved=svmm_page_moved,
)
