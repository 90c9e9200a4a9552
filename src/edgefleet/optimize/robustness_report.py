"""Rendering the robustness part of a build report (``report.json``'s ``robustness``): HTML and text lines.

Per perturbation, FP32 on the perturbed inputs (its task metric, and its agreement with itself on clean
inputs) beside each candidate on the same perturbed inputs (its task metric, and its agreement with FP32
there). Judged elsewhere (``robustness.robustness_misses``, the selection's verdicts); only shown here.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["robustness_html", "robustness_lines"]


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def robustness_lines(data: dict[str, Any] | None, candidates: list[str] | None = None) -> list[str]:
    """One line per perturbation and candidate (all candidates, or ``candidates``), for the terminal."""
    if not data:
        return []
    lines = [
        f"robustness ({data['input_kind']} inputs, seed {data['seed']}; a candidate must keep agreement "
        f">= {data['min_agreement']:g} with FP32 and >= {data['min_metric_ratio']:.0%} of FP32's metric "
        "under each perturbation):"
    ]
    for p in data["perturbations"]:
        fp32 = p["fp32"]
        metric = fp32.get("task_metric") or fp32["agreement_metric"]
        head = (
            f"  {p['perturbation']} ({p['strength']:g}): FP32 {metric} {_fmt(fp32.get('task_value'))}, "
            f"agreement with clean FP32 {_fmt(fp32['agreement'])}"
        )
        lines.append(head)
        for name, q in p["candidates"].items():
            if candidates is not None and name not in candidates:
                continue
            lines.append(
                f"    {name}: {metric} {_fmt(q.get('task_value'))}, "
                f"{q['agreement_metric']} with FP32 {_fmt(q['agreement'])}"
            )
    return lines


def robustness_html(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    esc = html.escape
    names = sorted({n for p in data["perturbations"] for n in p["candidates"]})
    out = [
        f"<h2>Robustness to degraded input ({esc(data['input_kind'])})</h2>",
        f"<p>Validation inputs perturbed (seed {data['seed']}); every candidate against FP32 on the same "
        f"perturbed inputs. Bound: agreement &gt;= {data['min_agreement']:g}, metric &gt;= "
        f"{data['min_metric_ratio']:.0%} of FP32's under the same perturbation.</p>",
        "<table><tr><th>perturbation</th><th>FP32 metric</th><th>FP32 vs clean</th>"
        + "".join(f"<th>{esc(n)} metric / agreement</th>" for n in names)
        + "</tr>",
    ]
    for p in data["perturbations"]:
        fp32 = p["fp32"]
        cells = [
            f"{esc(p['perturbation'])} ({p['strength']:g})",
            _fmt(fp32.get("task_value")),
            _fmt(fp32["agreement"]),
        ]
        for n in names:
            q = p["candidates"].get(n)
            bad = q is not None and q["agreement"] < data["min_agreement"]
            text = "-" if q is None else f"{_fmt(q.get('task_value'))} / {_fmt(q['agreement'])}"
            cells.append(f"<span class='bad'>{text}</span>" if bad else text)
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)
