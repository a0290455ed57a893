"""``mirrorfuzz promote``: copies chosen repros of a campaign's findings/
into the corpus with save_repro, each checked first (a bad one is reported
with file and line and not copied, the others still go), deduplicated by
identity, never overwriting; mutant repros need --allow-mutant; with no
names it only lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fuzz.campaign import layout
from fuzz.cli import EXIT_BAD_INPUT, EXIT_FOUND, EXIT_OK, main
from fuzz.corpus import check_corpus, repro_name, save_repro
from fuzz.trace import format_trace, load_trace, parse_trace

MAGIC = "# mirrorfuzz-trace 1\n"
# A real repro: fork_share_pinned's trace minimized under that mutant.
MUTANT = MAGIC + """# title: minimized: fork keeps a pinned page coherent
# signature: divergence/observation/fork
# found-by: campaign hypothesis w0
# mutant: fork_share_pinned
# minimized: 2026-11-25
mmap P0 0 1 rw private => ok
open P0 pin => D0
pin D0 0 1 rw => R0
fork P0 => P1
"""
PLAIN = MAGIC + """# signature: violation/coherence/write
# found-by: campaign atheris w1
mmap P0 0 4 rw private => ok
write P0 1 5 => ok
read P0 1 => 5
"""
SECOND = MAGIC + """# signature: exception/KeyError/read
# found-by: campaign atheris w1
mmap P0 0 2 rw private => ok
read P0 1 => 0
"""
UNANNOTATED = MAGIC + """# signature: budget/steps/munmap
mmap P0 0 2 rw private => ok
munmap P0 0 2
"""
CONFIG: dict[str, Any] = {"jobs": 1, "engine": "both", "mutant": None, "seed": 1,
                          "version": 1}


def campaign(tmp_path: Path, *texts: str, config: dict[str, Any] = CONFIG) -> tuple[Path, Path]:
    """A campaign with these findings (saved as the runner saves them); the
    campaign directory and a corpus repros directory that does not exist yet."""
    out = tmp_path / "camp"
    out.mkdir()
    (out / layout.CONFIG).write_text(json.dumps(config))
    for text in texts:
        trace = parse_trace(text)
        assert format_trace(trace) == text
        save_repro(out / layout.FINDINGS, trace)
    (tmp_path / "corpus").mkdir()
    return out, tmp_path / "corpus" / "repros"


def name_of(text: str) -> str:
    trace = parse_trace(text)
    return repro_name(trace.header("signature") or "", trace)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_no_names_lists_the_candidates_and_copies_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, repros = campaign(tmp_path, PLAIN, MUTANT, UNANNOTATED)
    before = snapshot(tmp_path)
    code, printed, err = run(["promote", str(out), "--to", str(repros)], capsys)
    assert (code, err) == (EXIT_OK, "")
    assert snapshot(tmp_path) == before and not repros.exists()
    assert "3 findings in" in printed
    for text in (PLAIN, MUTANT, UNANNOTATED):
        assert name_of(text) in printed
    assert "mutant fork_share_pinned: needs --allow-mutant" in printed
    assert f"invalid: {out / layout.FINDINGS / name_of(UNANNOTATED)}:4: step line" in printed


def test_promote_by_name_and_signature_then_dedupe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, repros = campaign(tmp_path, PLAIN, SECOND)
    code, printed, _ = run(["promote", str(out), name_of(PLAIN), "exception/KeyError/read",
                            "--to", str(repros)], capsys)
    assert code == EXIT_OK
    assert sorted(p.name for p in repros.iterdir()) == sorted([name_of(PLAIN), name_of(SECOND)])
    assert (repros / name_of(PLAIN)).read_text() == PLAIN
    assert check_corpus(repros.parent) == []
    assert "2 promoted, 0 already in the corpus, 0 not promoted" in printed
    # again, and with the first renamed by hand: nothing new, nothing changed
    (repros / name_of(PLAIN)).rename(repros / "kept-by-hand.trace")
    before = snapshot(repros)
    code, printed, _ = run(["promote", str(out), "--all", "--to", str(repros)], capsys)
    assert code == EXIT_OK and snapshot(repros) == before
    assert f"already in the corpus as {repros / 'kept-by-hand.trace'}" in printed
    assert "0 promoted, 2 already in the corpus" in printed


def test_never_overwrites_a_different_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out, repros = campaign(tmp_path, PLAIN)
    repros.mkdir()
    squatter = repros / name_of(PLAIN)
    squatter.write_text("not the same repro\n")
    code, printed, _ = run(["promote", str(out), name_of(PLAIN), "--to", str(repros)], capsys)
    assert code == EXIT_OK
    assert squatter.read_text() == "not the same repro\n"
    second = repros / (name_of(PLAIN).removesuffix(".trace") + "-2.trace")
    assert second.read_text() == PLAIN and f"-> {second}" in printed


def test_a_bad_repro_is_reported_and_the_others_still_go(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, repros = campaign(tmp_path, PLAIN, UNANNOTATED)
    (out / layout.FINDINGS / "garbled.trace").write_text(MAGIC + "# signature: x/y/z\nfrob\n")
    code, printed, err = run(["promote", str(out), "--all", "--to", str(repros)], capsys)
    assert (code, err) == (EXIT_FOUND, "")
    assert [p.name for p in repros.iterdir()] == [name_of(PLAIN)]
    bad = out / layout.FINDINGS / name_of(UNANNOTATED)
    assert f"{bad}:4: step line without '=> expected'" in printed
    assert f"{out / layout.FINDINGS / 'garbled.trace'}:3: unknown op" in printed
    assert "1 promoted, 0 already in the corpus, 2 not promoted, of 3 chosen" in printed


def test_a_mutant_repro_needs_allow_mutant(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out, repros = campaign(tmp_path, MUTANT)
    code, printed, _ = run(["promote", str(out), "--all", "--to", str(repros)], capsys)
    assert code == EXIT_FOUND and not repros.exists()
    assert "found with mutant fork_share_pinned switched on" in printed
    code, printed, _ = run(["promote", str(out), "--all", "--allow-mutant", "--to",
                            str(repros)], capsys)
    assert code == EXIT_OK
    saved = repros / name_of(MUTANT)
    assert saved.read_text() == MUTANT and "# mutant: fork_share_pinned" in saved.read_text()
    assert "(mutant fork_share_pinned)" in printed


def test_a_campaign_run_under_a_mutant_flags_its_repros(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, repros = campaign(tmp_path, PLAIN, config={**CONFIG, "mutant": "userptr_keep_pins"})
    code, printed, _ = run(["promote", str(out), "--all", "--to", str(repros)], capsys)
    assert code == EXIT_FOUND and not repros.exists()
    assert "mutant userptr_keep_pins" in printed


@pytest.mark.parametrize("case", ["unknown-name", "names-and-all", "to-is-a-file",
                                  "not-a-campaign", "corrupt-config", "no-dir", "to-deep"])
def test_bad_input_is_one_line_and_copies_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    out, repros = campaign(tmp_path, PLAIN)
    argv = ["promote", str(out), "--all", "--to", str(repros)]
    if case == "unknown-name":
        argv = ["promote", str(out), name_of(PLAIN), "no-such-finding", "--to", str(repros)]
    elif case == "names-and-all":
        argv.insert(2, name_of(PLAIN))
    elif case == "to-is-a-file":
        repros.write_text("x")
    elif case == "not-a-campaign":
        (out / layout.CONFIG).unlink()
    elif case == "corrupt-config":
        (out / layout.CONFIG).write_text("{")
    elif case == "no-dir":
        argv[1] = str(tmp_path / "nowhere")
    elif case == "to-deep":
        argv[-1] = str(tmp_path / "a" / "b" / "repros")
    before = snapshot(tmp_path)
    code, printed, err = run(argv, capsys)
    assert code == EXIT_BAD_INPUT and printed == ""
    assert err.startswith("mirrorfuzz: error: ") and err.count("\n") == 1
    assert snapshot(tmp_path) == before and not (tmp_path / "a").exists()
    if case != "to-is-a-file":
        assert not repros.exists()


def test_promoted_repro_loads_and_keeps_its_identity(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, repros = campaign(tmp_path, SECOND)
    finding = out / layout.FINDINGS / name_of(SECOND)
    assert run(["promote", str(out), str(finding), "--to", str(repros)], capsys)[0] == EXIT_OK
    assert load_trace(str(repros / finding.name)) == load_trace(str(finding))
    assert finding.read_text() == SECOND  # the campaign's copy is left as it was
