from __future__ import annotations

import copy
from typing import Any

import pytest

from edgefleet.protocol import ArtifactManifest, HardwareClass
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.services.fit import BYTES_PER_MB, check_fits, version_tuple

CLASS = {
    "name": "cart",
    "cpu_arch": "x86_64",
    "precisions": ["fp32", "int8"],
    "runtime": {
        "name": "onnxruntime",
        "min_version": "1.16",
        "execution_providers": ["CPUExecutionProvider"],
    },
    "budgets": {"ram_mb": 1024, "storage_mb": 2048, "max_model_mb": 1},
    "performance": {"latency_p95_ms": 50},
}
SHA = "a" * 64
MANIFEST = {
    "model": "m",
    "version": "1",
    "hardware_class": "cart",
    "runtime": {
        "name": "onnxruntime",
        "min_version": "1.16",
        "execution_providers": ["CPUExecutionProvider"],
    },
    "precision": "int8",
    "entrypoint": "model.onnx",
    "files": [
        {"path": "model.onnx", "sha256": SHA, "length": BYTES_PER_MB - 10},
        {"path": "g.npz", "sha256": SHA, "length": 10},
    ],
    "signature": {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [1]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}],
    },
    "optimization": {"source_sha256": SHA},
    "health_check": {"golden_file": "g.npz", "latency_ceiling_ms": 10},
    "release_counter": 1,
}


def _with(path: str, value: Any) -> dict[str, Any]:
    m = copy.deepcopy(MANIFEST)
    target = m
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[int(k)] if k.isdigit() else target[k]
    target[keys[-1]] = value
    return m


@pytest.mark.parametrize(
    ("manifest", "code"),
    [
        (MANIFEST, None),  # exactly at the budget
        (_with("files.1.length", 11), "exceeds_budget"),
        (_with("hardware_class", "other"), "class_mismatch"),
        (_with("runtime.name", "openvino"), "runtime_mismatch"),
        (_with("runtime.min_version", "1.18"), "runtime_mismatch"),
        (_with("runtime.min_version", "1.9"), None),
        (_with("precision", "fp16"), "precision_unsupported"),
        (
            _with("runtime.execution_providers", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
            "provider_unsupported",
        ),
    ],
)
def test_check_fits(manifest: dict[str, Any], code: str | None) -> None:
    hw, m = HardwareClass.parse(CLASS), ArtifactManifest.parse(manifest)
    if code is None:
        check_fits(m, hw)
        return
    with pytest.raises(InvalidDocumentError) as info:
        check_fits(m, hw)
    assert info.value.code == code
    assert "expected" in info.value.details
    assert "got" in info.value.details


@pytest.mark.parametrize(("text", "parsed"), [("1.16", (1, 16)), ("1.18.0rc1", (1, 18, 0)), ("x", ())])
def test_version_tuple(text: str, parsed: tuple[int, ...]) -> None:
    assert version_tuple(text) == parsed
