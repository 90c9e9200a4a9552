"""The agent's hardware class and probe structs (``protocol.wire.hardware_class``, ``protocol.wire.probe``)
accept what the pydantic models accept, refuse what they refuse, and read a class the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.agent.wire_conformance import DELETE, assert_mirrors, with_value

from edgefleet.agent.datadir import CorruptStateError, DataDir
from edgefleet.protocol import hardware_class as model_class
from edgefleet.protocol import probe as model_probe
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.wire import hardware_class as wire_class
from edgefleet.protocol.wire import probe as wire_probe
from edgefleet.protocol.wire.base import read_document, read_part, to_plain

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"

MIRRORS = [
    (wire_class.HardwareClass, model_class.HardwareClass, wire_class.CLASS_IGNORED),
    (wire_class.Budgets, model_class.Budgets, ()),
    (wire_class.Performance, model_class.Performance, ()),
    (wire_class.WindowOverride, model_class.WindowOverride, ()),
    (wire_probe.ProbeOrder, model_probe.ProbeOrder, ()),
    (wire_probe.ProbeCandidate, model_probe.ProbeCandidate, ()),
    (wire_probe.ProbeIndex, model_probe.ProbeIndex, ()),
    (wire_probe.ThermalSnapshot, model_probe.ThermalSnapshot, ()),
    (wire_probe.BatchLatency, model_probe.BatchLatency, ()),
    (wire_probe.SustainedFigures, model_probe.SustainedFigures, ()),
    (wire_probe.PerturbedFigures, model_probe.PerturbedFigures, ()),
    (wire_probe.CandidateFigures, model_probe.CandidateFigures, ()),
    (wire_probe.ProbeResults, model_probe.ProbeResults, ()),
]


@pytest.mark.parametrize(("struct", "model", "ignored"), MIRRORS, ids=lambda v: getattr(v, "__name__", ""))
def test_struct_mirrors_model(struct, model, ignored) -> None:
    assert_mirrors(struct, model, ignored=ignored)


SHA = "ab" * 32
CLASS: dict[str, Any] = {
    "schema_version": 1,
    "name": "plant-cpu",
    "cpu_arch": "x86_64",
    "runtime": {
        "name": "onnxruntime",
        "execution_providers": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
    },
    "precisions": ["fp32", "int8"],
    "cpu_features": ["AVX2", "fma", "avx2", "avx512_vnni"],
    "threads": {"intra_op": 2, "inter_op": 1},
    "budgets": {"ram_mb": 512, "storage_mb": 2048, "max_model_mb": 50.5, "cpu_cores": 1.5},
    "performance": {"latency_p95_ms": 40, "max_batch": 8, "sustained_latency_p95_ms": 60.0},
    "power_w": 15,
    "connectivity": "always",
    "update_window": "22:00-05:00 local",
    "window_overrides": [
        {"labels": {"site": "plant-7", "line": "2"}, "update_window": "12:00-12:30"},
        {"labels": {"site": "plant-7"}, "update_window": "sun 01:00-05:00"},
    ],
    "telemetry_bytes_per_s": 4096,
    "download_bytes_per_s": 100_000,
    "a_newer_field": "kept by the model, ignored by the agent",
}
ORDER: dict[str, Any] = {
    "probe_id": "prb_00000000000000aa",
    "bundle": {
        "artifact_id": "probe-1",
        "manifest": {"path": "m/p1/c/manifest.json", "length": 9, "hashes": {"sha256": SHA}},
    },
    "deadline_at": "2026-12-07T08:00:00Z",
    "runs": 20,
    "sustained_s": 30.0,
}
INDEX: dict[str, Any] = {
    "schema_version": 1,
    "model": "tiny",
    "version": "1",
    "hardware_class": "plant-cpu",
    "judged_output": "probs",
    "candidates": [{"name": "fp32", "file": "candidates/fp32.onnx"}, {"name": "int8", "file": "c/int8.onnx"}],
}
FIGURES: dict[str, Any] = {
    "name": "int8",
    "status": "measured",
    "load_ms": 12.5,
    "latency": [
        {"batch": 1, "runs": 50, "p50_ms": 1.0, "p95_ms": 1.5, "p99_ms": 2.0},
        {"batch": 8, "runs": 50, "p50_ms": 4.0, "p95_ms": 5.5, "p99_ms": 6.0},
    ],
    "latency_samples_ms": [1.0, 1.1, 1.2],
    "agreement_metric": "top1",
    "agreement": 0.99,
    "thermal_before": {
        "available": True,
        "max_temp_c": 50.0,
        "temps_c": {"zone0": 50.0},
        "cpu_freq_khz": {"cpu0": 2400000},
    },
    "sustained": {
        "duration_s": 30.0,
        "runs": 900,
        "window_s": 10.0,
        "drift_ratio": 1.1,
        "thermal": "available",
    },
    "robustness": {"noise": {"agreement_metric": "top1", "agreement": 0.97}},
}
RESULTS: dict[str, Any] = {
    "schema_version": 1,
    "probe_id": "prb_00000000000000aa",
    "started_at": "2026-12-06T08:00:00+00:00",
    "finished_at": "2026-12-06T08:05:00+01:00",
    "candidates": [
        FIGURES,
        {"name": "fp16", "status": "failed", "error_code": "runtime_crashed", "error": "x"},
    ],
}


REFUSED = [
    # the update window's syntax (protocol.class_rules.checked_window)
    ("class", CLASS, "update_window", "sometimes"),
    ("class", CLASS, "update_window", "25:00-05:00"),
    ("class", CLASS, "window_overrides.0.update_window", "whenever"),
    ("class", CLASS, "window_overrides.1.update_window", "02:00-04:00 mars"),
    # override labels: a selector is never empty, at most 16 labels, text values
    ("class", CLASS, "window_overrides.0.labels", {}),
    ("class", CLASS, "window_overrides.0.labels", {f"k{i}": "v" for i in range(17)}),
    ("class", CLASS, "window_overrides.0.labels", {"site": 7}),
    ("class", CLASS, "window_overrides.0", {"update_window": "any"}),
    ("class", CLASS, "window_overrides", [CLASS["window_overrides"][1]] * 65),
    # providers (protocol.runtime_names.providers_problem)
    ("class", CLASS, "runtime.execution_providers", ["NoSuchExecutionProvider"]),
    ("class", CLASS, "runtime.execution_providers", ["CPUExecutionProvider", "CPUExecutionProvider"]),
    ("class", CLASS, "runtime.execution_providers", []),
    ("class", CLASS, "runtime.name", "tensorflow"),
    # cpu feature names (protocol.class_rules.checked_cpu_features)
    ("class", CLASS, "cpu_features", ["avx-2"]),
    ("class", CLASS, "cpu_features", [""]),
    ("class", CLASS, "cpu_features", ["x" * 33]),
    ("class", CLASS, "cpu_features", ["avx2 fma"]),
    # plain bounds and enums
    ("class", CLASS, "name", "Plant"),
    ("class", CLASS, "cpu_arch", "mips"),
    ("class", CLASS, "precisions", []),
    ("class", CLASS, "precisions", ["bf16"]),
    ("class", CLASS, "objective", "speed"),
    ("class", CLASS, "threads.intra_op", 0),
    ("class", CLASS, "threads.inter_op", 65),
    ("class", CLASS, "budgets.ram_mb", 0),
    ("class", CLASS, "budgets.max_model_mb", -1.0),
    ("class", CLASS, "budgets.cpu_cores", 2000),
    ("class", CLASS, "budgets", DELETE),
    ("class", CLASS, "performance.max_batch", 0),
    ("class", CLASS, "performance.max_batch", 5000),
    ("class", CLASS, "performance.latency_p95_ms", 0),
    ("class", CLASS, "performance.sustained_latency_p95_ms", 4_000_000),
    ("class", CLASS, "power_w", 0),
    ("class", CLASS, "connectivity", "never"),
    ("class", CLASS, "telemetry_bytes_per_s", 0),
    ("class", CLASS, "download_bytes_per_s", 0),
    ("class", CLASS, "schema_version", 2),
    ("order", ORDER, "probe_id", "prb_1"),
    ("order", ORDER, "probe_id", "prb_00000000000000aa\n"),  # a file name and a URL segment on the device
    ("order", ORDER, "runs", 4),
    ("order", ORDER, "sustained_s", -1.0),
    ("order", ORDER, "time_limit_s", 0),
    ("order", ORDER, "deadline_at", "2026-12-07T08:00:00"),  # no zone
    ("order", ORDER, "bundle.manifest.path", "../etc/passwd"),
    ("order", ORDER, "bundle", DELETE),
    ("index", INDEX, "candidates", []),
    ("index", INDEX, "candidates.0.name", "FP32"),
    ("index", INDEX, "candidates.0.file", ""),
    ("index", INDEX, "judged_output", ""),
    ("index", INDEX, "reference", "Reference"),
    ("index", INDEX, "task", "detection"),
    ("results", RESULTS, "probe_id", "prb_XYZ"),
    ("results", RESULTS, "finished_at", "2026-12-06T08:05:00"),  # no zone
    ("results", RESULTS, "error_code", "x" * 65),
    ("results", RESULTS, "candidates.0.status", "skipped"),
    ("results", RESULTS, "candidates.0.latency.0.batch", 0),
    ("results", RESULTS, "candidates.0.latency_samples_ms", [1.0] * 501),
    ("results", RESULTS, "candidates.0.yielded_s", -0.5),
    ("results", RESULTS, "candidates.0.sustained.window_s", 0),
    ("results", RESULTS, "candidates.0.sustained.thermal", "hot"),
    ("results", RESULTS, "candidates.0.robustness", {f"p{i}": {} for i in range(17)}),
]
PAIRS = {
    "class": (wire_class.HardwareClass, model_class.HardwareClass, "hardware class", True),
    "order": (wire_probe.ProbeOrder, model_probe.ProbeOrder, "probe order", False),
    "index": (wire_probe.ProbeIndex, model_probe.ProbeIndex, "probe index", True),
    "results": (wire_probe.ProbeResults, model_probe.ProbeResults, "probe results", True),
}


def _model_reads(model: Any, doc: dict[str, Any], document: bool) -> Any:
    if document:
        return model.parse(doc)
    try:
        return model.model_validate(doc)
    except ValueError as exc:  # a Part: pydantic's ValidationError, as the agent saw it before
        raise InvalidDocumentError(str(exc)) from exc


def _wire_reads(struct: Any, doc: Any, name: str, document: bool) -> Any:
    return read_document(doc, struct, kind=name) if document else read_part(doc, struct, kind=name)


@pytest.mark.parametrize(
    ("kind", "base", "path", "value"), REFUSED, ids=lambda v: v if isinstance(v, str) else ""
)
def test_both_refuse(kind: str, base: dict[str, Any], path: str, value: Any) -> None:
    struct, model, name, document = PAIRS[kind]
    doc = with_value(base, path, value)
    with pytest.raises(InvalidDocumentError):
        _model_reads(model, doc, document)
    with pytest.raises(InvalidDocumentError) as caught:
        _wire_reads(struct, doc, name, document)
    assert caught.value.code in ("invalid_document", "unsupported_schema_version")


def _agree(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    for key, value in mine.items():
        want = json.loads(json.dumps(theirs[key], default=str))
        got = msgspec.json.decode(msgspec.json.encode(value))
        if isinstance(got, str) and key.endswith("_at"):
            assert datetime.fromisoformat(got) == datetime.fromisoformat(want), key
        else:
            assert got == want, key


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_both_accept_and_agree(kind: str) -> None:
    struct, model, name, document = PAIRS[kind]
    base = {"class": CLASS, "order": ORDER, "index": INDEX, "results": RESULTS}[kind]
    theirs = _model_reads(model, base, document).model_dump(mode="json")
    mine = to_plain(_wire_reads(struct, json.dumps(base).encode(), name, document))
    assert set(theirs) - set(mine) <= {"a_newer_field"}
    _agree(mine, theirs)


def test_the_example_classes_read_the_same() -> None:
    """Each class of ``examples/hardware-classes.toml``: parsed by the model, stored as the server stores
    it, read back by the struct, agrees on every field; and so does each device's update window."""
    classes = model_class.parse_classes_toml(EXAMPLES.read_bytes())
    assert len(classes) >= 4
    for doc in classes:
        stored = doc.to_dict()
        mine = read_document(json.dumps(stored).encode(), wire_class.HardwareClass, kind="hardware class")
        assert to_plain(mine) == json.loads(json.dumps(stored)), doc.name
        assert mine.threads.intra_op == doc.threads.intra_op
        assert mine.performance.max_batch == doc.performance.max_batch
        for labels in ({}, {"site": "plant-7"}, {"site": "plant-7", "line": "2"}):
            assert mine.window_for(labels) == doc.window_for(labels)


