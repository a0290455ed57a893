"""The Linux-in-the-loop subcommands: ``kernel build``, ``kernel run``,
``export-c`` and ``confirm`` (``replay --linux`` lives in ``fuzz.linux.replay``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fuzz import validate
from fuzz.errors import BadInput
from fuzz.linux import kernel
from fuzz.safeio import describe, write_atomic

EXIT_OK, EXIT_FOUND = 0, 1




PATCH_HELP = ("on the kernel built with this patch (-p1, to the 6.1 source tree) applied; "
              "repeatable, in order (mirrorfuzz kernel build [--kasan] --patch FILE first)")


def add_patch_option(parser: Any, text: str = PATCH_HELP) -> None:
    """``--patch FILE``, repeatable (``kernel.load_patches`` reads them)."""
    parser.add_argument("--patch", action="append", default=None, metavar="FILE", help=text)


def cmd_kernel_build(args: argparse.Namespace) -> int:
    patches = kernel.load_patches(args.patch)
    built, cached, wall = kernel.build(args.kasan, patches=patches)
    what = "cached" if cached else f"built in {wall:.0f} s"
    print(f"kernel {built.label}: {built.bzimage} ({what}; log {built.log})")
    return EXIT_OK


def _program(name: str) -> Path:
    path = Path(name)
    what = describe(path)
    if what != "a regular file":
        raise BadInput(f"{name}: " + ("no such file" if what == "absent"
                                      else f"{what}, not a program"))
    return path


def write_log(path: Path | None, text: str) -> None:
    """A log the user asked for, written whole (checked before the boot)."""
    if path is not None:
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise BadInput(f"{path}: cannot write: {exc.strerror or exc}") from None


def cmd_kernel_run(args: argparse.Namespace) -> int:
    console = validate.output_file(args.console, "--console") if args.console else None
    built = kernel.find_kernel(args.kasan, kernel.load_patches(args.patch))
    programs = [_program(p) for p in args.programs]
    names = {}
    for prog in programs:
        if prog.name in names or prog.name in ("init", "commands"):
            raise BadInput(f"{prog}: two programs named {prog.name!r}")
        names[prog.name] = prog
    commands = [f"/{name}" for name in names]
    result = kernel.boot(built, commands, dict(names), args.timeout)
    sys.stdout.write(result.output)
    write_log(console, result.console)
    for report in result.reports:
        print(f"REPORT: {report}")
    print(f"kernel run ({built.label}): {len(result.statuses)} of {len(programs)} programs "
          f"finished, exit statuses {result.statuses}, {len(result.reports)} kernel reports, "
          f"{result.wall:.1f} s wall" + (", TIMED OUT" if result.timed_out else ""))
    bad = result.timed_out or result.reports or any(result.statuses)
    return EXIT_FOUND if bad or len(result.statuses) < len(programs) else EXIT_OK


def _tap_summary(output: str) -> tuple[int, int, int]:
    """(real passes, failures, skips) of a kselftest TAP log; 6.1's harness prints a
    fixture-setup SKIP as "ok", so an "ok" test whose lines say SKIP counts as a skip."""
    passed = failed = skipped = 0
    block: list[str] = []
    for line in output.splitlines():
        block.append(line)
        if line.startswith("ok ") or line.startswith("not ok "):
            if line.startswith("not ok"):
                failed += 1
            elif any("SKIP" in b for b in block):
                skipped += 1
            else:
                passed += 1
            block = []
    return passed, failed, skipped


def cmd_kernel_hmm_tests(args: argparse.Namespace) -> int:
    """Linux's own hmm-tests of the same source: the baseline."""
    tap = validate.output_file(args.tap, "--tap") if args.tap else None
    built = kernel.find_kernel(args.kasan, kernel.load_patches(args.patch))
    log = kernel.cache_root() / "setup.log"
    src = kernel.source_tree(log)
    test = src / "tools/testing/selftests/vm/hmm-tests.c"
    if not test.is_file():
        test = src / "tools/testing/selftests/mm/hmm-tests.c"
    out = kernel.cache_root() / "guest" / f"hmm-tests-{src.parent.name}"
    if not out.is_file():
        kernel.compile_static([test], out, [f"-I{src / 'tools/testing/selftests'}", f"-I{src}",
                                            "-Wno-error"])
    result = kernel.boot(built, ["/hmm-tests"], {"hmm-tests": out}, args.timeout)
    write_log(tap, result.output)
    passed, failed, skipped = _tap_summary(result.output)
    for report in result.reports:
        print(f"REPORT: {report}")
    print(f"hmm-tests ({built.label}): {passed} passed, {failed} failed, "
          f"{skipped} skipped (fixture SKIPs the 6.1 harness prints as ok), "
          f"{len(result.reports)} kernel reports, {result.wall:.1f} s wall (boot included)"
          + (", TIMED OUT" if result.timed_out else ""))
    return 1 if failed or result.reports or result.timed_out else 0


def register(sub: Any) -> None:
    """Add ``kernel`` (build, run), ``export-c`` and ``confirm`` to the subcommands."""
    from fuzz.linux import export, generate, replay

    kern = sub.add_parser("kernel", help="build and boot the Linux 6.1 test_hmm kernel (QEMU)")
    ksub = kern.add_subparsers(dest="kernel_command", required=True)
    kb = ksub.add_parser("build", help="apt-install the sources and tools, build, cache")
    kb.add_argument("--kasan", action="store_true", help="the KASAN variant")
    add_patch_option(kb, "build with this patch (-p1, to the 6.1 source tree) applied to a "
                         "copy of the tree; repeatable, in order; cached apart from the "
                         "unpatched kernel, under a hash of the patches' contents")
    kb.set_defaults(func=cmd_kernel_build)
    kr = ksub.add_parser("run", help="boot with PROGRAMS in the initramfs and run them in turn")
    kr.add_argument("programs", nargs="+", help="static executables")
    kr.add_argument("--kasan", action="store_true", help="boot the KASAN variant")
    kr.add_argument("--timeout", type=validate.seconds_arg(86400), default=300.0, metavar="S",
                    help="kill QEMU after S seconds (default 300)")
    kr.add_argument("--console", default=None, metavar="FILE",
                    help="also write the kernel console log to FILE")
    add_patch_option(kr)
    kr.set_defaults(func=cmd_kernel_run)
    kh = ksub.add_parser("hmm-tests", help="boot and run Linux's own hmm-tests (the baseline)")
    kh.add_argument("--kasan", action="store_true", help="boot the KASAN variant")
    kh.add_argument("--timeout", type=validate.seconds_arg(86400), default=300.0, metavar="S",
                    help="kill QEMU after S seconds (default 300)")
    kh.add_argument("--tap", default=None, metavar="FILE", help="write the TAP output to FILE")
    add_patch_option(kh)
    kh.set_defaults(func=cmd_kernel_hmm_tests)
    generate.register(ksub)
    export.register(sub)
    replay.register(sub)
