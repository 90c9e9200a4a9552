"""Pure alert decisions, each with an explicit ``now``: which event kinds exist, which devices are silent
beyond the threshold, when a rollout is stalled, and when (or whether) a failed delivery is tried again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from edgefleet.protocol.webhooks import EVENT_KINDS

__all__ = [
    "EVENT_KINDS",
    "SECURITY_CODES",
    "DeliveryOutcome",
    "RetryPolicy",
    "after_attempt",
    "retry_delay_s",
    "rollout_stalled",
    "security_dedup_key",
    "silent_devices",
]


SECURITY_CODES = frozenset(
    {"bad_signature", "replayed_request", "device_revoked", "probe_candidate_not_sent"}
)
"""Refusals of a known device's call that are security events (a clock skew or a malformed header is not)."""


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 5.0
    cap_s: float = 600.0
    max_attempts: int = 8
    """After this many failed attempts the delivery is given up (recorded as ``gave_up``)."""

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("need 0 < base_s <= cap_s")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")


def retry_delay_s(attempts: int, policy: RetryPolicy, jitter: float) -> float:
    """Capped exponential backoff with "equal jitter": after ``attempts`` failures wait between half and all
    of ``min(cap_s, base_s * 2 ** (attempts - 1))``. ``jitter`` in [0, 1) comes from the caller's RNG."""
    ceiling = min(policy.cap_s, policy.base_s * 2 ** max(0, min(attempts - 1, 30)))
    return ceiling / 2 + ceiling / 2 * min(max(jitter, 0.0), 1.0)


@dataclass(frozen=True)
class DeliveryOutcome:
    status: Literal["delivered", "pending", "gave_up"]
    attempts: int
    next_attempt_at: datetime | None


def after_attempt(
    *, ok: bool, attempts_before: int, now: datetime, policy: RetryPolicy, jitter: float
) -> DeliveryOutcome:
    """What one attempt makes of a delivery: delivered, due again later, or given up after the last try."""
    attempts = attempts_before + 1
    if ok:
        return DeliveryOutcome("delivered", attempts, None)
    if attempts >= policy.max_attempts:
        return DeliveryOutcome("gave_up", attempts, None)
    return DeliveryOutcome(
        "pending", attempts, now + timedelta(seconds=retry_delay_s(attempts, policy, jitter))
    )


def silent_devices(
    devices: Iterable[tuple[str, datetime | None, datetime]], *, now: datetime, threshold_s: float
) -> list[tuple[str, datetime]]:
    """``(device id, last_seen_at, enrolled_at)`` -> the devices silent for more than ``threshold_s``, with
    the moment their silence began (last contact, or enrollment for a device never heard from)."""
    out: list[tuple[str, datetime]] = []
    for device_id, last_seen_at, enrolled_at in devices:
        since = last_seen_at or enrolled_at
        if (now - since).total_seconds() > threshold_s:
            out.append((device_id, since))
    return out


def rollout_stalled(*, status: str, stage_started_at: datetime, now: datetime, stall_after_s: float) -> bool:
    """A running rollout that has stayed in one stage longer than ``stall_after_s`` (waiting on offline
    devices, a gate without data, a soak longer than anyone meant). Paused rollouts are not stalled."""
    return status == "running" and (now - stage_started_at).total_seconds() > stall_after_s


def security_dedup_key(code: str, device_id: str, now: datetime, bucket_s: int = 300) -> str:
    """One security event per device and code per ``bucket_s``: a flood of forged calls is one alert per
    window, not one row per request."""
    bucket = int(now.timestamp()) // bucket_s
    return f"security:{code}:{device_id}:{bucket}"
