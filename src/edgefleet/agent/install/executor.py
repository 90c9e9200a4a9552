"""What the installer's executor modules share: the configuration, one slot's run-time record, and the IO
helpers (load a version, journal, report a step). No decisions here: those are in ``machine`` (pure).

The executor is split by concern: ``attempt`` (apply an assignment: the journaled steps and the switch),
``conclude`` (judge a trial: commit, or roll back to ``previous``), ``recovery`` (replay the journal at
start); ``installer.SlotInstaller`` is the public face over them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from edgefleet.agent.install import machine as sm
from edgefleet.agent.install.faults import CrashHook
from edgefleet.agent.install.fetch import ArtifactFetcher
from edgefleet.agent.install.health import HealthPolicy, HealthReport
from edgefleet.agent.install.journal import Journal
from edgefleet.agent.install.machine import SlotState
from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.install.steps import StepRecord, StepSink
from edgefleet.agent.install.trial import TrialPolicy, TrialState
from edgefleet.agent.runtime.base import LoadedModel, LoadOptions, RuntimeAdapter
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.hardware_class import Threads

__all__ = ["AdapterFor", "Executor", "InstallerConfig", "SlotRun"]

log = logging.getLogger("edgefleet.agent.install")
AdapterFor = Callable[[str], RuntimeAdapter]
"""A manifest's ``runtime.name`` -> the adapter that loads it (``agent.serve.RuntimeAdapters``)."""


@dataclass(frozen=True)
class InstallerConfig:
    threads: Threads = field(default_factory=Threads)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    trial: TrialPolicy = field(default_factory=TrialPolicy)
    max_rollbacks: int = 2
    """A release rejected by its health check or rolled back this many times is refused locally."""
    gc_max_removals: int = 4
    time_zone: str | None = None
    """The device's IANA zone: the clock of the desired state's ``update_window`` (``None``: UTC)."""
    served_slots: frozenset[str] | None = None
    """The slots the serving layer answers requests from and heartbeats (the agent: ``default``). Only there
    do ``trial.watchdog_s`` and ``trial.min_requests`` apply: a ``fallback`` or ``<slot>.shadow`` version gets
    no steady traffic and no heartbeat, so its trial is judged by time, restarts and failure rate. ``None``:
    every slot is served."""
    release_served: bool = False
    """The serving layer loads and holds the model of every slot in ``served_slots`` (the agent): the
    installer keeps no copy of its own there. It still loads each version it switches to or back to (the
    load and the health check are how it judges one), then closes it, so a committed version is not held
    twice in the agent and a version on trial is not held by a second worker process beside the serving
    one."""

    def releases(self, slot: str) -> bool:
        """Whether the installer closes its own copy of ``slot``'s loaded version (see ``release_served``)."""
        return self.release_served and self.served_slots is not None and slot in self.served_slots

    def trial_for(self, slot: str) -> TrialPolicy:
        """The trial policy for ``slot``."""
        if self.served_slots is None or slot in self.served_slots:
            return self.trial
        return replace(self.trial, watchdog_s=None, min_requests=0)


@dataclass
class SlotRun:
    """One slot at run time: its store and journal on disk, and what is in memory (model, state, trial)."""

    store: SlotStore
    journal: Journal
    model: LoadedModel | None = None
    """The installer's own copy of the loaded version (``None`` where the serving layer holds it)."""
    loaded: bool = False
    """The active version (``serving_artifact``) loaded and passed its checks in this run."""
    serving_artifact: str | None = None
    state: SlotState = sm.IDLE
    last_error: dict[str, object] | None = None
    trial: TrialState | None = None
    counters: threading.Lock = field(default_factory=threading.Lock)
    last_health: HealthReport | None = None
    failed: tuple[str, str] | None = None
    """(artifact id, code) of the last install, health check or trial that failed in this slot."""
    deferred_artifact: str | None = None
    """The artifact staged and waiting for the update window (state ``pending:window``)."""


@dataclass
class Executor:
    """The installer's IO: where versions load, the clock, the crash hook, the step sink."""

    fetcher: ArtifactFetcher
    config: InstallerConfig
    now: Callable[[], datetime]
    crash: CrashHook
    steps: StepSink
    adapter: RuntimeAdapter | None = None
    adapter_for: AdapterFor | None = None
    isolated_for: AdapterFor | None = None
    """Loads a candidate and a version on trial in a supervised worker process (``None``: in-process)."""

    @property
    def isolated(self) -> bool:
        return self.isolated_for is not None

    def load_version(
        self, store: SlotStore, key: str, *, warmup: bool, isolated: bool = False
    ) -> LoadedModel:
        """Load an installed version: re-hashed first with ``warmup`` (at load), in the trial worker when
        ``isolated`` and the installer has one (a candidate, a version on trial), else in-process."""
        manifest = store.verify(key) if warmup else store.read_manifest(key)
        options = LoadOptions(
            execution_providers=tuple(manifest.runtime.execution_providers),
            intra_op_threads=self.config.threads.intra_op,
            inter_op_threads=self.config.threads.inter_op,
            warmup_runs=manifest.health_check.warmup_runs if warmup else 0,
        )
        runtime = manifest.runtime.name
        if isolated and self.isolated_for is not None:
            adapter = self.isolated_for(runtime)
        else:
            adapter = self._adapter_for_runtime(runtime)
        return adapter.load(store.files_dir(key) / manifest.entrypoint, manifest.signature, options)

    def hold(self, s: SlotRun, model: LoadedModel | None, artifact_id: str | None) -> None:
        """``model`` (of ``artifact_id``) is now the slot's loaded version; closed at once where the serving
        layer holds its own (``InstallerConfig.release_served``). A replaced copy is dropped once its
        in-flight calls end."""
        s.loaded = model is not None
        s.serving_artifact = artifact_id
        if model is not None and self.config.releases(s.store.slot):
            model.close()
            model = None
        s.model = model

    def _adapter_for_runtime(self, runtime: str) -> RuntimeAdapter:
        """The manifest's runtime (``runtime_unsupported`` when this device has none for it)."""
        if self.adapter_for is not None:
            return self.adapter_for(runtime)
        assert self.adapter is not None
        return self.adapter

    def journal(self, s: SlotRun, attempt: str, **fields: object) -> None:
        s.journal.append({"attempt": attempt, "at": self.now().isoformat(), **fields})

    def error(self, exc: EdgefleetError, message: str) -> dict[str, object]:
        return {"code": exc.code, "message": message, "details": exc.details, "at": self.now().isoformat()}

    def report_step(self, record: StepRecord) -> None:
        try:
            self.steps.step(record)
        except Exception:  # telemetry never breaks an install
            log.exception("event=step_report_failed step=%s", record.step)


def model_version(store: SlotStore, key: str) -> str:
    """``<model>/<version>`` of an installed version, ``""`` when its manifest cannot be read."""
    try:
        manifest = store.read_manifest(key)
    except EdgefleetError:
        return ""
    return f"{manifest.model}/{manifest.version}"
