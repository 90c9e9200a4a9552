"""Devices: enrollment tokens, enrollment, the signed device channel, and the operators' device views.

Device endpoints (``/v1/device/...``) authenticate by request signature only; the operator endpoints use
bearer tokens with roles like the rest of the API.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from edgefleet.protocol.desired_state import MAX_REPORT_BYTES
from edgefleet.protocol.document import NAME_PATTERN
from edgefleet.protocol.errors import (
    AuthenticationError,
    EdgefleetError,
    InvalidDocumentError,
    PayloadTooLargeError,
)
from edgefleet.protocol.request_signing import parse_signed_headers, verify_request_signature
from edgefleet.protocol.selector import MAX_SELECTOR_CHARS, parse_selector
from edgefleet.server.api.admission import Admission
from edgefleet.server.api.dependencies import (
    Ctx,
    DbSession,
    Operator,
    PageQuery,
    ServerContext,
    Viewer,
    get_context,
)
from edgefleet.server.api.id_paths import register_id_path
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.director_key import DIRECTOR_KEY_FILE, load_director_key
from edgefleet.server.services import classes as classes_svc
from edgefleet.server.services import desired_state as desired_svc
from edgefleet.server.services import device_auth as auth_svc
from edgefleet.server.services import devices as svc
from edgefleet.server.services import enrollment as enroll_svc
from edgefleet.server.services import pins_rollback as rollback_svc
from edgefleet.server.services.alerts import outbox as alerts_svc
from edgefleet.server.services.director_view import DirectorViews
from edgefleet.server.services.inventory import parse_inventory_filter
from edgefleet.server.services.last_seen import LastSeenBuffer
from edgefleet.server.services.poll_cache import CachedDevice, PollCache
from edgefleet.server.services.replay import (
    DatabaseReplayGuard,
    MemoryReplayGuard,
    RedisReplayGuard,
    ReplayGuard,
)
from edgefleet.server.services.request_bodies import EnrollmentTokenCreate
from edgefleet.server.settings import Settings
from edgefleet.server.store import Database
from edgefleet.trust.director import load_public_key_pem, public_key_pem

__all__ = ["DeviceIdPath", "DeviceRuntime", "router", "signed_device_call"]

router = APIRouter(tags=["devices"], route_class=StrictJsonRoute)
DEVICE_ID_PATTERN = r"^dev_[0-9a-f]{20}$"
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]

# ``GET /v1/devices/relabel`` is a 405 naming ``POST``, not a GET of a device called ``relabel``
register_id_path(
    "device_id", prefix="/v1/devices/", regex=DEVICE_ID_PATTERN.strip("^$"), code="invalid_device_id",
    expected="dev_<20 hex>",
)  # fmt: skip


@dataclass
class DeviceRuntime:
    """Per-process device machinery: the director key, the enrollment limiter, thresholds, and the hot
    per-poll state (poll cache, replay guard, last-seen buffer, admission)."""

    director_key: Ed25519PrivateKey
    desired_ttl: timedelta = timedelta(days=7)
    thresholds: svc.StatusThresholds = field(default_factory=svc.StatusThresholds)
    limiter: enroll_svc.EnrollmentLimiter = field(default_factory=enroll_svc.EnrollmentLimiter)
    cache: PollCache = field(default_factory=PollCache)
    replay: ReplayGuard = field(default_factory=MemoryReplayGuard)
    seen: LastSeenBuffer = field(default_factory=LastSeenBuffer)
    admission: Admission = field(default_factory=lambda: Admission(32))
    views: DirectorViews = field(default_factory=DirectorViews)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database | None = None) -> DeviceRuntime:
        path = settings.data_dir / "keys" / DIRECTOR_KEY_FILE
        store = settings.resolved_replay_store
        replay: ReplayGuard
        if store == "redis":
            assert settings.redis_url is not None  # Settings.validate refuses redis without a URL
            replay = RedisReplayGuard(settings.redis_url)
        elif store == "database" and db is not None:
            replay = DatabaseReplayGuard(db)
        else:
            replay = MemoryReplayGuard()
        cache = PollCache(refresh_s=settings.poll_cache_refresh_s)
        if db is not None:
            cache.watch(db)
        return cls(
            director_key=load_director_key(path, create=settings.dev),
            thresholds=svc.StatusThresholds(
                stale_after_s=settings.device_stale_after_s, offline_after_s=settings.device_offline_after_s
            ),
            cache=cache,
            replay=replay,
            seen=LastSeenBuffer(
                resolution_s=settings.effective_last_seen_resolution_s, flush_s=settings.last_seen_flush_s
            ),
            admission=Admission(settings.device_db_concurrency, retry_after_s=settings.busy_retry_after_s),
        )

    @property
    def director_public_key_pem(self) -> str:
        return public_key_pem(self.director_key.public_key())


def _runtime(request: Request) -> DeviceRuntime:
    runtime: DeviceRuntime = request.app.state.devices
    return runtime


# --- enrollment -------------------------------------------------------------------------------------------


@router.post("/v1/enrollment-tokens", status_code=201)
def create_enrollment_token(
    body: EnrollmentTokenCreate, ctx: Ctx, session: DbSession, actor: Operator
) -> dict[str, Any]:
    created = enroll_svc.create_enrollment_token(
        session,
        hardware_class=body.hardware_class,
        labels=body.labels,
        serial=body.serial,
        ttl=timedelta(seconds=body.ttl_s),
        uses=body.uses,
        actor=actor.name,
        now=ctx.clock(),
    )
    row = created.row
    return {
        "id": row.id,
        "token": created.secret,
        "hardware_class": row.hardware_class,
        "labels": row.labels,
        "serial": row.serial,
        "uses": row.uses_total,
        "expires_at": row.expires_at.isoformat(),
    }


class EnrollBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=128)
    public_key_pem: str = Field(max_length=512)
    serial: str | None = Field(default=None, max_length=128)
    agent_version: str = Field(default="", max_length=64)
    hardware_class: str | None = Field(default=None, max_length=63)


@router.post("/v1/enroll", status_code=201)
def enroll(body: EnrollBody, request: Request, ctx: Ctx, session: DbSession) -> dict[str, Any]:
    runtime = _runtime(request)
    client = request.client.host if request.client else "unknown"
    now_s = time.monotonic()
    runtime.limiter.check(client, now_s)
    try:
        device = enroll_svc.enroll_device(
            session,
            token=body.token,
            public_key_pem=body.public_key_pem,
            serial=body.serial,
            agent_version=body.agent_version,
            now=ctx.clock(),
            hardware_class=body.hardware_class,
        )
    except (AuthenticationError, InvalidDocumentError):
        runtime.limiter.failed(client, now_s)
        raise
    return {
        "device_id": device.id,
        "hardware_class": device.hardware_class,
        "labels": device.labels,
        "director_public_key_pem": runtime.director_public_key_pem,
        "tuf_root": request.app.state.tuf.root_document(),
        "hardware_class_document": classes_svc.class_document(session, device.hardware_class),
        "server_time": ctx.clock().isoformat(),
        "content_base_url": ctx.settings.content_base_url,
    }


# --- the signed device channel ------------------------------------------------------------------------------


async def signed_device_call(
    request: Request,
    ctx: ServerContext,
    *,
    max_body_bytes: int,
    then: Any = None,
    then_authenticating: Any = None,
) -> Any:
    """Authenticate the signed request, then run ``then(session, device, body)`` in the same session,
    off the event loop, holding an admission slot (429 ``control_plane_busy`` when none is free); or
    ``then_authenticating(session, device_id, body, authenticate)``, which calls ``authenticate(row)`` on
    the row its own transaction reads before anything else (one transaction authenticates and answers)."""
    body = await request.body()
    if len(body) > max_body_bytes:
        raise PayloadTooLargeError(
            "request body too large", expected=f"<= {max_body_bytes} bytes", got=len(body)
        )
    claims = parse_signed_headers(request.headers)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    runtime = _runtime(request)
    now = ctx.clock()

    def admit(device: auth_svc.DeviceIdentity) -> None:
        if not runtime.replay.first_use_blocking(device.id, claims.nonce, now=now):
            raise AuthenticationError("request replayed", code="replayed_request")
        runtime.seen.learn(device.id, device.last_seen_at)
        runtime.seen.note(device.id, now)

    def authenticate(row: auth_svc.AnyDevice | None) -> auth_svc.AnyDevice:
        device = auth_svc.verify_device(row, claims, method=request.method, path=path, body=body, now=now)
        admit(device)
        return device

    def call() -> Any:
        with ctx.db.session_on_one_connection() as session:  # authenticate, then answer: one checkout
            try:
                if then_authenticating is not None:
                    return then_authenticating(session, claims.device_id[:32], body, authenticate)
                device = auth_svc.authenticate_device(
                    session, claims, method=request.method, path=path, body=body, now=now
                )
                admit(device)
                return then(session, device, body)
            except EdgefleetError as exc:
                if isinstance(exc, AuthenticationError):
                    runtime.cache.forget(claims.device_id[:32])
                alerts_svc.record_security_refusal(
                    session, exc.code, device_id=claims.device_id, path=request.url.path, now=now
                )
                raise

    with runtime.admission.slot():
        return await run_in_threadpool(call)


async def _answer_304_from_cache(
    request: Request, runtime: DeviceRuntime, held: int, now: datetime
) -> Response | None:
    """The nearly free 304 (``services.poll_cache``): signature and replay checked, no database touched.
    ``None``: the database path must answer."""
    claims = parse_signed_headers(request.headers)
    device_id = claims.device_id[:32]
    entry = runtime.cache.answers_304(device_id, held, now)
    if entry is None or await request.body():
        return None
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        verify_request_signature(
            entry.public_key, claims, method=request.method, path=path, body=b"", now_s=now.timestamp()
        )
    except AuthenticationError:
        return None  # the database path refuses it again and records the refusal (alerts)
    if not await runtime.replay.first_use(device_id, claims.nonce, now=now):
        return None  # a replay: likewise
    runtime.seen.note(device_id, now)
    return Response(
        status_code=304, headers={"etag": f'"{entry.generation}"', "cache-control": "private, no-cache"}
    )


@router.get("/v1/device/desired-state")
async def device_desired_state(request: Request) -> Response:
    ctx = get_context(request)  # not a dependency: the cached 304 skips dependency solving
    runtime = _runtime(request)
    held = _held_generation(request.headers.get("if-none-match"))
    if held is not None:
        cached = await _answer_304_from_cache(request, runtime, held, ctx.clock())
        if cached is not None:
            return cached
    public_keys: dict[str, str] = {}

    def resolve(
        session: Session, device_id: str, _body: bytes, authenticate: Any
    ) -> desired_svc.DesiredAnswer:
        def authenticated(row: auth_svc.AnyDevice | None) -> auth_svc.AnyDevice:
            device: auth_svc.AnyDevice = authenticate(row)
            public_keys[device.id] = device.public_key_pem
            return device

        return desired_svc.resolve_desired_state(
            session,
            device_id,
            key=runtime.director_key,
            now=ctx.clock(),
            ttl=runtime.desired_ttl,
            held_generation=held,
            signed_target=request.app.state.tuf.signed_target,
            views=runtime.views,
            authenticate=authenticated,
        )

    answer = await signed_device_call(request, ctx, max_body_bytes=0, then_authenticating=resolve)
    for device_id, pem in public_keys.items():
        if answer.reissue_at is not None:
            runtime.cache.put(
                device_id,
                CachedDevice(load_public_key_pem(pem), answer.generation, answer.epoch, answer.reissue_at),
            )
    headers = {"etag": f'"{answer.generation}"', "cache-control": "private, no-cache"}
    if answer.envelope is None:
        return Response(status_code=304, headers=headers)
    return JSONResponse(answer.envelope, headers=headers)


def _held_generation(if_none_match: str | None) -> int | None:
    """The generation a device says it holds: ``If-None-Match: "<generation>"``."""
    if not if_none_match:
        return None
    text = if_none_match.strip().removeprefix("W/").strip('"')
    return int(text) if text.isdigit() and len(text) < 19 else None


@router.post("/v1/device/report")
async def device_report(request: Request) -> dict[str, Any]:
    ctx = get_context(request)  # not a dependency: a device's report skips dependency solving

    def accept(session: Session, device_id: str, body: bytes, authenticate: Any) -> bool:
        return svc.accept_report(session, device_id, body, now=ctx.clock(), authenticate=authenticate)

    call = signed_device_call(request, ctx, max_body_bytes=MAX_REPORT_BYTES, then_authenticating=accept)
    return {"accepted": await call}


# --- operators' views and actions ---------------------------------------------------------------------------


def _parse_label_filters(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidDocumentError("label filters are key=value", code="invalid_labels", got=item)
        out[key] = value
    return out


@router.get("/v1/devices")
def list_devices(
    request: Request,
    ctx: Ctx,
    session: DbSession,
    page: PageQuery,
    _: Viewer,
    hardware_class: Annotated[str | None, Query(max_length=63)] = None,
    label: Annotated[list[str] | None, Query(max_length=16)] = None,
    status: Annotated[svc.DeviceStatus | None, Query()] = None,
    selector: Annotated[str | None, Query(max_length=MAX_SELECTOR_CHARS)] = None,
    include_decommissioned: Annotated[bool, Query()] = False,
    os: Annotated[str | None, Query(max_length=128)] = None,
    arch: Annotated[str | None, Query(max_length=128)] = None,
    agent_version: Annotated[str | None, Query(max_length=128)] = None,
    runtime: Annotated[str | None, Query(max_length=128, description="name or name=version")] = None,
    provider: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """Decommissioned devices are left out unless ``include_decommissioned=true``."""
    thresholds = _runtime(request).thresholds
    now = ctx.clock()
    result = svc.list_devices(
        session,
        limit=page.limit,
        offset=page.offset,
        hardware_class=hardware_class,
        labels=_parse_label_filters(label or []),
        selector=parse_selector(selector) if selector is not None else None,
        inventory=parse_inventory_filter(
            os=os, arch=arch, agent_version=agent_version, runtime=runtime, provider=provider
        ),
        status=status,
        include_decommissioned=include_decommissioned,
        now=now,
        thresholds=thresholds,
    )
    return result.to_wire([svc.device_to_wire(r, now=now, thresholds=thresholds) for r in result.items])


@router.get("/v1/devices/{device_id:device_id}")
def get_device(
    device_id: DeviceIdPath, request: Request, ctx: Ctx, session: DbSession, _: Viewer
) -> dict[str, Any]:
    row = svc.get_device(session, device_id)
    return svc.device_to_wire(row, now=ctx.clock(), thresholds=_runtime(request).thresholds)


@router.get("/v1/devices/{device_id}/desired-state")
def get_device_desired_state(
    device_id: DeviceIdPath, request: Request, ctx: Ctx, session: DbSession, _: Viewer
) -> dict[str, Any]:
    runtime = _runtime(request)
    answer = desired_svc.resolve_desired_state(
        session,
        device_id,
        key=runtime.director_key,
        now=ctx.clock(),
        ttl=runtime.desired_ttl,
        signed_target=request.app.state.tuf.signed_target,
    )
    assert answer.envelope is not None  # asked without a held generation, the answer carries the document
    return answer.envelope


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


@router.post("/v1/devices/{device_id}/revoke")
def revoke_device(
    device_id: DeviceIdPath, body: RevokeBody, request: Request, ctx: Ctx, session: DbSession, actor: Operator
) -> dict[str, Any]:
    row = svc.revoke_device(session, device_id, reason=body.reason, actor=actor.name, now=ctx.clock())
    _runtime(request).cache.forget(row.id)  # at once here; other replicas at their next epoch read
    return svc.device_to_wire(row, now=ctx.clock(), thresholds=_runtime(request).thresholds)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot: str = Field(default="default", pattern=NAME_PATTERN, max_length=63)


@router.post("/v1/devices/{device_id}/rollback")
def rollback_device(
    device_id: DeviceIdPath, ctx: Ctx, session: DbSession, actor: Operator, body: RollbackBody | None = None
) -> dict[str, Any]:
    """Pin the device's slot to the artifact its last report names as ``previous`` (a device pin)."""
    slot = (body or RollbackBody()).slot
    done = rollback_svc.rollback_device(session, device_id, slot=slot, actor=actor.name, now=ctx.clock())
    return done.to_wire()
