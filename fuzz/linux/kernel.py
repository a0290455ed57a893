"""Build a small Linux 6.1 with test_hmm and boot it under QEMU (issue 13).

``mirrorfuzz kernel build [--kasan]`` installs what it needs through apt
(Debian's ``linux-source-6.1`` and the build tools), configures
``tinyconfig`` plus the fragments in ``linux/config/``, checks that every
fragment line is in the final ``.config``, and builds ``bzImage`` into the
user cache directory, keyed by the source package version and a hash of the
fragments.  ``mirrorfuzz kernel run`` boots it under QEMU TCG with an
initramfs holding the programs, with a time limit, and collects their output
(a second serial port, so kernel messages never interleave with it) and every
KASAN, BUG, WARN or oops report of the console.

``--patch FILE`` (repeatable) builds the kernel from the cached source tree
plus those patches, in order: they are applied with ``patch -p1`` to a
hardlink copy of the tree (``cp -al``; each file a patch touches is first
replaced by a real copy, so the pristine tree is never written), and the
kernel is cached under the unpatched key plus a hash of the patches'
contents (``<version>-<confighash>-p<patchhash>``), so the unpatched kernels
keep their entries.  A patch that does not apply is a one-line error and
nothing is cached.

Every failure is a :class:`~fuzz.errors.BadInput`: one line naming what to
install or where the log is.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fuzz.errors import BadInput
from fuzz.safeio import read_bytes

ROOT: Final = Path(__file__).resolve().parents[2]
LINUX_DIR: Final = ROOT / "linux"
SOURCE_PACKAGE: Final = "linux-source-6.1"
TARBALL: Final = Path("/usr/src/linux-source-6.1.tar.xz")
APT_PACKAGES: Final = (SOURCE_PACKAGE, "flex", "bison", "libelf-dev", "bc", "qemu-system-x86",
                       "cpio", "gcc", "make", "libc6-dev", "xz-utils")
TOOLS: Final = {"flex": "flex", "bison": "bison", "bc": "bc", "gcc": "gcc", "make": "make",
                "qemu-system-x86_64": "qemu-system-x86", "xz": "xz-utils"}
JOBS: Final = 2
MAX_PATCH_BYTES: Final = 4 << 20
# no_timer_check: under TCG on a loaded host the IO-APIC timer check can fail and panic
APPEND: Final = ("console=ttyS0 panic=-1 transparent_hugepage=madvise no_timer_check")
REPORT_RE: Final = re.compile(
    r"(BUG: KASAN: [^\n]*|BUG: [^\n]*|WARNING: [^\n]*|general protection fault[^\n]*"
    r"|Kernel panic[^\n]*|Oops[^\n]*|kernel BUG at[^\n]*)")


def fragments(kasan: bool) -> list[Path]:
    names = ["hmm-base.config"] + (["kasan.config"] if kasan else [])
    return [LINUX_DIR / "config" / name for name in names]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mirrorfuzz" / "kernel"


def _run(cmd: Sequence[str], log: Path | None = None, cwd: Path | None = None,
         timeout: float | None = None) -> int:
    if log is None:
        return subprocess.run(list(cmd), cwd=cwd, timeout=timeout, check=False,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        return subprocess.run(list(cmd), cwd=cwd, timeout=timeout, check=False, stdout=out,
                              stderr=subprocess.STDOUT).returncode


def source_version() -> str | None:
    """The installed ``linux-source-6.1`` version, or None."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}|${Version}", SOURCE_PACKAGE],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    status, _, version = out.stdout.partition("|")
    return version.strip() if out.returncode == 0 and "installed" in status.split() else None


def missing_packages(need_source: bool = True) -> list[str]:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if shutil.which("gcc") and not _static_libc():
        missing.append("libc6-dev")
    if not Path("/usr/include/gelf.h").exists():
        missing.append("libelf-dev")
    if need_source and (source_version() is None or not TARBALL.exists()):
        missing.append(SOURCE_PACKAGE)
    return sorted(set(missing))


