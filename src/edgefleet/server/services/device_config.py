"""One device's remote configuration and update window as the control plane sees them: what it wants (the
merged layers and where each setting comes from), what it last signed, what the device says it applied, and
whether its window is open now in the zone it reported. Rendered by the API, the CLI and the dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, undefer

from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError
from edgefleet.protocol.hardware_class import device_window
from edgefleet.protocol.update_window import next_window_open, parse_update_window, window_open
from edgefleet.server.services.agent_config import effective_config, layers_for
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.registry import HardwareClassRow

__all__ = ["device_config_view", "window_view"]


def window_view(window_text: str, zone: str | None, now: datetime) -> dict[str, Any]:
    """Pure: the window, the zone it is read in, whether it is open at ``now`` and when it opens next."""
    try:
        window = parse_update_window(window_text)
    except InvalidDocumentError:
        window = None
    return {
        "window": window_text,
        "timezone": zone,
        "open": window_open(window, zone, now),
        "next_open_at": next_window_open(window, zone, now).isoformat(),
    }


def device_config_view(session: Session, device_id: str, *, now: datetime) -> dict[str, Any]:
    with session.begin():
        device = session.get(
            DeviceRow,
            device_id[:32],
            options=[undefer(DeviceRow.report), undefer(DeviceRow.desired_envelope)],
        )
        if device is None:
            raise NotFoundError("no such device", code="device_not_found", got=device_id[:80])
        desired, sources = effective_config(layers_for(session, device))
        class_row = session.get(HardwareClassRow, device.hardware_class)
        window_text = (
            device_window(class_row.document, device.labels or {}) if class_row is not None else "any"
        )
        report = device.report or {}
        signed = (device.desired_envelope or {}).get("signed") or {}
    zone = report.get("timezone")
    applied = report.get("config") if isinstance(report.get("config"), dict) else None
    applied_values = (applied or {}).get("applied") or {}
    return {
        "device_id": device.id,
        "config": {
            "desired": desired,
            "sources": sources,
            "signed": {"generation": signed.get("generation"), "settings": signed.get("config") or {}},
            "applied": applied,
            "in_sync": applied is not None
            and applied_values == desired
            and not (applied or {}).get("restart_needed")
            and not (applied or {}).get("refused"),
        },
        "update_window": window_view(window_text, zone if isinstance(zone, str) else None, now),
    }
