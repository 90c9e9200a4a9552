"""The kill switch's reach: what disabling an artifact does to the devices that serve it, and where they
are now. A device with a ``previous`` version in the slot rolls back to it; one without withdraws the
artifact and serves down its degraded ladder (the class's fallback artifact, or the rule), reporting
``serving.mode`` and ``serving.reason = "artifact_disabled"``. The agent decides on the device
(``agent.install.machine.decide_disabled``); this module only counts, from the devices' reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server.store.devices import DeviceRow

__all__ = ["KillSwitchCounts", "count_fates", "device_fate", "kill_switch_counts"]

WITHDRAWN = "withdrawn"


def device_fate(report: dict[str, Any] | None, artifact_id: str) -> str | None:
    """Pure: where one device stands with ``artifact_id`` disabled, from its newest report.

    ``rolls_back`` / ``degrades``: it still serves the artifact, with / without a ``previous`` version (what
    it will do at its next poll); ``withdrawn``: it stopped serving it and runs down the ladder (``mode``
    fallback or rule); ``None``: the artifact is not its concern."""
    if not report:
        return None
    for slot in (report.get("slots") or {}).values():
        if not isinstance(slot, dict):
            continue
        if slot.get("active") == artifact_id:
            return "rolls_back" if slot.get("previous") else "degrades"
        if str(slot.get("state") or "").startswith(WITHDRAWN) and slot.get("failed_artifact") == artifact_id:
            return WITHDRAWN
    return None


@dataclass(frozen=True)
class KillSwitchCounts:
    rolls_back: int = 0
    degrades: int = 0
    withdrawn: int = 0
    withdrawn_modes: dict[str, int] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "rolls_back": self.rolls_back,
            "degrades": self.degrades,
            "withdrawn": self.withdrawn,
            "withdrawn_modes": dict(self.withdrawn_modes or {}),
        }


def count_fates(reports: Iterable[dict[str, Any] | None], artifact_id: str) -> KillSwitchCounts:
    """Pure: ``device_fate`` over many reports; withdrawn devices counted by the rung they serve on."""
    counts = {"rolls_back": 0, "degrades": 0, WITHDRAWN: 0}
    modes: dict[str, int] = {}
    for report in reports:
        fate = device_fate(report, artifact_id)
        if fate is None:
            continue
        counts[fate] += 1
        if fate == WITHDRAWN:
            mode = str(((report or {}).get("serving") or {}).get("mode") or "none")
            modes[mode] = modes.get(mode, 0) + 1
    return KillSwitchCounts(counts["rolls_back"], counts["degrades"], counts[WITHDRAWN], modes)


def kill_switch_counts(session: Session, artifact_id: str, hardware_class: str) -> KillSwitchCounts:
    """Counted over the artifact's class (the caller holds a transaction)."""
    reports = session.execute(
        select(DeviceRow.report).where(
            DeviceRow.hardware_class == hardware_class, DeviceRow.revoked_at.is_(None)
        )
    ).scalars()
    return count_fates(reports, artifact_id)
