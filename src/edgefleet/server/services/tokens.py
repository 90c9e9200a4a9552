"""Operator identities: roles, API tokens (only their sha256 is stored), authentication."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import (
    AuthenticationError,
    ConflictError,
    InvalidDocumentError,
    NotFoundError,
    PermissionDeniedError,
)
from edgefleet.server.services.audit import record
from edgefleet.server.store import OperatorTokenRow

__all__ = [
    "BOOTSTRAP_ACTOR",
    "TOKEN_NAME_PATTERN",
    "TOKEN_PREFIX",
    "Actor",
    "CreatedToken",
    "Role",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
    "token_to_wire",
]

TOKEN_PREFIX = "efop_"  # noqa: S105 - a prefix, not a secret
BOOTSTRAP_ACTOR = "bootstrap-admin"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TOKEN_NAME_PATTERN = _NAME.pattern
_MAX_PRESENTED_CHARS = 256


class Role(enum.IntEnum):
    """Ordered: a higher role can do everything a lower one can."""

    viewer = 1
    operator = 2
    admin = 3

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value]
        except KeyError:
            raise InvalidDocumentError(
                "unknown role", code="invalid_role", expected=[r.name for r in cls], got=value
            ) from None


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role

    def require(self, needed: Role) -> None:
        if self.role < needed:
            raise PermissionDeniedError(
                f"this call needs the {needed.name} role", expected=needed.name, got=self.role.name
            )


@dataclass(frozen=True)
class CreatedToken:
    row: OperatorTokenRow
    secret: str


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def authenticate(session: Session, presented: str | None, *, bootstrap_token: str | None) -> Actor:
    """Map a bearer secret to an actor, or raise ``unauthenticated`` (never says which part was wrong)."""
    if not presented:
        raise AuthenticationError(
            "missing bearer token", expected="Authorization: Bearer <token>", got="none"
        )
    if len(presented) > _MAX_PRESENTED_CHARS:
        raise AuthenticationError("invalid or revoked token")
    if bootstrap_token and hmac.compare_digest(presented.encode(), bootstrap_token.encode()):
        return Actor(BOOTSTRAP_ACTOR, Role.admin)
    with session.begin():
        row = session.execute(
            select(OperatorTokenRow).where(OperatorTokenRow.token_sha256 == hash_token(presented))
        ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise AuthenticationError("invalid or revoked token")
    return Actor(row.name, Role[row.role])


def create_token(session: Session, *, name: str, role: str, actor: str, now: datetime) -> CreatedToken:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidDocumentError(
            "invalid token name",
            code="invalid_name",
            expected="^[a-z0-9][a-z0-9._-]{0,62}$",
            got=str(name)[:80],
        )
    parsed = Role.parse(role)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = OperatorTokenRow(
        id="tok_" + secrets.token_hex(8),
        name=name,
        role=parsed.name,
        token_sha256=hash_token(secret),
        created_at=now,
        created_by=actor,
        revoked_at=None,
    )
    with session.begin():
        active = session.execute(
            select(OperatorTokenRow.id).where(
                OperatorTokenRow.name == name, OperatorTokenRow.revoked_at.is_(None)
            )
        ).first()
        if active is not None:
            raise ConflictError("an active token with this name exists", code="token_exists", got=name)
        session.add(row)
        record(
            session,
            actor=actor,
            action="token.create",
            target=row.id,
            now=now,
            details={"name": name, "role": parsed.name},
        )
    return CreatedToken(row=row, secret=secret)


def list_tokens(session: Session) -> list[OperatorTokenRow]:
    with session.begin():
        return list(session.execute(select(OperatorTokenRow).order_by(OperatorTokenRow.created_at)).scalars())


def revoke_token(session: Session, token_id: str, *, actor: str, now: datetime) -> None:
    with session.begin():
        row = session.get(OperatorTokenRow, token_id[:32])
        if row is None:
            raise NotFoundError("no such token", code="token_not_found", got=token_id[:80])
        if row.revoked_at is not None:
            return  # revoking again changes nothing: no second audit row
        row.revoked_at = now
        record(
            session, actor=actor, action="token.revoke", target=row.id, now=now, details={"name": row.name}
        )


def token_to_wire(row: OperatorTokenRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }
