"""The OSS-Fuzz / ClusterFuzzLite build: build.sh in a dry run, and what it leaves in $OUT.

The build scripts run as the services run them (``bash build.sh`` with $SRC,
$OUT and $WORK set, the checkout at ``$SRC/mirrorfuzz``), with stubs for the
two commands only the builder image has (``compile_python_fuzzer``,
PyInstaller) or that would install (``pip3``); each stub records its
arguments.  Everything else is real: the dictionary, the options and the seed
corpus zip, whose every entry must decode to a corpus trace that the target
runs clean.
"""

from __future__ import annotations

import configparser
import importlib.util
import io
import os
import shlex
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from fuzz import fuzz_trace, ossfuzz
from fuzz.codec import encode
from fuzz.fuzz_trace import TargetConfig, TestOneInput, TraceFinding
from fuzz.seeds import seed_name, trace_paths
from fuzz.trace import load_trace

ROOT = Path(__file__).resolve().parents[2]
CFLITE = ROOT / ".clusterfuzzlite"
OSSFUZZ = ROOT / "oss-fuzz"
ENTRY = CFLITE / "fuzz_trace.py"
"""The script build.sh bundles: fuzz/fuzz_trace.py's main, imported as a module."""
BUILDS = {"clusterfuzzlite": CFLITE / "build.sh", "oss-fuzz": OSSFUZZ / "build.sh"}
TARGET_FILES = {"fuzz_trace.dict", "fuzz_trace.options", "fuzz_trace_seed_corpus.zip"}
HAS_ATHERIS = importlib.util.find_spec("atheris") is not None


@dataclass
class Build:
    done: subprocess.CompletedProcess[str]
    src: Path
    out: Path
    calls: Path

    def called(self, name: str) -> list[list[str]]:
        """Each recorded call of the stub ``name``: its working directory, then its arguments."""
        path = self.calls / name
        if not path.exists():
            return []
        return [shlex.split(line) for line in path.read_text().splitlines()]


