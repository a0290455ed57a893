"""The campaign report: ``OUT/report.html`` and ``OUT/report.md`` from
``campaign.json``, ``stats.jsonl`` and ``findings/`` (fuzz.campaign.layout).

* The HTML page is self-contained: inline CSS and SVG (fuzz.campaign.plots),
  no script, nothing fetched.  Plots over campaign time: coverage of
  ``model/`` (lines, branches %), execs/s and steps/s per engine, distinct
  finding signatures (cumulative); worker events (crash, hang, OOM, restart)
  and campaign start/resume/stop are marked on every plot.  Then totals, the
  findings (each minimized trace HTML-escaped in a ``<pre>``, with the
  command that replays it), the worker events and the configuration.
* The Markdown file has the summary and each finding with its trace in a
  fenced block and its replay command.

Reading is tolerant of what a running or killed campaign leaves: a line of
``stats.jsonl`` that is not a JSON object with a string ``kind`` and a
numeric ``t`` (a truncated last line, garbage) is skipped and counted, a
record of an unknown kind is counted and ignored, a missing ``stats.jsonl``
is a campaign with no progress yet, and a finding file with no record (or a
record with no file) is still listed.  A missing directory, a missing or
corrupt ``campaign.json`` is :class:`fuzz.errors.BadInput` (one line), and
then nothing is written.  Both files are written atomically.  Every file is
read through fuzz.safeio (regular files only, with a size bound: a FIFO
never hangs the report, a huge finding is named, not shown), JSON strictly
(no NaN, Infinity, deep nesting); a number beyond :data:`MAX_NUMBER` (a
``t`` beyond :data:`fuzz.campaign.stats.MAX_T`) is treated as missing.
Quarantined raw examples (``findings/quarantine/``) are named with why.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Final

from fuzz import safeio
from fuzz.campaign import layout
from fuzz.campaign.plots import CSS, MARKER_COLOURS, Marker, Series, clock, line_chart, number
from fuzz.campaign.stats import MAX_T
from fuzz.errors import BadInput
from fuzz.safeio import write_atomic
from fuzz.trace import Comment, StepLine, Trace, TraceError, parse_trace

KINDS: Final = ("start", "resume", "progress", "finding", "worker", "stop", "quarantine")
MAX_NUMBER: Final = 1e18
"""A figure larger than this (in magnitude) is no figure the runner writes."""
MAX_FINDING_BYTES: Final = 1 << 20
"""The largest finding file the report reads and shows."""
WORKER_TROUBLE: Final = ("crashed", "hung", "oom")
MAX_TRACE_LINES: Final = 400
_META_RE = re.compile(r"#\s*([a-z-]+):\s*(.*\S)\s*")


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Progress:
    t: float
    engines: dict[str, dict[str, float]]
    lines: float | None
    branches: float | None
    rss_mb: dict[str, float]


@dataclass(frozen=True)
class WorkerEvent:
    t: float
    worker: str
    engine: str
    event: str
    detail: str


@dataclass
class Finding:
    signature: str
    name: str  # the file's path relative to OUT
    engine: str = "?"
    worker: str = "?"
    t: float | None = None
    at: str | None = None
    lines: int | None = None
    text: str | None = None
    error: str | None = None  # why the trace could not be shown or parsed
    mutant: str | None = None


@dataclass
class Campaign:
    out: Path
    config: dict[str, Any]
    progress: list[Progress] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    events: list[WorkerEvent] = field(default_factory=list)
    phases: list[tuple[float, str, str]] = field(default_factory=list)  # start/resume/stop
    records: int = 0
    skipped: int = 0
    unknown: int = 0
    duration: float = 0.0
    first_at: str | None = None
    last_at: str | None = None
    quarantined: dict[str, str] = field(default_factory=dict)  # path -> why


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) and abs(v) <= MAX_NUMBER else None


def _str(value: object, default: str = "?") -> str:
    """A text field (a whole number, like a worker id, is written out)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else default


