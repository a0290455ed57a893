"""The trace text format (SPEC §2): parse and print, with exact round trip.

A trace is UTF-8 text::

    # mirrorfuzz-trace 1                 line 1, exactly
    # frames: 64                         headers: `# key: value` right after line 1
    # a comment                          any other line whose first non-blank is '#'
                                         blank lines (kept, for the round trip)
    mmap P0 0 512 rw private huge        a plain op           [=> RESULT]
    T1 = write P0 5 7                    start thread T1      [=> RESULT]
    step T1                              step a thread        [=> RESULT]
    run L2                               run a thread         [=> RESULT]

Rules this module enforces (everything else is decided at run time):

* **Malformed is rejected whole.**  An unknown op or keyword, the wrong arity,
  a non-integer where an integer belongs, a handle with the wrong letter, a bad
  thread name, or a bad ``=> RESULT`` makes :func:`parse_trace` raise
  :class:`TraceError` naming the line; no other exception escapes it.
* **Integers are kept, not judged.**  An integer is ``-?[0-9]+`` (ASCII, at
  most 100 digits; a longer literal is malformed).  Out-of-range integers are
  well-formed and reach the implementations, which give ``EINVAL``: ``n = 0``,
  ``s`` past 2^36, a *negative* number where a natural number belongs, and a
  ``word`` (value, stride) that does not fit 64 bits are all kept as written.
  Handle and thread numbers are natural numbers without leading zeros
  (``P01`` is malformed, like ``T01``).
* **Handles are static.**  In line order, each step line whose op is
  ``fork``, ``open``, ``reg``/``pin`` or ``submit`` reserves the next number of
  kind P (from 1), D, R (shared by reg and pin) or J (from 0); the parser fills
  the op's reserved field (``model.ops.OP_SCHEMAS``); :func:`renumber` redoes
  it after lines are added or removed.
* **Headers.**  Only the keys ``frames``, ``device-frames``, ``title``,
  ``found-by`` and ``signature`` make header lines, only in the run of lines
  right after line 1 (a header-looking line later is a comment).  The value is
  the text after the colon, stripped.  A key may appear once; ``frames`` and
  ``device-frames`` must be integers in [1, 2^63).
* **Results by line kind** (SPEC §2 line-result): ``blocked Li`` only on a
  plain op line; ``yield``, ``blocked`` and ``done R`` only on ``step``/``run``
  lines, and ``run`` never gives ``yield``.  Any op-result may annotate any
  line (an ``EINVAL`` for ``Tn =``, ``step`` or ``run``).
* **Canonical text**: single spaces, `` => `` before the result, ``\\n`` line
  ends with a final newline (CRLF is read as LF; a carriage return anywhere
  else is malformed, so that every parsed header and comment prints back),
  comments verbatim, blank lines empty.  ``format_trace(parse_trace(t)) == t``
  for canonical ``t``, and ``parse_trace(format_trace(x)) == x`` for every trace ``x`` that
  :func:`format_trace` accepts (it raises ``ValueError`` for a trace no text
  can give back, e.g. a comment not starting with ``#`` or an op field of the
  wrong type) whose reserved fields are as :func:`renumber` sets them (true of
  every trace made by :func:`parse_trace`, :func:`make_trace` or the codec).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Final

from model.ops import (
    DEFAULT_DEVICE_FRAMES,
    DEFAULT_FRAMES,
    FIRST_HANDLE,
    SCHEMA_BY_CLASS,
    SCHEMA_BY_KEYWORD,
    SNAP_WORDS,
    WORD_MAX,
    Arg,
    Blocked,
    BlockedOn,
    Done,
    Err,
    Errno,
    HandleResult,
    LineResult,
    Num,
    Ok,
    Op,
    OpResult,
    OpSchema,
    RunThread,
    Segv,
    Snap,
    StepThread,
    Values,
    Yielded,
    format_op,
)

MAGIC: Final = "# mirrorfuzz-trace 1"
HEADER_KEYS: Final = ("frames", "device-frames", "title", "found-by", "signature", "driver")
INT_HEADERS: Final = ("frames", "device-frames")
MAX_INT_DIGITS: Final = 100

_INT_RE = re.compile(rf"-?[0-9]{{1,{MAX_INT_DIGITS}}}")
_NAT_NUM = rf"(?:0|[1-9][0-9]{{0,{MAX_INT_DIGITS - 1}}})"
_HANDLE_RE = re.compile(rf"([PDRJ])({_NAT_NUM})")
_TTHREAD_RE = re.compile(rf"T{_NAT_NUM}")
_THREAD_RE = re.compile(rf"[TL]{_NAT_NUM}")
_HEADER_RE = re.compile(r"# ([a-z-]+):(.*)")
_POSINT_RE = re.compile(r"[0-9]{1,20}")


# ------------------------------------------------------------------ types


@dataclass(frozen=True)
class Comment:
    """A whole ``#`` line, verbatim (not a header)."""

    text: str


