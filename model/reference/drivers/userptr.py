"""The ``userptr`` device, SPEC §6.2: a pinning registration cache like
i915 userptr.  An object holds pins on its range only while they are
valid: its callback invalidates them, waits for active jobs and unpins;
``submit`` revalidates under ``read_begin``/``read_retry``::

    submit R dir off cnt:
      s0 = read_begin(R.sub); Y3
      L; fast path: R.valid, s0 == R.valid_seq, not read_retry -> job; done
      release; [R] pin every page of R in R's mode; release [R]; Y3
      commit: L
        R.dying               -> unpin this attempt's pins; EINVAL
        read_retry(R.sub, s0) -> unpin them; failed_commits += 1; again
        else -> replace R's pins by the new ones; valid; valid_seq = s0; job

    callback(e, r, owner, blockable, c):
      R.dying: L; set_seq; release; success
      not blockable and R.active > 0: failure (no side effects)
      L; set_seq; R.valid = false; release
      wait until R.active == 0
      L; unpin every pin of R; release; success
"""

from __future__ import annotations

from dataclasses import dataclass

from model.driver import Driver
from model.observation import DeviceView, RegionView
from model.ops import OK, Complete, HandleResult, OpResult, Reg, Submit, Unreg

from ..checks import (
    EBUSY,
    EINVAL,
    EPERM,
    device_handle,
    range_ok,
    region_handle,
    state_err,
)
from ..devices import job_args_ok, region_access
from ..locks import driver_lock, driver_trylock, driver_unlock, mmap_read, mmap_release
from ..notifier import insert, read_begin, read_retry, remove, set_seq
from ..observe import device_view, region_view, regions_of
from ..pinning import pin_range, unpin_all
from ..state import Device, Job, Region, State, Subscription
from ..threads import Gen, Thread, wait, y

KIND = "userptr"


@dataclass
class UserptrObject(Region):
    """A registered range: its pins are valid (under ``valid_seq``) or not;
    ``dying`` from ``unreg`` on; ``active`` jobs use its pins."""

    valid: bool = False
    dying: bool = False
    active: int = 0
    valid_seq: int | None = None


def _object(st: State, r: int) -> UserptrObject | None:
    """The object of handle r; a dying one is EINVAL too (Appendix C)."""
    region = region_handle(st, r, KIND)
    return region if isinstance(region, UserptrObject) and not region.dying else None


def _object_of(st: State, rid: int) -> UserptrObject:
    region = st.regions[rid]
    assert isinstance(region, UserptrObject)
    return region


def _lock(st: State, th: Thread, dev: Device, blockable: bool) -> Gen[bool]:
    if blockable:
        yield from driver_lock(st, th, dev)
        return True
    return driver_trylock(th, dev)


def userptr_callback(st: State, th: Thread, sub: Subscription, event: str, a: int, b: int,
                     owner: int | None, blockable: bool, c: int) -> Gen[bool]:
    region = _object_of(st, sub.owner)
    dev = st.devices[region.device]
    if region.dying:
        if not (yield from _lock(st, th, dev, blockable)):
            return False
        set_seq(sub, c)
        driver_unlock(th, dev)
        return True
    if not blockable and region.active > 0:
        return False
    if not (yield from _lock(st, th, dev, blockable)):
        return False
    set_seq(sub, c)
    region.valid = False
    driver_unlock(th, dev)
    yield from wait(st, th, lambda: region.active == 0, f"jobs of R{region.id}")
    if not (yield from _lock(st, th, dev, blockable)):
        return False
    unpin_all(st, region.pins)
    driver_unlock(th, dev)
    return True


def op_reg(st: State, th: Thread, op: Reg) -> Gen[OpResult]:
    dev = device_handle(st, op.d, KIND)
    if dev is None or not range_ok(op.s, op.n) or op.region in st.regions or op.region < 0:
        return EINVAL
    proc = st.procs[dev.pid]
    if (e := state_err(proc, th)) is not None:
        return e
    region = UserptrObject(op.region, KIND, dev.id, op.s, op.n, op.mode)
    sub = Subscription(st.new_id("sub"), proc.pid, op.s, op.s + op.n, KIND, region.id)
    region.sub = sub.id
    st.regions[region.id] = region
    insert(st, proc, sub)
    return HandleResult("R", region.id)
    yield  # a one-step op


