"""The byte codec: total, invertible, deterministic, and biased as documented."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.codec import BASE, CURRENT, MAX_STEPS, WINDOW, decode, encode, random_trace
from fuzz.trace import (
    Comment,
    StepLine,
    format_trace,
    make_trace,
    parse_trace,
    renumber,
    with_expected,
    with_headers,
)
from model.ops import (
    OP_SCHEMAS,
    Complete,
    Dma,
    Dread,
    Fork,
    Mmap,
    Ok,
    Open,
    Pin,
    Read,
    Reg,
    RunThread,
    StepThread,
    Submit,
    Write,
    op_keyword,
)


def _check_decoded(data: bytes) -> None:
    trace = decode(data)
    assert len(trace.steps) <= MAX_STEPS
    text = format_trace(trace)
    assert parse_trace(text) == trace
    assert format_trace(parse_trace(text)) == text
    assert renumber(trace.steps) == trace.steps
    assert decode(encode(trace)) == trace


@given(st.binary(max_size=3000))
def test_decode_is_total_and_invertible(data: bytes) -> None:
    _check_decoded(data)


def test_thousands_of_random_byte_strings() -> None:
    rng = random.Random(20261124)
    for _ in range(1500):
        size = rng.choice([0, 1, 2, 5, 30, 300, 1200])
        data = rng.randbytes(size)
        if rng.random() < 0.2:  # skewed bytes reach the rare categories
            data = bytes(rng.choice([0, 255, 15, 16, 31, 254]) for _ in range(size))
        _check_decoded(data)


def test_empty_and_tiny_inputs() -> None:
    assert format_trace(decode(b"")) == "# mirrorfuzz-trace 1\n"
    assert decode(b"") == decode(b"\0") == make_trace([])
    one = decode(b"\0\0")
    assert len(one.steps) == 1
    assert decode(encode(one)) == one


def test_step_cap_bounds_huge_inputs() -> None:
    data = random.Random(1).randbytes(200_000)
    assert len(decode(data).steps) == MAX_STEPS
    assert len(decode(data, max_steps=7).steps) == 7


def test_determinism() -> None:
    data = random.Random(7).randbytes(4000)
    assert format_trace(decode(data)) == format_trace(decode(bytes(data)))
    assert random_trace(random.Random(3), 50) == random_trace(random.Random(3), 50)
    assert random_trace(random.Random(3), 50) != random_trace(random.Random(4), 50)
    assert len(random_trace(random.Random(3), 50).steps) == 50


def test_documented_byte_format() -> None:
    """Bytes decoded by hand from the format in codec.py's docstring (a format change
    breaks this test, and stored byte corpora with it)."""
    data = bytes([
        0,  # header mode 0: no header
        0, 0,  # plain line; op table index 0: mmap
        0,  # P: category 0 (P0)
        0, 0, 0, 0, 0,  # s: in window, inside a range (none yet: the window base)
        8, 1,  # n: category 8 (512-multiples), index 1: 1024
        0, 3, 2,  # prot rw, kind shared, huge
        13, 1,  # `Tn =` line, fresh name T0
        55, 0,  # op table index 55: write; P0
        0, 0, 0, 5, 0,  # v: inside the most recent range, offset 5
        0, 0x39, 0x30,  # x: two little-endian bytes, 12345
        16, 0, 0,  # step line, a live thread: T0
        255, 1, 0, 0,  # raw run line (T0 is guessed done, so no substitution)
        16, 1,  # a step with no live thread becomes `Tn =`: fresh T1
        255, 6, 0, 0,  # raw op 6 (exit, not substituted by fork); no child: P0
    ])
    assert format_trace(decode(data)) == """# mirrorfuzz-trace 1
mmap P0 2097152 1024 rw shared huge
T0 = write P0 2097157 12345
step T0
run T0
T1 = exit P0
"""
    assert decode(encode(decode(data))) == decode(data)  # bytes may differ: several spellings
    headed = decode(bytes([12, 0, 0, 19]))  # frames: table, 64; `run` with no thread -> `Tn =`
    assert headed.headers == (("frames", "64"),)
    assert len(headed.steps) == 1 and headed.steps[0].thread == "T0"


def test_encode_ignores_comments_results_and_labels() -> None:
    trace = random_trace(random.Random(11), 30)
    decorated = with_headers(with_expected(trace, [Ok()] * 30), {"title": "x", "found-by": "y"})
    decorated = decorated.__class__(decorated.headers, (Comment("# hi"), *decorated.body))
    assert decode(encode(decorated)) == trace


def test_encode_hand_written_trace() -> None:
    text = """# mirrorfuzz-trace 1