def _static_libc() -> bool:
    out = subprocess.run(["gcc", "-print-file-name=libc.a"], capture_output=True, text=True,
                         check=False)
    return out.returncode == 0 and Path(out.stdout.strip()).is_file()


def ensure_packages(log: Path, need_source: bool = True) -> None:
    """apt-get install whatever is missing; BadInput naming it if that cannot be done."""
    missing = missing_packages(need_source)
    if not missing:
        return
    names = " ".join(missing)
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BadInput(f"missing {names}: run mirrorfuzz kernel build as root on a Debian "
                       f"host (it installs them with apt-get), or install: {names}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with log.open("a") as out:
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                check=False).returncode
            if rc != 0 and cmd[1] == "install":
                raise BadInput(f"apt-get install {names} failed (exit {rc}); log: {log}")
    still = missing_packages(need_source)
    if still:
        raise BadInput(f"still missing after apt-get: {' '.join(still)}; log: {log}")


@dataclass(frozen=True)
class Patch:
    """A ``--patch`` file, read once: its name (for the verdicts) and its contents (for the
    cache key and for ``patch -p1``)."""

    path: str
    data: bytes

    @property
    def name(self) -> str:
        return Path(self.path).name


def load_patches(paths: Sequence[str] | None) -> tuple[Patch, ...]:
    """The ``--patch`` files in order; BadInput (one line) for one that cannot be read or
    is no unified diff."""
    patches = []
    for path in paths or ():
        data = read_bytes(path, limit=MAX_PATCH_BYTES)
        if not touched_files(data):
            raise BadInput(f"--patch {path}: not a unified diff (no '+++ ' file line)")
        patches.append(Patch(path, data))
    return tuple(patches)


def touched_files(data: bytes) -> list[str]:
    """The files a ``-p1`` unified diff names (``--- a/x``, ``+++ b/x``), relative to the
    tree; ``/dev/null`` is left out.  BadInput for a name that would leave the tree."""
    names: list[str] = []
    for raw in data.splitlines():
        if not (raw.startswith(b"--- ") or raw.startswith(b"+++ ")):
            continue
        name = raw[4:].split(b"\t", 1)[0].strip().decode("utf-8", "replace")
        if name == "/dev/null":
            continue
        parts = name.split("/")[1:]  # -p1
        if not parts or name.startswith("/") or ".." in parts or "" in parts:
            raise BadInput(f"patch file name {name!r}: not a path inside the tree (-p1)")
        rel = "/".join(parts)
        if rel not in names:
            names.append(rel)
    return names


def patches_hash(patches: Sequence[Patch]) -> str:
    """The hash of the patches' contents, in order (names and paths do not count)."""
    digest = hashlib.sha256()
    for patch in patches:
        digest.update(hashlib.sha256(patch.data).digest())
    return digest.hexdigest()[:12]


def label(kasan: bool, patches: Sequence[Patch] = ()) -> str:
    """A kernel's name in the verdicts: ``KASAN`` or ``base``, then ``+ NAME`` for each
    patch."""
    return " + ".join(["KASAN" if kasan else "base", *(p.name for p in patches)])


def patch_flags(patches: Sequence[Patch]) -> str:
    """`` --patch FILE`` for each patch, as the command line gave them."""
    return "".join(f" --patch {p.path}" for p in patches)


@dataclass
class Kernel:
    """A built kernel in the cache."""

    directory: Path
    kasan: bool
    patches: tuple[Patch, ...] = ()  # in order

    @classmethod
    def cached(cls, version: str, kasan: bool, patches: Sequence[Patch]) -> Kernel:
        """The kernel of this source version, variant and patches (built or not)."""
        return cls(kernel_dir(version, kasan, patches), kasan, tuple(patches))

    @property
    def label(self) -> str:
        return label(self.kasan, self.patches)

    @property
    def bzimage(self) -> Path:
        return self.directory / "bzImage"

    @property
    def log(self) -> Path:
        return self.directory / "build.log"


