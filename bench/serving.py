"""Serving overheads on the reference digits CNN at batch 1, as ratios of baselines measured in this run.

    .venv/bin/python bench/serving.py [--iterations 3000] [--work-dir DIR]

Prints:
- in-process API (``InferenceService.predict``) latency p50/p99 / raw ``InferenceSession.run`` on the same
  model with the same thread settings (target: <= 1.05 at p50); calls are interleaved so drift hits both;
- the local HTTP endpoint's added latency in microseconds (keep-alive loopback, ``.npy`` in, JSON out),
  p50 and p99 over the in-process API;
- shadow mode's cost on the active path: API p50/p99 with a shadow candidate at 10% sampling / without;
- resident memory of an agent process serving the model / a bare onnxruntime process holding it.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def build_artifact(work: Path) -> Path:
    """Train the reference CNN (seeded, a few seconds) and lay it out as an artifact directory."""
    import edgefleet.build.digits as module

    trained = work / "trained"
    if not (trained / "model.onnx").exists():
        assert module.main([str(trained)]) == 0
    art = work / "artifact"
    art.mkdir(exist_ok=True)
    model = (trained / "model.onnx").read_bytes()
    x = np.load(trained / "validation.npz")["input"][:4]
    golden = io.BytesIO()
    np.savez(golden, **{"input:input": x})
    files = {"model.onnx": model, "golden.npz": golden.getvalue()}
    for name, data in files.items():
        (art / name).write_bytes(data)
    manifest = {
        "schema_version": 1,
        "model": "digits-cnn",
        "version": "1.0.0",
        "hardware_class": "bench-cpu",
        "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
        "entrypoint": "model.onnx",
        "files": [
            {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for n, d in files.items()
        ],
        "signature": {
            "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}],
        },
        "optimization": {"source_sha256": hashlib.sha256(model).hexdigest()},
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 1000.0, "warmup_runs": 50},
        "release_counter": 1,
    }
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def interleaved(fns: list[Callable[[], object]], iterations: int) -> list[list[float]]:
    """Time each fn once per round, rotating the order, so drift and noise hit all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        for _ in range(200):
            fn()
    order = list(range(len(fns)))
    for i in range(iterations):
        for j in order[i % len(fns) :] + order[: i % len(fns)]:
            start = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - start)
    return times


RSS_BARE = """
import numpy as np, onnxruntime as ort, sys
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1] + "/model.onnx", so, providers=["CPUExecutionProvider"])
s.run(None, {"input": np.zeros((1, 1, 8, 8), np.float32)})
print([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
"""
RSS_AGENT = """
import numpy as np, sys
from edgefleet.agent import load, predict
load(sys.argv[1], start=True)
predict({"input": np.zeros((1, 1, 8, 8), np.float32)})
print([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
"""


def rss_kb(code: str, art: Path) -> int:
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code, str(art)], capture_output=True, text=True, check=True
        )
        runs.append(int(out.stdout.strip().splitlines()[-1]))
    return int(statistics.median(runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
    from edgefleet.agent.serve import (
        InferenceService,
        LocalEndpoint,
        ShadowConfig,
        StaticSource,
        read_artifact_dir,
    )

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="edgefleet-bench-serving-"))
    art_dir = build_artifact(work)
    artifact = read_artifact_dir(art_dir)
    x = np.load(work / "trained" / "validation.npz")["input"][:1].copy()
    print(f"# reference CNN {artifact.model_version}, batch 1, {args.iterations} interleaved iterations")
    print(f"# cpu count {os.cpu_count()}, onnxruntime {ort.__version__}, intra/inter threads 1/1")

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    raw = ort.InferenceSession(str(art_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    feeds = {"input": x}
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())

    def run_raw() -> object:
        return raw.run(None, feeds)

    def run_api() -> object:
        return service.predict(feeds)

    t_raw, t_api = interleaved([run_raw, run_api], args.iterations)
    raw50, raw99 = pct(t_raw, 0.5), pct(t_raw, 0.99)
    api50, api99 = pct(t_api, 0.5), pct(t_api, 0.99)
    print(f"raw InferenceSession.run       p50 {raw50 * 1e6:8.1f} us   p99 {raw99 * 1e6:8.1f} us")
    print(f"in-process API predict         p50 {api50 * 1e6:8.1f} us   p99 {api99 * 1e6:8.1f} us")
    print(f"RATIO api/raw                  p50 {api50 / raw50:.3f}       p99 {api99 / raw99:.3f}")
    print(f"# constant overhead per call   p50 {(api50 - raw50) * 1e6:8.1f} us")

    body = io.BytesIO()
    np.save(body, x)
    payload = body.getvalue()
    with LocalEndpoint(service) as endpoint:
        conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
        headers = {"Content-Type": "application/x-npy"}

        def run_http() -> object:
            conn.request("POST", "/v1/predict", payload, headers)
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == 200, data
            return data

        t_api2, t_http = interleaved([run_api, run_http], max(500, args.iterations // 2))
        conn.close()
    added50 = (pct(t_http, 0.5) - pct(t_api2, 0.5)) * 1e6
    added99 = (pct(t_http, 0.99) - pct(t_api2, 0.99)) * 1e6
    http50, http99 = pct(t_http, 0.5) * 1e6, pct(t_http, 0.99) * 1e6
    print(f"HTTP endpoint (loopback, npy)  p50 {http50:8.1f} us   p99 {http99:8.1f} us")
    print(f"HTTP ADDED over in-process     p50 {added50:8.1f} us   p99 {added99:8.1f} us")

    shadowed = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())
    shadowed.start_shadow(artifact, ShadowConfig(sample_fraction=0.1, max_pending=4))

    def run_shadowed() -> object:
        return shadowed.predict(feeds)

    t_plain, t_shadow = interleaved([run_api, run_shadowed], args.iterations)
    shadowed.drain_shadow()
    stats = shadowed.stop_shadow()
    s50 = pct(t_shadow, 0.5) / pct(t_plain, 0.5)
    s99 = pct(t_shadow, 0.99) / pct(t_plain, 0.99)
    print(f"RATIO shadow(10%)/no shadow    p50 {s50:.3f}       p99 {s99:.3f}")
    if stats is not None:
        print(
            f"# shadow compared {stats.samples}, skipped over budget {stats.skipped_budget}, "
            f"top-1 agreement {stats.top1_agreement}"
        )
    service.close()
    shadowed.close()

    bare = rss_kb(RSS_BARE, art_dir)
    agent = rss_kb(RSS_AGENT, art_dir)
    print(f"RSS bare onnxruntime process   {bare / 1024:8.1f} MiB")
    print(f"RSS agent serving the model    {agent / 1024:8.1f} MiB")
    print(f"RATIO agent/bare RSS           {agent / bare:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
