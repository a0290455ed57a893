"""The coherence oracle of SPEC §8.3 (invariants 4 ``coherence`` and 5
``fork_isolation``), kept by the executor for both implementations at once.

The rule: CPU and device accesses to one address of a process see the last
word written there by the CPU or any device.

* A **key** is ``("P", pid, vpn)`` for a private page or ``("O", obj, index)``
  for a shared-object page; a missing key reads 0.  Addresses resolve with
  the VMAs *before* the step in which the op completes.
* **Writes** (a successful ``write``, ``dwrite``, write job, ``dma`` write)
  set the keys they wrote.
* **Key changes** on completion with ``ok`` (``dontneed``: also ``ENOMEM``):
  ``munmap``, ``mmap``, ``dontneed``, ``exit`` delete the private keys in
  their range; ``mremap`` deletes the destination's keys and moves the
  source's private keys there; ``fork`` copies P's private keys to the child.
* **Unknown keys**: a key in a delete op's range written while that op was in
  flight becomes unknown instead of deleted (``mremap``: such a key in either
  range makes its destination key unknown; ``fork``: such a key of P makes
  the child's copy unknown).  An unknown key accepts any word until its next
  write.
* **Detached regions**: a ``pin`` region's page at a shared address keeps the
  key it had when pinned; a page at a private address (P, v) is detached once
  P is ``oomreap``-ed or a ``munmap``, ``mmap``, ``mremap`` (source, or
  destination: DECISIONS.md D22), ``dontneed`` or ``exit`` covering v
  completes; ``dma`` through a detached page neither sets nor checks a key,
  except that a ``dma`` write makes unknown the key of the address where the
  page may still be mapped: its own after ``oomreap`` (D25), where an
  ``mremap`` moved it (D30).
* **Zapped in flight** (DECISIONS.md D18): a private key in the range of a
  delete op still in flight (``munmap``, ``mmap``, ``dontneed``, ``mremap``,
  ``exit``, ``oomreap``) may also read 0: an op that holds ``mmap_lock`` only
  for reading (``dontneed``, ``oomreap``) lets a faulting reader in after
  its apply zapped the page and before the op completes.
* **Moved in flight** (DECISIONS.md D29): a private key in the destination of
  an ``mremap`` still in flight may also read its source key's word: a CPU
  access to a present entry takes no ``mmap_lock``, so it sees the moved
  page between the move and the op's completion.
* **Range accesses** (``read_range``, ``write_range``: one page per step)
  are judged like their single-page ops when no other thread stepped during
  their flight; otherwise a ``write_range`` makes its keys unknown and a
  ``read_range`` is not checked.  A ``write_range`` that fails part-way
  makes its keys unknown (the pages before the failing one were written).
  While a ``write_range`` is in flight, the keys its pages resolved to when
  it started, or at any op's completion since, accept any word (its early
  pages are written before it completes; an ``mmap`` made before its first
  step gives its pages keys it writes too).
* **Checks**: every CPU ``read``, ``read_range``, ``dread``, completed read job and ``dma``
  read must return ``last[key]`` for each page.  A mismatch is
  ``fork_isolation`` when the key is private and its process was created by
  fork or has forked, ``coherence`` otherwise.

The oracle knows nothing of either implementation: the executor tells it
which op completed, with which result, and the VMAs it resolved against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from model.observation import VmaView
from model.ops import (
    ADDRESS_PAGES,
    SCHEMA_BY_CLASS,
    Complete,
    Dma,
    Err,
    Errno,
    Exit,
    Fork,
    HandleResult,
    Madvise,
    Mmap,
    Mremap,
    Munmap,
    Num,
    Ok,
    Oomreap,
    Op,
    Open,
    OpResult,
    Pin,
    Read,
    ReadRange,
    Reg,
    Submit,
    Values,
    Write,
    WriteRange,
)

Key = tuple[str, int, int]
VmaLookup = Callable[[int], tuple[VmaView, ...]]


@dataclass(frozen=True)
class Incoherence:
    """A read that did not see the last word written (invariant 4 or 5)."""

    invariant: str  # "coherence" or "fork_isolation"
    key: Key
    expected: int
    got: int

    def __str__(self) -> str:
        kind, a, b = self.key
        where = f"P{a} vpn {b}" if kind == "P" else f"O{a} page {b}"
        return f"{where}: read {self.got}, last written {self.expected}"


@dataclass
class _Region:
    """A userptr object or pin region, as the executor knows it statically."""

    kind: str  # "userptr" | "pin"
    pid: int
    start: int
    n: int
    pinned_keys: dict[int, Key] = field(default_factory=dict)  # pin: shared pages
    detached: set[int] = field(default_factory=set)  # pin: detached private pages
    shadow: dict[int, Key] = field(default_factory=dict)
    """pin: a detached page that may still be mapped at a private address: the key there (the
    OOM reaper left its VMA, D25; an mremap moved it, D30).  A DMA write makes it unknown."""


@dataclass
class _Flight:
    """A delete-type op in flight: the private pages it may zap before it
    completes, and the keys written meanwhile."""

    pid: int = -1
    ranges: tuple[tuple[int, int], ...] = ()
    written: set[Key] = field(default_factory=set)
    move: tuple[int, int, int] | None = None  # mremap: (old, new, n)

    def covers(self, key: Key) -> bool:
        return key[0] == "P" and key[1] == self.pid and any(
            start <= key[2] < end for start, end in self.ranges)

    def moved_from(self, key: Key) -> Key | None:
        """The source key whose page an ``mremap`` in flight may already have
        moved to ``key`` (its destination), D29."""
        if self.move is None or key[0] != "P" or key[1] != self.pid:
            return None
        old, new, n = self.move
        return ("P", self.pid, key[2] - new + old) if new <= key[2] < new + n else None


@dataclass
class _Writing:
    """A ``write_range`` in flight: the keys its pages resolved to at its
    start and at every completion since, and the VMAs last resolved under."""

    op: WriteRange
    keys: set[Key] = field(default_factory=set)
    views: tuple[VmaView, ...] | None = None


def resolve(vmas: Iterable[VmaView], pid: int, vpn: int) -> Key | None:
    """The key of (pid, vpn) under ``vmas``, or None outside every VMA."""
    for vma in vmas:
        if vma.start <= vpn < vma.end:
            if vma.kind == "shared" and vma.obj is not None and vma.offset is not None:
                return ("O", vma.obj, vma.offset + vpn - vma.start)
            return ("P", pid, vpn)
    return None


def _device_field(op: Op) -> str | None:
    """The field naming the device ``op`` works on, if any (its declaration)."""
    decl = SCHEMA_BY_CLASS.get(type(op))
    return None if decl is None else next(
        (a.field for a in decl.args if a.role == "device"), None)


def _device_access(op: Op) -> bool:
    """``op`` reads or writes its device's process memory at [s, s+n) when
    it completes, by its declaration: a device op with an address and a
    count that creates nothing (``dread``, ``dwrite``, a plug-in's accesses;
    ``snapshot``'s and ``migrate_to_dev``'s results are no ``values`` and
    they take no word, so they neither write nor check)."""
    decl = SCHEMA_BY_CLASS.get(type(op))
    return (decl is not None and decl.reserves is None and _device_field(op) is not None
            and decl.has("addr") and decl.has("count"))


def _word(x: int | None, stride: int | None, k: int) -> int:
    return (x or 0) + k * (stride or 0)


class Oracle:
    """Tracks ``last[key]`` and judges every value an op returns."""

    def __init__(self) -> None:
        self.last: dict[Key, int] = {}
        self.unknown: set[Key] = set()
        self.forked: set[int] = set()
        self.devices: dict[int, int] = {}  # device number -> pid
        self.regions: dict[int, _Region] = {}
        self.jobs: dict[int, Submit] = {}
        self.flights: dict[str, _Flight] = {}
        self.alone: dict[str, bool] = {}  # range accesses in flight: no other thread stepped
        self.range_steps: dict[str, int] = {}  # their steps so far (a page takes one at least)
        self.writing: dict[str, _Writing] = {}  # write_range in flight

    # ------------------------------------------------------------ lifecycle

    def pids_for(self, op: Op) -> set[int]:
        """The processes whose VMAs ``op``'s completion may resolve against."""
        pid: int | None = None
        if isinstance(op, Read | Write | ReadRange | WriteRange):
            pid = op.p
        elif (dev := _device_field(op)) is not None:
            pid = self.devices.get(getattr(op, dev))
        elif isinstance(op, Complete):
            job = self.jobs.get(op.j)
            region = self.regions.get(job.r) if job is not None else None
            pid = region.pid if region is not None else None
        writers = {w.op.p for w in self.writing.values()}  # their keys are refreshed
        return writers if pid is None else {pid} | writers

    def stepped(self, thread: str) -> None:
        """``thread`` took a step that was not blocked."""
        if thread in self.range_steps:
            self.range_steps[thread] += 1
        for other in self.alone:
            if other != thread:
                self.alone[other] = False

    def started(self, thread: str, op: Op, vmas: VmaLookup | None = None) -> None:
        """``thread`` starts ``op``; delete-type ops open a flight.  ``vmas(pid)``
        gives the VMAs at the start (for the keys a ``write_range`` writes)."""
        if isinstance(op, ReadRange | WriteRange):
            self.alone[thread] = True
            self.range_steps[thread] = 0
        if isinstance(op, WriteRange) and vmas is not None:
            self.writing[thread] = _Writing(op)
            self._writing_keys(vmas)
        if isinstance(op, Munmap | Mmap) or (
            isinstance(op, Madvise) and op.advice == "dontneed"
        ):
            self.flights[thread] = _Flight(op.p, ((op.s, op.s + op.n),))
        elif isinstance(op, Mremap):
            self.flights[thread] = _Flight(op.p, ((op.old, op.old + op.n),
                                                  (op.new, op.new + op.n)),
                                           move=(op.old, op.new, op.n))
        elif isinstance(op, Exit | Oomreap):
            self.flights[thread] = _Flight(op.p, ((0, ADDRESS_PAGES),))
        elif isinstance(op, Fork):
            self.flights[thread] = _Flight(op.p)

    def completed(
        self, thread: str, op: Op, result: OpResult, vmas: VmaLookup
    ) -> list[Incoherence]:
        """``thread``'s ``op`` finished with ``result``; ``vmas(pid)`` gives the
        VMAs before the completing step.  Returns the incoherent reads."""
        flight = self.flights.pop(thread, _Flight())
        ok = isinstance(result, Ok)
        problems: list[Incoherence] = []
        self._writing_keys(vmas)
        if isinstance(op, Write) and ok:
            key = resolve(vmas(op.p), op.p, op.v)
            if key is not None:
                self._write(key, op.x)
        elif isinstance(op, Read) and isinstance(result, Num):
            problems += self._check(resolve(vmas(op.p), op.p, op.v), result.value)
        elif isinstance(op, ReadRange | WriteRange):
            self.writing.pop(thread, None)
            steps = self.range_steps.pop(thread, op.n)
            problems += self._range(op, result, vmas(op.p), self.alone.pop(thread, False), steps)
        elif _device_access(op):
            problems += self._mirror(op, result, vmas)
        elif isinstance(op, Open) and isinstance(result, HandleResult):
            self.devices[op.dev] = op.p
        elif isinstance(op, Reg | Pin) and isinstance(result, HandleResult):
            self._new_region(op, vmas)
        elif isinstance(op, Submit) and isinstance(result, HandleResult):
            self.jobs[op.job] = op
        elif isinstance(op, Dma):
            problems += self._dma(op, result)
        elif isinstance(op, Complete):
            problems += self.job_completed(op.j, result, vmas)
        elif isinstance(op, Oomreap) and ok:
            self._detach(op.p, 0, ADDRESS_PAGES, reaped=True)
        else:
            self._key_changes(op, result, flight)
        return problems

    def job_completed(self, job: int, result: OpResult, vmas: VmaLookup) -> list[Incoherence]:
        """``complete J`` gave ``result``: a write job writes, a read job is checked."""
        sub = self.jobs.pop(job, None)
        region = self.regions.get(sub.r) if sub else None
        if sub is None or region is None:
            return []
        views = vmas(region.pid)
        problems: list[Incoherence] = []
        for k in range(sub.cnt):
            vpn = region.start + sub.off + k
            key = resolve(views, region.pid, vpn)
            if sub.direction == "write" and isinstance(result, Ok):
                if key is not None:
                    self._write(key, _word(sub.x, sub.stride, k))
            elif isinstance(result, Values) and k < len(result.values):
                problems += self._check(key, result.values[k])
        return problems

    # -------------------------------------------------------------- helpers

    def _writing_keys(self, vmas: VmaLookup) -> None:
        """Add to each ``write_range`` in flight the keys its pages resolve to
        under ``vmas`` now: a mapping made after it started (an ``mmap`` while
        it waited for its first step) gives its pages keys it may write."""
        for w in self.writing.values():
            views = vmas(w.op.p)
            if w.views == views:
                continue  # the same VMAs: the same keys
            w.views, op = views, w.op
            keys = (resolve(views, op.p, op.v + k) for k in range(max(0, min(op.n, 1 << 13))))
            w.keys.update(key for key in keys if key is not None)

    def _write(self, key: Key, word: int) -> None:
        self.last[key] = word
        self.unknown.discard(key)
        for flight in self.flights.values():
            flight.written.add(key)

    def _check(self, key: Key | None, got: int) -> list[Incoherence]:
        if key is None or key in self.unknown:
            return []
        if any(key in w.keys for w in self.writing.values()):
            return []  # a write_range in flight may have written it already
        expected = self.last.get(key, 0)
        if got == expected:
            return []
        if got == 0 and any(flight.covers(key) for flight in self.flights.values()):
            return []  # zapped by a delete op still in flight (D18)
        for flight in self.flights.values():
            source = flight.moved_from(key)
            if source is not None and (source in self.unknown
                                       or got == self.last.get(source, 0)):
                return []  # moved there by an mremap still in flight (D29)
        private_forked = key[0] == "P" and key[1] in self.forked
        name = "fork_isolation" if private_forked else "coherence"
        return [Incoherence(name, key, expected, got)]

    def _range(self, op: ReadRange | WriteRange, result: OpResult, views: tuple[VmaView, ...],
               alone: bool, steps: int) -> list[Incoherence]:
        """A range access that took ``steps`` steps.  One that failed reached
        at most its first ``steps + 1`` pages (a page takes a step at least),
        so a failure at once over 2^36 pages is judged in O(steps), not O(n)."""
        problems: list[Incoherence] = []
        reached = op.n if isinstance(result, Ok | Values) else min(op.n, steps + 1)
        for k in range(reached):
            key = resolve(views, op.p, op.v + k)
            if key is None:
                continue
            if isinstance(op, WriteRange):
                if alone and isinstance(result, Ok):
                    self._write(key, _word(op.x, op.stride, k))
                else:
                    self._write(key, 0)
                    self.unknown.add(key)
            elif alone and isinstance(result, Values) and k < len(result.values):
                problems += self._check(key, result.values[k])
        return problems

    def _mirror(self, op: Op, result: OpResult, vmas: VmaLookup) -> list[Incoherence]:
        """A device access at its process's addresses [s, s+n) (``dread``,
        ``dwrite``, a plug-in's like ops): its ``values`` are checked, its
        word written on ``ok``, at its completion."""
        decl = SCHEMA_BY_CLASS[type(op)]
        dev, s, n = (next(getattr(op, a.field) for a in decl.args if a.role == role)
                     for role in ("device", "addr", "count"))
        pid = self.devices.get(dev)
        if pid is None:
            return []
        x = next((getattr(op, a.field) for a in decl.args if a.role == "word"), None)
        stride = next((getattr(op, a.field) for a in decl.args if a.role == "stride"), None)
        views = vmas(pid)
        problems: list[Incoherence] = []
        for k in range(n if isinstance(result, Values | Ok) else 0):
            key = resolve(views, pid, s + k)
            if decl.has("word") and isinstance(result, Ok) and key is not None:
                self._write(key, _word(x, stride, k))
            elif isinstance(result, Values) and k < len(result.values):
                problems += self._check(key, result.values[k])
        return problems

    def _new_region(self, op: Reg | Pin, vmas: VmaLookup) -> None:
        pid = self.devices.get(op.d)
        if pid is None:
            return
        region = _Region("pin" if isinstance(op, Pin) else "userptr", pid, op.s, op.n)
        if isinstance(op, Pin):
            views = vmas(pid)
            for k in range(op.n):
                key = resolve(views, pid, op.s + k)
                if key is not None and key[0] == "O":
                    region.pinned_keys[k] = key
        self.regions[op.region] = region

    def _dma_key(self, region: _Region, k: int) -> Key | None:
        if k in region.pinned_keys:
            return region.pinned_keys[k]
        if k in region.detached:
            return None
        return ("P", region.pid, region.start + k)

    def _dma(self, op: Dma, result: OpResult) -> list[Incoherence]:
        region = self.regions.get(op.r)
        if region is None:
            return []
        problems: list[Incoherence] = []
        for k in range(op.cnt):
            key = self._dma_key(region, op.off + k)
            if key is None:
                if op.direction == "write" and op.off + k in region.shadow:
                    self.unknown.add(region.shadow[op.off + k])
                continue
            if op.direction == "write" and isinstance(result, Ok):
                self._write(key, _word(op.x, op.stride, k))
            elif isinstance(result, Values) and k < len(result.values):
                problems += self._check(key, result.values[k])
        return problems

    def _detach(self, pid: int, start: int, end: int, *, reaped: bool = False) -> None:
        """Detach P's pin pages in [start, end); ``reaped``: by the OOM reaper,
        which leaves a VMA whose non-blockable callback failed as it was, so
        the page may still be the one mapped there: a DMA write through it
        makes that key unknown (D25).  Otherwise a page mapped in [start,
        end) is gone from there: so is a shadow there."""
        for region in self.regions.values():
            if region.kind == "pin" and region.pid == pid:
                for k in range(region.n):
                    if start <= region.start + k < end and k not in region.pinned_keys:
                        if reaped and k not in region.detached:
                            region.shadow[k] = ("P", pid, region.start + k)
                        region.detached.add(k)
                if not reaped:
                    for k in [k for k, key in region.shadow.items() if start <= key[2] < end]:
                        del region.shadow[k]

    def _moved_pins(self, op: Mremap) -> list[tuple[_Region, int, int]]:
        """The pin pages an ``mremap`` moves (region, page, its new address): those
        whose page is mapped in the source, at their own address or a shadow's."""
        out = []
        for region in self.regions.values():
            if region.kind != "pin" or region.pid != op.p:
                continue
            for k in range(region.n):
                if k in region.pinned_keys:
                    continue
                at = (region.shadow[k][2] if k in region.shadow else
                      None if k in region.detached else region.start + k)
                if at is not None and op.old <= at < op.old + op.n:
                    out.append((region, k, at - op.old + op.new))
        return out

    def _private_keys(self, pid: int, start: int, end: int) -> list[Key]:
        return [key for key in self.last.keys() | self.unknown
                if key[0] == "P" and key[1] == pid and start <= key[2] < end]

    def _forget(self, key: Key, flight: _Flight) -> None:
        self.last.pop(key, None)
        if key in flight.written:
            self.unknown.add(key)
        else:
            self.unknown.discard(key)

    def _delete_range(self, pid: int, start: int, end: int, flight: _Flight) -> None:
        for key in self._private_keys(pid, start, end):
            self._forget(key, flight)
        for key in flight.written:  # written in flight, then deleted: unknown
            if key[0] == "P" and key[1] == pid and start <= key[2] < end:
                self.unknown.add(key)
        self._detach(pid, start, end)

    def _key_changes(self, op: Op, result: OpResult, flight: _Flight) -> None:
        ok = isinstance(result, Ok)
        if isinstance(op, Munmap | Mmap) and ok:
            self._delete_range(op.p, op.s, op.s + op.n, flight)
        elif isinstance(op, Madvise) and op.advice == "dontneed" and (
            ok or result == Err(Errno.ENOMEM)
        ):
            self._delete_range(op.p, op.s, op.s + op.n, flight)
        elif isinstance(op, Exit) and ok:
            self._delete_range(op.p, 0, ADDRESS_PAGES, flight)
        elif isinstance(op, Mremap) and ok:
            self._mremap(op, flight)
        elif isinstance(op, Fork) and isinstance(result, HandleResult):
            self._fork(op, flight)

    def _mremap(self, op: Mremap, flight: _Flight) -> None:
        source = self._private_keys(op.p, op.old, op.old + op.n)
        saved = {key[2] - op.old: (self.last.get(key), key in self.unknown) for key in source}
        for key in source + self._private_keys(op.p, op.new, op.new + op.n):
            self.last.pop(key, None)
            self.unknown.discard(key)
        for k, (word, unknown) in saved.items():
            dest: Key = ("P", op.p, op.new + k)
            if unknown:
                self.unknown.add(dest)
            elif word is not None:
                self.last[dest] = word
        for kind, pid, vpn in flight.written:
            if kind != "P" or pid != op.p:
                continue
            for base in (op.old, op.new):
                if base <= vpn < base + op.n:
                    dest = ("P", op.p, op.new + vpn - base)
                    self.last.pop(dest, None)
                    self.unknown.add(dest)
        moved = self._moved_pins(op)
        self._detach(op.p, op.old, op.old + op.n)
        self._detach(op.p, op.new, op.new + op.n)  # applied as munmap (DECISIONS D22)
        for region, k, at in moved:  # the pinned page is mapped there now (D30)
            region.detached.add(k)
            region.shadow[k] = ("P", op.p, at)

    def _fork(self, op: Fork, flight: _Flight) -> None:
        self.forked.update((op.p, op.child))
        in_flight = {key for w in self.writing.values() for key in w.keys}
        for key in self._private_keys(op.p, 0, ADDRESS_PAGES) + sorted(
                k for k in in_flight if k[0] == "P" and k[1] == op.p):
            child: Key = ("P", op.child, key[2])
            if key in self.unknown or key in flight.written or key in in_flight:
                self.unknown.add(child)  # a write_range in flight may have written it first
            else:
                self.last[child] = self.last[key]
