"""``open P mirror|userptr|pin`` (SPEC §6): one step; a device is bound to
one process and dead when that process is.  A mirror also inserts its
subscription over [0, 2^36)."""

from __future__ import annotations

from model.ops import ADDRESS_PAGES, HandleResult, Open, OpResult

from .checks import EINVAL, proc_handle, state_err
from .notifier import insert
from .state import Device, State, Subscription
from .threads import Gen, Thread


def op_open(st: State, th: Thread, op: Open) -> Gen[OpResult]:
    proc = proc_handle(st, op.p)
    if proc is None or op.dev < 0 or op.dev in st.devices:
        return EINVAL
    if (e := state_err(proc, th)) is not None:
        return e
    dev = Device(op.dev, op.kind, proc.pid)
    st.devices[dev.id] = dev
    if op.kind == "mirror":
        sub = Subscription(st.new_id("sub"), proc.pid, 0, ADDRESS_PAGES, "mirror", dev.id)
        dev.sub = sub.id
        insert(st, proc, sub)
    return HandleResult("D", dev.id)
    yield  # a one-step op
