"""Model swap on the device: time to serve a new version, and the serving gap while it is replaced under load.

The production serving path, wired as ``edgefleet agent run`` wires it (``agent/app.py``,
``agent/serving_wiring.py``): a real ``SlotInstaller`` (local artifact dir, ONNX Runtime, real health check)
behind ``ObservedInstaller``, whose ``after_change`` calls ``Serving.sync`` -> ``SlotActiveSource.poll`` ->
``InferenceService`` loads and warms up the new active version and swaps it in; requests go through
``InferenceService.predict`` (admission gate, ladder, ``TrialMetrics`` feeding the trial). Version 1 of an MLP
classifier serves while client threads call ``predict`` in a loop; then version 2 is assigned. Each answer
carries the version that computed it (``Prediction.artifact_id``, read in the same snapshot as the model), and
is checked against that version's own output.

Figures, each as a ratio of a baseline measured in the same run:

* swap time: "assignment accepted" (``apply`` called) -> "new model serving" (the end of the first request
  answered by v2), against a plain load of the same model (``InferenceSession`` + one run), idle and under the
  same client load; split into the install (accepted -> ``active`` pointer switched) and the serving layer's
  own load + warm-up of v2;
* serving gap: requests failed or delayed (over 2x the steady-state p99) between "accepted" and "new model
  serving" (expected: none failed), and the worst request latency during the install, during the serving
  layer's reload and within 50 ms of the swap, against the steady-state p99 before the assignment.

    .venv/bin/python bench/swap.py [--width 1024] [--layers 4] [--clients 2] [--think-ms 1] [--repeat 3]
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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgefleet.agent.install import InstallerConfig, LocalDirFetcher, SlotInstaller, StepRecord, TrialPolicy
from edgefleet.agent.observed import ObservedInstaller
from edgefleet.agent.serve import EndpointConfig, InferenceService, NullMetrics, RuntimeAdapters
from edgefleet.agent.serving_wiring import SERVED_SLOT, TrialMetrics, start_serving
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.desired_state import Assignment, DesiredState, TargetHashes, TargetRef
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.manifest import MANIFEST_FILE, ArtifactManifest, manifest_target_path

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
    raw = canonical_json(manifest.to_dict())
    (out / MANIFEST_FILE).write_bytes(raw)  # what LocalDirFetcher resolves the assignment to
    return Assignment(
        artifact_id=artifact_id,
        manifest=TargetRef(
            path=manifest_target_path(manifest.model, manifest.version, manifest.hardware_class),
            length=len(raw),
            hashes=TargetHashes(sha256=hashlib.sha256(raw).hexdigest()),
        ),
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


def expected_output(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@dataclass
class Answer:
    start: float
    end: float
    artifact: str | None
    """The version that computed the answer (``Prediction.artifact_id``); ``None`` when it failed."""
    error: str | None
    output: np.ndarray | None


class Load:
    """Client threads calling ``InferenceService.predict`` in a loop, ``think_s`` between requests.

    Without a pause between requests, two clients behind the default admission gate (one run at a time) are
    not served in turn: the thread that just finished takes the gate again before the waiting one wakes, and
    a client can wait for a second or more (a serving-layer matter, seen here; not the swap's)."""

    def __init__(self, service: InferenceService, clients: int, x: np.ndarray, think_s: float) -> None:
        self.service = service
        self.think_s = think_s
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        self.x = x

    def client(self) -> None:
        feeds = {"x": self.x}
        while not self.stop.wait(self.think_s):
            start = time.perf_counter()
            try:
                prediction = self.service.predict(feeds)
            except EdgefleetError as exc:  # what a client of the API gets: busy, deferred, failed
                self.answers.append(Answer(start, time.perf_counter(), None, exc.code, None))
                continue
            end = time.perf_counter()
            self.answers.append(Answer(start, end, prediction.artifact_id, None, prediction.outputs["probs"]))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


class NoEvents:
    """The ``ObservedInstaller`` sink (telemetry, in the agent): discarded."""

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None:
        return None

    def record_health_check(self, model_version: str, *, passed: bool, error_code: str | None = None) -> None:
        return None


class StepTimes:
    """The installer's ``StepSink``: when each step of the attempt was reported (``perf_counter``)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def step(self, record: StepRecord) -> None:
        self.at[record.step] = time.perf_counter()


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


def one_run(
    root: Path, v1: bytes, v2: bytes, clients: int, steady_s: float, think_s: float
) -> dict[str, float]:
    artifacts = root / "artifacts"
    data = root / "data"
    a1 = write_artifact(artifacts, "v1", v1, 1)
    a2 = write_artifact(artifacts, "v2", v2, 2)
    x = np.random.default_rng(9).standard_normal((1, IN_DIM)).astype(np.float32)
    want = {aid: expected_output(artifacts / aid / "model.onnx", x) for aid in ("v1", "v2")}
    baseline_s = statistics.median(plain_load_s(artifacts / "v2" / "model.onnx", x) for _ in range(3))

    adapters = RuntimeAdapters()
    steps = StepTimes()
    slot_installer = SlotInstaller(
        data,
        LocalDirFetcher(artifacts),
        adapter_for=adapters,
        config=InstallerConfig(trial=TrialPolicy(window_s=3600)),  # stays on trial: no commit, no GC
        steps=steps,
    )
    slot_installer.recover()
    installer = ObservedInstaller(slot_installer, NoEvents())
    serving = start_serving(
        data,
        hardware_class=None,
        metrics=TrialMetrics(NullMetrics(), installer, SERVED_SLOT),
        endpoint=EndpointConfig(port=0),
        adapter_for=adapters,
    )
    sync_at: list[tuple[float, float]] = []

    def sync() -> None:  # what agent run registers, timed
        started = time.perf_counter()
        serving.sync(installer.desired)
        sync_at.append((started, time.perf_counter()))

    installer.after_change.append(sync)
    try:
        installer.apply(state(a1, 1))
        assert serving.service.artifact_id == "v1", serving.service.status()
        with Load(serving.service, clients, x, think_s) as load:
            time.sleep(steady_s)
            steady_end = time.perf_counter()
            sync_at.clear()
            accepted = time.perf_counter()
            installer.apply(state(a2, 2))
            deadline = time.perf_counter() + 30
            while not any(a.artifact == "v2" for a in load.answers[-50:]):
                assert time.perf_counter() < deadline, "v2 never answered"
                time.sleep(0.001)
            time.sleep(0.2)
            loaded_baseline_s = statistics.median(
                plain_load_s(artifacts / "v2" / "model.onnx", x) for _ in range(3)
            )
        answers = list(load.answers)
    finally:
        serving.close()
        slot_installer.close()
    assert slot_installer.slot_reports()["default"].state == "trial"
    switched = steps.at["switch"]
    (reload_start, reload_end), *_ = [(s0, s1) for s0, s1 in sync_at if s1 >= switched]
    first_v2 = min((a for a in answers if a.artifact == "v2"), key=lambda a: a.end)
    steady = [a.end - a.start for a in answers if a.end <= steady_end and a.error is None]
    steady_p99 = float(np.percentile(steady, 99))
    window = [a for a in answers if a.end >= accepted and a.start <= first_v2.end]

    def worst(lo: float, hi: float) -> float:
        return max((a.end - a.start for a in answers if a.end >= lo and a.start <= hi), default=0.0)

    return {
        "baseline_load_ms": baseline_s * 1000,
        "baseline_loaded_ms": loaded_baseline_s * 1000,
        **{f"step_{k}_ms": v for k, v in step_ms(data / "journal" / "default.jsonl").items()},
        "swap_ms": (first_v2.end - accepted) * 1000,
        "swap_ratio": (first_v2.end - accepted) / baseline_s,
        "swap_ratio_loaded": (first_v2.end - accepted) / loaded_baseline_s,
        "install_ms": (switched - accepted) * 1000,
        "reload_ms": (reload_end - reload_start) * 1000,
        "reload_ratio_loaded": (reload_end - reload_start) / loaded_baseline_s,
        "old_after_switch_ms": (first_v2.end - switched) * 1000,
        "steady_p99_ms": steady_p99 * 1000,
        "window_requests": len(window),
        "window_failed": sum(1 for a in window if a.error is not None),
        "window_delayed": sum(1 for a in window if a.end - a.start > 2 * steady_p99),
        "install_max_ratio": worst(accepted, switched) / steady_p99,
        "reload_max_ratio": worst(reload_start, reload_end) / steady_p99,
        "around_swap_max_ratio": worst(first_v2.start - 0.05, first_v2.start + 0.05) / steady_p99,
        "failed_total": sum(1 for a in answers if a.error is not None),
        "wrong_version_total": sum(
            1
            for a in answers
            if a.output is not None and not np.allclose(a.output, want[str(a.artifact)], atol=1e-5)
        ),
        "old_after_new_total": sum(1 for a in answers if a.artifact == "v1" and a.start > first_v2.end),
        "answers_total": len(answers),
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
    parser.add_argument("--think-ms", type=float, default=1.0, help="pause of each client between requests")
    args = parser.parse_args()
    v1, v2 = mlp(args.width, args.layers, 1), mlp(args.width, args.layers, 2)
    onnx.checker.check_model(onnx.load_from_string(v2))
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(Path(tmp), v1, v2, args.clients, args.steady_s, args.think_ms / 1000))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"model: MLP {args.layers}x{args.width}, {len(v2) / 1e6:.1f} MB; {args.clients} client threads "
        f"calling InferenceService.predict (the agent's serving path), {args.think_ms:g} ms apart; "
        f"median of {args.repeat} runs"
    )
    print(
        f"baseline: plain InferenceSession load + 1 run      {med['baseline_load_ms']:8.1f} ms idle, "
        f"{med['baseline_loaded_ms']:.1f} ms under the client load"
    )
    print(
        f"assignment accepted -> new model serving         {med['swap_ms']:8.1f} ms"
        f"  = {med['swap_ratio']:.2f}x the idle baseline, {med['swap_ratio_loaded']:.2f}x under load"
    )
    print(
        f"  install (accepted -> active pointer switched)  {med['install_ms']:8.1f} ms; per step (ms): "
        + ", ".join(f"{k[5:-3]} {v:.1f}" for k, v in med.items() if k.startswith("step_"))
    )
    print(
        f"  serving layer load + warm-up of v2 (sync)      {med['reload_ms']:8.1f} ms"
        f"  = {med['reload_ratio_loaded']:.2f}x a plain load under load"
    )
    print(f"  pointer switched -> v2 answering (v1 answers) {med['old_after_switch_ms']:8.1f} ms")
    print(f"steady-state request p99 (latency baseline)      {med['steady_p99_ms']:8.3f} ms")
    print(
        f"requests between accepted and v2 serving: {med['window_requests']:.0f}, failed "
        f"{med['window_failed']:.0f}, delayed over 2x steady p99 {med['window_delayed']:.0f}"
    )
    print(f"worst request latency during the install         {med['install_max_ratio']:8.1f}x steady p99")
    print(f"worst request latency during the serving reload  {med['reload_max_ratio']:8.1f}x steady p99")
    print(f"worst request latency within 50 ms of the swap   {med['around_swap_max_ratio']:8.1f}x steady p99")
    print(
        f"all runs: {sum(r['answers_total'] for r in runs):.0f} answers, failed "
        f"{sum(r['failed_total'] for r in runs):.0f}, answer not from the version it names "
        f"{sum(r['wrong_version_total'] for r in runs):.0f}, v1 answers to requests started after v2 served "
        f"{sum(r['old_after_new_total'] for r in runs):.0f}"
    )


if __name__ == "__main__":
    main()
