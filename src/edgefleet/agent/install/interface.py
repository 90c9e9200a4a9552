"""The interface between the sync coordinator and whatever installs models.

The coordinator hands over only verified desired states. The real installer (A/B slots, health checks,
rollback) implements this protocol; ``RecordingInstaller`` is the fake that tests and dry runs use.
"""

from __future__ import annotations

import threading
from typing import Protocol

from edgefleet.protocol.wire.desired_state import DesiredState, SlotReport

__all__ = ["Installer", "NoInstaller", "RecordingInstaller"]


class Installer(Protocol):
    def apply(self, state: DesiredState) -> None:
        """Act on a verified desired state. Must not raise for per-slot failures: record them instead."""

    def slot_reports(self) -> dict[str, SlotReport]:
        """What each slot runs and is doing, for the device report."""

    def wants_retry(self) -> bool:
        """A slot is behind its desired artifact and not refused (an install was cut or failed)."""

    def retry(self) -> bool:
        """Apply the last desired state again when ``wants_retry()``; True when it did."""


class RecordingInstaller:
    """Records every state handed over and pretends each assignment became active at once."""

    def __init__(self) -> None:
        self.applied: list[DesiredState] = []
        self._lock = threading.Lock()

    def apply(self, state: DesiredState) -> None:
        with self._lock:
            self.applied.append(state)

    def wants_retry(self) -> bool:
        return False

    def retry(self) -> bool:
        return False

    def slot_reports(self) -> dict[str, SlotReport]:
        with self._lock:
            if not self.applied:
                return {}
            return {
                slot: SlotReport(active=a.artifact_id, state="idle")
                for slot, a in self.applied[-1].slots.items()
            }


class NoInstaller:
    """Accepts assignments without installing anything and reports them honestly as not active.

    What ``edgefleet agent run`` uses until the A/B installer is configured on a device.
    """

    def __init__(self) -> None:
        self._assigned: dict[str, str] = {}

    def apply(self, state: DesiredState) -> None:
        self._assigned = {slot: a.artifact_id for slot, a in state.slots.items()}

    def wants_retry(self) -> bool:
        return False

    def retry(self) -> bool:
        return False

    def slot_reports(self) -> dict[str, SlotReport]:
        return {
            slot: SlotReport(active=None, state=f"assigned:{aid}") for slot, aid in self._assigned.items()
        }
