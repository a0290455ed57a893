"""The locks of SPEC §5.2.

``mmap_lock`` is reader-preferring with no queue: a reader gets it when no
writer holds it, a writer when nobody holds it, each at its first step that
finds it free (a Y4 before, while it is not).  A thread that already holds a
process's ``mmap_lock`` reuses that hold (a fault inside an op that holds
it).  The driver lock is a mutex; a blockable taker waits (Y4), a
non-blockable one tries once.
"""

from __future__ import annotations

from .state import Device, Process, State
from .threads import Gen, Thread, wait


def mmap_read(st: State, th: Thread, proc: Process) -> Gen[None]:
    """Take ``proc``'s ``mmap_lock`` for reading (or reuse a hold)."""
    if proc.pid in th.mmap:
        return
    lock = proc.lock
    yield from wait(st, th, lambda: lock.writer is None, f"mmap_lock P{proc.pid} (read)")
    lock.readers.add(th.name)
    th.mmap[proc.pid] = "r"


def mmap_write(st: State, th: Thread, proc: Process) -> Gen[None]:
    """Take ``proc``'s ``mmap_lock`` for writing."""
    if th.mmap.get(proc.pid) == "w":
        return
    lock = proc.lock
    yield from wait(st, th, lambda: lock.writer is None and not lock.readers,
                    f"mmap_lock P{proc.pid} (write)")
    lock.writer = th.name
    th.mmap[proc.pid] = "w"


def mmap_release(st: State, th: Thread, pid: int) -> None:
    mode = th.mmap.pop(pid, None)
    if mode is None:
        return
    lock = st.procs[pid].lock
    if mode == "w":
        lock.writer = None
    else:
        lock.readers.discard(th.name)


def driver_lock(st: State, th: Thread, dev: Device) -> Gen[None]:
    """Take ``dev``'s driver lock, waiting while another thread holds it."""
    yield from wait(st, th, lambda: dev.lock_holder is None, f"driver lock D{dev.id}")
    dev.lock_holder = th.name
    th.driver.add(dev.id)


def driver_trylock(th: Thread, dev: Device) -> bool:
    """Try once (a non-blockable callback)."""
    if dev.lock_holder is not None:
        return False
    dev.lock_holder = th.name
    th.driver.add(dev.id)
    return True


def driver_unlock(th: Thread, dev: Device) -> None:
    if dev.lock_holder == th.name:
        dev.lock_holder = None
    th.driver.discard(dev.id)


def release_all(st: State, th: Thread) -> None:
    """Drop every lock ``th`` still holds (at the end of its op)."""
    for pid in list(th.mmap):
        mmap_release(st, th, pid)
    for dev_id in list(th.driver):
        driver_unlock(th, st.devices[dev_id])
