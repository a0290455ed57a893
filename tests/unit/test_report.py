"""The campaign report: ``mirrorfuzz report DIR`` reads campaign.json,
stats.jsonl and findings/ (fuzz.campaign.layout) and writes a self-contained
report.html (SVG plots over campaign time, findings with escaped traces and
replay commands) and report.md; it tolerates a truncated or garbled
stats.jsonl and an empty campaign, and on a directory that is no campaign it
gives one line, exit 2, and writes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from fuzz.campaign import layout
from fuzz.campaign.plots import MAX_POINTS, Series, line_chart, thin
from fuzz.campaign.report import load_campaign, write_report
from fuzz.cli import EXIT_BAD_INPUT, EXIT_OK, main
from fuzz.corpus import save_repro
from fuzz.errors import BadInput
from fuzz.trace import format_trace, parse_trace

# A real repro: fork_share_pinned's trace minimized under that mutant.
FORK = """# mirrorfuzz-trace 1
# title: minimized: fork keeps a pinned page coherent
# signature: divergence/observation/fork
# found-by: campaign hypothesis w0
# mutant: fork_share_pinned
# found-at: 2026-11-25T01:00:00Z
# minimized: 2026-11-25
mmap P0 0 1 rw private => ok
open P0 pin => D0
pin D0 0 1 rw => R0
fork P0 => P1
"""
# Text that must be escaped in HTML.
NASTY = """# mirrorfuzz-trace 1
# signature: violation/coherence/write
# found-by: campaign atheris w1
# note <script>alert("x")</script> & more
mmap P0 0 4 rw private => ok
write P0 1 5 => ok
read P0 1 => 5
"""
CONFIG = {"time_s": 3600.0, "jobs": 2, "engine": "both", "mutant": None, "seed": 7,
          "db": None, "observe_every": 1, "rss_limit_mb": 2048, "hang_s": 120.0,
          "started": "2026-11-25T00:00:00Z", "version": 1}


def rec(kind: str, t: float, **fields: Any) -> str:
    return json.dumps({"kind": kind, "t": t, "at": f"2026-11-25T00:{int(t) // 60:02d}:00Z",
                       **fields})


def progress(t: float, k: int, coverage: bool = True) -> str:
    engines = {"hypothesis": {"workers": 1, "execs": 100 * k, "steps": 1000 * k,
                              "execs_per_s": 10.0 + k, "steps_per_s": 100.0 + k},
               "atheris": {"workers": 1, "execs": 300 * k, "steps": 2000 * k,
                           "execs_per_s": 30.0 + k, "steps_per_s": 200.0 + k}}
    cov = {"lines": 50.0 + k, "branches": 40.0 + k} if coverage else None
    return rec("progress", t, engines=engines, coverage=cov, corpus=k, findings=0,
               rss_mb={"0": 100.0, "1": 120.0})


def make_campaign(out: Path, lines: list[str] | None, *, config: Any = CONFIG,
                  traces: tuple[str, ...] = ()) -> list[Path]:
    """A campaign directory by hand; gives the saved finding files."""
    out.mkdir(parents=True, exist_ok=True)
    (out / layout.CONFIG).write_text(json.dumps(config))
    if lines is not None:
        (out / layout.STATS).write_text("".join(line + "\n" for line in lines))
    saved = []
    for text in traces:
        trace = parse_trace(text)
        assert format_trace(trace) == text  # a canonical trace, as the runner writes them
        saved.append(save_repro(out / layout.FINDINGS, trace))
    return saved


def full_campaign(out: Path) -> tuple[list[Path], list[str]]:
    fork_file, nasty_file = make_campaign(out, None, traces=(FORK, NASTY))
    fork_rel = f"./findings//{fork_file.name}"  # not listed twice
    nasty_rel = f"findings/{nasty_file.name}"
    lines = [rec("start", 0, config=CONFIG),
             rec("worker", 0, worker="0", engine="hypothesis", event="started", detail=""),
             rec("worker", 0, worker="1", engine="atheris", event="started", detail=""),
             progress(10, 1, coverage=False)]
    lines += [progress(10 + 10 * k, k) for k in range(2, 8)]  # 6 with coverage
    lines += [rec("finding", 35, signature="divergence/observation/fork", path=fork_rel,
                  raw="findings/raw/x.trace", engine="hypothesis", worker="0", lines=4),
              rec("worker", 40, worker=1, engine="atheris", event="crashed",
                  detail="exit -11"),
              rec("worker", 41, worker="1", engine="atheris", event="restarted", detail=""),
              rec("finding", 55, signature="violation/coherence/write", path=nasty_rel,
                  raw="findings/raw/y.trace", engine="atheris", worker="1", lines=3),
              rec("stop", 80, reason="time")]
    (out / layout.STATS).write_text("".join(line + "\n" for line in lines))
    return [fork_file, nasty_file], lines


def polylines(html: str) -> dict[str, list[int]]:
    """Series name -> data-points of each of its polylines, in page order."""
    found: dict[str, list[int]] = {}
    for name, n in re.findall(r'<polyline class="series" data-series="([^"]*)" '
                              r'data-points="(\d+)"', html):
        found.setdefault(name, []).append(int(n))
    return found


def test_report_plots_findings_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "camp"
    (fork_file, nasty_file), _ = full_campaign(out)
    html_path, md_path = write_report(out)
    assert (html_path, md_path) == (out / "report.html", out / "report.md")
    html, md = html_path.read_text(), md_path.read_text()

    # five plots (race windows too); points: coverage from 6 of 7 progress records,
    # rates from all 7,
    # findings (0,0) + 2 signatures + the end
    assert html.count("<svg") == 5 and "<h2>Findings (2)</h2>" in html
    assert polylines(html) == {"lines": [6], "branches": [6], "hypothesis": [7, 7],
                               "atheris": [7, 7], "findings": [4], "reached": [0],
                               "possible": [0]}
    assert html.count('class="marker crashed"') == 5
    assert html.count('class="marker restarted"') == 5  # on each of the 5 plots
    assert html.count('class="marker stop"') == 5  # on each of the 5 plots
    # self-contained: no script, nothing fetched
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert "src=" not in html and "<link" not in html

    # findings: escaped traces, replay commands (with the mutant when there was one)
    fork_cmd = ("mirrorfuzz replay --impl both --mutant fork_share_pinned "
                f"findings/{fork_file.name}")
    nasty_cmd = f"mirrorfuzz replay --impl both findings/{nasty_file.name}"
    for text in (html, md):
        assert fork_cmd in text and nasty_cmd in text
        assert "divergence/observation/fork" in text and "violation/coherence/write" in text
    assert "# note &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in html
    assert "pin D0 0 1 rw =&gt; R0" in html
    assert html.index("divergence/observation/fork") < html.index("violation/coherence/write")
    # markdown: each trace in a fenced block
    assert "```\n" + FORK.rstrip("\n") + "\n```" in md
    assert "```\n" + NASTY.rstrip("\n") + "\n```" in md
    for expected in ("execs**: 2.8k", "steps**: 21k", "lines 57.0%, branches 47.0%",
                     "2 distinct causes", "worker restarts**: 1 (after a finding 0, crashed 1",
                     "stopped (time)", "1m20s of campaign time (budget 1h00m)"):
        assert expected in md
    assert "<td>atheris</td>" in html and "<code>2026-11-25T00:00:00Z" not in html
    assert '<th>seed</th><td><code>7</code>' in html
    assert "<td>40s</td><td>1</td><td>atheris</td><td>crashed</td><td>exit -11</td>" in html


def test_truncated_and_garbled_stats_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    out = tmp_path / "camp"
    _, lines = full_campaign(out)
    garbled = [*lines[:5], "not json at all", json.dumps([1, 2]), json.dumps({"kind": "x"}),
               rec("future-kind", 50, stuff=1), *lines[5:-1], lines[-1][:-7]]
    (out / layout.STATS).write_bytes(("\n".join(garbled)).encode() + b"\xff\xfe")
    campaign = load_campaign(out)
    assert (campaign.skipped, campaign.unknown) == (4, 1)
    assert len(campaign.progress) == 7 and len(campaign.findings) == 2
    assert [kind for _, kind, _ in campaign.phases] == ["start"]  # the stop line was cut
    write_report(out)
    md = (out / "report.md").read_text()
    assert "4 unparseable lines skipped, 1 record of unknown kinds ignored" in md
    assert "running, or killed" in md


def test_campaign_with_no_progress_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "camp"
    make_campaign(out, None)
    assert main(["report", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert f"wrote {out / 'report.html'}" in printed and f"wrote {out / 'report.md'}" in printed
    html = (out / "report.html").read_text()
    assert html.count("no data yet") == 4  # the findings plot has its (0, 0) point
    assert polylines(html) == {"lines": [0], "branches": [0], "hypothesis": [0, 0],
                               "atheris": [0, 0], "findings": [1], "reached": [0],
                               "possible": [0]}
    md = (out / "report.md").read_text()
    assert "No findings." in md and "not measured yet" in md and "no records yet" in md


def test_findings_without_record_or_file_are_listed(tmp_path: Path) -> None:
    out = tmp_path / "camp"
    (fork_file,) = make_campaign(out, [
        rec("finding", 5, signature="exception/KeyError/read", path="findings/gone.trace",
            engine="atheris", worker="3", lines=2),
        rec("finding", 6, signature="budget/steps/munmap", path="../../etc/passwd",
            engine="atheris", worker="3", lines=2)], traces=(FORK,))
    (out / layout.FINDINGS / "broken.trace").write_text("# mirrorfuzz-trace 1\nfrob P0\n")
    campaign = load_campaign(out)
    by_name = {f.name: f for f in campaign.findings}
    assert set(by_name) == {"findings/gone.trace", "../../etc/passwd",
                            f"findings/{fork_file.name}", "findings/broken.trace"}
    assert by_name["findings/gone.trace"].error is not None
    assert by_name["../../etc/passwd"].text is None
    assert "outside" in str(by_name["../../etc/passwd"].error)
    fork = by_name[f"findings/{fork_file.name}"]
    assert (fork.signature, fork.lines, fork.mutant, fork.t) == (
        "divergence/observation/fork", 4, "fork_share_pinned", None)
    assert "broken.trace:2:" in str(by_name["findings/broken.trace"].error)
    write_report(out)
    html = (out / "report.html").read_text()
    assert "root:" not in html and "frob P0" in html


@pytest.mark.parametrize("setup", ["missing", "empty-dir", "garbage", "not-object",
                                   "not-utf8", "deep", "config-is-dir"])
def test_no_campaign_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str) -> None:
    out = tmp_path / "camp"
    if setup != "missing":
        out.mkdir()
        (out / layout.STATS).write_text(progress(1, 1) + "\n")
    config = out / layout.CONFIG
    if setup == "garbage":
        config.write_text('{"jobs": 2,')
    elif setup == "not-object":
        config.write_text("[1, 2]")
    elif setup == "not-utf8":
        config.write_bytes(b'{"x": "\xff"}')
    elif setup == "deep":
        config.write_text("[" * 100_000)
    elif setup == "config-is-dir":
        config.mkdir()
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    assert main(["report", str(out)]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("mirrorfuzz: error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == before
    with pytest.raises(BadInput):
        write_report(out)


def test_report_replaces_an_old_report(tmp_path: Path) -> None:
    out = tmp_path / "camp"
    full_campaign(out)
    (out / "report.html").write_text("old")
    (out / "report.md").write_text("old")
    write_report(out)
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "report.md").read_text().startswith("# mirrorfuzz campaign camp")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["campaign.json", "stats.jsonl", "findings", "report.html", "report.md"])


def test_long_series_are_thinned_keeping_the_ends() -> None:
    points = [(float(t), float(t % 7)) for t in range(5 * MAX_POINTS + 3)]
    kept = thin(points)
    assert len(kept) <= MAX_POINTS and kept[0] == points[0] and kept[-1] == points[-1]
    svg = line_chart("x", [Series("s", points)], t_max=points[-1][0])
    assert f'data-points="{len(kept)}"' in svg
    assert svg.count("<circle") == 0  # no dots on a dense line


def test_a_report_target_that_cannot_be_written_leaves_both_as_they_were(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "camp"
    full_campaign(out)
    (out / "report.html").write_text("old")
    (out / "report.md").mkdir()  # the html would be written first
    assert main(["report", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "report.md" in err and "Traceback" not in err
    assert (out / "report.html").read_text() == "old"


def test_a_number_too_long_for_a_float_is_skipped_not_a_crash(tmp_path: Path) -> None:
    out = tmp_path / "camp"
    make_campaign(out, [progress(60.0, 1), '{"kind": "progress", "t": ' + "9" * 400 + "}"])
    write_report(out)
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
