"""Which traces have a Linux counterpart, and ``mirrorfuzz export-c``.

A trace is **exportable** (runs on Linux line by line, through the guest
runner ``linux/guest/mfrun.c`` or as an exported C test) when every step line
is a plain op with a Linux counterpart (:data:`LINUX_OPS`; ``open`` of a
mirror only, at most two mirrors: Linux 6.1's test_hmm has two
device-private devices), its arguments are inside the model's own ranges
(SPEC §2: those ``EINVAL``s are the project's rules, not Linux's) and inside
the runner's window of 2^30 pages, and the trace sets no ``frames`` or
``device-frames`` (the model's memory sizes have no Linux counterpart).

``export-c`` writes the trace as a standalone C test in the hmm-tests style
(TAP output, exit 0 pass, 1 fail, 4 skip without ``/dev/hmm_dmirror0``) that
a kernel developer can drop into ``tools/testing/selftests/mm/``: every line
runs in its process, in turn, and is checked against the model's result.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

from fuzz import impls, validate
from fuzz.errors import BadInput
from fuzz.executor import Settings, run_trace
from fuzz.safeio import describe, load_trace, write_atomic
from fuzz.trace import StepLine, Trace, format_step
from model.ops import MAX_VALUE_PAGES, WORD_MAX, WORD_MIN, Op, RunThread, StepThread, op_keyword

LINUX_OPS: Final = ("mmap", "munmap", "mremap", "mprotect", "madvise", "fork", "exit", "read",
                    "write", "open", "dread", "dwrite", "snapshot", "migrate_to_dev",
                    "read_range", "write_range")
WINDOW: Final = 1 << 30
MIRRORS: Final = 2
VALUE_OPS: Final = ("dread", "snapshot", "read_range", "write_range")
PRELUDE: Final = Path(__file__).resolve().parents[2] / "linux" / "guest" / "export_prelude.c"


def _word_ok(x: int) -> bool:
    return WORD_MIN <= x <= WORD_MAX


def line_problem(op: Op, mirrors: int) -> str | None:
    """Why this op cannot run on Linux as the model means it, or None."""
    key = op_keyword(op)
    values: dict[str, Any] = vars(op)
    if key not in LINUX_OPS:
        return f"op '{key}' has no Linux counterpart"
    if key == "open":
        if values["kind"] != "mirror":
            return f"open {values['kind']} has no Linux counterpart (test_hmm is a mirror)"
        if mirrors >= MIRRORS:
            return "a third mirror (Linux 6.1's test_hmm has two device-private devices)"

    start = next((values[f] for f in ("s", "v", "old") if f in values), None)
    count = values.get("n", 1)
    if start is not None:
        if start < 0 or count < 1 or start + count > WINDOW:
            return f"range [{start}, {start}+{count}) outside the model's ranges or the window"
        if "new" in values and not 0 <= values["new"] <= WINDOW - count:
            return "mremap destination outside the window"
    if key in VALUE_OPS and count > MAX_VALUE_PAGES:
        return f"{key} of more than {MAX_VALUE_PAGES} pages (the model's cap)"
    if "x" in values and values["x"] is not None:
        stride = values.get("stride") or 0
        if not (_word_ok(values["x"]) and _word_ok(stride)
                and _word_ok(values["x"] + (count - 1) * stride)):
            return "a word that does not fit 64 bits"
    return None


def problems(trace: Trace) -> list[tuple[int, str]]:
    """(text line, why) for each line that keeps the trace from running on Linux."""
    found: list[tuple[int, str]] = []
    for key in ("frames", "device-frames"):
        if trace.header(key) is not None:
            found.append((0, f"header '{key}': the model's memory size has no Linux counterpart"))
    mirrors = 0
    for line in trace.steps:
        if isinstance(line.action, StepThread | RunThread) or line.thread is not None:
            found.append((line.lineno, "threads (Tn =, step, run): a race, run as a stress test"))
            if isinstance(line.action, StepThread | RunThread):
                continue
        why = line_problem(line.action, mirrors)
        if why is not None:
            found.append((line.lineno, why))
        elif op_keyword(line.action) == "open":
            mirrors += 1
    return found


def exportable(trace: Trace) -> bool:
    return not problems(trace)


def is_race(trace: Trace) -> bool:
    return any(line.thread is not None or isinstance(line.action, StepThread | RunThread)
               for line in trace.steps)


def model_results(trace: Trace) -> list[str | None]:
    """The reference model's result of each step line (None after a finding)."""
    verdict = run_trace(trace, impls.sides("reference"), Settings())
    out: list[str | None] = [str(r) if r is not None else None for r in verdict.results]
    return out + [None] * (len(trace.steps) - len(out))


