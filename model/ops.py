"""The shared vocabulary: ops, results and errno names (SPEC §2, §3, §6, §7).

Both implementations and the whole of ``fuzz/`` speak this vocabulary and
nothing else.  An op is a frozen dataclass; its text form is given by
``OP_SCHEMAS`` (one row per op keyword) and produced by :func:`format_op`.

Handles are static (SPEC §2): the line that creates a process, device,
region or job *reserves* its number at parse time.  The reserved number is a
field of the op (``Fork.child``, ``Open.dev``, ``Reg.region``, ``Pin.region``,
``Submit.job``) that is not printed; the parser and the byte codec fill it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Final, Literal

ADDRESS_PAGES: Final = 1 << 36
"""Every address space is [0, 2^36) pages."""
HUGE_PAGES: Final = 512
"""A THP is an order-9 folio of 512 pages at a 512-aligned block."""
HUGE_ORDER: Final = 9
MAX_VALUE_PAGES: Final = 4096
"""The value-returning ops take at most this many pages (SPEC §2)."""
WORD_MIN: Final = -(1 << 63)
WORD_MAX: Final = (1 << 63) - 1
DEFAULT_FRAMES: Final = 4096
DEFAULT_DEVICE_FRAMES: Final = 1024

Prot = Literal["none", "r", "rw"]
Kind = Literal["private", "shared"]
Advice = Literal["dontneed", "hugepage", "nohugepage"]
DeviceKind = Literal["mirror", "userptr", "pin"]
Mode = Literal["ro", "rw"]
Direction = Literal["read", "write"]


def is_word(x: int) -> bool:
    """True if ``x`` fits a signed 64-bit word."""
    return WORD_MIN <= x <= WORD_MAX


class Errno(StrEnum):
    """The errno results of SPEC §2 (an op not allowed here, never a finding)."""

    EINVAL = "EINVAL"
    ENOMEM = "ENOMEM"
    EFAULT = "EFAULT"
    EPERM = "EPERM"
    EBUSY = "EBUSY"
    ENOENT = "ENOENT"
    ESRCH = "ESRCH"


# --------------------------------------------------------------------- ops
# Field names follow SPEC's argument names.  p = pid, d = device number,
# r = region number (userptr object or pin region), j = job number.


@dataclass(frozen=True)
class Mmap:
    p: int
    s: int
    n: int
    prot: Prot
    kind: Kind
    huge: bool = False


@dataclass(frozen=True)
class Munmap:
    p: int
    s: int
    n: int


@dataclass(frozen=True)
class Mremap:
    p: int
    old: int
    n: int
    new: int


@dataclass(frozen=True)
class Mprotect:
    p: int
    s: int
    n: int
    prot: Prot


@dataclass(frozen=True)
class Madvise:
    p: int
    s: int
    n: int
    advice: Advice


@dataclass(frozen=True)
class Fork:
    p: int
    child: int = -1  # reserved pid, not printed


@dataclass(frozen=True)
class Exit:
    p: int


@dataclass(frozen=True)
class Read:
    p: int
    v: int


@dataclass(frozen=True)
class Write:
    p: int
    v: int
    x: int


@dataclass(frozen=True)
class Open:
    p: int
    kind: DeviceKind
    dev: int = -1  # reserved device number, not printed


@dataclass(frozen=True)
class Dread:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class Dwrite:
    d: int
    s: int
    n: int
    x: int
    stride: int | None = None  # None: not written in the text; means 0


@dataclass(frozen=True)
class Snapshot:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class MigrateToDev:
    d: int
    s: int
    n: int


@dataclass(frozen=True)
class Evict:
    d: int


@dataclass(frozen=True)
class Reg:
    d: int
    s: int
    n: int
    mode: Mode
    region: int = -1  # reserved region number, not printed


@dataclass(frozen=True)
class Submit:
    r: int
    direction: Direction
    off: int
    cnt: int
    x: int | None = None  # None: not written; means 0 (DECISIONS.md)
    stride: int | None = None
    job: int = -1  # reserved job number, not printed


@dataclass(frozen=True)
class Complete:
    j: int


@dataclass(frozen=True)
class Unreg:
    r: int


@dataclass(frozen=True)
class Pin:
    d: int
    s: int
    n: int
    mode: Mode
    region: int = -1  # reserved region number, not printed


@dataclass(frozen=True)
class Dma:
    r: int
    direction: Direction
    off: int
    cnt: int
    x: int | None = None
    stride: int | None = None


@dataclass(frozen=True)
class Unpin:
    r: int


@dataclass(frozen=True)
class Migrate:
    p: int
    s: int
    n: int


@dataclass(frozen=True)
class Reclaim:
    p: int
    s: int
    n: int


@dataclass(frozen=True)
class Oomreap:
    p: int


Op = (
    Mmap | Munmap | Mremap | Mprotect | Madvise | Fork | Exit | Read | Write | Open
    | Dread | Dwrite | Snapshot | MigrateToDev | Evict | Reg | Submit | Complete | Unreg
    | Pin | Dma | Unpin | Migrate | Reclaim | Oomreap
)


@dataclass(frozen=True)
class StepThread:
    """``step X``: run thread X to its next yield point."""

    thread: str


@dataclass(frozen=True)
class RunThread:
    """``run X``: step thread X until it is done or blocked."""

    thread: str


# ------------------------------------------------------------- the schema
# Argument kinds: a handle letter ("P", "D", "R", "J"), "nat" (a natural
# number: addresses, counts, offsets), "word" (a signed 64-bit value), or a
# tuple of keywords.  "huge" is a lone optional keyword.  Optional arguments
# are trailing and nest: [x [stride]].


@dataclass(frozen=True)
class Arg:
    field: str
    kind: str | tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class OpSchema:
    keyword: str
    cls: type
    args: tuple[Arg, ...]
    reserves: str | None = None  # handle letter reserved by this op
    reserved_field: str | None = None


def _s(keyword: str, cls: type, *args: Arg, reserves: tuple[str, str] | None = None) -> OpSchema:
    letter, fld = reserves if reserves else (None, None)
    return OpSchema(keyword, cls, args, letter, fld)


_PROT = ("none", "r", "rw")
_MODE = ("ro", "rw")
_DIR = ("read", "write")
_RANGE = (Arg("s", "nat"), Arg("n", "nat"))

OP_SCHEMAS: Final[tuple[OpSchema, ...]] = (
    _s("mmap", Mmap, Arg("p", "P"), *_RANGE, Arg("prot", _PROT),
       Arg("kind", ("private", "shared")), Arg("huge", ("huge",), optional=True)),
    _s("munmap", Munmap, Arg("p", "P"), *_RANGE),
    _s("mremap", Mremap, Arg("p", "P"), Arg("old", "nat"), Arg("n", "nat"), Arg("new", "nat")),
    _s("mprotect", Mprotect, Arg("p", "P"), *_RANGE, Arg("prot", _PROT)),
    _s("madvise", Madvise, Arg("p", "P"), *_RANGE,
       Arg("advice", ("dontneed", "hugepage", "nohugepage"))),
    _s("fork", Fork, Arg("p", "P"), reserves=("P", "child")),
    _s("exit", Exit, Arg("p", "P")),
    _s("read", Read, Arg("p", "P"), Arg("v", "nat")),
    _s("write", Write, Arg("p", "P"), Arg("v", "nat"), Arg("x", "word")),
    _s("open", Open, Arg("p", "P"), Arg("kind", ("mirror", "userptr", "pin")),
       reserves=("D", "dev")),
    _s("dread", Dread, Arg("d", "D"), *_RANGE),
    _s("dwrite", Dwrite, Arg("d", "D"), *_RANGE, Arg("x", "word"),
       Arg("stride", "word", optional=True)),
    _s("snapshot", Snapshot, Arg("d", "D"), *_RANGE),
    _s("migrate_to_dev", MigrateToDev, Arg("d", "D"), *_RANGE),
    _s("evict", Evict, Arg("d", "D")),
    _s("reg", Reg, Arg("d", "D"), *_RANGE, Arg("mode", _MODE), reserves=("R", "region")),
    _s("submit", Submit, Arg("r", "R"), Arg("direction", _DIR), Arg("off", "nat"),
       Arg("cnt", "nat"), Arg("x", "word", optional=True), Arg("stride", "word", optional=True),
       reserves=("J", "job")),
    _s("complete", Complete, Arg("j", "J")),
    _s("unreg", Unreg, Arg("r", "R")),
    _s("pin", Pin, Arg("d", "D"), *_RANGE, Arg("mode", _MODE), reserves=("R", "region")),
    _s("dma", Dma, Arg("r", "R"), Arg("direction", _DIR), Arg("off", "nat"), Arg("cnt", "nat"),
       Arg("x", "word", optional=True), Arg("stride", "word", optional=True)),
    _s("unpin", Unpin, Arg("r", "R")),
    _s("migrate", Migrate, Arg("p", "P"), *_RANGE),
    _s("reclaim", Reclaim, Arg("p", "P"), *_RANGE),
    _s("oomreap", Oomreap, Arg("p", "P")),
)

SCHEMA_BY_KEYWORD: Final = {sch.keyword: sch for sch in OP_SCHEMAS}
SCHEMA_BY_CLASS: Final = {sch.cls: sch for sch in OP_SCHEMAS}
FIRST_HANDLE: Final = {"P": 1, "D": 0, "R": 0, "J": 0}
"""The first number each handle kind reserves (P0 exists at start)."""


def op_keyword(op: Op) -> str:
    """The op's keyword, e.g. ``"migrate_to_dev"``; ``madvise`` names its advice."""
    return SCHEMA_BY_CLASS[type(op)].keyword


