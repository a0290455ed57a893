"""Bytes <-> traces: a total, deterministic, invertible decoder (the fuzzers' input).

Rule this module enforces: **every byte string decodes to a valid trace**
(``decode`` never raises; ``parse_trace(format_trace(decode(b))) ==
decode(b)``), and ``decode(encode(t)) == t`` for every trace ``decode`` gives.
It uses neither Hypothesis nor Atheris, so stored bytes keep their meaning
across their versions; changing the format below changes every byte corpus.

Byte format, version 1.  The reader gives the next byte, or 0 once the data
is exhausted.  "A choice among k" is one byte ``% k`` (the encoder writes the
index); numbers are little-endian; a *mix* is one byte ``% total weight``
picking a category, whose own bytes follow.

* Byte 0 ``% 16``: 0-11 no header, 12-13 ``frames``, 14 ``device-frames``, 15
  both.  Each value is a mix: a table of small sizes (64 ... 3000 frames, 1 ...
  600 device frames) or two bytes ``1 + u16 % 65535``.  So 1/4 of the traces
  run in a small memory (ENOMEM paths).
* Then lines, while data is left (checked before each line), at most
  ``max_steps`` (200).  A line's first byte ``% 20``: 0-12 plain op, 13-15
  ``Tn = op``, 16-18 ``step X``, 19 ``run X`` (35 % touch threads), but a
  ``step``/``run`` with no thread guessed live becomes ``Tn = op``; byte 255
  then a byte ``% 2`` is a ``step``/``run`` taken as is.  ``Tn =``: mostly the
  next fresh ``T<k>``, rarely an earlier ``Tn`` or a raw ``T0``-``T255``.
  ``step``/``run`` X: mostly one of the 4 most recent ``Tn`` guessed live (a
  ``run``, or as many ``step`` lines as its op probably needs, 1 or 4, retire
  the guess), rarely any earlier ``Tn``, a plain line's ``Li`` (live only if
  blocked), or a raw ``T0``-``T255`` or ``L0``-``L255`` (so that edited
  traces stay encodable).
* An op: byte 255 then a byte ``% 25`` naming it in ``OP_SCHEMAS`` order; any
  other byte ``% len(OP_TABLE)`` picks from a weighted table (memory and device
  ops mixed, ``exit``/``oomreap`` rare) with *substitution*: an op whose
  prerequisite no earlier line created becomes the op that creates it (a
  memory op before any ``mmap`` becomes ``mmap``; ``exit``/``oomreap`` before
  any ``fork``, ``fork``; a mirror op with no mirror, ``open P mirror``;
  ``complete`` -> ``submit`` -> ``reg`` -> ``open P userptr``; ``dma``/``unpin``
  -> ``pin`` -> ``open P pin``).  The encoder writes the 255 form when the
  table form would substitute.
* The op's arguments follow in schema order, each a mix (``PLANS``), with a
  presence choice before an optional ``[x [stride]]`` or ``[stride]``:

  - handles: P0 or a reserved pid (exit/oomreap: mostly a child); for D a
    reserved device of the kind the op wants (28/32) or of any kind; for R a
    live region of the right kind (reg for submit/unreg, pin for dma/unpin;
    unreg/unpin retire it); for J an uncompleted job; rarely (1/16) the next
    unreserved number or a raw byte (EINVAL).  Picks choose among the 64 most
    recent, most recent first.
  - addresses: mostly a page inside an earlier mmap/mremap target range (a
    pick, then ``u16 % n``) or a page an earlier read/write used; else a
    512-aligned boundary of the window (8 blocks of 512 pages from page 2^21),
    an edge of an earlier mmap/munmap/mprotect/mremap range, any page of the
    window, a boundary +-4, or rarely (1/41) a wild value.
  - counts: 1-16, 512-2048, ``t - s`` for an address t above s, 0-4096, or
    rarely wild (0, 4097, 2^36, -1, ... or 8 raw bytes).
  - words: mostly 0-65535 or -256..255; rarely extremes, non-words (2^63,
    2^64: EINVAL) or 8 raw bytes.  Strides mostly -3..15.
  - submit/dma off and cnt: relative to the region's size (mostly off 0 and
    the rest of the region; sometimes one page too many).

``encode`` ignores comments, ``=>`` results and the title/found-by/signature
headers, and raises ``ValueError`` for a trace it cannot reproduce exactly
(it checks by decoding its own output).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Final

from fuzz.byteschemes import (
    PICK_LIMIT,
    Below,
    Computed,
    Ctx,
    Enum,
    Mix,
    Pick,
    Range,
    Reader,
    Relative,
    Scheme,
    Switch,
    same,
    table,
)
from fuzz.trace import StepLine, Trace, make_trace
from model import ops as m
from model.decl import Arg, OpDecl, creator, declared
from model.ops import (
    ADDRESS_PAGES,
    FIRST_HANDLE,
    SCHEMA_BY_CLASS,
    SCHEMA_BY_KEYWORD,
    WORD_MAX,
    WORD_MIN,
)

MAX_STEPS: Final = 200
BASE: Final = 1 << 21
"""First page of the address window: 8 blocks of 512 pages."""
WINDOW: Final = 8 * 512
FRAMES_TABLE: Final = (64, 512, 520, 1024, 1100, 2048, 3000)
DEVICE_FRAMES_TABLE: Final = (1, 2, 8, 64, 256, 512, 600)
LIVE_LIMIT: Final = 4
"""``step``/``run`` mostly pick among the 4 most recent threads guessed live."""

# ------------------------------------------------------------------ state


@dataclass
class _State:
    """What earlier lines reserved or named: known without running anything."""

    procs: list[int] = field(default_factory=lambda: [0])
    next_p: int = FIRST_HANDLE["P"]
    devices: list[tuple[int, str]] = field(default_factory=list)
    next_d: int = FIRST_HANDLE["D"]
    regions: list[tuple[int, str]] = field(default_factory=list)  # live: (number, "reg"|"pin")
    region_size: dict[int, int] = field(default_factory=dict)
    next_r: int = FIRST_HANDLE["R"]
    jobs: list[int] = field(default_factory=list)
    next_j: int = FIRST_HANDLE["J"]
    edges: list[int] = field(default_factory=list)  # valid addresses only
    edge_set: set[int] = field(default_factory=set)
    ranges: list[tuple[int, int]] = field(default_factory=list)  # valid mmap/mremap targets
    touched: list[int] = field(default_factory=list)  # read/write addresses, for coherence
    mapped: bool = False
    t_names: list[str] = field(default_factory=list)  # every Tn named, in first-use order
    t_live: list[str] = field(default_factory=list)  # Tn probably live: step candidates
    t_left: dict[str, int] = field(default_factory=dict)  # guessed steps left
    l_names: list[str] = field(default_factory=list)
    step_index: int = 0

    def devs(self, kind: str | None) -> list[int]:
        return [d for d, k in self.devices if kind is None or k == kind]

    def regs(self, kind: str) -> list[int]:
        return [r for r, k in self.regions if k == kind]

    def add_range(self, s: int, n: int, mapped: bool) -> None:
        if not (0 <= s and 1 <= n and s + n <= ADDRESS_PAGES):
            return  # a wild range would drag later addresses out of the window
        for v in (s, s + n):
            if v not in self.edge_set:
                self.edge_set.add(v)
                self.edges.append(v)
        if mapped:
            self.ranges.append((s, n))

    def after(self, line: StepLine) -> None:
        """Record what this line reserves or names (the same in decode and encode)."""
        self.step_index += 1
        op = line.action
        if isinstance(op, m.StepThread | m.RunThread):
            left = self.t_left.get(op.thread, 0) - 1
            self.t_left[op.thread] = left
            if (left <= 0 or isinstance(op, m.RunThread)) and op.thread in self.t_live:
                self.t_live.remove(op.thread)  # probably done: step others
            return
        if line.thread is not None:
            if line.thread not in self.t_names:
                self.t_names.append(line.thread)
            if line.thread in self.t_live:
                self.t_live.remove(line.thread)
            self.t_live = [*self.t_live[-(LIVE_LIMIT - 1):], line.thread]
            self.t_left[line.thread] = 1 if SCHEMA_BY_CLASS[type(op)].one_step else 4
        else:
            self.l_names.append(f"L{self.step_index}")
        decl = SCHEMA_BY_CLASS[type(op)]
        if decl.reserves is not None:
            self._reserve(decl, op)
        if decl.retires is not None:
            self._retire(decl, op)
        addrs = [a for a in decl.args if a.role == "addr"]
        if decl.shapes:
            n = next(getattr(op, a.field) for a in decl.args if a.role == "count")
            for a in addrs:
                self.add_range(getattr(op, a.field), n, decl.maps or a.dest)
        self.mapped = self.mapped or decl.maps
        if decl.access and addrs and 0 <= (v := getattr(op, addrs[0].field)) < ADDRESS_PAGES:
            self.touched.append(v)

    def next_of(self, letter: str) -> int:
        return {"P": self.next_p, "D": self.next_d, "R": self.next_r, "J": self.next_j}[letter]

    def _reserve(self, decl: OpDecl, op: m.Op) -> None:
        """The handle ``op`` reserves (fork, open, reg/pin, submit: SPEC §2)."""
        if decl.reserves == "P":
            self.procs.append(self.next_p)
            self.next_p += 1
        elif decl.reserves == "D":
            self.devices.append((self.next_d, str(getattr(op, decl.kind_field or "kind"))))
            self.next_d += 1
        elif decl.reserves == "R":
            self.regions.append((self.next_r, decl.keyword))
            count = next((a for a in decl.args if a.role == "count"), None)
            self.region_size[self.next_r] = getattr(op, count.field) if count else 1
            self.next_r += 1
        elif decl.reserves == "J":
            self.jobs.append(self.next_j)
            self.next_j += 1

    def _retire(self, decl: OpDecl, op: m.Op) -> None:
        """The handle ``op`` ends on success (complete, unreg, unpin)."""
        assert decl.retires is not None
        arg = decl.arg(decl.retires)
        value = getattr(op, arg.field)
        if arg.role == "job" and value in self.jobs:
            self.jobs.remove(value)
        elif arg.role == "region" and (value, arg.of) in self.regions:
            self.regions.remove((value, arg.of or ""))


@dataclass(frozen=True)
class _Inside:
    """A page inside one of the 64 most recent mapped ranges: a pick, then ``u16 % n``."""

    def decode(self, r: Reader, st: _State, ctx: Ctx) -> object:
        b, offset = r.byte(), r.uint(2)
        ranges = st.ranges[-PICK_LIMIT:]
        if not ranges:
            return BASE
        s, n = ranges[-1 - b % len(ranges)]
        return s + offset % min(n, 1 << 16)

    def encode(self, v: object, st: _State, ctx: Ctx) -> bytes | None:
        ranges = st.ranges[-PICK_LIMIT:]
        if not ranges:
            return b"\0\0\0" if same(v, BASE) else None
        for i in range(len(ranges)):
            s, n = ranges[-1 - i]
            if type(v) is int and 0 <= v - s < min(n, 1 << 16):
                return bytes([i]) + (v - s).to_bytes(2, "little")
        return None



# ------------------------------------------------------------ value kinds

_RAW_NAT = Range(0, 1 << 64)  # eight raw bytes
_RAW_WORD = Range(WORD_MIN, 1 << 64)
_BOUNDARY = Enum(lambda i: BASE + 512 * i, 9)
_NEAR = Enum(lambda i: BASE + 512 * (i % 9) + i // 9 - 4, 72)
_EDGE = Pick(lambda st, ctx: st.edges, BASE)
_TOUCHED = Pick(lambda st, ctx: st.touched, BASE)
_IN_WINDOW = Mix((30, _Inside()), (8, _TOUCHED), (4, _BOUNDARY), (3, _EDGE),
                  (2, Range(BASE, WINDOW)), (1, _NEAR))
_WILD_ADDRESS = Mix((3, table(0, 1, 511, ADDRESS_PAGES - 512, ADDRESS_PAGES - 1,
                                ADDRESS_PAGES, -1, 1 << 40, (1 << 64) - 1)), (1, _RAW_NAT))
ADDRESS = Mix((40, _IN_WINDOW), (1, _WILD_ADDRESS))
_WILD_COUNT = Mix((3, table(0, 4096, 4097, ADDRESS_PAGES, -1, 1 << 40)), (1, _RAW_NAT))


def _count(base: str, small: int = 14, huge: int = 3) -> Mix:
    return Mix((small, Range(1, 16)), (huge, Enum(lambda i: 512 * (i + 1), 4)),
                (6, Relative(_IN_WINDOW, base)), (3, Range(0, 4097)), (1, _WILD_COUNT))


_SPECIAL_WORDS = (WORD_MIN, WORD_MAX, -1, 1 << 62, 1 << 63, -(1 << 63) - 1, 1 << 64)
WORD = Mix((24, Range(0, 65536)), (4, Range(-256, 512)), (1, table(*_SPECIAL_WORDS)),
            (1, _RAW_WORD))
STRIDE = Mix((14, Range(-3, 19)), (1, table(*_SPECIAL_WORDS)), (1, _RAW_WORD))

_RAW_HANDLE = Range(0, 256)
PID = Mix((16, Computed(lambda st, ctx: 0)), (12, Pick(lambda st, ctx: st.procs, 0)),
           (1, Computed(lambda st, ctx: st.next_p)), (1, _RAW_HANDLE))
VICTIM = Mix((30, Pick(lambda st, ctx: st.procs[1:], 0)), (1, Computed(lambda st, ctx: 0)),
              (1, _RAW_HANDLE))  # exit/oomreap: mostly a child, rarely P0
JOB = Mix((30, Pick(lambda st, ctx: st.jobs, FIRST_HANDLE["J"])),
           (1, Computed(lambda st, ctx: st.next_j)), (1, _RAW_HANDLE))


def _device(kind: str) -> Mix:
    return Mix((28, Pick(lambda st, ctx: st.devs(kind), FIRST_HANDLE["D"])),
                (2, Pick(lambda st, ctx: st.devs(None), FIRST_HANDLE["D"])),
                (1, Computed(lambda st, ctx: st.next_d)), (1, _RAW_HANDLE))


def _region(kind: str) -> Mix:
    return Mix((30, Pick(lambda st, ctx: st.regs(kind), FIRST_HANDLE["R"])),
                (1, Computed(lambda st, ctx: st.next_r)), (1, _RAW_HANDLE))


def _size(st: _State, ctx: Ctx) -> int:
    r = ctx["r"]
    return st.region_size.get(r, 1) if isinstance(r, int) else 1


def _rest(st: _State, ctx: Ctx) -> int:
    off = ctx["off"]
    return _size(st, ctx) - (off if isinstance(off, int) else 0)


OFF = Mix((20, Computed(lambda st, ctx: 0)), (7, Below(0, _size)),
           (2, Computed(lambda st, ctx: _size(st, ctx) - 1)), (1, table(-1, 4096, 1 << 40)),
           (1, _RAW_NAT))
CNT = Mix((18, Computed(_rest)), (8, Below(1, _rest)),
           (2, Computed(lambda st, ctx: _rest(st, ctx) + 1)), (1, table(0, 4097, -1)),
           (1, Range(0, 65536)))

PROT = table(*["rw"] * 12, "r", "r", "r", "none")
MODE = table("rw", "rw", "ro")
DIRECTION = table("read", "write")
_OPTIONAL = Switch("direction", {
    "read": table("none", "none", "none", "none", "none", "none", "x", "xs"),
    "write": table("none", "x", "x", "x", "x", "x", "xs", "xs"),
})

# An op's plan: (field, scheme) in order, derived from its declaration
# (model.decl).  A field starting with "?" is a presence choice, not an op
# field; "x"/"stride" after it are read only if present.
Plan = tuple[tuple[str, Scheme], ...]


def _expand(arg: Arg) -> Scheme:
    """A table of a choice's values, each repeated by its weight, heaviest first."""
    return table(*[v for v, w in arg.ranked for _ in range(w)])


