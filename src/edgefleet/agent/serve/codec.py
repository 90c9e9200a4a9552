"""Request and response bodies of the local endpoint: JSON tensors, ``.npy`` and ``.npz``.

Decoding is bounded: the body is already capped by the endpoint; ``.npz`` members are checked for their
uncompressed size before numpy reads them (no zip bombs), and pickles are never allowed.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgefleet.agent.serve.errors import BadTensorError, BodyTooLargeError, UnsupportedBodyError
from edgefleet.agent.serve.validate import InputRules, coerce_json_tensor

__all__ = [
    "JSON_TYPE",
    "NPY_TYPE",
    "NPZ_TYPE",
    "decode_inputs",
    "encode_outputs",
    "response_type",
]

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
NPZ_TYPE = "application/x-npz"


def _json_inputs(body: bytes, rules: InputRules) -> dict[str, np.ndarray]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadTensorError(
            "body is not valid JSON", code="body_malformed", expected="JSON", got=str(exc)[:200]
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), dict):
        raise BadTensorError(
            "JSON body must be an object with an 'inputs' object",
            code="body_malformed",
            expected='{"inputs": {"<name>": [[...]]}}',
            got=type(doc).__name__ if not isinstance(doc, dict) else sorted(doc)[:16],
        )
    inputs: dict[str, Any] = doc["inputs"]
    out: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        if name not in rules.names:
            raise BadTensorError(
                "request inputs differ from the model's",
                code="tensor_names_mismatch",
                expected=rules.input_names,
                got=sorted(inputs)[:32],
            )
        out[name] = coerce_json_tensor(name, value, rules.dtype_of(name), max_elements=rules.max_elements)
    return out


def _load_npy(data: bytes | io.BufferedIOBase, what: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadTensorError(
            f"{what} is not a .npy tensor", code="body_malformed", expected=".npy", got=str(exc)[:200]
        ) from exc
    if not isinstance(array, np.ndarray):
        raise BadTensorError(f"{what} is not a .npy tensor", code="body_malformed", expected=".npy")
    return array


def _npz_inputs(body: bytes, max_decoded_bytes: int) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadTensorError(
            "body is not a .npz archive", code="body_malformed", expected=".npz", got=str(exc)[:200]
        ) from exc
    total = sum(m.file_size for m in members)
    if len(members) > 64 or total > max_decoded_bytes:
        raise BodyTooLargeError(
            ".npz archive is too large once decompressed",
            expected=f"<= 64 arrays, <= {max_decoded_bytes} bytes",
            got={"arrays": len(members), "bytes": total},
        )
    out: dict[str, np.ndarray] = {}
    with archive:
        for member in members:
            name = member.filename.removesuffix(".npy")
            try:
                with archive.open(member) as fh:
                    out[name] = _load_npy(fh.read(member.file_size + 1), f"array {name!r}")
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise BadTensorError(
                    f"array {name!r} of the .npz is unreadable", code="body_malformed", got=str(exc)[:200]
                ) from exc
    return out


def decode_inputs(
    body: bytes, content_type: str, rules: InputRules, *, max_decoded_bytes: int
) -> dict[str, np.ndarray]:
    """Parse a request body into named arrays (not yet validated against the signature).

    ``application/json``: ``{"inputs": {"<name>": nested list}}``, cast to the declared dtypes.
    ``application/x-npy``: one array, for a model with one input. ``application/x-npz``: named arrays.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == JSON_TYPE:
        return _json_inputs(body, rules)
    if kind == NPY_TYPE:
        if len(rules.specs) != 1:
            raise BadTensorError(
                "a .npy body carries one tensor; this model has several inputs",
                code="body_malformed",
                expected=f"{NPZ_TYPE} with arrays {rules.input_names}",
                got=NPY_TYPE,
            )
        return {rules.specs[0][0]: _load_npy(body, "body")}
    if kind == NPZ_TYPE:
        return _npz_inputs(body, max_decoded_bytes)
    raise UnsupportedBodyError(
        "unsupported content type",
        expected=[JSON_TYPE, NPY_TYPE, NPZ_TYPE],
        got=kind[:100],
    )


def response_type(accept: str | None, output_count: int) -> str:
    """JSON unless the client asks for ``.npz`` (or ``.npy`` when the model has one output)."""
    accept = (accept or "").lower()
    if NPZ_TYPE in accept:
        return NPZ_TYPE
    if NPY_TYPE in accept and output_count == 1:
        return NPY_TYPE
    return JSON_TYPE


def encode_outputs(outputs: Mapping[str, np.ndarray], kind: str, meta: Mapping[str, Any]) -> bytes:
    if kind == NPY_TYPE:
        buffer = io.BytesIO()
        np.save(buffer, next(iter(outputs.values())), allow_pickle=False)
        return buffer.getvalue()
    if kind == NPZ_TYPE:
        buffer = io.BytesIO()
        # typed Any: numpy's stub lets a ``**`` mapping collide with the ``allow_pickle`` keyword
        arrays: dict[str, Any] = {name: np.asarray(v) for name, v in outputs.items()}
        np.savez(buffer, **arrays)
        return buffer.getvalue()
    doc = {
        **meta,
        "outputs": {
            name: {"dtype": str(v.dtype), "shape": list(v.shape), "data": np.asarray(v).tolist()}
            for name, v in outputs.items()
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