def config_hash(kasan: bool) -> str:
    digest = hashlib.sha256()
    for frag in fragments(kasan):
        digest.update(frag.name.encode() + b"\0" + frag.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def kernel_dir(version: str, kasan: bool, patches: Sequence[Patch] = ()) -> Path:
    """``<version>-<confighash>``, and ``-p<patchhash>`` for a patched kernel."""
    safe = re.sub(r"[^A-Za-z0-9.+~-]", "_", version)
    suffix = f"-p{patches_hash(patches)}" if patches else ""
    return cache_root() / f"{safe}-{config_hash(kasan)}{suffix}"


def find_kernel(kasan: bool, patches: Sequence[Patch] = ()) -> Kernel:
    """The cached kernel for the installed source, or BadInput saying how to build it."""
    version = source_version()
    flag = (" --kasan" if kasan else "") + patch_flags(patches)
    if version is None:
        raise BadInput(f"no kernel built: run mirrorfuzz kernel build{flag} first")
    kernel = Kernel.cached(version, kasan, patches)
    if not kernel.bzimage.is_file():
        raise BadInput(f"no kernel in {kernel.directory}: run mirrorfuzz kernel build{flag} first")
    return kernel


def check_config(config: Path, frags: Sequence[Path]) -> list[str]:
    """Fragment lines (``CONFIG_X=v`` and ``# CONFIG_X is not set``) missing from ``config``."""
    have = set(config.read_text().splitlines()) if config.is_file() else set()
    missing = []
    for frag in frags:
        for line in frag.read_text().splitlines():
            line = line.strip()
            wanted = line.startswith("CONFIG_") or re.fullmatch(r"# CONFIG_\w+ is not set", line)
            if wanted and line not in have:
                missing.append(line)
    return missing


def source_tree(log: Path) -> Path:
    """The unpacked source (once per source version), shared by both variants."""
    version = source_version() or "unknown"
    tree = cache_root() / f"src-{re.sub(r'[^A-Za-z0-9.+~-]', '_', version)}"
    done = tree / ".mirrorfuzz-unpacked"
    if done.exists():
        return tree / "linux-source-6.1"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    if _run(["nice", "-n", "19", "tar", "-xf", str(TARBALL), "-C", str(tree)], log) != 0:
        raise BadInput(f"cannot unpack {TARBALL}; log: {log}")
    done.touch()
    return tree / "linux-source-6.1"


PATCHED: Final = ".mirrorfuzz-patched"


def _break_link(path: Path) -> None:
    """Replace a hardlinked file by a copy of its own (the pristine tree keeps the other)."""
    tmp = path.with_name(path.name + ".mirrorfuzz-copy")
    shutil.copy2(path, tmp)
    os.replace(tmp, path)


def patched_tree(pristine: Path, patches: Sequence[Patch], dest: Path, log: Path) -> Path:
    """``pristine`` plus ``patches`` (in order) as ``dest/<pristine's name>``: a ``cp -al``
    copy in which each file a patch touches is a real copy before ``patch -p1`` runs (a
    dry run first, then the patch).  Kept once complete; BadInput naming the first patch
    that does not apply (``dest`` is then removed)."""
    dest = dest.resolve()
    tree = dest / pristine.name
    if (dest / PATCHED).exists() and tree.is_dir():
        return tree
    if shutil.which("patch") is None:
        raise BadInput("patch not found: install it (apt-get install patch)")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        if _run(["nice", "-n", "19", "cp", "-al", str(pristine), str(tree)], log) != 0:
            raise BadInput(f"cannot copy the source tree {pristine}; log: {log}")
        for i, patch in enumerate(patches):
            saved = dest / f"{i:02d}-{patch.name}"
            saved.write_bytes(patch.data)
            for rel in touched_files(patch.data):
                target = tree / rel
                if target.is_file() and not target.is_symlink() and target.stat().st_nlink > 1:
                    _break_link(target)
            cmd = ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch",
                   "-d", str(tree), "-i", str(saved)]
            for run in ([*cmd[:5], "--dry-run", *cmd[5:]], cmd):
                if _run(run, log) != 0:
                    after = "".join(f" + {p.name}" for p in patches[:i])
                    raise BadInput(f"patch {patch.path} does not apply to {pristine.name}"
                                   f"{after}; log: {log}")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    (dest / PATCHED).touch()
    return tree


