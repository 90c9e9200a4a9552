"""The twin of the fleet as the control plane knows it: the dry run of ``POST /v1/rollouts``.

Reads the rollout's devices (class, labels, online now or not), their classes (envelope, update window),
the artifacts (sizes, build figures) and the last day's telemetry (request rates, error rates), and says
in ``notes`` what it had to assume because the control plane does not record it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, undefer

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.update_window import check_zone, parse_update_window
from edgefleet.server.services.devices import DeviceStatus, StatusThresholds, device_status
from edgefleet.server.services.rollouts.overlay import canonical_selector, selector_matches
from edgefleet.server.services.rollouts.service import resolve_targets
from edgefleet.server.services.rollouts.spec import RolloutSpec
from edgefleet.server.services.twin.fleet import FleetSpec, parse_fleet
from edgefleet.server.services.twin.plan import plan
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.registry import ArtifactRow, HardwareClassRow
from edgefleet.server.store.telemetry import TelemetryModelWindowRow, TelemetryWindowRow

__all__ = ["AGENT_POLL_S", "ASSUMED_LINK_MBPS", "dry_run", "fleet_of_control_plane"]

AGENT_POLL_S = 30.0
"""the agent's default poll interval (``agent run --poll-interval``); devices do not report theirs"""
ASSUMED_LINK_MBPS = 10.0
ASSUMED_INSTALL_S = 10.0
TELEMETRY_LOOKBACK = timedelta(hours=24)


def _figures(artifact: ArtifactRow | None, *, error_rate: float, what: str) -> dict[str, Any]:
    if artifact is None:
        return {"error_rate": error_rate, "source": f"{what}: none (the class has no pinned version)"}
    metrics = (artifact.manifest or {}).get("metrics") or {}
    p95 = metrics.get("latency_p95_ms")
    where = (
        f"{what}: artifact {artifact.id}'s manifest (build report, measured on the build host or emulated)"
    )
    agreement = metrics.get("top1_agreement")
    return {
        "latency_p95_ms": p95 if p95 else None,
        "error_rate": error_rate,
        "shadow_agreement": agreement if agreement is not None else 1.0,
        "source": where,
    }


def _traffic(
    session: Session, hardware_class: str, versions: list[str], since: datetime
) -> tuple[float, float]:
    """(requests per device per second, model error rate) of the class's current version, from the last
    day's telemetry: requests over the devices that reported and the span their windows cover."""
    row = session.execute(
        select(
            func.coalesce(func.sum(TelemetryModelWindowRow.requests), 0),
            func.coalesce(func.sum(TelemetryModelWindowRow.errors), 0),
            func.count(func.distinct(TelemetryModelWindowRow.device_id)),
            func.min(TelemetryWindowRow.start_at),
            func.max(TelemetryWindowRow.end_at),
        )
        .join(TelemetryWindowRow, TelemetryWindowRow.id == TelemetryModelWindowRow.window_id)
        .where(
            TelemetryModelWindowRow.hardware_class == hardware_class,
            TelemetryModelWindowRow.end_at >= since,
            *([TelemetryModelWindowRow.model_version.in_(versions)] if versions else []),
        )
    ).one()
    requests, errors, devices = int(row[0]), int(row[1]), int(row[2])
    if not devices or not requests or row[3] is None or row[4] is None:
        return -1.0, 0.0
    span_s = max((row[4] - row[3]).total_seconds(), 1.0)
    return requests / devices / span_s, errors / requests


def _zone(device: DeviceRow) -> str:
    """The zone the device reported (``UTC`` when none, or one this host does not know)."""
    zone = (device.report or {}).get("timezone")
    if not isinstance(zone, str):
        return "UTC"
    try:
        check_zone(zone)
    except InvalidDocumentError:
        return "UTC"
    return zone


def _version_name(artifact: ArtifactRow | None) -> list[str]:
    if artifact is None:
        return []
    manifest = artifact.manifest or {}
    return [f"{manifest.get('model')}/{manifest.get('version')}"]


