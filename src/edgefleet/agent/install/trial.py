"""The trial after a switch: pure decisions on whether to keep, commit or roll back the new version."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["MODEL_RUNGS", "TrialPolicy", "TrialState", "trial_sample", "trial_verdict"]

MODEL_RUNGS = ("preferred", "cpu")
"""The serving rungs on which the active version itself answers (``fallback`` and ``rule`` do not)."""


@dataclass(frozen=True)
class TrialPolicy:
    window_s: float = 600.0
    """Minimum time on trial before the commit (0: commit at the first judgement)."""
    min_requests: int = 0
    """Minimum requests served before the commit (0: time alone)."""
    max_failure_rate: float = 0.05
    min_requests_for_rate: int = 20
    """The failure rate is judged only once this many requests were served."""
    watchdog_s: float | None = None
    """When set, the serving loop must call ``heartbeat`` at least this often during the trial."""
    max_restarts: int = 1
    """Agent restarts tolerated during the trial (a power cut happens); one more rolls back."""

    def __post_init__(self) -> None:
        problems = trial_policy_problems(self)
        if problems:
            raise InvalidDocumentError(
                "invalid trial policy: " + "; ".join(problems),
                code="invalid_trial_policy",
                expected="window_s >= 0, min_requests >= 0, 0 <= max_failure_rate <= 1, "
                "min_requests_for_rate >= 1, watchdog_s > 0 or None, max_restarts >= 0",
                got=asdict(self),
            )


def trial_policy_problems(policy: TrialPolicy) -> list[str]:
    """Pure: what is wrong with ``policy`` (empty when it is valid)."""
    problems: list[str] = []
    if not (math.isfinite(policy.window_s) and policy.window_s >= 0):
        problems.append(f"window_s must be a finite number >= 0, got {policy.window_s}")
    if policy.min_requests < 0:
        problems.append(f"min_requests must be >= 0, got {policy.min_requests}")
    if not 0.0 <= policy.max_failure_rate <= 1.0:
        problems.append(f"max_failure_rate must be in [0, 1], got {policy.max_failure_rate}")
    if policy.min_requests_for_rate < 1:
        problems.append(f"min_requests_for_rate must be >= 1, got {policy.min_requests_for_rate}")
    if policy.watchdog_s is not None and not (math.isfinite(policy.watchdog_s) and policy.watchdog_s > 0):
        problems.append(f"watchdog_s must be > 0 (or None: off), got {policy.watchdog_s}")
    if policy.max_restarts < 0:
        problems.append(f"max_restarts must be >= 0, got {policy.max_restarts}")
    return problems


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
    model_version: str = ""
    """``<model>/<version>`` of the version on trial: what the serving layer names in each request."""

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
            model_version=str(data.get("model_version") or ""),
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


def trial_sample(rung: str, model_version: str, error_code: str | None, on_trial: str) -> bool | None:
    """Pure: how one served request counts for the version on trial (``on_trial``, ``<model>/<version>``).

    * answered by the ``fallback`` artifact or the ``rule``: a **failure** of the version on trial, whatever
      the answer was: the device could not serve with it;
    * answered by the version on trial on its ``preferred`` or ``cpu`` rung: ok when no error. A move from the
      preferred provider to the CPU provider of the *same* version is not a failure of that version (see
      docs/decisions.md); repeated failed runs are, and they also push the ladder down to ``fallback``;
    * answered by another version on a model rung (the moment between the switch and the serving layer
      picking it up): ``None``, not a request of the version on trial.
    """
    if rung not in MODEL_RUNGS:
        return False
    if model_version != on_trial:
        return None
    return error_code is None
