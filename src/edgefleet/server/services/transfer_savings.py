"""Bytes a rollout's installs downloaded against what full downloads would have cost (model deltas).

Read from the devices' ``install_download_done`` update events (``agent.observed.step_event``): each says
the artifact, ``full_bytes`` (the artifact's files), ``bytes_downloaded`` (deltas, full files; files held
already cost none), ``delta_files`` and, when a delta was refused, ``delta_fallbacks`` (``file=reason;...``).
One install per device and artifact counts (the newest event), so a retried install is not counted twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server.store.rollouts import RolloutDeviceRow
from edgefleet.server.store.telemetry import TelemetryEventRow

__all__ = ["fallback_reasons", "rollout_transfer", "summarize_transfers"]


def fallback_reasons(value: object) -> dict[str, str]:
    """``"model.onnx=delta_base_missing;golden.npz=delta_corrupt"`` (the event's flat form) -> a dict."""
    out: dict[str, str] = {}
    for pair in str(value or "").split(";"):
        path, sep, reason = pair.rpartition("=")
        if sep and path and reason:
            out[path] = reason
    return out


def summarize_transfers(
    events: Iterable[tuple[str, dict[str, Any]]], artifacts: Collection[str]
) -> dict[str, Any]:
    """Pure: ``(device_id, details)`` of download events, oldest first -> totals for ``artifacts``."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for device_id, details in events:
        artifact = details.get("artifact")
        full, got = details.get("full_bytes"), details.get("bytes_downloaded")
        if artifact not in artifacts or not isinstance(full, int) or not isinstance(got, int):
            continue
        newest[(device_id, str(artifact))] = details
    fallbacks: Counter[str] = Counter()
    full_bytes = downloaded = through_delta = 0
    for details in newest.values():
        full_bytes += int(details["full_bytes"])
        downloaded += int(details["bytes_downloaded"])
        if int(details.get("delta_files") or 0) > 0:
            through_delta += 1
        for reason in fallback_reasons(details.get("delta_fallbacks")).values():
            fallbacks[reason] += 1
    saved = max(0, full_bytes - downloaded)
    return {
        "installs": len(newest),
        "installs_through_delta": through_delta,
        "full_bytes": full_bytes,
        "bytes_downloaded": downloaded,
        "bytes_saved": saved,
        "saved_fraction": round(saved / full_bytes, 4) if full_bytes else 0.0,
        "delta_fallbacks": dict(sorted(fallbacks.items())),
    }


def rollout_transfer(
    session: Session, rollout_id: str, artifacts: Collection[str], *, since: datetime
) -> dict[str, Any]:
    """The rollout's members' downloads of its target ``artifacts`` since it was created (in the caller's
    transaction)."""
    members = select(RolloutDeviceRow.device_id).where(RolloutDeviceRow.rollout_id == rollout_id)
    rows = session.execute(
        select(TelemetryEventRow.device_id, TelemetryEventRow.details)
        .where(
            TelemetryEventRow.kind == "update",
            TelemetryEventRow.code == "install_download_done",
            TelemetryEventRow.received_at >= since,
            TelemetryEventRow.device_id.in_(members),
        )
        .order_by(TelemetryEventRow.at, TelemetryEventRow.id)
    ).all()
    return summarize_transfers(((r[0], dict(r[1] or {})) for r in rows), artifacts)
