"""Running a command-line module of the checkout as a user would, for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(module: str, argv: list[str],
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m module argv`` from the checkout, in its own process group,
    killed whole (children too) if it outlives the timeout."""
    proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
