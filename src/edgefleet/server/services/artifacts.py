"""Artifacts: one build of a model version for one hardware class, checked before it is registered."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol import ArtifactManifest, HardwareClass, canonical_json
from edgefleet.protocol.errors import ConflictError, InvalidDocumentError, NotFoundError
from edgefleet.server.blobs import BlobStore
from edgefleet.server.services.alerts.outbox import emit
from edgefleet.server.services.audit import record
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.services.fit import check_fits
from edgefleet.server.services.kill_switch import kill_switch_counts
from edgefleet.server.services.models import find_version
from edgefleet.server.store import ArtifactRow, HardwareClassRow, ModelRow, ModelVersionRow
from edgefleet.server.store.deletes import delete_loaded_row
from edgefleet.server.store.pages import Page, paginate

__all__ = [
    "RegisterResult",
    "artifact_id",
    "artifact_labels",
    "artifact_to_wire",
    "check_artifact",
    "delete_artifact",
    "get_artifact",
    "kill_switch",
    "list_artifacts",
    "register_artifact",
    "set_disabled",
]


def artifact_id(manifest_sha256: str) -> str:
    return "art_" + manifest_sha256[:16]


def artifact_to_wire(row: ArtifactRow) -> dict[str, Any]:
    m = row.manifest
    return {
        "id": row.id,
        "model": m["model"],
        "version": m["version"],
        "hardware_class": row.hardware_class,
        "manifest_sha256": row.manifest_sha256,
        "release_counter": row.release_counter,
        "total_bytes": row.total_bytes,
        "disabled": row.disabled,
        "disabled_reason": row.disabled_reason,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "manifest": m,
    }


class RegisterResult:
    def __init__(self, row: ArtifactRow, created: bool) -> None:
        self.row = row
        self.created = created


def _check_blobs(manifest: ArtifactManifest, blobs: BlobStore) -> None:
    for f in manifest.files:
        stored = blobs.size(f.sha256)
        if stored is None:
            raise InvalidDocumentError(
                f"file {f.path!r} was not uploaded",
                code="blob_missing",
                expected=f"PUT /v1/blobs/{f.sha256}",
                got="no such blob",
                details={"path": f.path},
            )
        if stored != f.length:
            raise InvalidDocumentError(
                f"file {f.path!r} has another length than its blob",
                code="length_mismatch",
                expected=stored,
                got=f.length,
                details={"path": f.path},
            )


def _precheck(
    session: Session, manifest: ArtifactManifest, digest: str
) -> tuple[ModelVersionRow, ArtifactRow | None]:
    """Everything that can refuse a manifest without its files (class, version, source, conflict, budgets),
    inside the caller's transaction; returns the model version, and the identical artifact when it exists."""
    class_row = session.get(HardwareClassRow, manifest.hardware_class)
    if class_row is None:
        raise NotFoundError("no such hardware class", code="class_not_found", got=manifest.hardware_class)
    _, version = find_version(session, manifest.model, manifest.version)
    if manifest.optimization.source_sha256 != version.source_sha256:
        raise InvalidDocumentError(
            "the build was made from another source than the registered version",
            code="source_mismatch",
            expected=version.source_sha256,
            got=manifest.optimization.source_sha256,
        )
    existing = session.execute(
        select(ArtifactRow).where(
            ArtifactRow.model_version_id == version.id,
            ArtifactRow.hardware_class == manifest.hardware_class,
        )
    ).scalar_one_or_none()
    if existing is not None and existing.manifest_sha256 != digest:
        raise ConflictError(
            "another artifact exists for this model version and class",
            code="artifact_exists",
            expected=existing.manifest_sha256,
            got=digest,
            details={"id": existing.id},
        )
    if existing is None:
        check_fits(manifest, HardwareClass.parse(class_row.document))
    return version, existing


def check_artifact(session: Session, blobs: BlobStore, manifest: ArtifactManifest) -> list[str]:
    """Would ``register_artifact`` accept this manifest? Raises what it would raise, before any file is
    uploaded; returns the sha256 of the files the blob store does not hold yet (what to upload)."""
    digest = hashlib.sha256(canonical_json(manifest.to_dict())).hexdigest()
    with session.begin():
        _precheck(session, manifest, digest)
    return sorted({f.sha256 for f in manifest.files if blobs.size(f.sha256) != f.length})


