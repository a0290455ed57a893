"""The byte format's generations: stored inputs keep their meaning.

Generation 1 is every input without the ``MAGIC`` prefix, read exactly as
before op declarations existed: ``data/codec_v1_frozen.json`` holds 468
inputs (random bytes and the encoded corpus) with the trace each decoded to
at commit 2ee1404, before the change.  A new op appends a codec id and a
generation; the tables of older generations never change.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from fuzz import codec
from fuzz.codec import CURRENT, MAGIC, decode, encode, generation, random_trace
from fuzz.trace import StepLine, format_trace, make_trace
from model import decl
from model.ops import Mmap, ReadRange, WriteRange

FROZEN = Path(__file__).parent / "data" / "codec_v1_frozen.json"


def test_every_stored_v1_input_decodes_to_the_same_trace() -> None:
    cases = json.loads(FROZEN.read_text())["cases"]
    assert len(cases) > 400
    for case in cases:
        assert format_trace(decode(bytes.fromhex(case["bytes"]))) == case["trace"]


def test_a_trace_of_first_generation_ops_encodes_without_a_prefix() -> None:
    trace = make_trace([StepLine(Mmap(0, 1 << 21, 4, "rw", "private"))])
    data = encode(trace)
    assert not data.startswith(MAGIC)
    assert decode(data) == trace


def test_new_ops_are_written_with_their_generation() -> None:
    trace = make_trace([StepLine(Mmap(0, 1 << 21, 4, "rw", "private")),
                        StepLine(WriteRange(0, 1 << 21, 4, 7, 1)),
                        StepLine(ReadRange(0, 1 << 21, 4))])
    data = encode(trace)
    assert data.startswith(MAGIC + bytes([2]))
    assert decode(data) == trace


def test_generation_tables_only_grow() -> None:
    one, two = generation(1), generation(2)
    assert two.keywords[:len(one.keywords)] == one.keywords
    assert "write_range" in two.keywords and "write_range" not in one.keywords
    assert CURRENT >= 2


@dataclass(frozen=True)
class _Poke:
    p: int
    v: int


def test_adding_an_op_never_changes_what_an_old_input_means() -> None:
    rng = random.Random(12)
    inputs = [MAGIC + bytes([CURRENT]) + rng.randbytes(rng.randrange(400)) for _ in range(60)]
    inputs += [rng.randbytes(rng.randrange(400)) for _ in range(60)]
    before = [decode(b) for b in inputs]
    next_id = max(d.codec_id for d in decl.declared() if d.plugin is None) + 1
    decl.declare(_Poke, "poke", next_id, decl.P(), decl.Addr("v"), since=CURRENT + 1,
                 weight=40)
    try:
        codec.generation.cache_clear()
        assert [decode(b) for b in inputs] == before
        assert "poke" in generation(CURRENT + 1).keywords
    finally:
        decl.unregister("poke")
        codec.generation.cache_clear()


def test_random_traces_of_the_current_generation_use_the_new_ops() -> None:
    rng = random.Random(4)
    kinds = {type(s.action) for _ in range(40) for s in random_trace(rng, 80, CURRENT).steps}
    assert {WriteRange, ReadRange} <= kinds
