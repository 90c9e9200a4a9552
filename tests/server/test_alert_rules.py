"""The pure alert rules, table-driven with an explicit ``now``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edgefleet.protocol.webhooks import signature_header, verify_signature
from edgefleet.server.services.alerts.rules import (
    RetryPolicy,
    after_attempt,
    retry_delay_s,
    rollout_stalled,
    security_dedup_key,
    silent_devices,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("attempts", "jitter", "expected_s"),
    [
        (1, 0.0, 2.5),  # half of base 5 s
        (1, 1.0, 5.0),
        (2, 0.0, 5.0),
        (3, 0.5, 15.0),  # ceiling 20 s: 10 + 5
        (8, 1.0, 600.0),  # 5 * 2**7 = 640 -> capped at 600
        (60, 0.0, 300.0),  # huge counts stay capped, no overflow
    ],
)
def test_retry_delay_is_capped_exponential_with_equal_jitter(attempts, jitter, expected_s) -> None:
    assert retry_delay_s(attempts, RetryPolicy(base_s=5, cap_s=600), jitter) == pytest.approx(expected_s)


def test_after_attempt_delivers_retries_and_gives_up() -> None:
    policy = RetryPolicy(base_s=5, cap_s=600, max_attempts=3)
    ok = after_attempt(ok=True, attempts_before=1, now=NOW, policy=policy, jitter=0.3)
    assert (ok.status, ok.attempts, ok.next_attempt_at) == ("delivered", 2, None)
    again = after_attempt(ok=False, attempts_before=1, now=NOW, policy=policy, jitter=1.0)
    assert (again.status, again.attempts) == ("pending", 2)
    assert again.next_attempt_at == NOW + timedelta(seconds=10)
    last = after_attempt(ok=False, attempts_before=2, now=NOW, policy=policy, jitter=0.0)
    assert (last.status, last.attempts, last.next_attempt_at) == ("gave_up", 3, None)


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(base_s=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_s=10, cap_s=5)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_silent_devices_counts_silence_from_last_contact_or_enrollment() -> None:
    devices = [
        ("d-fresh", NOW - timedelta(seconds=60), NOW - timedelta(days=3)),
        ("d-edge", NOW - timedelta(seconds=900), NOW - timedelta(days=3)),  # exactly at the threshold
        ("d-silent", NOW - timedelta(seconds=901), NOW - timedelta(days=3)),
        ("d-never", None, NOW - timedelta(hours=1)),
        ("d-new", None, NOW - timedelta(seconds=10)),
    ]
    assert silent_devices(devices, now=NOW, threshold_s=900) == [
        ("d-silent", NOW - timedelta(seconds=901)),
        ("d-never", NOW - timedelta(hours=1)),
    ]


@pytest.mark.parametrize(
    ("status", "age_s", "stalled"),
    [("running", 7201, True), ("running", 7200, False), ("paused", 99999, False), ("halted", 99999, False)],
)
def test_rollout_stalled(status, age_s, stalled) -> None:
    started = NOW - timedelta(seconds=age_s)
    assert rollout_stalled(status=status, stage_started_at=started, now=NOW, stall_after_s=7200) is stalled


def test_security_events_are_bucketed_per_device_and_code() -> None:
    a = security_dedup_key("bad_signature", "dev_1", NOW)
    assert a == security_dedup_key("bad_signature", "dev_1", NOW + timedelta(seconds=10))
    assert a != security_dedup_key("bad_signature", "dev_1", NOW + timedelta(seconds=300))
    assert a != security_dedup_key("replayed_request", "dev_1", NOW)
    assert a != security_dedup_key("bad_signature", "dev_2", NOW)


def test_signature_verifies_and_refuses_tampering_and_old_timestamps() -> None:
    body = b'{"kind":"test"}'
    header = signature_header("s" * 32, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature("s" * 32, header, body, now_s=1_700_000_100)
    assert not verify_signature("s" * 32, header, body + b" ", now_s=1_700_000_100)
    assert not verify_signature("x" * 32, header, body, now_s=1_700_000_100)
    assert not verify_signature("s" * 32, header, body, now_s=1_700_000_301)  # replayed too late
    assert not verify_signature("s" * 32, "v1=abc", body, now_s=1_700_000_000)