def build(kasan: bool, jobs: int = JOBS,
          patches: Sequence[Patch] = ()) -> tuple[Kernel, bool, float]:
    """Build (or find) the kernel: (kernel, was cached, wall seconds)."""
    start = time.monotonic()
    cache_root().mkdir(parents=True, exist_ok=True)
    setup_log = cache_root() / "setup.log"
    ensure_packages(setup_log)
    version = source_version()
    assert version is not None
    kernel = Kernel.cached(version, kasan, patches)
    if kernel.bzimage.is_file():
        return kernel, True, time.monotonic() - start
    fresh = not kernel.directory.exists()
    kernel.directory.mkdir(parents=True, exist_ok=True)
    log = kernel.log
    log.write_text(f"mirrorfuzz kernel build: {SOURCE_PACKAGE} {version}, kasan={kasan}"
                   + "".join(f", patch {p.path} (sha256 "
                             f"{hashlib.sha256(p.data).hexdigest()[:12]})" for p in patches)
                   + "\n")
    src = source_tree(log)
    if patches:
        try:
            src = patched_tree(src, patches, kernel.directory / "src", log)
        except BadInput as exc:  # nothing cached: the log moves out of the entry
            kept = cache_root() / f"failed-patch-{kernel.directory.name}.log"
            os.replace(log, kept)
            if fresh:
                shutil.rmtree(kernel.directory, ignore_errors=True)
            raise BadInput(str(exc).replace(str(log), str(kept))) from None
    out = kernel.directory / "build"
    frags = [str(f) for f in fragments(kasan)]
    make = ["nice", "-n", "19", "make", "-s", f"O={out}", "ARCH=x86_64"]
    steps: list[list[str]] = [
        [*make, "tinyconfig"],
        ["scripts/kconfig/merge_config.sh", "-m", "-O", str(out), str(out / ".config"), *frags],
        [*make, "olddefconfig"],
    ]
    for cmd in steps:
        if _run(cmd, log, cwd=src) != 0:
            raise BadInput(f"kernel configure failed: {cmd[-1]}; log: {log}")
    missing = check_config(out / ".config", fragments(kasan))
    if missing:
        with log.open("a") as fh:
            fh.write("".join(f"MISSING from .config: {m}\n" for m in missing))
        raise BadInput(f"kernel config lacks {len(missing)} requested options "
                       f"(first: {missing[0]}); log: {log}")
    if _run([*make, f"-j{jobs}", "bzImage"], log, cwd=src) != 0:
        raise BadInput(f"kernel build failed; log: {log}")
    shutil.copy2(out / "arch/x86/boot/bzImage", kernel.bzimage.with_suffix(".tmp"))
    os.replace(kernel.bzimage.with_suffix(".tmp"), kernel.bzimage)
    shutil.copy2(out / ".config", kernel.directory / "config")
    return kernel, False, time.monotonic() - start


# ------------------------------------------------------------------ guest


def compile_static(sources: Sequence[Path], output: Path, extra: Sequence[str] = ()) -> None:
    """``gcc -static -O2 -Wall -Werror``; BadInput with gcc's first error line."""
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-static", "-O2", "-Wall", "-Werror", "-pthread",
           f"-I{LINUX_DIR / 'guest'}", "-o", str(output), *map(str, sources), *extra]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BadInput("gcc not found: run mirrorfuzz kernel build (it installs it)") from None
    if res.returncode != 0:
        first = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr.strip())
        raise BadInput(f"cannot compile {sources[0]}: {first}")


