"""CPU access and page faults (SPEC §3.2).

Mirrors ``mm/memory.c``: ``handle_mm_fault`` -> ``do_anonymous_page`` /
``do_huge_pmd_anonymous_page`` (THP), ``do_fault`` (shmem), ``do_swap_page``,
``do_wp_page`` (reuse or ``wp_page_copy``), ``migration_entry_wait``, and
``do_swap_page``'s ``page_pgmap(page)->ops->migrate_to_ram(vmf)`` for
device entries (:func:`migrate_to_ram`: the hook the device page's owner put
on its ``dev_pagemap``; the core knows no driver).  The rule: act on the
entry at v by SPEC's table until no fault is needed; an apply that replaces
an entry first checks that it is still the entry acted on.
"""

from __future__ import annotations

from model import bugs
from model.ops import (
    MAX_VALUE_PAGES,
    OK,
    SIGSEGV,
    Num,
    OpResult,
    Read,
    ReadRange,
    Values,
    Write,
    WriteRange,
    is_word,
    range_ok,
    words_ok,
)
from model.optimized import common as C
from model.optimized.memory import map_huge, object_page, set_pte, split_huge_pmd
from model.optimized.mmu_notifier import Range, invalidate
from model.optimized.pagetable import (
    DEVICE,
    MIG_D,
    MIG_F,
    NONE,
    PRESENT,
    PTRS,
    SWAP,
    ZERO,
    ZERO_ENTRY,
    W,
    X,
    kind_of,
    mkentry,
    payload_of,
)
from model.optimized.state import KernelState, Process, Vma
from model.optimized.threads import Gen, Thread, wait
from model.optimized.vma import find_vma


def split_block(k: KernelState, t: Thread, proc: Process, base: int) -> Gen[None]:
    """A PMD split: I(clear, block) whose apply splits it if still PMD-mapped."""
    rng = Range("clear", base, base + PTRS, None, True)
    yield from invalidate(t, proc.mn, rng, lambda: _split(k, proc, base),
                          not k.bugged(bugs.SPLIT_WITHOUT_INVALIDATE))  # no callbacks if mutated


def _split(k: KernelState, proc: Process, base: int) -> None:
    split_huge_pmd(k, proc, base)


def block_empty(proc: Process, base: int) -> bool:
    lf = proc.pt.leaf(base)
    return lf is None or (not isinstance(lf, int) and not lf.any())


def no_fault_needed(e: int, write: bool) -> bool:
    kind = kind_of(e)
    if kind == PRESENT:
        return not write or bool(e & W)
    return kind == ZERO and not write


def access(k: KernelState, proc: Process, v: int, write: bool, x: int) -> OpResult:
    """The access itself, once no fault is needed."""
    e = proc.pt.entry(v)
    k.pops += 1
    if kind_of(e) == ZERO:
        return Num(0)
    pfn = payload_of(e)
    if not k.frames.live[pfn]:
        k.violation("no_use_after_free", f"CPU access at P{proc.pid}:{v} reaches freed frame")
    if write:
        k.frames.word[pfn] = x
        return C.OK_RESULT
    return Num(int(k.frames.word[pfn]))


def op_access(k: KernelState, t: Thread, op: Read | Write) -> Gen[OpResult]:
    """read P v / write P v x."""
    write = isinstance(op, Write)
    x = op.x if isinstance(op, Write) else 0
    proc = k.proc(op.p)
    if proc is None or not 0 <= op.v < (1 << 36) or not is_word(x):
        return C.EINVAL
    if proc.state != "live":
        return C.ESRCH
    vma = find_vma(proc, op.v)
    if vma is None or not vma.readable or (write and not vma.writable):
        return SIGSEGV
    if no_fault_needed(proc.pt.entry(op.v), write):
        return access(k, proc, op.v, write, x)
    yield from proc.mmap_lock.read_lock(t)
    if proc.state != "live":
        proc.mmap_lock.read_unlock(t)
        return C.ESRCH
    vma = find_vma(proc, op.v)
    if vma is None or not vma.readable or (write and not vma.writable):
        proc.mmap_lock.read_unlock(t)
        return SIGSEGV
    err = yield from handle_mm_fault(k, t, proc, vma, op.v, write)
    if err is not None:
        proc.mmap_lock.read_unlock(t)
        return err
    res = access(k, proc, op.v, write, x)
    proc.mmap_lock.read_unlock(t)
    return res


def op_range_access(k: KernelState, t: Thread, op: ReadRange | WriteRange
                    ) -> Gen[OpResult]:
    """read_range / write_range: a userspace loop of single-page accesses
    (each one do_user_addr_fault's path), yielding between pages."""
    write = isinstance(op, WriteRange)
    x = op.x if isinstance(op, WriteRange) else 0
    stride = (op.stride or 0) if isinstance(op, WriteRange) else 0
    if not range_ok(op.v, op.n) or op.n > MAX_VALUE_PAGES or not words_ok(x, stride, op.n):
        return C.EINVAL
    words: list[int] = []
    for i in range(op.n):
        page: Read | Write = Write(op.p, op.v + i, x + i * stride) if write else Read(
            op.p, op.v + i)
        res = yield from op_access(k, t, page)
        if isinstance(res, Num):
            words.append(res.value)
        elif res != OK:
            return res
        if i < op.n - 1:
            yield None
    return OK if write else Values(tuple(words))


