"""``report.json`` and a self-contained ``report.html`` (inline SVG, no scripts, no CDN) per build."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime as ort

from edgefleet.optimize.package import write_bytes
from edgefleet.optimize.select import Measured

if TYPE_CHECKING:
    from edgefleet.optimize.config import BuildConfig
    from edgefleet.optimize.pipeline import BuildResult, ClassResult

__all__ = [
    "MAX_SUMMARY_CANDIDATES",
    "class_summary",
    "pareto_front",
    "render_html",
    "report_dict",
    "write_reports",
]

MAX_SUMMARY_CANDIDATES = 40
MAX_REASON_CHARS = 160


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Pure: names of points (name, latency, quality) that no other point beats on both (lower, higher)."""
    front = []
    for name, lat, qual in points:
        dominated = any(
            (ol <= lat and oq >= qual) and (ol < lat or oq > qual)
            for other, ol, oq in points
            if other != name
        )
        if not dominated:
            front.append(name)
    return front


def _measured_dict(m: Measured) -> dict[str, Any]:
    return {
        "name": m.name,
        "kind": m.kind,
        "precision": m.precision,
        "size_bytes": m.size_bytes,
        "quality": m.quality.to_dict() if m.quality else None,
        "performance": m.performance.to_dict() if m.performance else None,
        "compatibility": m.compatibility.to_dict() if m.compatibility else None,
        "error": m.error,
    }


def _class_dict(c: ClassResult) -> dict[str, Any]:
    points = [
        (m.name, m.performance.latency_p50_ms, m.quality.agreement)
        for m in c.measured
        if m.performance and m.quality
    ]
    return {
        "hardware_class": c.hwclass.name,
        "measured_on": c.note,
        "threads": {"intra_op": c.settings.intra_op, "inter_op": c.settings.inter_op},
        "providers": list(c.settings.providers),
        "preferred_providers": list(c.hwclass.runtime.execution_providers),
        "chosen": c.selection.chosen,
        "summary": c.selection.summary,
        "failed": c.selection.failed,
        "verdicts": [
            {"name": v.name, "eligible": v.eligible, "reasons": list(v.reasons)} for v in c.selection.verdicts
        ],
        "candidates": [_measured_dict(m) for m in c.measured],
        "pareto_front": pareto_front(points),
        "artifact": None if c.manifest is None else f"{c.hwclass.name}/manifest.json",
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and value == value and abs(value) != float("inf") else None


def class_summary(c: ClassResult) -> dict[str, Any]:
    """The class's part of the build report, compact and bounded, for its manifest (``build_report``): every
    candidate measured with its latency, size, quality and verdict, so the control plane can show why this
    build was chosen without the build's output directory."""
    verdicts = {v.name: v for v in c.selection.verdicts}
    rows = []
    for m in c.measured[:MAX_SUMMARY_CANDIDATES]:
        verdict = verdicts.get(m.name)
        reasons = list(verdict.reasons) if verdict else ([m.error] if m.error else [])
        rows.append(
            {
                "name": m.name,
                "precision": m.precision,
                "size_bytes": m.size_bytes,
                "latency_p50_ms": _finite(m.performance.latency_p50_ms) if m.performance else None,
                "agreement": _finite(m.quality.agreement) if m.quality else None,
                "task_value": _finite(m.quality.task_value) if m.quality else None,
                "eligible": bool(verdict and verdict.eligible),
                "reasons": [r[:MAX_REASON_CHARS] for r in reasons[:4]],
            }
        )
    return {
        "measured_on": c.note,
        "chosen": c.selection.chosen,
        "summary": c.selection.summary[:MAX_REASON_CHARS * 4],
        "candidates": rows,
        "omitted_candidates": max(0, len(c.measured) - MAX_SUMMARY_CANDIDATES),
    }


def report_dict(result: BuildResult, config: BuildConfig) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "model": {
            "path": result.model.path.name,
            "sha256": result.model.sha256,
            "size_bytes": result.model.size_bytes,
            "opset": result.model.opset,
            "op_types": list(result.model.op_types),
        },
        "machine": {"cpu": result.cpu.to_dict(), "onnxruntime": ort.__version__},
        "config": {
            "task": config.task,
            "calibration_methods": list(config.calibration_methods),
            "per_channel": list(config.per_channel),
            "sparsities": list(config.sparsities),
            "latency_runs": config.latency_runs,
            "warmup_runs": config.warmup_runs,
            "min_metric_ratio": config.min_metric_ratio,
            "min_agreement": config.min_agreement,
            "min_speedup": config.min_speedup,
        },
        "candidates": [c.to_dict() for c in result.candidates],
        "candidate_failures": result.failures,
        "mixed_precision_search": None if result.mixed is None else result.mixed.to_dict(),
        "classes": [_class_dict(c) for c in result.classes],
    }