def guest_binary(name: str) -> Path:
    """A guest program of ``linux/guest/`` built static into the cache (rebuilt when stale)."""
    src = LINUX_DIR / "guest" / f"{name}.c"
    headers = sorted((LINUX_DIR / "guest").glob("*.h"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in [src, *headers])).hexdigest()[:12]
    out = cache_root() / "guest" / f"{name}-{digest}"
    if not out.is_file():
        compile_static([src], out)
    return out


def _cpio_entry(name: str, data: bytes, mode: int, ino: int) -> bytes:
    fields_ = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % v for v in fields_) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def make_initramfs(out: Path, files: dict[str, Path | bytes]) -> None:
    """A gzip'd newc archive: ``/name`` -> content; executables 0755, data 0644."""
    blob = b""
    ino = 1
    dirs = ["dev", "proc", "sys", "tmp"]
    for name in files:
        parts = name.strip("/").split("/")[:-1]
        for i in range(len(parts)):
            if "/".join(parts[:i + 1]) not in dirs:
                dirs.append("/".join(parts[:i + 1]))
    for d in dirs:
        blob += _cpio_entry(d, b"", 0o040755, ino)
        ino += 1
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.read_bytes()
        mode = 0o100644 if isinstance(content, bytes) else 0o100755
        blob += _cpio_entry(name.lstrip("/"), data, mode, ino)
        ino += 1
    blob += _cpio_entry("TRAILER!!!", b"", 0, 0)
    out.write_bytes(gzip.compress(blob, 6))


@dataclass
class BootResult:
    console: str
    output: str
    wall: float
    timed_out: bool
    reports: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # each program's exit status line


def boot(kernel: Kernel, commands: Sequence[str], files: dict[str, Path | bytes],
         timeout: float, smp: int = 2, memory: int = 1024,
         oops_panic: bool = True) -> BootResult:
    """Boot with an initramfs holding ``files`` plus ``/init``; init runs each line of
    ``commands`` in turn (program output on ttyS1).  ``oops_panic``: an oops ends the
    boot (else only the process that oopsed dies and the next programs run)."""
    if shutil.which("qemu-system-x86_64") is None:
        raise BadInput("qemu-system-x86_64 not found: run mirrorfuzz kernel build "
                       "(it installs qemu-system-x86)")
    init = guest_binary("init")
    with tempfile.TemporaryDirectory(prefix="mirrorfuzz-boot-") as tmp:
        work = Path(tmp)
        initrd = work / "initrd.gz"
        cmds = "".join(c + "\n" for c in commands).encode()
        make_initramfs(initrd, {"init": init, "commands": cmds, **files})
        console, output = work / "console.log", work / "output.log"
        append = APPEND + (" oops=panic" if oops_panic else "") + (
            " kasan_multi_shot" if kernel.kasan else "")
        cmd = ["nice", "-n", "19", "qemu-system-x86_64", "-accel", "tcg,thread=multi",
               "-smp", str(smp), "-m", str(memory), "-display", "none", "-monitor", "none",
               "-no-reboot", "-serial", f"file:{console}", "-serial", f"file:{output}",
               "-kernel", str(kernel.bzimage), "-initrd", str(initrd), "-append", append]
        start = time.monotonic()
        timed_out = False
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            timed_out = True
        wall = time.monotonic() - start
        if proc.returncode not in (0, None) and not timed_out and not console.exists():
            raise BadInput(f"qemu failed: {err.decode(errors='replace').strip()[:200]}")
        text = console.read_text(errors="replace") if console.exists() else ""
        out_text = output.read_text(errors="replace") if output.exists() else ""
    out_text = out_text.replace("\r\n", "\n")
    text = text.replace("\r\n", "\n")
    statuses = [int(m) for m in re.findall(r"^MFINIT: end \d+ status (-?\d+)", out_text, re.M)]
    return BootResult(text, out_text, wall, timed_out, REPORT_RE.findall(text), statuses)
