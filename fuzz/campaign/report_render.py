"""The campaign report's two renderings: the HTML page and the Markdown file
(what they show: ``fuzz.campaign.report``)."""

from __future__ import annotations

import json
import re
from html import escape
from typing import Final

from fuzz.campaign.plots import CSS, MARKER_COLOURS, clock, number
from fuzz.campaign.report import (
    Campaign,
    Finding,
    _shown_trace,
    engine_totals,
    plots,
    replay_command,
    summary,
)
from fuzz.windows import op_kinds

# ---------------------------------------------------------------- rendering


def window_rows(c: Campaign) -> list[list[str]]:
    """(op, window, reached count, intruding ops reached) rows of the window table."""
    if c.windows is None:
        return []
    kinds = len(op_kinds())
    return [[op, str(k), f"{len(ops)}/{kinds}", ", ".join(ops) or "-"]
            for op, k, ops in c.windows.table()]


def window_section(c: Campaign) -> list[str]:
    rows = window_rows(c)
    p = ['</section><section id="windows"><h2>Race windows</h2>',
         "<p>An op started while another thread is in window k of an op (after its k-th "
         "yield). Rows: the windows seen; what has not been tried is visible.</p>"]
    if not rows:
        return [*p, "<p>Not counted yet.</p>"]
    return [*p, _table(["op", "window", "intruding ops", "which"],
                       [[escape(x) for x in row] for row in rows])]


def details(f: Finding) -> list[str]:
    """What a finding's block says beyond its file: cause, examples, minimization."""
    out = [f"cause (where the two sides' states first differ): {f.cause or f.signature}",
           f"examples met: {f.examples}"
           + ("; also seen as " + ", ".join(f"{s} ({n})" for s, n in sorted(f.also.items()))
              if f.also else "")]
    if f.seconds is not None or f.partial:
        state = {"true": "partial (stopped by its time limit)",
                 "unminimized": "not minimized (the minimizer did not finish)"}
        out.append(f"minimization: {state.get(f.partial or '', 'complete')}"
                   + (f", {f.seconds:.1f} s" if f.seconds is not None else ""))
    return out


MAX_EVENTS: Final = 500


def _engine_rows(c: Campaign) -> list[list[str]]:
    last = c.progress[-1].engines if c.progress else {}
    rows = []
    for name, tot in engine_totals(c).items():
        now = last.get(name, {})
        rows.append([name, number(tot.get("workers", 0)), number(tot.get("execs", 0)),
                     number(tot.get("steps", 0)), number(now.get("execs_per_s", 0)),
                     number(now.get("steps_per_s", 0))])
    return rows


def _when(f: Finding) -> str:
    return " ".join(x for x in (clock(f.t) if f.t is not None else "?", f.at or "") if x)


