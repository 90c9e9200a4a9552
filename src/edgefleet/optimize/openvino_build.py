"""OpenVINO classes (``runtime.name = "openvino"``): candidates in OpenVINO IR, judged with OpenVINO.

From the ONNX source: IR FP32 (``ov.convert_model`` + ``ov.save_model``), IR FP16 (weights compressed to
f16) where the class allows fp16, and INT8 through NNCF post-training quantization (``nncf.quantize`` on the
calibration set) where it allows int8; when the validation set carries labels, also NNCF's accuracy-aware
variant (``nncf.quantize_with_accuracy_control``), which keeps in float the layers that cost the task metric
more than the class's bound. Every candidate's quality is measured with OpenVINO against the same FP32
reference (ONNX Runtime on the source) as the ONNX candidates, its latency with OpenVINO under the class's
threads and the very compile properties the agent serves with (``protocol.runtimes``), and the same
``select_candidate`` picks one. The artifact is ``model.xml`` + ``model.bin`` + golden vectors, which the
agent's OpenVINO adapter loads.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.optimize import package
from edgefleet.optimize.candidates import Candidate
from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.errors import BuildError
from edgefleet.optimize.figures import Figures
from edgefleet.optimize.noise import Latency, latency_from_samples
from edgefleet.optimize.quality import Quality, Task, measure_quality
from edgefleet.optimize.select import ClassPolicy, Measured, Selection, select_candidate
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.manifest import Signature, TensorSpec
from edgefleet.protocol.runtimes import OPENVINO_DTYPES, openvino_compile_config

__all__ = [
    "IR_BIN",
    "IR_XML",
    "OpenVinoClassBuild",
    "build_openvino_class",
    "ir_bytes",
    "ir_signature",
    "make_ir",
    "make_nncf_int8",
    "measure_ir",
    "run_ir",
    "write_ir_files",
]

IR_XML = "model.xml"
IR_BIN = "model.bin"


@dataclass
class OpenVinoClassBuild:
    """One OpenVINO class: its candidates (IR), their numbers, the selection."""

    candidates: list[Candidate]
    qualities: dict[str, Quality]
    measured: list[Measured]
    figures: list[Figures]
    selection: Selection
    failures: dict[str, str]
    note: str


def ir_bytes(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def _ov() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:  # pragma: no cover - the build extra installs it
        raise BuildError(
            "OpenVINO classes need openvino (pip install edgefleet[build])", code="runtime_not_installed"
        ) from exc
    return ov


def make_ir(
    source: Path, out_dir: Path, *, fp16: bool, input_shapes: dict[str, list[int]] | None = None
) -> Candidate:
    """The ONNX source as OpenVINO IR; ``fp16`` compresses the weights to f16 (computed in f32 on CPU).
    ``input_shapes`` fixes the inputs' dynamic dimensions (batch 1, the data's image size): the CPU plugin
    runs a static graph several times faster than a dynamic one (measured here: 3x on a small CNN), and
    the artifact's signature then says exactly what it accepts."""
    ov = _ov()
    name = "ov-fp16" if fp16 else "ov-fp32"
    xml = out_dir / name / IR_XML
    xml.parent.mkdir(parents=True, exist_ok=True)
    notes = ["OpenVINO IR"]
    try:
        model = ov.convert_model(str(source))
        dynamic = {
            port.any_name: input_shapes[port.any_name]
            for port in model.inputs
            if input_shapes and port.any_name in input_shapes and port.get_partial_shape().is_dynamic
        }
        if dynamic:
            model.reshape(dynamic)
            notes.append(f"inputs fixed to {dynamic}")
        ov.save_model(model, str(xml), compress_to_fp16=fp16)
    except Exception as exc:  # conversion raises RuntimeError/OpConversionFailure for unsupported graphs
        raise BuildError(
            f"OpenVINO could not convert the model: {str(exc)[:300]}", code="conversion_failed"
        ) from exc
    return Candidate(
        name,
        "fp16" if fp16 else "fp32",
        xml,
        "fp16" if fp16 else "fp32",
        quantization="fp16" if fp16 else "none",
        notes=tuple(notes),
        size_bytes=ir_bytes(xml),
    )


def _samples(data: Dataset, limit: int) -> list[dict[str, np.ndarray]]:
    return [data.sample(i) for i in range(min(limit, data.count))]