def meta(trace: Trace, key: str) -> str | None:
    """A header of ``trace``, or a ``# key: value`` comment before its first step
    (``found-at`` and ``mutant`` are not header keys of the trace format)."""
    value = trace.header(key)
    if value:
        return value
    for line in trace.body:
        if isinstance(line, StepLine):
            break
        if isinstance(line, Comment):
            m = _META_RE.fullmatch(line.text.strip())
            if m is not None and m.group(1) == key:
                return m.group(2)
    return None


def mutant_of(trace: Trace, config: Mapping[str, Any]) -> str | None:
    """The mutant a finding was found under: its own line, else the campaign's."""
    configured = config.get("mutant")
    return meta(trace, "mutant") or (configured if isinstance(configured, str) and configured
                                     else None)


def load_config(out: Path) -> dict[str, Any]:
    """``OUT/campaign.json`` as a dict; :class:`BadInput` if ``out`` is no campaign."""
    what = safeio.describe(out)
    if what != "a directory":
        raise BadInput(f"{out}: " + ("no such directory" if what == "absent"
                                     else f"{what}, not a directory"))
    path = layout.path(out, layout.CONFIG)
    if safeio.describe(path) == "absent":
        raise BadInput(f"{out}: not a campaign directory (no {layout.CONFIG})")
    data = safeio.read_bytes(path, limit=safeio.MAX_JSON_BYTES)
    try:
        config = safeio.loads_json(data)
    except ValueError as exc:
        raise BadInput(f"{path}: corrupt campaign configuration ({exc})") from None
    if not isinstance(config, dict):
        raise BadInput(f"{path}: corrupt campaign configuration (not a JSON object)")
    return config


