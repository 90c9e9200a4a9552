"""The generic (bsdiff) delta end to end on models we did not make: publish -> device rebuild in the inactive
slot -> the full target's signed length and sha256.

* OpenVINO IR of PaddleOCR's text-direction classifier (MobileNetV3, from the rapidocr-onnxruntime wheel),
  converted with the project's own build path (``optimize.openvino_build.make_ir``, FP32, static input):
  - *head only*: its last layer (``fc_0``, the classifier head) fine-tuned (weights moved by a relative
    N(0, 1e-2)), converted again: what retraining a classifier head on new data ships;
  - *re-optimized as FP16* (``make_ir(fp16=True)``, what the build picks when a class newly allows fp16):
    every weight's bytes change and ``model.bin`` halves, so no delta pays off: publish signs none for it and
    the device downloads it whole (no fallback: there was nothing to fall back from).
* MediaPipe's BlazeFace ``.tflite`` (mediapipe wheel), one layer retrained (``test_delta_tflite`` makes it).

Each goes through ``edgefleet publish`` (local repository; its bases are the line's newest releases) and the
agent's ``TufArtifactFetcher`` over loopback HTTP into a staging directory of the device's slot store, which
holds the previous version. Ratios measured here are in docs/devices.md.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from edgefleet.agent.datadir import DataDir
from edgefleet.agent.install.content import TufArtifactFetcher
from edgefleet.agent.install.download import DownloadPolicy
from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.install.steps import TransferReport
from edgefleet.cli.main import cli
from edgefleet.protocol.wire.desired_state import Assignment, TargetHashes, TargetRef
from edgefleet.trust.events import ListSink
from edgefleet.trust.target_custom import custom_of, is_delta_path

from .fleet import CLASS, Fleet, enrolled_device

IR_SHAPE = {"x": [1, 3, 48, 192]}


def _artifact(directory: Path, version: str, counter: int, files: dict[str, bytes], runtime: str) -> Path:
    directory.mkdir(parents=True)
    files = {**files, "golden.npz": b"golden-vectors"}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    entry = next(n for n in files if n.endswith((".xml", ".tflite")))
    manifest = {
        "schema_version": 1,
        "model": "ocr",
        "version": version,
        "hardware_class": CLASS,
        "runtime": {"name": runtime},
        "entrypoint": entry,
        "files": [
            {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for n, d in files.items()
        ],
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3, 48, 192]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 2]}],
        },
        "optimization": {"source_sha256": "c" * 64},
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50},
        "release_counter": counter,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def _publish(fleet: Fleet, art: Path) -> str:
    common = ["--release-key", str(fleet.keys / "release.key"), "--repo", str(fleet.repo.directory)]
    result = CliRunner().invoke(cli, ["publish", str(art), *common, "--online-keys", str(fleet.keys)])
    assert result.exit_code == 0, result.output
    return result.output


def _hold(ddir: DataDir, art: Path) -> None:
    """``art`` installed in the device's slot: what a finished install leaves."""
    store = SlotStore(ddir.root, "default")
    manifest = json.loads((art / "manifest.json").read_text())
    staged = store.new_staging()
    for entry in manifest["files"]:
        shutil.copyfile(art / entry["path"], staged / "files" / entry["path"])
    from edgefleet.trust.publish import read_manifest

    store.install_staged(staged, read_manifest(art)[0])


def _upgrade(fleet: Fleet, tmp: Path, v1: Path, v2: Path) -> tuple[TransferReport, dict[str, Path]]:
    """The device holds ``v1``; fetch ``v2`` into a staging directory of its slot (the inactive slot)."""
    ddir, identity, mirror = enrolled_device(fleet, tmp)
    _hold(ddir, v1)
    raw = (v2 / "manifest.json").read_bytes()
    version = json.loads(raw)["version"]
    assignment = Assignment(
        artifact_id="art-2",
        manifest=TargetRef(
            path=f"ocr/{version}/{CLASS}/manifest.json",
            length=len(raw),
            hashes=TargetHashes(sha256=hashlib.sha256(raw).hexdigest()),
        ),
    )
    staging = SlotStore(ddir.root, "default").new_staging() / "files"
    try:
        with httpx.Client() as client:
            fetcher = TufArtifactFetcher(
                ddir,
                identity,
                client=client,
                now=lambda: datetime.now(timezone.utc),  # publish signed with the real clock
                events=ListSink(),
                policy=DownloadPolicy(reserve_bytes=0),
            )
            files = fetcher.fetch(fetcher.resolve(assignment), staging)
    finally:
        mirror.close()
    assert fetcher.last_transfer is not None
    return fetcher.last_transfer, files


