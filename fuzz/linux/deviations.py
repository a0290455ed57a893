"""The deliberate deviations from Linux (SPEC Appendix D) that a trace run on
Linux 6.1's test_hmm can show, each declared once as a predicate.

A trace that disagrees is judged by its first disagreeing line: a
:class:`Case` holds the trace's ops, that line's index, the kernel's and the
model's result of every line, and the reference model's state just before
that line.  :func:`attribute` names the first deviation whose predicate holds,
or ``unexplained``.  Each predicate is narrow on purpose: it names the op, the
two results and the state or earlier lines that the deviation needs, so that
a model bug does not hide behind it (``tests/unit/test_linux_deviations.py``
checks each on hand traces, and that none explains a plain wrong result).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Final

from fuzz import impls
from fuzz.executor import Settings, run_trace
from fuzz.trace import Trace
from model.interface import Config, Factory, Implementation
from model.observation import EntryView, Observation, ProcessView, VmaView
from model.ops import Op, RunThread, StepThread, op_keyword

UNEXPLAINED: Final = "unexplained"
GUEST_PAGES: Final = (1 << 30) >> 12
"""The guest's memory (``fuzz.linux.kernel.boot``'s QEMU ``-m 1024``), in pages."""


@dataclass
class Case:
    """The first disagreeing line of a trace run on Linux and on the model."""

    ops: tuple[Op, ...]
    index: int  # of the first disagreeing line, from 0
    linux: tuple[str, ...]
    model: tuple[str | None, ...]
    trace: Trace = field(compare=False)

    @cached_property
    def before(self) -> Observation:
        """The reference model's state before the line."""
        return model_state(self.trace, self.index)

    @cached_property
    def after(self) -> Observation:
        return model_state(self.trace, self.index + 1)

    @property
    def op(self) -> Op:
        return self.ops[self.index]

    @property
    def key(self) -> str:
        return op_keyword(self.op)

    @property
    def got(self) -> str:
        return self.linux[self.index]

    @property
    def want(self) -> str:
        return self.model[self.index] or ""

    def earlier(self, *keys: str) -> Iterator[tuple[int, Op, str, str]]:
        """The earlier lines of these ops: (index, op, Linux's result, the model's result)."""
        for i in range(self.index):
            if op_keyword(self.ops[i]) in keys:
                yield i, self.ops[i], self.linux[i], self.model[i] or ""

    def lineage(self, pid: int | None, since: int) -> set[int]:
        """``pid`` and the processes forked from it, or from those, after line ``since``."""
        family = {pid} if pid is not None else set()
        for i, op, got, want in self.earlier("fork"):
            if i > since and vars(op)["p"] in family and got == want and got[:1] == "P":
                family.add(int(got[1:]))
        return family

    def process(self, pid: int | None) -> ProcessView | None:
        return next((p for p in self.before.processes if p.pid == pid), None)

    def mirror_pid(self, dev: int) -> int | None:
        return next((d.pid for d in self.before.devices if d.id == dev), None)


def pages(op: Op) -> range:
    """The pages a memory, CPU or mirror op names (empty for others)."""
    v = vars(op)
    if "old" in v:
        return range(v["old"], v["old"] + v["n"])
    start = v.get("s", v.get("v"))
    if start is None:
        return range(0)
    return range(start, start + v.get("n", 1))


def _meets(a: range, b: range) -> bool:
    return a.start < b.stop and b.start < a.stop


def _pid(case: Case, op: Op) -> int | None:
    v = vars(op)
    return v["p"] if "p" in v else case.mirror_pid(v["d"]) if "d" in v else None


def _same_process(case: Case, earlier: int, op: Op) -> bool:
    """Whether ``op`` runs in the process of line ``earlier``, or in one forked from it since
    (a child inherits the VMAs and entries the deviation left)."""
    return _pid(case, op) in case.lineage(_pid(case, case.ops[earlier]), earlier)


# ------------------------------------------------------------- predicates


