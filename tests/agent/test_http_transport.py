"""The device channel on the standard library's HTTP client (``agent.http_transport``), against a real
loopback HTTP server: signed requests and their answers, error bodies with their class and code, a
compressed answer inflated under the byte cap, the server's clock, proxies from the environment; and the
resident agent's channel and sync loop import no httpx. (``test_channel_bounds`` holds the same channel to
hostile servers.)"""

from __future__ import annotations

import contextlib
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
from edgefleet.agent.http_transport import StdlibTransport, no_proxy_matches
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
    # h11 is not among them: the local endpoint and this channel frame HTTP/1.1 with it
    assert not loaded & {"httpx", "httpcore", "tuf", "securesystemslib", "cryptography"}


# The h11 transport: what it reads off the wire, NO_PROXY, host names, a real TLS server through a tunnel.


@pytest.mark.parametrize(
    ("answer", "content"),
    [
        # an informational answer before the final one is skipped
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", b"{}"),
        # a body without a length runs to the end of the connection
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 200_000, b"x" * 200_000),
        # a chunked body, gzip inside
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
            + b"%x\r\n" % len(gzip.compress(b"[1]"))
            + gzip.compress(b"[1]")
            + b"\r\n0\r\n\r\n",
            b"[1]",
        ),
        # zlib-wrapped deflate
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: 10\r\n\r\n"
            + zlib.compress(b"{}"),
            b"{}",
        ),
    ],
)
def test_answers_h11_frames(answer: bytes, content: bytes) -> None:
    url, stop = _raw_server(answer)
    try:
        response = DeviceChannel(url, device_id=DEVICE, key=KEY, timeout_s=2).request("GET", "/v1/poll")
        assert (response.status_code, response.content) == (200, content)
    finally:
        stop()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", "ended 90 bytes short of its length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123", "body broke off"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nnot gzip at all", "body broke off"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(b"{}")[:12], "before its end"),
        (b"", "ConnectionClosed"),  # closed without an answer
        (b"SSH-2.0-OpenSSH_9.6\r\n", "RemoteProtocolError"),
    ],
)
def test_answers_that_break_off_or_are_not_http_fail_the_request(answer: bytes, message: str) -> None:
    url, stop = _raw_server(answer)
    try:
        with pytest.raises(EdgefleetError) as failed:
            DeviceChannel(url, device_id=DEVICE, key=KEY, timeout_s=2).request("GET", "/v1/poll")
        assert failed.value.code == "server_unreachable"
        assert message in failed.value.message
    finally:
        stop()


def test_a_head_past_64_kib_fails_the_request() -> None:
    """h11 judges the head's size after each read: past 64 KiB still incomplete, the answer is refused."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = sock.accept()
        with conn, contextlib.suppress(OSError):  # the client gives up mid-head and resets
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 300_000 + b"\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        channel = DeviceChannel(
            f"http://127.0.0.1:{sock.getsockname()[1]}", device_id=DEVICE, key=KEY, timeout_s=2
        )
        with pytest.raises(EdgefleetError) as refused:
            channel.request("GET", "/v1/poll")
        assert "Receive buffer too long" in refused.value.message
    finally:
        sock.close()


def test_a_server_that_stalls_fails_the_step_after_its_timeout() -> None:
    sock = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    try:
        channel = DeviceChannel(
            f"http://127.0.0.1:{sock.getsockname()[1]}", device_id=DEVICE, key=KEY, timeout_s=0.3
        )
        started = time.monotonic()
        with pytest.raises(EdgefleetError) as stalled:
            channel.request("GET", "/v1/poll")
        assert stalled.value.code == "server_unreachable"
        assert stalled.value.details["got"] in ("TimeoutError", "timeout")
        assert time.monotonic() - started < 2
    finally:
        sock.close()


def test_the_request_on_the_wire(server, channel_for) -> None:
    """One connection per request, closed; the body's length on every request, as http.client sent it."""
    channel = channel_for(server.url)
    channel.request("GET", "/v1/poll")
    channel.request("POST", "/v1/report", body_bytes=b"abc")
    (_, _, get, _), (_, _, post, body) = server.seen
    assert get["Connection"] == "close"
    assert get["Content-Length"] == "0"
    assert get["Host"] == server.url.removeprefix("http://")
    assert (post["Content-Length"], body) == ("3", b"abc")


