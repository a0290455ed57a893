"""The same seed gives the same stateful run in any process (fuzz.determinism).

Two fresh interpreters generate the same examples from the same seed: one
imports only the engine, the other imports more of our modules first and
runs with another hash seed.  Before ``settle_constant_pool``, Hypothesis's
pool of local constants followed what was imported, and these differed
within the first dozen examples.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = 40

_GENERATE = """
import sys
if sys.argv[1] == "more":
    import fuzz.minimize, fuzz.mutants_table, fuzz.campaign.report  # noqa: F401
from hypothesis import HealthCheck, Phase, settings, seed
from hypothesis.stateful import get_state_machine_test
from fuzz.stateful import EngineConfig, machine_for
from fuzz.trace import format_trace

class Recorded(machine_for(EngineConfig(sides="reference", observe_every=0))):
    def teardown(self):
        print(format_trace(self.trace()), "=====", sep="\\n")
    def judge(self):
        self.judged = True

test = get_state_machine_test(Recorded, settings=settings(
    max_examples=int(sys.argv[2]), database=None, deadline=None, phases=[Phase.generate],
    stateful_step_count=30, suppress_health_check=list(HealthCheck)))
seed(0)(test)()
"""


def _generate(imports: str, hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", _GENERATE, imports, str(EXAMPLES)],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_seed_generates_the_same_examples_whatever_was_imported() -> None:
    plain = _generate("plain", "0")
    more = _generate("more", "1")
    assert plain.count("=====") >= EXAMPLES
    assert plain == more
