"""A LiteRT class from a ``.tflite`` source: MediaPipe's BlazeFace short-range face detector, shipped in the
mediapipe wheel. Validated, measured and packaged by the build; served by the agent's LiteRT adapter and the
inference service (golden vectors reproduced); refused cleanly where it does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from tests.wheel_models import face_detector_tflite

from edgefleet.agent.runtime.base import LoadOptions, ModelLoadError
from edgefleet.agent.runtime.litert import LiteRtAdapter
from edgefleet.agent.serve import InferenceService, StaticSource, read_artifact_dir
from edgefleet.optimize import BuildConfig
from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.litert_build import build_litert, tflite_precision
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.manifest import ArtifactManifest

CLASSES = """
schema_version = 1
[class.arm-litert]
cpu_arch = "aarch64"
precisions = ["fp32", "fp16", "int8"]
threads = { intra_op = 2 }
budgets = { ram_mb = 512, storage_mb = 512, max_model_mb = 5 }
performance = { latency_p95_ms = 500.0 }
[class.arm-litert.runtime]
name = "litert"
min_version = "1.0"
[class.int8-only]
cpu_arch = "aarch64"
precisions = ["int8"]
budgets = { ram_mb = 512, storage_mb = 512, max_model_mb = 5 }
performance = { latency_p95_ms = 500.0 }
[class.int8-only.runtime]
name = "litert"
"""


def _faces(count: int, offset: int) -> np.ndarray:
    """Real pictures of a sort: the bundled handwritten digits, upscaled to 128x128 RGB in [-1, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits().images[offset : offset + count].astype(np.float32) / 8.0 - 1.0
    big = np.kron(d, np.ones((16, 16), np.float32))
    return np.repeat(big[:, :, :, None], 3, axis=3)


@pytest.fixture(scope="module")
def tflite() -> Path:
    path = face_detector_tflite()
    if path is None:
        pytest.skip("pip could not fetch mediapipe 0.10.14")
    return path


def test_tflite_source_is_validated_measured_packaged_and_served(tmp_path: Path, tflite: Path) -> None:
    np.savez(tmp_path / "calib.npz", input=_faces(8, 0))
    np.savez(tmp_path / "valid.npz", input=_faces(16, 100))
    config = BuildConfig.test_size(
        model_name="face-detector", task="embedding", latency_runs=20, golden_samples=2
    )
    result = build_litert(
        tflite,
        parse_classes_toml(CLASSES),
        tmp_path / "calib.npz",
        tmp_path / "valid.npz",
        tmp_path / "o",
        config,
    )
    assert result.precision == "fp16"  # MediaPipe ships f16 weights, dequantized at load
    assert sorted(result.built) == ["arm-litert"]
    assert "model precision fp16 not among the class's ['int8']" in result.failed["int8-only"]
    root = tmp_path / "o" / "arm-litert"
    manifest = ArtifactManifest.parse(json.loads((root / "manifest.json").read_text()))
    assert (manifest.runtime.name, manifest.entrypoint, manifest.precision) == (
        "litert",
        "model.tflite",
        "fp16",
    )
    assert manifest.signature.inputs[0].shape == [1, 128, 128, 3]
    assert [o.name for o in manifest.signature.outputs] == ["regressors", "classificators"]
    assert manifest.metrics.latency_p50_ms is not None

    # The agent's adapter loads it against the manifest and reproduces the golden outputs.
    golden = np.load(root / manifest.health_check.golden_file)
    model = LiteRtAdapter().load(root / "model.tflite", manifest.signature, LoadOptions(warmup_runs=1))
    assert model.providers == ("LiteRT:CPU",)
    got = model.predict({"input": golden["input:input"][:1]})
    np.testing.assert_allclose(
        got["classificators"], golden["output:classificators"][:1], atol=manifest.health_check.atol, rtol=1e-3
    )
    # ... and the inference service serves it on its preferred rung (LiteRT picked from the manifest).
    service = InferenceService(StaticSource(read_artifact_dir(root)))
    answer = service.predict({"input": golden["input:input"][1:2]})
    assert answer.mode == "preferred"
    assert answer.outputs["regressors"].shape == (1, 896, 16)
    service.close()


def test_a_file_litert_cannot_load_is_refused(tmp_path: Path, tflite: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(tflite.read_bytes()[:1000])
    with pytest.raises(BuildInputError) as info:
        build_litert(bad, parse_classes_toml(CLASSES), bad, bad, tmp_path / "o", BuildConfig.test_size())
    assert info.value.code == "model_load_failed"
    assert not (tmp_path / "o").exists()
    with pytest.raises(ModelLoadError):  # the agent's adapter refuses it too
        LiteRtAdapter().load(bad, _signature(tflite), LoadOptions())


def _signature(tflite: Path):
    from ai_edge_litert.interpreter import Interpreter

    from edgefleet.agent.runtime.litert import tensor_spec
    from edgefleet.protocol.wire.manifest import Signature

    it = Interpreter(model_path=str(tflite))
    return Signature(
        inputs=[tensor_spec(d) for d in it.get_input_details()],
        outputs=[tensor_spec(d) for d in it.get_output_details()],
    )


def test_precision_is_read_from_the_file() -> None:
    q = {"dtype": np.int8, "quantization_parameters": {"scales": np.array([0.1])}}
    assert tflite_precision([{"dtype": np.float32}, q]) == "int8"
    assert tflite_precision([{"dtype": np.float32}, {"dtype": np.float16}]) == "fp16"
    assert tflite_precision([{"dtype": np.float32}, {"dtype": np.int32}]) == "fp32"  # int32 indices: not int8
