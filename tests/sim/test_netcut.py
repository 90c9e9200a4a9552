"""The cuttable loopback link: forwards, drops and refuses while cut, comes back, and closes cleanly."""

from __future__ import annotations

import socket
import threading

import pytest

from edgefleet.sim.netcut import CuttableLink


@pytest.fixture
def echo_server():
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(timeout=5)


def _roundtrip(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"ping")
        return conn.recv(1024)


def _eof_or_reset(conn: socket.socket) -> bool:
    try:
        return conn.recv(1024) == b""
    except ConnectionResetError:
        return True


def _refused_or_closed(port: int) -> bool:
    """Accepted then closed at once (as a dead uplink would): the client reads EOF or a reset."""
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    except ConnectionRefusedError:
        return True
    with conn:
        try:
            conn.sendall(b"ping")
        except OSError:
            return True
        return _eof_or_reset(conn)


def test_forwards_until_cut_then_refuses_and_comes_back(echo_server: int) -> None:
    with CuttableLink("127.0.0.1", echo_server) as link:
        assert _roundtrip(link.port) == b"ping"
        link.cut()
        assert _refused_or_closed(link.port)
        link.restore()
        assert _roundtrip(link.port) == b"ping"


def test_a_cut_drops_open_connections_at_both_ends(echo_server: int) -> None:
    with CuttableLink("127.0.0.1", echo_server) as link:
        held = socket.create_connection(("127.0.0.1", link.port), timeout=5)
        held.sendall(b"one")
        assert held.recv(1024) == b"one"
        link.cut()
        assert _eof_or_reset(held)  # not a hang until the socket's timeout
        held.close()
        link.restore()
        # The echo server serves one connection at a time: this answers only if the cut ended the old one.
        assert _roundtrip(link.port) == b"ping"


def test_close_ends_its_accept_thread_and_frees_the_port(echo_server: int) -> None:
    before = {t.ident for t in threading.enumerate() if t.name == "netcut-accept"}
    link = CuttableLink("127.0.0.1", echo_server)
    link.close()
    after = {t.ident for t in threading.enumerate() if t.name == "netcut-accept"}
    assert after <= before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", link.port), timeout=2)
