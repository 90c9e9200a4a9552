"""The sync coordinator against an injected transport: verification, persistence, faults, backoff."""

import json
import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.backoff import PollTiming
from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import CorruptStateError, DataDir, DeviceIdentity
from edgefleet.agent.install.interface import RecordingInstaller
from edgefleet.agent.sync import SyncCoordinator
from edgefleet.protocol.desired_state import DesiredState
from edgefleet.protocol.request_signing import parse_signed_headers, verify_request_signature
from edgefleet.trust.director import public_key_pem, sign_desired_state
from edgefleet.trust.ed25519 import Ed25519VerifyKey
from edgefleet.trust.errors import DownloadFailedError

DIRECTOR = Ed25519PrivateKey.generate()
DEVICE_KEY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
TIMING = PollTiming(poll_interval_s=10, backoff_base_s=1, backoff_cap_s=60)


class FakeDirector:
    """Serves whatever the test sets; checks every request is signed by the device."""

    def __init__(self):
        self.generation = 1
        self.envelope = self.sign(generation=1)
        self.fail_with = None  # an int status, "garbage", or an exception
        self.reports = []

    def sign(self, *, generation, device_id="dev_a", key=DIRECTOR, expires=NOW + timedelta(days=1)):
        state = DesiredState(
            device_id=device_id,
            hardware_class="medical-cart-cpu",
            generation=generation,
            issued_at=NOW,
            expires_at=expires,
        )
        return sign_desired_state(state, key)

    def handler(self, request: httpx.Request) -> httpx.Response:
        claims = parse_signed_headers(request.headers)
        verify_request_signature(
            DEVICE_KEY.public_key(),
            claims,
            method=request.method,
            path=request.url.raw_path.decode(),
            body=request.content,
            now_s=NOW.timestamp(),
        )
        if isinstance(self.fail_with, Exception):
            raise self.fail_with
        if self.fail_with == "garbage":
            return httpx.Response(200, content=b"<html>proxy login</html>")
        if isinstance(self.fail_with, int):
            return httpx.Response(self.fail_with, json={"code": "boom", "message": "x", "details": {}})
        if request.method == "POST":
            self.reports.append(json.loads(request.content))
            return httpx.Response(200, json={"accepted": True})
        gen = self.envelope["signed"]["generation"]
        if request.headers.get("if-none-match") == f'"{gen}"':
            return httpx.Response(304)
        return httpx.Response(200, json=self.envelope, headers={"etag": f'"{gen}"'})


@pytest.fixture
def world(tmp_path):
    ddir = DataDir(tmp_path / "agent")
    ddir.write_key(DEVICE_KEY)
    identity = DeviceIdentity(
        device_id="dev_a",
        server_url="http://director",
        hardware_class="medical-cart-cpu",
        director_public_key_pem=public_key_pem(DIRECTOR.public_key()),
    )
    ddir.write_identity(identity, None)
    director = FakeDirector()
    channel = DeviceChannel(
        "http://director",
        device_id="dev_a",
        key=DEVICE_KEY,
        transport=httpx.MockTransport(director.handler),
        clock=lambda: NOW.timestamp(),
    )
    installer = RecordingInstaller()

    def coordinator(now=NOW):
        return SyncCoordinator(ddir, channel, installer, timing=TIMING, rng=random.Random(0), now=lambda: now)

    return ddir, director, installer, coordinator


def test_accepts_persists_installs_and_reports(world):
    ddir, director, installer, make = world
    sync = make()
    outcome = sync.poll_once()
    assert outcome.result == "updated"
    assert outcome.generation == 1
    assert [s.generation for s in installer.applied] == [1]
    assert ddir.read_desired_envelope() == director.envelope
    assert ddir.read_time_floor() == NOW
    assert director.reports[-1]["desired_generation"] == 1
    # Nothing changed: a conditional poll, no second install.
    assert sync.poll_once().result == "unchanged"
    assert len(installer.applied) == 1


def test_restart_resumes_from_the_persisted_state(world):
    _ddir, _director, _installer, make = world
    make().poll_once()
    again = make()
    assert again.generation == 1
    assert again.poll_once().result == "unchanged"


