"""The campaign's worker pool: a hung worker, one over its memory limit, a
finding exit, each recorded as what it was and restarted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fuzz.campaign.config import CampaignConfig

# ------------------------------------------------------------- the watchdog


def _pool_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: CampaignConfig,
                 script: str, seconds: float) -> list[tuple[str, str]]:
    import time

    from fuzz.campaign import pool as pool_module

    monkeypatch.setattr(pool_module, "hypothesis_command",
                        lambda *args, **kwargs: [sys.executable, "-c", script])
    events: list[tuple[str, str]] = []
    pool = pool_module.Pool(tmp_path, config, 0,
                            lambda worker, engine, event, detail: events.append((event, detail)))
    pool.start_all()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            pool.poll()
            time.sleep(0.1)
    finally:
        pool.stop_all()
    return events


def test_a_silent_worker_is_killed_as_hung_and_restarted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CampaignConfig(jobs=1, engine="hypothesis", hang_s=1.0)
    events = _pool_events(tmp_path, monkeypatch, config,
                          "print('@mirrorfuzz {\"execs\": 1}', flush=True)\n"
                          "import time; time.sleep(60)", 3.5)
    names = [e for e, _ in events]
    assert names[:3] == ["started", "hung", "restarted"], events
    assert "no progress for 1 s" in events[1][1]


def test_a_worker_over_its_memory_limit_is_killed_as_oom(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CampaignConfig(jobs=1, engine="hypothesis", rss_limit_mb=1, hang_s=60)
    events = _pool_events(tmp_path, monkeypatch, config, "import time; time.sleep(60)", 2.0)
    assert [e for e, _ in events][:3] == ["started", "oom", "restarted"], events
    assert "over 1 MB" in events[1][1]


