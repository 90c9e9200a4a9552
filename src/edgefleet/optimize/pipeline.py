"""``edgefleet build``: one trained model in, one measured and proven artifact per hardware class out.

Order: check every input (nothing is written before that) -> FP32 reference outputs on the validation set
-> candidates (once, shared by all classes) -> quality of each against the reference -> accuracy-aware
mixed precision if no full INT8 keeps the bound -> per class: compatibility, latency and memory with the
class's providers and threads -> selection -> artifacts + report, staged and renamed onto ``--out``.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from edgefleet.optimize import candidate_store, package, report
from edgefleet.optimize.candidates import Candidate, describe, make_fp16, make_fp32, make_student
from edgefleet.optimize.config import BuildConfig, class_policy, model_name_from
from edgefleet.optimize.cpu_features import CpuInfo, build_reduce_range, detect_cpu
from edgefleet.optimize.dataset import Dataset, load_dataset
from edgefleet.optimize.emulate import emulate_class
from edgefleet.optimize.errors import BuildError, BuildInputError
from edgefleet.optimize.figures import WHERE_RANK, Figures, Where
from edgefleet.optimize.guard_ranges import input_ranges
from edgefleet.optimize.measure import check_compatibility, measure_latency, others_load_per_cpu
from edgefleet.optimize.mixed import MixedSearch, search_mixed_precision
from edgefleet.optimize.model_info import ModelInfo, load_model, signature_of
from edgefleet.optimize.openvino_build import (
    OpenVinoClassBuild,
    build_openvino_class,
    ir_signature,
    run_ir,
    write_ir_files,
)
from edgefleet.optimize.quality import Quality, check_labels, measure_quality, within_bound
from edgefleet.optimize.quantize import make_int8_dynamic, make_int8_static, preprocess
from edgefleet.optimize.robustness import RobustnessPolicy, RobustnessReport, evaluate_robustness
from edgefleet.optimize.select import ClassPolicy, Measured, Selection, select_candidate
from edgefleet.optimize.session import (
    SessionSettings,
    open_session,
    plan_providers,
    run_dataset,
    settings_for,
)
from edgefleet.optimize.storage import measure_startup
from edgefleet.protocol.hardware_class import HardwareClass

__all__ = ["BuildResult", "ClassResult", "run_build", "select_classes"]

REFERENCE_SETTINGS = SessionSettings(providers=("CPUExecutionProvider",), intra_op=1, inter_op=1)


@dataclass
class ClassResult:
    hwclass: HardwareClass
    note: str
    settings: SessionSettings
    measured: list[Measured]
    selection: Selection
    manifest: dict[str, Any] | None = None
    figures: list[Figures] = field(default_factory=list)
    policy: ClassPolicy | None = None
    emulation: dict[str, Any] | None = None  # how the class's limits were applied on the build host
    openvino: OpenVinoClassBuild | None = None
    """An OpenVINO class's own candidates (IR) and qualities (``openvino_build``)."""


@dataclass
class BuildResult:
    out: Path
    model: ModelInfo
    cpu: CpuInfo
    classes: list[ClassResult] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    qualities: dict[str, Quality] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    mixed: MixedSearch | None = None
    robustness: RobustnessReport | None = None

    @property
    def failed_classes(self) -> list[str]:
        return [c.hwclass.name for c in self.classes if c.selection.failed]


def select_classes(classes: list[HardwareClass], names: list[str] | None) -> list[HardwareClass]:
    if not names:
        return classes
    known = {c.name: c for c in classes}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BuildInputError(
            f"unknown hardware class {unknown[0]!r}",
            code="unknown_hardware_class",
            expected=sorted(known),
            got=unknown,
        )
    return [known[n] for n in names]


def _judged_index(model: ModelInfo, config: BuildConfig) -> int:
    outputs = model.signature.outputs
    if config.output_name is not None:
        names = [o.name for o in outputs]
        if config.output_name not in names:
            raise BuildInputError(
                "unknown output", code="invalid_build_input", expected=names, got=config.output_name
            )
        return names.index(config.output_name)
    for index, spec in enumerate(outputs):
        if spec.dtype.startswith("float"):
            return index
    raise BuildInputError(
        "the model has no float output to judge quality on",
        code="unsupported_model",
        expected="a float output (scores, values or embeddings)",
        got=[o.dtype for o in outputs],
    )


