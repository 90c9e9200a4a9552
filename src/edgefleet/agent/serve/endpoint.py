"""The local HTTP endpoint: ``h11`` (the HTTP/1.1 state machine) over ``socketserver``, on loopback or a
Unix socket (no web framework, no stdlib ``http.server``).

``POST /v1/predict`` takes ``application/json`` (``{"inputs": {"<name>": nested list}}``),
``application/x-npy`` (one-input models) or ``application/x-npz``; it answers JSON (or ``.npy``/``.npz``
when ``Accept`` asks). Every response, errors included, carries ``X-Edgefleet-Model-Version``,
``X-Edgefleet-Artifact`` and ``X-Edgefleet-Serving-Mode``. ``GET /v1/status`` is the service
status; ``GET /healthz`` a liveness answer. Connections are kept alive (and pipelined requests answered in
order) until either side says ``Connection: close``.

Bounds: a body over ``max_body_bytes`` is refused before it is read (413), a body without Content-Length is
refused (411, a chunked one too), a client that stalls is cut after ``read_timeout_s``, at most
``max_connections`` connections get a thread (the rest get an immediate 503), and inference itself goes
through the service's bounded queue (503 + Retry-After when full). Malformed HTTP gets a JSON 400
(``request_malformed``; a request head over 64 KiB a 431 ``headers_too_large``) and the connection closes;
another method than GET/POST (HEAD: GET without the body) a 405 ``method_not_allowed``.

Why not ``http.server``: it imports ``http.client`` (with ``ssl``), ``email``, ``html`` and ``mimetypes``,
~1-2.5 MiB resident in ``agent run`` for what this endpoint never uses. h11 is pure Python and small.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import socketserver
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus  # the package only (an enum): not http.server or http.client
from pathlib import Path
from typing import Any

import h11

from edgefleet.agent.http_date import format_http_date
from edgefleet.agent.serve.codec import JSON_TYPE, decode_inputs, encode_outputs, response_type
from edgefleet.agent.serve.errors import BadTensorError, NoModelError
from edgefleet.agent.serve.service import InferenceService
from edgefleet.agent.serve.validate import InputRules
from edgefleet.protocol.errors import EdgefleetError

__all__ = ["EndpointConfig", "LocalEndpoint"]

log = logging.getLogger("edgefleet.agent.serve.http")
_MAX_HEAD_BYTES = 64 * 1024
_HEAD_LIMIT = f"<= {_MAX_HEAD_BYTES} bytes of request line and headers"
_RECV_BYTES = 256 * 1024
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_BUSY_BODY = b'{"code":"too_many_connections","message":"too many open connections","details":{}}'
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


@dataclass(frozen=True)
class EndpointConfig:
    host: str = "127.0.0.1"
    port: int = 0
    """0: any free port (read ``LocalEndpoint.url``)."""
    unix_socket: Path | None = None
    """Serve on this Unix socket (mode 0660) instead of TCP."""
    max_body_bytes: int = 8 * 1024 * 1024
    max_connections: int = 64
    read_timeout_s: float = 10.0
    allow_non_loopback: bool = False

    def __post_init__(self) -> None:
        if self.unix_socket is None and not self.allow_non_loopback:
            try:
                loopback = ipaddress.ip_address(self.host).is_loopback
            except ValueError:
                loopback = self.host == "localhost"
            if not loopback:
                raise ValueError(f"refusing to serve inference on non-loopback address {self.host!r}")
        if self.max_body_bytes < 1 or self.max_connections < 1 or self.read_timeout_s <= 0:
            raise ValueError("need max_body_bytes >= 1, max_connections >= 1, read_timeout_s > 0")


class _Handler(socketserver.BaseRequestHandler):
    """One connection: h11 parses, this answers, request after request while both sides keep it alive."""

    service: InferenceService
    config: EndpointConfig
    request: socket.socket

    def setup(self) -> None:
        self.request.settimeout(self.config.read_timeout_s)  # a stalled client: recv raises TimeoutError
        if self.request.family in (socket.AF_INET, socket.AF_INET6):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD_BYTES)
        self.headers: dict[bytes, bytes] = {}
        self.method, self.close = b"", False

    def handle(self) -> None:
        conn = self.conn
        while True:
            self.method = b""  # until a request is read (a malformed one's 400 has a body)
            try:
                event = self._next_event()
            except h11.RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            except OSError:  # TimeoutError included: a stalled or vanished client is dropped silently
                return
            if not isinstance(event, h11.Request):  # ConnectionClosed: the client is done
                return
            if event.http_version not in (b"1.0", b"1.1"):
                version = event.http_version.decode("latin-1")
                self._protocol_error(h11.RemoteProtocolError(f"unsupported HTTP version {version}"))
                return
            self.method, self.headers, self.close = event.method, {}, False
            for name, value in event.headers:
                self.headers.setdefault(name, value)  # the first of repeated headers, as before
            path = event.target.split(b"?", 1)[0].decode("latin-1")
            try:
                self._route(path)
            except (OSError, h11.LocalProtocolError):  # the client went away while we answered
                return
            log.debug("%s %s %s %s", self._peer(), event.method.decode("latin-1"), path, conn.our_state)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # a Connection: close (either side), or a body left unread: close, as before
            conn.start_next_cycle()

    def _peer(self) -> str:  # Unix sockets have no peer address
        return str(self.client_address[0]) if self.client_address else "local"

    def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.conn.they_are_waiting_for_100_continue:
                go_on = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                self.request.sendall(self.conn.send(go_on))
            self.conn.receive_data(self.request.recv(_RECV_BYTES))  # b"": the client closed

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        """Malformed HTTP: a JSON error (then close), never a traceback; an unsupported Transfer-Encoding
        answers as a chunked body does (411)."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        hint = exc.error_status_hint
        error = EdgefleetError("malformed HTTP request", code="request_malformed", got=str(exc)[:200])
        if hint == 431:
            error = EdgefleetError("request head too large", code="headers_too_large", expected=_HEAD_LIMIT)
        elif hint == 501:
            error = EdgefleetError("a Content-Length is required", code="length_required", got=str(exc)[:200])
            hint = 411
        log.debug("event=http_malformed peer=%s error=%s", self._peer(), exc)
        with contextlib.suppress(OSError, h11.LocalProtocolError):
            self._error(error, status=hint if hint in (411, 431) else 400, close=True)

    # --- responses -------------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = JSON_TYPE,
        version: str | None = None,
        artifact: str | None = None,
        mode: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        service = self.service
        headers = [
            ("Server", "edgefleet-agent"),
            ("Date", format_http_date()),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("X-Edgefleet-Model-Version", version or service.model_version or "none"),
            ("X-Edgefleet-Artifact", artifact or service.artifact_id or "none"),
            ("X-Edgefleet-Serving-Mode", mode or service.mode),
            *(extra or {}).items(),
        ]
        if self.close:
            headers.append(("Connection", "close"))
        raw = [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers]
        out = [
            self.conn.send(h11.Response(status_code=status, headers=raw, reason=_REASONS.get(status, b"")))
        ]
        if self.method != b"HEAD":  # h11 frames no body after HEAD
            out += self.conn.send_with_data_passthrough(h11.Data(data=body)) or []
        out.append(self.conn.send(h11.EndOfMessage()))
        self.request.sendall(b"".join(out))  # one write: head and body leave together

    def _error(self, exc: EdgefleetError, *, status: int | None = None, close: bool = False) -> None:
        body = {**exc.to_body(), "model_version": self.service.model_version, "mode": self.service.mode}
        extra: dict[str, str] = {}
        retry = getattr(exc, "retry_after_s", None)
        if isinstance(retry, int):
            extra["Retry-After"] = str(retry)
        self.close = self.close or close
        if status == 405:
            extra["Allow"] = "GET, POST"
        self._send(status or exc.http_status, json.dumps(body, default=str).encode("utf-8"), extra=extra)

    # --- routes ----------------------------------------------------------------------------------------

    def _route(self, path: str) -> None:
        missing = EdgefleetError("no such path", code="not_found", got=path[:200])
        if self.method == b"POST":
            if path != "/v1/predict":
                self._error(missing, status=404, close=True)
            else:
                self._predict()
            return
        if self.method not in (b"GET", b"HEAD"):
            unsupported = self.method.decode("latin-1")[:20]
            refused = EdgefleetError("method not allowed", code="method_not_allowed", got=unsupported)
            self._error(refused, status=405, close=True)
            return
        self.close = not self._discard_body()  # a GET's body: read and dropped when small, else close after
        if path == "/v1/status":
            self._send(200, json.dumps(self.service.status(), default=str).encode("utf-8"))
        elif path == "/healthz":
            self._send(200, json.dumps({"ok": True, "mode": self.service.mode}).encode("utf-8"))
        else:
            self._error(missing, status=404)

    def _predict(self) -> None:
        body = self._read_body()
        if body is None:
            return
        service = self.service
        content_type = self.headers.get(b"content-type", b"").decode("latin-1")
        try:
            inputs = decode_inputs(
                body, content_type, self._rules(), max_decoded_bytes=self.config.max_body_bytes * 4
            )
        except BadTensorError as exc:  # refused while decoding: an input fault, counted like the others
            service.record_input_fault(exc.code)
            self._error(exc)
            return
        except EdgefleetError as exc:
            self._error(exc)
            return
        try:
            prediction = service.predict(inputs)
        except EdgefleetError as exc:
            self._error(exc)
            return
        accept = self.headers.get(b"accept")
        kind = response_type(None if accept is None else accept.decode("latin-1"), len(prediction.outputs))
        meta = {
            "model_version": prediction.model_version,
            "artifact_id": prediction.artifact_id,
            "mode": prediction.mode,
            "latency_ms": round(prediction.latency_ms, 4),
        }
        self._send(
            200,
            encode_outputs(prediction.outputs, kind, meta),
            content_type=kind,
            version=prediction.model_version,
            artifact=prediction.artifact_id,
            mode=prediction.mode,
        )

    def _rules(self) -> InputRules:
        rules = self.service.input_rules
        if rules is None:
            raise NoModelError("no model is installed", expected="an active artifact", got=None)
        return rules

    def _read_body(self) -> bytes | None:
        """The body, or None once refused (answered, closing) or cut (stalled or closed: no answer)."""
        if b"chunked" in self.headers.get(b"transfer-encoding", b"").lower():
            self._error(
                EdgefleetError("chunked bodies are refused", code="length_required", expected="Length"),
                status=411,
                close=True,
            )
            return None
        raw = self.headers.get(b"content-length")
        if raw is None:
            self._error(
                EdgefleetError("a Content-Length is required", code="length_required", got=raw),
                status=411,
                close=True,
            )
            return None
        length = int(raw)  # h11 has checked it is digits
        if length > self.config.max_body_bytes:
            self._error(
                EdgefleetError(
                    "request body too large",
                    code="body_too_large",
                    expected=f"<= {self.config.max_body_bytes} bytes",
                    got=length,
                ),
                status=413,
                close=True,
            )
            return None
        return self._receive_body()

    def _receive_body(self) -> bytes | None:
        parts: list[bytes] = []
        try:
            while True:
                event = self._next_event()
                if isinstance(event, h11.Data):
                    parts.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(parts)
                else:
                    return None
        except (OSError, h11.RemoteProtocolError):  # stalled, or closed before the body was complete
            return None

    def _discard_body(self) -> bool:
        """Read and drop a GET's body so the connection stays usable; False when it is kept unread."""
        if b"transfer-encoding" in self.headers:
            return False
        length = int(self.headers.get(b"content-length", b"0"))
        return length <= self.config.max_body_bytes and self._receive_body() is not None