def mprotect_partial(case: Case) -> bool:
    """Appendix D7: an earlier ``mprotect`` over a hole gave ENOMEM on both sides; Linux
    changed the VMAs up to the first hole (``mprotect_fixup`` per VMA in
    ``do_mprotect_pkey``, the hole found after), the model nothing.  The line touches that
    changed part (where it is after the ``mremap``s since, which move it with its VMA), in
    the same process or a child forked since."""
    for i, op, got, want in case.earlier("mprotect"):
        if got == want == "ENOMEM" and _same_process(case, i, case.op):
            v = vars(op)
            proc = next((p for p in model_state(case.trace, i).processes if p.pid == v["p"]),
                        None)
            end = v["s"]
            for m in proc.vmas if proc else ():
                if m.start <= end < m.end:
                    end = m.end
            changed = range(v["s"], min(end, v["s"] + v["n"]))
            if any(_meets(range(_moved_from(case, vpn, since=i), _moved_from(case, vpn, since=i)
                                + 1), changed) for vpn in pages(case.op)[:4096]):
                return True
    return False


def _moved_from(case: Case, vpn: int, since: int = -1) -> int:
    """Where page ``vpn`` of the line's process was before the ``mremap``s after line
    ``since`` that moved it there (both sides ``ok``)."""
    for i, op, got, want in reversed(list(case.earlier("mremap"))):
        m = vars(op)
        if i > since and got == want == "ok" and _same_process(case, i, case.op) and (
                m["new"] <= vpn < m["new"] + m["n"]):
            vpn += m["old"] - m["new"]
    return vpn


def own_readonly_device_page(case: Case) -> bool:
    """Appendix D6: a ``dwrite`` over the mirror's own read-only device page: Linux ``EFAULT``
    (``dmirror_do_fault``: hmm reports the page without write, WARN at test_hmm.c:280)."""
    if case.key != "dwrite" or case.got != "EFAULT" or case.want == "EFAULT":
        return False
    proc = case.process(case.mirror_pid(vars(case.op)["d"]))
    span = pages(case.op)
    return proc is not None and any(e.cls == "device" and not e.w and e.vpn in span
                                    for e in proc.entries)


def partial_mirror_access(case: Case) -> bool:
    """Appendix D3: an earlier ``dread``/``dwrite`` failed on both sides with a walk error;
    dmirror had written the pages already in its table up to the first missing one
    (``dmirror_do_write`` before ``dmirror_fault``) and faulted and stored 64-page chunks up
    to the failing one (``dmirror_fault``); the model's walk faulted the same pages but
    installed and wrote nothing.  The line meets that range and is a mirror op of the same
    device (its table differs) or, after a failed ``dwrite``, a CPU read (the words do)."""
    for i, op, got, want in case.earlier("dread", "dwrite"):
        if got != want or got not in ("EFAULT", "EPERM") or not _meets(pages(op), pages(case.op)):
            continue
        if case.key in ("dread", "dwrite", "migrate_to_dev"):
            if vars(case.op)["d"] == vars(op)["d"]:
                return True
        elif (case.key in ("read", "read_range") and op_keyword(op) == "dwrite"
              and _same_process(case, i, case.op)):
            return True
    return False


def chunked_migration(case: Case) -> bool:
    """Appendix D23: an earlier ``migrate_to_dev`` of a live mirror gave EINVAL on both sides
    (a hole or a VMA without r); test_hmm had moved and mapped the 64-page chunks before it
    (``dmirror_migrate_to_device``), the model nothing.  The line touches that range."""
    return any(got == want == "EINVAL" and case.mirror_pid(vars(op)["d"]) is not None
               and _same_process(case, i, case.op) and _meets(pages(op), pages(case.op))
               for i, op, got, want in case.earlier("migrate_to_dev"))


