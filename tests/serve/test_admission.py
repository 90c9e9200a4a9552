"""The admission gate: bounded, first come first served, and a waiter that gives up leaks no slot."""

from __future__ import annotations

import threading
import time

import pytest

from edgefleet.agent.serve.admission import AdmissionGate, AdmissionPolicy
from edgefleet.agent.serve.errors import ServerBusyError


def _wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def test_a_freed_slot_goes_to_the_oldest_waiter_not_to_a_newcomer() -> None:
    gate = AdmissionGate(AdmissionPolicy(max_concurrent=1, max_queue=4, queue_timeout_s=5))
    order: list[str] = []

    def client(name: str) -> None:
        gate.acquire()
        order.append(name)
        gate.release(0.001)

    gate.acquire()  # the slot is busy
    threads = []
    for name, queued in (("first", 1), ("second", 2)):
        t = threading.Thread(target=client, args=(name,))
        t.start()
        threads.append(t)
        _wait_until(lambda q=queued: gate.waiting == q)
    gate.release(0.001)
    client("newcomer")  # arrives as the slot frees up: it queues behind both
    for t in threads:
        t.join(5)
    assert order == ["first", "second", "newcomer"]
    assert (gate.running, gate.waiting) == (0, 0)


def test_a_waiter_that_times_out_is_refused_and_leaks_nothing() -> None:
    gate = AdmissionGate(AdmissionPolicy(max_concurrent=1, max_queue=1, queue_timeout_s=0.05))
    gate.acquire()
    with pytest.raises(ServerBusyError) as timed_out:
        gate.acquire()  # waits 50 ms for a slot that never frees
    assert "in time" in timed_out.value.message
    assert (gate.running, gate.waiting) == (1, 0)
    gate.release(0.001)
    assert (gate.running, gate.waiting) == (0, 0)
    gate.acquire()  # the slot is free again: the timed-out waiter took none
    assert gate.refused == 1


def test_a_full_queue_is_refused_at_once() -> None:
    gate = AdmissionGate(AdmissionPolicy(max_concurrent=1, max_queue=1, queue_timeout_s=5))
    gate.acquire()
    served = threading.Event()

    def waiter() -> None:
        gate.acquire()
        served.set()
        gate.release(0.001)

    t = threading.Thread(target=waiter)
    t.start()
    _wait_until(lambda: gate.waiting == 1)
    with pytest.raises(ServerBusyError) as full:
        gate.acquire()  # the one queue place is taken
    assert "full" in full.value.message
    assert full.value.details["got"] == {"running": 1, "queued": 1}
    gate.release(0.001)
    t.join(5)
    assert served.is_set()
    assert (gate.running, gate.waiting) == (0, 0)
