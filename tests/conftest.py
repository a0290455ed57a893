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

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "dev", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "nightly", max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first: the quality hunts (a minute or more each, one several
    minutes) lead the run, so that with ``--dist worksteal`` the other
    worker takes the many short tests meanwhile, instead of one hunt
    starting last and running alone at the end."""
    items.sort(key=lambda item: (0 if "tests/quality/test_hypothesis" in item.nodeid else 1,
                                 0 if "nonblock_callback_blocks" in item.nodeid else 1))
