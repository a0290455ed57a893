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

import math
import os
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fuzz import contracts, safeio
from fuzz.campaign import layout
from fuzz.campaign.plots import Marker, Series, clock, line_chart, number
from fuzz.campaign.stats import MAX_T
from fuzz.errors import BadInput
from fuzz.safeio import write_all_atomic
from fuzz.trace import Comment, StepLine, Trace, TraceError, parse_trace
from fuzz.windows import WindowCoverage

KINDS: Final = ("start", "resume", "progress", "finding", "worker", "stop", "quarantine",
                 "seen")
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
    windows: float | None = None  # race windows reached (fuzz.windows)
    windows_possible: float | None = None


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
    cause: str | None = None  # where the sides' states first differ (the dedup key)
    examples: int = 1  # examples of this cause the campaign met
    also: dict[str, int] = field(default_factory=dict)  # other signatures it showed as
    seconds: float | None = None  # minimization time
    partial: str | None = None  # "true": cut by its time limit; "unminimized"
    observe_every: int | None = None  # the judge settings its signature holds under


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
    seen: dict[str, int] = field(default_factory=dict)  # signature -> later examples
    violations: dict[str, int] = field(default_factory=dict)  # signature -> contract violations
    windows: WindowCoverage | None = None  # race windows reached (OUT/coverage/windows.json)


def _another(f: Finding, signature: str) -> None:
    """One more example of ``f``'s cause, seen as ``signature``."""
    f.examples += 1
    if signature != f.signature:
        f.also[signature] = f.also.get(signature, 0) + 1


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and abs(value) > MAX_NUMBER:
        return None  # (float() of a long enough int overflows)
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
    windows = r.get("windows")
    windows = windows if isinstance(windows, dict) else {}
    return Progress(float(r["t"]), engines, _num(cov.get("lines")), _num(cov.get("branches")),
                    rss_mb, _num(windows.get("reached")), _num(windows.get("possible")))


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
    f.cause = f.cause or meta(trace, "cause")
    judged = re.search(r"--observe-every (\d+)", meta(trace, "judged-with") or "")
    f.observe_every = int(judged.group(1)) if judged else None
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
            cause = r.get("cause") if isinstance(r.get("cause"), str) else None
            known = by_path.get(name) or next(
                (f for f in c.findings if f.signature == r.get("signature")
                 or (cause is not None and f.cause == cause)), None)
            if known is not None:
                _another(known, _str(r.get("signature")))
                continue
            lines = _num(r.get("lines"))
            f = Finding(_str(r.get("signature")), name, _str(r.get("engine")),
                        _str(r.get("worker")), t, r.get("at") if isinstance(r.get("at"), str)
                        else None, None if lines is None else int(lines), cause=cause,
                        seconds=_num(r.get("seconds")),
                        partial=r.get("partial") if isinstance(r.get("partial"), str) else None)
            c.findings.append(f)
            if name:
                by_path[name] = f
        elif kind in ("seen", "violation") and isinstance(r.get("counts"), dict):
            counts = {k: int(v) for k, v in r["counts"].items()
                      if isinstance(k, str) and _num(v) is not None and v >= 0}
            if kind == "seen":
                c.seen = counts
            else:
                c.violations = counts
        elif kind == "worker":
            c.events.append(WorkerEvent(t, _str(r.get("worker")), _str(r.get("engine")),
                                        _str(r.get("event")), _str(r.get("detail"), "")))
        elif kind in ("start", "resume", "stop"):
            c.phases.append((t, kind, _str(r.get("reason"), "")))
        elif kind == "quarantine":
            c.quarantined[posixpath.normpath(_str(r.get("path")))] = _str(r.get("reason"))
        else:
            c.unknown += 1
    from fuzz.campaign.coverage_pass import read_windows

    c.windows = read_windows(out)
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
        for signature in (f.signature, *f.also):
            f.examples += c.seen.get(signature, 0)
            if signature in f.also:
                f.also[signature] += c.seen.get(signature, 0)
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
    troubles = {k: sum(e.event == k for e in c.events)
                for k in (*WORKER_TROUBLE, "restarted", "finding")}
    engines = ", ".join(f"{n} ({int(totals[n].get('workers', 0))} workers)" if n in totals
                        else n for n in engine_names(c)) or "none reported"
    cov = ("not measured yet" if lines is None and branches is None else
           f"lines {_pct(lines)}, branches {_pct(branches)}")
    distinct = len({f.cause or f.signature for f in c.findings})
    examples = sum(f.examples for f in c.findings)
    partial = sum(f.partial is not None for f in c.findings)
    times = sorted(f.seconds for f in c.findings if f.seconds is not None)
    median = times[len(times) // 2] if times else None
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
        ("race windows reached", "not counted yet" if c.windows is None else
         f"{len(c.windows.combos)} of {c.windows.possible} (op, window, intruding op) "
         f"combinations possible in the {sum(c.windows.deepest.values())} windows seen"),
        ("findings", f"{_many(distinct, 'distinct cause')}, "
                     f"{_many(len(c.findings), 'repro file')}, {_many(examples, 'example')}"
                     + (f", {partial} not fully minimized" if partial else "")
                     + (f", median minimization {median:.1f} s" if median is not None else "")),
        *([("contract", f"{contract}: "
                        + (", ".join(f"{sig} ({n})" for sig, n in sorted(c.violations.items()))
                           + " judged contract violations, not findings" if c.violations
                           else "no contract violations"))]
          if (contract := _str(c.config.get("contract"), contracts.DEFAULT))
          != contracts.DEFAULT else []),
        ("worker restarts", f"{troubles['restarted']} (after a finding {troubles['finding']}, "
                            f"crashed {troubles['crashed']}, hung {troubles['hung']}, "
                            f"oom {troubles['oom']})"),
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
    if f.observe_every is not None and f.observe_every != 1:
        words += ["--observe-every", str(f.observe_every)]
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
        if f.t is not None and (f.cause or f.signature) not in seen:
            seen.add(f.cause or f.signature)
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
        line_chart("race windows reached: (op, window, intruding op), and possible so far",
                   [Series("reached", [(p.t, p.windows) for p in c.progress
                                       if p.windows is not None], step=True),
                    Series("possible", [(p.t, p.windows_possible) for p in c.progress
                                        if p.windows_possible is not None], step=True)],
                   t_max=t, markers=marks, counts=True),
        line_chart("distinct finding causes (cumulative)",
                   [Series("findings", finding_points(c), step=True)], t_max=t, markers=marks,
                   counts=True),
    ]


# ---------------------------------------------------------------- writing


def write_report(out: str | Path) -> tuple[Path, Path]:
    """Write ``OUT/report.html`` and ``OUT/report.md``; give their paths."""
    return write_campaign_report(load_campaign(out))


def write_campaign_report(c: Campaign) -> tuple[Path, Path]:
    """Write both reports of a loaded campaign, each atomically."""
    from fuzz.campaign.report_render import html_report, markdown_report

    html_text, md_text = html_report(c), markdown_report(c)
    html_path = layout.path(c.out, layout.REPORT_HTML)
    md_path = layout.path(c.out, layout.REPORT_MD)
    try:
        write_all_atomic([(html_path, html_text), (md_path, md_text)])
    except OSError as exc:
        raise BadInput(f"{exc.filename or c.out}: cannot write the report: "
                       f"{exc.strerror or exc}") from None
    return html_path, md_path
