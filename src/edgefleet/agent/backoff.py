"""Poll and reconnect timing: pure functions of the attempt count and an injected random source.

Capped exponential backoff with full jitter (as aiomqtt and AWS recommend): a fleet that lost its server at
the same instant does not come back as a thundering herd, and no failure path ever hot-loops.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["PollTiming", "backoff_delay_s", "poll_delay_s"]


@dataclass(frozen=True)
class PollTiming:
    poll_interval_s: float = 30.0
    poll_jitter: float = 0.2
    """fraction of the interval, added or removed at random"""
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    min_delay_s: float = 0.05
    """a floor under every delay: nothing hot-loops, whatever the configuration"""


def poll_delay_s(timing: PollTiming, rng: random.Random) -> float:
    """Delay before the next poll after a success."""
    spread = timing.poll_interval_s * timing.poll_jitter
    return max(timing.min_delay_s, timing.poll_interval_s + rng.uniform(-spread, spread))


def backoff_delay_s(
    timing: PollTiming, failures: int, rng: random.Random, *, retry_after_s: float | None = None
) -> float:
    """Delay after ``failures`` consecutive failures (>= 1): full jitter under a capped exponential.

    A server's ``Retry-After`` is honoured as a lower bound, itself capped, and spread: the delay is drawn
    in ``[retry_after, 2 * retry_after]`` (under the cap), so a fleet the server shed with the same
    ``Retry-After`` after an outage does not come back in the same second.
    """
    exp = min(timing.backoff_cap_s, timing.backoff_base_s * (2 ** min(max(failures - 1, 0), 32)))
    delay = rng.uniform(exp / 2, exp)
    if retry_after_s is not None and retry_after_s > 0:
        earliest = min(retry_after_s, timing.backoff_cap_s)
        delay = max(delay, rng.uniform(earliest, min(2 * earliest, timing.backoff_cap_s)))
    return max(timing.min_delay_s, delay)
