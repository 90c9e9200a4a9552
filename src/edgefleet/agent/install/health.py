"""The health check a candidate must pass before it may serve (ARCHITECTURE 3.4).

Golden vectors (``input:<name>`` / ``output:<name>`` arrays in the artifact's ``.npz``, first axis = samples)
run one sample at a time (batch 1) and must match the expected outputs within the manifest's tolerances;
NaN/Inf and wrong shapes fail outright. Then, after the manifest's warm-up runs, the median latency at batch 1
must stay under the ceiling. The whole check runs in a worker thread under a deadline: a run that hangs is
cancelled (``LoadedModel.cancel``) and the candidate fails with ``health_check_timeout``.
"""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgefleet.agent.runtime.base import InferenceFailedError, LoadedModel
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.manifest import HealthCheck

__all__ = [
    "HealthCheckFailedError",
    "HealthPolicy",
    "HealthReport",
    "compare_outputs",
    "load_golden",
    "run_health_check",
]

MAX_GOLDEN_BYTES = 64 * 1024 * 1024
MAX_GOLDEN_SAMPLES = 64


class HealthCheckFailedError(EdgefleetError):
    """A candidate failed its health check; ``code`` says how (``health_*``)."""

    code = "health_check_failed"


@dataclass(frozen=True)
class HealthPolicy:
    timeout_s: float = 60.0
    latency_runs: int = 5
    max_samples: int = MAX_GOLDEN_SAMPLES


@dataclass(frozen=True)
class HealthReport:
    samples: int
    latency_ms: float
    latency_ceiling_ms: float
    details: dict[str, object] = field(default_factory=dict)


def load_golden(path: Path, *, max_bytes: int = MAX_GOLDEN_BYTES) -> tuple[dict[str, np.ndarray], ...]:
    """(inputs, expected outputs) from a golden ``.npz``; no pickles, bounded size."""
    size = path.stat().st_size
    if size > max_bytes:
        raise HealthCheckFailedError(
            "golden file too large", code="health_golden_unreadable", expected=f"<= {max_bytes}", got=size
        )
    inputs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                for prefix, into in (("input:", inputs), ("input.", inputs)):
                    if key.startswith(prefix):
                        into[key[len(prefix) :]] = npz[key]
                for prefix, into in (("output:", outputs), ("output.", outputs)):
                    if key.startswith(prefix):
                        into[key[len(prefix) :]] = npz[key]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise HealthCheckFailedError(
            f"golden file is unreadable: {exc}", code="health_golden_unreadable", got=path.name
        ) from exc
    if not inputs or not outputs:
        raise HealthCheckFailedError(
            "golden file lacks inputs or outputs",
            code="health_golden_unreadable",
            expected="input:<name> and output:<name> arrays",
            got=sorted([*inputs, *outputs]),
        )
    counts = {a.shape[0] if a.ndim else 0 for a in (*inputs.values(), *outputs.values())}
    if len(counts) != 1 or 0 in counts:
        raise HealthCheckFailedError(
            "golden arrays disagree on the sample count", code="health_golden_unreadable", got=sorted(counts)
        )
    return inputs, outputs


def compare_outputs(
    expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], *, atol: float, rtol: float
) -> None:
    """Pure: raise ``HealthCheckFailedError`` unless ``got`` matches ``expected`` within tolerance."""
    missing = sorted(set(expected) - set(got))
    if missing:
        raise HealthCheckFailedError(
            "model did not produce every golden output", code="health_output_missing", expected=missing
        )
    for name, want in expected.items():
        have = np.asarray(got[name])
        if have.shape != want.shape:
            raise HealthCheckFailedError(
                f"output {name!r} has the wrong shape",
                code="health_output_shape",
                expected=list(want.shape),
                got=list(have.shape),
            )
        if have.dtype.kind in "fc" and not np.isfinite(have).all():
            raise HealthCheckFailedError(
                f"output {name!r} holds NaN or Inf",
                code="health_output_not_finite",
                expected="finite values",
                got=f"{int((~np.isfinite(have)).sum())} non-finite of {have.size}",
            )
        if not np.allclose(have, want, atol=atol, rtol=rtol, equal_nan=False):
            worst = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64))))
            raise HealthCheckFailedError(
                f"output {name!r} differs from the golden output",
                code="health_output_mismatch",
                expected=f"atol={atol} rtol={rtol}",
                got=f"max abs diff {worst:.6g}",
            )


def _check(
    model: LoadedModel,
    golden_path: Path,
    check: HealthCheck,
    policy: HealthPolicy,
    clock: Callable[[], float],
) -> HealthReport:
    inputs, outputs = load_golden(golden_path)
    samples = min(next(iter(inputs.values())).shape[0], policy.max_samples)
    try:
        for i in range(samples):
            got = model.predict({k: v[i : i + 1] for k, v in inputs.items()})
            compare_outputs(
                {k: v[i : i + 1] for k, v in outputs.items()}, got, atol=check.atol, rtol=check.rtol
            )
        one = {k: v[0:1] for k, v in inputs.items()}
        for _ in range(check.warmup_runs):
            model.predict(one)
        timings_ms: list[float] = []
        for _ in range(max(1, policy.latency_runs)):
            start = clock()
            model.predict(one)
            timings_ms.append((clock() - start) * 1000.0)
    except InferenceFailedError as exc:
        if exc.code == "model_crashed":  # the trial worker died under the candidate: reported as such
            raise
        raise HealthCheckFailedError(
            f"inference failed during the health check: {exc.message}", code="health_inference_failed"
        ) from exc
    ordered = sorted(timings_ms)  # the median; statistics (or np.median, which loads numpy.ma) adds ~0.6 MiB
    latency_ms = (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2
    if latency_ms > check.latency_ceiling_ms:
        raise HealthCheckFailedError(
            "latency at batch 1 is over the ceiling",
            code="health_latency_over_ceiling",
            expected=f"<= {check.latency_ceiling_ms} ms",
            got=f"{latency_ms:.3f} ms (median of {len(timings_ms)})",
        )
    return HealthReport(samples=samples, latency_ms=latency_ms, latency_ceiling_ms=check.latency_ceiling_ms)


def run_health_check(
    model: LoadedModel,
    golden_path: Path,
    check: HealthCheck,
    policy: HealthPolicy | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> HealthReport:
    """Run the whole check under ``policy.timeout_s``. Raises ``HealthCheckFailedError``."""
    policy = policy or HealthPolicy()
    result: list[HealthReport | BaseException] = []

    def worker() -> None:
        try:
            result.append(_check(model, golden_path, check, policy, clock))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=worker, name="edgefleet-health", daemon=True)
    thread.start()
    thread.join(policy.timeout_s)
    if thread.is_alive():
        model.cancel()
        raise HealthCheckFailedError(
            "health check did not finish in time",
            code="health_check_timeout",
            expected=f"<= {policy.timeout_s} s",
        )
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
