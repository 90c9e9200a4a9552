"""Load and inspect the source ONNX model: refuse what is not ONNX or not self-consistent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from edgefleet.optimize.errors import BuildInputError
from edgefleet.protocol.manifest import Signature, TensorSpec

__all__ = [
    "DEFAULT_MAX_MODEL_BYTES",
    "ModelInfo",
    "inspect_model",
    "load_model",
    "onnx_dtype_name",
    "signature_of",
]

DEFAULT_MAX_MODEL_BYTES = 2_000_000_000

_DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.DOUBLE: "float64",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
    TensorProto.BOOL: "bool",
}


def onnx_dtype_name(elem_type: int) -> str | None:
    return _DTYPES.get(elem_type)


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a model; ``signature`` uses the manifest's types."""

    path: Path
    sha256: str
    size_bytes: int
    opset: int
    op_types: tuple[str, ...]
    signature: Signature

    def input_spec(self, name: str) -> TensorSpec:
        return next(t for t in self.signature.inputs if t.name == name)


def _tensor_specs(values: list[onnx.ValueInfoProto], initializers: set[str], what: str) -> list[TensorSpec]:
    specs: list[TensorSpec] = []
    for value in values:
        if value.name in initializers:
            continue  # old exporters list weights among the graph inputs
        if not value.type.HasField("tensor_type"):
            raise BuildInputError(
                f"model {what} {value.name!r} is not a tensor",
                code="unsupported_model",
                expected="tensor inputs and outputs",
                got=value.type.WhichOneof("value"),
            )
        dtype = onnx_dtype_name(value.type.tensor_type.elem_type)
        if dtype is None:
            raise BuildInputError(
                f"model {what} {value.name!r} has an unsupported element type",
                code="unsupported_model",
                expected=sorted(_DTYPES.values()),
                got=TensorProto.DataType.Name(value.type.tensor_type.elem_type),
            )
        shape: list[int | str | None] = []
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                shape.append(int(dim.dim_value))
            else:
                shape.append(dim.dim_param or None)
        specs.append(TensorSpec(name=value.name, dtype=dtype, shape=shape))
    return specs


def signature_of(model: onnx.ModelProto) -> Signature:
    """Inputs (weights excluded) and outputs with the manifest's dtype names."""
    initializers = {i.name for i in model.graph.initializer}
    return Signature(
        inputs=_tensor_specs(list(model.graph.input), initializers, "input"),
        outputs=_tensor_specs(list(model.graph.output), set(), "output"),
    )


def inspect_model(model: onnx.ModelProto, *, path: Path, raw: bytes) -> ModelInfo:
    """Signature, opset and ops of an in-memory model; runs ONNX's strict shape inference."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise BuildInputError(
            f"model {path.name} is not self-consistent (declared shapes vs weights): {str(exc)[:400]}",
            code="model_shape_mismatch",
            expected="a model that passes onnx.checker with full shape inference",
            got=str(exc)[:400],
        ) from exc
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelInfo(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        size_bytes=len(raw),
        opset=int(opset),
        op_types=tuple(sorted({n.op_type for n in model.graph.node})),
        signature=signature_of(model),
    )


def load_model(path: Path, *, max_bytes: int = DEFAULT_MAX_MODEL_BYTES) -> tuple[onnx.ModelProto, ModelInfo]:
    """Read ``path`` (bounded), parse it as ONNX and inspect it. Raises ``BuildInputError``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BuildInputError(
            f"cannot read model {path}", code="not_onnx", expected="a readable .onnx file", got=str(exc)
        ) from exc
    if size > max_bytes:
        raise BuildInputError("model file too large", code="model_too_large", expected=max_bytes, got=size)
    raw = path.read_bytes()
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise BuildInputError(
            f"{path.name} is not an ONNX model", code="not_onnx", expected="ONNX protobuf", got=str(exc)[:200]
        ) from exc
    if not model.graph.node or not model.opset_import:
        raise BuildInputError(
            f"{path.name} is not an ONNX model (no graph)",
            code="not_onnx",
            expected="an ONNX ModelProto with a graph",
            got=f"{len(model.graph.node)} nodes, {len(model.opset_import)} opsets",
        )
    return model, inspect_model(model, path=path, raw=raw)
