"""Candidates on real models: what each one is made of, and the accuracy-aware search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgefleet.optimize import BuildConfig, run_build
from edgefleet.optimize.dataset import load_dataset
from edgefleet.optimize.mixed import search_mixed_precision
from edgefleet.optimize.model_info import load_model
from edgefleet.optimize.quality import measure_quality
from edgefleet.optimize.quantize import make_int8_dynamic, make_int8_static, preprocess, quantizable_nodes
from edgefleet.optimize.session import SessionSettings, open_session, run_dataset

from .conftest import Digits

CPU1 = SessionSettings(("CPUExecutionProvider",), 1, 1)


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_static_int8_is_qdq_with_int8_weights(digits: Digits, tmp_path: Path) -> None:
    _, info = load_model(digits.model)
    calib = load_dataset(digits.calibration, info.signature)
    pre, note = preprocess(digits.model, tmp_path)
    assert note is None
    cand = make_int8_static(
        pre, tmp_path, calib, method="minmax", per_channel=True, reduce_range=True, max_samples=16
    )
    ops = _ops(cand.path)
    assert "QuantizeLinear" in ops
    assert "DequantizeLinear" in ops
    assert cand.reduce_range
    assert any("U8S8" in n for n in cand.notes)
    weights = [i for i in onnx.load(str(cand.path)).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert weights  # weights stored as int8
    assert cand.size_bytes < 0.5 * digits.model.stat().st_size


def test_dynamic_int8_only_for_matmul_models(digits: Digits, tmp_path: Path) -> None:
    cand = make_int8_dynamic(digits.mlp, tmp_path, reduce_range=False)
    assert cand is not None
    assert any(
        op in _ops(cand.path) for op in ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul")
    )
    conv_only = onnx.load(str(digits.model))
    keep = [n for n in conv_only.graph.node if n.op_type in ("Conv", "Relu", "MaxPool")]
    del conv_only.graph.node[:]
    conv_only.graph.node.extend(keep[:2])
    conv_only.graph.output[0].name = "a1"
    del conv_only.graph.output[0].type.tensor_type.shape.dim[:]
    onnx.save(conv_only, str(tmp_path / "conv.onnx"))
    assert make_int8_dynamic(tmp_path / "conv.onnx", tmp_path, reduce_range=False) is None


def test_accuracy_aware_search_keeps_sensitive_nodes_in_float(digits: Digits, tmp_path: Path) -> None:
    _, info = load_model(digits.model)
    calib = load_dataset(digits.calibration, info.signature)
    valid = load_dataset(digits.validation, info.signature).head(200)
    reference = run_dataset(open_session(digits.model, CPU1), valid, batch=True)[0]

    def evaluate(candidate):
        out = run_dataset(open_session(candidate.path, CPU1), valid, batch=True)[0]
        return measure_quality("classification", out, reference, valid.labels)

    pre, _ = preprocess(digits.model, tmp_path)
    full = make_int8_static(
        pre, tmp_path, calib, method="minmax", per_channel=False, reduce_range=True, max_samples=16
    )
    full_error = evaluate(full).mean_abs_diff
    # a bound full INT8 cannot meet: half of its mean output error
    search = search_mixed_precision(
        pre,
        tmp_path,
        calib,
        method="minmax",
        per_channel=False,
        reduce_range=True,
        max_samples=16,
        max_sensitivity_nodes=16,
        max_excluded=10,
        evaluate=evaluate,
        accept=lambda q: (
            q.mean_abs_diff <= full_error / 2,
            [] if q.mean_abs_diff <= full_error / 2 else ["error"],
        ),
    )
    assert set(search.sensitivity) == set(quantizable_nodes(pre))
    assert search.tried
    assert search.candidate is not None
    assert search.candidate.kind == "mixed"
    assert search.candidate.excluded_nodes
    # the excluded nodes are the most sensitive ones, in order
    ranked = sorted(search.sensitivity, key=search.sensitivity.get, reverse=True)
    assert list(search.candidate.excluded_nodes) == ranked[: len(search.candidate.excluded_nodes)]
    assert evaluate(search.candidate).mean_abs_diff <= full_error / 2
    kept_float = set(search.candidate.excluded_nodes)
    model = onnx.load(str(search.candidate.path))
    quantized_inputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.name in kept_float:
            assert node.input[1] not in quantized_inputs  # its weight stayed float


def test_outlier_in_calibration_breaks_int8_and_the_search_runs(
    digits: Digits, cpu_classes, tmp_path: Path
) -> None:
    """One corrupted calibration sample (x300) stretches the MinMax ranges: full INT8 loses accuracy, is
    refused by selection, and the accuracy-aware search takes over."""
    calib = np.load(digits.calibration)["input"].copy()
    calib[0] *= 300
    np.savez(tmp_path / "outlier.npz", input=calib)
    config = BuildConfig.test_size(
        calibration_methods=("minmax",),
        per_channel=(False,),
        max_sensitivity_nodes=12,
        max_excluded=8,
    )
    result = run_build(
        digits.model,
        cpu_classes,
        tmp_path / "outlier.npz",
        digits.validation,
        tmp_path / "o",
        config,
        class_names=["cpu-small"],
    )
    assert result.qualities["int8-static-minmax"].agreement < 0.99
    (cls,) = result.classes
    verdict = next(v for v in cls.selection.verdicts if v.name == "int8-static-minmax")
    assert not verdict.eligible
    assert any(r.startswith("quality: top1_agreement") for r in verdict.reasons)
    assert result.mixed is not None
    assert len(result.mixed.sensitivity) >= 4
    sizes = [len(t["excluded"]) for t in result.mixed.tried]
    assert sizes == list(range(1, len(sizes) + 1))
    if result.mixed.candidate is not None:
        assert result.qualities[result.mixed.candidate.name].agreement >= 0.99
        assert result.mixed.tried[-1]["ok"]
    else:
        assert len(sizes) == 8
        assert not any(t["ok"] for t in result.mixed.tried)
    report = (tmp_path / "o" / "report.json").read_text()
    assert '"sensitivity"' in report


def test_a_model_we_did_not_write(tmp_path: Path, cpu_classes) -> None:
    """skl2onnx's converter output for a scikit-learn MLP on the digits: two outputs (int64 label and
    float probabilities), Gemm-based, names and structure chosen by skl2onnx, not by us."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    clf = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0)
    )
    clf.fit(x[:1200], y[:1200])
    model = to_onnx(clf, x[:1], options={id(clf.steps[-1][1]): {"zipmap": False}}, target_opset=17)
    onnx.save(model, str(tmp_path / "sk.onnx"))
    name = model.graph.input[0].name
    np.savez(tmp_path / "cal.npz", **{name: x[1200:1300]})
    np.savez(tmp_path / "val.npz", **{name: x[1300:]}, labels=y[1300:])
    config = BuildConfig.test_size()
    result = run_build(
        tmp_path / "sk.onnx",
        cpu_classes,
        tmp_path / "cal.npz",
        tmp_path / "val.npz",
        tmp_path / "o",
        config,
        class_names=["cpu-small"],
    )
    (cls,) = result.classes
    assert not cls.selection.failed
    assert result.qualities["fp32"].task_value == pytest.approx(
        clf.score(x[1300:1600], y[1300:1600]), abs=1e-6
    )
    names = {m.name for m in cls.measured}
    assert {"int8-static-minmax-pc", "int8-dynamic"} <= names
    manifest = (tmp_path / "o" / "cpu-small" / "manifest.json").read_text()
    assert '"judged_output": "probabilities"' in manifest
    golden = np.load(tmp_path / "o" / "cpu-small" / "golden.npz")
    assert golden["output:label"].dtype == np.int64


