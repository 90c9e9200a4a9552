"""The input guard on real ONNX Runtime models: a failing sensor's request is refused with a clear code,
counted as an input fault (never a model error, never a trial failure) and the service keeps serving."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import BadTensorError, InferenceService, ServingConfig, StaticSource
from edgefleet.agent.serve.guard import InputGuard, guard_inputs
from edgefleet.agent.serving_wiring import TrialMetrics
from edgefleet.agent.telemetry import TelemetryRecorder
from edgefleet.protocol.telemetry import TelemetryWindow, error_kind
from edgefleet.protocol.wire.manifest import InputRange, Signature

from .conftest import IN_DIM, RecordingMetrics, classifier, write_artifact, x

SIGNATURE = Signature.read(
    {
        "inputs": [
            {"name": "a", "dtype": "float32", "shape": [None, 3]},
            {"name": "b", "dtype": "int64", "shape": [None, 3]},
        ],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [None, 3]}],
    }
)


def _refused(guard: InputGuard, a: np.ndarray) -> str | None:
    try:
        guard_inputs(guard, {"a": a, "b": np.zeros((1, 3), np.int64)})
    except BadTensorError as exc:
        return exc.code
    return None


def test_guard_refuses_nan_infinity_and_values_outside_the_calibrated_range() -> None:
    plain = InputGuard(SIGNATURE)
    ranged = InputGuard(SIGNATURE, {"a": InputRange(min=-1.0, max=1.0)})
    ok = np.array([[0.5, -0.5, 1.0]], np.float32)
    assert _refused(plain, ok) is None
    assert _refused(ranged, ok) is None
    nan = np.array([[0.1, np.nan, 0.2]], np.float32)
    inf = np.array([[0.1, np.inf, 0.2]], np.float32)
    assert _refused(plain, nan) == _refused(ranged, nan) == "input_not_finite"
    assert _refused(plain, inf) == _refused(ranged, inf) == "input_not_finite"
    big = np.array([[0.1, 7.0, 0.2]], np.float32)
    assert _refused(plain, big) is None  # no recorded range: any finite value
    assert _refused(ranged, big) == "input_out_of_range"
    with pytest.raises(BadTensorError) as err:
        guard_inputs(ranged, {"a": big, "b": np.zeros((1, 3), np.int64)})
    assert err.value.details["expected"] == [-1.0, 1.0]
    assert "1 of 3 values" in err.value.details["got"]
    assert all(error_kind(code) == "input" for code in ("input_not_finite", "tensor_shape_mismatch"))
    assert error_kind("inference_failed") == "model"
    assert error_kind("server_busy") == "capacity"


def test_service_refuses_a_failing_sensor_counts_it_as_input_fault_and_keeps_serving(tmp_path) -> None:
    ranges = {"x": {"min": -5.0, "max": 5.0}}
    artifact = write_artifact(tmp_path / "v1", classifier(1), input_ranges=ranges)
    metrics = RecordingMetrics()
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter(), metrics=metrics)
    bad = x()
    bad[0, 3] = np.nan
    with pytest.raises(BadTensorError) as err:
        service.predict({"x": bad})
    assert err.value.code == "input_not_finite"
    assert err.value.http_status == 422
    with pytest.raises(BadTensorError) as err:
        service.predict({"x": np.full((1, IN_DIM), 9.0, np.float32)})
    assert err.value.code == "input_out_of_range"
    with pytest.raises(BadTensorError) as err:
        service.predict({"x": np.zeros((1, IN_DIM + 1), np.float32)})
    assert err.value.code == "tensor_shape_mismatch"
    assert service.predict({"x": x()}).mode == "preferred"  # nothing about the model changed
    codes = [r[3] for r in metrics.requests]
    assert codes == ["input_not_finite", "input_out_of_range", "tensor_shape_mismatch", None]
    # without the guard the NaN reaches the model (bench/serving.py measures the difference)
    unguarded = InferenceService(
        StaticSource(artifact), OnnxRuntimeAdapter(), ServingConfig(input_guard=False)
    )
    assert np.isnan(unguarded.predict({"x": bad}).outputs["probs"]).all()


class _Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, **record: Any) -> int:
        self.records.append(record)
        return len(self.records)


class _Installer:
    def __init__(self) -> None:
        self.samples: list[bool] = []

    def on_trial(self, slot: str) -> str | None:
        return "digits/1.0.0"

    def record_inference(self, slot: str, *, ok: bool) -> None:
        self.samples.append(ok)


def test_input_faults_are_apart_from_model_errors_in_telemetry_and_trials(tmp_path) -> None:
    artifact = write_artifact(tmp_path / "v1", classifier(1))
    mono = [0.0]
    wall = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    sink = _Sink()
    recorder = TelemetryRecorder(
        sink, boot_id="b1", clock=lambda: mono[0], wall_clock=lambda: wall[0], served_slot="default"
    )
    recorder.set_slot_states(lambda: {"default": ("trial", None), "fallback": ("idle", None)})
    installer = _Installer()
    service = InferenceService(
        StaticSource(artifact), OnnxRuntimeAdapter(), metrics=TrialMetrics(recorder, installer, "default")
    )
    service.predict({"x": x()})
    success_at = wall[0]
    wall[0] += timedelta(seconds=30)
    bad = x()
    bad[0, 0] = np.inf
    for _ in range(5):
        with pytest.raises(BadTensorError):
            service.predict({"x": bad})
    with pytest.raises(BadTensorError):
        service.predict({"x": x().astype(np.float64)})
    recorder.flush()
    window = TelemetryWindow.model_validate(sink.records[-1]["body"])
    (model,) = window.models
    assert model.requests == 1
    assert model.errors_by_code == {}
    assert model.input_faults_by_code == {"input_not_finite": 5, "tensor_dtype_mismatch": 1}
    assert model.last_success_at == success_at
    assert installer.samples == [True]  # the trial saw only the real answer
    slots = {s.slot: s for s in window.slots}
    assert slots["default"].last_success_at == success_at
    assert slots["default"].last_request_at == wall[0]
    assert slots["default"].errors_by_kind == {"input": 6}
    assert slots["default"].requests == 7
    assert (slots["default"].update_status, slots["fallback"].update_status) == ("trial", "idle")
    assert slots["fallback"].last_success_at is None
    # the next window without any success still says when the slot last answered
    mono[0] += 120
    recorder.flush()
    later = TelemetryWindow.model_validate(sink.records[-1]["body"])
    assert {s.slot: s for s in later.slots}["default"].last_success_at == success_at
