"""The CPU ops of SPEC §3.1 and §3.2: mmap, munmap, mremap, mprotect,
madvise, read and write.

Each op is a generator yielding at exactly Appendix A's points::

    mmap      [W]; if any VMA overlaps: S; I(unmap,[s,s+n)); add the VMA; done
    munmap    [W]; S; I(unmap,[s,s+n)) if any VMA overlaps; done
    mremap    [W]; checks; S; I(unmap, dest) if any VMA overlaps it; I(unmap, source); done
    mprotect  [W]; hole check; S; I(protection_vma,[s,s+n)) if a permission is lost,
              else the change; done
    dontneed  [R]; for each VMA ∩ range: S; I(clear, VMA ∩ range); done
    hugepage  [W]; S; the change; done
    read/write  lockless: one step; else [R]; the fault; access; done
    read_range/write_range  the n single-page ops in order, a plain yield
              where one ends and the next begins (locks released there)

``S`` is the PMD splits of the blocks the op cuts, in address order; the
list is computed once, after the lock is taken (DECISIONS D3).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from model.ops import (
    MAX_VALUE_PAGES,
    OK,
    SIGSEGV,
    Err,
    Madvise,
    Mmap,
    Mprotect,
    Mremap,
    Munmap,
    OpResult,
    Read,
    ReadRange,
    Values,
    Write,
    WriteRange,
    is_word,
    words_ok,
)
from model.ops import Num as NumResult

from .checks import EFAULT, EINVAL, ENOMEM, proc_handle, range_ok, state_err
from .faults import fault, needs_fault, split_blocks
from .locks import mmap_read, mmap_write, release_all
from .mm import (
    add_vma,
    covered,
    cut_blocks,
    get,
    live_folio,
    make_readonly,
    pmds_in,
    put,
    remove_vmas,
    split_pmd,
    split_vma,
    vma_at,
    vmas_in,
    vpns_in,
    zap_range,
)
from .notifier import invalidate
from .state import Present, Process, SharedObject, State, Vma, Zero
from .threads import Gen, Thread, y

_RANK = {"none": 0, "r": 1, "rw": 2}


def unmap_apply(st: State, proc: Process, a: int, b: int) -> None:
    """The apply of ``I(unmap, [a,b))``: zap the range, remove the VMA parts in it."""
    zap_range(st, proc, a, b)
    remove_vmas(st, proc, a, b)


def _unmap(st: State, th: Thread, proc: Process, a: int, b: int) -> Gen[None]:
    yield from split_blocks(st, th, proc, cut_blocks(proc, a, b))
    yield from invalidate(st, th, proc, "unmap", a, b, None, True,
                          lambda: unmap_apply(st, proc, a, b))


def locked(st: State, th: Thread, pid: int, args_ok: bool,
            lock: Callable[[State, Thread, Process], Gen[None]]) -> Gen[Process | Err]:
    """The preamble of an mm op (and of a device op, for its device's
    process): a bad handle or argument gives ``EINVAL``,
    a process that is not live ``ESRCH`` (Appendix C rules 1-2); then take
    ``mmap_lock`` and check the state again once it is held (SPEC §5.3)."""
    proc = proc_handle(st, pid)
    if proc is None or not args_ok:
        return EINVAL
    if (e := state_err(proc, th)) is not None:
        return e
    yield from lock(st, th, proc)
    if (e := state_err(proc, th)) is not None:
        return e
    return proc


def op_mmap(st: State, th: Thread, op: Mmap) -> Gen[OpResult]:
    proc = yield from locked(st, th, op.p, range_ok(op.s, op.n), mmap_write)
    if isinstance(proc, Err):
        return proc
    a, b = op.s, op.s + op.n
    if vmas_in(proc, a, b):
        yield from _unmap(st, th, proc, a, b)
    vma = Vma(a, b, op.prot, op.kind, op.huge)
    if op.kind == "shared":
        obj = SharedObject(st.new_id("object"), op.n)
        st.objects[obj.id] = obj
        vma.obj, vma.offset = obj.id, 0
    add_vma(proc, vma)
    return OK


def op_munmap(st: State, th: Thread, op: Munmap) -> Gen[OpResult]:
    proc = yield from locked(st, th, op.p, range_ok(op.s, op.n), mmap_write)
    if isinstance(proc, Err):
        return proc
    a, b = op.s, op.s + op.n
    if vmas_in(proc, a, b):
        yield from _unmap(st, th, proc, a, b)
    else:
        yield from split_blocks(st, th, proc, cut_blocks(proc, a, b))
    return OK


def _move_apply(st: State, proc: Process, old: int, n: int, new: int) -> None:
    """The apply of mremap's ``I(unmap, source)``: move the VMA piece and its entries."""
    for base in pmds_in(proc, old, old + n):
        split_pmd(st, proc, base)
    split_vma(proc, old)
    split_vma(proc, old + n)
    piece = next(v for v in proc.vmas if v.start == old)
    proc.vmas.remove(piece)
    add_vma(proc, Vma(new, new + n, piece.prot, piece.kind, piece.huge, piece.obj,
                      piece.offset))
    moved = {v: proc.pt.pop(v) for v in vpns_in(proc, old, old + n)}
    for v, entry in moved.items():
        put(st, proc, v - old + new, entry)


