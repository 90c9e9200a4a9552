"""Robustness to degraded input on the digits CNN: seeded perturbations per input kind, every candidate
judged against FP32 under the same perturbation, and a real candidate refused for robustness although its
clean accuracy keeps the bound."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from edgefleet.cli.main import cli
from edgefleet.optimize import BuildConfig, run_build
from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.perturbations import DEFAULT_STRENGTHS, perturb, perturbations_for
from edgefleet.protocol.manifest import ArtifactManifest

from .conftest import CPU_CLASS_TOML, Digits

BRIGHTNESS = (("brightness_contrast", 0.4),)


def fragile_student(model: Path, out: Path) -> Path:
    """The digits CNN behind an aggressive 4-bit input quantization calibrated on the clean range [0, 1]:
    Clip(0, 1) -> x16 -> Round -> /16. Clean digits (k/16) pass it exactly, so clean accuracy is FP32's;
    anything brighter than the calibration saw saturates."""
    m = onnx.load(str(model))
    graph = m.graph
    name = graph.input[0].name
    for node in graph.node:
        for i, used in enumerate(node.input):
            if used == name:
                node.input[i] = "q4_x"
    quant = [
        helper.make_node("Clip", [name, "q4_lo", "q4_hi"], ["q4_c"]),
        helper.make_node("Mul", ["q4_c", "q4_levels"], ["q4_m"]),
        helper.make_node("Round", ["q4_m"], ["q4_r"]),
        helper.make_node("Div", ["q4_r", "q4_levels"], ["q4_x"]),
    ]
    for value, init in ((0.0, "q4_lo"), (1.0, "q4_hi"), (16.0, "q4_levels")):
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), init))
    nodes = quant + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def test_perturbations_are_seeded_keep_shape_and_dtype_and_change_the_input(digits: Digits) -> None:
    x = {"input": digits.val_x[:20]}
    for kind in ("image", "signal", "tabular"):
        data = x if kind != "tabular" else {"input": digits.val_x[:20].reshape(20, -1)}
        for p in perturbations_for(kind):
            a, b = perturb(data, p, seed=5), perturb(data, p, seed=5)
            assert a["input"].dtype == data["input"].dtype
            assert a["input"].shape == data["input"].shape
            np.testing.assert_array_equal(a["input"], b["input"])  # same seed, same inputs
            assert not np.array_equal(a["input"], data["input"]), (kind, p.name)
    assert [p.name for p in perturbations_for("image")] == list(DEFAULT_STRENGTHS["image"])
    assert [p.name for p in perturbations_for("image", {"blur": 0})] == [
        "gaussian_noise",
        "brightness_contrast",
        "occlusion",
        "bit_depth",
    ]
    assert perturbations_for("none") == []
    with pytest.raises(BuildInputError) as err:
        perturbations_for("image", {"dropouts": 0.1})
    assert err.value.code == "invalid_build_input"


def test_a_candidate_whose_clean_accuracy_passes_is_refused_for_robustness(
    digits: Digits, cpu_classes, tmp_path: Path
) -> None:
    student = fragile_student(digits.model, tmp_path / "fragile.onnx")
    config = BuildConfig.test_size(
        input_kind="image",
        perturbations=BRIGHTNESS,
        students=(student,),
        calibration_methods=("minmax",),
        mixed=False,
        dynamic=False,
        keep_candidates=True,
    )
    result = run_build(
        digits.model,
        cpu_classes,
        digits.calibration,
        digits.validation,
        tmp_path / "out",
        config,
        class_names=["cpu-small"],
    )
    fp32 = result.qualities["fp32"]
    clean = result.qualities["student-0"]
    assert clean.task_value == fp32.task_value  # the quantization is exact on clean digits
    assert clean.agreement == 1.0
    (cls,) = result.classes
    verdict = next(v for v in cls.selection.verdicts if v.name == "student-0")
    assert not verdict.eligible
    assert not [r for r in verdict.reasons if r.startswith("quality")]  # clean figures pass
    robust = [r for r in verdict.reasons if r.startswith("robustness")]
    assert robust
    assert "brightness_contrast (0.4)" in robust[0]
    assert cls.selection.chosen != "student-0"
    # Robustness per perturbation: FP32 under each beside every candidate under the same one.
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    perturbations = {p["perturbation"]: p for p in report["robustness"]["perturbations"]}
    assert set(perturbations) == set(DEFAULT_STRENGTHS["image"])
    bright = perturbations["brightness_contrast"]
    assert bright["strength"] == 0.4
    assert bright["candidates"]["student-0"]["agreement"] < 0.95
    assert "Robustness to degraded input" in (tmp_path / "out" / "report.html").read_text()
    # The same perturbed inputs, and FP32's outputs on them, travel with a probe (candidates/validation.npz).
    with np.load(tmp_path / "out" / "candidates" / "validation.npz") as carried:
        assert "perturbed:brightness_contrast:input:input" in carried.files
        assert carried["perturbed:brightness_contrast:reference"].shape[0] == carried["reference"].shape[0]
    written = (tmp_path / "out" / "cpu-small" / "manifest.json").read_text()
    manifest = ArtifactManifest.parse(json.loads(written))
    assert manifest.input_kind == "image"
    lo, hi = manifest.input_ranges["input"].min, manifest.input_ranges["input"].max
    assert lo < 0.0 < 1.0 < hi  # the calibration range [0, 1], widened
    assert (manifest.model_extra or {})["robustness"]["candidate"] == cls.selection.chosen


def test_build_command_reports_robustness_per_perturbation(digits: Digits, tmp_path: Path) -> None:
    classes = tmp_path / "classes.toml"
    classes.write_text(CPU_CLASS_TOML)
    out = tmp_path / "out"
    args = ["build", str(digits.model), "--classes", str(classes), "--calibration", str(digits.calibration)]
    args += ["--validation", str(digits.validation), "--out", str(out), "--quick", "--class", "cpu-small"]
    args += ["--input-kind", "image", "--perturb", "gaussian_noise=0.1", "--perturb", "occlusion=0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "robustness (image inputs, seed 0" in result.output
    for name in ("gaussian_noise (0.1)", "blur (1)", "brightness_contrast (0.2)", "bit_depth (4)"):
        assert f"  {name}: FP32 accuracy" in result.output
    assert "occlusion" not in result.output
    bad = CliRunner().invoke(cli, [*args[:-4], "--input-kind", "image", "--perturb", "fog=1"])
    assert bad.exit_code != 0
    assert "invalid_build_input" in bad.output


FOREIGN_CLASS = """
schema_version = 1
[class.cart-fp16]
cpu_arch = "x86_64"
precisions = ["fp32", "fp16"]
threads = { intra_op = 2, inter_op = 1 }
budgets = { ram_mb = 1024, storage_mb = 2048, max_model_mb = 50 }
performance = { latency_p95_ms = 2000.0 }
"""


def test_build_command_reports_robustness_for_a_third_party_model(tmp_path: Path) -> None:
    """SqueezeNet from the onnx wheel's light model zoo (see test_foreign_model.py), fed real digits."""
    from .test_foreign_model import LIGHT, _images, _materialize_weights

    if not LIGHT.exists():
        pytest.skip("this onnx wheel ships no light model zoo copies")
    model = tmp_path / "squeezenet.onnx"
    _materialize_weights(LIGHT, model)
    np.savez(tmp_path / "calib.npz", data_0=_images(8, 0))
    np.savez(tmp_path / "valid.npz", data_0=_images(8, 500))
    classes = tmp_path / "classes.toml"
    classes.write_text(FOREIGN_CLASS)
    out = tmp_path / "out"
    args = ["build", str(model), "--classes", str(classes), "--calibration", str(tmp_path / "calib.npz")]
    args += ["--validation", str(tmp_path / "valid.npz"), "--out", str(out), "--quick", "--latency-runs", "5"]
    args += ["--input-kind", "image", "--task", "embedding", "--name", "squeezenet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "robustness (image inputs, seed 0" in result.output
    for name in DEFAULT_STRENGTHS["image"]:
        assert f"  {name} (" in result.output
    report = json.loads((out / "report.json").read_text())
    names = [p["perturbation"] for p in report["robustness"]["perturbations"]]
    assert names == list(DEFAULT_STRENGTHS["image"])
    fp16 = [p["candidates"]["fp16"] for p in report["robustness"]["perturbations"]]
    assert all(q["agreement_metric"] == "mean_cosine" for q in fp16)
    manifest = json.loads((out / "cart-fp16" / "manifest.json").read_text())
    assert manifest["input_kind"] == "image"
    assert set(manifest["input_ranges"]) == {"data_0"}