def _batchable(model: ModelInfo) -> bool:
    return all(spec.shape and not isinstance(spec.shape[0], int) for spec in model.signature.inputs)


def _bar(config: BuildConfig, total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, disable=not (config.progress and sys.stderr.isatty()), leave=False)


def _reference(model_path: Path, info: ModelInfo, data: Dataset) -> list[np.ndarray]:
    try:
        return run_dataset(open_session(model_path, REFERENCE_SETTINGS), data, batch=_batchable(info))
    except BuildError as exc:
        raise BuildInputError(
            f"the model does not run on the validation data: {exc.message}",
            code="model_shape_mismatch",
            expected="a model whose declared inputs match its weights and the data",
            got=exc.details.get("got"),
        ) from exc


def _make_candidates(
    source: Path,
    work: Path,
    info: ModelInfo,
    classes: list[HardwareClass],
    calib: Dataset,
    config: BuildConfig,
) -> tuple[list[Candidate], dict[str, str], Path | None, bool]:
    precisions = {p for c in classes for p in c.precisions}
    candidates = [make_fp32(source, work, REFERENCE_SETTINGS)]
    failures: dict[str, str] = {}
    reduce_range = build_reduce_range(classes)
    steps: list[tuple[str, Any]] = []
    if "fp16" in precisions:
        steps.append(("fp16", lambda: make_fp16(source, work)))
    pre: Path | None = None
    if "int8" in precisions:
        pre, note = preprocess(source, work)
        notes = (note,) if note else ()
        for method in config.calibration_methods:
            for per_channel in config.per_channel:
                steps.append(
                    (
                        f"int8-static-{method}{'-pc' if per_channel else ''}",
                        lambda m=method, pc=per_channel: make_int8_static(
                            pre,
                            work,
                            calib,
                            method=m,
                            per_channel=pc,
                            reduce_range=reduce_range,
                            max_samples=config.max_calibration_samples,
                            notes=notes,
                        ),
                    )
                )
        if config.dynamic:
            steps.append(("int8-dynamic", lambda: make_int8_dynamic(source, work, reduce_range=reduce_range)))
    for index, student in enumerate(config.students):
        steps.append((f"student-{index}", lambda p=student, i=index: make_student(p, info, work, i)))
    with _bar(config, len(steps), "candidates") as bar:
        for name, make in steps:
            try:
                made = make()
            except BuildInputError:
                raise
            except BuildError as exc:
                failures[name] = exc.message[:300]
                made = None
            if made is not None:
                candidates.append(made)
            bar.update()
    return candidates, failures, pre, reduce_range


