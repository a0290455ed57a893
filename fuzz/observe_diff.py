"""The cheap comparison of observations: only what changed (issue 14).

The full comparison (SPEC §8.1) compares both sides' whole observations: its
cost follows the size of the state.  (It is :meth:`CheapJudge.full_agree`:
the whole raw observations through fresh pairings, which agree exactly when
the canonical observations are equal; only when they differ does the
executor renumber them, to judge and describe the difference.)  Between full
comparisons the executor compares only what either side says may have
changed since the last comparison (``Watched.changes``): those entries and
shared objects, those folios, device pages and swap slots, and the parts
every partial observation carries whole (each process's state, VMAs,
notifier and lock; devices, regions, jobs, threads, the totals; a
process's small parts, a device or a region is compared again only when
either side's view of it is not what both were when last found the same).
The rule it keeps::

    cheap says "differ"  ->  the full comparison decides (and is reported)
    cheap says "agree"   ->  the full comparison would too

The second line holds because every part it skips is one that neither side
changed since both were last found equal, and because identity is judged
by a **pairing**: a side's id (a folio, device page or slot) is paired with
the other side's id at the same place of the walk the first time one is
met, and must meet the same partner ever after.  Ids are never reused on
either side, so a pairing that held stays true; where the sides' ids
legitimately part ways (a THP split that one side numbers afresh), the
cheap comparison says "differ", the full one finds them equal, and its
fresh pairing is kept from then on.  A paired
page's view is compared when the pair is met and whenever either side says
it changed.  (A page's word, which entries also show, is in its view.)

``tests/reliability/test_watchers.py`` checks each side's ``changes``
against full observations taken before and after every step (nothing
changes unreported), and ``tests/quality/test_fast_judge.py`` that the fast
judge, which uses this, reports the first finding the full judge does.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Protocol, TypeVar

from model.interface import Watched
from model.observation import (
    Changes,
    DeviceView,
    EntryView,
    Numbering,
    ObjectView,
    ProcessView,
    RawObservation,
    Ref,
    RegionView,
    ThreadView,
)
from model.ops import thread_order

_SPACES = ("folio", "dpage", "swap")
T = TypeVar("T")


class Call(Protocol):
    """How the judge runs a side's code: ``call(side index, fn)``."""

    def __call__(self, side: int, fn: Callable[[], T]) -> T: ...


def _direct(side: int, fn: Callable[[], T]) -> T:
    return fn()


@dataclass
class Pairing:
    """One side's ids paired with another's, per space (``zero`` needs none)."""

    fwd: dict[str, dict[Hashable, Hashable]] = field(
        default_factory=lambda: {s: {} for s in _SPACES})
    back: dict[str, dict[Hashable, Hashable]] = field(
        default_factory=lambda: {s: {} for s in _SPACES})
    fresh: list[tuple[str, Hashable, Hashable]] = field(default_factory=list)
    """The pairs made since the last comparison began (their views unseen)."""
    agreed: dict[Hashable, tuple[object, object]] = field(default_factory=dict)
    """A part every partial observation carries whole, by its key, as both
    sides had it when last found the same: not compared again while both
    still have it so (its ids were paired then)."""

    def seed(self, a: Numbering, b: Numbering) -> None:
        """The pairing of two equal canonical observations' numberings."""
        for space in _SPACES:
            theirs: dict[Hashable, int] = b.get(space, {})  # type: ignore[call-overload]
            mine: dict[Hashable, int] = a.get(space, {})  # type: ignore[call-overload]
            by_num = {num: raw for raw, num in theirs.items()}
            self.fwd[space] = {raw: by_num[num] for raw, num in mine.items() if num in by_num}
            self.back[space] = {v: k for k, v in self.fwd[space].items()}
        self.agreed.clear()

    def same(self, x: Ref, y: Ref) -> bool:
        """Whether ``x`` (side a) and ``y`` (side b) may be the same page: the
        same space and index, and ids paired with each other (or with nobody
        yet: then they are from now on)."""
        if x.space != y.space or x.index != y.index:
            return False
        if x.space == "zero":
            return True
        partner = self.fwd[x.space].get(x.raw, _NOBODY)
        if partner is _NOBODY:
            if y.raw in self.back[x.space]:
                return False
            self.fwd[x.space][x.raw] = y.raw
            self.back[x.space][y.raw] = x.raw
            self.fresh.append((x.space, x.raw, y.raw))
            return True
        return partner == y.raw


