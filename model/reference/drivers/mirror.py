"""The ``mirror`` device, SPEC §6.1: a page-faulting device like test_hmm.

A mirror has one subscription over [0, 2^36) of its process's mm and a
device table vpn -> (target, w) holding no references.  Its rule: a table
entry is installed only by a commit whose ``read_retry`` is false, so it
never outlives the CPU entry it was read from (invariant 2)::

    callback(e, r, owner, blockable, c):
      take the driver lock (non-blockable: fail if it is held)
      set_seq(sub, c)                                   # pairs with read_retry
      unless e == migrate and owner == this device: drop every table entry in r
      release; success

    dread/dwrite:
      check:  L; every page has a table entry (w for dwrite) -> access; done
              else release (after a commit: failed_commits += 1)
      round:  s0 = read_begin(sub); Y3
              [R] walk [s,s+n) (hmm.range_fault), a Y3 after every 64 pages and after the last
              (mmap_lock released before that last Y3)
              commit: L; retry = read_retry(sub, s0); Y3 (lock held)
                retry -> failed_commits += 1; release; round
                else  -> install; F += 1; release; Y3; check

``snapshot``, ``migrate_to_dev`` and ``evict`` are here too, and the
mirror's part of a migrate-back (SPEC §6.5): its table drops every entry
naming the page that moved.
"""

from __future__ import annotations

from model.driver import Driver
from model.ops import (
    ADDRESS_PAGES,
    Dread,
    Dwrite,
    Err,
    Evict,
    MigrateToDev,
    Num,
    Ok,
    OpResult,
    Snap,
    Snapshot,
    Values,
)

from ..checks import (
    EINVAL,
    ENOENT,
    ENOMEM,
    capped_ok,
    device_handle,
    range_ok,
    state_err,
    words_ok,
)
from ..cpu_ops import locked
from ..devices import read_target, write_target
from ..hmm import range_fault
from ..locks import driver_lock, driver_trylock, driver_unlock, mmap_read
from ..migrate_back import Outcome, migrate_back, migrate_to_ram
from ..migrate_device import migrate_vma, to_device
from ..mm import (
    collect,
    get,
    pmd_mapped,
    vma_at,
    vpns_in,
)
from ..notifier import insert, read_begin, read_retry, set_seq
from ..observe import device_view
from ..state import (
    Dev,
    Device,
    MigD,
    Present,
    Process,
    State,
    Subscription,
    Zero,
)
from ..threads import Gen, Thread, y

KIND = "mirror"


def mirror_open(st: State, dev: Device) -> None:
    """``open``: the subscription over [0, 2^36) of the device's process."""
    sub = Subscription(st.new_id("sub"), dev.pid, 0, ADDRESS_PAGES, KIND, dev.id)
    dev.sub = sub.id
    insert(st, st.procs[dev.pid], sub)


def mirror_callback(st: State, th: Thread, sub: Subscription, event: str, a: int, b: int,
                    owner: int | None, blockable: bool, c: int) -> Gen[bool]:
    dev = st.devices[sub.owner]
    if blockable:
        yield from driver_lock(st, th, dev)
    elif not driver_trylock(th, dev):
        return False
    set_seq(sub, c)
    if not (event == "migrate" and owner == dev.id):
        for v in sorted(v for v in dev.table if a <= v < b):
            del dev.table[v]
            st.page_ops += 1
    driver_unlock(th, dev)
    return True


def mirror_migrate_to_ram(st: State, th: Thread, d: int) -> Gen[Outcome]:
    """Migrate-back of one of the mirror's pages; a moved page leaves its table."""
    table = st.devices[st.dpages[d].owner].table
    outcome = yield from migrate_back(st, th, d)
    if outcome == "moved":
        for tv in sorted(table):
            if table[tv][0] == ("dpage", d, 0):
                del table[tv]
                st.page_ops += 1
    return outcome


# ---------------------------------------------------------------- access


def _table_complete(st: State, dev: Device, s: int, n: int, write: bool) -> bool:
    for v in range(s, s + n):
        st.page_ops += 1
        got = dev.table.get(v)
        if got is None or (write and not got[1]):
            return False
    return True


def op_dread_dwrite(st: State, th: Thread, op: Dread | Dwrite) -> Gen[OpResult]:
    write = isinstance(op, Dwrite)
    dev = device_handle(st, op.d, KIND)
    if dev is None:
        return EINVAL
    stride = 0
    if isinstance(op, Dwrite):
        stride = op.stride or 0
        if not range_ok(op.s, op.n) or not words_ok(op.x, stride, op.n):
            return EINVAL
    elif not capped_ok(op.s, op.n):
        return EINVAL
    proc = st.procs[dev.pid]
    if (e := state_err(proc, th)) is not None:
        return e
    assert dev.sub is not None
    sub = st.subs[dev.sub]
    faults = 0
    committed = False
    while True:
        yield from driver_lock(st, th, dev)
        if _table_complete(st, dev, op.s, op.n, write):
            what = f"D{dev.id} access"
            if isinstance(op, Dwrite):
                for k in range(op.n):
                    write_target(st, dev.table[op.s + k][0], op.x + k * stride, what)
                driver_unlock(th, dev)
                return Ok(faults)
            words = tuple(read_target(st, dev.table[op.s + k][0], what) for k in range(op.n))
            driver_unlock(th, dev)
            return Values(words, faults)
        driver_unlock(th, dev)
        if committed:
            th.failed_commits += 1
        while True:  # rounds until a commit succeeds
            s0 = yield from read_begin(st, th, sub)
            if (e := state_err(proc, th)) is not None:
                return e
            successes = sub.successes
            yield from y()
            walked = yield from range_fault(st, th, proc, op.s, op.n, write, dev.id)
            if not isinstance(walked, tuple):
                return walked
            yield from driver_lock(st, th, dev)
            if (e := state_err(proc, th)) is not None:
                return e
            retry = read_retry(sub, s0)
            if not retry and sub.successes != successes:
                st.violate("seq_protocol", f"D{dev.id} commit misses a callback on sub {sub.id}")
            yield from y()
            if retry:
                th.failed_commits += 1
                driver_unlock(th, dev)
                continue
            for k, entry in enumerate(walked):
                dev.table[op.s + k] = entry
                st.page_ops += 1
            faults += 1
            committed = True
            driver_unlock(th, dev)
            yield from y()
            break


