"""The dashboard's pages (viewer role): fleet, rollouts, devices, models and artifacts, audit log.

Each page reads through the services and renders what they return: no query and no rule is judged here
(a rollout's gates are the rows the engine judged, ``last_decision.gates``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response

from edgefleet.protocol.selector import MAX_SELECTOR_CHARS, parse_selector
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.dashboard.views import (
    MAX_LISTED,
    STATUS_ORDER,
    device_series,
    fleet_summary,
    gate_tables,
    sum_degraded,
)
from edgefleet.server.services import artifacts, audit, devices, models
from edgefleet.server.services.device_config import device_config_view
from edgefleet.server.services.device_telemetry import device_telemetry
from edgefleet.server.services.devices import StatusThresholds
from edgefleet.server.services.fleet_health import fleet_health
from edgefleet.server.services.fleet_overview import read_fleet_overview
from edgefleet.server.services.inventory import parse_inventory_filter
from edgefleet.server.services.rollouts import service as rollouts
from edgefleet.server.services.telemetry import Freshness

__all__ = ["NOTICES", "PAGE_SIZE", "UNSEEN_AFTER", "Offset", "rollout_context", "router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
UNSEEN_AFTER = timedelta(hours=24)
PAGE_SIZE = 50
MAX_CHART_VERSIONS = 30
Offset = Annotated[int, Query(ge=0, le=10**9)]
OptionalName = Annotated[str | None, Query(max_length=63)]
FilterText = Annotated[str | None, Query(max_length=MAX_SELECTOR_CHARS)]
RolloutId = Annotated[str, Path(pattern=r"^ro_[0-9a-f]{16}$")]
DeviceId = Annotated[str, Path(pattern=r"^dev_[0-9a-f]{20}$")]
ArtifactId = Annotated[str, Path(pattern=r"^art_[0-9a-f]{16}$")]
NOTICES = {
    "pause": "Rollout paused.",
    "resume": "Rollout resumed.",
    "promote": "Current stage promoted.",
    "abort": "Rollout aborted; its devices return to the previous artifact at their next poll.",
    "revoke": "Device revoked; its requests are refused from now on.",
    "rollback": "Device pinned to its previous version; it switches back at its next poll.",
    "disable": "Artifact disabled fleet-wide; devices drop it at their next poll.",
    "enable": "Artifact enabled again.",
    "create": "Rollout created: its first stage's devices install the new artifact at their next poll.",
    "pin_set": "Pin set; the devices it concerns switch at their next poll.",
    "pin_clear": "Pin cleared; its devices follow their class pin or rollout at their next poll.",
    "relabel": "Labels changed; the device's rollouts are re-judged at its next poll.",
    "decommission": "Device decommissioned: revoked and hidden from the fleet views; kept in the audit log.",
    "webhook_remove": "Webhook removed; no event is posted to it any more.",
    "pin_selection": "Pins set on every matched device; each switches at its next poll.",
}


def _thresholds(request: Request) -> StatusThresholds:
    thresholds: StatusThresholds = request.app.state.devices.thresholds
    return thresholds


def _freshness(request: Request) -> Freshness:
    value = getattr(request.app.state, "telemetry", None)
    return value if isinstance(value, Freshness) else Freshness()


def _notice(done: str | None) -> str | None:
    return NOTICES.get(done or "")


@router.get("/")
def overview(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    now = ctx.clock()
    thresholds = _thresholds(request)
    fleet = read_fleet_overview(  # counted in the database: a few hundred groups, not a row per device
        session,
        now=now,
        thresholds=thresholds,
        unseen_after_s=UNSEEN_AFTER.total_seconds(),
        max_listed=MAX_LISTED,
    )
    summary = fleet_summary(fleet, now=now, thresholds=thresholds)
    top = list(summary.versions.items())[:MAX_CHART_VERSIONS]
    labels = artifacts.artifact_labels(session, [a for a, _ in top])
    versions = [
        {
            "artifact_id": a,
            "devices": n,
            "label": f"{labels[a]['model']} {labels[a]['version']} · {labels[a]['hardware_class']}"
            if a in labels
            else a,
            "disabled": labels.get(a, {}).get("disabled", False),
        }
        for a, n in top
    ]
    active = [
        rollouts.rollout_to_wire(session, r)
        for status in ("running", "paused")
        for r in rollouts.list_rollouts(session, limit=20, offset=0, status=status, model=None).items
    ]
    return html(
        request,
        "overview.html",
        summary=summary,
        statuses=STATUS_ORDER,
        versions=versions,
        chart={"labels": [v["label"] for v in versions], "values": [v["devices"] for v in versions]},
        active=active,
        unseen_after=UNSEEN_AFTER,
        user=user,
    )


@router.get("/fleet/health")
def fleet_health_part(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    """The overview's "model health" section, loaded after the page (it scans the last hour of telemetry)."""
    now = ctx.clock()
    health = fleet_health(
        session,
        now=now,
        since=now - timedelta(hours=1),
        freshness=_freshness(request),
        thresholds=_thresholds(request),
    )
    fragment = request.headers.get("x-requested-with") == "dashboard"
    return html(request, "_fleet_health.html" if fragment else "fleet_health.html", health=health, user=user)


