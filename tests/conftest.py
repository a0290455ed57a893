"""Test settings: Hypothesis profiles chosen by HYPOTHESIS_PROFILE.

* ``ci`` (the default): bounded, derandomized, so the default run is quick
  and repeatable; the example database stays on so a failure found locally
  replays first next time.
* ``dev``: more examples, random.
* ``nightly``: many more examples, for long runs.
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
