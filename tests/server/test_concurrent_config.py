"""Every setting of the agent sets one setting of the same class layer at once, over real HTTP through the
client: the layer's row is locked while merged (no write lost) and the race to create it answers 409
``conflict``, which the client sends again. On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.agent_config import SETTINGS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"
CART = "medical-cart-cpu"


def _value(name: str) -> float | int | str:
    setting = SETTINGS[name]
    return setting.choices[0] if setting.choices else setting.kind(setting.high)


@pytest.mark.slow
def test_concurrent_sets_of_one_layer_all_stay(live_server_factory, database_url) -> None:
    server = live_server_factory(database_url=database_url)
    with EdgefleetClient(server.url, server.admin_token) as admin:
        admin.apply_classes([c for c in parse_classes_toml(EXAMPLES.read_text()) if c.name == CART])
    for round_ in range(3):
        target = f"round={round_}"  # a fresh selector layer each round: the creation race too
        barrier = threading.Barrier(len(SETTINGS))
        failures: list[str] = []

        def one(name: str, target: str = target, barrier: threading.Barrier = barrier) -> None:
            with EdgefleetClient(server.url, server.admin_token, timeout_s=60) as client:
                client.list_config()  # connection open before the start line
                barrier.wait()
                try:
                    client.set_config(scope="selector", target=target, settings={name: _value(name)})
                except Exception as exc:  # collected and asserted below
                    failures.append(f"{name}: {exc}")

        threads = [threading.Thread(target=one, args=(name,)) for name in SETTINGS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert failures == []
        layers = httpx.get(f"{server.url}/v1/config", headers=server.admin_headers, timeout=30).json()[
            "items"
        ]
        (layer,) = [layer for layer in layers if layer["target"] == target]
        assert layer["settings"] == {name: _value(name) for name in SETTINGS}
