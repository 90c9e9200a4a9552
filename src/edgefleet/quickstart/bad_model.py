"""The deliberately bad version 2: signed, installs fine, passes its own health check, but is slower and
less accurate on live traffic (what the rollout's gates must catch)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["make_bad_model"]


def make_bad_model(
    good: onnx.ModelProto,
    *,
    swap: tuple[int, int] = (3, 8),
    chain: int = 24,
    rows: int = 32,
    width: int = 256,
) -> onnx.ModelProto:
    """Swap two classes' logits (those digits are now always wrong) and add a heavy input-dependent branch
    whose result is multiplied by zero (the answer does not change, the latency does)."""
    model = onnx.ModelProto()
    model.CopyFrom(good)
    graph = model.graph
    out = graph.output[0]
    classes = out.type.tensor_type.shape.dim[-1].dim_value or 10
    original = out.name
    inp = graph.input[0].name
    perm = np.eye(classes, dtype=np.float32)
    a, b = swap
    perm[[a, b]] = perm[[b, a]]
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array((rng.standard_normal((width, width)) / width).astype(np.float32), f"bad_w{i}")
        for i in range(chain)
    ]
    inits = [
        numpy_helper.from_array(perm, "bad_perm"),
        numpy_helper.from_array(np.zeros((1,), np.float32), "bad_zero"),
        numpy_helper.from_array((rng.standard_normal((rows, width)) / 8).astype(np.float32), "bad_seed"),
        *weights,
    ]
    renamed = original + "_good"
    for node in graph.node:
        node.output[:] = [renamed if o == original else o for o in node.output]
    nodes = [
        helper.make_node("ReduceMean", [inp], ["bad_mean"], keepdims=0, name="bad_mean"),
        helper.make_node("Mul", ["bad_seed", "bad_mean"], ["bad_h0"], name="bad_scale"),
    ]
    h = "bad_h0"
    for i in range(chain):
        nodes.append(helper.make_node("MatMul", [h, f"bad_w{i}"], [f"bad_m{i}"], name=f"bad_matmul{i}"))
        nodes.append(helper.make_node("Tanh", [f"bad_m{i}"], [f"bad_h{i + 1}"], name=f"bad_tanh{i}"))
        h = f"bad_h{i + 1}"
    nodes += [
        helper.make_node("ReduceSum", [h], ["bad_sum"], keepdims=0, name="bad_sum"),
        helper.make_node("Mul", ["bad_sum", "bad_zero"], ["bad_nothing"], name="bad_times_zero"),
        helper.make_node("MatMul", [renamed, "bad_perm"], ["bad_swapped"], name="bad_swap"),
        helper.make_node("Add", ["bad_swapped", "bad_nothing"], [original], name="bad_out"),
    ]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    onnx.checker.check_model(model)
    return model
