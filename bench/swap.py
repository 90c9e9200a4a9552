"""Model swap on the device: time to serve a new version, and the serving gap while it is replaced under load.

A real ``SlotInstaller`` (local artifact dir, ONNX Runtime, real health check) serves version 1 of an MLP
classifier while client threads call it in a loop; then version 2 is assigned. Figures, each as a ratio of a
baseline measured in the same run:

* swap time: "assignment accepted" (``apply`` called) -> "new model serving" (the first request answered by
  v2), against a plain load of the same model (``InferenceSession`` + one run);
* serving gap: requests that failed during the install (expected: 0) and the worst request latency during
  the install and around the switch itself, against the steady-state p99 before it.

    .venv/bin/python bench/swap.py [--width 1024] [--layers 4] [--clients 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgefleet.agent.install import InstallerConfig, LocalDirFetcher, SlotInstaller, TrialPolicy
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.protocol.desired_state import Assignment, DesiredState
from edgefleet.protocol.manifest import ArtifactManifest, artifact_target_path

IN_DIM = 64
CLASSES = 10


def mlp(width: int, layers: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    dims = [IN_DIM] + [width] * layers + [CLASSES]
    nodes, inits, prev = [], [], "x"
    for i in range(len(dims) - 1):
        w = (rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", IN_DIM])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", CLASSES])],
        initializer=inits,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    ).SerializeToString()


def write_artifact(root: Path, artifact_id: str, model_bytes: bytes, release_counter: int) -> Assignment:
    out = root / artifact_id
    out.mkdir(parents=True)
    x = np.random.default_rng(3).standard_normal((4, IN_DIM)).astype(np.float32)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    y = np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(4)])
    buffer = io.BytesIO()
    np.savez(buffer, **{"input:x": x, "output:probs": y})
    files = {"model.onnx": model_bytes, "golden.npz": buffer.getvalue()}
    for name, data in files.items():
        (out / name).write_bytes(data)
    manifest = ArtifactManifest.parse(
        {
            "model": "bench-mlp",
            "version": f"1.{release_counter}",
            "hardware_class": "bench-cpu",
            "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
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
            "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 1000.0, "warmup_runs": 3},
            "release_counter": release_counter,
        }
    )
    entry = manifest.file("model.onnx")
    return Assignment(
        artifact_id=artifact_id,
        target_path=artifact_target_path(manifest, "model.onnx"),
        sha256=entry.sha256,
        length=entry.length,
        manifest=manifest,
    )


def state(a: Assignment, generation: int) -> DesiredState:
    now = datetime.now(timezone.utc)
    return DesiredState(
        device_id="bench",
        hardware_class="bench-cpu",
        generation=generation,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        slots={"default": a},
    )


def plain_load_s(path: Path, x: np.ndarray) -> float:
    start = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    session.run(None, {"x": x})
    return time.perf_counter() - start


class Load:
    """Client threads calling the serving model in a loop, recording (start, end, artifact, ok)."""

    def __init__(self, installer: SlotInstaller, clients: int) -> None:
        self.installer = installer
        self.records: list[tuple[float, float, str | None, bool]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        self.x = np.random.default_rng(9).standard_normal((1, IN_DIM)).astype(np.float32)

    def client(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            serving = self.installer.serving("default")
            model = self.installer.model("default")
            ok = True
            try:
                assert model is not None
                model.predict({"x": self.x})
            except Exception:
                ok = False
            end = time.perf_counter()
            self.installer.record_inference("default", ok=ok)
            self.records.append((start, end, serving, ok))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def step_ms(journal: Path) -> dict[str, float]:
    """Milliseconds per step of the last attempt, from the journal's timestamps."""
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    begin = max(i for i, r in enumerate(records) if r.get("event") == "begin")
    out: dict[str, float] = {}
    last = datetime.fromisoformat(records[begin]["at"])
    for r in records[begin + 1 :]:
        if r.get("event") == "done" and r.get("step") != "commit":
            at = datetime.fromisoformat(r["at"])
            out[r["step"]] = (at - last).total_seconds() * 1000
            last = at
    return out