def register_artifact(
    session: Session, blobs: BlobStore, manifest: ArtifactManifest, *, actor: str, now: datetime
) -> RegisterResult:
    body = manifest.to_dict()
    digest = hashlib.sha256(canonical_json(body)).hexdigest()
    with session.begin():
        version, existing = _precheck(session, manifest, digest)
        if existing is None:
            _check_blobs(manifest, blobs)
            existing = ArtifactRow(
                id=artifact_id(digest),
                model_version_id=version.id,
                hardware_class=manifest.hardware_class,
                manifest=body,
                manifest_sha256=digest,
                release_counter=manifest.release_counter,
                total_bytes=manifest.total_bytes,
                disabled=False,
                disabled_reason=None,
                created_at=now,
                updated_at=now,
            )
            session.add(existing)
            record(
                session,
                actor=actor,
                action="artifact.create",
                target=existing.id,
                now=now,
                details={
                    "created": True,
                    "model": manifest.model,
                    "version": manifest.version,
                    "hardware_class": manifest.hardware_class,
                },
            )
            return RegisterResult(existing, True)
    return RegisterResult(existing, False)  # the identical artifact: an idempotent repeat, nothing audited


def artifact_labels(session: Session, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Artifact id -> its model, version, hardware class and whether it is disabled (for lists of ids)."""
    if not ids:
        return {}
    with session.begin():
        rows = session.execute(select(ArtifactRow).where(ArtifactRow.id.in_(ids))).scalars()
        return {
            r.id: {
                "model": r.manifest.get("model"),
                "version": r.manifest.get("version"),
                "hardware_class": r.hardware_class,
                "disabled": r.disabled,
            }
            for r in rows
        }


def _find(session: Session, artifact: str) -> ArtifactRow:
    row = session.get(ArtifactRow, artifact[:20])
    if row is None:
        raise NotFoundError("no such artifact", code="artifact_not_found", got=artifact[:80])
    return row


def get_artifact(session: Session, artifact: str) -> ArtifactRow:
    with session.begin():
        return _find(session, artifact)


def list_artifacts(
    session: Session,
    *,
    limit: int,
    offset: int,
    model: str | None = None,
    version: str | None = None,
    hardware_class: str | None = None,
    disabled: bool | None = None,
) -> Page[ArtifactRow]:
    stmt = select(ArtifactRow).order_by(ArtifactRow.created_at, ArtifactRow.id)
    if model is not None or version is not None:
        stmt = stmt.join(ModelVersionRow, ModelVersionRow.id == ArtifactRow.model_version_id).join(
            ModelRow, ModelRow.id == ModelVersionRow.model_id
        )
        if model is not None:
            stmt = stmt.where(ModelRow.name == model)
        if version is not None:
            stmt = stmt.where(ModelVersionRow.version == version)
    if hardware_class is not None:
        stmt = stmt.where(ArtifactRow.hardware_class == hardware_class)
    if disabled is not None:
        stmt = stmt.where(ArtifactRow.disabled == disabled)
    with session.begin():
        return paginate(session, stmt, limit=limit, offset=offset)


def set_disabled(
    session: Session, artifact: str, *, disabled: bool, reason: str | None, actor: str, now: datetime
) -> ArtifactRow:
    with session.begin():
        row = _find(session, artifact)
        if row.disabled == disabled and row.disabled_reason == (reason if disabled else None):
            return row  # a repeat: nothing changes, nothing is audited, devices keep their generation
        row.disabled = disabled
        row.disabled_reason = reason if disabled else None
        row.updated_at = now
        bump_director_epoch(session)  # devices drop (or regain) it at their next poll
        impact = kill_switch_counts(session, row.id, row.hardware_class).to_wire()
        record(
            session,
            actor=actor,
            action="artifact.disable" if disabled else "artifact.enable",
            target=row.id,
            now=now,
            details={"reason": reason, **({"kill_switch": impact} if disabled else {})},
        )
        if disabled:
            emit(
                session,
                "artifact.disabled",
                subject=row.id,
                now=now,
                payload={
                    "artifact_id": row.id,
                    "model": row.manifest.get("model"),
                    "version": row.manifest.get("version"),
                    "hardware_class": row.hardware_class,
                    "reason": reason,
                    "actor": actor,
                    "kill_switch": impact,
                },
            )
        return row


def kill_switch(session: Session, row: ArtifactRow) -> dict[str, Any]:
    """Where the devices of a disabled artifact's class stand (``kill_switch.count_fates``)."""
    with session.begin():
        return kill_switch_counts(session, row.id, row.hardware_class).to_wire()


def delete_artifact(session: Session, artifact: str, *, actor: str, now: datetime) -> None:
    """Removes the registration; the blobs stay (content-addressed, possibly shared)."""
    with session.begin():
        row = _find(session, artifact)
        if not delete_loaded_row(session, row):  # a concurrent delete won
            raise NotFoundError("no such artifact", code="artifact_not_found", got=artifact[:80])
        record(session, actor=actor, action="artifact.delete", target=row.id, now=now)