def _table(head: list[str], rows: list[list[str]], numeric: int = 0) -> str:
    """An HTML table of already escaped cells; the last ``numeric`` columns right-aligned."""
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = [f'<td class="num">{v}</td>' if i >= len(row) - numeric else f"<td>{v}</td>"
                 for i, v in enumerate(row)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join([*out, "</table>"])


def html_report(c: Campaign) -> str:
    """The self-contained HTML page."""
    title = f"mirrorfuzz campaign {c.out.resolve().name}"
    p = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
         f"<h1>{escape(title)}</h1>", f'<p class="sub">{escape(str(c.out.resolve()))}</p>',
         '<section id="summary"><h2>Summary</h2><table class="kv">']
    p += [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in summary(c)]
    p.append("</table>")
    rows = [[escape(x) for x in row] for row in _engine_rows(c)]
    if rows:
        p.append(_table(["engine", "workers", "execs", "steps", "execs/s (last)",
                         "steps/s (last)"], rows, numeric=5))
    p.append('</section><section id="plots"><h2>Over campaign time</h2><p class="key">')
    keys = [(f"worker {k}", k)
            for k in ("finding", "crashed", "hung", "oom", "restarted", "started")]
    p += [f'<span><i style="border-color:{MARKER_COLOURS[kind]}"></i>{escape(label)}</span>'
          for label, kind in [*keys, ("campaign start, resume, stop", "start")]]
    p.append("(hover over a mark or a point for details)</p>")
    p += plots(c)
    p.append(f'</section><section id="findings"><h2>Findings ({len(c.findings)})</h2>')
    if not c.findings:
        p.append("<p>No findings.</p>")
    else:
        p.append("<p>Replay commands run in the campaign directory.</p>")
        p.append(_table(["#", "cause", "signature (consequence)", "engine", "worker", "when",
                         "lines", "examples"], [
            [str(i), escape(f.cause or f.signature),
             f'<a href="#finding-{i}">{escape(f.signature)}</a>', escape(f.engine),
             escape(f.worker), escape(_when(f)), "?" if f.lines is None else str(f.lines),
             str(f.examples)]
            for i, f in enumerate(c.findings, 1)], numeric=2))
    for i, f in enumerate(c.findings, 1):
        p.append(f'<div class="finding" id="finding-{i}"><h3>{i}. {escape(f.signature)}</h3>')
        p.append(f"<p>file <a href=\"{escape(f.name)}\">{escape(f.name)}</a>, "
                 f"found by {escape(f.engine)} ({escape(f.worker)}) at {escape(_when(f))}</p>")
        if f.mutant:
            p.append(f'<p class="warn">found with mutant {escape(f.mutant)} switched on: '
                     "it replays clean without it</p>")
        if f.error:
            p.append(f'<p class="warn">{escape(f.error)}</p>')
        p += [f"<p>{escape(line)}</p>" for line in details(f)]
        p.append(f"<p>replay: <code>{escape(replay_command(f))}</code></p>")
        if f.text is not None:
            p.append(f"<pre>{escape(_shown_trace(f))}</pre>")
        p.append("</div>")
    p += window_section(c)
    p.append(f'</section><section id="workers"><h2>Worker events ({len(c.events)})</h2>')
    if c.events:
        p.append(_table(["when", "worker", "engine", "event", "detail"], [
            [escape(clock(e.t)), escape(e.worker), escape(e.engine), escape(e.event),
             escape(e.detail)] for e in c.events[:MAX_EVENTS]]))
        if len(c.events) > MAX_EVENTS:
            p.append(f"<p>... and {len(c.events) - MAX_EVENTS} more.</p>")
    else:
        p.append("<p>No worker events.</p>")
    p.append('</section><section id="config"><h2>Configuration</h2><table class="kv">')
    for key, value in c.config.items():
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        text = text if len(text) <= 300 else text[:300] + "..."
        p.append(f"<tr><th>{escape(str(key))}</th><td><code>{escape(text)}</code></td></tr>")
    p.append("</table></section></body></html>")
    return "\n".join(p) + "\n"


def _fence(text: str, char: str = "`") -> str:
    """A code fence longer than any run of ``char`` in ``text``."""
    runs = [len(m) for m in re.findall(rf"{re.escape(char)}+", text)]
    return char * max(3, max(runs, default=0) + 1)


def _code(text: str) -> str:
    fence = "`" * (max((len(m) for m in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_report(c: Campaign) -> str:
    """The Markdown summary and findings."""
    md = [f"# mirrorfuzz campaign {c.out.resolve().name}", "", f"Directory: {c.out.resolve()}",
          "", "## Summary", ""]
    md += [f"- **{k}**: {v}" for k, v in summary(c)]
    rows = _engine_rows(c)
    if rows:
        md += ["", "| engine | workers | execs | steps | execs/s (last) | steps/s (last) |",
               "| --- | ---: | ---: | ---: | ---: | ---: |"]
        md += ["| " + " | ".join(x.replace("|", "\\|") for x in row) + " |" for row in rows]
    md += ["", f"## Findings ({len(c.findings)})", ""]
    if not c.findings:
        md.append("No findings.")
    else:
        md += ["Replay commands run in the campaign directory.", ""]
    for i, f in enumerate(c.findings, 1):
        md += [f"### {i}. {_code(f.signature)}", "",
               f"- file: {_code(f.name)}",
               f"- found by: {f.engine} ({f.worker}) at {_when(f)}",
               f"- step lines: {'?' if f.lines is None else f.lines}"]
        if f.mutant:
            md.append(f"- mutant: {_code(f.mutant)} (it replays clean without it)")
        if f.error:
            md.append(f"- problem: {f.error}")
        md += [f"- {line}" for line in details(f)]
        md += [f"- replay: {_code(replay_command(f))}", ""]
        if f.text is not None:
            shown = _shown_trace(f)
            fence = _fence(shown)
            md += [fence, shown, fence, ""]
    rows = window_rows(c)
    if rows:
        md += ["## Race windows", "", "| op | window | intruding ops | which |",
               "| --- | ---: | ---: | --- |"]
        md += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(md).rstrip("\n") + "\n"


