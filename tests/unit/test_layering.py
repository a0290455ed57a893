"""The layering rules of ARCHITECTURE.md, checked on the import statements.

* ``model`` imports no fuzzing code (nothing from ``fuzz`` or ``tests``);
* ``model/optimized`` imports only the shared vocabulary from ``model``
  (``model.ops``, ``model.observation``, ``model.interface``, ``model.bugs``,
  ``model.driver``), never the reference logic, and the reference never
  imports the optimized code;
* nothing imports ``tests``;
* the reference's core (``model/reference`` outside ``drivers/``) names no
  device kind in its code and reaches a driver only through its record:
  only ``kernel.py`` imports ``model.reference.drivers`` (its registry),
  and no core module imports a driver module; the same holds for
  ``model/optimized`` and ``model.optimized.drivers``.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = {"model", "model.ops", "model.observation", "model.interface", "model.bugs",
              "model.driver"}


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


# ---------------------------------------------------------------- model/optimized

OPTIMIZED = ROOT / "model" / "optimized"
FACADE = {"model.optimized", "model.optimized.kernel"}
"""The package's ``__init__`` and the ``Implementation`` adapter: the top of
the optimized implementation, imported by nothing inside it."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def optimized_imports(path: Path) -> set[str]:
    """The model.optimized modules ``path`` imports anywhere (top level,
    under TYPE_CHECKING or inside a function); ``from model.optimized import
    x`` counts as importing ``model.optimized.x`` when x is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("model.optimized"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("model.optimized"):
            subs = [f"{node.module}.{a.name}" for a in node.names
                    if (OPTIMIZED / f"{a.name}.py").is_file() and node.module == "model.optimized"]
            found.update(subs or [node.module])
    return found


def optimized_graph() -> dict[str, set[str]]:
    return {_module_name(p): optimized_imports(p) for p in python_files("model/optimized")}


def test_optimized_modules_import_no_cycle() -> None:
    """The modules of model/optimized (the package facade aside) import each
    other without a cycle, counting every import, even under TYPE_CHECKING."""
    graph = {m: {d for d in deps if d != "model.optimized"} for m, deps in optimized_graph().items()
             if m != "model.optimized"}
    done: set[str] = set()
    path: list[str] = []

    def visit(m: str) -> None:
        if m in path:
            cycle = path[path.index(m):] + [m]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if m in done:
            return
        path.append(m)
        for d in sorted(graph.get(m, ())):
            visit(d)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_op_modules_never_import_the_kernel_adapter() -> None:
    """Only the facade imports kernel.py (the ``Implementation`` adapter); the
    op modules take a ``state.KernelState``."""
    bad = {m: deps & FACADE for m, deps in optimized_graph().items()
           if m not in FACADE and deps & FACADE}
    assert not bad, f"modules importing the adapter or the package facade: {bad}"


@pytest.mark.parametrize("path", python_files("model/optimized"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_optimized_imports_only_at_module_level(path: Path) -> None:
    """No import inside a function (the old way around a cycle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top = {id(n) for n in tree.body}
    top |= {id(n) for stmt in tree.body if isinstance(stmt, ast.If) for n in stmt.body}
    inner = [n.lineno for n in ast.walk(tree)
             if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in top]
    assert not inner, f"{path}: imports inside functions at lines {inner}"


def test_optimized_imports_resolves_submodules() -> None:
    """``from model.optimized import x`` counts as importing the module x."""
    deps = optimized_imports(OPTIMIZED / "kernel.py")
    assert {"model.optimized.fault", "model.optimized.exit", "model.optimized.state"} <= deps
    assert "model.optimized.state" in optimized_imports(OPTIMIZED / "fault.py")


def test_the_fault_path_knows_no_driver() -> None:
    """A CPU fault reaches migrate-back through the device page's
    ``pgmap->ops->migrate_to_ram``, not by importing the driver's code."""
    for core in ("fault", "gup", "hmm", "memory", "mmu_notifier", "state"):
        deps = optimized_imports(OPTIMIZED / f"{core}.py")
        assert not {m for m in deps if m.startswith(OPT_DRIVERS)}, core
        assert "model.optimized.migrate_device" not in deps, core


OPT_DRIVERS = "model.optimized.drivers"
OPT_CORE = [p for p in python_files("model/optimized")
            if "drivers" not in p.relative_to(ROOT).parts]


@pytest.mark.parametrize("path", OPT_CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_optimized_core_names_no_device_kind(path: Path) -> None:
    found = DEVICE_KIND.findall(code_tokens(path))
    assert not found, f"{path} names device kinds in its code: {sorted(set(found))}"


@pytest.mark.parametrize("path", OPT_CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_optimized_core_reaches_drivers_only_through_the_registry(path: Path) -> None:
    allowed = {OPT_DRIVERS} if path.name == "kernel.py" else set()
    bad = {m for m in resolved_imports(path) | optimized_imports(path)
           if (m == OPT_DRIVERS or m.startswith(OPT_DRIVERS + ".")) and m not in allowed}
    assert not bad, f"{path} imports {bad}"


def test_the_optimized_layering_checks_see_what_they_look_for() -> None:
    kernel = OPTIMIZED / "kernel.py"
    assert OPT_DRIVERS in resolved_imports(kernel)
    assert len(OPT_CORE) > 20 and not any(p.parent.name == "drivers" for p in OPT_CORE)


def test_optimized_bugs_live_where_declared() -> None:
    """A planted bug's switch is in its driver's module when ``driver=``
    names one, else in the core (``model/bugs.py``)."""
    from model import bugs

    for name, bug in bugs.REGISTRY.items():
        if bug.implementation != "optimized" or bug.driver not in (None, "mirror", "userptr",
                                                                   "pin"):
            continue
        const = next(c for c, v in vars(bugs).items() if v is bug)
        where = {p.relative_to(OPTIMIZED).as_posix() for p in python_files("model/optimized")
                 if re.search(rf"\bbugs\.{const}\b", p.read_text(encoding="utf-8"))}
        assert where, name
        if bug.driver is None:
            assert not any(w.startswith("drivers/") for w in where), (name, where)
        else:
            assert where == {f"drivers/{bug.driver}.py"}, (name, where)
