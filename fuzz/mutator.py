"""Structure-aware mutation of codec bytes: edit the trace, not the bytes.

Rule this module enforces: **every output is a byte string of at most
``max_size`` bytes, chosen only by the inputs and the seed** (``mutate`` and
``crossover`` are pure functions; the same arguments give the same bytes).
Every byte string decodes to a valid trace (``fuzz.codec`` is total), so the
outputs are always runnable; the point of working on traces is that a change
stays meaningful (a new line uses live handles and mapped addresses, and a
shifted ``Li`` reference still names the same line).

``mutate(data, max_size, seed)`` decodes ``data``, applies one kind:

=========  ===============================================================
kind       what it does to the step lines
=========  ===============================================================
insert     1-3 new lines at a point, decoded from random bytes *after* the
           encoded prefix, so the codec's context (live handles, mapped
           ranges, threads guessed live) shapes them
delete     one line, a run of up to 4, or a ``Tn =`` line with its
           ``step``/``run`` lines
duplicate  a run of 1-4 lines, copied to a later point (or right after)
swap       two lines, mostly neighbours (an interleaving change)
edit       one argument: addresses toward huge-page boundaries and other
           addresses of the trace, counts small or to another address,
           handles to another reserved one, words small or extreme; a
           ``step``/``run`` target to another thread; rarely a header
bytes      byte-level mutation (``byte_mutate``, libFuzzer's in the target)
=========  ===============================================================

``crossover(a, b, max_size, seed)`` gives ``splice`` (a prefix of ``a`` and
a suffix of ``b``) or ``chunk`` (a run of ``b``'s lines inserted into ``a``).

After a structural change reserved handles are renumbered (``make_trace``),
``Li`` references are moved with their lines, and the trace is encoded with
``fuzz.codec.encode``.  A change the encoder cannot reproduce (``ValueError``)
is dropped and another is tried; after ``ATTEMPTS`` failures, or
``BYTE_FRACTION`` of the time, the bytes are mutated instead.  An encoding
longer than ``max_size`` is cut (its prefix still decodes, to a prefix-like
trace).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final

from fuzz.codec import BASE, MAX_STEPS, WINDOW, decode, encode
from fuzz.trace import StepLine, Trace, make_trace
from model.ops import (
    FIRST_HANDLE,
    HUGE_PAGES,
    SCHEMA_BY_CLASS,
    WORD_MAX,
    WORD_MIN,
    Arg,
    Op,
    RunThread,
    StepThread,
    thread_order,
)

ByteMutate = Callable[[bytes, int], bytes]
"""``(data, max_size) -> bytes``: a byte-level mutator (``atheris.Mutate``)."""

MUTATE_WEIGHTS: Final = {"insert": 6, "delete": 4, "duplicate": 2, "swap": 3, "edit": 7,
                          "window": 3}
CROSSOVER_WEIGHTS: Final = {"splice": 1, "chunk": 1}
BYTE_FRACTION: Final = 0.15
"""The share of ``mutate`` calls that go straight to byte mutation."""
ATTEMPTS: Final = 6
SIZED_HEADERS: Final = ("frames", "device-frames")
_MAX_CNT: Final = 65535  # the codec's largest submit/dma count
_MAX_NAME: Final = 255  # the codec's largest raw thread number
_FRAMES: Final = (1, 2, 3, 64, 511, 512, 513, 1024, 1100, 2048, 4096)
_DEVICE_FRAMES: Final = (1, 2, 8, 64, 512, 1024)

Origin = tuple[str, int] | None
"""Where a line came from: (source, 1-based step index); ``None`` for a new line."""
Entry = tuple[Origin, StepLine]


# ----------------------------------------------------------------- helpers


def _headers(trace: Trace) -> dict[str, str]:
    return {k: v for k, v in trace.headers if k in SIZED_HEADERS}


def _entries(trace: Trace, source: str) -> list[Entry]:
    return [((source, i), line) for i, line in enumerate(trace.steps, start=1)]


def _relink(entries: Sequence[Entry]) -> list[StepLine]:
    """The lines, with each ``step``/``run`` of ``Li`` following line i to its new index.

    A reference to a line that is gone, or was never a line, is kept as written.
    """
    where: dict[tuple[str, int], int] = {}
    for index, (origin, _) in enumerate(entries, start=1):
        if origin is not None and origin not in where:
            where[origin] = index
    out: list[StepLine] = []
    for origin, line in entries:
        action = line.action
        if (origin is not None and isinstance(action, StepThread | RunThread)
                and action.thread.startswith("L")):
            target = where.get((origin[0], int(action.thread[1:])))
            if target is not None:
                line = replace(line, action=replace(action, thread=f"L{target}"))
        out.append(line)
    return out


def _encode(entries: Sequence[Entry], headers: dict[str, str]) -> bytes | None:
    lines = _relink(entries)[:MAX_STEPS]
    try:
        return encode(make_trace(lines, headers))
    except ValueError:
        return None


def python_byte_mutate(rng: random.Random) -> ByteMutate:
    """A small pure-Python byte mutator (flip, set, insert, erase, copy)."""

    def mutate_bytes(data: bytes, max_size: int) -> bytes:
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            choice = rng.randrange(5)
            if choice == 0 and buf:
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
            elif choice == 1 and buf:
                buf[rng.randrange(len(buf))] = rng.choice((0, 1, 255, rng.randrange(256)))
            elif choice == 2:
                at = rng.randrange(len(buf) + 1)
                buf[at:at] = rng.randbytes(rng.randint(1, 8))
            elif choice == 3 and buf:
                at = rng.randrange(len(buf))
                del buf[at:at + rng.randint(1, 8)]
            elif buf:
                at, to = rng.randrange(len(buf)), rng.randrange(len(buf) + 1)
                buf[to:to] = buf[at:at + rng.randint(1, 16)]
        return bytes(buf[:max_size])

    return mutate_bytes


def _bytes(rng: random.Random, data: bytes, max_size: int,
           byte_mutate: ByteMutate | None) -> bytes:
    fn = byte_mutate if byte_mutate is not None else python_byte_mutate(rng)
    return bytes(fn(data, max_size))[:max_size]


# --------------------------------------------------------- structural kinds


def _insert(rng: random.Random, entries: list[Entry], headers: dict[str, str]) -> list[Entry]:
    """1-3 lines decoded in the context of the prefix they follow."""
    at = rng.randint(0, len(entries))
    prefix = _relink(entries[:at])
    try:
        head = encode(make_trace(prefix, headers))
    except ValueError:
        return []
    want = rng.choice((1, 1, 1, 2, 3))
    fresh = decode(head + rng.randbytes(12 * want + rng.randrange(24)))
    new: list[Entry] = [(None, line) for line in fresh.steps[at:at + want]]
    return [*entries[:at], *new, *entries[at:]]


def _thread_block(entries: list[Entry], at: int) -> list[int]:
    """``at`` (a ``Tn =`` line) and the later ``step``/``run`` lines of Tn until it is reused."""
    name = entries[at][1].thread
    block = [at]
    for i in range(at + 1, len(entries)):
        line = entries[i][1]
        if line.thread == name:
            break
        if isinstance(line.action, StepThread | RunThread) and line.action.thread == name:
            block.append(i)
    return block


def _delete(rng: random.Random, entries: list[Entry], headers: dict[str, str]) -> list[Entry]:
    if not entries:
        return []
    at = rng.randrange(len(entries))
    if entries[at][1].thread is not None and rng.random() < 0.5:
        gone = set(_thread_block(entries, at))
    else:
        gone = set(range(at, at + rng.choice((1, 1, 1, 2, 4))))
    return [e for i, e in enumerate(entries) if i not in gone]


def _duplicate(rng: random.Random, entries: list[Entry],
               headers: dict[str, str]) -> list[Entry]:
    if not entries:
        return []
    at = rng.randrange(len(entries))
    run = entries[at:at + rng.choice((1, 1, 2, 4))]
    end = at + len(run)
    to = end if rng.random() < 0.5 else rng.randint(end, len(entries))
    # The copies refer to what the originals referred to, so keep their origins:
    # _relink maps a reference to the first line of that origin.
    return [*entries[:to], *run, *entries[to:]]


def _swap(rng: random.Random, entries: list[Entry], headers: dict[str, str]) -> list[Entry]:
    if len(entries) < 2:
        return []
    i = rng.randrange(len(entries) - 1)
    j = i + 1 if rng.random() < 0.7 else rng.randrange(len(entries))
    if i == j:
        return []
    out = list(entries)
    out[i], out[j] = out[j], out[i]
    return out


# ------------------------------------------------------------------- edits


class _Pool:
    """What a trace already names: candidate values for an edit."""

    def __init__(self, lines: Sequence[StepLine]) -> None:
        self.addresses: list[int] = []
        self.threads: list[str] = []
        self.plain: list[str] = []
        self.next = dict(FIRST_HANDLE)
        for index, line in enumerate(lines, start=1):
            action = line.action
            if isinstance(action, StepThread | RunThread):
                continue
            if line.thread is None:
                self.plain.append(f"L{index}")
            elif line.thread not in self.threads:
                self.threads.append(line.thread)
            schema = SCHEMA_BY_CLASS[type(action)]
            if schema.reserves is not None:
                self.next[schema.reserves] += 1
            n = next((getattr(action, a.field) for a in schema.args if a.role == "count"), None)
            for a in schema.args:
                v = getattr(action, a.field)
                if a.role == "addr" and isinstance(v, int) and 0 <= v < 1 << 40:
                    self.addresses.append(v)
                    if isinstance(n, int) and 0 < n < 1 << 20:
                        self.addresses.append(v + n)


def _address(rng: random.Random, old: int, pool: _Pool) -> int:
    choice = rng.randrange(10)
    if choice < 3 and pool.addresses:
        return rng.choice(pool.addresses)
    if choice < 5:  # the huge-page boundary below or above, maybe +-1
        down = old - old % HUGE_PAGES
        return max(0, rng.choice((down, down + HUGE_PAGES)) + rng.choice((0, 0, -1, 1)))
    if choice < 7:
        return max(0, old + rng.choice((-1, 1, -2, 2, -8, 8, -HUGE_PAGES, HUGE_PAGES)))
    if choice < 9:
        return BASE + rng.randrange(WINDOW)
    return rng.choice((0, 1, 511, 1 << 36, (1 << 36) - 1, (1 << 36) - HUGE_PAGES))


def _count(rng: random.Random, old: int, start: object, pool: _Pool) -> int:
    choice = rng.randrange(10)
    if choice < 4:
        return rng.randint(1, 16)
    if choice < 6:
        return rng.choice((HUGE_PAGES - 1, HUGE_PAGES, HUGE_PAGES + 1, 2 * HUGE_PAGES, 4096))
    if choice < 8 and isinstance(start, int) and pool.addresses:
        above = [a - start for a in pool.addresses if a > start]
        if above:
            return rng.choice(above)
    if choice < 9:
        return max(0, old + rng.choice((-1, 1)))
    return rng.choice((0, 4097, 1 << 36, 1 << 40))


def _word(rng: random.Random, old: int) -> int:
    choice = rng.randrange(8)
    if choice < 4:
        return rng.randrange(256)
    if choice < 6:
        return max(WORD_MIN, min(WORD_MAX, old + rng.choice((-1, 1))))
    return rng.choice((-1, 65535, WORD_MIN, WORD_MAX, 1 << 62))


def _handle(rng: random.Random, letter: str, pool: _Pool) -> int:
    first, nxt = FIRST_HANDLE[letter], pool.next[letter]
    if nxt > first and rng.random() < 0.9:
        return rng.randrange(first, nxt)
    return min(nxt, 255)


def _argument(rng: random.Random, op: Op, arg: Arg, pool: _Pool) -> object:
    old = getattr(op, arg.field)
    kind = arg.kind
    if kind == ("huge",):
        return not old
    if isinstance(kind, tuple):
        others = [c for c in kind if c != old]
        return rng.choice(others) if others else old
    if kind in FIRST_HANDLE:
        return _handle(rng, kind, pool)
    if arg.optional and old is not None and rng.random() < 0.25:
        return None
    base = old if isinstance(old, int) else 0
    if kind == "word":
        return _word(rng, base)
    if arg.role == "addr":
        return _address(rng, base, pool)
    if arg.role == "count":
        return _count(rng, base, getattr(op, arg.of or "s", None), pool)
    small = rng.choice((0, 1, 2, 3, 8, 16, max(0, base - 1), base + 1))
    return min(small, _MAX_CNT)  # off / cnt of submit and dma


def _edit_op(rng: random.Random, op: Op, pool: _Pool) -> Op:
    schema = SCHEMA_BY_CLASS[type(op)]
    arg = rng.choice(schema.args)
    value = _argument(rng, op, arg, pool)
    changes: dict[str, object] = {arg.field: value}
    if arg.field == "x" and value is None and hasattr(op, "stride"):
        changes["stride"] = None  # a stride needs an x
    if arg.field == "stride" and value is not None and getattr(op, "x", 0) is None:
        changes["x"] = 0
    edited: Op = replace(op, **changes)  # type: ignore[arg-type]
    return edited


def _edit_thread(rng: random.Random, line: StepLine, pool: _Pool) -> StepLine:
    action = line.action
    assert isinstance(action, StepThread | RunThread)
    names = [*pool.threads, *pool.plain[-8:]]
    choice = rng.randrange(4)
    if choice == 0 or not names:
        flipped = RunThread(action.thread) if isinstance(action, StepThread) else (
            StepThread(action.thread))
        return replace(line, action=flipped)
    name = rng.choice(names)
    if choice == 1:
        kind, number = thread_order(name)
        name = f"{'TL'[kind]}{min(_MAX_NAME, max(0, number + rng.choice((-1, 1))))}"
    return replace(line, action=replace(action, thread=name))


def _edit(rng: random.Random, entries: list[Entry], headers: dict[str, str]) -> list[Entry]:
    if not entries or rng.random() < 0.06:
        key = rng.choice(SIZED_HEADERS)
        table = _FRAMES if key == "frames" else _DEVICE_FRAMES
        if key in headers and rng.random() < 0.3:
            del headers[key]
        else:
            headers[key] = str(rng.choice(table))
        # the codec writes frames before device-frames
        ordered: dict[str, str] = {k: headers[k] for k in SIZED_HEADERS if k in headers}
        headers.clear()
        headers.update(ordered)
        return list(entries)
    pool = _Pool([line for _, line in entries])
    at = rng.randrange(len(entries))
    origin, line = entries[at]
    action = line.action
    if isinstance(action, StepThread | RunThread):
        line = _edit_thread(rng, line, pool)
    elif line.thread is not None and rng.random() < 0.15:
        line = replace(line, thread=rng.choice([*pool.threads, f"T{len(pool.threads)}"]))
    else:
        line = replace(line, action=_edit_op(rng, action, pool))
    out = list(entries)
    out[at] = (origin, line)
    return out


def _window(rng: random.Random, entries: list[Entry], headers: dict[str, str]) -> list[Entry]:
    """Land an op inside another op's yield window (``fuzz.windows``), on
    purpose: a plain op of a racer kind becomes thread ``Tn = op``, stepped
    0-8 times, and the line after those steps (a fresh one half the time)
    starts while it is in that window."""
    racing = [i for i, (_, line) in enumerate(entries) if line.thread is None
              and not isinstance(line.action, StepThread | RunThread)
              and SCHEMA_BY_CLASS[type(line.action)].racer is not None]
    if not racing:
        return []
    at = rng.choice(racing)
    used = {line.thread for _, line in entries if line.thread is not None}
    name = next(f"T{n}" for n in range(1, _MAX_NAME + 1) if f"T{n}" not in used)
    origin, line = entries[at]
    steps: list[Entry] = [(None, StepLine(StepThread(name)))
                          for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4, 6, 8)))]
    out = [*entries[:at], (origin, replace(line, thread=name, expected=None)), *steps,
           *entries[at + 1:]]
    cut = at + 1 + len(steps)
    if rng.random() < 0.5:  # a fresh intruder, decoded after what precedes it
        try:
            head = encode(make_trace(_relink(out[:cut]), headers))
        except ValueError:
            return out
        fresh = decode(head + rng.randbytes(24)).steps[cut:cut + 1]
        out = [*out[:cut], *[(None, f) for f in fresh], *out[cut:]]
    return out


_KINDS: Final[dict[str, Callable[[random.Random, list[Entry], dict[str, str]], list[Entry]]]] = {
    "insert": _insert, "delete": _delete, "duplicate": _duplicate, "swap": _swap, "edit": _edit,
    "window": _window,
}


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


# ---------------------------------------------------------------- public


def mutate_kind(data: bytes, max_size: int, seed: int,
                byte_mutate: ByteMutate | None = None) -> tuple[str, bytes]:
    """The kind of mutation applied and the mutated bytes (at most ``max_size``)."""
    rng = random.Random(seed)
    if rng.random() >= BYTE_FRACTION:
        trace = decode(data)
        entries = _entries(trace, "a")
        for _ in range(ATTEMPTS):
            kind = _pick(rng, MUTATE_WEIGHTS)
            headers = _headers(trace)
            changed = _KINDS[kind](rng, entries, headers)
            if not changed and kind != "edit":
                continue
            out = _encode(changed, headers)
            if out is not None and out != data:
                return kind, out[:max_size]
    return "bytes", _bytes(rng, data, max_size, byte_mutate)


def mutate(data: bytes, max_size: int, seed: int,
           byte_mutate: ByteMutate | None = None) -> bytes:
    """``data`` mutated as a trace (see the module docstring); at most ``max_size`` bytes."""
    return mutate_kind(data, max_size, seed, byte_mutate)[1]


def crossover_kind(a: bytes, b: bytes, max_size: int, seed: int) -> tuple[str, bytes]:
    """The kind of crossover applied and the offspring of ``a`` and ``b``."""
    rng = random.Random(seed)
    ta, tb = decode(a), decode(b)
    ea, eb = _entries(ta, "a"), _entries(tb, "b")
    for _ in range(ATTEMPTS):
        kind = _pick(rng, CROSSOVER_WEIGHTS)
        i, j = rng.randint(0, len(ea)), rng.randint(0, len(eb))
        if kind == "splice":
            child = [*ea[:i], *eb[j:]]
        else:
            child = [*ea[:i], *eb[j:j + rng.randint(1, 8)], *ea[i:]]
        out = _encode(child, _headers(ta if rng.random() < 0.8 else tb))
        if out is not None and out not in (a, b):
            return kind, out[:max_size]
    cut_a, cut_b = rng.randint(0, len(a)), rng.randint(0, len(b))
    return "bytes", (a[:cut_a] + b[cut_b:])[:max_size]


def crossover(a: bytes, b: bytes, max_size: int, seed: int) -> bytes:
    """A child of ``a`` and ``b`` (see the module docstring); at most ``max_size`` bytes."""
    return crossover_kind(a, b, max_size, seed)[1]
