"""The engine layer: the Hypothesis and Atheris engines, each wrapped once.

Engines generate; the executor (``fuzz.executor``) judges.  Every user of an
engine -- the campaign's workers (``fuzz.campaign``), ``mirrorfuzz mutants``
(``fuzz.mutants_table``), pytest (``tests/``) and the benchmarks -- goes
through this module, with the settings of its use from ``fuzz.profiles``:

* :class:`HypothesisEngine`: the stateful machine (``fuzz.stateful``) bound
  to an :class:`~fuzz.stateful.EngineConfig` and to :class:`~fuzz.stateful.Hooks`
  (what a user is told: each example, each line, each verdict, each
  failure), run under Hypothesis settings made in one place
  (:meth:`HypothesisEngine.settings`).  A user overrides hooks, never the
  machine.
* :func:`atheris_command`: the Atheris target (``fuzz/fuzz_trace.py``) under
  libFuzzer, as a command line and its environment.

**One seed.**  The seed is the only source of randomness an engine run
has: Hypothesis is seeded with it (``hypothesis.seed``: its draws steer the
rules, the schedulers and swarm testing) and libFuzzer with
:func:`libfuzzer_seed` of it (libFuzzer's ``-seed``, which also seeds the
structure-aware mutator through its ``seed`` argument); the same seed and
budget give the same run (``tests/unit/test_determinism.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from fuzz.profiles import STEP_COUNT
from fuzz.stateful import DiscardedFinding, EngineConfig, Hooks, MirrorMachine, machine_for

REPO: Final = Path(__file__).resolve().parent.parent
TARGET: Final = REPO / "fuzz" / "fuzz_trace.py"
DICTIONARY: Final = REPO / "fuzz" / "fuzz_trace.dict"


@dataclass(frozen=True)
class HypothesisEngine:
    """The Hypothesis stateful engine with a configuration and hooks."""

    config: EngineConfig = field(default_factory=EngineConfig)
    hooks: Hooks = field(default_factory=Hooks)

    def machine(self) -> type[MirrorMachine]:
        return machine_for(self.config, self.hooks)

    @staticmethod
    def settings(max_examples: int, *, step_count: int = STEP_COUNT,
                 phases: Sequence[Phase] = (Phase.generate,), database: Any = None,
                 **more: Any) -> settings:
        """Hypothesis's settings of an engine run: no deadline and no health
        checks (examples are slow by design), no shrinking unless asked
        (``fuzz.minimize`` does that), no database unless given."""
        return settings(max_examples=max_examples, stateful_step_count=step_count,
                        phases=tuple(phases), database=database, deadline=None,
                        suppress_health_check=list(HealthCheck), print_blob=False, **more)

    def run(self, seed_: int, max_examples: int, **options: Any) -> None:
        """Run ``max_examples`` examples from ``seed_`` (``settings`` takes the
        ``options``); a finding is raised (``AssertionError``)."""
        machine = seed(seed_)(self.machine())
        try:
            run_state_machine_as_test(machine, settings=self.settings(max_examples, **options))
        except DiscardedFinding as exc:
            raise AssertionError(str(exc)) from None

    def test_case(self, seed_: int | None, max_examples: int,
                  step_count: int = STEP_COUNT) -> type[Any]:
        """A ``unittest.TestCase`` for pytest, seeded unless ``seed_`` is None,
        under the loaded Hypothesis profile (``tests/conftest.py``) but for
        the examples and rules per example."""
        machine = self.machine()
        if seed_ is not None:
            machine = seed(seed_)(machine)
        case: type[Any] = machine.TestCase
        case.settings = settings(settings.default, max_examples=max_examples,
                                 stateful_step_count=step_count)
        return case


def libfuzzer_seed(seed_: int) -> int:
    """libFuzzer's ``-seed`` for an engine seed (libFuzzer's 0 means random)."""
    return seed_ % 2_000_000_000 + 1


def atheris_command(corpus: Sequence[Path], *, seed_: int, mutant: str | None,
                    findings: Path, artifacts: Path, contract: str | None = None,
                    options: Sequence[str] = (),
                    env: dict[str, str | None] | None = None
                    ) -> tuple[list[str], dict[str, str | None]]:
    """The Atheris engine under libFuzzer: its argv, and the variables to set
    in its environment (None: unset).  ``corpus`` is the directory it grows
    first, then seed directories; ``contract`` is the one it judges under
    (``fuzz.contracts``; None: the target's default); ``options`` are more
    libFuzzer flags (``-max_total_time=``, ``-rss_limit_mb=`` ...)."""
    argv = [sys.executable, str(TARGET), f"-seed={libfuzzer_seed(seed_)}",
            f"-dict={DICTIONARY}", f"-artifact_prefix={artifacts}/", "-print_final_stats=1",
            *options, *(str(c) for c in corpus)]
    variables: dict[str, str | None] = {"MIRRORFUZZ_FINDINGS": str(findings),
                                        "MIRRORFUZZ_MUTANT": mutant, **(env or {})}
    if contract is not None:
        variables["MIRRORFUZZ_CONTRACT"] = contract
    return argv, variables
