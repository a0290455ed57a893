"""Argument checks and errno rules shared by the ops (SPEC §2, Appendices B, C).

Rule 1 (EINVAL) and rule 2 (ESRCH) are checked in an op's first step;
``allowed`` encodes Appendix B's table of process states per op.
"""

from __future__ import annotations

from typing import Final

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
from model.ops import OK, Err
from model.ops import (
    range_ok as range_ok,
)
from model.ops import (
    words_ok as words_ok,
)
from model.optimized.state import Device, KernelState, Process
from model.optimized.threads import Gen, Thread

LIVE: Final = frozenset({"live"})
NOT_DEAD: Final = frozenset({"live", "killed"})
ANY: Final = frozenset({"live", "killed", "dead"})


def ok_state(proc: Process, allowed: frozenset[str]) -> bool:
    return proc.state in allowed


def read_locked(t: Thread, proc: Process,
                allowed: frozenset[str] = LIVE) -> Gen[Err | None]:
    """A device op's ``mmap_lock`` for reading between two state checks
    (Appendix C rule 2, SPEC §5.3): ESRCH if P's state is not ``allowed``
    before the lock or once it is held (the lock then released), else None
    with the lock held."""
    if not ok_state(proc, allowed):
        return ESRCH
    yield from proc.mmap_lock.read_lock(t)
    if not ok_state(proc, allowed):
        proc.mmap_lock.read_unlock(t)
        return ESRCH
    return None


def device(k: KernelState, d: int, kind: str) -> Device | None:
    dev = k.devices.get(d)
    if dev is None or dev.kind != kind:
        return None
    return dev


def dev_proc(k: KernelState, dev: Device) -> Process:
    return k.procs[dev.pid]

OK_RESULT: Final = OK
