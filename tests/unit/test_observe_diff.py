"""The cheap comparison (fuzz/observe_diff.py): pairing, and agreement with
the canonical comparison."""

from __future__ import annotations

import random
from dataclasses import replace

from fuzz.codec import decode
from fuzz.executor import Session, Settings
from fuzz.impls import sides
from fuzz.observe_diff import CheapJudge, Pairing, agree
from model.interface import Watched
from model.observation import Changes, RawObservation, Ref, canonicalize


def test_a_pairing_holds_once_made() -> None:
    pair = Pairing()
    assert pair.same(Ref("folio", 1, 0), Ref("folio", (7, 0), 0))  # made
    assert pair.same(Ref("folio", 1, 0), Ref("folio", (7, 0), 0))  # kept
    assert not pair.same(Ref("folio", 1, 0), Ref("folio", (8, 0), 0))  # another partner
    assert not pair.same(Ref("folio", 2, 0), Ref("folio", (7, 0), 0))  # partner taken
    assert not pair.same(Ref("folio", 1, 0), Ref("folio", (7, 0), 3))  # another page of it
    assert not pair.same(Ref("folio", 1, 0), Ref("dpage", (7, 0), 0))
    assert pair.same(Ref("zero"), Ref("zero"))


def states(count: int) -> list[list[Watched]]:
    """Both sides after decoded random traces (no finding on them)."""
    rng = random.Random(3)
    out: list[list[Watched]] = []
    while len(out) < count:
        trace = decode(rng.randbytes(rng.randint(40, 300)))
        session = Session.for_trace(trace, sides("both"), Settings(observe_every=0))
        for line in trace.steps:
            session.append(line)
        if not session.over and any(p.entries for p in session.impls[1].observe().processes):
            watched: list[Watched] = [i for i in session.impls if isinstance(i, Watched)]
            out.append(watched)
    return out


def test_the_full_comparison_agrees_with_the_canonical_one() -> None:
    for ref, opt in states(20):
        raws = [ref.observe_raw(), opt.observe_raw()]
        assert CheapJudge([ref, opt]).full_agree(raws)
        assert canonicalize(raws[0]) == canonicalize(raws[1])
        # one entry's word changed on one side: both comparisons see it
        proc = next(p for p in raws[1].processes if p.entries)
        e = proc.entries[0]
        wrong = proc._replace(entries=(e._replace(word=e.word + 1), *proc.entries[1:]))
        bad = replace(raws[1], processes=[wrong if p is proc else p for p in raws[1].processes])
        assert not CheapJudge([ref, opt]).full_agree([raws[0], bad])
        assert canonicalize(raws[0]) != canonicalize(bad)


def agreed_parts() -> tuple[RawObservation, RawObservation, Pairing]:
    """Both sides' partial observations of one state (nothing asked), found
    the same through the pairing of a full comparison."""
    ref, opt = states(1)[0]
    judge = CheapJudge([ref, opt])
    assert judge.full_agree([ref.observe_raw(), opt.observe_raw()])
    pair = judge.pairings[0]
    a, b = ref.observe_parts(Changes()), opt.observe_parts(Changes())
    assert agree(a, b, pair, Changes(), Changes())
    return a, b, pair


def test_the_cheap_comparison_sees_a_changed_view() -> None:
    """A folio a side says changed is compared through the pairing: a view
    that differs is a disagreement, found with nothing else asked."""
    a, b, pair = agreed_parts()
    raw_a, raw_b = next(iter(pair.fwd["folio"].items()))
    view = b.folios[raw_b]
    changed = replace(b, folios={raw_b: view._replace(refcount=view.refcount + 1)})
    assert not agree(a, changed, pair, Changes(folios={raw_a}), Changes())


def test_a_part_carried_whole_is_compared_again_when_it_changes() -> None:
    """A part found the same is skipped only while both sides still have it
    as then: a VMA, a lock or a device changed on one side after that is a
    disagreement."""
    a, b, pair = agreed_parts()
    assert agree(a, b, pair, Changes(), Changes())  # the same parts again: skipped, still same
    proc = next(p for p in b.processes if p.vmas)
    vma = proc.vmas[0]
    mutations = [
        ([proc._replace(vmas=(vma._replace(prot="---"), *proc.vmas[1:]))
          if p is proc else p for p in b.processes], b.devices),
        ([proc._replace(mmap_lock=proc.mmap_lock._replace(writer="T9"))
          if p is proc else p for p in b.processes], b.devices),
    ]
    if b.devices:
        dev = b.devices[0]
        mutations.append((b.processes, [dev._replace(dead=not dev.dead), *b.devices[1:]]))
    for processes, devices in mutations:
        changed = replace(b, processes=processes, devices=devices)
        assert not agree(a, changed, pair, Changes(), Changes())
        assert agree(a, b, pair, Changes(), Changes())  # and the real parts still agree
