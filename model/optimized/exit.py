"""exit (SPEC §3.1, invariant 9).

Mirrors ``kernel/exit.c`` -> ``exit_mmap``: ``mmu_notifier_release``
(``I(release, all)``), then ``unmap_vmas`` (``I(unmap, all)``, whose apply
zaps everything and removes every VMA), then the mm and its devices are
dead.  The rule checked here: once the release callbacks have returned, no
device bound to the process has a table entry; afterwards no invalidation
starts on the mm.
"""

from __future__ import annotations

from model.ops import ADDRESS_PAGES, Exit, OpResult
from model.optimized import common as C
from model.optimized.memory import tlb_gather, zap_range
from model.optimized.mmap import release_objects
from model.optimized.mmu_notifier import Range, invalidate
from model.optimized.state import KernelState, Process
from model.optimized.threads import Gen, Thread
from model.optimized.vma import changed


def op_exit(k: KernelState, t: Thread, op: Exit) -> Gen[OpResult]:
    proc = k.proc(op.p)
    if proc is None:
        return C.EINVAL
    if proc.state == "dead":
        return C.ESRCH
    yield from proc.mmap_lock.write_lock(t)
    if proc.state == "dead":
        proc.mmap_lock.write_unlock(t)
        return C.ESRCH
    yield from invalidate(t, proc.mn, Range("release", 0, ADDRESS_PAGES, None, True),
                          lambda: _release_done(k, proc))
    yield from invalidate(t, proc.mn, Range("unmap", 0, ADDRESS_PAGES, None, True),
                          lambda: _exit_mmap(k, proc))
    proc.state = "dead"
    proc.mn.dead = True
    for dev in k.devices.values():
        if dev.pid == proc.pid:
            dev.dead = True
    proc.mmap_lock.write_unlock(t)
    return C.OK_RESULT


def _release_done(k: KernelState, proc: Process) -> None:
    if not k.config.checks:
        return
    for dev in k.devices.values():
        if dev.pid == proc.pid and dev.table.pgd:
            k.violation("release_is_final",
                        f"D{dev.id} keeps table entries after P{proc.pid}'s release")


def _exit_mmap(k: KernelState, proc: Process) -> None:
    tlb = tlb_gather(k)
    zap_range(k, proc, 0, ADDRESS_PAGES, tlb)
    objs = {m.obj for m in proc.vmas if m.obj is not None}
    proc.vmas = []
    changed(proc)
    release_objects(k, objs, tlb)
    tlb.finish()