@pytest.mark.parametrize(
    ("envelope_kwargs", "code"),
    [
        ({"generation": 4, "key": Ed25519PrivateKey.generate()}, "bad_director_signature"),
        ({"generation": 4, "device_id": "dev_b"}, "wrong_device"),
        ({"generation": 4, "expires": NOW - timedelta(seconds=1)}, "expired_desired_state"),
        ({"generation": 2}, "stale_generation"),  # a replayed older document
    ],
)
def test_bad_documents_are_rejected_and_the_last_good_state_kept(world, envelope_kwargs, code):
    ddir, director, installer, make = world
    director.envelope = director.sign(generation=3)
    sync = make()
    assert sync.poll_once().result == "updated"
    good = ddir.read_desired_envelope()
    director.envelope = director.sign(**envelope_kwargs)
    outcome = sync.poll_once()
    assert outcome.result == "rejected"
    assert outcome.error_code == code
    assert ddir.read_desired_envelope() == good
    assert sync.generation == 3
    assert len(installer.applied) == 1
    assert director.reports[-1]["last_error"]["code"] == code


def test_a_clock_set_back_cannot_accept_an_expired_document(world):
    ddir, director, _installer, make = world
    make().poll_once()
    # The persisted floor is NOW. A later document that expired an hour after NOW, seen by a device
    # whose clock was set back two days, must still count as expired once the floor has moved past it.
    ddir.raise_time_floor(NOW + timedelta(days=3))
    director.envelope = director.sign(generation=2, expires=NOW + timedelta(hours=1))
    outcome = make(now=NOW - timedelta(days=2)).poll_once()
    assert outcome.result == "rejected"
    assert outcome.error_code == "expired_desired_state"


@pytest.mark.parametrize(
    "fault", [503, 429, 500, "garbage", httpx.ConnectError("refused"), httpx.ReadTimeout("hang")]
)
def test_faults_back_off_and_recovery_is_automatic(world, fault):
    _ddir, director, _installer, make = world
    sync = make()
    sync.poll_once()
    director.fail_with = fault
    delays = []
    for _ in range(8):
        outcome = sync.poll_once()
        assert outcome.result == "failed"
        delays.append(outcome.delay_s)
    assert delays[-1] > delays[0]
    assert max(delays) <= TIMING.backoff_cap_s
    assert min(delays) >= TIMING.min_delay_s
    assert sync.generation == 1  # the last good state is kept
    director.fail_with = None
    director.envelope = director.sign(generation=2)
    assert sync.poll_once().result == "updated"
    assert sync.generation == 2


def test_a_corrupted_state_file_is_a_clear_error(world):
    ddir, _director, _installer, make = world
    make().poll_once()
    ddir.desired_path.write_text("{not json")
    with pytest.raises(CorruptStateError) as info:
        make()
    assert info.value.code == "corrupt_state_file"
    assert "desired.json" in info.value.message


def test_a_rotated_director_key_named_by_the_trusted_root_is_adopted(world):
    ddir, director, installer, _make = world
    rotated = Ed25519PrivateKey.generate()
    named = [Ed25519VerifyKey.of(rotated.public_key())]  # as the agent hands them over (agent.app)
    sync = SyncCoordinator(
        ddir, _channel(ddir, director), installer, timing=TIMING, now=lambda: NOW, director_keys=lambda: named
    )
    assert sync.poll_once().result == "updated"
    director.envelope = director.sign(generation=2, key=rotated)
    outcome = sync.poll_once()
    assert outcome.result == "updated"
    assert sync.generation == 2
    pinned = ddir.read_identity().director_public_key_pem
    assert pinned == public_key_pem(rotated.public_key())
    # The old key is no longer trusted, and a restart keeps the new pin and the state it signed.
    director.envelope = director.sign(generation=3)
    assert sync.poll_once().error_code == "bad_director_signature"
    again = SyncCoordinator(ddir, _channel(ddir, director), installer, timing=TIMING, now=lambda: NOW)
    assert again.generation == 2


@pytest.mark.parametrize("named", ["other", "none", "unreachable"])
def test_a_key_the_root_does_not_name_is_still_rejected(world, named):
    ddir, director, installer, _make = world

    def keys():
        if named == "unreachable":
            raise DownloadFailedError("mirror down")
        return [Ed25519VerifyKey.of(Ed25519PrivateKey.generate().public_key())] if named == "other" else []

    sync = SyncCoordinator(
        ddir, _channel(ddir, director), installer, timing=TIMING, now=lambda: NOW, director_keys=keys
    )
    assert sync.poll_once().result == "updated"
    director.envelope = director.sign(generation=2, key=Ed25519PrivateKey.generate())
    outcome = sync.poll_once()
    assert (outcome.result, outcome.error_code) == ("rejected", "bad_director_signature")
    assert ddir.read_identity().director_public_key_pem == public_key_pem(DIRECTOR.public_key())
    assert sync.generation == 1


def test_a_stored_state_the_pinned_key_cannot_verify_restarts_from_zero(world):
    ddir, director, _installer, make = world
    make().poll_once()
    ddir.write_desired_envelope(director.sign(generation=5, key=Ed25519PrivateKey.generate()))
    assert make().generation == 0


