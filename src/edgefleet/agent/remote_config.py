"""Remote configuration on the device: apply the signed desired state's ``config`` without a restart where
the setting allows it, and say what was applied.

Each live setting has a setter (the agent's wiring gives them: the poll timing, the log level, the shadow
sampling, the uploader's timing and bandwidth, the installer's trial policy). A setting the operator removes
goes back to the value the agent was started with. A setting that is not live (``Setting.live``) is taken
at the next start (``startup_overrides`` reads the stored state) and reported as ``restart_needed`` until
then. A value the agent's own bounds refuse (``protocol.agent_config``, the same table the control plane
judges) is not applied: the agent keeps what it runs and reports the setting under ``refused`` with its code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from edgefleet.protocol.agent_config import SETTINGS, check_setting
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.desired_state import AppliedConfig, DesiredState

__all__ = ["ConfigApplier", "startup_overrides"]

log = logging.getLogger("edgefleet.agent.config")
Setter = Callable[[Any], None]


def startup_overrides(envelope: Mapping[str, Any] | None) -> dict[str, Any]:
    """The non-live settings of the stored desired state (written by the agent once it verified it), each
    checked against the bounds: what ``agent run`` starts with instead of its flags."""
    signed = (envelope or {}).get("signed")
    config = signed.get("config") if isinstance(signed, Mapping) else None
    out: dict[str, Any] = {}
    if not isinstance(config, Mapping):
        return out
    for name, value in config.items():
        setting = SETTINGS.get(str(name))
        if setting is None or setting.live:
            continue
        try:
            out[setting.name] = check_setting(setting.name, value)
        except EdgefleetError:
            continue
    return out


class ConfigApplier:
    """``defaults``: each live setting's value at start (restored when the operator removes it);
    ``started_with``: the non-live settings this run started with."""

    def __init__(
        self,
        setters: Mapping[str, Setter],
        defaults: Mapping[str, Any],
        started_with: Mapping[str, Any] | None = None,
    ) -> None:
        self._setters = dict(setters)
        self._defaults = dict(defaults)
        self._started_with = dict(started_with or {})
        self._lock = threading.Lock()
        self._applied: dict[str, Any] = {}
        self._status: AppliedConfig | None = None

    def apply(self, state: DesiredState | None) -> None:
        """Apply ``state.config`` (``None``: every remote setting removed). Never raises."""
        if state is None:
            return
        wanted = state.config or {}
        with self._lock:
            applied: dict[str, Any] = {}
            restart: list[str] = []
            refused: dict[str, str] = {}
            for name, raw in sorted(wanted.items()):
                try:
                    value = check_setting(name, raw)
                except EdgefleetError as exc:
                    refused[name[:64]] = exc.code
                    log.warning("event=config_refused setting=%s code=%s", name[:64], exc.code)
                    continue
                setter = self._setters.get(name)
                if setter is None:  # not live here: taken at the next start
                    if self._started_with.get(name) == value:
                        applied[name] = value
                    else:
                        restart.append(name)
                    continue
                if self._applied.get(name) != value:
                    try:
                        setter(value)
                    except EdgefleetError as exc:  # e.g. a trial policy the agent's own rules refuse
                        refused[name] = exc.code
                        log.warning("event=config_refused setting=%s code=%s", name, exc.code)
                        continue
                    log.info("event=config_applied setting=%s value=%s", name, value)
                applied[name] = value
            for name in sorted(set(self._applied) - set(applied)):  # removed: back to the start value
                if name in self._setters and name in self._defaults and name not in refused:
                    self._setters[name](self._defaults[name])
                    log.info("event=config_restored setting=%s value=%s", name, self._defaults[name])
            kept = {k: self._applied[k] for k in refused if k in self._applied}  # still runs the old value
            self._applied = {**{k: v for k, v in applied.items() if k in self._setters}, **kept}
            self._status = AppliedConfig(
                generation=state.generation, applied=applied, restart_needed=restart, refused=refused
            )

    def report(self) -> dict[str, Any] | None:
        """The ``DeviceReport.config`` part (``None`` before any desired state)."""
        with self._lock:
            return self._status.to_dict() if self._status is not None else None
