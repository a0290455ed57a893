"""The layering rules of ARCHITECTURE.md, checked on the import statements.

* ``model`` imports no fuzzing code (nothing from ``fuzz`` or ``tests``);
* ``model/optimized`` imports only the shared vocabulary from ``model``
  (``model.ops``, ``model.observation``, ``model.interface``, ``model.bugs``), never the
  reference logic, and the reference never imports the optimized code;
* nothing imports ``tests``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = {"model", "model.ops", "model.observation", "model.interface", "model.bugs"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", python_files("model"), ids=lambda p: str(p.relative_to(ROOT)))
def test_model_imports_no_fuzzing_code(path: Path) -> None:
    fuzzing = {"fuzz", "tests", "hypothesis", "atheris"}
    bad = {m for m in imports(path) if m.split(".")[0] in fuzzing}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", python_files("model/optimized"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_optimized_imports_only_the_vocabulary(path: Path) -> None:
    bad = {m for m in imports(path)
           if m.startswith("model") and m not in VOCABULARY and not m.startswith("model.optimized")}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", python_files("model/reference"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_reference_never_imports_optimized(path: Path) -> None:
    bad = {m for m in imports(path) if m.startswith("model.optimized")}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", python_files("model") + python_files("fuzz"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_tests(path: Path) -> None:
    assert not {m for m in imports(path) if m.split(".")[0] == "tests"}
