"""``bench.judge``: its arguments and its state part (never a timing asserted).

The state part is what shows whether judging costs what a step changed or
the size of the state (issue 14); here only that it runs both ways on a
state of the size asked and reports a figure per size, and that a bad
argument is one line and exit 2.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from bench import judge
from bench.cli import counts, names, output_file, write_output
from bench.judge import PARTS, PROG, main, parse, state_part, state_trace
from fuzz.trace import Trace
from tests.commands import error_line, never_runs, run_cli

ROOT = Path(__file__).resolve().parents[2]




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


def one_error_line(err: str) -> str:
    return error_line(err, PROG)


@pytest.mark.parametrize("argv", [["--pages", "x"], ["--pages", "0"], ["--parts", "foo"],
                                  ["--traces", "0"], ["--seed", "-1"], ["--examples", "1e3"],
                                  ["--atheris", "1,two"], ["--bogus"],
                                  ["--pages", str(1 << 30)],  # more than bench.scale's largest
                                  ["--json", "/nonexistent-dir/report.json"],
                                  ["--pages", ","], ["--pages", ""], ["--pages", "64,,128"],
                                  ["--atheris", ",,,"], ["--parts", ","], ["--parts", ""],
                                  ["--parts", "state,,executor"], ["--json", ""],
                                  ["--json", "bad\nname/x.json"]],
                         ids=lambda a: " ".join(a) or "empty")
def test_a_bad_argument_is_one_line_and_exit_2(argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parse(argv)
    assert stop.value.code == 2
    one_error_line(capsys.readouterr().err)


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any part started fails the test: a bad argument is found first."""
    never_runs(monkeypatch, judge, "executor_part", "state_part", "hypothesis_part", "atheris_part")


def test_a_json_target_that_is_not_a_regular_file_is_refused_before_any_part(
        tmp_path: Path, nothing_runs: None, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("a file\n")
    os.symlink(tmp_path / "dir", tmp_path / "link-to-dir")
    targets = [fifo, tmp_path / "dir", tmp_path / "link-to-dir",
               tmp_path / "missing" / "out.json", tmp_path / "file" / "out.json"]
    if Path("/dev/full").is_char_device():
        targets.append(Path("/dev/full"))
    before = sorted(os.listdir(tmp_path))
    for target in targets:
        with pytest.raises(SystemExit) as stop:
            main(["--parts", "state", "--pages", "16", "--json", str(target)])
        assert stop.value.code == 2
        assert "--json" in one_error_line(capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(tmp_path / "dir") == [] and (tmp_path / "file").read_text() == "a file\n"


def test_a_good_run_writes_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out.json"
    path.write_text("old\n")
    assert main(["--parts", "state", "--pages", "16", "--json", str(path)]) == 0
    assert sorted(json.loads(path.read_text())["state"]) == ["16"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert "16 pages" in capsys.readouterr().out


def test_a_write_that_fails_at_the_end_is_one_line_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import fuzz.safeio

    path = tmp_path / "out.json"
    path.write_text("old\n")
    real = fuzz.safeio.temp_copy

    def full(directory: Path, data: str | bytes) -> Path:
        real(directory, data).unlink()  # what a full disk leaves: nothing
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fuzz.safeio, "temp_copy", full)
    assert write_output(PROG, path, "{}\n") == 2
    assert "No space left" in one_error_line(capsys.readouterr().err)
    assert path.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["out.json"]
    os.mkfifo(tmp_path / "fifo")  # made a FIFO after the check: refused, never opened
    assert write_output(PROG, tmp_path / "fifo", "{}\n") == 2
    assert "not a regular file (a FIFO)" in one_error_line(capsys.readouterr().err)


def test_the_shared_list_types() -> None:
    import argparse

    assert counts(1, 9)(" 1, 2 ") == [1, 2]
    assert names(PARTS, "part")("state") == ["state"]
    for text in ("", ",", " , ", "1,", "1,,2", "0", "10", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            counts(1, 9)(text)
    with pytest.raises(argparse.ArgumentTypeError):
        names(PARTS, "part")("state,nope")
    with pytest.raises(argparse.ArgumentTypeError):
        output_file("")


@pytest.mark.parametrize("argv", [["--pages", ","], ["--json", "/dev/full"],
                                  ["--json", ""], ["--parts", "nope"]])
def test_from_the_command_line(argv: list[str]) -> None:
    done = run_cli("bench.judge", ["--parts", "state", "--pages", "16", *argv])
    assert done.returncode == 2 and done.stdout == ""
    one_error_line(done.stderr)