@dataclass(frozen=True)
class Blank:
    """A blank line."""


@dataclass(frozen=True)
class StepLine:
    """One step line: a plain op, ``Tn = op``, ``step X`` or ``run X``."""

    action: Op | StepThread | RunThread
    thread: str | None = None  # "Tn" for `Tn = op`, else None
    expected: LineResult | None = None  # the `=> RESULT` annotation
    lineno: int = field(default=0, compare=False)  # 1-based source line, 0 if synthetic


BodyLine = StepLine | Comment | Blank


@dataclass(frozen=True)
class Trace:
    """A parsed trace: headers in order, then the body lines."""

    headers: tuple[tuple[str, str], ...] = ()
    body: tuple[BodyLine, ...] = ()
    path: str = field(default="<trace>", compare=False)

    @cached_property
    def steps(self) -> tuple[StepLine, ...]:
        return tuple(line for line in self.body if isinstance(line, StepLine))

    def header(self, key: str) -> str | None:
        for k, v in self.headers:
            if k == key:
                return v
        return None

    @property
    def frames(self) -> int:
        value = self.header("frames")
        return DEFAULT_FRAMES if value is None else int(value)

    @property
    def device_frames(self) -> int:
        value = self.header("device-frames")
        return DEFAULT_DEVICE_FRAMES if value is None else int(value)


class TraceError(Exception):
    """A trace that cannot be read: ``path:lineno: message`` on one line."""

    def __init__(self, path: str, lineno: int, message: str) -> None:
        self.path = path
        self.lineno = lineno
        self.message = message
        super().__init__(path, lineno, message)  # args as given: pickles across processes

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.message}"


def _show(token: str, limit: int = 40) -> str:
    """A token for an error message: quoted, escaped, bounded."""
    if len(token) > limit:
        token = token[:limit] + "..."
    return repr(token)


# ---------------------------------------------------------------- results


def _int(token: str, what: str) -> int:
    if _INT_RE.fullmatch(token) is None:
        raise ValueError(f"{what} must be an integer, got {_show(token)}")
    return int(token)


def _nat(token: str, what: str) -> int:
    value = _int(token, what)
    if value < 0:
        raise ValueError(f"{what} must be a natural number, got {_show(token)}")
    return value


_ERRNOS: Final = {e.value: e for e in Errno}


def _parse_op_result(tokens: list[str]) -> OpResult:
    head = tokens[0]
    if head == "ok":
        if len(tokens) == 1:
            return Ok()
        if len(tokens) == 3 and tokens[1] == "faults":
            return Ok(_nat(tokens[2], "'ok faults' count"))
        raise ValueError("expected 'ok' or 'ok faults F'")
    if head == "values":
        ints, faults = tokens[1:], None
        if len(tokens) >= 4 and tokens[-2] == "faults":
            ints, faults = tokens[1:-2], _nat(tokens[-1], "'faults' count")
        if not ints:
            raise ValueError("'values' needs at least one integer")
        return Values(tuple(_int(t, "a value") for t in ints), faults)
    if head == "snap":
        if len(tokens) == 1:
            raise ValueError("'snap' needs at least one word")
        for t in tokens[1:]:
            if t not in SNAP_WORDS:
                raise ValueError(f"snap word must be one of {'|'.join(SNAP_WORDS)}, got {_show(t)}")
        return Snap(tuple(tokens[1:]))
    if len(tokens) != 1:
        raise ValueError(f"unexpected {_show(' '.join(tokens[1:]))} after {_show(head)}")
    if head in _ERRNOS:
        return Err(_ERRNOS[head])
    if head == "SIGSEGV":
        return Segv()
    m = _HANDLE_RE.fullmatch(head)
    if m is not None:
        return HandleResult(m.group(1), int(m.group(2)))
    if _INT_RE.fullmatch(head) is not None:
        return Num(int(head))
    raise ValueError(f"unknown result {_show(head)}")


