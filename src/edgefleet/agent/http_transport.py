"""The resident agent's HTTP client: the standard library's ``http.client`` and ``ssl``, not httpx.

Resident memory is imported code (issue 17). The agent's local endpoint (``http.server``) already imports
``http.client``, ``email`` and ``ssl``, so a client on them costs the agent its TLS context and little else
(+2.2 MiB measured on the build host, CA bundle included), where httpx with one client costs 8.9 MiB. The
channel (``agent.channel.DeviceChannel``) keeps every rule (signing, the clock offset, the byte cap, the
overall deadline, error bodies); this module only moves bytes:

- one connection per request (``Connection: close``): the agent talks every few seconds at most, and servers
  close idle keep-alive connections after a few seconds anyway, so a pool would rarely be reused and a stale
  one would fail a request;
- TLS verified against certifi's CA bundle, as httpx does (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` override it,
  as they do for httpx);
- proxies from the environment, as httpx does (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``):
  an ``https://`` server through a ``CONNECT`` tunnel, an ``http://`` one by absolute URL; ``user:pass@`` in
  the proxy URL is sent as basic proxy authorization; a proxy that is not ``http://`` (``socks5://``) fails
  every request with what was expected, rather than being used wrongly or bypassed;
- a gzip or deflate body is decoded as it arrives, in bounded steps, so the channel's byte cap applies to
  what the body inflates to (a compression bomb is cut like any oversized answer); a body that ends before
  its ``Content-Length`` or its compressed stream is a failed request, not a short answer.

A connection-level failure (refused, reset, TLS, a timeout on any step) raises ``TransportError``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import os
import ssl
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from urllib.parse import unquote, urlsplit

__all__ = ["CHUNK_BYTES", "StdlibAnswer", "StdlibTransport", "TransportError"]

CHUNK_BYTES = 65536
"""What one read from the socket, and one step of inflating a compressed body, may yield at most."""


class TransportError(Exception):
    """The request did not get an answer: connection refused or reset, TLS failure, a step's timeout."""


