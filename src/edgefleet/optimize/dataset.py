"""Calibration and validation data: ``.npz`` files or folders of ``.npy``, checked against the model."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefleet.optimize.errors import BuildInputError
from edgefleet.protocol.manifest import Signature

__all__ = ["DEFAULT_MAX_DATA_BYTES", "LABEL_KEYS", "Dataset", "check_dataset", "load_dataset"]

DEFAULT_MAX_DATA_BYTES = 4_000_000_000
MAX_ARRAYS = 64
LABEL_KEYS = ("labels", "label", "y")


@dataclass(frozen=True)
class Dataset:
    """Named input arrays (first axis = samples), optional labels, and a hash of the exact bytes read."""

    source: str
    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None
    sha256: str

    @property
    def count(self) -> int:
        return len(next(iter(self.arrays.values())))

    def sample(self, index: int) -> dict[str, np.ndarray]:
        """One sample as a batch of one."""
        return {k: v[index : index + 1] for k, v in self.arrays.items()}

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {k: v[start:stop] for k, v in self.arrays.items()}

    def head(self, count: int) -> Dataset:
        labels = None if self.labels is None else self.labels[:count]
        arrays = {k: v[:count] for k, v in self.arrays.items()}
        return Dataset(self.source, arrays, labels, self.sha256)


def _read_arrays(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    files: list[tuple[str, Path]]
    if path.is_dir():
        files = sorted((p.stem, p) for p in path.glob("*.npy"))
        if not files:
            raise BuildInputError(
                f"no .npy files in {path}", code="data_unreadable", expected="<input name>.npy files", got=[]
            )
    elif path.is_file():
        files = [("", path)]
    else:
        raise BuildInputError(
            f"data {path} does not exist",
            code="data_unreadable",
            expected="an .npz file or a folder",
            got=None,
        )
    total = sum(p.stat().st_size for _, p in files)
    if total > max_bytes:
        raise BuildInputError(
            "data too large", code="data_unreadable", expected=f"<= {max_bytes} bytes", got=total
        )
    if len(files) > MAX_ARRAYS:
        raise BuildInputError("too many arrays", code="data_unreadable", expected=MAX_ARRAYS, got=len(files))
    out: dict[str, np.ndarray] = {}
    try:
        for stem, p in files:
            if stem:
                out[stem] = np.load(p, allow_pickle=False)
            else:
                with np.load(p, allow_pickle=False) as npz:
                    if len(npz.files) > MAX_ARRAYS:
                        raise BuildInputError(
                            "too many arrays", code="data_unreadable", expected=MAX_ARRAYS, got=len(npz.files)
                        )
                    out = {k: npz[k] for k in npz.files}
    except BuildInputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BuildInputError(
            f"cannot read data {path}: {exc}",
            code="data_unreadable",
            expected=".npz (numpy.savez) or a folder of .npy, without pickles",
            got=str(exc)[:200],
        ) from exc
    return out


def _hash(arrays: dict[str, np.ndarray], labels: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    if labels is not None:
        h.update(b"labels\n" + np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def load_dataset(path: Path, signature: Signature, *, max_bytes: int = DEFAULT_MAX_DATA_BYTES) -> Dataset:
    """Read ``path`` and map its arrays to the model's inputs (by name; a lone array fits a lone input)."""
    raw = _read_arrays(path, max_bytes)
    label_key = next((k for k in LABEL_KEYS if k in raw), None)
    labels = raw.pop(label_key) if label_key else None
    names = [t.name for t in signature.inputs]
    arrays: dict[str, np.ndarray] = {}
    if len(names) == 1 and len(raw) == 1:
        arrays[names[0]] = next(iter(raw.values()))
    else:
        missing = [n for n in names if n not in raw]
        if missing:
            raise BuildInputError(
                f"data {path.name} lacks model inputs {missing}",
                code="data_missing_input",
                expected=names,
                got=sorted(raw),
            )
        arrays = {n: raw[n] for n in names}
    dataset = Dataset(str(path), arrays, labels, _hash(arrays, labels))
    check_dataset(dataset, signature)
    return dataset


def check_dataset(dataset: Dataset, signature: Signature) -> None:
    """Every array: the model's dtype, the model's static dims after the sample axis, the same count."""
    counts: set[int] = set()
    for spec in signature.inputs:
        arr = dataset.arrays[spec.name]
        if arr.dtype != np.dtype(spec.dtype):
            raise BuildInputError(
                f"data for input {spec.name!r} in {Path(dataset.source).name} has the wrong dtype",
                code="data_dtype_mismatch",
                expected=spec.dtype,
                got=str(arr.dtype),
            )
        declared = list(spec.shape)
        got = list(arr.shape)
        ok = len(got) == len(declared) and all(
            not isinstance(d, int) or d == g for d, g in zip(declared[1:], got[1:], strict=False)
        )
        if not ok or len(got) == 0:
            raise BuildInputError(
                f"data for input {spec.name!r} in {Path(dataset.source).name} has the wrong shape",
                code="data_shape_mismatch",
                expected=["N", *declared[1:]],
                got=got,
            )
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
            raise BuildInputError(
                "non-numeric data", code="data_dtype_mismatch", expected=spec.dtype, got=str(arr.dtype)
            )
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise BuildInputError(
                f"data for input {spec.name!r} holds NaN or infinity",
                code="data_shape_mismatch",
                expected="finite values",
                got="NaN/inf",
            )
        counts.add(got[0])
    if len(counts) != 1 or 0 in counts:
        raise BuildInputError(
            "inputs must hold the same, non-zero number of samples",
            code="data_shape_mismatch",
            expected="one sample count",
            got=sorted(counts),
        )
    if dataset.labels is not None and len(dataset.labels) != dataset.count:
        raise BuildInputError(
            f"labels in {Path(dataset.source).name} do not match the inputs",
            code="labels_mismatch",
            expected=f"{dataset.count} labels",
            got=f"{len(dataset.labels)} labels",
        )
