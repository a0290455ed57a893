"""Running a command-line module of the checkout as a user would, for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def error_line(err: str, prog: str) -> str:
    """``err`` is one ``prog: error: ...`` line, no traceback, no usage dump."""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"{prog}: error: "), err
    assert "Traceback" not in err and "usage:" not in err
    return err


def never_runs(monkeypatch: Any, module: object, *names: str) -> None:
    """Calling any of ``module``'s functions ``names`` fails the test: what is
    checked must be refused before the work starts."""
    def started(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{getattr(module, '__name__', module)}: work started on bad input")

    for name in names:
        monkeypatch.setattr(module, name, started)
