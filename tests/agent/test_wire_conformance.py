"""The agent's msgspec structs (``edgefleet.protocol.wire``) accept what the pydantic models accept."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import msgspec
import pytest
from tests.agent.wire_conformance import DELETE, assert_mirrors, with_value

from edgefleet.protocol import desired_state as model_desired
from edgefleet.protocol import hardware_class as model_class
from edgefleet.protocol import manifest as model_manifest
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.wire import desired_state as wire_desired
from edgefleet.protocol.wire import hardware_class as wire_class
from edgefleet.protocol.wire import manifest as wire_manifest
from edgefleet.protocol.wire.base import read_document, to_plain

MIRRORS = [
    (wire_class.RuntimeSpec, model_class.RuntimeSpec, ()),
    (wire_class.Threads, model_class.Threads, ()),
    (wire_manifest.ArtifactManifest, model_manifest.ArtifactManifest, ()),
    (wire_desired.DesiredState, model_desired.DesiredState, ()),
    (wire_desired.DeviceReport, model_desired.DeviceReport, ()),
]


@pytest.mark.parametrize(("struct", "model", "ignored"), MIRRORS, ids=lambda v: getattr(v, "__name__", ""))
def test_struct_mirrors_model(struct, model, ignored) -> None:
    assert_mirrors(struct, model, ignored=ignored)


SHA = "ab" * 32
MANIFEST: dict[str, Any] = {
    "schema_version": 1,
    "model": "digits-cnn",
    "version": "1.0.0",
    "hardware_class": "medical-cart-cpu",
    "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
    "precision": "int8",
    "entrypoint": "model.onnx",
    "files": [
        {"path": "model.onnx", "sha256": SHA, "length": 10},
        {"path": "golden.npz", "sha256": SHA, "length": 5},
    ],
    "signature": {
        "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [None, 10]}],
    },
    "optimization": {"source_sha256": SHA, "quantization": "int8_static"},
    "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50},
    "release_counter": 3,
    "input_kind": "image",
    "input_ranges": {"input": {"min": 0.0, "max": 16.0}},
    "a_newer_field": {"kept": "by the model, ignored by the agent"},
}
DESIRED: dict[str, Any] = {
    "schema_version": 1,
    "device_id": "dev-1",
    "hardware_class": "medical-cart-cpu",
    "generation": 4,
    "issued_at": "2026-12-06T08:00:00Z",
    "expires_at": "2026-12-07T08:00:00+01:00",
    "slots": {
        "default": {
            "artifact_id": "a1",
            "manifest": {"path": "m/1/c/manifest.json", "length": 9, "hashes": {"sha256": SHA}},
        }
    },
    "disabled_artifacts": ["a0"],
    "update_window": "22:00-05:00 local",
    "window_exempt_slots": ["default"],
    "config": {"poll_interval_s": 30},
}


REFUSED = [
    ("manifest", MANIFEST, "files.0.path", "../model.onnx"),
    ("manifest", MANIFEST, "files.1.path", "model.onnx"),  # not unique
    ("manifest", MANIFEST, "entrypoint", "missing.onnx"),
    ("manifest", MANIFEST, "health_check.golden_file", "missing.npz"),
    ("manifest", MANIFEST, "input_ranges.input", {"min": 2.0, "max": 1.0}),
    ("manifest", MANIFEST, "runtime.execution_providers", ["NoSuchExecutionProvider"]),
    ("manifest", MANIFEST, "runtime.execution_providers", ["CPUExecutionProvider", "CPUExecutionProvider"]),
    ("manifest", MANIFEST, "runtime.name", "tensorflow"),
    ("manifest", MANIFEST, "model", "Digits"),
    ("manifest", MANIFEST, "files", []),
    ("manifest", MANIFEST, "release_counter", -1),
    ("manifest", MANIFEST, "signature.inputs", []),
    ("manifest", MANIFEST, "health_check.latency_ceiling_ms", 0),
    ("manifest", MANIFEST, "schema_version", 2),
    ("desired", DESIRED, "issued_at", "2026-12-06T08:00:00"),  # no zone
    ("desired", DESIRED, "update_window", "sometimes"),
    ("desired", DESIRED, "update_window", "x" * 65),
    ("desired", DESIRED, "slots.default.manifest.path", "/etc/passwd"),
    ("desired", DESIRED, "slots.default.manifest.hashes.sha256", "AB" * 32),
    ("desired", DESIRED, "slots.default.artifact_id", ""),
    ("desired", DESIRED, "generation", 0),
    ("desired", DESIRED, "device_id", DELETE),
    ("desired", DESIRED, "window_exempt_slots", ["Default"]),
    ("desired", DESIRED, "slots", {"../x": DESIRED["slots"]["default"]}),
    # Python's ``$`` matches before a final newline, the models' does not (``protocol.wire.base.whole``)
    ("desired", DESIRED, "hardware_class", "medical-cart-cpu\n"),
    ("desired", DESIRED, "slots", {"default\n": DESIRED["slots"]["default"]}),
    ("desired", DESIRED, "slots.default.manifest.hashes.sha256", "ab" * 32 + "\n"),
    ("manifest", MANIFEST, "files.0.sha256", "ab" * 32 + "\n"),
]
PAIRS = {
    "manifest": (wire_manifest.ArtifactManifest, model_manifest.ArtifactManifest, "artifact manifest"),
    "desired": (wire_desired.DesiredState, model_desired.DesiredState, "desired state"),
}


@pytest.mark.parametrize(
    ("kind", "base", "path", "value"), REFUSED, ids=lambda v: v if isinstance(v, str) else ""
)
def test_both_refuse(kind: str, base: dict[str, Any], path: str, value: Any) -> None:
    struct, model, name = PAIRS[kind]
    doc = with_value(base, path, value)
    with pytest.raises(InvalidDocumentError):
        model.parse(doc)
    with pytest.raises(InvalidDocumentError) as caught:
        read_document(doc, struct, kind=name)
    assert caught.value.code in ("invalid_document", "unsupported_schema_version")


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_both_accept_and_agree(kind: str) -> None:
    struct, model, name = PAIRS[kind]
    base = MANIFEST if kind == "manifest" else DESIRED
    theirs = model.parse(base).to_dict()
    mine = to_plain(read_document(json.dumps(base).encode(), struct, kind=name))
    for key, value in mine.items():
        assert msgspec.json.decode(msgspec.json.encode(value)) == json.loads(
            json.dumps(theirs[key], default=str)
        ) or (
            key in ("issued_at", "expires_at")
            and datetime.fromisoformat(value) == datetime.fromisoformat(theirs[key])
        ), key


def test_an_error_says_where_what_and_got() -> None:
    doc = with_value(DESIRED, "generation", -3)
    with pytest.raises(InvalidDocumentError) as caught:
        read_document(doc, wire_desired.DesiredState, kind="desired state")
    [error] = caught.value.details["errors"]
    assert error == {"field": "generation", "expected": "int >= 1", "got": -3}
    with pytest.raises(InvalidDocumentError) as caught:
        read_document(b"{not json", wire_desired.DesiredState, kind="desired state")
    assert caught.value.code == "invalid_document"


@pytest.mark.parametrize(
    ("path", "field"),
    [("device_id", "device_id"), ("slots.default.manifest.path", "slots[...].manifest.path")],
)
def test_a_missing_field_is_named_as_the_model_names_it(path: str, field: str) -> None:
    """The field that is missing, not the object that lacks it (pydantic's ``loc``)."""
    with pytest.raises(InvalidDocumentError) as caught:
        read_document(with_value(DESIRED, path, DELETE), wire_desired.DesiredState, kind="desired state")
    [error] = caught.value.details["errors"]
    assert error["field"] == field
    assert caught.value.message.startswith(f"invalid desired state: {field}: ")


def test_an_installed_version_keeps_its_content_address() -> None:
    """``install.slots.version_key`` hashes the canonical manifest: the struct must give the bytes the model
    gave (defaults filled, the build's record included), or versions installed before would read as corrupt.
    """
    from edgefleet.agent.install.slots import version_key
    from edgefleet.protocol.canonical import canonical_json

    doc = {k: v for k, v in MANIFEST.items() if k != "a_newer_field"}
    doc["metrics"] = {"latency_p95_ms": 1.25, "size_bytes": 4096}
    theirs = canonical_json(model_manifest.ArtifactManifest.parse(doc).to_dict())
    mine = read_document(doc, wire_manifest.ArtifactManifest, kind="artifact manifest")
    assert canonical_json(mine.to_dict()) == theirs
    assert version_key(mine) == hashlib.sha256(theirs).hexdigest()
