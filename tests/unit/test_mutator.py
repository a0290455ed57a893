"""The structure-aware mutator: bounded, valid, deterministic, and every kind happens."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz import impls, mutator
from fuzz.codec import MAX_STEPS, decode, encode
from fuzz.executor import Settings, run_trace
from fuzz.mutator import crossover, crossover_kind, mutate, mutate_kind
from fuzz.trace import StepLine, format_trace, load_trace, make_trace, parse_trace
from fuzz.windows import reached
from model.ops import Mmap, Read, RunThread, StepThread, Write, op_keyword

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "corpus").rglob("*.trace"))


def _seeds() -> list[bytes]:
    out = []
    for path in CORPUS:
        try:
            out.append(encode(load_trace(str(path))))
        except ValueError:
            continue
    return out


SEEDS = _seeds()


def _valid(data: bytes) -> None:
    trace = decode(data)
    assert parse_trace(format_trace(trace)) == trace
    assert len(trace.steps) <= MAX_STEPS


def test_the_corpus_gives_seeds() -> None:
    assert len(SEEDS) >= 20


@pytest.mark.parametrize("max_size", [0, 1, 16, 64, 300, 4096])
def test_outputs_are_bytes_within_max_size_and_decode(max_size: int) -> None:
    rng = random.Random(max_size)
    inputs = [*SEEDS, b"", b"\x00", rng.randbytes(40), rng.randbytes(900)]
    for seed, data in enumerate(inputs):
        out = mutate(data, max_size, seed)
        assert isinstance(out, bytes) and len(out) <= max_size
        _valid(out)
        other = inputs[(seed * 7 + 3) % len(inputs)]
        child = crossover(data, other, max_size, seed)
        assert isinstance(child, bytes) and len(child) <= max_size
        _valid(child)


@given(st.binary(max_size=600), st.binary(max_size=600), st.integers(0, 5000),
       st.integers(0, 2**32 - 1))
def test_any_input_gives_a_bounded_valid_output(a: bytes, b: bytes, max_size: int,
                                                 seed: int) -> None:
    out = mutate(a, max_size, seed)
    assert len(out) <= max_size
    _valid(out)
    child = crossover(a, b, max_size, seed)
    assert len(child) <= max_size
    _valid(child)


def test_deterministic_for_a_seed() -> None:
    for seed, data in enumerate(SEEDS[:15]):
        assert mutate(data, 4096, seed) == mutate(data, 4096, seed)
        other = SEEDS[-1 - seed]
        assert crossover(data, other, 4096, seed) == crossover(data, other, 4096, seed)
    outs = {mutate(SEEDS[0], 4096, seed) for seed in range(30)}
    assert len(outs) > 20  # the seed matters


def test_every_mutation_kind_happens() -> None:
    kinds: collections.Counter[str] = collections.Counter()
    crossings: collections.Counter[str] = collections.Counter()
    for seed in range(400):
        data = SEEDS[seed % len(SEEDS)]
        kinds[mutate_kind(data, 4096, seed)[0]] += 1
        other = SEEDS[(seed * 5 + 1) % len(SEEDS)]
        crossings[crossover_kind(data, other, 4096, seed)[0]] += 1
    assert set(kinds) == {*mutator.MUTATE_WEIGHTS, "bytes"}
    assert set(mutator.CROSSOVER_WEIGHTS) <= set(crossings)
    structural = sum(n for k, n in kinds.items() if k != "bytes")
    assert structural > 0.7 * sum(kinds.values())  # the byte fallback stays a fallback


def _lines(data: bytes) -> list[str]:
    return format_trace(decode(data)).splitlines()[1:]


def test_each_kind_changes_what_it_says() -> None:
    for seed in range(300):
        data = SEEDS[seed % len(SEEDS)]
        kind, out = mutate_kind(data, 1 << 16, seed)
        before, after = decode(data), decode(out)
        n, m = len(before.steps), len(after.steps)
        if kind == "insert":
            assert n < m <= n + 3 or m == MAX_STEPS
        elif kind == "delete":
            assert m < n
        elif kind == "duplicate":
            assert n < m <= n + 4 or m == MAX_STEPS
        elif kind == "swap":
            assert m == n
            assert sorted(_lines(data)) != [] and _lines(data) != _lines(out)
        elif kind == "edit":
            assert m == n
            changed = [i for i, (x, y) in enumerate(zip(before.steps, after.steps, strict=True))
                       if x != y]
            assert len(changed) <= 1 or before.headers == after.headers
            assert changed or before.headers != after.headers


def test_bytes_kind_uses_the_byte_mutator_given() -> None:
    calls = []

    def fake(data: bytes, max_size: int) -> bytes:
        calls.append(max_size)
        return b"\xaa" * (max_size + 10)  # too long: must be cut

    seen = 0
    for seed in range(200):
        kind, out = mutate_kind(SEEDS[0], 50, seed, byte_mutate=fake)
        if kind == "bytes":
            seen += 1
            assert out == b"\xaa" * 50
    assert seen and calls and set(calls) == {50}


def test_line_references_follow_their_lines() -> None:
    mm = StepLine(Mmap(0, 0, 4, "rw", "private"))
    w = StepLine(Write(0, 1, 5))
    step_l2 = StepLine(StepThread("L2"))
    run_t1 = StepLine(RunThread("T1"))
    entries: list[mutator.Entry] = [(("a", 1), mm), (("a", 2), w), (("a", 3), step_l2),
                                    (("a", 4), run_t1)]
    # delete line 1: `step L2` must now say L1
    relinked = mutator._relink(entries[1:])
    assert relinked[1].action == StepThread("L1")
    assert relinked[2].action == RunThread("T1")
    # a line from the other input refers to that input's numbering
    spliced = mutator._relink([*entries[:2], (("b", 5), w), (("b", 6), StepLine(StepThread("L5")))])
    assert spliced[3].action == StepThread("L3")
    # a reference to a line that is gone stays as written
    assert mutator._relink([entries[2]])[0].action == StepThread("L2")


def test_crossover_mixes_both_parents() -> None:
    mm = StepLine(Mmap(0, 1 << 21, 64, "rw", "private"))
    reads = encode(make_trace([mm, *(StepLine(Read(0, (1 << 21) + i)) for i in range(20))]))
    writes = encode(make_trace([mm, *(StepLine(Write(0, (1 << 21) + i, i)) for i in range(20))]))
    mixed = 0
    for seed in range(40):
        keywords = {op_keyword(s.action) for s in decode(crossover(reads, writes, 4096, seed)).steps
                    if not isinstance(s.action, StepThread | RunThread)}
        mixed += {"read", "write"} <= keywords
    assert mixed >= 20


def test_insert_uses_the_context_of_the_prefix() -> None:
    # after an mmap far from the codec's default window, about half the new
    # lines touch its range (the codec's bias), which only the prefix's
    # context can give: decoded without it, none would
    far = 1 << 30
    base = encode(make_trace([StepLine(Mmap(0, far, 512, "rw", "private"))]))
    inside = total = 0
    for seed in range(800):
        kind, out = mutate_kind(base, 4096, seed)
        if kind != "insert":
            continue
        for line in decode(out).steps[1:]:
            v = getattr(line.action, "v", None)
            if v is not None:
                total += 1
                inside += far <= v < far + 512
    assert total >= 20 and inside >= 0.4 * total


def test_window_lands_an_op_inside_another_ops_window() -> None:
    """The window kind turns a racer into a thread stepped into one of its
    windows, with an op started there (fuzz.windows counts the combination)."""
    landed = 0
    for seed in range(300):
        data = random.Random(seed).randbytes(200)
        kind, out = mutate_kind(data, 4096, seed)
        if kind != "window":
            continue
        steps = decode(out).steps
        threads = [i for i, s in enumerate(steps) if s.thread is not None]
        assert threads
        verdict = run_trace(decode(out), impls.sides("reference"), Settings(observe_every=0))
        combos, _ = reached(decode(out).steps[:len(verdict.results)], verdict.results)
        landed += bool(combos)
    assert landed >= 5
