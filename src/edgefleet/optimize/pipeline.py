"""``edgefleet build``: one trained model in, one measured and proven artifact per hardware class out.

Order: check every input (nothing is written before that) -> FP32 reference outputs on the validation set
-> candidates (once, shared by all classes) -> quality of each against the reference -> accuracy-aware
mixed precision if no full INT8 keeps the bound -> per class: compatibility, latency and memory with the
class's providers and threads -> selection -> artifacts + report, staged and renamed onto ``--out``.

The candidates are made in ``candidate_set``, each class's artifact written by ``class_artifact``; the
results' shapes live in ``results``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.optimize import candidate_store, package, report
from edgefleet.optimize.candidate_set import make_candidates
from edgefleet.optimize.candidates import Candidate, describe
from edgefleet.optimize.class_artifact import write_class_artifact
from edgefleet.optimize.config import BuildConfig, class_policy, model_name_from
from edgefleet.optimize.cpu_features import CpuInfo, detect_cpu
from edgefleet.optimize.dataset import Dataset, load_dataset
from edgefleet.optimize.emulate import emulate_class
from edgefleet.optimize.errors import BuildError, BuildInputError
from edgefleet.optimize.figures import Figures, Where
from edgefleet.optimize.measure import check_compatibility, measure_latency, others_load_per_cpu
from edgefleet.optimize.mixed import search_mixed_precision
from edgefleet.optimize.model_info import ModelInfo, load_model
from edgefleet.optimize.openvino_build import build_openvino_class
from edgefleet.optimize.progress import progress_bar
from edgefleet.optimize.quality import Quality, check_labels, measure_quality, within_bound
from edgefleet.optimize.results import BuildResult, ClassResult
from edgefleet.optimize.robustness import RobustnessPolicy, RobustnessReport, evaluate_robustness
from edgefleet.optimize.select import Measured, select_candidate
from edgefleet.optimize.session import (
    REFERENCE_SETTINGS,
    SessionSettings,
    open_session,
    plan_providers,
    run_dataset,
    settings_for,
)
from edgefleet.optimize.storage import measure_startup
from edgefleet.protocol.hardware_class import HardwareClass

__all__ = ["BuildResult", "ClassResult", "run_build", "select_classes"]


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
        candidates, result.failures, pre, reduce_range = make_candidates(
            model_path, work, info, chosen_classes, calib, config
        )
        with progress_bar(config, len(candidates), "quality") as bar:
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
            with progress_bar(config, len(allowed) + 1, f"measure {hwclass.name}") as bar:
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
                    class_result.manifest = write_class_artifact(
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
