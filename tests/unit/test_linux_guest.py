"""Linux in the loop, the parts that need no kernel, QEMU or root: the guest
runner and every export of the conformance traces compile with
``gcc -Wall -Werror -static``; the runner's line parser agrees with the Python
printer on the whole corpus; a golden test pins one export; the runner's CPU
ops run on the host kernel.  Skipped when gcc or a static libc is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fuzz.cli import main
from fuzz.linux import export, kernel, optable
from fuzz.linux.replay import parse_output
from fuzz.safeio import load_trace
from fuzz.trace import format_trace, parse_trace

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "corpus").glob("*/*.trace")) + sorted(
    (ROOT / "examples" / "traces").glob("*.trace"))
CONFORMANCE = sorted((ROOT / "corpus" / "conformance").glob("*.trace"))
GOLDEN = Path(__file__).parent / "data" / "linux" / "snapshot_export.c"
NOT_EXPORTABLE = {
    "anon_teardown": "threads",
    "migrate_multiple": "device-frames",
    "migrate_release": "evict",
}


def _static_gcc() -> bool:
    if shutil.which("gcc") is None:
        return False
    out = subprocess.run(["gcc", "-print-file-name=libc.a"], capture_output=True, text=True,
                         check=False)
    return Path(out.stdout.strip()).is_file()


needs_gcc = pytest.mark.skipif(not _static_gcc(), reason="gcc with a static libc is missing")


def _compile(src: Path, out: Path) -> None:
    res = subprocess.run(["gcc", "-static", "-O1", "-Wall", "-Werror", "-pthread",
                          f"-I{kernel.LINUX_DIR}/guest", "-o", str(out), str(src)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def mfrun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _static_gcc():
        pytest.skip("gcc with a static libc is missing")
    out = tmp_path_factory.mktemp("guest") / "mfrun"
    _compile(kernel.LINUX_DIR / "guest" / "mfrun.c", out)
    return out


def test_optable_is_current() -> None:
    assert optable.HEADER.read_text() == optable.render(), \
        "run python -m fuzz.linux.optable"


@needs_gcc
@pytest.mark.parametrize("source", ["guest/init.c", "repro/hmm-race.c", "repro/close-beside.c"])
def test_guest_programs_compile(source: str, tmp_path: Path) -> None:
    _compile(kernel.LINUX_DIR / source, tmp_path / "prog")


def test_parse_only_matches_python_printer(mfrun: Path) -> None:
    res = subprocess.run([str(mfrun), "--parse-only", *map(str, CORPUS)], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 0, res.stderr
    expected = "".join(format_trace(parse_trace(p.read_text(), str(p))) for p in CORPUS)
    assert res.stdout == expected


@pytest.mark.parametrize("text, message", [
    ("# mirrorfuzz-trace 1\nfrob P0\n", "unknown op 'frob'"),
    ("# mirrorfuzz-trace 1\nread P0\n", "'read' takes 2 to 2 arguments, got 1"),
    ("# mirrorfuzz-trace 1\nread D0 1\n", "argument 'p': bad value 'D0'"),
    ("# mirrorfuzz-trace 1\nread P0 1 => bogus\n", "unknown result"),
    ("not a trace\n", "not a mirrorfuzz trace"),
])
def test_parse_only_rejects_malformed(mfrun: Path, tmp_path: Path, text: str,
                                      message: str) -> None:
    path = tmp_path / "bad.trace"
    path.write_text(text)
    res = subprocess.run([str(mfrun), "--parse-only", str(path)], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 2
    assert message in res.stderr


def test_parse_only_canonicalizes(mfrun: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    path.write_text("# mirrorfuzz-trace 1\n# title:   x  \n  write   P0  007 -0 =>  ok\r\n"
                    "T1 =  read P0 5\n   \nstep T1 => done 0\n")
    res = subprocess.run([str(mfrun), "--parse-only", str(path)], capture_output=True,
                         text=True, check=False)
    assert res.stdout == format_trace(parse_trace(path.read_text()))


def test_runner_cpu_ops_on_the_host(mfrun: Path, tmp_path: Path) -> None:
    path = tmp_path / "cpu.trace"
    path.write_text("\n".join([
        "# mirrorfuzz-trace 1", "mmap P0 0 16 rw private", "write P0 3 7", "fork P0",
        "write P1 3 9", "read P0 3", "read P1 3", "exit P1", "read P1 3", "read P0 99",
        "mprotect P0 0 4 r", "write P0 1 5", "write_range P0 4 3 10 -1", "read_range P0 3 4",
        "mremap P0 4 2 100", "read_range P0 100 2", "munmap P0 0 1", "read P0 0",
        "reg D0 0 1 rw", ""]))
    res = subprocess.run([str(mfrun), str(path)], capture_output=True, text=True, check=False,
                         timeout=60)
    runs = parse_output(res.stdout)
    run = runs[str(path)]
    assert run.results == ["ok", "ok", "P1", "ok", "7", "9", "ok", "ESRCH", "SIGSEGV", "ok",
                           "SIGSEGV", "ok", "values 7 10 9 8", "ok", "values 10 9", "ok",
                           "SIGSEGV"]
    assert run.status == "refused line 19: op 'reg' has no Linux counterpart"


def test_runner_races_on_the_host(mfrun: Path, tmp_path: Path) -> None:
    """Each racer loops in its own thread; more racers than the runner has threads for is
    refused, not cut short."""
    for racers, want in ((32, "ok"), (33, "refused line 35: more than 32 racer lines")):
        path = tmp_path / f"race{racers}.trace"
        lines = [f"T{i} = {'read' if i % 2 else 'write'} P0 {i % 4}{'' if i % 2 else ' 5'}"
                 for i in range(1, racers + 1)]
        path.write_text("\n".join(["# mirrorfuzz-trace 1", "mmap P0 0 4 rw private", *lines,
                                   ""]))
        res = subprocess.run([str(mfrun), "--race", "0.2", str(path)], capture_output=True,
                             text=True, check=False, timeout=60)
        run = parse_output(res.stdout)[str(path)]
        assert run.status == want
        assert len(run.races) == (racers if want == "ok" else 0)
        assert all(re.search(r": \d+ runs:", line) for line in run.races)


def test_runner_race_words_on_the_host(mfrun: Path, tmp_path: Path) -> None:
    """The racers' words (``# race-seen``, ``# race-words``) parse, and a race of two
    threads each writing and reading its own pages gives no impossible result on the
    host's kernel."""
    from fuzz.linux import provenance
    from fuzz.linux.replay import race_verdict

    path = tmp_path / "words.trace"
    path.write_text("\n".join([
        "# mirrorfuzz-trace 1", "mmap P0 0 8 rw private", "write_range P0 0 4 1 1",
        "read_range P0 0 2", "T1 = write_range P0 4 4 10 -3", "T2 = read_range P0 0 8",
        "T3 = read P0 2", "T4 = madvise P0 4 2 dontneed", "T5 = write P0 3 -9", ""]))
    res = subprocess.run([str(mfrun), "--race", "0.3", str(path)], capture_output=True,
                         text=True, check=False, timeout=60)
    run = parse_output(res.stdout)[str(path)]
    assert run.status == "ok" and run.results == ["ok", "ok", "values 1 2"]
    report = provenance.parse(run.races, run.race_seen, run.race_words)
    assert report.complete == {0, 1, 2, 3, 4} and not report.capped
    assert report.summaries[2].kinds.keys() == {"word"}
    assert report.seen[(2, "value", 2, 3)] == report.summaries[2].runs
    assert {(p, w) for (r, _, p, w) in report.seen if r == 1} >= {(0, 1), (4, 10), (7, 1)}
    assert {(r, s, p, w) for (r, s, p, w) in report.seen if report.seen[(r, s, p, w)] is None} \
        == set(), "every word seen is counted in the summary"
    seen_lines = {tuple(line.split()) for line in run.race_seen}
    assert seen_lines == {(str(r), s, str(p), str(w)) for (r, s, p, w) in report.seen}
    verdict = race_verdict(load_trace(path), run, [], 1.0)
    assert not verdict.confirmed and verdict.impossible == [] and verdict.note is None


