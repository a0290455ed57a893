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
      read_retry(notifier, seq) -> unlock; again
      range.pages = pages; range.valid = True
      unlock; Y3

    bind(range):                            # xe_svm_range_bind, under notifier_lock
      L notifier_lock
      drm_gpusvm_range_pages_valid(range)? no -> unlock; get_pages again (-EAGAIN)
      program the range's GPU PTEs; unlock

    invalidate(event, [a,b), blockable):    # drm_gpusvm_notifier_invalidate
      not blockable -> fail (the OOM reaper's invalidations always fail)
      L notifier_lock; set_seq
      every range of the notifier overlapping [a,b): unmap its pages
        (valid = False, its GPU PTEs cleared)
      unlock; success

The notifier is wider than the ranges, so an invalidation of another range
of the same window also moves the notifier's seq (the first level, cheap
and conservative); the second level, ``range_pages_valid`` under
``notifier_lock`` just before the bind, catches an invalidation of *this*
range between get_pages and the bind.  The planted bug
``gpusvm_bind_skips_pages_valid`` drops that recheck.

Ops (SPEC-style; device ops of Appendix B's "live" row):

* ``svm_bind D s n``: a GPU fault on [s, s+n): get the pages of every range
  it touches (for reading) and bind them.  ``ok``.
* ``svm_read D s n``: a GPU read through its page table, faulting (get
  pages and bind) the ranges it lacks; ``values``.
* ``svm_write D s n x [stride]``: a GPU write, faulting for writing; ``ok``.
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


_COMMON: dict[str, Any] = {"device": KIND, "plugin": KIND, "racer": "device"}
declare(SvmBind, "svm_bind", 0, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=6, **_COMMON)
declare(SvmRead, "svm_read", 1, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=6, **_COMMON)
declare(SvmWrite, "svm_write", 2, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), Word(), Stride(),
        weight=6, draw=("d", "s", "n", "stride", "x"), **_COMMON)

SKIP_PAGES_VALID = bugs.declare(
    "gpusvm_bind_skips_pages_valid",
    breaks="the bind programs GPU PTEs without drm_gpusvm_range_pages_valid() under "
           "notifier_lock, so an invalidation of the range between get_pages and the bind "
           "leaves stale GPU PTEs",
    imitates="drm_gpusvm's two-level staleness check (Xe SVM: the range valid check before "
             "committing the bind; drivers/gpu/drm/drm_gpusvm.c, drm_gpusvm_range_pages_valid)",
    implementation=bugs.PLUGIN, driver=KIND)


# ------------------------------------------------------------------ state


@dataclass
class Range:
    """A drm_gpusvm_range: [start, end) inside one notifier's window."""

    start: int
    end: int
    sub: int
    pages: dict[int, tuple[Page, bool]] = field(default_factory=dict)
    valid: bool = False  # drm_gpusvm_range_pages_valid


@dataclass
class Svm:
    """A device's drm_gpusvm: notifiers by window base, ranges, GPU page table."""

    d: int
    notifiers: dict[int, int] = field(default_factory=dict)  # window base -> subscription
    ranges: list[Range] = field(default_factory=list)
    table: dict[int, tuple[Page, bool]] = field(default_factory=dict)  # GPU PTEs


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
    """drm_gpusvm_range_unmap_pages: the range's DMA mappings and GPU PTEs
    go; its pfn array stays (a bind that skips the valid check uses it)."""
    r.valid = False
    for v in range(r.start, r.end):
        svm.table.pop(v, None)


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
        r.pages = {r.start + k: pw for k, pw in enumerate(got)}
        r.valid = True
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
    ops={"svm_bind": op_bind, "svm_read": op_access, "svm_write": op_access},
    open=svm_open,
    invalidate=svm_invalidate,
    table=lambda svm: svm.table,
)
