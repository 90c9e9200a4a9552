"""Tiny real ONNX models and artifact directories for the installer tests, the crash harness and the bench.

``write_artifact`` lays out ``<root>/<artifact_id>/{model.onnx, golden.npz}`` (what ``LocalDirFetcher``
reads) and returns the manifest; golden outputs come from onnxruntime itself.
"""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.manifest import MANIFEST_FILE, ArtifactManifest, manifest_target_path
from edgefleet.protocol.wire.desired_state import Assignment, DesiredState, TargetHashes, TargetRef
from edgefleet.protocol.wire.manifest import ArtifactManifest as WireManifest

IN_DIM = 16
CLASSES = 4
CLASS_NAME = "medical-cart-cpu"


def _model(nodes, initializers, *, name: str, out_dim: int = CLASSES) -> bytes:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", IN_DIM])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", out_dim])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def classifier(seed: int = 0) -> bytes:
    """MatMul + Add + Softmax: a linear classifier whose weights depend on ``seed``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((IN_DIM, CLASSES)).astype(np.float32)
    b = rng.standard_normal(CLASSES).astype(np.float32)
    return _model(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
        name=f"classifier-{seed}",
    )


def nan_model() -> bytes:
    """Loads fine, outputs NaN: sqrt(-(|x W| + 1))."""
    w = np.ones((IN_DIM, CLASSES), dtype=np.float32)
    one = np.array(1.0, dtype=np.float32)
    return _model(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Abs", ["h"], ["a"]),
            helper.make_node("Add", ["a", "one"], ["p"]),
            helper.make_node("Neg", ["p"], ["n"]),
            helper.make_node("Sqrt", ["n"], ["probs"]),
        ],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(one, "one")],
        name="nan",
    )


def slow_model(chain: int = 24, size: int = 256) -> bytes:
    """Correct-looking output after a chain of ``size``x``size`` MatMuls: tens of ms per run at batch 1."""
    rng = np.random.default_rng(5)
    up = (rng.standard_normal((IN_DIM, size)) / 4).astype(np.float32)
    sq = (np.eye(size) + rng.standard_normal((size, size)) / size).astype(np.float32)
    down = (rng.standard_normal((size, CLASSES)) / size).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "up"], ["u"]),
        helper.make_node("ReduceMean", ["u"], ["m"], keepdims=0),  # a scalar that depends on the input,
        helper.make_node("Add", ["sq", "m"], ["s0"]),  # so the chain cannot be constant-folded
    ]
    prev = "s0"
    for i in range(chain):
        nodes.append(helper.make_node("MatMul", [prev, "sq"], [f"s{i + 1}"]))
        prev = f"s{i + 1}"
    nodes += [
        helper.make_node("ReduceMean", [prev], ["r"], keepdims=0),
        helper.make_node("Mul", ["m", "r"], ["mr"]),
        helper.make_node("MatMul", ["u", "down"], ["d"]),
        helper.make_node("Add", ["d", "mr"], ["probs"]),
    ]
    inits = [
        numpy_helper.from_array(up, "up"),
        numpy_helper.from_array(sq, "sq"),
        numpy_helper.from_array(down, "down"),
    ]
    return _model(nodes, inits, name="slow")


def backbone_head(head_shift: float) -> bytes:
    """x -> backbone (16x128, 128x512: 264 KiB) -> head (512x4) -> softmax; ``head_shift`` moves the head
    only, as a fine-tune of the classifier head does (the delta tests' retrained model)."""
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((IN_DIM, 128)).astype(np.float32) * 0.2
    w2 = rng.standard_normal((128, 512)).astype(np.float32) * 0.1
    head = rng.standard_normal((512, CLASSES)).astype(np.float32) * 0.1 + np.float32(head_shift)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["a2"]),
        helper.make_node("MatMul", ["a2", "head"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = [numpy_helper.from_array(w, n) for n, w in (("w1", w1), ("w2", w2), ("head", head))]
    return _model(nodes, inits, name="backbone-head")


def golden_inputs(samples: int = 4, seed: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((samples, IN_DIM)).astype(np.float32)


def run_model(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(x.shape[0])])


def write_artifact(
    root: Path,
    artifact_id: str,
    model_bytes: bytes,
    *,
    version: str = "1.0.0",
    release_counter: int = 1,
    latency_ceiling_ms: float = 500.0,
    expected: np.ndarray | None = None,
    samples: int = 4,
    warmup_runs: int = 1,
    extra_bytes: int = 0,
    runtime: str = "onnxruntime",
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> WireManifest:
    """``expected`` overrides the golden outputs (to make a candidate fail); ``extra_bytes`` pads the
    artifact with a weights-like file so benches can use a realistic size; ``runtime`` and ``providers``
    are the manifest's (an ``openvino`` artifact carries the same ONNX file)."""
    out = root / artifact_id
    out.mkdir(parents=True, exist_ok=True)
    x = golden_inputs(samples)
    y = run_model(model_bytes, x) if expected is None else expected
    buffer = io.BytesIO()
    np.savez(buffer, **{"input:x": x, "output:probs": y})
    files = {"model.onnx": model_bytes, "golden.npz": buffer.getvalue()}
    if extra_bytes:
        files["extra.bin"] = np.random.default_rng(1).bytes(extra_bytes)
    for name, data in files.items():
        (out / name).write_bytes(data)
    manifest = ArtifactManifest.parse(
        {
            "model": "digits",
            "version": version,
            "hardware_class": CLASS_NAME,
            "runtime": {"name": runtime, "execution_providers": list(providers)},
            "entrypoint": "model.onnx",
            "files": [
                {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)}
                for n, d in files.items()
            ],
            "signature": {
                "inputs": [{"name": "x", "dtype": "float32", "shape": [None, IN_DIM]}],
                "outputs": [{"name": "probs", "dtype": "float32", "shape": [None, CLASSES]}],
            },
            "optimization": {"source_sha256": hashlib.sha256(model_bytes).hexdigest()},
            "health_check": {
                "golden_file": "golden.npz",
                "atol": 1e-4,
                "rtol": 1e-4,
                "latency_ceiling_ms": latency_ceiling_ms,
                "warmup_runs": warmup_runs,
            },
            "release_counter": release_counter,
        }
    )
    (out / MANIFEST_FILE).write_bytes(canonical_json(manifest.to_dict()))  # what LocalDirFetcher resolves
    return WireManifest.read(manifest.to_dict())  # checked by the model, handed to the agent as it reads it


def assignment(artifact_id: str, manifest: WireManifest) -> Assignment:
    """The director's assignment of ``manifest``: its ``manifest.json`` named by path, length and sha256."""
    raw = canonical_json(manifest.to_dict())
    return Assignment(
        artifact_id=artifact_id,
        manifest=TargetRef(
            path=manifest_target_path(manifest.model, manifest.version, manifest.hardware_class),
            length=len(raw),
            hashes=TargetHashes(sha256=hashlib.sha256(raw).hexdigest()),
        ),
    )


def desired(
    slots: dict[str, Assignment], *, generation: int = 1, disabled: list[str] | None = None
) -> DesiredState:
    now = datetime.now(timezone.utc)
    return DesiredState(
        device_id="dev-1",
        hardware_class=CLASS_NAME,
        generation=generation,
        issued_at=now,
        expires_at=now + timedelta(days=1),
        slots=slots,
        disabled_artifacts=disabled or [],
    )
