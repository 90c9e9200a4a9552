"""End to end on the digits CNN: real training, real quantization, real onnxruntime measurements."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefleet.optimize import BuildConfig, BuildInputError, run_build
from edgefleet.optimize.pipeline import BuildResult
from edgefleet.protocol.manifest import ArtifactManifest

from .conftest import Digits


@pytest.fixture(scope="module")
def built(digits: Digits, example_classes, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    out = tmp_path_factory.mktemp("build") / "out"
    config = BuildConfig.test_size(release_counter=7, model_name="digits-cnn", latency_runs=100)
    return run_build(digits.model, example_classes, digits.calibration, digits.validation, out, config)


def test_every_class_gets_a_valid_artifact(built: BuildResult, example_classes) -> None:
    assert sorted(c.hwclass.name for c in built.classes) == sorted(c.name for c in example_classes)
    assert built.failed_classes == []
    for c in built.classes:
        root = built.out / c.hwclass.name
        manifest = ArtifactManifest.parse(json.loads((root / "manifest.json").read_text()))
        assert manifest.hardware_class == c.hwclass.name
        assert manifest.release_counter == 7
        assert manifest.model == "digits-cnn"
        assert manifest.optimization.candidate == c.selection.chosen
        assert manifest.optimization.source_sha256 == built.model.sha256
        for f in manifest.files:
            data = (root / f.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f.sha256
            assert len(data) == f.length
        assert sorted(p.name for p in root.iterdir()) == ["golden.npz", "manifest.json", "model.onnx"]
        assert manifest.metrics.task_metric == "accuracy"
        assert manifest.metrics.task_value >= 0.95  # real digits, a real CNN
        if c.selection.place is None:  # unmeasured here: the manifest claims no latency
            assert manifest.metrics.latency_p50_ms is None
            # and says so, with the probe that settles it (publishing then needs an explicit flag)
            probe = f"probe create BUILD_DIR --class {c.hwclass.name}"
            assert probe in (manifest.metrics.latency_unmeasured or "")
        else:
            assert manifest.metrics.latency_p50_ms > 0
            assert manifest.metrics.latency_unmeasured is None


def test_int8_weights_follow_the_classes_not_the_build_machine(built: BuildResult) -> None:
    # The example classes include x86-64 CPUs without VNNI (intel-lowpower-detector, medical-cart-cpu), so
    # every INT8 candidate has 7-bit weights, whatever CPU ran this build.
    int8 = [c for c in built.candidates if c.precision == "int8"]
    assert int8
    assert all(c.reduce_range for c in int8)
    for c in built.classes:
        manifest = json.loads((built.out / c.hwclass.name / "manifest.json").read_text())
        if manifest["optimization"]["quantization"] in ("int8_static", "int8_dynamic", "mixed"):
            assert manifest["optimization"]["reduce_range"] is True


def test_each_manifest_carries_its_class_part_of_the_build_report(built: BuildResult) -> None:
    for c in built.classes:
        manifest = json.loads((built.out / c.hwclass.name / "manifest.json").read_text())
        report = manifest["build_report"]
        assert report["chosen"] == manifest["optimization"]["candidate"] == c.selection.chosen
        assert [r["name"] for r in report["candidates"]] == [m.name for m in c.measured]
        chosen = next(r for r in report["candidates"] if r["name"] == report["chosen"])
        assert chosen["eligible"] is True
        assert chosen["latency_p50_ms"] == pytest.approx(manifest["metrics"]["latency_p50_ms"])
        refused = [r for r in report["candidates"] if not r["eligible"]]
        assert all(r["reasons"] for r in refused)  # every refusal says why
    # the whole manifest stays small enough for a desired state
    sizes = [len((built.out / c.hwclass.name / "manifest.json").read_bytes()) for c in built.classes]
    assert max(sizes) < 32_000


def test_golden_vectors_reproduce_on_the_artifact(built: BuildResult, digits: Digits) -> None:
    for c in built.classes:
        root = built.out / c.hwclass.name
        manifest = ArtifactManifest.parse(json.loads((root / "manifest.json").read_text()))
        golden = np.load(root / manifest.health_check.golden_file)
        x = golden["input:input"]
        # real validation inputs, not synthetic ones
        assert np.array_equal(x, digits.val_x[: len(x)])
        session = ort.InferenceSession(str(root / manifest.entrypoint), providers=["CPUExecutionProvider"])
        for i in range(len(x)):
            got = session.run(None, {"input": x[i : i + 1]})[0]
            np.testing.assert_allclose(
                got,
                golden["output:logits"][i : i + 1],
                atol=manifest.health_check.atol,
                rtol=manifest.health_check.rtol,
            )


def test_selection_is_consistent_with_the_measurements(built: BuildResult) -> None:
    for c in built.classes:
        by_name = {m.name: m for m in c.measured}
        chosen = by_name[c.selection.chosen]
        verdict = next(v for v in c.selection.verdicts if v.name == chosen.name)
        if c.selection.place is None:  # an accelerator absent here: no speed claim either way
            assert c.selection.latency_unmeasured
            assert "latency unmeasured here" in c.selection.summary
        elif chosen.name != "fp32" and c.selection.objective == "latency":
            # a latency class only leaves FP32 for a speed-up beyond the measured noise
            assert verdict.speedup is not None
            assert verdict.speedup.low > 1.0
        elif chosen.name == "fp32":
            assert "no candidate is faster than FP32 beyond the measurement noise" in c.selection.summary
        assert chosen.precision in c.hwclass.precisions
        names = set(by_name)
        assert "fp32" in names
        if "int8" in c.hwclass.precisions:
            assert {"int8-static-minmax-pc", "int8-static-percentile-pc", "int8-dynamic"} <= names
        if "fp16" in c.hwclass.precisions:
            assert "fp16" in names
        else:
            assert "fp16" not in names


def test_report_is_self_contained_and_records_substitution(built: BuildResult) -> None:
    report = json.loads((built.out / "report.json").read_text())
    html = (built.out / "report.html").read_text()
    assert "<svg" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "<script" not in html
    by_class = {c["hardware_class"]: c for c in report["classes"]}
    assert "TensorrtExecutionProvider is not available" in by_class["jetson-vision-standard"]["measured_on"]
    assert "OpenVINOExecutionProvider is not available" in by_class["intel-lowpower-detector"]["measured_on"]
    assert by_class["medical-cart-cpu"]["measured_on"] == "measured on CPUExecutionProvider"
    assert isinstance(report["machine"]["cpu"]["vnni"], bool)
    assert by_class["medical-cart-cpu"]["pareto_front"]
    for cls in report["classes"]:
        for fig in cls["figures"]:
            assert fig["where"] in ("host", "emulated", "device")
            if fig["latency"]:
                lat = fig["latency"]
                assert lat["p50_low_ms"] <= lat["p50_ms"] <= lat["p50_high_ms"] <= lat["p99_ms"]
        for cand in cls["candidates"]:
            assert cand["description"]  # what was done to it, in words
    assert by_class["jetson-vision-standard"]["latency_place"] is None
    assert "latency unmeasured here" in by_class["jetson-vision-standard"]["latency_unmeasured"]
    assert "latency unmeasured here" in html


def test_tiny_mlp_keeps_fp32_or_proves_a_speedup(digits: Digits, cpu_classes, tmp_path: Path) -> None:
    config = BuildConfig.test_size(latency_runs=200)
    result = run_build(
        digits.mlp,
        cpu_classes,
        digits.calibration,
        digits.validation,
        tmp_path / "o",
        config,
        class_names=["cpu-small"],
    )
    (cls,) = result.classes
    by_name = {m.name: m for m in cls.measured}
    chosen = by_name[cls.selection.chosen]
    verdict = next(v for v in cls.selection.verdicts if v.name == chosen.name)
    assert chosen.name == "fp32" or (verdict.speedup is not None and verdict.speedup.low > 1.0)


def test_gpu_class_gets_fp16_candidate_measured_on_cpu(digits: Digits, cpu_classes, tmp_path: Path) -> None:
    config = BuildConfig.test_size()
    result = run_build(
        digits.model,
        cpu_classes,
        digits.calibration,
        digits.validation,
        tmp_path / "o",
        config,
        class_names=["gpu-small"],
    )
    (cls,) = result.classes
    assert [m.name for m in cls.measured] == ["fp32", "fp16"]
    assert "CUDAExecutionProvider is not available" in cls.note
    fp16 = next(c for c in result.candidates if c.name == "fp16")
    assert fp16.size_bytes < 0.6 * next(c for c in result.candidates if c.name == "fp32").size_bytes
    assert result.qualities["fp16"].agreement >= 0.99


# --- bad input: a clear error and nothing written ---------------------------------------------------


def _expect_refused(code: str, out: Path, *args, **kwargs) -> BuildInputError:
    with pytest.raises(BuildInputError) as exc:
        run_build(*args, out, BuildConfig.test_size(), **kwargs)
    assert exc.value.code == code, exc.value
    assert "expected" in exc.value.details
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.staging")]
    return exc.value


def test_bad_inputs_write_nothing(digits: Digits, cpu_classes, tmp_path: Path) -> None:
    out = tmp_path / "out"
    d = digits
    err = _expect_refused(
        "unknown_hardware_class", out, d.model, cpu_classes, d.calibration, d.validation, class_names=["nope"]
    )
    assert err.details["expected"] == ["cpu-small", "gpu-small"]

    np.savez(tmp_path / "few.npz", input=d.val_x[:3])
    err = _expect_refused(
        "too_little_calibration_data", out, d.model, cpu_classes, tmp_path / "few.npz", d.validation
    )
    assert err.details["got"] == 3

    np.savez(tmp_path / "f64.npz", input=d.val_x.astype(np.float64))
    err = _expect_refused(
        "data_dtype_mismatch", out, d.model, cpu_classes, d.calibration, tmp_path / "f64.npz"
    )
    assert err.details == {"expected": "float32", "got": "float64"}

    np.savez(tmp_path / "shape.npz", input=d.val_x.reshape(-1, 1, 4, 16))
    _expect_refused("data_shape_mismatch", out, d.model, cpu_classes, d.calibration, tmp_path / "shape.npz")

    np.savez(tmp_path / "lab.npz", input=d.val_x, labels=d.val_y[:-1])
    _expect_refused("labels_mismatch", out, d.model, cpu_classes, d.calibration, tmp_path / "lab.npz")

    np.savez(tmp_path / "lab10.npz", input=d.val_x, labels=d.val_y + 10)
    _expect_refused("labels_mismatch", out, d.model, cpu_classes, d.calibration, tmp_path / "lab10.npz")

    (tmp_path / "text.onnx").write_text("hello")
    _expect_refused("not_onnx", out, tmp_path / "text.onnx", cpu_classes, d.calibration, d.validation)

    # declared input says 3 channels; the first Conv's weights take 1: ONNX's checker lets it through,
    # the runtime refuses it on the real data
    model = onnx.load(str(d.model))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    onnx.save(model, str(tmp_path / "three.onnx"))
    np.savez(tmp_path / "three.npz", input=np.repeat(d.val_x, 3, axis=1))
    _expect_refused(
        "model_shape_mismatch",
        out,
        tmp_path / "three.onnx",
        cpu_classes,
        tmp_path / "three.npz",
        tmp_path / "three.npz",
    )


def test_existing_output_is_refused(digits: Digits, cpu_classes, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BuildInputError) as exc:
        run_build(
            digits.model, cpu_classes, digits.calibration, digits.validation, out, BuildConfig.test_size()
        )
    assert exc.value.code == "output_exists"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_student_hook(digits: Digits, cpu_classes, tmp_path: Path) -> None:
    config = BuildConfig.test_size(students=(digits.mlp,), calibration_methods=("minmax",))
    result = run_build(
        digits.model,
        cpu_classes,
        digits.calibration,
        digits.validation,
        tmp_path / "o",
        config,
        class_names=["cpu-small"],
    )
    (cls,) = result.classes
    student = next(m for m in cls.measured if m.name == "student-0")
    assert student.kind == "student"
    assert student.quality.task_value > 0.9
    assert any(f.candidate == "student-0" and f.latency is not None for f in cls.figures)

    renamed = onnx.load(str(digits.mlp))
    renamed.graph.output[0].name = "scores"
    renamed.graph.node[-1].output[0] = "scores"
    onnx.save(renamed, str(tmp_path / "bad-student.onnx"))
    bad = BuildConfig.test_size(students=(tmp_path / "bad-student.onnx",))
    with pytest.raises(BuildInputError) as exc:
        run_build(digits.model, cpu_classes, digits.calibration, digits.validation, tmp_path / "o2", bad)
    assert exc.value.code == "student_signature_mismatch"
    assert not (tmp_path / "o2").exists()
