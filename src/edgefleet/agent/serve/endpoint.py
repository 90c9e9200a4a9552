"""The local HTTP endpoint: stdlib ``http.server`` on loopback or a Unix socket (no web framework).

``POST /v1/predict`` takes ``application/json`` (``{"inputs": {"<name>": nested list}}``),
``application/x-npy`` (one-input models) or ``application/x-npz``; it answers JSON (or ``.npy``/``.npz``
when ``Accept`` asks). Every response, errors included, carries ``X-Edgefleet-Model-Version``,
``X-Edgefleet-Artifact`` and ``X-Edgefleet-Serving-Mode``. ``GET /v1/status`` is the service
status; ``GET /healthz`` a liveness answer.

Bounds: a body over ``max_body_bytes`` is refused before it is read (413), a body without Content-Length is
refused (411), a client that stalls is cut after ``read_timeout_s``, at most ``max_connections`` connections
get a thread (the rest get an immediate 503), and inference itself goes through the service's bounded queue
(503 + Retry-After when full).
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from edgefleet.agent.serve.codec import JSON_TYPE, decode_inputs, encode_outputs, response_type
from edgefleet.agent.serve.errors import BadTensorError, NoModelError
from edgefleet.agent.serve.service import InferenceService
from edgefleet.agent.serve.validate import InputRules
from edgefleet.protocol.errors import EdgefleetError

__all__ = ["EndpointConfig", "LocalEndpoint"]

log = logging.getLogger("edgefleet.agent.serve.http")
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgefleet-agent"
    sys_version = ""
    service: InferenceService
    config: EndpointConfig

    def setup(self) -> None:
        # typeshed declares ``timeout`` a ClassVar; socketserver reads it per instance, which is what we need
        self.timeout = self.config.read_timeout_s  # type: ignore[misc]
        super().setup()
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            # headers and body go out as two writes: without this, Nagle + delayed ACK add ~40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def address_string(self) -> str:  # Unix sockets have no peer address
        return str(self.client_address[0]) if self.client_address else "local"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

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
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Edgefleet-Model-Version", version or service.model_version or "none")
        self.send_header("X-Edgefleet-Artifact", artifact or service.artifact_id or "none")
        self.send_header("X-Edgefleet-Serving-Mode", mode or service.mode)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, exc: EdgefleetError, *, status: int | None = None, close: bool = False) -> None:
        body = {
            **exc.to_body(),
            "model_version": self.service.model_version,
            "mode": self.service.mode,
        }
        extra: dict[str, str] = {}
        retry = getattr(exc, "retry_after_s", None)
        if isinstance(retry, int):
            extra["Retry-After"] = str(retry)
        if close:
            extra["Connection"] = "close"
            self.close_connection = True
        self._send(status or exc.http_status, json.dumps(body, default=str).encode("utf-8"), extra=extra)

    # --- routes ----------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/v1/status":
            self._send(200, json.dumps(self.service.status(), default=str).encode("utf-8"))
        elif path == "/healthz":
            self._send(200, json.dumps({"ok": True, "mode": self.service.mode}).encode("utf-8"))
        else:
            self._error(EdgefleetError("no such path", code="not_found", got=path[:200]), status=404)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/v1/predict":
            missing = EdgefleetError("no such path", code="not_found", got=path[:200])
            self._error(missing, status=404, close=True)
            return
        body = self._read_body()
        if body is None:
            return
        service = self.service
        try:
            inputs = decode_inputs(
                body,
                self.headers.get("Content-Type", ""),
                self._rules(),
                max_decoded_bytes=self.config.max_body_bytes * 4,
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
        kind = response_type(self.headers.get("Accept"), len(prediction.outputs))
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
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._error(
                EdgefleetError("chunked bodies are refused", code="length_required", expected="Length"),
                status=411,
                close=True,
            )
            return None
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self._error(
                EdgefleetError("a Content-Length is required", code="length_required", got=raw),
                status=411,
                close=True,
            )
            return None
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
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError):
            self.close_connection = True
            return None
        if len(body) != length:
            self.close_connection = True
            return None
        return body


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


class _TcpServer(_BoundedConnections, ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup of the bind address
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


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
