"""The sealed session cookie: round trip, expiry, tampering, foreign keys, garbage, size bounds."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.server.dashboard.auth import safe_next
from edgefleet.server.dashboard.session import MAX_COOKIE_CHARS, SessionCodec, cookie_attributes

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def codec() -> SessionCodec:
    return SessionCodec.from_director_key(Ed25519PrivateKey.generate(), max_age=timedelta(hours=1))


def test_round_trip_keeps_the_token_and_makes_a_fresh_csrf_token(codec):
    value, data = codec.seal("efop_secret", now=NOW)
    opened = codec.open(value, now=NOW + timedelta(minutes=59))
    assert opened == data
    assert opened.token == "efop_secret"
    assert "efop_secret" not in value  # the browser holds ciphertext only
    _, other = codec.seal("efop_secret", now=NOW)
    assert other.csrf != data.csrf


def test_a_session_expires(codec):
    value, _ = codec.seal("efop_secret", now=NOW)
    assert codec.open(value, now=NOW + timedelta(hours=1)) is None


def test_every_replica_with_the_same_director_key_opens_it_and_no_one_else():
    key = Ed25519PrivateKey.generate()
    value, _ = SessionCodec.from_director_key(key).seal("efop_x", now=NOW)
    assert SessionCodec.from_director_key(key).open(value, now=NOW) is not None
    assert SessionCodec.from_director_key(Ed25519PrivateKey.generate()).open(value, now=NOW) is None


@pytest.mark.parametrize("position", [0, 5, 20, -3])
def test_a_flipped_bit_anywhere_is_refused(codec, position):
    value, _ = codec.seal("efop_secret", now=NOW)
    raw = bytearray(base64.urlsafe_b64decode(value))
    raw[position] ^= 0x01
    assert codec.open(base64.urlsafe_b64encode(bytes(raw)).decode(), now=NOW) is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "not base64 !",
        "AAAA",
        "x" * (MAX_COOKIE_CHARS + 1),
        base64.urlsafe_b64encode(b"\0" * 40).decode(),
    ],
)
def test_garbage_is_no_session(codec, value):
    assert codec.open(value, now=NOW) is None


def test_an_oversized_token_cannot_be_sealed(codec):
    with pytest.raises(ValueError, match="too long"):
        codec.seal("x" * 2000, now=NOW)


def test_cookie_attributes():
    assert cookie_attributes(https=True, max_age_s=60) == {
        "max_age": 60,
        "path": "/dashboard",
        "httponly": True,
        "samesite": "strict",
        "secure": True,
    }
    assert cookie_attributes(https=False, max_age_s=60)["secure"] is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/dashboard/rollouts/ro_1", "/dashboard/rollouts/ro_1"),
        ("https://evil.example/dashboard/", "/dashboard/"),
        ("//evil.example/dashboard/", "/dashboard/"),
        ("/dashboard/\\evil", "/dashboard/"),
        ("/dashboard/login?next=x", "/dashboard/"),
        ("/v1/tokens", "/dashboard/"),
        (None, "/dashboard/"),
    ],
)
def test_after_sign_in_only_dashboard_paths(value, expected):
    assert safe_next(value) == expected
