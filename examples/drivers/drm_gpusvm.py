"""Xe's drm_gpusvm protocol as a mirrorfuzz driver plug-in (one file, both cores).

Written from docs/drivers.md only.  Linux: drivers/gpu/drm/drm_gpusvm.c
(torvalds 0542972…, as of 6.15) and its user drivers/gpu/drm/xe/xe_svm.c.

A device of kind ``gpusvm`` keeps **notifiers** over wide aligned windows
(``WINDOW`` pages; drm_gpusvm recommends 512M+), inserted lazily, each
holding several **ranges** (here: the part of a bind request inside one
window), and a GPU page table vpn -> (page, w).  The rule: a GPU PTE is
programmed only under ``notifier_lock`` (the driver lock) from pages whose
range is still valid, checked at two levels::

    get_pages(range):                       # drm_gpusvm_get_pages
      seq = read_begin(notifier); Y4 on collision
      hmm_range_fault(range)                # [R] walk, Y3 every 64 pages and at the end
      L notifier_lock
      range removed meanwhile (flags.unmapped) -> unlock; map nothing
      read_retry(notifier, seq) -> unlock; again
      map each page in turn (dma_map_page: the device can reach it);
        a range mixing device and system pages -> -EOPNOTSUPP: err_unmap
        (unmap what this loop mapped), unlock, drm_gpusvm_range_evict
        (the device pages back to RAM), again
      range.pages = pages; range.valid = True (flags.has_dma_mapping)
      unlock; Y3

    bind(range):                            # xe_svm_range_bind, under notifier_lock
      L notifier_lock
      drm_gpusvm_range_pages_valid(range)? no -> unlock; get_pages again (-EAGAIN)
      program the range's GPU PTEs; unlock

    invalidate(event, [a,b), blockable):    # drm_gpusvm_notifier_invalidate
      not blockable -> fail (the OOM reaper's invalidations always fail)
      L notifier_lock; set_seq
      every range of the notifier overlapping [a,b): unmap its pages
        (if it has its DMA mappings: valid = False, its GPU PTEs cleared)
      unlock; success

    migrate_to_devmem(range):               # drm_gpusvm_migrate_to_devmem
      migrate_vma of the range to the device's memory; nothing mapped (the
      next GPU fault's get_pages finds the device pages); a CPU touch
      brings a page back (drm_pagemap's migrate_to_ram, page_moved)

The notifier is wider than the ranges, so an invalidation of another range
of the same window also moves the notifier's seq (the first level, cheap
and conservative); the second level, ``range_pages_valid`` under
``notifier_lock`` just before the bind, catches an invalidation of *this*
range between get_pages and the bind.  The planted bug
``gpusvm_bind_skips_pages_valid`` drops that recheck.

The planted bug ``gpusvm_get_pages_keeps_mappings_on_error`` is what
"drm/gpusvm: Force unmapping on error in drm_gpusvm_get_pages" fixed, as its
subject describes it: get_pages's error path unmaps through
``__drm_gpusvm_unmap_pages``, which unmaps only when the range's stored
``flags.has_dma_mapping`` is set, and only a complete mapping sets it; so
the pages mapped before an error stay mapped, and the range's invalidation
skips them for the same reason.  Here the error is the one the model can
reach, a range mixing device and system pages (``-EOPNOTSUPP``); the
device table stands for what the device can reach, DMA mappings included.

Ops (SPEC-style; device ops of Appendix B's "live" row):

* ``svm_bind D s n``: a GPU fault on [s, s+n): get the pages of every range
  it touches (for reading) and bind them.  ``ok``.
* ``svm_read D s n``: a GPU read through its page table, faulting (get
  pages and bind) the ranges it lacks; ``values``.
* ``svm_write D s n x [stride]``: a GPU write, faulting for writing; ``ok``.
* ``svm_migrate D s n``: migrate the ranges of [s, s+n) to the device's
  memory (Xe's prefetch to VRAM); ``ok``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from model import bugs
from model.decl import Addr, Count, D, Stride, Word, declare
from model.driver import Core, Page, PluginDriver
from model.ops import (
    EINVAL,
    MAX_VALUE_PAGES,
    OK,
    Err,
    OpResult,
    Values,
    range_ok,
    words_ok,
)

KIND = "gpusvm"
WINDOW = 512
"""Pages a notifier spans, aligned (drm_gpusvm's notifier_size)."""

Gen = Generator[Any, None, Any]


@dataclass(frozen=True)
class SvmBind:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class SvmRead:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class SvmWrite:
    d: int
    s: int
    n: int
    x: int
    stride: int | None = None


@dataclass(frozen=True)
class SvmMigrate:
    d: int
    s: int
    n: int


_COMMON: dict[str, Any] = {"device": KIND, "plugin": KIND, "racer": "device"}
declare(SvmBind, "svm_bind", 0, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=6, **_COMMON)
declare(SvmRead, "svm_read", 1, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=6, **_COMMON)
declare(SvmWrite, "svm_write", 2, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), Word(), Stride(),
        weight=6, draw=("d", "s", "n", "stride", "x"), **_COMMON)
