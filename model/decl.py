"""Op declarations: each op is declared once, everything else is derived.

An op is a frozen dataclass (its fields are SPEC's argument names) plus one
:class:`OpDecl`, made by :func:`declare` next to the dataclass.  The
declaration says:

* the keyword, and the fields in text order, each with its **role**: a
  handle of a kind (``P``, ``D`` of a device kind, ``R`` made by an op, ``J``),
  an address, a page count (with its cap), a region offset or count, a word,
  a stride, an enum, a flag;
* the process states it allows (SPEC Appendix B, as a row of a table, not
  as checks inline in each op);
* the handle it creates (reserved at parse time, SPEC §2) or retires;
* its byte-codec id (append-only: a new op takes the next id and the
  generation it first appears in; see ``fuzz.codec``);
* hints for the engines: its weight in generated traces, the order a
  Hypothesis rule draws its fields in, whether it is a device op or an
  invalidating CPU op (the race rule's two racers).

From the declarations are derived: the trace parser and printer
(``fuzz.trace``), the byte codec (``fuzz.codec``), the Hypothesis rules and
their argument drawing (``fuzz.stateful``), the Atheris mutator
(``fuzz.mutator``), the oracle's handle bookkeeping (``fuzz.oracle``), the
minimizer's renumbering (``fuzz.edit``), and each implementation's dispatch
(an implementation registers one function per keyword; a test fails when one
is missing).  Driver plug-ins declare their ops the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Final

STATES: Final = ("live", "killed", "dead")
LIVE: Final = frozenset({"live"})
NOT_DEAD: Final = frozenset({"live", "killed"})
ANY: Final = frozenset(STATES)
HANDLE_LETTERS: Final = ("P", "D", "R", "J")


class DeclarationError(ValueError):
    """An op declaration breaks a rule (a driver plug-in gets it as its error)."""


# ------------------------------------------------------------------ roles


@dataclass(frozen=True)
class Arg:
    """One field of an op, in text order.

    ``kind`` is what the parser reads: a handle letter, ``"nat"``,
    ``"word"``, a tuple of keywords, or ``("huge",)``-style lone keyword
    (a flag).  ``role`` says what the value means to the engines.
    """

    field: str
    kind: str | tuple[str, ...]
    optional: bool = False
    role: str = ""  # pid victim device region job addr count off cnt word stride choice flag
    of: str | None = None  # device: its kind; region: the op that makes it; count: its start
    cap: int | None = None  # count: the most pages (EINVAL past it)
    weights: tuple[int, ...] = ()  # choice/flag: codec weights per value, in text order
    dest: bool = False  # addr: a mapping's destination (mremap's new)
    hint: tuple[int, ...] = ()  # count: codec weights (small, huge)

    @property
    def ranked(self) -> tuple[tuple[object, int], ...]:
        """A choice's or flag's (value, weight), heaviest first (ties in text
        order): the codec's table order and the Hypothesis engine's simplest-first."""
        values: tuple[object, ...] = (False, True) if self.role == "flag" else tuple(self.kind)
        return tuple(sorted(zip(values, self.weights, strict=True), key=lambda vw: -vw[1]))

    @property
    def handle(self) -> str | None:
        """The handle letter this field names, if it is a handle."""
        return self.kind if isinstance(self.kind, str) and self.kind in HANDLE_LETTERS else None


def P(name: str = "p", victim: bool = False) -> Arg:
    """A process handle; ``victim``: the op ends a process (mostly a child)."""
    return Arg(name, "P", role="victim" if victim else "pid")


def D(kind: str, name: str = "d") -> Arg:
    """A device handle of ``kind``."""
    return Arg(name, "D", role="device", of=kind)


def R(made_by: str, name: str = "r") -> Arg:
    """A region handle made by op ``made_by`` (``reg`` or ``pin``)."""
    return Arg(name, "R", role="region", of=made_by)


def J(name: str = "j") -> Arg:
    return Arg(name, "J", role="job")


def Addr(name: str = "s", dest: bool = False) -> Arg:
    return Arg(name, "nat", role="addr", dest=dest)


def Count(name: str = "n", of: str = "s", cap: int | None = None,
          hint: tuple[int, int] = (14, 3)) -> Arg:
    return Arg(name, "nat", role="count", of=of, cap=cap, hint=hint)


def Off(name: str = "off") -> Arg:
    return Arg(name, "nat", role="off")


def Cnt(name: str = "cnt") -> Arg:
    return Arg(name, "nat", role="cnt")


def Word(name: str = "x", optional: bool = False) -> Arg:
    return Arg(name, "word", optional, role="word")


def Stride(name: str = "stride") -> Arg:
    return Arg(name, "word", True, role="stride")


def Choice(name: str, values: tuple[str, ...], weights: tuple[int, ...] | None = None) -> Arg:
    w = weights or (1,) * len(values)
    if len(w) != len(values):
        raise DeclarationError(f"choice {name!r}: {len(values)} values, {len(w)} weights")
    return Arg(name, values, role="choice", weights=w)


def Flag(name: str, word: str, weights: tuple[int, int] = (1, 1)) -> Arg:
    """A lone optional keyword (``huge``): weights are (absent, present)."""
    return Arg(name, (word,), True, role="flag", weights=weights)


# ----------------------------------------------------------- declarations


@dataclass(frozen=True)
class OpDecl:
    """Everything about an op that is not its semantics."""

    keyword: str
    cls: type
    args: tuple[Arg, ...]
    states: frozenset[str]  # Appendix B: the process states the op runs in
    codec_id: int  # append-only byte-codec id
    since: int = 1  # the codec generation that first has it
    weight: int = 1  # in generated traces (codec table, relative)
    reserves: str | None = None  # the handle letter it creates (reserved at parse time)
    reserved_field: str | None = None
    kind_field: str | None = None  # open: the field naming the device kind it creates
    retires: str | None = None  # the field whose handle a success retires
    device: str | None = None  # the device kind (driver) the op belongs to
    racer: str | None = None  # "device" or "cpu": the race rule's first or second racer
    maps: bool = False  # it creates mappings (mmap): other memory ops need one first
    shapes: bool = False  # it changes VMA bounds: its edges are interesting addresses
    remaps: bool = False
    """Userspace changes the mapping of its ranges (mmap over, munmap,
    mremap, mprotect) or of the whole mm (fork): what the registration-cache
    contract forbids while device work is in flight (``fuzz/contracts.py``)."""
    access: bool = False  # a CPU access: its addresses are remembered for coherence
    one_step: bool = False  # it usually finishes in one step (the codec's step guess)
    draw: tuple[str, ...] = ()  # the Hypothesis draw order, if not text order
    rule: str = ""  # the Hypothesis rule that emits it (default: its keyword)
    gate: str = ""  # precondition of its rule: "jobs", "regions", "processes" or ""
    plugin: str | None = None  # the driver plug-in that declared it (codec ids are per plug-in)

    @property
    def rule_name(self) -> str:
        return self.rule or self.keyword

    @property
    def draw_order(self) -> tuple[str, ...]:
        return self.draw or tuple(a.field for a in self.args)

    def arg(self, name: str) -> Arg:
        return next(a for a in self.args if a.field == name)

    def has(self, role: str) -> bool:
        return any(a.role == role for a in self.args)


_BY_KEYWORD: dict[str, OpDecl] = {}
_BY_CLASS: dict[type, OpDecl] = {}
SCHEMA_BY_KEYWORD: Final = _BY_KEYWORD  # live views: plug-ins add to them
SCHEMA_BY_CLASS: Final = _BY_CLASS


def declare(cls: type, keyword: str, codec_id: int, *args: Arg,
            states: frozenset[str] = LIVE, reserves: tuple[str, str] | None = None,
            **more: object) -> OpDecl:
    """Declare ``cls`` as op ``keyword`` and register it.  The arguments and
    the reserved field must be exactly the dataclass's fields."""
    letter, fld = reserves if reserves else (None, None)
    decl = OpDecl(keyword, cls, tuple(args), frozenset(states), codec_id,
                  reserves=letter, reserved_field=fld, **more)  # type: ignore[arg-type]
    register(decl)
    return decl


