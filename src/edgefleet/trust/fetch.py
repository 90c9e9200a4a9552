"""Bounded HTTP streaming for bad links: a byte cap, an overall deadline and a minimum throughput.

A read timeout alone does not stop a server that trickles one byte a second forever; so besides the
per-read timeout, every chunk is judged by :func:`transfer_verdict` (pure) against the bytes received and
the time spent. Used by the TUF fetcher (metadata) and by the agent's resumable downloader (artifacts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from edgefleet.protocol.errors import EdgefleetError
from edgefleet.trust.errors import DownloadFailedError, DownloadTooLargeError, DownloadTooSlowError

__all__ = ["BoundedStream", "TransferLimits", "open_bounded_stream", "transfer_verdict"]


@dataclass(frozen=True)
class TransferLimits:
    """Bounds of one transfer. ``min_bytes_per_s`` applies once ``grace_s`` has passed."""

    max_bytes: int
    deadline_s: float = 600.0
    min_bytes_per_s: float = 4096.0
    grace_s: float = 15.0
    read_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0

    def with_max_bytes(self, max_bytes: int) -> TransferLimits:
        return TransferLimits(
            max_bytes=max_bytes,
            deadline_s=self.deadline_s,
            min_bytes_per_s=self.min_bytes_per_s,
            grace_s=self.grace_s,
            read_timeout_s=self.read_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
        )


def transfer_verdict(received_bytes: int, elapsed_s: float, limits: TransferLimits) -> EdgefleetError | None:
    """The error that must end this transfer now, or ``None`` to go on."""
    if received_bytes > limits.max_bytes:
        return DownloadTooLargeError(
            "more bytes than allowed", expected=f"<= {limits.max_bytes} bytes", got=received_bytes
        )
    if elapsed_s > limits.deadline_s:
        return DownloadTooSlowError(
            "transfer deadline passed", expected=f"<= {limits.deadline_s} s", got=round(elapsed_s, 3)
        )
    if elapsed_s > limits.grace_s:
        rate = received_bytes / elapsed_s
        if rate < limits.min_bytes_per_s:
            return DownloadTooSlowError(
                "transfer slower than the minimum throughput",
                expected=f">= {limits.min_bytes_per_s} bytes/s",
                got=round(rate, 1),
            )
    return None


@dataclass
class BoundedStream:
    response: httpx.Response
    chunks: Iterator[bytes]


@contextmanager
def open_bounded_stream(
    client: httpx.Client,
    url: str,
    limits: TransferLimits,
    *,
    headers: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[BoundedStream]:
    """GET ``url`` and stream its body under ``limits``. Foreign errors become ``DownloadFailedError``."""
    started = clock()
    timeout = httpx.Timeout(
        connect=min(limits.connect_timeout_s, limits.deadline_s),
        read=min(limits.read_timeout_s, limits.deadline_s),
        write=limits.read_timeout_s,
        pool=limits.connect_timeout_s,
    )

    def chunks(response: httpx.Response) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in response.iter_bytes():  # as received: a broken link keeps every byte
                received += len(chunk)
                verdict = transfer_verdict(received, clock() - started, limits)
                if verdict is not None:
                    verdict.details.setdefault("url", url)
                    raise verdict
                yield chunk
        except httpx.TimeoutException as exc:
            raise DownloadTooSlowError(
                "no data within the read timeout", expected=f"data within {limits.read_timeout_s} s", got=url
            ) from exc
        except httpx.HTTPError as exc:
            raise DownloadFailedError(f"transfer broke: {exc}", expected="a complete body", got=url) from exc

    try:
        with client.stream("GET", url, headers=dict(headers or {}), timeout=timeout) as response:
            yield BoundedStream(response, chunks(response))
    except httpx.TimeoutException as exc:
        raise DownloadTooSlowError("request timed out", expected="a response", got=url) from exc
    except httpx.HTTPError as exc:
        raise DownloadFailedError(f"request failed: {exc}", expected="a response", got=url) from exc
