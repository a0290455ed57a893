"""Bad inputs an audit found slipping through: each is one line, exit 2, and
nothing on disk changes (``tests/unit/test_cli.py`` holds the rest)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fuzz.cli import EXIT_BAD_INPUT, main
from fuzz.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "corpus" / "seeds" / "errno_precedence.trace"


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str], needle: str = "") -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT, (code, out, err)
    assert err.startswith("mirrorfuzz: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and needle in err, err
    return err


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its digest (directories as themselves)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv", [
    ["replay", ""],
    ["corpus", "compact", ""],
    ["corpus", "check", ""],
    ["promote", "somewhere", "--to", ""],
    ["promote", "somewhere", "--to="],
    ["minimize", "x.trace", "-o", ""],
    ["mutants", "--out", "", "--time", "1s"],
])
def test_an_empty_argument_is_not_the_working_directory(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.trace").write_text(SEED.read_text())
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    error_of(argv, capsys, "an empty value")
    assert tree(tmp_path) == before


def test_export_c_never_writes_c_over_its_trace(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.trace"
    source.write_text(SEED.read_text())
    before = source.read_bytes()
    error_of(["export-c", str(source), "-o", str(tmp_path / "." / "in.trace")], capsys,
             "the input file itself")
    assert source.read_bytes() == before


def test_export_c_of_a_process_never_forked_is_a_refused_handle(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "orphan.trace"
    source.write_text("# mirrorfuzz-trace 1\nopen P0 mirror\nmmap P0 0 4 rw private\n"
                      "exit P1\nread P1 0\n")
    assert main(["export-c", str(source), "-o", str(tmp_path / "t.c")]) == 0
    text = (tmp_path / "t.c").read_text()
    assert "line 3: exit P1 => EINVAL: a handle the model refuses" in text
    assert "line 4: read P1 0 => EINVAL: a handle the model refuses" in text


@pytest.mark.parametrize("saved", [
    {"path": 5, "linux": [], "status": "agree"},
    {"path": "x.trace", "linux": ["ok", 1], "status": "agree"},
    {"path": "x.trace", "linux": "abc", "status": "agree"},
    {"path": "x.trace", "linux": [], "status": {"a": 1}},
    {"path": "", "linux": [], "status": "agree"},
    [1, 2, 3],
])
def test_kernel_attribute_refuses_a_malformed_result_line(
        saved: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "linux-0.jsonl"
    results.write_text(json.dumps(saved) + "\n")
    error_of(["kernel", "attribute", str(results)], capsys, "not a kernel fuzz result line")


def test_kernel_attribute_refuses_an_empty_file(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "linux-0.jsonl"
    results.write_text("")
    error_of(["kernel", "attribute", str(results)], capsys, "no kernel fuzz result lines")


@pytest.mark.parametrize("argv, needle", [
    (["kernel", "fuzz", "--steps", "99999999999"], "--steps"),
    (["kernel", "fuzz", "--traces", "2000000"], "--traces"),
    (["kernel", "fuzz", "--batch", "0"], "--batch"),
    (["kernel", "fuzz", "--seed", "-1"], "--seed"),
    (["replay", "--linux", "--batch", "0", "x.trace"], "--batch"),
    (["replay", "--linux", "--batch", "-1", "x.trace"], "--batch"),
])
def test_linux_counts_are_bounded_before_anything_runs(
        argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    error_of(argv, capsys, needle)
    assert list(tmp_path.iterdir()) == []


def test_compare_checks_out_before_any_driver_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    (out / "compare.html").mkdir(parents=True)
    before = tree(out)
    error_of(["compare", "--out", str(out), "--time", "1s"], capsys, "compare.html")
    assert tree(out) == before
    error_of(["compare", "--out", "/dev/full", "--time", "1s"], capsys, "not a directory")


@pytest.mark.parametrize("flag", [["--kasan"], ["--race-seconds", "5"]])
def test_replay_linux_options_need_linux(flag: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    error_of(["replay", *flag, str(SEED)], capsys, f"{flag[0]} needs --linux")


def test_replay_linux_with_nothing_to_run_says_why(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "threads.trace"  # a thread stepped by hand: not exportable
    trace.write_text((ROOT / "corpus" / "seeds" /
                      "fault_waits_on_migration_entry_holding_mmap_lock.trace").read_text())
    err = error_of(["replay", "--linux", str(trace)], capsys)
    assert "threads.trace" in err


def test_a_driver_that_exits_on_import_is_a_load_error(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    driver = tmp_path / "quits.py"
    driver.write_text("raise SystemExit(0)\n")
    error_of(["replay", "--driver", str(driver), str(SEED)], capsys, "SystemExit")


def test_write_all_atomic_writes_all_or_none(tmp_path: Path) -> None:
    from fuzz.safeio import write_all_atomic

    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").mkdir()  # cannot be replaced by a file
    with pytest.raises(BadInput):  # (WriteError: not a regular file)
        write_all_atomic([(tmp_path / "a.txt", "new a"), (tmp_path / "b.txt", "new b")])
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temp left
    (tmp_path / "c").mkdir()
    with pytest.raises(OSError):  # a directory that does not exist
        write_all_atomic([(tmp_path / "a.txt", "new a"), (tmp_path / "c" / "nope" / "d", "d")])
    assert (tmp_path / "a.txt").read_text() == "old a" and not list((tmp_path / "c").iterdir())
    write_all_atomic([(tmp_path / "a.txt", "new a"), (tmp_path / "c" / "d.txt", "d")])
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "c" / "d.txt").exists()


@pytest.mark.parametrize("argv", [["--help"], ["replay", "--help"],
                                  ["replay", str(SEED)]])
def test_output_that_cannot_be_written_is_an_error_not_silence(argv: list[str]) -> None:
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "fuzz.cli", *argv], stdout=full,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert done.stderr.count("\n") == 1 and "No space left" in done.stderr
    closed = subprocess.run([sys.executable, "-m", "fuzz.cli", *argv], stdout=None,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120,
                            preexec_fn=lambda: __import__("os").close(1))
    assert closed.returncode == EXIT_BAD_INPUT and "standard output is closed" in closed.stderr
