"""Hardware classes: put one, apply many all-or-nothing, delete when unused."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgefleet.protocol import HardwareClass, canonical_json
from edgefleet.protocol.errors import ConflictError, InvalidDocumentError, NotFoundError
from edgefleet.protocol.hardware_class import check_windows_to_apply
from edgefleet.protocol.runtimes import check_servable
from edgefleet.server.services.audit import record
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.store import ArtifactRow, HardwareClassRow
from edgefleet.server.store.deletes import delete_loaded_row
from edgefleet.server.store.devices import DeviceRow, EnrollmentTokenRow
from edgefleet.server.store.pages import Page, paginate

__all__ = [
    "MAX_CLASSES_PER_APPLY",
    "ApplyResult",
    "apply_classes",
    "class_document",
    "class_users",
    "delete_class",
    "get_class",
    "list_classes",
    "load_class",
    "put_class",
]

MAX_CLASSES_PER_APPLY = 1000


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def to_wire(self) -> dict[str, list[str]]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


def load_class(data: Any) -> HardwareClass:
    """Validate a wire dict into a ``HardwareClass`` (checks ``schema_version`` too)."""
    return HardwareClass.parse(data)


def _upsert(session: Session, doc: HardwareClass, now: datetime) -> str:
    body = doc.to_dict()
    digest = hashlib.sha256(canonical_json(body)).hexdigest()
    row = session.get(HardwareClassRow, doc.name)
    if row is None:
        session.add(
            HardwareClassRow(
                name=doc.name, document=body, document_sha256=digest, created_at=now, updated_at=now
            )
        )
        return "created"
    if row.document_sha256 == digest:
        return "unchanged"
    row.document, row.document_sha256, row.updated_at = body, digest, now
    bump_director_epoch(session)  # the update window (and its overrides) travel in desired states
    return "updated"


def put_class(session: Session, doc: HardwareClass, *, actor: str, now: datetime) -> str:
    """Create or replace one class; returns ``created``, ``updated`` or ``unchanged``. A class no agent
    adapter can serve, or with a window that can never be meant, is refused (``check_servable``,
    ``check_windows_to_apply``)."""
    check_servable(doc)
    check_windows_to_apply(doc)
    with session.begin():
        outcome = _upsert(session, doc, now)
        record(
            session,
            actor=actor,
            action=f"class.{'create' if outcome == 'created' else 'update'}",
            target=doc.name,
            now=now,
            details={"outcome": outcome},
        )
    return outcome


def apply_classes(session: Session, docs: list[HardwareClass], *, actor: str, now: datetime) -> ApplyResult:
    """Upsert every class in one transaction: all of them or none (one unservable class refuses all)."""
    if not docs:
        raise InvalidDocumentError("no classes to apply", expected=">= 1 class", got=0)
    if len(docs) > MAX_CLASSES_PER_APPLY:
        raise InvalidDocumentError("too many classes", expected=f"<= {MAX_CLASSES_PER_APPLY}", got=len(docs))
    names = [d.name for d in docs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidDocumentError(
            "class names repeat", code="duplicate_name", expected="unique names", got=duplicates
        )
    for doc in docs:
        check_servable(doc)
        check_windows_to_apply(doc)
    result = ApplyResult()
    with session.begin():
        for doc in docs:
            getattr(result, _upsert(session, doc, now)).append(doc.name)
        record(
            session,
            actor=actor,
            action="class.apply",
            target=",".join(names),
            now=now,
            details=result.to_wire(),
        )
    return result


def get_class(session: Session, name: str) -> HardwareClassRow:
    with session.begin():
        row = session.get(HardwareClassRow, name[:63])
    if row is None:
        raise NotFoundError("no such hardware class", code="class_not_found", got=name[:80])
    return row


def class_document(session: Session, name: str) -> dict[str, Any] | None:
    """The class's document as applied, or ``None`` when there is no such class (enrollment answers)."""
    with session.begin():
        row = session.get(HardwareClassRow, name[:63])
    return dict(row.document) if row is not None else None


def list_classes(session: Session, *, limit: int, offset: int, name_prefix: str | None = None) -> Page[Any]:
    stmt = select(HardwareClassRow).order_by(HardwareClassRow.name)
    if name_prefix:
        stmt = stmt.where(HardwareClassRow.name.startswith(name_prefix, autoescape=True))
    with session.begin():
        return paginate(session, stmt, limit=limit, offset=offset)


def class_users(session: Session, name: str) -> dict[str, int]:
    """How many artifacts, devices (revoked ones included) and enrollment tokens (spent or expired ones
    included) name this class: each keeps its class row alive."""
    return {
        key: int(
            session.execute(
                select(func.count()).select_from(table).where(table.hardware_class == name)
            ).scalar_one()
        )
        for key, table in (
            ("artifacts", ArtifactRow),
            ("devices", DeviceRow),
            ("enrollment_tokens", EnrollmentTokenRow),
        )
    }


def delete_class(session: Session, name: str, *, actor: str, now: datetime) -> None:
    """Delete an unused class; ``class_in_use`` (with the counts of what uses it) otherwise."""
    with session.begin():
        row = session.get(HardwareClassRow, name[:63])
        if row is None:
            raise NotFoundError("no such hardware class", code="class_not_found", got=name[:80])
        users = class_users(session, row.name)
        if any(users.values()):
            in_use = ", ".join(f"{n} {key.replace('_', ' ')}" for key, n in users.items() if n)
            raise ConflictError(
                f"hardware class is in use by {in_use}",
                code="class_in_use",
                expected={key: 0 for key in users},
                got=users,
            )
        try:
            with session.begin_nested():
                deleted = delete_loaded_row(session, row)
        except IntegrityError as exc:  # something started using it since we counted (a racing enrollment)
            raise ConflictError(
                "hardware class came into use while it was being deleted",
                code="class_in_use",
                expected={key: 0 for key in users},
                got="a concurrent reference",
            ) from exc
        if not deleted:  # a concurrent delete won
            raise NotFoundError("no such hardware class", code="class_not_found", got=name[:80])
        record(session, actor=actor, action="class.delete", target=name, now=now)
