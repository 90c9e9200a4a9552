"""Write a tiny but real artifact directory for the demo: a linear ONNX model, golden vectors, manifest.

Usage: python scripts/demo_artifact.py OUT_DIR [--class NAME] [--model NAME] [--version V]
Prints the path of the trained source file (model.onnx) on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

__all__ = ["main", "write_demo_artifact"]


def _linear_model(seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((16, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "weight", "bias"], ["scores"])],
        "demo-linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_demo_artifact(out: Path, *, hardware_class: str, model: str, version: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model_bytes = _linear_model()
    (out / "model.onnx").write_bytes(model_bytes)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    inputs = np.random.default_rng(11).standard_normal((1, 16)).astype(np.float32)
    (scores,) = session.run(None, {"input": inputs})
    buffer = io.BytesIO()
    np.savez(buffer, **{"input.input": inputs, "output.scores": scores})
    (out / "golden.npz").write_bytes(buffer.getvalue())

    def entry(name: str) -> dict[str, object]:
        data = (out / name).read_bytes()
        return {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}

    manifest = {
        "schema_version": 1,
        "model": model,
        "version": version,
        "hardware_class": hardware_class,
        "runtime": {
            "name": "onnxruntime",
            "min_version": "1.16",
            "execution_providers": ["CPUExecutionProvider"],
        },
        "precision": "fp32",
        "entrypoint": "model.onnx",
        "files": [entry("model.onnx"), entry("golden.npz")],
        "signature": {
            "inputs": [{"name": "input", "dtype": "float32", "shape": [1, 16]}],
            "outputs": [{"name": "scores", "dtype": "float32", "shape": [1, 4]}],
        },
        "optimization": {"source_sha256": hashlib.sha256(model_bytes).hexdigest(), "candidate": "fp32"},
        "metrics": {"size_bytes": len(model_bytes)},
        "health_check": {"golden_file": "golden.npz", "atol": 1e-4, "rtol": 1e-4, "latency_ceiling_ms": 50.0},
        "release_counter": 1,
    }
    (out / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return out / "model.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--class", dest="hardware_class", default="medical-cart-cpu")
    parser.add_argument("--model", default="demo-linear")
    parser.add_argument("--version", default="1.0.0")
    args = parser.parse_args()
    source = write_demo_artifact(
        args.out, hardware_class=args.hardware_class, model=args.model, version=args.version
    )
    print(source)


if __name__ == "__main__":
    main()
