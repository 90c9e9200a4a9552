from __future__ import annotations

import pytest

from edgefleet.protocol import HardwareClass
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.runtimes import RUNTIME_SUPPORT, check_servable


def _cls(runtime: str, providers: list[str], precisions: list[str]) -> HardwareClass:
    return HardwareClass.parse(
        {
            "schema_version": 1,
            "name": "c",
            "cpu_arch": "x86_64",
            "runtime": {"name": runtime, "execution_providers": providers},
            "precisions": precisions,
            "budgets": {"ram_mb": 512, "storage_mb": 512, "max_model_mb": 10},
            "performance": {"latency_p95_ms": 10},
        }
    )


def test_each_servable_runtime_accepts_its_providers_and_precisions() -> None:
    for name, support in RUNTIME_SUPPORT.items():
        check_servable(_cls(name, list(support.execution_providers), list(support.precisions)))


def test_precision_the_runtime_cannot_run_is_refused(monkeypatch) -> None:
    support = RUNTIME_SUPPORT["openvino"]
    monkeypatch.setitem(
        RUNTIME_SUPPORT, "openvino", type(support)(support.execution_providers, ("fp32", "int8"), "openvino")
    )
    with pytest.raises(InvalidDocumentError) as info:
        check_servable(_cls("openvino", ["CPUExecutionProvider"], ["fp32", "fp16"]))
    assert info.value.code == "precision_unsupported"
    assert info.value.details["expected"] == ["fp32", "int8"]


def test_runtime_without_adapter_is_refused(monkeypatch) -> None:
    monkeypatch.delitem(RUNTIME_SUPPORT, "litert")
    with pytest.raises(InvalidDocumentError) as info:
        check_servable(_cls("litert", ["CPUExecutionProvider"], ["fp32"]))
    assert info.value.code == "runtime_unsupported"
    assert info.value.details["got"] == "litert"
