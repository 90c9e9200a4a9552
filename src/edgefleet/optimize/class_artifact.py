"""One class's artifact from its selection: the chosen model file(s), golden vectors answered with the
class's settings (the tolerance covers the candidate's and the implementation's spread), and the manifest
that says what was done to the model and where each figure was measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.optimize import package, report
from edgefleet.optimize.config import BuildConfig, model_name_from
from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.figures import WHERE_RANK
from edgefleet.optimize.guard_ranges import input_ranges
from edgefleet.optimize.model_info import signature_of
from edgefleet.optimize.openvino_build import ir_signature, run_ir, write_ir_files
from edgefleet.optimize.results import BuildResult, ClassResult
from edgefleet.optimize.select import sustained_run
from edgefleet.optimize.session import open_session, run_dataset

__all__ = ["write_class_artifact"]


def write_class_artifact(
    root: Path,
    class_result: ClassResult,
    result: BuildResult,
    valid: Dataset,
    calib: Dataset,
    config: BuildConfig,
    judged: int,
) -> dict[str, Any]:
    """Write ``root`` (model file(s), golden vectors, manifest) for the class's chosen candidate; returns the
    manifest as written."""
    import onnx

    hwclass = class_result.hwclass
    ov = class_result.openvino
    pool = ov.candidates if ov is not None else result.candidates
    chosen = next(c for c in pool if c.name == class_result.selection.chosen)
    root.mkdir(parents=True)
    golden = valid.head(config.golden_samples)
    if ov is not None:  # the IR, its answers with the class's threads and with one (the spread)
        model_files = write_ir_files(root, chosen)
        outputs = run_ir(chosen.path, golden, threads=hwclass.threads.intra_op)
        plain = run_ir(chosen.path, golden, threads=1)
    else:
        model_files = [package.MODEL_FILE]
        package.write_bytes(root / package.MODEL_FILE, chosen.path.read_bytes())
        outputs = run_dataset(open_session(chosen.path, class_result.settings), golden, batch=False)
        plain = run_dataset(
            open_session(
                chosen.path, class_result.settings, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            ),
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
    quality = (ov.qualities if ov is not None else result.qualities)[chosen.name]
    tolerance = package.derive_tolerance(candidate_vs_fp32=quality.max_abs_diff, implementation_spread=spread)
    signature = ir_signature(chosen.path) if ov is not None else signature_of(onnx.load(str(chosen.path)))
    output_names = [o.name for o in signature.outputs]
    package.write_bytes(
        root / package.GOLDEN_FILE,
        package.golden_bytes(golden.arrays, dict(zip(output_names, outputs, strict=True))),
    )
    fp32_quality = result.qualities["fp32"]
    selection = class_result.selection
    mine = [f for f in class_result.figures if f.candidate == chosen.name]
    timed = next((f for f in mine if f.where == selection.place and f.latency is not None), None)
    perf = timed.latency if timed else None
    rss = max(
        (f for f in mine if f.peak_rss_bytes is not None), key=lambda f: WHERE_RANK[f.where], default=None
    )
    startup = max(
        (f for f in mine if f.load_time_ms is not None), key=lambda f: WHERE_RANK[f.where], default=None
    )
    manifest = {
        "schema_version": 1,
        "model": config.model_name or model_name_from(result.model.path),
        "version": config.model_version,
        "hardware_class": hwclass.name,
        "runtime": hwclass.runtime.model_dump(mode="json"),
        "precision": chosen.precision,
        "entrypoint": model_files[0],
        "files": [package.file_entry(root, p).model_dump() for p in (*model_files, package.GOLDEN_FILE)],
        "signature": signature.model_dump(mode="json"),
        "optimization": {
            "source_sha256": result.model.sha256,
            "quantization": chosen.quantization,
            "calibration_method": chosen.calibration_method,
            "sparsity": 0.0,
            "calibration_sha256": calib.sha256
            if chosen.precision == "int8" and chosen.kind != "int8_dynamic"
            else None,
            "candidate": chosen.name,
            "per_channel": chosen.per_channel,
            "reduce_range": chosen.reduce_range,
            "excluded_nodes": list(chosen.excluded_nodes),
            "notes": list(chosen.notes),
            "selection": class_result.selection.summary,
        },
        "metrics": {
            "task_metric": quality.task_metric,
            "task_value": quality.task_value,
            "reference_value": fp32_quality.task_value,
            "top1_agreement": quality.agreement if quality.agreement_metric == "top1_agreement" else None,
            "agreement_metric": quality.agreement_metric,
            "agreement": quality.agreement,
            "max_abs_diff": quality.max_abs_diff,
            "latency_p50_ms": perf.p50_ms if perf else None,
            "latency_p95_ms": perf.p95_ms if perf else None,
            "latency_p99_ms": perf.p99_ms if perf else None,
            "size_bytes": chosen.size_bytes,
            "peak_memory_bytes": rss.peak_rss_bytes if rss else None,
            "load_time_ms": startup.load_time_ms if startup else None,
            "first_inference_ms": startup.first_inference_ms if startup else None,
            "startup_measured_on": startup.source if startup else None,
            "validation_samples": valid.count,
            "validation_sha256": valid.sha256,
            "measured_on": (
                f"{timed.where}: {timed.source}"
                if timed
                else f"{class_result.note}; {selection.latency_unmeasured}"
            )[:500],
            "latency_unmeasured": (selection.latency_unmeasured or "")[:1000] or None,
            **package.sustained_metrics(
                sustained_run(class_result.figures, chosen.name, hwclass.runtime.execution_providers[0]),
                selection.sustained_unmeasured,
            ),
            "cpu": result.cpu.to_dict(),
            "onnxruntime": ort.__version__,
            **({"openvino": ov.note} if ov is not None else {}),
        },
        "health_check": package.health_check(
            tolerance,
            hwclass.performance.latency_p95_ms,
            output_names[judged] if judged < len(output_names) else None,
        ),
        "release_counter": config.release_counter,
        "build_report": report.class_summary(class_result),
        "input_kind": config.input_kind,
        "input_ranges": input_ranges(calib, margin=config.input_range_margin),
    }
    if result.robustness is not None:
        manifest["robustness"] = result.robustness.summary(chosen.name)
    return package.write_manifest(root, manifest).to_dict()
