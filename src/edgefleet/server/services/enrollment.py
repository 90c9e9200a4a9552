"""Enrollment tokens and one-time enrollment.

A token is stored as its sha256, scoped to one hardware class (plus labels, optionally one serial), expires,
and has a number of uses. Consuming a use is one conditional UPDATE (``uses_left > 0 AND expires_at > now``),
so two concurrent enrollments with a single-use token give exactly one device, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic.config import JsonDict
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import (
    AuthenticationError,
    ConflictError,
    InvalidDocumentError,
    NotFoundError,
    RateLimitedError,
)
from edgefleet.server.services.audit import record
from edgefleet.server.store.devices import DeviceRow, EnrollmentTokenRow
from edgefleet.server.store.registry import HardwareClassRow
from edgefleet.trust.director import ed25519_keyid, load_public_key_pem

__all__ = [
    "ENROLL_TOKEN_PREFIX",
    "MAX_TOKEN_TTL",
    "CreatedEnrollmentToken",
    "EnrollmentLimiter",
    "create_enrollment_token",
    "enroll_device",
    "parse_labels",
]

ENROLL_TOKEN_PREFIX = "efen_"  # noqa: S105  # a prefix, not a secret
MAX_TOKEN_TTL = timedelta(days=30)
MAX_TOKEN_USES = 10_000
_LABEL_KEY = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,62}$")
_SERIAL = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_DEVICE_LABELS = 32
MAX_DEVICE_LABEL_CHARS = 128
LABELS_SCHEMA: JsonDict = {
    "maxProperties": MAX_DEVICE_LABELS,
    "propertyNames": {"pattern": _LABEL_KEY.pattern},
    "additionalProperties": {"type": "string", "maxLength": MAX_DEVICE_LABEL_CHARS},
}
"""What :func:`parse_labels` accepts, as JSON Schema (declared in the API contract)."""
SERIAL_PATTERN = _SERIAL.pattern


def parse_labels(labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or len(labels) > MAX_DEVICE_LABELS:
        raise InvalidDocumentError(
            f"labels must be an object of at most {MAX_DEVICE_LABELS} entries", code="invalid_labels"
        )
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidDocumentError(
                "invalid label key", code="invalid_labels", expected=_LABEL_KEY.pattern, got=key
            )
        if not isinstance(value, str) or len(value) > MAX_DEVICE_LABEL_CHARS:
            raise InvalidDocumentError(
                f"label values are strings <= {MAX_DEVICE_LABEL_CHARS} chars",
                code="invalid_labels",
                got=value,
            )
        out[key] = value
    return out


@dataclass(frozen=True)
class CreatedEnrollmentToken:
    row: EnrollmentTokenRow
    secret: str


def create_enrollment_token(
    session: Session,
    *,
    hardware_class: str,
    labels: dict[str, str],
    serial: str | None,
    ttl: timedelta,
    uses: int,
    actor: str,
    now: datetime,
) -> CreatedEnrollmentToken:
    if not timedelta(seconds=60) <= ttl <= MAX_TOKEN_TTL:
        raise InvalidDocumentError(
            "ttl out of range", code="invalid_ttl", expected="60 s .. 30 days", got=str(ttl)
        )
    if not 1 <= uses <= MAX_TOKEN_USES:
        raise InvalidDocumentError(
            "uses out of range", code="invalid_uses", expected=f"1..{MAX_TOKEN_USES}", got=uses
        )
    if serial is not None and not _SERIAL.fullmatch(serial):
        raise InvalidDocumentError(
            "invalid serial", code="invalid_serial", expected=_SERIAL.pattern, got=serial
        )
    labels = parse_labels(labels)
    secret = ENROLL_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = EnrollmentTokenRow(
        id="enr_" + secrets.token_hex(8),
        token_sha256=hashlib.sha256(secret.encode()).hexdigest(),
        hardware_class=hardware_class,
        labels=labels,
        serial=serial,
        uses_total=uses,
        uses_left=uses,
        expires_at=now + ttl,
        created_at=now,
        created_by=actor,
    )
    with session.begin():
        if session.get(HardwareClassRow, hardware_class) is None:
            raise NotFoundError("no such hardware class", code="class_not_found", got=hardware_class)
        session.add(row)
        record(
            session,
            actor=actor,
            action="enrollment_token.create",
            target=row.id,
            now=now,
            details={"hardware_class": hardware_class, "labels": labels, "serial": serial, "uses": uses},
        )
    return CreatedEnrollmentToken(row=row, secret=secret)


def enroll_device(
    session: Session,
    *,
    token: str,
    public_key_pem: str,
    serial: str | None,
    agent_version: str,
    now: datetime,
    hardware_class: str | None = None,
) -> DeviceRow:
    """Consume one use of ``token`` and register the device's public key. Raises on any bad token.

    ``hardware_class`` is what the device says it is (provisioned in its image): a token for another class is
    refused before it is consumed, so a Jetson cannot become a cart by picking up the wrong token."""
    if not isinstance(token, str) or not token.startswith(ENROLL_TOKEN_PREFIX) or len(token) > 128:
        raise AuthenticationError("invalid enrollment token", code="invalid_enrollment_token")
    if not isinstance(public_key_pem, str) or len(public_key_pem) > 512:
        raise InvalidDocumentError("public_key_pem must be a PEM string", code="invalid_public_key")
    public_key = load_public_key_pem(public_key_pem)
    if serial is not None and (not isinstance(serial, str) or not _SERIAL.fullmatch(serial)):
        raise InvalidDocumentError(
            "invalid serial", code="invalid_serial", expected=_SERIAL.pattern, got=serial
        )
    key_sha = ed25519_keyid(public_key)
    token_sha = hashlib.sha256(token.encode()).hexdigest()
    with session.begin():
        row = session.execute(
            select(EnrollmentTokenRow).where(EnrollmentTokenRow.token_sha256 == token_sha)
        ).scalar_one_or_none()
        if row is None:
            raise AuthenticationError("invalid enrollment token", code="invalid_enrollment_token")
        if row.expires_at <= now:
            raise AuthenticationError(
                "enrollment token has expired",
                code="enrollment_token_expired",
                got=row.expires_at.isoformat(),
            )
        if row.serial is not None and serial != row.serial:
            raise AuthenticationError(
                "enrollment token is for another serial number",
                code="enrollment_serial_mismatch",
                expected=row.serial,
                got=serial,
            )
        if hardware_class is not None and hardware_class != row.hardware_class:
            raise AuthenticationError(
                "enrollment token is for another hardware class",
                code="enrollment_class_mismatch",
                expected=row.hardware_class,
                got=hardware_class,
            )
        # a bulk UPDATE answers a CursorResult (it has rowcount); Session.execute is typed as Result
        consumed = cast(
            "CursorResult[Any]",
            session.execute(
                update(EnrollmentTokenRow)
                .where(
                    EnrollmentTokenRow.id == row.id,
                    EnrollmentTokenRow.uses_left > 0,
                    EnrollmentTokenRow.expires_at > now,
                )
                .values(uses_left=EnrollmentTokenRow.uses_left - 1)
            ),
        )
        if consumed.rowcount != 1:
            raise AuthenticationError("enrollment token is used up", code="enrollment_token_used")
        device = DeviceRow(
            id="dev_" + secrets.token_hex(10),
            public_key_pem=public_key_pem,
            public_key_sha256=key_sha,
            hardware_class=row.hardware_class,
            labels=dict(row.labels),
            serial=serial,
            enrollment_token_id=row.id,
            enrolled_at=now,
            agent_version=(agent_version or "")[:64],
            last_seen_at=now,
            report_sequence=0,
            desired_generation=0,
            desired_epoch=0,
        )
        session.add(device)
        record(
            session,
            actor=f"enrollment:{row.id}",
            action="device.enroll",
            target=device.id,
            now=now,
            details={"hardware_class": row.hardware_class, "serial": serial},
        )
        try:
            session.flush()
        except IntegrityError as exc:
            raise ConflictError("this public key is already enrolled", code="key_already_enrolled") from exc
    return device


@dataclass
class EnrollmentLimiter:
    """Failed enrollment attempts per client address in a sliding window (per server replica).

    Pure apart from its own memory: the caller passes ``now_s``.
    """

    max_failures: int = 10
    window_s: float = 60.0
    max_clients: int = 10_000
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def check(self, client: str, now_s: float) -> None:
        recent = self._recent(client, now_s)
        if len(recent) >= self.max_failures:
            retry_after = max(1, int(recent[0] + self.window_s - now_s) + 1)
            raise RateLimitedError(
                "too many failed enrollment attempts from this address",
                code="enrollment_rate_limited",
                details={"retry_after_s": retry_after},
            )

    def failed(self, client: str, now_s: float) -> None:
        if client not in self._failures and len(self._failures) >= self.max_clients:
            self._failures.pop(next(iter(self._failures)))
        self._recent(client, now_s).append(now_s)

    def _recent(self, client: str, now_s: float) -> deque[float]:
        recent = self._failures.setdefault(client, deque(maxlen=self.max_failures))
        while recent and recent[0] <= now_s - self.window_s:
            recent.popleft()
        return recent
