"""The class's accelerator truly absent on this machine (ONNX Runtime's CUDA provider, OpenVINO's GPU plugin):
serving says so (mode ``cpu``, reason ``accelerator_unavailable``), counts the degraded time and keeps
probing the accelerator with backoff. No fake adapter: the runtimes themselves place the model on the CPU."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import InferenceService, LadderPolicy, ServingConfig, StaticSource

from .conftest import GPU, classifier, write_artifact, x

LADDER = LadderPolicy(failures_to_descend=2, probe_initial_s=5.0, probe_max_s=40.0)
OPENVINO_GPU = ("OpenVINOExecutionProvider", "CPUExecutionProvider")


def _openvino_adapter():
    ov = pytest.importorskip("openvino")
    if any(d.startswith(("GPU", "NPU")) for d in ov.Core().available_devices):
        pytest.skip("this machine has an OpenVINO GPU/NPU: the accelerator is not absent")
    from edgefleet.agent.runtime.openvino_native import OpenVinoAdapter

    return OpenVinoAdapter()


def _ort_adapter():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the accelerator is not absent")
    return OnnxRuntimeAdapter()


@pytest.mark.parametrize(
    ("make_adapter", "providers", "cpu_providers"),
    [
        (_ort_adapter, GPU, ["CPUExecutionProvider"]),
        (_openvino_adapter, OPENVINO_GPU, ["OpenVINO:CPU"]),
    ],
    ids=["onnxruntime-cuda", "openvino-gpu"],
)
def test_absent_accelerator_serves_on_cpu_reports_why_counts_and_reprobes(
    tmp_path, metrics, clock, make_adapter, providers, cpu_providers
):
    adapter = make_adapter()
    art = write_artifact(tmp_path / "gpu", classifier(2), providers=providers)
    service = InferenceService(
        StaticSource(art), adapter, ServingConfig(ladder=LADDER), metrics=metrics, clock=clock
    )
    answer = service.predict({"x": x()})
    assert answer.mode == "cpu"  # not "preferred": the model is not where the class wants it
    status = service.status()
    assert status["providers"] == cpu_providers
    assert status["last_error"]["code"] == "accelerator_unavailable"
    assert status["last_error"]["rung"] == "preferred"
    assert ("degraded", "preferred_unavailable") in [e[:2] for e in metrics.events]
    assert status["next_probe_in_s"] == 5.0

    reference = ort.InferenceSession(classifier(2), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(answer.outputs["probs"], reference.run(None, {"x": x()})[0], rtol=1e-5)

    clock.advance(5)
    service.tick()  # the probe tries the accelerator again, finds it still absent, backs off
    assert service.mode == "cpu"
    assert service.status()["next_probe_in_s"] == 10.0
    clock.advance(10)
    service.tick()
    assert service.status()["next_probe_in_s"] == 20.0
    assert metrics.degraded["cpu"] == pytest.approx(15.0)
    assert "preferred" not in metrics.degraded


def test_cpu_class_is_preferred_and_never_degraded(tmp_path, metrics, clock):
    art = write_artifact(tmp_path / "cpu", classifier(2))
    service = InferenceService(StaticSource(art), OnnxRuntimeAdapter(), metrics=metrics, clock=clock)
    assert service.predict({"x": x()}).mode == "preferred"
    clock.advance(30)
    service.tick()
    assert metrics.degraded == {}
    assert service.status()["last_error"] is None
