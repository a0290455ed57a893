"""amdgpu's userptr (2019) as a mirrorfuzz driver plug-in (one file, both cores).

Linux: drivers/gpu/drm/amd/amdgpu/amdgpu_mn.c, amdgpu_ttm.c and amdgpu_cs.c
as of v5.3 (2019, the hmm_mirror version, before a22dd506400d "drm/amdgpu:
Use mmu_interval_notifier instead of hmm_mirror" in v5.5).  Written against
docs/drivers.md.  Unlike i915's registration cache, amdgpu does not pin: a
userptr BO gets its pages with ``hmm_range_fault`` when a command submission
validates it, keeps no reference on them, and its notifier callback sleeps
until the BO's fences (its GPU work) have signalled -- Jason Gunthorpe's
aside of August 2019: "AMDGPU gets away with not using the hmm API
properly, it is probably relying on its DMA refcount, not the hmm valid".
Here it must use both::

    amdgpu_cs_ioctl(bo = [s, s+n)):
      amdgpu_cs_parser_bos -> amdgpu_ttm_tt_get_user_pages:
        seq = read_begin(notifier)        # hmm_range_register / wait_until_valid
        pages = hmm_range_fault(s, n, write)
      amdgpu_cs_submit:
        amdgpu_mn_lock                    # down_write(&amn->lock)
        amdgpu_ttm_tt_get_user_pages_done? (= !read_retry(seq))
          no  -> unlock; -EAGAIN (libdrm's drmIoctl restarts the ioctl)
        the BO's pages bound in the GTT; a fence added to the BO (bo.fences++)
        amdgpu_mn_unlock
      the job runs on the GPU (yield points), DMAs the pages, and its fence
        signals (bo.fences--)

    amdgpu_mn_invalidate_range_start_gfx(range, blockable):
      amdgpu_mn_read_lock(amn, blockable)   # blockable ? lock : trylock or -EAGAIN
      for each BO overlapping the range:
        not blockable -> unlock; -EAGAIN
        amdgpu_mn_invalidate_node: wait for the BO's fences
          (reservation_object_wait_timeout_rcu, MAX_SCHEDULE_TIMEOUT)
        (here the BO's GTT binding also goes: in v5.3 the unreferenced pages
         stay in the ttm_tt until the next CS gets them again, which the
         model's device table cannot show as harmless)
      set_seq; unlock; success

Planted bugs:

* ``amdgpu_cs_skips_get_user_pages_done`` is Gunthorpe's aside made true:
  ``amdgpu_cs_submit`` trusts its DMA refcount and binds the pages without
  ``amdgpu_ttm_tt_get_user_pages_done`` (the hmm valid check), so an
  invalidation between ``hmm_range_fault`` and the submission, whose
  callback found no fence to wait for, leaves the GTT naming freed pages.
  As described in a22dd506400d's message: "this driver does not seem to
  use the collision retry lock that hmm provides correctly".
* ``amdgpu_mn_sleeps_when_nonblockable`` imitates amdgpu_mn before commit
  93065ac753e4 "mm, oom: distinguish blockable mode for mmu notifiers"
  (v4.19), whose message names "amdgpu_mn_invalidate_node on unbound
  timeout" as a callback that sleeps waiting for the hardware: without the
  trylock and ``-EAGAIN`` it gave amdgpu_mn, the OOM reaper's
  non-blockable invalidation waits for the BO's fences.

Ops (device ops of Appendix B's "live" row):

* ``amdgpu_write D s n x [stride]``: a CS whose IB writes x + k·stride at
  s + k through the userptr BO [s, s+n); ``ok``.
* ``amdgpu_read D s n``: a CS whose IB reads the BO; ``values``.
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

KIND = "amdgpu_userptr"
GPU_STEPS = 2
"""Yield points a job spends on the GPU between its submission and its DMA."""

Gen = Generator[Any, None, Any]


@dataclass(frozen=True)
class AmdgpuWrite:
    d: int
    s: int
    n: int
    x: int
    stride: int | None = None


@dataclass(frozen=True)
class AmdgpuRead:
    d: int
    s: int
    n: int


_COMMON: dict[str, Any] = {"device": KIND, "plugin": KIND, "racer": "device"}
declare(AmdgpuWrite, "amdgpu_write", 0, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), Word(),
        Stride(), weight=6, draw=("d", "s", "n", "stride", "x"), **_COMMON)
declare(AmdgpuRead, "amdgpu_read", 1, D(KIND), Addr(), Count(cap=MAX_VALUE_PAGES), weight=6,
        **_COMMON)

SKIP_DONE = bugs.declare(
    "amdgpu_cs_skips_get_user_pages_done",
    breaks="amdgpu_cs_submit binds the userptr BO's pages without "
           "amdgpu_ttm_tt_get_user_pages_done (mmu_interval_read_retry) under amdgpu_mn_lock, "
           "trusting the fence wait in the notifier: an invalidation between hmm_range_fault "
           "and the submission, which had no fence to wait for, leaves the GTT naming pages "
           "the CPU no longer maps (freed: no reference is held)",
    imitates="Jason Gunthorpe's aside on dri-devel (August 2019) 'AMDGPU gets away with not "
             "using the hmm API properly, it is probably relying on its DMA refcount, not the "
             "hmm valid', as described in commit a22dd506400d 'drm/amdgpu: Use "
             "mmu_interval_notifier instead of hmm_mirror' ('this driver does not seem to use "
             "the collision retry lock that hmm provides correctly')",
    implementation=bugs.PLUGIN, driver=KIND)

SLEEPS_NONBLOCKABLE = bugs.declare(
    "amdgpu_mn_sleeps_when_nonblockable",
    breaks="amdgpu_mn_invalidate_range_start_gfx ignores blockable: the OOM reaper's "
           "non-blockable invalidation waits in amdgpu_mn_invalidate_node for the BO's "
           "fences instead of failing with -EAGAIN",
    imitates="amdgpu_mn before commit 93065ac753e4 'mm, oom: distinguish blockable mode for "
             "mmu notifiers' (v4.19), which names 'amdgpu_mn_invalidate_node on unbound "
             "timeout' among the callbacks that sleep for the hardware and gave amdgpu_mn "
             "its trylock and -EAGAIN",
    implementation=bugs.PLUGIN, driver=KIND)


# ------------------------------------------------------------------ state


@dataclass
class Bo:
    """A userptr BO over [start, end) of the device's process."""

    start: int
    end: int
    pages: tuple[tuple[Page, bool], ...] | None = None  # bound in the GTT
    fences: int = 0  # unsignalled fences (jobs on the GPU)