def parse_result(text: str) -> LineResult:
    """Parse a line-result (SPEC §2); ``ValueError`` with a clear message if bad."""
    tokens = text.split()
    if not tokens:
        raise ValueError("empty result")
    head = tokens[0]
    if head == "yield" and len(tokens) == 1:
        return Yielded()
    if head == "blocked":
        if len(tokens) == 1:
            return Blocked()
        if len(tokens) == 2 and _THREAD_RE.fullmatch(tokens[1]):
            return BlockedOn(tokens[1])
        raise ValueError(f"expected 'blocked' or 'blocked THREAD', got {_show(text.strip())}")
    if head == "done":
        if len(tokens) == 1:
            raise ValueError("'done' needs an op result")
        return Done(_parse_op_result(tokens[1:]))
    return _parse_op_result(tokens)


def format_result(r: LineResult) -> str:
    """The canonical text of a result (``str`` of the ``model.ops`` classes)."""
    return str(r)


# -------------------------------------------------------------- op syntax


def _arg_word(arg: Arg) -> str:
    return arg.kind if isinstance(arg.kind, str) and arg.kind in FIRST_HANDLE else arg.field


def signature(schema: OpSchema) -> str:
    """``'mmap' takes P s n prot kind [huge]``-style argument list."""
    required = [_arg_word(a) for a in schema.args if not a.optional]
    optional = [_arg_word(a) for a in schema.args if a.optional]
    text = " ".join(required)
    if optional:
        nested = ""
        for word in reversed(optional):
            nested = f"[{word} {nested}]" if nested else f"[{word}]"
        text = f"{text} {nested}"
    return text


def _parse_arg(schema: OpSchema, arg: Arg, token: str) -> object:
    kind = arg.kind
    where = f"'{schema.keyword}' argument {arg.field!r}"
    if isinstance(kind, tuple):
        if token not in kind:
            raise ValueError(f"{where} must be {'|'.join(kind)}, got {_show(token)}")
        return True if kind == ("huge",) else token
    if kind in FIRST_HANDLE:
        m = _HANDLE_RE.fullmatch(token)
        if m is None or m.group(1) != kind:
            raise ValueError(f"{where} must be a {kind} handle like {kind}0, got {_show(token)}")
        return int(m.group(2))
    return _int(token, where)  # "nat" or "word": any integer, judged at run time


def _parse_op(tokens: list[str]) -> Op:
    keyword = tokens[0]
    schema = SCHEMA_BY_KEYWORD.get(keyword)
    if schema is None:
        raise ValueError(f"unknown op {_show(keyword)}")
    args = tokens[1:]
    required = sum(1 for a in schema.args if not a.optional)
    if not required <= len(args) <= len(schema.args):
        raise ValueError(
            f"'{keyword}' takes {signature(schema)}, got {len(args)} argument"
            + ("" if len(args) == 1 else "s")
        )
    values = {a.field: _parse_arg(schema, a, t) for a, t in zip(schema.args, args, strict=False)}
    op: Op = schema.cls(**values)
    return op


def _check_op(op: object) -> None:
    """``ValueError`` unless ``op`` prints as text that parses back to it."""
    schema = SCHEMA_BY_CLASS.get(type(op))
    if schema is None:
        raise ValueError(f"not an op: {op!r}")
    absent = False
    for arg in schema.args:
        value = getattr(op, arg.field)
        kind = arg.kind
        if kind == ("huge",):
            if not isinstance(value, bool):
                raise ValueError(f"{arg.field} must be a bool in {op!r}")
            continue
        if arg.optional and value is None:
            absent = True
            continue
        if absent:
            raise ValueError(f"{arg.field} given after an omitted argument in {op!r}")
        if isinstance(kind, tuple):
            ok = value in kind
        elif kind in FIRST_HANDLE:
            ok = type(value) is int and 0 <= value and len(str(value)) <= MAX_INT_DIGITS
        else:
            ok = type(value) is int and len(str(abs(value))) <= MAX_INT_DIGITS
        if not ok:
            raise ValueError(f"{arg.field} = {value!r} cannot be written in {op!r}")


# ------------------------------------------------------------- step lines


