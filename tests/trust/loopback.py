"""A real HTTP server on loopback serving a directory (a plain static mirror) with Range support and
injectable faults per path: replaced bodies, trickling, endless bodies, dropped connections, ignored ranges.

Used by the trust and agent download tests (load it by path; the tests directories are not packages)."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["Fault", "Mirror"]


@dataclasses.dataclass
class Fault:
    body: bytes | None = None
    """Serve these bytes instead of the file (swapped, truncated or extended content)."""
    trickle_delay_s: float = 0.0
    """Send one byte, sleep, repeat."""
    endless: bool = False
    """Send bytes forever (no Content-Length)."""
    drop_after: int | None = None
    """Announce the full length, send this many bytes, close the connection."""
    ignore_range: bool = False
    status: int | None = None
    times: int = -1
    """How many requests this fault applies to (-1: all)."""


class Mirror:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.faults: dict[str, Fault] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                mirror._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            fault = self.faults.get(path)
            if fault is None or fault.times == 0:
                return None
            if fault.times > 0:
                fault.times -= 1
            return fault

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0].lstrip("/")
        rng = h.headers.get("Range")
        with self._lock:
            self.requests.append((path, rng))
        fault = self._fault_for(path) or Fault()
        if fault.status is not None:
            self._plain(h, fault.status, b"fault")
            return
        if fault.endless:
            h.send_response(200)
            h.send_header("Connection", "close")
            h.end_headers()
            try:
                while True:
                    h.wfile.write(b"\0" * 65536)
            except OSError:
                return
        if fault.body is not None:
            body = fault.body
        else:
            file = self.root / path
            if ".." in path.split("/") or not file.is_file():
                self._plain(h, 404, b"not found")
                return
            body = file.read_bytes()
        status, start = 200, 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and not fault.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                self._plain(h, 416, b"range not satisfiable")
                return
            status = 206
        payload = body[start:]
        h.send_response(status)
        h.send_header("Content-Length", str(len(payload)))
        h.send_header("Connection", "close")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.end_headers()
        try:
            if fault.drop_after is not None:
                h.wfile.write(payload[: fault.drop_after])
                h.wfile.flush()
                h.close_connection = True
                return
            if fault.trickle_delay_s:
                for i in range(len(payload)):
                    h.wfile.write(payload[i : i + 1])
                    h.wfile.flush()
                    time.sleep(fault.trickle_delay_s)
                return
            h.wfile.write(payload)
        except OSError:
            return

    @staticmethod
    def _plain(h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
