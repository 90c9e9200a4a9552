"""What the twin's devices would report: one class's ``StageHealth`` from running tallies (pure, O(1)).

The model, stated so it can be judged: a device serves ``requests_per_s`` while it runs a version; its
request latencies are uniform in ``[0.7 m, 1.3 m]`` with ``m`` set so the device's p95 is the version's
``latency_p95_ms`` (times ``throttle_factor`` on a device that throttles under heat); model errors are the
version's ``error_rate`` of its requests; a shadow stage compares ``requests_per_s`` of them. Telemetry counts
from the moment the device switched, once its report has reached the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.server.services.rollouts.gates import ClassHealth, StageHealth
from edgefleet.server.services.twin.fleet import ClassFleet

__all__ = ["ClassTally", "class_health", "mixture_p95_ms"]

_LOW, _HIGH = 0.7, 1.3
_P95_OF_M = _LOW + (_HIGH - _LOW) * 0.95


@dataclass
class ClassTally:
    """Devices of one class whose switch the server has heard of, since when, and how many throttle."""

    serving: int = 0
    serving_since_sum_s: float = 0.0
    serving_throttled: int = 0
    shadow: int = 0
    shadow_since_sum_s: float = 0.0
    shadow_throttled: int = 0

    def add(self, *, shadow: bool, since_s: float, throttled: bool, sign: int = 1) -> None:
        if shadow:
            self.shadow += sign
            self.shadow_since_sum_s += sign * since_s
            self.shadow_throttled += sign * throttled
        else:
            self.serving += sign
            self.serving_since_sum_s += sign * since_s
            self.serving_throttled += sign * throttled


def mixture_p95_ms(p95_ms: float, *, devices: int, throttled: int, factor: float) -> float:
    """p95 over the requests of ``devices`` equally busy devices, ``throttled`` of them ``factor`` x slower"""
    m = p95_ms / _P95_OF_M
    if devices <= 0:
        return p95_ms
    w_slow = throttled / devices

    def cdf(x: float) -> float:
        def one(scale: float) -> float:
            lo, hi = _LOW * m * scale, _HIGH * m * scale
            return min(1.0, max(0.0, (x - lo) / (hi - lo)))

        return (1 - w_slow) * one(1.0) + w_slow * one(factor)

    lo, hi = _LOW * m, _HIGH * m * max(factor, 1.0)
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < 0.95 else (lo, mid)
    return hi


def class_health(cls: ClassFleet, tally: ClassTally, *, now_s: float) -> ClassHealth:
    """The new version's health on the class's exposed devices as the engine would read it at ``now_s``."""
    rate = cls.requests_per_s
    requests = int(rate * (tally.serving * now_s - tally.serving_since_sum_s))
    compared = int(rate * (tally.shadow * now_s - tally.shadow_since_sum_s))
    new, old = cls.candidate, cls.current
    p95 = baseline = None
    devices = tally.serving or tally.shadow
    throttled = tally.serving_throttled if tally.serving else tally.shadow_throttled
    if requests > 0 and new.latency_p95_ms is not None:
        p95 = mixture_p95_ms(
            new.latency_p95_ms, devices=tally.serving, throttled=tally.serving_throttled,
            factor=cls.throttle_factor,
        )  # fmt: skip
    if devices and old.latency_p95_ms is not None:
        baseline = mixture_p95_ms(
            old.latency_p95_ms, devices=devices, throttled=throttled, factor=cls.throttle_factor
        )
    health = StageHealth(
        requests=requests,
        errors=round(requests * new.error_rate),
        latency_p95_ms=p95,
        baseline_p95_ms=baseline,
        shadow_agreement=new.shadow_agreement if compared else None,
        shadow_compared=compared,
        reporting_devices=(tally.serving if requests else 0) + (tally.shadow if compared else 0),
    )
    envelope = cls.envelope_p95_ms if cls.envelope_p95_ms is not None else float("inf")
    return ClassHealth(health, envelope)
