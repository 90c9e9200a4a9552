"""A real webhook receiver on loopback for alert tests: verifies every body's HMAC signature."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edgefleet.protocol.webhooks import SIGNATURE_HEADER, verify_signature

__all__ = ["SECRET", "Receiver"]

SECRET = "receiver-secret-0123456789"


class Receiver:
    """A tiny threaded HTTP server that verifies each body's signature; answers 503 to the first
    ``fail_first`` requests, then 204."""

    def __init__(self, *, fail_first: int = 0, clock: Callable[[], datetime] | None = None) -> None:
        self.fail_first = fail_first
        self.received: list[dict] = []
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                now_s = owner.clock().timestamp()
                verified = verify_signature(SECRET, self.headers[SIGNATURE_HEADER], body, now_s=now_s)
                owner.received.append(
                    {
                        "verified": verified,
                        "event": json.loads(body),
                        "kind": self.headers["X-Edgefleet-Event"],
                        "delivery": self.headers["X-Edgefleet-Delivery"],
                    }
                )
                failing = len(owner.received) <= owner.fail_first
                self.send_response(503 if failing or not verified else 204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
