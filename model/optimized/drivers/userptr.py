"""The userptr device (SPEC §6.2), after i915's userptr (i915_gem_userptr.c).

Mirrors ``i915_gem_userptr_get_pages`` / ``i915_gem_object_userptr_submit_init``
(``mmu_interval_read_begin``, ``pin_user_pages``),
``i915_gem_object_userptr_submit_done`` (the commit with
``mmu_interval_read_retry`` under the lock), ``userptr_invalidate`` (the
callback: set_seq, invalidate, wait for active jobs, unpin) and
``i915_gem_userptr_release`` (unreg: ``mmu_interval_notifier_remove``).

The rule: pins are kept only by a commit whose read_retry was false under
the driver lock; a callback that returns success has dropped every pin of
the object, after waiting for its active jobs (a non-blockable callback
fails instead while jobs are active).
"""

from __future__ import annotations

from model import bugs
from model.driver import Driver
from model.ops import MAX_VALUE_PAGES, Complete, HandleResult, OpResult, Reg, Submit, Unreg
from model.optimized import common as C
from model.optimized.gup import pin_range, region_io, unpin_pages
from model.optimized.mmu_notifier import Notifier, Range, Subscription
from model.optimized.observe import DriverView
from model.optimized.state import Device, Job, KernelState, Region
from model.optimized.threads import Gen, Thread, lazily, wait

KIND = "userptr"


def _unpin_all(k: KernelState, reg: Region) -> None:
    if reg.pins is not None:
        unpin_pages(k, reg.pins, reg.pin_gens)
    reg.pins = reg.pin_gens = None


def userptr_invalidate(k: KernelState, t: Thread, sub: Subscription, rng: Range) -> Gen[bool]:
    """userptr_invalidate."""
    reg = k.regions.get(sub.owner)
    if reg is None:
        return True
    dev = k.devices[reg.dev]
    if reg.dying:
        if rng.blockable:
            yield from dev.lock.lock(t)
        elif not dev.lock.trylock(t):
            return False
        Notifier.mmu_interval_set_seq(sub, rng.cur_seq)
        dev.lock.unlock(t)
        return True
    if not rng.blockable and reg.active > 0:
        return False
    if rng.blockable:
        yield from dev.lock.lock(t)
    elif not dev.lock.trylock(t):
        return False
    Notifier.mmu_interval_set_seq(sub, rng.cur_seq)
    reg.valid = False
    if reg.active:  # (blockable) wait for the jobs without the lock, then take it again
        dev.lock.unlock(t)
        yield from wait(t, lambda: reg.active == 0, "userptr active jobs")
        yield from dev.lock.lock(t)
    if not k.bugged(bugs.USERPTR_KEEP_PINS):
        _unpin_all(k, reg)
    dev.lock.unlock(t)
    return True


def _reg(k: KernelState, op: Reg) -> OpResult:
    dev = C.device(k, op.d, KIND)
    if dev is None or not C.range_ok(op.s, op.n) or op.region < 0 or op.region in k.regions:
        return C.EINVAL
    proc = k.procs[dev.pid]
    if proc.state != "live":
        return C.ESRCH
    reg = Region(op.region, KIND, dev.id, op.s, op.n, op.mode)
    sub = Subscription(k.new_sub_id(), op.s, op.s + op.n, KIND, op.region)
    reg.sub = sub
    k.regions[op.region] = reg
    proc.mn.mmu_interval_notifier_insert(sub)
    return HandleResult("R", op.region)


def op_reg(k: KernelState, t: Thread, op: Reg) -> Gen[OpResult]:
    return lazily(lambda: _reg(k, op))


def _userptr(k: KernelState, r: int) -> Region | None:
    reg = k.regions.get(r)
    if reg is None or reg.kind != KIND or reg.dying:
        return None
    return reg


