"""Line charts drawn on the server as inline SVG (no JavaScript): one series per model version (or rung),
vertical markers for events (a rollout's stage boundaries, its halt), an optional threshold line.

Render only: the figures are the services' own. Colours and dash patterns come from classes the stylesheet
defines (``.chart .s0`` ...; the content security policy allows no inline style), each series differs in
both colour and dash so it reads without colour too; every chart is paired with a data table in the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

__all__ = ["Marker", "line_chart"]

WIDTH = 720
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 40
SERIES_STYLES = 6


@dataclass(frozen=True)
class Marker:
    at: datetime
    label: str
    kind: str
    """a CSS class suffix: ``m-halt`` is drawn in the breach colour, others in the text colour"""


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def line_chart(
    *,
    title: str,
    unit: str,
    times: Sequence[datetime],
    series: dict[str, Sequence[float | None]],
    markers: Sequence[Marker] = (),
    threshold: float | None = None,
    chart_id: str,
    end_at: datetime | None = None,
) -> Markup:
    """An accessible SVG: ``role="img"``, a title and a description naming the series and markers; the
    ``figure`` around it is focusable and labelled by the title. ``end_at``: where the time axis ends (the
    range's end, after the last bucket's start), so events in the last bucket are drawn."""
    start, end = (times[0], max(times[-1], end_at or times[-1])) if times else (None, None)
    values = [v for s in series.values() for v in s if v is not None]
    if threshold is not None:
        values.append(threshold)
    top = max(values) if values else 1.0
    top = top * 1.1 if top > 0 else 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span_s = (end - start).total_seconds() if start and end and end > start else 1.0

    def x(at: datetime) -> float:
        assert start is not None
        return LEFT + plot_w * min(1.0, max(0.0, (at - start).total_seconds() / span_s))

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    markers = [m for m in markers if start is not None and end is not None and start <= m.at <= end]
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)} ({escape(unit)})</title>',
        f'<desc id="{chart_id}-d">{escape(_describe(series, markers))}</desc>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = top / 1.1 * fraction if values else fraction
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{_fmt(value)}</text>'
        )
    if start and end:
        for at, anchor in ((start, "start"), (end, "end")):
            out.append(
                f'<text class="tick" x="{x(at):.1f}" y="{HEIGHT - 22}" text-anchor="{anchor}">'
                f"{at.strftime('%m-%d %H:%M')}</text>"
            )
    if threshold is not None:
        out.append(
            f'<line class="threshold" x1="{LEFT}" y1="{y(threshold):.1f}" x2="{LEFT + plot_w}" '
            f'y2="{y(threshold):.1f}"/>'
        )
    for index, (name, points) in enumerate(series.items()):
        xy = [(x(t), y(v)) if v is not None else None for t, v in zip(times, points, strict=False)]
        path = _path(xy)
        style = f"s{index % SERIES_STYLES}"
        if path:
            out.append(f'<path class="line {style}" d="{path}"><title>{escape(name)}</title></path>')
        for i, point in enumerate(xy):  # a point with no neighbour is a circle: visible, not a speck
            if (
                point is not None
                and (i == 0 or xy[i - 1] is None)
                and (i + 1 >= len(xy) or xy[i + 1] is None)
            ):
                out.append(
                    f'<circle class="dot {style}" cx="{point[0]:.1f}" cy="{point[1]:.1f}" r="4">'
                    f"<title>{escape(name)}</title></circle>"
                )
    for row, marker in enumerate(markers):
        mx = x(marker.at)
        label_y = TOP + 10 + 13 * (row % 4)  # staggered: events close in time keep readable labels
        out.append(
            f'<line class="marker {escape(marker.kind)}" x1="{mx:.1f}" y1="{TOP}" x2="{mx:.1f}" '
            f'y2="{TOP + plot_h}"><title>{escape(marker.label)}</title></line>'
        )
        near_right = mx > LEFT + plot_w * 0.7  # the label goes on the side with room for it
        out.append(
            f'<text class="marker-label {escape(marker.kind)}" x="{mx - 3 if near_right else mx + 3:.1f}" '
            f'y="{label_y}" text-anchor="{"end" if near_right else "start"}">{escape(marker.label)}</text>'
        )
    legend_x = LEFT
    for index, name in enumerate(series):
        ly = HEIGHT - 6
        out.append(
            f'<line class="line s{index % SERIES_STYLES}" x1="{legend_x}" y1="{ly - 4}" '
            f'x2="{legend_x + 18}" y2="{ly - 4}"/>'
            f'<text class="legend" x="{legend_x + 22}" y="{ly}">{escape(name)}</text>'
        )
        legend_x += 30 + 7 * len(name)
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every text above is escaped


def _path(points: Sequence[tuple[float, float] | None]) -> str:
    """Gaps (buckets without data) break the line: no data is never drawn as a flat "fine" stretch."""
    parts: list[str] = []
    pen_down = False
    for point in points:
        if point is None:
            pen_down = False
            continue
        if pen_down:
            parts.append(f"L{point[0]:.1f},{point[1]:.1f}")
        else:  # a short stroke at each start, so that a lone point is drawn (round caps) and visible
            parts.append(f"M{point[0]:.1f},{point[1]:.1f} l0.01,0")
        pen_down = True
    return " ".join(parts)


def _describe(series: dict[str, Sequence[float | None]], markers: Sequence[Marker]) -> str:
    parts = []
    for name, points in series.items():
        known = [v for v in points if v is not None]
        if known:
            parts.append(f"{name}: from {_fmt(known[0])} to {_fmt(known[-1])}, highest {_fmt(max(known))}")
        else:
            parts.append(f"{name}: no data")
    if markers:
        parts.append("markers: " + ", ".join(m.label for m in markers))
    return "; ".join(parts) + ". The data table below lists every point."