def _channel(ddir, director):
    return DeviceChannel(
        "http://director",
        device_id="dev_a",
        key=DEVICE_KEY,
        transport=httpx.MockTransport(director.handler),
        clock=lambda: NOW.timestamp(),
    )


@pytest.mark.parametrize(
    ("floor_ahead", "untrusted"),
    [(timedelta(hours=2), True), (timedelta(minutes=4), False)],  # tolerance: 5 minutes
    ids=["clock-behind-the-floor", "within-tolerance"],
)
def test_a_clock_set_back_below_the_time_floor_is_recorded(world, tmp_path, floor_ahead, untrusted):
    from edgefleet.agent.telemetry import TelemetryQueue, TelemetryRecorder
    from edgefleet.protocol.telemetry import PRIORITY_KEEP

    ddir, director, installer, _make = world
    ddir.raise_time_floor(NOW + floor_ahead)  # signed time the device saw before its clock went back
    with TelemetryQueue(tmp_path / "queue.db") as queue:
        recorder = TelemetryRecorder(queue, boot_id="boot1")
        sync = SyncCoordinator(
            ddir, _channel(ddir, director), installer, timing=TIMING, now=lambda: NOW, events=recorder
        )
        assert sync.poll_once().result == "updated"  # judged at the floor, not the wrong clock
        events = [r for r in queue.oldest(100) if r.kind == "event"]
    if not untrusted:
        assert events == []
        return
    [event] = events
    assert (event.body["kind"], event.body["code"]) == ("clock_untrusted", "clock_untrusted")
    assert event.priority == PRIORITY_KEEP  # kept over metrics when the queue is full
    assert datetime.fromisoformat(event.body["details"]["now"]) == NOW
    assert datetime.fromisoformat(event.body["details"]["floor"]) == NOW + floor_ahead


class BehindInstaller(RecordingInstaller):
    """Stays behind (a retryable failure) until ``catch_up_after`` retries."""

    def __init__(self, catch_up_after: int) -> None:
        super().__init__()
        self.catch_up_after = catch_up_after
        self.retries = 0

    def wants_retry(self) -> bool:
        return bool(self.applied) and self.retries < self.catch_up_after

    def retry(self) -> bool:
        if not self.wants_retry():
            return False
        self.retries += 1
        self.apply(self.applied[-1])
        return True

    def slot_reports(self):
        from edgefleet.protocol.wire.desired_state import SlotReport

        behind = self.wants_retry()
        return {
            "default": SlotReport(
                active="a1",
                desired="a2",
                behind="failed:download_failed" if behind else None,
                retrying=behind,
            )
        }


def test_a_restart_hands_the_stored_state_to_the_installer_again(world):
    _ddir, _director, installer, make = world
    make().poll_once()
    assert [s.generation for s in installer.applied] == [1]
    again = make()
    assert again.resume()  # on start, before the first poll: an install cut by the restart goes on
    assert [s.generation for s in installer.applied] == [1, 1]
    assert again.poll_once().result == "unchanged"  # and nothing more from the server


def test_nothing_to_resume_without_a_stored_state(world):
    _ddir, _director, installer, make = world
    assert not make().resume()
    assert installer.applied == []


def test_a_slot_behind_is_retried_with_capped_jittered_backoff_and_reported(world):
    ddir, director, _installer, _make = world
    installer = BehindInstaller(catch_up_after=12)
    channel = DeviceChannel(
        "http://director",
        device_id="dev_a",
        key=DEVICE_KEY,
        transport=httpx.MockTransport(director.handler),
        clock=lambda: NOW.timestamp(),
    )
    sync = SyncCoordinator(ddir, channel, installer, timing=TIMING, rng=random.Random(0), now=lambda: NOW)
    assert sync.poll_once().result == "updated"
    assert director.reports[-1]["status"] == "updating"
    assert director.reports[-1]["slots"]["default"]["behind"] == "failed:download_failed"
    delays = []
    while (delay := sync.retry_delay_s()) is not None:
        delays.append(delay)
        assert sync.retry_install()
    assert installer.retries == 12
    assert all(TIMING.min_delay_s <= d <= TIMING.backoff_cap_s for d in delays)
    assert delays[0] <= TIMING.backoff_base_s < delays[-1]  # grows from the base to the cap
    assert max(delays) >= TIMING.backoff_cap_s / 2
    assert director.reports[-1]["status"] == "ok"
    assert director.reports[-1]["slots"]["default"]["behind"] is None
    assert sync.retry_delay_s() is None