def _scheme(arg: Arg) -> Scheme:
    """The byte scheme of one field, by its role."""
    match arg.role:
        case "pid":
            return PID
        case "victim":
            return VICTIM
        case "device":
            return _device(arg.of or "")
        case "region":
            return _region(arg.of or "")
        case "job":
            return JOB
        case "addr":
            return ADDRESS
        case "count":
            return _count(arg.of or "s", *arg.hint)
        case "off":
            return OFF
        case "cnt":
            return CNT
        case "word":
            return WORD
        case "stride":
            return STRIDE
        case "choice" | "flag":
            return _expand(arg)
    raise ValueError(f"no byte scheme for role {arg.role!r} of {arg.field!r}")


def _presence(decl: OpDecl) -> Scheme:
    """Which of the optional ``[x [stride]]`` are written."""
    optional = [a for a in decl.args if a.optional and a.role in ("word", "stride")]
    if len(optional) == 1:
        return table("x", "x", "x", "xs")  # a lone [stride]
    if any(a.field == "direction" for a in decl.args):
        return _OPTIONAL
    return table("none", "x", "x", "xs")


def plan_for(decl: OpDecl) -> Plan:
    plan: list[tuple[str, Scheme]] = []
    for arg in decl.args:
        if arg.optional and arg.role in ("word", "stride") and not any(
                name == "?opt" for name, _ in plan):
            plan.append(("?opt", _presence(decl)))
        plan.append((arg.field, _scheme(arg)))
    return tuple(plan)


