"""Swarm testing in the stateful engine (fuzz/swarm.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RULE_MARKER

from fuzz.stateful import EngineConfig, machine_for, op_rules
from fuzz.swarm import ALWAYS, draw_disabled


def _swarm_allows(machine: Any, name: str) -> bool:
    """Whether the swarm precondition(s) of rule ``name`` let it run."""
    rule = getattr(type(machine), name)
    pres = getattr(rule, RULE_MARKER).preconditions
    swarm = [p for p in pres if p.__qualname__.startswith("_swarm_allows")]
    return all(p(machine) for p in swarm) and (bool(swarm) or name in ALWAYS)


def test_each_op_rule_but_the_always_ones_follows_the_swarm() -> None:
    machine = machine_for(EngineConfig(sides="reference"))()
    machine.swarm_off = frozenset(op_rules()) - ALWAYS
    assert [n for n in op_rules() if _swarm_allows(machine, n)] == [
        n for n in op_rules() if n in ALWAYS]
    machine.swarm_off = frozenset()
    assert all(_swarm_allows(machine, n) for n in op_rules())


@settings(max_examples=50)
@given(st.data())
def test_the_draw_never_switches_off_the_always_ones(data: st.DataObject) -> None:
    off = draw_disabled(data, op_rules())
    assert off <= set(op_rules()) - ALWAYS