def test_cpu_features_and_windows_as_the_model_reads_them() -> None:
    mine = read_document(CLASS, wire_class.HardwareClass, kind="hardware class")
    theirs = model_class.HardwareClass.parse(CLASS)
    assert mine.cpu_features == theirs.cpu_features == ["avx2", "avx512_vnni", "fma"]
    for labels in ({}, {"site": "plant-7"}, {"site": "plant-7", "line": "2"}, {"line": "2"}):
        assert mine.window_for(labels) == theirs.window_for(labels)
    assert mine.window_for({"site": "plant-7", "line": "2"}) == "12:00-12:30"
    assert mine.window_for({"site": "plant-8"}) == "22:00-05:00 local"
    defaults = read_document(
        {k: CLASS[k] for k in ("name", "cpu_arch", "budgets", "performance")},
        wire_class.HardwareClass,
        kind="hardware class",
    )
    assert to_plain(defaults) == model_class.HardwareClass.parse(defaults_doc := to_plain(defaults)).to_dict()
    assert defaults_doc["runtime"]["execution_providers"] == ["CPUExecutionProvider"]
    assert defaults.window_for({"site": "x"}) == "any"


def test_figures_p95_per_batch() -> None:
    figures = read_part(FIGURES, wire_probe.CandidateFigures, kind="candidate figures")
    theirs = model_probe.CandidateFigures.model_validate(FIGURES)
    for batch in (1, 8, 4):
        assert figures.p95_ms(batch) == theirs.p95_ms(batch)


