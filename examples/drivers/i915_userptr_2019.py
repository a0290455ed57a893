"""i915's userptr registration cache (2019) as a mirrorfuzz driver plug-in (one file, both cores).

Linux: drivers/gpu/drm/i915/gem/i915_gem_userptr.c as of v5.3/v5.4 (2019),
the design Jason Gunthorpe and Jerome Glisse argued over on dri-devel in
August 2019.  Written against docs/drivers.md.  A userptr object pins its
pages (``pin_user_pages``, then ``get_user_pages`` with the pages held) while
it has them; the GPU works on the pinned pages; the MMU notifier
(``userptr_mn_invalidate_range_start``) sleeps until the object's GPU work
is done, then unbinds it and drops its pages::

    i915_gem_userptr_ioctl(s, n)          # an object over [s, s+n), no pages yet
    get_pages(obj):                       # i915_gem_userptr_get_pages + the worker
      __i915_gem_userptr_set_active(obj)  # in the notifier's interval tree
      obj.work = this attempt
      [fixed] seq = read_begin(notifier)
      pin_user_pages(s, n, write)         # Core.pin (mmap_lock for reading)
      L obj->mm.lock
      obj.work still this attempt?        # the notifier cancels a get_pages in flight
      [fixed] and not read_retry(seq)?
        no  -> unpin; -EAGAIN; again
        yes -> obj.pages = pinned pages (bound: the GPU PTEs)
      unlock

    execbuf with obj (i915_write / i915_read):
      get_pages if the object has none; L; obj.active++ (the request); U
      the request runs on the GPU (yield points)
      the request DMAs the pinned pages and retires: obj.active--

    userptr_mn_invalidate_range_start(range, blockable):
      no object overlapping the range -> success
      not blockable -> -EAGAIN            # mm, oom: distinguish blockable mode
      for each object overlapping:         (struct_mutex)
        cancel a get_pages in flight (obj.work = NULL)
        i915_gem_object_unbind: wait for the object's active requests
          (i915_active_wait: the "complicated sleeping locks")
        __i915_gem_object_put_pages: unpin the pages, drop the GPU PTEs
      set_seq; success

v5.3 as shipped has no ``[fixed]`` lines: its only guard against an
invalidation is ``obj->userptr.work``, which covers an invalidation whose
callback ran while the pin was in flight, not one whose callback ran just
before it and whose apply comes after (reclaim and migration run without
mmap_lock; the pinned page then stays pinned but the CPU entry is a
migration or swap entry).  Here the sequence count is the default and v5.3
is the planted bug ``i915_userptr_get_pages_without_seqcount``.

Objects live until the process exits (no GEM close op here); a ``release``
event (exit) unbinds every object like any other invalidation.

Planted bugs, each from i915's history (and the v5.3 one above):

* ``i915_userptr_invalidate_does_not_wait`` imitates commit 380996aab50e
  "drm/i915: Use a task to cancel the userptr on invalidate_range" (v4.4):
  the callback queued ``cancel_userptr`` on a workqueue and returned, so "the
  invalidate_range itself is no longer synchronous. There exists a small
  but definite period in time in which the old PTE's page remain accessible
  via the GPU" (its own message).  Here: an object with active work is only
  marked for cancellation; the cancel runs when its request retires, so the
  GPU PTEs outlive the callback and name pages the CPU no longer maps.
* ``i915_userptr_sleeps_when_nonblockable`` imitates i915's callback
  without the ``-EAGAIN`` that commit 93065ac753e4 "mm, oom: distinguish
  blockable mode for mmu notifiers" (v4.19) gave it ("callbacks are not
  allowed to sleep if the flag is set to false"; before it the OOM reaper
  skipped every mm with blockable notifiers): the OOM reaper's invalidation
  sleeps in ``i915_gem_object_unbind`` waiting for the GPU.

Ops (device ops of Appendix B's "live" row):

* ``i915_write D s n x [stride]``: an execbuf whose batch writes
  x + k·stride at s + k through the userptr object [s, s+n); ``ok``.
* ``i915_read D s n``: an execbuf whose batch reads the object; ``values``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
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

KIND = "i915_userptr"
GPU_STEPS = 2
"""Yield points a request spends on the GPU between its submission and its DMA."""

Gen = Generator[Any, None, Any]


@dataclass(frozen=True)
class I915Write:
    d: int
    s: int
    n: int
    x: int
    stride: int | None = None


@dataclass(frozen=True)
class I915Read:
    d: int
    s: int
    n: int


_COMMON: dict[str, Any] = {"device": KIND, "plugin": KIND, "racer": "device"}
declare(I915Write, "i915_write", 0, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), Word(), Stride(),
        weight=6, draw=("d", "s", "n", "stride", "x"), **_COMMON)
declare(I915Read, "i915_read", 1, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=6,
        **_COMMON)

NO_WAIT = bugs.declare(
    "i915_userptr_invalidate_does_not_wait",
    breaks="userptr_mn_invalidate_range_start only queues the cancellation of an object with "
           "active GPU work and returns: the object's GPU PTEs (and pins) outlive the "
           "callback until its request retires, naming pages the CPU no longer maps",
    imitates="i915 commit 380996aab50e 'drm/i915: Use a task to cancel the userptr on "
             "invalidate_range' (v4.4): cancel_userptr ran from a workqueue, so 'the old "
             "PTE's page remain accessible via the GPU' after invalidate_range returned",
    implementation=bugs.PLUGIN, driver=KIND)

SLEEPS_NONBLOCKABLE = bugs.declare(
    "i915_userptr_sleeps_when_nonblockable",
    breaks="userptr_mn_invalidate_range_start ignores blockable: the OOM reaper's "
           "non-blockable invalidation sleeps in i915_gem_object_unbind until the GPU "
           "request retires instead of failing with -EAGAIN",
    imitates="the rule of commit 93065ac753e4 'mm, oom: distinguish blockable mode for mmu "
             "notifiers' (v4.19: 'callbacks are not allowed to sleep if the flag is set to "
             "false'), which gave i915's callback its -EAGAIN: a callback without it sleeps "
             "for the GPU in the OOM reaper",
    implementation=bugs.PLUGIN, driver=KIND)


NO_SEQCOUNT = bugs.declare(
    "i915_userptr_get_pages_without_seqcount",
    breaks="get_pages pins with no sequence count: a pin_user_pages between an "
           "invalidation's callback (which found the object unbound) and its apply (reclaim's "
           "migration entries, a zap) binds a page the CPU entry no longer maps",
    imitates="i915_gem_userptr.c as of v5.3 as shipped (the interval tree and "
             "obj->userptr.work, no mmu_interval_read_begin/read_retry), made sequence-counted "
             "when i915 moved to mmu_interval_notifier, as described in 'drm/i915: Fix userptr "
             "so we do not have to worry about obj->mm.lock, v7' (v5.13)",
    implementation=bugs.PLUGIN, driver=KIND)


# ------------------------------------------------------------------ state


@dataclass
class Obj:
    """A userptr GEM object over [start, end) of the device's process."""

    start: int
    end: int
    pages: tuple[Page, ...] | None = None  # pinned and bound (obj->mm.pages)
    work: int = 0  # the get_pages attempt in flight (0: none; obj->userptr.work)
    active: int = 0  # requests not yet retired
    cancel: bool = False  # planted bug: a cancel queued behind the active requests


