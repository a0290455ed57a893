"""``bench.scale --quick`` runs and prints a well-formed report.

No timing is ever asserted: only the shape of the output.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from bench.scale import DASH, WORKLOAD_NAMES, main

NUMBER = r"(?:[\d,]+(?:\.\d+)?|" + DASH + ")"
ROW = re.compile(rf"^(\S+)\s+2\^(\d+)\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})$")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    out = io.StringIO()
    assert main(["--quick", "--json", str(path)], out=out) == 0
    return out.getvalue(), json.loads(Path(path).read_text())


def table_rows(text: str) -> list[re.Match[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        m = ROW.match(line)
        assert m is not None, f"malformed table row: {line!r}"
        rows.append(m)
    return rows


def test_quick_prints_a_row_per_workload_and_size(quick: tuple[str, dict[str, object]]) -> None:
    text, _ = quick
    header = next(line for line in text.splitlines() if line.startswith("workload"))
    assert header.split() == ["workload", "pages", "ref", "ns/page", "opt", "ns/page", "ratio"]
    rows = table_rows(text)
    assert [(m.group(1), int(m.group(2))) for m in rows] == [
        (w, s) for w in WORKLOAD_NAMES for s in (10, 12)]
    for m in rows:
        ref, opt, ratio = m.group(3), m.group(4), m.group(5)
        if ref != DASH and opt != DASH:  # the quick sizes are never capped
            assert ratio != DASH


def test_quick_prints_targets_memory_sparse_and_pair(
        quick: tuple[str, dict[str, object]]) -> None:
    text, _ = quick
    assert "target: >= 50x faster" in text
    assert "flat within 2x" in text
    assert "bytes per resident page" in text
    assert re.search(r"B/touched page", text)
    assert re.search(r"observe_every=0 .* slowdown\s+[\d.]+x\s+(PASS|MISS)", text)
    assert re.search(r"observe_every=8 .* slowdown\s+[\d.]+x\s+(PASS|MISS)", text)
    marks = re.findall(r"\b(PASS|MISS)\b", text)
    assert marks


def test_quick_json_matches_the_table(quick: tuple[str, dict[str, object]]) -> None:
    text, data = quick
    rows = data["rows"]
    assert isinstance(rows, list)
    assert len(rows) == len(table_rows(text)) == 2 * len(WORKLOAD_NAMES)
    memory = data["bytes_per_resident_page"]
    assert isinstance(memory, dict)
    assert set(memory) == {"10", "12"}
    assert data["errors"] == []


def test_single_implementation_leaves_the_other_column_empty() -> None:
    out = io.StringIO()
    code = main(["--quick", "--impl", "reference", "--workloads", "mprotect",
                 "--no-sparse", "--no-memory"], out=out)
    assert code == 0
    rows = table_rows(out.getvalue())
    assert [m.group(1) for m in rows] == ["mprotect", "mprotect"]
    assert all(m.group(4) == DASH and m.group(5) == DASH for m in rows)


def test_unknown_workload_is_refused() -> None:
    assert main(["--quick", "--workloads", "nonsense"], out=io.StringIO()) == 2
