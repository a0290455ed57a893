"""``bench.coverage_corpus``'s command line: every bad input (an argument, a
trace file, a driver a trace needs) is one line on stderr and exit 2, found
before the coverage run starts, and nothing is written."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench import coverage_corpus
from bench.coverage_corpus import PROG, ROOT, main
from fuzz.safeio import MAX_TRACE_BYTES
from tests.commands import error_line, never_runs, run_cli

SEEDS = ROOT / "corpus" / "seeds"
GOOD = "# mirrorfuzz-trace 1\nmmap P0 0 8 rw private => ok\nwrite P0 0 1 => ok\n"
KIND = "bench_test_no_such_driver"




@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting the coverage run fails the test: bad input is found first."""
    never_runs(monkeypatch, coverage_corpus, "measure")


def one_error_line(err: str) -> str:
    return error_line(err, PROG)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    out = io.StringIO()
    assert main(argv, out=out) == 2
    assert out.getvalue() == ""
    return one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv", [
    ["--least", "-1"], ["--limit", "-1"], ["--least", "x"], ["--limit", "1.5"], ["--bogus"],
    ["--json", ""], ["--json", "/no/such/dir/out.json"], ["--missing", ""],
    ["--missing", "no/such/module"], ["--driver", "/no/such/driver.py"], [""],
    ["no/such/dir"]], ids=lambda a: " ".join(a) or "empty")
def test_a_bad_argument_is_one_line_and_exit_2(argv: list[str], nothing_runs: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    refused([*argv, str(SEEDS)] if argv[0].startswith("--") else argv, capsys)


def _bad_traces(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name: (a trace file, what its error must say)."""
    made: dict[str, tuple[Path, str]] = {}

    def trace(name: str, data: bytes, says: str) -> None:
        path = tmp_path / name
        path.write_bytes(data)
        made[name] = (path, says)

    trace("malformed.trace", b"garbage\n", "malformed.trace:1:")
    trace("binary.trace", bytes(range(256)) * 4, "not UTF-8")
    trace("bad-op.trace", GOOD.encode() + b"frobnicate P0 1 => ok\n", "bad-op.trace:4:")
    trace("needs-driver.trace",
          f"# mirrorfuzz-trace 1\n# driver: {KIND}\n{GOOD.split(chr(10), 1)[1]}".encode(),
          f"needs driver {KIND!r}")
    trace("driver-ops.trace",
          f"# mirrorfuzz-trace 1\n# driver: {KIND}\nopen P0 {KIND} => D0\n".encode(),
          f"needs driver {KIND!r}")
    big = tmp_path / "big.trace"
    with open(big, "wb") as f:
        f.write(b"# mirrorfuzz-trace 1\n")
        f.truncate(MAX_TRACE_BYTES + 1)
    made["big.trace"] = (big, "too large")
    return made


def test_a_bad_trace_is_one_line_naming_it_before_the_run(
        tmp_path: Path, nothing_runs: None, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.trace"
    good.write_text(GOOD)
    for name, (path, says) in _bad_traces(tmp_path).items():
        for argv in ([str(path)], [str(good), str(path)]):
            err = refused(argv, capsys)
            assert str(path) in err and says in err, (name, err)


def test_a_bad_trace_in_a_directory_is_refused_too(
        tmp_path: Path, nothing_runs: None, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.trace").write_text(GOOD)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.trace").write_bytes(b"\xff\xfe")
    err = refused([str(tmp_path)], capsys)
    assert str(tmp_path / "sub" / "b.trace") in err and "not UTF-8" in err


def test_a_trace_past_the_limit_is_not_read(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.trace").write_text(GOOD)
    (tmp_path / "b.trace").write_bytes(b"\xff\xfe")
    ran: list[list[Path]] = []

    def measure(files: list[Path], branch: bool, drivers: Any = ()) -> Any:
        ran.append(list(files))
        raise SystemExit(0)

    monkeypatch.setattr(coverage_corpus, "measure", measure)
    with pytest.raises(SystemExit):
        main(["--limit", "1", str(tmp_path)], out=io.StringIO())
    assert ran == [[tmp_path / "a.trace"]]


@pytest.mark.parametrize("kind", ["fifo", "device", "empty directory"])
def test_a_path_that_is_not_a_regular_file_says_what_it_is(
        kind: str, tmp_path: Path, nothing_runs: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "fifo":
        path = tmp_path / "f.trace"
        os.mkfifo(path)
        says = "a FIFO, not a trace file"
    elif kind == "device":
        path = Path("/dev/null")
        if not path.is_char_device():
            pytest.skip("no /dev/null")
        says = "a character device, not a trace file"
    else:
        path = tmp_path / "empty"
        path.mkdir()
        says = "no *.trace files"
    err = refused([str(path)], capsys)
    assert says in err and "no such file" not in err


def test_a_fifo_trace_in_a_directory_never_blocks(tmp_path: Path) -> None:
    (tmp_path / "a.trace").write_text(GOOD)
    os.mkfifo(tmp_path / "b.trace")
    json_out = tmp_path / "out.json"
    done = run_cli("bench.coverage_corpus", ["--json", str(json_out), str(tmp_path)])
    assert done.returncode == 2 and done.stdout == ""
    err = one_error_line(done.stderr)
    assert str(tmp_path / "b.trace") in err and "not a regular file (a FIFO)" in err
    assert not json_out.exists()


def test_a_json_target_that_cannot_be_written_is_refused_before_the_run(
        tmp_path: Path, nothing_runs: None, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    targets = [fifo, tmp_path / "dir", tmp_path / "missing" / "out.json"]
    if Path("/dev/full").is_char_device():
        targets.append(Path("/dev/full"))
    before = sorted(os.listdir(tmp_path))
    for target in targets:
        err = refused(["--json", str(target), str(SEEDS)], capsys)
        assert "--json" in err
    assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(tmp_path / "dir") == []


def test_a_good_run_writes_the_json(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    out = io.StringIO()
    assert main(["--limit", "1", "--least", "1", "--json", str(path), str(SEEDS)], out=out) == 0
    assert out.getvalue().startswith("line coverage of model/ by 1 traces")
    assert json.loads(path.read_text())["traces"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_driver_trace_runs_with_its_driver_loaded(tmp_path: Path) -> None:
    """As ``mirrorfuzz replay``: ``--driver FILE`` loads the plug-in a trace's
    ``# driver:`` header names (in the measuring interpreter too)."""
    traces = ROOT / "examples" / "drivers" / "test_hmm"
    argv = ["--limit", "1", "--least", "1", str(traces)]
    without = run_cli("bench.coverage_corpus", argv,
                      env={k: v for k, v in os.environ.items() if k != "MIRRORFUZZ_DRIVERS"})
    assert without.returncode == 2
    assert "needs driver 'test_hmm' (--driver FILE)" in one_error_line(without.stderr)
    driver = ROOT / "examples" / "drivers" / "test_hmm.py"
    done = run_cli("bench.coverage_corpus", ["--driver", str(driver), *argv])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("line coverage of model/ by 1 traces")
    assert "(0 with a finding or mismatch)" in done.stdout


@pytest.mark.parametrize("argv", [["--least", "x"], ["--limit", "-1"],
                                  ["--json", "/dev/full"]])
def test_from_the_command_line(argv: list[str]) -> None:
    done = run_cli("bench.coverage_corpus", ["--limit", "1", *argv, str(SEEDS)])
    assert done.returncode == 2 and done.stdout == ""
    one_error_line(done.stderr)
