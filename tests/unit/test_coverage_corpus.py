"""``bench.coverage_corpus`` on a couple of traces prints well-formed figures.

Quick mode (``--limit 2``): the output's shape and the consistency of the
figures are checked, never a particular percentage.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from bench.coverage_corpus import GROUPS, ROOT, _ranges, main

SEEDS = ROOT / "corpus" / "seeds"
PCT = r"(\d+\.\d)%"
ROW = re.compile(rf"^(\S+)\s+(\d+)\s+(\d+)\s+{PCT}\s+(\d+)\s+(\d+)\s+{PCT}$")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    path = tmp_path_factory.mktemp("cov") / "quick.json"
    out = io.StringIO()
    assert main(["--branch", "--limit", "2", "--least", "3", "--json", str(path),
                 "--missing", "model/optimized/mmu_notifier.py", str(SEEDS)], out=out) == 0
    return out.getvalue(), json.loads(path.read_text())


def rows(text: str, header: str) -> list[re.Match[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [header])
    found = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        m = ROW.match(line)
        assert m is not None, f"malformed row: {line!r}"
        found.append(m)
    return found


def test_quick_prints_line_and_branch_figures_per_group(
        quick: tuple[str, dict[str, object]]) -> None:
    text, _ = quick
    assert text.startswith("line and branch coverage of model/ by 2 traces")
    assert "(0 with a finding or mismatch)" in text
    groups = rows(text, "group")
    assert [m.group(1) for m in groups] == [g + "/" for g in GROUPS]
    for m in groups:
        stmts, miss, line_pct = int(m.group(2)), int(m.group(3)), float(m.group(4))
        branches, bmiss, branch_pct = int(m.group(5)), int(m.group(6)), float(m.group(7))
        assert 0 < miss < stmts and 0 < bmiss < branches
        assert line_pct == pytest.approx(100 * (stmts - miss) / stmts, abs=0.06)
        assert branch_pct == pytest.approx(100 * (branches - bmiss) / branches, abs=0.06)
    total, ref, opt = (int(m.group(2)) for m in groups)
    assert total > ref + opt  # model/*.py besides the two implementations


def test_quick_lists_the_least_covered_files_in_order(
        quick: tuple[str, dict[str, object]]) -> None:
    text, data = quick
    least = rows(text, "file")
    assert len(least) == 3
    assert all(m.group(1).startswith("model/") and m.group(1).endswith(".py") for m in least)
    pcts = [float(m.group(4)) for m in least]
    assert pcts == sorted(pcts)
    files = data["files"]
    assert isinstance(files, dict)
    assert min(100 * (f["statements"] - f["missing"]) / f["statements"]
               for f in files.values() if f["statements"]) == pytest.approx(pcts[0], abs=0.06)
    assert re.search(r"^missing in model/optimized/mmu_notifier\.py: lines [-\d ]+$", text,
                     re.MULTILINE)
    assert re.search(r"^missing in model/optimized/mmu_notifier\.py: arcs ", text, re.MULTILINE)


def test_quick_json_matches_the_table(quick: tuple[str, dict[str, object]]) -> None:
    text, data = quick
    assert data["traces"] == 2 and data["dirty"] == 0 and data["branch"] is True
    groups = data["groups"]
    assert isinstance(groups, dict)
    for m in rows(text, "group"):
        g = groups[m.group(1).rstrip("/")]
        assert (g["statements"], g["missing"]) == (int(m.group(2)), int(m.group(3)))
        assert g["line_pct"] == pytest.approx(float(m.group(4)), abs=0.06)
    files = data["files"]
    assert isinstance(files, dict)
    # every module of model/ is listed, imported by the traces or not
    assert set(files) == {p.relative_to(ROOT).as_posix() for p in (ROOT / "model").rglob("*.py")}


def test_more_traces_cover_at_least_as_much(quick: tuple[str, dict[str, object]]) -> None:
    _, small = quick
    out = io.StringIO()
    assert main(["--limit", "4", str(SEEDS)], out=out) == 0
    text = out.getvalue()
    assert text.startswith("line coverage of model/ by 4 traces")
    line = next(li for li in text.splitlines() if li.startswith("model/ "))
    parts = line.split()
    assert len(parts) == 4  # no branch columns without --branch
    groups = small["groups"]
    assert isinstance(groups, dict)
    assert int(parts[2]) <= groups["model"]["missing"]


def test_bad_path_is_refused() -> None:
    assert main(["no/such/dir"], out=io.StringIO()) == 2


def test_ranges() -> None:
    assert _ranges([1, 2, 3, 7, 9, 10]) == "1-3 7 9-10"
    assert _ranges([]) == "-"
    assert _ranges([5]) == "5"


def test_seeds_exist() -> None:
    assert len(sorted(Path(SEEDS).glob("*.trace"))) >= 4