def migrate_result(case: Case) -> bool:
    """Appendix D22: ``migrate_to_dev``'s result.  test_hmm's is the read-back of its table
    (``dmirror_do_read`` after the migration: the count if every page of the range has a
    table entry, moved now or before or faulted by ``dread``, else ENOENT); the model's is n
    iff every page is now a device entry of D.  Linux's result is what the model's own
    table after the line says."""
    if case.key != "migrate_to_dev" or "ENOENT" not in (case.got, case.want):
        return False
    v = vars(case.op)
    table = next((d.table for d in case.after.devices if d.id == v["d"]), ())
    covered = set(range(v["s"], v["s"] + v["n"])) <= {e.vpn for e in table}
    return case.got == (str(v["n"]) if covered else "ENOENT")


def shared_pages_stay(case: Case) -> bool:
    """Appendix D15: ``migrate_to_dev`` skips pages mapped more than once; Linux 6.1 migrates a
    COW-shared page too (``migrate_vma_unmap``'s ``try_to_migrate`` replaces the other
    mappings).  Every page the model left out was such a page, and Linux moved all."""
    if case.key != "migrate_to_dev" or case.want != "ENOENT" or case.got != str(vars(case.op)["n"]):
        return False
    v = vars(case.op)
    pid = case.mirror_pid(v["d"])
    refs = Counter(e.ref for p in case.before.processes for e in p.entries if e.cls == "present")
    before = {e.vpn: e for p in case.before.processes if p.pid == pid for e in p.entries}
    after = {e.vpn: e for p in case.after.processes if p.pid == pid for e in p.entries}
    left = [vpn for vpn in range(v["s"], v["s"] + v["n"])
            if vpn not in after or after[vpn].cls != "device"]
    return bool(left) and all(vpn in before and before[vpn].cls == "present"
                              and refs[before[vpn].ref] > 1 for vpn in left)


def pte_mapped_thp(case: Case) -> bool:
    """Appendix D26: the model's ``migrate_to_dev`` splits an order-9 folio that only PTEs map
    and moves its pages; Linux 6.1 moves no page of a compound folio
    (``migrate_vma_collect_pmd``: "FIXME support THP", ``PageTransCompound``).  Linux gave
    ENOENT, the model n, and a page of the range was a PTE of an order-9 folio before."""
    v = vars(case.op)
    if case.key != "migrate_to_dev" or case.got != "ENOENT" or case.want != str(v["n"]):
        return False
    pid = case.mirror_pid(v["d"])
    folios = case.before.folios
    span = range(v["s"], v["s"] + v["n"])
    return any(e.vpn in span and e.cls == "present" and not e.pmd and e.ref.space == "folio"
               and isinstance(e.ref.raw, int) and folios[e.ref.raw].order == 9
               for p in case.before.processes if p.pid == pid for e in p.entries)


def device_memory(case: Case) -> bool:
    """Appendix D25: a mirror has ``device-frames`` device pages (1024 by default) and a
    ``migrate_to_dev`` stops when they run out (DECISIONS D12: ENOENT); test_hmm adds
    256 MiB chunks of device memory as it needs them (``dmirror_allocate_chunk``).  The
    model's mirror has every device page in use after the line, and Linux moved the whole
    range."""
    if case.key != "migrate_to_dev" or case.want != "ENOENT" or case.got != str(vars(case.op)["n"]):
        return False
    return any(d.id == vars(case.op)["d"] and d.pages_in_use >= case.trace.device_frames
               for d in case.after.devices)


def device_evicted(case: Case) -> bool:
    """Appendix D29: test_hmm's device memory is one pool per device, and the release of any
    file of the device (``dmirror_fops_release``) evicts every chunk of it, the device pages
    of every other mirror of that device included (``dmirror_device_evict_chunk``: back to
    RAM, out of the mirror's table by ``try_to_migrate``'s ``MMU_NOTIFY_CLEAR``); the model's
    mirrors are independent.  A trace's mirrors are on distinct devices, so the release is
    another trace's (a process of the previous trace still exiting).  Linux gave ENOENT, the
    model n, and before the line every page of the range was a hole of the mirror's process
    or a device page of D in D's table: nothing in the trace could keep a page from moving."""
    v = vars(case.op)
    if case.key != "migrate_to_dev" or case.got != "ENOENT" or case.want != str(v["n"]):
        return False
    proc = case.process(case.mirror_pid(v["d"]))
    if proc is None:
        return False
    table = {t.vpn: t.target for d in case.before.devices if d.id == v["d"] for t in d.table}
    span = range(v["s"], v["s"] + v["n"])
    return all(e.cls == "device" and table.get(e.vpn) == e.ref
               for e in proc.entries if e.vpn in span)


