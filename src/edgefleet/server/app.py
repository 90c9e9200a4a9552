"""The ASGI application factory."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from edgefleet import __version__
from edgefleet.durable import private_dir
from edgefleet.server import dashboard
from edgefleet.server.api import (
    agent_config,
    alerts,
    artifacts,
    audit,
    blobs,
    classes,
    device_groups,
    devices,
    health,
    hints,
    models,
    pins,
    probes,
    rollouts,
    telemetry,
    tokens,
    tuf,
)
from edgefleet.server.api.body_limit import BodyLimitMiddleware
from edgefleet.server.api.contract import BodyLimits, install_contract
from edgefleet.server.api.dependencies import ServerContext
from edgefleet.server.api.errors import install_error_handlers
from edgefleet.server.blobs import BlobStore, FsBlobStore
from edgefleet.server.hint_broker import HintRuntime, send_hints
from edgefleet.server.services.alerts.dispatcher import HttpxSender, WebhookSender, dispatch_due
from edgefleet.server.services.alerts.rules import RetryPolicy
from edgefleet.server.services.alerts.scan import ScanPolicy, scan_alerts
from edgefleet.server.services.devices import NONCE_PRUNE_BATCH_ROWS, StatusThresholds, prune_nonces
from edgefleet.server.services.last_seen import LastSeenBuffer
from edgefleet.server.services.rollouts import engine as rollout_engine
from edgefleet.server.services.rollouts.pacing import next_tick_delay
from edgefleet.server.settings import Settings
from edgefleet.server.store import Database, make_engine
from edgefleet.server.store.migrate import upgrade_to_head
from edgefleet.server.tuf_runtime import TufRuntime

__all__ = [
    "ROUTERS",
    "create_app",
    "deliver_alerts",
    "drive_rollouts",
    "keep_poll_state",
    "keep_tuf_fresh",
    "prune_device_nonces",
    "prune_nonces_once",
    "scan_for_alerts",
    "utc_now",
]

ROUTERS: list[APIRouter] = [
    devices.router,
    telemetry.router,
    health.router,
    classes.router,
    models.router,
    blobs.router,
    artifacts.router,
    tokens.router,
    audit.router,
    pins.router,
    device_groups.router,
    hints.router,
    agent_config.router,
    tuf.router,
    rollouts.router,
    probes.router,
    alerts.router,
    dashboard.router,
]
"""Every router the app serves. Adding a resource is one line here plus its module in ``api/``. A request
is matched against the routes in this order, one by one: the device channel's (polls, reports, telemetry:
nearly all requests of a fleet) come first. No two routes take the same method and path, so the order
decides nothing else (``tests/server/test_api_contract.py``)."""


TUF_REFRESH_INTERVAL_S = 300.0
NONCE_PRUNE_INTERVAL_S = 60.0
NONCE_PRUNE_MAX_BATCHES = 50
"""At most this many batches (of ``NONCE_PRUNE_BATCH_ROWS``) per round: 250,000 nonces a minute."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def drive_rollouts(
    context: ServerContext, thresholds: StatusThresholds, seen: LastSeenBuffer | None = None
) -> None:
    """Evaluate every active rollout each ``rollout_tick_s``, for as long as the app runs (this process's
    last-seen times are written first, so the engine judges who is online on the freshest ones it has).
    A rollout another replica evaluated less than a tick ago is skipped, and after a long tick the next one
    waits longer, so that ticks take at most ``rollout_max_busy_share`` of the time
    (``services.rollouts.pacing``)."""
    log = logging.getLogger("edgefleet.server.services.rollouts")
    settings = context.settings

    def once() -> None:
        if seen is not None:
            seen.flush(context.db)
        with context.db.session() as session:
            rollout_engine.tick(
                session, now=context.clock(), thresholds=thresholds, min_interval_s=settings.rollout_tick_s
            )

    while True:
        started = time.monotonic()
        try:
            await run_in_threadpool(once)
        except Exception:  # keep serving; the next tick retries
            log.exception("event=rollout_tick_failed")
        took = time.monotonic() - started
        await asyncio.sleep(next_tick_delay(settings.rollout_tick_s, took, settings.rollout_max_busy_share))


