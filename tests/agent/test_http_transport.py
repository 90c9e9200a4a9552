"""The device channel on the standard library's HTTP client (``agent.http_transport``), against a real
loopback HTTP server: signed requests and their answers, error bodies with their class and code, a
compressed answer inflated under the byte cap, the server's clock, proxies from the environment; and the
resident agent's channel and sync loop import no httpx. (``test_channel_bounds`` holds the same channel to
hostile servers.)"""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.http_transport import StdlibTransport
from edgefleet.protocol.errors import ConflictError, EdgefleetError, RateLimitedError
from edgefleet.protocol.request_signing import parse_signed_headers, verify_request_signature

DEVICE = "dev_" + "1" * 20
KEY = Ed25519PrivateKey.generate()
JSON = {"content-type": "application/json"}


class Recorder(BaseHTTPRequestHandler):
    """Answers each request with the server's planned reply and records what arrived."""

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        server: Any = self.server
        server.seen.append((self.command, self.path, dict(self.headers.items()), body))
        status, headers, content = server.reply(self.command, self.path)
        headers = dict(headers)
        if "date" in headers:  # send_response writes the Date header itself
            date = headers.pop("date")
            self.date_time_string = lambda timestamp=None: date  # type: ignore[method-assign]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Any]:
    httpd: Any = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.seen = []
    httpd.reply = lambda method, path: (200, JSON, b'{"ok": true}')
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def channel_for() -> Iterator[Callable[..., DeviceChannel]]:
    made: list[DeviceChannel] = []

    def make(url: str, **kwargs: Any) -> DeviceChannel:
        channel = DeviceChannel(url, device_id=DEVICE, key=KEY, **kwargs)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        channel.close()


def test_requests_are_signed_and_answered(server, channel_for) -> None:
    server.reply = lambda method, path: (
        (304, {}, b"") if path == "/v1/poll" else (200, JSON, b'{"acked": [1]}')
    )
    channel = channel_for(server.url)
    assert channel.request("GET", "/v1/poll", headers={"if-none-match": '"3"'}).status_code == 304
    answer = channel.request("POST", "/v1/report?x=1", json_body={"b": 1, "a": [1.5, None]})
    assert answer.status_code == 200
    assert answer.json() == {"acked": [1]}
    assert answer.headers["content-type"] == "application/json"
    raw = channel.request("POST", "/v1/raw", body_bytes=b"\x00\x01gz", headers={"content-encoding": "gzip"})
    assert raw.content == b'{"acked": [1]}'

    (_, _, h1, b1), (_, _, h2, b2), (_, _, h3, b3) = server.seen
    assert h1["if-none-match"] == '"3"'
    assert b1 == b""
    assert b2 == b'{"a":[1.5,null],"b":1}'  # canonical JSON: the bytes the signature covers
    assert h2["content-type"] == "application/json"
    assert b3 == b"\x00\x01gz"
    assert h3["content-encoding"] == "gzip"
    for method, path, headers, body in server.seen:
        claims = parse_signed_headers(headers)
        assert claims.device_id == DEVICE
        verify_request_signature(
            KEY.public_key(), claims, method=method, path=path, body=body, now_s=time.time()
        )


def test_a_server_url_prefix_is_kept(server, channel_for) -> None:
    channel_for(server.url + "/edge/")
    channel = channel_for(server.url + "/edge")
    channel.request("GET", "/v1/poll?a=1")
    assert server.seen[-1][1] == "/edge/v1/poll?a=1"


def test_error_answers_keep_their_class_code_and_details(server, channel_for) -> None:
    conflict_body = {"code": "generation_conflict", "message": "stale", "details": {"expected": 4, "got": 3}}
    replies = {
        "/conflict": (409, JSON, json.dumps(conflict_body).encode()),
        "/busy": (429, {"retry-after": "7"}, b""),
    }
    server.reply = lambda method, path: replies[path]
    channel = channel_for(server.url)
    with pytest.raises(ConflictError) as conflict:
        channel.request("GET", "/conflict")
    assert conflict.value.code == "generation_conflict"
    assert conflict.value.details == {"expected": 4, "got": 3, "status": 409}
    with pytest.raises(RateLimitedError) as busy:
        channel.request("GET", "/busy")
    assert busy.value.details["retry_after_s"] == 7


