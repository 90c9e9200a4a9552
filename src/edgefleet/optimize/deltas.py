"""Publisher side of model deltas: encode the files of a new artifact against those of one devices run.

Two encodings, one wire format (``edgefleet.trust.delta``; the device applies both the same way):

* ``onnx-tensors`` for ONNX artifacts: the tensors of both models are located in their files (initializers
  and ``Constant`` node values, as ``raw_data`` or packed ``float_data``, and tensors in external-data files
  at the offsets the model names). A tensor of the new file whose bytes the base holds anywhere is *copied*
  by hash; a tensor that kept its name and size but changed is sent as a bytewise difference from its old
  value (a fine-tuned weight changes little, so the difference compresses far better than the weight); a
  new tensor is sent as it is. The bytes between tensors (graph, names, attributes) are sent literally.
  Everything sent goes through one zstd frame. When the file is small enough for bsdiff too, both are
  encoded and the smaller is kept.
* ``bsdiff`` for every other file (OpenVINO IR ``.bin``/``.xml``, ``.tflite``, ...): bsdiff4's suffix-array
  matching, whose copy/add/extra triples map one to one onto the delta's operations.

A delta is kept only when it is smaller than ``max_ratio`` of the full file (otherwise the full download is
as good and one less thing to sign).
"""

from __future__ import annotations

import hashlib
import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bsdiff4.core
import numpy as np
import onnx
from google.protobuf.message import DecodeError

from edgefleet.protocol.manifest import ArtifactManifest
from edgefleet.trust.delta import DeltaWriter
from edgefleet.trust.publish import PreparedDelta
from edgefleet.trust.target_custom import DeltaCustom, delta_target_path, target_prefix

__all__ = [
    "DEFAULT_MAX_RATIO",
    "encode_delta",
    "prepare_deltas",
    "stored_bytes",
    "tensor_ranges",
    "weight_tensors",
]

DEFAULT_MAX_RATIO = 0.9
MAX_BSDIFF_BYTES = 512 * 1024 * 1024
"""bsdiff holds both files and a suffix array in memory: larger non-ONNX files get no delta."""
_MIN_TENSOR_BYTES = 64

Range = tuple[str, int, int]
"""(tensor name, offset in its file, length)"""


