"""Argument checks and errno rules shared by the ops (SPEC §2, Appendices B, C).

Rule 1 (EINVAL) and rule 2 (ESRCH) are checked in an op's first step;
``allowed`` encodes Appendix B's table of process states per op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from model.ops import ADDRESS_PAGES, OK, Err, Errno, is_word
from model.ops import EINVAL as EINVAL_
from model.optimized.state import Device, Process

if TYPE_CHECKING:
    from model.optimized.kernel import OptimizedKernel

ESRCH: Final = Err(Errno.ESRCH)
ENOMEM: Final = Err(Errno.ENOMEM)
EFAULT: Final = Err(Errno.EFAULT)
EPERM: Final = Err(Errno.EPERM)
EBUSY: Final = Err(Errno.EBUSY)
ENOENT: Final = Err(Errno.ENOENT)

LIVE: Final = frozenset({"live"})
NOT_DEAD: Final = frozenset({"live", "killed"})
ANY: Final = frozenset({"live", "killed", "dead"})


def range_ok(s: int, n: int) -> bool:
    return 0 <= s and 1 <= n and s + n <= ADDRESS_PAGES


def words_ok(x: int, stride: int, cnt: int) -> bool:
    """x + k*stride is a word for every k in [0, cnt)."""
    return is_word(x) and is_word(stride) and is_word(x + (cnt - 1) * stride)


def ok_state(proc: Process, allowed: frozenset[str]) -> bool:
    return proc.state in allowed


def device(k: OptimizedKernel, d: int, kind: str) -> Device | None:
    dev = k.devices.get(d)
    if dev is None or dev.kind != kind:
        return None
    return dev


def dev_proc(k: OptimizedKernel, dev: Device) -> Process:
    return k.procs[dev.pid]

OK_RESULT: Final = OK
EINVAL: Final = EINVAL_
