"""Pure request validation against the signature and the class's batch limit."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.agent.serve import BadTensorError
from edgefleet.agent.serve.validate import InputRules, coerce_json_tensor, validate_inputs
from edgefleet.protocol.wire.manifest import Signature

SIG = Signature.read(
    {
        "inputs": [
            {"name": "a", "dtype": "float32", "shape": [None, 3]},
            {"name": "b", "dtype": "int64", "shape": ["batch", 3]},
        ],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [None, 3]}],
    }
)
RULES = InputRules(SIG, max_batch=4, max_elements=100)


def ok(batch: int = 2) -> dict[str, np.ndarray]:
    return {"a": np.zeros((batch, 3), np.float32), "b": np.zeros((batch, 3), np.int64)}


def test_valid_inputs_give_the_batch_size():
    assert validate_inputs(RULES, ok(3)) == 3


@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        ({"a": np.zeros((1, 3), np.float32)}, "tensor_names_mismatch"),
        ({**ok(), "c": np.zeros((2, 3), np.float32)}, "tensor_names_mismatch"),
        ({"a": np.zeros((1, 3), np.float32), "z": np.zeros((1, 3), np.int64)}, "tensor_names_mismatch"),
        ({**ok(), "a": [[0.0, 0.0, 0.0]]}, "tensor_not_array"),
        ({**ok(), "a": np.zeros((2, 3), np.float64)}, "tensor_dtype_mismatch"),
        ({**ok(), "b": np.zeros((2, 3), np.int32)}, "tensor_dtype_mismatch"),
        ({**ok(), "a": np.zeros((2, 4), np.float32)}, "tensor_shape_mismatch"),
        ({**ok(), "a": np.zeros((2, 3, 1), np.float32)}, "tensor_shape_mismatch"),
        ({**ok(), "a": np.zeros((6,), np.float32)}, "tensor_shape_mismatch"),
        ({"a": np.zeros((0, 3), np.float32), "b": np.zeros((0, 3), np.int64)}, "tensor_shape_mismatch"),
        (ok(5), "tensor_batch_too_large"),
        ({"a": np.zeros((2, 3), np.float32), "b": np.zeros((3, 3), np.int64)}, "tensor_batch_mismatch"),
    ],
)
def test_bad_inputs_get_a_clear_code_with_expected_and_got(inputs, code):
    with pytest.raises(BadTensorError) as err:
        validate_inputs(RULES, inputs)
    assert err.value.code == code
    assert err.value.http_status == 400
    assert "expected" in err.value.details


@pytest.mark.parametrize(
    ("swap", "code"),
    [
        ({"a": np.zeros((2, 3), np.float64)}, "tensor_dtype_mismatch"),
        ({"a": np.zeros((2, 4), np.float32)}, "tensor_shape_mismatch"),
        ({"a": [[0.0] * 3] * 2}, "tensor_not_array"),
        ({"b": np.zeros((3, 3), np.int64)}, "tensor_batch_mismatch"),
    ],
)
def test_the_accepted_shape_shortcut_never_lets_a_different_request_through(swap, code):
    rules = InputRules(SIG, max_batch=4, max_elements=100)
    assert validate_inputs(rules, ok(2)) == 2
    assert rules.accepted is not None
    assert validate_inputs(rules, ok(2)) == 2  # the shortcut
    with pytest.raises(BadTensorError) as err:
        validate_inputs(rules, {**ok(2), **swap})
    assert err.value.code == code


def test_total_values_are_bounded():
    rules = InputRules(SIG, max_batch=4096, max_elements=10)
    with pytest.raises(BadTensorError) as err:
        validate_inputs(rules, ok(4))
    assert err.value.code == "tensor_too_large"


@pytest.mark.parametrize(
    ("value", "dtype", "code"),
    [
        ([[1.0, 2.0], [3.0]], "float32", "tensor_malformed"),
        ("1,2,3", "float32", "tensor_malformed"),
        ({"data": [1, 2]}, "float32", "tensor_malformed"),
        ([["a", "b"]], "float32", "tensor_dtype_mismatch"),
        ([[1.5, 2.0]], "int64", "tensor_dtype_mismatch"),
        ([[1, 2]], "bool", "tensor_dtype_mismatch"),
        ([[300, 1]], "uint8", "tensor_dtype_mismatch"),
        ([[2**70]], "int64", "tensor_dtype_mismatch"),
        ([], "float32", "tensor_shape_mismatch"),
        ([[0.0] * 20], "float32", "tensor_too_large"),
    ],
)
def test_json_values_that_are_not_the_declared_tensor_are_refused(value, dtype, code):
    with pytest.raises(BadTensorError) as err:
        coerce_json_tensor("a", value, dtype, max_elements=10)
    assert err.value.code == code


def test_json_numbers_become_the_declared_dtype():
    got = coerce_json_tensor("a", [[1, 2.5, 3]], "float32", max_elements=10)
    assert got.dtype == np.float32
    assert got.tolist() == [[1.0, 2.5, 3.0]]
    assert coerce_json_tensor("b", [[1, 2]], "int64", max_elements=10).dtype == np.int64
    assert coerce_json_tensor("c", [[True]], "bool", max_elements=10).dtype == np.bool_