def _records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of ``stats.jsonl`` and how many lines were skipped."""
    if safeio.describe(path) == "absent":
        return [], 0
    data = safeio.read_bytes(path, limit=safeio.MAX_STATS_BYTES)
    records: list[dict[str, Any]] = []
    skipped = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            record = safeio.loads_json(raw)
        except ValueError:
            skipped += 1
            continue
        t = _num(record.get("t")) if isinstance(record, dict) else None
        if (not isinstance(record, dict) or not isinstance(record.get("kind"), str)
                or t is None or not 0 <= t <= MAX_T):
            skipped += 1
            continue
        records.append(record)
    return records, skipped


def _progress(r: dict[str, Any]) -> Progress:
    engines: dict[str, dict[str, float]] = {}
    raw = r.get("engines")
    for name, stats in (raw.items() if isinstance(raw, dict) else ()):
        if isinstance(name, str) and isinstance(stats, dict):
            engines[name] = {k: v for k, v in ((k, _num(stats.get(k))) for k in
                             ("workers", "execs", "steps", "execs_per_s", "steps_per_s"))
                             if v is not None}
    cov = r.get("coverage")
    cov = cov if isinstance(cov, dict) else {}
    rss = r.get("rss_mb")
    rss_mb = {str(k): v for k, v in ((k, _num(v)) for k, v in
              (rss.items() if isinstance(rss, dict) else ())) if v is not None}
    return Progress(float(r["t"]), engines, _num(cov.get("lines")), _num(cov.get("branches")),
                    rss_mb)


def _inside(out: Path, rel: str) -> Path | None:
    """``OUT/rel`` if it stays inside ``OUT``."""
    try:
        path = (out / rel).resolve()
        path.relative_to(out.resolve())
    except (ValueError, OSError):
        return None
    return path


def _read_finding(c: Campaign, f: Finding) -> None:
    path = _inside(c.out, f.name)
    if path is None:
        f.error = "the path lies outside the campaign directory"
        return
    try:
        data = safeio.read_bytes(path, limit=MAX_FINDING_BYTES)
    except safeio.ReadError as exc:
        f.error = exc.reason
        return
    f.text = data.decode("utf-8", errors="replace")
    try:
        trace = parse_trace(f.text, f.name)
    except TraceError as exc:
        f.error = str(exc)
        return
    f.lines = len(trace.steps)
    f.mutant = mutant_of(trace, c.config)
    f.at = f.at or meta(trace, "found-at")
    if f.signature == "?":
        f.signature = trace.header("signature") or "?"
    if f.engine == "?":
        f.engine = trace.header("found-by") or "?"


def load_campaign(out: str | Path) -> Campaign:
    """Everything the report shows; :class:`BadInput` if ``out`` is no campaign."""
    out = Path(out)
    c = Campaign(out, load_config(out))
    records, c.skipped = _records(layout.path(out, layout.STATS))
    c.records = len(records)
    by_path: dict[str, Finding] = {}
    for r in records:
        kind, t = r["kind"], float(r["t"])
        c.duration = max(c.duration, t)
        if isinstance(r.get("at"), str):
            c.first_at = c.first_at or r["at"]
            c.last_at = r["at"]
        if kind == "progress":
            c.progress.append(_progress(r))
        elif kind == "finding":
            name = _str(r.get("path"), "")
            name = posixpath.normpath(name) if name else ""
            if name in by_path or any(f.signature == r.get("signature") for f in c.findings):
                continue
            lines = _num(r.get("lines"))
            f = Finding(_str(r.get("signature")), name, _str(r.get("engine")),
                        _str(r.get("worker")), t, r.get("at") if isinstance(r.get("at"), str)
                        else None, None if lines is None else int(lines))
            c.findings.append(f)
            if name:
                by_path[name] = f
        elif kind == "worker":
            c.events.append(WorkerEvent(t, _str(r.get("worker")), _str(r.get("engine")),
                                        _str(r.get("event")), _str(r.get("detail"), "")))
        elif kind in ("start", "resume", "stop"):
            c.phases.append((t, kind, _str(r.get("reason"), "")))
        elif kind == "quarantine":
            c.quarantined[posixpath.normpath(_str(r.get("path")))] = _str(r.get("reason"))
        else:
            c.unknown += 1
    quarantine = layout.path(out, layout.QUARANTINE)
    if quarantine.is_dir():
        for name in sorted(os.listdir(quarantine)):
            c.quarantined.setdefault(f"{layout.QUARANTINE}/{name}", "?")
    findings_dir = layout.path(out, layout.FINDINGS)
    for path in sorted(findings_dir.glob("*.trace")) if findings_dir.is_dir() else []:
        name = path.relative_to(out).as_posix()
        if name not in by_path and safeio.describe(path) == "a regular file":
            c.findings.append(Finding("?", name))
    for f in c.findings:
        if f.name:
            _read_finding(c, f)
        else:
            f.error = "the finding record names no file"
    c.findings.sort(key=lambda f: (f.t is None, f.t or 0.0, f.name))
    c.progress.sort(key=lambda p: p.t)
    return c


# ---------------------------------------------------------------- totals


def engine_totals(c: Campaign) -> dict[str, dict[str, float]]:
    """Each engine's last reported figures."""
    last: dict[str, dict[str, float]] = {}
    for p in c.progress:
        for name, stats in p.engines.items():
            last.setdefault(name, {}).update(stats)
    return last


def engine_names(c: Campaign) -> list[str]:
    names = list(engine_totals(c))
    if not names:
        configured = c.config.get("engine")  # campaign.json: atheris, hypothesis or both
        if isinstance(configured, str) and configured:
            names = ["hypothesis", "atheris"] if configured == "both" else [configured]
    return names


def last_coverage(c: Campaign) -> tuple[float | None, float | None]:
    lines = next((p.lines for p in reversed(c.progress) if p.lines is not None), None)
    branches = next((p.branches for p in reversed(c.progress) if p.branches is not None), None)
    return lines, branches


def state(c: Campaign) -> str:
    if c.phases and c.phases[-1][1] == "stop":
        return f"stopped ({c.phases[-1][2] or 'no reason given'})"
    if not c.records:
        return "no records yet"
    return "running, or killed (no stop record after the last start)"


