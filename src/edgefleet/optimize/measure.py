"""Latency and compatibility of candidates on this machine, with a class's settings."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.noise import Latency, latency_from_samples
from edgefleet.optimize.session import SessionSettings, open_session

__all__ = ["OVERLOADED", "Compatibility", "check_compatibility", "measure_latency", "others_load_per_cpu"]

# others' runnable threads per CPU above which the build host's absolute latencies say more about its
# neighbours than about the model (relative, paired comparisons stay valid)
OVERLOADED = 0.5


@dataclass(frozen=True)
class Compatibility:
    opset: int
    op_types: tuple[str, ...]
    unsupported_ops: tuple[str, ...]
    loads: bool
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.loads and not self.unsupported_ops

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def others_load_per_cpu(own_threads: int, cpus: int | None = None) -> float | None:
    """The 1-minute load average minus our own measuring threads, per CPU we may use; None off Linux."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    cpus = cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return max(0.0, load - own_threads) / max(cpus, 1)


def check_compatibility(
    model_path: Path, settings: SessionSettings, supported_ops: list[str]
) -> Compatibility:
    """Opset, ops against the class's op list (empty: all), and whether the runtime loads it here."""
    model = onnx.load(str(model_path), load_external_data=False)
    ops = tuple(sorted({n.op_type for n in model.graph.node}))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    unsupported = tuple(op for op in ops if supported_ops and op not in supported_ops)
    try:
        open_session(model_path, settings)
    except Exception as exc:
        return Compatibility(int(opset), ops, unsupported, loads=False, error=str(exc)[:300])
    return Compatibility(int(opset), ops, unsupported, loads=True)


def measure_latency(
    models: dict[str, Path],
    settings: SessionSettings,
    data: Dataset,
    *,
    warmup_runs: int,
    runs: int,
    rounds: int = 8,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Latency]:
    """Batch-1 latency over real inputs (cycled) after warm-up, in this process.

    All models are timed interleaved, in ``rounds`` rounds with a rotating order, so that frequency
    scaling, a noisy neighbour or cache warmth hits every candidate alike instead of whichever ran last;
    the per-round medians let the selection compare candidates pairwise (``noise.speedup``). Memory is
    not measured here: a process that has loaded other models says nothing true about one model's peak
    (``emulate`` measures it in a fresh process per candidate).
    """
    sessions = {}
    samples = [data.sample(i % data.count) for i in range(min(max(runs, 1), data.count))]
    for name, path in models.items():
        session = open_session(path, settings)
        outputs = [o.name for o in session.get_outputs()]
        for i in range(warmup_runs):
            session.run(outputs, samples[i % len(samples)])
        sessions[name] = (session, outputs)
    rounds = max(1, min(rounds, runs))
    per_round = max(1, -(-runs // rounds))
    times: dict[str, list[list[float]]] = {name: [] for name in models}
    order = list(models)
    for round_index in range(rounds):
        shift = round_index % max(len(order), 1)
        for name in order[shift:] + order[:shift]:
            session, outputs = sessions[name]
            this_round = []
            for i in range(per_round):
                feed = samples[(round_index * per_round + i) % len(samples)]
                start = clock()
                session.run(outputs, feed)
                this_round.append((clock() - start) * 1000.0)
            times[name].append(this_round)
    run_id = uuid.uuid4().hex
    return {
        name: latency_from_samples([t for r in per for t in r], rounds=per, run_id=run_id)
        for name, per in times.items()
    }
