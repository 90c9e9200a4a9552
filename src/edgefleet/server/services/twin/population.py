"""The twin's devices, drawn from a fleet description with a seed, and their online time (pure).

Each device gets a poll phase, a link speed, whether its install fails, whether it throttles under heat,
and its outages as sorted ``[start_s, end_s)`` intervals of virtual time. The same fleet and seed always give
the same devices: two policies compared on one seed meet the same fleet.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

from edgefleet.protocol.update_window import UpdateWindow, parse_update_window
from edgefleet.server.services.twin.fleet import FleetSpec, Outages

__all__ = ["Device", "Population", "draw_population"]

DAY_S = 86400.0


@dataclass
class Device:
    device_id: str
    hardware_class: str
    site: str
    poll_s: float
    phase_s: float
    bytes_per_s: float
    install_fails: bool
    throttled: bool
    timezone: str = "UTC"
    window: UpdateWindow | None = None
    outage_starts: list[float] = field(default_factory=list)
    outage_ends: list[float] = field(default_factory=list)

    def offline_until(self, t: float) -> float | None:
        """The end of the outage covering ``t``, or ``None`` when online at ``t``."""
        i = bisect.bisect_right(self.outage_starts, t) - 1
        if i >= 0 and t < self.outage_ends[i]:
            return self.outage_ends[i]
        return None

    def online(self, t: float) -> bool:
        return self.offline_until(t) is None

    def next_online(self, t: float) -> float:
        while (end := self.offline_until(t)) is not None:
            t = end
        return t

    def next_poll(self, t: float) -> float:
        """The first poll at or after ``t`` that reaches the server (offline: the poll on reconnecting)."""
        k = math.ceil((t - self.phase_s) / self.poll_s)
        return self.next_online(self.phase_s + max(k, 0) * self.poll_s)

    def online_advance(self, t: float, duration_s: float) -> float:
        """When ``duration_s`` of online time starting at ``t`` (an online moment) has passed."""
        left = duration_s
        while True:
            t = self.next_online(t)
            i = bisect.bisect_right(self.outage_starts, t)
            next_cut = self.outage_starts[i] if i < len(self.outage_starts) else math.inf
            if t + left <= next_cut:
                return t + left
            left -= next_cut - t
            t = next_cut


@dataclass
class Population:
    devices: list[Device]
    windows: dict[str, UpdateWindow | None]


def _outages(rng: random.Random, fleet: FleetSpec, spec: Outages) -> list[tuple[float, float]]:
    """One device's outages over the run (merged where they overlap)."""
    pattern = spec.pattern
    horizon = fleet.horizon_s
    if pattern == "always":
        return [(0.0, horizon * 2)]
    if pattern == "nightly":
        start_of_day = fleet.start_at.hour * 3600 + fleet.start_at.minute * 60
        span = ((spec.to_hour - spec.from_hour) % 24) * 3600 or 24 * 3600
        out = []
        day = -1
        while True:
            start = day * DAY_S + spec.from_hour * 3600 - start_of_day
            if start > horizon:
                break
            out.append((start, start + span))
            day += 1
        return [(max(s, 0.0), e) for s, e in out if e > 0]
    count = spec.per_week * horizon / (7 * DAY_S)
    n = int(count) + (1 if rng.random() < count - int(count) else 0)
    raw = sorted(
        (start := rng.uniform(0, horizon), start + rng.uniform(spec.min_s, spec.max_s)) for _ in range(n)
    )
    merged: list[tuple[float, float]] = []
    for s, e in raw:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def draw_population(fleet: FleetSpec, seed: int) -> Population:
    """Every device of the fleet, drawn with ``seed`` (classes in name order, devices in index order)."""
    rng = random.Random(seed)  # noqa: S311 - a simulation, not security
    devices: list[Device] = []
    for name, cls in sorted(fleet.classes.items()):
        windows = {text: parse_update_window(text) for text in {cls.update_window, *cls.update_windows}}
        chosen = set(rng.sample(range(cls.devices), round(cls.outages.fraction * cls.devices)))
        lo, hi = math.log(cls.link.min_mbps), math.log(cls.link.max_mbps)
        for i in range(cls.devices):
            device_id = cls.device_ids[i] if cls.device_ids else f"{name}-{i:06d}"
            site = cls.site_labels[i] if cls.site_labels else f"{name}-site-{i % cls.sites}"
            mbps = math.exp(rng.uniform(lo, hi)) if hi > lo else cls.link.min_mbps
            device = Device(
                device_id=device_id,
                hardware_class=name,
                site=site,
                poll_s=cls.poll_s,
                phase_s=rng.uniform(0, cls.poll_s),
                bytes_per_s=mbps * 1e6 / 8,
                install_fails=rng.random() < cls.install_failure_rate,
                throttled=rng.random() < cls.throttle_share,
                timezone=cls.timezones[i] if cls.timezones else cls.timezone,
                window=windows[cls.update_windows[i]] if cls.update_windows else windows[cls.update_window],
            )
            intervals: list[tuple[float, float]] = []
            if cls.offline and cls.offline[i]:
                intervals = [(0.0, fleet.horizon_s * 2)]
            elif i in chosen:
                intervals = _outages(rng, fleet, cls.outages)
            device.outage_starts = [s for s, _ in intervals]
            device.outage_ends = [e for _, e in intervals]
            devices.append(device)
    return Population(devices, {name: cls.window() for name, cls in fleet.classes.items()})
