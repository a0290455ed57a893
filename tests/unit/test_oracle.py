"""The coherence oracle (SPEC §8.3), rule by rule."""

from __future__ import annotations

from fuzz.oracle import Oracle
from model.observation import VmaView
from model.ops import (
    OK,
    Dma,
    Err,
    Errno,
    Fork,
    HandleResult,
    Madvise,
    Mremap,
    Munmap,
    Num,
    Oomreap,
    Open,
    Pin,
    Read,
    ReadRange,
    Values,
    Write,
    WriteRange,
)

PRIVATE = (VmaView(0, 100, "rw", "private", False, None, None),)
SHARED = (VmaView(0, 100, "rw", "shared", False, 3, 10),)


def private(pid: int) -> tuple[VmaView, ...]:
    return PRIVATE


def shared(pid: int) -> tuple[VmaView, ...]:
    return SHARED


def run(oracle: Oracle, thread: str, op: object, result: object, vmas=private) -> list[str]:  # type: ignore[no-untyped-def]
    oracle.started(thread, op)  # type: ignore[arg-type]
    return [p.invariant for p in oracle.completed(thread, op, result, vmas)]  # type: ignore[arg-type]


def test_read_must_see_last_write() -> None:
    o = Oracle()
    assert run(o, "L1", Write(0, 5, 9), OK) == []
    assert run(o, "L2", Read(0, 5), Num(9)) == []
    assert run(o, "L3", Read(0, 5), Num(0)) == ["coherence"]
    assert run(o, "L4", Read(0, 6), Num(0)) == []  # never written: reads 0


def test_shared_pages_are_keyed_by_object_page() -> None:
    o = Oracle()
    run(o, "L1", Write(0, 1, 4), OK, shared)
    # P1 maps the same object at the same offset: it must see the word.
    assert run(o, "L2", Read(1, 1), Num(4), shared) == []
    assert run(o, "L3", Read(1, 1), Num(0), shared) == ["coherence"]


def test_munmap_deletes_private_keys() -> None:
    o = Oracle()
    run(o, "L1", Write(0, 5, 9), OK)
    run(o, "L2", Munmap(0, 0, 10), OK)
    assert run(o, "L3", Read(0, 5), Num(0)) == []
    assert run(o, "L4", Read(0, 5), Num(9)) == ["coherence"]


def test_write_during_delete_flight_makes_key_unknown() -> None:
    o = Oracle()
    o.started("T1", Munmap(0, 0, 10))
    run(o, "L2", Write(0, 5, 9), OK)
    o.completed("T1", Munmap(0, 0, 10), OK, private)
    assert run(o, "L3", Read(0, 5), Num(123)) == []  # unknown accepts anything
    run(o, "L4", Write(0, 5, 1), OK)
    assert run(o, "L5", Read(0, 5), Num(123)) == ["coherence"]  # known again


def test_failed_delete_changes_no_key_but_dontneed_enomem_does() -> None:
    o = Oracle()
    run(o, "L1", Write(0, 5, 9), OK)
    run(o, "L2", Munmap(0, 0, 10), Err(Errno.EINVAL))
    assert run(o, "L3", Read(0, 5), Num(9)) == []
    run(o, "L4", Madvise(0, 0, 10, "dontneed"), Err(Errno.ENOMEM))
    assert run(o, "L5", Read(0, 5), Num(0)) == []


def test_mremap_moves_private_keys() -> None:
    o = Oracle()
    run(o, "L1", Write(0, 5, 9), OK)
    run(o, "L2", Write(0, 52, 7), OK)
    run(o, "L3", Mremap(0, 0, 10, 50), OK)
    assert run(o, "L4", Read(0, 55), Num(9)) == []
    assert run(o, "L5", Read(0, 52), Num(0)) == []  # destination deleted, source had none
    assert run(o, "L6", Read(0, 5), Num(0)) == []


