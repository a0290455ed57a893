"""The ``pin`` device (SPEC §6.3): a long-term pin with no notifier, like an
RDMA memory region (``ib_umem``).

``pin`` pins every page of its range with the core's ``pin_user_pages``
(``gup.pin_range``, SPEC §6.4) into a region; ``dma`` reads or writes the
pinned pages (``gup.region_io``); ``unpin`` drops them.  A region keeps its
folios even when the range is unmapped: no notifier reaches it.
"""

from __future__ import annotations

from model.driver import Driver
from model.ops import MAX_VALUE_PAGES, Dma, HandleResult, OpResult, Pin, Unpin
from model.optimized import common as C
from model.optimized.gup import pin_range, region_io, unpin_pages
from model.optimized.observe import DriverView
from model.optimized.state import Device, KernelState, Region
from model.optimized.threads import Gen, Thread, lazily

KIND = "pin"


def op_pin(k: KernelState, t: Thread, op: Pin) -> Gen[OpResult]:
    dev = C.device(k, op.d, KIND)
    if dev is None or not C.range_ok(op.s, op.n) or op.region < 0 or op.region in k.regions:
        return C.EINVAL
    proc = k.procs[dev.pid]
    if (e := (yield from C.read_locked(t, proc))) is not None:
        return e
    r = yield from pin_range(k, t, proc, op.s, op.n, op.mode)
    t.pins = []
    proc.mmap_lock.read_unlock(t)
    if not isinstance(r, tuple):
        return r
    k.regions[op.region] = Region(op.region, KIND, dev.id, op.s, op.n, op.mode,
                                  pins=r[0], pin_gens=r[1])
    return HandleResult("R", op.region)


def _pin_region(k: KernelState, r: int) -> Region | None:
    reg = k.regions.get(r)
    return reg if reg is not None and reg.kind == KIND else None


def _dma(k: KernelState, op: Dma) -> OpResult:
    reg = _pin_region(k, op.r)
    x, stride = op.x or 0, op.stride or 0
    if reg is None or op.off < 0 or op.cnt < 1 or op.off + op.cnt > reg.n:
        return C.EINVAL
    if op.direction == "read" and op.cnt > MAX_VALUE_PAGES:
        return C.EINVAL
    if op.direction == "write" and not C.words_ok(x, stride, op.cnt):
        return C.EINVAL
    if k.procs[k.devices[reg.dev].pid].state == "dead":
        return C.ESRCH
    if op.direction == "write" and reg.mode == "ro":
        return C.EPERM
    return region_io(k, reg, op.direction, op.off, op.cnt, x, stride)


def op_dma(k: KernelState, t: Thread, op: Dma) -> Gen[OpResult]:
    return lazily(lambda: _dma(k, op))


def _unpin(k: KernelState, op: Unpin) -> OpResult:
    reg = _pin_region(k, op.r)
    if reg is None:
        return C.EINVAL
    if reg.pins is not None:
        unpin_pages(k, reg.pins, reg.pin_gens)
    del k.regions[op.r]
    return C.OK_RESULT


def op_unpin(k: KernelState, t: Thread, op: Unpin) -> Gen[OpResult]:
    return lazily(lambda: _unpin(k, op))


def pin_view(k: KernelState, dev: Device) -> DriverView:
    """No table; its regions, with their pins."""
    return DriverView(None, 0, [r for r in k.regions.values() if r.dev == dev.id])


DRIVER: Driver[KernelState, Thread] = Driver(
    KIND,
    ops={"pin": op_pin, "dma": op_dma, "unpin": op_unpin},
    view=pin_view,
)