# ----------------------------------------------------------------- C text

_PROT: Final = {"none": "PROT_NONE", "r": "PROT_READ", "rw": "PROT_READ | PROT_WRITE"}
_ADVICE: Final = {"dontneed": "MADV_DONTNEED", "hugepage": "MADV_HUGEPAGE",
                  "nohugepage": "MADV_NOHUGEPAGE"}
_DEV_REQ: Final = {"dread": "HMM_DMIRROR_READ", "dwrite": "HMM_DMIRROR_WRITE",
                   "snapshot": "HMM_DMIRROR_SNAPSHOT",
                   "migrate_to_dev": "HMM_DMIRROR_MIGRATE_TO_DEV"}


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _call(op: Op, mirror_minor: dict[int, int]) -> str:
    key = op_keyword(op)
    v: dict[str, Any] = vars(op)
    if key == "mmap":
        return (f"op_mmap({v['s']}, {v['n']}, {_PROT[v['prot']]}, {int(v['kind'] == 'shared')}, "
                f"{int(v['huge'])})")
    if key == "munmap":
        return f"err(munmap(addr({v['s']}), {v['n']} * PAGE))"
    if key == "mprotect":
        return f"err(mprotect(addr({v['s']}), {v['n']} * PAGE, {_PROT[v['prot']]}))"
    if key == "madvise":
        return f"err(madvise(addr({v['s']}), {v['n']} * PAGE, {_ADVICE[v['advice']]}))"
    if key == "mremap":
        return f"op_mremap({v['old']}, {v['n']}, {v['new']})"
    if key == "read":
        return f"op_read_range({v['v']}, 1, 1)"
    if key == "read_range":
        return f"op_read_range({v['v']}, {v['n']}, 0)"
    if key == "write":
        return f"op_write_range({v['v']}, 1, {_c_word(v['x'])}, 0)"
    if key == "write_range":
        return f"op_write_range({v['v']}, {v['n']}, {_c_word(v['x'])}, {_c_word(v['stride'] or 0)})"
    if key == "open":
        return f"op_open({v['dev']}, {mirror_minor[v['dev']]})"
    x, stride = v.get("x") or 0, v.get("stride") or 0
    return f"op_dev({_DEV_REQ[key]}, {v['d']}, {v['s']}, {v['n']}, {_c_word(x)}, {_c_word(stride)})"


def _c_word(x: int) -> str:
    return "INT64_MIN" if x == WORD_MIN else f"{x}LL"


