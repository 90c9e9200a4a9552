"""Who sent a signed device request: the signature under the device's registered key, and not revoked."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from edgefleet.protocol.errors import AuthenticationError
from edgefleet.protocol.request_signing import (
    MAX_CLOCK_SKEW_S,
    SignedRequestClaims,
    verify_request_signature,
)
from edgefleet.server.store.devices import DeviceRow
from edgefleet.trust.director import load_public_key_pem

__all__ = ["AnyDevice", "DeviceIdentity", "authenticate_device", "verify_device"]


class DeviceIdentity(Protocol):
    """What checking a signed request reads of a device: a ``DeviceRow``, or the few columns that accepting
    a report reads (``services.device_reports.ReportingDevice``)."""

    @property
    def id(self) -> str: ...
    @property
    def public_key_pem(self) -> str: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def last_seen_at(self) -> datetime | None: ...


AnyDevice = TypeVar("AnyDevice", bound=DeviceIdentity)


def authenticate_device(
    session: Session,
    claims: SignedRequestClaims,
    *,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
    max_skew_s: int = MAX_CLOCK_SKEW_S,
) -> DeviceRow:
    """Identity from proof only: the signature must verify under the key registered for the claimed id and
    the device must not be revoked. Read only: the caller checks the nonce (``services.replay``) and notes
    the device as seen (``services.last_seen``)."""
    with session.begin():
        device = session.get(DeviceRow, claims.device_id[:32])
        return verify_device(
            device, claims, method=method, path=path, body=body, now=now, max_skew_s=max_skew_s
        )


def verify_device(
    device: AnyDevice | None,
    claims: SignedRequestClaims,
    *,
    method: str,
    path: str,
    body: bytes,
    now: datetime,
    max_skew_s: int = MAX_CLOCK_SKEW_S,
) -> AnyDevice:
    """``authenticate_device`` on a row the caller read (in the transaction that then answers)."""
    if device is None:
        raise AuthenticationError("unknown device", code="unknown_device")
    verify_request_signature(
        load_public_key_pem(device.public_key_pem),
        claims,
        method=method,
        path=path,
        body=body,
        now_s=now.timestamp(),
        max_skew_s=max_skew_s,
    )
    if device.revoked_at is not None:
        raise AuthenticationError("this device has been revoked", code="device_revoked")
    return device