@dataclass(frozen=True)
class Generation:
    """The op tables of one codec generation: the built-in ops declared
    ``since`` it or earlier, by codec id.  Ids and weights are append-only,
    so a generation's tables never change once released."""

    number: int
    decls: tuple[OpDecl, ...]

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(d.keyword for d in self.decls)

    @functools.cached_property
    def op_table(self) -> tuple[str, ...]:
        table_ = tuple(d.keyword for d in self.decls for _ in range(d.weight))
        assert len(table_) < RAW_OP
        return table_

    @functools.cached_property
    def plans(self) -> dict[str, Plan]:
        return {d.keyword: plan_for(d) for d in self.decls}

    @functools.cached_property
    def by_keyword(self) -> dict[str, OpDecl]:
        return {d.keyword: d for d in self.decls}


@functools.cache
def generation(number: int) -> Generation:
    """Generation ``number``'s tables; the newest also has the loaded
    plug-ins' ops, after the built-ins (so a plug-in's byte inputs mean
    something only with the same plug-ins loaded, as its repros do)."""
    decls = [d for d in declared() if d.plugin is None and d.since <= number]
    ids = [d.codec_id for d in decls]
    assert ids == list(range(len(ids))), f"codec ids must be dense: {ids}"
    if number >= CURRENT:
        decls += [d for d in declared() if d.plugin is not None]
    return Generation(number, tuple(decls))


