"""``docs/spec.md`` names every section the code cites and folds every decision.

The code cites the spec by section ("SPEC §3.2", "(SPEC §2, §6)", "SPEC
Appendix B", "Appendix D12" for an item of the deviations list) and the
decisions by number ("DECISIONS D15", "DECISIONS.md D16").  These tests keep
those citations true: each cited section is a heading of ``docs/spec.md``,
each cited Appendix D item exists, each decision cited in the code is an
entry of ``model/DECISIONS.md``, and each entry there is folded into
``docs/spec.md`` (a link to its anchor, ``../model/DECISIONS.md#dN``).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "spec.md"
DECISIONS = ROOT / "model" / "DECISIONS.md"
CITING = ("model", "fuzz", "bench", "tests", "corpus")
SUFFIXES = {".py", ".trace", ".md"}

# A section sign with its number; "§1." at the end of a sentence is §1.
SECTION = re.compile(r"§+\s?(\d+(?:\.\d+)?)")
APPENDIX = re.compile(r"\bAppendix ([A-Z])(\d*)\b")
# Section signs that name a section of another document (the Linux background notes).
FOREIGN = re.compile(r"(linux-semantics|drivers-and-bugs|linux)\.md,? §")
DECISION_REF = re.compile(r"\bDECISIONS(?:\.md)?,?\s+(D\d+(?:\s*(?:,|and|/)\s*D\d+)*)")
DECISION_ENTRY = re.compile(r"^D(\d+)\. \*\*", re.MULTILINE)
DECISION_ANCHOR = re.compile(r'^<a id="d(\d+)"></a>$', re.MULTILINE)
DECISION_LINK = re.compile(r"DECISIONS\.md#d(\d+)\)")


def citing_files() -> list[Path]:
    this = Path(__file__).resolve()
    files = []
    for top in CITING:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in SUFFIXES and path.is_file() and path.resolve() != this:
                files.append(path)
    return files


def citations(text: str) -> tuple[set[str], set[str], set[int]]:
    """(sections, appendices, Appendix D items) that ``text`` cites."""
    sections: set[str] = set()
    for line in text.splitlines():
        foreign = {m.end() - 1 for m in FOREIGN.finditer(line)}  # where their § stands
        sections.update(m.group(1) for m in SECTION.finditer(line) if m.start() not in foreign)
    appendices: set[str] = set()
    items: set[int] = set()
    for m in APPENDIX.finditer(text):
        appendices.add(m.group(1))
        if m.group(1) == "D" and m.group(2):
            items.add(int(m.group(2)))
    return sections, appendices, items


def spec_headings(spec: str) -> tuple[set[str], set[str], set[int]]:
    """(numbered sections, appendix letters, Appendix D item numbers) of the spec."""
    sections = set(re.findall(r"^#{2,4} (\d+(?:\.\d+)?)\.? ", spec, re.MULTILINE))
    appendices = set(re.findall(r"^## Appendix ([A-Z])\. ", spec, re.MULTILINE))
    items: set[int] = set()
    if "D" in appendices:
        tail = spec[spec.index("## Appendix D. "):]
        following = re.search(r"^## ", tail[3:], re.MULTILINE)
        body = tail[: following.start() + 3] if following else tail
        items = {int(n) for n in re.findall(r"^(\d+)\. ", body, re.MULTILINE)}
    return sections, appendices, items


def missing_in_spec(spec: str, cited: dict[str, set[str]]) -> list[str]:
    """Each citation (by file) that names no section, appendix or item of ``spec``."""
    sections, appendices, items = spec_headings(spec)
    problems = []
    for where, texts in sorted(cited.items()):
        for text in sorted(texts):
            got, apps, its = citations(text)
            problems += [f"{where}: §{s} is not a heading of docs/spec.md"
                         for s in sorted(got - sections)]
            problems += [f"{where}: Appendix {a} is not a heading of docs/spec.md"
                         for a in sorted(apps - appendices)]
            problems += [f"{where}: Appendix D{i} is not an item of docs/spec.md's Appendix D"
                         for i in sorted(its - items)]
    return problems


def decisions_cited(text: str) -> set[int]:
    return {int(d) for m in DECISION_REF.finditer(text) for d in re.findall(r"D(\d+)", m.group(1))}


def unfolded(spec: str, decisions: str) -> list[str]:
    """Each decision of ``decisions`` that ``spec`` does not link, and each link to none."""
    entries = {int(n) for n in DECISION_ENTRY.findall(decisions)}
    anchors = {int(n) for n in DECISION_ANCHOR.findall(decisions)}
    links = {int(n) for n in DECISION_LINK.findall(spec)}
    problems = [f"D{n} has no anchor <a id=\"d{n}\"></a> in model/DECISIONS.md"
                for n in sorted(entries - anchors)]
    problems += [f"anchor d{n} in model/DECISIONS.md has no entry"
                 for n in sorted(anchors - entries)]
    problems += [f"D{n} is not folded into docs/spec.md (no link to DECISIONS.md#d{n})"
                 for n in sorted(entries - links)]
    problems += [f"docs/spec.md links DECISIONS.md#d{n}, which is no entry"
                 for n in sorted(links - entries)]
    return problems


def test_every_cited_section_is_in_the_spec() -> None:
    cited = {str(p.relative_to(ROOT)): {p.read_text(encoding="utf-8")} for p in citing_files()}
    assert sum(len(citations(t)[0]) for ts in cited.values() for t in ts) > 50  # the scan sees them
    assert missing_in_spec(SPEC.read_text(encoding="utf-8"), cited) == []


def test_every_decision_is_folded_into_the_spec() -> None:
    decisions = DECISIONS.read_text(encoding="utf-8")
    entries = {int(n) for n in DECISION_ENTRY.findall(decisions)}
    assert len(entries) >= 22 and entries == set(range(1, max(entries) + 1))
    assert unfolded(SPEC.read_text(encoding="utf-8"), decisions) == []


def test_every_decision_cited_in_the_code_exists_and_is_in_the_spec() -> None:
    entries = {int(n) for n in DECISION_ENTRY.findall(DECISIONS.read_text(encoding="utf-8"))}
    links = {int(n) for n in DECISION_LINK.findall(SPEC.read_text(encoding="utf-8"))}
    cited = {p.relative_to(ROOT): decisions_cited(p.read_text(encoding="utf-8"))
             for p in citing_files()}
    assert any(cited.values())
    known = entries & links
    bad = {str(p): sorted(ds - known) for p, ds in cited.items() if ds - known}
    assert bad == {}


def test_range_cpu_access_is_specified() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    for op in ("read_range", "write_range"):
        for part in ("### 3.1 ", "### 3.2 ", "## Appendix A. ", "## Appendix B. "):
            start = spec.index(part)
            end = spec.find("\n## ", start + 1)
            following = spec.find("\n### ", start + 1)
            if part.startswith("###") and 0 <= following < end:
                end = following
            assert op in spec[start:end], (op, part)


# The checks can fail: a renamed heading, a dropped item, an unfolded decision.

def test_a_renamed_heading_is_reported() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    renamed = spec.replace("### 3.2 CPU access and faults", "### 3.9 CPU access and faults")
    assert renamed != spec
    cited = {"x.py": {"faults (SPEC §3.2, §6.5) and Appendix B"}}
    assert missing_in_spec(spec, cited) == []
    assert missing_in_spec(renamed, cited) == ["x.py: §3.2 is not a heading of docs/spec.md"]
    no_b = spec.replace("## Appendix B. ", "## Appendix Q. ")
    assert missing_in_spec(no_b, cited) == ["x.py: Appendix B is not a heading of docs/spec.md"]


def test_a_missing_deviation_item_is_reported() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    cited = {"t.trace": {"# (Appendix D12, D13); see linux-semantics.md §11"}}
    assert missing_in_spec(spec, cited) == []
    assert missing_in_spec(spec, {"t.trace": {"# Appendix D99"}}) == [
        "t.trace: Appendix D99 is not an item of docs/spec.md's Appendix D"]


def test_an_unfolded_decision_is_reported() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    decisions = DECISIONS.read_text(encoding="utf-8")
    assert unfolded(spec, decisions) == []
    dropped = spec.replace("DECISIONS.md#d15)", "DECISIONS.md)")
    assert unfolded(dropped, decisions) == [
        "D15 is not folded into docs/spec.md (no link to DECISIONS.md#d15)"]
    assert decisions_cited("(DECISIONS D15), (D21); DECISIONS.md D16; DECISIONS D3, D4") == {
        15, 16, 3, 4}