def test_an_unreachable_server_is_server_unreachable(server, channel_for) -> None:
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    channel = channel_for(f"http://127.0.0.1:{port}", timeout_s=0.5, deadline_s=2.0)
    with pytest.raises(EdgefleetError) as unreachable:
        channel.request("GET", "/v1/poll")
    assert unreachable.value.code == "server_unreachable"
    assert unreachable.value.details["got"] == "ConnectionRefusedError"


def test_a_compressed_answer_is_inflated_and_a_compression_bomb_is_cut(server, channel_for) -> None:
    small = gzip.compress(json.dumps({"ok": [1, 2, 3]}).encode())
    bomb = gzip.compress(b"0" * 5_000_000)  # ~5 KB on the wire
    replies = {"/small": small, "/bomb": bomb}
    server.reply = lambda method, path: (200, {**JSON, "content-encoding": "gzip"}, replies[path])
    channel = channel_for(server.url, max_response_bytes=100_000)
    assert channel.request("GET", "/small").json() == {"ok": [1, 2, 3]}
    assert "accept-encoding" in {k.lower() for k in server.seen[-1][2]}
    with pytest.raises(EdgefleetError) as too_large:
        channel.request("GET", "/bomb")
    assert too_large.value.code == "response_too_large"
    assert len(bomb) < 100_000  # cut on what it inflates to, not on the bytes that came


def test_the_signing_clock_follows_the_server(server, channel_for) -> None:
    server_now = time.time() - 3600  # the device clock runs an hour ahead of the server
    server.reply = lambda method, path: (
        200,
        {"date": email.utils.formatdate(server_now, usegmt=True)},
        b"{}",
    )
    channel = channel_for(server.url)
    channel.request("GET", "/first")
    assert channel.clock_offset_s == pytest.approx(-3600, abs=5)
    channel.request("GET", "/second")
    signed_at = int(server.seen[-1][2]["x-edgefleet-timestamp"])
    assert abs(signed_at - server_now) < 60