def test_exportable_conformance() -> None:
    for path in CONFORMANCE:
        problems = export.problems(load_trace(path))
        if path.stem in NOT_EXPORTABLE:
            assert problems and NOT_EXPORTABLE[path.stem] in problems[0][1], path
        else:
            assert problems == [], path


@needs_gcc
@pytest.mark.parametrize("path", [p for p in CONFORMANCE if p.stem not in NOT_EXPORTABLE],
                         ids=lambda p: p.stem)
def test_every_conformance_export_compiles(path: Path, tmp_path: Path) -> None:
    src = tmp_path / f"{path.stem}.c"
    assert main(["export-c", str(path), "-o", str(src)]) == 0
    _compile(src, tmp_path / path.stem)
    # no /dev/hmm_dmirror0 on the host: the test skips (kselftest's 4)
    if not Path("/dev/hmm_dmirror0").exists():
        res = subprocess.run([str(tmp_path / path.stem)], capture_output=True, text=True,
                             check=False, timeout=60)
        assert res.returncode == 4 and "SKIP" in res.stdout


@needs_gcc
def test_cpu_only_export_runs_on_the_host(tmp_path: Path) -> None:
    trace = tmp_path / "cpu.trace"
    trace.write_text("\n".join([
        "# mirrorfuzz-trace 1", "mmap P0 0 16 rw private", "write P0 3 7", "fork P0",
        "write P1 3 9", "read P0 3", "read P1 3", "fork P1", "read P2 3", "exit P1",
        "read P1 3", "read P2 3", "read P0 99", "mprotect P0 0 4 r", "write P0 1 5",
        "write_range P0 4 3 10 -1", "read_range P0 3 4", "mremap P0 4 2 100",
        "read_range P0 100 2", "munmap P0 0 1", "read P0 0", ""]))
    src = tmp_path / "cpu.c"
    assert main(["export-c", str(trace), "-o", str(src)]) == 0
    _compile(src, tmp_path / "cpu")
    res = subprocess.run([str(tmp_path / "cpu")], capture_output=True, text=True, check=False,
                         timeout=60)
    assert res.returncode == 0, res.stdout
    assert res.stdout.splitlines()[-1] == "ok 1 cpu"
    assert "# line 6: read P1 3 => 9" in res.stdout


