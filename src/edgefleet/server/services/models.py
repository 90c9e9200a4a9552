"""Models and model versions. A version points at its source file, a blob uploaded first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import ConflictError, InvalidDocumentError, NotFoundError
from edgefleet.server.blobs import BlobStore
from edgefleet.server.services.audit import record
from edgefleet.server.store import ArtifactRow, ModelRow, ModelVersionRow
from edgefleet.server.store.deletes import delete_loaded_row
from edgefleet.server.store.pages import Page, paginate

__all__ = [
    "create_model",
    "create_version",
    "delete_model",
    "delete_version",
    "find_model",
    "find_version",
    "list_models",
    "list_versions",
    "model_to_wire",
    "update_model",
    "version_to_wire",
]


def find_model(session: Session, name: str) -> ModelRow:
    """Inside the caller's transaction."""
    row = session.execute(select(ModelRow).where(ModelRow.name == name[:63])).scalar_one_or_none()
    if row is None:
        raise NotFoundError("no such model", code="model_not_found", got=name[:80])
    return row


def find_version(session: Session, model: str, version: str) -> tuple[ModelRow, ModelVersionRow]:
    """Inside the caller's transaction."""
    m = find_model(session, model)
    v = session.execute(
        select(ModelVersionRow).where(
            ModelVersionRow.model_id == m.id, ModelVersionRow.version == version[:63]
        )
    ).scalar_one_or_none()
    if v is None:
        raise NotFoundError("no such model version", code="version_not_found", got=f"{model}:{version}"[:160])
    return m, v


def _version_count(session: Session, model_id: int) -> int:
    return int(session.execute(select(func.count()).where(ModelVersionRow.model_id == model_id)).scalar_one())


def model_to_wire(row: ModelRow, version_count: int) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "labels": row.labels,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "version_count": version_count,
    }


def version_to_wire(model: str, row: ModelVersionRow) -> dict[str, Any]:
    return {
        "model": model,
        "version": row.version,
        "source_sha256": row.source_sha256,
        "source_length": row.source_length,
        "metadata": row.metadata_,
        "created_at": row.created_at.isoformat(),
    }


def create_model(
    session: Session, *, name: str, description: str, labels: dict[str, str], actor: str, now: datetime
) -> dict[str, Any]:
    with session.begin():
        if session.execute(select(ModelRow.id).where(ModelRow.name == name)).first() is not None:
            raise ConflictError("model exists", code="model_exists", got=name)
        row = ModelRow(name=name, description=description, labels=labels, created_at=now, updated_at=now)
        session.add(row)
        record(session, actor=actor, action="model.create", target=name, now=now)
    return model_to_wire(row, 0)


def get_model(session: Session, name: str) -> dict[str, Any]:
    with session.begin():
        row = find_model(session, name)
        return model_to_wire(row, _version_count(session, row.id))


def list_models(session: Session, *, limit: int, offset: int, name_prefix: str | None) -> dict[str, Any]:
    stmt = select(ModelRow).order_by(ModelRow.name)
    if name_prefix:
        stmt = stmt.where(ModelRow.name.startswith(name_prefix, autoescape=True))
    with session.begin():
        page: Page[ModelRow] = paginate(session, stmt, limit=limit, offset=offset)
        counts = dict(
            session.execute(
                select(ModelVersionRow.model_id, func.count())
                .where(ModelVersionRow.model_id.in_([m.id for m in page.items]))
                .group_by(ModelVersionRow.model_id)
            ).all()
        )
        return page.to_wire([model_to_wire(m, int(counts.get(m.id, 0))) for m in page.items])


def update_model(
    session: Session,
    name: str,
    *,
    description: str | None,
    labels: dict[str, str] | None,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    with session.begin():
        row = find_model(session, name)
        changed = []
        if description is not None and description != row.description:
            row.description = description
            changed.append("description")
        if labels is not None and labels != row.labels:
            row.labels = labels
            changed.append("labels")
        if changed:  # a repeat of the same change is no change: nothing to audit
            row.updated_at = now
            record(
                session,
                actor=actor,
                action="model.update",
                target=name,
                now=now,
                details={"changed": changed},
            )
        return model_to_wire(row, _version_count(session, row.id))


def delete_model(session: Session, name: str, *, actor: str, now: datetime) -> None:
    with session.begin():
        row = find_model(session, name)
        count = _version_count(session, row.id)
        if count:
            raise ConflictError("model has versions", code="model_in_use", expected="no versions", got=count)
        if not delete_loaded_row(session, row):  # a concurrent delete won
            raise NotFoundError("no such model", code="model_not_found", got=name[:80])
        record(session, actor=actor, action="model.delete", target=name, now=now)


def create_version(
    session: Session,
    blobs: BlobStore,
    *,
    model: str,
    version: str,
    source_sha256: str,
    metadata: dict[str, Any],
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    length = blobs.size(source_sha256)
    if length is None:
        raise InvalidDocumentError(
            "the source file must be uploaded as a blob first",
            code="blob_missing",
            expected=f"PUT /v1/blobs/{source_sha256}",
            got="no such blob",
        )
    with session.begin():
        m = find_model(session, model)
        exists = session.execute(
            select(ModelVersionRow.id).where(
                ModelVersionRow.model_id == m.id, ModelVersionRow.version == version
            )
        ).first()
        if exists is not None:
            raise ConflictError("version exists", code="version_exists", got=f"{model}:{version}")
        row = ModelVersionRow(
            model_id=m.id,
            version=version,
            source_sha256=source_sha256,
            source_length=length,
            metadata_=metadata,
            created_at=now,
        )
        session.add(row)
        m.updated_at = now
        record(
            session,
            actor=actor,
            action="version.create",
            target=f"{model}:{version}",
            now=now,
            details={"source_sha256": source_sha256},
        )
    return version_to_wire(model, row)


def get_version(session: Session, model: str, version: str) -> dict[str, Any]:
    with session.begin():
        _, v = find_version(session, model, version)
        return version_to_wire(model, v)


def list_versions(session: Session, model: str, *, limit: int, offset: int) -> dict[str, Any]:
    with session.begin():
        m = find_model(session, model)
        stmt = select(ModelVersionRow).where(ModelVersionRow.model_id == m.id).order_by(ModelVersionRow.id)
        page: Page[ModelVersionRow] = paginate(session, stmt, limit=limit, offset=offset)
        return page.to_wire([version_to_wire(model, v) for v in page.items])


def delete_version(session: Session, model: str, version: str, *, actor: str, now: datetime) -> None:
    with session.begin():
        _, v = find_version(session, model, version)
        users = (
            session.execute(select(ArtifactRow.id).where(ArtifactRow.model_version_id == v.id).limit(5))
            .scalars()
            .all()
        )
        if users:
            raise ConflictError(
                "version is referenced by artifacts",
                code="version_in_use",
                expected="no artifacts",
                got=list(users),
            )
        if not delete_loaded_row(session, v):  # a concurrent delete won
            raise NotFoundError(
                "no such model version", code="version_not_found", got=f"{model}:{version}"[:160]
            )
        record(session, actor=actor, action="version.delete", target=f"{model}:{version}", now=now)
