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

import functools
import re
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Final, Literal

from model.decl import (
    ANY,
    NOT_DEAD,
    SCHEMA_BY_CLASS,
    SCHEMA_BY_KEYWORD,
    Addr,
    Arg,
    Choice,
    Cnt,
    Count,
    D,
    Flag,
    J,
    Off,
    OpDecl,
    P,
    R,
    Stride,
    Word,
    declare,
    declared,
)

OpSchema = OpDecl
__all__ = ["Arg", "OpSchema", "OpDecl", "SCHEMA_BY_CLASS", "SCHEMA_BY_KEYWORD"]

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
DeviceKind = str
"""A device kind: a driver's name (``mirror``, ``userptr``, ``pin`` or a plug-in's)."""
DEVICE_KINDS: Final = ("mirror", "userptr", "pin")
"""The built-in device kinds (codec v1's order)."""
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


@dataclass(frozen=True)
class WriteRange:
    """``write_range P v n x [stride]``: the n single-page writes of x + i*stride (§3.2)."""

    p: int
    v: int
    n: int
    x: int
    stride: int | None = None


@dataclass(frozen=True)
class ReadRange:
    """``read_range P v n``: the n single-page reads; ``values`` (§3.2)."""

    p: int
    v: int
    n: int


Op = (
    Mmap | Munmap | Mremap | Mprotect | Madvise | Fork | Exit | Read | Write | Open
    | Dread | Dwrite | Snapshot | MigrateToDev | Evict | Reg | Submit | Complete | Unreg
    | Pin | Dma | Unpin | Migrate | Reclaim | Oomreap | WriteRange | ReadRange
)


@dataclass(frozen=True)
class StepThread:
    """``step X``: run thread X to its next yield point."""

    thread: str


@dataclass(frozen=True)
class RunThread:
    """``run X``: step thread X until it is done or blocked."""

    thread: str


# -------------------------------------------------------- the declarations
# One declaration per op (model.decl): fields with roles, Appendix B's
# process states, the handle it creates or retires, its byte-codec id (v1's
# ids are the order of this list; new ops append) and the engines' hints.

_PROT = Choice("prot", ("none", "r", "rw"), (1, 3, 12))
_MODE = Choice("mode", ("ro", "rw"), (1, 2))
_DIR = Choice("direction", ("read", "write"))
_PAYLOAD = (Word("x", optional=True), Stride())

MMAP: Final = declare(Mmap, "mmap", 0, P(), Addr(), Count(hint=(8, 12)), _PROT,
                      Choice("kind", ("private", "shared"), (3, 1)),
                      Flag("huge", "huge", (2, 1)), weight=14, racer="cpu", maps=True,
                      shapes=True, remaps=True, draw=("p", "s", "n", "huge", "prot", "kind"))
MUNMAP: Final = declare(Munmap, "munmap", 1, P(), Addr(), Count(), weight=5, racer="cpu",
                        shapes=True, remaps=True)
MREMAP: Final = declare(Mremap, "mremap", 2, P(), Addr("old"), Count(of="old"),
                        Addr("new", dest=True), weight=5, racer="cpu", shapes=True,
                        remaps=True)
MPROTECT: Final = declare(Mprotect, "mprotect", 3, P(), Addr(), Count(), _PROT, weight=6,
                          racer="cpu", shapes=True, remaps=True)
MADVISE: Final = declare(Madvise, "madvise", 4, P(), Addr(), Count(),
                         Choice("advice", ("dontneed", "hugepage", "nohugepage"), (4, 2, 2)),
                         weight=6, racer="cpu", draw=("p", "advice", "s", "n"))
FORK: Final = declare(Fork, "fork", 5, P(), reserves=("P", "child"), weight=4, racer="cpu",
                      gate="processes", remaps=True)
EXIT: Final = declare(Exit, "exit", 6, P(victim=True), states=NOT_DEAD, weight=1,
                      racer="cpu", rule="kill")
READ: Final = declare(Read, "read", 7, P(), Addr("v"), weight=14, access=True, one_step=True)
WRITE: Final = declare(Write, "write", 8, P(), Addr("v"), Word(), weight=16, racer="cpu",
                       access=True, one_step=True)
OPEN: Final = declare(Open, "open", 9, P(), Choice("kind", DEVICE_KINDS, (3, 2, 2)),
                      reserves=("D", "dev"), kind_field="kind", weight=5, one_step=True,
                      draw=("kind", "p"))
DREAD: Final = declare(Dread, "dread", 10, D("mirror"), Addr(), Count(cap=MAX_VALUE_PAGES),
                       weight=8, device="mirror", racer="device")
DWRITE: Final = declare(Dwrite, "dwrite", 11, D("mirror"), Addr(), Count(), Word(), Stride(),
                        weight=8, device="mirror", racer="device",
                        draw=("d", "s", "n", "stride", "x"))
