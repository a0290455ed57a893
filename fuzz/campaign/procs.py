"""Child processes of a campaign: they die with it, and they are measured.

Rule this module enforces: **no child outlives the coordinator**.  Every
child is started in its own session (so a Ctrl-C reaches the coordinator
only, which then stops its children itself) with ``PR_SET_PDEATHSIG``
(``SIGKILL`` when the coordinator dies, even by ``kill -9``), and checks
once started that its parent is still the one that spawned it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Final

PR_SET_PDEATHSIG: Final = 1
REPO: Final = Path(__file__).resolve().parents[2]
"""The repository root (``fuzz/`` and ``model/`` live there)."""


def _child_setup(parent: int, niceness: int) -> Callable[[], None]:
    def setup() -> None:
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            except (OSError, AttributeError):
                pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        if niceness:
            try:
                os.nice(niceness)
            except OSError:
                pass
    return setup


def child_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment with the repository importable and ``extra`` applied
    (a ``None`` value removes the variable)."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def spawn(argv: Sequence[str], *, env: Mapping[str, str], stdout: IO[bytes] | int | None,
          niceness: int = 0) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child that dies with this process."""
    return subprocess.Popen(
        list(argv), env=dict(env), cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=stdout,
        stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_child_setup(os.getpid(), niceness))


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the exit status."""
    if proc.poll() is None:
        try:
            proc.terminate()
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def kill(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


def rss_mb(pid: int) -> float | None:
    """The resident set size of process ``pid`` in MB (None if unknown)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