def test_a_read_of_an_mremap_destination_in_flight_may_see_the_moved_word() -> None:
    o = Oracle()
    run(o, "L1", Write(0, 5, 9), OK)
    run(o, "L2", Write(0, 52, 7), OK)
    o.started("T1", Mremap(0, 0, 10, 50))
    assert run(o, "L3", Read(0, 55), Num(9)) == []  # moved already (D29)
    assert run(o, "L4", Read(0, 52), Num(7)) == []  # not moved yet
    assert run(o, "L5", Read(0, 52), Num(0)) == []  # moved from a page never written
    assert run(o, "L6", Read(0, 55), Num(4)) == ["coherence"]  # neither
    assert run(o, "L7", Read(0, 65), Num(9)) == ["coherence"]  # past the destination
    o.completed("T1", Mremap(0, 0, 10, 50), OK, private)
    assert run(o, "L8", Read(0, 52), Num(7)) == ["coherence"]  # the move is done


def test_fork_copies_keys_and_mismatch_is_fork_isolation() -> None:
    o = Oracle()
    run(o, "L1", Write(0, 5, 9), OK)
    run(o, "L2", Fork(0, 1), HandleResult("P", 1))
    assert run(o, "L3", Read(1, 5), Num(9)) == []
    run(o, "L4", Write(1, 5, 3), OK)
    assert run(o, "L5", Read(0, 5), Num(3)) == ["fork_isolation"]


def test_pin_region_detached_after_munmap_neither_sets_nor_checks() -> None:
    o = Oracle()
    run(o, "L1", Open(0, "pin", 0), HandleResult("D", 0))
    run(o, "L2", Pin(0, 0, 4, "rw", 0), HandleResult("R", 0))
    run(o, "L3", Dma(0, "write", 0, 2, 5, 1), OK)
    assert run(o, "L4", Read(0, 1), Num(6)) == []
    run(o, "L5", Munmap(0, 0, 4), OK)
    assert run(o, "L6", Dma(0, "read", 0, 2), Values((5, 6))) == []  # detached: unchecked
    run(o, "L7", Dma(0, "write", 0, 1, 77), OK)
    assert run(o, "L8", Read(0, 0), Num(0)) == []


def test_a_dma_write_through_a_pin_that_mremap_moved_shows_at_its_new_address() -> None:
    o = Oracle()
    run(o, "L1", Open(0, "pin", 0), HandleResult("D", 0))
    run(o, "L2", Pin(0, 3, 2, "rw", 0), HandleResult("R", 0))
    run(o, "L3", Mremap(0, 4, 1, 0), OK)  # page 4, pinned as R0's page 1, moves to 0
    run(o, "L4", Dma(0, "write", 1, 1, 7), OK)
    assert run(o, "L5", Read(0, 0), Num(7)) == []  # unknown: any word (D30)
    run(o, "L6", Write(0, 0, 9), OK)
    assert run(o, "L7", Read(0, 0), Num(7)) == ["coherence"]  # known again
    run(o, "L8", Munmap(0, 0, 1), OK)  # the page is mapped nowhere now
    run(o, "L9", Dma(0, "write", 1, 1, 8), OK)
    assert run(o, "L10", Read(0, 0), Num(8)) == ["coherence"]


def test_pin_region_detached_where_mremap_lands_on_it() -> None:
    """D22: mremap's destination is applied as munmap, so a page pinned there
    is detached (the region keeps the old folio), like mremap's source."""
    o = Oracle()
    run(o, "L1", Open(0, "pin", 0), HandleResult("D", 0))
    run(o, "L2", Pin(0, 0, 2, "ro", 0), HandleResult("R", 0))
    run(o, "L3", Mremap(0, 50, 1, 0), OK)
    run(o, "L4", Write(0, 0, 1), OK)
    assert run(o, "L5", Dma(0, "read", 0, 2), Values((0, 0))) == []  # page 0 detached
    assert run(o, "L6", Dma(0, "read", 1, 1), Values((7,))) == ["coherence"]  # page 1 not


