"""What the installer tells the outside about each journaled step (telemetry turns it into update events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["NoSteps", "StepRecord", "StepSink"]


@dataclass(frozen=True)
class StepRecord:
    """One journaled step of one install attempt, reported once, after its outcome is journaled."""

    slot: str
    attempt: str
    artifact_id: str
    step: str
    """``download``, ``verify``, ``stage``, ``load``, ``health``, ``switch`` or ``commit``"""
    ok: bool
    error_code: str | None = None
    duration_ms: float = 0.0
    reused: bool | None = None
    """``download`` only: the version was already on disk, nothing was fetched."""


class StepSink(Protocol):
    def step(self, record: StepRecord) -> None:
        """Called from the installer's thread; must not raise (a failure is logged and ignored)."""


class NoSteps:
    def step(self, record: StepRecord) -> None:
        return None