CURRENT: Final = max(d.since for d in declared())
"""The newest generation: what ``encode`` writes for a trace that needs it."""
MAGIC: Final = b"\xffMF"
"""Inputs of generation 2 and later start with MAGIC and a generation byte;
every other input is generation 1, read exactly as before generations
existed."""
RAW_OP: Final = 255


def _substitute(kw: str, st: _State, gen: Generation) -> tuple[str, Ctx]:
    """The op a table choice becomes when its prerequisites do not exist
    yet: a mapping (for a memory op), a child (for exit/oomreap), a job, a
    region, a device; each replaced by the op that creates it."""
    decl = gen.by_keyword[kw]
    if decl.has("pid") and decl.has("addr") and not decl.maps and not st.mapped:
        return "mmap", {}
    if decl.has("victim") and len(st.procs) == 1:
        return "fork", {}
    while True:
        arg = next((a for a in decl.args if a.role in ("job", "region")), None)
        if arg is None or (st.jobs if arg.role == "job" else st.regs(arg.of or "")):
            break
        made = creator(arg.kind if isinstance(arg.kind, str) else "", arg.of)
        if made is None or made.keyword not in gen.by_keyword:
            break
        decl = made
    dev = next((a for a in decl.args if a.role == "device"), None)
    if dev is not None and not st.devs(dev.of):
        opener = creator("D")
        if opener is not None and opener.kind_field is not None:
            return opener.keyword, {opener.kind_field: dev.of}
    return decl.keyword, {}