def register(decl: OpDecl) -> None:
    """Add a declaration, checking it against its dataclass and the others."""
    names = [f.name for f in fields(decl.cls)]
    want = [a.field for a in decl.args] + ([decl.reserved_field] if decl.reserved_field else [])
    where = f"op {decl.keyword!r}"
    if sorted(names) != sorted(want):
        raise DeclarationError(f"{where}: fields {names} but declared {want}")
    if not decl.keyword.isidentifier() or decl.keyword in ("step", "run"):
        raise DeclarationError(f"{where}: not a usable keyword")
    if decl.keyword in _BY_KEYWORD and _BY_KEYWORD[decl.keyword] != decl:
        raise DeclarationError(f"{where}: declared twice")
    if not decl.states or not decl.states <= ANY:
        raise DeclarationError(f"{where}: states must be a subset of {STATES}")
    if decl.reserves is not None and decl.reserves not in HANDLE_LETTERS:
        raise DeclarationError(f"{where}: reserves {decl.reserves!r}, not a handle letter")
    if decl.retires is not None and decl.arg(decl.retires).handle is None:
        raise DeclarationError(f"{where}: retires {decl.retires!r}, not a handle field")
    if set(decl.draw_order) != {a.field for a in decl.args}:
        raise DeclarationError(f"{where}: draw order {decl.draw_order} is not its fields")
    seen_optional = False
    for a in decl.args:
        if seen_optional and not a.optional:
            raise DeclarationError(f"{where}: optional arguments must be trailing")
        seen_optional = seen_optional or a.optional
        if a.role == "count" and a.of not in {b.field for b in decl.args if b.role == "addr"}:
            raise DeclarationError(f"{where}: count {a.field!r} of no address field")
    for other in _BY_KEYWORD.values():
        if other.keyword != decl.keyword and (other.codec_id, other.plugin) == (
                decl.codec_id, decl.plugin):
            raise DeclarationError(f"{where}: codec id {decl.codec_id} is {other.keyword}'s")
    _BY_KEYWORD[decl.keyword] = decl
    _BY_CLASS[decl.cls] = decl