def test_a_host_name_reaches_the_socket_as_ascii_bytes(server, channel_for, monkeypatch) -> None:
    """So resolving it loads no ``idna`` codec; a name that is not ASCII is IDNA-encoded."""
    connected: list[Any] = []
    real = socket.create_connection

    def recording(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        connected.append(address[0])
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording)
    port = server.server_address[1]
    channel_for(f"http://localhost:{port}").request("GET", "/v1/poll")
    assert server.seen[-1][2]["Host"] == f"localhost:{port}"
    channel_for(server.url).request("GET", "/v1/poll")
    with pytest.raises(EdgefleetError):
        channel_for("http://bücher.invalid:1", timeout_s=1).request("GET", "/v1/poll")
    assert connected == [b"localhost", b"127.0.0.1", b"xn--bcher-kva.invalid"]


def test_a_host_name_that_is_not_ascii_goes_on_the_wire_idna_encoded(
    server, channel_for, monkeypatch
) -> None:
    """Host header, proxy target and socket all carry the A-label; a name IDNA cannot encode fails the request
    (``server_unreachable``), it does not crash the agent."""
    port = server.server_address[1]
    real = socket.create_connection
    monkeypatch.setattr(
        socket, "create_connection", lambda _a, *args, **kw: real(("127.0.0.1", port), *args, **kw)
    )
    channel_for(f"http://bücher.invalid:{port}").request("GET", "/v1/poll")
    assert server.seen[-1][2]["Host"] == f"xn--bcher-kva.invalid:{port}"
    assert server.seen[-1][1] == "/v1/poll"
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")  # the recording server plays the proxy
    channel_for(f"http://例え.jp:{port}").request("GET", "/v1/poll")
    assert server.seen[-1][1] == f"http://xn--r8jz45g.jp:{port}/v1/poll"
    assert server.seen[-1][2]["Host"] == f"xn--r8jz45g.jp:{port}"
    with pytest.raises(EdgefleetError) as caught:
        channel_for("http://" + "ü" * 70 + ".example:1").request("GET", "/v1/poll")
    assert caught.value.code == "server_unreachable"
    assert "has no IDNA form" in caught.value.message


NO_PROXY_CASES = [
    # (host, NO_PROXY, exempt)
    ("example.org", "example.org", True),  # the host itself
    ("EXAMPLE.org", "example.ORG", True),
    ("api.example.org", "example.org", True),  # a domain suffix, with or without its leading dot
    ("api.example.org", ".example.org", True),
    ("example.org", ".example.org", True),
    ("badexample.org", "example.org", False),  # a suffix only at a dot
    ("example.org.evil", "example.org", False),
    ("a.b.example.org", " other.net , .example.org ", True),
    ("example.org", "", False),
    ("example.org", " , ", False),
    ("example.org", "*", True),
    ("example.org", "localhost,*", True),
    ("example.org", "*.example.org", False),  # no wildcards but a lone *
    ("example.org", "example.org:8080", False),  # a port: the URL's host name carries none
    ("example.org", "example.org:8080,example.org", True),
    ("10.1.2.3", "10.1.2.3", True),  # IP literals: the address, a network containing it
    ("10.1.2.3", "10.0.0.0/8", True),
    ("10.1.2.3", "10.1.2.4", False),
    ("10.1.2.3", "192.168.0.0/16", False),
    ("10.1.2.3", ".2.3", True),  # as urllib: a suffix at a dot matches an address too
    ("::1", "::1", True),
    ("::1", "[::1]", True),
    ("2001:db8::5", "2001:db8::/32", True),
    ("2001:db8::5", "2001:db9::/32", False),
    ("fe80::1", "1", False),
    ("fe80::1", "fe80:", True),  # urllib cuts an IPv6 address at its last ":digits" as if a port
    ("localhost", "127.0.0.1", False),  # names are not resolved
]


@pytest.mark.parametrize(("host", "no_proxy", "exempt"), NO_PROXY_CASES)
def test_no_proxy_matching(host: str, no_proxy: str, exempt: bool) -> None:
    assert no_proxy_matches(host, no_proxy) is exempt


@pytest.mark.parametrize(("host", "no_proxy", "exempt"), NO_PROXY_CASES)
def test_no_proxy_matches_as_the_transport_on_urllib_did(host: str, no_proxy: str, exempt: bool) -> None:
    """The rule before h11, verbatim: ``*``, IP networks, then ``urllib.request.proxy_bypass_environment``."""
    import ipaddress
    import urllib.request

    def before(host: str, no_proxy: str) -> bool:
        entries = [e.strip().lower() for e in no_proxy.split(",") if e.strip()]
        if "*" in entries:
            return True
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        for entry in entries:
            if address is not None:
                with contextlib.suppress(ValueError):
                    if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                        return True
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        return bool(entries) and bool(bypass(host, {"no": ",".join(entries)}))

    assert before(host.lower(), no_proxy) is exempt
    extra = [(host.lower(), no_proxy + ",nothing.example"), (host.lower(), no_proxy.upper())]
    for other_host, other_no_proxy in extra:
        assert no_proxy_matches(other_host, other_no_proxy) is before(other_host, other_no_proxy)