def run_build(
    model_path: Path,
    classes: list[HardwareClass],
    calibration_path: Path,
    validation_path: Path,
    out: Path,
    config: BuildConfig,
    *,
    class_names: list[str] | None = None,
    cpu: CpuInfo | None = None,
    available_providers: list[str] | None = None,
) -> BuildResult:
    """Build every selected class. Bad input raises ``BuildInputError`` before ``out`` is touched."""
    package.check_output_free(out)
    chosen_classes = select_classes(classes, class_names)
    policies = {c.name: class_policy(c, config) for c in chosen_classes}
    _, info = load_model(model_path)
    judged = _judged_index(info, config)
    calib = load_dataset(calibration_path, info.signature)
    valid = load_dataset(validation_path, info.signature).head(config.max_validation_samples)
    needs_int8 = any("int8" in c.precisions for c in chosen_classes)
    if needs_int8 and calib.count < config.min_calibration_samples:
        raise BuildInputError(
            "too little calibration data for INT8",
            code="too_little_calibration_data",
            expected=f">= {config.min_calibration_samples} samples",
            got=calib.count,
        )
    reference = _reference(model_path, info, valid)
    if valid.labels is not None:
        check_labels(valid.labels, reference[judged], config.task, what=Path(valid.source).name)
    _reference(model_path, info, calib.head(2))  # calibration data must run too
    cpu = cpu or detect_cpu()
    result = BuildResult(out=out, model=info, cpu=cpu)
    batch = _batchable(info)
    strictest_agreement = max(p.min_agreement for p in policies.values())

    def evaluate(candidate: Candidate) -> Quality:
        outputs = run_dataset(open_session(candidate.path, REFERENCE_SETTINGS), valid, batch=batch)
        return measure_quality(
            config.task, outputs[judged], reference[judged], valid.labels, min_agreement=strictest_agreement
        )

    with tempfile.TemporaryDirectory(prefix="edgefleet-build-") as tmp:
        work = Path(tmp)
        candidates, result.failures, pre, reduce_range = _make_candidates(
            model_path, work, info, chosen_classes, calib, config
        )
        with _bar(config, len(candidates), "quality") as bar:
            for candidate in list(candidates):
                try:
                    result.qualities[candidate.name] = evaluate(candidate)
                except BuildError as exc:
                    if candidate.name == "fp32":
                        raise
                    result.failures[candidate.name] = exc.message[:300]
                    candidates.remove(candidate)
                bar.update()
        fp32_quality = result.qualities["fp32"]
        int8_classes = [policies[c.name] for c in chosen_classes if "int8" in c.precisions]
        if config.mixed and pre is not None and int8_classes:
            strict_metric = max(p.min_metric_ratio for p in int8_classes)
            strict_agreement = max(p.min_agreement for p in int8_classes)

            def accept(q: Quality) -> tuple[bool, list[str]]:
                return within_bound(
                    q, fp32_quality, min_metric_ratio=strict_metric, min_agreement=strict_agreement
                )

            statics = [c for c in candidates if c.kind == "int8_static"]
            if statics and not any(accept(result.qualities[c.name])[0] for c in statics):
                best = max(statics, key=lambda c: result.qualities[c.name].agreement)
                result.mixed = search_mixed_precision(
                    pre,
                    work,
                    calib,
                    method=best.calibration_method or "minmax",
                    per_channel=best.per_channel,
                    reduce_range=reduce_range,
                    max_samples=config.max_calibration_samples,
                    max_sensitivity_nodes=config.max_sensitivity_nodes,
                    max_excluded=config.max_excluded,
                    evaluate=evaluate,
                    accept=accept,
                )
                if result.mixed.candidate is not None:
                    candidates.append(result.mixed.candidate)
                    result.qualities[result.mixed.candidate.name] = evaluate(result.mixed.candidate)
        result.candidates = candidates
        if config.input_kind != "none":
            result.robustness = _robustness(candidates, valid, reference[judged], judged, config, batch)
        compat_cache: dict[tuple[str, SessionSettings], Any] = {}
        latency_cache: dict[SessionSettings, dict[str, Any]] = {}
        load_cache: dict[SessionSettings, float | None] = {}
        for hwclass in chosen_classes:
            plan = plan_providers(hwclass, available_providers)
            settings = settings_for(hwclass, plan)
            if hwclass.runtime.name == "openvino":  # built, measured and packaged as OpenVINO IR
                ov = build_openvino_class(
                    model_path,
                    work,
                    hwclass,
                    policies[hwclass.name],
                    calib,
                    valid,
                    reference[judged],
                    task=config.task,
                    judged=judged,
                    max_calibration_samples=config.max_calibration_samples,
                    warmup_runs=config.warmup_runs,
                    latency_runs=config.latency_runs,
                )
                result.classes.append(
                    ClassResult(
                        hwclass,
                        ov.note,
                        settings,
                        ov.measured,
                        ov.selection,
                        figures=ov.figures,
                        policy=policies[hwclass.name],
                        openvino=ov,
                    )
                )
                continue
            allowed = [c for c in candidates if c.precision in hwclass.precisions]
            with _bar(config, len(allowed) + 1, f"measure {hwclass.name}") as bar:
                for c in allowed:
                    if (c.name, settings) not in compat_cache:
                        compat_cache[(c.name, settings)] = check_compatibility(
                            c.path, settings, hwclass.supported_ops
                        )
                    bar.update()
                loading = {c.name: c.path for c in allowed if compat_cache[(c.name, settings)].loads}
                if not set(loading) <= set(
                    latency_cache.get(settings, {})
                ):  # one interleaved run per settings
                    before = others_load_per_cpu(settings.intra_op)
                    latency_cache[settings] = measure_latency(
                        loading, settings, valid, warmup_runs=config.warmup_runs, runs=config.latency_runs
                    )
                    after = others_load_per_cpu(settings.intra_op)
                    load_cache[settings] = max((x for x in (before, after) if x is not None), default=None)
                bar.update()
            measured = [
                Measured(
                    c.name,
                    c.kind,
                    c.precision,
                    c.size_bytes,
                    result.qualities.get(c.name),
                    compat_cache[(c.name, settings)],
                    description=describe(c),
                    robustness=tuple(result.robustness.misses(c.name)) if result.robustness else (),
                )
                for c in allowed
            ]
            measured += [
                Measured(name, "failed", "fp32", 0, None, None, error=message)
                for name, message in result.failures.items()
            ]
            host = (
                f"build host {cpu.model_name}, {settings.providers[0]}, {settings.intra_op} intra-op threads"
            )
            figures = [
                Figures(
                    c.name,
                    "host",
                    host,
                    settings.providers[0],
                    latency=latency_cache[settings].get(c.name),
                    others_load_per_cpu=load_cache.get(settings),
                )
                for c in allowed
                if c.name in loading
            ]
            figures += _startup_figures(allowed, loading, settings, hwclass, valid, host)
            emulation = None
            if config.emulate and loading:
                emulated, emulation = emulate_class(
                    hwclass,
                    loading,
                    settings,
                    valid,
                    work,
                    warmup_runs=config.warmup_runs,
                    runs=config.latency_runs,
                    sustained_s=config.sustained_s,
                )
                figures += emulated
            note = plan.note()
            if settings.capped_from:
                note += (
                    f"; intra-op threads capped at {settings.intra_op} (class asks {settings.capped_from})"
                )
            selection = select_candidate(measured, figures, policies[hwclass.name])
            result.classes.append(
                ClassResult(
                    hwclass,
                    note,
                    settings,
                    measured,
                    selection,
                    figures=figures,
                    policy=policies[hwclass.name],
                    emulation=emulation,
                )
            )
        with package.staged_output(out) as staging:
            for class_result in result.classes:
                if not class_result.selection.failed:
                    class_result.manifest = _write_artifact(
                        staging / class_result.hwclass.name,
                        class_result,
                        result,
                        valid,
                        calib,
                        config,
                        judged,
                    )
            report.write_reports(staging, result, config)
            if config.keep_candidates:
                candidate_store.write_candidates(
                    staging,
                    result,
                    valid,
                    reference[judged],
                    info.signature.outputs[judged].name,
                    config,
                    model_name=config.model_name or model_name_from(result.model.path),
                )
    return result


