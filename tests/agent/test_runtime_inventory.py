"""The runtime inventory runs in a child process, and ``agent run`` starts it only after a delay (it must not
compete with loading the model and the first inference)."""

from __future__ import annotations

import threading
import time

import pytest

from edgefleet.agent.runtime.inventory import InventoryProbe


def test_a_stop_during_the_delay_cancels_the_probe() -> None:
    stop = threading.Event()
    probe = InventoryProbe(delay_s=30.0, stop=stop).start()
    stop.set()
    probe.join(timeout_s=5.0)
    assert probe.get() is None  # it never ran: no child process was started


def test_nothing_is_known_during_the_delay() -> None:
    stop = threading.Event()
    probe = InventoryProbe(delay_s=30.0, stop=stop).start()
    try:
        time.sleep(0.2)
        assert probe.get() is None
    finally:
        stop.set()
        probe.join(timeout_s=5.0)


@pytest.mark.slow
def test_after_the_delay_the_child_reports_the_installed_runtime() -> None:
    probe = InventoryProbe(delay_s=0.1).start()
    probe.join(timeout_s=120.0)
    inventory = probe.get()
    assert inventory is not None
    assert "CPUExecutionProvider" in inventory["onnxruntime"]["execution_providers"]
