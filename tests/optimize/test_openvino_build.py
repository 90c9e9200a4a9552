"""An OpenVINO class gets an OpenVINO build: IR FP32, NNCF INT8 (and the accuracy-aware variant when the
validation set has labels), measured with OpenVINO, packaged as IR that the agent's OpenVINO adapter serves.
On a trained CNN shipped in a PyPI wheel (PaddleOCR's text-direction classifier, rapidocr-onnxruntime)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.wheel_models import ocr_direction_classifier, text_lines

from edgefleet.agent.runtime.base import LoadOptions
from edgefleet.agent.runtime.openvino_native import OpenVinoAdapter
from edgefleet.optimize import BuildConfig, run_build
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.manifest import ArtifactManifest

pytestmark = pytest.mark.slow

CLASSES = """
schema_version = 1
[class.intel-ov]
cpu_arch = "x86_64"
precisions = ["fp32", "int8"]
threads = { intra_op = 1, inter_op = 1 }
budgets = { ram_mb = 1024, storage_mb = 2048, max_model_mb = 50 }
performance = { latency_p95_ms = 500.0 }
[class.intel-ov.runtime]
name = "openvino"
min_version = "2024.0"
execution_providers = ["CPUExecutionProvider"]
[class.cart]
cpu_arch = "x86_64"
precisions = ["fp32"]
budgets = { ram_mb = 1024, storage_mb = 2048, max_model_mb = 50 }
performance = { latency_p95_ms = 500.0 }
"""


def test_openvino_class_is_built_as_ir_with_nncf_int8_and_served_by_the_adapter(tmp_path: Path) -> None:
    source = ocr_direction_classifier()
    if source is None:
        pytest.skip("pip could not fetch rapidocr-onnxruntime")
    x, y = text_lines(32, 0)
    np.savez(tmp_path / "calib.npz", x=x, labels=y)
    vx, vy = text_lines(60, 1)
    np.savez(tmp_path / "valid.npz", x=vx, labels=vy)
    config = BuildConfig.test_size(
        model_name="ocr-direction",
        calibration_methods=("minmax",),
        mixed=False,
        latency_runs=10,
        warmup_runs=2,
        golden_samples=2,
    )
    result = run_build(
        source,
        parse_classes_toml(CLASSES),
        tmp_path / "calib.npz",
        tmp_path / "valid.npz",
        tmp_path / "o",
        config,
    )
    assert result.failed_classes == []
    ov_class = next(c for c in result.classes if c.hwclass.name == "intel-ov")
    measured = {m.name: m for m in ov_class.measured}
    # IR FP32, NNCF INT8 and NNCF's accuracy-aware INT8 (labels given), each measured with OpenVINO
    assert {"ov-fp32", "ov-int8-nncf", "ov-int8-nncf-aac"} <= {
        n for n, m in measured.items() if m.error is None
    }
    timed = {f.candidate for f in ov_class.figures if f.latency is not None}
    assert timed == {n for n, m in measured.items() if m.error is None}
    assert all(
        f.latency.run_id == ov_class.figures[0].latency.run_id for f in ov_class.figures
    )  # interleaved
    int8 = measured["ov-int8-nncf"]
    assert int8.precision == "int8"
    assert int8.size_bytes < measured["ov-fp32"].size_bytes  # really quantized weights
    assert int8.quality is not None
    assert int8.quality.task_metric == "accuracy"
    # the ONNX class of the same build still gets ONNX Runtime candidates
    cart = next(c for c in result.classes if c.hwclass.name == "cart")
    assert cart.selection.chosen == "fp32"

    root = tmp_path / "o" / "intel-ov"
    manifest = ArtifactManifest.parse(json.loads((root / "manifest.json").read_text()))
    assert manifest.runtime.name == "openvino"
    assert manifest.entrypoint == "model.xml"
    assert {f.path for f in manifest.files} == {"model.xml", "model.bin", "golden.npz"}
    assert manifest.optimization.candidate.startswith("ov-")
    assert manifest.signature.inputs[0].shape == [1, 3, 48, 192]  # fixed from the data: a static graph

    # The agent's adapter loads the IR against the manifest's signature and reproduces the golden outputs.
    model = OpenVinoAdapter().load(root / manifest.entrypoint, manifest.signature, LoadOptions())
    golden = np.load(root / manifest.health_check.golden_file)
    out_name = manifest.signature.outputs[0].name
    for i in range(2):
        got = model.predict({"x": golden["input:x"][i : i + 1]})[out_name]
        np.testing.assert_allclose(
            got[0],
            golden[f"output:{out_name}"][i],
            atol=manifest.health_check.atol,
            rtol=manifest.health_check.rtol,
        )