@dataclass
class I915:
    d: int
    sub: int
    objects: dict[tuple[int, int], Obj] = field(default_factory=dict)
    attempts: int = 0

    @property
    def table(self) -> dict[int, tuple[Page, bool]]:
        """The GPU PTEs of the bound objects."""
        out: dict[int, tuple[Page, bool]] = {}
        for obj in self.objects.values():
            if obj.pages is not None:
                for k, page in enumerate(obj.pages):
                    out[obj.start + k] = (page, True)
        return out


def i915_open(core: Core, d: int) -> I915:
    """i915_mmu_notifier_create: one notifier over the mm (the interval tree holds objects)."""
    return I915(d, core.subscribe(d, 0, ADDRESS_PAGES))


def _put_pages(core: Core, dev: I915, obj: Obj) -> None:
    """__i915_gem_object_put_pages: unbind (the GPU PTEs go) and unpin."""
    if obj.pages is not None:
        core.unpin(dev.d, obj.pages)
        obj.pages = None
    obj.cancel = False


def _get_pages(core: Core, th: Any, dev: I915, obj: Obj) -> Gen:
    """i915_gem_userptr_get_pages with its worker: None, or the error."""
    while obj.pages is None:
        dev.attempts += 1
        attempt = obj.work = dev.attempts
        seq = None if core.bugged(NO_SEQCOUNT) else (yield from core.read_begin(th, dev.sub))
        got = yield from core.pin(th, dev.d, obj.start, obj.end - obj.start, True)
        if isinstance(got, Err):
            if obj.work == attempt:
                obj.work = 0
            return got
        yield from core.lock(th, dev.d)
        stale = seq is not None and core.read_retry(dev.sub, seq)
        if obj.work != attempt or stale:  # cancelled or invalidated meanwhile: -EAGAIN
            core.unpin(dev.d, got)
            core.unlock(th, dev.d)
            continue
        obj.work = 0
        obj.pages = got
        core.unlock(th, dev.d)
    return None


