"""Remote agent configuration: the settings an operator may set from the control plane, their bounds, and
how layers combine. One table, judged by both sides: the control plane refuses a value out of bounds when an
operator sets it, and the agent refuses it again (keeping what it runs) should a signed state ever carry one.

Each setting says whether the agent applies it while running (``live``) or at its next start. A layer is a
plain mapping ``{name: value}``; ``merge_layers`` applies them in order (agent defaults < class < selector <
device), a later layer winning key by key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = [
    "LOG_LEVELS",
    "MAX_CONFIG_KEYS",
    "SETTINGS",
    "Setting",
    "check_agent_config",
    "check_setting",
    "merge_layers",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_CONFIG_KEYS = 32


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = True
    """Applied while the agent runs; ``False``: at its next start (reported as ``restart_needed``)."""
    help: str = ""

    def expected(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return f"{self.kind.__name__} in [{self.low:g}, {self.high:g}]"


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("poll_interval_s", float, 1.0, 86400.0, help="seconds between desired-state polls"),
        Setting("log_level", str, choices=LOG_LEVELS, help="the agent's log level"),
        Setting("shadow_fraction", float, 0.001, 1.0, help="share of live requests run through a shadow"),
        Setting("telemetry_upload_interval_s", float, 1.0, 86400.0, help="seconds between uploads"),
        Setting("telemetry_bytes_per_s", int, 64, 100_000_000, help="upload bandwidth budget"),
        Setting("trial_window_s", float, 0.0, 30 * 86400.0, help="time on trial before a commit"),
        Setting("trial_min_requests", int, 0, 1_000_000_000, help="requests served before a commit"),
        Setting("trial_max_failure_rate", float, 0.0, 1.0, help="failure rate that rolls a trial back"),
        Setting("trial_watchdog_s", float, 3.0, 86400.0, help="serving silence that rolls a trial back"),
        Setting(
            "telemetry_max_bytes", int, 65_536, 1 << 30, live=False, help="the telemetry queue's size cap"
        ),
    )
}


def check_setting(name: str, value: Any) -> float | int | str:
    """One value, normalised (``int`` for integer settings, ``float`` for the others), or
    ``InvalidDocumentError``: ``unknown_config_key``, ``invalid_config_value`` (wrong type) or
    ``config_out_of_bounds``, each naming the setting with what was expected and what arrived."""
    setting = SETTINGS.get(name)
    if setting is None:
        raise InvalidDocumentError(
            f"unknown agent setting {name!r}", code="unknown_config_key", expected=sorted(SETTINGS),
            got=name[:80],
        )  # fmt: skip
    if setting.choices:
        if not isinstance(value, str):
            raise InvalidDocumentError(
                f"{name} must be a string", code="invalid_config_value", expected=setting.expected(),
                got=repr(value)[:80], details={"setting": name},
            )  # fmt: skip
        if value not in setting.choices:
            raise InvalidDocumentError(
                f"{name} {value!r} is not allowed", code="config_out_of_bounds", expected=setting.expected(),
                got=value[:80], details={"setting": name},
            )  # fmt: skip
        return value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or (setting.kind is int and float(value) != int(value)) or not math.isfinite(value):
        raise InvalidDocumentError(
            f"{name} must be a finite {setting.kind.__name__}", code="invalid_config_value",
            expected=setting.expected(), got=repr(value)[:80], details={"setting": name},
        )  # fmt: skip
    assert setting.low is not None
    assert setting.high is not None
    if not setting.low <= value <= setting.high:
        raise InvalidDocumentError(
            f"{name} {value} is out of bounds", code="config_out_of_bounds", expected=setting.expected(),
            got=value, details={"setting": name},
        )  # fmt: skip
    return int(value) if setting.kind is int else float(value)


def check_agent_config(values: Any) -> dict[str, float | int | str]:
    """A whole layer, checked key by key (the first problem raises); ``{}`` is valid (no override)."""
    if not isinstance(values, Mapping):
        raise InvalidDocumentError(
            "agent configuration must be an object", code="invalid_config_value", expected="object",
            got=type(values).__name__,
        )  # fmt: skip
    if len(values) > MAX_CONFIG_KEYS:
        raise InvalidDocumentError(
            "too many agent settings", code="invalid_config_value", expected=f"<= {MAX_CONFIG_KEYS} keys",
            got=len(values),
        )  # fmt: skip
    return {str(k): check_setting(str(k), v) for k, v in sorted(values.items())}


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Layers in increasing precedence (class, selector, device): a later layer wins key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return dict(sorted(out.items()))
