"""Generated bad input through the real command: never a traceback, never a
hang, never a file clobbered outside the output directory.

Three families of cases, drawn from a seeded RNG (``MIRRORFUZZ_HOSTILE_SEED``,
16 by default; the seed of a failing case is in its description):

* **traces**: corpus traces mutated byte by byte (truncated, CR and NUL
  bytes, 400-digit numbers, duplicated lines) or replaced by a directory, a
  FIFO, a symbolic link to ``/dev/zero``, a dangling link, an empty or a too
  large file; then ``replay``, ``minimize`` and ``corpus check``;
* **campaigns**: a campaign directory whose files and directories are each,
  in turn, truncated, corrupted, emptied, deleted, replaced by a directory, a
  FIFO, a symbolic link to a device, given absurd numbers (``1e400``, NaN,
  ``-1``, ``"abc"``, lists) or deep nesting; then ``report``, ``promote``
  and ``campaign --resume``;
* **arguments**: every command with arguments drawn from pools of bad
  numbers, paths (devices, FIFOs, directories, 300-character names, dangling
  links), database specs and mutant names.

Each case runs ``python -m fuzz.cli ...`` in a subprocess with a timeout,
in a fresh directory OUT (its working directory), and must exit 0, 1 or 2,
with exactly one ``mirrorfuzz: error:`` line on stderr for 2, no
``Traceback`` anywhere; and nothing outside OUT may change: a victim
directory next to it (the target of some symbolic links) and ``/dev/null``,
``/dev/zero`` are checksummed before and after.  The default run draws
:data:`COUNTS` cases (about a minute on two cores);
``MIRRORFUZZ_HOSTILE_SCALE=N`` draws N times as many.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fuzz.campaign import layout
from fuzz.campaign.config import CampaignConfig, save_config

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("MIRRORFUZZ_HOSTILE_SEED") or 16)
SCALE = int(os.environ.get("MIRRORFUZZ_HOSTILE_SCALE") or 1)
COUNTS = {"traces": 60 * SCALE, "campaigns": 70 * SCALE, "arguments": 90 * SCALE}
TIMEOUT = float(os.environ.get("MIRRORFUZZ_HOSTILE_TIMEOUT") or 60)
TRACE_NAME = "seeds/t.trace"
MUTANT = "free_at_invalidate_start"
SEEDS = sorted((REPO / "corpus" / "seeds").glob("*.trace"), key=lambda p: p.stat().st_size)[:12]
REPRO = ("# mirrorfuzz-trace 1\n# signature: violation/no_use_after_free/mmap\n"
         "# found-by: campaign hypothesis worker 0\n# found-at: 2026-01-01T00:00:00Z\n"
         f"# mutant: {MUTANT}\n"
         "mmap P0 0 1 rw private => ok\nwrite P0 0 0 => ok\nread P0 0 => 0\n")
DEVICES = ("/dev/null", "/dev/zero")
SUMMARY: Counter[str] = Counter()


@dataclass
class Case:
    family: str
    index: int
    describe: str = ""
    argv: list[str] = field(default_factory=list)
    setup: Callable[[Path, Path], None] | None = None  # (out, victim)


# ------------------------------------------------------------------ running


def checksums(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        mode = os.lstat(path).st_mode
        key = str(path.relative_to(root))
        if stat.S_ISREG(mode):
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(mode):
            found[key] = "link " + os.readlink(path)
        else:
            found[key] = f"mode {mode:o}"
    for device in DEVICES:
        st = os.lstat(device)
        found[device] = f"{st.st_mode:o} {st.st_rdev} {st.st_ino}"
    return found


def run_case(case: Case, base: Path) -> tuple[Case, str | None, int]:
    """Run one case; (case, what went wrong or None, exit status)."""
    where = base / f"{case.family}-{case.index}"
    out, victim = where / "out", where / "victim"
    out.mkdir(parents=True)
    victim.mkdir()
    (victim / "precious.txt").write_text("do not touch\n")
    (victim / "dir").mkdir()
    (victim / "dir" / "inside.trace").write_text(REPRO)
    if case.setup is not None:
        case.setup(out, victim)
    before = checksums(victim)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MIRRORFUZZ_TRACEBACK": ""}
    env.pop("MIRRORFUZZ_TRACEBACK")
    proc = subprocess.Popen([sys.executable, "-m", "fuzz.cli", *case.argv], cwd=out, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout_b, stderr_b = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return case, f"hung (no exit in {TIMEOUT:.0f} s)", -1
    stdout = stdout_b.decode("utf-8", "replace")
    stderr = stderr_b.decode("utf-8", "replace")
    code = proc.returncode
    problem = None
    if code not in (0, 1, 2):
        problem = f"exit {code}"
    elif "Traceback" in stdout + stderr:
        problem = "a traceback"
    elif code == 2 and (len(stderr.splitlines()) != 1
                        or not stderr.startswith("mirrorfuzz: error: ")):
        problem = "exit 2 without exactly one 'mirrorfuzz: error:' line on stderr"
    elif checksums(victim) != before:
        problem = "a file outside the output directory changed"
    if problem is not None:
        problem += f"\n--- stderr:\n{stderr[-2000:]}\n--- stdout:\n{stdout[-1000:]}"
    else:
        shutil.rmtree(where, ignore_errors=True)
    return case, problem, code


def run_family(cases: list[Case], base: Path) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: run_case(c, base), cases))
    codes = Counter(code for _, _, code in results)
    family = cases[0].family
    SUMMARY.update({f"{family} exit {k}": v for k, v in codes.items()})
    print(f"\n{family}: {len(cases)} cases, exits {dict(sorted(codes.items()))}, "
          f"{time.monotonic() - started:.1f} s (seed {SEED})")
    failures = [f"{c.family} #{c.index} ({c.describe}; argv {c.argv!r}): {p}"
                for c, p, _ in results if p is not None]
    if os.environ.get("MIRRORFUZZ_HOSTILE_LIST"):
        for line in failures:
            print("FAILED CASE", line.splitlines()[0][:300])
    assert not failures, f"{len(failures)} of {len(cases)} cases failed " \
                         f"(MIRRORFUZZ_HOSTILE_SEED={SEED}):\n" + "\n\n".join(failures[:5])


# ---------------------------------------------------------- shared damage

ABSURD_NUMBERS = ("1e400", "NaN", "Infinity", "-Infinity", "-1", "1e308", "1.5",
                  "99999999999999999999999999", '"abc"', "[1]", "{}", "null", "true", "0")
JUNK = (b"\r", b"\0", b"\xff", b"#", b"=>", b" ", b"\n", b"9" * 400, "\u2028".encode(),
        b"P99999999999", b"T", b"-", b"\t", b"[", b"{", b'"')


def corrupt(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(buf) + 1)
        piece = rng.choice(JUNK)
        how = rng.randrange(3)
        if how == 0 and buf:
            del buf[i:i + rng.randint(1, 8)]
        elif how == 1:
            buf[i:i] = piece
        else:
            buf[i:i + len(piece)] = piece
    return bytes(buf)


def absurd(data: bytes, rng: random.Random) -> bytes:
    """Every number of JSON (or trace) text, or some of them, replaced by an absurd one."""
    text = data.decode("utf-8", "replace")
    numbers = list(re.finditer(r"-?\d+(?:\.\d+)?(?:e\d+)?", text))
    if not numbers:
        return data + b"1e400"
    chosen = rng.sample(numbers, k=min(len(numbers), rng.randint(1, 4)))
    for m in sorted(chosen, key=lambda m: -m.start()):
        text = text[:m.start()] + rng.choice(ABSURD_NUMBERS) + text[m.end():]
    return text.encode()


def replace_path(path: Path, how: str, rng: random.Random, victim: Path) -> None:
    """Replace ``path`` (file or directory) by something hostile."""
    if path.is_symlink() or path.is_file():
        data = path.read_bytes() if path.is_file() else b""
    else:
        data = b""
    if how in ("dir", "fifo", "zero", "null", "dangling", "victim", "delete"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
    if how == "dir":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)
    elif how in ("zero", "null"):
        path.symlink_to(f"/dev/{how}")
    elif how == "dangling":
        path.symlink_to(victim / "missing" / path.name)
    elif how == "victim":
        path.symlink_to(victim / "precious.txt")
    elif how == "truncate":
        path.write_bytes(data[:rng.randrange(len(data) + 1)])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "corrupt":
        path.write_bytes(corrupt(data, rng))
    elif how == "absurd":
        path.write_bytes(absurd(data, rng))
    elif how == "deep":
        path.write_bytes(b"[" * rng.choice((40, 1000, 100000)) + data)
    elif how == "huge":
        with open(path, "wb") as f:
            f.truncate(600 << 20)  # sparse: larger than any bound, costs no disk


# ------------------------------------------------------------ trace family


def trace_cases(rng: random.Random, count: int) -> list[Case]:
    cases = []
    hows = ("corrupt", "corrupt", "corrupt", "truncate", "absurd", "cr", "repeat", "dir",
            "fifo", "zero", "dangling", "empty", "huge", "victim")
    for index in range(count):
        source = rng.choice([*SEEDS, None])
        data = REPRO.encode() if source is None else source.read_bytes()
        how = rng.choice(hows)
        command = rng.choice(("replay", "replay-dir", "minimize", "corpus"))
        case_rng = random.Random(rng.randrange(1 << 30))

        def setup(out: Path, victim: Path, data: bytes = data, how: str = how,
                  case_rng: random.Random = case_rng) -> None:
            path = out / TRACE_NAME
            path.parent.mkdir(parents=True)
            if how == "cr":
                lines = data.split(b"\n")
                i = case_rng.randrange(len(lines))
                lines[i] = lines[i][:3] + b"\r" + lines[i][3:]
                path.write_bytes(b"\n".join(lines))
            elif how == "repeat":
                lines = data.split(b"\n")
                i = case_rng.randrange(max(1, len(lines) - 1))
                lines[i:i] = [lines[i]] * case_rng.choice((2, 50, 400))
                path.write_bytes(b"\n".join(lines))
            else:
                path.write_bytes(data)
                replace_path(path, how, case_rng, victim)

        argv = {"replay": ["replay", "--impl", "both", "-q", TRACE_NAME],
                "replay-dir": ["replay", "-q", "seeds"],
                "minimize": ["minimize", "--mutant", MUTANT, "--max-runs", "25", TRACE_NAME],
                "corpus": ["corpus", "check", "."]}[command]
        cases.append(Case("traces", index, f"{how} of {source.name if source else 'a repro'}"
                                           f", {command}", argv, setup))
    return cases


# --------------------------------------------------------- campaign family


def make_campaign(out: Path) -> None:
    save_config(out, CampaignConfig(time_s=30, jobs=1, engine="hypothesis", mutant=MUTANT,
                                    seed=7, started="2026-01-01T00:00:00Z"))
    repro = "findings/violation-no_use_after_free-mmap-0123456789ab.trace"
    raw = "findings/raw/violation-no_use_after_free-mmap-0123456789ab.trace"
    lines = [
        {"kind": "start", "t": 0.0, "at": "2026-01-01T00:00:00Z", "config": {}},
        {"kind": "worker", "t": 0.5, "at": "2026-01-01T00:00:00Z", "worker": 0,
         "engine": "hypothesis", "event": "started", "detail": "pid 1, seed 2"},
        {"kind": "progress", "t": 10.0, "at": "2026-01-01T00:00:10Z",
         "engines": {"hypothesis": {"workers": 1, "execs": 40, "steps": 900,
                                    "execs_per_s": 4.0, "steps_per_s": 90.0}},
         "coverage": {"lines": 50.5, "branches": 40.25}, "corpus": 3, "findings": 1,
         "rss_mb": {"0": 120.5}},
        {"kind": "finding", "t": 12.0, "at": "2026-01-01T00:00:12Z",
         "signature": "violation/no_use_after_free/mmap", "path": repro, "raw": raw,
         "engine": "hypothesis", "worker": 0, "lines": 3},
        {"kind": "stop", "t": 20.0, "at": "2026-01-01T00:00:20Z", "reason": "interrupted"},
    ]
    (out / layout.STATS).write_text("".join(json.dumps(x) + "\n" for x in lines))
    for part in (layout.RAW, layout.TRACE_CORPUS, layout.ATHERIS_CORPUS, layout.HYPOTHESIS_DB,
                 "workers/0/findings"):
        (out / part).mkdir(parents=True)
    (out / repro).write_text(REPRO)
    (out / raw).write_text(REPRO)
    (out / layout.TRACE_CORPUS / "hypothesis-trace-0123456789ab.trace").write_text(
        REPRO.replace("# signature: violation/no_use_after_free/mmap\n", ""))
    (out / layout.ATHERIS_CORPUS / "seed").write_bytes(b"\x01\x02\x03")
    (out / "workers" / "0.log").write_text("=== mirrorfuzz: worker 0\n")
    (out / "workers" / "0" / "findings" / "left.trace").write_text(REPRO)


def campaign_cases(rng: random.Random, count: int) -> list[Case]:
    template = Path(os.environ.get("TMPDIR", "/tmp")) / f"mirrorfuzz-hostile-template-{os.getpid()}"
    shutil.rmtree(template, ignore_errors=True)
    template.mkdir(parents=True)
    make_campaign(template)
    targets = sorted((str(p.relative_to(template)), p.is_dir()) for p in template.rglob("*"))
    shutil.rmtree(template)
    file_hows = ("truncate", "corrupt", "corrupt", "absurd", "absurd", "empty", "dir", "fifo",
                 "zero", "null", "dangling", "delete", "deep", "huge", "victim")
    dir_hows = ("empty-file", "fifo", "zero", "dangling", "delete")
    cases = []
    for index in range(count):
        target, is_dir = rng.choice(targets)
        how = rng.choice(dir_hows if is_dir else file_hows)
        if how == "victim" and (target == layout.STATS or target.endswith(".log")):
            how = "corrupt"  # the coordinator appends to these: a link to a file outside
            # is written through, as a link is meant to be
        command = rng.choice(("report", "resume", "resume", "promote"))
        case_rng = random.Random(rng.randrange(1 << 30))

        def setup(out: Path, victim: Path, target: str = target, how: str = how,
                  case_rng: random.Random = case_rng) -> None:
            make_campaign(out)
            if how == "empty-file":
                shutil.rmtree(out / target)
                (out / target).write_bytes(b"")
            else:
                replace_path(out / target, how, case_rng, victim)

        argv = {"report": ["report", "."],
                "resume": ["campaign", "--resume", ".", "--time", "0.3s"],
                "promote": ["promote", "."]}[command]
        cases.append(Case("campaigns", index, f"{target} {how}, {command}", argv, setup))
    return cases


# -------------------------------------------------------- argument family

NUMBERS = ("0", "1", "-1", "9" * 400, "1e400", "nan", "inf", "", " ", "0x10", "\u0663",
           "99999999999999999999", "3.5", "+5", "5s", "1d", "400d", "10000", "2")
PATHS = ("good.trace", "dir", "fifo", "devnull", "/dev/null", "x" * 300, "", "missing/x",
         "dangling", "file.txt", "\x01bad", "a\nb", "zero", ".", "camp", "-")
DBS = ("", "/dev/null", "file.txt", "redis://[::1", "ftp://x", "redis://", "redis://h:0",
       "redis://h/abc", "redis://h/1?x=1", "dir", "x" * 300, "redis://u:pw@h:99999")
MUTANTS = (MUTANT, "typo", "", "x" * 300, "free_at_invalidate_start ")
TIMES = ("x", "0", "-1", "9" * 400, "1e400", "nan", "400d", "0.3s", "", "5q")


def _arguments(out: Path, victim: Path) -> None:
    (out / "good.trace").write_text(REPRO)
    (out / "file.txt").write_text("plain\n")
    (out / "dir").mkdir()
    (out / "dir" / "a.trace").write_text(REPRO)
    os.mkfifo(out / "fifo")
    (out / "devnull").symlink_to("/dev/null")
    (out / "zero").symlink_to("/dev/zero")
    (out / "dangling").symlink_to(victim / "missing")
    (out / "camp").mkdir()
    make_campaign(out / "camp")


def argument_cases(rng: random.Random, count: int) -> list[Case]:
    cases = []

    def maybe(flag: str, pool: tuple[str, ...], p: float = 0.5) -> list[str]:
        return [flag, rng.choice(pool)] if rng.random() < p else []

    for index in range(count):
        command = rng.choice(("replay", "minimize", "corpus", "campaign", "campaign", "report",
                              "promote", "mutants", "junk"))
        if command == "replay":
            argv = ["replay", *maybe("--impl", ("auto", "both", "nope", "")),
                    *maybe("--observe-every", NUMBERS), *maybe("--budget", NUMBERS),
                    *maybe("--mutant", MUTANTS), "-q", rng.choice(PATHS)]
        elif command == "minimize":
            argv = ["minimize", *maybe("-o", PATHS), "--max-runs",
                    rng.choice(("5", "0", "-1", "9" * 400, "x")), *maybe("--budget", NUMBERS),
                    *maybe("--mutant", MUTANTS, 0.8), rng.choice(PATHS)]
        elif command == "corpus":
            argv = ["corpus", "check", rng.choice(PATHS)]
        elif command == "campaign":
            argv = ["campaign", "--time", rng.choice(TIMES),
                    *maybe("--out", PATHS + ("new", "new/deeper")),
                    *maybe("--jobs", NUMBERS), *maybe("--engine", ("hypothesis", "x", "")),
                    *maybe("--seed", NUMBERS), *maybe("--db", DBS),
                    *maybe("--hang", TIMES), *maybe("--rss-limit", NUMBERS),
                    *maybe("--mutant", MUTANTS), *maybe("--resume", PATHS, 0.3)]
            if "--engine" not in argv and "--resume" not in argv:
                argv += ["--engine", "hypothesis"]
            if "--jobs" not in argv and "--resume" not in argv:
                argv += ["--jobs", "1"]
        elif command == "report":
            argv = ["report", rng.choice(PATHS)]
        elif command == "promote":
            argv = ["promote", rng.choice(PATHS), *maybe("--to", PATHS),
                    *rng.choice(([], ["--all"], ["nope"], ["x" * 300]))]
        elif command == "mutants":  # always one bad argument: a good set hunts for minutes
            argv = ["mutants", "--time", rng.choice(("x", "0", "-1", "9" * 400, "nan", "1e400")),
                    *maybe("--engine", ("hypothesis", "x", "")),
                    *maybe("--seed", NUMBERS), *maybe("--mutant", MUTANTS),
                    *maybe("--out", PATHS)]
        else:
            argv = rng.choice((["frobnicate"], [], ["--", "replay"], ["replay"],
                               ["\u00e9", "x"], ["campaign", "--bogus"], ["-h", "-x"]))
        cases.append(Case("arguments", index, f"{command} arguments", argv, _arguments))
    return cases


# -------------------------------------------------------------------- tests


@pytest.fixture(scope="module", autouse=True)
def repository_unchanged() -> object:
    before = {str(p): p.read_bytes() for p in sorted((REPO / "corpus").rglob("*"))
              if p.is_file()}
    yield
    after = {str(p): p.read_bytes() for p in sorted((REPO / "corpus").rglob("*"))
             if p.is_file()}
    assert after == before, "the repository's corpus changed"


def test_mutated_traces(tmp_path: Path) -> None:
    run_family(trace_cases(random.Random(SEED), COUNTS["traces"]), tmp_path)


def test_mutated_campaign_directories(tmp_path: Path) -> None:
    run_family(campaign_cases(random.Random(SEED + 1), COUNTS["campaigns"]), tmp_path)


def test_mutated_arguments(tmp_path: Path) -> None:
    run_family(argument_cases(random.Random(SEED + 2), COUNTS["arguments"]), tmp_path)
