"""How a simulated device talks to the control plane: a small interface, and the real signed HTTP channel.

``HttpDeviceLink`` is what a real agent uses (``agent.channel.DeviceChannel``: every request signed with the
device key). Benchmarks that must drive thousands of devices on a small machine may inject a link that calls
the server's use cases in-process instead; the simulated device does not know the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet import __version__
from edgefleet.agent.channel import DeviceChannel
from edgefleet.protocol.errors import EdgefleetError, error_from_body
from edgefleet.trust.director import public_key_pem

__all__ = ["DesiredView", "DeviceLink", "HttpDeviceLink", "enroll_in_memory", "view_of"]


@dataclass(frozen=True)
class DesiredView:
    """The part of a signed desired state a simulated device acts on."""

    generation: int
    slots: dict[str, str]
    """slot -> artifact id"""
    versions: dict[str, str] = field(default_factory=dict)
    """artifact id -> ``<model>/<version>``, the name telemetry reports it under"""


class DeviceLink(Protocol):
    def poll(self, held_generation: int | None) -> DesiredView | None:
        """The device's desired state, or ``None`` when it already holds ``held_generation`` (304)."""

    def report(self, body: dict[str, Any]) -> None:
        """Send a ``DeviceReport`` document."""

    def send_telemetry(self, batch: dict[str, Any]) -> None:
        """Send a ``TelemetryBatch`` document."""


def view_of(envelope: dict[str, Any]) -> DesiredView:
    signed = envelope["signed"]
    slots = signed.get("slots", {})
    return DesiredView(
        generation=int(signed["generation"]),
        slots={slot: str(a["artifact_id"]) for slot, a in slots.items()},
        versions={
            # an assignment names its manifest's TUF target, ``<model>/<version>/<class>/manifest.json``
            str(a["artifact_id"]): "/".join(str(a["manifest"]["path"]).split("/")[:2])
            for a in slots.values()
            if isinstance(a.get("manifest"), dict) and isinstance(a["manifest"].get("path"), str)
        },
    )


class HttpDeviceLink:
    """The real signed device channel. The signed envelope is not verified here: a simulated device acts
    on the slots it was told (the real agent's verification is tested with the agent)."""

    def __init__(
        self,
        server_url: str,
        *,
        device_id: str,
        key: Ed25519PrivateKey,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"transport": transport}
        if clock is not None:
            kwargs["clock"] = clock
        self.channel = DeviceChannel(server_url, device_id=device_id, key=key, **kwargs)

    def poll(self, held_generation: int | None) -> DesiredView | None:
        headers = {"if-none-match": f'"{held_generation}"'} if held_generation else None
        response = self.channel.request("GET", "/v1/device/desired-state", headers=headers)
        if response.status_code == 304:
            return None
        return view_of(response.json())

    def report(self, body: dict[str, Any]) -> None:
        self.channel.request("POST", "/v1/device/report", json_body=body)

    def send_telemetry(self, batch: dict[str, Any]) -> None:
        self.channel.request("POST", "/v1/device/telemetry", json_body=batch)

    def close(self) -> None:
        self.channel.close()


def enroll_in_memory(
    http: httpx.Client, token: str, *, serial: str | None = None
) -> tuple[str, Ed25519PrivateKey]:
    """Enroll a simulated device over the public enrollment call; the key stays in memory (no data dir).

    Returns ``(device_id, key)``."""
    key = Ed25519PrivateKey.generate()
    body = {
        "token": token,
        "public_key_pem": public_key_pem(key.public_key()),
        "serial": serial,
        "agent_version": __version__,
    }
    response = http.post("/v1/enroll", json=body)
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 201 or not isinstance(data, dict):
        raise error_from_body(response.status_code, data)
    device_id = data.get("device_id")
    if not isinstance(device_id, str):
        raise EdgefleetError("enrollment answer without device_id", code="unexpected_response", got=data)
    return device_id, key
