"""Engine settings, each declared once: how each use of an engine judges.

An engine generates traces and hands them to the executor, the only judge;
what differs between uses is how much judging each trace gets.  Each use's
settings are declared here and nowhere else (the campaign's
``--observe-every``, the Atheris target's ``MIRRORFUZZ_OBSERVE_EVERY`` and
the mutants table take their defaults from here):

=============  ======================================================  =========
profile        used by                                                 observe
=============  ======================================================  =========
``ATHERIS``    the Atheris target (``fuzz/fuzz_trace.py``): the fast   2
               judge, its findings judged again by the full judge
``CAMPAIGN``   the campaign's Hypothesis workers: the fast judge, its   4
               work cap counting the state at each period (the full
               judge's examples, a third of the CPU)
``HUNT``       ``mirrorfuzz mutants`` and the quality hunts: only the   0 (end)
               mutated side checks invariants (the fast judge's local
               checks); results still compared at every step
``PYTEST``     ``tests/differential/test_stateful.py``, by             16, 4
               ``HYPOTHESIS_PROFILE`` (``ci``; ``dev`` and ``nightly``)
=============  ======================================================  =========

Replay, the minimizer's final judge and the corpus use the executor's own
defaults (``fuzz.verdict.Settings()``: every check, observations at every
step).  This module imports nothing of the judged code, so that the Atheris
target can import it before it imports that code under instrumentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from fuzz.verdict import Settings

MAX_WORK: Final = 300_000
"""The work cap per side and trace of the engines (``fuzz.verdict``'s units:
a few CPU seconds): a trace past it is judged up to there, ``capped``."""
STEP_COUNT: Final = 30
"""Hypothesis rules per example (``stateful_step_count``)."""


@dataclass(frozen=True)
class Profile:
    """How one use of an engine judges (``fuzz.verdict.Settings`` fields)."""

    observe_every: int  # compare observations every K changing steps (0: at the end only)
    fast: bool = False  # the fast judge (Settings.fast)
    max_work: int = MAX_WORK  # the work cap per side (0: none)
    checked: tuple[str, ...] | None = None  # the sides checking invariants (None: all)
    cap_by_state: bool = False  # the cap counts footprints at the period (Settings.cap_by_state)

    def settings(self, mutant: str | None = None, *, observe_every: int | None = None,
                 contract: str = "hmm") -> Settings:
        """The executor's settings of this profile (``observe_every`` overrides),
        judging under ``contract`` (``fuzz.contracts``; hmm is its default)."""
        from fuzz.verdict import Settings

        every = self.observe_every if observe_every is None else observe_every
        return Settings(observe_every=every, fast=self.fast, max_work=self.max_work,
                        checked=self.checked, mutant=mutant, contract=contract,
                        cap_by_state=self.cap_by_state)


ATHERIS: Final = Profile(observe_every=2, fast=True)
"""Every 2 changing steps: the fast judge's comparisons cost what a step
changed (``fuzz.observe_diff``), and at 8 (its period before them) it lost
a planted bug's transient divergence that the full judge reports
(``tests/quality/test_fast_judge.py``, 30 traces a bug: 1 lost at 8, none
at 2 or 1)."""
CAMPAIGN: Final = Profile(observe_every=4, fast=True, cap_by_state=True)
"""The fast judge, its work cap counting each side's footprint at every 4
changing steps (``Settings.cap_by_state``): the full judge's periods and
charges, so the same examples as under the full judge (the lines drawn,
and where the cap stops each), at a third of the CPU (``bench.judge``'s
engine part: 2,882 against 1,008 steps/s on the same 5,745 steps).  On the
example drivers' twelve planted bugs (a worker each, seed 0, 180 s): all
twelve found by both, the same findings, median CPU to find 15.6 s against
42.2 s with the full judge and the cap counting observations (the profile
before; 0.9 to 3.6 times sooner by bug); with seed 1, ten found against
nine, median 31.5 s against 66.1 (misses counted at their 180 s).  The
fast judge under that old cap ran past where the full one stopped (its
examples 1.4 times longer) and found them no sooner (issue 14)."""
HUNT: Final = Profile(observe_every=0, fast=True, checked=("optimized",))
PYTEST: Final = {"ci": Profile(observe_every=16, max_work=0),
                 "dev": Profile(observe_every=4, max_work=0)}
"""By ``HYPOTHESIS_PROFILE``; any other (``nightly``) runs as ``dev``.  The
ci profile observes every 16 steps: its drains can leave a dozen threads
stepping in lockstep over thousands of pages, where observing both sides
every 4 steps took minutes an example."""


def pytest_profile(name: str) -> Profile:
    return PYTEST.get(name, PYTEST["dev"])
