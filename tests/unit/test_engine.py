"""The engine layer (fuzz/engine.py): one seed gives one run, hooks see every
verdict and decide whether a finding fails, and the Atheris command carries
the seed and the settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fuzz.engine import HypothesisEngine, atheris_command, libfuzzer_seed
from fuzz.executor import Verdict
from fuzz.profiles import CAMPAIGN, HUNT
from fuzz.stateful import EngineConfig, Hooks, MirrorMachine
from fuzz.trace import Trace, format_trace

MUTANT = "free_at_invalidate_start"
"""Found by the seed-0 hunt within its first 5 examples."""


class Recording(Hooks):
    def __init__(self, passes: bool = False) -> None:
        self.passes = passes
        self.seen: list[tuple[str, str]] = []
        self.examples = self.done_count = 0

    def example(self) -> None:
        self.examples += 1

    def judged(self, machine: MirrorMachine, verdict: Verdict) -> bool:
        self.seen.append((format_trace(machine.trace()), verdict.outcome))
        return not self.passes

    def done(self, machine: MirrorMachine) -> None:
        self.done_count += 1


def _engine(hooks: Hooks, tmp_path: Path) -> HypothesisEngine:
    return HypothesisEngine(EngineConfig(sides="both", judge=HUNT.settings(MUTANT),
                                         failures=str(tmp_path), generation=1), hooks)


def test_a_finding_fails_the_run_unless_the_hooks_let_it_pass(tmp_path: Path) -> None:
    failing = Recording()
    with pytest.raises(AssertionError, match="free_at|no_use_after_free"):
        _engine(failing, tmp_path / "a").run(0, 10)
    assert [outcome for _, outcome in failing.seen][-1] == "finding"
    assert list((tmp_path / "a").glob("*.trace")), "the failing repro is saved"
    passing = Recording(passes=True)
    _engine(passing, tmp_path / "b").run(0, 10)
    assert passing.examples == passing.done_count >= 10
    assert "finding" in [outcome for _, outcome in passing.seen]
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").glob("*.trace"))


def test_the_same_seed_gives_the_same_run(tmp_path: Path) -> None:
    runs = []
    for seed in (3, 3, 4):
        hooks = Recording(passes=True)
        _engine(hooks, tmp_path).run(seed, 6)
        runs.append(hooks.seen)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


class Steps(Recording):
    def judged(self, machine: MirrorMachine, verdict: Verdict) -> bool:
        self.seen.append((format_trace(machine.trace()), f"{verdict.outcome} {verdict.steps}"))
        return True


def test_the_campaign_profile_makes_the_full_judges_examples(tmp_path: Path) -> None:
    """The campaign's Hypothesis workers judge with the fast judge
    (``fuzz.profiles.CAMPAIGN``), its cap counting the state: each example
    is the one the full judge would make, capped at the same step."""
    assert CAMPAIGN.fast and CAMPAIGN.cap_by_state
    runs = []
    for fast in (True, False):
        hooks = Steps(passes=True)
        HypothesisEngine(EngineConfig(sides="both", judge=replace(CAMPAIGN, fast=fast).settings(),
                                      failures=str(tmp_path)), hooks).run(0, 12)
        runs.append(hooks.seen)
    assert len(runs[0]) >= 12
    assert any(outcome.startswith("capped") for _, outcome in runs[1])  # the cap bites
    assert runs[0] == runs[1]


def test_the_atheris_command_carries_the_seed_and_the_settings(tmp_path: Path) -> None:
    argv, env = atheris_command([tmp_path / "corpus", tmp_path / "seeds"], seed_=7,
                                mutant="m", findings=tmp_path / "f", artifacts=tmp_path / "w",
                                options=["-runs=5"], env={"MIRRORFUZZ_PROGRESS": "1"})
    assert argv[1].endswith("fuzz/fuzz_trace.py")
    assert f"-seed={libfuzzer_seed(7)}" in argv and libfuzzer_seed(7) == 8
    assert f"-artifact_prefix={tmp_path / 'w'}/" in argv and "-runs=5" in argv
    assert argv[-2:] == [str(tmp_path / "corpus"), str(tmp_path / "seeds")]
    assert env == {"MIRRORFUZZ_FINDINGS": str(tmp_path / "f"), "MIRRORFUZZ_MUTANT": "m",
                   "MIRRORFUZZ_PROGRESS": "1"}
    assert libfuzzer_seed(0) != 0  # libFuzzer's 0 would be a random seed


class Reporting(Recording):
    """Records, for each finding reported, whether Hypothesis was discarding
    its example."""

    def __init__(self) -> None:
        super().__init__()
        self.reported: list[bool] = []

    def failed(self, machine: MirrorMachine, failing: Trace) -> str:
        self.reported.append(machine.discarding)
        return super().failed(machine, failing)


OUT_OF_DATA = "per_chunk_read_begin"
"""Its seed-0 hunt first finds it at the teardown of its 56th example, which
ran out of Hypothesis's data (``StopTest``): Hypothesis throws that example
away."""


def test_a_finding_in_an_example_that_ran_out_of_data_is_not_lost(tmp_path: Path) -> None:
    """The finding is reported at once (its repro saved) and stops the run
    with it.  (Before the fix Hypothesis dropped it, and the hunt went on for
    40 s more and reported a later example's repro.)"""
    hooks = Reporting()
    engine = HypothesisEngine(EngineConfig(sides="both", judge=HUNT.settings(OUT_OF_DATA),
                                           failures=str(tmp_path)), hooks)
    with pytest.raises(AssertionError, match="divergence") as failure:
        engine.run(0, 100)
    assert hooks.reported == [True], f"{OUT_OF_DATA}'s seed-0 hunt no longer runs out of data " \
        "at its finding: choose a case that does"
    first = [outcome for _, outcome in hooks.seen].index("finding")
    assert hooks.examples == first + 1, "the run stops at the finding"
    saved = list(tmp_path.glob("*.trace"))
    assert len(saved) == 1 and saved[0].name in str(failure.value)
