"""How the serving layer meets the installer and telemetry inside one agent process.

* ``TrialMetrics`` forwards every served request to telemetry and counts it for the installer's trial window
  (a failure rate above the trial threshold rolls the new version back without the network). A request
  answered by the fallback artifact or the rule counts as a failure of the version on trial
  (``install.trial.trial_sample``);
* ``Serving.feed_watchdog`` heartbeats the installer's trial while the service makes progress on a model
  rung (``serving_alive``); the agent calls it from its own thread, so a hung model run, a service stuck
  below its model rungs or a dead agent stops the heartbeats and ``TrialPolicy.watchdog_s`` rolls back;
* ``start_serving`` builds the ``InferenceService`` on the installer's active slot, with the class's fallback
  artifact from the installer's ``fallback`` slot (pin one per class: ``edgefleet device pin ART --class C
  --slot fallback``) or a provisioned ``--fallback-dir``, and the local HTTP endpoint; it writes where it
  listens to ``<data dir>/serving-endpoint`` for local clients;
* ``TrialIsolation`` loads the version on trial in the served slot in a supervised worker process
  (``runtime.worker``) and every other version in-process: a model that crashes its runtime during its trial
  kills only the worker, whose death the installer turns into a counted rollback (``trial_model_crashed``)
  while the agent keeps serving: from the worker's death on, serving answers from the ladder's fallback or
  rule (``InferenceService.model_died``) until the previous version is reloaded. ``Serving.sync`` reloads
  in-process after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.install.trial import MODEL_RUNGS, trial_sample
from edgefleet.agent.runtime.base import LoadedModel, LoadOptions, RuntimeAdapter
from edgefleet.agent.runtime.worker import DEFAULT_SPEC, WorkerAdapter
from edgefleet.agent.serve.config import ServingConfig
from edgefleet.agent.serve.endpoint import EndpointConfig, LocalEndpoint
from edgefleet.agent.serve.metrics import MetricsSink, ShadowSample
from edgefleet.agent.serve.runtimes import RuntimeAdapters
from edgefleet.agent.serve.service import InferenceService, Liveness
from edgefleet.agent.serve.shadow import ShadowConfig
from edgefleet.agent.serve.source import SlotActiveSource
from edgefleet.durable import atomic_write_bytes
from edgefleet.protocol.telemetry_kinds import error_kind
from edgefleet.protocol.wire.hardware_class import HardwareClass
from edgefleet.protocol.wire.manifest import Signature

__all__ = [
    "ENDPOINT_FILE",
    "FALLBACK_SLOT",
    "SERVED_SLOT",
    "SHADOW_SUFFIX",
    "STALL_S",
    "Serving",
    "TrialIsolation",
    "TrialMetrics",
    "serving_alive",
    "start_serving",
]

ENDPOINT_FILE = "serving-endpoint"
SERVED_SLOT = "default"
"""The slot the agent serves (and whose trial its watchdog watches)."""
SHADOW_SUFFIX = ".shadow"
FALLBACK_SLOT = "fallback"
"""A rollout's shadow stage assigns the candidate to ``<slot>.shadow`` (the server's ``shadow_slot``)."""
STALL_S = 10.0
"""A run held this long while no other run starts or ends: the service is stuck (it stops heartbeating)."""


class _TrialCounter(Protocol):
    def record_inference(self, slot: str, *, ok: bool) -> None: ...

    def on_trial(self, slot: str) -> str | None: ...


class _Watched(Protocol):
    def on_trial(self, slot: str) -> str | None: ...

    def heartbeat(self, slot: str) -> None: ...


class _TrialOwner(Protocol):
    def trial_version(self, slot: str) -> str | None: ...

    def model_crashed(self, slot: str, version: str, how: str) -> bool: ...


class TrialIsolation:
    """``adapter_for`` for the serving layer: the version on trial in ``slot`` loads in a worker process of
    its own (``spec`` names the adapters the worker uses), every other artifact with ``adapters`` in-process.
    A worker that dies on its own steps serving down (``step_down``), then is reported to
    ``installer.model_crashed`` (which rolls back; serving then reloads the previous version)."""

    def __init__(
        self,
        data_root: Path,
        adapters: Callable[[str], RuntimeAdapter],
        installer: _TrialOwner,
        *,
        slot: str = SERVED_SLOT,
        spec: str = DEFAULT_SPEC,
    ) -> None:
        self._store = SlotStore(Path(data_root), slot)
        self._adapters = adapters
        self._installer = installer
        self._slot = slot
        self._spec = spec
        self.step_down: Callable[[], object] | None = None
        """Called first when a trial worker dies (``InferenceService.model_died``: serving leaves the dead
        worker for the ladder's fallback or rule at once), before the installer rolls back."""

    def trial_version(self) -> str | None:
        return self._installer.trial_version(self._slot)

    def isolates(self, model_path: Path) -> str | None:
        """The version key when ``model_path`` belongs to the version on trial in the slot."""
        version = self.trial_version()
        if version is None:
            return None
        return version if Path(model_path).is_relative_to(self._store.version_dir(version)) else None

    def load(self, runtime: str, model_path: Path, signature: Signature, options: LoadOptions) -> LoadedModel:
        """Load with ``runtime``: in a trial worker when ``model_path`` is the version on trial."""
        version = self.isolates(model_path)
        if version is None:
            return self._adapters(runtime).load(model_path, signature, options)
        slot, installer = self._slot, self._installer

        def crashed(how: str) -> None:
            if self.step_down is not None:
                self.step_down()
            installer.model_crashed(slot, version, how)

        worker = WorkerAdapter(runtime, spec=self._spec, on_death=crashed)
        return worker.load(model_path, signature, options)

    def __call__(self, runtime: str) -> RuntimeAdapter:
        return _IsolatingAdapter(self, runtime)


class _IsolatingAdapter:
    def __init__(self, owner: TrialIsolation, runtime: str) -> None:
        self.name = runtime
        self._owner = owner

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> LoadedModel:
        return self._owner.load(self.name, model_path, signature, options)


def serving_alive(liveness: Liveness, *, stall_s: float = STALL_S) -> bool:
    """Pure: may the service heartbeat the trial watchdog? Only on a model rung (the active version or its
    CPU twin answers, not the fallback or the rule) and not stuck (no run held for ``stall_s`` without any
    other run starting or ending). Idle is alive."""
    if liveness.rung not in MODEL_RUNGS:
        return False
    return liveness.in_flight == 0 or liveness.since_progress_s <= stall_s


class TrialMetrics:
    """A ``MetricsSink`` that also feeds the installer's trial counters for one slot (``trial_sample``)."""

    def __init__(self, inner: MetricsSink, installer: _TrialCounter, slot: str) -> None:
        self._inner = inner
        self._installer = installer
        self._slot = slot

    def record_request(
        self, model_version: str, rung: str, latency_ms: float, error_code: str | None = None
    ) -> None:
        self._inner.record_request(model_version, rung, latency_ms, error_code)
        if error_code is not None and error_kind(error_code) == "input":
            return  # a failing sensor is not a failing version: input faults never count in a trial
        on_trial = self._installer.on_trial(self._slot)
        if not on_trial:
            return
        ok = trial_sample(rung, model_version, error_code, on_trial)
        if ok is not None:
            self._installer.record_inference(self._slot, ok=ok)

    def record_shadow(
        self, agreement: float | bool, *, model_version: str = "unknown", sample: ShadowSample | None = None
    ) -> None:
        self._inner.record_shadow(agreement, model_version=model_version, sample=sample)

    def record_shadow_error(self, model_version: str, error_code: str) -> None:
        self._inner.record_shadow_error(model_version, error_code)

    def record_shadow_skipped(self, model_version: str) -> None:
        self._inner.record_shadow_skipped(model_version)

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
    isolation: TrialIsolation | None = None
    isolated: str | None = None
    """The version on trial when the service last loaded (served from the trial worker)."""

    def poll(self) -> None:
        """Pick up a new active version (call after install steps)."""
        self.source.poll()

    def feed_watchdog(
        self, installer: _Watched, slot: str = SERVED_SLOT, *, stall_s: float = STALL_S
    ) -> bool:
        """Heartbeat ``slot``'s trial when the service is alive (``serving_alive``). Never blocks: call it
        from a thread of its own, not one an install can hold up. True when it heartbeat."""
        if installer.on_trial(slot) is None or not serving_alive(self.service.liveness(), stall_s=stall_s):
            return False
        installer.heartbeat(slot)
        return True

    def sync(self, desired: dict[str, str], slot: str = SERVED_SLOT) -> None:
        """After install steps: serve the slot's active version, and run ``<slot>.shadow`` beside it exactly
        while the desired state asks for it and the candidate passed its install health check."""
        changed = self.source.poll()
        if self.isolation is not None:
            on_trial = self.isolation.trial_version()
            if not changed and on_trial != self.isolated:
                self.service.reload()  # committed (leaves the worker) or put on trial (enters it)
            self.isolated = on_trial
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

    def busy(self) -> bool:
        """Requests are queued behind the running ones: background work (a probe) should yield."""
        return bool(self.service.status()["queue"]["waiting"] > 0)

    def report(self) -> dict[str, Any] | None:
        """The device report's ``serving``: the rung serving now, why it is not the preferred one (the
        withdrawal's reason when the installer withdrew the active artifact — ``artifact_disabled`` — else
        the last error's code), and the providers in use. ``None`` while nothing is installed."""
        status = self.service.status()
        withdrawn = self.source.withdrawn_reason()
        if (
            status["model_version"] is None
            and status["mode"] == "rule"
            and status["last_error"] is None
            and withdrawn is None
        ):
            return None
        error = status["last_error"] if status["mode"] != "preferred" else None
        reason = withdrawn if withdrawn is not None else (error["code"] if error else None)
        return {
            "mode": status["mode"],
            "reason": reason if status["mode"] != "preferred" else None,
            "providers": list(status["providers"]),
        }

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
    slot: str = SERVED_SLOT,
    adapter_for: Callable[[str], RuntimeAdapter] | None = None,
    isolation: TrialIsolation | None = None,
) -> Serving:
    """``adapter_for``: the runtime adapter per manifest ``runtime.name`` (default ``RuntimeAdapters()``);
    the active version, the fallback and a shadow candidate each load with the runtime their manifest
    names. ``isolation``: serve the version on trial from a supervised worker process (it is then the
    adapter_for of the active slot)."""
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
        None,
        config,
        metrics=metrics,
        fallback_source=fallback_source if fallback_dir is None else None,
        adapter_for=isolation or adapter_for or RuntimeAdapters(),
        withdrawn=source.withdrawn,
    ).start()
    if isolation is not None:
        isolation.step_down = service.model_died
    local = LocalEndpoint(service, endpoint).start()
    atomic_write_bytes(data_root / ENDPOINT_FILE, local.url.encode())
    shadow_source = SlotActiveSource(data_root, slot + SHADOW_SUFFIX)
    return Serving(
        source,
        service,
        local,
        shadow_source,
        fallback_source,
        ShadowConfig(sample_fraction=shadow_fraction),
        isolation=isolation,
        isolated=isolation.trial_version() if isolation is not None else None,
    )
