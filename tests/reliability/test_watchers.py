"""Each side's watcher reports everything that changed (``Watched.changes``).

The executor's cheap comparison (``fuzz/observe_diff.py``) compares only
what a side says changed; a change it does not report is a finding the
fast judge can lose.  So here every start and step of decoded random traces
(and of each planted bug's quality trace, the bug switched on) is followed
by a whole raw observation of each side, compared with the one before it,
in the side's own ids: every process entry, shared object, folio, device
page and slot whose view differs must be among the changes the side
reported for that step (an entry whose page's id moved on, its frame
freed, is covered by that page's being reported); and the device tables of
the partial observation the cheap comparison would see (which a side may
keep from an earlier look while the table did not change) must be the
tables as they are.  (A page's word is checked through its folio's
view: that is where the cheap comparison reads it.)

``MIRRORFUZZ_WATCH_TRACES`` (default 120) is how many random traces.
"""

from __future__ import annotations

import os
import random
from collections.abc import Hashable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fuzz.codec import decode
from fuzz.executor import Settings, run_trace
from fuzz.impls import sides
from fuzz.trace import load_trace
from model import bugs
from model.interface import Config, Factory, Implementation, Watched
from model.observation import Changes, RawObservation

TRACES = int(os.environ.get("MIRRORFUZZ_WATCH_TRACES") or 120)
QUALITY = Path(__file__).parents[1] / "quality" / "traces"
CORPUS = Path(__file__).parents[2] / "corpus"


def retargeted(was: Any, now: Any, changes: Changes) -> bool:
    """An unchanged entry (or device table entry) whose page's id moved on
    (its frame was freed, on a side whose ids carry a generation): covered
    when that page is among the changes, for the cheap comparison then
    compares its view."""
    told = {"folio": changes.folios, "dpage": changes.device_pages, "swap": changes.swap_slots}
    ref = "ref" if hasattr(was, "ref") else "target"
    old = getattr(was, ref, None)
    return (was is not None and now is not None and old is not None
            and was._replace(**{ref: getattr(now, ref)}) == now
            and old.raw in told.get(old.space, set()))


def unreported(before: RawObservation, after: RawObservation, changes: Changes) -> list[str]:
    """What differs between two raw observations of one side and is not in
    ``changes`` (empty when the watcher told the whole truth)."""
    out = []
    old = {p.pid: p for p in before.processes}
    for proc in after.processes:
        if proc.pid in changes.processes:
            continue
        was = {e.vpn: e._replace(word=0) for e in old.get(proc.pid, proc).entries}
        now = {e.vpn: e._replace(word=0) for e in proc.entries}
        told = changes.entries.get(proc.pid, set())
        out += [f"P{proc.pid} entry {v}" for v in was.keys() | now.keys()
                if was.get(v) != now.get(v) and v not in told
                and not retargeted(was.get(v), now.get(v), changes)]
    objs = {o.id: o for o in before.objects}
    out += [f"object {o.id}" for o in after.objects
            if objs.get(o.id) != o and o.id not in changes.objects]
    for name, told_pages in (("folios", changes.folios), ("device_pages", changes.device_pages),
                             ("swap_slots", changes.swap_slots)):
        was_v: dict[Hashable, Any] = dict(getattr(before, name))
        now_v: dict[Hashable, Any] = dict(getattr(after, name))
        out += [f"{name} {raw}" for raw in was_v.keys() & now_v.keys()
                if was_v[raw] != now_v[raw] and raw not in told_pages]
    return out


class Witness:
    """An implementation whose every start and step is checked as above."""

    def __init__(self, inner: Implementation, problems: list[str]) -> None:
        assert isinstance(inner, Watched)
        self.inner, self.problems = inner, problems
        inner.changes()
        self.last = inner.observe_raw()
        self.told = Changes()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self, what: str) -> None:
        assert isinstance(self.inner, Watched)
        changes = self.inner.changes()
        now = self.inner.observe_raw()
        problems = unreported(self.last, now, changes)
        parts = self.inner.observe_parts(changes)  # what the cheap comparison would see
        self.told.folios |= changes.folios  # (a page id, once told gone, stays told)
        self.told.device_pages |= changes.device_pages
        self.told.swap_slots |= changes.swap_slots
        for fresh, seen in zip(now.devices, parts.devices, strict=True):
            problems += [f"D{fresh.id} table entry {x.vpn}" for x, y in zip(
                fresh.table, seen.table, strict=False)
                if x != y and not retargeted(y, x, self.told)]
            if len(fresh.table) != len(seen.table):
                problems.append(f"D{fresh.id} table")
        for problem in problems:
            self.problems.append(f"{self.inner.name} after {what}: {problem} changed unreported")
        self.last = now

    def start(self, thread: str, op: Any) -> Any:
        out = self.inner.start(thread, op)
        self._check(f"start {thread}")
        return out

    def step(self, thread: str) -> Any:
        out = self.inner.step(thread)
        self._check(f"step {thread}")
        return out


def witnessed(problems: list[str]) -> list[tuple[str, Factory]]:
    def wrap(factory: Factory) -> Factory:
        return lambda config: Witness(factory(config), problems)  # type: ignore[return-value]
    return [(name, wrap(factory)) for name, factory in sides("both")]


PLAIN = Settings(observe_every=0, checks=False)


def test_watchers_report_every_change_on_random_traces() -> None:
    rng = random.Random(14)
    problems: list[str] = []
    steps = 0
    for _ in range(TRACES):
        steps += run_trace(decode(rng.randbytes(rng.randint(20, 300))), witnessed(problems),
                           PLAIN).steps
        assert not problems, problems[:5]
    assert steps > 20 * TRACES  # the traces did run


@pytest.mark.parametrize("name", [bug.name for bug in bugs.all_bugs()])
def test_watchers_report_every_change_with_a_planted_bug(name: str) -> None:
    problems: list[str] = []
    trace = load_trace(str(QUALITY / f"{name}.trace"))
    run_trace(trace, witnessed(problems), replace(PLAIN, mutant=name))
    assert not problems, problems[:5]


@pytest.mark.parametrize("path", sorted(CORPUS.rglob("*.trace")),
                         ids=lambda p: str(p.relative_to(CORPUS)))
def test_watchers_report_every_change_on_the_corpus(path: Path) -> None:
    """The corpus reaches paths random traces rarely do (a THP split by
    migrate_to_dev, a migration back with no frame left to copy into), and
    each of them writes pages the reference must record for its watcher
    (``State.note``, ``State.dirty``)."""
    problems: list[str] = []
    assert run_trace(load_trace(str(path)), witnessed(problems), PLAIN).steps > 0
    assert not problems, problems[:5]


def test_an_unreported_change_is_caught() -> None:
    """The check can fail: a watcher that reports nothing is caught at the
    first step that changes memory."""
    problems: list[str] = []

    class Blind(Witness):
        def _check(self, what: str) -> None:
            self.inner.changes()  # type: ignore[attr-defined]
            now = self.inner.observe_raw()  # type: ignore[attr-defined]
            self.problems += unreported(self.last, now, Changes())
            self.last = now

    blind = [(name, (lambda f: lambda c: Blind(f(c), problems))(factory))
             for name, factory in sides("both")]
    run_trace(load_trace(str(QUALITY / f"{bugs.all_bugs()[0].name}.trace")), blind,  # type: ignore
              PLAIN)
    assert problems
    assert Config().checks  # (the sides ran with their defaults)
