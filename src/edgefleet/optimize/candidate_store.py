"""The build's candidates kept for probes (``edgefleet build --keep-candidates``).

``OUT/candidates/`` holds every candidate file (``<name>.onnx``), ``validation.npz`` (the validation inputs
as ``input:<name>``, the FP32 reference's judged output as ``reference``, the labels as ``labels`` when
given) and ``index.json`` (what a probe bundle and ``build select --from-probe`` need: the model's name,
version, release counter, task, judged output, and each candidate's record and file).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.package import write_bytes
from edgefleet.protocol.probe import PERTURBED_PREFIX

if TYPE_CHECKING:
    from edgefleet.optimize.config import BuildConfig
    from edgefleet.optimize.dataset import Dataset
    from edgefleet.optimize.results import BuildResult

__all__ = [
    "CANDIDATES_DIR",
    "INDEX_FILE",
    "VALIDATION_FILE",
    "read_index",
    "validation_bytes",
    "write_candidates",
]

CANDIDATES_DIR = "candidates"
INDEX_FILE = "index.json"
VALIDATION_FILE = "validation.npz"
MAX_INDEX_BYTES = 2_000_000


def validation_bytes(
    inputs: dict[str, np.ndarray],
    reference: np.ndarray,
    labels: np.ndarray | None,
    perturbed: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] | None = None,
) -> bytes:
    """The validation file; with ``perturbed`` (the robustness check's sets) the same perturbed inputs and
    FP32's outputs on them travel with a probe (``protocol.probe.PERTURBED_PREFIX``)."""
    arrays = {f"input:{k}": v for k, v in inputs.items()} | {"reference": reference}
    if labels is not None:
        arrays["labels"] = labels
    for name, (p_inputs, p_reference) in (perturbed or {}).items():
        arrays |= {f"{PERTURBED_PREFIX}{name}:input:{k}": v for k, v in p_inputs.items()}
        arrays[f"{PERTURBED_PREFIX}{name}:reference"] = p_reference
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def write_candidates(
    root: Path,
    result: BuildResult,
    valid: Dataset,
    reference: np.ndarray,
    judged_output: str,
    config: BuildConfig,
    *,
    model_name: str,
) -> None:
    """Write ``root/candidates/``: every candidate's file, the validation set and the index."""
    out = root / CANDIDATES_DIR
    entries: list[dict[str, Any]] = []
    for candidate in result.candidates:
        data = candidate.path.read_bytes()
        file_name = f"{candidate.name}.onnx"
        write_bytes(out / file_name, data)
        entry = candidate.to_dict()
        entry.update(file=file_name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
        entries.append(entry)
    perturbed = result.robustness.sets if result.robustness is not None else None
    write_bytes(out / VALIDATION_FILE, validation_bytes(valid.arrays, reference, valid.labels, perturbed))
    index = {
        "schema_version": 1,
        "model": model_name,
        "version": config.model_version,
        "release_counter": config.release_counter,
        "source_sha256": result.model.sha256,
        "task": config.task,
        "judged_output": judged_output,
        "signature": result.model.signature.model_dump(mode="json"),
        "validation_samples": valid.count,
        "validation_sha256": valid.sha256,
        "candidates": entries,
    }
    write_bytes(out / INDEX_FILE, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())


def read_index(build_dir: Path) -> dict[str, Any]:
    """The index of a build's kept candidates, or ``build_has_no_candidates``."""
    path = Path(build_dir) / CANDIDATES_DIR / INDEX_FILE
    try:
        raw = path.read_bytes()[: MAX_INDEX_BYTES + 1]
    except OSError as exc:
        raise BuildInputError(
            f"{build_dir} holds no kept candidates",
            code="build_has_no_candidates",
            expected=f"{CANDIDATES_DIR}/{INDEX_FILE} (build with --keep-candidates)",
            got=str(exc),
        ) from exc
    if len(raw) > MAX_INDEX_BYTES:
        raise BuildInputError("candidate index too large", code="document_too_large", got=len(raw))
    try:
        index = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BuildInputError(
            "candidate index is not JSON", code="build_has_no_candidates", expected="JSON", got=str(exc)
        ) from exc
    if not isinstance(index, dict) or not isinstance(index.get("candidates"), list):
        raise BuildInputError(
            "candidate index has no candidates", code="build_has_no_candidates", expected="candidates list"
        )
    return index
