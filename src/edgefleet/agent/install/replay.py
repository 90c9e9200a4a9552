"""Pure replay of the install journal for what a crash may have left half done: a rollback, a rejection count.

A rollback is journaled as a decision (``event: "rollback"``, with the versions it goes from and to, and
whether it counts a rejection) before anything on disk changes, and closed by ``rolled_back`` (done) or
``rollback_abandoned`` (given up) of the same attempt. A decision still open on start is finished by
``recover()``: a power cut during a rollback ends in the previous version, counted once.

An install attempt that failed its load or health check is journaled ``failed`` with ``count: true`` before
the rejection is counted; ``recover()`` counts it again idempotently (``SlotStore.count_rollback(attempt=)``),
so a cut between the two writes neither loses nor doubles the count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ROLLBACK_CLOSED",
    "STEPS",
    "TERMINAL_EVENTS",
    "Attempt",
    "RollbackIntent",
    "completed_rollback",
    "last_attempt",
    "pending_rollback",
    "rejection_to_count",
]

STEPS = ("download", "verify", "stage", "load", "health", "switch", "commit")
TERMINAL_EVENTS = ("committed", "failed", "rolled_back", "interrupted", "refused", "deferred")
"""``deferred``: staged and verified, the switch waits for the update window (a later attempt resumes)."""
ROLLBACK_CLOSED = ("rolled_back", "rollback_abandoned")


@dataclass
class Attempt:
    attempt: str
    artifact_id: str
    version: str
    steps_done: list[str] = field(default_factory=list)
    terminal: str | None = None
    error_code: str | None = None

    @property
    def finished(self) -> bool:
        return self.terminal is not None


def last_attempt(records: list[dict[str, Any]]) -> Attempt | None:
    """Pure: the most recent attempt, with the steps it completed and how (or whether) it ended."""
    current: Attempt | None = None
    for rec in records:
        if rec.get("event") == "begin":
            current = Attempt(str(rec["attempt"]), str(rec["artifact_id"]), str(rec["version"]))
            continue
        if current is None or rec.get("attempt") != current.attempt:
            continue
        event = rec.get("event")
        if event == "done" and rec.get("step") in STEPS:
            current.steps_done.append(str(rec["step"]))
        elif event in TERMINAL_EVENTS:
            current.terminal = str(event)
            current.error_code = rec.get("code")
    return current


@dataclass(frozen=True)
class RollbackIntent:
    attempt: str
    """The attempt on trial being rolled back, or a fresh id (operator rollback, disabled artifact)."""
    reason: str
    from_version: str
    from_artifact: str
    to_version: str
    to_artifact: str
    count: bool
    """The rollback counts one rejection of ``from_artifact`` (trial failures; not operator paths)."""

    def to_record(self) -> dict[str, Any]:
        """The journal fields (the journal adds ``attempt`` and ``at``)."""
        return {
            "event": "rollback",
            "code": self.reason,
            "from_version": self.from_version,
            "from_artifact": self.from_artifact,
            "to_version": self.to_version,
            "to_artifact": self.to_artifact,
            "count": self.count,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> RollbackIntent | None:
        try:
            fields = {k: rec[k] for k in ("attempt", "code", "from_version", "from_artifact", "to_version")}
            to_artifact, count = rec["to_artifact"], rec["count"]
        except KeyError:
            return None
        texts = (*fields.values(), to_artifact)
        if not all(isinstance(v, str) for v in texts) or not isinstance(count, bool):
            return None
        return cls(
            attempt=fields["attempt"],
            reason=fields["code"],
            from_version=fields["from_version"],
            from_artifact=fields["from_artifact"],
            to_version=fields["to_version"],
            to_artifact=to_artifact,
            count=count,
        )


def pending_rollback(records: list[dict[str, Any]]) -> RollbackIntent | None:
    """Pure: the rollback decided last and not closed since (``ROLLBACK_CLOSED`` of its attempt), provided no
    install attempt began after it. ``None`` when there is none."""
    pending: RollbackIntent | None = None
    for rec in records:
        event = rec.get("event")
        closes = pending is not None and event in ROLLBACK_CLOSED and rec.get("attempt") == pending.attempt
        if event == "rollback":
            pending = RollbackIntent.from_record(rec)
        elif event == "begin" or closes:
            pending = None
    return pending


def completed_rollback(records: list[dict[str, Any]]) -> RollbackIntent | None:
    """Pure: the last rollback, when it was done (``rolled_back``) and no install attempt began since: what a
    restarted slot still reports (``rolled_back:<reason>``) until its next attempt."""
    decided: RollbackIntent | None = None
    done: RollbackIntent | None = None
    for rec in records:
        event = rec.get("event")
        if event == "rollback":
            decided = RollbackIntent.from_record(rec)
        elif event == "begin":
            decided = done = None
        elif event == "rolled_back" and decided is not None and rec.get("attempt") == decided.attempt:
            done = decided
        elif event == "rollback_abandoned" and decided is not None and rec.get("attempt") == decided.attempt:
            decided = None
    return done


def rejection_to_count(records: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Pure: ``(artifact id, attempt)`` when the last attempt ended ``failed`` with ``count: true`` (a failed
    load or health check): the rejection ``recover()`` makes sure is counted."""
    current: dict[str, Any] | None = None
    failed = False
    for rec in records:
        if rec.get("event") == "begin":
            current, failed = rec, False
        elif (
            current is not None and rec.get("attempt") == current["attempt"] and rec.get("event") == "failed"
        ):
            failed = rec.get("count") is True
    if current is None or not failed:
        return None
    return str(current.get("artifact_id")), str(current.get("attempt"))
