"""``mirrorfuzz mutants`` (fuzz/mutants_table.py): argument errors, and short real runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.cli import main
from fuzz.mutants_table import Hunt, atheris_available, render
from fuzz.trace import load_trace

EASY = "invalidate_range_end_off_by_one"
"""Found by both engines within a few examples (seed 0: the 9th Hypothesis example)."""
"""A mutant both engines find within a few examples."""


@pytest.mark.parametrize("argv", [
    ["--time", "soon"],
    ["--time", "0"],
    ["--seed", "-1"],
    ["--seed", "x"],
    ["--engine", "afl"],
    ["--mutant", "no_such_bug"],
])
def test_bad_arguments_give_exit_2_and_one_line(
        argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["mutants", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mirrorfuzz: error: "), err
    assert not list(tmp_path.iterdir())  # nothing ran


def test_markdown_table_has_one_row_per_hunt() -> None:
    hunts = [Hunt("a", "hypothesis", found=True, cpu_to_find=1.25, execs=3, steps=40,
                  signature="divergence/result/write"),
             Hunt("b", "atheris", execs=7, cpu=60.0)]
    lines = render(hunts, markdown=True).splitlines()
    assert lines[0].startswith("| mutant | engine | found |")
    assert lines[1].startswith("| --- |")
    assert lines[2] == "| a | hypothesis | yes | 1.2 | 3 | 40 | - | divergence/result/write |"
    assert lines[3] == "| b | atheris | no | >60 | 7 | - | - | - |"


def _run_one(engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["mutants", "--engine", engine, "--mutant", EASY, "--time", "30",
                 "--seed", "0", "--out", str(tmp_path), "--markdown"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith(f"| {EASY} ")]
    assert len(rows) == 1, out
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:3] == [engine, "yes"], rows[0]
    repro = load_trace(str(tmp_path / f"{EASY}.{engine}.trace"))
    assert repro.header("signature") == cells[7]
    assert int(cells[6]) == len(repro.steps) <= 10


def test_a_short_hypothesis_run_finds_an_easy_mutant(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run_one("hypothesis", tmp_path, capsys)


@pytest.mark.skipif(not atheris_available(), reason="atheris is not installed")
def test_a_short_atheris_run_finds_an_easy_mutant(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run_one("atheris", tmp_path, capsys)