def _svg(cls: dict[str, Any]) -> str:
    """Quality (agreement) vs latency p50; circle area ~ size; Pareto front joined; chosen in red."""
    pts = [
        (c["name"], c["performance"]["latency_p50_ms"], c["quality"]["agreement"], c["size_bytes"])
        for c in cls["candidates"]
        if c["performance"] and c["quality"]
    ]
    if not pts:
        return "<p>No measured candidates.</p>"
    w, h, pad = 560, 300, 50
    lats = [p[1] for p in pts]
    quals = [p[2] for p in pts]
    lo_l, hi_l = min(lats) * 0.95, max(lats) * 1.05 or 1.0
    lo_q, hi_q = min(min(quals) - 0.005, 0.98), 1.0005
    max_size = max(p[3] for p in pts) or 1

    def xy(lat: float, q: float) -> tuple[float, float]:
        x = pad + (lat - lo_l) / ((hi_l - lo_l) or 1) * (w - 2 * pad)
        y = h - pad - (q - lo_q) / ((hi_q - lo_q) or 1) * (h - 2 * pad)
        return x, y

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
        f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle" font-size="12">latency p50 (ms)</text>',
        f'<text x="14" y="{h / 2}" font-size="12" transform="rotate(-90 14 {h / 2})" text-anchor="middle">'
        "agreement with FP32</text>",
        f'<text x="{pad}" y="{h - pad + 14}" font-size="10">{lo_l:.4f}</text>',
        f'<text x="{w - pad}" y="{h - pad + 14}" font-size="10" text-anchor="end">{hi_l:.4f}</text>',
        f'<text x="{pad - 4}" y="{pad}" font-size="10" text-anchor="end">{hi_q:.3f}</text>',
        f'<text x="{pad - 4}" y="{h - pad}" font-size="10" text-anchor="end">{lo_q:.3f}</text>',
    ]
    front = sorted((p for p in pts if p[0] in cls["pareto_front"]), key=lambda p: p[1])
    if len(front) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(p[1], p[2]) for p in front))
        parts.append(f'<polyline points="{path}" fill="none" stroke="#2a7" stroke-dasharray="4 3"/>')
    for name, lat, q, size in pts:
        x, y = xy(lat, q)
        r = 3 + 9 * (size / max_size) ** 0.5
        color = "#d33" if name == cls["chosen"] else "#37c"
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{color}" fill-opacity="0.6"/>')
        parts.append(f'<text x="{x + r + 2:.1f}" y="{y + 3:.1f}" font-size="10">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_html(data: dict[str, Any]) -> str:
    esc = html.escape
    cpu = data["machine"]["cpu"]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>edgefleet build report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child,"
        "td:last-child{text-align:left}.chosen{background:#fde}.bad{color:#a33}</style></head><body>",
        f"<h1>Build report: {esc(data['model']['path'])}</h1>",
        f"<p>source sha256 <code>{esc(data['model']['sha256'])}</code>, opset {data['model']['opset']}, "
        f"{data['model']['size_bytes']} bytes. Measured on {esc(cpu['model_name'])} ({cpu['logical_cores']} "
        f"logical cores; VNNI {cpu['vnni']}, AVX2 {cpu['avx2']}, AVX-512 {cpu['avx512']}), onnxruntime "
        f"{esc(data['machine']['onnxruntime'])}.</p>",
    ]
    if data["candidate_failures"]:
        out.append("<p class='bad'>Candidates that could not be built: ")
        out.append(esc("; ".join(f"{k}: {v}" for k, v in data["candidate_failures"].items())) + "</p>")
    for cls in data["classes"]:
        status = "FAILED" if cls["failed"] else f"chosen: {cls['chosen']}"
        out.append(f"<h2>{esc(cls['hardware_class'])} - {esc(status)}</h2>")
        out.append(f"<p>{esc(cls['summary'])}<br>{esc(cls['measured_on'])}; threads {cls['threads']}.</p>")
        out.append(_svg(cls))
        heads = "candidate precision metric agreement max|diff| p50_ms p90_ms p99_ms KiB peak_MiB verdict"
        out.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in heads.split()) + "</tr>")
        verdicts = {v["name"]: v for v in cls["verdicts"]}
        for c in cls["candidates"]:
            q, p = c["quality"] or {}, c["performance"] or {}
            v = verdicts.get(c["name"], {"eligible": False, "reasons": []})
            reasons = "eligible" if v["eligible"] else "; ".join(v["reasons"])
            row_class = " class='chosen'" if c["name"] == cls["chosen"] else ""
            cells = [
                esc(c["name"]),
                esc(c["precision"]),
                _fmt(q.get("task_value"), ".4f"),
                _fmt(q.get("agreement"), ".4f"),
                _fmt(q.get("max_abs_diff"), ".3g"),
                _fmt(p.get("latency_p50_ms"), ".4f"),
                _fmt(p.get("latency_p90_ms"), ".4f"),
                _fmt(p.get("latency_p99_ms"), ".4f"),
                f"{c['size_bytes'] / 1024:.1f}",
                _fmt(p["peak_memory_bytes"] / 2**20 if p else None, ".1f"),
                esc(reasons),
            ]
            out.append(f"<tr{row_class}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def write_reports(root: Path, result: BuildResult, config: BuildConfig) -> dict[str, Any]:
    data = report_dict(result, config)
    write_bytes(root / "report.json", (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    write_bytes(root / "report.html", render_html(data).encode("utf-8"))
    return data
