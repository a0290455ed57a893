"""Unit tests of the optimized model's data structures: radix page table,
frame table, interval tree, mmu_gather (expectations from their contracts)."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from model.optimized.folios import DevicePages, FrameTable, SwapTable
from model.optimized.itree import IntervalTree
from model.optimized.mmu_gather import MmuGather
from model.optimized.pagetable import (
    PRESENT,
    SWAP,
    ZERO,
    Radix,
    kind_of,
    mkentry,
    payload_of,
    w_of,
    x_of,
)

# ---------------------------------------------------------------- pagetable


def test_entry_packing_round_trips() -> None:
    e = mkentry(PRESENT, 123456789, w=True, x=False)
    assert kind_of(e) == PRESENT and payload_of(e) == 123456789
    assert w_of(e) and not x_of(e)
    assert mkentry(ZERO) != 0


def test_radix_sparse_far_apart_and_pruned() -> None:
    pt = Radix()
    far = (1 << 36) - 1
    pt.set(0, mkentry(ZERO))
    pt.set(far, mkentry(SWAP, 7))
    assert pt.get(far) == (mkentry(SWAP, 7), False)
    assert pt.count() == 2
    assert len(pt.pgd) == 2  # only two top-level tables allocated
    pt.set(far, 0)
    assert pt.get(far) == (0, False)
    assert len(pt.pgd) == 1  # the empty tables were freed
    pt.set(0, 0)
    assert pt.pgd == {}


def test_radix_huge_leaf_expands_per_page() -> None:
    pt = Radix()
    pt.set_leaf(1024, mkentry(PRESENT, 4096, w=True, x=True))
    e, pmd = pt.get(1024 + 37)
    assert pmd and payload_of(e) == 4096 + 37 and w_of(e) and x_of(e)
    assert pt.huge_bases(0, 1 << 36) == [1024]
    vpns, ents, pmd_flag = next(pt.populated(1500, 1600))
    assert pmd_flag and vpns.tolist() == list(range(1500, 1536))
    assert (ents >> 5).tolist() == list(range(4096 + 476, 4096 + 512))


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 50)), max_size=40),
       st.integers(0, 5000), st.integers(1, 3000))
def test_radix_matches_a_dict(writes: list[tuple[int, int]], a: int, n: int) -> None:
    pt = Radix()
    ref: dict[int, int] = {}
    for v, x in writes:
        e = mkentry(SWAP, x) if x % 7 else 0
        pt.set(v, e)
        if e:
            ref[v] = e
        else:
            ref.pop(v, None)
    got = {int(v): int(e) for vpns, ents, _ in pt.populated(a, a + n)
           for v, e in zip(vpns, ents, strict=True)}
    assert got == {v: e for v, e in ref.items() if a <= v < a + n}
    dense, _ = pt.gather(a, a + min(n, 600))
    assert [int(x) for x in dense] == [ref.get(v, 0) for v in range(a, a + min(n, 600))]
    vs = np.array(sorted(ref), np.int64)
    pt2 = Radix()
    pt2.set_many(vs, np.array([ref[int(v)] for v in vs], np.int64))
    assert pt2.count() == len(ref)
    pt.clear_range(0, 6000)
    assert pt.pgd == {}


# ---------------------------------------------------------------- folios


def test_frames_lifo_reuse_and_generation() -> None:
    fr = FrameTable(limit=4)
    a = fr.alloc(0)
    b = fr.alloc(0)
    assert a is not None and b is not None and a != b
    gen = int(fr.gen[a])
    fr.free(a)
    assert not fr.is_live(a, gen)
    c = fr.alloc(0)
    assert c == a  # freed frame reused at once
    assert not fr.is_live(c, gen) and fr.is_live(c, int(fr.gen[c]))


def test_frames_limit_and_huge_alignment() -> None:
    fr = FrameTable(limit=600)
    small = fr.alloc(0)
    head = fr.alloc(9, index=1024)
    assert small is not None and head is not None
    assert head % 512 == 0 and fr.in_use == 513
    assert fr.head(head + 100) == head and fr.nr_pages(head) == 512
    assert fr.index[head + 3] == 1027
    assert fr.alloc(9) is None  # 513 + 512 > 600
    fr.mapcount[head: head + 512] = 1
    fr.split(head)
    assert fr.head(head + 100) == head + 100 and fr.refcount[head + 100] == 1


def test_swap_and_device_pages() -> None:
    sw = SwapTable()
    s = sw.alloc(99)
    assert sw.word[s] == 99 and sw.in_use == 1
    sw.free(s)
    assert sw.in_use == 0
    dp = DevicePages(per_device=2)
    assert dp.alloc(0, 5, 0) is not None and dp.alloc(0, 6, 1) is not None
    assert dp.alloc(0, 7, 2) is None  # the mirror's pages are used up
    assert dp.alloc(1, 7, 2) is not None  # another mirror has its own
    assert dp.in_use() == 3


def test_mmu_gather_frees_only_at_zero() -> None:
    fr, sw, dp = FrameTable(10), SwapTable(), DevicePages(4)
    a, b = fr.alloc(0), fr.alloc(0)
    assert a is not None and b is not None
    fr.refcount[a] = 0
    fr.refcount[b] = 1
    tlb = MmuGather(fr, sw, dp)
    tlb.remove_folios(np.array([a, b, a], np.int64))
    assert fr.live[a]  # nothing freed before the flush
    assert tlb.finish() == [a]
    assert not fr.live[a] and fr.live[b]


# ---------------------------------------------------------------- itree


def test_itree_overlaps_in_start_id_order() -> None:
    t: IntervalTree[str] = IntervalTree()
    t.insert(10, 20, 3, "c")
    t.insert(0, 1 << 36, 1, "all")
    t.insert(10, 15, 2, "b")
    t.insert(30, 40, 4, "d")
    assert t.overlaps(12, 13) == ["all", "b", "c"]
    assert t.overlaps(20, 30) == ["all"]
    assert t.overlaps(15, 31) == ["all", "c", "d"]
    assert t.remove(10, 2) and not t.remove(10, 2)
    assert t.items() == ["all", "c", "d"]


def test_itree_matches_brute_force() -> None:
    rng = random.Random(5)
    t: IntervalTree[int] = IntervalTree()
    live: dict[int, tuple[int, int]] = {}
    for ident in range(400):
        if live and rng.random() < 0.3:
            victim = rng.choice(sorted(live))
            assert t.remove(live[victim][0], victim)
            del live[victim]
        s = rng.randrange(1000)
        e = s + rng.randrange(1, 200)
        t.insert(s, e, ident, ident)
        live[ident] = (s, e)
        a = rng.randrange(1100)
        b = a + rng.randrange(1, 100)
        want = sorted((v for v, (s0, e0) in live.items() if s0 < b and a < e0),
                      key=lambda v: (live[v][0], v))
        assert t.overlaps(a, b) == want
