"""A small CNN trained on scikit-learn's bundled handwritten digits, in numpy, exported to ONNX.

No download, no torch: im2col convolutions with hand-written backprop, Adam, a few epochs, seeded.
The reference model of the tests, the benches and the quickstart. Run ``python -m edgefleet.optimize.digits
OUT_DIR`` (or ``python examples/digits/digits_cnn.py OUT_DIR``) to write ``model.onnx``, ``calibration.npz``,
``validation.npz`` (inputs under ``input``, integer ``labels``) and ``mlp.onnx`` (a tiny MLP on the same data,
where INT8 does not pay).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

__all__ = ["DigitsData", "export_cnn", "export_mlp", "load_digits_data", "main", "train_cnn", "train_mlp"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


@dataclass(frozen=True)
class DigitsData:
    train_x: np.ndarray  # (N, 1, 8, 8) float32 in [0, 1]
    train_y: np.ndarray  # (N,) int64
    calib_x: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


def load_digits_data(seed: int = 0) -> DigitsData:
    """Split the 1797 digits: 1237 train, 200 calibration (taken from train), 560 validation."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    train_x, train_y = x[:1237], y[:1237]
    return DigitsData(train_x, train_y, train_x[:200].copy(), x[1237:].copy(), y[1237:].copy())


# --- numpy layers ------------------------------------------------------------------------------------


def _im2col(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N*H*W, C*9) for a 3x3 kernel, stride 1, pad 1."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, c, 3, 3, h, w), dtype=x.dtype)
    for i in range(3):
        for j in range(3):
            cols[:, :, i, j] = padded[:, :, i : i + h, j : j + w]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * h * w, c * 9)


