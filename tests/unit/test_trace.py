"""The trace text format (SPEC §2): round trip, malformed lines, handle reservation."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.trace import (
    Blank,
    Comment,
    StepLine,
    Trace,
    TraceError,
    format_result,
    format_step,
    format_trace,
    load_trace,
    make_trace,
    parse_result,
    parse_trace,
    renumber,
    with_expected,
    with_headers,
)
from model.ops import (
    DEFAULT_DEVICE_FRAMES,
    DEFAULT_FRAMES,
    OP_SCHEMAS,
    SNAP_WORDS,
    Blocked,
    BlockedOn,
    Done,
    Dread,
    Dwrite,
    Err,
    Errno,
    Fork,
    HandleResult,
    LineResult,
    Mmap,
    Num,
    Ok,
    Op,
    Open,
    OpResult,
    Pin,
    Read,
    Reg,
    RunThread,
    Segv,
    Snap,
    StepThread,
    Submit,
    Values,
    Yielded,
)

MAGIC = "# mirrorfuzz-trace 1\n"

# Every op (optional arguments both given and omitted) and every result form.
CANONICAL = MAGIC + """\
# frames: 64
# device-frames: 8
# title: every op and result
# found-by: hand
# signature: none
# a comment, then a blank line

  #   an indented comment with trailing space and => arrow  \n\
