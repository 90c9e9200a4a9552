"""The health check: golden vectors within tolerance, NaN/Inf and shapes, latency ceiling, hangs."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from crash.artifacts import classifier, golden_inputs, nan_model, run_model, slow_model

from edgefleet.agent.install.health import (
    HealthCheckFailedError,
    HealthPolicy,
    compare_outputs,
    load_golden,
    run_health_check,
)
from edgefleet.agent.runtime import InferenceFailedError, LoadOptions
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.protocol.wire.manifest import HealthCheck, Signature

SIG = Signature.read(
    {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 16]}],
        "outputs": [{"name": "probs", "dtype": "float32", "shape": [None, 4]}],
    }
)
ONE = np.ones((1, 4), dtype=np.float32)


@pytest.mark.parametrize(
    ("got", "code"),
    [
        ({"probs": ONE + 1e-6}, None),
        ({"probs": ONE + 0.1}, "health_output_mismatch"),
        ({"probs": np.full((1, 4), np.nan, dtype=np.float32)}, "health_output_not_finite"),
        ({"probs": np.array([[1, 1, np.inf, 1]], dtype=np.float32)}, "health_output_not_finite"),
        ({"probs": np.ones((4, 1), dtype=np.float32)}, "health_output_shape"),
        ({"other": ONE}, "health_output_missing"),
    ],
)
def test_compare_outputs(got, code):
    if code is None:
        compare_outputs({"probs": ONE}, got, atol=1e-4, rtol=1e-4)
        return
    with pytest.raises(HealthCheckFailedError) as err:
        compare_outputs({"probs": ONE}, got, atol=1e-4, rtol=1e-4)
    assert err.value.code == code


def npz(tmp_path, **arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = tmp_path / "golden.npz"
    path.write_bytes(buffer.getvalue())
    return path


def test_load_golden_reads_prefixed_arrays(tmp_path):
    inputs, outputs = load_golden(
        npz(tmp_path, **{"input:x": np.zeros((2, 16)), "output:probs": np.ones((2, 4))})
    )
    assert set(inputs) == {"x"}
    assert outputs["probs"].shape == (2, 4)


@pytest.mark.parametrize(
    "arrays",
    [
        {"x": np.zeros((2, 16))},  # no prefixes
        {"input:x": np.zeros((2, 16))},  # no outputs
        {"input:x": np.zeros((2, 16)), "output:probs": np.ones((3, 4))},  # sample counts differ
    ],
)
def test_load_golden_refuses_incomplete_files(tmp_path, arrays):
    with pytest.raises(HealthCheckFailedError) as err:
        load_golden(npz(tmp_path, **arrays))
    assert err.value.code == "health_golden_unreadable"


def test_load_golden_refuses_garbage_and_oversize(tmp_path):
    path = tmp_path / "golden.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(HealthCheckFailedError):
        load_golden(path)
    good = npz(tmp_path, **{"input:x": np.zeros((2, 16)), "output:probs": np.ones((2, 4))})
    with pytest.raises(HealthCheckFailedError) as err:
        load_golden(good, max_bytes=10)
    assert err.value.code == "health_golden_unreadable"


def loaded(tmp_path, model_bytes):
    path = tmp_path / "model.onnx"
    path.write_bytes(model_bytes)
    return OnnxRuntimeAdapter().load(path, SIG, LoadOptions())


def golden_for(tmp_path, model_bytes, expected=None):
    x = golden_inputs(4)
    y = run_model(model_bytes, x) if expected is None else expected
    return npz(tmp_path, **{"input:x": x, "output:probs": y})


def check(ceiling_ms=500.0):
    return HealthCheck(
        golden_file="golden.npz", atol=1e-4, rtol=1e-4, latency_ceiling_ms=ceiling_ms, warmup_runs=2
    )


def test_healthy_model_passes_and_reports_latency(tmp_path):
    report = run_health_check(loaded(tmp_path, classifier()), golden_for(tmp_path, classifier()), check())
    assert report.samples == 4
    assert 0 < report.latency_ms <= 500.0


def test_model_with_other_weights_fails_the_golden_comparison(tmp_path):
    with pytest.raises(HealthCheckFailedError) as err:
        run_health_check(loaded(tmp_path, classifier(1)), golden_for(tmp_path, classifier(2)), check())
    assert err.value.code == "health_output_mismatch"


def test_model_that_outputs_nan_fails(tmp_path):
    golden = golden_for(tmp_path, classifier(), expected=run_model(classifier(), golden_inputs(4)))
    with pytest.raises(HealthCheckFailedError) as err:
        run_health_check(loaded(tmp_path, nan_model()), golden, check())
    assert err.value.code == "health_output_not_finite"


def test_model_over_the_latency_ceiling_fails(tmp_path):
    slow = slow_model()
    with pytest.raises(HealthCheckFailedError) as err:
        run_health_check(loaded(tmp_path, slow), golden_for(tmp_path, slow), check(ceiling_ms=0.5))
    assert err.value.code == "health_latency_over_ceiling"
    assert "ms" in err.value.details["got"]


def test_latency_is_measured_with_the_injected_clock(tmp_path):
    ticks = iter(range(0, 10_000, 1))  # each predict spans one "second" on this clock

    def clock() -> float:
        return float(next(ticks))

    with pytest.raises(HealthCheckFailedError) as err:
        run_health_check(
            loaded(tmp_path, classifier()),
            golden_for(tmp_path, classifier()),
            check(ceiling_ms=999.0),
            clock=clock,
        )
    assert err.value.details["got"].startswith("1000.000 ms")


class HangingModel:
    """A fault: predict blocks until cancelled (a runtime that hangs on this input)."""

    providers = ("CPUExecutionProvider",)

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def predict(self, inputs):
        self.cancelled.wait(30)
        raise InferenceFailedError("cancelled", code="inference_cancelled")

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        self.cancel()


def test_hanging_check_times_out_and_cancels_the_run(tmp_path):
    model = HangingModel()
    with pytest.raises(HealthCheckFailedError) as err:
        run_health_check(model, golden_for(tmp_path, classifier()), check(), HealthPolicy(timeout_s=0.2))
    assert err.value.code == "health_check_timeout"
    assert model.cancelled.is_set()


def test_real_slow_run_is_cut_by_the_deadline(tmp_path):
    slow = slow_model(chain=3000)
    golden = npz(tmp_path, **{"input:x": golden_inputs(2), "output:probs": np.zeros((2, 4), np.float32)})
    with pytest.raises(HealthCheckFailedError) as err:
        run_health_check(loaded(tmp_path, slow), golden, check(), HealthPolicy(timeout_s=0.2))
    assert err.value.code == "health_check_timeout"