def _check_signed(fleet: Fleet, v2: Path, files: dict[str, Path]) -> None:
    """Every placed file has its full target's signed length and sha256 (and the new artifact's bytes)."""
    targets = fleet.repo.targets()
    assert targets is not None
    version = json.loads((v2 / "manifest.json").read_text())["version"]
    for name, placed in files.items():
        info = targets.signed.targets[f"ocr/{version}/{CLASS}/{name}"]
        data = placed.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (info.length, info.hashes["sha256"]), name
        assert data == (v2 / name).read_bytes()


def _signed_deltas(fleet: Fleet) -> dict[str, int]:
    """file name -> signed length of each delta target."""
    targets = fleet.repo.targets()
    assert targets is not None
    out = {}
    for path, info in targets.signed.targets.items():
        if is_delta_path(path):
            custom = custom_of(info).delta
            assert custom is not None
            assert custom.encoding == "bsdiff"
            out[path.rsplit("/", 1)[-1].removesuffix(".efdelta")] = info.length
    return out


# ---- OpenVINO IR ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ocr_irs(tmp_path_factory) -> dict[str, Path]:
    """FP32 IR, the head-fine-tuned FP32 IR, and the FP16 IR of the wheel's direction classifier."""
    pytest.importorskip("openvino")
    onnx = pytest.importorskip("onnx")
    from tests.wheel_models import ocr_direction_classifier

    from edgefleet.optimize.openvino_build import make_ir

    source = ocr_direction_classifier()
    if source is None:
        pytest.skip("the rapidocr-onnxruntime wheel is not available here")
    work = tmp_path_factory.mktemp("ir")
    model = onnx.load(str(source))
    head = _fine_tune_head(model)
    onnx.save(model, work / "base.onnx")
    onnx.save(head, work / "head.onnx")
    return {
        "fp32": make_ir(work / "base.onnx", work / "fp32", fp16=False, input_shapes=IR_SHAPE).path.parent,
        "head": make_ir(work / "head.onnx", work / "head", fp16=False, input_shapes=IR_SHAPE).path.parent,
        "fp16": make_ir(work / "base.onnx", work / "fp16", fp16=True, input_shapes=IR_SHAPE).path.parent,
    }


