"""``bench.judge``: its arguments and its state part (never a timing asserted).

The state part is what shows whether judging costs what a step changed or
the size of the state (issue 14); here only that it runs both ways on a
state of the size asked and reports a figure per size, and that a bad
argument is one line and exit 2.
"""

from __future__ import annotations

import pytest

from bench.judge import PARTS, parse, state_part, state_trace
from fuzz.trace import Trace


def test_state_trace_maps_writes_and_steps_the_pages_asked() -> None:
    trace = state_trace(96, writes=5)
    assert isinstance(trace, Trace)
    assert trace.frames >= 2 * 96
    assert [type(line.action).__name__ for line in trace.steps] == \
        ["Mmap", "WriteRange"] + ["Write", "Read"] * 5
    assert state_trace(8192).steps[0].action.huge
    assert not state_trace(1024).steps[0].action.huge


def test_state_part_reports_bare_and_judged_for_each_size(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    out = state_part([64, 128])
    assert sorted(out) == ["128", "64"]
    assert all(v["bare_us"] > 0 and v["judged_us"] > 0 for v in out.values())
    printed = capsys.readouterr().out
    assert "64 pages" in printed and "128 pages" in printed


def test_defaults() -> None:
    args = parse([])
    assert args.parts == list(PARTS) and args.pages == [64, 1024, 8192]
    assert parse(["--seed", "0", "--libfuzzer", "0", "--atheris", "10,20"]).atheris == [10, 20]


@pytest.mark.parametrize("argv", [["--pages", "x"], ["--pages", "0"], ["--parts", "foo"],
                                  ["--traces", "0"], ["--seed", "-1"], ["--examples", "1e3"],
                                  ["--atheris", "1,two"], ["--bogus"],
                                  ["--pages", str(1 << 30)],  # more than bench.scale's largest
                                  ["--json", "/nonexistent-dir/report.json"]])
def test_a_bad_argument_is_one_line_and_exit_2(argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parse(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m bench.judge: error: ")
