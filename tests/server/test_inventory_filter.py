"""The inventory summary a report becomes, and the fleet filter judged on it (pure)."""

from __future__ import annotations

import pytest

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.services.inventory import inventory_summary, parse_inventory_filter

REPORT = {
    "host": {
        "os": "linux",
        "os_version": "Ubuntu 22.04",
        "cpu": {"model": "Orin", "arch": "aarch64", "cores": 8},
    },
    "runtimes": {
        "onnxruntime": {
            "version": "1.20.1",
            "execution_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        },
        "litert": {"version": "1.2.0", "execution_providers": ["CPUExecutionProvider"]},
    },
}


def test_summary():
    summary = inventory_summary(REPORT)
    assert summary == {
        "os": "linux",
        "os_version": "Ubuntu 22.04",
        "arch": "aarch64",
        "cpu_model": "Orin",
        "cores": 8,
        "python": "",
        "runtimes": {"litert": "1.2.0", "onnxruntime": "1.20.1"},
        "providers": ["CPUExecutionProvider", "CUDAExecutionProvider"],
    }
    assert inventory_summary({}) is None
    assert inventory_summary({"runtimes": {}}) == {"runtimes": {}, "providers": []}


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ({"os": "linux"}, True),
        ({"os": "windows"}, False),
        ({"arch": "aarch64", "provider": "CUDAExecutionProvider"}, True),
        ({"provider": "OpenVINOExecutionProvider"}, False),
        ({"runtime": "litert"}, True),
        ({"runtime": "litert=1.2.0"}, True),
        ({"runtime": "litert=1.3.0"}, False),
        ({"runtime": "openvino"}, False),
        ({"agent_version": "0.1.0"}, True),
        ({"agent_version": "0.2.0"}, False),
    ],
)
def test_filter(query, matches):
    assert parse_inventory_filter(**query).matches(inventory_summary(REPORT), "0.1.0") is matches


def test_a_device_without_an_inventory_matches_no_inventory_filter():
    assert not parse_inventory_filter(os="linux").matches(None, "0.1.0")
    assert parse_inventory_filter(agent_version="0.1.0").matches(None, "0.1.0")
    assert not parse_inventory_filter()  # no filter at all


@pytest.mark.parametrize(
    "query", [{"runtime": "onnxruntime="}, {"runtime": "=1.0"}, {"os": "a;b"}, {"arch": ""}]
)
def test_bad_filters(query):
    with pytest.raises(InvalidDocumentError) as caught:
        parse_inventory_filter(**query)
    assert caught.value.code == "invalid_inventory_filter"
