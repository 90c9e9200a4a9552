"""Wake-up hints (the device's side): listen on the device's own MQTT topic and poll at once on a hint.

A hint carries no authority. It only moves the next poll earlier; the device still fetches and verifies
the signed desired state, so a forged, replayed or lost hint changes nothing but timing. A flood of hints
is coalesced: at most one hint-driven poll per ``min_interval_s`` after the last poll (:func:`hint_poll_at`),
and a hint for another device id or that does not parse is dropped (:func:`parse_hint`).

:class:`HintListener` runs in its own thread: it asks the control plane where to listen over the signed
channel (``GET /v1/device/hints``: broker URL, topic, username = device id, password), connects with
paho-mqtt (the ``hints`` extra; without it, or without a broker, the agent simply polls), and reconnects
with capped, fully jittered backoff (``agent.backoff``), like aiomqtt's reconnect loop. A (re)connection
wakes the poll loop once, since hints sent while it was away were lost.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from edgefleet.agent.backoff import PollTiming, backoff_delay_s
from edgefleet.protocol.errors import EdgefleetError

__all__ = [
    "HINTS_PATH",
    "Hint",
    "HintConfig",
    "HintListener",
    "Wakeup",
    "hint_poll_at",
    "parse_hint",
    "parse_hint_config",
    "reconnect_delay_s",
]

log = logging.getLogger("edgefleet.agent.hints")
HINTS_PATH = "/v1/device/hints"
MAX_HINT_BYTES = 1024
MAX_SPREAD_S = 300.0
MAX_MIN_INTERVAL_S = 600.0
CONFIG_RECHECK_S = 900.0
"""A server without a broker (``hints_not_configured``) is asked again this often."""


@dataclass(frozen=True)
class Hint:
    spread_s: float = 0.0
    """Poll at a random moment within this many seconds (the server spreads a large wave of hints)."""


@dataclass(frozen=True)
class HintConfig:
    host: str
    port: int
    tls: bool
    topic: str
    username: str
    password: str
    min_interval_s: float


def parse_hint(payload: bytes, device_id: str) -> Hint | None:
    """Pure: the hint in ``payload`` if it is one for ``device_id``, else ``None`` (dropped). Bounded: a
    payload over ``MAX_HINT_BYTES`` is dropped unread; ``spread_s`` is clamped to ``[0, MAX_SPREAD_S]``."""
    if len(payload) > MAX_HINT_BYTES:
        return None
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or body.get("device_id") != device_id:
        return None
    spread = body.get("spread_s", 0.0)
    if not isinstance(spread, (int, float)) or isinstance(spread, bool) or spread != spread:  # NaN
        spread = 0.0
    return Hint(spread_s=min(MAX_SPREAD_S, max(0.0, float(spread))))


def hint_poll_at(
    *,
    now_s: float,
    last_poll_s: float | None,
    next_poll_s: float,
    hint: Hint,
    min_interval_s: float,
    jitter: float,
) -> float:
    """Pure: when to poll after a hint received at ``now_s``: not before ``min_interval_s`` after the last
    poll (a flood of hints costs one poll per interval), at ``jitter`` (0..1) of the hint's spread, and
    never later than the poll already planned."""
    earliest = now_s if last_poll_s is None else max(now_s, last_poll_s + min_interval_s)
    return min(next_poll_s, earliest + jitter * hint.spread_s)


def parse_hint_config(body: Any, device_id: str) -> HintConfig:
    """The server's ``GET /v1/device/hints`` answer, checked; the topic must be the device's own."""
    try:
        url = urlsplit(str(body["broker_url"]))
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise ValueError(url.scheme)
        topic = str(body["topic"])
        if device_id not in topic.split("/") or any(c in topic for c in "+#"):
            raise ValueError(topic)
        min_interval_s = min(MAX_MIN_INTERVAL_S, max(0.0, float(body.get("min_interval_s", 2.0))))
        return HintConfig(
            host=url.hostname,
            port=url.port or (8883 if url.scheme == "mqtts" else 1883),
            tls=url.scheme == "mqtts",
            topic=topic,
            username=str(body["username"]),
            password=str(body["password"]),
            min_interval_s=min_interval_s,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgefleetError(
            "the hint configuration is malformed",
            code="malformed_hint_config",
            expected="broker_url (mqtt[s]://), the device's own topic, username, password",
            got=type(exc).__name__,
        ) from exc


def reconnect_delay_s(timing: PollTiming, failures: int, rng: random.Random, *, refused: bool) -> float:
    """Pure: the wait before the next connection attempt: capped, fully jittered backoff; a login the broker
    refused (a device enrolled after the broker's password file was rendered) waits under a cap of
    ``CONFIG_RECHECK_S`` instead, so a fleet the broker does not know yet does not ask every minute."""
    if refused:
        timing = replace(timing, backoff_cap_s=max(timing.backoff_cap_s, CONFIG_RECHECK_S))
    return backoff_delay_s(timing, failures, rng)


class Wakeup:
    """Where hints meet the poll loop: ``wait`` returns a hint (or ``None`` at the timeout or on close).
    Hints arriving while nobody waits are merged (the widest spread wins): a flood becomes one wake-up."""

    def __init__(self, min_interval_s: float = 2.0) -> None:
        self.min_interval_s = min_interval_s
        """At most one hint-driven poll this long after the last poll (the server's figure, once known)."""
        self._cond = threading.Condition()
        self._pending: Hint | None = None
        self._closed = False

    def hint(self, hint: Hint) -> None:
        with self._cond:
            if self._pending is None or hint.spread_s > self._pending.spread_s:
                self._pending = hint
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, timeout_s: float) -> Hint | None:
        with self._cond:
            if self._pending is None and not self._closed:
                self._cond.wait(max(0.0, timeout_s))
            hint, self._pending = self._pending, None
            return hint


class HintListener:
    """The MQTT side of hints, in its own thread (``run(stop)``). ``fetch_config`` is the signed GET of
    ``/v1/device/hints`` (raises ``EdgefleetError``)."""

    def __init__(
        self,
        device_id: str,
        fetch_config: Callable[[], Any],
        wakeup: Wakeup,
        *,
        timing: PollTiming | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._device_id = device_id
        self._fetch_config = fetch_config
        self._wakeup = wakeup
        self._timing = timing or PollTiming(backoff_base_s=1.0, backoff_cap_s=60.0)
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not secrets
        self.config: HintConfig | None = None
        self.connected = threading.Event()
        self.received = 0
        self.dropped = 0

    def run(self, stop: threading.Event) -> None:
        # Whether the extra is installed, without importing it: paho (~0.7 MiB resident, measured) is
        # imported by the first session, i.e. only once the control plane names a broker.
        if importlib.util.find_spec("paho") is None:
            log.info("event=hints_unavailable reason=paho-mqtt_not_installed note=polling_only")
            return
        failures = 0
        while not stop.is_set():
            try:
                if self.config is None:
                    self.config = parse_hint_config(self._fetch_config(), self._device_id)
                    self._wakeup.min_interval_s = self.config.min_interval_s
                    log.info("event=hints_configured topic=%s", self.config.topic)
                refused = self._session(self.config, stop)
            except EdgefleetError as exc:
                if exc.code == "hints_not_configured":
                    log.info("event=hints_not_configured recheck_in_s=%d", CONFIG_RECHECK_S)
                    stop.wait(CONFIG_RECHECK_S)
                    continue
                log.warning("event=hint_config_failed code=%s", exc.code)
                refused = False
            except OSError as exc:  # the broker is down or unreachable: polling goes on meanwhile
                log.warning("event=hint_broker_unreachable error=%s", type(exc).__name__)
                refused = False
            if stop.is_set():
                break
            if refused:
                self.config = None  # credentials refused: ask the control plane again (a rotated secret)
            if self.connected.is_set():  # it was up: the backoff starts over
                failures = 0
                self.connected.clear()
            failures += 1
            delay_s = reconnect_delay_s(self._timing, failures, self._rng, refused=refused)
            log.info("event=hint_reconnect failures=%d retry_in_s=%.2f", failures, delay_s)
            if stop.wait(delay_s):
                break

    def _session(self, config: HintConfig, stop: threading.Event) -> bool:
        """One connection, until it drops or ``stop``. Returns True when the broker refused the login."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        refused = threading.Event()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{config.username}-{self._rng.getrandbits(32):08x}",
            protocol=mqtt.MQTTv311,
        )
        client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set()

        def on_connect(c: Any, _u: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
            if reason_code.is_failure:
                log.warning("event=hint_broker_refused reason=%s", reason_code)
                refused.set()
                return
            c.subscribe(config.topic, qos=1)
            self.connected.set()
            log.info("event=hints_connected topic=%s", config.topic)
            self._wakeup.hint(Hint())  # hints sent while we were away are lost: poll once now

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            hint = parse_hint(bytes(message.payload), self._device_id)
            if hint is None:
                self.dropped += 1
                log.info("event=hint_dropped topic=%s", message.topic)
                return
            self.received += 1
            log.info("event=hint_received spread_s=%.1f", hint.spread_s)
            self._wakeup.hint(hint)

        client.on_connect = on_connect
        client.on_message = on_message
        client.connect(config.host, config.port, keepalive=30)
        try:
            while not stop.is_set() and not refused.is_set():
                rc = client.loop(timeout=1.0)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    log.warning("event=hint_connection_lost rc=%s", rc)
                    break
        finally:
            client.disconnect()
        return refused.is_set()
