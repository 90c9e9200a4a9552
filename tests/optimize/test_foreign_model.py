"""The pipeline on a model we did not write: SqueezeNet 1.0 as the ONNX model zoo exported it (opset 9,
weights listed as graph inputs, a 4-D softmax output, fixed batch 1), shipped in the ``onnx`` package's test
data. That copy is "light": each weight is a ``ConstantOfShape``; we give the foreign graph seeded He-init
weights (nothing else changes) so that its outputs depend on its inputs, and feed it real images: the bundled
handwritten digits, upscaled to 224x224 RGB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

from edgefleet.optimize import BuildConfig, run_build
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.manifest import ArtifactManifest

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"

CLASS_TOML = """
schema_version = 1
[class.cart]
cpu_arch = "x86_64"
cpu_features = ["avx2"]
precisions = ["fp32", "int8"]
threads = { intra_op = 2, inter_op = 1 }
budgets = { ram_mb = 1024, storage_mb = 2048, max_model_mb = 50 }
performance = { latency_p95_ms = 2000.0 }
"""

pytestmark = pytest.mark.skipif(not LIGHT.exists(), reason="this onnx wheel ships no light model zoo copies")


def _materialize_weights(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    rng = np.random.default_rng(7)
    keep = []
    for node in model.graph.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        shape = tuple(int(d) for d in inits[node.input[0]])
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.01
        weight = (rng.standard_normal(shape) * scale).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
        # this IR version lists every initializer as a graph input too, as the zoo did for the others
        model.graph.input.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, shape))
    del model.graph.node[:]
    model.graph.node.extend(keep)
    shapes = {n for n in inits if n.endswith("__SHAPE")}  # only the ConstantOfShape nodes used them
    for field in (model.graph.initializer, model.graph.input):
        kept = [v for v in field if v.name not in shapes]
        del field[:]
        field.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def _images(count: int, offset: int) -> np.ndarray:
    digits = load_digits().images[offset : offset + count].astype(np.float32) / 16.0  # (n, 8, 8), real digits
    big = np.kron(digits, np.ones((28, 28), dtype=np.float32))  # (n, 224, 224)
    return np.repeat(big[:, None, :, :], 3, axis=1)  # (n, 3, 224, 224)


def test_a_foreign_vision_model_is_built_validated_and_packaged(tmp_path: Path) -> None:
    model = tmp_path / "squeezenet.onnx"
    _materialize_weights(LIGHT, model)
    np.savez(tmp_path / "calib.npz", data_0=_images(12, 0))
    np.savez(tmp_path / "valid.npz", data_0=_images(12, 500))
    config = BuildConfig.test_size(
        model_name="squeezenet",
        calibration_methods=("minmax",),
        latency_runs=10,
        warmup_runs=2,
        golden_samples=2,
        mixed=False,
    )
    classes = parse_classes_toml(CLASS_TOML)
    result = run_build(model, classes, tmp_path / "calib.npz", tmp_path / "valid.npz", tmp_path / "o", config)
    assert result.failed_classes == []
    measured = {m.name for m in result.classes[0].measured if m.error is None}
    assert {"fp32", "int8-static-minmax-pc"} <= measured  # INT8 really was made from the foreign graph
    # the zoo's opset 9 and weights-as-inputs were normalized for QDQ, and the record says so
    int8 = next(c for c in result.candidates if c.name == "int8-static-minmax-pc")
    assert any("opset 9 upgraded to 13" in n for n in int8.notes)
    assert any("weights listed as graph inputs" in n for n in int8.notes)
    # The real input is data_0; the 52 weights the zoo listed as graph inputs are not taken for inputs.
    assert [s.name for s in result.model.signature.inputs] == ["data_0"]
    root = tmp_path / "o" / "cart"
    manifest = ArtifactManifest.parse(json.loads((root / "manifest.json").read_text()))
    assert manifest.signature.outputs[0].shape == [1, 1000, 1, 1]
    assert manifest.metrics.latency_p50_ms is not None
    assert manifest.metrics.latency_p50_ms > 0
    golden = np.load(root / manifest.health_check.golden_file)
    assert golden["input:data_0"].shape == (2, 3, 224, 224)
    # Outputs depend on the inputs (the materialized weights did their job): the golden answers differ.
    out = golden["output:softmaxout_1"]
    assert not np.allclose(out[0], out[1])
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["classes"][0]["chosen"] == manifest.optimization.candidate


@pytest.mark.slow
def test_the_foreign_model_runs_under_sustained_load_in_the_class_emulation(tmp_path: Path) -> None:
    """SqueezeNet from the onnx wheel, one second back to back in its fresh process under the class's limits:
    the windows, the drift and the thermal state (or "unavailable") come back; no timing is asserted."""
    from edgefleet.optimize.dataset import load_dataset
    from edgefleet.optimize.emulate import emulate_class
    from edgefleet.optimize.model_info import load_model
    from edgefleet.optimize.session import SessionSettings

    model = tmp_path / "squeezenet.onnx"
    _materialize_weights(LIGHT, model)
    np.savez(tmp_path / "valid.npz", data_0=_images(4, 500))
    _, info = load_model(model)
    data = load_dataset(tmp_path / "valid.npz", info.signature)
    (cls,) = parse_classes_toml(CLASS_TOML)
    settings = SessionSettings(("CPUExecutionProvider",), 2, 1)
    figures, record = emulate_class(
        cls, {"fp32": model}, settings, data, tmp_path, warmup_runs=1, runs=4, sustained_s=1.0
    )
    (fp32,) = figures
    assert fp32.error is None
    assert fp32.where == "emulated"
    assert record["sustained_s"] == 1.0
    run = fp32.sustained
    assert run is not None
    assert run.runs >= 2
    assert run.first_p95_ms is not None
    assert run.last_p95_ms is not None
    assert run.drift_ratio == pytest.approx(run.last_p95_ms / run.first_p95_ms)
    if run.thermal == "unavailable":
        assert run.temp_rise_c is None
        assert run.throttle_events is None
