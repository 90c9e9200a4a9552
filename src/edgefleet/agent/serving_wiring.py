"""How the serving layer meets the installer and telemetry inside one agent process.

* ``TrialMetrics`` forwards every served request to telemetry and counts it for the installer's trial window
  (a failure rate above the trial threshold rolls the new version back without the network);
* ``start_serving`` builds the ``InferenceService`` on the installer's active slot, with the class's fallback
  artifact from the installer's ``fallback`` slot (pin one per class: ``edgefleet device pin ART --class C
  --slot fallback``) or a provisioned ``--fallback-dir``, and the local HTTP endpoint; it writes where it
  listens to ``<data dir>/serving-endpoint`` for local clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgefleet.agent.serve.config import ServingConfig
from edgefleet.agent.serve.endpoint import EndpointConfig, LocalEndpoint
from edgefleet.agent.serve.metrics import MetricsSink
from edgefleet.agent.serve.service import InferenceService
from edgefleet.agent.serve.shadow import ShadowConfig
from edgefleet.agent.serve.source import SlotActiveSource
from edgefleet.durable import atomic_write_bytes
from edgefleet.protocol.hardware_class import HardwareClass

__all__ = ["ENDPOINT_FILE", "FALLBACK_SLOT", "SHADOW_SUFFIX", "Serving", "TrialMetrics", "start_serving"]

ENDPOINT_FILE = "serving-endpoint"
SHADOW_SUFFIX = ".shadow"
FALLBACK_SLOT = "fallback"
"""A rollout's shadow stage assigns the candidate to ``<slot>.shadow`` (the server's ``shadow_slot``)."""


class _TrialCounter(Protocol):
    def record_inference(self, slot: str, *, ok: bool) -> None: ...


class TrialMetrics:
    """A ``MetricsSink`` that also feeds the installer's trial counters for one slot."""

    def __init__(self, inner: MetricsSink, installer: _TrialCounter, slot: str) -> None:
        self._inner = inner
        self._installer = installer
        self._slot = slot

    def record_request(
        self, model_version: str, rung: str, latency_ms: float, error_code: str | None = None
    ) -> None:
        self._inner.record_request(model_version, rung, latency_ms, error_code)
        self._installer.record_inference(self._slot, ok=error_code is None)

    def record_shadow(self, agreement: float | bool, *, model_version: str = "unknown") -> None:
        self._inner.record_shadow(agreement, model_version=model_version)

    def record_degraded_time(self, rung: str, seconds: float) -> None:
        self._inner.record_degraded_time(rung, seconds)

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None:
        return self._inner.record_event(kind, code, details)


@dataclass
class Serving:
    source: SlotActiveSource
    service: InferenceService
    endpoint: LocalEndpoint
    shadow_source: SlotActiveSource
    fallback_source: SlotActiveSource
    shadow_config: ShadowConfig = field(default_factory=ShadowConfig)
    shadowing: str | None = None
    """The artifact id running in shadow now, if any."""

    def poll(self) -> None:
        """Pick up a new active version (call after install steps)."""
        self.source.poll()

    def sync(self, desired: dict[str, str], slot: str = "default") -> None:
        """After install steps: serve the slot's active version, and run ``<slot>.shadow`` beside it exactly
        while the desired state asks for it and the candidate passed its install health check."""
        self.source.poll()
        self.shadow_source.poll()
        self.fallback_source.poll()
        wanted = desired.get(slot + SHADOW_SUFFIX)
        candidate = self.shadow_source.active()
        ready = candidate if candidate is not None and candidate.artifact_id == wanted else None
        if ready is None and self.shadowing is not None:
            self.service.stop_shadow()
            self.shadowing = None
        elif ready is not None and self.shadowing != ready.artifact_id:
            self.service.start_shadow(ready, self.shadow_config)
            self.shadowing = ready.artifact_id

    def close(self) -> None:
        self.endpoint.close()
        self.service.close()


def start_serving(
    data_root: Path,
    *,
    hardware_class: HardwareClass | None,
    metrics: MetricsSink,
    endpoint: EndpointConfig,
    fallback_dir: Path | None = None,
    shadow_fraction: float = 0.1,
    slot: str = "default",
) -> Serving:
    from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter

    source = SlotActiveSource(data_root, slot)
    overrides: dict[str, Any] = {"status_path": data_root / "serving.json", "fallback_dir": fallback_dir}
    config = (
        ServingConfig.for_class(hardware_class, **overrides) if hardware_class else ServingConfig(**overrides)
    )
    # The class's fallback artifact: pinned per class in slot "fallback" (installed and health-checked like
    # any version); a provisioned --fallback-dir is used only when given.
    fallback_source = SlotActiveSource(data_root, FALLBACK_SLOT)
    service = InferenceService(
        source,
        OnnxRuntimeAdapter(),
        config,
        metrics=metrics,
        fallback_source=fallback_source if fallback_dir is None else None,
    ).start()
    local = LocalEndpoint(service, endpoint).start()
    atomic_write_bytes(data_root / ENDPOINT_FILE, local.url.encode())
    shadow_source = SlotActiveSource(data_root, slot + SHADOW_SUFFIX)
    return Serving(
        source, service, local, shadow_source, fallback_source, ShadowConfig(sample_fraction=shadow_fraction)
    )