LINE_KINDS: Final = ("plain",) * 13 + ("tn",) * 3 + ("step",) * 3 + ("run",)
RAW_LINE: Final = 255
TNAME = Mix((1, Pick(lambda st, ctx: st.t_names, "T0")),
             (14, Computed(lambda st, ctx: f"T{len(st.t_names)}")),
             (1, Enum(lambda i: f"T{i}", 256)))
THREAD = Mix((24, Pick(lambda st, ctx: st.t_live, "T0")),
              (2, Pick(lambda st, ctx: st.t_names, "T0")),
              (2, Pick(lambda st, ctx: st.l_names, "L1")),
              (1, Enum(lambda i: f"T{i}", 256)), (1, Enum(lambda i: f"L{i}", 256)))
HEADER_MODE: Final = ("none",) * 12 + ("frames",) * 2 + ("device-frames", "both")
FRAMES = Mix((7, table(*FRAMES_TABLE)), (1, Range(1, 65535)))
DEVICE_FRAMES = Mix((7, table(*DEVICE_FRAMES_TABLE)), (1, Range(1, 65535)))

# ----------------------------------------------------------------- decode


def _decode_op(r: Reader, st: _State, gen: Generation) -> m.Op:
    b = r.byte()
    forced: Ctx = {}
    if b == RAW_OP:
        kw = gen.keywords[r.byte() % len(gen.keywords)]
    else:
        kw, forced = _substitute(gen.op_table[b % len(gen.op_table)], st, gen)
    ctx: Ctx = {}
    for name, scheme in gen.plans[kw]:
        if name in forced:
            ctx[name] = forced[name]
        elif name in ("x", "stride") and not _present(name, ctx):
            ctx[name] = None
        else:
            ctx[name] = scheme.decode(r, st, ctx)
    return _build(kw, ctx, st)