declare(SvmMigrate, "svm_migrate", 3, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=3,
        **_COMMON)

SKIP_PAGES_VALID = bugs.declare(
    "gpusvm_bind_skips_pages_valid",
    breaks="the bind programs GPU PTEs without drm_gpusvm_range_pages_valid() under "
           "notifier_lock, so an invalidation of the range between get_pages and the bind "
           "leaves stale GPU PTEs",
    imitates="drm_gpusvm's two-level staleness check (Xe SVM: the range valid check before "
             "committing the bind; drivers/gpu/drm/drm_gpusvm.c, drm_gpusvm_range_pages_valid)",
    implementation=bugs.PLUGIN, driver=KIND)

LEAKS_ON_ERROR = bugs.declare(
    "gpusvm_get_pages_keeps_mappings_on_error",
    breaks="an error in drm_gpusvm_get_pages's mapping loop (a range mixing device and system "
           "pages: -EOPNOTSUPP) leaves the pages mapped before it mapped: "
           "__drm_gpusvm_unmap_pages unmaps only when the range's has_dma_mapping flag is set, "
           "and only a complete mapping sets it, so neither the error path nor a later "
           "invalidation of those pages unmaps them, and the device still reaches them once "
           "they are freed",
    imitates="'drm/gpusvm: Force unmapping on error in drm_gpusvm_get_pages' (pages mapped "
             "before an error were never unmapped), as described in its subject: "
             "drm_gpusvm.c's err_unmap path calls __drm_gpusvm_unmap_pages, gated on the "
             "stored flags.has_dma_mapping",
    implementation=bugs.PLUGIN, driver=KIND)


# ------------------------------------------------------------------ state


@dataclass(eq=False)
class Range:
    """A drm_gpusvm_range: [start, end) inside one notifier's window.  Compared by
    identity, as Linux compares range pointers: a range removed and another
    inserted over the same pages are two ranges (``r not in svm.ranges`` must
    not find the new one for the old)."""

    start: int
    end: int
    sub: int
    pages: dict[int, tuple[Page, bool]] = field(default_factory=dict)
    valid: bool = False  # drm_gpusvm_range_pages_valid (flags.has_dma_mapping)
    stale_bind: bool = False  # GPU PTEs bound while not valid (planted bug only)


@dataclass
class Svm:
    """A device's drm_gpusvm: notifiers by window base, ranges, GPU page table."""

    d: int
    notifiers: dict[int, int] = field(default_factory=dict)  # window base -> subscription
    ranges: list[Range] = field(default_factory=list)
    table: dict[int, tuple[Page, bool]] = field(default_factory=dict)  # GPU PTEs
    devpages: set[Page] = field(default_factory=set)  # its device memory in use (drm_pagemap)


def svm_open(core: Core, d: int) -> Svm:
    return Svm(d)


