"""``open P kind`` (SPEC §6) and the device services the drivers share.

``open`` is one step: it makes a device of that kind, bound to one process
and dead when that process is, and calls its driver's ``open`` (a mirror
inserts its subscription over [0, 2^36) there).  The services: DMA read and
write of a table target or of a region's pinned pages, each access checked
for use after free (``mm.live_folio``/``mm.live_dpage``).
"""

from __future__ import annotations

from collections.abc import Mapping

from model.ops import MAX_VALUE_PAGES, HandleResult, Ok, Open, OpResult, Values

from .checks import EINVAL, proc_handle, state_err, words_ok
from .mm import live_dpage, live_folio
from .state import Device, Region, State, Target
from .threads import Gen, Thread


def op_open(st: State, th: Thread, op: Open) -> Gen[OpResult]:
    proc = proc_handle(st, op.p)
    if proc is None or op.dev < 0 or op.dev in st.devices:
        return EINVAL
    if (e := state_err(proc, th)) is not None:
        return e
    driver = st.drivers.get(op.kind)
    if driver is None:
        return EINVAL
    dev = Device(op.dev, op.kind, proc.pid)
    st.devices[dev.id] = dev
    if driver.open is not None:
        driver.open(st, dev)
    return HandleResult("D", dev.id)
    yield  # a one-step op


def table_of(st: State, dev: Device) -> Mapping[int, tuple[Target, bool]]:
    """A device's table vpn -> (target, w): its own, or the one its driver's
    record shows (``extra["table"]``: a plug-in's), for the invariants."""
    driver = st.drivers.get(dev.kind)
    table = None if driver is None else driver.extra.get("table")
    return dev.table if table is None else table(st, dev)


def read_target(st: State, target: Target, what: str) -> int:
    kind, num, i = target
    st.page_ops += 1
    if kind == "folio":
        return live_folio(st, num, what).words[i]
    if kind == "dpage":
        return live_dpage(st, num, what).word
    return 0


def write_target(st: State, target: Target, word: int, what: str) -> None:
    kind, num, i = target
    st.page_ops += 1
    if kind == "folio":
        live_folio(st, num, what).words[i] = word
    elif kind == "dpage":
        live_dpage(st, num, what).word = word
    if kind != "zero":
        st.note(kind, num)


def job_args_ok(region: Region, direction: str, off: int, cnt: int, x: int,
                stride: int) -> bool:
    """Offsets inside the region; reads capped; written values are words."""
    if off < 0 or cnt < 1 or off + cnt > region.n:
        return False
    if direction == "read":
        return cnt <= MAX_VALUE_PAGES
    return words_ok(x, stride, cnt)


def region_access(st: State, region: Region, direction: str, off: int, cnt: int, x: int,
                  stride: int, what: str) -> OpResult:
    """Read or write the region's pinned pages [off, off+cnt)."""
    words = []
    for k in range(cnt):
        st.page_ops += 1
        fid, i = region.pins[off + k]
        folio = live_folio(st, fid, what)
        if direction == "read":
            words.append(folio.words[i])
        else:
            folio.words[i] = x + k * stride
            st.note("folio", fid)
    return Values(tuple(words)) if direction == "read" else Ok()
