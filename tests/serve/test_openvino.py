"""The OpenVINO native adapter on the same real ONNX models (skipped where openvino is not installed)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgefleet.agent.runtime.base import LoadOptions, ModelLoadError, SignatureMismatchError
from edgefleet.agent.serve import InferenceService, StaticSource
from edgefleet.protocol.wire.manifest import Signature

from .conftest import IN_DIM, classifier, write_artifact, x

pytest.importorskip("openvino")

from edgefleet.agent.runtime.openvino_native import OpenVinoAdapter, compile_config, select_device


def sig(in_dim: int = IN_DIM) -> Signature:
    return Signature.read(
        {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [None, in_dim]}],
            "outputs": [{"name": "probs", "dtype": "float32", "shape": [None, 4]}],
        }
    )


@pytest.mark.parametrize(
    ("providers", "available", "device", "skipped"),
    [
        (["CPUExecutionProvider"], ["CPU", "GPU"], "CPU", []),
        (["OpenVINOExecutionProvider", "CPUExecutionProvider"], ["CPU", "GPU.0"], "GPU", []),
        (["OpenVINOExecutionProvider"], ["CPU", "NPU"], "NPU", []),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPU"], "CPU", ["GPU", "NPU"]),
    ],
)
def test_device_follows_the_class_and_skips_absent_accelerators(providers, available, device, skipped):
    assert select_device(providers, available) == (device, skipped)


@pytest.mark.parametrize(("device", "precision"), [("CPU", "f32"), ("GPU.1", "f32"), ("NPU", None)])
def test_cpu_and_gpu_are_held_to_f32_execution(device, precision):
    config = compile_config(device, LoadOptions(intra_op_threads=2))
    assert config["INFERENCE_NUM_THREADS"] == 2
    assert config.get("INFERENCE_PRECISION_HINT") == precision


def test_openvino_answers_like_onnxruntime(tmp_path):
    # On a CPU with AMX or AVX512-BF16, OpenVINO's default bf16 execution is ~3 % off; f32 must be kept.
    path = tmp_path / "m.onnx"
    path.write_bytes(classifier(4))
    model = OpenVinoAdapter().load(path, sig(), LoadOptions(warmup_runs=2))
    assert model.providers == ("OpenVINO:CPU",)
    want = ort.InferenceSession(classifier(4), providers=["CPUExecutionProvider"]).run(None, {"x": x(3)})[0]
    np.testing.assert_allclose(model.predict({"x": x(3)})["probs"], want, rtol=1e-4, atol=1e-6)


def test_openvino_refuses_a_signature_mismatch_and_a_corrupt_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(classifier(4))
    with pytest.raises(SignatureMismatchError):
        OpenVinoAdapter().load(path, sig(IN_DIM + 1), LoadOptions())
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(classifier(4)[:50])
    with pytest.raises(ModelLoadError):
        OpenVinoAdapter().load(bad, sig(), LoadOptions())


def test_the_service_serves_through_the_openvino_adapter(tmp_path):
    art = write_artifact(tmp_path / "a", classifier(4))
    service = InferenceService(StaticSource(art), OpenVinoAdapter())
    answer = service.predict({"x": x(1)})
    assert (answer.mode, answer.outputs["probs"].shape) == ("preferred", (1, 4))
