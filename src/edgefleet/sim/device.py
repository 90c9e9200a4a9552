"""A simulated device: polls its desired state, "installs" what it is told, reports, and serves traffic.

The install is instantaneous (one poll interval covers download + health check + switch); an artifact in
``Behaviour.failing`` fails its health check and the device keeps its previous one, reporting the failure
like the real installer (``failed_artifact`` + ``failure_code``). Each step while online sends one
telemetry window of the active artifact with that artifact's latency.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edgefleet.protocol.telemetry import LatencyHistogram
from edgefleet.sim.link import DeviceLink

__all__ = ["Behaviour", "SimDevice", "StepResult"]

MAX_REQUESTS_PER_WINDOW = 10_000


@dataclass(frozen=True)
class Behaviour:
    """How artifacts behave on the simulated fleet (shared by every device)."""

    base_latency_ms: float = 12.0
    latency_factor: dict[str, float] = field(default_factory=dict)
    """artifact id -> latency multiplier (e.g. 3.0 for a model that is 3x slower)."""
    failing: frozenset[str] = frozenset()
    """artifact ids whose health check fails on install."""
    error_rate: dict[str, float] = field(default_factory=dict)
    requests_per_window: int = 40
    jitter: float = 0.1
    """Latency is uniformly spread by +-``jitter`` around its mean."""
    quiet: frozenset[str] = frozenset()
    """artifact ids whose traffic is served but whose telemetry is not uploaded (to keep big simulations
    cheap once a version's telemetry is no longer of interest)."""


@dataclass(frozen=True)
class StepResult:
    device_id: str
    online: bool
    active: str | None
    switched_to: str | None = None
    failed: str | None = None


@dataclass
class SimDevice:
    device_id: str
    link: DeviceLink
    slot: str = "default"
    active: str | None = None
    failed_artifact: str | None = None
    generation: int | None = None
    desired: str | None = None
    boot_id: str = "boot-1"
    report_sequence: int = 0
    telemetry_sequence: int = 0
    rng: random.Random = field(default_factory=random.Random)
    versions: dict[str, str] = field(default_factory=dict)
    """artifact id -> ``<model>/<version>`` as learnt from desired states (telemetry names versions so)"""

    def step(self, behaviour: Behaviour, *, now: datetime, window_s: float, serve: bool = True) -> StepResult:
        """One poll interval while online: poll, act on a change, report it, send one telemetry window."""
        view = self.link.poll(self.generation)
        if view is not None:
            self.generation = view.generation
            self.versions.update(view.versions)
            self.desired = view.slots.get(self.slot)
        switched = failed = None
        if self.desired is not None and self.desired not in (self.active, self.failed_artifact):
            if self.desired in behaviour.failing:
                self.failed_artifact = failed = self.desired
            else:
                self.active = switched = self.desired
                self.failed_artifact = None
            self._report(now)
        elif self.report_sequence == 0:
            self._report(now)
        if (
            serve
            and self.active is not None
            and self.active not in behaviour.quiet
            and behaviour.requests_per_window > 0
        ):
            self._serve(behaviour, now=now, window_s=window_s)
        return StepResult(self.device_id, True, self.active, switched, failed)

    def _report(self, now: datetime) -> None:
        self.report_sequence += 1
        slot: dict[str, Any] = {"active": self.active, "state": "idle"}
        if self.failed_artifact is not None:
            slot.update(failed_artifact=self.failed_artifact, failure_code="health_check_failed")
        self.link.report(
            {
                "sequence": self.report_sequence,
                "boot_id": self.boot_id,
                "reported_at": now.isoformat(),
                "desired_generation": self.generation or 0,
                "slots": {self.slot: slot},
            }
        )

    def _serve(self, behaviour: Behaviour, *, now: datetime, window_s: float) -> None:
        assert self.active is not None
        requests = min(behaviour.requests_per_window, MAX_REQUESTS_PER_WINDOW)
        mean_ms = behaviour.base_latency_ms * behaviour.latency_factor.get(self.active, 1.0)
        histogram = LatencyHistogram()
        for _ in range(requests):
            histogram.add(mean_ms * (1 + self.rng.uniform(-behaviour.jitter, behaviour.jitter)))
        errors = sum(
            1 for _ in range(requests) if self.rng.random() < behaviour.error_rate.get(self.active, 0.0)
        )
        self.telemetry_sequence += 1
        self.link.send_telemetry(
            {
                "device_id": self.device_id,
                "sent_at": now.isoformat(),
                "records": [
                    {
                        "boot_id": self.boot_id,
                        "sequence": self.telemetry_sequence,
                        "kind": "window",
                        "window": {
                            "start_at": (now - timedelta(seconds=window_s)).isoformat(),
                            "end_at": now.isoformat(),
                            "models": [
                                {
                                    "model_version": self.versions.get(self.active, self.active),
                                    "requests": requests,
                                    "errors_by_code": {"inference_failed": errors} if errors else {},
                                    "latency": histogram.model_dump(mode="json"),
                                }
                            ],
                        },
                    }
                ],
            }
        )
