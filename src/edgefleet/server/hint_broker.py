"""Wake-up hints over MQTT (the control plane's side): broker credentials per device, the publisher, and
the loop that turns director-epoch changes into hints.

Each device connects with username = its device id and a password derived from the server's MQTT secret
(``device_password``: HMAC-SHA256, nothing stored); it gets both over its signed channel
(``GET /v1/device/hints``). The broker authenticates them from a password file the control plane renders
(``edgefleet hints passwd FILE``, Mosquitto's PBKDF2-SHA512 format) and confines each device to its own topic
with one ACL pattern (``pattern read edgefleet/devices/%u/hint``; see ``examples/mosquitto/``). The control
plane's own broker user is the only one that may write hints.

Without ``mqtt_url`` nothing here runs. While the broker is unreachable hints are dropped, not queued (paho
reconnects with a capped delay): devices keep polling on their interval, which is what a lost hint costs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from fastapi.concurrency import run_in_threadpool

from edgefleet.durable import atomic_write_bytes
from edgefleet.server.errors import ConfigurationError
from edgefleet.server.services.hints import HintCoalescer, changed_devices, hint_spread_s, known_devices
from edgefleet.server.settings import Settings, write_private_file
from edgefleet.server.store import Database

__all__ = [
    "BrokerAddress",
    "HintPublisher",
    "HintRuntime",
    "MqttHintPublisher",
    "device_password",
    "hint_payload",
    "mosquitto_password_line",
    "parse_broker_url",
    "send_hints",
]

log = logging.getLogger("edgefleet.server.hints")
MQTT_SECRET_FILE = "mqtt-secret"  # noqa: S105 - a file name
PBKDF2_ITERATIONS = 101  # what mosquitto_passwd writes for $7$ (Mosquitto 2.0)
HINT_PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def public_url(self) -> str:
        """The URL without credentials (what devices are told)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str, *, strict: bool = False) -> BrokerAddress:
    """The broker's address; ``strict``: an ``mqtt(s)://`` URL naming a host, else ``invalid_configuration``
    (lenient: a missing host or port is the local broker's). A URL that does not parse (an unclosed IPv6
    bracket, a port out of range) is ``invalid_configuration`` either way."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"the MQTT URL does not parse: {exc}", expected=_BROKER_URL_FORM, got=_redacted(url)
        ) from exc
    if strict and (parts.scheme not in ("mqtt", "mqtts") or not parts.hostname):
        raise ConfigurationError("not an MQTT broker URL", expected=_BROKER_URL_FORM, got=_redacted(url))
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


_BROKER_URL_FORM = "mqtt://[user:password@]host[:port] or mqtts://..."


def _redacted(url: str) -> str:
    return f"{url.split('://', 1)[0]}://***@{url.rsplit('@', 1)[1]}" if "@" in url else url[:200]


def device_password(secret: bytes, device_id: str) -> str:
    """The device's broker password: HMAC-SHA256 of its id under the server's MQTT secret (base64url)."""
    mac = hmac.new(secret, b"edgefleet-mqtt-v1:" + device_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def mosquitto_password_line(username: str, password: str, *, salt: bytes | None = None) -> str:
    """One line of a Mosquitto 2 password file (``$7$``: PBKDF2-SHA512, 101 iterations, 12-byte salt)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    encoded = f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    return f"{username}:{encoded}"


def hint_topic(prefix: str, device_id: str) -> str:
    return f"{prefix.rstrip('/')}/{device_id}/hint"


def hint_payload(device_id: str, *, spread_s: float) -> bytes:
    """What a hint says: whom it is for, and over how many seconds to spread the poll. No state, no
    authority: the device answers by polling its signed desired state."""
    return json.dumps(
        {"v": HINT_PAYLOAD_VERSION, "device_id": device_id, "spread_s": round(spread_s, 3)},
        separators=(",", ":"),
    ).encode()