def format_op(op: Op) -> str:
    """The canonical text of an op (reserved handles are not printed)."""
    sch = SCHEMA_BY_CLASS[type(op)]
    words = [sch.keyword]
    for arg in sch.args:
        value = getattr(op, arg.field)
        if arg.kind == ("huge",):
            if value:
                words.append("huge")
        elif value is None:
            continue
        elif isinstance(arg.kind, str) and arg.kind in FIRST_HANDLE:
            words.append(f"{arg.kind}{value}")
        else:
            words.append(str(value))
    return " ".join(words)


def op_fields(op: Op) -> dict[str, object]:
    return {f.name: getattr(op, f.name) for f in fields(op)}


# ----------------------------------------------------------------- results


@dataclass(frozen=True)
class Ok:
    """``ok``, or ``ok faults F`` from ``dwrite``."""

    faults: int | None = None

    def __str__(self) -> str:
        return "ok" if self.faults is None else f"ok faults {self.faults}"


@dataclass(frozen=True)
class Num:
    """A count: ``migrate``, ``reclaim``, ``migrate_to_dev``, ``evict``; or a read's word."""

    value: int

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class HandleResult:
    """``Pk``, ``Dk``, ``Rk`` or ``Jk``."""

    letter: str
    num: int

    def __str__(self) -> str:
        return f"{self.letter}{self.num}"