def _present(name: str, ctx: Ctx) -> bool:
    opt = ctx.get("?opt", "xs")
    return opt == "xs" or (opt == "x" and name == "x")


def _build(kw: str, ctx: Ctx, st: _State) -> m.Op:
    args = {k: v for k, v in ctx.items() if not k.startswith("?")}
    decl = SCHEMA_BY_KEYWORD[kw]
    if decl.reserves is not None and decl.reserved_field is not None:
        args[decl.reserved_field] = st.next_of(decl.reserves)
    op: m.Op = decl.cls(**args)
    return op


def _decode_line(r: Reader, st: _State, gen: Generation) -> StepLine:
    b = r.byte()
    if b == RAW_LINE:
        kind = ("step", "run")[r.byte() % 2]
    else:
        kind = LINE_KINDS[b % len(LINE_KINDS)]
        if kind in ("step", "run") and not st.t_live:
            kind = "tn"  # no thread to step: start one
    if kind == "step" or kind == "run":
        name = str(THREAD.decode(r, st, {}))
        return StepLine(m.StepThread(name) if kind == "step" else m.RunThread(name))
    thread = str(TNAME.decode(r, st, {})) if kind == "tn" else None
    return StepLine(_decode_op(r, st, gen), thread)


def split_generation(data: bytes) -> tuple[Generation, bytes]:
    """The generation an input is written in, and the bytes after its prefix."""
    if data.startswith(MAGIC) and len(data) > len(MAGIC):
        number = min(max(data[len(MAGIC)], 2), CURRENT)
        return generation(number), data[len(MAGIC) + 1:]
    return generation(1), data


def decode(data: bytes, max_steps: int = MAX_STEPS) -> Trace:
    """The trace these bytes mean; total: every byte string gives a valid trace."""
    gen, body = split_generation(data)
    r = Reader(body)
    headers: dict[str, str] = {}
    mode = HEADER_MODE[r.byte() % len(HEADER_MODE)]
    if mode in ("frames", "both"):
        headers["frames"] = str(FRAMES.decode(r, _State(), {}))
    if mode in ("device-frames", "both"):
        headers["device-frames"] = str(DEVICE_FRAMES.decode(r, _State(), {}))
    st = _State()
    steps: list[StepLine] = []
    while not r.exhausted and len(steps) < max_steps:
        line = _decode_line(r, st, gen)
        st.after(line)
        steps.append(line)
    return make_trace(steps, headers)