def _fine_tune_head(model):
    """The classifier head (the last Gemm/MatMul's stored weights and bias, ``fc_0`` here) moved by a
    relative N(0, 1e-2), kept in the exporter's encoding; everything else untouched."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    stored = {t.name: t for t in out.graph.initializer}
    for node in out.graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value" and attr.HasField("t"):
                stored[node.output[0]] = attr.t
    last = next(n for n in reversed(out.graph.node) if n.op_type in {"Gemm", "MatMul"})
    names = {i for i in last.input if i in stored}
    names |= {
        i
        for n in out.graph.node
        if n.op_type == "Add" and set(n.input) & set(last.output)
        for i in n.input
        if i in stored
    }
    assert names, "no stored head weights"
    rng = np.random.default_rng(7)
    for name in sorted(names):
        tensor = stored[name]
        arr = numpy_helper.to_array(tensor)
        moved = (arr * (1 + rng.normal(0, 1e-2, arr.shape))).astype(arr.dtype)
        if tensor.float_data:
            del tensor.float_data[:]
            tensor.float_data.extend(moved.ravel().tolist())
        else:
            tensor.CopyFrom(numpy_helper.from_array(moved, tensor.name))
    return out


def _ir_files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in ("model.xml", "model.bin")}


def _run_ir(directory: Path, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(str(directory / "model.xml"), "CPU")
    return np.asarray(compiled([x])[compiled.output(0)])


def test_a_fine_tuned_ir_head_travels_as_a_small_delta_and_rebuilds_the_signed_files(
    fleet: Fleet, tmp_path, ocr_irs
) -> None:
    v1 = _artifact(tmp_path / "v1", "1.0.0", 1, _ir_files(ocr_irs["fp32"]), "openvino")
    v2 = _artifact(tmp_path / "v2", "2.0.0", 2, _ir_files(ocr_irs["head"]), "openvino")
    _publish(fleet, v1)
    out = _publish(fleet, v2)
    assert f"delta ocr/2.0.0/{CLASS}/deltas/" in out
    deltas = _signed_deltas(fleet)
    full = {name: (v2 / name).stat().st_size for name in ("model.xml", "model.bin")}
    assert set(deltas) == {"model.bin", "model.xml"}  # both changed, both pay off
    print("IR head only, delta / full:", {n: f"{deltas[n]} / {full[n]}" for n in deltas})
    assert deltas["model.bin"] < 0.02 * full["model.bin"]  # one layer's weights of 500 KiB
    assert deltas["model.xml"] < 0.1 * full["model.xml"]

    report, files = _upgrade(fleet, tmp_path / "device", v1, v2)
    _check_signed(fleet, v2, files)
    assert report.delta_files == 2
    assert report.fallbacks == {}
    assert report.bytes_downloaded == sum(deltas.values())
    assert report.bytes_downloaded < 0.05 * report.full_bytes
    x = np.random.default_rng(0).uniform(-1, 1, IR_SHAPE["x"]).astype(np.float32)
    rebuilt = files["model.xml"].parent
    np.testing.assert_array_equal(_run_ir(rebuilt, x), _run_ir(ocr_irs["head"], x))
    assert not np.array_equal(_run_ir(ocr_irs["fp32"], x), _run_ir(ocr_irs["head"], x)), "head unchanged"


def test_an_ir_whose_every_weight_changed_gets_no_delta_and_is_downloaded_whole(
    fleet: Fleet, tmp_path, ocr_irs
) -> None:
    v1 = _artifact(tmp_path / "v1", "1.0.0", 1, _ir_files(ocr_irs["fp32"]), "openvino")
    v2 = _artifact(tmp_path / "v2", "2.0.0", 2, _ir_files(ocr_irs["fp16"]), "openvino")
    _publish(fleet, v1)
    _publish(fleet, v2)
    deltas = _signed_deltas(fleet)
    assert "model.bin" not in deltas  # its bsdiff delta is above 90 % of the file: not signed
    assert set(deltas) == {"model.xml"}  # the graph text mostly stayed: its delta still pays off

    report, files = _upgrade(fleet, tmp_path / "device", v1, v2)
    _check_signed(fleet, v2, files)
    assert report.delta_files == 1
    assert report.fallbacks == {}  # no delta was offered for model.bin: nothing fell back
    bin_bytes = (v2 / "model.bin").stat().st_size
    assert report.bytes_downloaded == bin_bytes + deltas["model.xml"]


# ---- .tflite -------------------------------------------------------------------------------------------


def test_a_retrained_tflite_layer_goes_through_publish_and_the_device_rebuild(fleet: Fleet, tmp_path) -> None:
    pytest.importorskip("ai_edge_litert.interpreter")
    from tests.trust.test_delta_tflite import _retrain_last_weights
    from tests.wheel_models import face_detector_tflite

    source = face_detector_tflite()
    if source is None:
        pytest.skip("the mediapipe wheel is not available here")
    base = source.read_bytes()
    new, _layer = _retrain_last_weights(base)
    v1 = _artifact(tmp_path / "v1", "1.0.0", 1, {"model.tflite": base}, "litert")
    v2 = _artifact(tmp_path / "v2", "2.0.0", 2, {"model.tflite": new}, "litert")
    _publish(fleet, v1)
    _publish(fleet, v2)
    deltas = _signed_deltas(fleet)
    assert set(deltas) == {"model.tflite"}
    print("tflite one layer, delta / full:", deltas["model.tflite"], "/", len(new))
    assert deltas["model.tflite"] < 0.1 * len(new)

    report, files = _upgrade(fleet, tmp_path / "device", v1, v2)
    _check_signed(fleet, v2, files)
    assert report.delta_files == 1
    assert report.fallbacks == {}
    assert report.bytes_downloaded == deltas["model.tflite"]
