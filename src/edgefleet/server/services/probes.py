"""Probes: operators ask real devices of a class to measure a build's candidates; devices report figures.

Everything an operator can get wrong is refused before anything is stored or sent: an unknown class, a
bundle made for another class, a bundle above the class's storage budget, a class with no enrolled device,
a revoked device or one of another class, a bundle the release key has not signed into the TUF targets.
The director then names the bundle in each chosen device's desired state (``probe_section``). A device may
report only the candidates it was sent: anything else is refused and recorded as a security event.

Status (``probe_status``, pure): ``running`` until every asked device reported or the deadline passed;
then ``complete`` (all reported), ``partial`` (some did: never treated as complete) or ``expired`` (none).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Targets

from edgefleet.protocol.desired_state import Assignment, TargetHashes, TargetRef
from edgefleet.protocol.document import validation_details
from edgefleet.protocol.errors import (
    ConflictError,
    InvalidDocumentError,
    NotFoundError,
    PermissionDeniedError,
)
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.manifest import ArtifactManifest, artifact_target_path, manifest_target_path
from edgefleet.protocol.probe import PROBE_INDEX_FILE, ProbeOrder, ProbeResults
from edgefleet.server.services import audit
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.probes import ProbeDeviceRow, ProbeRow
from edgefleet.server.store.registry import HardwareClassRow

__all__ = [
    "ProbeRequest",
    "accept_results",
    "create_probe",
    "get_probe",
    "list_probes",
    "probe_section",
    "probe_status",
]

MIB = 1024 * 1024
MAX_DEVICES = 100
SECURITY_ACTION = "security.probe_results_refused"


@dataclass(frozen=True)
class ProbeRequest:
    hardware_class: str
    manifest: dict[str, Any]
    devices: int | None = None
    labels: Mapping[str, str] | None = None
    device_ids: tuple[str, ...] = ()
    deadline_s: float = 3600.0
    runs: int = 50
    sustained_s: float = 0.0
    time_limit_s: float = 300.0


def probe_status(*, asked: int, reported: int, deadline_at: datetime, now: datetime) -> str:
    """Pure: ``running`` | ``complete`` | ``partial`` | ``expired``."""
    if reported >= asked:
        return "complete"
    if now < deadline_at:
        return "running"
    return "partial" if reported > 0 else "expired"


def _class(session: Session, name: str) -> HardwareClass:
    row = session.get(HardwareClassRow, name)
    if row is None:
        raise NotFoundError("no such hardware class", code="class_not_found", got=name)
    return HardwareClass.parse(dict(row.document))


def _manifest(request: ProbeRequest, hwclass: HardwareClass) -> tuple[ArtifactManifest, list[str]]:
    manifest = ArtifactManifest.parse(request.manifest)
    if manifest.hardware_class != hwclass.name:
        raise InvalidDocumentError(
            "the probe bundle was made for another class",
            code="build_class_mismatch",
            expected=hwclass.name,
            got=manifest.hardware_class,
        )
    extra = manifest.model_extra or {}
    candidates = (
        (extra.get("probe") or {}).get("candidates") if isinstance(extra.get("probe"), dict) else None
    )
    if (
        not isinstance(candidates, list)
        or not candidates
        or PROBE_INDEX_FILE not in {f.path for f in manifest.files}
    ):
        raise InvalidDocumentError(
            "not a probe bundle",
            code="not_a_probe_bundle",
            expected=f"{PROBE_INDEX_FILE} and probe.candidates",
        )
    budget = hwclass.budgets.storage_mb * MIB
    if manifest.total_bytes > budget:
        raise InvalidDocumentError(
            "the probe's candidates and validation inputs do not fit the class's storage budget",
            code="probe_exceeds_storage_budget",
            expected=f"<= {hwclass.budgets.storage_mb} MiB",
            got=manifest.total_bytes,
        )
    return manifest, [str(c) for c in candidates]


def _devices(session: Session, request: ProbeRequest, hwclass: HardwareClass) -> list[DeviceRow]:
    if request.device_ids:
        rows = []
        for device_id in request.device_ids:
            device = session.get(DeviceRow, device_id)
            if device is None:
                raise NotFoundError("no such device", code="device_not_found", got=device_id)
            if device.revoked_at is not None:
                raise ConflictError("the device is revoked", code="device_revoked", got=device_id)
            if device.hardware_class != hwclass.name:
                raise InvalidDocumentError(
                    "the device is of another class",
                    code="device_class_mismatch",
                    expected=hwclass.name,
                    got=device.hardware_class,
                )
            rows.append(device)
        return rows
    stmt = select(DeviceRow).where(DeviceRow.hardware_class == hwclass.name, DeviceRow.revoked_at.is_(None))
    candidates = list(session.execute(stmt.order_by(DeviceRow.id)).scalars())
    labels = dict(request.labels or {})
    chosen = [d for d in candidates if all((d.labels or {}).get(k) == v for k, v in labels.items())]
    if not chosen:
        raise ConflictError(
            "no enrolled device of this class matches",
            code="no_enrolled_device",
            expected={"hardware_class": hwclass.name, "labels": labels},
            got=0,
        )
    # Devices seen most recently first: they are the likeliest to answer before the deadline.
    chosen.sort(
        key=lambda d: (d.last_seen_at is None, -(d.last_seen_at.timestamp() if d.last_seen_at else 0))
    )
    wanted = request.devices or len(chosen)
    return chosen[: min(wanted, MAX_DEVICES)]


def _check_signed(manifest: ArtifactManifest, targets: Metadata[Targets] | None) -> None:
    """The bundle's files must be release-signed TUF targets already (the device checks again)."""
    signed = targets.signed.targets if targets is not None else {}
    for entry in manifest.files:
        path = artifact_target_path(manifest, entry.path)
        info = signed.get(path)
        if info is None or (info.hashes.get("sha256"), info.length) != (entry.sha256, entry.length):
            raise ConflictError(
                "the probe bundle is not signed into the TUF targets (run edgefleet publish first)",
                code="probe_bundle_not_signed",
                expected="every bundle file a signed target with the same hashes",
                got=path,
            )