def random_trace(rng: random.Random, steps: int, gen: int = 1) -> Trace:
    """A decoded trace of up to ``steps`` lines from ``rng``'s bytes, in
    generation ``gen`` (1: the ops of the first byte format)."""
    prefix = MAGIC + bytes([gen]) if gen > 1 else b""
    return decode(prefix + rng.randbytes(64 * steps + 8), max_steps=steps)


# ----------------------------------------------------------------- encode


def _put(out: bytearray, scheme: Scheme, v: object, st: _State, ctx: Ctx, what: str) -> None:
    data = scheme.encode(v, st, ctx)
    if data is None:
        raise ValueError(f"cannot encode {what} = {v!r}")
    out += data


def _encode_op(out: bytearray, op: m.Op, st: _State, gen: Generation) -> None:
    kw = m.op_keyword(op)
    if kw not in gen.by_keyword:
        raise ValueError(f"cannot encode {kw!r}: not in byte format generation {gen.number}")
    if _substitute(kw, st, gen) == (kw, {}):
        out.append(gen.op_table.index(kw))
    else:
        out += bytes([RAW_OP, gen.keywords.index(kw)])
    ctx: Ctx = {}
    for name, scheme in gen.plans[kw]:
        if name == "?opt":
            x = getattr(op, "x", 0)
            stride = getattr(op, "stride", None)
            if x is None and stride is not None:
                raise ValueError(f"cannot encode {op!r}: stride without x")
            value: object = "none" if x is None else "x" if stride is None else "xs"
        else:
            value = getattr(op, name)
        if name in ("x", "stride") and not _present(name, ctx):
            ctx[name] = None
            continue
        _put(out, scheme, value, st, ctx, f"{kw} {name}")
        ctx[name] = value


def _encode_line(out: bytearray, line: StepLine, st: _State, gen: Generation) -> None:
    action = line.action
    if isinstance(action, m.StepThread | m.RunThread):
        kind = "step" if isinstance(action, m.StepThread) else "run"
        out += bytes([LINE_KINDS.index(kind)] if st.t_live else [RAW_LINE, kind == "run"])
        _put(out, THREAD, action.thread, st, {}, kind)
        return
    if line.thread is None:
        out.append(LINE_KINDS.index("plain"))
    else:
        out.append(LINE_KINDS.index("tn"))
        _put(out, TNAME, line.thread, st, {}, "thread")
    _encode_op(out, action, st, gen)


def encode(trace: Trace) -> bytes:
    """Bytes that :func:`decode` turns back into ``trace``.

    Comments, ``=>`` results and the title/found-by/signature headers are
    not encoded.  ``ValueError`` if the rest cannot be reproduced exactly.
    """
    steps = trace.steps
    needed = max((CURRENT if SCHEMA_BY_CLASS[type(s.action)].plugin else
                   SCHEMA_BY_CLASS[type(s.action)].since for s in steps
                   if type(s.action) in SCHEMA_BY_CLASS), default=1)
    gen = generation(needed)
    out = bytearray(MAGIC + bytes([needed]) if needed > 1 else b"")
    frames, dev_frames = trace.header("frames"), trace.header("device-frames")
    keys = [k for k, _ in trace.headers if k in ("frames", "device-frames")]
    if keys == ["device-frames", "frames"]:
        raise ValueError("cannot encode device-frames before frames")
    mode = ("both" if frames and dev_frames else "frames" if frames
            else "device-frames" if dev_frames else "none")
    out.append(HEADER_MODE.index(mode))
    if frames is not None:
        _put(out, FRAMES, int(frames), _State(), {}, "frames")
    if dev_frames is not None:
        _put(out, DEVICE_FRAMES, int(dev_frames), _State(), {}, "device-frames")
    if len(steps) > MAX_STEPS:
        raise ValueError(f"cannot encode {len(steps)} steps (at most {MAX_STEPS})")
    st = _State()
    for line in steps:
        _encode_line(out, line, st, gen)
        st.after(line)
    data = bytes(out)
    wanted = make_trace([StepLine(s.action, s.thread) for s in steps],
                        {k: v for k, v in trace.headers if k in ("frames", "device-frames")})
    if decode(data) != wanted:
        raise ValueError("trace cannot be encoded exactly (reserved handles out of order?)")
    return data