def _stub(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def run_build(script: Path, tmp: Path, compile_status: int = 0) -> Build:
    src, out, work, bin_dir, calls = (tmp / n for n in ("src", "out", "work", "bin", "calls"))
    for d in (src, out, work, bin_dir, calls):
        d.mkdir(parents=True)
    (src / "mirrorfuzz").symlink_to(ROOT, target_is_directory=True)
    record = 'printf "%s" "$(pwd)"; for a in "$@"; do printf " %s" "$a"; done; echo'
    _stub(bin_dir / "pip3", f'({record}) >> "{calls}/pip3"')
    _stub(bin_dir / "compile_python_fuzzer",
          f'({record}) >> "{calls}/compile_python_fuzzer"\nexit {compile_status}')
    # python3 is the interpreter running the tests (the image's has the package installed)
    _stub(bin_dir / "python3", f'exec "{sys.executable}" "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "SRC": str(src), "OUT": str(out), "WORK": str(work), "HOME": str(tmp),
           "SANITIZER": "address", "FUZZING_LANGUAGE": "python"}
    done = subprocess.run(["bash", str(script)], cwd=tmp, env=env, text=True,
                          capture_output=True, timeout=300, check=False)
    return Build(done, src, out, calls)


@pytest.fixture(scope="module")
def cflite(tmp_path_factory: pytest.TempPathFactory) -> Build:
    return run_build(BUILDS["clusterfuzzlite"], tmp_path_factory.mktemp("cflite"))


def _ok(build: Build) -> None:
    assert build.done.returncode == 0, build.done.stdout + build.done.stderr


def test_build_installs_the_package_and_compiles_the_target(cflite: Build) -> None:
    _ok(cflite)
    checkout = str(cflite.src / "mirrorfuzz")
    assert cflite.called("pip3") == [[checkout, "install", "."]]
    (compiled,) = cflite.called("compile_python_fuzzer")
    assert compiled[0] == checkout and compiled[1] == ENTRY.relative_to(ROOT).as_posix()
    assert ENTRY.name == "fuzz_trace.py"  # the bundle is named after it: $OUT/fuzz_trace
    # fuzz_trace imports atheris and the judged modules by name: PyInstaller must be told
    assert {"--hidden-import=atheris", "--collect-submodules=fuzz",
            "--collect-submodules=model"} <= set(compiled[2:])
    assert {p.name for p in cflite.out.iterdir()} == TARGET_FILES


def test_build_copies_the_dictionary(cflite: Build) -> None:
    _ok(cflite)
    assert (cflite.out / "fuzz_trace.dict").read_bytes() == (
        ROOT / "fuzz" / "fuzz_trace.dict").read_bytes()


def _options(out: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read_string((out / "fuzz_trace.options").read_text())
    assert parser.sections() == ["libfuzzer"]
    return parser["libfuzzer"]


def test_build_writes_options_naming_the_dictionary(cflite: Build) -> None:
    _ok(cflite)
    options = _options(cflite.out)
    assert set(options) == {"dict", "max_len", "rss_limit_mb"}
    assert (cflite.out / options["dict"]).is_file()  # relative to the target, in $OUT
    with zipfile.ZipFile(cflite.out / "fuzz_trace_seed_corpus.zip") as archive:
        largest = max(info.file_size for info in archive.infolist())
    assert int(options["max_len"]) >= max(largest, ossfuzz.MAX_LEN)
    assert int(options["rss_limit_mb"]) == ossfuzz.RSS_LIMIT_MB


def test_every_seed_in_the_zip_is_a_corpus_trace_that_runs_clean(
        cflite: Build, tmp_path: Path) -> None:
    _ok(cflite)
    expected = {}
    for path in trace_paths([ROOT / "corpus"]):
        try:
            expected[seed_name(path)] = encode(load_trace(str(path)))
        except ValueError:
            continue  # not encodable: --make-seeds skips it, and says so
    with zipfile.ZipFile(cflite.out / "fuzz_trace_seed_corpus.zip") as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        seeds = {name: archive.read(name) for name in names}
    assert names == sorted(names) and len(names) >= 50
    assert seeds == expected
    findings = tmp_path / "findings"
    fuzz_trace.configure(TargetConfig(sides="both", findings=findings))
    try:
        for name, data in seeds.items():
            try:
                TestOneInput(data)
            except TraceFinding as exc:
                pytest.fail(f"seed {name}: {str(exc).splitlines()[0]}")
    finally:
        fuzz_trace.configure(None)
    assert not findings.exists()


def test_the_oss_fuzz_build_gives_the_same_files(cflite: Build, tmp_path: Path) -> None:
    _ok(cflite)
    build = run_build(BUILDS["oss-fuzz"], tmp_path)
    _ok(build)
    (compiled,) = build.called("compile_python_fuzzer")
    assert compiled[0] == str(build.src / "mirrorfuzz")
    assert compiled[1:] == cflite.called("compile_python_fuzzer")[0][1:]
    for name in TARGET_FILES:  # the zip too: fixed names, order and dates
        assert (build.out / name).read_bytes() == (cflite.out / name).read_bytes(), name


def test_a_failing_step_fails_the_build(tmp_path: Path) -> None:
    build = run_build(BUILDS["clusterfuzzlite"], tmp_path, compile_status=3)
    assert build.done.returncode != 0
    assert not (build.out / "fuzz_trace_seed_corpus.zip").exists()


@pytest.mark.skipif(not HAS_ATHERIS, reason="atheris is not installed")
def test_libfuzzer_takes_the_options_dictionary_and_seeds(cflite: Build, tmp_path: Path) -> None:
    _ok(cflite)
    options = _options(cflite.out)
    seeds = tmp_path / "seeds"
    with zipfile.ZipFile(cflite.out / "fuzz_trace_seed_corpus.zip") as archive:
        # a few seeds are enough here: every seed runs in-process above
        archive.extractall(seeds, members=archive.namelist()[::12])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    flags = [f"-dict={cflite.out / options['dict']}", f"-max_len={options['max_len']}",
             f"-rss_limit_mb={options['rss_limit_mb']}", "-runs=0"]
    # through the entry point the bundle runs (the image has the package installed)
    done = subprocess.run(
        [sys.executable, str(ENTRY), *flags, str(corpus), str(seeds)],
        cwd=tmp_path, text=True, capture_output=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT),
             "MIRRORFUZZ_FINDINGS": str(tmp_path / "findings")})
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Dictionary: " in log and "ParseDictionaryFile" not in log
    assert f"files found in {seeds}" in log and "DONE" in log
    assert not (tmp_path / "findings").exists()