def one_run(root: Path, v1: bytes, v2: bytes, clients: int, steady_s: float) -> dict[str, float]:
    artifacts = root / "artifacts"
    a1 = write_artifact(artifacts, "v1", v1, 1)
    a2 = write_artifact(artifacts, "v2", v2, 2)
    x = np.zeros((1, IN_DIM), dtype=np.float32)
    baseline_s = statistics.median(plain_load_s(artifacts / "v2" / "model.onnx", x) for _ in range(3))
    config = InstallerConfig(trial=TrialPolicy(window_s=3600))
    installer = SlotInstaller(root / "data", LocalDirFetcher(artifacts), OnnxRuntimeAdapter(), config=config)
    try:
        installer.apply(state(a1, 1))
        with Load(installer, clients) as load:
            time.sleep(steady_s)
            steady_end = time.perf_counter()
            accepted = time.perf_counter()
            installer.apply(state(a2, 2))
            applied = time.perf_counter()
            while not any(r[2] == "v2" and r[0] >= accepted for r in load.records[-50:]):
                time.sleep(0.001)
            first_v2 = min(r[1] for r in load.records if r[2] == "v2" and r[0] >= accepted)
            time.sleep(0.2)
        records = list(load.records)
        with Load(installer, clients):
            loaded_baseline_s = statistics.median(
                plain_load_s(artifacts / "v2" / "model.onnx", x) for _ in range(3)
            )
    finally:
        installer.close()
    steps = step_ms(root / "data" / "journal" / "default.jsonl")
    steady = [r[1] - r[0] for r in records if r[1] <= steady_end]
    during = [r for r in records if r[1] >= accepted and r[0] <= applied]
    switch_at = min(r[0] for r in records if r[2] == "v2")
    around = [r[1] - r[0] for r in records if abs(r[0] - switch_at) <= 0.05]
    steady_p99 = float(np.percentile(steady, 99))
    return {
        "baseline_load_ms": baseline_s * 1000,
        "baseline_loaded_ms": loaded_baseline_s * 1000,
        "swap_ratio_loaded": (first_v2 - accepted) / loaded_baseline_s,
        **{f"step_{k}_ms": v for k, v in steps.items()},
        "swap_ms": (first_v2 - accepted) * 1000,
        "swap_ratio": (first_v2 - accepted) / baseline_s,
        "steady_p99_ms": steady_p99 * 1000,
        "during_install_requests": len(during),
        "during_install_failed": sum(1 for r in during if not r[3]),
        "during_install_max_ratio": max(r[1] - r[0] for r in during) / steady_p99,
        "around_switch_max_ratio": max(around) / steady_p99,
        "failed_total": sum(1 for r in records if not r[3]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steady-s", type=float, default=1.0)
    args = parser.parse_args()
    v1, v2 = mlp(args.width, args.layers, 1), mlp(args.width, args.layers, 2)
    onnx.checker.check_model(onnx.load_from_string(v2))
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(Path(tmp), v1, v2, args.clients, args.steady_s))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"model: MLP {args.layers}x{args.width}, {len(v2) / 1e6:.1f} MB; {args.clients} client threads; "
        f"median of {args.repeat} runs"
    )
    print(f"baseline: plain InferenceSession load + 1 run      {med['baseline_load_ms']:8.1f} ms")
    print(
        f"assignment accepted -> new model serving         {med['swap_ms']:8.1f} ms"
        f"  = {med['swap_ratio']:.2f}x baseline"
    )
    print(
        f"  same, as a ratio of a plain load under the same client load: {med['swap_ratio_loaded']:.2f}x"
        f" (plain load under load: {med['baseline_loaded_ms']:.1f} ms)"
    )
    print(
        "  per step (ms): " + ", ".join(f"{k[5:-3]} {v:.1f}" for k, v in med.items() if k.startswith("step_"))
    )
    print(f"steady-state request p99 (baseline)              {med['steady_p99_ms']:8.3f} ms")
    print(
        f"requests during install: {med['during_install_requests']:.0f}, failed: "
        f"{med['during_install_failed']:.0f} (all runs: {sum(r['failed_total'] for r in runs):.0f})"
    )
    print(
        f"worst request latency during install             {med['during_install_max_ratio']:8.1f}x steady p99"
    )
    print(
        f"worst request latency within 50 ms of the switch {med['around_switch_max_ratio']:8.1f}x steady p99"
    )


if __name__ == "__main__":
    main()