def _ranges(core: Core, svm: Svm, s: int, n: int) -> list[Range]:
    """drm_gpusvm_range_find_or_insert for each window [s, s+n) touches: a
    range equal to the request's part in that window; ranges it overlaps
    otherwise are removed first (their GPU PTEs unmapped)."""
    out = []
    for base in range(s - s % WINDOW, s + n, WINDOW):
        a, b = max(s, base), min(s + n, base + WINDOW)
        same = next((r for r in svm.ranges if (r.start, r.end) == (a, b)), None)
        if same is None:
            for old in [r for r in svm.ranges if r.start < b and a < r.end]:
                _unmap(svm, old)
                svm.ranges.remove(old)
            if base not in svm.notifiers:  # inserted lazily, maybe deferred
                svm.notifiers[base] = core.subscribe(svm.d, base, base + WINDOW)
            same = Range(a, b, svm.notifiers[base])
            svm.ranges.append(same)
        out.append(same)
    return out


def _unmap(svm: Svm, r: Range) -> None:
    """drm_gpusvm_range_unmap_pages: if the range has its DMA mappings
    (flags.has_dma_mapping, here ``valid``), they and the GPU PTEs go; its
    pfn array stays (a bind that skips the valid check uses it)."""
    if r.valid or core_bug_forces_unmap(svm, r):
        for v in range(r.start, r.end):
            svm.table.pop(v, None)
    r.valid = False


def core_bug_forces_unmap(svm: Svm, r: Range) -> bool:
    """Without a DMA mapping a range's GPU PTEs are there only if a bind
    skipped range_pages_valid (the planted gpusvm_bind_skips_pages_valid):
    unmapping them then keeps that bug's one finding, the stale bind."""
    return r.stale_bind


def _evict(core: Core, th: Any, svm: Svm, r: Range) -> Gen:
    """drm_gpusvm_range_evict: hmm_range_fault with no device owner, so the
    range's device pages go back to RAM (here: a read pin and unpin of the
    range, which migrates them back, SPEC §6.4).  None, or the error."""
    got = yield from core.pin(th, svm.d, r.start, r.end - r.start, False)
    if isinstance(got, Err):
        return got
    core.unpin(svm.d, got)
    return None


def _get_pages(core: Core, th: Any, svm: Svm, r: Range, write: bool) -> Gen:
    """drm_gpusvm_get_pages: None, or the error."""
    while True:
        seq = yield from core.read_begin(th, r.sub)
        got = yield from core.range_fault(th, svm.d, r.start, r.end - r.start, write)
        if isinstance(got, Err):
            return got
        yield from core.lock(th, svm.d)
        if core.read_retry(r.sub, seq):
            core.unlock(th, svm.d)
            continue
        if r not in svm.ranges:  # flags.unmapped: removed meanwhile, map nothing
            core.unlock(th, svm.d)
            return None
        # the mapping loop: each page DMA-mapped (device-reachable) in turn
        mapped = 0
        for page, w in got:
            if mapped > 0 and (page in svm.devpages) != (got[0][0] in svm.devpages):
                break  # -EOPNOTSUPP: goto err_unmap
            svm.table[r.start + mapped] = (page, w)
            mapped += 1
        if mapped < len(got):
            if not core.bugged(LEAKS_ON_ERROR):  # forced: unmap what this loop mapped
                for k in range(mapped):
                    svm.table.pop(r.start + k, None)
            core.unlock(th, svm.d)
            err = yield from _evict(core, th, svm, r)  # xe: -EOPNOTSUPP -> evict, retry
            if err is not None:
                return err
            continue
        r.pages = {r.start + k: pw for k, pw in enumerate(got)}
        r.valid = True
        r.stale_bind = False
        core.unlock(th, svm.d)
        yield from core.y()
        return None


def _fault(core: Core, th: Any, svm: Svm, s: int, n: int, write: bool) -> Gen:
    """Get pages and bind every range of [s, s+n): None, or the error."""
    for r in _ranges(core, svm, s, n):
        while True:
            err = yield from _get_pages(core, th, svm, r, write)
            if err is not None:
                return err
            yield from core.lock(th, svm.d)
            if r not in svm.ranges:  # removed by another fault meanwhile (flags.unmapped)
                core.unlock(th, svm.d)
                break
            if not r.valid and not core.bugged(SKIP_PAGES_VALID):
                core.unlock(th, svm.d)  # -EAGAIN: get the pages again
                continue
            r.stale_bind = not r.valid
            for v, pw in r.pages.items():
                svm.table[v] = pw
            core.unlock(th, svm.d)
            break
    return None


