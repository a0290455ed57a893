"""``mirrorfuzz corpus compact`` (fuzz/compact.py): runs of single-page
accesses become range accesses, and nothing else changes."""

from __future__ import annotations

from pathlib import Path

from fuzz import impls
from fuzz.compact import compact, compact_files
from fuzz.executor import Settings, run_trace
from fuzz.trace import format_trace, parse_trace

TRACE = """# mirrorfuzz-trace 1
# title: t
mmap P0 0 16 rw private => ok
write P0 0 10 => ok
write P0 1 12 => ok
write P0 2 14 => ok
# a comment ends a run
write P0 3 16 => ok
write P0 6 3 => ok
fork P0 => P1
read P1 0 => 10
read P1 1 => 12
read P0 2 => 14
read P0 3 => 16
T1 = write P0 5 1 => ok
run T1 => done ok
read P0 5 => 1
"""


def test_runs_become_range_accesses() -> None:
    out = format_trace(compact(parse_trace(TRACE)))
    body = [line for line in out.splitlines() if not line.startswith("#")]
    assert body == [
        "mmap P0 0 16 rw private => ok",
        "write_range P0 0 3 10 2 => ok",
        "write P0 3 16 => ok",  # pages 3 and 6 are not consecutive
        "write P0 6 3 => ok",
        "fork P0 => P1",
        "read_range P1 0 2 => values 10 12",
        "read_range P0 2 2 => values 14 16",  # another process starts another run
        "T1 = write P0 5 1 => ok",  # a thread's op is not a plain line
        "run T1 => done ok",
        "read P0 5 => 1",
    ]
    assert "# a comment ends a run" in out


def test_compaction_keeps_the_meaning_and_is_idempotent() -> None:
    before = parse_trace(TRACE)
    after = compact(before)
    assert compact(after) == after
    for trace in (before, after):
        verdict = run_trace(trace, impls.sides("both"), Settings())
        assert verdict.ok, (verdict.finding, verdict.mismatches)


def test_a_trace_naming_plain_threads_is_left_alone() -> None:
    text = ("# mirrorfuzz-trace 1\nmmap P0 0 4 rw private => ok\nwrite P0 0 1 => ok\n"
            "write P0 1 2 => ok\nmunmap P0 0 4 => blocked L4\n")
    trace = parse_trace(text)
    assert compact(trace) == trace


def test_a_file_with_a_mismatch_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    path.write_text(TRACE.replace("read P0 3 => 16", "read P0 3 => 99"))
    before = path.read_text()
    [(lines_before, lines_after)] = compact_files([path])
    assert lines_before == lines_after
    assert path.read_text() == before
    good = tmp_path / "g.trace"
    good.write_text(TRACE)
    [(lines_before, lines_after)] = compact_files([good])
    assert lines_after < lines_before and "write_range" in good.read_text()
