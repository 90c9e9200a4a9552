"""A class emulated on the build host: limits from the class, fresh processes, memory enforced, in words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefleet.optimize.dataset import load_dataset
from edgefleet.optimize.emulate import Enforcement, detect_enforcement, emulate_class, limits_for, statement
from edgefleet.optimize.model_info import load_model
from edgefleet.optimize.session import SessionSettings
from edgefleet.protocol import HardwareClass

MIB = 1024 * 1024
CPU = SessionSettings(("CPUExecutionProvider",), 1, 1)


def _cls(ram_mb: int = 1024, **extra) -> HardwareClass:
    return HardwareClass.parse(
        {
            "schema_version": 1,
            "name": "emu",
            "cpu_arch": "x86_64",
            "threads": {"intra_op": 2, "inter_op": 1},
            "budgets": {
                "ram_mb": ram_mb,
                "storage_mb": 4096,
                "max_model_mb": 500,
                **extra.get("budgets", {}),
            },
            "performance": {"latency_p95_ms": 100.0, **extra.get("performance", {})},
        }
    )


def test_limits_come_from_the_class() -> None:
    limits = limits_for(_cls(512, budgets={"cpu_cores": 1.5}, performance={"load_time_ms": 250.0}))
    assert (limits.cpu_cores, limits.intra_op, limits.inter_op) == (1.5, 2, 1)
    assert limits.ram_bytes == 512 * MIB
    assert limits.load_time_ms == 250.0
    assert limits_for(_cls()).cpu_cores == 2.0  # no quota declared: as many cores as intra-op threads


def test_the_statement_says_what_was_not_enforced() -> None:
    limits = limits_for(_cls(512, budgets={"cpu_cores": 1.5}))
    words = statement(limits, Enforcement(None, "no cgroup v2 hierarchy here"), host_cores=2)
    assert "No cgroup limits here (no cgroup v2 hierarchy here)" in words
    assert "pinned to 2 of 2 host CPUs" in words
    assert "fractional quota 1.5 is not enforced" in words
    assert "killing it above the budget" in words
    enforced = statement(limits, Enforcement(Path("/sys/fs/cgroup/x"), "cgroup v2 at x"), host_cores=2)
    assert "enforced with cgroup v2 at x" in enforced


def test_detects_when_cgroups_cannot_limit(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    own = tmp_path / "cgroup"
    mounts.write_text("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n")
    own.write_text("1:cpu:/\n")
    assert detect_enforcement(mounts, own).cgroup is None
    root = tmp_path / "unified"
    (root / "me").mkdir(parents=True)
    (root / "me" / "cgroup.controllers").write_text("hugetlb pids\n")
    mounts.write_text(f"cgroup2 {root} cgroup2 rw 0 0\n")
    own.write_text("0::/me\n")
    found = detect_enforcement(mounts, own)
    assert found.cgroup is None
    assert "no cpu/memory controller" in found.reason
    # and on this host, whatever it allows, the answer is a decision with a reason
    assert detect_enforcement().reason


def _model_with_weights(path: Path, megabytes: int) -> None:
    """y = x @ W (W holds ``megabytes`` of float32 weights): memory that only loading the model costs."""
    cols = megabytes * MIB // 4 // 64
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, cols)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", cols])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.slow
def test_peak_memory_is_per_candidate_in_a_fresh_process_and_the_budget_disqualifies(tmp_path: Path) -> None:
    small, big = tmp_path / "small.onnx", tmp_path / "big.onnx"
    _model_with_weights(small, 1)
    _model_with_weights(big, 48)
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32))
    _, info = load_model(small)
    data = load_dataset(tmp_path / "data.npz", info.signature)
    models = {"small": small, "big": big}
    figures, record = emulate_class(_cls(), models, CPU, data, tmp_path, warmup_runs=1, runs=6)
    by = {f.candidate: f for f in figures}
    assert all(f.where == "emulated" for f in figures)
    assert by["small"].error is None
    assert by["big"].error is None
    baseline = record["runtime_baseline_rss_bytes"]
    # the bigger model's own weights show up in its own process's peak, not in a shared process's noise
    assert by["big"].peak_rss_bytes - by["small"].peak_rss_bytes > 30 * MIB
    assert by["small"].peak_rss_bytes >= baseline
    assert by["small"].load_time_ms > 0
    assert by["small"].latency is not None
    assert by["small"].latency.run_id == by["big"].latency.run_id  # timed interleaved: pairwise comparable
    assert "pinned" in record["statement"] or "enforced with cgroup v2" in record["statement"]
    # a budget between the two: the big one is killed and says why; the small one is measured
    budget_mb = int((by["small"].peak_rss_bytes + 20 * MIB) / MIB)
    tight, _ = emulate_class(_cls(budget_mb), models, CPU, data, tmp_path, warmup_runs=1, runs=6)
    by = {f.candidate: f for f in tight}
    assert by["small"].error is None
    assert by["big"].error is not None
    assert "budget" in by["big"].error or "memory.max" in by["big"].error
    assert by["big"].latency is None