def make_nncf_int8(
    fp32_xml: Path,
    out_dir: Path,
    calib: Dataset,
    *,
    max_samples: int,
    accuracy: tuple[Dataset, Callable[[Any, Dataset, list[int]], float], float] | None = None,
) -> Candidate:
    """NNCF post-training INT8 of the IR. ``accuracy`` = (validation set, metric of a compiled model on some
    of its samples, the largest absolute drop allowed): NNCF's accuracy-aware variant."""
    ov = _ov()
    import nncf

    model = ov.Core().read_model(str(fp32_xml))
    calibration = nncf.Dataset(_samples(calib, max_samples))
    subset = min(max_samples, calib.count)
    name = "ov-int8-nncf"
    notes = [f"NNCF {nncf.__version__} post-training quantization, {subset} calibration samples"]
    try:
        if accuracy is None:
            quantized = nncf.quantize(model, calibration, subset_size=subset)
        else:
            valid, metric, max_drop = accuracy
            name = "ov-int8-nncf-aac"
            # validation items are sample indices (transformed to inputs for inference), so that
            # validation_fn can score any subset NNCF asks about against its labels
            quantized = nncf.quantize_with_accuracy_control(
                model,
                calibration,
                nncf.Dataset(list(range(valid.count)), valid.sample),
                validation_fn=lambda compiled, items: metric(compiled, valid, list(items)),
                max_drop=max_drop,
                drop_type=nncf.DropType.ABSOLUTE,
                subset_size=subset,
            )
            notes.append(f"accuracy-aware: at most {max_drop:.3f} absolute drop of the task metric")
    except Exception as exc:  # NNCF raises its own and RuntimeError from OpenVINO
        raise BuildError(f"NNCF quantization failed: {str(exc)[:300]}", code="quantization_failed") from exc
    xml = out_dir / name / IR_XML
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return Candidate(
        name,
        "int8_static",
        xml,
        "int8",
        quantization="int8_static",
        calibration_method="nncf",
        per_channel=True,
        notes=tuple(notes),
        size_bytes=ir_bytes(xml),
    )


def _compile(xml_or_model: Any, threads: int) -> Any:
    ov = _ov()
    core = ov.Core()
    model = core.read_model(str(xml_or_model)) if isinstance(xml_or_model, Path) else xml_or_model
    return core.compile_model(model, "CPU", openvino_compile_config("CPU", threads))


def _run_compiled(compiled: Any, data: Dataset) -> list[np.ndarray]:
    request = compiled.create_infer_request()
    outputs: list[list[np.ndarray]] = [[] for _ in compiled.outputs]
    for i in range(data.count):
        result = request.infer(data.sample(i))
        for k, port in enumerate(compiled.outputs):
            outputs[k].append(np.array(result[port], copy=True))
    return [np.concatenate(o, axis=0) for o in outputs]


def run_ir(xml: Path, data: Dataset, *, threads: int = 1) -> list[np.ndarray]:
    """Outputs of the IR on every sample (batch 1, in order), as the agent would compute them on the CPU."""
    return _run_compiled(_compile(xml, threads), data)