def test_read_of_page_zapped_by_delete_in_flight_may_give_zero() -> None:
    o = Oracle()
    run(o, "L1", Write(0, 5, 9), OK)
    o.started("T1", Madvise(0, 0, 10, "dontneed"))
    assert run(o, "L2", Read(0, 5), Num(0)) == []  # zapped, op not complete yet
    assert run(o, "L3", Read(0, 5), Num(9)) == []  # not zapped yet
    assert run(o, "L4", Read(0, 5), Num(4)) == ["coherence"]  # neither
    assert run(o, "L5", Read(0, 50), Num(0)) == []
    o.completed("T1", Madvise(0, 0, 10, "dontneed"), OK, private)
    assert run(o, "L6", Read(0, 5), Num(9)) == ["coherence"]  # deleted now


def test_oomreap_in_flight_covers_every_private_key_of_its_process() -> None:
    o = Oracle()
    run(o, "L1", Write(0, 5, 9), OK)
    run(o, "L2", Write(1, 5, 9), OK)
    o.started("T1", Oomreap(0))
    assert run(o, "L3", Read(0, 5), Num(0)) == []
    assert run(o, "L4", Read(1, 5), Num(0)) == ["coherence"]  # another process


# ------------------------------------------------------------ range accesses


def test_a_write_range_that_ran_alone_sets_its_keys() -> None:
    o = Oracle()
    o.started("L1", WriteRange(0, 5, 3, 10, 2), private)
    assert o.completed("L1", WriteRange(0, 5, 3, 10, 2), OK, private) == []
    assert run(o, "L2", Read(0, 6), Num(12)) == []
    assert run(o, "L3", Read(0, 7), Num(0)) == ["coherence"]
    assert run(o, "L4", ReadRange(0, 5, 3), Values((10, 12, 14))) == []
    assert run(o, "L5", ReadRange(0, 5, 2), Values((10, 13))) == ["coherence"]


def test_an_interleaved_or_failed_write_range_makes_its_keys_unknown() -> None:
    o = Oracle()
    op = WriteRange(0, 5, 2, 10)
    o.started("T1", op, private)
    o.stepped("T1")
    assert run(o, "L2", Write(0, 6, 99), OK) == []
    o.stepped("L2")
    assert o.completed("T1", op, OK, private) == []
    assert run(o, "L3", Read(0, 6), Num(99)) == []  # which came last is not known
    assert run(o, "L4", Read(0, 6), Num(10)) == []
    o.started("T5", op, private)
    assert o.completed("T5", op, Err(Errno.ENOMEM), private) == []
    assert run(o, "L6", Read(0, 5), Num(10)) == [] and run(o, "L7", Read(0, 5), Num(0)) == []


def test_a_write_range_in_flight_may_already_have_written_its_pages() -> None:
    o = Oracle()
    op = WriteRange(0, 5, 2, 10)
    o.started("T1", op, private)
    o.stepped("T1")  # page 5 written
    assert run(o, "L2", Read(0, 5), Num(10)) == []
    assert run(o, "L3", Read(0, 9), Num(10)) == ["coherence"]  # not one of its pages


def test_a_read_range_is_checked_only_when_it_ran_alone() -> None:
    o = Oracle()
    o.started("T1", ReadRange(0, 5, 2))
    o.stepped("T1")
    o.stepped("L9")
    assert o.completed("T1", ReadRange(0, 5, 2), Values((7, 7)), private) == []


def test_a_failed_range_access_is_judged_by_the_pages_it_reached() -> None:
    """A write_range over 2^36 pages that failed after two steps reached at
    most its first three pages: those become unknown, the rest stay known,
    and judging it does not walk 2^36 pages (it used to hang the engines)."""
    whole = (VmaView(0, 1 << 36, "rw", "private", False, None, None),)
    o = Oracle()
    assert run(o, "L1", Write(0, 3, 7), OK) == []
    op = WriteRange(0, 0, 1 << 36, 1)
    o.started("T2", op, lambda pid: whole)
    o.stepped("T2")
    o.stepped("T2")
    assert o.completed("T2", op, Err(Errno.ENOMEM), lambda pid: whole) == []
    assert run(o, "L3", Read(0, 2), Num(5)) == []  # reached: unknown
    assert run(o, "L4", Read(0, 3), Num(5)) == ["coherence"]  # not reached: still 7
