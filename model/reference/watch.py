"""What changed in the reference state since the last look: the reference's
side of ``Watched.changes`` (issue 14), for the executor's cheap comparison
of observations (``fuzz/observe_diff.py``).  Not part of the executable
spec: an observer of it, with its own size budget
(``tests/unit/test_reference_size.py``).

Each part is compared with a copy taken at the last look, so nothing that
changes goes unseen, whatever path changed it.  The copies are shallow:
entries are frozen values, so an entry nobody replaced is the same object
and a page table compares at C speed; a folio's lists are copied.
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
        self.folios: dict[int, tuple[int, int, list[int], list[int]]] = {}
        self.dpages: dict[int, tuple[int, int, int]] = {}
        self.slots: dict[int, tuple[int, int]] = {}

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
        for fid in st.live | self.folios.keys():
            f = st.folios[fid]
            was_f = self.folios.get(fid)
            if f.freed:
                if was_f is not None:
                    out.folios.add(fid)
                    del self.folios[fid]
            elif (was_f is None or was_f[0] != f.refcount or was_f[1] != f.pincount
                    or was_f[2] != f.words or was_f[3] != f.mapcount):
                out.folios.add(fid)
                self.folios[fid] = (f.refcount, f.pincount, list(f.words), list(f.mapcount))
        for did, d in st.dpages.items():
            now = (d.refcount, d.word, int(d.freed))
            if self.dpages.get(did, (0, 0, 1)) != now:
                out.device_pages.add(did)
                self.dpages[did] = now
        for sid, slot in st.slots.items():
            now2 = (slot.count, slot.word) if not slot.freed else (-1, 0)
            if self.slots.get(sid, (-1, 0)) != now2:
                out.swap_slots.add(sid)
                self.slots[sid] = now2
        return out
