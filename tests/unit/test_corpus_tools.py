"""Corpus tools: ``check_corpus`` reports every bad file with its line,
repros are named after their signature and saved atomically without ever
clobbering, and the ``minimize`` and ``corpus check`` commands keep the exit
codes of ``mirrorfuzz`` (0 clean, 1 found, 2 bad input)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fuzz import cli, impls
from fuzz.cli import EXIT_BAD_INPUT, EXIT_FOUND, EXIT_OK, main
from fuzz.corpus import check_corpus, repro_name, save_repro, write_atomic
from fuzz.trace import format_trace, load_trace, parse_trace
from model.interface import Config, Factory, Implementation
from model.ops import OK, Done, Err, Errno, HandleResult, Op, OpResult, StepOutcome, Write

MAGIC = "# mirrorfuzz-trace 1\n"
GOOD_SEED = MAGIC + "# title: a good one\nwrite P0 1 1 => ok\nread P0 1 => 1\n"
REPRO = MAGIC + "# signature: divergence/result/write\nfork P0 => P1\nwrite P1 7 0 => ok\n"


def make_corpus(root: Path, files: dict[str, str | bytes]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)


def test_check_reports_every_bad_file_with_its_line(tmp_path: Path) -> None:
    make_corpus(tmp_path, {
        "seeds/good.trace": GOOD_SEED,
        "seeds/malformed.trace": MAGIC + "# title: t\nwrite P0 1 1 => ok\nmmap P0 0 4 rw\n",
        "seeds/untitled.trace": MAGIC + "write P0 1 1 => ok\n",
        "conformance/unexpected.trace": MAGIC + "# title: t\nwrite P0 1 1 => ok\n"
                                        "# note\nread P0 1\nread P0 2\n",
        "repros/unsigned.trace": MAGIC + "write P0 1 1 => ok\n",
        "repros/badsig.trace": MAGIC + "# title: x\n# signature: oops\nwrite P0 1 1 => ok\n",
        "repros/good.trace": REPRO,
        "repros/binary.trace": b"# mirrorfuzz-trace 1\nwrite P0 1 1 => ok\n\xff\n",
        "stray.trace": GOOD_SEED,
        "seeds/empty.trace": MAGIC + "# title: nothing\n",
        "seeds/README": "not a trace, not checked",
    })
    got = [str(p).replace(str(tmp_path) + os.sep, "") for p in check_corpus(tmp_path)]
    assert got == [
        "conformance/unexpected.trace:5: step line without '=> expected'",
        "conformance/unexpected.trace:6: step line without '=> expected'",
        "repros/badsig.trace:3: signature 'oops' is not kind/detail/object with kind one of "
        "divergence, violation, exception, budget",
        "repros/binary.trace:3: not UTF-8: invalid start byte at byte 40",
        "repros/unsigned.trace:1: a repro needs a '# signature:' header",
        "seeds/empty.trace:1: no step lines",
        "seeds/malformed.trace:4: 'mmap' takes P s n prot kind [huge], got 4 arguments",
        "seeds/untitled.trace:1: a seeds trace needs a '# title:' header",
        "stray.trace:0: a corpus trace belongs in seeds/, conformance/, repros/",
    ]


def test_check_of_a_clean_corpus_is_empty(tmp_path: Path) -> None:
    make_corpus(tmp_path, {"seeds/a.trace": GOOD_SEED, "repros/b.trace": REPRO})
    assert check_corpus(tmp_path) == []


def test_repro_name_is_safe_stable_and_ignores_comments_and_results() -> None:
    t = parse_trace(REPRO)
    name = repro_name("divergence/result/write", t)
    assert name.startswith("divergence-result-write-") and name.endswith(".trace")
    assert len(name) == len("divergence-result-write-") + 12 + len(".trace")
    decorated = parse_trace(REPRO.replace("fork P0 => P1", "# minimized: 2026-11-24\nfork P0"))
    assert repro_name("divergence/result/write", decorated) == name
    other = parse_trace(REPRO.replace("7 0", "7 1"))
    assert repro_name("divergence/result/write", other) != name
    weird = repro_name("exception/Key Error../..\\/x", t)
    assert "/" not in weird and "\\" not in weird and " " not in weird
    assert not weird.startswith(".")


def test_save_repro_keeps_the_same_repro_and_never_clobbers(tmp_path: Path) -> None:
    t = parse_trace(REPRO)
    first = save_repro(tmp_path / "repros", t)
    assert first.read_text() == REPRO
    again = save_repro(tmp_path / "repros", parse_trace(REPRO.replace("=> ok", "=> ok\n# x")))
    assert again == first and first.read_text() == REPRO  # same repro: kept as it was
    # a different file under the same name (say, hand-edited steps) is never replaced
    first.write_text(REPRO.replace("write P1 7 0", "write P1 7 5"))
    clobber_free = save_repro(tmp_path / "repros", t)
    assert clobber_free.name == first.name.replace(".trace", "-2.trace")
    assert clobber_free.read_text() == REPRO
    assert "7 5" in first.read_text()
    assert sorted(p.name for p in (tmp_path / "repros").iterdir()) == sorted(
        [first.name, clobber_free.name])  # no temporary files left behind


def test_save_repro_needs_a_signature(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_repro(tmp_path, parse_trace(GOOD_SEED))
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_leaves_the_old_file_when_writing_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.trace"
    path.write_text("old\n")

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.trace"]


# ------------------------------------------------------------------ CLI


class Fake:
    """One-step ops; forks give the reserved child; ``buggy`` fails write 7."""

    def __init__(self, name: str, buggy: bool) -> None:
        self.name, self.buggy = name, buggy
        self.threads: dict[str, Op] = {}

    def start(self, thread: str, op: Op) -> OpResult:
        self.threads[thread] = op
        return OK

    def step(self, thread: str) -> StepOutcome | Err:
        op = self.threads.pop(thread, None)
        if op is None:
            return Err(Errno.EINVAL)
        if self.buggy and isinstance(op, Write) and op.v == 7:
            return Done(Err(Errno.EFAULT))
        child = getattr(op, "child", None)
        return Done(HandleResult("P", child) if child is not None else OK)

    def __getattr__(self, name: str) -> Callable[..., object]:
        from model.observation import RawObservation, VmaView, canonicalize
        answers: dict[str, Callable[..., object]] = {
            "live_threads": lambda: sorted(self.threads),
            "failed_commits": lambda thread: 0,
            "active_jobs": lambda: [],
            "vmas": lambda pid: (VmaView(0, 1 << 20, "rw", "private", False, None, None),),
            "observe": lambda: canonicalize(RawObservation([], [], [], [], [], [])),
            "take_violations": lambda: [],
            "page_ops": lambda: 0,
        }
        return answers[name]


@pytest.fixture
def fake_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    def sides(spec: str) -> list[tuple[str, Factory]]:
        def make(name: str, buggy: bool) -> Factory:
            def factory(config: Config) -> Implementation:
                return Fake(name, buggy)  # type: ignore[return-value]
            return factory
        return [("a", make("a", False)), ("b", make("b", True))]
    monkeypatch.setattr(impls, "sides", sides)


NOISY = MAGIC + "# title: noisy\nwrite P0 1 1\nfork P0\nwrite P1 3 3\nwrite P0 7 9\nread P0 1\n"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("fake_sides")
def test_minimize_writes_the_repro_next_to_the_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "noisy.trace"
    source.write_text(NOISY)
    code, out, err = run(["minimize", str(source)], capsys)
    assert (code, err) == (EXIT_OK, "")
    assert "signature: divergence/result/write" in out and "5 -> 1" in out
    assert source.read_text() == NOISY
    repro = load_trace(str(tmp_path / "noisy.min.trace"))
    assert [str(s.action) for s in repro.steps] == ["Write(p=0, v=7, x=0)"]
    assert repro.header("signature") == "divergence/result/write"
    assert repro.header("found-by") == "minimize"
    assert all(s.expected is not None for s in repro.steps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noisy.min.trace", "noisy.trace"]


@pytest.mark.usefixtures("fake_sides")
def test_minimize_may_overwrite_the_input_only_when_told(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "noisy.trace"
    source.write_text(NOISY)
    code, _, _ = run(["minimize", str(source), "-o", str(source)], capsys)
    assert code == EXIT_OK
    assert len(load_trace(str(source)).steps) == 1


@pytest.mark.usefixtures("fake_sides")
def test_minimize_without_a_finding_exits_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "clean.trace"
    source.write_text(MAGIC + "write P0 1 1\n")
    code, out, err = run(["minimize", str(source), "-o", str(tmp_path / "out.trace")], capsys)
    assert code == EXIT_FOUND and out == ""
    assert err.count("\n") == 1 and "no finding" in err
    assert not (tmp_path / "out.trace").exists()


@pytest.mark.parametrize("text, needle", [
    (None, "no such file"),
    (MAGIC + "mmap P0 0 4 rw\n", ":2:"),
])
def test_minimize_bad_input_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      text: str | None, needle: str) -> None:
    source = tmp_path / "in.trace"
    if text is not None:
        source.write_text(text)
    code, out, err = run(["minimize", str(source)], capsys)
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_default_output_name() -> None:
    assert cli.default_output(Path("d/x.trace")) == Path("d/x.min.trace")
    assert cli.default_output(Path("d/x.txt")) == Path("d/x.txt.min.trace")


def test_corpus_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_corpus(tmp_path, {"seeds/a.trace": GOOD_SEED, "repros/b.trace": REPRO})
    code, out, _ = run(["corpus", "check", str(tmp_path)], capsys)
    assert code == EXIT_OK and out == "corpus ok: 2 traces\n"
    make_corpus(tmp_path, {"seeds/c.trace": MAGIC + "write P0 1 1\n"})
    code, out, _ = run(["corpus", "check", str(tmp_path)], capsys)
    assert code == EXIT_FOUND
    lines = out.splitlines()
    bad = tmp_path / "seeds" / "c.trace"
    assert lines[:2] == [f"{bad}:1: a seeds trace needs a '# title:' header",
                         f"{bad}:2: step line without '=> expected'"]
    assert lines[-1] == "2 problems in 1 of 3 traces"
    code, out, err = run(["corpus", "check", str(tmp_path / "nope")], capsys)
    assert code == EXIT_BAD_INPUT and out == "" and err.count("\n") == 1


def test_minimize_output_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     fake_sides: None) -> None:
    source = tmp_path / "noisy.trace"
    source.write_text(NOISY)
    run(["minimize", str(source), "-o", str(tmp_path / "r.trace")], capsys)
    text = (tmp_path / "r.trace").read_text()
    assert format_trace(parse_trace(text)) == text


def test_saved_repro_is_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "r.trace"
    write_atomic(target, "# mirrorfuzz-trace 1\n")
    assert target.stat().st_mode & 0o777 == 0o644
