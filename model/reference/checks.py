"""Handle, argument and process-state checks: SPEC §2, Appendix B and C.

Errno precedence (Appendix C), rules 1-3, checked in an op's first step:

1. ``EINVAL``: an unknown, unfinished, failed or gone handle, or one of the
   wrong kind; an argument out of range (0 <= s, 1 <= n, s + n <= 2^36;
   words; more than 4096 pages for a value-returning op); a dying object.
2. ``ESRCH``: the process is killed or dead, as Appendix B says.
3. ``EPERM``: a write job or ``dma`` write on an ``ro`` object or region.

Appendix B, which process states let an op run, is a table: each op's
declaration (``model.decl``, ``states``) is its row, and :func:`state_err`
reads the row of the op its thread runs.
"""

from __future__ import annotations

from model.decl import decl_of
from model.ops import (  # re-exported: the model's modules import them from here
    EBUSY as EBUSY,
)
from model.ops import (
    EFAULT as EFAULT,
)
from model.ops import (
    EINVAL as EINVAL,
)
from model.ops import (
    ENOENT as ENOENT,
)
from model.ops import (
    ENOMEM as ENOMEM,
)
from model.ops import (
    EPERM as EPERM,
)
from model.ops import (
    ESRCH as ESRCH,
)
from model.ops import MAX_VALUE_PAGES, Err
from model.ops import (
    range_ok as range_ok,
)
from model.ops import (
    words_ok as words_ok,
)

from .state import Device, Process, Region, State
from .threads import Thread


def capped_ok(s: int, n: int) -> bool:
    return range_ok(s, n) and n <= MAX_VALUE_PAGES


def proc_handle(st: State, pid: int) -> Process | None:
    proc = st.procs.get(pid)
    return proc if proc is not None and proc.valid else None


def device_handle(st: State, dev: int, kind: str | None = None) -> Device | None:
    device = st.devices.get(dev)
    if device is None or (kind is not None and device.kind != kind):
        return None
    return device


def region_handle(st: State, r: int, kind: str) -> Region | None:
    region = st.regions.get(r)
    if region is None or region.gone or region.kind != kind:
        return None
    return region


def state_err(proc: Process, th: Thread) -> Err | None:
    """``ESRCH`` if ``proc``'s state does not let ``th``'s op run (its
    declaration's row of Appendix B)."""
    return None if proc.state in decl_of(th.op).states else ESRCH
