"""``mirrorfuzz compare`` (fuzz/compare.py): per-driver workloads, both
contracts from one run, costs from the reference, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz import compare, plugins
from fuzz.cli import main
from fuzz.edit import op_of
from model.decl import SCHEMA_BY_CLASS
from model.ops import Open

TEST_HMM = compare.EXAMPLES / "test_hmm.py"


def test_workloads_keep_only_the_drivers_device_ops() -> None:
    kind = plugins.load_driver(TEST_HMM).kind
    try:
        ops = [op_of(line) for i in range(20) for line in compare.workload(kind, 3, i).steps]
        kinds = {op.kind for op in ops if isinstance(op, Open)}
        devices = {SCHEMA_BY_CLASS[type(op)].device for op in ops if op is not None} - {None}
        assert kinds <= {kind} and devices <= {kind}
        assert kind in devices  # the driver's own ops are there
        again = [op_of(line) for i in range(20) for line in compare.workload(kind, 3, i).steps]
        assert again == ops  # the same seed gives the same workloads
    finally:
        plugins.unload(kind)


def test_the_shipped_test_hmm_breaks_the_hmm_contract(tmp_path: Path) -> None:
    run = compare.compare_driver(TEST_HMM, 2.0, 0, ["test_hmm_migrate_maps_without_read_retry"])
    hmm = run.cells["hmm"]
    assert "violation/no_use_after_free/device" in hmm.findings
    assert run.costs["callbacks"] > 0 and run.costs["device_faults"] > 0
    compare.write_out(tmp_path, [run], 0)
    data = json.loads((tmp_path / "compare.json").read_text())
    assert data["drivers"][0]["kind"] == "test_hmm"
    assert "hmm_migrate" in (tmp_path / "compare.html").read_text()
    assert any((tmp_path / "findings").glob("test_hmm-hmm-*.trace"))


def test_the_fixed_test_hmm_has_no_finding_on_its_seeds() -> None:
    run = compare.compare_driver(TEST_HMM, 0.5, 0, [])
    assert run.traces >= 1
    assert all(not cell.findings for cell in run.cells.values())


@pytest.mark.parametrize("argv", [
    ["compare", "--driver", str(TEST_HMM), "--mutant", "no_such_bug"],
    ["compare", "--driver", str(TEST_HMM), "--time", "-3"],
    ["compare", "--driver", "/nonexistent.py"],
    ["compare", "--contract", "posix"],
])
def test_bad_arguments_are_one_line_errors(argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mirrorfuzz: error: ")
