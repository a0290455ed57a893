"""The window rule's intruder (fuzz/stateful.py): half the time a plain op,
which runs whole inside the first racer's window, else a thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis.stateful import Rule

from fuzz.engine import HypothesisEngine
from fuzz.profiles import HUNT
from fuzz.stateful import EngineConfig, Hooks, MirrorMachine


def test_the_intruder_is_a_plain_op_or_a_thread(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, bool]] = []  # (whole, the line appended is a thread's start)
    start = MirrorMachine._start_racer

    def recording(machine: MirrorMachine, data: Any, racer: Rule | str, *,
                  whole: bool = False) -> None:
        before = len(machine.trace().steps)
        start(machine, data, racer, whole=whole)
        added = machine.trace().steps[before:]
        if added:
            seen.append((whole, added[-1].thread is not None))

    monkeypatch.setattr(MirrorMachine, "_start_racer", recording)
    HypothesisEngine(EngineConfig(sides="both", judge=HUNT.settings(),
                                  failures=str(tmp_path)), Hooks()).run(0, 40)
    assert {whole for whole, _ in seen} == {True, False}
    assert all(not thread for whole, thread in seen if whole)
    threads = [thread for whole, thread in seen if not whole]
    assert sum(threads) > len(threads) / 2  # a thread, unless every slot is taken