_NOBODY: Final = object()


def _entries(xs: Sequence[EntryView], ys: Sequence[EntryView], pair: Pairing) -> bool:
    return len(xs) == len(ys) and all(
        x[:6] == y[:6] and pair.same(x.ref, y.ref) for x, y in zip(xs, ys, strict=True))


def _process(x: ProcessView, y: ProcessView, pair: Pairing) -> bool:
    """The same process: its entries (those listed), and its state, VMAs,
    notifier and lock unless both are as when last found the same."""
    small = ((x.state, x.vmas, x.notifier, x.mmap_lock),
             (y.state, y.vmas, y.notifier, y.mmap_lock))
    if pair.agreed.get(("process", x.pid)) != small:
        if small[0] != small[1]:
            return False
        pair.agreed[("process", x.pid)] = small
    return _entries(sorted(x.entries), sorted(y.entries), pair)


def _pins(xs: Sequence[tuple[int, Ref]], ys: Sequence[tuple[int, Ref]], pair: Pairing) -> bool:
    return len(xs) == len(ys) and all(
        kx == ky and pair.same(rx, ry)
        for (kx, rx), (ky, ry) in zip(sorted(xs, key=_first), sorted(ys, key=_first), strict=True))


def _first(pin: tuple[int, Ref]) -> int:
    return pin[0]


def _object(x: ObjectView, y: ObjectView, pair: Pairing) -> bool:
    return x.size == y.size and _pins(x.resident, y.resident, pair)


def _device(x: DeviceView, y: DeviceView, pair: Pairing) -> bool:
    if (x.kind, x.pid, x.dead, x.lock_holder, x.pages_in_use, len(x.table)) != \
            (y.kind, y.pid, y.dead, y.lock_holder, y.pages_in_use, len(y.table)):
        return False
    return all(tx.vpn == ty.vpn and tx.w == ty.w and pair.same(tx.target, ty.target)
               for tx, ty in zip(sorted(x.table), sorted(y.table), strict=True))


def _region(x: RegionView, y: RegionView, pair: Pairing) -> bool:
    return ((x.kind, x.device, x.start, x.n, x.mode, x.valid, x.dying, x.active, x.valid_seq)
            == (y.kind, y.device, y.start, y.n, y.mode, y.valid, y.dying, y.active, y.valid_seq)
            and _pins(x.pins, y.pins, pair))


P = TypeVar("P", ProcessView, ObjectView, DeviceView, RegionView)


def _parts(xs: Sequence[P], ys: Sequence[P], key: Callable[[P], int],
           same: Callable[[P, P, Pairing], bool], pair: Pairing, carried: str = "") -> bool:
    """Parts listed by both sides under the same keys, each pair the same;
    a part ``carried`` whole is not compared again while both sides have it
    as when last found the same."""
    if not xs and not ys:
        return True
    kx, ky = {key(x): x for x in xs}, {key(y): y for y in ys}
    if kx.keys() != ky.keys():
        return False
    for k, x in kx.items():
        both = (x, ky[k])
        if carried and pair.agreed.get((carried, k)) == both:
            continue
        if not same(x, ky[k], pair):
            return False
        if carried:
            pair.agreed[(carried, k)] = both
    return True


def agree(a: RawObservation, b: RawObservation, pair: Pairing, asked_a: Changes,
          asked_b: Changes) -> bool:
    """The cheap comparison of side a's partial observation with side b's
    (``Watched.observe_parts`` of the same parts): False if anything differs
    or cannot be told without the full comparison.  The pages' views looked
    up: those of pairs made now, and of pages either side says changed."""
    pair.fresh.clear()
    if not (_parts(a.processes, b.processes, lambda p: p.pid, _process, pair)
            and _parts(a.objects, b.objects, lambda o: o.id, _object, pair)
            and _parts(a.devices, b.devices, lambda d: d.id, _device, pair, "device")
            and _parts(a.regions, b.regions, lambda r: r.id, _region, pair, "region")
            and sorted(a.jobs) == sorted(b.jobs)
            and sorted(a.threads, key=_thread) == sorted(b.threads, key=_thread)
            and (a.pages_in_use, a.swap_in_use) == (b.pages_in_use, b.swap_in_use)):
        return False
    pages = set(pair.fresh)
    for space, mine, theirs in zip(_SPACES, _page_ids(asked_a), _page_ids(asked_b), strict=True):
        fwd, back = pair.fwd[space], pair.back[space]
        pages.update((space, x, fwd[x]) for x in mine if x in fwd)
        pages.update((space, back[y], y) for y in theirs if y in back)
    views_a, views_b = _page_views(a), _page_views(b)
    return all(views_a[space].get(x) == views_b[space].get(y) for space, x, y in pages)


