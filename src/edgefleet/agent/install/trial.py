"""The trial after a switch: pure decisions on whether to keep, commit or roll back the new version."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["TrialPolicy", "TrialState", "trial_verdict"]


@dataclass(frozen=True)
class TrialPolicy:
    window_s: float = 600.0
    """Minimum time on trial before the commit."""
    min_requests: int = 0
    """Minimum requests served before the commit (0: time alone)."""
    max_failure_rate: float = 0.05
    min_requests_for_rate: int = 20
    """The failure rate is judged only once this many requests were served."""
    watchdog_s: float | None = None
    """When set, the serving loop must call ``heartbeat`` at least this often during the trial."""
    max_restarts: int = 1
    """Agent restarts tolerated during the trial (a power cut happens); one more rolls back."""


@dataclass
class TrialState:
    version: str
    artifact_id: str
    attempt: str
    started_at: str
    requests: int = 0
    failures: int = 0
    restarts: int = 0
    heartbeat_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialState:
        return cls(
            version=str(data["version"]),
            artifact_id=str(data["artifact_id"]),
            attempt=str(data["attempt"]),
            started_at=str(data["started_at"]),
            requests=int(data.get("requests", 0)),
            failures=int(data.get("failures", 0)),
            restarts=int(data.get("restarts", 0)),
            heartbeat_at=data.get("heartbeat_at"),
        )


Verdict = Literal["continue", "commit", "rollback"]


def trial_verdict(state: TrialState, policy: TrialPolicy, now: datetime) -> tuple[Verdict, str | None]:
    """(what to do, the reason code when rolling back)."""
    if state.restarts > policy.max_restarts:
        return "rollback", "trial_crashed"
    judged = state.requests >= policy.min_requests_for_rate and state.requests > 0
    if judged and state.failures / state.requests > policy.max_failure_rate:
        return "rollback", "trial_failure_rate"
    if policy.watchdog_s is not None:
        last = datetime.fromisoformat(state.heartbeat_at or state.started_at)
        if (now - last).total_seconds() > policy.watchdog_s:
            return "rollback", "trial_watchdog"
    elapsed_s = (now - datetime.fromisoformat(state.started_at)).total_seconds()
    if elapsed_s >= policy.window_s and state.requests >= policy.min_requests:
        return "commit", None
    return "continue", None
