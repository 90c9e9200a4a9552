"""The control plane's configuration: one frozen object, built once at the entry point."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.durable import atomic_write_bytes
from edgefleet.server.errors import ConfigurationError

__all__ = ["ADMIN_TOKEN_FILE", "MIN_ADMIN_TOKEN_CHARS", "Settings", "token_weakness", "write_private_file"]

MIN_ADMIN_TOKEN_CHARS = 32
ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name
_ENV_PREFIX = "EDGEFLEET_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything the server needs; nothing is read from the environment after this is built.

    ``database_url`` and ``blob_dir`` default to places under ``data_dir``.
    """

    data_dir: Path = Path(".edgefleet")
    database_url: str | None = None
    blob_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8700
    dev: bool = False
    admin_token: str | None = None
    max_blob_bytes: int = 4 * 1024**3
    max_json_bytes: int = 2 * 1024**2
    sqlite_busy_timeout_ms: int = 10_000
    db_pool_size: int = 5
    temp_file_max_age_s: float = 24 * 3600.0
    log_level: str = "info"
    rollout_tick_s: float = 1.0
    rollout_max_busy_share: float = 0.2
    """The share of time each replica's rollout engine may spend in ticks: after a tick of ``d`` seconds the
    next waits ``max(rollout_tick_s, d * (1 / share - 1))`` (``services.rollouts.pacing``)."""
    device_stale_after_s: float = 120.0
    """A device silent this long is ``stale``: no longer ``online``, so a new rollout places it last."""
    device_offline_after_s: float = 900.0
    """A device silent this long is ``offline``. Set both to a few poll intervals of your agents."""
    alert_dispatch_s: float = 1.0
    """How often the webhook dispatcher looks for due deliveries."""
    alert_scan_s: float = 30.0
    """How often silent devices and stalled rollouts are looked for."""
    alert_device_silent_s: float | None = None
    """A device silent this long raises ``device.offline`` (default: ``device_offline_after_s``)."""
    alert_rollout_stall_s: float = 6 * 3600.0
    """A running rollout this long in one stage raises ``rollout.stalled``."""
    alert_max_attempts: int = 8
    """Delivery attempts before a webhook delivery is given up (backoff 5 s doubling, capped at 10 min)."""
    replay_store: str = "auto"
    """Where request nonces live (``services.replay``): ``memory`` (one server process), ``redis`` (any
    number of replicas, needs ``redis_url``), ``database`` (any number of replicas, one write per request)
    or ``auto``: ``memory`` on SQLite, ``redis`` on PostgreSQL with ``redis_url``, else ``database``."""
    redis_url: str | None = None
    poll_cache_refresh_s: float = 1.0
    """How often each process reads the director epoch: a change (a pin, a rollout step, a revocation) made
    on another replica reaches this one's answers within this time (``services.poll_cache``)."""
    last_seen_resolution_s: float = 30.0
    """A device's ``last_seen_at`` is written when it moved by at least this much (``services.last_seen``;
    at most a quarter of ``device_stale_after_s`` is used)."""
    last_seen_flush_s: float = 5.0
    """How often the noted times are written back, in one batch."""
    device_db_concurrency: int = 32
    """Device calls that may wait on the database at once; more are refused with 429 and Retry-After."""
    busy_retry_after_s: float = 5.0
    """The shortest Retry-After of a refused device call (each is drawn in [this, twice this])."""
    content_base_url: str | None = None
    """A static host or CDN serving the image repository (``edgefleet tuf export``): given to devices at
    enrollment, so they fetch TUF metadata and targets there instead of from this API's ``/tuf``."""
    mqtt_url: str | None = None
    """The MQTT broker for wake-up hints (``mqtt://user:password@host:1883``, ``mqtts://`` for TLS); unset:
    no hints, devices poll on their interval (docs/server.md, Wake-up hints)."""
    mqtt_device_url: str | None = None
    """The broker URL devices connect to (without credentials); default: ``mqtt_url`` without them."""
    mqtt_topic_prefix: str = "edgefleet/devices"
    """Hints go to ``<prefix>/<device id>/hint``."""
    mqtt_secret: str | None = None
    """Derives each device's broker password; unset: ``<data_dir>/mqtt-secret`` (created once). Replicas
    must share it (set it, or share the data dir)."""
    hint_check_s: float = 1.0
    """How often the hint sender looks for a change of the director epoch (one row read)."""
    hint_min_interval_s: float = 2.0
    """At most one hint per device per this many seconds: a flood of changes is coalesced."""

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'edgefleet.db'}"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"

    @property
    def effective_last_seen_resolution_s(self) -> float:
        """``last_seen_resolution_s``, at most a quarter of ``device_stale_after_s`` (status stays right)."""
        return min(self.last_seen_resolution_s, self.device_stale_after_s / 4)

    @property
    def resolved_replay_store(self) -> str:
        if self.replay_store != "auto":
            return self.replay_store
        if self.database_kind == "sqlite":
            return "memory"
        return "redis" if self.redis_url else "database"

    @property
    def database_kind(self) -> str:
        url = self.resolved_database_url
        return "postgresql" if url.startswith("postgresql") else "sqlite"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``EDGEFLEET_*`` variables; ``overrides`` that are not ``None`` win (CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(_ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _convert(field.name, field.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigurationError("unknown settings", expected="known setting names", got=unknown)
        for name in ("data_dir", "blob_dir"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        return cls(**values)

    def with_dev_admin_token(self) -> Settings:
        """In dev mode without a token: reuse ``{data_dir}/admin-token`` or create it (mode 0600)."""
        if not self.dev or self.admin_token:
            return self
        path = self.data_dir / ADMIN_TOKEN_FILE
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
            if len(token) >= MIN_ADMIN_TOKEN_CHARS:
                return self.replace(admin_token=token)
        token = secrets.token_urlsafe(32)
        write_private_file(path, token + "\n")
        return self.replace(admin_token=token)

    def validate(self) -> Settings:
        """Refuse unusable values always, and insecure ones outside dev mode. Returns ``self``."""
        if not 0 < self.port < 65536:
            raise ConfigurationError("port out of range", expected="1..65535", got=self.port)
        for name in (
            "max_blob_bytes",
            "max_json_bytes",
            "sqlite_busy_timeout_ms",
            "db_pool_size",
            "device_stale_after_s",
            "alert_dispatch_s",
            "alert_scan_s",
            "alert_rollout_stall_s",
            "alert_max_attempts",
            "poll_cache_refresh_s",
            "last_seen_flush_s",
            "device_db_concurrency",
            "busy_retry_after_s",
            "hint_check_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive", expected="> 0", got=getattr(self, name))
        if not 0 < self.rollout_max_busy_share <= 1:
            raise ConfigurationError(
                "rollout_max_busy_share must be a share of the time",
                expected="0 < share <= 1",
                got=self.rollout_max_busy_share,
            )
        if self.alert_device_silent_s is not None and self.alert_device_silent_s <= 0:
            raise ConfigurationError(
                "alert_device_silent_s must be positive", expected="> 0", got=self.alert_device_silent_s
            )
        if self.device_offline_after_s < self.device_stale_after_s:
            raise ConfigurationError(
                "device_offline_after_s is shorter than device_stale_after_s",
                expected=f">= {self.device_stale_after_s}",
                got=self.device_offline_after_s,
            )
        if self.last_seen_resolution_s < 0:
            raise ConfigurationError(
                "last_seen_resolution_s is negative", expected=">= 0", got=self.last_seen_resolution_s
            )
        if self.replay_store not in ("auto", "memory", "redis", "database"):
            raise ConfigurationError(
                "unknown replay_store", expected="auto, memory, redis or database", got=self.replay_store
            )
        if self.resolved_replay_store == "redis" and not self.redis_url:
            raise ConfigurationError("replay_store redis needs redis_url", expected="redis://...", got=None)
        _check_urls(self)
        url = self.resolved_database_url
        if not (url.startswith("sqlite:///") or url.startswith("postgresql")):
            raise ConfigurationError(
                "unsupported database_url",
                expected="sqlite:///PATH or postgresql+psycopg://...",
                got=_redact(url),
            )
        if self.dev:
            if not _is_loopback(self.host):
                raise ConfigurationError(
                    "dev mode binds to loopback only; to listen on a network set an admin token, drop --dev",
                    expected="127.0.0.1, ::1 or localhost",
                    got=self.host,
                )
            return self
        if not self.admin_token:
            raise ConfigurationError(
                "an admin token is required outside dev mode (set EDGEFLEET_ADMIN_TOKEN or use --dev)",
                expected=f"admin_token of >= {MIN_ADMIN_TOKEN_CHARS} characters",
                got="empty",
            )
        if len(self.admin_token) < MIN_ADMIN_TOKEN_CHARS:
            raise ConfigurationError(
                "admin token too short",
                expected=f">= {MIN_ADMIN_TOKEN_CHARS} characters",
                got=f"{len(self.admin_token)} characters",
            )
        weakness = token_weakness(self.admin_token)
        if weakness is not None:
            raise ConfigurationError(
                f"admin token looks weak ({weakness})",
                expected="a random token, e.g. secrets.token_urlsafe(32)",
                got="weak token",
            )
        return self


def token_weakness(token: str) -> str | None:
    """Why ``token`` is not a random secret (``None`` when nothing is wrong): whitespace at its ends, too
    few distinct characters, or a short pattern repeated (``abcdefgh`` four times has 8 distinct
    characters yet only 8 characters of secret)."""
    if token.strip() != token:
        return "whitespace at an end"
    if len(set(token)) < 8:
        return "too few distinct characters"
    period = _smallest_period(token)
    if period <= len(token) // 2:
        return f"a {period}-character pattern repeated"
    return None


def _smallest_period(text: str) -> int:
    """The smallest p such that text[i] == text[i + p] for every i (KMP failure function)."""
    fail = [0] * len(text)
    k = 0
    for i in range(1, len(text)):
        while k and text[i] != text[k]:
            k = fail[k - 1]
        if text[i] == text[k]:
            k += 1
        fail[i] = k
    return len(text) - (fail[-1] if text else 0)


def _check_urls(settings: Settings) -> None:
    if settings.content_base_url is not None and not settings.content_base_url.startswith(
        ("http://", "https://")
    ):
        raise ConfigurationError(
            "content_base_url is not an http(s) URL",
            expected="http(s)://host[/path]",
            got=settings.content_base_url,
        )
    for name in ("mqtt_url", "mqtt_device_url"):
        value = getattr(settings, name)
        if value is not None and not value.startswith(("mqtt://", "mqtts://")):
            raise ConfigurationError(
                f"{name} is not an MQTT URL",
                expected="mqtt://[user:password@]host[:port] or mqtts://...",
                got=_redact(value),
            )
    if settings.hint_min_interval_s < 0:
        raise ConfigurationError(
            "hint_min_interval_s must not be negative", expected=">= 0", got=settings.hint_min_interval_s
        )


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _convert(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    try:
        if "bool" in kind:
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{_ENV_PREFIX}{name.upper()} has a bad value", expected=kind, got=raw
        ) from None
    return raw


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_private_file(path: Path, text: str) -> None:
    """Atomically write a secret readable by the owner only (temp 0600, fsync, rename, fsync dir)."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=0o600)