def measure_ir(
    models: dict[str, Path], data: Dataset, *, threads: int, warmup_runs: int, runs: int, rounds: int = 8
) -> dict[str, Latency]:
    """Batch-1 latency of every IR over the validation samples (cycled) after warm-up, timed interleaved in
    ``rounds`` rounds with a rotating order (as ``measure.measure_latency`` does for ONNX Runtime), so the
    selection compares them pairwise against the noise of a shared host."""
    requests = {name: _compile(xml, threads).create_infer_request() for name, xml in models.items()}
    samples = _samples(data, max(1, min(runs, 64)))
    for request in requests.values():
        for i in range(warmup_runs):
            request.infer(samples[i % len(samples)])
    rounds = max(1, min(rounds, runs))
    per_round = max(1, -(-runs // rounds))
    times: dict[str, list[list[float]]] = {name: [] for name in models}
    order = list(models)
    clock = time.perf_counter
    for index in range(rounds):
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            request, this_round = requests[name], []
            for i in range(per_round):
                feed = samples[(index * per_round + i) % len(samples)]
                start = clock()
                request.infer(feed)
                this_round.append((clock() - start) * 1000.0)
            times[name].append(this_round)
    run_id = uuid.uuid4().hex
    return {
        name: latency_from_samples([t for r in per for t in r], rounds=per, run_id=run_id)
        for name, per in times.items()
    }


def build_openvino_class(
    source: Path,
    work: Path,
    hwclass: HardwareClass,
    policy: ClassPolicy,
    calib: Dataset,
    valid: Dataset,
    reference: np.ndarray,
    *,
    task: Task,
    judged: int,
    max_calibration_samples: int,
    warmup_runs: int,
    latency_runs: int,
) -> OpenVinoClassBuild:
    """Candidates, quality, latency and selection for one OpenVINO class (``reference``: the FP32 ONNX
    Runtime outputs of the judged output on ``valid``)."""
    threads = hwclass.threads.intra_op
    failures: dict[str, str] = {}
    candidates: list[Candidate] = []
    shapes = {name: [1, *array.shape[1:]] for name, array in calib.arrays.items()}
    steps: list[tuple[str, Callable[[], Candidate]]] = [
        ("ov-fp32", lambda: make_ir(source, work, fp16=False, input_shapes=shapes))
    ]
    if "fp16" in hwclass.precisions:
        steps.append(("ov-fp16", lambda: make_ir(source, work, fp16=True, input_shapes=shapes)))
    for name, make in steps:
        try:
            candidates.append(make())
        except BuildError as exc:
            if name == "ov-fp32":
                raise
            failures[name] = exc.message[:300]
    fp32_xml = candidates[0].path
    if "int8" in hwclass.precisions:
        try:
            candidates.append(make_nncf_int8(fp32_xml, work, calib, max_samples=max_calibration_samples))
        except BuildError as exc:
            failures["ov-int8-nncf"] = exc.message[:300]
        if valid.labels is not None and task == "classification":
            labels = valid.labels

            def accuracy(compiled: Any, data: Dataset, indices: list[int]) -> float:
                request = compiled.create_infer_request()
                port = compiled.outputs[judged]
                hits = [
                    int(np.asarray(request.infer(data.sample(i))[port]).reshape(-1).argmax() == labels[i])
                    for i in indices
                ]
                return float(np.mean(hits)) if hits else 0.0

            max_drop = max(0.0, 1.0 - policy.min_metric_ratio)
            try:
                candidates.append(
                    make_nncf_int8(
                        fp32_xml,
                        work,
                        calib,
                        max_samples=max_calibration_samples,
                        accuracy=(valid, accuracy, max_drop),
                    )
                )
            except BuildError as exc:
                failures["ov-int8-nncf-aac"] = exc.message[:300]
    qualities: dict[str, Quality] = {}
    runnable: list[Candidate] = []
    for c in candidates:
        try:
            outputs = run_ir(c.path, valid, threads=threads)
        except Exception as exc:  # a candidate OpenVINO cannot run here is recorded, not fatal
            if c.name == "ov-fp32":
                raise BuildError(
                    f"OpenVINO cannot run the model: {str(exc)[:300]}", code="model_load_failed"
                ) from exc
            failures[c.name] = str(exc)[:300]
            continue
        qualities[c.name] = measure_quality(task, outputs[judged], reference, valid.labels)
        runnable.append(c)
    latency = measure_ir(
        {c.name: c.path for c in runnable}, valid, threads=threads, warmup_runs=warmup_runs, runs=latency_runs
    )
    where = f"build host CPU, OpenVINO {_ov().__version__} CPU plugin, {threads} inference thread(s)"
    # OpenVINO's CPU plugin is the class's own first provider only when the class asks for the CPU first;
    # for a GPU/NPU class these figures are a stand-in and never judge its latency.
    first = hwclass.runtime.execution_providers[0]
    provider = first if first == "CPUExecutionProvider" else "OpenVINO:CPU"
    figures = [Figures(c.name, "host", where, provider, latency=latency[c.name]) for c in runnable]
    measured = [
        Measured(c.name, c.kind, c.precision, c.size_bytes, qualities[c.name], None, description=c.notes)
        for c in runnable
    ]
    measured += [Measured(n, "failed", "fp32", 0, None, None, error=m) for n, m in failures.items()]
    selection = select_candidate(measured, figures, policy, fp32_name="ov-fp32")
    return OpenVinoClassBuild(candidates, qualities, measured, figures, selection, failures, where)


def write_ir_files(root: Path, chosen: Candidate) -> list[str]:
    """Copy the chosen IR into the artifact directory; the relative paths written."""
    package.write_bytes(root / IR_XML, chosen.path.read_bytes())
    package.write_bytes(root / IR_BIN, chosen.path.with_suffix(".bin").read_bytes())
    return [IR_XML, IR_BIN]


def ir_signature(xml: Path) -> Signature:
    """The IR's own inputs and outputs (names, dtypes, static or dynamic dims), for its manifest."""
    model = _ov().Core().read_model(str(xml))

    def spec(port: Any) -> TensorSpec:
        dims = [None if d.is_dynamic else int(d.get_length()) for d in port.get_partial_shape()]
        kind = port.get_element_type().get_type_name()
        return TensorSpec(name=port.any_name, dtype=OPENVINO_DTYPES.get(kind, kind), shape=dims)

    return Signature(inputs=[spec(p) for p in model.inputs], outputs=[spec(p) for p in model.outputs])
