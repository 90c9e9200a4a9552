"""How often the rollout engine evaluates: pure rules, each taking an explicit ``now`` or duration.

Every server replica runs the engine. Two rules keep a rollout of 100,000 devices from costing a core:

* ``evaluation_due``: under the rollout's row lock, a replica evaluates the rollout only when no engine
  (its own or another replica's) evaluated it less than one tick ago. Two replicas whose ticks interleave
  evaluate each rollout about once per tick between them, not once each: the second one to take the lock
  finds the first one's stamp and skips.
* ``next_tick_delay``: a replica waits at least ``tick_s`` between ticks, and at least
  ``(1 / max_busy_share - 1)`` times its last tick's duration, so that the engine is busy (its thread and
  the database work it waits for) at most ``max_busy_share`` of the time, however large the rollouts.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["CLOCK_SKEW_TOLERANCE_S", "evaluation_due", "next_tick_delay"]

CLOCK_SKEW_TOLERANCE_S = 60.0
"""A stamp this far in the engine's future (another replica's clock ahead, or this one's stepped back) does
not hold evaluations back: they go on, as with no stamp."""


def evaluation_due(last_evaluated_at: datetime | None, now: datetime, min_interval_s: float) -> bool:
    """Whether an engine at ``now`` evaluates a rollout last evaluated at ``last_evaluated_at``.

    Due when it never was, when ``min_interval_s`` or more have passed, or when the stamp lies more than
    ``CLOCK_SKEW_TOLERANCE_S`` ahead of ``now``. A stamp slightly ahead (the other replica took ``now`` a
    little later, then held the lock while this one waited for it) counts as recent: skipped."""
    if last_evaluated_at is None or min_interval_s <= 0:
        return True
    elapsed = (now - last_evaluated_at).total_seconds()
    return elapsed >= min_interval_s or elapsed < -CLOCK_SKEW_TOLERANCE_S


def next_tick_delay(tick_s: float, last_tick_s: float, max_busy_share: float) -> float:
    """Seconds to wait before the next tick: ``tick_s``, or longer after a long tick, so that ticks take at
    most ``max_busy_share`` (0 < share <= 1) of the engine's time: busy ``d``, then idle
    ``d * (1/share - 1)``."""
    if not 0 < max_busy_share <= 1:
        raise ValueError(f"expected 0 < max_busy_share <= 1, got {max_busy_share}")
    return max(tick_s, max(last_tick_s, 0.0) * (1 / max_busy_share - 1))