async def deliver_alerts(context: ServerContext, sender: WebhookSender) -> None:
    """Send due webhook deliveries every ``alert_dispatch_s``, outside any request, for as long as the app
    runs (every replica may: deliveries are claimed with a lease)."""
    log = logging.getLogger("edgefleet.server.alerts")
    policy = RetryPolicy(max_attempts=context.settings.alert_max_attempts)

    def once() -> None:
        with context.db.session() as session:
            dispatch_due(session, now=context.clock(), sender=sender, policy=policy, clock=context.clock)

    while True:
        try:
            await run_in_threadpool(once)
        except Exception:  # keep serving; the next round retries
            log.exception("event=alert_dispatch_failed")
        await asyncio.sleep(context.settings.alert_dispatch_s)


async def scan_for_alerts(context: ServerContext) -> None:
    """Look for silent devices and stalled rollouts every ``alert_scan_s``."""
    log = logging.getLogger("edgefleet.server.alerts")
    settings = context.settings
    policy = ScanPolicy(
        device_silent_s=settings.alert_device_silent_s or settings.device_offline_after_s,
        rollout_stall_s=settings.alert_rollout_stall_s,
    )

    def once() -> None:
        with context.db.session() as session:
            scan_alerts(session, now=context.clock(), policy=policy)

    while True:
        try:
            await run_in_threadpool(once)
        except Exception:  # keep serving; the next round retries
            log.exception("event=alert_scan_failed")
        await asyncio.sleep(settings.alert_scan_s)


async def keep_poll_state(context: ServerContext, runtime: devices.DeviceRuntime) -> None:
    """Read the director epoch every ``poll_cache_refresh_s`` (the poll cache trusts its entries only while
    that read is fresh) and write the noted last-seen times back every ``last_seen_flush_s``."""
    log = logging.getLogger("edgefleet.server.devices")
    started_s = time.monotonic()
    try:  # a starting replica answers its fleet's first polls from memory, not one row read each
        warmed = await run_in_threadpool(
            runtime.cache.warm, context.db, ttl=runtime.desired_ttl, now=context.clock()
        )
        log.info("event=poll_cache_warmed devices=%d seconds=%.1f", warmed, time.monotonic() - started_s)
    except Exception:  # keep serving: the first polls fill the cache from the database instead
        log.exception("event=poll_cache_warm_failed")
    next_flush_s = 0.0
    while True:
        try:
            await run_in_threadpool(runtime.cache.refresh, context.db)
        except Exception:  # keep serving: without a fresh epoch every poll takes the database path
            log.exception("event=poll_cache_refresh_failed")
        if time.monotonic() >= next_flush_s:
            next_flush_s = time.monotonic() + runtime.seen.flush_s
            try:
                await run_in_threadpool(runtime.seen.flush, context.db)
            except Exception:  # the times stay pending for the next round
                log.exception("event=last_seen_flush_failed")
        await asyncio.sleep(min(runtime.cache.refresh_s, runtime.seen.flush_s))


async def keep_tuf_fresh(tuf: TufRuntime, clock: Callable[[], datetime]) -> None:
    """Re-sign timestamp/snapshot before they expire, for as long as the app runs."""
    while True:
        try:
            await run_in_threadpool(tuf.refresh, clock())
        except Exception:  # keep serving; the next round retries
            logging.getLogger("edgefleet.server.tuf").exception("event=tuf_refresh_failed")
        await asyncio.sleep(TUF_REFRESH_INTERVAL_S)


def prune_nonces_once(
    context: ServerContext,
    *,
    max_rows: int = NONCE_PRUNE_BATCH_ROWS,
    max_batches: int = NONCE_PRUNE_MAX_BATCHES,
) -> int:
    """Forget device nonces past the replay window, in bounded batches (one short transaction each)."""
    total = 0
    for _ in range(max_batches):
        with context.db.session() as session:
            pruned = prune_nonces(session, now=context.clock(), max_rows=max_rows)
        total += pruned
        if pruned < max_rows:
            break
    return total


