"""Latency, peak memory and compatibility of one candidate on this machine, with a class's settings."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.session import SessionSettings, open_session

__all__ = ["Compatibility", "MemoryProbe", "Performance", "check_compatibility", "measure_performance"]


@dataclass(frozen=True)
class Performance:
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    runs: int
    peak_memory_bytes: int
    memory_method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class MemoryProbe:
    """Peak resident memory of this process over a block, from ``/proc/self`` (Linux).

    Resets the kernel's high-water mark (``clear_refs`` 5) so the peak belongs to the block; where that is
    not allowed it falls back to sampling ``VmRSS`` after every step (a lower bound).
    """

    def __init__(self, status_path: Path = Path("/proc/self/status")) -> None:
        self._status = status_path
        self.method = "vmhwm"
        self._baseline = 0
        self._sampled = 0

    def _read(self) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            for line in self._status.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return out

    def start(self) -> None:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "vmrss_sampled"
        self._baseline = self._read().get("VmRSS", 0)
        self._sampled = self._baseline

    def sample(self) -> None:
        self._sampled = max(self._sampled, self._read().get("VmRSS", 0))

    def peak_bytes(self) -> int:
        now = self._read()
        self.sample()
        peak = now.get("VmHWM", 0) if self.method == "vmhwm" else self._sampled
        return max(0, max(peak, self._sampled) - self._baseline)


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


def measure_performance(
    models: dict[str, Path],
    settings: SessionSettings,
    data: Dataset,
    *,
    warmup_runs: int,
    runs: int,
    rounds: int = 5,
    clock: Callable[[], float] = time.perf_counter,
    probe: MemoryProbe | None = None,
) -> dict[str, Performance]:
    """Batch-1 latency over real inputs (cycled) after warm-up, and peak memory of load + warm-up.

    All models are timed interleaved, in ``rounds`` rounds with a rotating order, so that frequency
    scaling, a noisy neighbour or cache warmth hits every candidate alike instead of whichever ran last.
    """
    probe = probe or MemoryProbe()
    sessions = {}
    peaks: dict[str, int] = {}
    samples = [data.sample(i % data.count) for i in range(min(max(runs, 1), data.count))]
    for name, path in models.items():
        probe.start()
        session = open_session(path, settings)
        probe.sample()
        outputs = [o.name for o in session.get_outputs()]
        for i in range(warmup_runs):
            session.run(outputs, samples[i % len(samples)])
        peaks[name] = probe.peak_bytes()
        sessions[name] = (session, outputs)
    times: dict[str, list[float]] = {name: [] for name in models}
    per_round = max(1, -(-runs // rounds))
    order = list(models)
    for round_index in range(rounds):
        shift = round_index % max(len(order), 1)
        for name in order[shift:] + order[:shift]:
            session, outputs = sessions[name]
            for i in range(per_round):
                feed = samples[(round_index * per_round + i) % len(samples)]
                start = clock()
                session.run(outputs, feed)
                times[name].append((clock() - start) * 1000.0)
    result = {}
    for name, values in times.items():
        arr = np.asarray(values[:runs])
        p50, p90, p95, p99 = (float(np.percentile(arr, q)) for q in (50, 90, 95, 99))
        result[name] = Performance(p50, p90, p95, p99, len(arr), peaks[name], probe.method)
    return result
