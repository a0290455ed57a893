"""The ``mirrorfuzz`` command: exit codes and one-line errors on bad input."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from fuzz import cli
from fuzz.cli import EXIT_BAD_INPUT, EXIT_FOUND, EXIT_INTERNAL, EXIT_OK, main

ROOT = Path(__file__).resolve().parents[2]
MUTANT = "free_at_invalidate_start"

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
    code, out, err = run(["replay", "--observe-every", "-3", "x.trace"], capsys)
    assert code == EXIT_BAD_INPUT
    assert err.startswith("mirrorfuzz: error: ") and err.count("\n") == 1 and out == ""


def one_line_error(code: int, err: str, needle: str = "") -> None:
    assert code == EXIT_BAD_INPUT, err
    assert err.startswith("mirrorfuzz: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and needle in err, err


# ------------------------------------------------------------ error style


@pytest.mark.parametrize("argv", [
    ["replay", "--engine", "x", "a.trace"],
    ["replay", "--impl", "nope", "a.trace"],
    ["replay", "--budget", "many", "a.trace"],
    ["replay", "--observe-every", "9" * 400, "a.trace"],
    ["minimize"],
    ["campaign", "--engine", "nope"],
    ["frobnicate"],
    [],
])
def test_argparse_errors_are_one_line_exit_two(argv: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    one_line_error(code, err)
    assert "usage:" not in err and out == ""


def test_internal_error_exits_three_not_one(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: object) -> int:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli, "cmd_corpus_check", broken)
    code, _, err = run(["corpus", "check", str(ROOT / "corpus")], capsys)
    assert code == EXIT_INTERNAL != EXIT_FOUND
    assert err.startswith("mirrorfuzz: internal error: ZeroDivisionError: oops")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["replay", "minimize"])
def test_unknown_mutant_is_an_error(tmp_path: Path, command: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.trace"
    path.write_text(GOOD)
    code, out, err = run([command, "--mutant", "typo", str(path)], capsys)
    one_line_error(code, err, "typo")
    assert "unknown mutant" in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.trace"]


# ----------------------------------------------- files that are not files


def test_replay_fifo_does_not_hang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "x.trace"
    os.mkfifo(fifo)
    code, _, err = run(["replay", str(fifo)], capsys)
    one_line_error(code, err, "FIFO")
    code, _, err = run(["replay", str(tmp_path)], capsys)  # the FIFO found in a directory
    one_line_error(code, err, "FIFO")
    assert "no such file" not in err


def test_corpus_check_fifo_does_not_hang(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "seeds").mkdir()
    os.mkfifo(tmp_path / "seeds" / "x.trace")
    code, out, _ = run(["corpus", "check", str(tmp_path)], capsys)
    assert code == EXIT_FOUND and "not a regular file (a FIFO)" in out


def test_replay_device_says_what_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["replay", "/dev/null"], capsys)
    one_line_error(code, err, "a character device")
    assert "no such file" not in err


def test_minimize_directory_and_corpus_check_file_say_what_they_are(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["minimize", "--mutant", MUTANT, str(tmp_path)], capsys)
    one_line_error(code, err, "a directory, not a trace file")
    path = tmp_path / "good.trace"
    path.write_text(GOOD)
    code, _, err = run(["corpus", "check", str(path)], capsys)
    one_line_error(code, err, "a regular file, not a directory")


def test_corpus_check_reports_unlistable_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import fuzz.corpus

    (tmp_path / "seeds").mkdir()
    real_walk = os.walk

    def walk(top: str, onerror: object = None) -> object:
        assert callable(onerror)
        onerror(PermissionError(13, "Permission denied", str(Path(top) / "seeds")))
        return real_walk(top)

    monkeypatch.setattr(fuzz.corpus.os, "walk", walk)
    code, out, _ = run(["corpus", "check", str(tmp_path)], capsys)
    assert code == EXIT_FOUND and "cannot list this directory: Permission denied" in out
    assert "corpus ok" not in out


# ------------------------------------------------- output paths: never clobbered

REPRO = ("# mirrorfuzz-trace 1\nmmap P0 0 1 rw private\nwrite P0 0 0\nread P0 0\n")


def _device(path: Path) -> None:
    if os.geteuid() == 0:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a null device in tmp
    else:
        os.mkfifo(path)


def test_minimize_never_replaces_a_device_or_fifo(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "t.trace"
    source.write_text(REPRO)
    for name, make in (("dev", _device), ("fifo", os.mkfifo), ("dir", os.mkdir)):
        target = tmp_path / name
        make(target)
        before = os.lstat(target)
        code, out, err = run(["minimize", "--mutant", MUTANT, "-o", str(target),
                              str(source)], capsys)
        one_line_error(code, err, "refusing to write over it")
        after = os.lstat(target)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


def test_write_atomic_refuses_non_regular_and_follows_symlinks(tmp_path: Path) -> None:
    from fuzz.errors import BadInput
    from fuzz.safeio import write_atomic

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match="a FIFO"):
        write_atomic(fifo, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(BadInput, match="a FIFO"):
        write_atomic(link, "x")
    real = tmp_path / "real"
    real.write_text("old")
    link2 = tmp_path / "link2"
    link2.symlink_to(real)
    write_atomic(link2, "new")
    assert link2.is_symlink() and real.read_text() == "new"


def test_long_output_name_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "t.trace"
    source.write_text(REPRO)
    code, _, err = run(["minimize", "--mutant", MUTANT, "-o", str(tmp_path / ("x" * 300)),
                        str(source)], capsys)
    one_line_error(code, err, "longer than 255 bytes")


# -------------------------------------------- parse and print agree (CR)


@pytest.mark.parametrize("text", [
    "# mirrorfuzz-trace 1\n# title: a\rb\nmmap P0 0 1 rw private\nwrite P0 0 0\n",
    "# mirrorfuzz-trace 1\n# a comment\r\r\nmmap P0 0 1 rw private\nwrite P0 0 0\n",
    "# mirrorfuzz-trace 1\n\n# c\rd\nmmap P0 0 1 rw private\nwrite P0 0 0\n",
])
def test_carriage_return_inside_a_line_is_malformed_for_every_command(
        tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.trace"
    path.write_bytes(text.encode())
    code, _, err = run(["replay", str(path)], capsys)
    one_line_error(code, err, "carriage return")
    code, _, err = run(["minimize", "--mutant", MUTANT, str(path)], capsys)
    one_line_error(code, err, "carriage return")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.trace"]


def test_crlf_line_ends_still_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.trace"
    path.write_bytes(GOOD.replace("\n", "\r\n").encode())
    code, _, _ = run(["replay", "--impl", "reference", str(path)], capsys)
    assert code == EXIT_OK


# ---------------------------------------------------------------- README


def test_readme_replay_examples_name_existing_files() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"mirrorfuzz replay (?:--\S+ )*(corpus/\S+\.trace)", text)
    assert named
    for name in named:
        assert (ROOT / name).is_file(), name


# ------------------------------------------------------- the safe I/O helpers


@pytest.mark.parametrize("text, needle", [
    ('{"a": NaN}', "NaN"),
    ('{"a": Infinity}', "Infinity"),
    ('{"a": -Infinity}', "Infinity"),
    ('{"a": 1e400}', "out of range"),
    ("[" * 100000, "nested more than"),
    ('{"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}', "nested"),
    ('{"a": 1', "Expecting"),
    (b'{"a": "\xff"}', "not UTF-8"),
])
def test_strict_json_rejects_what_json_does_not_allow(text: str | bytes, needle: str) -> None:
    from fuzz.safeio import loads_json

    with pytest.raises(ValueError, match=needle):
        loads_json(text)
    assert loads_json('{"a": [1, 2.5, "[{"]}') == {"a": [1, 2.5, "[{"]}


def test_safe_read_takes_only_bounded_regular_files(tmp_path: Path) -> None:
    from fuzz.safeio import ReadError, read_bytes

    (tmp_path / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(2000)
    for name, needle in (("zero", "a character device"), ("fifo", "a FIFO"),
                         ("dangling", "a dangling symbolic link"), ("missing", "no such file"),
                         (".", "a directory")):
        with pytest.raises(ReadError, match=needle):
            read_bytes(tmp_path / name)
    with pytest.raises(ReadError, match="too large"):
        read_bytes(big, limit=1000)
    assert read_bytes(big, limit=2000) == bytes(2000)
