"""Device figures into the selection's table, and the build/class checks of a probe bundle (pure or on a
hand-made build directory: no model is run)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgefleet.optimize.device_select import device_figures, select_from_probe
from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.probe_bundle import make_bundle
from edgefleet.protocol.hardware_class import parse_classes_toml

CLASS = parse_classes_toml(
    """
[class.cart]
cpu_arch = "x86_64"
precisions = ["fp32", "int8"]
budgets = { ram_mb = 512, storage_mb = 1, max_model_mb = 10 }
performance = { latency_p95_ms = 20.0 }
"""
)[0]


def _device(name: str, p50: float, p95: float, *, rss: int = 100, status: str = "measured"):
    figures = {
        "name": name,
        "status": status,
        "latency": [{"batch": 1, "runs": 3, "p50_ms": p50, "p95_ms": p95, "p99_ms": p95}],
        "latency_samples_ms": [p50 * 0.9, p50, p50 * 1.1],
        "peak_rss_bytes": rss,
        "load_ms": 5.0,
        "agreement_metric": "top1_agreement",
        "agreement": 0.99,
    }
    if status != "measured":
        figures.update(
            error_code="runtime_crashed", error="signal SIGSEGV", latency=[], latency_samples_ms=[]
        )
    return figures


def _probe(status: str = "complete") -> dict:
    return {
        "id": "prb_0123456789abcdef",
        "model": "digits",
        "hardware_class": "cart",
        "status": status,
        "candidates": ["fp32", "int8", "broken"],
        "devices_asked": 2,
        "devices_reported": 2,
        "devices": [
            {
                "device_id": "dev_a",
                "results": {
                    "candidates": [
                        _device("fp32", 2.0, 3.0, rss=100),
                        _device("int8", 1.0, 1.5, rss=90),
                        _device("broken", 0, 0, status="failed"),
                    ]
                },
            },
            {
                "device_id": "dev_b",
                "results": {
                    "candidates": [
                        _device("fp32", 2.2, 4.0, rss=120),
                        _device("int8", 1.1, 9.0, rss=95),
                    ]
                },
            },
        ],
    }


def test_device_figures_pool_the_median_and_keep_the_worst_device_for_budgets() -> None:
    figures, rows = device_figures(_probe(), ["fp32", "int8", "broken", "never-probed"])
    by_name = {f.candidate: f for f in figures}
    assert set(by_name) == {"fp32", "int8", "broken"}
    assert all(f.where == "device" for f in figures)
    int8 = by_name["int8"]
    assert int8.latency is not None
    assert int8.latency.p95_ms == 9.0  # the worst device's p95
    assert int8.latency.runs == 6  # both devices' runs
    assert int8.peak_rss_bytes == 95
    assert int8.devices == 2
    assert int8.partial is False
    assert by_name["broken"].error is not None
    assert "runtime_crashed" in by_name["broken"].error
    assert rows["int8"]["measured_on"] == "device"


def test_a_partial_probe_is_marked_and_refused_without_allow_partial(tmp_path: Path) -> None:
    figures, _ = device_figures(_probe("partial"), ["fp32"])
    assert figures[0].partial is True
    for status in ("running", "partial", "expired"):
        with pytest.raises(BuildInputError) as refused:
            select_from_probe(tmp_path, CLASS, _probe(status))
        assert refused.value.code == "probe_incomplete"
    other = {**_probe(), "hardware_class": "another"}
    with pytest.raises(BuildInputError) as mismatch:
        select_from_probe(tmp_path, CLASS, other)
    assert mismatch.value.code == "build_class_mismatch"


def _build_dir(root: Path, *, classes: list[str], validation_bytes: int = 100) -> Path:
    (root / "candidates").mkdir(parents=True)
    (root / "candidates" / "fp32.onnx").write_bytes(b"m" * 100)
    (root / "candidates" / "validation.npz").write_bytes(b"v" * validation_bytes)
    index = {
        "model": "digits",
        "version": "1",
        "release_counter": 1,
        "source_sha256": "0" * 64,
        "task": "classification",
        "judged_output": "probs",
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 4]}],
            "outputs": [{"name": "probs", "dtype": "float32", "shape": ["N", 2]}],
        },
        "candidates": [{"name": "fp32", "kind": "fp32", "precision": "fp32", "file": "fp32.onnx"}],
    }
    (root / "candidates" / "index.json").write_text(json.dumps(index))
    report = {
        "classes": [
            {"hardware_class": c, "candidates": [{"name": "fp32", "precision": "fp32", "error": None}]}
            for c in classes
        ]
    }
    (root / "report.json").write_text(json.dumps(report))
    return root


NOW = datetime(2026, 12, 4, tzinfo=timezone.utc)


def test_a_bundle_is_refused_for_a_class_the_build_was_not_made_for(tmp_path: Path) -> None:
    build = _build_dir(tmp_path / "build", classes=["other-class"])
    with pytest.raises(BuildInputError) as refused:
        make_bundle(build, CLASS, now=NOW)
    assert refused.value.code == "build_class_mismatch"
    assert refused.value.details["expected"] == ["other-class"]
    assert not (build / "probes").exists()


def test_a_bundle_above_the_storage_budget_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    build = _build_dir(tmp_path / "build", classes=["cart"], validation_bytes=2 * 1024 * 1024)  # > 1 MiB
    with pytest.raises(BuildInputError) as refused:
        make_bundle(build, CLASS, now=NOW)
    assert refused.value.code == "probe_exceeds_storage_budget"
    assert refused.value.details["got"]["validation_bytes"] == 2 * 1024 * 1024
    assert not (build / "probes").exists()


def test_a_bundle_is_an_artifact_of_its_own_release_line(tmp_path: Path) -> None:
    build = _build_dir(tmp_path / "build", classes=["cart"])
    bundle = make_bundle(build, CLASS, now=NOW)
    assert bundle.manifest.model == "digits.probe"
    assert bundle.manifest.release_counter == int(NOW.timestamp())
    assert bundle.manifest.hardware_class == "cart"
    assert {f.path for f in bundle.manifest.files} == {"probe.json", "validation.npz", "candidates/fp32.onnx"}
    assert [c.name for c in bundle.index.candidates] == ["fp32"]
    with pytest.raises(BuildInputError) as unknown:
        make_bundle(build, CLASS, now=NOW, candidates=["int8-missing"])
    assert unknown.value.code == "unknown_candidate"


def test_a_build_without_kept_candidates_says_how_to_get_them(tmp_path: Path) -> None:
    build = _build_dir(tmp_path / "build", classes=["cart"])
    (build / "candidates" / "index.json").unlink()
    with pytest.raises(BuildInputError) as refused:
        make_bundle(build, CLASS, now=NOW)
    assert refused.value.code == "build_has_no_candidates"
    assert "--keep-candidates" in str(refused.value.details["expected"])
