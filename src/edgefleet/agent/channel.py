"""The device's one authenticated connection to the control plane.

Every request is signed with the device key (``protocol.request_signing``). The channel tracks the offset
between the device clock and the server's ``Date`` header, so a device with a drifting clock still signs with
a timestamp the server accepts. Transport failures and error bodies become ``EdgefleetError``s.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, ServiceUnavailableError, error_from_body
from edgefleet.protocol.request_signing import sign_request

__all__ = ["UNREACHABLE_CODE", "DeviceChannel", "ServerUnreachableError"]

UNREACHABLE_CODE = "server_unreachable"
MAX_RESPONSE_BYTES = 4_000_000


class ServerUnreachableError(ServiceUnavailableError):
    code = UNREACHABLE_CODE


class DeviceChannel:
    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        key: Ed25519PrivateKey,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._device_id = device_id
        self._key = key
        self._clock = clock
        self.clock_offset_s = 0.0
        self._http = httpx.Client(base_url=base_url.rstrip("/"), transport=transport, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body_bytes: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A signed request. Returns 2xx/304 responses; raises for everything else.

        ``body_bytes`` sends raw bytes (e.g. a gzip body; set ``content-type``/``content-encoding`` in
        ``headers``): the signature covers exactly the bytes sent."""
        if body_bytes is not None and json_body is not None:
            raise ValueError("give json_body or body_bytes, not both")
        body = (
            body_bytes if body_bytes is not None else b"" if json_body is None else canonical_json(json_body)
        )
        signed = sign_request(
            self._key,
            device_id=self._device_id,
            method=method,
            path=path,
            body=body,
            now_s=self._clock() + self.clock_offset_s,
        )
        all_headers = {**(headers or {}), **signed}
        if json_body is not None:
            all_headers["content-type"] = "application/json"
        try:
            response = self._http.request(method, path, content=body, headers=all_headers)
        except httpx.HTTPError as exc:
            raise ServerUnreachableError(f"{method} {path} failed: {exc!r}", got=type(exc).__name__) from exc
        self._track_clock(response)
        if response.status_code < 400:
            if len(response.content) > MAX_RESPONSE_BYTES:
                raise EdgefleetError("server response too large", code="response_too_large")
            return response
        raise self._error(response)

    def _track_clock(self, response: httpx.Response) -> None:
        date = response.headers.get("date")
        if not date:
            return
        try:
            server_s = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        self.clock_offset_s = server_s - self._clock()

    @staticmethod
    def _error(response: httpx.Response) -> EdgefleetError:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        err = error_from_body(response.status_code, body)
        retry_after = response.headers.get("retry-after")
        if retry_after and retry_after.isdigit():
            err.details["retry_after_s"] = int(retry_after)
        err.details.setdefault("status", response.status_code)
        return err
