"""The Atheris target: clean inputs pass, a finding raises with its readable trace."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz import fuzz_trace
from fuzz.codec import decode, encode
from fuzz.executor import Settings, run_trace
from fuzz.fuzz_trace import TargetConfig, TestOneInput, TraceFinding
from fuzz.impls import sides
from fuzz.seeds import make_seeds
from fuzz.trace import format_trace, load_trace

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "fuzz" / "fuzz_trace.py"
MUTANT = "userptr_keep_pins"
CAUGHT = ROOT / "corpus" / "seeds" / "drain_completes_job_unblocking_munmap.trace"
"""A seed whose run differs under MUTANT (the optimized side keeps its pins)."""
HAS_ATHERIS = importlib.util.find_spec("atheris") is not None


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    findings = tmp_path / "findings"
    fuzz_trace.configure(TargetConfig(sides="both", findings=findings))
    yield findings
    fuzz_trace.configure(None)


def _seed_bytes(*names: str) -> list[bytes]:
    return [encode(load_trace(str(ROOT / "corpus" / name))) for name in names]


def test_seed_inputs_run_clean(target: Path) -> None:
    for data in _seed_bytes("seeds/enomem_at_two_frames.trace", "seeds/errno_precedence.trace",
                            "seeds/reclaim_fork_swapin.trace", "conformance/migrate.trace"):
        TestOneInput(data)
    assert not target.exists()


def test_random_bytes_run_clean(target: Path) -> None:
    rng = random.Random(4)
    for size in (0, 1, 7, 50, 200, 600):
        TestOneInput(rng.randbytes(size))


def test_a_finding_raises_with_signature_and_trace(target: Path) -> None:
    # observe_every=1: with 8 the divergence of this short trace is never observed
    fuzz_trace.configure(TargetConfig(sides="both", mutant=MUTANT, observe_every=1,
                                      findings=target))
    data = encode(load_trace(str(CAUGHT)))
    expected = run_trace(decode(data), sides("both"), Settings(observe_every=1, mutant=MUTANT))
    assert expected.finding is not None
    with pytest.raises(TraceFinding) as caught:
        TestOneInput(data)
    exc = caught.value
    message = str(exc)
    assert exc.signature == expected.finding.signature
    assert message.splitlines()[0] == f"mirrorfuzz finding {exc.signature}"
    for line in format_trace(decode(data)).splitlines()[1:]:
        assert line in message  # the whole trace, readable
    # the readable trace file replays to the same finding
    assert exc.path is not None and exc.path.parent == target
    saved = load_trace(str(exc.path))
    assert saved.header("signature") == exc.signature
    assert f"--mutant {MUTANT}" in exc.path.read_text()
    again = run_trace(saved, sides("both"), Settings(observe_every=1, mutant=MUTANT))
    assert again.finding is not None and again.finding.signature == exc.signature


def test_without_the_mutant_the_same_input_passes(target: Path) -> None:
    TestOneInput(encode(load_trace(str(CAUGHT))))


def test_finding_path_is_beside_the_artifact() -> None:
    data = b"\x01\x02"
    sha1 = hashlib.sha1(data).hexdigest()
    config = TargetConfig(artifact_prefix="out/art-")
    assert fuzz_trace.finding_path(data, "a/b/c", config) == Path(f"out/art-crash-{sha1}.trace")
    assert fuzz_trace.finding_path(data, "a/b/c", TargetConfig()) is None
    inside = TargetConfig(findings=Path("f"), artifact_prefix="x/")
    assert fuzz_trace.finding_path(data, "a/b/c", inside) == Path(f"f/a-b-c-{sha1[:16]}.trace")


def test_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRRORFUZZ_SIDES", "reference")
    monkeypatch.setenv("MIRRORFUZZ_MUTANT", "m")
    monkeypatch.setenv("MIRRORFUZZ_OBSERVE_EVERY", "3")
    monkeypatch.delenv("MIRRORFUZZ_FINDINGS", raising=False)
    config = TargetConfig.from_env()
    assert (config.sides, config.mutant, config.observe_every, config.findings) == (
        "reference", "m", 3, None)
    assert config.settings().observe_every == 3 and config.settings().mutant == "m"


def test_split_flags_keeps_libfuzzer_flags() -> None:
    ours, rest = fuzz_trace.split_flags(
        ["prog", "--mutant=x", "-runs=5", "--make-seeds", "d", "--sides=reference", "dir",
         "--unknown=1"])
    assert ours == {"mutant": "x", "make-seeds": "d", "sides": "reference"}
    assert rest == ["prog", "-runs=5", "dir", "--unknown=1"]


def test_make_seeds_writes_decodable_corpus_traces(tmp_path: Path) -> None:
    assert fuzz_trace.main(["prog", f"--make-seeds={tmp_path / 's'}"]) == 0
    files = sorted((tmp_path / "s").iterdir())
    traces = sorted(ROOT.joinpath("corpus").rglob("*.trace"))
    assert len(files) == len(traces)
    report = make_seeds(tmp_path / "again", [CAUGHT])
    assert [p.name for p in report.written] == ["seeds-" + CAUGHT.stem + ".seed"]
    original = load_trace(str(CAUGHT))
    assert [s.action for s in decode(report.written[0].read_bytes()).steps] == [
        s.action for s in original.steps]


def test_the_script_is_executable() -> None:
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    assert SCRIPT.stat().st_mode & stat.S_IXUSR


def _run_script(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.mark.skipif(not HAS_ATHERIS, reason="atheris is not installed")
def test_the_script_fuzzes_200_runs(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    make_seeds(seeds, [ROOT / "corpus" / "seeds" / name for name in (
        "errno_precedence.trace", "reg_during_invalidation_is_deferred.trace",
        "dread_commit_retries_after_munmap.trace")])
    (tmp_path / "corpus").mkdir()
    done = _run_script(["-runs=200", "-seed=7", "-max_len=512", "corpus", "seeds"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 200 runs" in done.stderr
    assert any((tmp_path / "corpus").iterdir())  # it kept new inputs


@pytest.mark.skipif(not HAS_ATHERIS, reason="atheris is not installed")
def test_the_script_reports_a_finding_with_its_trace(tmp_path: Path) -> None:
    make_seeds(tmp_path / "seeds", [CAUGHT])
    (tmp_path / "art").mkdir()  # libFuzzer wants the artifact directory to exist
    done = _run_script([f"--mutant={MUTANT}", "--observe-every=1", "-runs=5",
                        "-artifact_prefix=art/", "seeds"], tmp_path)
    assert done.returncode != 0
    log = done.stdout + done.stderr  # atheris prints the exception on stdout
    assert "mirrorfuzz finding divergence/" in log
    crashes = sorted((tmp_path / "art").iterdir())
    assert [p.suffix for p in crashes] == ["", ".trace"]
    assert crashes[1].name == crashes[0].name + ".trace"
    assert f"finding {load_trace(str(crashes[1])).header('signature')}" in log


def test_the_work_cap_cuts_an_input_without_a_finding(target: Path) -> None:
    data = encode(load_trace(str(CAUGHT)))
    before = fuzz_trace.CAPPED[0]
    fuzz_trace.configure(TargetConfig(mutant=MUTANT, observe_every=1, max_work=5, findings=target))
    TestOneInput(data)  # cut before the divergence: judged clean up to the cap
    assert fuzz_trace.CAPPED[0] == before + 1
    fuzz_trace.configure(TargetConfig(mutant=MUTANT, observe_every=1, max_work=0, findings=target))
    with pytest.raises(TraceFinding):
        TestOneInput(data)  # no cap


def test_a_known_finding_is_not_reported_again(
        target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MIRRORFUZZ_KNOWN: a finding whose signature a file there names passes;
    a file added later (after an earlier look at the directory) counts too."""
    fuzz_trace.configure(TargetConfig(sides="both", mutant=MUTANT, observe_every=1,
                                      findings=target))
    data = encode(load_trace(str(CAUGHT)))
    known = tmp_path / "known"
    known.mkdir()
    (known / "other.trace").write_text("# mirrorfuzz-trace 1\n# signature: violation/x/y\n")
    monkeypatch.setenv(fuzz_trace.KNOWN_ENV, str(known))
    with pytest.raises(TraceFinding) as caught:
        TestOneInput(data)
    (known / "same.trace").write_text(
        f"# mirrorfuzz-trace 1\n# signature: {caught.value.signature}\n")
    TestOneInput(data)