@dataclass(frozen=True)
class Values:
    """``values V...`` (``faults F`` from ``dread``)."""

    values: tuple[int, ...]
    faults: int | None = None

    def __str__(self) -> str:
        text = "values " + " ".join(map(str, self.values))
        return text if self.faults is None else f"{text} faults {self.faults}"


SNAP_WORDS: Final = ("error", "none", "zero", "r", "w", "r+pmd", "w+pmd", "dev-r", "dev-w")


@dataclass(frozen=True)
class Snap:
    words: tuple[str, ...]

    def __str__(self) -> str:
        return "snap " + " ".join(self.words)


@dataclass(frozen=True)
class Err:
    errno: Errno

    def __str__(self) -> str:
        return self.errno.value


@dataclass(frozen=True)
class Segv:
    def __str__(self) -> str:
        return "SIGSEGV"


OpResult = Ok | Num | HandleResult | Values | Snap | Err | Segv

OK: Final = Ok()
SIGSEGV: Final = Segv()
EINVAL: Final = Err(Errno.EINVAL)
ENOMEM: Final = Err(Errno.ENOMEM)
EFAULT: Final = Err(Errno.EFAULT)
EPERM: Final = Err(Errno.EPERM)
EBUSY: Final = Err(Errno.EBUSY)
ENOENT: Final = Err(Errno.ENOENT)
ESRCH: Final = Err(Errno.ESRCH)


def range_ok(s: int, n: int) -> bool:
    """SPEC §2: ``0 <= s``, ``1 <= n``, ``s + n <= 2^36``."""
    return 0 <= s and 1 <= n and s + n <= ADDRESS_PAGES


def words_ok(x: int, stride: int, n: int) -> bool:
    """SPEC §2: ``x + k*stride`` is a word for every page k < n (linear, so
    the two ends suffice)."""
    return is_word(x) and is_word(stride) and is_word(x + (n - 1) * stride)


def err(name: Errno) -> Err:
    return Err(name)


# Step outcomes (SPEC §5.1): what one step of a thread gives.


@dataclass(frozen=True)
class Yielded:
    def __str__(self) -> str:
        return "yield"


@dataclass(frozen=True)
class Blocked:
    def __str__(self) -> str:
        return "blocked"


@dataclass(frozen=True)
class Done:
    result: OpResult

    def __str__(self) -> str:
        return f"done {self.result}"


StepOutcome = Yielded | Blocked | Done


@dataclass(frozen=True)
class BlockedOn:
    """A plain op's line result when its thread ``Li`` blocked: ``blocked Li``."""

    thread: str

    def __str__(self) -> str:
        return f"blocked {self.thread}"


LineResult = OpResult | Yielded | Blocked | Done | BlockedOn
"""What a step line gives: an op result (plain op, ``Tn =`` or an EINVAL
``step``/``run``), ``blocked Li``, or a step outcome."""


# ----------------------------------------------------------------- threads

_THREAD_RE = re.compile(r"^(T|L)(0|[1-9][0-9]*)$")


def is_thread_name(name: str) -> bool:
    return _THREAD_RE.match(name) is not None


def thread_order(name: str) -> tuple[int, int]:
    """Sort key of thread names: Tn by n, then Li by i (SPEC §5.4)."""
    m = _THREAD_RE.match(name)
    if m is None:
        raise ValueError(f"not a thread name: {name!r}")
    return (0 if m.group(1) == "T" else 1, int(m.group(2)))


def plain_thread(line_index: int) -> str:
    """The thread that runs the plain op on the i-th step line (from 1)."""
    return f"L{line_index}"
