"""What the devices of a class run now: the bases a publisher prepares deltas from (``edgefleet publish``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import NotFoundError
from edgefleet.server.store import ArtifactRow, HardwareClassRow
from edgefleet.server.store.devices import DeviceRow

__all__ = ["MAX_RUNNING", "running_artifacts"]

MAX_RUNNING = 16


def running_artifacts(
    session: Session, hardware_class: str, *, model: str | None = None, limit: int = 3
) -> list[dict[str, Any]]:
    """The artifacts the class's enrolled devices last reported active (any slot), most devices first, at
    most ``limit`` (bounded by ``MAX_RUNNING``); ``model`` keeps one model's."""
    with session.begin():
        if session.get(HardwareClassRow, hardware_class) is None:
            raise NotFoundError("no such hardware class", code="class_not_found", got=hardware_class[:80])
        counts: Counter[str] = Counter()
        rows = session.execute(
            select(DeviceRow.report_active).where(
                DeviceRow.hardware_class == hardware_class, DeviceRow.revoked_at.is_(None)
            )
        ).scalars()
        for summary in rows:
            for pair in (summary or "").split(";"):
                _, sep, artifact = pair.partition("=")
                if sep and artifact:
                    counts[artifact] += 1
        if not counts:
            return []
        artifacts = {
            row.id: row
            for row in session.execute(select(ArtifactRow).where(ArtifactRow.id.in_(list(counts)))).scalars()
        }
        out = []
        for artifact_id, devices in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            row = artifacts.get(artifact_id)
            if row is None or (model is not None and row.manifest.get("model") != model):
                continue
            out.append(
                {
                    "artifact_id": artifact_id,
                    "model": row.manifest.get("model"),
                    "version": row.manifest.get("version"),
                    "release_counter": row.release_counter,
                    "devices": devices,
                }
            )
        return out[: max(0, min(limit, MAX_RUNNING))]
