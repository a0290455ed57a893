"""The ``mirrorfuzz`` command: exit codes and one-line errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.cli import EXIT_BAD_INPUT, EXIT_FOUND, EXIT_OK, main

GOOD = "# mirrorfuzz-trace 1\nmmap P0 0 4 rw private => ok\nwrite P0 1 5 => ok\nread P0 1 => 5\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_clean_trace_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.trace"
    path.write_text(GOOD)
    code, out, err = run(["replay", "--impl", "reference", str(path)], capsys)
    assert (code, err) == (EXIT_OK, "")
    assert "read P0 1 => 5" in out


def test_mismatch_exits_one_and_marks_the_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.trace"
    path.write_text(GOOD.replace("=> 5", "=> 6"))
    code, out, _ = run(["replay", "--impl", "reference", str(path)], capsys)
    assert code == EXIT_FOUND
    assert "!!    3  read P0 1 => 5    (expected 6)" in out


@pytest.mark.parametrize("text, needle", [
    ("# mirrorfuzz-trace 1\nmmap P0 0 4 rw\n", ":2:"),
    ("# not a trace\n", ":1:"),
    ("# mirrorfuzz-trace 1\nfrobnicate P0\n", "frobnicate"),
])
def test_malformed_trace_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           text: str, needle: str) -> None:
    path = tmp_path / "malformed.trace"
    path.write_text(text)
    code, out, err = run(["replay", "--impl", "reference", str(path)], capsys)
    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_missing_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["replay", str(tmp_path / "nope.trace")], capsys)
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1 and "no such file" in err


def test_undecodable_file_is_one_line_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "binary.trace"
    path.write_bytes(b"# mirrorfuzz-trace 1\n\xff\xfe\x00garbage\n")
    code, _, err = run(["replay", "--impl", "reference", str(path)], capsys)
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_argument_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--observe-every", "-3", "x.trace"])
    assert exc.value.code == EXIT_BAD_INPUT
