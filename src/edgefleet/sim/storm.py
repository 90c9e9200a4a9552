"""A fleet returning together after an outage, in virtual time: who is served, who is shed, and when.

Cheap enough for 10,000 devices in a second: each device is a few numbers, the server is ``admit`` (take a
slot or answer how many seconds to wait, as the control plane's admission does: ``server.api.admission``)
plus a fixed ``service_s`` per admitted call, and each shed device waits ``delay_after_shed(failures,
retry_after_s)`` (the agent's ``backoff_delay_s`` in the real configuration) before it tries again.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["StormResult", "simulate_return"]


@dataclass(frozen=True)
class StormResult:
    devices: int
    served: int
    shed: int
    """429 answers in all (a device may be shed several times)."""
    all_served_s: float
    """Virtual time at which the last device was served."""
    peak_in_flight: int
    peak_arrivals_per_s: int
    """The busiest second of arrivals after the first (the return itself is the first)."""


def simulate_return(
    devices: int,
    *,
    admit: Callable[[], float | None],
    release: Callable[[], None],
    delay_after_shed: Callable[[int, float], float],
    service_s: float,
    return_window_s: float = 1.0,
    seed: int = 1,
    horizon_s: float = 86_400.0,
) -> StormResult:
    """Every device arrives once within ``return_window_s`` and retries until served (or ``horizon_s``).

    ``admit()`` answers ``None`` (admitted: the call holds its slot for ``service_s``, then ``release()``)
    or a Retry-After in seconds."""
    rng = random.Random(seed)  # noqa: S311 - a simulation
    events: list[tuple[float, int, int, int]] = []  # (time, order, kind 0=leave 1=arrive, device)
    for device in range(devices):
        heapq.heappush(events, (rng.uniform(0, return_window_s), device, 1, device))
    order = devices
    failures = [0] * devices
    served = shed = in_flight = peak = 0
    last_s = 0.0
    arrivals: Counter[int] = Counter()
    while events:
        now_s, _, kind, device = heapq.heappop(events)
        if now_s > horizon_s:
            break
        if kind == 0:
            release()
            in_flight -= 1
            continue
        arrivals[math.floor(now_s)] += 1
        retry_after_s = admit()
        order += 1
        if retry_after_s is None:
            served += 1
            in_flight += 1
            peak = max(peak, in_flight)
            last_s = now_s + service_s
            heapq.heappush(events, (last_s, order, 0, device))
            continue
        shed += 1
        failures[device] += 1
        heapq.heappush(events, (now_s + delay_after_shed(failures[device], retry_after_s), order, 1, device))
    later = [count for second, count in arrivals.items() if second >= math.ceil(return_window_s)]
    return StormResult(devices, served, shed, last_s, peak, max(later, default=0))
