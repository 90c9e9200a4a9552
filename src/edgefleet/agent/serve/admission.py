"""Bounded concurrency: at most ``max_concurrent`` inferences run, at most ``max_queue`` wait for a turn.

A request that finds the queue full is refused at once (``ServerBusyError`` with a Retry-After), and one that
waited ``queue_timeout_s`` without a turn is refused too: work never piles up without bound.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from edgefleet.agent.serve.errors import ServerBusyError

__all__ = ["AdmissionGate", "AdmissionPolicy", "retry_after_s"]


@dataclass(frozen=True)
class AdmissionPolicy:
    max_concurrent: int = 1
    max_queue: int = 16
    queue_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_queue < 0 or self.queue_timeout_s <= 0:
            raise ValueError("need max_concurrent >= 1, max_queue >= 0, queue_timeout_s > 0")


def retry_after_s(waiting: int, max_concurrent: int, mean_latency_s: float) -> int:
    """Pure: whole seconds until the queue ahead has likely drained (at least 1, at most 60)."""
    estimate = (waiting + 1) * max(mean_latency_s, 0.0) / max_concurrent
    return int(min(60, max(1, math.ceil(estimate))))


class AdmissionGate:
    """First come, first served: a freed slot is handed to the oldest waiter, never taken by a newcomer
    (with one slot and clients sending back to back, barging let one wait for seconds)."""

    def __init__(self, policy: AdmissionPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._running = 0
        self._queue: deque[threading.Event] = deque()
        self.refused = 0
        self.mean_latency_s = 0.0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _busy(self, why: str) -> ServerBusyError:
        self.refused += 1
        waiting = len(self._queue)
        return ServerBusyError(
            why,
            retry_after_s=retry_after_s(waiting, self.policy.max_concurrent, self.mean_latency_s),
            expected=f"<= {self.policy.max_concurrent} running + {self.policy.max_queue} queued",
            got={"running": self._running, "queued": waiting},
        )

    def acquire(self) -> None:
        with self._lock:  # the uncontended path takes one plain lock and allocates nothing
            if self._running < self.policy.max_concurrent and not self._queue:
                self._running += 1
                return
            if len(self._queue) >= self.policy.max_queue:
                raise self._busy("the inference queue is full")
            turn = threading.Event()
            self._queue.append(turn)
        turn.wait(self.policy.queue_timeout_s)
        with self._lock:
            if turn.is_set():  # handed a slot (perhaps just as the wait timed out): it is ours
                return
            self._queue.remove(turn)
            raise self._busy("no inference slot freed up in time")

    def release(self, latency_s: float) -> None:
        with self._lock:
            self.mean_latency_s += (latency_s - self.mean_latency_s) * 0.05
            if self._queue:
                self._queue.popleft().set()  # the slot passes to the oldest waiter; running stays the same
            else:
                self._running -= 1
