"""Run a trace on the unpatched kernel beside a process that opens and closes its own file
of /dev/hmm_dmirror0 (close-beside.c), and count one line's results (SPEC Appendix D29).

    .venv/bin/python linux/repro/close-beside.py TRACE LINE none:0:10 loop:200:20

Each RUN is MODE:USEC:REPS as close-beside.c takes them; one boot for all."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from fuzz.linux import kernel

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    trace, line, runs = Path(argv[0]), int(argv[1]), argv[2:]
    helper = kernel.cache_root() / "guest" / "close-beside"
    kernel.compile_static([HERE / "close-beside.c"], helper)
    files: dict[str, Path | bytes] = {"mfrun": kernel.guest_binary("mfrun"),
                                      "close-beside": helper, "t/x.trace": trace.read_bytes()}
    cmds = [f"/close-beside {' '.join(r.split(':'))} /t/x.trace" for r in runs]
    reps = sum(int(r.split(":")[2]) for r in runs)
    res = kernel.boot(kernel.find_kernel(False), cmds, files, 60 + 2.0 * reps, oops_panic=False)
    print(f"{res.wall:.1f} s wall, timed out: {res.timed_out}, kernel reports: {len(res.reports)}")
    counts: dict[str, Counter[str]] = {}
    for block in re.split(r"^# close-beside: ", res.output, flags=re.M)[1:]:
        mode = block.split()[3]
        got = [ln.rsplit(" => ", 1)[1] for ln in block.splitlines() if " => " in ln]
        counts.setdefault(mode, Counter())[got[line - 1] if len(got) >= line else "cut"] += 1
    for mode, c in counts.items():
        print(f"{mode}: line {line}: " + ", ".join(f"{k} {v}" for k, v in c.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