def _page_ids(c: Changes) -> tuple[set[Hashable], set[Hashable], set[Hashable]]:
    """The folios, device pages and slots ``c`` names, in ``_SPACES`` order."""
    return c.folios, c.device_pages, c.swap_slots


def _named(c: Changes) -> bool:
    """Whether ``c`` names anything."""
    return bool(c.processes or c.entries or c.objects or c.folios or c.device_pages
                or c.swap_slots)


def _page_views(raw: RawObservation) -> dict[str, Mapping[Hashable, object]]:
    """``raw``'s page views by space."""
    return dict(zip(_SPACES, (raw.folios, raw.device_pages, raw.swap_slots), strict=True))


def _thread(t: ThreadView) -> tuple[int, int]:
    return thread_order(t.name)


def _pages(own: Changes, *others: tuple[Changes, dict[str, dict[Hashable, Hashable]]]
           ) -> tuple[set[Hashable], set[Hashable], set[Hashable]]:
    """A side's changed folios, device pages and slots, with those other
    sides say changed, in this side's ids (each through its pairing's table
    into this side)."""
    folios, dpages, slots = (set(ids) for ids in _page_ids(own))
    out = (folios, dpages, slots)
    for theirs, table in others:
        for mine, ids, space in zip(out, _page_ids(theirs), _SPACES, strict=True):
            paired = table[space]
            mine.update(paired[x] for x in ids if x in paired)
    return out


class CheapJudge:
    """The cheap comparisons of one session's sides: the first side against
    each other one, each pair with its :class:`Pairing`."""

    def __init__(self, sides: Sequence[Watched]) -> None:
        self.sides = list(sides)
        self.pairings = [Pairing() for _ in self.sides[1:]]

    def agree(self, call: Call = _direct) -> bool:
        """Take each side's changes and compare what they name; False if the
        full comparison must decide.  ``call(side, fn)`` runs each side's
        code (the executor's, which makes a side's exception its finding)."""
        impls = self.sides
        changes = [call(i, impl.changes) for i, impl in enumerate(impls)]
        asked = self._asked(changes)
        raw0 = call(0, partial(impls[0].observe_parts, asked[0]))
        for i, pairing in enumerate(self.pairings, 1):
            raw = call(i, partial(impls[i].observe_parts, asked[i]))
            if not agree(raw0, raw, pairing, changes[0], changes[i]):
                return False
        return True

    def _asked(self, changes: Sequence[Changes]) -> list[Changes]:
        """What each side observes: the entries and objects any side names,
        and the pages any side names, in this side's ids (when no side names
        anything, only the parts every observation carries whole)."""
        if not any(map(_named, changes)):
            return [Changes() for _ in changes]
        processes: set[int] = set()
        entries: dict[int, set[int]] = {}
        objects: set[int] = set()
        for c in changes:
            processes |= c.processes
            for pid, vpns in c.entries.items():
                entries.setdefault(pid, set()).update(vpns)
            objects |= c.objects
        first = Changes(processes, entries, objects, *_pages(
            changes[0], *((c, p.back) for c, p in zip(changes[1:], self.pairings, strict=True))))
        return [first, *(Changes(processes, entries, objects, *_pages(c, (changes[0], p.fwd)))
                         for c, p in zip(changes[1:], self.pairings, strict=True))]

    def full_agree(self, raws: Sequence[RawObservation]) -> bool:
        """The full comparison of whole raw observations (``observe_raw``):
        every part, through fresh pairings, and every paired page's view --
        true exactly when their canonical observations are equal, without
        renumbering them.  When true, the fresh pairings are kept."""
        fresh = [Pairing() for _ in raws[1:]]
        none = Changes()
        if all(agree(raws[0], raw, pairing, none, none)
               for raw, pairing in zip(raws[1:], fresh, strict=True)):
            self.pairings = fresh
            return True
        return False

    def seed(self, numberings: Sequence[Numbering]) -> None:
        """After the full comparison found the sides equal: pair their ids as
        its numbering did."""
        for pairing, theirs in zip(self.pairings, numberings[1:], strict=True):
            pairing.seed(numberings[0], theirs)
