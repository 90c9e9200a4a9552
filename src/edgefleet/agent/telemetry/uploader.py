"""Bringing the queue home: bounded, compressed batches under a bandwidth budget, deleted only when acked.

Order: when a backlog exists, the newest health windows not yet sent go first (so the fleet view is current
within one batch of reconnecting), then the history drains oldest first. The server acknowledges by
``(boot_id, sequence)``; only acknowledged records are deleted, so a lost acknowledgement means a resend,
which the server deduplicates. Failures back off with full jitter under a cap (``agent.backoff``), honouring
``Retry-After`` on 429/503; the average upload rate stays under the hardware class's
``telemetry_bytes_per_s`` (a token bucket, ``BandwidthBudget``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from edgefleet.agent.backoff import PollTiming, backoff_delay_s, poll_delay_s
from edgefleet.agent.telemetry.queue import QueuedRecord, TelemetryQueue
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.protocol.telemetry_kinds import MAX_BATCH_RECORDS, TELEMETRY_BATCH_SCHEMA_VERSION

__all__ = [
    "TELEMETRY_PATH",
    "BandwidthBudget",
    "ChannelUpload",
    "TelemetryUploader",
    "UploadOutcome",
    "UploadTransport",
    "parse_acks",
    "plan_batch",
]

log = logging.getLogger(__name__)

TELEMETRY_PATH = "/v1/device/telemetry"


class UploadTransport(Protocol):
    def post(self, body: bytes, *, content_encoding: str) -> dict[str, Any]: ...


class ChannelUpload:
    """The real transport: the signed device channel (the signature covers the compressed bytes)."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def post(self, body: bytes, *, content_encoding: str) -> dict[str, Any]:
        response = self._channel.request(
            "POST",
            TELEMETRY_PATH,
            body_bytes=body,
            headers={"content-type": "application/json", "content-encoding": content_encoding},
        )
        data = response.json()
        if not isinstance(data, dict):
            raise InvalidDocumentError("telemetry answer is not an object", code="bad_telemetry_answer")
        return data


class BandwidthBudget:
    """Token bucket: ``rate_bytes_per_s`` on average, bursts up to ``burst_bytes``. Pure: pass ``now_s``."""

    def __init__(self, rate_bytes_per_s: float, *, burst_bytes: int, now_s: float) -> None:
        if rate_bytes_per_s <= 0 or burst_bytes <= 0:
            raise ValueError("bandwidth budget must be positive")
        self.rate = float(rate_bytes_per_s)
        self.burst = float(burst_bytes)
        self._tokens = self.burst
        self._at = now_s

    def wait_s(self, nbytes: int, now_s: float) -> float:
        """Seconds until ``nbytes`` may be sent (0 if now). Does not spend."""
        self._refill(now_s)
        need = min(float(nbytes), self.burst) - self._tokens
        return 0.0 if need <= 0 else need / self.rate

    def spend(self, nbytes: int, now_s: float) -> None:
        self._refill(now_s)
        self._tokens -= min(float(nbytes), self.burst)

    def _refill(self, now_s: float) -> None:
        elapsed = max(0.0, now_s - self._at)  # a monotonic clock; never refill backwards
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._at = max(self._at, now_s)


def plan_batch(
    fresh: list[QueuedRecord], oldest: list[QueuedRecord], *, max_records: int, max_bytes: int
) -> list[QueuedRecord]:
    """Pure: ``fresh`` first (newest health), then ``oldest`` in order, without repeats, within bounds.
    Always at least one record when there is any."""
    chosen: list[QueuedRecord] = []
    seen: set[int] = set()
    total = 0
    for record in [*fresh, *oldest]:
        if record.seq in seen:
            continue
        if chosen and (len(chosen) >= max_records or total + record.size_bytes > max_bytes):
            break
        chosen.append(record)
        seen.add(record.seq)
        total += record.size_bytes
    return chosen


def parse_acks(answer: dict[str, Any]) -> set[tuple[str, int]]:
    """``{"acked": {"<boot_id>": [sequence, ...]}}`` -> ``{(boot_id, sequence)}``; malformed parts ignored."""
    out: set[tuple[str, int]] = set()
    acked = answer.get("acked")
    if not isinstance(acked, dict):
        return out
    for boot_id, seqs in acked.items():
        if isinstance(seqs, list):
            out.update((str(boot_id), s) for s in seqs if isinstance(s, int) and not isinstance(s, bool))
    return out