def _col2im(cols: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    n, c, h, w = shape
    cols6 = cols.reshape(n, h, w, c, 3, 3).transpose(0, 3, 4, 5, 1, 2)
    padded = np.zeros((n, c, h + 2, w + 2), dtype=cols.dtype)
    for i in range(3):
        for j in range(3):
            padded[:, :, i : i + h, j : j + w] += cols6[:, :, i, j]
    return padded[:, :, 1:-1, 1:-1]


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, _, h, wd = x.shape
    cols = _im2col(x)
    out = cols @ w.reshape(w.shape[0], -1).T + b
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def _pool(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = blocks.max(axis=(3, 5))
    mask = blocks == out[:, :, :, None, :, None]
    return out, mask


def _init(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def train_cnn(data: DigitsData, *, seed: int = 0, epochs: int = 8, c1: int = 32, c2: int = 64) -> dict:
    """Conv3x3(c1)-ReLU-MaxPool-Conv3x3(c2)-ReLU-MaxPool-Dense(64)-ReLU-Dense(10). Returns the weights."""
    rng = np.random.default_rng(seed)
    p = {
        "w1": _init(rng, (c1, 1, 3, 3), 9),
        "b1": np.zeros(c1, np.float32),
        "w2": _init(rng, (c2, c1, 3, 3), 9 * c1),
        "b2": np.zeros(c2, np.float32),
        "w3": _init(rng, (c2 * 4, 64), c2 * 4),
        "b3": np.zeros(64, np.float32),
        "w4": _init(rng, (64, 10), 64),
        "b4": np.zeros(10, np.float32),
    }
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    lr, beta1, beta2, step = 3e-3, 0.9, 0.999, 0
    for _epoch in range(epochs):
        order = rng.permutation(len(data.train_x))
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            x, y = data.train_x[idx], data.train_y[idx]
            n = len(x)
            z1, cols1 = _conv(x, p["w1"], p["b1"])
            a1 = np.maximum(z1, 0)
            p1, m1 = _pool(a1)
            z2, cols2 = _conv(p1, p["w2"], p["b2"])
            a2 = np.maximum(z2, 0)
            p2, m2 = _pool(a2)
            f = p2.reshape(n, -1)
            z3 = f @ p["w3"] + p["b3"]
            a3 = np.maximum(z3, 0)
            logits = a3 @ p["w4"] + p["b4"]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
            d = probs
            d[np.arange(n), y] -= 1
            d /= n
            g = {"w4": a3.T @ d, "b4": d.sum(0)}
            d3 = (d @ p["w4"].T) * (z3 > 0)
            g["w3"], g["b3"] = f.T @ d3, d3.sum(0)
            dp2 = (d3 @ p["w3"].T).reshape(p2.shape)
            da2 = np.repeat(np.repeat(dp2, 2, axis=2), 2, axis=3) * m2.reshape(a2.shape)
            dz2 = (da2 * (z2 > 0)).transpose(0, 2, 3, 1).reshape(-1, p["w2"].shape[0])
            g["w2"], g["b2"] = (dz2.T @ cols2).reshape(p["w2"].shape), dz2.sum(0)
            dp1 = _col2im(dz2 @ p["w2"].reshape(p["w2"].shape[0], -1), p1.shape)
            da1 = np.repeat(np.repeat(dp1, 2, axis=2), 2, axis=3) * m1.reshape(a1.shape)
            dz1 = (da1 * (z1 > 0)).transpose(0, 2, 3, 1).reshape(-1, p["w1"].shape[0])
            g["w1"], g["b1"] = (dz1.T @ cols1).reshape(p["w1"].shape), dz1.sum(0)
            step += 1
            for k in p:
                m[k] = beta1 * m[k] + (1 - beta1) * g[k]
                v[k] = beta2 * v[k] + (1 - beta2) * g[k] ** 2
                mhat = m[k] / (1 - beta1**step)
                vhat = v[k] / (1 - beta2**step)
                p[k] = (p[k] - lr * mhat / (np.sqrt(vhat) + 1e-8)).astype(np.float32)
    return p


def export_cnn(p: dict, *, name: str = "digits-cnn") -> onnx.ModelProto:
    """The trained weights as an ONNX graph with a dynamic batch dimension."""
    c2 = p["w2"].shape[0]
    inits = [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in p.items()]
    inits.append(numpy_helper.from_array(np.array([-1, c2 * 4], dtype=np.int64), "flat_shape"))
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["z1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["z1"], ["a1"], name="relu1"),
        helper.make_node("MaxPool", ["a1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["z2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["z2"], ["a2"], name="relu2"),
        helper.make_node("MaxPool", ["a2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p2", "flat_shape"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "w3"], ["z3m"], name="fc1"),
        helper.make_node("Add", ["z3m", "b3"], ["z3"], name="fc1_bias"),
        helper.make_node("Relu", ["z3"], ["a3"], name="relu3"),
        helper.make_node("MatMul", ["a3", "w4"], ["z4m"], name="fc2"),
        helper.make_node("Add", ["z4m", "b4"], [OUTPUT_NAME], name="fc2_bias"),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgefleet"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def train_mlp(data: DigitsData, *, seed: int = 0, hidden: int = 16, epochs: int = 30) -> dict:
    """A tiny 64-16-10 MLP (softmax regression with one hidden layer), full-batch Adam."""
    rng = np.random.default_rng(seed)
    x = data.train_x.reshape(len(data.train_x), -1)
    p = {
        "w1": _init(rng, (64, hidden), 64),
        "b1": np.zeros(hidden, np.float32),
        "w2": _init(rng, (hidden, 10), hidden),
        "b2": np.zeros(10, np.float32),
    }
    lr = 0.05
    for _ in range(epochs * 10):
        z1 = x @ p["w1"] + p["b1"]
        a1 = np.maximum(z1, 0)
        logits = a1 @ p["w2"] + p["b2"]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        d = e / e.sum(axis=1, keepdims=True)
        d[np.arange(len(x)), data.train_y] -= 1
        d /= len(x)
        d1 = (d @ p["w2"].T) * (z1 > 0)
        grads = {"w2": a1.T @ d, "b2": d.sum(0), "w1": x.T @ d1, "b1": d1.sum(0)}
        for k in p:
            p[k] = (p[k] - lr * grads[k] * 10).astype(np.float32)
    return p


def export_mlp(p: dict, *, name: str = "digits-mlp") -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in p.items()]
    inits.append(numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "flat_shape"))
    nodes = [
        helper.make_node("Reshape", ["input", "flat_shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["z1"], name="fc1"),
        helper.make_node("Relu", ["z1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], [OUTPUT_NAME], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgefleet"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def accuracy(p: dict, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of CNN weights in numpy (used to check the export)."""
    z1, _ = _conv(x, p["w1"], p["b1"])
    p1, _ = _pool(np.maximum(z1, 0))
    z2, _ = _conv(p1, p["w2"], p["b2"])
    p2, _ = _pool(np.maximum(z2, 0))
    a3 = np.maximum(p2.reshape(len(x), -1) @ p["w3"] + p["b3"], 0)
    return float(((a3 @ p["w4"] + p["b4"]).argmax(1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "digits-out")
    out.mkdir(parents=True, exist_ok=True)
    data = load_digits_data()
    weights = train_cnn(data)
    onnx.save(export_cnn(weights), out / "model.onnx")
    onnx.save(export_mlp(train_mlp(data)), out / "mlp.onnx")
    np.savez(out / "calibration.npz", input=data.calib_x)
    np.savez(out / "validation.npz", input=data.val_x, labels=data.val_y)
    print(f"digits CNN validation accuracy {accuracy(weights, data.val_x, data.val_y):.4f}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