@router.get("/rollouts")
def rollout_list(
    request: Request,
    session: DbSession,
    user: SignedIn,
    offset: Offset = 0,
    status: Annotated[str | None, Query(pattern=r"^(running|paused|halted|completed|aborted)$")] = None,
) -> Response:
    page = rollouts.list_rollouts(session, limit=PAGE_SIZE, offset=offset, status=status, model=None)
    return html(
        request,
        "rollouts.html",
        page=page,
        items=[rollouts.rollout_to_wire(session, r) for r in page.items],
        status=status,
        base="/dashboard/rollouts" + (f"?status={status}" if status else ""),
        user=user,
    )


def rollout_context(session: DbSession, rollout_id: str) -> dict[str, Any]:
    """The rollout as the API shows it, the gates of the engine's last evaluation (rows it judged, shown as
    they are) and, once halted or aborted, how far the rollback has gone."""
    row = rollouts.get_rollout(session, rollout_id)
    wire = rollouts.rollout_to_wire(session, row, detail=True)
    decision = wire["last_decision"] or {}
    judged_stage = int(decision.get("stage", row.stage))
    stage = wire["stage_detail"][min(judged_stage, len(wire["stage_detail"]) - 1)]
    gates_by_class = gate_tables(decision)
    totals = {"done": 0, "pending": 0, "failed": 0, "offline": 0, "members": 0}
    for s in wire["stage_detail"]:
        for key in totals:
            totals[key] += int(s.get(key, 0))
    return {
        "ro": wire,
        "current": stage,
        "gates_by_class": gates_by_class,
        "rollback": rollouts.rollback_progress(session, row),
        "totals": totals,
        "final": row.status in ("halted", "aborted", "completed"),
    }


