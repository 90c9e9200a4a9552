"""Replay protection for signed device requests: where the nonces seen inside the replay window live.

A signed request carries a timestamp and a nonce; the timestamp must lie within ``MAX_CLOCK_SKEW_S`` of the
server's clock, and a nonce is refused when it was seen before inside ``nonce_retention`` (twice the skew
window: after that the timestamp alone refuses a replay). Three stores, chosen once at start
(``Settings.replay_store``):

- ``memory``: a dict in this process. No database write per request; sound for ONE server process (the
  embedded SQLite default). Memory: about 150 bytes per request of the last ``nonce_retention`` (10 min),
  e.g. 90 MB at 1,000 requests/s.
- ``redis``: one ``SET NX EX`` per request on a shared Redis: sound for any number of replicas, no database
  write. Redis down means device requests answer 503 ``replay_store_unavailable`` (fail closed).
- ``database``: one ``device_nonces`` row per request (pruned by the server's maintenance loop): sound for
  any number of replicas without Redis, at the cost of one database write per request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

import anyio.to_thread
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from edgefleet.protocol.errors import ServiceUnavailableError
from edgefleet.protocol.request_signing import MAX_CLOCK_SKEW_S
from edgefleet.server.store import Database
from edgefleet.server.store.devices import DeviceNonceRow

__all__ = [
    "DatabaseReplayGuard",
    "MemoryReplayGuard",
    "RedisReplayGuard",
    "ReplayGuard",
    "retention_s",
]


def retention_s(max_skew_s: int = MAX_CLOCK_SKEW_S) -> int:
    """How long a nonce must be remembered (see ``services.devices.nonce_retention``)."""
    return 2 * max_skew_s


class ReplayGuard(Protocol):
    kind: str

    async def first_use(self, device_id: str, nonce: str, *, now: datetime) -> bool:
        """Remember ``(device_id, nonce)``; ``False`` if it was already seen inside the window (a replay)."""

    def first_use_blocking(self, device_id: str, nonce: str, *, now: datetime) -> bool:
        """The same, from a worker thread of the server (the database path)."""

    async def close(self) -> None: ...


class MemoryReplayGuard:
    """Nonces in a dict, forgotten in arrival order once past the retention (amortised O(1) per request)."""

    kind = "memory"

    def __init__(
        self, *, retention_s: float = retention_s(), monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._retention_s = retention_s
        self._monotonic = monotonic
        self._seen: dict[tuple[str, str], float] = {}
        self._order: deque[tuple[float, tuple[str, str]]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def first_use_now(self, device_id: str, nonce: str) -> bool:
        """The check itself (synchronous: the event loop calls it without a thread hop)."""
        now_s = self._monotonic()
        key = (device_id, nonce)
        with self._lock:
            while self._order and self._order[0][0] <= now_s:
                _, old = self._order.popleft()
                if self._seen.get(old, now_s + 1) <= now_s:
                    del self._seen[old]
            if key in self._seen:
                return False
            expires_s = now_s + self._retention_s
            self._seen[key] = expires_s
            self._order.append((expires_s, key))
        return True

    async def first_use(self, device_id: str, nonce: str, *, now: datetime) -> bool:
        return self.first_use_now(device_id, nonce)

    def first_use_blocking(self, device_id: str, nonce: str, *, now: datetime) -> bool:
        return self.first_use_now(device_id, nonce)

    async def close(self) -> None:
        self._seen.clear()
        self._order.clear()


class RedisReplayGuard:
    """``SET ef:nonce:<device>:<nonce> 1 NX EX <retention>``: one round trip, shared by every replica.

    Two clients on one Redis: an asyncio one for the event loop (the cached 304) and a blocking one for the
    server's worker threads (the database path), which so checks the nonce without a hop back to the loop.
    """

    kind = "redis"

    def __init__(self, url: str, *, retention_s: int = retention_s(), prefix: str = "ef:nonce:") -> None:
        import redis  # the postgres extra installs it; only replicas need it
        import redis.asyncio as aioredis

        self._client: Any = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._blocking: Any = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._retention_s = retention_s
        self._prefix = prefix

    async def first_use(self, device_id: str, nonce: str, *, now: datetime) -> bool:
        with _unreachable_as_503():
            stored = await self._client.set(
                f"{self._prefix}{device_id}:{nonce}", b"1", nx=True, ex=self._retention_s
            )
        return bool(stored)

    def first_use_blocking(self, device_id: str, nonce: str, *, now: datetime) -> bool:
        with _unreachable_as_503():
            stored = self._blocking.set(
                f"{self._prefix}{device_id}:{nonce}", b"1", nx=True, ex=self._retention_s
            )
        return bool(stored)

    async def close(self) -> None:
        await self._client.aclose()
        self._blocking.close()


@contextmanager
def _unreachable_as_503() -> Iterator[None]:
    """A Redis failure is a 503 ``replay_store_unavailable``: device requests fail closed."""
    import redis.exceptions

    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise ServiceUnavailableError(
            "the replay store (Redis) is unreachable; retry later",
            code="replay_store_unavailable",
            got=type(exc).__name__,
        ) from exc


class DatabaseReplayGuard:
    """One ``device_nonces`` row per request (the primary key refuses a second use)."""

    kind = "database"

    def __init__(self, db: Database) -> None:
        self._db = db

    def first_use_blocking(self, device_id: str, nonce: str, *, now: datetime) -> bool:
        with self._db.session() as session:
            try:
                with session.begin():
                    session.execute(
                        insert(DeviceNonceRow).values(device_id=device_id, nonce=nonce, seen_at=now)
                    )
            except IntegrityError:
                return False
        return True

    async def first_use(self, device_id: str, nonce: str, *, now: datetime) -> bool:
        return bool(
            await anyio.to_thread.run_sync(lambda: self.first_use_blocking(device_id, nonce, now=now))
        )

    async def close(self) -> None:
        return None