def test_the_entry_point_runs_fuzz_trace_main(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ENTRY), "--make-seeds", str(tmp_path / "seeds")],
        cwd=ROOT, text=True, capture_output=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "seeds").iterdir())
    assert done.stdout.startswith(f"fuzz_trace: wrote {len(written)} seeds")
    assert len(written) >= 50
    assert set(written) <= {seed_name(p) for p in trace_paths([ROOT / "corpus"])}


# ------------------------------------------------------------- the helper CLI


def test_seeds_zip_without_seeds_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for args in (["seeds-zip", "--from", str(tmp_path / "empty"), str(tmp_path / "a.zip")],
                 ["seeds-zip", "--from", str(tmp_path / "missing"), str(tmp_path / "a.zip")],
                 ["options", "--seeds", str(tmp_path / "empty"), str(tmp_path / "a.options")]):
        assert ossfuzz.main(args) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("ossfuzz: "), err
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "a.options").exists()


def test_seeds_zip_makes_the_seeds_itself_when_not_given_them(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "seeds").mkdir(parents=True)
    source = ROOT / "corpus" / "seeds" / "errno_precedence.trace"
    (corpus / "seeds" / source.name).write_text(source.read_text())
    names = ossfuzz.write_seed_zip(tmp_path / "out.zip", sources=[corpus])
    assert names == ["seeds-errno_precedence.seed"]
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert archive.read(names[0]) == encode(load_trace(str(source)))
        assert archive.getinfo(names[0]).date_time == ossfuzz.ZIP_DATE


def test_options_text() -> None:
    text = ossfuzz.options_text(max_len=5000, rss_limit_mb=3000)
    parser = configparser.ConfigParser()
    parser.read_file(io.StringIO(text))
    assert dict(parser["libfuzzer"]) == {"dict": "fuzz_trace.dict", "max_len": "5000",
                                         "rss_limit_mb": "3000"}


def test_the_service_files_say_what_the_services_need() -> None:
    for directory in (CFLITE, OSSFUZZ):
        project = (directory / "project.yaml").read_text().splitlines()
        assert "language: python" in project
        assert "  - libfuzzer" in project and "  - address" in project
        dockerfile = (directory / "Dockerfile").read_text()
        assert "FROM gcr.io/oss-fuzz-base/base-builder-python" in dockerfile.splitlines()
        assert "WORKDIR $SRC/mirrorfuzz" in dockerfile and "$SRC/" in dockerfile
        assert (directory / "build.sh").read_text().startswith("#!/bin/bash -eu\n")
        assert os.access(directory / "build.sh", os.X_OK)
    assert "COPY . $SRC/mirrorfuzz" in (CFLITE / "Dockerfile").read_text()
    workflow = (ROOT / ".github" / "workflows" / "cflite_pr.yml").read_text()
    for needed in ("google/clusterfuzzlite/actions/build_fuzzers@v1",
                   "google/clusterfuzzlite/actions/run_fuzzers@v1",
                   "language: python", "mode: 'code-change'", "pull_request:"):
        assert needed in workflow, needed