def _device(core: Core, th: Any, d: int, s: int, n: int) -> I915 | OpResult:
    dev = core.device(d, KIND)
    if dev is None or not range_ok(s, n) or n > MAX_VALUE_PAGES:
        return EINVAL
    err: OpResult | None = core.state_err(th, core.device_pid(d))
    return dev if err is None else err


def op_exec(core: Core, th: Any, op: I915Write | I915Read) -> Gen:
    """i915_gem_do_execbuffer with one userptr object, then the request's run and retirement."""
    dev = _device(core, th, op.d, op.s, op.n)
    if not isinstance(dev, I915):
        return dev
    write = isinstance(op, I915Write)
    x = op.x if isinstance(op, I915Write) else 0
    stride = (op.stride or 0) if isinstance(op, I915Write) else 0
    if not words_ok(x, stride, op.n):
        return EINVAL
    obj = dev.objects.setdefault((op.s, op.s + op.n), Obj(op.s, op.s + op.n))
    while True:
        err = yield from _get_pages(core, th, dev, obj)
        if err is not None:
            return err
        yield from core.lock(th, dev.d)  # eb_lookup_vmas / i915_vma_pin under struct_mutex
        if obj.pages is None:  # invalidated between get_pages and the pin: again
            core.unlock(th, dev.d)
            continue
        pages = obj.pages
        obj.active += 1  # i915_vma_move_to_active
        core.unlock(th, dev.d)
        break
    for _ in range(GPU_STEPS):  # the request on the GPU
        yield from core.y()
    # the batch's DMA and the request's retirement, in one step
    words: tuple[int, ...] = ()
    if write:
        for k, page in enumerate(pages):
            core.dma_write(page, x + k * stride)
    else:
        words = tuple(core.dma_read(page) for page in pages)
    obj.active -= 1
    if obj.active == 0 and obj.cancel:  # planted bug: the queued cancel_userptr runs now
        _put_pages(core, dev, obj)
    return OK if write else Values(words)


def _idle(obj: Obj) -> Callable[[], bool]:
    return lambda: obj.active == 0


def i915_invalidate(core: Core, th: Any, dev: I915, sub: int, event: str, a: int, b: int,
                    owner: int | None, blockable: bool, seq: int) -> Gen:
    """userptr_mn_invalidate_range_start."""
    def overlapping() -> list[Obj]:
        return [o for o in dev.objects.values()
                if o.start < b and a < o.end and (o.pages is not None or o.work)]

    if not overlapping():
        core.set_seq(sub, seq)
        return True
    if not blockable and not core.bugged(SLEEPS_NONBLOCKABLE):
        return False  # -EAGAIN
    while True:
        if blockable or core.bugged(SLEEPS_NONBLOCKABLE):
            yield from core.lock(th, dev.d)  # struct_mutex
        elif not core.trylock(th, dev.d):
            return False
        objs = overlapping()
        for obj in objs:
            obj.work = 0  # cancel a get_pages in flight
        busy = [o for o in objs if o.active and o.pages is not None]
        if busy and core.bugged(NO_WAIT):
            for obj in busy:
                obj.cancel = True  # queue_work(cancel_userptr); return
            for obj in objs:
                if obj not in busy:
                    _put_pages(core, dev, obj)
            break
        if busy:
            core.unlock(th, dev.d)
            yield from core.wait(th, _idle(busy[0]), "i915_gem_object_unbind")
            continue
        for obj in objs:
            _put_pages(core, dev, obj)
        break
    core.set_seq(sub, seq)
    core.unlock(th, dev.d)
    return True


def i915_busy(dev: I915) -> list[tuple[int, int]]:
    return [(o.start, o.end) for o in dev.objects.values() if o.active]


DRIVER = PluginDriver(
    kind=KIND,
    ops={"i915_write": op_exec, "i915_read": op_exec},
    open=i915_open,
    invalidate=i915_invalidate,
    table=lambda dev: dev.table,
    busy=i915_busy,
)