def _job(st: State, region: UserptrObject, op: Submit) -> OpResult:
    region.active += 1
    st.jobs[op.job] = Job(op.job, region.id, op.direction, op.off, op.cnt, op.x or 0,
                          op.stride or 0)
    return HandleResult("J", op.job)


def op_submit(st: State, th: Thread, op: Submit) -> Gen[OpResult]:
    region = _object(st, op.r)
    if (region is None or op.job in st.jobs or op.job < 0
            or not job_args_ok(region, op.direction, op.off, op.cnt, op.x or 0, op.stride or 0)):
        return EINVAL
    dev = st.devices[region.device]
    proc = st.procs[dev.pid]
    if (e := state_err(proc, th)) is not None:
        return e
    if op.direction == "write" and region.mode == "ro":
        return EPERM
    assert region.sub is not None
    sub = st.subs[region.sub]
    while True:
        s0 = yield from read_begin(st, th, sub)
        if (e := state_err(proc, th)) is not None:
            return e
        successes = sub.successes
        yield from y()
        yield from driver_lock(st, th, dev)
        if region.valid and s0 == region.valid_seq and not read_retry(sub, s0):
            result = _job(st, region, op)
            driver_unlock(th, dev)
            return result
        driver_unlock(th, dev)
        yield from mmap_read(st, th, proc)
        if (e := state_err(proc, th)) is not None:
            return e
        got = yield from pin_range(st, th, proc, region.start, region.n, region.mode)
        mmap_release(st, th, proc.pid)
        if not isinstance(got, dict):
            return got
        yield from y()
        yield from driver_lock(st, th, dev)
        if (e := state_err(proc, th)) is not None:
            unpin_all(st, got)
            return e
        if region.dying:
            unpin_all(st, got)
            driver_unlock(th, dev)
            return EINVAL
        if read_retry(sub, s0):
            unpin_all(st, got)
            th.failed_commits += 1
            driver_unlock(th, dev)
            continue
        if sub.successes != successes:
            st.violate("seq_protocol", f"R{region.id} commit misses a callback")
        unpin_all(st, region.pins)
        region.pins = got
        region.valid = True
        region.valid_seq = s0
        result = _job(st, region, op)
        driver_unlock(th, dev)
        return result


def op_complete(st: State, th: Thread, op: Complete) -> Gen[OpResult]:
    job = st.jobs.get(op.j)
    if job is None:
        return EINVAL
    region = _object_of(st, job.region)
    result = region_access(st, region, job.direction, job.off, job.cnt, job.x, job.stride,
                           f"job J{job.id}")
    region.active -= 1
    del st.jobs[job.id]
    return result
    yield  # a one-step op


def op_unreg(st: State, th: Thread, op: Unreg) -> Gen[OpResult]:
    region = _object(st, op.r)
    if region is None:
        return EINVAL
    if region.active > 0:
        return EBUSY
    dev = st.devices[region.device]
    yield from driver_lock(st, th, dev)
    region.dying = True
    unpin_all(st, region.pins)
    region.valid = False
    driver_unlock(th, dev)
    assert region.sub is not None
    yield from remove(st, th, st.procs[dev.pid], st.subs[region.sub])
    region.gone = True
    return OK


def userptr_view(st: State, dev: Device) -> tuple[DeviceView, list[RegionView]]:
    objects = [_object_of(st, r.id) for r in regions_of(st, dev)]
    return device_view(dev), [region_view(r, r.valid, r.dying, r.active, r.valid_seq)
                              for r in objects]


DRIVER: Driver[State, Thread] = Driver(
    KIND,
    ops={"reg": op_reg, "submit": op_submit, "complete": op_complete, "unreg": op_unreg},
    invalidate=userptr_callback,
    view=userptr_view,
)