# frames: 64
mmap P0 2097152 512 rw private huge
T0 = write P0 2097152 7
step T0
open P0 mirror
dread D0 2097152 16
fork P0
run T0
open P0 pin
pin D1 2097152 4 rw
dma R0 write 0 4 9 1
"""
    trace = parse_trace(text)
    assert format_trace(decode(encode(trace))) == text


def test_edited_traces_mostly_stay_encodable() -> None:
    """A minimizer or mutator deletes lines; raw categories keep most results encodable."""
    rng = random.Random(12)
    encoded = 0
    for _ in range(200):
        steps = list(random_trace(rng, rng.choice([10, 40, 120])).steps)
        for _ in range(rng.randint(1, 5)):
            del steps[rng.randrange(len(steps))]
        edited = make_trace(steps)
        try:
            data = encode(edited)
        except ValueError:
            continue
        assert decode(data) == edited
        encoded += 1
    assert encoded > 190


def test_encode_refuses_what_decode_cannot_give() -> None:
    too_long = make_trace([StepLine(Read(0, BASE))] * (MAX_STEPS + 1))
    with pytest.raises(ValueError):
        encode(too_long)
    with pytest.raises(ValueError):
        encode(make_trace([StepLine(Read(0, 1 << 70))]))  # not 8 raw bytes
    swapped = with_headers(make_trace([]), {"device-frames": "2", "frames": "64"})
    with pytest.raises(ValueError):
        encode(swapped)


# ---------------------------------------------- the documented distribution


def _sample(n: int = 300, steps: int = 120) -> list[StepLine]:
    rng = random.Random(5)
    lines: list[StepLine] = []
    for _ in range(n):
        lines.extend(random_trace(rng, steps, CURRENT).steps)
    return lines


SAMPLE = _sample()


def test_every_op_and_line_kind_occurs() -> None:
    ops = {op_keyword(s.action) for s in SAMPLE
           if not isinstance(s.action, StepThread | RunThread)}
    assert ops == {sch.keyword for sch in OP_SCHEMAS}
    threaded = sum(1 for s in SAMPLE
                   if s.thread is not None or isinstance(s.action, StepThread | RunThread))
    assert 0.25 < threaded / len(SAMPLE) < 0.45


def test_mostly_valid_arguments_with_some_out_of_range() -> None:
    addrs = [s.action.v for s in SAMPLE if isinstance(s.action, Read | Write)]
    in_window = sum(1 for v in addrs if BASE - 8 <= v <= BASE + WINDOW + 8)
    assert 0.85 < in_window / len(addrs) < 1.0
    boundaries = sum(1 for v in addrs if (v - BASE) % 512 == 0)
    assert boundaries / len(addrs) > 0.2
    values = [s.action.x for s in SAMPLE if isinstance(s.action, Write)]
    extreme = sum(1 for x in values if not -(2**16) < x < 2**16)
    assert 0 < extreme / len(values) < 0.15
    rare = collections.Counter(op_keyword(s.action) for s in SAMPLE
                               if not isinstance(s.action, StepThread | RunThread))
    assert rare["exit"] + rare["oomreap"] < 0.03 * len(SAMPLE)


def test_handles_come_from_earlier_lines() -> None:
    rng = random.Random(8)
    reserved = wrong_kind = total = 0
    for _ in range(100):
        pids: set[int] = {0}
        devs: dict[int, str] = {}
        regions: set[int] = set()
        jobs: set[int] = set()
        for line in random_trace(rng, 100).steps:
            a = line.action
            if isinstance(a, Read | Write):
                total += 1
                reserved += a.p in pids
            if isinstance(a, Dread | Pin | Reg):
                total += 1
                want = {Dread: "mirror", Pin: "pin", Reg: "userptr"}[type(a)]
                reserved += a.d in devs
                wrong_kind += a.d in devs and devs[a.d] != want
            if isinstance(a, Dma | Complete):
                total += 1
                reserved += (a.r in regions) if isinstance(a, Dma) else (a.j in jobs)
            if isinstance(a, Fork):
                pids.add(a.child)
            elif isinstance(a, Open):
                devs[a.dev] = a.kind
            elif isinstance(a, Reg | Pin):
                regions.add(a.region)
            elif isinstance(a, Submit):
                jobs.add(a.job)
    assert reserved / total > 0.9
    assert 0 < wrong_kind / total < 0.1


def test_substitution_creates_prerequisites() -> None:
    # The first op is from the weighted table: a device op becomes the open it needs.
    for first in range(255):
        trace = decode(bytes([0, 0, first]) + bytes(30))
        op = trace.steps[0].action
        assert isinstance(op, Mmap | Open | Fork), op