def _device(core: Core, th: Any, d: int) -> Svm | OpResult:
    svm = core.device(d, KIND)
    if svm is None:
        return EINVAL
    err: OpResult | None = core.state_err(th, core.device_pid(d))
    return svm if err is None else err


def op_bind(core: Core, th: Any, op: SvmBind) -> Gen:
    svm = _device(core, th, op.d)
    if not isinstance(svm, Svm):
        return svm
    if not range_ok(op.s, op.n) or op.n > MAX_VALUE_PAGES:
        return EINVAL
    err = yield from _fault(core, th, svm, op.s, op.n, False)
    return OK if err is None else err


def op_access(core: Core, th: Any, op: SvmRead | SvmWrite) -> Gen:
    """A GPU access: through the page table when every PTE is there (with w
    for a write), else fault the request's ranges and look again."""
    svm = _device(core, th, op.d)
    if not isinstance(svm, Svm):
        return svm
    write = isinstance(op, SvmWrite)
    x = op.x if isinstance(op, SvmWrite) else 0
    stride = (op.stride or 0) if isinstance(op, SvmWrite) else 0
    if not range_ok(op.s, op.n) or op.n > MAX_VALUE_PAGES or not words_ok(x, stride, op.n):
        return EINVAL
    while True:
        yield from core.lock(th, svm.d)
        ptes = [svm.table.get(op.s + k) for k in range(op.n)]
        if all(p is not None and (p[1] or not write) for p in ptes):
            if isinstance(op, SvmWrite):
                for k, p in enumerate(ptes):
                    assert p is not None
                    core.dma_write(p[0], x + k * stride)
                core.unlock(th, svm.d)
                return OK
            words = tuple(core.dma_read(p[0]) for p in ptes if p is not None)
            core.unlock(th, svm.d)
            return Values(words)
        core.unlock(th, svm.d)
        err = yield from _fault(core, th, svm, op.s, op.n, write)
        if err is not None:
            return err
        if (e := core.state_err(th, core.device_pid(op.d))) is not None:
            return e


def op_migrate(core: Core, th: Any, op: SvmMigrate) -> Gen:
    """drm_gpusvm_migrate_to_devmem (drm_pagemap_migrate_to_devmem) of each
    range of [s, s+n): the pages move to the device's memory; nothing is
    mapped here (the next GPU fault's get_pages finds them)."""
    svm = _device(core, th, op.d)
    if not isinstance(svm, Svm):
        return svm
    if not range_ok(op.s, op.n) or op.n > MAX_VALUE_PAGES:
        return EINVAL
    for r in _ranges(core, svm, op.s, op.n):
        moved = yield from core.migrate_vma(th, svm.d, r.start, r.end - r.start)
        if isinstance(moved, Err):
            return moved
        svm.devpages.update(page for _v, page, _w in moved)
        core.migrate_finalize(th, moved)  # migrate_vma_finalize
    return OK


def svm_page_moved(svm: Svm, page: Page) -> None:
    """drm_pagemap's migrate_to_ram: the page is RAM again (the migration's
    invalidation has already unmapped its range)."""
    svm.devpages.discard(page)
    for v in [v for v, (p, _w) in svm.table.items() if p == page]:
        del svm.table[v]


def svm_invalidate(core: Core, th: Any, svm: Svm, sub: int, event: str, a: int, b: int,
                   owner: int | None, blockable: bool, seq: int) -> Gen:
    """drm_gpusvm_notifier_invalidate + xe_svm_invalidate."""
    if not blockable:
        return False
    yield from core.lock(th, svm.d)
    core.set_seq(sub, seq)
    for r in svm.ranges:
        if r.sub == sub and r.start < b and a < r.end:
            _unmap(svm, r)
    core.unlock(th, svm.d)
    return True


DRIVER = PluginDriver(
    kind=KIND,
    ops={"svm_bind": op_bind, "svm_read": op_access, "svm_write": op_access,
         "svm_migrate": op_migrate},
    open=svm_open,
    invalidate=svm_invalidate,
    table=lambda svm: svm.table,
    page_moved=svm_page_moved,
)
