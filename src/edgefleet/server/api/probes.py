"""/v1/probes: operators create and read probes; ``/v1/device/probes/{id}/results``: devices report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from edgefleet.protocol.canonical import parse_json_bounded
from edgefleet.protocol.probe import MAX_PROBE_RESULTS_BYTES, PROBE_ID_PATTERN
from edgefleet.server.api.dependencies import Ctx, DbSession, Operator, Viewer
from edgefleet.server.api.devices import signed_device_call
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import probes as svc
from edgefleet.server.store.devices import DeviceRow

__all__ = ["router"]

router = APIRouter(tags=["probes"], route_class=StrictJsonRoute)
ProbeIdPath = Annotated[str, Path(pattern=PROBE_ID_PATTERN)]


class ProbeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hardware_class: str = Field(max_length=63)
    manifest: dict[str, Any] = Field(description="the signed probe bundle's manifest.json")
    devices: int | None = Field(default=None, ge=1, le=svc.MAX_DEVICES)
    labels: dict[str, str] = Field(default_factory=dict, max_length=16)
    device_ids: list[str] = Field(default_factory=list, max_length=svc.MAX_DEVICES)
    deadline_s: float = Field(default=3600.0, gt=0, le=30 * 86400)
    runs: int = Field(default=50, ge=5, le=100_000)
    sustained_s: float = Field(default=0.0, ge=0, le=24 * 3600)
    time_limit_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    dry_run: bool = False


@router.post("/v1/probes", status_code=201)
def create_probe(
    body: ProbeCreate, request: Request, ctx: Ctx, session: DbSession, actor: Operator
) -> dict[str, Any]:
    runtime = request.app.state.tuf
    targets = runtime.repo.targets() if runtime.repo is not None else None
    probe_request = svc.ProbeRequest(
        hardware_class=body.hardware_class,
        manifest=body.manifest,
        devices=body.devices,
        labels=body.labels,
        device_ids=tuple(body.device_ids),
        deadline_s=body.deadline_s,
        runs=body.runs,
        sustained_s=body.sustained_s,
        time_limit_s=body.time_limit_s,
    )
    return svc.create_probe(
        session, probe_request, actor=actor.name, now=ctx.clock(), targets=targets, dry_run=body.dry_run
    )


@router.get("/v1/probes")
def list_probes(
    ctx: Ctx,
    session: DbSession,
    _viewer: Viewer,
    model: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return {"items": svc.list_probes(session, now=ctx.clock(), model=model, limit=limit)}


@router.get("/v1/probes/{probe_id}")
def get_probe(probe_id: ProbeIdPath, ctx: Ctx, session: DbSession, _viewer: Viewer) -> dict[str, Any]:
    return svc.get_probe(session, probe_id, now=ctx.clock())


@router.post("/v1/device/probes/{probe_id}/results")
async def device_probe_results(probe_id: ProbeIdPath, request: Request, ctx: Ctx) -> dict[str, Any]:
    def accept(session: Session, device: DeviceRow, body: bytes) -> dict[str, Any]:
        data = parse_json_bounded(body, max_bytes=MAX_PROBE_RESULTS_BYTES, what="probe results")
        return svc.accept_results(session, device, probe_id, data, now=ctx.clock())

    result: dict[str, Any] = await signed_device_call(
        request, ctx, max_body_bytes=MAX_PROBE_RESULTS_BYTES, then=accept
    )
    return result