def op_mremap(st: State, th: Thread, op: Mremap) -> Gen[OpResult]:
    args_ok = range_ok(op.old, op.n) and range_ok(op.new, op.n)
    proc = yield from locked(st, th, op.p, args_ok, mmap_write)
    if isinstance(proc, Err):
        return proc
    old, n, new = op.old, op.n, op.new
    src = vma_at(proc, old)
    if src is None:
        return EFAULT
    if old < new + n and new < old + n:
        return EINVAL
    if src.end < old + n:
        return EFAULT
    bases = sorted(set(pmds_in(proc, old, old + n)) | set(cut_blocks(proc, new, new + n)))
    yield from split_blocks(st, th, proc, bases)
    if vmas_in(proc, new, new + n):
        yield from invalidate(st, th, proc, "unmap", new, new + n, None, True,
                              lambda: unmap_apply(st, proc, new, new + n))
    yield from invalidate(st, th, proc, "unmap", old, old + n, None, True,
                          lambda: _move_apply(st, proc, old, n, new))
    return OK


def _set_attr(st: State, proc: Process, a: int, b: int, prot: str | None,
              huge: bool | None) -> None:
    """Split the VMAs that change at a and b, and change them."""
    def differs(vma: Vma) -> bool:
        return (prot is not None and vma.prot != prot) or (huge is not None and vma.huge != huge)

    for edge in (a, b):
        vma = vma_at(proc, edge)
        if vma is not None and differs(vma):
            split_vma(proc, edge)
    for vma in vmas_in(proc, a, b):
        if prot is not None and vma.prot != prot:
            if vma.writable and prot != "rw":
                make_readonly(st, proc, vma.start, vma.end)
            vma.prot = prot  # type: ignore[assignment]
        if huge is not None:
            vma.huge = huge


def op_mprotect(st: State, th: Thread, op: Mprotect) -> Gen[OpResult]:
    proc = yield from locked(st, th, op.p, range_ok(op.s, op.n), mmap_write)
    if isinstance(proc, Err):
        return proc
    a, b, prot = op.s, op.s + op.n, op.prot
    if not covered(proc, a, b):
        return ENOMEM
    yield from split_blocks(st, th, proc, cut_blocks(proc, a, b, lambda v: v.prot != prot))
    loses = any(_RANK[v.prot] > _RANK[prot] for v in vmas_in(proc, a, b))
    if loses:
        yield from invalidate(st, th, proc, "protection_vma", a, b, None, True,
                              lambda: _set_attr(st, proc, a, b, prot, None))
    else:
        _set_attr(st, proc, a, b, prot, None)
    return OK


