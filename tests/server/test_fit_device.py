from __future__ import annotations

import pytest

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import RuntimeSpec
from edgefleet.server.services.fit import check_device_runs

GPU = RuntimeSpec(
    name="onnxruntime",
    min_version="1.18",
    execution_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
)


@pytest.mark.parametrize(
    ("runtimes", "code"),
    [
        (None, None),  # never reported: not judged
        ({"onnxruntime": {"version": "1.18.1", "execution_providers": ["CPUExecutionProvider"]}}, None),
        ({"onnxruntime": {"version": "1.20", "execution_providers": ["CUDAExecutionProvider"]}}, None),
        ({}, "device_lacks_runtime"),
        (
            {"openvino": {"version": "2025.1", "execution_providers": ["CPUExecutionProvider"]}},
            "device_lacks_runtime",
        ),
        (
            {"onnxruntime": {"version": "1.17.3", "execution_providers": ["CPUExecutionProvider"]}},
            "device_runtime_too_old",
        ),
        (
            {"onnxruntime": {"version": "1.18.0", "execution_providers": ["TensorrtExecutionProvider"]}},
            "device_lacks_provider",
        ),
    ],
)
def test_device_inventory_against_the_artifacts_runtime(runtimes, code) -> None:
    if code is None:
        check_device_runs(GPU, runtimes)
        return
    with pytest.raises(InvalidDocumentError) as info:
        check_device_runs(GPU, runtimes)
    assert info.value.code == code