def format_step(line: StepLine) -> str:
    """The canonical text of one step line, without newline."""
    action = line.action
    if isinstance(action, StepThread | RunThread):
        if line.thread is not None:
            raise ValueError("a step/run line has no 'Tn =' thread")
        if not isinstance(action.thread, str) or not _THREAD_RE.fullmatch(action.thread):
            raise ValueError(f"bad thread name {action.thread!r}")
        text = f"{'step' if isinstance(action, StepThread) else 'run'} {action.thread}"
    else:
        _check_op(action)
        text = format_op(action)
        if line.thread is not None:
            if not isinstance(line.thread, str) or not _TTHREAD_RE.fullmatch(line.thread):
                raise ValueError(f"bad thread name {line.thread!r} (must be Tn)")
            text = f"{line.thread} = {text}"
    if line.expected is not None:
        result = format_result(line.expected)
        parsed = parse_result(result)
        _check_result_kind(line, parsed)
        if parsed != line.expected:
            raise ValueError(f"result {line.expected!r} does not print faithfully")
        text = f"{text} => {result}"
    return text


def _check_result_kind(line: StepLine, result: LineResult) -> None:
    plain = not isinstance(line.action, StepThread | RunThread) and line.thread is None
    if isinstance(result, BlockedOn) and not plain:
        raise ValueError("'blocked THREAD' is only the result of a plain op line")
    if isinstance(result, Yielded | Blocked | Done):
        if not isinstance(line.action, StepThread | RunThread):
            raise ValueError(f"'{result}' is only the result of a step or run line")
        if isinstance(result, Yielded) and isinstance(line.action, RunThread):
            raise ValueError("'run' never gives 'yield'")


def _parse_step(text: str) -> StepLine:
    content, arrow, result_text = text.partition("=>")
    expected: LineResult | None = None
    if arrow:
        try:
            expected = parse_result(result_text)
        except ValueError as e:
            raise ValueError(f"bad result: {e}") from None
    thread: str | None = None
    if "=" in content:
        thread_text, _, content = content.partition("=")
        thread = thread_text.strip()
        if not _TTHREAD_RE.fullmatch(thread):
            raise ValueError(f"expected a thread Tn before '=', got {_show(thread)}")
    tokens = content.split()
    if not tokens:
        raise ValueError("expected an op" + (f" after '{thread} ='" if thread else ""))
    action: Op | StepThread | RunThread
    if tokens[0] in ("step", "run"):
        if thread is not None:
            raise ValueError(f"'{thread} =' takes an op, not {tokens[0]!r}")
        if len(tokens) != 2:
            raise ValueError(f"'{tokens[0]}' takes one thread Tn or Li, got {len(tokens) - 1}")
        if not _THREAD_RE.fullmatch(tokens[1]):
            raise ValueError(f"expected a thread Tn or Li, got {_show(tokens[1])}")
        action = StepThread(tokens[1]) if tokens[0] == "step" else RunThread(tokens[1])
    else:
        action = _parse_op(tokens)
    line = StepLine(action, thread, expected)
    if expected is not None:
        _check_result_kind(line, expected)
    return line


def _reserve(lines: Sequence[BodyLine]) -> tuple[BodyLine, ...]:
    counters = dict(FIRST_HANDLE)
    out: list[BodyLine] = []
    for line in lines:
        if isinstance(line, StepLine) and not isinstance(line.action, StepThread | RunThread):
            schema = SCHEMA_BY_CLASS[type(line.action)]
            if schema.reserves is not None and schema.reserved_field is not None:
                number = counters[schema.reserves]
                counters[schema.reserves] = number + 1
                if getattr(line.action, schema.reserved_field) != number:
                    action = replace(line.action, **{schema.reserved_field: number})  # type: ignore[arg-type]
                    line = replace(line, action=action)
        out.append(line)
    return tuple(out)


def renumber(steps: Sequence[StepLine]) -> tuple[StepLine, ...]:
    """The step lines with every reserved handle field recomputed in order."""
    return tuple(line for line in _reserve(steps) if isinstance(line, StepLine))


# ------------------------------------------------------------ whole trace


def _header_value(key: str, value: str) -> str | None:
    """An error message if ``value`` is not allowed for header ``key``."""
    if key in INT_HEADERS:
        if _POSINT_RE.fullmatch(value) is None or not 1 <= int(value) <= WORD_MAX:
            return f"header {key!r} must be a positive integer, got {_show(value)}"
    return None


