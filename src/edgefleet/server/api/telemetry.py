"""Telemetry: the devices' signed upload, fleet health and per-device views, and a Prometheus endpoint."""

from __future__ import annotations

import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy.orm import Session

from edgefleet.protocol.canonical import parse_json_bounded
from edgefleet.protocol.errors import InvalidDocumentError, PayloadTooLargeError
from edgefleet.protocol.telemetry import MAX_BATCH_UNCOMPRESSED_BYTES, TelemetryBatch
from edgefleet.server.api.dependencies import Ctx, DbSession, ServerContext, Viewer
from edgefleet.server.api.devices import DEVICE_ID_PATTERN, signed_device_call
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.api.prometheus import prometheus_text
from edgefleet.server.services import telemetry as svc
from edgefleet.server.services.device_telemetry import device_telemetry
from edgefleet.server.services.devices import StatusThresholds
from edgefleet.server.services.fleet_health import fleet_health
from edgefleet.server.services.health_history import health_history, resolve_range
from edgefleet.server.store.devices import DeviceRow

__all__ = ["MAX_COMPRESSED_BYTES", "decompress_bounded", "router"]

router = APIRouter(tags=["telemetry"], route_class=StrictJsonRoute)
MAX_COMPRESSED_BYTES = 1024**2
PRUNE_EVERY_S = 3600.0
MAX_SINCE = timedelta(days=400)

_prune_lock = threading.Lock()
_last_prune_s: dict[int, float] = {}


def _freshness(request: Request) -> svc.Freshness:
    value = getattr(request.app.state, "telemetry", None)
    return value if isinstance(value, svc.Freshness) else svc.Freshness()


def _thresholds(request: Request) -> StatusThresholds:
    runtime = getattr(request.app.state, "devices", None)
    return getattr(runtime, "thresholds", None) or StatusThresholds()


def decompress_bounded(body: bytes, encoding: str, *, max_bytes: int) -> bytes:
    """gzip or identity, never more than ``max_bytes`` out (a small bomb cannot grow past the bound)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        data = body
    elif encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise InvalidDocumentError("body is not valid gzip", code="malformed_gzip", got=str(exc)) from exc
        if len(data) <= max_bytes and not inflater.eof:
            raise InvalidDocumentError("gzip body is truncated", code="malformed_gzip")
    else:
        raise InvalidDocumentError(
            "unsupported content-encoding",
            code="unsupported_encoding",
            expected="gzip|identity",
            got=encoding[:32],
        )
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            "telemetry batch too large once decompressed",
            code="document_too_large",
            expected=f"<= {max_bytes} bytes",
            got=f"> {max_bytes}",
        )
    return data


@router.post("/v1/device/telemetry")
async def device_telemetry_upload(request: Request, ctx: Ctx) -> dict[str, Any]:
    freshness = _freshness(request)
    encoding = request.headers.get("content-encoding", "")

    def ingest(session: Session, device: DeviceRow, body: bytes) -> dict[str, Any]:
        raw = decompress_bounded(body, encoding, max_bytes=MAX_BATCH_UNCOMPRESSED_BYTES)
        data = parse_json_bounded(raw, max_bytes=MAX_BATCH_UNCOMPRESSED_BYTES, what="telemetry batch")
        batch = TelemetryBatch.parse(data)
        now = ctx.clock()
        result = svc.ingest_batch(session, device, batch, now=now, freshness=freshness)
        _maybe_prune(ctx, session, now=now, freshness=freshness)
        return result.to_wire()

    answer: dict[str, Any] = await signed_device_call(
        request, ctx, max_body_bytes=MAX_COMPRESSED_BYTES, then=ingest
    )
    return answer


def _maybe_prune(ctx: ServerContext, session: Session, *, now: datetime, freshness: svc.Freshness) -> None:
    """Retention runs in the ingest path at most once an hour per process (cheap, indexed deletes)."""
    key = id(ctx)
    now_s = time.monotonic()
    with _prune_lock:
        if now_s - _last_prune_s.get(key, -PRUNE_EVERY_S) < PRUNE_EVERY_S:
            return
        _last_prune_s[key] = now_s
    svc.prune_telemetry(session, now=now, freshness=freshness)


def _since(ctx: ServerContext, since: datetime | None, default: timedelta) -> tuple[datetime, datetime]:
    now = ctx.clock()
    if since is None:
        return now, now - default
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    if since > now or now - since > MAX_SINCE:
        raise InvalidDocumentError(
            "since must be in the past, within 400 days", code="invalid_since", got=since.isoformat()
        )
    return now, since


def _labels(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidDocumentError("label filters are key=value", code="invalid_labels", got=item[:80])
        out[key] = value
    return out


@router.get("/v1/fleet/health")
def get_fleet_health(
    request: Request,
    ctx: Ctx,
    session: DbSession,
    _: Viewer,
    hardware_class: Annotated[str | None, Query(max_length=63)] = None,
    model_version: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query()] = None,
    label: Annotated[list[str] | None, Query(max_length=16)] = None,
) -> dict[str, Any]:
    now, start = _since(ctx, since, timedelta(hours=1))
    return fleet_health(
        session,
        now=now,
        since=start,
        hardware_class=hardware_class,
        model_version=model_version,
        labels=_labels(label),
        freshness=_freshness(request),
        thresholds=_thresholds(request),
    )


@router.get("/v1/fleet/health/history")
def get_health_history(
    request: Request,
    ctx: Ctx,
    session: DbSession,
    _: Viewer,
    hardware_class: Annotated[str, Query(max_length=63)],
    model_version: Annotated[str | None, Query(max_length=64)] = None,
    site: Annotated[str | None, Query(max_length=128)] = None,
    range: Annotated[str | None, Query(max_length=16)] = None,
    start: Annotated[datetime | None, Query()] = None,
    end: Annotated[datetime | None, Query()] = None,
) -> dict[str, Any]:
    """Model health over time (the series the dashboard's history page draws): see docs/dashboard.md."""
    now = ctx.clock()
    retention_s = _freshness(request).retention_s
    return health_history(
        session,
        hardware_class=hardware_class,
        model_version=model_version,
        site=site,
        history_range=resolve_range(range, start, end, now=now, retention_s=retention_s),
        retention_s=retention_s,
        now=now,
    )


@router.get("/v1/devices/{device_id}/telemetry")
def get_device_telemetry(
    device_id: Annotated[str, Path(pattern=DEVICE_ID_PATTERN)],
    request: Request,
    ctx: Ctx,
    session: DbSession,
    _: Viewer,
    since: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    now, start = _since(ctx, since, timedelta(hours=24))
    return device_telemetry(
        session,
        device_id,
        now=now,
        since=start,
        limit=limit,
        freshness=_freshness(request),
        thresholds=_thresholds(request),
    )


@router.get("/metrics")
def metrics(request: Request, ctx: Ctx, session: DbSession, _: Viewer) -> Response:
    """Fleet aggregates over the last 5 minutes in Prometheus text format (scrape with a viewer token)."""
    now = ctx.clock()
    health = fleet_health(
        session,
        now=now,
        since=now - timedelta(minutes=5),
        freshness=_freshness(request),
        thresholds=_thresholds(request),
    )
    return Response(prometheus_text(health), media_type="text/plain; version=0.0.4; charset=utf-8")
