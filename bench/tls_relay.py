"""A TLS-terminating relay for a benchmark: ``https://127.0.0.1:<port>`` in front of a plain-http server.

``edgefleet server`` has no TLS option; a device talks to its control plane over https, so a bench that
measures the agent as a device runs it puts this in front of the server. ``write_certificates`` makes a
throwaway CA and a server certificate for ``127.0.0.1`` / ``localhost`` (PEM files; the client trusts the CA
through ``SSL_CERT_FILE``); ``TlsRelay`` accepts TLS on a free loopback port (``ssl.PROTOCOL_TLS_SERVER``) and
relays the bytes of each connection, both ways, to the upstream server: one thread per connection. It counts
the connections whose handshake completed (and those that failed), so the bench can show the client really
spoke TLS. It runs in the bench's own process, which is not what the bench measures.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "TlsRelay", "write_certificates"]


@dataclass(frozen=True)
class Certificates:
    ca: Path
    """The CA's certificate: what the client trusts (``SSL_CERT_FILE``)."""
    cert: Path
    """The server's certificate chain (the leaf, then the CA)."""
    key: Path


def write_certificates(directory: Path) -> Certificates:
    """A throwaway CA (EC P-256, a day's validity) and a server certificate it signs, for ``127.0.0.1``,
    ``::1`` and ``localhost``, written as PEM files into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("edgefleet bench CA"))
        .issuer_name(name("edgefleet bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    out = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    out.ca.write_bytes(ca_cert.public_bytes(pem))
    out.cert.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    out.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


class TlsRelay:
    """Accepts TLS on ``127.0.0.1:<port>`` and relays each connection's bytes to ``upstream`` (host, port).

    ``with TlsRelay(certs, ("127.0.0.1", 8000)) as relay: relay.url`` -> ``https://127.0.0.1:<port>``.
    """

    def __init__(self, certs: Certificates, upstream: tuple[str, int], *, timeout_s: float = 120.0) -> None:
        self._upstream = upstream
        self._timeout_s = timeout_s
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(certs.cert, certs.key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._served = 0
        self._failed = 0
        self.versions: set[str] = set()
        """The TLS versions negotiated (``TLSv1.3``)."""
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tls-relay", daemon=True)

    @property
    def served(self) -> int:
        """Connections whose TLS handshake completed, so far."""
        with self._lock:
            return self._served

    @property
    def failed(self) -> int:
        """Connections whose TLS handshake failed (or whose upstream could not be reached), so far."""
        with self._lock:
            return self._failed

    def __enter__(self) -> TlsRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(conn,), name="tls-relay-conn", daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        conn.settimeout(self._timeout_s)
        try:
            tls = self._context.wrap_socket(conn, server_side=True)
            up = socket.create_connection(self._upstream, timeout=self._timeout_s)
        except (OSError, ssl.SSLError):
            with self._lock:
                self._failed += 1
            conn.close()
            return
        with self._lock:
            self._served += 1
            self.versions.add(str(tls.version()))
        # a peer that goes away ends the connection, as it would at a real front end
        with tls, up, contextlib.suppress(OSError, ssl.SSLError):
            self._pump(tls, up)

    def _pump(self, tls: ssl.SSLSocket, up: socket.socket) -> None:
        """Both directions in this one thread (an SSL object is not used from two threads at once): bytes the
        TLS side decrypted may wait in its buffer (``pending``), so they are read before waiting on select."""
        client_open = True
        while True:
            if tls.pending():
                ready = [tls]
            else:
                waiting = [tls, up] if client_open else [up]
                ready, _, _ = select.select(waiting, [], [], self._timeout_s)
                if not ready:
                    return  # idle past the timeout
            if tls in ready:
                data = tls.recv(65536)
                if data:
                    up.sendall(data)
                else:  # the client closed its side: let the server finish its answer
                    client_open = False
                    with contextlib.suppress(OSError):
                        up.shutdown(socket.SHUT_WR)
            if up in ready:
                data = up.recv(65536)
                if not data:  # the server closed: close_notify to the client, then done
                    with contextlib.suppress(OSError, ssl.SSLError):
                        tls.settimeout(2)
                        tls.unwrap()
                    return
                tls.sendall(data)
