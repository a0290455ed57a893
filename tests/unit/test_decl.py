"""Op declarations (model.decl): every op declared once, everything derived.

A test here fails when an implementation lacks an op, when an op has no
Hypothesis rule, or when a declaration breaks a rule of model.decl.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fuzz.codec import generation, plan_for
from fuzz.stateful import MirrorMachine, op_rules, racers
from fuzz.trace import TraceError, format_trace, parse_trace
from model import decl
from model.decl import ANY, LIVE, NOT_DEAD, DeclarationError
from model.ops import OP_SCHEMAS, SCHEMA_BY_KEYWORD
from model.optimized.kernel import DISPATCH
from model.reference.kernel import OPS as REFERENCE_OPS


def test_every_declared_op_has_a_function_on_both_sides() -> None:
    optimized = DISPATCH
    for d in decl.declared():
        assert d.keyword in REFERENCE_OPS, f"the reference lacks {d.keyword}"
        assert d.cls in optimized, f"the optimized implementation lacks {d.keyword}"
    assert set(REFERENCE_OPS) == {d.keyword for d in decl.declared()}


def test_every_declared_op_has_a_rule() -> None:
    rules = {name for name in dir(MirrorMachine)
             if hasattr(getattr(MirrorMachine, name), "hypothesis_stateful_rule")}
    for d in decl.declared():
        assert d.rule_name in rules, f"no Hypothesis rule emits {d.keyword}"
    assert set(op_rules()) <= rules
    assert set(racers("device")) and set(racers("cpu"))


def test_every_op_has_a_byte_plan_and_round_trips_in_text() -> None:
    for d in OP_SCHEMAS:
        assert [name for name, _ in plan_for(d) if not name.startswith("?")] == [
            a.field for a in d.args]
        assert d.keyword in generation(d.since).keywords


def test_appendix_b_is_a_table_of_declarations() -> None:
    rows = {d.keyword: d.states for d in OP_SCHEMAS}
    assert rows["read"] == rows["read_range"] == rows["mmap"] == LIVE
    assert rows["exit"] == rows["migrate"] == rows["reclaim"] == rows["dma"] == NOT_DEAD
    assert rows["complete"] == rows["unreg"] == rows["unpin"] == rows["evict"] == ANY


@dataclass(frozen=True)
class _Thing:
    p: int
    v: int


def test_a_declaration_must_match_its_dataclass() -> None:
    with pytest.raises(DeclarationError, match="fields"):
        decl.declare(_Thing, "thing", 900, decl.P())
    assert "thing" not in SCHEMA_BY_KEYWORD


@pytest.mark.parametrize("why, kwargs", [
    ("declared twice", {"keyword": "read"}),
    ("codec id", {"codec_id": 0}),
    ("states", {"states": frozenset({"zombie"})}),
    ("draw order", {"draw": ("p",)}),
    ("not a usable keyword", {"keyword": "step"}),
])
def test_declaration_rules(why: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"keyword": "thing", "codec_id": 901}
    args.update(kwargs)
    with pytest.raises(DeclarationError, match=why):
        decl.declare(_Thing, str(args.pop("keyword")), int(str(args.pop("codec_id"))),
                     decl.P(), decl.Addr("v"), **args)  # type: ignore[arg-type]
    assert SCHEMA_BY_KEYWORD["read"].cls.__name__ == "Read"
    decl.unregister("thing")


def test_a_new_op_is_parsed_printed_and_encoded_from_its_declaration() -> None:
    d = decl.declare(_Thing, "thing", 902, decl.P(), decl.Addr("v"), since=99)
    try:
        text = "# mirrorfuzz-trace 1\nthing P0 7\n"
        trace = parse_trace(text)
        assert format_trace(trace) == text
        assert plan_for(d)[0][0] == "p"
    finally:
        decl.unregister("thing")
    with pytest.raises(TraceError, match="unknown op"):
        parse_trace("# mirrorfuzz-trace 1\nthing P0 7\n")