class StdlibAnswer:
    """An answer whose status and headers have arrived; ``chunks`` yields its (decoded) body."""

    def __init__(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        self._connection = connection
        self._response = response
        self.status: int = response.status
        self.headers: dict[str, str] = {}
        for name, value in response.getheaders():  # a repeated header reads as one, values joined
            key = name.lower()
            self.headers[key] = f"{self.headers[key]}, {value}" if key in self.headers else value

    def chunks(self) -> Iterator[bytes]:
        if self.status in (204, 304) or self.status < 200:
            return  # no body, whatever the framing headers say (a 304 may carry Transfer-Encoding)
        encoding = self.headers.get("content-encoding", "").strip().lower()
        inflate = None
        if encoding in ("gzip", "x-gzip"):
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            inflate = zlib.decompressobj()
        started = False
        try:
            while raw := self._response.read1(CHUNK_BYTES):
                if inflate is None:
                    yield raw
                    continue
                if not started and encoding == "deflate" and raw[:1] and (raw[0] & 0x0F) != 8:
                    inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, without a zlib header
                started = True
                data = inflate.decompress(raw, CHUNK_BYTES)
                while data:
                    yield data
                    data = inflate.decompress(inflate.unconsumed_tail, CHUNK_BYTES)
        except (OSError, http.client.HTTPException, zlib.error) as exc:
            raise TransportError(f"the answer's body broke off: {exc!r}") from exc
        if self._response.length:  # the connection closed before Content-Length bytes came
            raise TransportError(f"the answer's body ended {self._response.length} bytes short of its length")
        if inflate is not None and started and not inflate.eof:
            raise TransportError("the answer's compressed body ended before its end")

    def close(self) -> None:
        self._response.close()
        self._connection.close()


class StdlibTransport:
    def __init__(self, base_url: str, *, timeout_s: float, environ: Mapping[str, str] | None = None) -> None:
        """``timeout_s`` bounds the connect and each read and write; ``environ`` (``os.environ`` by default)
        names the proxies and CA files."""
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL must be http(s)://host[:port][/prefix], got {base_url!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path
        self._timeout_s = timeout_s
        env = dict(os.environ if environ is None else environ)
        self._proxy: str | None = None
        self._proxy_error: str | None = None
        try:
            self._proxy = _proxy_for(self._scheme, self._host, env)
        except ValueError as exc:  # each request fails with it: the agent keeps serving and backs off
            self._proxy_error = str(exc)
        self._context = _tls_context(env) if self._scheme == "https" else None

    def open(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> StdlibAnswer:
        """Send the request; return once the status and headers have arrived."""
        if self._proxy_error is not None:
            raise TransportError(self._proxy_error)
        connection, target, proxy_headers = self._connect(self._prefix + path)
        all_headers = {"Host": _host_header(self._host, self._port, self._scheme), "Connection": "close"}
        all_headers.update({"Accept-Encoding": "gzip, deflate", **proxy_headers, **headers})
        try:
            connection.request(method, target, body=body, headers=all_headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        return StdlibAnswer(connection, response)

    def close(self) -> None:
        """Nothing is held between requests."""

    def _connect(self, path: str) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        """The connection to open, the request target (the path, or the absolute URL through an HTTP proxy
        for an ``http://`` server) and the headers the proxy needs on the request itself."""
        if self._proxy is None:
            if self._context is not None:
                direct = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout_s, context=self._context
                )
                return direct, path, {}
            return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s), path, {}
        proxy = urlsplit(self._proxy)
        proxy_headers = {}
        if proxy.username is not None:
            token = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
            proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(token).decode()
        proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
        if self._context is not None:  # https server: a CONNECT tunnel through the proxy
            tunnel = http.client.HTTPSConnection(
                proxy.hostname or "", proxy_port, timeout=self._timeout_s, context=self._context
            )
            tunnel.set_tunnel(self._host, self._port, headers=proxy_headers)
            return tunnel, path, {}
        plain = http.client.HTTPConnection(proxy.hostname or "", proxy_port, timeout=self._timeout_s)
        return plain, f"http://{_host_header(self._host, self._port, 'http')}{path}", proxy_headers


def _host_header(host: str, port: int, scheme: str) -> str:
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default else f"{shown}:{port}"


def _proxy_for(scheme: str, host: str, env: dict[str, str]) -> str | None:
    """The proxy URL the environment names for ``scheme`` and ``host``, as httpx and urllib read it: a
    lower-case name overrides its upper-case twin (an empty one switches it off), ``ALL_PROXY`` is the
    fallback, ``NO_PROXY`` exempts hosts (names, ``.domain`` suffixes, IP networks, ``*``). Only
    ``http://`` proxies are supported: another scheme (``socks5://``, ``https://``) raises ``ValueError``."""
    names: dict[str, str] = {}
    for upper_first in (True, False):
        for key, value in env.items():
            if key.lower().endswith("_proxy") and key.isupper() == upper_first:
                names[key.lower()] = value
    proxy = names.get(f"{scheme}_proxy") or names.get("all_proxy")
    if not proxy or _bypassed(host, names.get("no_proxy", "")):
        return None
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    if urlsplit(proxy).scheme != "http":
        raise ValueError(f"proxy must be an http:// URL (a CONNECT tunnel carries TLS), got {proxy!r}")
    return proxy


def _bypassed(host: str, no_proxy: str) -> bool:
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
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # public, untyped
    return bool(entries) and bool(bypass(host, {"no": ",".join(entries)}))


def _tls_context(env: dict[str, str]) -> ssl.SSLContext:
    """Verified TLS: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, else certifi's bundle (httpx's default),
    else the system's store."""
    cafile, capath = env.get("SSL_CERT_FILE") or None, env.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        try:
            import certifi
        except ImportError:  # no certifi on this device: the system's CA store
            return ssl.create_default_context()
        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)
