"""Pure checks of request tensors against the manifest signature and the class's batch limit.

Arrays must carry exactly the declared dtype (no silent casts on the in-process path); every fixed
dimension must match; the first dimension is the batch when the manifest leaves it dynamic, and must be in
``[1, max_batch]`` and the same for every input; a request holds at most ``max_elements`` values in all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgefleet.agent.serve.errors import BadTensorError
from edgefleet.protocol.wire.manifest import Signature

__all__ = ["InputRules", "coerce_json_tensor", "validate_inputs"]

_JSON_KINDS = {
    "float32": "biuf",
    "float16": "biuf",
    "float64": "biuf",
    "int8": "biu",
    "uint8": "biu",
    "int32": "biu",
    "int64": "biu",
    "bool": "b",
}


class InputRules:
    """What a request may hold, derived once from a signature and the class's ``performance.max_batch``."""

    __slots__ = ("accepted", "max_batch", "max_elements", "names", "signature", "specs")

    def __init__(self, signature: Signature, *, max_batch: int = 1, max_elements: int = 16_000_000) -> None:
        self.signature = signature
        self.max_batch = max_batch
        self.max_elements = max_elements
        self.specs: tuple[tuple[str, np.dtype[Any], tuple[int | str | None, ...]], ...] = tuple(
            (spec.name, np.dtype(spec.dtype), tuple(spec.shape)) for spec in signature.inputs
        )
        self.names = frozenset(spec.name for spec in signature.inputs)
        self.accepted: tuple[tuple[tuple[int, ...], ...], int] | None = None
        """The input shapes of the last request that passed, in spec order, and its batch: a request of
        exactly those shapes and dtypes passes without re-checking each axis (the steady-state hot path)."""

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.signature.inputs]

    def dtype_of(self, name: str) -> str:
        for spec in self.signature.inputs:
            if spec.name == name:
                return spec.dtype
        raise KeyError(name)


def validate_inputs(rules: InputRules, inputs: Mapping[str, Any]) -> int:
    """Raise ``BadTensorError`` unless ``inputs`` fit; return the batch size (1 without a batch axis)."""
    specs = rules.specs
    accepted = rules.accepted
    if accepted is not None and len(inputs) == len(specs):
        shapes, accepted_batch = accepted
        for (name, dtype, _), accepted_shape in zip(specs, shapes, strict=True):
            array = inputs.get(name)
            if type(array) is not np.ndarray or array.dtype != dtype or array.shape != accepted_shape:
                break
        else:
            return accepted_batch
    if len(inputs) != len(specs) or not rules.names.issuperset(inputs):
        raise BadTensorError(
            "request inputs differ from the model's",
            code="tensor_names_mismatch",
            expected=rules.input_names,
            got=sorted(str(k) for k in inputs)[:32],
        )
    batch = -1
    elements = 0
    for name, dtype, shape in specs:
        array = inputs[name]
        if not isinstance(array, np.ndarray):
            raise BadTensorError(
                f"input {name!r} is not a numpy array",
                code="tensor_not_array",
                expected="numpy.ndarray",
                got=type(array).__name__,
            )
        if array.dtype != dtype:
            raise BadTensorError(
                f"input {name!r} has the wrong dtype",
                code="tensor_dtype_mismatch",
                expected=dtype.name,
                got=str(array.dtype),
            )
        got_shape = array.shape
        if len(got_shape) != len(shape):
            raise BadTensorError(
                f"input {name!r} has the wrong rank",
                code="tensor_shape_mismatch",
                expected=list(shape),
                got=list(got_shape),
            )
        for i, (want, have) in enumerate(zip(shape, got_shape, strict=True)):
            if isinstance(want, int):
                if want != have:
                    raise BadTensorError(
                        f"input {name!r} has the wrong shape (axis {i})",
                        code="tensor_shape_mismatch",
                        expected=list(shape),
                        got=list(got_shape),
                    )
            elif have < 1:
                raise BadTensorError(
                    f"input {name!r} has an empty axis {i}",
                    code="tensor_shape_mismatch",
                    expected=f"axis {i} >= 1",
                    got=list(got_shape),
                )
        if shape and not isinstance(shape[0], int):
            this_batch = got_shape[0]
            if this_batch > rules.max_batch:
                raise BadTensorError(
                    f"input {name!r} batch is over the class limit",
                    code="tensor_batch_too_large",
                    expected=f"<= {rules.max_batch}",
                    got=this_batch,
                )
            if batch not in (-1, this_batch):
                raise BadTensorError(
                    "inputs disagree on the batch size",
                    code="tensor_batch_mismatch",
                    expected=batch,
                    got=this_batch,
                )
            batch = this_batch
        elements += array.size
    if elements > rules.max_elements:
        raise BadTensorError(
            "request holds too many values",
            code="tensor_too_large",
            expected=f"<= {rules.max_elements}",
            got=elements,
        )
    rules.accepted = (tuple(inputs[name].shape for name, _, _ in specs), max(batch, 1))
    return max(batch, 1)


def coerce_json_tensor(name: str, value: Any, dtype: str, *, max_elements: int) -> np.ndarray:
    """A JSON nested list -> an array of the declared dtype. Refuses ragged lists, strings, objects, and
    values whose kind cannot be the declared dtype (a float for an integer input, a number for a bool)."""
    if not isinstance(value, (list, int, float, bool)):
        raise BadTensorError(
            f"input {name!r} is not a tensor",
            code="tensor_malformed",
            expected="a (nested) JSON list of numbers",
            got=type(value).__name__,
        )
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadTensorError(
            f"input {name!r} is not a rectangular tensor",
            code="tensor_malformed",
            expected="a rectangular nested list of numbers",
            got=str(exc)[:200],
        ) from exc
    if raw.size > max_elements:
        raise BadTensorError(
            f"input {name!r} holds too many values",
            code="tensor_too_large",
            expected=f"<= {max_elements}",
            got=int(raw.size),
        )
    if raw.dtype.kind not in _JSON_KINDS[dtype] or (raw.size == 0 and raw.ndim <= 1 and dtype != "bool"):
        if raw.size == 0:
            raise BadTensorError(
                f"input {name!r} is empty", code="tensor_shape_mismatch", expected="values", got="[]"
            )
        raise BadTensorError(
            f"input {name!r} holds values that cannot be {dtype}",
            code="tensor_dtype_mismatch",
            expected=dtype,
            got=str(raw.dtype) if raw.dtype.kind != "U" else "strings",
        )
    out = raw.astype(dtype, copy=False)
    if out.dtype.kind in "iu" and raw.dtype.kind in "iu" and not np.array_equal(out, raw):
        raise BadTensorError(
            f"input {name!r} has values out of the {dtype} range",
            code="tensor_dtype_mismatch",
            expected=dtype,
        )
    return out