def op_madvise(st: State, th: Thread, op: Madvise) -> Gen[OpResult]:
    dontneed = op.advice == "dontneed"
    lock = mmap_read if dontneed else mmap_write  # Appendix A: [R] for dontneed
    proc = yield from locked(st, th, op.p, range_ok(op.s, op.n), lock)
    if isinstance(proc, Err):
        return proc
    a, b = op.s, op.s + op.n
    if dontneed:
        hole = not covered(proc, a, b)
        parts = [(max(a, v.start), min(b, v.end)) for v in vmas_in(proc, a, b)]
        for lo, hi in parts:
            yield from split_blocks(st, th, proc, cut_blocks(proc, lo, hi))
            yield from invalidate(st, th, proc, "clear", lo, hi, None, True,
                                  partial(zap_range, st, proc, lo, hi))
        return ENOMEM if hole else OK
    want = op.advice == "hugepage"
    yield from split_blocks(st, th, proc, cut_blocks(proc, a, b, lambda v: v.huge != want))
    _set_attr(st, proc, a, b, None, want)
    return OK if covered(proc, a, b) else ENOMEM


def _access(st: State, proc: Process, v: int, x: int | None) -> OpResult:
    """The CPU access once no fault is needed: read the word or write ``x``."""
    entry = get(st, proc, v)
    if isinstance(entry, Zero):
        return NumResult(0)
    assert isinstance(entry, Present)
    folio = live_folio(st, entry.f, f"CPU access P{proc.pid} {v}")
    if x is None:
        return NumResult(folio.words[entry.i])
    folio.words[entry.i] = x
    st.note("folio", entry.f)
    return OK


def op_access(st: State, th: Thread, op: Read | Write) -> Gen[OpResult]:
    """``read P v`` / ``write P v x`` (SPEC §3.2)."""
    write = isinstance(op, Write)
    proc = proc_handle(st, op.p)
    bad_word = isinstance(op, Write) and not is_word(op.x)
    if proc is None or not range_ok(op.v, 1) or bad_word:  # SPEC §2: values are words
        return EINVAL
    if (e := state_err(proc, th)) is not None:
        return e
    vma = vma_at(proc, op.v)
    if vma is None or not vma.readable or (write and not vma.writable):
        return SIGSEGV
    x = op.x if isinstance(op, Write) else None
    if not needs_fault(get(st, proc, op.v), write):
        return _access(st, proc, op.v, x)
    yield from mmap_read(st, th, proc)
    if (e := state_err(proc, th)) is not None:
        return e
    res = yield from fault(st, th, proc, op.v, write)
    if res is not None:
        return res
    return _access(st, proc, op.v, x)


def op_range(st: State, th: Thread, op: ReadRange | WriteRange) -> Gen[OpResult]:
    """``read_range P v n`` / ``write_range P v n x [stride]`` (SPEC §3.2):
    the single-page ops on v, v+1, ... in order; where one ends the range
    op releases its locks and yields, and the next starts in the next step.
    The first result that is not ``ok`` or a word ends it."""
    write = isinstance(op, WriteRange)
    stride = op.stride or 0 if isinstance(op, WriteRange) else 0
    x = op.x if isinstance(op, WriteRange) else 0
    if not range_ok(op.v, op.n) or op.n > MAX_VALUE_PAGES or not words_ok(x, stride, op.n):
        return EINVAL
    words: list[int] = []
    for i in range(op.n):
        page: Read | Write = Write(op.p, op.v + i, x + i * stride) if write else Read(
            op.p, op.v + i)
        res = yield from op_access(st, th, page)
        if isinstance(res, NumResult):
            words.append(res.value)
        elif res != OK:
            return res
        release_all(st, th)
        if i < op.n - 1:
            yield from y()
    return OK if write else Values(tuple(words))
