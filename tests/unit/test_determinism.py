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
from fuzz.engine import HypothesisEngine
from fuzz.executor import Settings
from fuzz.stateful import EngineConfig, Hooks
from fuzz.trace import format_trace

class Recorded(Hooks):
    def judged(self, machine, verdict):
        return False
    def done(self, machine):
        print(format_trace(machine.trace()), "=====", sep="\\n")

HypothesisEngine(EngineConfig(sides="reference", judge=Settings(observe_every=0)),
                 Recorded()).run(0, int(sys.argv[2]))
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