class _BoundedConnections:
    """Mixed into the servers: at most ``max_connections`` handler threads; the rest get a canned 503."""

    max_connections = 64
    _active = 0
    _active_lock: threading.Lock

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            if self._active >= self.max_connections:
                refuse = True
            else:
                refuse = False
                self._active += 1
        if refuse:
            with contextlib.suppress(OSError):
                request.sendall(_BUSY_RESPONSE)
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        super().process_request(request, client_address)  # type: ignore[misc]

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):  # a client hung up or stalled
            log.debug("event=http_client_gone error=%s", exc)
            return
        log.exception("event=http_handler_crashed")

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            with self._active_lock:
                self._active -= 1


class _TcpServer(_BoundedConnections, socketserver.ThreadingMixIn, socketserver.TCPServer):
    """TCPServer.server_bind does no reverse DNS lookup of the bind address (HTTPServer's did)."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False


class _UnixServer(_BoundedConnections, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False


class LocalEndpoint:
    """Serve ``service`` over HTTP in a background thread. ``url`` (TCP) or ``socket_path`` (Unix)."""

    def __init__(self, service: InferenceService, config: EndpointConfig | None = None) -> None:
        self.config = config or EndpointConfig()
        handler = type("Handler", (_Handler,), {"service": service, "config": self.config})
        server: _TcpServer | _UnixServer
        if self.config.unix_socket is not None:
            path = Path(self.config.unix_socket)
            with contextlib.suppress(FileNotFoundError):
                if path.is_socket():
                    path.unlink()  # a stale socket of an earlier run
            server = _UnixServer(str(path), handler)
            os.chmod(path, 0o660)
        else:
            server = _TcpServer((self.config.host, self.config.port), handler)
        server.max_connections = self.config.max_connections
        server._active_lock = threading.Lock()
        self._server = server
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.config.unix_socket is not None:
            return f"unix://{self.config.unix_socket}"
        host, port = self._tcp_address()
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._tcp_address()[1] if self.config.unix_socket is None else 0

    def _tcp_address(self) -> tuple[str, int]:
        address = self._server.server_address
        if not isinstance(address, tuple):
            raise TypeError(f"not a TCP endpoint: {address!r}")
        return str(address[0]), int(address[1])

    def start(self) -> LocalEndpoint:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="edgefleet-serve-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.config.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                Path(self.config.unix_socket).unlink()

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