@pytest.mark.parametrize("task", ["regression", "embedding"])
def test_regression_and_embedding_models_go_through_the_whole_pipeline(tmp_path, cpu_classes, task) -> None:
    """A scikit-learn MLP regressor on the bundled diabetes data (real measurements), converted by skl2onnx:
    built, judged by its task's metric and agreement, and packaged, like a classifier."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_diabetes()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.float32).reshape(-1, 1)  # disease progression a year later
    if task == "embedding":  # a 3-d output, so that directions (cosine) mean something
        y = np.concatenate([y, x[:, 2:3] * 1000, x[:, 8:9] * 1000], axis=1)
    mlp = MLPRegressor(hidden_layer_sizes=(32,), max_iter=800, random_state=0)
    reg = make_pipeline(StandardScaler(), mlp)
    reg.fit(x[:300], y[:300] if task == "embedding" else y[:300, 0])
    model = to_onnx(reg, x[:1], target_opset=17)
    onnx.save(model, str(tmp_path / "reg.onnx"))
    name = model.graph.input[0].name
    np.savez(tmp_path / "cal.npz", **{name: x[300:360]})
    labelled = {"labels": y[360:]} if task == "regression" else {}
    np.savez(tmp_path / "val.npz", **{name: x[360:]}, **labelled)
    config = BuildConfig.test_size(task=task)
    paths = [tmp_path / n for n in ("reg.onnx", "cal.npz", "val.npz")]
    out = tmp_path / "o"
    result = run_build(paths[0], cpu_classes, paths[1], paths[2], out, config, class_names=["cpu-small"])
    (cls,) = result.classes
    assert not cls.selection.failed
    fp32 = result.qualities["fp32"]
    if task == "regression":
        assert (fp32.task_metric, fp32.agreement_metric) == ("r2", "1-rmse/range")
        assert fp32.task_value == pytest.approx(reg.score(x[360:], y[360:, 0]), abs=1e-4)
    else:
        assert (fp32.task_metric, fp32.agreement_metric) == (None, "mean_cosine")
    assert fp32.agreement == pytest.approx(1.0)
    int8 = next(m for m in cls.measured if m.precision == "int8" and m.quality is not None)
    assert int8.quality.max_abs_diff > 0  # the candidates are judged against the reference, not assumed
    manifest = json.loads((out / "cpu-small" / "manifest.json").read_text())
    assert manifest["metrics"]["agreement_metric"] == fp32.agreement_metric
