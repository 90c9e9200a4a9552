"""Artifact directories ready for ``edgefleet publish``, written so that nothing half-written is visible.

The whole build is written under a staging directory next to ``--out`` and renamed onto it at the end
(every file fsynced, then the rename, then the parent directory fsynced). A crash or a refused input leaves
``--out`` untouched; a stale staging directory is named ``.<out>.staging-*`` and can be deleted.

Golden file (``golden.npz``): for every model input ``input:<name>`` (real validation samples, first axis =
samples) and for every output ``output:<name>`` (what this very artifact produced for them on the build
machine). The device runs the inputs one at a time and compares with ``atol``/``rtol`` from the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.figures import Figures
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.manifest import ArtifactFile, ArtifactManifest

__all__ = [
    "GOLDEN_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "Tolerance",
    "check_output_free",
    "derive_tolerance",
    "file_entry",
    "golden_bytes",
    "health_check",
    "staged_output",
    "write_bytes",
    "write_manifest",
]

MODEL_FILE = "model.onnx"
GOLDEN_FILE = "golden.npz"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    basis: str


def derive_tolerance(
    *, candidate_vs_fp32: float, implementation_spread: float, floor_atol: float = 1e-4
) -> Tolerance:
    """Pure: tolerances for the on-device check from differences measured at build time.

    ``candidate_vs_fp32`` is the largest output difference from the FP32 reference that the quality bound
    already accepted (quantization error); ``implementation_spread`` is how much the same artifact moves
    between the runtime's graph-optimization levels (a stand-in for other kernels and CPUs). A device that
    moves further than twice the first or ten times the second is not running what we measured.
    """
    atol = max(floor_atol, 2.0 * candidate_vs_fp32, 10.0 * implementation_spread)
    basis = (
        f"max(floor {floor_atol:g}, 2 x max|candidate - fp32| {candidate_vs_fp32:.3g}, "
        f"10 x optimization-level spread {implementation_spread:.3g})"
    )
    return Tolerance(atol=float(atol), rtol=1e-3, basis=basis)


def health_check(
    tolerance: Tolerance, latency_ceiling_ms: float, judged_output: str | None
) -> dict[str, Any]:
    """The manifest's ``health_check``: the golden file, its tolerance and the class's latency ceiling."""
    return {
        "golden_file": GOLDEN_FILE,
        "atol": tolerance.atol,
        "rtol": tolerance.rtol,
        "tolerance_basis": tolerance.basis,
        "latency_ceiling_ms": latency_ceiling_ms,
        "warmup_runs": 3,
        "judged_output": judged_output,
    }


def golden_bytes(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    arrays = {f"input:{k}": v for k, v in inputs.items()} | {f"output:{k}": v for k, v in outputs.items()}
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync (the directory rename at the end makes the set atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def file_entry(root: Path, relpath: str) -> ArtifactFile:
    data = (root / relpath).read_bytes()
    return ArtifactFile(path=relpath, sha256=hashlib.sha256(data).hexdigest(), length=len(data))


def write_manifest(root: Path, manifest: dict[str, Any]) -> ArtifactManifest:
    """Validate as ``ArtifactManifest`` (the protocol's own check) and write it."""
    document = ArtifactManifest.parse(manifest)
    text = json.dumps(json.loads(canonical_json(document.to_dict())), indent=2, sort_keys=True) + "\n"
    write_bytes(root / MANIFEST_FILE, text.encode("utf-8"))
    return document


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output_free(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BuildInputError(
            f"output {out} already exists and is not empty",
            code="output_exists",
            expected="a new or empty directory",
            got=str(out),
        )


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield a staging directory; on success it becomes ``out`` in one rename, on error it vanishes."""
    check_output_free(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the published tree should read like any other
    try:
        yield staging
        _fsync_tree(staging)
        check_output_free(out)
        if out.exists():
            out.rmdir()
        staging.rename(out)
        _fsync_dir(out.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def sustained_metrics(run: Figures | None, unmeasured: str | None) -> dict[str, Any]:
    """The manifest's sustained-load metrics of the chosen candidate (``select.sustained_run``'s figures)."""
    figures = run.sustained if run is not None else None
    return {
        "sustained_last_p95_ms": figures.last_p95_ms if figures else None,
        "sustained_drift_ratio": figures.drift_ratio if figures else None,
        "sustained_measured_on": (
            f"{run.where}: {figures.duration_s:g} s run; {run.source}"[:500] if run and figures else None
        ),
        "sustained_unmeasured": (unmeasured or "")[:1000] or None,
    }
