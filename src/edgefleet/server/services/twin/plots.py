"""The twin's result as an HTML page with inline SVG plots (no script, no external asset).

A view of a plan, shared by ``edgefleet sim run --html`` and the dashboard's plan page, so both draw the
same plots from the same figures; it judges nothing (every number comes from the twin's result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["plan_page", "plan_svgs"]

_W, _H, _PAD = 640, 220, 40
_COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")


def _hours(t_s: float) -> str:
    return f"{t_s / 3600:.1f} h"


def _line_chart(runs: Sequence[Mapping[str, Any]], key: str, title: str) -> str:
    end_s = max((max(r["series"].get("t_s", [0]) or [0]) for r in runs), default=0) or 1
    top = max((max(r["series"].get(key, [0]) or [0]) for r in runs), default=0) or 1

    def x(t: float) -> float:
        return _PAD + (_W - 2 * _PAD) * t / end_s

    def y(v: float) -> float:
        return _H - _PAD + (-(_H - 2 * _PAD) * v / top)

    parts = [
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
        'xmlns="http://www.w3.org/2000/svg" class="twin-plot">',
        f'<text x="{_PAD}" y="16" font-size="13">{escape(title)}</text>',
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#555"/>',
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#555"/>',
        f'<text x="{_PAD}" y="{_H - 22}" font-size="11">0</text>',
        f'<text x="{_W - _PAD - 40}" y="{_H - 22}" font-size="11">{_hours(end_s)}</text>',
        f'<text x="4" y="{_PAD + 4}" font-size="11">{int(top)}</text>',
    ]
    for n, run in enumerate(runs):
        colour = _COLOURS[n % len(_COLOURS)]
        for stage in run["stages"][1:]:
            sx = x(stage["started_at_s"])
            parts.append(f'<line x1="{sx:.1f}" y1="{_PAD}" x2="{sx:.1f}" y2="{_H - _PAD}" stroke="{colour}" '
                         'stroke-dasharray="3,3" stroke-opacity="0.5"/>')  # fmt: skip
        points = " ".join(
            f"{x(t):.1f},{y(v):.1f}"
            for t, v in zip(run["series"].get("t_s", []), run["series"].get(key, []), strict=True)
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{_W - _PAD - 120}" y="{16 + 14 * n}" font-size="11" fill="{colour}">'
                     f"{escape(str(run.get('label', n)))}</text>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _deadline_chart(run: Mapping[str, Any]) -> str:
    rows = run["deadlines"]
    if not rows:
        return ""
    top = max((d["pending"] for d in rows), default=0) or 1
    bar_h = 18
    height = _PAD + bar_h * 2 * len(rows)
    parts = [
        f'<svg role="img" aria-label="pending at each deadline" viewBox="0 0 {_W} {height}" width="{_W}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" class="twin-plot">',
        f'<text x="{_PAD}" y="16" font-size="13">{escape(str(run.get("label")))}: '
        "pending at each deadline</text>",
    ]
    for n, d in enumerate(rows):
        y0 = _PAD + n * bar_h * 2
        x0 = 120.0
        parts.append(f'<text x="4" y="{y0 + 13}" font-size="11">stage {d["stage"]}: {d["pending"]}</text>')
        for k, (why, count) in enumerate(sorted(d["why"].items())):
            if not count:
                continue
            w = (_W - 140) * count / top
            colour = _COLOURS[k % len(_COLOURS)]
            parts.append(f'<rect x="{x0:.1f}" y="{y0}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                         f"<title>{escape(why)}: {count}</title></rect>")  # fmt: skip
            parts.append(
                f'<text x="{x0 + 2:.1f}" y="{y0 + 13}" font-size="10" fill="#fff">{escape(why)}</text>'
            )
            x0 += w
    parts.append("</svg>")
    return "".join(parts)


def plan_svgs(result: Mapping[str, Any]) -> list[str]:
    """The plots of a plan, as SVG elements."""
    runs = result["runs"]
    out = [
        _line_chart(runs, "running_candidate", "devices running the candidate"),
        _line_chart(runs, "done", "devices reported done (the server's view)"),
    ]
    out += [chart for run in runs if (chart := _deadline_chart(run))]
    return out


def plan_page(result: Mapping[str, Any], *, title: str) -> str:
    """A standalone HTML page: the plots, then each run's figures as a table."""
    rows = []
    for run in result["runs"]:
        halt = run.get("halt") or {}
        ex = run["exposure"]
        rows.append(
            "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in (
                run["label"], run["outcome"], halt.get("gate", "-"), halt.get("stage", "-"),
                run["completed_at_s"], run["converged_at_s"], ex["peak_devices"], ex["peak_percent"],
                ex["duration_s"], run["bytes_sent"],
            )) + "</tr>"
        )  # fmt: skip
    head = ("<tr><th>run</th><th>outcome</th><th>halt gate</th><th>halt stage</th><th>completed at (s)</th>"
            "<th>converged at (s)</th><th>peak exposed</th><th>peak %</th><th>exposed for (s)</th>"
            "<th>bytes sent</th></tr>")  # fmt: skip
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
        f"<body><h1>{escape(title)}</h1><p>{result['devices']} simulated devices, seed {result['seed']}, "
        "virtual time.</p>"
        + "".join(f"<figure>{svg}</figure>" for svg in plan_svgs(result))
        + f"<table>{head}{''.join(rows)}</table></body></html>"
    )