# -------------------------------------------------------------- snapshot


def op_snapshot(st: State, th: Thread, op: Snapshot) -> Gen[OpResult]:
    dev = device_handle(st, op.d, KIND)
    if dev is None:
        return EINVAL
    proc = yield from locked(st, th, dev.pid, capped_ok(op.s, op.n), mmap_read)
    if isinstance(proc, Err):
        return proc
    words = []
    for v in range(op.s, op.s + op.n):
        vma = vma_at(proc, v)
        entry = get(st, proc, v)
        if vma is None or not vma.readable:
            words.append("error")
        elif isinstance(entry, Zero):
            words.append("zero")
        elif isinstance(entry, Present):
            word = "w" if entry.w else "r"
            words.append(word + "+pmd" if pmd_mapped(proc, v) else word)
        elif isinstance(entry, Dev) and st.dpages[entry.d].owner == dev.id:
            words.append("dev-w" if entry.w else "dev-r")
        else:
            words.append("none")
    return Snap(tuple(words))


# -------------------------------------------------------- migrate_to_dev


def _raced(st: State, dev: Device, proc: Process, v: int) -> bool:
    """True if D would not be told of the next change at v, so its table must
    not map v: another invalidation covering v is running on the mm (its apply
    may still zap the new device entry, DECISIONS D15), or D's subscription is
    still on the deferred list, out of every invalidation's reach (D21)."""
    assert dev.sub is not None
    return not st.subs[dev.sub].in_tree or any(
        inv is not st.applying and inv.start <= v < inv.end
        for inv in proc.notifier.running.values())


def _to_device_apply(st: State, dev: Device, proc: Process, a: int, b: int) -> None:
    """The apply of migrate_to_dev's I(migrate, owner = D, [a,b)): the core
    moves the pages (``migrate_device.to_device``); D maps each one moved
    unless it raced (D15, D21)."""
    for v, d, w in to_device(st, dev, proc, a, b):
        if _raced(st, dev, proc, v):
            dev.table.pop(v, None)
        else:
            dev.table[v] = (("dpage", d, 0), w)


def op_migrate_to_dev(st: State, th: Thread, op: MigrateToDev) -> Gen[OpResult]:
    dev = device_handle(st, op.d, KIND)
    if dev is None:
        return EINVAL
    proc = yield from locked(st, th, dev.pid, range_ok(op.s, op.n), mmap_read)
    if isinstance(proc, Err):
        return proc
    a, b = op.s, op.s + op.n
    got = yield from migrate_vma(st, th, dev, proc, a, b,
                                 lambda: _to_device_apply(st, dev, proc, a, b))
    if isinstance(got, Err):
        return got
    moved = 0
    for v in vpns_in(proc, a, b):
        entry = proc.pt[v]
        if isinstance(entry, Dev) and st.dpages[entry.d].owner == dev.id:
            moved += 1
    return Num(op.n) if moved == op.n else ENOENT


# ------------------------------------------------------------------ evict


def _named_pages(st: State, dev: Device) -> list[int]:
    """D's device pages some CPU entry names, by their lowest (pid, vpn) mapping."""
    first: dict[int, tuple[int, int]] = {}
    for pid in sorted(st.procs):
        proc = st.procs[pid]
        for v, entry in proc.pt.items():
            if isinstance(entry, Dev | MigD) and st.dpages[entry.d].owner == dev.id:
                key = (pid, v)
                if entry.d not in first or key < first[entry.d]:
                    first[entry.d] = key
    return sorted(first, key=lambda d: first[d])


def op_evict(st: State, th: Thread, op: Evict) -> Gen[OpResult]:
    dev = device_handle(st, op.d, KIND)
    if dev is None:
        return EINVAL
    moved = 0
    pages = _named_pages(st, dev)
    for idx, d in enumerate(pages):
        if idx > 0:
            yield from y()
        while not st.dpages[d].freed:
            outcome = yield from migrate_to_ram(st, th, d)
            if outcome == "nomem":
                return ENOMEM
            if outcome == "moved":
                moved += 1
            if outcome != "again":
                break
    collect(st)
    return Num(moved)



DRIVER: Driver[State, Thread] = Driver(
    KIND,
    ops={"dread": op_dread_dwrite, "dwrite": op_dread_dwrite, "snapshot": op_snapshot,
         "migrate_to_dev": op_migrate_to_dev, "evict": op_evict},
    open=mirror_open,
    invalidate=mirror_callback,
    migrate_to_ram=mirror_migrate_to_ram,
    view=lambda st, dev: (device_view(dev, st.device_pages_of(dev.id)), []),
)
