"""``hmm_range_fault``: the mirror walk of SPEC §6.1, shared by every driver
that mirrors a range (the ``mirror`` and plug-ins, ``Core.range_fault``)::

    take mmap_lock for reading; walk [s,s+n) in order, with a Y3 after every
    64 pages and after the last one (mmap_lock is released before that last
    Y3); on a walk error, release it and give the error
    walk, page v (faults are inline and persist even if the op later fails):
      no VMA, or the VMA lacks r -> EFAULT;  a write and the VMA lacks w -> EPERM
      device(d, w', …), d the walker's (owner): if a read or w': record (d, w'), no fault;
                                                 else migrate d back (§6.5) and act again
      device of another owner: migrate it back, act again
      otherwise: the CPU fault (read, or write) if one is needed (§3.2); record the
                 resulting target and w (zero: the zero page, read-only)

``owner`` is the device whose own device pages the walk records instead of
migrating them back (a mirror); None migrates every device page back.
"""

from __future__ import annotations

from model.ops import OpResult

from .checks import EFAULT, ENOMEM, EPERM, state_err
from .faults import fault, needs_fault
from .locks import mmap_read, mmap_release
from .migrate_back import migrate_to_ram
from .mm import get, vma_at
from .state import ZERO_TARGET, Dev, Present, Process, State, Target, Zero
from .threads import Gen, Thread, y

Walked = tuple[tuple[Target, bool], ...]
"""What a walk records: (target, w) per page, in vpn order."""


def walk_page(st: State, th: Thread, proc: Process, v: int, write: bool,
              owner: int | None) -> Gen[OpResult | tuple[Target, bool]]:
    """Walk one page: the error, or the target and w to record."""
    while True:
        vma = vma_at(proc, v)
        if vma is None or not vma.readable:
            return EFAULT
        if write and not vma.writable:
            return EPERM
        entry = get(st, proc, v)
        if isinstance(entry, Dev):
            if st.dpages[entry.d].owner == owner and (not write or entry.w):
                return (("dpage", entry.d, 0), entry.w)
            outcome = yield from migrate_to_ram(st, th, entry.d)
            if outcome == "nomem":
                return ENOMEM
            continue
        if needs_fault(entry, write):
            res = yield from fault(st, th, proc, v, write)
            if res is not None:
                return res
            continue
        if isinstance(entry, Zero):
            return (ZERO_TARGET, False)
        assert isinstance(entry, Present)
        return (("folio", entry.f, entry.i), entry.w)


def range_fault(st: State, th: Thread, proc: Process, s: int, n: int, write: bool,
                owner: int | None) -> Gen[OpResult | Walked]:
    """[R] walk [s, s+n) (n >= 1): the recorded pages, or the error (ESRCH if
    the process is killed or dead once the lock is taken)."""
    yield from mmap_read(st, th, proc)
    if (e := state_err(proc, th)) is not None:
        mmap_release(st, th, proc.pid)
        return e
    recorded = []
    for k in range(n):
        got = yield from walk_page(st, th, proc, s + k, write, owner)
        if not isinstance(got, tuple):
            mmap_release(st, th, proc.pid)
            return got
        recorded.append(got)
        if k == n - 1:
            mmap_release(st, th, proc.pid)
            yield from y()
        elif (k + 1) % 64 == 0:
            yield from y()
    return tuple(recorded)
