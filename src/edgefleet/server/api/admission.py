"""Admission control for device calls: shed load with 429 and a spread ``Retry-After``, never a 5xx.

A conditional poll answered from the poll cache costs almost nothing and is always admitted. Device calls
that need the database (a 200, a report, telemetry, a poll after a change or a restart) hold one of
``max_in_flight`` slots while they run; a call that finds none free is refused at once with
``429 control_plane_busy`` and a ``Retry-After`` drawn uniformly from ``[retry_after_s, 2 * retry_after_s]``,
so a fleet returning together after an outage comes back spread over a window instead of all at once (the
agent adds its own jitter on top: ``agent.backoff``). Nothing was read or written for a refused call.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from edgefleet.protocol.errors import RateLimitedError

__all__ = ["Admission", "retry_after_s"]


def retry_after_s(base_s: float, rng: random.Random) -> int:
    """Pure: whole seconds in ``[base_s, 2 * base_s]`` (at least 1)."""
    low = max(1, round(base_s))
    return rng.randint(low, 2 * low)


class Admission:
    """Counts device calls holding the database; the event loop is the only caller (no lock needed)."""

    def __init__(self, max_in_flight: int, *, retry_after_s: float = 5.0, rng: random.Random | None = None):
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self._rng = rng or random.Random()  # noqa: S311 - spreading retries, not a secret
        self.in_flight = 0
        self.peak_in_flight = 0
        self.shed = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the ``with`` body, or raise ``RateLimitedError`` (429) when none is free."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def enter(self) -> None:
        """Take a slot or raise ``RateLimitedError`` (``slot`` pairs it with ``leave``)."""
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            raise RateLimitedError(
                "the server is busy; retry after the time in Retry-After",
                code="control_plane_busy",
                expected=f"<= {self.max_in_flight} device calls at once",
                got=self.in_flight + 1,
                details={"retry_after_s": retry_after_s(self.retry_after_s, self._rng)},
            )
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1