def add_device_kind(kind: str, weight: int = 2) -> None:
    """Let ``open`` make devices of a plug-in's ``kind`` (its kind field's
    choices grow; the built-in kinds keep their places and weights)."""
    opener = creator("D")
    if opener is None or opener.kind_field is None:
        raise DeclarationError("no op creates devices")
    arg = opener.arg(opener.kind_field)
    assert isinstance(arg.kind, tuple)
    if kind in arg.kind:
        return
    grown = replace(arg, kind=(*arg.kind, kind), weights=(*arg.weights, weight))
    new = replace(opener, args=tuple(grown if a is arg else a for a in opener.args))
    _BY_KEYWORD[new.keyword] = new
    _BY_CLASS[new.cls] = new


def remove_device_kind(kind: str) -> None:
    """Undo :func:`add_device_kind` (tests of plug-ins)."""
    opener = creator("D")
    if opener is None or opener.kind_field is None:
        return
    arg = opener.arg(opener.kind_field)
    assert isinstance(arg.kind, tuple)
    if kind not in arg.kind:
        return
    keep = [i for i, k in enumerate(arg.kind) if k != kind]
    shrunk = replace(arg, kind=tuple(arg.kind[i] for i in keep),
                     weights=tuple(arg.weights[i] for i in keep))
    new = replace(opener, args=tuple(shrunk if a is arg else a for a in opener.args))
    _BY_KEYWORD[new.keyword] = new
    _BY_CLASS[new.cls] = new


def device_kinds() -> tuple[str, ...]:
    """The kinds ``open`` makes: the built-in drivers', then plug-ins'."""
    opener = creator("D")
    assert opener is not None and opener.kind_field is not None
    kinds = opener.arg(opener.kind_field).kind
    assert isinstance(kinds, tuple)
    return kinds


def unregister(keyword: str) -> None:
    """Forget a declaration (tests of plug-ins)."""
    decl = _BY_KEYWORD.pop(keyword, None)
    if decl is not None:
        _BY_CLASS.pop(decl.cls, None)


def declared() -> tuple[OpDecl, ...]:
    """Every declared op: the built-ins in codec-id order, then plug-ins' ops."""
    return tuple(sorted(_BY_KEYWORD.values(),
                        key=lambda d: (d.plugin is not None, d.plugin or "", d.codec_id)))


def decl_of(op: object) -> OpDecl:
    return _BY_CLASS[type(op)]


def creator(letter: str, of: str | None = None) -> OpDecl | None:
    """The op that creates handles of ``letter`` (of device kind or maker ``of``)."""
    for d in declared():
        if d.reserves != letter:
            continue
        if letter == "R" and of is not None and d.keyword != of:
            continue
        return d
    return None


def handle_args(decl: OpDecl) -> Iterator[Arg]:
    return (a for a in decl.args if a.handle is not None)
