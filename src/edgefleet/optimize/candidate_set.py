"""The build's candidates, made once and shared by every class: FP32, FP16, INT8 (static per calibration
method and granularity, dynamic) and students, as the selected classes' precisions ask. A candidate that
cannot be made is recorded as a failure with its reason; bad input still stops the build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgefleet.optimize.candidates import Candidate, make_fp16, make_fp32, make_student
from edgefleet.optimize.config import BuildConfig
from edgefleet.optimize.cpu_features import build_reduce_range
from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.errors import BuildError, BuildInputError
from edgefleet.optimize.model_info import ModelInfo
from edgefleet.optimize.progress import progress_bar
from edgefleet.optimize.quantize import make_int8_dynamic, make_int8_static, preprocess
from edgefleet.optimize.session import REFERENCE_SETTINGS
from edgefleet.protocol.hardware_class import HardwareClass

__all__ = ["make_candidates"]


def make_candidates(
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
    with progress_bar(config, len(steps), "candidates") as bar:
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