def handle_mm_fault(k: KernelState, t: Thread, proc: Process, vma: Vma, v: int,
                    write: bool) -> Gen[OpResult | None]:
    """fault(v): act on the entry until no fault is needed; None, or ENOMEM."""
    while True:
        e, pmd = proc.pt.get(v)
        kind = kind_of(e)
        if no_fault_needed(e, write):
            return None
        k.pops += 1
        if kind == NONE:
            if vma.kind == "shared":
                assert vma.obj is not None
                pfn = object_page(k, k.objects[vma.obj], vma.index_of(v))
                if pfn is None:
                    return C.ENOMEM
                set_pte(k, proc, v, mkentry(PRESENT, pfn, vma.writable, False), None)
                if vma.writable or not write:
                    return None  # the entry just set needs no fault
                continue
            if not write:
                set_pte(k, proc, v, ZERO_ENTRY, None)
                return None  # zero needs no read fault
            base = v & ~(PTRS - 1)
            if (vma.huge and vma.start <= base and base + PTRS <= vma.end
                    and block_empty(proc, base) and k.frames.can_alloc(9)):
                head = k.frames.alloc(9, vma.index_of(base))
                assert head is not None
                map_huge(k, proc, base, head, True, True)
                return None  # present with w
            pfn = k.frames.alloc(0, vma.index_of(v))
            if pfn is None:
                return C.ENOMEM
            set_pte(k, proc, v, mkentry(PRESENT, pfn, True, True), None)
            return None  # present with w
        if kind == ZERO:
            nomem = yield from _replace_with_copy(k, t, proc, vma, v, e, zero=True)
            if nomem:
                return C.ENOMEM
            continue
        if kind == SWAP:
            s = payload_of(e)
            excl = write or int(k.swap.count[s]) == 1
            w = excl and vma.writable
            pfn = k.frames.alloc(0, vma.index_of(v))
            if pfn is None:
                return C.ENOMEM
            k.frames.word[pfn] = k.swap.word[s]
            set_pte(k, proc, v, mkentry(PRESENT, pfn, w, excl), None)
            continue
        if kind == PRESENT:  # write fault on a read-only present entry
            pfn = payload_of(e)
            head = k.frames.head(pfn)
            if vma.kind == "shared" or e & X:
                if pmd:
                    lf = proc.pt.leaf(v & ~(PTRS - 1))
                    assert isinstance(lf, int)
                    proc.pt.set_leaf(v & ~(PTRS - 1), lf | W)
                else:
                    proc.pt.set(v, e | W)
                continue
            if k.frames.order[head] == 0 and int(k.frames.refcount[head]) == 1:
                proc.pt.set(v, e | W | X)
                continue
            if pmd:
                yield from split_block(k, t, proc, v & ~(PTRS - 1))
                continue
            nomem = yield from _replace_with_copy(k, t, proc, vma, v, e, zero=False)
            if nomem:
                return C.ENOMEM
            continue
        again: bool | OpResult = yield from settle(k, t, proc, v, e)
        if again is True:
            continue
        return None if isinstance(again, bool) else again  # False: unreachable, all handled


def settle(k: KernelState, t: Thread, proc: Process, v: int, e: int) -> Gen[bool | OpResult]:
    """An entry a fault or a pin cannot act on yet: wait for a migration
    entry to go, or migrate a device page back (SPEC §6.5).  True when the
    caller must look at v again, ENOMEM when no frame took the device page,
    False for any other entry."""
    kind = kind_of(e)
    if kind in (MIG_F, MIG_D):
        yield from wait(t, lambda: kind_of(proc.pt.entry(v)) not in (MIG_F, MIG_D),
                        "migration entry")
        return True
    if kind == DEVICE:
        res = yield from migrate_to_ram(k, t, payload_of(e))
        return C.ENOMEM if res == "nomem" else True
    return False


def migrate_to_ram(k: KernelState, t: Thread, d: int) -> Gen[str]:
    """A CPU fault (or GUP, or hmm_range_fault) on device-private page ``d``:
    ``page_pgmap(page)->ops->migrate_to_ram``, the owner driver's hook
    ("again", "none", "moved" or "nomem")."""
    return (yield from k.pgmap_of(d).ops.migrate_to_ram(k, t, d))


def _replace_with_copy(k: KernelState, t: Thread, proc: Process, vma: Vma, v: int, e: int,
                       zero: bool, writable: bool = True) -> Gen[bool]:
    """I(clear,[v,v+1)); apply: a new order-0 folio (zeroed, or a copy of the
    page) mapped w (if ``writable``) and x.  Returns True on ENOMEM."""
    nomem = [False]

    def apply() -> None:
        cur, pmd = proc.pt.get(v)
        if cur != e or pmd:
            return
        pfn = k.frames.alloc(0, vma.index_of(v))
        if pfn is None:
            nomem[0] = True
            return
        if not zero:
            k.frames.word[pfn] = k.frames.word[payload_of(e)]
        set_pte(k, proc, v, mkentry(PRESENT, pfn, writable, True), None)

    yield from invalidate(t, proc.mn, Range("clear", v, v + 1, None, True), apply)
    return nomem[0]
