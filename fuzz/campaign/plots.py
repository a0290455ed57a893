"""Hand-made inline SVG line charts for the campaign report (no JavaScript, no
plotting library).

A chart is one ``<svg class="plot">`` holding, for each series, a
``<polyline class="series" data-series=NAME data-points=N>`` (``N`` the data
points drawn, after thinning to at most :data:`MAX_POINTS`); a step series
(a count that jumps, like findings) draws each jump as a horizontal then a
vertical segment, so its polyline has ``2N - 1`` vertices.  Markers (worker
events, campaign start/resume/stop) are vertical ``<line class="marker
KIND">`` with a native ``<title>`` tooltip.  The x axis is campaign time.
:data:`CSS` is the report page's stylesheet, charts' classes included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

MAX_POINTS: Final = 2000
WIDTH: Final = 760
HEIGHT: Final = 230
LEFT, RIGHT, TOP, BOTTOM = 62, 34, 26, 30
PALETTE: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
MARKER_COLOURS: Final = {
    "crashed": "#d62728", "hung": "#e377c2", "oom": "#8c564b", "restarted": "#ff7f0e",
    "finding": "#2ca02c",
    "started": "#bbbbbb", "start": "#444444", "resume": "#444444", "stop": "#444444",
}
# The report page's stylesheet, with the classes the charts use.
CSS: Final = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: .2em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { width: 11em; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .6em; overflow-x: auto;
      font-size: 13px; }
code { background: #f0f0f0; padding: 1px 4px; }
.finding { margin-top: 1.2em; } .warn { color: #a33; }
svg.plot { display: block; margin: .8em 0; background: #fff; }
svg .title { font-weight: 600; font-size: 13px; } svg .tick { font-size: 11px; fill: #555; }
svg .legend { font-size: 12px; } svg .empty { fill: #999; font-size: 13px; }
svg .grid { stroke: #eee; } svg .axis { stroke: #999; }
svg .frame { fill: none; stroke: #bbb; } svg .series { stroke-width: 1.6; }
svg .marker { stroke-width: 1; stroke-dasharray: 3 3; opacity: .8; }
.key span { display: inline-block; margin-right: 1em; }
.key i { display: inline-block; width: 14px; border-top: 2px dashed; margin-right: 4px;
         vertical-align: middle; }
"""
_TIME_STEPS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                      10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class Series:
    """One line of a chart: ``(t, value)`` points in time order."""

    name: str
    points: Sequence[tuple[float, float]]
    step: bool = False


@dataclass(frozen=True)
class Marker:
    """A vertical mark at campaign time ``t``; ``kind`` picks its colour."""

    t: float
    kind: str
    label: str


def thin(points: Sequence[tuple[float, float]],
         limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` of ``points``: every k-th, always keeping the last."""
    if len(points) <= limit:
        return list(points)
    stride = math.ceil(len(points) / (limit - 1))
    kept = list(points[::stride])
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


def clock(seconds: float) -> str:
    """Campaign time for an axis or a table: ``45s``, ``12m05s``, ``3h07m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def number(value: float) -> str:
    """A compact number: ``950``, ``12.3k``, ``4.56M``."""
    a = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= limit:
            return f"{value / limit:.3g}{suffix}"
    if a and a < 10 and value != int(value):
        return f"{value:.2g}" if a < 1 else f"{value:.1f}"
    return f"{value:.0f}"


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at least ``value`` (1 for 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * base >= value * (1 - 1e-12):
            return float(m * base)
    return float(10 * base)


def _time_step(t_max: float) -> int:
    for step in _TIME_STEPS:
        if t_max / step <= 8:
            return step
    return _TIME_STEPS[-1] * math.ceil(t_max / (8 * _TIME_STEPS[-1]))


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def line_chart(title: str, series: Sequence[Series], *, t_max: float, unit: str = "",
               y_max: float | None = None, markers: Sequence[Marker] = (),
               counts: bool = False) -> str:
    """An ``<svg>`` line chart of ``series`` over campaign time ``[0, t_max]``
    (``counts``: whole-number values, so whole-number grid lines)."""
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    drawn = [(s, thin(s.points)) for s in series]
    values = [y for _, pts in drawn for _, y in pts]
    top = y_max if y_max is not None else nice_max(max(values, default=0.0))
    if counts and y_max is None:
        top = max(4.0, 4 * math.ceil(max(values, default=0.0) / 4))
    t_end = max([t_max, *(t for _, pts in drawn for t, _ in pts)], default=0.0) or 1.0

    def x(t: float) -> float:
        return LEFT + w * min(max(t, 0.0), t_end) / t_end

    def y(v: float) -> float:
        return TOP + h - h * min(max(v, 0.0), top) / top

    out = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
           f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>']
    for i in range(5):  # horizontal grid and y labels
        v = top * i / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + w}" y1="{_fmt(y(v))}" '
                   f'y2="{_fmt(y(v))}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{_fmt(y(v) + 4)}" '
                   f'text-anchor="end">{escape(number(v) + unit)}</text>')
    step = _time_step(t_end)
    for k in range(0, int(t_end // step) + 1):
        tx = x(k * step)
        out.append(f'<line class="axis" x1="{_fmt(tx)}" x2="{_fmt(tx)}" y1="{TOP + h}" '
                   f'y2="{TOP + h + 4}"/>')
        out.append(f'<text class="tick" x="{_fmt(tx)}" y="{TOP + h + 17}" '
                   f'text-anchor="middle">{clock(k * step)}</text>')
    out.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{w}" height="{h}"/>')
    for m in markers:
        colour = MARKER_COLOURS.get(m.kind, "#777777")
        out.append(f'<line class="marker {escape(m.kind)}" x1="{_fmt(x(m.t))}" '
                   f'x2="{_fmt(x(m.t))}" y1="{TOP}" y2="{TOP + h}" stroke="{colour}">'
                   f'<title>{escape(clock(m.t) + " " + m.label)}</title></line>')
    if not values:
        out.append(f'<text class="empty" x="{LEFT + w / 2}" y="{TOP + h / 2}" '
                   'text-anchor="middle">no data yet</text>')
    legend_x = LEFT + w
    for i, (s, _pts) in enumerate(reversed(drawn)):
        colour = PALETTE[(len(drawn) - 1 - i) % len(PALETTE)]
        label = escape(s.name)
        out.append(f'<text class="legend" x="{legend_x}" y="16" text-anchor="end" '
                   f'fill="{colour}">{label}</text>')
        legend_x -= 9 + 7 * len(s.name)
    for i, (s, pts) in enumerate(drawn):
        colour = PALETTE[i % len(PALETTE)]
        vertices: list[str] = []
        for j, (t, v) in enumerate(pts):
            if s.step and j:
                vertices.append(f"{_fmt(x(t))},{_fmt(y(pts[j - 1][1]))}")
            vertices.append(f"{_fmt(x(t))},{_fmt(y(v))}")
        out.append(f'<polyline class="series" data-series="{escape(s.name)}" '
                   f'data-points="{len(pts)}" fill="none" stroke="{colour}" '
                   f'points="{" ".join(vertices)}"/>')
        if len(pts) <= 60:
            out.extend(f'<circle cx="{_fmt(x(t))}" cy="{_fmt(y(v))}" r="2.2" fill="{colour}">'
                       f'<title>{escape(f"{s.name} {number(v)}{unit} at {clock(t)}")}</title>'
                       '</circle>' for t, v in pts)
    out.append("</svg>")
    return "\n".join(out)