def _signed_manifest(manifest: ArtifactManifest, targets: Metadata[Targets] | None) -> TargetRef:
    path = manifest_target_path(manifest.model, manifest.version, manifest.hardware_class)
    info = targets.signed.targets.get(path) if targets is not None else None
    sha256 = info.hashes.get("sha256") if info is not None else None
    if info is None or sha256 is None:
        raise ConflictError(
            "the probe bundle's manifest is not signed into the TUF targets (run edgefleet publish first)",
            code="probe_bundle_not_signed",
            expected="the bundle's manifest.json a signed target",
            got=path,
        )
    return TargetRef(path=path, length=info.length, hashes=TargetHashes(sha256=sha256))


def create_probe(
    session: Session,
    request: ProbeRequest,
    *,
    actor: str,
    now: datetime,
    targets: Metadata[Targets] | None,
    dry_run: bool = False,
) -> dict[str, Any]:
    with session.begin():
        hwclass = _class(session, request.hardware_class)
        manifest, candidates = _manifest(request, hwclass)
        devices = _devices(session, request, hwclass)
        plan = {
            "hardware_class": hwclass.name,
            "devices": [d.id for d in devices],
            "candidates": candidates,
            "bundle_bytes": manifest.total_bytes,
        }
        if dry_run:
            return plan
        _check_signed(manifest, targets)
        # named like an assignment: the bundle's manifest.json as the release key signed it
        bundle = Assignment(
            artifact_id=f"probe-{manifest.version}"[:64], manifest=_signed_manifest(manifest, targets)
        )
        extra = manifest.model_extra or {}
        row = ProbeRow(
            id=f"prb_{secrets.token_hex(8)}",
            model=manifest.model.removesuffix(".probe"),
            version=str((extra.get("probe") or {}).get("build_version", manifest.version))[:63],
            hardware_class=hwclass.name,
            bundle=bundle.model_dump(mode="json"),
            candidates=candidates,
            selector={
                "devices": request.devices,
                "labels": dict(request.labels or {}),
                "ids": list(request.device_ids),
            },
            devices_asked=len(devices),
            runs=request.runs,
            sustained_s=request.sustained_s,
            time_limit_s=request.time_limit_s,
            deadline_at=now + timedelta(seconds=request.deadline_s),
            created_by=actor,
            created_at=now,
        )
        session.add(row)
        session.flush()
        for device in devices:
            session.add(ProbeDeviceRow(probe_id=row.id, device_id=device.id))
        bump_director_epoch(session)
        audit.record(session, actor=actor, action="probe.create", target=row.id, now=now, details=plan)
        session.flush()
        return _wire(row, _members(session, row.id), now)


def _members(session: Session, probe_id: str) -> list[ProbeDeviceRow]:
    stmt = (
        select(ProbeDeviceRow).where(ProbeDeviceRow.probe_id == probe_id).order_by(ProbeDeviceRow.device_id)
    )
    return list(session.execute(stmt).scalars())


