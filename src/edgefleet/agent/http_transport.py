"""The resident agent's HTTP client: h11's HTTP/1.1 state machine on a plain socket (no httpx or http.client).

Resident memory is imported code (issue 17). httpx with one client costs the agent 8.9 MiB; the standard
library's ``http.client`` pulls ``email`` (its header parser) and ``ssl`` in for every server, and
``urllib.request`` (its proxy rules) pulls tempfile, shutil, bz2 and lzma. h11 (pure Python, already an httpx
dependency) only frames HTTP/1.1 messages; this module does the rest on a ``socket``, and imports ``ssl``
only for an ``https://`` server, h11 at the first request. The socket is given the host as ASCII bytes, so
resolving it does not load the ``idna`` codec (``unicodedata``) unless the name is not ASCII. The channel
(``agent.channel.DeviceChannel``) keeps every rule (signing, the clock offset, the byte cap, the overall
deadline, error bodies); this module only moves bytes:

- one connection per request (``Connection: close``): the agent talks every few seconds at most, and servers
  close idle keep-alive connections after a few seconds anyway, so a pool would rarely be reused and a stale
  one would fail a request;
- ``timeout_s`` bounds the connect (the TLS handshake included) and each read and write;
- TLS verified against certifi's CA bundle, as httpx does (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` override it,
  as they do for httpx);
- proxies from the environment, as httpx does (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``):
  an ``https://`` server through a ``CONNECT`` tunnel, an ``http://`` one by absolute URL; ``user:pass@`` in
  the proxy URL is sent as basic proxy authorization; a proxy that is not ``http://`` (``socks5://``) fails
  every request with what was expected, rather than being used wrongly or bypassed;
- a gzip or deflate body is decoded as it arrives, in bounded steps, so the channel's byte cap applies to
  what the body inflates to (a compression bomb is cut like any oversized answer); a body that ends before
  its ``Content-Length`` or its compressed stream is a failed request, not a short answer.

A connection-level failure (refused, reset, TLS, a timeout on any step, an answer that is not HTTP) raises
``TransportError``. The class names (``StdlibTransport``, ``StdlibAnswer``) are kept from when this was
``http.client``: the channel and its callers import them.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import socket
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # both imported where first needed: ssl for an https server, h11 at the first request
    import ssl

    import h11

__all__ = ["CHUNK_BYTES", "StdlibAnswer", "StdlibTransport", "TransportError", "no_proxy_matches"]

CHUNK_BYTES = 65536
"""What one read from the socket, and one step of inflating a compressed body, may yield at most."""
_MAX_HEAD_BYTES = 65536
"""An answer's status line and headers together (h11 refuses a longer head: a failed request)."""


class TransportError(Exception):
    """The request did not get an answer: connection refused or reset, TLS failure, a step's timeout."""


class StdlibAnswer:
    """An answer whose status and headers have arrived; ``chunks`` yields its (decoded) body."""

    def __init__(
        self, sock: socket.socket, connection: h11.Connection, response: h11.Response, wait: _Wait
    ) -> None:
        self._sock = sock
        self._connection = connection
        self._wait = wait
        self.status: int = response.status_code
        self.headers: dict[str, str] = {}
        for name, value in response.headers:  # h11 gives the names lower-case; a repeated header reads as one
            key, text = name.decode("latin-1"), value.decode("latin-1")
            self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def chunks(self) -> Iterator[bytes]:
        import h11

        if self.status in (204, 304) or self.status < 200:
            return  # no body, whatever the framing headers say (a 304 may carry Transfer-Encoding)
        encoding = self.headers.get("content-encoding", "").strip().lower()
        inflate = None
        if encoding in ("gzip", "x-gzip"):
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            inflate = zlib.decompressobj()
        started = False
        received = 0
        try:
            while isinstance(event := _next_event(self._sock, self._connection, self._wait), h11.Data):
                raw = bytes(event.data)
                received += len(raw)
                if inflate is None:
                    yield raw
                    continue
                if inflate.eof:  # after the end of the compressed stream: nothing a client may take
                    raise TransportError("the answer carried data after the end of its compressed body")
                if not started and encoding == "deflate" and raw[:1] and (raw[0] & 0x0F) != 8:
                    inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, without a zlib header
                started = True
                data = inflate.decompress(raw, CHUNK_BYTES)
                yield data  # even empty (input that inflates to nothing): the channel checks its deadline
                while data := inflate.decompress(inflate.unconsumed_tail, CHUNK_BYTES):
                    yield data
                if inflate.unused_data:
                    raise TransportError("the answer carried data after the end of its compressed body")
        except h11.RemoteProtocolError as exc:  # h11 says so when the connection closes mid-body
            length = self._content_length()
            if length is not None and received < length:  # the connection closed before Content-Length bytes
                raise TransportError(
                    f"the answer's body ended {length - received} bytes short of its length"
                ) from exc
            raise TransportError(f"the answer's body broke off: {exc!r}") from exc
        except (OSError, zlib.error) as exc:
            raise TransportError(f"the answer's body broke off: {exc!r}") from exc
        if inflate is not None and started and not inflate.eof:
            raise TransportError("the answer's compressed body ended before its end")

    def close(self) -> None:
        self._sock.close()

    def _content_length(self) -> int | None:
        if "transfer-encoding" in self.headers:
            return None
        try:
            return int(self.headers["content-length"].split(",")[0])  # h11 checked repeated ones agree
        except (KeyError, ValueError):
            return None