def weight_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The model's stored tensors, in file order: initializers, then ``Constant`` node values (exporters
    such as Paddle's keep every weight in Constant nodes), named by the Constant's output."""
    out = list(model.graph.initializer)
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for attr in node.attribute:
            if attr.name == "value" and attr.HasField("t"):
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attr.t)
                tensor.name = tensor.name or (node.output[0] if node.output else "")
                out.append(tensor)
    return out


def stored_bytes(tensor: onnx.TensorProto) -> bytes:
    """The bytes of ``tensor``'s values as they appear in the serialized file: ``raw_data``, or the packed
    little-endian payload of ``float_data`` / ``double_data`` (fixed-width, so the same bytes); varint fields
    (int32/int64 data) have no fixed image and give ``b""``."""
    if tensor.raw_data:
        return bytes(tensor.raw_data)
    if tensor.float_data:
        return np.asarray(tensor.float_data, dtype="<f4").tobytes()
    if tensor.double_data:
        return np.asarray(tensor.double_data, dtype="<f8").tobytes()
    return b""


def tensor_ranges(artifact_dir: Path, manifest: ArtifactManifest) -> dict[str, list[Range]]:
    """Per artifact file (manifest path): where its tensors lie, in file order. Files of no ONNX model, and
    ``.onnx`` files that do not parse, get none (and a binary delta)."""
    out: dict[str, list[Range]] = {}
    for entry in manifest.files:
        if not entry.path.endswith(".onnx"):
            continue
        path = artifact_dir / entry.path
        try:
            model = onnx.load(str(path), load_external_data=False)
        except (DecodeError, ValueError, OSError):
            continue  # not parseable as ONNX: its delta is binary
        data = path.read_bytes()
        embedded: list[Range] = []
        position = 0
        folder = entry.path.rpartition("/")[0]
        for tensor in weight_tensors(model):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                info = {kv.key: kv.value for kv in tensor.external_data}
                location = f"{folder}/{info['location']}" if folder else info["location"]
                length = int(info.get("length", "0"))
                if length >= _MIN_TENSOR_BYTES:
                    out.setdefault(location, []).append((tensor.name, int(info.get("offset", "0")), length))
                continue
            raw = stored_bytes(tensor)
            if len(raw) < _MIN_TENSOR_BYTES:
                continue
            found = data.find(raw, position)
            if found < 0:
                found = data.find(raw)
            if found < 0:
                continue
            embedded.append((tensor.name, found, len(raw)))
            position = found + len(raw)
        out[entry.path] = embedded
    for ranges in out.values():
        ranges.sort(key=lambda r: r[1])
    return out


@contextmanager
def _mapped(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            yield b""
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            yield mm  # type: ignore[misc]  # mmap supports the buffer protocol and slicing like bytes


def _diff(new: bytes, old: bytes) -> bytes:
    """Bytewise ``new - old`` mod 256 (the device adds it back)."""
    a = np.frombuffer(new, dtype=np.uint8)
    b = np.frombuffer(old, dtype=np.uint8)
    return (a - b).tobytes()


def _encode_tensors(
    writer: DeltaWriter, base: bytes, new: bytes, base_ranges: list[Range], new_ranges: list[Range]
) -> None:
    by_hash = {hashlib.sha256(base[o : o + n]).digest(): o for _, o, n in base_ranges}
    by_name = {name: (o, n) for name, o, n in base_ranges}
    cursor = 0
    for name, offset, length in new_ranges:
        if offset < cursor:
            continue  # overlapping ranges (a shared buffer): already written
        writer.literal(bytes(new[cursor:offset]))
        chunk = bytes(new[offset : offset + length])
        same = by_hash.get(hashlib.sha256(chunk).digest())
        old = by_name.get(name)
        if same is not None:
            writer.copy(same, length)
        elif old is not None and old[1] == length:
            writer.add(old[0], _diff(chunk, bytes(base[old[0] : old[0] + length])))
        else:
            writer.literal(chunk)
        cursor = offset + length
    writer.literal(bytes(new[cursor:]))


def _encode_bsdiff(writer: DeltaWriter, base: bytes, new: bytes) -> None:
    control, diff, extra = bsdiff4.core.diff(bytes(base), bytes(new))
    decode = bsdiff4.core.decode_int64
    old_pos = new_pos = diff_pos = extra_pos = 0
    for i in range(0, len(control), 24):
        add_n, extra_n, seek = (decode(control[i + j : i + j + 8]) for j in (0, 8, 16))
        writer.add(old_pos, diff[diff_pos : diff_pos + add_n])
        diff_pos += add_n
        old_pos += add_n
        new_pos += add_n
        writer.literal(extra[extra_pos : extra_pos + extra_n])
        extra_pos += extra_n
        new_pos += extra_n
        old_pos += seek


def encode_delta(
    base_file: Path,
    new_file: Path,
    out: Path,
    *,
    base_path: str,
    result_path: str,
    base_ranges: list[Range] | None = None,
    new_ranges: list[Range] | None = None,
) -> DeltaCustom:
    """Write the delta rebuilding ``new_file`` from ``base_file`` to ``out``; tensor-aware when both sides'
    tensor ranges are given, bsdiff otherwise. Returns the fields to sign into its target."""
    base_sha, base_len = _digest(base_file)
    new_sha, new_len = _digest(new_file)
    tensors = base_ranges is not None and new_ranges is not None
    custom = DeltaCustom(
        base_path=base_path,
        base_sha256=base_sha,
        base_length=base_len,
        result_path=result_path,
        result_sha256=new_sha,
        result_length=new_len,
        encoding="onnx-tensors" if tensors else "bsdiff",
    )
    writer = DeltaWriter(out, custom)
    with _mapped(base_file) as base, _mapped(new_file) as new:
        if base_ranges is not None and new_ranges is not None:
            _encode_tensors(writer, base, new, base_ranges, new_ranges)
        else:
            _encode_bsdiff(writer, base, new)
    writer.close()
    return custom


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), path.stat().st_size


@dataclass(frozen=True)
class BaseArtifact:
    """An artifact devices run now, on local disk (its files verified against its signed targets)."""

    directory: Path
    manifest: ArtifactManifest


def prepare_deltas(
    new_dir: Path,
    new_manifest: ArtifactManifest,
    bases: list[BaseArtifact],
    out_dir: Path,
    *,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> list[PreparedDelta]:
    """Deltas from each base's file to the new artifact's file of the same path (the manifest excepted: it is
    small and always downloaded whole). Unchanged files get none (the device already has them)."""
    new_prefix = target_prefix(new_manifest.model, new_manifest.version, new_manifest.hardware_class)
    new_ranges = tensor_ranges(new_dir, new_manifest)
    prepared: list[PreparedDelta] = []
    for base in bases:
        base_prefix = target_prefix(base.manifest.model, base.manifest.version, base.manifest.hardware_class)
        base_ranges = tensor_ranges(base.directory, base.manifest)
        held = {f.path: f for f in base.manifest.files}
        for entry in new_manifest.files:
            old = held.get(entry.path)
            if old is None or old.sha256 == entry.sha256:
                continue
            onnx_aware = entry.path in new_ranges and old.path in base_ranges
            if not onnx_aware and max(old.length, entry.length) > MAX_BSDIFF_BYTES:
                continue
            target = delta_target_path(new_prefix, entry.path, old.sha256)
            local = out_dir / old.sha256 / (entry.path.replace("/", "__") + ".efdelta")
            local.parent.mkdir(parents=True, exist_ok=True)
            base_path, result_path = f"{base_prefix}/{old.path}", f"{new_prefix}/{entry.path}"
            custom = encode_delta(
                base.directory / old.path,
                new_dir / entry.path,
                local,
                base_path=base_path,
                result_path=result_path,
                base_ranges=base_ranges.get(old.path) if onnx_aware else None,
                new_ranges=new_ranges.get(entry.path) if onnx_aware else None,
            )
            if onnx_aware and max(old.length, entry.length) <= MAX_BSDIFF_BYTES:
                binary = local.with_name(local.name + ".bsdiff")
                other = encode_delta(
                    base.directory / old.path,
                    new_dir / entry.path,
                    binary,
                    base_path=base_path,
                    result_path=result_path,
                )
                if binary.stat().st_size < local.stat().st_size:
                    binary.replace(local)
                    custom = other
                binary.unlink(missing_ok=True)
            if local.stat().st_size > max_ratio * entry.length:
                local.unlink()
                continue
            prepared.append(PreparedDelta(path=target, file=local, delta=custom))
    return prepared