def summary(c: Campaign) -> list[tuple[str, str]]:
    """The summary, as (label, text) pairs, shared by both reports and the command."""
    totals = engine_totals(c)
    execs = sum(e.get("execs", 0.0) for e in totals.values())
    steps = sum(e.get("steps", 0.0) for e in totals.values())
    workers = sum(e.get("workers", 0.0) for e in totals.values())
    jobs = _num(c.config.get("jobs"))
    if not totals and jobs is not None:
        workers = jobs
    per_s = c.duration or math.inf
    lines, branches = last_coverage(c)
    troubles = {k: sum(e.event == k for e in c.events) for k in (*WORKER_TROUBLE, "restarted")}
    engines = ", ".join(f"{n} ({int(totals[n].get('workers', 0))} workers)" if n in totals
                        else n for n in engine_names(c)) or "none reported"
    cov = ("not measured yet" if lines is None and branches is None else
           f"lines {_pct(lines)}, branches {_pct(branches)}")
    distinct = len({f.signature for f in c.findings})
    resumes = sum(kind == "resume" for _, kind, _ in c.phases)
    budget = _num(c.config.get("time_s"))
    return [
        ("duration", f"{clock(c.duration)} of campaign time"
         + (f" (budget {clock(budget)})" if budget is not None else "")
         + (f", {_many(resumes, 'resume')}" if resumes else "")),
        ("wall time", f"{c.first_at or _str(c.config.get('started'))} to {c.last_at or '?'}"),
        ("state", state(c)),
        ("engines", engines),
        ("workers", f"{int(workers)}"),
        ("execs", f"{number(execs)} ({number(execs / per_s)}/s on average, "
                  f"{number(_last_rate(c, 'execs_per_s'))}/s last)"),
        ("steps", f"{number(steps)} ({number(steps / per_s)}/s on average, "
                  f"{number(_last_rate(c, 'steps_per_s'))}/s last)"),
        ("coverage of model/", cov),
        ("findings", f"{_many(distinct, 'distinct signature')}, "
                     f"{_many(len(c.findings), 'repro file')}"),
        ("worker restarts", f"{troubles['restarted']} (crashed {troubles['crashed']}, "
                            f"hung {troubles['hung']}, oom {troubles['oom']})"),
        *([("quarantined", f"{_many(len(c.quarantined), 'unreadable raw finding')} set "
                           "aside: " + "; ".join(f"{k} ({v})" for k, v in
                                                 sorted(c.quarantined.items())))]
          if c.quarantined else []),
        ("stats.jsonl", f"{_many(c.records, 'record')}, "
                        f"{_many(c.skipped, 'unparseable line')} skipped, "
                        f"{_many(c.unknown, 'record')} of unknown kinds ignored"),
    ]


def _many(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.1f}%"


def _last_rate(c: Campaign, key: str) -> float:
    return sum(e.get(key, 0.0) for e in (c.progress[-1].engines.values() if c.progress else ()))


def replay_command(f: Finding) -> str:
    """The command that replays a finding, run in the campaign directory."""
    words = ["mirrorfuzz", "replay", "--impl", "both"]
    if f.mutant:
        words += ["--mutant", f.mutant]
    return shlex.join([*words, f.name or "?"])


def _shown_trace(f: Finding) -> str:
    if f.text is None:
        return ""
    lines = f.text.splitlines()
    if len(lines) <= MAX_TRACE_LINES:
        return "\n".join(lines)
    return "\n".join([*lines[:MAX_TRACE_LINES], f"... {len(lines) - MAX_TRACE_LINES} more lines"])


# ---------------------------------------------------------------- plots


def markers(c: Campaign) -> list[Marker]:
    marks = [Marker(t, kind, f"campaign {kind}" + (f" ({reason})" if reason else ""))
             for t, kind, reason in c.phases]
    marks += [Marker(e.t, e.event, f"{e.worker} ({e.engine}) {e.event}"
                     + (f": {e.detail}" if e.detail else "")) for e in c.events]
    return marks


def finding_points(c: Campaign) -> list[tuple[float, float]]:
    """Distinct signatures over time: (0, 0), one point per new signature, the end."""
    points = [(0.0, 0.0)]
    seen: set[str] = set()
    for f in c.findings:
        if f.t is not None and f.signature not in seen:
            seen.add(f.signature)
            points.append((f.t, float(len(seen))))
    if c.duration > points[-1][0]:
        points.append((c.duration, points[-1][1]))
    return points


