"""The device's one authenticated connection to the control plane.

Every request is signed with the device key (``protocol.request_signing``). The channel tracks the offset
between the device clock and the server's ``Date`` header, so a device with a drifting clock still signs with
a timestamp the server accepts. Transport failures and error bodies become ``EdgefleetError``s.

Every answer is bounded from outside: the body is streamed and cut as soon as it passes ``MAX_RESPONSE_BYTES``
(``response_too_large``), and the whole exchange, body included, must end within ``deadline_s``
(``response_deadline_exceeded``), so a server that sends forever or trickles a byte at a time cannot hold the
device's one connection.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, ServiceUnavailableError, error_from_body
from edgefleet.protocol.request_signing import RequestSigner, sign_request

__all__ = [
    "DEADLINE_CODE",
    "MAX_ERROR_BODY_BYTES",
    "MAX_RESPONSE_BYTES",
    "TOO_LARGE_CODE",
    "UNREACHABLE_CODE",
    "DeviceChannel",
    "ServerUnreachableError",
]

UNREACHABLE_CODE = "server_unreachable"
DEADLINE_CODE = "response_deadline_exceeded"
TOO_LARGE_CODE = "response_too_large"
MAX_RESPONSE_BYTES = 4_000_000
MAX_ERROR_BODY_BYTES = 64_000
"""An error body longer than this is not read further; the error is rebuilt from its status alone."""
_DROPPED_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class ServerUnreachableError(ServiceUnavailableError):
    code = UNREACHABLE_CODE


class DeviceChannel:
    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        key: RequestSigner,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 15.0,
        deadline_s: float = 60.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timeout_s`` bounds each connect, read and write; ``deadline_s`` the whole request, body
        included; ``max_response_bytes`` a successful answer's (decoded) body."""
        self._device_id = device_id
        self._key = key
        self._clock = clock
        self._monotonic = monotonic
        self.deadline_s = deadline_s
        self.max_response_bytes = max_response_bytes
        self.clock_offset_s = 0.0
        per_step_s = min(timeout_s, deadline_s)
        self._http = httpx.Client(base_url=base_url.rstrip("/"), transport=transport, timeout=per_step_s)

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
        """A signed request. Returns 2xx/304 responses (body read in full); raises for everything else.

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
        started_s = self._monotonic()
        try:
            with self._http.stream(method, path, content=body, headers=all_headers) as streamed:
                self._track_clock(streamed)
                ok = streamed.status_code < 400
                content = self._read_bounded(
                    streamed,
                    max_bytes=self.max_response_bytes if ok else MAX_ERROR_BODY_BYTES,
                    started_s=started_s,
                    cut_is_error=ok,
                    what=f"{method} {path}",
                )
        except httpx.HTTPError as exc:
            self._check_deadline(started_s, f"{method} {path}")
            raise ServerUnreachableError(f"{method} {path} failed: {exc!r}", got=type(exc).__name__) from exc
        response = httpx.Response(
            streamed.status_code,
            headers=[(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _DROPPED_HEADERS],
            content=content,
            request=streamed.request,
        )
        if ok:
            return response
        raise self._error(response)

    def _read_bounded(
        self, response: httpx.Response, *, max_bytes: int, started_s: float, cut_is_error: bool, what: str
    ) -> bytes:
        """The body as received (decoded), cut at ``max_bytes`` and at the deadline while it arrives.

        Past ``max_bytes`` a successful answer raises ``response_too_large``; an error answer's body is
        dropped (``b""``) and the error is judged on its status."""
        chunks: list[bytes] = []
        received = 0
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > max_bytes:
                if cut_is_error:
                    raise EdgefleetError(
                        "server response too large",
                        code=TOO_LARGE_CODE,
                        expected=f"<= {max_bytes} bytes",
                        got=f"> {max_bytes} bytes ({what})",
                    )
                return b""
            chunks.append(chunk)
            self._check_deadline(started_s, what)
        return b"".join(chunks)

    def _check_deadline(self, started_s: float, what: str) -> None:
        elapsed_s = self._monotonic() - started_s
        if elapsed_s > self.deadline_s:
            raise ServerUnreachableError(
                f"{what}: no complete answer within the deadline",
                code=DEADLINE_CODE,
                expected=f"<= {self.deadline_s} s",
                got=round(elapsed_s, 3),
            )

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