def parse_trace(text: str, path: str = "<trace>") -> Trace:
    """Parse trace text; :class:`TraceError` naming the line if malformed."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not text:
        raise TraceError(path, 1, f"expected {MAGIC!r} as line 1, got an empty file")
    for lineno, line in enumerate(lines, start=1):
        if "\r" in line:  # a CR is part of a CRLF line end, or nothing: print never writes one
            raise TraceError(path, lineno, "a carriage return inside a line "
                                           "(only as part of a CRLF line end)")
    if lines[0] != MAGIC:
        raise TraceError(path, 1, f"expected {MAGIC!r} as line 1, got {_show(lines[0])}")
    headers: list[tuple[str, str]] = []
    i = 1
    while i < len(lines):
        m = _HEADER_RE.fullmatch(lines[i])
        if m is None or m.group(1) not in HEADER_KEYS:
            break
        key, value = m.group(1), m.group(2).strip()
        problem = _header_value(key, value)
        if problem is None and any(k == key for k, _ in headers):
            problem = f"header {key!r} given twice"
        if problem is not None:
            raise TraceError(path, i + 1, problem)
        headers.append((key, value))
        i += 1
    body: list[BodyLine] = []
    for lineno in range(i + 1, len(lines) + 1):
        line = lines[lineno - 1]
        stripped = line.strip()
        if not stripped:
            body.append(Blank())
        elif stripped.startswith("#"):
            body.append(Comment(line))
        else:
            try:
                step = _parse_step(line)
            except ValueError as e:
                raise TraceError(path, lineno, str(e)) from None
            body.append(replace(step, lineno=lineno))
    return Trace(tuple(headers), _reserve(body), path)


def _check_comment(text: object) -> None:
    if not isinstance(text, str) or not text.strip().startswith("#"):
        raise ValueError(f"a comment must start with '#': {text!r}")
    if "\n" in text or text.endswith("\r"):
        raise ValueError(f"a comment must be one line: {text!r}")


def _is_header(text: str) -> bool:
    m = _HEADER_RE.fullmatch(text)
    return m is not None and m.group(1) in HEADER_KEYS


def format_trace(trace: Trace) -> str:
    """The canonical text of a trace (``ValueError`` if no text gives it back)."""
    out = [MAGIC]
    seen: set[str] = set()
    for key, value in trace.headers:
        if key not in HEADER_KEYS or key in seen:
            raise ValueError(f"unknown or repeated header key {key!r}")
        if value != value.strip() or "\n" in value or "\r" in value:
            raise ValueError(f"header {key!r} value {value!r} is not one stripped line")
        problem = _header_value(key, value)
        if problem is not None:
            raise ValueError(problem)
        seen.add(key)
        out.append(f"# {key}: {value}")
    for index, line in enumerate(trace.body):
        if isinstance(line, Comment):
            _check_comment(line.text)
            if index == 0 and _is_header(line.text):
                raise ValueError(f"comment {line.text!r} right after the headers reads as one")
            out.append(line.text)
        elif isinstance(line, Blank):
            out.append("")
        else:
            out.append(format_step(line))
    return "\n".join(out) + "\n"


def load_trace(path: str) -> Trace:
    """Read and parse a trace file: a regular file of bounded size
    (``fuzz.safeio.load_trace``); every failure is a one-line :class:`TraceError`."""
    from fuzz.safeio import load_trace as load  # (safeio reads; it imports this module)

    trace: Trace = load(path)
    return trace


# ------------------------------------------------------------- building


def with_expected(trace: Trace, results: Sequence[LineResult | None]) -> Trace:
    """Set or replace the ``=>`` annotation of each step line, in order.

    ``results`` may be shorter than the steps (the rest keep theirs); a
    ``None`` removes an annotation.  More results than steps is a ``ValueError``.
    """
    steps = len(trace.steps)
    if len(results) > steps:
        raise ValueError(f"{len(results)} results for {steps} step lines")
    body: list[BodyLine] = []
    k = 0
    for line in trace.body:
        if isinstance(line, StepLine) and k < len(results):
            line = replace(line, expected=results[k])
            k += 1
        body.append(line)
    return replace(trace, body=tuple(body))


def with_headers(trace: Trace, headers: Mapping[str, str]) -> Trace:
    """The trace with these headers set (existing keys keep their place)."""
    for key, value in headers.items():
        if key not in HEADER_KEYS:
            raise ValueError(f"unknown header key {key!r}")
        problem = _header_value(key, value)
        if problem is not None:
            raise ValueError(problem)
    merged = dict(trace.headers)
    merged.update(headers)
    return replace(trace, headers=tuple(merged.items()))


def make_trace(steps: Sequence[StepLine], headers: Mapping[str, str] | None = None) -> Trace:
    """A trace of these step lines (renumbered) and headers."""
    trace = Trace(body=renumber(steps))
    return with_headers(trace, headers) if headers else trace