async def prune_device_nonces(context: ServerContext, interval_s: float = NONCE_PRUNE_INTERVAL_S) -> None:
    """Keep ``device_nonces`` to the replay window, for as long as the app runs (every replica does it;
    racing deletes of the same rows are harmless)."""
    log = logging.getLogger("edgefleet.server.devices")
    while True:
        try:
            pruned = await run_in_threadpool(prune_nonces_once, context)
            if pruned:
                log.info("event=nonces_pruned rows=%d", pruned)
        except Exception:  # keep serving; the next round retries
            log.exception("event=nonce_prune_failed")
        await asyncio.sleep(interval_s)


def create_app(
    settings: Settings,
    *,
    blob_store: BlobStore | None = None,
    clock: Callable[[], datetime] = utc_now,
    migrate: bool = True,
) -> FastAPI:
    """Build the app: validates settings, opens the database and applies pending migrations now.

    The engine is disposed when the app's lifespan ends (or by calling ``app.state.context.db.dispose()``).
    """
    private_dir(settings.data_dir)  # keys, the SQLite database, blobs: owner-only when created here
    settings = settings.with_dev_admin_token().validate()
    db = Database(
        make_engine(
            settings.resolved_database_url,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            pool_size=settings.db_pool_size,
        )
    )
    try:
        if migrate:
            upgrade_to_head(db.engine)
        blobs = blob_store if blob_store is not None else FsBlobStore(settings.resolved_blob_dir)
        blobs.sweep_temp(now_s=time.time(), older_than_s=settings.temp_file_max_age_s)
    except BaseException:
        db.dispose()
        raise
    context = ServerContext(settings=settings, db=db, blobs=blobs, clock=clock)

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        runtime: devices.DeviceRuntime = app_.state.devices
        refresher = asyncio.create_task(keep_tuf_fresh(app_.state.tuf, clock))
        engine = asyncio.create_task(drive_rollouts(context, runtime.thresholds, runtime.seen))
        pruner = asyncio.create_task(prune_device_nonces(context))
        sender = HttpxSender()
        dispatcher = asyncio.create_task(deliver_alerts(context, sender))
        scanner = asyncio.create_task(scan_for_alerts(context))
        poll_state = asyncio.create_task(keep_poll_state(context, runtime))
        hint_runtime: HintRuntime | None = app_.state.hints
        hinter = None
        if hint_runtime is not None:
            hint_runtime.start()
            hinter = asyncio.create_task(
                send_hints(hint_runtime, db, app_.state.tuf.signed_target, time.monotonic)
            )
        yield
        for task in (refresher, engine, pruner, dispatcher, scanner, poll_state, hinter):
            if task is not None:
                task.cancel()
        sender.close()
        try:
            await run_in_threadpool(runtime.seen.flush, context.db)
        except Exception:  # the database went first: the next contact writes them again
            logging.getLogger("edgefleet.server.devices").exception("event=last_seen_flush_failed")
        await runtime.replay.close()
        if hint_runtime is not None:
            hint_runtime.close()
        db.dispose()

    app = FastAPI(
        title="edgefleet control plane",
        version=__version__,
        description="Hardware classes, models, artifacts and operators. See docs/api.md.",
        lifespan=lifespan,
    )
    app.state.context = context
    app.state.tuf = TufRuntime.from_settings(settings, now=clock())  # first: dev mode makes all keys
    app.state.devices = devices.DeviceRuntime.from_settings(settings, db)
    app.state.hints = HintRuntime.from_settings(settings)  # None without a broker: no hints, polls only
    install_error_handlers(app)
    limits = BodyLimits(settings.max_json_bytes, by_prefix=(("/v1/blobs/", settings.max_blob_bytes),))
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=limits.max_json_bytes,
        streaming_prefixes=tuple(prefix for prefix, _ in limits.by_prefix),  # they enforce their own
    )
    for router in ROUTERS:
        app.include_router(router)
    install_contract(
        app,
        [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema],
        limits,
    )
    return app
