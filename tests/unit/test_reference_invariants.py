"""The reference model's invariant predicates report broken states."""

from __future__ import annotations

from model.interface import Config
from model.ops import OK, Done, HandleResult, Mmap, Op, Open, Write
from model.reference import ReferenceKernel
from model.reference.invariants import (
    accounting,
    device_entries_follow_cpu,
    no_use_after_free,
    pairing,
    seq_protocol,
)
from model.reference.state import Present


def run(k: ReferenceKernel, name: str, op: Op) -> object:
    assert k.start(name, op) == OK
    while True:
        out = k.step(name)
        if isinstance(out, Done):
            return out.result


def mapped_kernel() -> ReferenceKernel:
    k = ReferenceKernel(Config())
    assert run(k, "L1", Mmap(0, 0, 4, "rw", "private")) == OK
    assert run(k, "L2", Write(0, 1, 5)) == OK
    assert run(k, "L3", Open(0, "mirror", 0)) == HandleResult("D", 0)
    assert k.take_violations() == []
    return k


def test_a_healthy_state_has_no_problem() -> None:
    k = mapped_kernel()
    st = k.state
    for check in (no_use_after_free, device_entries_follow_cpu, seq_protocol, pairing):
        assert check(st) == []
    assert accounting(st, []) == []


def test_accounting_sees_a_wrong_refcount() -> None:
    k = mapped_kernel()
    entry = k.state.procs[0].pt[1]
    assert isinstance(entry, Present)
    k.state.folios[entry.f].refcount += 1
    assert any("refcount" in p for p in accounting(k.state, []))


def test_stale_table_entry_is_reported() -> None:
    k = mapped_kernel()
    entry = k.state.procs[0].pt[1]
    assert isinstance(entry, Present)
    k.state.devices[0].table[1] = (("folio", entry.f, 0), True)
    assert device_entries_follow_cpu(k.state) == []
    del k.state.procs[0].pt[1]
    assert device_entries_follow_cpu(k.state) != []
    k.state.folios[entry.f].freed = True
    assert no_use_after_free(k.state) != []


def test_seq_and_pairing_problems_are_reported() -> None:
    k = mapped_kernel()
    n = k.state.procs[0].notifier
    n.seq = 3  # odd with no active invalidation
    assert seq_protocol(k.state) != []
    n.active = 1
    assert pairing(k.state) != []