def test_an_http_proxy_from_the_environment_gets_the_absolute_url(server, monkeypatch) -> None:
    """The loopback server stands in for the proxy: it sees the absolute URL and the proxy's credentials;
    a host named in NO_PROXY is reached directly."""
    proxy_port = server.server_address[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://edge%40site:s3cret@127.0.0.1:{proxy_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    channel = DeviceChannel("http://control.invalid:8080/api", device_id=DEVICE, key=KEY, timeout_s=2)
    assert channel.request("GET", "/v1/poll").json() == {"ok": True}
    _, target, headers, _ = server.seen[-1]
    assert target == "http://control.invalid:8080/api/v1/poll"
    assert headers["Host"] == "control.invalid:8080"
    assert headers["Proxy-Authorization"] == "Basic ZWRnZUBzaXRlOnMzY3JldA=="  # edge@site:s3cret
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    direct = DeviceChannel(server.url, device_id=DEVICE, key=KEY, timeout_s=2)
    direct.request("GET", "/v1/poll")
    assert server.seen[-1][1] == "/v1/poll"
    assert "Proxy-Authorization" not in server.seen[-1][2]


def _raw_server(answer: bytes) -> tuple[str, Callable[[], None]]:
    """A loopback server that reads one request and sends ``answer`` as is, then closes."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock.close


@pytest.mark.parametrize(
    ("answer", "status", "content"),
    [
        # the connection closes 90 bytes short of the promised length: not a short success
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", None, None),
        # a gzip body cut in half
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n"
            + gzip.compress(b'{"ok": true}' * 100)[:40],
            None,
            None,
        ),
        # a 304 may carry Transfer-Encoding: chunked with no body at all
        (b'HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nETag: "3"\r\n\r\n', 304, b""),
        # a repeated header reads as one, its values joined; raw deflate (no zlib header) is inflated too
        (
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-A: 2\r\nContent-Encoding: deflate\r\nConnection: close\r\n\r\n"
            + zlib.compress(b"{}")[2:-4],
            200,
            b"{}",
        ),
    ],
)
def test_framing_edge_cases(answer: bytes, status: int | None, content: bytes | None) -> None:
    url, stop = _raw_server(answer)
    channel = DeviceChannel(url, device_id=DEVICE, key=KEY, timeout_s=2)
    try:
        if status is None:
            with pytest.raises(EdgefleetError) as cut:
                channel.request("GET", "/v1/poll")
            assert cut.value.code == "server_unreachable"
            return
        response = channel.request("GET", "/v1/poll")
        assert response.status_code == status
        assert response.content == content
        if status == 200:
            assert response.headers["x-a"] == "1, 2"
    finally:
        stop()


@pytest.mark.parametrize(
    ("environ", "proxy"),
    [
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}, "http://lower:2"),
        ({"https_proxy": "http://lower:2", "HTTPS_PROXY": "http://upper:1"}, "http://lower:2"),
        ({"ALL_PROXY": "proxy.local:3128"}, "http://proxy.local:3128"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "localhost, *"}, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.org"}, "http://p:1"),
    ],
)
def test_proxies_from_the_environment(environ: dict[str, str], proxy: str | None) -> None:
    assert StdlibTransport("https://10.1.2.3", timeout_s=1, environ=environ)._proxy == proxy


def test_a_proxy_scheme_that_cannot_be_honoured_fails_each_request_clearly(monkeypatch) -> None:
    """Not used as an http proxy, not bypassed: every request fails (the agent keeps serving, backs off)."""
    monkeypatch.setenv("HTTPS_PROXY", "socks5://p:1080")
    channel = DeviceChannel("https://control.example", device_id=DEVICE, key=KEY, timeout_s=1)
    with pytest.raises(EdgefleetError) as refused:
        channel.request("GET", "/v1/poll")
    assert refused.value.code == "server_unreachable"
    assert "proxy must be an http:// URL" in refused.value.message


def test_https_goes_through_a_connect_tunnel_and_verifies_against_a_ca_bundle(tmp_path) -> None:
    """No TLS server here: the transport's wiring for an https server behind a proxy, as it will connect."""
    bundle = tmp_path / "empty-bundle.pem"
    bundle.write_text("")
    with pytest.raises(ssl.SSLError):  # an empty bundle is refused, not replaced by another store
        StdlibTransport("https://control.example", timeout_s=1, environ={"SSL_CERT_FILE": str(bundle)})
    transport = StdlibTransport(
        "https://control.example:8443", timeout_s=1, environ={"HTTPS_PROXY": "http://proxy.local:3128"}
    )
    connection, target, extra = transport._connect("/v1/poll")
    assert (connection.host, connection.port) == ("proxy.local", 3128)
    assert connection._tunnel_host == "control.example"  # type: ignore[attr-defined]
    assert connection._tunnel_port == 8443  # type: ignore[attr-defined]
    assert target == "/v1/poll"
    assert extra == {}
    with pytest.raises(ValueError, match="server URL must be"):
        StdlibTransport("ftp://control.example", timeout_s=1)


def test_the_resident_channel_and_sync_loop_import_no_httpx() -> None:
    code = "import sys, edgefleet.agent.channel, edgefleet.agent.sync, edgefleet.agent.app\n"
    code += "print(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout.replace("'", '"'))}
    assert "edgefleet" in loaded
    assert not loaded & {"httpx", "httpcore", "h11", "tuf", "securesystemslib", "cryptography"}
