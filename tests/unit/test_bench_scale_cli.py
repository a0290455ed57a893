"""``bench.scale``'s command line: a bad argument is one line on stderr, exit
2, nothing run and nothing written, ``--quick`` or not (never a timing
asserted)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench import scale
from bench.scale import MAX_LOG2, MIN_LOG2, PROG, WORKLOAD_NAMES, main, parse_args
from tests.commands import error_line, never_runs, run_cli

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--workloads", "munmap", "--impl", "optimized", "--no-memory", "--no-sparse"]
"""Valid arguments that keep a run short, should a bad one be let through."""




@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any measurement started fails the test: a bad argument is found first."""
    never_runs(monkeypatch, scale, "time_workload", "bytes_per_page", "sparse_memory", "fuzz_pair")


def one_error_line(err: str) -> str:
    return error_line(err, PROG)


BAD = [
    ["--sizes", "-5"], ["--sizes", "abc"], ["--sizes", str(MIN_LOG2 - 1)],
    ["--sizes", str(MAX_LOG2 + 1)], ["--sizes", "99"], ["--sizes", ","], ["--sizes", "10,,12"],
    ["--sizes", ""], ["--sparse-blocks", "x"], ["--sparse-blocks", "0"],
    ["--sparse-blocks", "-1"], ["--sparse-blocks", ","], ["--repeat", "0"],
    ["--repeat", "-1"], ["--repeat", "1.5"], ["--traces", "-1"], ["--traces", "0"],
    ["--ref-limit", "nan"], ["--ref-limit", "inf"], ["--ref-limit", "0"],
    ["--ref-limit", "-3"], ["--opt-limit", "x"], ["--workloads", ","], ["--workloads", ""],
    ["--workloads", "nonsense"], ["--workloads", "touch,,munmap"], ["--impl", "x"],
    ["--bogus"], ["--sizes"], ["positional"], ["--json", ""], ["--json", "/no/such/dir/x.json"],
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a) or "empty")
@pytest.mark.parametrize("quick", [False, True], ids=["", "quick"])
def test_a_bad_argument_is_one_line_exit_2_and_nothing_runs(
        argv: list[str], quick: bool, nothing_runs: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert main((["--quick"] if quick else []) + argv, out=out) == 2
    assert out.getvalue() == ""
    one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("quick", [False, True], ids=["", "quick"])
def test_a_bad_value_is_refused_even_where_quick_replaces_it(quick: bool) -> None:
    for argv in (["--sizes", "abc"], ["--repeat", "0"], ["--traces", "-1"],
                 ["--sparse-blocks", "0"]):
        with pytest.raises(SystemExit) as stop:
            parse_args((["--quick"] if quick else []) + argv)
        assert stop.value.code == 2


def _json_targets(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("not a directory\n")
    targets = {"fifo": fifo, "directory": tmp_path / "dir",
               "missing directory": tmp_path / "missing" / "out.json",
               "a file as directory": tmp_path / "file" / "out.json"}
    if Path("/dev/full").is_char_device():
        targets["/dev/full"] = Path("/dev/full")
    return targets


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_mode, p.lstat().st_size) for p in sorted(root.rglob("*"))}


def test_a_json_target_that_cannot_be_written_is_refused_before_the_run(
        tmp_path: Path, nothing_runs: None, capsys: pytest.CaptureFixture[str]) -> None:
    targets = _json_targets(tmp_path)
    before = _listing(tmp_path)
    for what, target in targets.items():
        assert main(["--quick", "--json", str(target)], out=io.StringIO()) == 2, what
        err = one_error_line(capsys.readouterr().err)
        assert "--json" in err, err
    assert _listing(tmp_path) == before


def test_a_good_run_then_writes_the_json(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text("old\n")
    out = io.StringIO()
    assert main(["--sizes", str(MIN_LOG2), "--workloads", "munmap", "--impl", "optimized",
                 "--no-memory", "--no-sparse", "--json", str(path)], out=out) == 0
    data = json.loads(path.read_text())
    assert data["sizes"] == [MIN_LOG2] and [r["workload"] for r in data["rows"]] == ["munmap"]
    assert data["errors"] == []
    assert "munmap" in out.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temporary left


def test_a_json_write_that_fails_at_the_end_is_one_line_and_leaves_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    import fuzz.safeio

    def full(path: Any, data: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fuzz.safeio, "write_atomic", full)
    path = tmp_path / "out.json"
    path.write_text("old\n")
    assert main(["--sizes", str(MIN_LOG2), "--workloads", "munmap", "--impl", "optimized",
                 "--no-memory", "--no-sparse", "--json", str(path)], out=io.StringIO()) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"{PROG}: error: cannot write ") and "No space" in err[-1]
    assert not any(line.startswith("Traceback") for line in err)
    assert path.read_text() == "old\n"


def test_parsed_values() -> None:
    args = parse_args([])
    assert args.sizes == [10, 12, 14, 16, 18, 20] and args.workloads == list(WORKLOAD_NAMES)
    assert args.sparse_blocks == [1024, 4096] and args.repeat == 1 and args.json is None
    args = parse_args(["--sizes", "12, 10,12", "--workloads", "munmap,touch",
                       "--ref-limit", "2.5", "--sparse-blocks", "8"])
    assert args.sizes == [10, 12] and args.workloads == ["munmap", "touch"]
    assert args.ref_limit == 2.5 and args.sparse_blocks == [8]
    quick = parse_args(["--quick", "--sizes", "14", "--repeat", "3"])
    assert quick.sizes == [10, 12] and quick.repeat == 1 and quick.traces == 2
    pair = parse_args(["--pair-only"])
    assert pair.workloads == [] and pair.no_memory and pair.no_sparse and not pair.no_pair


def test_help_is_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], out=io.StringIO()) == 0
    assert "--sizes" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--sizes", "-5"], ["--sparse-blocks", "x"],
                                  ["--quick", "--sizes", "abc"], ["--json", "/dev/full"]])
def test_from_the_command_line(argv: list[str]) -> None:
    done = run_cli("bench.scale", [*SMALL, *argv])
    assert done.returncode == 2
    assert done.stdout == ""
    one_error_line(done.stderr)
