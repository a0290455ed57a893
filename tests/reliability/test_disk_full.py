"""A campaign on a disk that fills up: a real, tiny tmpfs (root only).

The campaign must stop by itself with a ``stop`` line of reason ``disk``, one
``mirrorfuzz: error:`` line naming the file it could not write, exit 2, and
keep what it wrote; once the disk has room again, ``--resume`` carries on to
a normal end.  (Without root, or where tmpfs cannot be mounted, the test is
skipped; tests/unit/test_campaign.py injects ENOSPC and EROFS instead.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def campaign(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fuzz.cli", "campaign", *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_full_disk_stops_the_campaign_and_resume_carries_on(tiny_disk: Path) -> None:
    out = tiny_disk / "c"
    done = campaign(["--out", str(out), "--time", "90s", "--jobs", "1", "--engine",
                     "hypothesis", "--seed", "5", "--mutant", "free_at_invalidate_start"])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "No space left on device" in done.stderr
    assert f"mirrorfuzz: error: cannot write {out}" in done.stderr
    assert "mirrorfuzz: stopped: " in done.stdout and f"--resume {out}" in done.stdout
    lines = [json.loads(x) for x in (out / "stats.jsonl").read_text().splitlines()
             if x.endswith("}")]
    assert lines[0]["kind"] == "start"
    assert (out / "campaign.json").is_file()
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    again = campaign(["--resume", str(out), "--time", "3s"])
    assert again.returncode in (0, 1), again.stdout + again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    kinds = [json.loads(x)["kind"] for x in (out / "stats.jsonl").read_text().splitlines()]
    assert "resume" in kinds and kinds[-1] == "stop"


def test_a_disk_error_names_a_path_even_when_the_error_names_none(tmp_path: Path) -> None:
    """A failed write or flush of an open file raises an OSError with no file
    name: the line names the campaign directory instead."""
    import errno

    from fuzz.campaign.runner import disk_reason

    bare = OSError(errno.ENOSPC, "No space left on device")
    named = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "stats.jsonl"))
    assert disk_reason(bare, tmp_path) == f"cannot write {tmp_path}: No space left on device"
    assert disk_reason(named, tmp_path) == (
        f"cannot write {tmp_path / 'stats.jsonl'}: No space left on device")
