"""Test settings: Hypothesis profiles chosen by HYPOTHESIS_PROFILE.

* ``ci`` (the default): bounded and derandomized, so the default run is
  quick and repeatable; a derandomized run has nothing to persist, so it uses
  no example database (a failure is still saved as a trace file by the
  stateful engine).
* ``dev``: more examples, random, with Hypothesis's example database
  (``.hypothesis/``) kept, so a failure found replays first next time.
* ``nightly``: many more examples, for long runs; database kept likewise.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "dev", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "nightly", max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