def test_the_data_dir_reads_its_class_with_the_struct(tmp_path: Path) -> None:
    ddir = DataDir(tmp_path / "data")
    assert ddir.read_hardware_class() is None
    ddir.class_path.parent.mkdir(parents=True)
    ddir.class_path.write_text(json.dumps(CLASS))
    hwclass = ddir.read_hardware_class()
    assert isinstance(hwclass, wire_class.HardwareClass)
    assert hwclass.threads.intra_op == 2
    ddir.class_path.write_text(json.dumps(with_value(CLASS, "update_window", "sometimes")))
    with pytest.raises(CorruptStateError):
        ddir.read_hardware_class()


def test_reading_the_class_and_the_probe_documents_loads_no_pydantic(tmp_path: Path) -> None:
    """The agent's side of the class and the probes (and what it uses of ``protocol.runtimes``) never
    imports pydantic or the protocol models."""
    path = tmp_path / "class.json"
    path.write_text(json.dumps(CLASS))
    code = (
        "import json, sys\n"
        "from edgefleet.protocol.wire.base import read_document, read_part\n"
        "from edgefleet.protocol.wire.hardware_class import HardwareClass\n"
        "from edgefleet.protocol.wire.probe import ProbeOrder, ProbeResults\n"
        "from edgefleet.protocol.runtimes import OPENVINO_DTYPES, SERVABLE_RUNTIMES\n"
        "from edgefleet.protocol.runtimes import openvino_compile_config\n"
        "from edgefleet.protocol.probe_names import PROBE_INDEX_FILE\n"
        "import edgefleet.agent.datadir\n"
        f"c = read_document(open({str(path)!r}).read(), HardwareClass, kind='c')\n"
        "assert c.window_for({'site': 'plant-7'}) == 'sun 01:00-05:00'\n"
        f"read_part({ORDER!r}, ProbeOrder, kind='o')\n"
        f"read_document({RESULTS!r}, ProbeResults, kind='r')\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not {m for m in loaded if m.split(".")[0] == "pydantic"}
    assert not loaded & {
        "edgefleet.protocol.hardware_class",
        "edgefleet.protocol.probe",
        "edgefleet.protocol.document",
    }
