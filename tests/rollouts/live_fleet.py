"""A small simulated fleet against a real server URL (a ``live_server`` or a server process): the world a
rollout needs (classes, a model, artifacts, a class pin) and devices on the real signed channel."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.sim.artifacts import register_stand_in_artifact
from edgefleet.sim.device import Behaviour, SimDevice
from edgefleet.sim.fleet import SimFleet
from edgefleet.sim.link import HttpDeviceLink, enroll_in_memory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"
CLASS = "medical-cart-cpu"
MODEL = "digits"


def register_artifact(client: EdgefleetClient, version: str, hardware_class: str = CLASS) -> str:
    return register_stand_in_artifact(client, model=MODEL, version=version, hardware_class=hardware_class)


@dataclass
class LiveFleet:
    url: str
    client: EdgefleetClient
    v1: str
    v2: str
    fleet: SimFleet

    def step(self) -> None:
        self.fleet.step(now=datetime.now(timezone.utc), window_s=1.0)

    @contextmanager
    def running(self, period_s: float = 0.05) -> Iterator[None]:
        """Step the fleet in a background thread (devices poll, install, report, serve) until exit."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                self.step()
                stop.wait(period_s)

        thread = threading.Thread(target=loop, name="sim-fleet", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)


def make_fleet(
    url: str, admin_token: str, *, devices: int = 4, slow_v2: bool = False, setup: bool = True
) -> LiveFleet:
    """Classes, model ``digits`` with v1 (pinned for the class) and v2, ``devices`` enrolled devices that
    already ran v1 and reported its latency (the relative-latency baseline)."""
    client = EdgefleetClient(url, admin_token)
    if setup:
        client.apply_classes(parse_classes_toml(EXAMPLES.read_text()))
        client.create_model(MODEL)
    v1 = register_artifact(client, "1.0.0")
    v2 = register_artifact(client, "2.0.0")
    client.pin(scope="class", target=CLASS, slot="default", artifact_id=v1)
    sims = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for i in range(devices):
            token = client.create_enrollment_token(CLASS, labels={"site": f"site-{i % 2}"}).token
            device_id, key = enroll_in_memory(http, token)
            link = HttpDeviceLink(url, device_id=device_id, key=key)
            sims.append(SimDevice(device_id, link, rng=random.Random(i)))
    behaviour = Behaviour(latency_factor={v2: 3.0} if slow_v2 else {}, requests_per_window=20)
    world = LiveFleet(url, client, v1, v2, SimFleet(sims, behaviour))
    world.step()  # everyone runs v1 and reports its latency
    return world
