"""A fleet of simulated devices stepped one poll interval at a time, with devices offline at random times.

``plan_outages`` is pure and seeded: the same seed gives the same outages, so a run and its baseline see the
same fleet. Time is simulated: the caller passes ``now`` for every step (no sleeping).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from edgefleet.protocol.errors import EdgefleetError
from edgefleet.sim.device import Behaviour, SimDevice, StepResult

__all__ = ["Outage", "SimFleet", "plan_outages"]


@dataclass(frozen=True)
class Outage:
    """The device is offline for poll intervals ``start <= i < end``."""

    start: int
    end: int

    def covers(self, interval: int) -> bool:
        return self.start <= interval < self.end


def plan_outages(
    device_ids: Sequence[str],
    *,
    fraction: float,
    horizon: int,
    min_length: int,
    max_length: int,
    seed: int,
) -> dict[str, Outage]:
    """Pick ``fraction`` of the devices; each goes offline once, at a random interval in ``[0, horizon)``,
    for ``min_length..max_length`` intervals."""
    if not 0 <= fraction <= 1 or horizon < 1 or not 1 <= min_length <= max_length:
        raise ValueError("fraction in [0, 1], horizon >= 1, 1 <= min_length <= max_length")
    rng = random.Random(seed)  # noqa: S311 - a simulation, not security
    chosen = rng.sample(list(device_ids), round(fraction * len(device_ids)))
    out: dict[str, Outage] = {}
    for device_id in sorted(chosen):
        start = rng.randrange(horizon)
        out[device_id] = Outage(start, start + rng.randint(min_length, max_length))
    return out


@dataclass
class SimFleet:
    devices: list[SimDevice]
    behaviour: Behaviour
    outages: dict[str, Outage] = field(default_factory=dict)
    interval: int = 0
    errors: int = 0
    """Device calls that failed (a real agent would retry at its next poll)."""

    def online(self, device_id: str, interval: int | None = None) -> bool:
        outage = self.outages.get(device_id)
        return outage is None or not outage.covers(self.interval if interval is None else interval)

    def step(
        self,
        *,
        now: datetime,
        window_s: float,
        serve: bool = True,
        order: Callable[[list[SimDevice]], list[SimDevice]] | None = None,
    ) -> list[StepResult]:
        """One poll interval: every online device steps (in ``order``, default as listed)."""
        results: list[StepResult] = []
        for device in order(list(self.devices)) if order else self.devices:
            if not self.online(device.device_id):
                results.append(StepResult(device.device_id, False, device.active))
                continue
            try:
                results.append(device.step(self.behaviour, now=now, window_s=window_s, serve=serve))
            except EdgefleetError:
                self.errors += 1
                results.append(StepResult(device.device_id, True, device.active))
        self.interval += 1
        return results

    def running(self, artifact_id: str) -> list[str]:
        return [d.device_id for d in self.devices if d.active == artifact_id]