def huge_zero_page(case: Case) -> bool:
    """Appendix D1: a read fault in a ``huge`` VMA maps Linux's huge zero page over the whole
    512-page block (``do_huge_pmd_anonymous_page``), split into zero PTEs when the block is
    cut, and a write fault on it splits it (``do_huge_pmd_wp_page``: an invalidation of the
    whole block); the model maps one order-0 zero page.  The line is a ``snapshot`` whose
    every differing page Linux shows as ``zero`` or ``r+pmd`` and the model as ``none`` or
    ``zero``, in blocks an earlier read of the same process touched (where the page was before
    any ``mremap`` that moved it); or a mirror access that
    Linux had to fault again, in blocks an earlier read and then an earlier write touched."""
    def blocks(*keys: str) -> set[int]:
        return {v >> 9 for i, op, _, _ in case.earlier(*keys)
                if _same_process(case, i, case.op) for v in pages(op)[:4096]}

    line = {v >> 9 for v in pages(case.op)[:4096]}
    if case.key in ("dread", "dwrite"):
        got, want = case.got.split(), case.want.split()
        return (got[:-1] == want[:-1] and got[-2:-1] == ["faults"]
                and int(got[-1]) > int(want[-1])
                and line <= blocks("read", "read_range", "dread")
                and bool(line & blocks("write", "write_range", "dwrite")))
    if case.key != "snapshot":
        return False
    touched = blocks("read", "read_range", "dread")
    diff = _snapshot_diff(case)
    return bool(diff) and all(
        g in ("zero", "r+pmd") and w in ("none", "zero") and _moved_from(case, v) >> 9 in touched
        for v, g, w in diff)


