"""``report.json`` and a self-contained ``report.html`` (inline SVG, no scripts, no CDN) per build."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime as ort

from edgefleet.optimize.package import write_bytes
from edgefleet.optimize.robustness_report import robustness_html
from edgefleet.optimize.select import Measured

if TYPE_CHECKING:
    from edgefleet.optimize.config import BuildConfig
    from edgefleet.optimize.results import BuildResult, ClassResult

__all__ = [
    "MAX_SUMMARY_CANDIDATES",
    "class_summary",
    "pareto_front",
    "render_html",
    "report_dict",
    "sustained_words",
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
        "description": list(m.description),
        "quality": m.quality.to_dict() if m.quality else None,
        "compatibility": m.compatibility.to_dict() if m.compatibility else None,
        "error": m.error,
    }


def _deciding_latency(c: ClassResult, name: str, *, stand_in: bool = True) -> float | None:
    """p50 at the place that decided; where latency is unmeasured for the class, the host's stand-in
    (``stand_in``) or nothing."""
    order = [c.selection.place] if c.selection.place else (["emulated", "host"] if stand_in else [])
    for where in order:
        for f in c.figures:
            if f.candidate == name and f.where == where and f.latency is not None:
                return f.latency.p50_ms
    return None


def _class_dict(c: ClassResult) -> dict[str, Any]:
    qualities = {m.name: m.quality for m in c.measured}
    points = []
    for m in c.measured:
        lat, quality = _deciding_latency(c, m.name), qualities.get(m.name)
        if lat is not None and quality is not None:
            points.append((m.name, lat, quality.agreement))
    return {
        "hardware_class": c.hwclass.name,
        "objective": c.selection.objective,
        "measured_on": c.note,
        "threads": {"intra_op": c.settings.intra_op, "inter_op": c.settings.inter_op},
        "providers": list(c.settings.providers),
        "preferred_providers": list(c.hwclass.runtime.execution_providers),
        "policy": asdict(c.policy) if c.policy is not None else None,
        "chosen": c.selection.chosen,
        "summary": c.selection.summary,
        "failed": c.selection.failed,
        "latency_place": c.selection.place,
        "latency_unmeasured": c.selection.latency_unmeasured,
        "envelope_unjudged": c.selection.envelope_unjudged,
        "sustained_unmeasured": c.selection.sustained_unmeasured,
        "emulation": c.emulation,
        "verdicts": [
            {
                "name": v.name,
                "eligible": v.eligible,
                "reasons": list(v.reasons),
                "note": v.note,
                "speedup": v.speedup.to_dict() if v.speedup else None,
            }
            for v in c.selection.verdicts
        ],
        "candidates": [_measured_dict(m) for m in c.measured],
        "figures": [f.to_dict() for f in c.figures],
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
                "latency_p50_ms": _finite(_deciding_latency(c, m.name, stand_in=False)),
                "agreement": _finite(m.quality.agreement) if m.quality else None,
                "task_value": _finite(m.quality.task_value) if m.quality else None,
                "eligible": bool(verdict and verdict.eligible),
                "reasons": [r[:MAX_REASON_CHARS] for r in reasons[:4]],
            }
        )
    return {
        "measured_on": (c.selection.place or "unmeasured here") + f"; {c.note}",
        "chosen": c.selection.chosen,
        "summary": c.selection.summary[: MAX_REASON_CHARS * 4],
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
        "robustness": None if result.robustness is None else result.robustness.to_dict(),
    }


def _plot_points(cls: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """(name, size KiB, p50 ms, eligible) at the deciding place (the host's stand-in when unmeasured)."""
    place = cls["latency_place"]
    order = [place] if place else ["emulated", "host"]
    eligible = {v["name"]: v["eligible"] for v in cls["verdicts"]}
    sizes = {c["name"]: c["size_bytes"] for c in cls["candidates"]}
    pts = []
    for name, size in sizes.items():
        for where in order:
            fig = next(
                (
                    f
                    for f in cls["figures"]
                    if f["candidate"] == name and f["where"] == where and f["latency"]
                ),
                None,
            )
            if fig is not None:
                pts.append((name, size / 1024, fig["latency"]["p50_ms"], eligible.get(name, False)))
                break
    return pts


def _svg(cls: dict[str, Any]) -> str:
    """Latency p50 vs model size; chosen in red, eligible in blue, refused in grey."""
    pts = _plot_points(cls)
    if not pts:
        return "<p>No latency figures to plot.</p>"
    w, h, pad = 560, 300, 56
    lo_s, hi_s = min(p[1] for p in pts) * 0.9, max(p[1] for p in pts) * 1.1
    lo_l, hi_l = min(p[2] for p in pts) * 0.9, max(p[2] for p in pts) * 1.1

    def xy(size: float, lat: float) -> tuple[float, float]:
        x = pad + (size - lo_s) / ((hi_s - lo_s) or 1) * (w - 2 * pad)
        y = h - pad - (lat - lo_l) / ((hi_l - lo_l) or 1) * (h - 2 * pad)
        return x, y

    where = cls["latency_place"] or "build host stand-in, not the class"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
        f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle" font-size="12">model size (KiB)</text>',
        f'<text x="14" y="{h / 2}" font-size="12" transform="rotate(-90 14 {h / 2})" text-anchor="middle">'
        f"latency p50 (ms, {html.escape(where)})</text>",
        f'<text x="{pad}" y="{h - pad + 14}" font-size="10">{lo_s:.0f}</text>',
        f'<text x="{w - pad}" y="{h - pad + 14}" font-size="10" text-anchor="end">{hi_s:.0f}</text>',
        f'<text x="{pad - 4}" y="{pad}" font-size="10" text-anchor="end">{hi_l:.3g}</text>',
        f'<text x="{pad - 4}" y="{h - pad}" font-size="10" text-anchor="end">{lo_l:.3g}</text>',
    ]
    for name, size, lat, ok in pts:
        x, y = xy(size, lat)
        color = "#d33" if name == cls["chosen"] else ("#37c" if ok else "#999")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}" fill-opacity="0.7"/>')
        parts.append(f'<text x="{x + 7:.1f}" y="{y + 3:.1f}" font-size="10">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def sustained_words(run: dict[str, Any]) -> str:
    """A sustained run in words (the report's figures table, the build command's output)."""
    thermal = (
        f"throttle events {_fmt(run['throttle_events'], 'd')}, "
        f"temperature rise {_fmt(run['temp_rise_c'], '.1f')} C"
        if run.get("thermal") == "available"
        else "throttling and temperature unavailable here"
    )
    return (
        f"sustained {run['duration_s']:g} s ({run['runs']} runs): "
        f"p95 first {_fmt(run['first_p95_ms'], '.3f')} / last {_fmt(run['last_p95_ms'], '.3f')} ms "
        f"({run['window_s']:g} s windows), drift x{_fmt(run['drift_ratio'], '.2f')}, {thermal}"
    )


def _figure_cell(figs: list[dict[str, Any]], where: str) -> str:
    f = next((x for x in figs if x["where"] == where), None)
    if f is None:
        return "-"
    if f["error"]:
        return f"failed: {html.escape(f['error'][:80])}"
    parts = []
    if f["latency"]:
        lat = f["latency"]
        parts.append(
            f"p50 {lat['p50_ms']:.3f} [{lat['p50_low_ms']:.3f}, {lat['p50_high_ms']:.3f}] "
            f"p95 {lat['p95_ms']:.3f}"
        )
    if f["peak_rss_bytes"] is not None:
        parts.append(f"RSS {f['peak_rss_bytes'] / 2**20:.1f} MiB")
    if f["load_time_ms"] is not None:
        parts.append(f"load {f['load_time_ms']:.1f} ms")
    if f.get("sustained"):
        parts.append(sustained_words(f["sustained"]))
    if f.get("devices"):
        parts.append(f"{f['devices']} device(s){' PARTIAL' if f['partial'] else ''}")
    stand_in = f["provider"] and f["where"] != "device" and f["provider"] != f.get("_preferred")
    return ("(stand-in) " if stand_in else "") + html.escape(", ".join(parts) or "-")


def render_html(data: dict[str, Any]) -> str:
    esc = html.escape
    cpu = data["machine"]["cpu"]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>edgefleet build report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
        ".chosen{background:#fde}.bad{color:#a33}.warn{color:#a60}</style></head><body>",
        f"<h1>Build report: {esc(data['model']['path'])}</h1>",
        f"<p>source sha256 <code>{esc(data['model']['sha256'])}</code>, opset {data['model']['opset']}, "
        f"{data['model']['size_bytes']} bytes. Build host: {esc(cpu['model_name'])} ({cpu['logical_cores']} "
        f"logical cores; VNNI {cpu['vnni']}, AVX2 {cpu['avx2']}, AVX-512 {cpu['avx512']}), onnxruntime "
        f"{esc(data['machine']['onnxruntime'])}. Latency intervals are 95 %; a speed-up counts only when its "
        "whole interval is above 1.</p>",
    ]
    if data["candidate_failures"]:
        out.append("<p class='bad'>Candidates that could not be built: ")
        out.append(esc("; ".join(f"{k}: {v}" for k, v in data["candidate_failures"].items())) + "</p>")
    for cls in data["classes"]:
        status = "FAILED" if cls["failed"] else f"chosen: {cls['chosen']}"
        out.append(f"<h2>{esc(cls['hardware_class'])} - {esc(status)}</h2>")
        out.append(
            f"<p>objective <b>{esc(cls['objective'])}</b>; latency decided on: "
            f"<b>{esc(cls['latency_place'] or 'unmeasured here')}</b><br>{esc(cls['summary'])}<br>"
            f"{esc(cls['measured_on'])}; threads {cls['threads']}.</p>"
        )
        for note in (
            cls["latency_unmeasured"],
            cls.get("envelope_unjudged"),
            cls.get("sustained_unmeasured"),
        ):
            if note:
                out.append(f"<p class='warn'>{esc(note)}</p>")
        if cls.get("emulation"):
            emu = cls["emulation"]
            base = emu.get("runtime_baseline_rss_bytes")
            base_words = f" The runtime alone (no model) held {base / 2**20:.1f} MiB." if base else ""
            if emu.get("others_load_per_cpu") is not None:
                load = emu["others_load_per_cpu"]
                base_words += f" Other processes' load while timing: {load:.1f} runnable threads per CPU."
            out.append(f"<p>Emulated on the build host: {esc(emu.get('statement', ''))}.{base_words}</p>")
        warnings = {
            c["quality"]["warning"] for c in cls["candidates"] if c["quality"] and c["quality"]["warning"]
        }
        for warning in sorted(warnings):
            out.append(f"<p class='warn'>{esc(warning)}</p>")
        out.append(_svg(cls))
        heads = ["candidate", "what was done", "metric", "agreement", "KiB", "host", "emulated", "device",
                 "speed-up vs FP32", "verdict"]  # fmt: skip
        out.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>")
        verdicts = {v["name"]: v for v in cls["verdicts"]}
        preferred = cls["preferred_providers"][0] if cls["preferred_providers"] else None
        for c in cls["candidates"]:
            q = c["quality"] or {}
            v = verdicts.get(c["name"], {"eligible": False, "reasons": [], "note": "", "speedup": None})
            if c["name"] == cls["chosen"]:
                verdict = "<b>chosen</b>"
            elif v["eligible"]:
                verdict = "eligible; " + esc(v["note"])
            else:
                verdict = "refused: " + esc("; ".join(v["reasons"]))
            figs = [dict(f, _preferred=preferred) for f in cls["figures"] if f["candidate"] == c["name"]]
            sp = v.get("speedup")
            row_class = " class='chosen'" if c["name"] == cls["chosen"] else ""
            cells = [
                esc(c["name"]) + f"<br>{esc(c['precision'])}",
                esc("; ".join(c.get("description") or [])),
                _fmt(q.get("task_value"), ".4f"),
                _fmt(q.get("agreement"), ".4f") + (f" ({esc(q['agreement_metric'])})" if q else ""),
                f"{c['size_bytes'] / 1024:.1f}",
                _figure_cell(figs, "host"),
                _figure_cell(figs, "emulated"),
                _figure_cell(figs, "device"),
                "-" if not sp else f"{sp['value']:.2f}x [{sp['low']:.2f}, {sp['high']:.2f}]",
                verdict,
            ]
            out.append(f"<tr{row_class}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
        out.append("</table>")
    out.append(robustness_html(data.get("robustness")))
    out.append("</body></html>")
    return "\n".join(out)


def write_reports(root: Path, result: BuildResult, config: BuildConfig) -> dict[str, Any]:
    data = report_dict(result, config)
    write_bytes(root / "report.json", (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    write_bytes(root / "report.html", render_html(data).encode("utf-8"))
    return data
