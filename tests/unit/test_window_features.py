"""Race windows as libFuzzer features (fuzz/window_features.py): each
combination reaches its own leaf of an instrumentable tree, the same leaf in
every process, and the Atheris target descends to the leaves of what each
judged trace reached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from fuzz import impls, window_features
from fuzz.codec import encode
from fuzz.executor import Settings, run_trace
from fuzz.fuzz_trace import TestOneInput
from fuzz.trace import parse_trace
from fuzz.window_features import LEAVES, feed, leaf_of

ROOT = Path(__file__).resolve().parents[2]
RACE = """# mirrorfuzz-trace 1
open P0 mirror
mmap P0 0 8 rw private
T1 = migrate_to_dev D0 0 4
step T1
step T1
madvise P0 0 4 dontneed
write P0 0 5
run T1
"""


def test_every_leaf_is_its_own_block() -> None:
    assert [window_features._leaf(i) for i in range(LEAVES)] == list(range(LEAVES))
    blocks: set[tuple[str, int]] = set()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "return" and frame.f_code.co_name == "_leaf" and frame.f_back is not None \
                and frame.f_back.f_code.co_name == "_leaf":
            blocks.add((frame.f_code.co_filename, frame.f_lineno))
        return tracer

    probes = (0, 1, 2, 63, 64, 65, LEAVES - 1)
    for i in probes:
        sys.settrace(tracer)
        try:
            window_features._leaf(i)
        finally:
            sys.settrace(None)
    assert len(blocks) == len(probes), "distinct leaves return from distinct blocks"


def test_a_combination_reaches_the_same_leaf_in_every_process() -> None:
    combo = ("migrate_to_dev", 2, "madvise")
    here = leaf_of(combo)
    code = ("from fuzz.window_features import leaf_of; "
            "print(leaf_of(('migrate_to_dev', 2, 'madvise')))")
    for salt in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, text=True,
                             capture_output=True, env={"PYTHONHASHSEED": salt, "PATH": ""})
        assert int(out.stdout) == here
    assert 0 <= here < LEAVES
    assert len({leaf_of(("migrate_to_dev", k, "madvise")) for k in range(1, 9)}) == 8


def test_feed_descends_to_the_leaves_of_the_windows_reached(
        monkeypatch: pytest.MonkeyPatch) -> None:
    trace = parse_trace(RACE)
    verdict = run_trace(trace, impls.sides("reference"), Settings(observe_every=0))
    seen: list[int] = []
    monkeypatch.setattr(window_features, "_leaf", seen.append)
    combos = feed(trace.steps, verdict.results)
    assert ("migrate_to_dev", 2, "madvise") in combos
    assert sorted(seen) == sorted(leaf_of(c) for c in combos)


def test_the_atheris_target_feeds_each_input(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    monkeypatch.setattr(window_features, "_leaf", seen.append)
    TestOneInput(encode(parse_trace(RACE)))
    assert leaf_of(("migrate_to_dev", 2, "madvise")) in seen
