"""The deliberate deviations from Linux (SPEC Appendix D) that a trace run on
Linux 6.1's test_hmm can show, each declared once as a predicate.

A trace that disagrees is judged by its first disagreeing line: a
:class:`Case` holds the trace's ops, that line's index, the kernel's and the
model's result of every line, and the reference model's state just before
that line.  :func:`attribute` names the first deviation whose predicate holds,
or ``unexplained``.  Each predicate is narrow on purpose: it names the op, the
two results and the state or earlier lines that the deviation needs, so that
a model bug does not hide behind it (``tests/unit/test_linux_deviations.py``
checks each on hand traces, and that none explains a plain wrong result).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Final

from fuzz import impls
from fuzz.executor import Settings, run_trace
from fuzz.trace import Trace
from model.interface import Config, Factory, Implementation
from model.observation import Observation, ProcessView
from model.ops import Op, RunThread, StepThread, op_keyword

UNEXPLAINED: Final = "unexplained"


@dataclass(frozen=True)
class Case:
    """The first disagreeing line of a trace run on Linux and on the model."""

    ops: tuple[Op, ...]
    index: int  # of the first disagreeing line, from 0
    linux: tuple[str, ...]
    model: tuple[str | None, ...]
    before: Observation  # the reference model's state before that line

    @property
    def op(self) -> Op:
        return self.ops[self.index]

    @property
    def key(self) -> str:
        return op_keyword(self.op)

    @property
    def got(self) -> str:
        return self.linux[self.index]

    @property
    def want(self) -> str:
        return self.model[self.index] or ""

    def earlier(self, *keys: str) -> Iterator[tuple[Op, str, str]]:
        """The earlier lines of these ops: (op, Linux's result, the model's result)."""
        for op, got, want in zip(self.ops[: self.index], self.linux, self.model, strict=False):
            if op_keyword(op) in keys:
                yield op, got, want or ""

    def process(self, pid: int) -> ProcessView | None:
        return next((p for p in self.before.processes if p.pid == pid), None)

    def mirror_pid(self, dev: int) -> int | None:
        return next((d.pid for d in self.before.devices if d.id == dev), None)


def pages(op: Op) -> range:
    """The pages a memory, CPU or mirror op names (empty for others)."""
    v = vars(op)
    if "old" in v:
        return range(v["old"], v["old"] + v["n"])
    start = v.get("s", v.get("v"))
    if start is None:
        return range(0)
    return range(start, start + v.get("n", 1))


def _meets(a: range, b: range) -> bool:
    return a.start < b.stop and b.start < a.stop


def _pid(case: Case, op: Op) -> int | None:
    v = vars(op)
    return v["p"] if "p" in v else case.mirror_pid(v["d"]) if "d" in v else None


def _same_process(case: Case, a: Op, b: Op) -> bool:
    return _pid(case, a) is not None and _pid(case, a) == _pid(case, b)


# ------------------------------------------------------------- predicates


def mprotect_partial(case: Case) -> bool:
    """D7: an earlier ``mprotect`` over a hole gave ENOMEM on both sides; Linux changed the
    VMAs up to the hole (``mprotect_fixup`` per VMA in ``do_mprotect_pkey``, the hole found
    after), the model nothing.  The line touches that range in the same process."""
    return any(got == want == "ENOMEM" and _same_process(case, op, case.op)
               and _meets(pages(op), pages(case.op))
               for op, got, want in case.earlier("mprotect"))


def own_readonly_device_page(case: Case) -> bool:
    """D6: a ``dwrite`` over the mirror's own read-only device page: Linux ``EFAULT``
    (``dmirror_do_fault``: hmm reports the page without write, WARN at test_hmm.c:280)."""
    if case.key != "dwrite" or case.got != "EFAULT" or case.want == "EFAULT":
        return False
    pid = case.mirror_pid(vars(case.op)["d"])
    proc = case.process(pid) if pid is not None else None
    span = pages(case.op)
    return proc is not None and any(e.cls == "device" and not e.w and e.vpn in span
                                    for e in proc.entries)


def partial_faults(case: Case) -> bool:
    """D3: an earlier ``dread``/``dwrite`` of the same mirror failed on both sides (a walk
    error); dmirror faults and stores 64-page chunks (``dmirror_fault``), keeping the
    chunks before the failing one in its table, the model installs nothing from a failed
    walk.  The line is a mirror access meeting that range, where Linux faulted fewer
    times."""
    if case.key not in ("dread", "dwrite") or _faults(case.got) >= _faults(case.want):
        return False
    dev = vars(case.op)["d"]
    return any(got == want and got in ("EFAULT", "EPERM") and vars(op)["d"] == dev
               and _meets(pages(op), pages(case.op))
               for op, got, want in case.earlier("dread", "dwrite"))


def _faults(result: str) -> int:
    words = result.split()
    return int(words[-1]) if len(words) > 1 and words[-2] == "faults" else -1


def mremap_unmaps_destination(case: Case) -> bool:
    """D20: an earlier ``mremap`` gave EFAULT on both sides for a source running past its
    VMA; Linux had unmapped the destination first (``mremap_to``'s ``do_munmap`` before
    ``vma_to_resize``), the model nothing.  The line touches that destination."""
    for op, got, want in case.earlier("mremap"):
        v = vars(op)
        src, dst = pages(op), range(v["new"], v["new"] + v["n"])
        if (got == want == "EFAULT" and not _meets(src, dst) and _same_process(case, op, case.op)
                and _meets(dst, pages(case.op))):
            return True
    return False


DEVICE_OPS: Final = ("dread", "dwrite", "snapshot", "migrate_to_dev")


@dataclass(frozen=True)
class Deviation:
    """A SPEC Appendix D entry and the predicate that recognises it on Linux."""

    id: str  # "D7": SPEC Appendix D, entry 7
    title: str
    explains: Callable[[Case], bool]


DEVIATIONS: Final[tuple[Deviation, ...]] = (
    Deviation("D6", "the owner's write walk on its own read-only device page",
              own_readonly_device_page),
    Deviation("D7", "mprotect is all-or-nothing on holes", mprotect_partial),
    Deviation("D3", "a failed mirror walk installs nothing (dmirror keeps 64-page chunks)",
              partial_faults),
    Deviation("D20", "a failed mremap leaves its destination mapped",
              mremap_unmaps_destination),
)


def attribute(case: Case) -> str:
    """The id of the first deviation that explains ``case``, else ``unexplained``."""
    return next((d.id for d in DEVIATIONS if d.explains(case)), UNEXPLAINED)


def _capture(made: list[Implementation], factory: Factory,
             config: Config) -> Implementation:
    impl = factory(config)
    made.append(impl)
    return impl


def model_before(trace: Trace, index: int) -> Observation:
    """The reference model's state after the first ``index`` step lines of ``trace``."""
    made: list[Implementation] = []
    prefix = Trace(trace.headers, trace.steps[:index], trace.path)
    side = [("reference", partial(_capture, made, impls.factory("reference")))]
    run_trace(prefix, side, Settings(drain=False, checks=False))
    return made[0].observe()


def case_of(trace: Trace, linux: list[str], model: list[str | None], index: int) -> Case:
    ops = tuple(line.action for line in trace.steps
                if not isinstance(line.action, StepThread | RunThread))
    return Case(ops, index, tuple(linux), tuple(model), model_before(trace, index))
