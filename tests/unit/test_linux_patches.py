"""Patched kernels (``--patch FILE``), the parts that need no kernel, QEMU or root: the
cache key, the argument handling of every command that takes ``--patch``, and
``patch -p1`` on a tiny fake source tree (the pristine tree is never written; a patch
that does not apply is a one-line error and nothing is cached)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from fuzz.cli import main
from fuzz.errors import BadInput
from fuzz.linux import kernel
from fuzz.linux.replay import RaceVerdict, print_race

ROOT = Path(__file__).resolve().parents[2]
RACE = ROOT / "corpus" / "repros" / "violation-no_use_after_free-migrate_to_dev-a812593b035d.trace"
VERSION = "6.1.192-3"

needs_patch = pytest.mark.skipif(shutil.which("patch") is None or shutil.which("cp") is None,
                                 reason="GNU patch or cp is missing")

GOOD = """Fixes the greeting.

--- a/lib/hello.c
+++ b/lib/hello.c
@@ -1,3 +1,3 @@
 int main(void)
 {
-\treturn 1;
+\treturn 0;
"""
SECOND = """--- a/lib/hello.c
+++ b/lib/hello.c
@@ -1,4 +1,4 @@
 int main(void)
 {
 \treturn 0;
-}
+} /* patched twice */
"""
STALE = GOOD.replace("return 1", "return 2")  # its context is not in the tree


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, and a source version that does not depend on the host."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(kernel, "source_version", lambda: VERSION)
    return tmp_path / "xdg" / "mirrorfuzz" / "kernel"


@pytest.fixture
def pristine(tmp_path: Path) -> Path:
    tree = tmp_path / "src" / "linux-source-6.1"
    (tree / "lib").mkdir(parents=True)
    (tree / "lib" / "hello.c").write_text("int main(void)\n{\n\treturn 1;\n}\n")
    (tree / "lib" / "other.c").write_text("int other;\n")
    return tree


def _patch(tmp_path: Path, name: str, text: str) -> kernel.Patch:
    path = tmp_path / name
    path.write_text(text)
    return kernel.load_patches([str(path)])[0]


def _files(tree: Path) -> dict[str, str]:
    return {str(p.relative_to(tree)): p.read_text() for p in sorted(tree.rglob("*"))
            if p.is_file()}


# ------------------------------------------------------------------ the cache key


def test_unpatched_key_is_unchanged(cache: Path) -> None:
    for kasan in (False, True):
        assert kernel.kernel_dir(VERSION, kasan) == cache / f"{VERSION}-{kernel.config_hash(kasan)}"
        assert kernel.kernel_dir(VERSION, kasan, ()) == kernel.kernel_dir(VERSION, kasan)


def test_patched_key_is_the_contents_in_order(cache: Path, tmp_path: Path) -> None:
    a, b = _patch(tmp_path, "a.patch", GOOD), _patch(tmp_path, "b.patch", SECOND)
    renamed = _patch(tmp_path, "renamed.patch", GOOD)
    base = kernel.kernel_dir(VERSION, True)
    one = kernel.kernel_dir(VERSION, True, [a])
    assert one.name == f"{base.name}-p{kernel.patches_hash([a])}" and one.parent == cache
    assert kernel.kernel_dir(VERSION, True, [renamed]) == one  # the name does not count
    assert kernel.kernel_dir(VERSION, False, [a]) != one
    both = {kernel.kernel_dir(VERSION, True, p) for p in ([a], [b], [a, b], [b, a])}
    assert len(both) == 4


def test_labels_name_the_patches(tmp_path: Path) -> None:
    a, b = _patch(tmp_path, "a.patch", GOOD), _patch(tmp_path, "b.patch", SECOND)
    assert kernel.label(True) == "KASAN"
    assert kernel.label(False, [a, b]) == "base + a.patch + b.patch"
    assert kernel.Kernel(tmp_path, True, (a,)).label == "KASAN + a.patch"
    out = io.StringIO()
    print_race(RaceVerdict("r.trace", True, ["BUG: KASAN: use-after-free in f+0x1/0x2"],
                           ["dread D0 0 64: 10 runs: values x10,"], 30.0, "ok", "",
                           "KASAN + a.patch"), out)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("CONFIRMED (1 kernel reports, 0 racer lines with impossible "
                           "results, in 10 op runs)")
    assert last.endswith("(30 s wall; kernel KASAN + a.patch)")


# ------------------------------------------------------------------ reading patches


def test_touched_files() -> None:
    text = b"header\n--- a/lib/x.c\t2024\n+++ b/lib/x.c\t2024\n--- /dev/null\n+++ b/new.h\n"
    assert kernel.touched_files(text) == ["lib/x.c", "new.h"]
    for bad in (b"+++ b/../etc/passwd\n", b"+++ /abs/x\n", b"+++ x\n"):
        with pytest.raises(BadInput, match="not a path inside the tree"):
            kernel.touched_files(bad)


def test_load_patches_errors(tmp_path: Path) -> None:
    assert kernel.load_patches(None) == ()
    (tmp_path / "notes.txt").write_text("just text\n")
    with pytest.raises(BadInput, match="no such file"):
        kernel.load_patches([str(tmp_path / "absent.patch")])
    with pytest.raises(BadInput, match="not a unified diff"):
        kernel.load_patches([str(tmp_path / "notes.txt")])
    with pytest.raises(BadInput, match="not a regular file"):
        kernel.load_patches([str(tmp_path)])


def test_project_patches_parse() -> None:
    for path in sorted((ROOT / "linux" / "patches").glob("*.patch")):
        (patch,) = kernel.load_patches([str(path)])
        assert kernel.touched_files(patch.data) == ["lib/test_hmm.c"], path
        assert patch.data.splitlines()[0].startswith(b"lib/test_hmm: "), path


# ------------------------------------------------------------------ patch -p1


@needs_patch
def test_patched_tree_leaves_the_pristine_tree(pristine: Path, tmp_path: Path) -> None:
    before = _files(pristine)
    a, b = _patch(tmp_path, "a.patch", GOOD), _patch(tmp_path, "b.patch", SECOND)
    log = tmp_path / "build.log"
    tree = kernel.patched_tree(pristine, [a, b], tmp_path / "k" / "src", log)
    assert tree == (tmp_path / "k" / "src" / "linux-source-6.1").resolve()
    assert (tree / "lib" / "hello.c").read_text() == \
        "int main(void)\n{\n\treturn 0;\n} /* patched twice */\n"
    assert _files(pristine) == before
    assert (tree / "lib" / "other.c").stat().st_ino == (pristine / "lib" / "other.c").stat().st_ino
    assert (tree / "lib" / "hello.c").stat().st_ino != (pristine / "lib" / "hello.c").stat().st_ino
    assert not list(tree.rglob("*.orig")) and not list(tree.rglob("*.rej"))
    log.write_text("")
    assert kernel.patched_tree(pristine, [a, b], tmp_path / "k" / "src", log) == tree
    assert log.read_text() == ""  # complete: kept, not patched again


@needs_patch
@pytest.mark.parametrize("first", [False, True])
def test_a_patch_that_does_not_apply(pristine: Path, tmp_path: Path, first: bool) -> None:
    before = _files(pristine)
    patches = [_patch(tmp_path, "stale.patch", STALE)]
    if not first:
        patches.insert(0, _patch(tmp_path, "a.patch", GOOD))
    log = tmp_path / "build.log"
    dest = tmp_path / "k" / "src"
    with pytest.raises(BadInput) as err:
        kernel.patched_tree(pristine, patches, dest, log)
    text = str(err.value)
    assert "\n" not in text and f"log: {log}" in text
    assert text.startswith(f"patch {tmp_path / 'stale.patch'} does not apply to linux-source-6.1"
                           + ("" if first else " + a.patch"))
    assert "--dry-run" in log.read_text()
    assert not dest.exists() and _files(pristine) == before


@needs_patch
def test_kernel_build_with_a_bad_patch_caches_nothing(
        cache: Path, pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(kernel, "ensure_packages", lambda log, need_source=True: None)
    monkeypatch.setattr(kernel, "source_tree", lambda log: pristine)
    (tmp_path / "stale.patch").write_text(STALE)
    assert main(["kernel", "build", "--kasan", "--patch", str(tmp_path / "stale.patch")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirrorfuzz: error: patch ") and err.count("\n") == 1
    assert "stale.patch does not apply" in err
    logs = list(cache.glob("failed-patch-*.log"))
    assert len(logs) == 1 and f"log: {logs[0]}" in err and "--dry-run" in logs[0].read_text()
    assert sorted(p.name for p in cache.iterdir()) == [logs[0].name]  # no kernel entry


# ------------------------------------------------------------------ the commands


@pytest.mark.parametrize("args, message", [
    (["confirm", "--patch", "/nonexistent.patch", str(RACE)], "/nonexistent.patch: no such file"),
    (["confirm", "--patch", "{good}", str(RACE)],
     "run mirrorfuzz kernel build --kasan --patch {good} first"),
    (["confirm", "--patch", "{good}", "--patch", "{second}", str(RACE)],
     "--patch {good} --patch {second} first"),
    (["replay", "--patch", "{good}", str(RACE)], "--patch needs --linux"),
    (["kernel", "run", "--patch", "{good}", str(RACE)],
     "run mirrorfuzz kernel build --patch {good} first"),
    (["kernel", "hmm-tests", "--kasan", "--patch", "{notes}"], "not a unified diff"),
    (["kernel", "fuzz", "--traces", "1", "--patch", "{notes}"], "not a unified diff"),
    (["kernel", "build", "--patch", "{notes}"], "not a unified diff"),
])
def test_patch_arguments(args: list[str], message: str, cache: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    names = {"good": tmp_path / "good.patch", "second": tmp_path / "second.patch",
             "notes": tmp_path / "notes.txt"}
    names["good"].write_text(GOOD)
    names["second"].write_text(SECOND)
    names["notes"].write_text("no diff here\n")
    fill = {k: str(v) for k, v in names.items()}
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mirrorfuzz: error: ") and err.count("\n") == 1
    assert message.format(**fill) in err
    assert not cache.exists() or not any(cache.glob(f"{VERSION}-*"))


def test_replay_linux_names_the_patched_kernel(cache: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A race that cannot run for want of the patched kernel says which build
    it needs, before anything runs: one line, exit 2."""
    (tmp_path / "good.patch").write_text(GOOD)
    good = kernel.load_patches([str(tmp_path / "good.patch")])
    assert main(["replay", "--linux", "--patch", str(tmp_path / "good.patch"), str(RACE)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"no kernel in {kernel.kernel_dir(VERSION, True, good)}: run mirrorfuzz " \
           f"kernel build --kasan --patch {tmp_path / 'good.patch'} first" in err
