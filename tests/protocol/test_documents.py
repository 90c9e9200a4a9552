from pathlib import Path

import pytest

from edgefleet.protocol import ArtifactManifest, HardwareClass, InvalidDocumentError, parse_classes_toml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"


def _manifest(**over):
    doc = {
        "schema_version": 1,
        "model": "digits",
        "version": "1.0.0",
        "hardware_class": "medical-cart-cpu",
        "runtime": {
            "name": "onnxruntime",
            "min_version": "1.16",
            "execution_providers": ["CPUExecutionProvider"],
        },
        "entrypoint": "model.onnx",
        "files": [
            {"path": "model.onnx", "sha256": "a" * 64, "length": 10},
            {"path": "golden.npz", "sha256": "b" * 64, "length": 5},
        ],
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 1, 8, 8]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["N", 10]}],
        },
        "optimization": {"source_sha256": "c" * 64},
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50},
        "release_counter": 1,
    }
    doc.update(over)
    return doc


def test_example_classes_parse_with_the_four_required_classes():
    classes = parse_classes_toml(EXAMPLES.read_text())
    names = {c.name for c in classes}
    assert {
        "jetson-vision-standard",
        "intel-lowpower-detector",
        "factory-gateway-gpu",
        "medical-cart-cpu",
    } <= names
    cart = next(c for c in classes if c.name == "medical-cart-cpu")
    assert cart.runtime.execution_providers == ["CPUExecutionProvider"]
    assert cart.budgets.max_model_mb == 50


def test_unknown_fields_survive_a_round_trip_at_every_level():
    doc = _manifest(future_field={"x": 1})
    doc["metrics"] = {"latency_p50_ms": 1.5, "energy_mj": 3.0}
    parsed = ArtifactManifest.parse(doc)
    again = ArtifactManifest.parse(parsed.to_dict())
    assert again.to_dict()["future_field"] == {"x": 1}
    assert again.to_dict()["metrics"]["energy_mj"] == 3.0
    assert again.canonical() == parsed.canonical()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"model": "../x"}, "model"),
        ({"release_counter": -1}, "release_counter"),
        ({"release_counter": "many"}, "release_counter"),
        ({"entrypoint": "missing.onnx"}, ""),
        ({"files": [{"path": "../../etc/passwd", "sha256": "a" * 64, "length": 1}]}, "files.0.path"),
        ({"files": [{"path": "model.onnx", "sha256": "nothex", "length": 1}]}, "files.0.sha256"),
    ],
)
def test_invalid_manifests_say_which_field(override, field):
    with pytest.raises(InvalidDocumentError) as info:
        ArtifactManifest.parse(_manifest(**override))
    assert info.value.code == "invalid_document"
    fields = [e["field"] for e in info.value.details["errors"]]
    assert any(f.startswith(field) for f in fields), fields


def test_newer_schema_version_is_refused_with_its_own_code():
    with pytest.raises(InvalidDocumentError) as info:
        ArtifactManifest.parse(_manifest(schema_version=2))
    assert info.value.code == "unsupported_schema_version"
    assert info.value.details == {"expected": 1, "got": 2}


def test_non_object_document_is_refused():
    with pytest.raises(InvalidDocumentError, match="must be an object"):
        HardwareClass.parse([1, 2])


def test_malformed_toml_has_its_own_code():
    with pytest.raises(InvalidDocumentError) as info:
        parse_classes_toml("[class.x\nbroken")
    assert info.value.code == "malformed_toml"


def test_class_errors_name_the_class():
    with pytest.raises(InvalidDocumentError, match="class 'tiny'"):
        parse_classes_toml('[class.tiny]\ncpu_arch = "x86_64"\n')


def test_unknown_execution_provider_is_refused():
    text = EXAMPLES.read_text().replace(
        '"CPUExecutionProvider"]\n\n[class.intel', '"MagicEP"]\n\n[class.intel'
    )
    with pytest.raises(InvalidDocumentError, match="jetson-vision-standard"):
        parse_classes_toml(text)