def overcommit(case: Case) -> bool:
    """Appendix D21: no memory limit but frames.  Linux 6.1's heuristic overcommit
    (``__vm_enough_memory``, OVERCOMMIT_GUESS) refuses an accounted mapping larger than RAM +
    swap with ENOMEM: a private writable ``mmap``, any shared one (shmem accounts its size),
    an ``mprotect`` that makes a private VMA writable (``mprotect_fixup``); and test_hmm
    ``vmalloc``s a bounce buffer of the whole range (``dmirror_bounce_init``) for a
    ``dread``, ``dwrite`` or ``migrate_to_dev``.  The guest has 1 GiB and no swap: the line
    names more than half of it, and Linux gave ENOMEM where the model did not.  The other
    way round: the model's ``frames`` (4096 pages by default, 16 MiB; ``kernel fuzz`` drops
    the header) ran out in an op that allocates, where the guest's 1 GiB did not: the model
    gave ENOMEM, Linux a result, and the model's pages in use after the line are within a
    THP (512 pages) of ``frames``."""
    if case.want == "ENOMEM" and case.got not in ("ENOMEM", "EINVAL"):
        return _frames_ran_out(case)
    if case.got != "ENOMEM" or case.want == "ENOMEM":
        return False
    v = vars(case.op)
    if case.key in ("dread", "dwrite", "migrate_to_dev"):
        return bool(v["n"] > GUEST_PAGES // 2)
    accounted = case.key in ("mmap", "mprotect") and (v["prot"] == "rw"
                                                      or v.get("kind") == "shared")
    return accounted and case.want == "ok" and v["n"] > GUEST_PAGES // 2


ALLOCATING: Final = ("read", "write", "read_range", "write_range", "dread", "dwrite", "fork",
                      "migrate_to_dev")
"""The ops whose ENOMEM can come from the model's ``frames`` (SPEC Appendix C rule 6)."""


def _frames_ran_out(case: Case) -> bool:
    return (case.key in ALLOCATING and case.trace.frames < GUEST_PAGES
            and case.after.pages_in_use > case.trace.frames - 512)


def vma_boundaries(case: Case) -> bool:
    """Appendix D24: the model never merges VMAs and has one bit of THP advice.  Linux merges
    compatible private neighbours (``vma_merge``, and ``copy_vma`` moves an unfaulted
    anonymous piece's pgoff so that it merges), and ``madvise nohugepage`` sets
    VM_NOHUGEPAGE, splitting a VMA the model leaves whole.  Where it shows: ``mremap``,
    whose source must lie in one VMA; and a ``snapshot`` where Linux shows a THP (``+pmd``)
    in a block that the model's VMAs cover whole but in several compatible huge private
    pieces (an ``mmap`` over the middle of a huge VMA with its own flags: Linux merged them
    back, and a fault there could allocate a THP)."""
    if case.key == "snapshot":
        return _thp_in_merged_block(case)
    if case.key != "mremap":
        return False
    v = vars(case.op)
    src = pages(case.op)
    if case.got == "ok" and case.want == "EFAULT":
        return bool(_merged_by_linux(case.process(v["p"]), src.start, src.stop))
    return case.got == "EFAULT" and case.want == "ok" and any(
        vars(op)["advice"] == "nohugepage" and _same_process(case, i, case.op)
        and _meets(pages(op), src)
        for i, op, _, _ in case.earlier("madvise"))


def _thp_in_merged_block(case: Case) -> bool:
    proc = case.process(case.mirror_pid(vars(case.op)["d"]))
    diff = _snapshot_diff(case)

    def merged_huge(block: int) -> bool:
        vmas = _merged_by_linux(proc, block << 9, (block + 1) << 9)
        return bool(vmas) and vmas[0].huge

    return bool(diff) and all(g.endswith("+pmd") and merged_huge(vpn >> 9) for vpn, g, _ in diff)


def _snapshot_diff(case: Case) -> list[tuple[int, str, str]]:
    """(vpn, Linux's word, the model's) for each page where the ``snapshot`` line's results
    differ; none when they differ in length."""
    got, want = case.got.split()[1:], case.want.split()[1:]
    start = vars(case.op)["s"]
    return [] if len(got) != len(want) else [
        (start + i, g, w) for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]


def _merged_by_linux(proc: ProcessView | None, lo: int, hi: int) -> list[VmaView]:
    """The model's VMAs of ``proc`` over [lo, hi) when they are several, cover it end to end,
    and Linux would have merged them into one (``vma_merge``: private, one protection and THP
    advice); else none."""
    vmas = [m for m in (proc.vmas if proc else ()) if m.start < hi and lo < m.end]
    whole = (len(vmas) > 1 and vmas[0].start <= lo and vmas[-1].end >= hi
             and all(a.end == b.start for a, b in zip(vmas, vmas[1:], strict=False))
             and all(m.kind == "private" for m in vmas)
             and len({(m.prot, m.huge) for m in vmas}) == 1)
    return vmas if whole else []


def mremap_unmaps_destination(case: Case) -> bool:
    """Appendix D20: an earlier ``mremap`` gave EFAULT on both sides for a source running past its
    VMA; Linux had unmapped the destination first (``mremap_to``'s ``do_munmap`` before
    ``vma_to_resize``), the model nothing.  The line touches that destination."""
    for i, op, got, want in case.earlier("mremap"):
        v = vars(op)
        src, dst = pages(op), range(v["new"], v["new"] + v["n"])
        if (got == want == "EFAULT" and not _meets(src, dst) and _same_process(case, i, case.op)
                and _meets(dst, pages(case.op))):
            return True
    return False


SPLITTERS: Final = ("mmap", "munmap", "mremap", "mprotect", "madvise")
"""The ops that can cut a VMA in two."""


def _edges(op: Op) -> list[int]:
    """The addresses where ``op`` can create a VMA boundary."""
    v = vars(op)
    if "old" in v:
        return [v["old"], v["old"] + v["n"], v["new"], v["new"] + v["n"]]
    return [v["s"], v["s"] + v["n"]]


def _boundaries(obs: Observation, pid: int) -> set[int]:
    proc = next((p for p in obs.processes if p.pid == pid), None)
    return {a for m in (proc.vmas if proc else ()) for a in (m.start, m.end)}


def _faults_only(case: Case) -> bool:
    """The line is a ``dread``/``dwrite`` whose results differ only in ``faults``, Linux's
    larger."""
    if case.key not in ("dread", "dwrite"):
        return False
    got, want = case.got.split(), case.want.split()
    return (got[:-1] == want[:-1] and got[-2:-1] == ["faults"]
            and int(got[-1]) > int(want[-1]))


def split_invalidates_block(case: Case) -> bool:
    """Appendix D27: a VMA split at an address a that is not 2 MiB aligned, in a VMA that
    holds a's whole 512-page block, invalidates that block in Linux 6.1 whether or not a
    PMD maps it (``__vma_adjust`` -> ``vma_adjust_trans_huge`` ->
    ``split_huge_pmd_address`` -> ``__split_huge_pmd``, whose ``MMU_NOTIFY_CLEAR`` over the
    block runs before it looks at the PMD; shmem included); the model splits, and
    invalidates, only PMD-mapped blocks.  dmirror drops its table entries in the block, so
    a later ``dread``/``dwrite`` there faults where the model's did not: the results differ
    only in ``faults``, and an earlier line of the mirror's process made such a split in a
    block of the line's pages while the mirror's table held a page of it."""
    if not _faults_only(case):
        return False
    dev = vars(case.op)["d"]
    pid = case.mirror_pid(dev)
    if pid is None:
        return False
    line = pages(case.op)[:4096]
    blocks = {v >> 9 for v in line}
    for i, op in enumerate(case.ops[:case.index]):
        if op_keyword(op) not in SPLITTERS or vars(op).get("p") != pid:
            continue
        cuts = [a for a in _edges(op) if a % 512 and a >> 9 in blocks]
        if not cuts:
            continue
        before, after = model_state(case.trace, i), model_state(case.trace, i + 1)
        proc = next((p for p in before.processes if p.pid == pid), None)
        table = {e.vpn for d in before.devices if d.id == dev for e in d.table}
        new = _boundaries(after, pid) - _boundaries(before, pid)
        for a in cuts:
            block = range(a & ~511, (a & ~511) + 512)
            held = table & set(block) & set(line)
            if a in new and held and any(m.start <= block.start and block.stop <= m.end
                                         for m in (proc.vmas if proc else ())):
                return True
    return False


def _needs_fault(entry: EntryView | None, write: bool) -> bool:
    """Whether hmm_range_fault must fault this CPU entry for a mirror access."""
    if entry is None or entry.cls in ("swap", "migration"):
        return True
    if entry.cls == "zero":
        return write
    return write and entry.cls == "present" and not entry.w


def fault_ahead(case: Case) -> bool:
    """Appendix D28: Linux 6.1's ``hmm_range_fault`` faults every page from the first one
    that needs a fault to the end of the walked piece (``hmm_vma_fault`` from
    ``hmm_vma_handle_pte``: ``handle_mm_fault`` on each page of [addr, end), end the end of
    the PMD, the VMA or dmirror's 64-page chunk), so the mirror's own device pages there
    take a CPU fault and migrate back to RAM (``do_swap_page`` -> ``migrate_to_ram``); the
    model's walk records them and faults only the pages that need it.  The line is a
    ``snapshot`` whose every differing page Linux shows as ``w`` or ``r`` and the model as
    ``dev-w`` or ``dev-r``, each covered by an earlier ``dread``/``dwrite`` of the same
    mirror that, in the model's state before it, had a page needing a fault below it in the
    same 512-page block."""
    if case.key != "snapshot":
        return False
    dev = vars(case.op)["d"]
    pid = case.mirror_pid(dev)
    diff = _snapshot_diff(case)
    if not diff or not all(g in ("w", "r") and w in ("dev-w", "dev-r") for _, g, w in diff):
        return False
    accesses = [(i, op) for i, op, _, _ in case.earlier("dread", "dwrite")
                if vars(op)["d"] == dev]

    def moved_back(vpn: int) -> bool:
        for i, op in accesses:
            span = pages(op)
            if vpn not in span:
                continue
            proc = next((p for p in model_state(case.trace, i).processes if p.pid == pid),
                        None)
            entries = {e.vpn: e for e in (proc.entries if proc else ())}
            own = entries.get(vpn)
            if own is None or own.cls != "device":
                continue
            write = op_keyword(op) == "dwrite"
            if any(_needs_fault(entries.get(u), write)
                   for u in range(max(span.start, vpn & ~511), vpn)):
                return True
        return False

    return all(moved_back(vpn) for vpn, _, _ in diff)


@dataclass(frozen=True)
class Deviation:
    """A SPEC Appendix D entry and the predicate that recognises it on Linux."""

    id: str  # "D7": SPEC Appendix D, entry 7
    title: str
    explains: Callable[[Case], bool]


DEVIATIONS: Final[tuple[Deviation, ...]] = (  # the line's own op first, then history
    Deviation("D1", "no huge zero page", huge_zero_page),
    Deviation("D6", "the owner's write walk on its own read-only device page",
              own_readonly_device_page),
    Deviation("D15", "migrate_to_dev skips pages mapped more than once", shared_pages_stay),
    Deviation("D26", "migrate_to_dev splits a PTE-mapped THP; Linux moves no compound page",
              pte_mapped_thp),
    Deviation("D21", "no memory limit but frames (overcommit, test_hmm's bounce buffer)",
              overcommit),
    Deviation("D22", "migrate_to_dev's result: device entries, not the mirror's table",
              migrate_result),
    Deviation("D24", "VMAs never merge; one bit of THP advice", vma_boundaries),
    Deviation("D25", "a mirror's device memory is device-frames pages", device_memory),
    Deviation("D27", "a VMA split invalidates a block only if a PMD maps it",
              split_invalidates_block),
    Deviation("D28", "a mirror fault faults only the pages that need it",
              fault_ahead),
    Deviation("D7", "mprotect is all-or-nothing on holes", mprotect_partial),
    Deviation("D20", "a failed mremap leaves its destination mapped",
              mremap_unmaps_destination),
    Deviation("D23", "migrate_to_dev checks the whole range before moving anything",
              chunked_migration),
    Deviation("D3", "a failed mirror access changes nothing (dmirror keeps partial progress)",
              partial_mirror_access),
    Deviation("D29", "a mirror's device memory is its own; another file's release evicts nothing",
              device_evicted),
)


def attribute(case: Case) -> str:
    """The id of the first deviation that explains ``case``, else ``unexplained``."""
    return next((d.id for d in DEVIATIONS if d.explains(case)), UNEXPLAINED)


def _capture(made: list[Implementation], factory: Factory,
             config: Config) -> Implementation:
    impl = factory(config)
    made.append(impl)
    return impl


def model_state(trace: Trace, index: int) -> Observation:
    """The reference model's state after the first ``index`` step lines of ``trace``."""
    made: list[Implementation] = []
    prefix = Trace(trace.headers, trace.steps[:index], trace.path)
    side = [("reference", partial(_capture, made, impls.factory("reference")))]
    run_trace(prefix, side, Settings(drain=False, checks=False))
    return made[0].observe()


def case_of(trace: Trace, linux: list[str], model: list[str | None], index: int) -> Case:
    ops = tuple(line.action for line in trace.steps
                if not isinstance(line.action, StepThread | RunThread))
    return Case(ops, index, tuple(linux), tuple(model), trace)
