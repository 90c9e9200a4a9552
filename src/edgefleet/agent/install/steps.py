"""What the installer tells the outside about each journaled step (telemetry turns it into update events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["NoSteps", "StepRecord", "StepSink", "TransferReport"]


@dataclass
class TransferReport:
    """What fetching one artifact cost: bytes of targets downloaded vs the full files' bytes."""

    full_bytes: int = 0
    bytes_downloaded: int = 0
    delta_files: int = 0
    fallbacks: dict[str, str] = field(default_factory=dict)
    """manifest path -> why its delta was not used (a reason code); the full file was downloaded"""


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
    full_bytes: int | None = None
    """``download`` only: the bytes of the artifact's files (what a full download costs)."""
    bytes_downloaded: int | None = None
    """``download`` only: the bytes actually fetched (deltas, full files; files held already cost none)."""
    delta_files: int | None = None
    """``download`` only: files rebuilt from a delta."""
    delta_fallbacks: dict[str, str] | None = None
    """``download`` only: file -> why its delta was refused and the full file downloaded instead."""


class StepSink(Protocol):
    def step(self, record: StepRecord) -> None:
        """Called from the installer's thread; must not raise (a failure is logged and ignored)."""


class NoSteps:
    def step(self, record: StepRecord) -> None:
        return None