def op_submit(k: KernelState, t: Thread, op: Submit) -> Gen[OpResult]:
    reg = _userptr(k, op.r)
    x, stride = op.x or 0, op.stride or 0
    if reg is None or op.off < 0 or op.cnt < 1 or op.off + op.cnt > reg.n or op.job < 0 \
            or op.job in k.jobs:
        return C.EINVAL
    if op.direction == "read" and op.cnt > MAX_VALUE_PAGES:
        return C.EINVAL
    if op.direction == "write" and not C.words_ok(x, stride, op.cnt):
        return C.EINVAL
    dev = k.devices[reg.dev]
    proc = k.procs[dev.pid]
    if proc.state != "live":
        return C.ESRCH
    if op.direction == "write" and reg.mode == "ro":
        return C.EPERM
    sub = reg.sub
    assert sub is not None

    def create_job() -> OpResult:
        assert reg is not None
        reg.active += 1
        k.jobs[op.job] = Job(op.job, reg.id, op.direction, op.off, op.cnt, x, stride)
        return HandleResult("J", op.job)

    while True:
        s0 = yield from proc.mn.mmu_interval_read_begin(t, sub)
        if proc.state != "live":
            return C.ESRCH
        yield None  # Y3
        yield from dev.lock.lock(t)
        if reg.valid and s0 == reg.valid_seq and not Notifier.mmu_interval_read_retry(sub, s0):
            res = create_job()
            dev.lock.unlock(t)
            return res
        dev.lock.unlock(t)
        yield from proc.mmap_lock.read_lock(t)
        if proc.state != "live":
            proc.mmap_lock.read_unlock(t)
            return C.ESRCH
        pinned = yield from pin_range(k, t, proc, reg.start, reg.n, reg.mode)
        proc.mmap_lock.read_unlock(t)
        if not isinstance(pinned, tuple):
            return pinned
        yield None  # Y3
        yield from dev.lock.lock(t)
        t.pins = []
        if proc.state != "live":
            unpin_pages(k, pinned[0], pinned[1])
            dev.lock.unlock(t)
            return C.ESRCH
        if reg.dying:
            unpin_pages(k, pinned[0], pinned[1])
            dev.lock.unlock(t)
            return C.EINVAL
        if Notifier.mmu_interval_read_retry(sub, s0):
            unpin_pages(k, pinned[0], pinned[1])
            t.failed_commits += 1
            dev.lock.unlock(t)
            continue
        proc.mn.check_commit(t, sub)
        _unpin_all(k, reg)
        reg.pins, reg.pin_gens = pinned
        reg.valid = True
        reg.valid_seq = s0
        res = create_job()
        dev.lock.unlock(t)
        return res


def _complete(k: KernelState, op: Complete) -> OpResult:
    job = k.jobs.get(op.j)
    if job is None:
        return C.EINVAL
    reg = k.regions[job.region]
    del k.jobs[op.j]
    if reg.pins is None:
        k.violation("no_use_after_free", f"J{job.id} completes on R{reg.id} without pins")
        res: OpResult = C.OK_RESULT
    else:
        res = region_io(k, reg, job.direction, job.off, job.count, job.x, job.stride)
    reg.active -= 1
    return res


def op_complete(k: KernelState, t: Thread, op: Complete) -> Gen[OpResult]:
    return lazily(lambda: _complete(k, op))


def op_unreg(k: KernelState, t: Thread, op: Unreg) -> Gen[OpResult]:
    reg = _userptr(k, op.r)
    if reg is None:
        return C.EINVAL
    if reg.active > 0:
        return C.EBUSY
    dev = k.devices[reg.dev]
    proc = k.procs[dev.pid]
    yield from dev.lock.lock(t)
    reg.dying = True
    _unpin_all(k, reg)
    reg.valid = False
    dev.lock.unlock(t)
    assert reg.sub is not None
    yield from proc.mn.mmu_interval_notifier_remove(t, reg.sub)
    del k.regions[op.r]
    return C.OK_RESULT


def userptr_view(k: KernelState, dev: Device) -> DriverView:
    """No table; its objects, with their pins and state."""
    return DriverView(None, 0, [r for r in k.regions.values() if r.dev == dev.id])


DRIVER: Driver[KernelState, Thread] = Driver(
    KIND,
    ops={"reg": op_reg, "submit": op_submit, "complete": op_complete, "unreg": op_unreg},
    invalidate=userptr_invalidate,
    view=userptr_view,
)