class _Route:
    """Where a request's connection goes: ``host``:``port`` (the server, or the proxy), and for an ``https://``
    server the TLS context and, behind a proxy, the far end of the ``CONNECT`` tunnel and the headers the
    ``CONNECT`` carries (the proxy's credentials)."""

    __slots__ = ("_tunnel_headers", "_tunnel_host", "_tunnel_port", "context", "host", "port")

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None = None,
        tunnel: tuple[str, int] | None = None,
        tunnel_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.context = context
        self._tunnel_host: str | None = tunnel[0] if tunnel else None
        self._tunnel_port: int | None = tunnel[1] if tunnel else None
        self._tunnel_headers = dict(tunnel_headers or {})


class StdlibTransport:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        deadline_s: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``timeout_s`` bounds the connect and each read and write; ``deadline_s`` the whole wait for an
        answer's head and each read of its body after it (a server that drips its head a byte at a time, or
        sends ``1xx`` after ``1xx``, cannot hold the request past it); ``environ`` (``os.environ`` by
        default) names the proxies and CA files."""
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL must be http(s)://host[:port][/prefix], got {base_url!r}")
        self._scheme = parts.scheme
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path
        self._timeout_s = timeout_s
        self._deadline_s = deadline_s
        env = dict(os.environ if environ is None else environ)
        self._proxy: str | None = None
        self._unusable: str | None = None
        """Why every request fails (the agent keeps serving and backs off): a host name IDNA cannot encode,
        a proxy of an unsupported scheme."""
        try:
            self._host = _ascii_host(parts.hostname)  # what goes on the wire: Host, targets, SNI, the socket
        except UnicodeError as exc:
            self._host = parts.hostname
            self._unusable = f"the server's host name {parts.hostname!r} has no IDNA form: {exc}"
        self._context = _tls_context(env) if self._scheme == "https" else None
        self._route = _Route(self._host, self._port, self._context)
        self._absolute = ""
        """Before the path: the server's ``http://`` origin when an HTTP proxy forwards the request."""
        self._proxy_headers: dict[str, str] = {}
        try:
            self._proxy = _proxy_for(self._scheme, self._host, env)
            if self._proxy is not None and self._unusable is None:
                self._route_through(self._proxy)
        except UnicodeError as exc:  # a ValueError too: before it
            self._unusable = f"the proxy's host name has no IDNA form: {exc}"
        except ValueError as exc:
            self._unusable = self._unusable or str(exc)

    def open(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> StdlibAnswer:
        """Send the request; return once the status and headers have arrived."""
        import h11

        if self._unusable is not None:
            raise TransportError(self._unusable)
        route, target, proxy_headers = self._connect(self._prefix + path)
        all_headers = {"Host": _host_header(self._host, self._port, self._scheme), "Connection": "close"}
        all_headers.update({"Accept-Encoding": "gzip, deflate", **proxy_headers, **headers})
        if not any(name.lower() in ("content-length", "transfer-encoding") for name in all_headers):
            all_headers["Content-Length"] = str(len(body))  # as http.client sent it: on every request
        try:
            request = h11.Request(
                method=method.encode("ascii"),
                target=target.encode("ascii"),
                headers=[
                    (name.encode("ascii"), value.encode("latin-1")) for name, value in all_headers.items()
                ],
            )
        except (UnicodeError, h11.LocalProtocolError) as exc:  # a value no HTTP/1.1 message can carry
            raise TransportError(f"{method} {path}: the request cannot be sent: {exc}") from exc
        wait = _Wait(
            self._timeout_s, None if self._deadline_s is None else time.monotonic() + self._deadline_s
        )
        sock: socket.socket | None = None
        try:
            sock = self._socket(route, wait)
            connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
            sock.sendall(connection.send(request))
            if body:
                sock.sendall(connection.send(h11.Data(data=body)))
            sock.sendall(connection.send(h11.EndOfMessage()))
            response = _response(sock, connection, wait)
        except (OSError, h11.ProtocolError) as exc:
            if sock is not None:
                sock.close()
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        return StdlibAnswer(sock, connection, response, wait)

    def close(self) -> None:
        """Nothing is held between requests."""

    def _connect(self, path: str) -> tuple[_Route, str, dict[str, str]]:
        """Where to connect, the request target (the path, or the absolute URL through an HTTP proxy for an
        ``http://`` server) and the headers the proxy needs on the request itself (those of a ``CONNECT``
        tunnel go with the route): worked out once, at construction (``_route_through``)."""
        return self._route, self._absolute + path, self._proxy_headers

    def _route_through(self, proxy_url: str) -> None:
        """Requests go through the HTTP proxy at ``proxy_url``: an ``https://`` server through a ``CONNECT``
        tunnel (the proxy's credentials go on the ``CONNECT``), an ``http://`` one by absolute URL (they go on
        the request itself)."""
        proxy = urlsplit(proxy_url)
        credentials = {}
        if proxy.username is not None:
            token = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
            credentials["Proxy-Authorization"] = "Basic " + base64.b64encode(token).decode()
        proxy_host = _ascii_host(proxy.hostname or "")
        proxy_port = proxy.port or 80  # an http:// proxy (_proxy_for refuses any other)
        if self._context is not None:
            tunnel = (self._host, self._port)
            self._route = _Route(proxy_host, proxy_port, self._context, tunnel, credentials)
            return
        self._route = _Route(proxy_host, proxy_port)
        self._absolute = f"http://{_host_header(self._host, self._port, 'http')}"
        self._proxy_headers = credentials

    def _socket(self, route: _Route, wait: _Wait) -> socket.socket:
        """A connected socket to ``route``: through its tunnel, in TLS, when it has them."""
        # bytes: getaddrinfo takes them (typeshed says str), and a str would load the idna codec
        address = (route.host.encode("ascii"), route.port)
        sock = socket.create_connection(address, timeout=self._timeout_s)  # type: ignore[arg-type]
        try:
            if route.context is None:
                return sock
            server_host = route.host
            if route._tunnel_host is not None and route._tunnel_port is not None:
                _tunnel(sock, route._tunnel_host, route._tunnel_port, route._tunnel_headers, wait)
                server_host = route._tunnel_host
            return route.context.wrap_socket(sock, server_hostname=server_host.encode("ascii"))
        except BaseException:
            sock.close()
            raise


class _Wait:
    """How long a read may block: ``step_s`` each, none past ``deadline`` (monotonic) when there is one."""

    __slots__ = ("deadline", "step_s")

    def __init__(self, step_s: float, deadline: float | None) -> None:
        self.step_s = step_s
        self.deadline = deadline

    def arm(self, sock: socket.socket) -> None:
        """Set ``sock``'s timeout for its next read; past the deadline raise ``TimeoutError``."""
        if self.deadline is None:
            return
        left_s = self.deadline - time.monotonic()
        if left_s <= 0:
            raise TimeoutError("no complete answer within the request's deadline")
        sock.settimeout(min(self.step_s, left_s))


def _next_event(sock: socket.socket, connection: h11.Connection, wait: _Wait) -> object:
    """h11's next event, reading from ``sock`` (at most ``CHUNK_BYTES`` at a time) while it needs more."""
    import h11

    while (event := connection.next_event()) is h11.NEED_DATA:
        wait.arm(sock)
        connection.receive_data(sock.recv(CHUNK_BYTES))  # b"" at the end: h11 judges what it cut
    return event


def _response(sock: socket.socket, connection: h11.Connection, wait: _Wait) -> h11.Response:
    """The final answer's head (an informational ``1xx`` before it is skipped, as http.client did ``100``)."""
    import h11

    while not isinstance(event := _next_event(sock, connection, wait), h11.Response):
        if not isinstance(event, h11.InformationalResponse):
            raise ConnectionResetError(f"the connection closed without an answer ({event!r})")
    return event


def _tunnel(sock: socket.socket, host: str, port: int, proxy_headers: Mapping[str, str], wait: _Wait) -> None:
    """Ask the proxy on ``sock`` for a ``CONNECT`` tunnel to ``host``:``port``; an answer other than 2xx
    raises ``OSError`` (as http.client's did)."""
    import h11

    authority = _host_header(host, port, "")
    headers = [(b"Host", authority.encode("ascii"))]
    headers += [(name.encode("ascii"), value.encode("latin-1")) for name, value in proxy_headers.items()]
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
    connect = h11.Request(method=b"CONNECT", target=authority.encode("ascii"), headers=headers)
    sock.sendall(connection.send(connect) + connection.send(h11.EndOfMessage()))
    answer = _response(sock, connection, wait)
    if not 200 <= answer.status_code < 300:
        reason = answer.reason.decode("latin-1").strip()
        raise OSError(f"Tunnel connection failed: {answer.status_code} {reason}")
    if connection.trailing_data[0]:  # the server speaks TLS only after our hello
        raise OSError("the proxy sent data through the tunnel before the TLS handshake")


def _ascii_host(host: str) -> str:
    """``host`` as it goes on the wire: ASCII as is (names, IP literals), without loading the ``idna`` codec;
    a non-ASCII name IDNA-encoded (that loads the codec; ``UnicodeError`` when it has no IDNA form)."""
    return host if host.isascii() else host.encode("idna").decode("ascii")


def _host_header(host: str, port: int, scheme: str) -> str:
    default = 443 if scheme == "https" else 80 if scheme == "http" else None
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default else f"{shown}:{port}"


def _proxy_for(scheme: str, host: str, env: dict[str, str]) -> str | None:
    """The proxy URL the environment names for ``scheme`` and ``host``, as httpx and urllib read it: a
    lower-case name overrides its upper-case twin (an empty one switches it off), ``ALL_PROXY`` is the
    fallback, ``NO_PROXY`` exempts hosts (``no_proxy_matches``). Only ``http://`` proxies are supported:
    another scheme (``socks5://``, ``https://``) raises ``ValueError``."""
    names: dict[str, str] = {}
    for upper_first in (True, False):
        for key, value in env.items():
            if key.lower().endswith("_proxy") and key.isupper() == upper_first:
                names[key.lower()] = value
    proxy = names.get(f"{scheme}_proxy") or names.get("all_proxy")
    if not proxy or no_proxy_matches(host, names.get("no_proxy", "")):
        return None
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    if urlsplit(proxy).scheme != "http":
        raise ValueError(f"proxy must be an http:// URL (a CONNECT tunnel carries TLS), got {proxy!r}")
    return proxy


def no_proxy_matches(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (``no_proxy``, comma-separated) exempts ``host`` (a URL's host name: lower-case,
    no port, an IPv6 address without brackets) from the proxy.

    An entry matches when it is ``*``; an IP network or address containing ``host`` (an IP literal); and
    otherwise as ``urllib.request.proxy_bypass_environment`` matches it: the host itself or a domain
    suffix (``example.org`` and ``.example.org`` both match ``example.org`` and ``a.example.org``, not
    ``badexample.org``), names compared case-insensitively. An entry with a port (``example.org:8080``)
    matches no host name, since the host carries none; ``host`` is cut at a last ``:digits`` first, as
    urllib does (which only touches an IPv6 address)."""
    entries = [e.strip().lower() for e in no_proxy.split(",") if e.strip()]
    if "*" in entries:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        for entry in entries:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
    host = host.lower()
    hostonly, colon, port = host.rpartition(":")  # urllib's _splitport: "(.*):([0-9]*)", a port if digits
    if not (colon and port and all(c in "0123456789" for c in port)):
        hostonly = host
    for entry in entries:
        name = entry.lstrip(".")
        if name in (hostonly, host) or hostonly.endswith("." + name) or host.endswith("." + name):
            return True
    return False


def _tls_context(env: dict[str, str]) -> ssl.SSLContext:
    """Verified TLS: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, else certifi's bundle (httpx's default),
    else the system's store."""
    import ssl

    cafile, capath = env.get("SSL_CERT_FILE") or None, env.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        try:
            import certifi
        except ImportError:  # no certifi on this device: the system's CA store
            return ssl.create_default_context()
        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)