@dataclass
class Amdgpu:
    d: int
    sub: int
    bos: dict[tuple[int, int], Bo] = field(default_factory=dict)

    @property
    def table(self) -> dict[int, tuple[Page, bool]]:
        """The GTT entries of the bound BOs."""
        out: dict[int, tuple[Page, bool]] = {}
        for bo in self.bos.values():
            if bo.pages is not None:
                for k, pw in enumerate(bo.pages):
                    out[bo.start + k] = pw
        return out


def amdgpu_open(core: Core, d: int) -> Amdgpu:
    """amdgpu_mn_get: one hmm_mirror over the mm (its interval tree holds the BOs)."""
    return Amdgpu(d, core.subscribe(d, 0, ADDRESS_PAGES))


def _device(core: Core, th: Any, d: int, s: int, n: int) -> Amdgpu | OpResult:
    dev = core.device(d, KIND)
    if dev is None or not range_ok(s, n) or n > MAX_VALUE_PAGES:
        return EINVAL
    err: OpResult | None = core.state_err(th, core.device_pid(d))
    return dev if err is None else err


def op_cs(core: Core, th: Any, op: AmdgpuWrite | AmdgpuRead) -> Gen:
    """amdgpu_cs_ioctl with one userptr BO, then the job's run and its fence."""
    dev = _device(core, th, op.d, op.s, op.n)
    if not isinstance(dev, Amdgpu):
        return dev
    write = isinstance(op, AmdgpuWrite)
    x = op.x if isinstance(op, AmdgpuWrite) else 0
    stride = (op.stride or 0) if isinstance(op, AmdgpuWrite) else 0
    if not words_ok(x, stride, op.n):
        return EINVAL
    bo = dev.bos.setdefault((op.s, op.s + op.n), Bo(op.s, op.s + op.n))
    while True:
        seq = yield from core.read_begin(th, dev.sub)  # amdgpu_ttm_tt_get_user_pages
        got = yield from core.range_fault(th, dev.d, bo.start, bo.end - bo.start, True)
        if isinstance(got, Err):
            return got
        yield from core.lock(th, dev.d)  # amdgpu_cs_submit: amdgpu_mn_lock
        if core.read_retry(dev.sub, seq) and not core.bugged(SKIP_DONE):
            core.unlock(th, dev.d)  # !amdgpu_ttm_tt_get_user_pages_done: -EAGAIN, restart
            continue
        bo.pages = tuple(got)
        pages = [page for page, _w in got]
        bo.fences += 1
        core.unlock(th, dev.d)
        break
    for _ in range(GPU_STEPS):  # the job on the GPU
        yield from core.y()
    # the IB's DMA and the fence's signal, in one step
    words: tuple[int, ...] = ()
    if write:
        for k, page in enumerate(pages):
            core.dma_write(page, x + k * stride)
    else:
        words = tuple(core.dma_read(page) for page in pages)
    bo.fences -= 1
    return OK if write else Values(words)


def _signalled(bo: Bo) -> Callable[[], bool]:
    return lambda: bo.fences == 0


def amdgpu_invalidate(core: Core, th: Any, dev: Amdgpu, sub: int, event: str, a: int, b: int,
                      owner: int | None, blockable: bool, seq: int) -> Gen:
    """amdgpu_mn_invalidate_range_start_gfx."""
    sleeps = blockable or core.bugged(SLEEPS_NONBLOCKABLE)
    if sleeps:
        yield from core.lock(th, dev.d)  # amdgpu_mn_read_lock
    elif not core.trylock(th, dev.d):
        return False
    for bo in [bo for bo in dev.bos.values() if bo.start < b and a < bo.end]:
        if not sleeps:
            core.unlock(th, dev.d)
            return False
        # amdgpu_mn_invalidate_node: the job's fence does not need amn->lock to signal
        yield from core.wait(th, _signalled(bo), "amdgpu_mn_invalidate_node")
        bo.pages = None
    core.set_seq(sub, seq)
    core.unlock(th, dev.d)
    return True


def amdgpu_busy(dev: Amdgpu) -> list[tuple[int, int]]:
    return [(bo.start, bo.end) for bo in dev.bos.values() if bo.fences]


DRIVER = PluginDriver(
    kind=KIND,
    ops={"amdgpu_write": op_cs, "amdgpu_read": op_cs},
    open=amdgpu_open,
    invalidate=amdgpu_invalidate,
    table=lambda dev: dev.table,
    busy=amdgpu_busy,
)