@router.get("/rollouts/{rollout_id}")
def rollout_page(
    rollout_id: RolloutId,
    request: Request,
    session: DbSession,
    user: SignedIn,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    context = rollout_context(session, rollout_id)
    return html(request, "rollout.html", user=user, notice=_notice(done), **context)


@router.get("/rollouts/{rollout_id}/live")
def rollout_live(rollout_id: RolloutId, request: Request, session: DbSession, user: SignedIn) -> Response:
    """The live part of the rollout page, re-fetched by dashboard.js every few seconds."""
    return html(request, "_rollout_live.html", user=user, **rollout_context(session, rollout_id))


@router.get("/devices")
def device_list(
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
    offset: Offset = 0,
    hardware_class: OptionalName = None,
    status_text: Annotated[
        str | None, Query(alias="status", pattern=r"^(|online|stale|offline|revoked)$")
    ] = None,
    selector: FilterText = None,
    os: FilterText = None,
    arch: FilterText = None,
    agent_version: FilterText = None,
    runtime: FilterText = None,
    provider: FilterText = None,
    include_decommissioned: Annotated[bool, Query()] = False,
) -> Response:
    """The fleet, filtered like ``GET /v1/devices`` (an empty field is no filter)."""
    status = devices.DeviceStatus(status_text) if status_text else None  # the form's "any" is empty
    now = ctx.clock()
    thresholds = _thresholds(request)
    inventory = {"os": os, "arch": arch, "agent_version": agent_version, "runtime": runtime}
    inventory = {k: v or None for k, v in {**inventory, "provider": provider}.items()}
    page = devices.list_devices(
        session,
        limit=PAGE_SIZE,
        offset=offset,
        hardware_class=hardware_class or None,
        status=status,
        selector=parse_selector(selector) if selector else None,
        inventory=parse_inventory_filter(**inventory),
        include_decommissioned=include_decommissioned,
        now=now,
        thresholds=thresholds,
    )
    filters = {
        "hardware_class": hardware_class,
        "status": status.value if status else None,
        "selector": selector,
        **inventory,
        "include_decommissioned": "true" if include_decommissioned else None,
    }
    query = urlencode([(k, v) for k, v in filters.items() if v])
    return html(
        request,
        "devices.html",
        page=page,
        items=[devices.device_to_wire(r, now=now, thresholds=thresholds) for r in page.items],
        hardware_class=hardware_class or "",
        status=status.value if status else "",
        filters={k: v or "" for k, v in filters.items()},
        statuses=STATUS_ORDER,
        base="/dashboard/devices" + (f"?{query}" if query else ""),
        user=user,
    )


@router.get("/devices/{device_id}")
def device_page(
    device_id: DeviceId,
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    now = ctx.clock()
    thresholds = _thresholds(request)
    device = devices.device_to_wire(devices.get_device(session, device_id), now=now, thresholds=thresholds)
    telemetry = device_telemetry(
        session,
        device_id,
        now=now,
        since=now - timedelta(hours=24),
        limit=120,
        freshness=_freshness(request),
        thresholds=thresholds,
    )
    slots = (device.get("report") or {}).get("slots") or {}
    ids = sorted(
        {a for s in slots.values() for a in (s.get("active"), s.get("previous"), s.get("desired")) if a}
    )
    return html(
        request,
        "device.html",
        device=device,
        telemetry=telemetry,
        slots=slots,
        artifacts=artifacts.artifact_labels(session, ids),
        series=device_series(telemetry["windows"]),
        degraded=sum_degraded(telemetry["windows"]),
        remote=device_config_view(session, device_id, now=now),
        notice=_notice(done),
        user=user,
    )


@router.get("/models")
def model_list(request: Request, session: DbSession, user: SignedIn, offset: Offset = 0) -> Response:
    listed = models.list_models(session, limit=PAGE_SIZE, offset=offset, name_prefix=None)
    entries = []
    for m in listed["items"]:
        versions = models.list_versions(session, m["name"], limit=50, offset=0)["items"]
        builds = artifacts.list_artifacts(session, limit=500, offset=0, model=m["name"]).items
        by_version: dict[str, list[dict[str, Any]]] = {}
        for b in builds:
            by_version.setdefault(b.manifest["version"], []).append(artifacts.artifact_to_wire(b))
        entries.append(
            {"model": m, "versions": [{**v, "builds": by_version.get(v["version"], [])} for v in versions]}
        )
    page = {"total": listed["total"], "limit": listed["limit"], "offset": listed["offset"]}
    return html(request, "models.html", entries=entries, page=page, base="/dashboard/models", user=user)


@router.get("/artifacts/{artifact_id}")
def artifact_page(
    artifact_id: ArtifactId,
    request: Request,
    session: DbSession,
    user: SignedIn,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    row = artifacts.get_artifact(session, artifact_id)
    art = artifacts.artifact_to_wire(row)
    if row.disabled:  # the kill switch's reach, counted from the devices' reports
        art["kill_switch"] = artifacts.kill_switch(session, row)
    version = models.get_version(session, art["model"], art["version"])
    return html(request, "artifact.html", art=art, version=version, notice=_notice(done), user=user)


@router.get("/audit")
def audit_page(
    request: Request,
    session: DbSession,
    user: SignedIn,
    offset: Offset = 0,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(max_length=255)] = None,
    target: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    page = audit.list_audit(
        session,
        limit=PAGE_SIZE,
        offset=offset,
        actor=actor or None,
        action=action or None,
        target=target or None,
    )
    filters = {"actor": actor or "", "action": action or "", "target": target or ""}
    query = urlencode([(k, v) for k, v in filters.items() if v])
    return html(
        request,
        "audit.html",
        page=page,
        items=[audit.audit_to_wire(r) for r in page.items],
        filters=filters,
        base="/dashboard/audit" + (f"?{query}" if query else ""),
        user=user,
    )