def _wire(row: ProbeRow, members: list[ProbeDeviceRow], now: datetime) -> dict[str, Any]:
    reported = [m for m in members if m.reported_at is not None]
    status = probe_status(
        asked=row.devices_asked, reported=len(reported), deadline_at=row.deadline_at, now=now
    )
    return {
        "id": row.id,
        "model": row.model,
        "version": row.version,
        "hardware_class": row.hardware_class,
        "candidates": list(row.candidates),
        "bundle_target": (row.bundle.get("manifest") or {}).get("path"),
        "selector": row.selector,
        "devices_asked": row.devices_asked,
        "devices_reported": len(reported),
        "status": status,
        "partial": status == "partial",
        "runs": row.runs,
        "sustained_s": row.sustained_s,
        "time_limit_s": row.time_limit_s,
        "deadline_at": row.deadline_at.isoformat(),
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "devices": [
            {
                "device_id": m.device_id,
                "reported_at": m.reported_at.isoformat() if m.reported_at else None,
                "results": m.results,
                "measured_on": "device",
            }
            for m in members
        ],
    }


def get_probe(session: Session, probe_id: str, *, now: datetime) -> dict[str, Any]:
    with session.begin():
        row = session.get(ProbeRow, probe_id)
        if row is None:
            raise NotFoundError("no such probe", code="probe_not_found", got=probe_id)
        return _wire(row, _members(session, row.id), now)


def list_probes(
    session: Session, *, now: datetime, model: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    stmt = select(ProbeRow).order_by(ProbeRow.created_at.desc()).limit(limit)
    if model is not None:
        stmt = stmt.where(ProbeRow.model == model)
    with session.begin():
        return [_wire(row, _members(session, row.id), now) for row in session.execute(stmt).scalars()]


def probe_section(session: Session, device: DeviceRow) -> dict[str, Any] | None:
    """The probe order for ``device`` in its desired state: its oldest unreported probe, if any."""
    stmt = (
        select(ProbeRow)
        .join(ProbeDeviceRow, ProbeDeviceRow.probe_id == ProbeRow.id)
        .where(ProbeDeviceRow.device_id == device.id, ProbeDeviceRow.reported_at.is_(None))
        .order_by(ProbeRow.created_at, ProbeRow.id)
        .limit(1)
    )
    row = session.execute(stmt).scalars().first()
    if row is None:
        return None
    order = ProbeOrder(
        probe_id=row.id,
        bundle=Assignment.model_validate(row.bundle),
        deadline_at=row.deadline_at,
        runs=row.runs,
        sustained_s=row.sustained_s,
        time_limit_s=row.time_limit_s,
    )
    return order.model_dump(mode="json")


def accept_results(
    session: Session, device: DeviceRow, probe_id: str, data: Any, *, now: datetime
) -> dict[str, Any]:
    """Store one device's results (idempotent: the first accepted report stays)."""
    try:
        results = ProbeResults.model_validate(data) if isinstance(data, dict) else None
    except ValidationError as exc:
        raise InvalidDocumentError(
            "invalid probe results", details={"errors": validation_details(exc)}
        ) from exc
    if results is None:
        raise InvalidDocumentError(
            "probe results must be an object", expected="object", got=type(data).__name__
        )
    if results.probe_id != probe_id:
        raise InvalidDocumentError("probe id differs from the path", expected=probe_id, got=results.probe_id)
    with session.begin():
        row = session.get(ProbeRow, probe_id)
        member = session.get(ProbeDeviceRow, (probe_id, device.id))
        if row is None or member is None:
            raise NotFoundError(
                "this probe was not sent to this device", code="probe_not_assigned", got=probe_id
            )
        sent = set(row.candidates)
        unsent = sorted({c.name for c in results.candidates} - sent)
        if unsent:
            refused = {"code": "probe_candidate_not_sent", "device_id": device.id, "candidates": unsent}
        elif member.reported_at is not None:
            return {"accepted": True, "duplicate": True}
        elif now >= row.deadline_at:
            raise ConflictError("the probe's deadline has passed", code="probe_expired", got=now.isoformat())
        else:
            member.reported_at = now
            member.results = results.model_dump(mode="json")
            bump_director_epoch(session)
            return {"accepted": True, "duplicate": False}
    audit.record_alone(
        session, actor=device.id, action=SECURITY_ACTION, target=probe_id, now=now, details=refused
    )
    raise PermissionDeniedError(
        "figures for candidates this device was not sent",
        code="probe_candidate_not_sent",
        expected=sorted(sent),
        got=unsent,
    )
