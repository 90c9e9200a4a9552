"""``agent run``'s options: what the command line sets, checked when they are made (docs/serving.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from edgefleet.agent.install.installer import InstallerConfig
from edgefleet.agent.install.trial import TrialPolicy
from edgefleet.agent.runtime.worker import DEFAULT_SPEC
from edgefleet.agent.serving_wiring import SERVED_SLOT
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.wire.hardware_class import HardwareClass, Threads

__all__ = ["DEFAULT_TRIAL", "DEFAULT_WATCHDOG_S", "AgentOptions"]

DEFAULT_WATCHDOG_S = 60.0
"""``agent run``'s trial watchdog: heartbeats come every ``tick_interval_s``; a minute of silence is a hang,
not a busy moment (a long install does not delay them: they come from a thread of their own)."""
DEFAULT_TRIAL = TrialPolicy(watchdog_s=DEFAULT_WATCHDOG_S)


@dataclass(frozen=True)
class AgentOptions:
    poll_interval_s: float = 30.0
    backoff_cap_s: float = 300.0
    telemetry_window_s: float = 60.0
    telemetry_upload_interval_s: float = 60.0
    telemetry_max_bytes: int = 16 * 1024**2
    download_timeout_s: float = 60.0
    tick_interval_s: float = 1.0
    serve: bool = True
    hints: bool = True
    """Listen for MQTT wake-up hints when the server names a broker (``agent.hints``; needs the ``hints``
    extra): a hint makes the agent poll at once; without one it polls on ``poll_interval_s``."""
    serve_host: str = "127.0.0.1"
    serve_port: int = 0
    """0: any free port; the URL is written to ``<data dir>/serving-endpoint``."""
    serve_socket: Path | None = None
    fallback_dir: Path | None = None
    shadow_fraction: float = 0.1
    """Share of live requests also run through a shadow candidate (off the answer's path)."""
    trial: TrialPolicy = field(default_factory=lambda: DEFAULT_TRIAL)
    """The trial after each switch (window, requests, failure rate, restarts, watchdog)."""
    trial_worker: bool = True
    """Load, health-check and serve a version on trial in a supervised worker process (see the module)."""
    trial_worker_spec: str = DEFAULT_SPEC
    """``module:attribute`` giving the worker its runtime adapters (tests inject a crashing runtime)."""
    time_zone: str | None = None
    """The device's IANA zone for its update window; ``None``: detected (``agent.local_zone``)."""
    log_level: str = "info"
    """What remote configuration restores when the operator removes a ``log_level`` it set."""

    def __post_init__(self) -> None:
        watchdog_s = self.trial.watchdog_s
        if watchdog_s is not None and watchdog_s < 3 * self.tick_interval_s:
            raise InvalidDocumentError(
                "the trial watchdog must allow at least three heartbeats",
                code="invalid_trial_policy",
                expected=f">= {3 * self.tick_interval_s} s (3 x tick_interval_s), or off",
                got=watchdog_s,
            )

    def installer_config(
        self, hardware_class: HardwareClass | None, time_zone: str | None = None
    ) -> InstallerConfig:
        """The installer's configuration. The watchdog and ``min_requests`` apply to the served slot
        (``default``); without serving nothing heartbeats and nothing is served, so neither applies."""
        threads = hardware_class.threads if hardware_class else Threads()
        return InstallerConfig(
            threads=threads,
            trial=self.served_trial(self.trial),
            served_slots=frozenset({SERVED_SLOT}),
            release_served=self.serve,
            time_zone=time_zone,
        )

    def served_trial(self, trial: TrialPolicy) -> TrialPolicy:
        return trial if self.serve else replace(trial, watchdog_s=None, min_requests=0)
