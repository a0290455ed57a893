"""The layering rules of ARCHITECTURE.md, checked on the import statements.

* ``model`` imports no fuzzing code (nothing from ``fuzz`` or ``tests``);
* ``model/optimized`` imports only the shared vocabulary from ``model``
  (``model.ops``, ``model.observation``, ``model.interface``), never the
  reference logic, and the reference never imports the optimized code;
* nothing imports ``tests``;
* the reference's core (``model/reference`` outside ``drivers/``) names no
  device kind in its code and reaches a driver only through its record:
  only ``kernel.py`` imports ``model.reference.drivers`` (its registry),
  and no core module imports a driver module.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = {"model", "model.ops", "model.observation", "model.interface"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolved_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set(imports(path))
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = ".".join(package[:len(package) - node.level + 1])
            if node.module:
                found.add(f"{base}.{node.module}")
            else:
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def code_tokens(path: Path) -> str:
    """The module's code without comments and docstrings."""
    source = path.read_text(encoding="utf-8")
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            docstrings.add(first.lineno)
    return " ".join(tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type != tokenize.COMMENT
                    and not (tok.type == tokenize.STRING and tok.start[0] in docstrings))


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


DRIVERS = "model.reference.drivers"
CORE = [p for p in python_files("model/reference") if "drivers" not in p.relative_to(ROOT).parts]
DEVICE_KIND = re.compile(r"""['"](?:mirror|userptr|pin)['"]|\w*(?:mirror|userptr)\w*""")


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_reference_core_names_no_device_kind(path: Path) -> None:
    found = DEVICE_KIND.findall(code_tokens(path))
    assert not found, f"{path} names device kinds in its code: {sorted(set(found))}"


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_reference_core_reaches_drivers_only_through_the_registry(path: Path) -> None:
    allowed = {DRIVERS} if path.name == "kernel.py" else set()
    bad = {m for m in resolved_imports(path)
           if (m == DRIVERS or m.startswith(DRIVERS + ".")) and m not in allowed}
    assert not bad, f"{path} imports {bad}"


def test_the_layering_checks_see_what_they_look_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""The mirror."""\n# a "pin" device\nif dev.kind == "userptr":\n'
                      '    mirror_table = 1\nfrom .drivers import mirror\n')
    assert DEVICE_KIND.findall(code_tokens(sample)) == ['"userptr"', "mirror_table", "mirror"]
    kernel = ROOT / "model" / "reference" / "kernel.py"
    assert DRIVERS in resolved_imports(kernel)
