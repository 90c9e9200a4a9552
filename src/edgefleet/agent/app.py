"""The agent process: one data dir, one lock, one connection, and the parts that share them.

``AgentApp.run`` composes, in this order: the data-dir lock; the telemetry queue and recorder (security,
update and clock events go there; a corrupt queue file is moved aside and replaced, with a ``telemetry_lost``
event, never a stopped agent); the A/B slot installer (recovered from its journal before anything else touches
the slots; each version loaded by the runtime its manifest names; each journaled step an update event) with a
``ChildFetcher`` (each TUF operation, an install's resolve and fetch, a probe's bundle, the director keys of a
rotation, runs in a short-lived child process: the resident agent never imports TUF or builds anything of it);
the serving layer. Only then, so that the first inference does not wait for them, are the sync stack's modules
imported and built: the signed channel, the telemetry uploader thread, the tick thread (closes telemetry
windows, judges the installer's trial), the watchdog thread (heartbeats the trial while serving makes
progress), the runtime inventory (a child process, ``INVENTORY_DELAY_S`` after serving is up) and the sync
coordinator, which owns the loop until SIGTERM. Every piece is a small object with its own tests; this module
only wires them.

The run record (``agent.lifecycle``) says how the previous run ended (power cut, clean restart, agent crash);
with ``trial_worker`` (the default) a candidate's load and health check and the serving of the version on
trial run in a supervised worker process, so no restart of the agent counts against a model, and a model
that crashes its runtime is rolled back and counted while the agent keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet.agent.backoff import PollTiming
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.install.child_fetcher import ChildFetcher
from edgefleet.agent.install.installer import SlotInstaller
from edgefleet.agent.lifecycle import RunMarker
from edgefleet.agent.local_zone import detect_time_zone
from edgefleet.agent.malloc_arenas import HeapTrim
from edgefleet.agent.observed import ObservedInstaller, StepEvents
from edgefleet.agent.options import DEFAULT_TRIAL, DEFAULT_WATCHDOG_S, AgentOptions
from edgefleet.agent.remote_config import ConfigApplier, startup_overrides
from edgefleet.agent.runtime.base import RuntimeAdapter
from edgefleet.agent.runtime.inventory import INVENTORY_DELAY_S, InventoryProbe
from edgefleet.agent.runtime.worker import WorkerAdapter
from edgefleet.agent.serve.endpoint import EndpointConfig
from edgefleet.agent.serve.runtimes import RuntimeAdapters
from edgefleet.agent.serving_wiring import SERVED_SLOT, Serving, TrialIsolation, TrialMetrics, start_serving
from edgefleet.agent.telemetry.queue import loss_event, open_queue
from edgefleet.agent.telemetry.recorder import SecuritySinkAdapter, TelemetryRecorder
from edgefleet.agent.telemetry.resources import SysResources
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.desired_state import DesiredState
from edgefleet.protocol.wire.hardware_class import HardwareClass

if TYPE_CHECKING:
    from edgefleet.agent.channel import Channel
    from edgefleet.agent.hints import Wakeup
    from edgefleet.agent.sync import SyncCoordinator
    from edgefleet.agent.telemetry.uploader import TelemetryUploader

__all__ = ["DEFAULT_TRIAL", "DEFAULT_WATCHDOG_S", "AgentApp", "AgentOptions"]

log = logging.getLogger("edgefleet.agent")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _stored_overrides(ddir: DataDir) -> dict[str, Any]:
    """Remote settings taken at start (not live), from the desired state this device last accepted."""
    try:
        return startup_overrides(ddir.read_desired_envelope())
    except (EdgefleetError, OSError, ValueError):  # unreadable: the sync coordinator judges it later
        return {}


class AgentApp:
    def __init__(self, data_dir: Path | str, options: AgentOptions | None = None) -> None:
        self.ddir = DataDir(data_dir)
        self.options = options or AgentOptions()
        self.installer: ObservedInstaller | None = None
        self.recorder: TelemetryRecorder | None = None
        self.serving: Serving | None = None
        self._coordinator: SyncCoordinator | None = None
        self._on_ready: list[Callable[[AgentApp], None]] = []

    def on_ready(self, callback: Callable[[AgentApp], None]) -> None:
        """Called once the installer and recorder exist (the serving layer attaches here)."""
        self._on_ready.append(callback)

    def _start_serving(
        self,
        hardware_class: HardwareClass | None,
        recorder: TelemetryRecorder,
        installer: ObservedInstaller,
        adapters: RuntimeAdapters,
    ) -> Serving:
        opts = self.options
        isolation = (
            TrialIsolation(self.ddir.root, adapters, installer, spec=opts.trial_worker_spec)
            if opts.trial_worker
            else None
        )
        return start_serving(
            self.ddir.root,
            hardware_class=hardware_class,
            metrics=TrialMetrics(recorder, installer, SERVED_SLOT),
            endpoint=EndpointConfig(
                host=opts.serve_host, port=opts.serve_port, unix_socket=opts.serve_socket
            ),
            fallback_dir=opts.fallback_dir,
            shadow_fraction=opts.shadow_fraction,
            adapter_for=adapters,
            isolation=isolation,
        )

    def _config_applier(
        self,
        slot_installer: SlotInstaller,
        uploader: TelemetryUploader,
        serving: Serving | None,
        started_with: dict[str, Any],
    ) -> ConfigApplier:
        """Remote configuration's setters over this run's parts (``agent.remote_config``)."""
        opts = self.options
        trial = [opts.trial]

        def set_poll(value: Any) -> None:
            if self._coordinator is not None:
                self._coordinator.set_poll_interval(float(value))

        def set_log_level(value: Any) -> None:
            logging.getLogger().setLevel(str(value).upper())

        def set_shadow(value: Any) -> None:  # the next shadow candidate samples this share
            if serving is not None:
                serving.shadow_config = replace(serving.shadow_config, sample_fraction=float(value))

        def set_upload(value: Any) -> None:
            uploader.timing = replace(uploader.timing, poll_interval_s=float(value))

        def set_bandwidth(value: Any) -> None:
            uploader.budget.rate = float(value)

        def set_trial(name: str) -> Callable[[Any], None]:
            def setter(value: Any) -> None:
                policy = replace(trial[0], **{name: value})  # TrialPolicy checks itself
                slot_installer.set_trial_policy(opts.served_trial(policy))
                trial[0] = policy

            return setter

        setters: dict[str, Callable[[Any], None]] = {
            "poll_interval_s": set_poll,
            "log_level": set_log_level,
            "shadow_fraction": set_shadow,
            "telemetry_upload_interval_s": set_upload,
            "telemetry_bytes_per_s": set_bandwidth,
            "trial_window_s": set_trial("window_s"),
            "trial_min_requests": set_trial("min_requests"),
            "trial_max_failure_rate": set_trial("max_failure_rate"),
            "trial_watchdog_s": set_trial("watchdog_s"),
        }
        defaults = {
            "poll_interval_s": opts.poll_interval_s,
            "log_level": opts.log_level,
            "shadow_fraction": opts.shadow_fraction,
            "telemetry_upload_interval_s": opts.telemetry_upload_interval_s,
            "telemetry_bytes_per_s": uploader.budget.rate,
            "trial_window_s": opts.trial.window_s,
            "trial_min_requests": opts.trial.min_requests,
            "trial_max_failure_rate": opts.trial.max_failure_rate,
            "trial_watchdog_s": opts.trial.watchdog_s,
        }
        return ConfigApplier(
            setters,
            {k: v for k, v in defaults.items() if v is not None},
            {"telemetry_max_bytes": opts.telemetry_max_bytes, **started_with},
        )

    def _worker_adapter(self, runtime: str) -> RuntimeAdapter:
        """The installer's candidates load and pass their health check in a worker process: a model that
        crashes its runtime fails its install (``model_crashed``, counted) instead of killing the agent."""
        return WorkerAdapter(runtime, spec=self.options.trial_worker_spec)

    @staticmethod
    def _start_hints(
        device_id: str, channel: Channel, stop: threading.Event, workers: list[threading.Thread]
    ) -> Wakeup:
        """The hint listener's thread, and a second one that wakes the poll loop when ``stop`` is set."""
        from edgefleet.agent.hints import HINTS_PATH, HintListener, Wakeup

        wakeup = Wakeup()
        listener = HintListener(device_id, lambda: channel.request("GET", HINTS_PATH).json(), wakeup)

        def close_on_stop() -> None:
            stop.wait()
            wakeup.close()

        for target, name in ((lambda: listener.run(stop), "hint-listener"), (close_on_stop, "hint-stop")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            workers.append(thread)
        return wakeup

    def run(self, stop: threading.Event) -> None:
        opts = self.options
        identity = self.ddir.read_identity()
        hardware_class = self.ddir.read_hardware_class()
        time_zone = detect_time_zone(opts.time_zone)
        with self.ddir.lock():
            run_marker = RunMarker(self.ddir.root)
            cause = run_marker.begin()
            started_with = _stored_overrides(self.ddir)
            queue, lost = open_queue(
                self.ddir.root / "telemetry" / "queue.db",
                max_bytes=started_with.get("telemetry_max_bytes", opts.telemetry_max_bytes),
            )
            boot_id = uuid.uuid4().hex
            recorder = TelemetryRecorder(
                queue,
                boot_id=boot_id,
                window_s=opts.telemetry_window_s,
                resources=SysResources(disk_path=self.ddir.root),
                served_slot=SERVED_SLOT,
            )
            if lost is not None:
                recorder.record_event(*loss_event(lost))
            closers: list[Callable[[], None]] = []  # what the sync stack opened, closed in reverse

            # TUF work (installs, probes, director keys) runs in a short-lived child per call: nothing of it
            # is imported or built here (``install.child_fetcher``).
            fetcher = ChildFetcher(
                self.ddir.root,
                identity,
                now=_utc_now,
                events=SecuritySinkAdapter(recorder),
                http_timeout_s=opts.download_timeout_s,
                max_bytes_per_s=hardware_class.download_bytes_per_s if hardware_class else None,
            )
            closers.append(fetcher.close)
            adapters = RuntimeAdapters()  # each version loads with the runtime its manifest names
            slot_installer = SlotInstaller(
                self.ddir.root,
                fetcher,
                adapter_for=adapters,
                config=opts.installer_config(hardware_class, time_zone),
                steps=StepEvents(recorder),
                isolated_for=self._worker_adapter if opts.trial_worker else None,
            )
            try:
                slot_installer.recover(cause)
                installer = ObservedInstaller(slot_installer, recorder)
                recorder.set_slot_states(
                    lambda: {
                        slot: (report.state, report.failure_code)
                        for slot, report in installer.slot_reports().items()
                    }
                )
                self.installer, self.recorder = installer, recorder
                serving = (
                    self._start_serving(hardware_class, recorder, installer, adapters) if opts.serve else None
                )
                if serving is not None:
                    installer.after_change.append(lambda: serving.sync(installer.desired))
                self.serving = serving
                if serving is not None:  # serving is up (a version on trial loaded in its worker): the
                    serving.feed_watchdog(installer)  # watchdog counts from here, not from the recovery
                # In a child process (the agent imports one runtime only), and only once serving is up: it
                # must not compete with loading the model and answering the first requests.
                inventory = InventoryProbe(delay_s=INVENTORY_DELAY_S if serving else 0.0, stop=stop).start()
                for callback in self._on_ready:
                    callback(self)
                # Serving answers now; the sync loop, the channel, the uploader and probes are built from
                # here. TUF runs in a short-lived child per call (ChildFetcher).
                from edgefleet.agent.channel import DeviceChannel
                from edgefleet.agent.probe.runner import ProbeRunner
                from edgefleet.agent.sync import SyncCoordinator
                from edgefleet.agent.telemetry.uploader import ChannelUpload, TelemetryUploader
                from edgefleet.trust.ed25519 import Ed25519VerifyKey

                channel = DeviceChannel(  # the stdlib's HTTP client: no httpx in this process
                    identity.server_url, device_id=identity.device_id, key=self.ddir.read_key()
                )
                closers.append(channel.close)
                budget = hardware_class.telemetry_bytes_per_s if hardware_class else 2048
                uploader = TelemetryUploader(
                    queue,
                    ChannelUpload(channel),
                    device_id=identity.device_id,
                    bandwidth_bytes_per_s=budget,
                    timing=PollTiming(
                        poll_interval_s=opts.telemetry_upload_interval_s, backoff_cap_s=opts.backoff_cap_s
                    ),
                )

                heap = HeapTrim(time.monotonic())

                def tick_forever() -> None:
                    """Close telemetry windows and advance the installer's trial, once a second; give the
                    heap's free pages back once a minute."""
                    while not stop.wait(opts.tick_interval_s):
                        try:
                            recorder.tick()
                            installer.tick()
                            heap.tick(time.monotonic())
                        except Exception:  # a bad tick must not stop the next one
                            log.exception("event=tick_failed")

                def feed_watchdog_forever(serving: Serving) -> None:
                    """Heartbeat the trial while serving makes progress. Its own thread: an install holding
                    the installer (a long download) must not silence it, a hung model run must."""
                    while not stop.wait(opts.tick_interval_s):
                        try:
                            serving.feed_watchdog(installer)
                        except Exception:
                            log.exception("event=watchdog_feed_failed")

                def stop_fetch_children() -> None:
                    """A stop during an install kills its fetch child: the agent stops now, not after the
                    download (the install fails retryable, its verified partial downloads are kept)."""
                    stop.wait()
                    fetcher.close()

                workers = [
                    threading.Thread(target=uploader.run, args=(stop,), name="telemetry-upload", daemon=True),
                    threading.Thread(target=tick_forever, name="agent-tick", daemon=True),
                    threading.Thread(target=stop_fetch_children, name="fetch-child-stop", daemon=True),
                ]
                if serving is not None:
                    workers.append(
                        threading.Thread(
                            target=feed_watchdog_forever, args=(serving,), name="trial-watchdog", daemon=True
                        )
                    )
                for worker in workers:
                    worker.start()
                wakeup = self._start_hints(identity.device_id, channel, stop, workers) if opts.hints else None
                timing = PollTiming(poll_interval_s=opts.poll_interval_s, backoff_cap_s=opts.backoff_cap_s)
                probes = ProbeRunner(
                    self.ddir.root,
                    fetcher,
                    channel,
                    hardware_class=hardware_class,
                    busy=serving.busy if serving is not None else lambda: False,
                    now=_utc_now,
                )
                applier = self._config_applier(slot_installer, uploader, serving, started_with)

                def on_state(state: DesiredState | None) -> None:
                    applier.apply(state)  # before the report that follows it: the report shows it
                    probes.offer(state)

                coordinator = SyncCoordinator(
                    self.ddir,
                    channel,
                    installer,
                    timing=timing,
                    events=recorder,
                    director_keys=lambda: [Ed25519VerifyKey.from_pem(p) for p in fetcher.director_keys_pem()],
                    on_state=on_state,
                    inventory=inventory.get,
                    serving_status=serving.report if serving is not None else None,
                    wakeup=wakeup,
                    time_zone=time_zone,
                    config_status=applier.report,
                )
                self._coordinator = coordinator
                coordinator.run(stop)
                probes.close()
                for worker in workers:
                    worker.join(timeout=10)
                recorder.flush()
                run_marker.end_clean()
            finally:
                if self.serving is not None:
                    self.serving.close()
                slot_installer.close()
                queue.close()
                for close in reversed(closers):
                    close()