def load_mqtt_secret(settings: Settings) -> bytes:
    """``mqtt_secret`` if set, else ``<data_dir>/mqtt-secret`` (created once, 0600)."""
    if settings.mqtt_secret:
        return settings.mqtt_secret.encode()
    path = settings.data_dir / MQTT_SECRET_FILE
    if not path.exists():
        write_private_file(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip().encode()


class HintPublisher(Protocol):
    def publish(self, topic: str, payload: bytes) -> bool:
        """Hand one hint to the broker; False when it cannot be sent now (dropped)."""

    def close(self) -> None: ...


class MqttHintPublisher:
    """paho-mqtt, connected in its own network thread; reconnects by itself (1 s .. 60 s)."""

    def __init__(self, address: BrokerAddress, *, client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"edgefleet-control-{secrets.token_hex(6)}",
            protocol=mqtt.MQTTv311,
        )
        if address.username is not None:
            self._client.username_pw_set(address.username, address.password)
        if address.tls:
            self._client.tls_set()
        self._client.reconnect_delay_set(min_delay=1, max_delay=60)
        self._client.on_connect = self._on_connect
        self._client.connect_async(address.host, address.port, keepalive=30)
        self._client.loop_start()

    @staticmethod
    def _on_connect(_client: Any, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("event=hint_broker_refused reason=%s", reason_code)
        else:
            log.info("event=hint_broker_connected")

    def publish(self, topic: str, payload: bytes) -> bool:
        if not self._client.is_connected():
            return False
        info = self._client.publish(topic, payload, qos=1)
        return bool(info.rc == 0)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class HintRuntime:
    """Per-process hint machinery: the secret, the publisher, what is pending, what has been swept."""

    settings: Settings
    secret: bytes
    coalescer: HintCoalescer
    publisher: HintPublisher | None = None
    """Connected by :meth:`start` (the app's lifespan), so building the app opens no connection."""
    polls_per_s: float = 500.0
    swept_epoch: int | None = None
    sent: int = 0
    dropped_unknown: int = 0
    dropped_unsent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, publisher: HintPublisher | None = None
    ) -> HintRuntime | None:
        if settings.mqtt_url is None:
            return None
        return cls(
            settings=settings,
            secret=load_mqtt_secret(settings),
            coalescer=HintCoalescer(settings.hint_min_interval_s),
            publisher=publisher,
        )

    def start(self) -> HintPublisher:
        if self.publisher is None:
            self.publisher = MqttHintPublisher(parse_broker_url(self.settings.mqtt_url or ""))
        return self.publisher

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None

    def device_config(self, device_id: str) -> dict[str, Any]:
        """What the device needs to listen (``GET /v1/device/hints``)."""
        settings = self.settings
        url = settings.mqtt_device_url or parse_broker_url(settings.mqtt_url or "").public_url()
        return {
            "broker_url": url,
            "topic": hint_topic(settings.mqtt_topic_prefix, device_id),
            "username": device_id,
            "password": device_password(self.secret, device_id),
            "min_interval_s": settings.hint_min_interval_s,
        }

    def offer(self, device_ids: Iterable[str]) -> None:
        with self._lock:
            self.coalescer.offer(device_ids)

    def round(self, db: Database, *, signed_target: Callable[[str], Any], now_s: float) -> int:
        """One round: sweep if the epoch moved, drop unknown devices, publish what is due. Returns the
        number of hints published."""
        with db.session() as session:
            from edgefleet.server.services.director_epoch import current_epoch

            with session.begin():
                epoch = current_epoch(session)
            if epoch != self.swept_epoch:
                epoch, changed = changed_devices(session, signed_target=signed_target)
                self.swept_epoch = epoch
                self.offer(changed)
            with self._lock:
                due = self.coalescer.due(now_s)
            if not due:
                return 0
            known = known_devices(session, due)
        self.dropped_unknown += len(due) - len(known)
        if len(due) != len(known):
            log.info("event=hints_dropped reason=unknown_device count=%d", len(due) - len(known))
        spread_s = hint_spread_s(len(known), self.polls_per_s)
        publisher = self.start()
        published = 0
        for device_id in sorted(known):
            topic = hint_topic(self.settings.mqtt_topic_prefix, device_id)
            if publisher.publish(topic, hint_payload(device_id, spread_s=spread_s)):
                published += 1
            else:
                self.dropped_unsent += 1
        self.sent += published
        if published or len(known) > published:
            log.info(
                "event=hints_sent count=%d unsent=%d spread_s=%.1f",
                published,
                len(known) - published,
                spread_s,
            )
        return published


async def send_hints(
    runtime: HintRuntime, db: Database, signed_target: Callable[[str], Any], now_s: Callable[[], float]
) -> None:
    """Run hint rounds every ``hint_check_s`` for as long as the app runs."""
    while True:
        try:
            await run_in_threadpool(runtime.round, db, signed_target=signed_target, now_s=now_s())
        except Exception:  # keep serving; the next round retries
            log.exception("event=hint_round_failed")
        await asyncio.sleep(runtime.settings.hint_check_s)


def broker_users(settings: Settings, db: Database) -> list[tuple[str, str]]:
    """The broker's users: the control plane's own (from ``mqtt_url``, if it names one) and every
    enrolled, unrevoked device with its derived password. Revoked devices are left out: rendering the file
    again (and reloading the broker) locks them out of the broker too."""
    from sqlalchemy import select

    from edgefleet.server.store.devices import DeviceRow

    secret = load_mqtt_secret(settings)
    users: list[tuple[str, str]] = []
    address = parse_broker_url(settings.mqtt_url or "mqtt://127.0.0.1")
    if address.username and address.password:
        users.append((address.username, address.password))
    with db.session() as session, session.begin():
        ids = session.execute(
            select(DeviceRow.id).where(DeviceRow.revoked_at.is_(None)).order_by(DeviceRow.id)
        ).scalars()
        users.extend((device_id, device_password(secret, device_id)) for device_id in ids)
    return users


def write_password_file(path: Path, entries: Iterable[tuple[str, str]]) -> int:
    """Write a Mosquitto password file of ``(username, password)`` entries atomically (0600). Returns
    the number of lines."""
    lines = [mosquitto_password_line(user, password) for user, password in entries]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode(), mode=0o600)
    os.chmod(path, 0o600)
    return len(lines)