@dataclass(frozen=True)
class UploadOutcome:
    sent_records: int = 0
    acked_records: int = 0
    body_bytes: int = 0
    backlog: int = 0
    wait_s: float = 0.0
    """> 0: the bandwidth budget asks to wait this long before sending"""
    error: EdgefleetError | None = None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class TelemetryUploader:
    def __init__(
        self,
        queue: TelemetryQueue,
        transport: UploadTransport,
        *,
        device_id: str,
        bandwidth_bytes_per_s: float = 2048,
        burst_s: float = 60.0,
        max_records: int = 200,
        max_uncompressed_bytes: int = 512 * 1024,
        fresh_windows: int = 3,
        timing: PollTiming | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._queue = queue
        self._transport = transport
        self.device_id = device_id
        self.max_records = max(1, min(max_records, MAX_BATCH_RECORDS))
        self.max_uncompressed_bytes = max_uncompressed_bytes
        self.fresh_windows = fresh_windows
        self.timing = timing or PollTiming(poll_interval_s=60.0, backoff_cap_s=900.0)
        self._rng = rng or random.Random()  # noqa: S311  # jitter, not secrets
        self._clock = clock
        self._wall = wall_clock
        burst = max(int(bandwidth_bytes_per_s * burst_s), 4096)
        self.budget = BandwidthBudget(bandwidth_bytes_per_s, burst_bytes=burst, now_s=clock())
        self._fresh_sent_through = 0
        self.failures = 0
        self.bytes_sent = 0

    def upload_once(self) -> UploadOutcome:
        """Plan, compress, post and delete what the server acknowledged. Never raises EdgefleetError."""
        fresh = [
            r
            for r in self._queue.newest(self.fresh_windows, kind="window")
            if r.seq > self._fresh_sent_through
        ]
        oldest = self._queue.oldest(self.max_records)
        if not fresh and not oldest:
            return UploadOutcome()
        records = plan_batch(
            fresh, oldest, max_records=self.max_records, max_bytes=self.max_uncompressed_bytes
        )
        body = self._compress(records)
        while len(body) > self.budget.burst and len(records) > 1:  # keep a batch sendable under the budget
            records = records[: len(records) // 2]
            body = self._compress(records)
        wait = self.budget.wait_s(len(body), self._clock())
        if wait > 0:
            return UploadOutcome(backlog=self._queue.stats().records, wait_s=wait)
        self.budget.spend(len(body), self._clock())
        self.bytes_sent += len(body)
        try:
            answer = self._transport.post(body, content_encoding="gzip")
        except EdgefleetError as exc:
            self.failures += 1
            return UploadOutcome(sent_records=len(records), body_bytes=len(body), error=exc)
        acked = parse_acks(answer)
        mine = [r.seq for r in records if (r.boot_id, r.seq) in acked]
        self._queue.delete(mine)
        fresh_seqs = [r.seq for r in fresh if r.seq in set(mine)]
        if fresh_seqs:
            self._fresh_sent_through = max(self._fresh_sent_through, *fresh_seqs)
        self.failures = 0
        return UploadOutcome(
            sent_records=len(records),
            acked_records=len(mine),
            body_bytes=len(body),
            backlog=self._queue.stats().records,
        )

    def next_delay_s(self, outcome: UploadOutcome) -> float:
        """Pure given the rng: how long to wait after ``outcome``."""
        if outcome.error is not None:
            retry_after = outcome.error.details.get("retry_after_s")
            return backoff_delay_s(
                self.timing,
                max(1, self.failures),
                self._rng,
                retry_after_s=float(retry_after) if isinstance(retry_after, int | float) else None,
            )
        if outcome.wait_s > 0:
            return max(self.timing.min_delay_s, outcome.wait_s)
        if outcome.backlog > 0 and outcome.acked_records > 0:
            return self.timing.min_delay_s
        return poll_delay_s(self.timing, self._rng)

    def run(self, stop: threading.Event, *, on_tick: Callable[[], Any] | None = None) -> None:
        """Upload until ``stop`` is set. ``on_tick`` (e.g. ``recorder.tick``) runs before every attempt."""
        while not stop.is_set():
            if on_tick is not None:
                on_tick()
            outcome = self.upload_once()
            if outcome.error is not None:
                log.info("telemetry upload failed: %s", outcome.error)
            stop.wait(self.next_delay_s(outcome))

    def _compress(self, records: list[QueuedRecord]) -> bytes:
        stats = self._queue.stats()
        batch = {
            "schema_version": TELEMETRY_BATCH_SCHEMA_VERSION,
            "device_id": self.device_id,
            "sent_at": self._wall().isoformat(),
            "records": [
                {"boot_id": r.boot_id, "sequence": r.seq, "kind": r.kind, r.kind: r.body} for r in records
            ],
            "dropped": stats.dropped,
            "queue_bytes": stats.bytes,
            "queue_records": stats.records,
        }
        # gzip framing (wbits 31: mtime 0, no name) from zlib itself: the gzip module costs ~0.2 MiB resident
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)
        return packer.compress(canonical_json(batch)) + packer.flush()