SNAPSHOT: Final = declare(Snapshot, "snapshot", 12, D("mirror"), Addr(),
                          Count(cap=MAX_VALUE_PAGES), weight=4, device="mirror",
                          racer="device", one_step=True)
MIGRATE_TO_DEV: Final = declare(MigrateToDev, "migrate_to_dev", 13, D("mirror"), Addr(), Count(),
                                weight=5, device="mirror", racer="device")
EVICT: Final = declare(Evict, "evict", 14, D("mirror"), states=ANY, weight=3, device="mirror",
                       racer="device")
REG: Final = declare(Reg, "reg", 15, D("userptr"), Addr(), Count(), _MODE,
                     reserves=("R", "region"), weight=4, device="userptr", racer="device",
                     one_step=True)
SUBMIT: Final = declare(Submit, "submit", 16, R("reg"), _DIR, Off(), Cnt(), *_PAYLOAD,
                        reserves=("J", "job"), weight=6, device="userptr", racer="device",
                        draw=("r", "direction", "off", "cnt", "stride", "x"))
COMPLETE: Final = declare(Complete, "complete", 17, J(), states=ANY, retires="j", weight=5,
                          device="userptr", racer="device", one_step=True, gate="jobs")
UNREG: Final = declare(Unreg, "unreg", 18, R("reg"), states=ANY, retires="r", weight=2,
                       device="userptr", racer="device", gate="regions")
PIN: Final = declare(Pin, "pin", 19, D("pin"), Addr(), Count(), _MODE, reserves=("R", "region"),
                     weight=4, device="pin", racer="device")
DMA: Final = declare(Dma, "dma", 20, R("pin"), _DIR, Off(), Cnt(), *_PAYLOAD, states=NOT_DEAD,
                     weight=5, device="pin", racer="device", one_step=True,
                     draw=("r", "direction", "off", "cnt", "stride", "x"))
UNPIN: Final = declare(Unpin, "unpin", 21, R("pin"), states=ANY, retires="r", weight=2,
                       device="pin", racer="device", one_step=True, gate="regions")
MIGRATE: Final = declare(Migrate, "migrate", 22, P(), Addr(), Count(), states=NOT_DEAD,
                         weight=4, racer="cpu")
RECLAIM: Final = declare(Reclaim, "reclaim", 23, P(), Addr(), Count(), states=NOT_DEAD,
                         weight=4, racer="cpu")
OOMREAP: Final = declare(Oomreap, "oomreap", 24, P(victim=True), weight=1, rule="kill")
WRITE_RANGE: Final = declare(WriteRange, "write_range", 25, P(), Addr("v"),
                             Count(of="v", cap=MAX_VALUE_PAGES), Word(), Stride(), since=2,
                             weight=4, racer="cpu", access=True,
                             draw=("p", "v", "n", "stride", "x"))
READ_RANGE: Final = declare(ReadRange, "read_range", 26, P(), Addr("v"),
                            Count(of="v", cap=MAX_VALUE_PAGES), since=2, weight=4, access=True)

OP_SCHEMAS: Final = declared()
"""The built-in ops' declarations, in codec-id order (plug-ins add theirs to
``SCHEMA_BY_KEYWORD``/``SCHEMA_BY_CLASS``; ``model.decl.declared()`` lists all)."""
FIRST_HANDLE: Final = {"P": 1, "D": 0, "R": 0, "J": 0}
"""The first number each handle kind reserves (P0 exists at start)."""


def op_keyword(op: Op) -> str:
    """The op's keyword, e.g. ``"migrate_to_dev"``; ``madvise`` names its advice."""
    return SCHEMA_BY_CLASS[type(op)].keyword


@functools.lru_cache(maxsize=1 << 12)
def format_op(op: Op) -> str:
    """The canonical text of an op (reserved handles are not printed);
    cached, since every observation names each live thread's op (a few
    thousand entries: an engine's process formats new ops with every input,
    and a bigger cache only grows its memory)."""
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


@functools.lru_cache(maxsize=1 << 12)
def is_thread_name(name: str) -> bool:
    return _THREAD_RE.match(name) is not None


@functools.lru_cache(maxsize=1 << 16)
def thread_order(name: str) -> tuple[int, int]:
    """Sort key of thread names: Tn by n, then Li by i (SPEC §5.4)."""
    m = _THREAD_RE.match(name)
    if m is None:
        raise ValueError(f"not a thread name: {name!r}")
    return (0 if m.group(1) == "T" else 1, int(m.group(2)))


def plain_thread(line_index: int) -> str:
    """The thread that runs the plain op on the i-th step line (from 1)."""
    return f"L{line_index}"
