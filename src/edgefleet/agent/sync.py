"""The sync coordinator: the one loop that owns the device's connection to the control plane.

Each poll: conditional GET of the desired state (``If-None-Match`` with the last accepted generation), verify
it (``trust.director``), persist it atomically, hand it to the installer, report. Failures never lose the last
good state: the device keeps running what it runs and backs off (capped, jittered), recovering by itself.

An install that did not finish (cut by a restart or a power cut, or failed for a reason that is not the
candidate's: a download, a full disk) is resumed: on start the stored desired state is handed to the installer
again, and while a slot is behind its desired artifact and not refused (``Installer.wants_retry``) the
installer retries it with the same capped, jittered backoff, between polls. Each slot's report says whether it
is behind and why (``SlotReport.behind``); the device reports ``status: "updating"`` meanwhile.

A desired state that the pinned director key does not verify makes the coordinator ask ``director_keys``
(the keys the device's verified TUF root names: an offline-root-signed rotation). If one of those verifies
the document, the device pins it (identity file, atomically) and goes on; otherwise the document is rejected.

With wake-up hints (``agent.hints``) the loop also wakes when a hint arrives and polls at once (at most one
hint-driven poll per ``min_interval_s``); the hint is no input to any decision but the poll's timing.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from edgefleet import __version__
from edgefleet.agent.backoff import PollTiming, backoff_delay_s, poll_delay_s
from edgefleet.agent.channel import Channel
from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.agent.hints import Wakeup, hint_poll_at
from edgefleet.agent.host_inventory import host_inventory
from edgefleet.agent.install.interface import Installer
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.base import read_part
from edgefleet.protocol.wire.desired_state import DesiredState, DeviceReport, HostInventory
from edgefleet.trust.director import (
    DesiredStateRejectedError,
    ed25519_keyid,
    public_key_pem,
    verify_desired_state,
)
from edgefleet.trust.ed25519 import Ed25519VerifyKey

__all__ = ["CLOCK_UNTRUSTED_TOLERANCE", "EventSink", "SyncCoordinator", "SyncOutcome"]

log = logging.getLogger("edgefleet.agent.sync")
CLOCK_UNTRUSTED_TOLERANCE = timedelta(minutes=5)
DESIRED_STATE_PATH = "/v1/device/desired-state"
REPORT_PATH = "/v1/device/report"


class EventSink(Protocol):
    """Where security and clock events go (the telemetry recorder satisfies it)."""

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None: ...


class _NoEvents:
    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None:
        return None


@dataclass(frozen=True)
class SyncOutcome:
    result: Literal["updated", "unchanged", "rejected", "failed"]
    delay_s: float
    generation: int
    error_code: str | None = None


def _kv(**fields: Any) -> str:
    return " ".join(
        f"{k}={json.dumps(v) if isinstance(v, str) and ' ' in v else v}" for k, v in fields.items()
    )


class SyncCoordinator:
    def __init__(
        self,
        data_dir: DataDir,
        channel: Channel,
        installer: Installer,
        *,
        timing: PollTiming | None = None,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        events: EventSink | None = None,
        director_keys: Callable[[], Sequence[Ed25519VerifyKey]] | None = None,
        on_state: Callable[[DesiredState | None], None] | None = None,
        inventory: Callable[[], dict[str, Any] | None] | None = None,
        serving_status: Callable[[], dict[str, Any] | None] | None = None,
        host: HostInventory | None = None,
        wakeup: Wakeup | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        time_zone: str | None = None,
        config_status: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        """``inventory``: the device's runtimes (``agent.runtime.inventory``), ``None`` until known;
        ``serving_status``: the serving ladder's mode and reason. Both go into every report, and a change
        in either is reported at the next poll. ``wakeup``: where wake-up hints arrive (``agent.hints``); a
        hint moves the next poll earlier (``hint_poll_at``), never later; it must be closed on stop."""
        self._ddir = data_dir
        self._on_state = on_state or (lambda _state: None)
        """Told every accepted desired state, and the stored one at start (the probe runner)."""
        self._inventory = inventory or (lambda: None)
        self._serving_status = serving_status or (lambda: None)
        self._host = host if host is not None else host_inventory()
        """OS and CPU: read once at start (they do not change while the agent runs)."""
        self._time_zone = time_zone
        self._config_status = config_status or (lambda: None)
        """The remote configuration as applied (``agent.remote_config``), reported like the inventory."""
        self._director_keys = director_keys
        self._events: EventSink = events or _NoEvents()
        self._channel = channel
        self._installer = installer
        self._timing = timing or PollTiming()
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not secrets
        self._now = now
        self._wakeup = wakeup
        self._monotonic = monotonic
        self.hinted_polls = 0
        self.identity: DeviceIdentity = data_dir.read_identity()
        self.boot_id = uuid.uuid4().hex
        self._sequence = 0
        self._failures = 0
        self._retries = 0
        self._reported_generation = -1
        self._reported_slots: dict[str, Any] = {}
        self.last_error: dict[str, Any] | None = None
        self.state: DesiredState | None = self._load_last_state()

    def set_poll_interval(self, poll_interval_s: float) -> None:
        """Remote configuration: polls after the next one are this far apart (jitter and backoff kept)."""
        self._timing = replace(self._timing, poll_interval_s=float(poll_interval_s))

    @property
    def poll_interval_s(self) -> float:
        return self._timing.poll_interval_s

    @property
    def generation(self) -> int:
        return self.state.generation if self.state else 0

    def _load_last_state(self) -> DesiredState | None:
        """The last accepted state, re-verified (signature, addressee) but not for expiry or freshness."""
        envelope = self._ddir.read_desired_envelope()
        if envelope is None:
            return None
        try:
            return verify_desired_state(
                envelope,
                director_key=self.identity.director_key,
                device_id=self.identity.device_id,
                last_generation=0,
                now=datetime.min.replace(tzinfo=timezone.utc),
                time_floor=None,
            )
        except DesiredStateRejectedError as exc:
            from edgefleet.agent.datadir import CorruptStateError

            if exc.code == "bad_director_signature":
                # A crash between pinning a rotated director key and storing the state it signed: start
                # from generation 0; the next poll brings the current state, verified under the pinned key.
                log.warning(_kv(event="stored_state_unverifiable", code=exc.code))
                return None
            raise CorruptStateError(f"stored desired state no longer verifies: {exc.message}") from exc

    # one poll
    def poll_once(self) -> SyncOutcome:
        try:
            outcome = self._poll()
        except EdgefleetError as exc:
            self._failures += 1
            retry_after = exc.details.get("retry_after_s")
            delay = backoff_delay_s(self._timing, self._failures, self._rng, retry_after_s=retry_after)
            self._record_error(exc)
            log.warning(
                _kv(event="poll_failed", code=exc.code, failures=self._failures, retry_in_s=round(delay, 2))
            )
            return SyncOutcome("failed", delay, self.generation, exc.code)
        self._failures = 0
        log.debug(_kv(event="polled", result=outcome.result, next_in_s=round(outcome.delay_s, 3)))
        return outcome

    def _poll(self) -> SyncOutcome:
        headers = {"if-none-match": f'"{self.generation}"'} if self.state else {}
        response = self._channel.request("GET", DESIRED_STATE_PATH, headers=headers)
        if response.status_code == 304:
            self._maybe_report()
            return SyncOutcome("unchanged", poll_delay_s(self._timing, self._rng), self.generation)
        try:
            envelope = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EdgefleetError("desired state answer is not JSON", code="malformed_response") from exc
        now = self._now()
        floor = self._ddir.read_time_floor()
        if floor is not None and now < floor - CLOCK_UNTRUSTED_TOLERANCE:
            log.warning(_kv(event="clock_untrusted", now=now.isoformat(), floor=floor.isoformat()))
            self._events.record_event(
                "clock_untrusted", "clock_untrusted", {"now": now.isoformat(), "floor": floor.isoformat()}
            )
        try:
            state = self._verify(envelope, now, floor)
        except DesiredStateRejectedError as exc:
            self._record_error(exc)
            log.warning(_kv(event="desired_state_rejected", code=exc.code, generation=self.generation))
            self._events.record_event(
                "security", exc.code, {"message": exc.message, "generation": self.generation}
            )
            self._maybe_report(force=True)
            return SyncOutcome("rejected", poll_delay_s(self._timing, self._rng), self.generation, exc.code)
        self._ddir.write_desired_envelope(envelope)
        self._ddir.raise_time_floor(state.issued_at)
        self.state = state
        log.info(_kv(event="desired_state_accepted", generation=state.generation, slots=len(state.slots)))
        self._installer.apply(state)
        self._retries = 0
        self._on_state(state)
        self._maybe_report(force=True)
        return SyncOutcome("updated", poll_delay_s(self._timing, self._rng), state.generation)

    def _verify(self, envelope: Any, now: datetime, floor: datetime | None) -> DesiredState:
        def check(key: Ed25519VerifyKey) -> DesiredState:
            return verify_desired_state(
                envelope,
                director_key=key,
                device_id=self.identity.device_id,
                last_generation=self.generation,
                now=now,
                time_floor=floor,
            )

        try:
            return check(self.identity.director_key)
        except DesiredStateRejectedError as exc:
            if exc.code != "bad_director_signature" or self._director_keys is None:
                raise
            pinned = ed25519_keyid(self.identity.director_key)
            try:
                candidates = [k for k in self._director_keys() if ed25519_keyid(k) != pinned]
            except EdgefleetError as trust_exc:  # TUF unreachable or rejected: judge with the pinned key
                log.warning(_kv(event="director_keys_unavailable", code=trust_exc.code))
                raise exc from trust_exc
            for key in candidates:
                try:
                    state = check(key)
                except DesiredStateRejectedError:
                    continue
                self._adopt_director_key(key)
                return state
            raise

    def _adopt_director_key(self, key: Ed25519VerifyKey) -> None:
        old = ed25519_keyid(self.identity.director_key)
        identity = replace(self.identity, director_public_key_pem=public_key_pem(key))
        self._ddir.write_identity(identity, None)
        self.identity = identity
        log.info(_kv(event="director_key_rotated", old=old[:16], new=ed25519_keyid(key)[:16]))
        self._events.record_event(
            "security", "director_key_rotated", {"old_keyid": old, "new_keyid": ed25519_keyid(key)}
        )

    def _record_error(self, exc: EdgefleetError) -> None:
        self.last_error = {"code": exc.code, "message": exc.message, "at": self._now().isoformat()}

    def _maybe_report(self, *, force: bool = False) -> None:
        """Report when something changed: a new generation, a slot's state (trial -> committed, a rollback),
        or an error. Unchanged polls send nothing."""
        slots = self._installer.slot_reports()
        runtimes, serving, config = self._inventory(), self._serving_status(), self._config_status()
        snapshot = {name: r.to_dict() for name, r in slots.items()}
        extra = {"runtimes": runtimes, "serving": serving, "config": config}
        snapshot["\0extra"] = extra  # not a slot name: cannot clash
        if not force and self._reported_generation == self.generation and snapshot == self._reported_slots:
            return
        self._sequence += 1
        report = read_part(
            {
                "sequence": self._sequence,
                "boot_id": self.boot_id,
                "reported_at": self._now(),
                "agent_version": __version__,
                "desired_generation": self.generation,
                "slots": slots,
                "status": _status(slots, failing=bool(self.last_error and self._failures), serving=serving),
                "last_error": self.last_error,
                "runtimes": runtimes,
                "serving": serving,
                "host": self._host,
                "timezone": self._time_zone,
                "config": config,
            },
            DeviceReport,
            kind="device report",
        )
        self._channel.request("POST", REPORT_PATH, json_body=report.to_dict())
        self._reported_generation = self.generation
        self._reported_slots = snapshot

    # resuming installs
    def resume(self) -> bool:
        """On start: hand the stored desired state to the installer again, so an install cut by the restart
        goes on at once instead of waiting for a new generation. True when there was one."""
        if self.state is None:
            return False
        log.info(_kv(event="install_resumed", generation=self.generation))
        self._installer.apply(self.state)
        self._report_quietly()
        return True

    def retry_delay_s(self) -> float | None:
        """Seconds until the next install retry (capped, jittered backoff over consecutive retries), or
        ``None`` when no slot is behind and retryable."""
        if not self._installer.wants_retry():
            self._retries = 0
            return None
        return backoff_delay_s(self._timing, self._retries + 1, self._rng)

    def retry_install(self) -> bool:
        """Retry what is behind (``Installer.retry``) and report. True when an install was attempted."""
        self._retries += 1
        retried = self._installer.retry()
        if retried:
            log.info(_kv(event="install_retried", retries=self._retries, generation=self.generation))
        self._report_quietly()
        return retried

    def _report_quietly(self) -> None:
        try:
            self._maybe_report()
        except EdgefleetError as exc:  # the next poll reports; a resume never fails on the network
            log.warning(_kv(event="report_failed", code=exc.code))

    # the loop
    def run(self, stop: threading.Event) -> None:
        log.info(_kv(event="agent_started", device_id=self.identity.device_id, generation=self.generation))
        self.resume()
        self._on_state(self.state)
        next_poll_s = self._monotonic()
        last_poll_s: float | None = None
        hinted = False
        while not stop.is_set():
            now_s = self._monotonic()
            if now_s >= next_poll_s:
                if hinted:
                    self.hinted_polls += 1
                    log.info(_kv(event="hinted_poll", generation=self.generation))
                hinted = False
                last_poll_s = now_s
                next_poll_s = self._monotonic() + self.poll_once().delay_s
                now_s = self._monotonic()
            retry_in_s = self.retry_delay_s()
            poll_in_s = max(0.0, next_poll_s - now_s)
            wait_s = poll_in_s if retry_in_s is None else min(poll_in_s, retry_in_s)
            if self._wakeup is None:
                if stop.wait(wait_s):
                    break
                hint = None
            else:
                hint = self._wakeup.wait(wait_s)
                if stop.is_set():
                    break
            if hint is not None:
                hinted_at = hint_poll_at(
                    now_s=self._monotonic(),
                    last_poll_s=last_poll_s,
                    next_poll_s=next_poll_s,
                    hint=hint,
                    min_interval_s=self._wakeup.min_interval_s if self._wakeup else 0.0,
                    jitter=self._rng.random(),
                )
                hinted = hinted or hinted_at < next_poll_s
                next_poll_s = hinted_at
                continue
            if retry_in_s is not None and retry_in_s <= wait_s:
                self.retry_install()
        log.info(_kv(event="agent_stopped", device_id=self.identity.device_id))


def _status(
    slots: dict[str, Any], *, failing: bool, serving: dict[str, Any] | None = None
) -> Literal["ok", "updating", "degraded", "error"]:
    """Pure: the device's report status: ``error`` while polls fail, ``updating`` while a slot is behind
    and being retried, ``degraded`` while serving runs below its preferred rung, else ``ok``."""
    if failing:
        return "error"
    if any(getattr(r, "retrying", False) for r in slots.values()):
        return "updating"
    if serving is not None and serving.get("mode") not in (None, "preferred"):
        return "degraded"
    return "ok"