mmap P0 2097152 512 rw private huge => ok
mmap P0 0 16 r shared
mmap P0 16 1 none private => EINVAL
munmap P0 0 4 => ok
mremap P0 4 2 100 => EFAULT
mprotect P0 0 8 none => ENOMEM
madvise P0 0 8 dontneed => ENOMEM
madvise P0 0 8 hugepage
madvise P0 0 8 nohugepage
fork P0 => P1
T1 = write P1 5 -7 => ok
step T1 => yield
step T1 => blocked
run T1 => done ok
step T9 => EINVAL
read P0 5 => -9223372036854775808
read P1 6 => SIGSEGV
open P0 mirror => D0
open P1 userptr => D1
open P0 pin => D2
dread D0 0 3 => values 1 2 3 faults 1
dread D0 0 1 => values 0
dwrite D0 0 3 7 => ok faults 2
dwrite D0 0 3 7 -1 => ok faults 0
snapshot D0 0 9 => snap error none zero r w r+pmd w+pmd dev-r dev-w
migrate_to_dev D0 0 4 => ENOENT
evict D0 => 3
reg D1 0 4 rw => R0
submit R0 read 0 4 => J0
submit R0 write 0 4 1 => J1
submit R0 write 0 4 1 2 => EPERM
complete J0 => values 0 0 0 0
unreg R0 => EBUSY
pin D2 0 4 ro => R1
dma R1 read 0 4 => values 5 6 7 8
dma R1 write 1 2 9 => ok
dma R1 write 1 2 9 3 => ok
unpin R1 => ok
migrate P0 0 1024 => 512
reclaim P0 0 16 => 0
oomreap P1 => ok
exit P1 => ESRCH
T2 = evict D0 => ok
run T2 => done 0
read P0 99 => blocked L48
run L48 => blocked
run T2 => done values 1 faults 1
step T3 => done snap zero
T0 = read P0 3 => EINVAL
write_range P0 0 3 5 => ok
write_range P0 0 3 5 -1 => SIGSEGV
read_range P0 0 3 => values 5 4 3
"""

ALL_RESULTS: list[LineResult] = [
    Ok(), Ok(3), Num(0), Num(-5), Num(2**63 - 1), HandleResult("P", 1), HandleResult("D", 0),
    HandleResult("R", 12), HandleResult("J", 3), Values((1, -2, 3)), Values((0,), 4),
    Snap(SNAP_WORDS), Segv(), *(Err(e) for e in Errno), Yielded(), Blocked(), Done(Ok()),
    Done(Values((1,), 1)), Done(Err(Errno.EBUSY)), BlockedOn("L3"), BlockedOn("T0"),
]


def test_canonical_round_trip() -> None:
    trace = parse_trace(CANONICAL, "x.trace")
    assert format_trace(trace) == CANONICAL
    assert parse_trace(format_trace(trace)) == trace
    assert trace.path == "x.trace"
    assert trace.frames == 64 and trace.device_frames == 8
    assert trace.header("title") == "every op and result"
    assert trace.header("nope") is None
    keywords = {type(s.action) for s in trace.steps}
    assert {sch.cls for sch in OP_SCHEMAS} <= keywords
    assert {StepThread, RunThread} <= keywords


def test_body_kinds_and_line_numbers() -> None:
    trace = parse_trace(CANONICAL)
    assert trace.body[0] == Comment("# a comment, then a blank line")
    assert trace.body[1] == Blank()
    assert trace.body[2] == Comment(
        "  #   an indented comment with trailing space and => arrow  ")
    first = trace.steps[0]
    assert first.lineno == 10 and CANONICAL.split("\n")[first.lineno - 1].startswith("mmap")
    assert first.action == Mmap(0, 2097152, 512, "rw", "private", True)
    assert first.expected == Ok()
    t1 = trace.steps[10]
    assert t1.thread == "T1" and t1.expected == Ok()
    assert trace.steps[13].action == RunThread("T1") and trace.steps[13].expected == Done(Ok())


def test_optional_arguments() -> None:
    steps = parse_trace(CANONICAL).steps
    by_text = {format_step(s).split(" =>")[0]: s.action for s in steps}
    assert by_text["mmap P0 0 16 r shared"] == Mmap(0, 0, 16, "r", "shared", False)
    assert by_text["dwrite D0 0 3 7"] == Dwrite(0, 0, 3, 7, None)
    assert by_text["dwrite D0 0 3 7 -1"] == Dwrite(0, 0, 3, 7, -1)
    assert by_text["submit R0 read 0 4"] == Submit(0, "read", 0, 4, None, None, job=0)
    assert by_text["submit R0 write 0 4 1 2"] == Submit(0, "write", 0, 4, 1, 2, job=2)


def test_defaults_without_headers() -> None:
    trace = parse_trace(MAGIC + "read P0 1\n")
    assert trace.headers == ()
    assert (trace.frames, trace.device_frames) == (DEFAULT_FRAMES, DEFAULT_DEVICE_FRAMES)


def test_header_only_right_after_line_one() -> None:
    trace = parse_trace(MAGIC + "# note: x\n# frames: 5\n")
    assert trace.headers == ()
    assert trace.body == (Comment("# note: x"), Comment("# frames: 5"))
    assert trace.frames == DEFAULT_FRAMES


def test_crlf_and_no_final_newline() -> None:
    trace = parse_trace("# mirrorfuzz-trace 1\r\n# frames: 7\r\nread P0 1 => 0\r\n  \t\nfork P0")
    assert trace.frames == 7
    assert [s.action for s in trace.steps] == [Read(0, 1), Fork(0, 1)]
    assert format_trace(trace) == MAGIC + "# frames: 7\nread P0 1 => 0\n\nfork P0\n"


def test_lenient_spacing_prints_canonically() -> None:
    with pytest.raises(TraceError, match="only the result of a step or run"):
        parse_trace(MAGIC + "T3=read P0 7 => done 5\n")
    trace = parse_trace(MAGIC + "  T3=read   P0\t7=>  ok\n")
    assert format_trace(trace) == MAGIC + "T3 = read P0 7 => ok\n"


# --------------------------------------------------------- reservation


def test_handle_reservation_in_line_order() -> None:
    text = MAGIC + "\n".join([
        "fork P0",  # P1
        "open P0 mirror",  # D0
        "T1 = fork P1",  # P2 (a thread line reserves too)
        "reg D0 0 1 rw => EINVAL",  # R0, even though it fails
        "pin D0 0 1 ro",  # R1 (shared with reg)
        "open P1 pin",  # D1
        "submit R0 read 0 1",  # J0
        "step T1",
        "submit R0 read 0 1",  # J1
        "fork P0",  # P3
    ]) + "\n"
    actions = [s.action for s in parse_trace(text).steps]
    assert actions[0] == Fork(0, child=1)
    assert actions[1] == Open(0, "mirror", dev=0)
    assert actions[2] == Fork(1, child=2)
    assert actions[3] == Reg(0, 0, 1, "rw", region=0)
    assert actions[4] == Pin(0, 0, 1, "ro", region=1)
    assert actions[5] == Open(1, "pin", dev=1)
    assert isinstance(actions[6], Submit) and actions[6].job == 0
    assert isinstance(actions[8], Submit) and actions[8].job == 1
    assert actions[9] == Fork(0, child=3)


def test_renumber_after_deleting_a_line() -> None:
    steps = parse_trace(MAGIC + "fork P0\nopen P0 mirror\nfork P0\nopen P0 pin\n").steps
    kept = renumber([steps[1], steps[2], steps[3]])
    assert [s.action for s in kept] == [Open(0, "mirror", 0), Fork(0, 1), Open(0, "pin", 1)]
    # Synthetic step lines with unset (-1) reserved fields get numbers too.
    made = make_trace([StepLine(Fork(0)), StepLine(Open(0, "pin")), StepLine(Fork(0))])
    assert [s.action for s in made.steps] == [Fork(0, 1), Open(0, "pin", 0), Fork(0, 2)]


# ------------------------------------------------------------ malformed

MALFORMED = [
    ("reed P0 1", "unknown op 'reed'"),
    ("mmap P0 0 1 rw", "'mmap' takes P s n prot kind [huge], got 4 arguments"),
    ("mmap P0 0 1 rw private huge huge", "got 7 arguments"),
    ("submit R0 write 0 1 1 1 1", "'submit' takes R direction off cnt [x [stride]], got 7"),
    ("fork", "'fork' takes P, got 0 arguments"),
    ("read P0 x", "argument 'v' must be an integer, got 'x'"),
    ("read P0 1.5", "must be an integer"),
    ("read P0 0x10", "must be an integer"),
    ("read P0 +1", "must be an integer"),
    ("write P0 1 " + "9" * 101, "must be an integer"),
    ("read D0 1", "argument 'p' must be a P handle like P0, got 'D0'"),
    ("dread P0 0 1", "must be a D handle"),
    ("read P01 1", "must be a P handle"),
    ("read P-1 1", "must be a P handle"),
    ("mmap P0 0 1 rwx private", "argument 'prot' must be none|r|rw, got 'rwx'"),
    ("mmap P0 0 1 rw private large", "argument 'huge' must be huge"),
    ("madvise P0 0 1 free", "must be dontneed|hugepage|nohugepage"),
    ("open P0 gpu", "must be mirror|userptr|pin"),
    ("step X1", "expected a thread Tn or Li, got 'X1'"),
    ("step T01", "expected a thread Tn or Li"),
    ("step", "'step' takes one thread"),
    ("run T1 T2", "'run' takes one thread"),
    ("L1 = read P0 1", "expected a thread Tn before '='"),
    ("T1 = step T2", "'T1 =' takes an op, not 'step'"),
    ("T1 =", "expected an op after 'T1 ='"),
    ("=> ok", "expected an op"),
    ("read P0 1 =>", "bad result: empty result"),
    ("read P0 1 => okay", "bad result: unknown result 'okay'"),
    ("read P0 1 => ok faults", "expected 'ok' or 'ok faults F'"),
    ("read P0 1 => values", "'values' needs at least one integer"),
    ("read P0 1 => values 1 faults -1", "must be a natural number"),
    ("read P0 1 => snap big", "snap word must be one of"),
    ("read P0 1 => EAGAIN", "unknown result 'EAGAIN'"),
    ("read P0 1 => done", "'done' needs an op result"),
    ("read P0 1 => done yield", "unknown result 'yield'"),
    ("read P0 1 => yield", "'yield' is only the result of a step or run line"),
    ("run T1 => yield", "'run' never gives 'yield'"),
    ("step T1 => blocked L1", "only the result of a plain op line"),
    ("T1 = read P0 1 => blocked L1", "only the result of a plain op line"),
    ("read P0 1 => blocked X", "expected 'blocked' or 'blocked THREAD'"),
    ("read P0 1 # comment", "got 4 arguments"),
]


@pytest.mark.parametrize(("line", "message"), MALFORMED)
def test_malformed_line_names_its_line(line: str, message: str) -> None:
    text = MAGIC + "# frames: 9\n\nread P0 1\n" + line + "\nread P0 2\n"
    with pytest.raises(TraceError) as info:
        parse_trace(text, "t.trace")
    e = info.value
    assert (e.path, e.lineno) == ("t.trace", 5)
    assert message in e.message
    assert str(e) == f"t.trace:5: {e.message}" and "\n" not in str(e)


def test_trace_error_pickles() -> None:
    e = TraceError("a.trace", 3, "bad")
    copy = pickle.loads(pickle.dumps(e))
    assert (copy.path, copy.lineno, copy.message, str(copy)) == ("a.trace", 3, "bad",
                                                                 "a.trace:3: bad")


@pytest.mark.parametrize(("text", "lineno", "message"), [
    ("", 1, "got an empty file"),
    ("# mirrorfuzz-trace 2\n", 1, "expected '# mirrorfuzz-trace 1' as line 1"),
    ("read P0 1\n", 1, "as line 1"),
    (MAGIC + "# frames: 0\n", 2, "header 'frames' must be a positive integer, got '0'"),
    (MAGIC + "# frames: -3\n", 2, "must be a positive integer"),
    (MAGIC + "# title: x\n# device-frames: lots\n", 3, "'device-frames' must be a positive"),
    (MAGIC + "# frames: 99999999999999999999\n", 2, "must be a positive integer"),
    (MAGIC + "# frames: 4\n# frames: 4\n", 3, "header 'frames' given twice"),
])
def test_bad_first_line_and_headers(text: str, lineno: int, message: str) -> None:
    with pytest.raises(TraceError) as info:
        parse_trace(text)
    assert info.value.lineno == lineno and message in info.value.message


def test_out_of_range_integers_are_well_formed() -> None:
    text = MAGIC + "\n".join([
        "mmap P0 0 0 rw private",  # n = 0
        "mmap P0 100000000000 1 rw private",  # s past 2^36
        "read P0 -1",  # negative natural: kept, EINVAL at run time
        "write P0 1 " + str(2**70),  # a word that does not fit 64 bits: kept
        "dwrite D7 0 1 1 " + "-" + "9" * 100,
        "read P99 1",  # an unreserved handle: EINVAL at run time
    ]) + "\n"
    steps = parse_trace(text).steps
    assert steps[0].action == Mmap(0, 0, 0, "rw", "private")
    assert steps[2].action == Read(0, -1)
    assert steps[3].action.x == 2**70  # type: ignore[union-attr]
    assert steps[4].action == Dwrite(7, 0, 1, 1, -int("9" * 100))
    assert format_trace(parse_trace(text)) == text


# --------------------------------------------------------------- results


@pytest.mark.parametrize("result", ALL_RESULTS, ids=str)
def test_result_round_trip(result: LineResult) -> None:
    assert parse_result(format_result(result)) == result
    assert format_result(result) == str(result)


def test_parse_result_forms() -> None:
    assert parse_result(" values 1  2 faults 3 ") == Values((1, 2), 3)
    with pytest.raises(ValueError, match="must be an integer"):
        parse_result("values 1 faults")
    assert parse_result("done ok faults 2") == Done(Ok(2))
    assert parse_result("blocked L12") == BlockedOn("L12")
    assert parse_result("-0") == Num(0)
    for bad in ["", "ok ok", "P", "Q1", "values x", "snap", "done blocked", "SIGSEGV 1"]:
        with pytest.raises(ValueError):
            parse_result(bad)


# ------------------------------------------------------------- building


def test_with_expected_and_headers() -> None:
    base = parse_trace(MAGIC + "# a\nread P0 1\nstep T1 => yield\n\nfork P0\n")
    annotated = with_expected(base, [Num(0), Err(Errno.EINVAL), HandleResult("P", 1)])
    assert [s.expected for s in annotated.steps] == [
        Num(0), Err(Errno.EINVAL), HandleResult("P", 1)]
    assert annotated.body[0] == Comment("# a") and annotated.body[3] == Blank()
    partly = with_expected(base, [None])
    assert [s.expected for s in partly.steps] == [None, Yielded(), None]
    with pytest.raises(ValueError):
        with_expected(base, [Ok()] * 4)
    headed = with_headers(annotated, {"frames": "64", "title": "t"})
    headed = with_headers(headed, {"frames": "32"})
    assert headed.headers == (("frames", "32"), ("title", "t")) and headed.frames == 32
    assert parse_trace(format_trace(headed)) == headed
    for bad in [{"color": "red"}, {"frames": "0"}, {"device-frames": "x"}]:
        with pytest.raises(ValueError):
            with_headers(base, bad)


@pytest.mark.parametrize("trace", [
    Trace(body=(Comment("no hash"),)),
    Trace(body=(Comment("# two\n# lines"),)),
    Trace(body=(Comment("# frames: 3"),)),  # would read back as a header
    Trace(headers=(("frames", "0"),)),
    Trace(headers=(("title", " padded"),)),
    Trace(headers=(("colour", "red"),)),
    Trace(body=(StepLine(Read(-1, 0)),)),
    Trace(body=(StepLine(Mmap(0, 0, 1, "rwx", "private")),)),  # type: ignore[arg-type]
    Trace(body=(StepLine(Dread(0, 0, True)),)),  # a bool is not an integer here
    Trace(body=(StepLine(Submit(0, "write", 0, 1, None, 3)),)),  # stride without x
    Trace(body=(StepLine(Read(0, 0), thread="L1"),)),
    Trace(body=(StepLine(StepThread("T1"), thread="T2"),)),
    Trace(body=(StepLine(StepThread("X")),)),
    Trace(body=(StepLine(Read(0, 0), expected=Yielded()),)),
    Trace(body=(StepLine(Read(0, 0), expected=Snap(("bogus",))),)),
])
def test_format_refuses_what_cannot_read_back(trace: Trace) -> None:
    with pytest.raises(ValueError):
        format_trace(trace)


def test_load_trace(tmp_path: Path) -> None:
    good = tmp_path / "good.trace"
    good.write_text(CANONICAL, encoding="utf-8")
    assert load_trace(str(good)) == parse_trace(CANONICAL)
    assert load_trace(str(good)).path == str(good)
    bad = tmp_path / "bad.trace"
    bad.write_bytes(MAGIC.encode() + b"read P0 1\n# caf\xe9\n")
    with pytest.raises(TraceError) as info:
        load_trace(str(bad))
    assert info.value.lineno == 3 and "not UTF-8" in str(info.value)
    fifo = tmp_path / "fifo.trace"
    os.mkfifo(fifo)  # read, it would block forever: only regular files are read
    for unreadable, why in [(tmp_path / "nope.trace", "no such file"),
                            (tmp_path, "a directory"), (fifo, "a FIFO")]:
        with pytest.raises(TraceError) as info:
            load_trace(str(unreadable))
        assert why in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------ property tests


def _value(kind: str | tuple[str, ...]) -> st.SearchStrategy[object]:
    if isinstance(kind, tuple):
        return st.sampled_from(kind)
    if kind in ("P", "D", "R", "J"):
        return st.integers(0, 300)
    if kind == "nat":
        return st.integers(-3, 2**40) | st.sampled_from([2**64, 10**99])
    return st.integers(-(2**64), 2**64)


@st.composite
def ops(draw: st.DrawFn) -> Op:
    schema = draw(st.sampled_from(OP_SCHEMAS))
    values: dict[str, object] = {}
    present = True
    for arg in schema.args:
        if arg.kind == ("huge",):
            values[arg.field] = draw(st.booleans())
        elif arg.optional:
            present = present and draw(st.booleans())
            values[arg.field] = draw(_value(arg.kind)) if present else None
        else:
            values[arg.field] = draw(_value(arg.kind))
    op: Op = schema.cls(**values)
    return op


_names = st.builds(lambda c, n: f"{c}{n}", st.sampled_from("TL"), st.integers(0, 99))
_op_results: st.SearchStrategy[OpResult] = st.sampled_from(
    [r for r in ALL_RESULTS if isinstance(r, Ok | Num | HandleResult | Values | Snap | Err | Segv)]
) | st.builds(Num, st.integers(-(2**70), 2**70))


@st.composite
def step_lines(draw: st.DrawFn) -> StepLine:
    form = draw(st.sampled_from(["plain", "tn", "step", "run"]))
    if form in ("step", "run"):
        name = draw(_names)
        action = StepThread(name) if form == "step" else RunThread(name)
        outcomes: list[LineResult] = [Blocked(), Done(draw(_op_results))]
        if form == "step":
            outcomes.append(Yielded())
        expected = draw(st.none() | st.sampled_from(outcomes) | _op_results)
        return StepLine(action, None, expected)
    thread = f"T{draw(st.integers(0, 50))}" if form == "tn" else None
    results: st.SearchStrategy[LineResult | None] = st.none() | _op_results
    if form == "plain":
        results = results | st.builds(BlockedOn, _names)
    return StepLine(draw(ops()), thread, draw(results))


_comments = st.builds(
    lambda pad, text: Comment(pad + "#" + text),
    st.sampled_from(["", " ", "\t"]),
    st.text(st.characters(blacklist_characters="\n\r"), max_size=20),
)


@st.composite
def traces(draw: st.DrawFn) -> Trace:
    body = draw(st.lists(step_lines() | _comments | st.just(Blank()), max_size=30))
    steps = iter(renumber([line for line in body if isinstance(line, StepLine)]))
    body = [next(steps) if isinstance(line, StepLine) else line for line in body]
    if body and isinstance(body[0], Comment):
        body.insert(0, Blank())  # a comment right after the headers could read as one
    keys = draw(st.lists(st.sampled_from(["frames", "device-frames", "title", "found-by",
                                          "signature"]), unique=True))
    headers = tuple(
        (k, str(draw(st.integers(1, 2**63 - 1))) if "frames" in k else draw(
            st.text(st.characters(blacklist_categories=("Cc", "Zs", "Zl", "Zp")), max_size=8)))
        for k in keys)
    return Trace(headers, tuple(body))


@given(traces())
def test_format_then_parse_is_identity(trace: Trace) -> None:
    text = format_trace(trace)
    assert parse_trace(text) == trace
    assert format_trace(parse_trace(text)) == text


_ALPHABET = st.sampled_from(
    list("PDRJTL0123456789 -=>#\n\r\tx:") + ["read", "mmap", "step", "run", "ok", "values",
                                             "faults", "done", "blocked", "snap", "huge",
                                             "rw", "private", "frames", "\u2028", "\x00", "é"])


@given(st.lists(_ALPHABET, max_size=60).map("".join) | st.text(max_size=80), st.booleans())
def test_random_text_gives_only_trace_error(body: str, magic: bool) -> None:
    text = (MAGIC if magic else "") + body
    try:
        trace = parse_trace(text)
    except TraceError as e:
        assert "\n" not in str(e) and e.lineno >= 1
        return
    assert parse_trace(format_trace(trace)) == trace


@given(st.integers(0, 2**32), st.integers(1, 8))
def test_mutated_traces_give_only_trace_error(seed: int, edits: int) -> None:
    rng = random.Random(seed)
    text = list(CANONICAL)
    pieces = [" ", "\n", "=", "=>", "#", "P", "D", "T", "L", "-", "0", "9", "x", "ok", ":"]
    for _ in range(edits):
        i = rng.randrange(len(text))
        choice = rng.randrange(3)
        if choice == 0:
            del text[i]
        elif choice == 1:
            text.insert(i, rng.choice(pieces))
        else:
            text[i] = rng.choice(pieces)
    mutated = "".join(text)
    try:
        trace = parse_trace(mutated)
    except TraceError as e:
        assert 1 <= e.lineno <= mutated.count("\n") + 1
        return
    assert parse_trace(format_trace(trace)) == trace
