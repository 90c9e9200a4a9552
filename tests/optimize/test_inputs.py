"""Bad input: a clear error with what was expected and what arrived."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefleet.optimize.dataset import load_dataset
from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.model_info import load_model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _conv_model(declared_channels: int, out_hw: int = 6) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", declared_channels, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, out_hw, out_hw])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is a text file, not a model\n")
    with pytest.raises(BuildInputError) as exc:
        load_model(path)
    assert exc.value.code == "not_onnx"
    with pytest.raises(BuildInputError) as exc:
        load_model(tmp_path / "missing.onnx")
    assert exc.value.code == "not_onnx"


def test_declared_shape_does_not_match_weights(tmp_path: Path) -> None:
    _, info = load_model(save(_conv_model(1), tmp_path / "ok.onnx"))
    assert info.signature.inputs[0].shape == ["n", 1, 8, 8]
    with pytest.raises(BuildInputError) as exc:
        load_model(save(_conv_model(1, out_hw=5), tmp_path / "bad.onnx"))
    assert exc.value.code == "model_shape_mismatch"


def test_dataset_checks(tmp_path: Path) -> None:
    _, info = load_model(save(_conv_model(1), tmp_path / "m.onnx"))
    good = np.zeros((5, 1, 8, 8), np.float32)
    np.savez(tmp_path / "good.npz", anything=good, labels=np.arange(5))
    data = load_dataset(tmp_path / "good.npz", info.signature)
    assert data.count == 5
    assert data.labels is not None
    folder = tmp_path / "folder"
    folder.mkdir()
    np.save(folder / "x.npy", good)
    assert load_dataset(folder, info.signature).sha256 != data.sha256  # labels are part of the hash

    cases = {
        "data_dtype_mismatch": {"x": good.astype(np.float64)},
        "data_shape_mismatch": {"x": np.zeros((5, 3, 8, 8), np.float32)},
        "labels_mismatch": {"x": good, "labels": np.arange(4)},
    }
    for code, arrays in cases.items():
        np.savez(tmp_path / f"{code}.npz", **arrays)
        with pytest.raises(BuildInputError) as exc:
            load_dataset(tmp_path / f"{code}.npz", info.signature)
        assert exc.value.code == code
        assert "expected" in exc.value.details
        assert "got" in exc.value.details
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BuildInputError) as exc:
        load_dataset(tmp_path / "junk.npz", info.signature)
    assert exc.value.code == "data_unreadable"
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(BuildInputError) as exc:
        load_dataset(tmp_path / "pickled.npz", info.signature)
    assert exc.value.code == "data_unreadable"


def test_two_inputs_need_names(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
    )
    _, info = load_model(
        save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "a.onnx")
    )
    np.savez(tmp_path / "d.npz", a=np.zeros((3, 2), np.float32), c=np.zeros((3, 2), np.float32))
    with pytest.raises(BuildInputError) as exc:
        load_dataset(tmp_path / "d.npz", info.signature)
    assert exc.value.code == "data_missing_input"
    assert exc.value.details["expected"] == ["a", "b"]
