"""The SPEC Appendix D predicates of the Linux comparison (``fuzz.linux.deviations``),
on small hand traces with the kernel's results written out: each explains the
disagreement it is for, and not the same disagreement without its cause.  No
kernel is needed: ``compare`` takes the kernel's results as the guest runner
prints them."""

from __future__ import annotations

import pytest

from fuzz.linux import deviations
from fuzz.linux.replay import RunOutput, compare
from fuzz.trace import parse_trace


def attributed(body: str, linux: list[str]) -> str | None:
    """The deviation ``compare`` names for the trace ``body`` with these kernel results."""
    trace = parse_trace("# mirrorfuzz-trace 1\n" + body)
    comparison = compare(trace, RunOutput("t", linux, "ok"))
    assert comparison.status == ("agree" if comparison.deviation is None else "disagree")
    return comparison.deviation


MPROTECT = """mmap P0 0 4 r private
mprotect P0 0 8 rw
write P0 1 5
"""

MREMAP = """mmap P0 0 4 rw private
mmap P0 4 4 rw private huge
mmap P0 100 4 rw private
mremap P0 2 4 100
read P0 {page}
"""

DREAD = """mmap P0 0 4 rw private
open P0 mirror
{first}
dread D0 0 2
"""

DWRITE = """mmap P0 0 4 r private
open P0 mirror
{migrate}
dwrite D0 0 1 7
"""

CASES = [
    # D7: Linux made [0,4) writable before finding the hole; the model changed nothing.
    ("D7", MPROTECT, ["ok", "ENOMEM", "ok"]),
    ("unexplained", MPROTECT.replace("mprotect P0 0 8 rw", "munmap P0 8 1"),
     ["ok", "ok", "ok"]),
    # D20: Linux unmapped the destination [100,104) before its EFAULT.
    ("D20", MREMAP.format(page=100), ["ok", "ok", "ok", "EFAULT", "SIGSEGV"]),
    ("unexplained", MREMAP.format(page=103).replace("mremap P0 2 4 100", "munmap P0 2 1"),
     ["ok", "ok", "ok", "ok", "SIGSEGV"]),
    # D3: dmirror kept the chunk it faulted before the failing page.
    ("D3", DREAD.format(first="dread D0 0 8"),
     ["ok", "D0", "EFAULT", "values 0 0 faults 0"]),
    ("unexplained", DREAD.format(first="dread D0 2 1"),
     ["ok", "D0", "values 0 faults 1", "values 0 0 faults 0"]),
    # D6: the mirror's own read-only device page: dmirror fails the write with EFAULT.
    ("D6", DWRITE.format(migrate="migrate_to_dev D0 0 2"), ["ok", "D0", "2", "EFAULT"]),
    ("unexplained", DWRITE.format(migrate="dread D0 0 2"),
     ["ok", "D0", "values 0 0 faults 1", "EFAULT"]),
]


@pytest.mark.parametrize(("want", "body", "linux"), CASES)
def test_predicate_explains_its_case_only(want: str, body: str, linux: list[str]) -> None:
    assert attributed(body, linux) == want


def test_agreement_has_no_deviation() -> None:
    assert attributed(MPROTECT, ["ok", "ENOMEM", "SIGSEGV"]) is None


def test_every_deviation_is_declared_once_and_tested() -> None:
    ids = [d.id for d in deviations.DEVIATIONS]
    assert len(ids) == len(set(ids))
    assert set(ids) <= {want for want, _, _ in CASES}