def _startup_figures(
    allowed: list[Candidate],
    loading: dict[str, Path],
    settings: SessionSettings,
    hwclass: HardwareClass,
    valid: Dataset,
    host: str,
) -> list[Figures]:
    """Load time and first inference of each loadable candidate, the file read at the class's declared
    storage speed (an emulated class limit) or, without one, at the host's (``storage``)."""
    read_mb_s = hwclass.budgets.storage_read_mb_s
    where: Where = "emulated" if read_mb_s else "host"
    out = []
    for c in allowed:
        if c.name not in loading:
            continue
        startup = measure_startup(c.path, settings, valid.sample(0), read_mb_s=read_mb_s)
        out.append(
            Figures(
                c.name,
                where,
                f"{host}; {startup.method}",
                settings.providers[0],
                load_time_ms=startup.load_time_ms,
                first_inference_ms=startup.first_inference_ms,
                notes=(f"read {startup.read_ms:.1f} ms + session {startup.session_ms:.1f} ms",),
            )
        )
    return out


def _robustness(
    candidates: list[Candidate],
    valid: Dataset,
    clean_fp32: np.ndarray,
    judged: int,
    config: BuildConfig,
    batch: bool,
) -> RobustnessReport:
    """Every candidate under every perturbation of the model's input kind (``robustness``)."""
    sessions = {c.name: open_session(c.path, REFERENCE_SETTINGS) for c in candidates}

    def run(name: str, arrays: Any) -> np.ndarray:
        perturbed = Dataset(valid.source, dict(arrays), valid.labels, valid.sha256)
        return run_dataset(sessions[name], perturbed, batch=batch)[judged]

    return evaluate_robustness(
        names=[c.name for c in candidates],
        inputs=valid.arrays,
        labels=valid.labels,
        task=config.task,
        kind=config.input_kind,
        run=run,
        clean_fp32=clean_fp32,
        strengths=dict(config.perturbations),
        seed=config.robustness_seed,
        policy=RobustnessPolicy(
            min_agreement=config.robust_min_agreement, min_metric_ratio=config.robust_min_metric_ratio
        ),
    )


def _write_artifact(
    root: Path,
    class_result: ClassResult,
    result: BuildResult,
    valid: Dataset,
    calib: Dataset,
    config: BuildConfig,
    judged: int,
) -> dict[str, Any]:
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
