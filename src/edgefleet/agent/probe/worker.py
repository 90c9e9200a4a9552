"""One candidate, measured in a process of its own: ``python -m edgefleet.agent.probe.worker SPEC OUT``.

It lowers its own priority and sets an address-space limit first; the runner kills it past its time or memory
budget; a crash or a hang here never reaches the serving process. Between timed runs the worker waits while
the runner's pause file exists (serving is busy), and counts that time as ``yielded_s``. Its figures are the
pydantic models (``edgefleet.sustained`` builds them for the build's emulation too): this short-lived child
imports pydantic, the resident agent reads its output with the struct (``protocol.wire.probe``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.agent.probe.figures import quality_figures
from edgefleet.agent.runtime.base import LoadOptions
from edgefleet.agent.serve.runtimes import adapter_for
from edgefleet.protocol.probe import (
    MAX_LATENCY_SAMPLES,
    PERTURBED_PREFIX,
    BatchLatency,
    CandidateFigures,
    PerturbedFigures,
    perturbed_sets,
)
from edgefleet.protocol.wire.base import read_part
from edgefleet.protocol.wire.manifest import Signature
from edgefleet.sustained.drift import percentiles_ms, sustained_figures
from edgefleet.sustained.thermal import read_thermal

__all__ = ["main", "measure"]

MAX_QUALITY_SAMPLES = 500
WARMUP_RUNS = 3


class _Pauser:
    def __init__(self, pause_path: Path | None) -> None:
        self.path = pause_path
        self.yielded_s = 0.0

    def wait(self) -> None:
        if self.path is None or not self.path.exists():
            return
        started = time.perf_counter()
        ack = self.path.with_suffix(".ack")  # tells the runner (and tests) the worker is yielding
        ack.touch()
        try:
            while self.path.exists():
                time.sleep(0.01)
        finally:
            ack.unlink(missing_ok=True)
        self.yielded_s += time.perf_counter() - started


def _batch(inputs: dict[str, np.ndarray], start: int, size: int) -> dict[str, np.ndarray]:
    count = len(next(iter(inputs.values())))
    idx = [(start + i) % count for i in range(size)]
    return {k: v[idx] for k, v in inputs.items()}


def _timed(
    predict: Callable[[dict[str, np.ndarray]], Any],
    inputs: dict[str, np.ndarray],
    batch: int,
    runs: int,
    pause: _Pauser,
) -> list[float]:
    for i in range(WARMUP_RUNS):
        predict(_batch(inputs, i, batch))
    out = []
    for i in range(runs):
        pause.wait()
        feed = _batch(inputs, i, batch)
        started = time.perf_counter()
        predict(feed)
        out.append(time.perf_counter() - started)
    return out


def measure(spec: dict[str, Any]) -> CandidateFigures:
    """Load, first inference, quality, latency per batch size, optional sustained load."""
    pause = _Pauser(Path(spec["pause_path"]) if spec.get("pause_path") else None)
    before = read_thermal()
    signature = read_part(spec["signature"], Signature, kind="signature")
    with np.load(spec["validation_path"], allow_pickle=False) as data:
        inputs = {k.removeprefix("input:"): data[k] for k in data.files if k.startswith("input:")}
        reference = data["reference"]
        labels = data["labels"] if "labels" in data.files else None
        perturbed = perturbed_sets({k: data[k] for k in data.files if k.startswith(PERTURBED_PREFIX)})
    adapter = adapter_for(spec["runtime"])
    options = LoadOptions(
        execution_providers=tuple(spec["providers"]),
        intra_op_threads=int(spec["intra_op"]),
        inter_op_threads=int(spec["inter_op"]),
    )
    started = time.perf_counter()
    model = adapter.load(Path(spec["model_path"]), signature, options)
    load_ms = (time.perf_counter() - started) * 1000.0
    started = time.perf_counter()
    model.predict(_batch(inputs, 0, 1))
    first_ms = (time.perf_counter() - started) * 1000.0
    judged = spec["judged_output"]
    count = min(len(reference), MAX_QUALITY_SAMPLES)
    outputs = []
    for i in range(count):
        pause.wait()
        outputs.append(model.predict(_batch(inputs, i, 1))[judged][0])
    quality = quality_figures(
        spec["task"], np.stack(outputs), reference[:count], None if labels is None else labels[:count]
    )
    robustness = {}
    for perturbation, (p_inputs, p_reference) in sorted(perturbed.items()):
        p_count = min(len(p_reference), MAX_QUALITY_SAMPLES)
        p_outputs = []
        for i in range(p_count):
            pause.wait()
            p_outputs.append(model.predict(_batch(p_inputs, i, 1))[judged][0])
        figures = quality_figures(
            spec["task"],
            np.stack(p_outputs),
            p_reference[:p_count],
            None if labels is None else labels[:p_count],
        )
        robustness[perturbation] = PerturbedFigures(
            **{k: figures.get(k) for k in ("agreement_metric", "agreement", "task_metric", "task_value")},
            has_nan=bool(figures.get("has_nan")),
        )
    latency = []
    samples_ms: list[float] = []
    for batch in spec["batch_sizes"]:
        times = _timed(model.predict, inputs, int(batch), int(spec["runs"]), pause)
        latency.append(BatchLatency(batch=int(batch), runs=len(times), **percentiles_ms(times)))
        if int(batch) == 1:
            step = max(1, -(-len(times) // MAX_LATENCY_SAMPLES))
            samples_ms = [t * 1000.0 for t in times[::step]][:MAX_LATENCY_SAMPLES]
    sustained = None
    duration_s = float(spec.get("sustained_s") or 0.0)
    if duration_s > 0:
        hot_before = read_thermal()
        samples: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        i = 0
        while (now := time.perf_counter() - t0) < duration_s:
            pause.wait()
            feed = _batch(inputs, i, 1)
            run_started = time.perf_counter()
            model.predict(feed)
            samples.append((now, time.perf_counter() - run_started))
            i += 1
        sustained = sustained_figures(samples, duration_s, hot_before, read_thermal())
    model.close()
    return CandidateFigures(
        name=spec["name"],
        status="measured",
        load_ms=load_ms,
        first_inference_ms=first_ms,
        latency=latency,
        latency_samples_ms=samples_ms,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        yielded_s=pause.yielded_s,
        thermal_before=before,
        thermal_after=read_thermal(),
        sustained=sustained,
        robustness=robustness,
        **quality,
    )


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    # Lower priority than serving, and a hard address-space limit, before the runtime is loaded.
    os.nice(int(spec.get("nice", 10)))
    if spec.get("max_address_bytes"):
        limit = int(spec["max_address_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        figures = measure(spec)
    except Exception as exc:  # the runtime's own failure: report it, exit cleanly
        code = getattr(exc, "code", "probe_candidate_failed")
        figures = CandidateFigures(
            name=spec["name"], status="failed", error_code=str(code)[:64], error=str(exc)[:1000]
        )
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures.model_dump(mode="json")))
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    sys.exit(main(sys.argv[1:]))