def export_c(trace: Trace, name: str) -> str:
    """The C text of ``trace`` as a standalone test named ``name``."""
    bad = problems(trace)
    if bad:
        where, why = bad[0]
        raise BadInput(f"{trace.path}:{where}: not exportable: {why}")
    results = model_results(trace)
    owner: dict[int, int] = {}  # D -> the process that opened it
    parent: dict[int, int] = {}  # P -> its parent
    dead: set[int] = set()
    minor: dict[int, int] = {}
    body: list[str] = []
    uses_mirror = False
    turn = 0  # the lines that run take turns 1, 2, ...
    for index, (line, want) in enumerate(zip(trace.steps, results, strict=True), start=1):
        op = line.action
        assert not isinstance(op, StepThread | RunThread)
        text = format_step(StepLine(op))
        if want is None:
            body.append(f"\t/* line {index}: {text}: after the model's finding; not run */")
            continue
        key = op_keyword(op)
        v: dict[str, Any] = vars(op)
        proc = owner.get(v["d"], -1) if "d" in v else v["p"]
        gone = proc < 0 or proc in dead or (proc != 0 and proc not in parent)  # (never forked)
        if gone or want in ("EINVAL", "ESRCH"):
            body.append(f"\t/* line {index}: {text} => {want}: a handle the model refuses; "
                        "nothing to run on Linux */")
            if gone:
                continue
        turn += 1
        lead = f"\tif (turn({turn}, {proc})) {{\t/* text line {line.lineno} */"
        check = f"\t\tcheck({index}, {_c_string(text)}, {_c_string(want)});"
        if key == "fork":
            child = v["child"]
            parent[child] = proc
            body += [lead, f"\t\top_fork({child});", f"\t\tif (me == {proc})",
                     "\t" + check, "\t}"]
            continue
        if key == "exit":
            if proc == 0:
                raise BadInput(f"{trace.path}:{line.lineno}: not exportable: exit P0 ends the test")
            dead.add(proc)
            waiter = parent[proc]
            body += [lead, "\t\t_exit(0);", "\t}",
                     f"\tif (me == {waiter})",
                     f"\t\top_exit_wait({index}, {_c_string(text)}, {proc});"]
            continue
        if key == "open":
            owner[v["dev"]] = proc
            minor[v["dev"]] = len(minor)
            uses_mirror = True
        body += [lead, f"\t\t{_call(op, minor)};", check, "\t}"]
    title = trace.header("title") or name
    skip = ("\tif (access(\"/dev/hmm_dmirror0\", F_OK)) {\n"
            "\t\tprintf(\"1..0 # SKIP no /dev/hmm_dmirror0 (CONFIG_TEST_HMM)\\n\");\n"
            "\t\treturn KSFT_SKIP;\n\t}\n") if uses_mirror else ""
    head = [
        "// SPDX-License-Identifier: GPL-2.0",
        f"/* {name}: generated by `mirrorfuzz export-c` from {Path(trace.path).name}",
        f" * ({title.replace('*/', '* /')}).",
        " * Each line of the trace runs in its process, in trace order, and its result",
        " * is checked against mirrorfuzz's reference model (docs/spec.md).",
        " * Build: gcc -static -Wall -O2 -o " + name + " " + name + ".c */",
    ]
    prelude = PRELUDE.read_text()
    main = ["int main(void)", "{", skip + "\tsetup();", *body,
            f"\treturn finish({_c_string(name)});", "}", ""]
    return "\n".join(head) + "\n" + prelude + "\n" + "\n".join(main)


def cmd_export_c(args: argparse.Namespace) -> int:
    source = Path(args.file)
    what = describe(source)
    if what != "a regular file":
        raise BadInput(f"{args.file}: " + ("no such file" if what == "absent"
                                           else f"{what}, not a trace file"))
    output = validate.output_file_for(args.output, "--output", source)
    trace = load_trace(source)
    name = Path(args.output).name.removesuffix(".c") or "mirrorfuzz_test"
    text = export_c(trace, name.replace("-", "_"))
    try:
        write_atomic(output, text)
    except OSError as exc:
        raise BadInput(f"{output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {output}")
    return 0


def register(sub: Any) -> None:
    ex = sub.add_parser("export-c", help="a trace as a standalone hmm-tests-style C test")
    ex.add_argument("file", help="a sequential trace whose ops all have a Linux counterpart")
    ex.add_argument("-o", "--output", required=True, metavar="FILE", help="the C file to write")
    ex.set_defaults(func=cmd_export_c)
