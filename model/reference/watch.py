"""What changed in the reference state since the last look: the reference's
side of ``Watched.changes`` (issue 14), for the executor's cheap comparison
of observations (``fuzz/observe_diff.py``).  Not part of the executable
spec: an observer of it, with its own size budget
(``tests/unit/test_reference_size.py``).

Page tables and shared objects are compared with a copy taken at the last
look: entries are frozen values, so an entry nobody replaced is the same
object and a page table compares at C speed.  Folios, device pages and
swap slots are looked at only where the reference wrote since the last look:
its plain record of touched keys (``State.touched``, which this watcher
starts: ``State.note`` at each write, and what ``mm.collect`` was given to
free), each compared with its copy, so the look costs what the steps
touched, not the size of the state.  ``tests/reliability/test_watchers.py``
holds the record to full observations taken before and after every step.
"""

from __future__ import annotations

from model.observation import Changes, DevicePageView, PageViews, RawObservation, SwapSlotView
from model.ops import thread_order

from .observe import folio_view, raw_observation
from .state import Entry, State
from .threads import Thread


class Watching:
    """The reference kernel's side of ``model.interface.Watched`` (a mixin:
    the kernel has ``state`` and ``threads``)."""

    state: State
    threads: dict[str, Thread]
    _watcher: Watcher | None = None

    def _live(self) -> list[Thread]:
        return [self.threads[n] for n in sorted(self.threads, key=thread_order)]

    def observe_raw(self) -> RawObservation:
        return raw_observation(self.state, self._live())

    def changes(self) -> Changes:
        if self._watcher is None:
            self._watcher = Watcher()
        return self._watcher.changes(self.state)

    def observe_parts(self, parts: Changes) -> RawObservation:
        return observe_parts(self.state, self._live(), parts)

    def footprint(self) -> int:
        st = self.state
        return (sum(len(p.pt) for p in st.procs.values() if p.state != "dead") + st.frames_used
                + sum(not d.freed for d in st.dpages.values())
                + sum(not s.freed for s in st.slots.values()))


def observe_parts(st: State, threads: list[Thread], parts: Changes) -> RawObservation:
    """The parts, and page views built when looked up."""
    raw = raw_observation(st, threads, parts)
    raw.folios = PageViews(lambda f: folio_view(st.folios[f]) if f in st.live else None)
    raw.device_pages = PageViews(lambda d: None if d not in st.dpages or st.dpages[d].freed
                                 else DevicePageView(st.dpages[d].owner, st.dpages[d].refcount,
                                                     st.dpages[d].word))
    raw.swap_slots = PageViews(lambda s: None if s not in st.slots or st.slots[s].freed
                               else SwapSlotView(st.slots[s].word, st.slots[s].count))
    return raw


class Watcher:
    """The copies taken at the last look, and what differs from them now."""

    def __init__(self) -> None:
        self.procs: dict[int, tuple[dict[int, Entry], set[int]]] = {}
        self.objects: dict[int, tuple[bool, dict[int, int]]] = {}
        # each live page's counts and words at the last look (``_counts``)
        self.folios: dict[int, tuple[object, ...]] = {}
        self.dpages: dict[int, tuple[object, ...]] = {}
        self.slots: dict[int, tuple[object, ...]] = {}

    def changes(self, st: State) -> Changes:
        out = Changes()
        for pid, proc in st.procs.items():
            was = self.procs.get(pid)
            if was is None:
                out.processes.add(pid)
            elif was[0] != proc.pt or was[1] != proc.pmds:
                pt, pmds = was
                out.entries[pid] = ({v for v, e in proc.pt.items() if pt.get(v) is not e}
                                    | (pt.keys() - proc.pt.keys())
                                    | {b + i for b in pmds ^ proc.pmds for i in range(512)})
            else:
                continue
            self.procs[pid] = (dict(proc.pt), set(proc.pmds))
        for oid, o in st.objects.items():
            seen = self.objects.get(oid)
            if seen is None or seen[0] != o.alive or seen[1] != o.pages:
                out.objects.add(oid)
                self.objects[oid] = (o.alive, dict(o.pages))
        if st.touched is None:  # the first look: every page, and the record starts
            keys = ({("folio", f) for f in st.live} | {("dpage", d) for d in st.dpages}
                    | {("slot", s) for s in st.slots})
            st.touched = set()
        else:
            keys = st.touched | st.dirty
            st.touched.clear()
        spaces = {"folio": (self.folios, out.folios), "dpage": (self.dpages, out.device_pages),
                  "slot": (self.slots, out.swap_slots)}
        for kind, num in keys:
            copies, ids = spaces[kind]
            now = _counts(st, kind, num)
            if copies.get(num) != now:
                ids.add(num)
                if now is None:
                    del copies[num]
                else:
                    copies[num] = now
        return out


def _counts(st: State, kind: str, num: int) -> tuple[object, ...] | None:
    """What a page's view shows of it now (None once freed)."""
    if kind == "folio":
        f = st.folios[num]
        return None if f.freed else (f.refcount, f.pincount, list(f.words), list(f.mapcount))
    if kind == "dpage":
        d = st.dpages[num]
        return None if d.freed else (d.refcount, d.word)
    slot = st.slots[num]
    return None if slot.freed else (slot.count, slot.word)