def test_golden_export(tmp_path: Path) -> None:
    src = tmp_path / "snapshot_export.c"
    assert main(["export-c", str(ROOT / "corpus" / "conformance" / "snapshot.trace"),
                 "-o", str(src)]) == 0
    assert src.read_text() == GOLDEN.read_text(), \
        f"the export changed: if intended, copy {src} to {GOLDEN}"


@pytest.mark.parametrize("args, message", [
    (["export-c", "/nonexistent.trace", "-o", "x.c"], "no such file"),
    (["export-c", "corpus/conformance/migrate_release.trace", "-o", "/tmp/x.c"],
     "not exportable: op 'evict' has no Linux counterpart"),
    (["export-c", "corpus/conformance/snapshot.trace", "-o", "/nonexistent/x.c"],
     "not a directory"),
    (["kernel", "run", "/nonexistent-prog"], ""),
    (["kernel", "run", "--timeout", "-1", "x"], "expected seconds"),
])
def test_bad_input_is_one_line(args: list[str], message: str,
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirrorfuzz: error: ") and err.count("\n") == 1
    assert message in err


def test_config_check(tmp_path: Path) -> None:
    config = tmp_path / ".config"
    config.write_text("CONFIG_A=y\n# CONFIG_B is not set\n")
    frag = tmp_path / "f.config"
    frag.write_text("# comment\nCONFIG_A=y\nCONFIG_C=y\n# CONFIG_B is not set\n")
    assert kernel.check_config(config, [frag]) == ["CONFIG_C=y"]


def test_cache_key_and_initramfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kernel.cache_root() == tmp_path / "mirrorfuzz" / "kernel"
    assert kernel.config_hash(False) != kernel.config_hash(True)
    out = tmp_path / "ir.gz"
    kernel.make_initramfs(out, {"init": kernel.LINUX_DIR / "guest" / "init.c", "x": b"data"})
    if shutil.which("cpio"):
        listing = subprocess.run(f"zcat {out} | cpio -t", shell=True, capture_output=True,
                                 text=True, check=False).stdout.split()
        assert {"init", "x", "dev", "tmp"} <= set(listing)


def test_parse_output_and_compare(tmp_path: Path) -> None:
    from fuzz.linux.replay import compare

    path = tmp_path / "t.trace"
    path.write_text("# mirrorfuzz-trace 1\nmmap P0 0 4 rw private\nwrite P0 1 5\nread P0 1\n")
    trace = load_trace(path)
    out = (f"noise\n# trace: {path}\nmmap P0 0 4 rw private => ok\nwrite P0 1 5 => ok\n"
           f"read P0 1 => 6\n# end: {path} ok\n")
    run = parse_output(out)[str(path)]
    assert run.results == ["ok", "ok", "6"] and run.status == "ok"
    c = compare(trace, run)
    assert c.status == "disagree" and c.detail == ["line 4: read P0 1: Linux 6, model 5"]
    cut = parse_output(f"# trace: {path}\nmmap P0 0 4 rw private => ok\n")[str(path)]
    assert compare(trace, cut).status == "error"


def test_generated_traces_are_exportable() -> None:
    from fuzz.linux.generate import generate

    traces = generate(30, 7, 16)
    assert len(traces) == 30
    assert all(export.exportable(t) for t in traces)
