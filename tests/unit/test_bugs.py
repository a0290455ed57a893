"""The planted bugs are declared once (``model/bugs.py``) and asked for by
their declaration: the registry, unknown and duplicate names, and no bug
asked for by a string anywhere in ``model`` or ``fuzz``.

(That each bug is reachable, i.e. changes what the implementation does on
its trace, is ``tests/quality/test_mutants_detectable.py``.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fuzz.cli import main
from model import bugs
from model.bugs import Bug, DuplicateBug, Registry, UnknownBug
from model.interface import Config
from model.optimized import OptimizedKernel

ROOT = Path(__file__).resolve().parents[2]


def _constants() -> dict[str, Bug]:
    return {name: value for name, value in vars(bugs).items() if isinstance(value, Bug)}


def test_every_declaration_is_registered_under_its_constant() -> None:
    constants = _constants()
    assert constants, "model/bugs.py declares no bug"
    assert {bug.name for bug in constants.values()} == set(bugs.REGISTRY)
    for const, bug in constants.items():
        assert const == bug.name.upper()
        assert bugs.REGISTRY[bug.name] is bug
        assert bugs.lookup(bug.name) is bug


def test_declarations_say_what_they_break_and_imitate() -> None:
    for bug in bugs.all_bugs():
        assert bug.breaks and bug.imitates and "\n" not in bug.breaks + bug.imitates
        assert bug.implementation == "optimized"
        assert bug.driver in (None, "mirror", "userptr", "pin")
    assert [b.name for b in bugs.all_bugs()] == sorted(bugs.REGISTRY)


def test_a_misspelt_name_is_an_error_not_no_bug() -> None:
    with pytest.raises(UnknownBug, match="unknown mutant 'typo'"):
        Config(mutant="typo")
    with pytest.raises(ValueError):
        OptimizedKernel(Config(mutant="flag_instead_of_seqx"))
    assert bugs.lookup(None) is None
    assert Config().bug is None
    assert Config(mutant="flag_instead_of_seq").bug is bugs.FLAG_INSTEAD_OF_SEQ


def test_the_kernel_asks_for_the_declaration() -> None:
    k = OptimizedKernel(Config(mutant="fork_share_pinned")).state
    assert k.bugged(bugs.FORK_SHARE_PINNED)
    assert not k.bugged(bugs.FLAG_INSTEAD_OF_SEQ)
    assert k.procs[0].mn.bug is bugs.FORK_SHARE_PINNED
    assert not OptimizedKernel(Config()).state.bugged(bugs.FORK_SHARE_PINNED)


def test_a_driver_declares_its_own_bugs_and_names_are_unique() -> None:
    reg = Registry()
    mine = reg.register(Bug("bind_skips_recheck", "the bind skips the pages-valid recheck",
                            "drm_gpusvm history", driver="gpusvm"))
    assert reg.lookup("bind_skips_recheck") is mine and mine.lives_in == "optimized/gpusvm"
    with pytest.raises(DuplicateBug):
        reg.register(Bug("bind_skips_recheck", "again", "again"))
    with pytest.raises(ValueError):
        reg.register(Bug("Bad Name", "x", "y"))
    with pytest.raises(ValueError):
        reg.register(Bug("no_story", "", "y"))
    with pytest.raises(UnknownBug):
        reg.lookup("flag_instead_of_seq")  # another registry's
    with pytest.raises(DuplicateBug):
        bugs.declare("flag_instead_of_seq", breaks="x", imitates="y")


def _string_compared_mutants(path: Path) -> list[int]:
    """Lines comparing something called ``mutant``/``bug`` with a string."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        named = any((isinstance(s, ast.Attribute) and s.attr in ("mutant", "bug"))
                    or (isinstance(s, ast.Name) and s.id in ("mutant", "bug")) for s in sides)
        if named and any(isinstance(s, ast.Constant) and isinstance(s.value, str)
                         for s in sides):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", sorted((ROOT / "model").rglob("*.py"))
                         + sorted((ROOT / "fuzz").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bug_is_asked_for_by_a_string(path: Path) -> None:
    assert not _string_compared_mutants(path), path


def test_every_declared_bug_is_asked_for_by_its_implementation() -> None:
    """Each declaration is used (``bugs.NAME``) in the code it lives in."""
    code = "\n".join(p.read_text(encoding="utf-8")
                     for p in sorted((ROOT / "model" / "optimized").rglob("*.py")))
    unused = [bug.name for bug in bugs.all_bugs()
              if not re.search(rf"\bbugs\.{bug.name.upper()}\b", code)]
    assert not unused, f"declared but never asked for: {unused}"


def test_mutants_list_prints_every_bug(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mutants", "--list"]) == 0
    out = capsys.readouterr().out
    for bug in bugs.all_bugs():
        assert f"{bug.name}  [{bug.lives_in}]" in out
        assert f"    breaks:   {bug.breaks}" in out
        assert f"    imitates: {bug.imitates}" in out
    assert out.rstrip().endswith(f"{len(bugs.REGISTRY)} planted bugs")


def test_replay_with_a_misspelt_mutant_is_a_one_line_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    trace = ROOT / "tests" / "quality" / "traces" / "flag_instead_of_seq.trace"
    assert main(["replay", "--mutant", "flag_instead_of_seq_", str(trace)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirrorfuzz: error: --mutant flag_instead_of_seq_: unknown mutant")
    assert err.count("\n") == 1
