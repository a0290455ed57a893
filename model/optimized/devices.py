"""``open P kind`` (SPEC §6): the core's part of making a device.

One step: it makes a device of that kind, bound to one process and dead
when that process is, and calls its driver's ``open`` (found by kind in
``KernelState.drivers``; a mirror registers its device memory and inserts
its subscription there), as a driver's probe sets up its device.
"""

from __future__ import annotations

from model.ops import HandleResult, Open, OpResult
from model.optimized import common as C
from model.optimized.state import Device, KernelState
from model.optimized.threads import Gen, Thread, lazily


def _open(k: KernelState, op: Open) -> OpResult:
    proc = k.proc(op.p)
    if proc is None or op.dev < 0 or op.dev in k.devices:
        return C.EINVAL
    if proc.state != "live":
        return C.ESRCH
    dev = Device(op.dev, op.kind, op.p)
    k.devices[op.dev] = dev
    driver = k.drivers.get(op.kind)
    if driver is not None and driver.open is not None:
        driver.open(k, dev)
    return HandleResult("D", op.dev)


def op_open(k: KernelState, t: Thread, op: Open) -> Gen[OpResult]:
    return lazily(lambda: _open(k, op))