def _tls_files(tmp_path: Any) -> tuple[str, str]:
    """A CA and a certificate it signed for localhost and 127.0.0.1: (the CA bundle, the key and chain)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(name: str, key: Any, issuer: x509.Name, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert(
        "test CA", ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]), ca_key, True
    )
    leaf = cert("localhost", leaf_key, ca.subject, ca_key, False)
    bundle, chain = tmp_path / "ca.pem", tmp_path / "server.pem"
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain.write_bytes(key_pem + leaf.public_bytes(serialization.Encoding.PEM))
    return str(bundle), str(chain)


@pytest.fixture
def tls_server(server, tmp_path) -> tuple[Any, str]:
    """The recording server behind TLS (a certificate for localhost and 127.0.0.1), and its CA bundle."""
    bundle, chain = _tls_files(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    server.socket = context.wrap_socket(server.socket, server_side=True)  # the server fixture closes it
    return server, bundle


def _connect_proxy(answer_head: bytes | None = None) -> tuple[int, list[bytes]]:
    """A one-shot proxy: records the CONNECT head; answers ``answer_head``, or 200 and relays both ways."""
    sock = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        client, _ = sock.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(65536)
        heads.append(head)
        if answer_head is not None:
            client.sendall(answer_head)
            client.close()
            return
        target = head.split(b" ")[1].decode()
        upstream = socket.create_connection(("127.0.0.1", int(target.rsplit(":", 1)[1])))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], heads


def test_https_is_verified_against_the_ca_bundle(tls_server, monkeypatch) -> None:
    server, bundle = tls_server
    port = server.server_address[1]
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", bundle)
    for host in ("localhost", "127.0.0.1"):  # a name and an address, both in the certificate
        answer = DeviceChannel(f"https://{host}:{port}", device_id=DEVICE, key=KEY, timeout_s=5).request(
            "GET", "/v1/poll"
        )
        assert answer.json() == {"ok": True}
        assert server.seen[-1][2]["Host"] == f"{host}:{port}"
    monkeypatch.delenv("SSL_CERT_FILE")  # certifi's bundle does not know the test CA
    with pytest.raises(EdgefleetError) as unverified:
        DeviceChannel(f"https://localhost:{port}", device_id=DEVICE, key=KEY, timeout_s=5).request("GET", "/")
    assert unverified.value.code == "server_unreachable"
    assert unverified.value.details["got"] == "SSLCertVerificationError"


def test_https_through_a_connect_tunnel_with_proxy_credentials(tls_server, monkeypatch) -> None:
    server, bundle = tls_server
    proxy_port, heads = _connect_proxy()
    monkeypatch.setenv("HTTPS_PROXY", f"http://edge:pw@127.0.0.1:{proxy_port}")
    for name in ("https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", bundle)
    url = f"https://localhost:{server.server_address[1]}/edge"
    answer = DeviceChannel(url, device_id=DEVICE, key=KEY, timeout_s=5).request("GET", "/v1/poll")
    assert answer.json() == {"ok": True}
    (head,) = heads
    authority = f"localhost:{server.server_address[1]}".encode()
    assert head.startswith(b"CONNECT " + authority + b" HTTP/1.1\r\n")
    assert b"\r\nProxy-Authorization: Basic ZWRnZTpwdw==\r\n" in head  # edge:pw, on the CONNECT only
    assert server.seen[-1][1] == "/edge/v1/poll"
    assert "Proxy-Authorization" not in server.seen[-1][2]


def test_a_refused_tunnel_fails_the_request(monkeypatch) -> None:
    proxy_port, _ = _connect_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
    for name in ("https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(EdgefleetError) as refused:
        DeviceChannel("https://control.example", device_id=DEVICE, key=KEY, timeout_s=5).request("GET", "/")
    assert refused.value.code == "server_unreachable"
    assert "Tunnel connection failed: 407 Proxy Authentication Required" in refused.value.message


def test_a_date_that_is_not_an_http_date_leaves_the_clock_offset(server, channel_for) -> None:
    dates = iter(["Sun, 06 Nov 1994 08:49:37 GMT", "yesterday", "Sun, 06 Nov 1994 08:49:37 +0100"])
    server.reply = lambda method, path: (200, {"date": next(dates)}, b"{}")
    channel = channel_for(server.url)
    channel.request("GET", "/first")
    offset = channel.clock_offset_s
    assert offset == pytest.approx(784111777 - time.time(), abs=5)
    channel.request("GET", "/second")
    channel.request("GET", "/third")
    assert channel.clock_offset_s == offset