def plots(c: Campaign) -> list[str]:
    """The report's SVG charts, in order: coverage, execs/s, steps/s, findings."""
    marks = markers(c)
    names = engine_names(c)

    def per_engine(key: str) -> list[Series]:
        return [Series(n, [(p.t, p.engines[n][key]) for p in c.progress
                           if key in p.engines.get(n, {})]) for n in names]

    coverage = [Series("lines", [(p.t, p.lines) for p in c.progress if p.lines is not None]),
                Series("branches", [(p.t, p.branches) for p in c.progress
                                    if p.branches is not None])]
    t = c.duration
    return [
        line_chart("coverage of model/ (%)", coverage, t_max=t, unit="%", y_max=100.0,
                   markers=marks),
        line_chart("execs per second, per engine", per_engine("execs_per_s"), t_max=t,
                   markers=marks),
        line_chart("steps per second, per engine", per_engine("steps_per_s"), t_max=t,
                   markers=marks),
        line_chart("distinct finding signatures (cumulative)",
                   [Series("findings", finding_points(c), step=True)], t_max=t, markers=marks,
                   counts=True),
    ]


# ---------------------------------------------------------------- rendering

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
    keys = [(f"worker {k}", k) for k in ("crashed", "hung", "oom", "restarted", "started")]
    p += [f'<span><i style="border-color:{MARKER_COLOURS[kind]}"></i>{escape(label)}</span>'
          for label, kind in [*keys, ("campaign start, resume, stop", "start")]]
    p.append("(hover over a mark or a point for details)</p>")
    p += plots(c)
    p.append(f'</section><section id="findings"><h2>Findings ({len(c.findings)})</h2>')
    if not c.findings:
        p.append("<p>No findings.</p>")
    else:
        p.append("<p>Replay commands run in the campaign directory.</p>")
        p.append(_table(["#", "signature", "engine", "worker", "when", "lines"], [
            [str(i), f'<a href="#finding-{i}">{escape(f.signature)}</a>', escape(f.engine),
             escape(f.worker), escape(_when(f)), "?" if f.lines is None else str(f.lines)]
            for i, f in enumerate(c.findings, 1)], numeric=1))
    for i, f in enumerate(c.findings, 1):
        p.append(f'<div class="finding" id="finding-{i}"><h3>{i}. {escape(f.signature)}</h3>')
        p.append(f"<p>file <a href=\"{escape(f.name)}\">{escape(f.name)}</a>, "
                 f"found by {escape(f.engine)} ({escape(f.worker)}) at {escape(_when(f))}</p>")
        if f.mutant:
            p.append(f'<p class="warn">found with mutant {escape(f.mutant)} switched on: '
                     "it replays clean without it</p>")
        if f.error:
            p.append(f'<p class="warn">{escape(f.error)}</p>')
        p.append(f"<p>replay: <code>{escape(replay_command(f))}</code></p>")
        if f.text is not None:
            p.append(f"<pre>{escape(_shown_trace(f))}</pre>")
        p.append("</div>")
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
        md += [f"- replay: {_code(replay_command(f))}", ""]
        if f.text is not None:
            shown = _shown_trace(f)
            fence = _fence(shown)
            md += [fence, shown, fence, ""]
    return "\n".join(md).rstrip("\n") + "\n"


# ---------------------------------------------------------------- writing


def write_report(out: str | Path) -> tuple[Path, Path]:
    """Write ``OUT/report.html`` and ``OUT/report.md``; give their paths."""
    return write_campaign_report(load_campaign(out))


def write_campaign_report(c: Campaign) -> tuple[Path, Path]:
    """Write both reports of a loaded campaign, each atomically."""
    html_text, md_text = html_report(c), markdown_report(c)
    html_path = layout.path(c.out, layout.REPORT_HTML)
    md_path = layout.path(c.out, layout.REPORT_MD)
    for path, text in ((html_path, html_text), (md_path, md_text)):
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise BadInput(f"{path}: cannot write: {exc.strerror or exc}") from None
    return html_path, md_path
