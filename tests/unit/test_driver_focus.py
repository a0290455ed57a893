"""Driver focus (fuzz/stateful.py): with a driver plug-in loaded, the race
and window rules race the plug-in's own ops about half the time, not 1 time
in 10 or 15 as one device kind among the built-in ones."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis.stateful import RULE_MARKER, Rule

from fuzz import plugins
from fuzz.engine import HypothesisEngine
from fuzz.executor import Verdict
from fuzz.profiles import HUNT
from fuzz.stateful import EngineConfig, Hooks, MirrorMachine, plugin_rules, racers
from fuzz.trace import format_trace

DRIVER = Path(__file__).resolve().parents[2] / "examples" / "drivers" / "test_hmm.py"


class Traces(Hooks):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def judged(self, machine: MirrorMachine, verdict: Verdict) -> bool:
        self.texts.append(format_trace(machine.trace()))
        return False


@pytest.fixture
def driver() -> Iterator[str]:
    kind = plugins.load_driver(DRIVER).kind
    yield kind
    plugins.unload(kind)


def test_a_loaded_drivers_ops_are_half_the_device_racers(
        driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    draw = MirrorMachine._draw_racer

    def recording(machine: MirrorMachine, data: Any, rules: Sequence[str]) -> Rule | None:
        racer = draw(machine, data, rules)
        if racer is not None:
            drawn.extend(n for n in rules
                         if getattr(getattr(type(machine), n), RULE_MARKER) is racer)
        return racer

    monkeypatch.setattr(MirrorMachine, "_draw_racer", recording)
    HypothesisEngine(EngineConfig(sides="both", judge=HUNT.settings(),
                                  failures=str(tmp_path)), Traces()).run(0, 40)
    device = set(racers("device"))
    ours = plugin_rules()
    assert ours and ours < device
    started = [n for n in drawn if n in device]
    assert len(started) >= 20, "too few device racers drawn to measure"
    share = sum(op in ours for op in started) / len(started)
    evenly = len(ours) / len(device)  # what a draw among all device racers gives
    assert share >= evenly + 0.1, (share, evenly)  # 0.17 to 0.2 without focus, 0.35 with


def test_no_driver_no_focus() -> None:
    assert plugin_rules() == frozenset()
