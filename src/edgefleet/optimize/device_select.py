"""``edgefleet build select BUILD_DIR --from-probe ID``: selection again, on figures measured by devices.

``device_figures`` (pure) turns a probe's per-device results into rows of the selection's figures table,
labelled ``device``: p50 and its noise interval from every device's timed runs together; p95, p99, peak
memory and load time from the worst device (the class's budgets must hold on each device measured); quality
from the worst device's agreement with the build's FP32 reference on the same inputs. A candidate that
failed on any device carries that failure. The host's (and emulated) figures stay in the table beside them;
the one selection rule (``select.select_candidate``) compares latency at the most authoritative place
(device), and ``write_device_artifact`` writes the final per-class artifact from the kept candidate file,
staged and renamed over ``BUILD_DIR/<class>``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.optimize import package, report
from edgefleet.optimize.candidate_store import CANDIDATES_DIR, VALIDATION_FILE, read_index
from edgefleet.optimize.config import BuildConfig, class_policy
from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.figures import Figures
from edgefleet.optimize.measure import Compatibility
from edgefleet.optimize.noise import Latency, latency_from_samples
from edgefleet.optimize.probe_bundle import class_candidates, read_report
from edgefleet.optimize.quality import Quality
from edgefleet.optimize.select import Measured, Selection, select_candidate, sustained_run
from edgefleet.optimize.session import SessionSettings, open_session, run_dataset
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.probe import SustainedFigures

__all__ = ["DeviceSelection", "device_figures", "select_from_probe", "write_device_artifact"]

GOLDEN_SAMPLES = 8


@dataclass(frozen=True)
class DeviceSelection:
    hardware_class: str
    probe_id: str
    partial: bool
    devices: int
    measured: list[Measured]
    figures: list[Figures]
    selection: Selection
    device_rows: dict[str, dict[str, Any]]
    artifact: Path | None


def _measured(entry: dict[str, Any]) -> Measured:
    compat = entry.get("compatibility")
    return Measured(
        name=entry["name"],
        kind=str(entry.get("kind", "")),
        precision=str(entry.get("precision", "fp32")),
        size_bytes=int(entry.get("size_bytes", 0)),
        quality=Quality.from_dict(entry["quality"]) if entry.get("quality") else None,
        compatibility=Compatibility(
            opset=int(compat.get("opset", 0)),
            op_types=tuple(compat.get("op_types", ())),
            unsupported_ops=tuple(compat.get("unsupported_ops", ())),
            loads=True,  # judged where it ran: a failure on the devices is in their figures
        )
        if isinstance(compat, dict)
        else None,
        error=entry.get("error"),
        description=tuple(entry.get("description", ())),
    )


def _device_quality(ok: list[dict[str, Any]]) -> Quality | None:
    """The worst device's agreement with the build's FP32 reference (the same inputs)."""
    judged = [f for f in ok if f.get("agreement") is not None and f.get("agreement_metric")]
    if not judged:
        return None
    worst = min(judged, key=lambda f: float(f["agreement"]))
    return Quality(
        task_metric=worst.get("task_metric"),
        task_value=worst.get("task_value"),
        agreement_metric=str(worst["agreement_metric"]),
        agreement=float(worst["agreement"]),
        max_abs_diff=float(worst.get("max_abs_diff") or 0.0),
        mean_abs_diff=float(worst.get("mean_abs_diff") or 0.0),
        has_nan=any(bool(f.get("has_nan")) for f in judged),
    )


def device_figures(
    probe: dict[str, Any], names: list[str]
) -> tuple[list[Figures], dict[str, dict[str, Any]]]:
    """Pure: the probe's per-device results -> one ``Figures(where="device")`` per candidate, and per
    candidate a summary row for the report. p50 and its interval from every device's runs together; p95,
    p99, memory and load time from the worst device (the budgets must hold on each device measured)."""
    per_name: dict[str, list[dict[str, Any]]] = {}
    for device in probe.get("devices", []):
        results = device.get("results") or {}
        for figures in results.get("candidates", []):
            per_name.setdefault(figures["name"], []).append({**figures, "device_id": device["device_id"]})
    source = f"probe {probe.get('id')} on {probe.get('devices_reported', 0)} devices of the class"
    partial = probe.get("status") != "complete"
    out: list[Figures] = []
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in probe.get("candidates", []):
            continue
        reported = per_name.get(name, [])
        failed = [f for f in reported if f.get("status") != "measured"]
        ok = [f for f in reported if f.get("status") == "measured" and f.get("latency_samples_ms")]
        row: dict[str, Any] = {"devices": len(reported), "failed": len(failed), "measured_on": "device"}
        if failed or not ok:
            first = failed[0] if failed else None
            error = "no device measured it"
            if first is not None:
                why = str(first.get("error") or "")[:200]
                error = f"device {first['device_id']}: {first.get('error_code')}: {why}"
            row["error"] = error
            out.append(Figures(name, "device", source, error=error, devices=len(ok), partial=partial))
            rows[name] = row
            continue
        pooled = [float(x) for f in ok for x in f["latency_samples_ms"]]
        latency = latency_from_samples(pooled)
        worst_p95 = max(_batch1(f, "p95_ms") for f in ok)
        worst_p99 = max(_batch1(f, "p99_ms") for f in ok)
        latency = Latency(
            **{
                **latency.to_dict(),
                "p95_ms": max(latency.p95_ms, worst_p95),
                "p99_ms": max(latency.p99_ms, worst_p99),
                "round_p50_ms": (),
            }
        )
        rss = max(int(f.get("peak_rss_bytes") or 0) for f in ok)
        load_ms = max(float(f.get("load_ms") or 0.0) for f in ok)
        first_ms = max(float(f.get("first_inference_ms") or 0.0) for f in ok)
        quality = _device_quality(ok)
        sustained = [f["sustained"] for f in ok if f.get("sustained")]
        # the class's sustained budget must hold on each device: the run with the worst last-window p95
        worst_run = max(
            (s for s in sustained if s.get("last_p95_ms") is not None),
            key=lambda s: float(s["last_p95_ms"]),
            default=None,
        )
        notes = tuple(
            f"sustained {s['duration_s']:g} s: p95 drift x{s['drift_ratio']:.2f}"
            if s.get("drift_ratio")
            else "sustained: no drift figure"
            for s in sustained
        )
        out.append(
            Figures(
                name,
                "device",
                source,
                devices=len(ok),
                partial=partial,
                latency=latency,
                peak_rss_bytes=rss,
                load_time_ms=load_ms,
                first_inference_ms=first_ms,
                quality=quality,
                notes=notes,
                sustained=SustainedFigures.model_validate(worst_run) if worst_run else None,
            )
        )
        row.update(
            latency_p50_ms=latency.p50_ms,
            latency_p95_ms=latency.p95_ms,
            latency_p99_ms=latency.p99_ms,
            peak_rss_bytes=rss,
            load_ms=load_ms,
            agreement=quality.agreement if quality else None,
            sustained=sustained,
        )
        rows[name] = row
    return out, rows


def _batch1(figures: dict[str, Any], key: str) -> float:
    for batch in figures.get("latency", []):
        if batch.get("batch") == 1:
            return float(batch[key])
    return 0.0


def select_from_probe(
    build_dir: Path,
    hwclass: HardwareClass,
    probe: dict[str, Any],
    *,
    allow_partial: bool = False,
) -> DeviceSelection:
    """Check the probe fits this build and class, select on device figures, write the artifact."""
    build_dir = Path(build_dir)
    if probe.get("hardware_class") != hwclass.name:
        raise BuildInputError(
            "the probe measured another class",
            code="build_class_mismatch",
            expected=hwclass.name,
            got=probe.get("hardware_class"),
        )
    status = probe.get("status")
    if status == "running" or (status in ("partial", "expired") and not allow_partial):
        raise BuildInputError(
            f"the probe is {status}: {probe.get('devices_reported')} of {probe.get('devices_asked')} devices "
            "reported",
            code="probe_incomplete",
            expected="a complete probe (or --allow-partial once its deadline passed)",
            got=status,
        )
    report_data = read_report(build_dir)
    index = read_index(build_dir)
    if probe.get("model") != index.get("model"):
        raise BuildInputError(
            "the probe measured another model's build",
            code="build_class_mismatch",
            expected=index.get("model"),
            got=probe.get("model"),
        )
    entry = class_candidates(report_data, hwclass.name)
    probed = [c for c in entry.get("candidates", []) if c.get("name") in probe.get("candidates", [])]
    if not probed:
        raise BuildInputError("the probe measured none of this build's candidates", code="probe_incomplete")
    measured = [_measured(c) for c in probed]
    names = [m.name for m in measured]
    host = [
        Figures.from_dict(f)
        for f in entry.get("figures", [])
        if isinstance(f, dict) and f.get("candidate") in names
    ]
    devices, rows = device_figures(probe, names)
    figures = host + devices
    policy = class_policy(hwclass, _config(report_data))
    selection = select_candidate(measured, figures, policy)
    partial = status != "complete"
    count = int(probe.get("devices_reported", 0))
    result = DeviceSelection(
        hwclass.name, str(probe["id"]), partial, count, measured, figures, selection, rows, artifact=None
    )
    if selection.failed:
        return result
    artifact = write_device_artifact(build_dir, hwclass, index, result)
    return DeviceSelection(**{**result.__dict__, "artifact": artifact})


def _config(report_data: dict[str, Any]) -> BuildConfig:
    cfg = report_data.get("config", {})
    return BuildConfig(
        min_metric_ratio=float(cfg.get("min_metric_ratio", 0.99)),
        min_agreement=float(cfg.get("min_agreement", 0.99)),
        min_speedup=float(cfg.get("min_speedup", 1.0)),
    )


def _summary_rows(result: DeviceSelection) -> list[dict[str, Any]]:
    verdicts = {v.name: v for v in result.selection.verdicts}
    out = []
    for m in result.measured[: report.MAX_SUMMARY_CANDIDATES]:
        row = result.device_rows.get(m.name, {})
        host_fig = next(
            (f for f in result.figures if f.candidate == m.name and f.where == "host" and f.latency), None
        )
        verdict = verdicts.get(m.name)
        out.append(
            {
                "name": m.name,
                "precision": m.precision,
                "size_bytes": m.size_bytes,
                "latency_p50_ms": row.get("latency_p50_ms"),
                "latency_p95_ms": row.get("latency_p95_ms"),
                "host_latency_p50_ms": host_fig.latency.p50_ms if host_fig and host_fig.latency else None,
                "agreement": m.quality.agreement if m.quality else None,
                "device_agreement": row.get("agreement"),
                "task_value": m.quality.task_value if m.quality else None,
                "measured_on": "device",
                "eligible": bool(verdict and verdict.eligible),
                "reasons": [r[: report.MAX_REASON_CHARS] for r in (verdict.reasons if verdict else ())][:4],
            }
        )
    return out


def write_device_artifact(
    build_dir: Path, hwclass: HardwareClass, index: dict[str, Any], result: DeviceSelection
) -> Path:
    """``BUILD_DIR/<class>``: the chosen candidate, golden outputs computed here, device figures in the
    manifest; replaced in one rename (the host's choice, if any, is removed after)."""
    chosen = next(m for m in result.measured if m.name == result.selection.chosen)
    record = next(c for c in index["candidates"] if c["name"] == chosen.name)
    source = build_dir / CANDIDATES_DIR
    with np.load(source / VALIDATION_FILE, allow_pickle=False) as data:
        arrays = {k.removeprefix("input:"): data[k] for k in data.files if k.startswith("input:")}
    golden = Dataset("validation", arrays, None, "").head(GOLDEN_SAMPLES)
    model_path = source / record["file"]
    settings = SessionSettings(("CPUExecutionProvider",), hwclass.threads.intra_op, hwclass.threads.inter_op)
    outputs = run_dataset(open_session(model_path, settings), golden, batch=False)
    plain = run_dataset(
        open_session(model_path, settings, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
        golden,
        batch=False,
    )
    spread = max(
        (
            float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            for a, b in zip(outputs, plain, strict=True)
        ),
        default=0.0,
    )
    quality = chosen.quality
    tolerance = package.derive_tolerance(
        candidate_vs_fp32=quality.max_abs_diff if quality else 0.0, implementation_spread=spread
    )
    output_names = [o["name"] for o in index["signature"]["outputs"]]
    perf = next(
        (f.latency for f in result.figures if f.candidate == chosen.name and f.where == "device"), None
    )
    rss = next(
        (f.peak_rss_bytes for f in result.figures if f.candidate == chosen.name and f.where == "device"), None
    )
    staging = Path(tempfile.mkdtemp(prefix=f".{hwclass.name}.staging-", dir=build_dir))
    try:
        package.write_bytes(staging / package.MODEL_FILE, model_path.read_bytes())
        package.write_bytes(
            staging / package.GOLDEN_FILE,
            package.golden_bytes(golden.arrays, dict(zip(output_names, outputs, strict=True))),
        )
        partial = ", partial" if result.partial else ""
        measured_on = f"device: probe {result.probe_id} ({result.devices} devices{partial})"
        package.write_manifest(
            staging,
            {
                "schema_version": 1,
                "model": index["model"],
                "version": index["version"],
                "hardware_class": hwclass.name,
                "runtime": hwclass.runtime.model_dump(mode="json"),
                "precision": chosen.precision,
                "entrypoint": package.MODEL_FILE,
                "files": [
                    package.file_entry(staging, p).model_dump()
                    for p in (package.MODEL_FILE, package.GOLDEN_FILE)
                ],
                "signature": index["signature"],
                "optimization": {
                    "source_sha256": index["source_sha256"],
                    "quantization": record.get("quantization", "none"),
                    "calibration_method": record.get("calibration_method"),
                    "sparsity": record.get("sparsity", 0.0),
                    "candidate": chosen.name,
                    "per_channel": record.get("per_channel", False),
                    "reduce_range": record.get("reduce_range", False),
                    "notes": list(record.get("notes", [])),
                    "selection": result.selection.summary,
                },
                "metrics": {
                    "task_metric": quality.task_metric if quality else None,
                    "task_value": quality.task_value if quality else None,
                    "agreement_metric": quality.agreement_metric if quality else None,
                    "agreement": quality.agreement if quality else None,
                    "latency_p50_ms": perf.p50_ms if perf else None,
                    "latency_p95_ms": perf.p95_ms if perf else None,
                    "latency_p99_ms": perf.p99_ms if perf else None,
                    "size_bytes": chosen.size_bytes,
                    "peak_memory_bytes": rss,
                    "measured_on": measured_on,
                    "probe_id": result.probe_id,
                    "latency_unmeasured": (result.selection.latency_unmeasured or "")[:1000] or None,
                    **package.sustained_metrics(
                        sustained_run(result.figures, chosen.name, hwclass.runtime.execution_providers[0]),
                        result.selection.sustained_unmeasured,
                    ),
                },
                "health_check": {
                    "golden_file": package.GOLDEN_FILE,
                    "atol": tolerance.atol,
                    "rtol": tolerance.rtol,
                    "tolerance_basis": tolerance.basis,
                    "latency_ceiling_ms": hwclass.performance.latency_p95_ms,
                    "warmup_runs": 3,
                    "judged_output": index.get("judged_output"),
                },
                "release_counter": index["release_counter"],
                "build_report": {
                    "measured_on": measured_on,
                    "probe_id": result.probe_id,
                    "partial": result.partial,
                    "chosen": result.selection.chosen,
                    "summary": result.selection.summary[: report.MAX_REASON_CHARS * 4],
                    "candidates": _summary_rows(result),
                    "omitted_candidates": max(0, len(result.measured) - report.MAX_SUMMARY_CANDIDATES),
                },
            },
        )
        target = build_dir / hwclass.name
        old = build_dir / f".{hwclass.name}.host-choice"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        _record_in_report(build_dir, hwclass.name, result)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _record_in_report(build_dir: Path, hardware_class: str, result: DeviceSelection) -> None:
    """``report.json``/``report.html``: the class's device figures join its figures table (the report's
    ``device`` column), its verdicts become the device selection's; the host's own selection is kept under
    ``host_selection``."""
    path = build_dir / "report.json"
    data = json.loads(path.read_bytes())
    entry = next(c for c in data["classes"] if c.get("hardware_class") == hardware_class)
    entry.setdefault(
        "host_selection",
        {k: entry.get(k) for k in ("chosen", "summary", "failed", "latency_place", "verdicts")},
    )
    device = [f.to_dict() for f in result.figures if f.where == "device"]
    entry["figures"] = [f for f in entry.get("figures", []) if f.get("where") != "device"] + device
    selection = result.selection
    entry.update(
        chosen=selection.chosen,
        summary=f"{selection.summary} (device figures: probe {result.probe_id}"
        f"{', PARTIAL' if result.partial else ''})",
        failed=selection.failed,
        latency_place=selection.place,
        latency_unmeasured=selection.latency_unmeasured,
        sustained_unmeasured=selection.sustained_unmeasured,
        verdicts=[
            {
                "name": v.name,
                "eligible": v.eligible,
                "reasons": list(v.reasons),
                "note": v.note,
                "speedup": v.speedup.to_dict() if v.speedup else None,
            }
            for v in selection.verdicts
        ],
        probe={"id": result.probe_id, "partial": result.partial, "devices": result.devices},
    )
    package.write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    package.write_bytes(build_dir / "report.html", report.render_html(data).encode())
