"""Driver plug-ins (fuzz.plugins): loading, the API's rules, and what is
derived from a driver's declarations (text, bytes, rules)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import plugins
from fuzz.codec import CURRENT, decode, encode, random_trace
from fuzz.plugins import DriverLoadError, check_headers, load_driver
from fuzz.stateful import EngineConfig, machine_for
from fuzz.trace import format_trace, parse_trace
from model import bugs, decl

ROOT = Path(__file__).resolve().parents[2]
GPUSVM = ROOT / "examples" / "drivers" / "drm_gpusvm.py"

TOY = '''
from dataclasses import dataclass
from model.decl import D, Addr, Count, declare
from model.driver import PluginDriver
from model.ops import OK

@dataclass(frozen=True)
class Poke:
    d: int
    s: int
    n: int

declare(Poke, "poke", 0, D("toy"), Addr(), Count(), device="toy", plugin="toy")

def op_poke(core, th, op):
    return OK
    yield

def invalidate(core, th, state, sub, event, a, b, owner, blockable, seq):
    return True
    yield

DRIVER = PluginDriver(kind="toy", ops={"poke": op_poke}, open=lambda core, d: {},
                      invalidate=invalidate, table=lambda state: {})
'''


@pytest.fixture()
def unload() -> Iterator[None]:
    yield
    for kind in list(plugins.LOADED):
        plugins.unload(kind)


def write(tmp_path: Path, text: str, name: str = "driver.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_gpusvm_example_loads_and_its_ops_are_everywhere(unload: None) -> None:
    loaded = load_driver(GPUSVM)
    assert loaded.kind == "gpusvm" and len(loaded.sha256) == 64
    assert load_driver(GPUSVM) is loaded  # the same bytes load once
    text = ("# mirrorfuzz-trace 1\nmmap P0 0 8 rw private\nopen P0 gpusvm\n"
            "svm_bind D0 0 4\nsvm_write D0 0 4 7 1\nsvm_read D0 0 4\n")
    trace = parse_trace(text)
    assert format_trace(trace) == text
    assert decode(encode(trace)) == trace
    rng = random.Random(2)
    kinds = {type(s.action).__name__ for _ in range(60)
             for s in random_trace(rng, 80, CURRENT).steps}
    assert {"SvmBind", "SvmRead", "SvmWrite"} <= kinds
    machine = machine_for(EngineConfig())
    assert all(hasattr(machine, n) for n in ("svm_bind", "svm_read", "svm_write"))
    assert bugs.lookup("gpusvm_bind_skips_pages_valid") is not None


def test_unloading_forgets_everything_it_declared(unload: None) -> None:
    load_driver(GPUSVM)
    plugins.unload("gpusvm")
    assert "svm_bind" not in decl.SCHEMA_BY_KEYWORD
    assert "gpusvm" not in decl.device_kinds()
    assert "gpusvm_bind_skips_pages_valid" not in bugs.REGISTRY
    with pytest.raises(Exception, match="unknown op"):
        parse_trace("# mirrorfuzz-trace 1\nsvm_bind D0 0 4\n")


@pytest.mark.parametrize("text, rule", [
    ("import nowhere_at_all\n", "failed to import: ModuleNotFoundError"),
    ("def f(:\n", "failed to import: SyntaxError"),
    ("X = 1\n", "defines no DRIVER"),
    ("DRIVER = 3\n", "not a model.driver.PluginDriver"),
    (TOY.replace('ops={"poke": op_poke}', "ops={}"), "no function for declared op"),
    (TOY.replace('plugin="toy")', 'plugin="other")'), "must be declared with"),
    (TOY.replace("open=lambda core, d: {}", "open=None"), "open is not a function"),
    (TOY.replace('declare(Poke, "poke", 0, D("toy"), Addr(), Count(),',
                 'declare(Poke, "poke", 0, D("toy"), Addr(),'), "fields"),
    (TOY.replace('kind="toy"', 'kind="mirror"'), "kind must be a new identifier"),
])
def test_a_broken_driver_is_one_line_naming_the_file_and_the_rule(
        tmp_path: Path, text: str, rule: str, unload: None) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DriverLoadError) as info:
        load_driver(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) and rule in message
    assert "poke" not in decl.SCHEMA_BY_KEYWORD  # a failed load declares nothing


def test_a_missing_or_odd_path_is_refused(tmp_path: Path) -> None:
    for path, rule in ((tmp_path / "nope.py", "not a regular file"),
                       (tmp_path, "not a regular file")):
        with pytest.raises(DriverLoadError, match=rule):
            load_driver(path)


def test_a_repro_replays_only_with_its_driver(tmp_path: Path, unload: None) -> None:
    loaded = load_driver(write(tmp_path, TOY))
    check_headers((("driver", loaded.header),), "t.trace")
    with pytest.raises(DriverLoadError, match="another version"):
        check_headers((("driver", "toy sha256:" + "0" * 64),), "t.trace")
    with pytest.raises(DriverLoadError, match="needs driver 'gpusvm'"):
        check_headers((("driver", f"{loaded.header}, gpusvm sha256:ab"),), "t.trace")
    assert plugins.driver_header() == loaded.header
