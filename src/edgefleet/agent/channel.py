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

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from edgefleet.agent.http_date import parse_http_date
from edgefleet.agent.http_transport import StdlibTransport, TransportError
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, ServiceUnavailableError, error_from_body
from edgefleet.protocol.request_signing import RequestSigner, sign_request

if TYPE_CHECKING:  # httpx only for a transport handed in (tests, simulator); the agent uses h11
    import httpx

__all__ = [
    "DEADLINE_CODE",
    "MAX_ERROR_BODY_BYTES",
    "MAX_RESPONSE_BYTES",
    "TOO_LARGE_CODE",
    "UNREACHABLE_CODE",
    "Channel",
    "ChannelAnswer",
    "ChannelResponse",
    "DeviceChannel",
    "ServerUnreachableError",
    "skip_httpx_cli",
]

UNREACHABLE_CODE = "server_unreachable"
DEADLINE_CODE = "response_deadline_exceeded"
TOO_LARGE_CODE = "response_too_large"
MAX_RESPONSE_BYTES = 4_000_000
MAX_ERROR_BODY_BYTES = 64_000
"""An error body longer than this is not read further; the error is rebuilt from its status alone."""
_DROPPED_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


def skip_httpx_cli() -> None:
    """Call before httpx's first import (the fetch child does). httpx imports its command-line client
    (click, rich, pygments: 3.3 MiB and ~0.1 s, measured) whenever those are installed, and the agent never
    runs it; a module marked absent in ``sys.modules`` makes httpx take the branch it has for installs without
    its ``cli`` extra (``httpx.main`` then only prints that the client is unavailable)."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


class ServerUnreachableError(ServiceUnavailableError):
    code = UNREACHABLE_CODE


class ChannelAnswer(Protocol):
    """What a request returns: a 2xx/304 answer with its body read in full."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    def json(self) -> Any: ...


class Channel(Protocol):
    """The device's signed connection as its users see it (``DeviceChannel``; tests hand fakes)."""

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body_bytes: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> ChannelAnswer: ...

    def close(self) -> None: ...


class ChannelResponse:
    """A 2xx/304 answer, body read in full; header names lower-case."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = {k.lower(): v for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS}
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Answer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class _Transport(Protocol):
    def open(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> _Answer: ...

    def close(self) -> None: ...


class _HttpxAnswer:
    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._response = stream.__enter__()
        self.status: int = self._response.status_code
        self.headers: dict[str, str] = {k.lower(): v for k, v in self._response.headers.items()}

    def chunks(self) -> Iterator[bytes]:
        import httpx

        try:
            yield from self._response.iter_bytes()
        except httpx.HTTPError as exc:
            raise TransportError(repr(exc)) from exc

    def close(self) -> None:
        self._stream.__exit__(None, None, None)


class _HttpxTransport:
    """An httpx transport handed in by a test or a simulator (an in-process app, an injected fault)."""

    def __init__(self, base_url: str, transport: httpx.BaseTransport, timeout_s: float) -> None:
        import httpx

        self._http = httpx.Client(base_url=base_url, transport=transport, timeout=timeout_s)

    def open(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> _Answer:
        import httpx

        try:
            return _HttpxAnswer(self._http.stream(method, path, content=body, headers=dict(headers)))
        except httpx.HTTPError as exc:
            raise TransportError(repr(exc)) from exc

    def close(self) -> None:
        self._http.close()


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
        self._transport: _Transport = (
            StdlibTransport(base_url, timeout_s=per_step_s, deadline_s=deadline_s)
            if transport is None
            else _HttpxTransport(base_url.rstrip("/"), transport, per_step_s)
        )

    def close(self) -> None:
        self._transport.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body_bytes: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> ChannelResponse:
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
        what = f"{method} {path}"
        try:
            answer = self._transport.open(method, path, body, all_headers)
            try:
                self._track_clock(answer.headers)
                ok = answer.status < 400
                content = self._read_bounded(
                    answer.chunks(),
                    max_bytes=self.max_response_bytes if ok else MAX_ERROR_BODY_BYTES,
                    started_s=started_s,
                    cut_is_error=ok,
                    what=what,
                )
            finally:
                answer.close()
        except TransportError as exc:
            self._check_deadline(started_s, what)
            raise ServerUnreachableError(
                f"{what} failed: {exc}", got=type(exc.__cause__ or exc).__name__
            ) from exc
        response = ChannelResponse(answer.status, answer.headers, content)
        if ok:
            return response
        raise self._error(response)

    def _read_bounded(
        self, body: Iterator[bytes], *, max_bytes: int, started_s: float, cut_is_error: bool, what: str
    ) -> bytes:
        """The body as received (decoded), cut at ``max_bytes`` and at the deadline while it arrives.

        Past ``max_bytes`` a successful answer raises ``response_too_large``; an error answer's body is
        dropped (``b""``) and the error is judged on its status."""
        chunks: list[bytes] = []
        received = 0
        for chunk in body:
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

    def _track_clock(self, headers: Mapping[str, str]) -> None:
        date = headers.get("date")
        if not date:
            return
        server_s = parse_http_date(date)
        if server_s is None:  # not an HTTP-date: the offset stays as it was
            return
        self.clock_offset_s = server_s - self._clock()

    @staticmethod
    def _error(response: ChannelResponse) -> EdgefleetError:
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
