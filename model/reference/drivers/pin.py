"""The ``pin`` device, SPEC §6.3: a long-term pin with no notifier, like an
RDMA memory region.  ``pin`` pins every page of its range (SPEC §6.4, in
``pinning.py``) into a region; ``dma`` reads or writes the pinned pages;
``unpin`` drops them.  A region keeps its folios even when the range is
unmapped (it is then detached).
"""

from __future__ import annotations

from model.driver import Driver
from model.ops import Dma, HandleResult, Ok, OpResult, Pin, Unpin

from ..checks import EINVAL, EPERM, device_handle, range_ok, region_handle, state_err
from ..devices import job_args_ok, region_access
from ..locks import mmap_read
from ..observe import device_view, region_view, regions_of
from ..pinning import pin_range, unpin_all
from ..state import Region, State
from ..threads import Gen, Thread

KIND = "pin"


def op_pin(st: State, th: Thread, op: Pin) -> Gen[OpResult]:
    dev = device_handle(st, op.d, KIND)
    if dev is None or not range_ok(op.s, op.n) or op.region in st.regions or op.region < 0:
        return EINVAL
    proc = st.procs[dev.pid]
    if (e := state_err(proc, th)) is not None:
        return e
    yield from mmap_read(st, th, proc)
    if (e := state_err(proc, th)) is not None:
        return e
    got = yield from pin_range(st, th, proc, op.s, op.n, op.mode)
    if not isinstance(got, dict):
        return got
    st.regions[op.region] = Region(op.region, KIND, dev.id, op.s, op.n, op.mode, got)
    return HandleResult("R", op.region)


def op_dma(st: State, th: Thread, op: Dma) -> Gen[OpResult]:
    region = region_handle(st, op.r, KIND)
    x, stride = op.x or 0, op.stride or 0
    if region is None or not job_args_ok(region, op.direction, op.off, op.cnt, x, stride):
        return EINVAL
    proc = st.procs[st.devices[region.device].pid]
    if (e := state_err(proc, th)) is not None:
        return e
    if op.direction == "write" and region.mode == "ro":
        return EPERM
    return region_access(st, region, op.direction, op.off, op.cnt, x, stride,
                         f"dma R{region.id}")
    yield  # a one-step op  # noqa: B901


def op_unpin(st: State, th: Thread, op: Unpin) -> Gen[OpResult]:
    region = region_handle(st, op.r, KIND)
    if region is None:
        return EINVAL
    unpin_all(st, region.pins)
    region.gone = True
    return Ok()
    yield  # a one-step op


DRIVER: Driver[State, Thread] = Driver(
    KIND,
    ops={"pin": op_pin, "dma": op_dma, "unpin": op_unpin},
    view=lambda st, dev: (device_view(dev), [region_view(r) for r in regions_of(st, dev)]),
)