def fleet_of_control_plane(
    session: Session,
    *,
    model: str,
    targets: dict[str, str],
    selector: dict[str, str] | str,
    slot: str,
    spread_label: str,
    now: datetime,
    thresholds: StatusThresholds,
    horizon_s: float,
    seed: int,
) -> FleetSpec:
    """The rollout's devices and classes as a fleet description (inside one read transaction)."""
    notes = [
        f"poll interval: the agent's default {AGENT_POLL_S:g} s (devices do not report theirs)",
        "link speeds: no past download speeds are recorded; "
        f"every device is taken at {ASSUMED_LINK_MBPS:g} Mbit/s",
        "online patterns: a device online now stays online; a device not online now stays offline "
        "for the run "
        "(no per-device outage history is recorded)",
        f"install and health check: {ASSUMED_INSTALL_S:g} s per device; install failures: none assumed",
        "candidate error rate: the current version's observed error rate (the build report has none)",
        "candidate quality: the build report's top-1 agreement with the reference is the shadow agreement; "
        "probe figures are not used",
        "update windows: each device's window (its class's, or a matching override) in the time zone it "
        "reported (UTC until it reports one), judged by the agent's own rule (protocol.update_window)",
    ]
    classes: dict[str, Any] = {}
    with session.begin():
        resolved = resolve_targets(session, model=model, targets=targets, slot=slot)
        devices = [
            d
            for d in session.execute(
                select(DeviceRow)
                .options(undefer(DeviceRow.report))  # the zone each device reported
                .where(DeviceRow.hardware_class.in_(list(resolved)), DeviceRow.revoked_at.is_(None))
                .order_by(DeviceRow.id)
            ).scalars()
            if selector_matches(selector, d.labels)
        ]
        for name, target in sorted(resolved.items()):
            members = [d for d in devices if d.hardware_class == name]
            to = session.get(ArtifactRow, target["to"] or "")
            previous = session.get(ArtifactRow, target["from"]) if target["from"] else None
            cls_row = session.get(HardwareClassRow, name)
            hwclass = HardwareClass.parse(cls_row.document) if cls_row is not None else None
            rate, error_rate = _traffic(session, name, _version_name(previous), now - TELEMETRY_LOOKBACK)
            if rate < 0:
                notes.append(f"{name}: no telemetry in the last day; 1 request/s per device assumed")
                rate = 1.0
            window = hwclass.update_window if hwclass is not None else "any"
            try:
                parse_update_window(window)
            except InvalidDocumentError:
                notes.append(f"{name}: update window {window!r} is not understood; not modelled")
                window = "any"
            per_device = [hwclass.window_for(d.labels or {}) if hwclass else window for d in members]
            classes[name] = {
                "devices": len(members),
                "device_ids": [d.id for d in members],
                "site_labels": [d.labels.get(spread_label, "") for d in members],
                "offline": [
                    device_status(last_seen_at=d.last_seen_at, revoked=False, now=now, thresholds=thresholds)
                    is not DeviceStatus.online
                    for d in members
                ],
                "poll_s": AGENT_POLL_S,
                "link": {
                    "min_mbps": ASSUMED_LINK_MBPS,
                    "max_mbps": ASSUMED_LINK_MBPS,
                    "measured_from": "assumed",
                },
                "artifact_bytes": to.total_bytes if to is not None else 0,
                "install_s": ASSUMED_INSTALL_S,
                "requests_per_s": rate,
                "envelope_p95_ms": hwclass.performance.latency_p95_ms if hwclass is not None else None,
                "update_window": window,
                "update_windows": per_device,
                "timezones": [_zone(d) for d in members],
                "current": _figures(previous, error_rate=error_rate, what="current"),
                "candidate": _figures(to, error_rate=error_rate, what="candidate"),
            }
    return parse_fleet(
        {
            "name": f"{model} on the control plane's fleet",
            "seed": seed,
            "start_at": now,
            "horizon_s": horizon_s,
            "tick_s": 10.0,
            "classes": classes,
            "notes": notes,
        }
    )


def dry_run(
    session: Session,
    *,
    model: str,
    targets: dict[str, str],
    selector: dict[str, str] | str,
    slot: str,
    spec: RolloutSpec,
    now: datetime,
    thresholds: StatusThresholds,
    seed: int = 0,
    horizon_s: float = 7 * 86400,
    compare: RolloutSpec | None = None,
) -> dict[str, Any]:
    """What ``create_rollout`` with these arguments would do, run on the twin; nothing is written."""
    fleet = fleet_of_control_plane(
        session,
        model=model,
        targets=targets,
        selector=canonical_selector(selector),
        slot=slot,
        spread_label=spec.spread_label,
        now=now,
        thresholds=thresholds,
        horizon_s=horizon_s,
        seed=seed,
    )
    return {**plan(fleet, spec, seed=seed, compare=compare), "dry_run": True, "notes": fleet.notes}
