"""The device channel against hostile servers on a real loopback socket: an endless body is cut at the
byte cap while it streams, and a trickling one at the overall deadline; each with its stable code, in
bounded time."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.channel import (
    DEADLINE_CODE,
    TOO_LARGE_CODE,
    UNREACHABLE_CODE,
    DeviceChannel,
    ServerUnreachableError,
)
from edgefleet.protocol.errors import EdgefleetError

Send = Callable[[socket.socket, threading.Event], None]
MAX_TEST_S = 5.0


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        rest += chunk


class LoopbackServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers every request with ``send(conn, stop)``."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                _read_request(conn)
                self._send(conn, self._stop)
            except OSError:  # the client hung up: what these tests expect
                pass

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(timeout=2)


def _endless(status: str) -> Send:
    def send(conn: socket.socket, stop: threading.Event) -> None:
        # no content-length, no chunking: the body ends when the connection does (never)
        conn.sendall(f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\r\n".encode())
        block = b"x" * 65536
        while not stop.is_set():
            conn.sendall(block)

    return send


def _trickle(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")
    while not stop.is_set():
        conn.sendall(b" ")
        time.sleep(0.05)


def _silent_after_headers(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
    stop.wait(MAX_TEST_S)


def _gzip_json(conn: socket.socket, stop: threading.Event) -> None:
    body = gzip.compress(json.dumps({"ok": True}).encode())
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _trickled_head(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stop.is_set():  # a header a byte at a time: every read succeeds, the head never ends
        conn.sendall(b"x")
        time.sleep(0.05)


def _endless_informational(conn: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():  # 1xx after 1xx: each is skipped, no final answer ever comes
        conn.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")
        time.sleep(0.01)


def _gzip_then_more(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n\r\n")
    conn.sendall(gzip.compress(b"{}"))  # a complete gzip stream, then data zlib would only pile up
    block = b"x" * 65536
    while not stop.is_set():
        conn.sendall(block)


def _empty_deflate_blocks(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: deflate\r\n\r\n")
    conn.sendall(b"\x78\x9c")  # a zlib header, then empty stored blocks: input that inflates to nothing
    while not stop.is_set():
        conn.sendall(b"\x00\x00\x00\xff\xff" * 1000)
        time.sleep(0.01)


@pytest.fixture
def serve() -> Iterator[Callable[[Send], DeviceChannel]]:
    servers: list[LoopbackServer] = []
    channels: list[DeviceChannel] = []

    def start(send: Send) -> DeviceChannel:
        server = LoopbackServer(send)
        servers.append(server)
        channel = DeviceChannel(
            server.url,
            device_id="dev_" + "0" * 20,
            key=Ed25519PrivateKey.generate(),
            timeout_s=0.5,
            deadline_s=1.0,
            max_response_bytes=200_000,
        )
        channels.append(channel)
        return channel

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    ("send", "error_type", "code", "details"),
    [
        # An endless 200 body: cut at the cap while streaming, long before the deadline.
        (_endless("200 OK"), EdgefleetError, TOO_LARGE_CODE, {"expected": "<= 200000 bytes"}),
        # A body that trickles a byte every 50 ms: every read succeeds, the overall deadline ends it.
        (_trickle, ServerUnreachableError, DEADLINE_CODE, {"expected": "<= 1.0 s"}),
        # Headers, then silence: the per-read timeout ends it.
        (_silent_after_headers, ServerUnreachableError, UNREACHABLE_CODE, {"got": "TimeoutError"}),
        # An endless error body is not read past a small cap; the error is judged on its status.
        (_endless("503 Service Unavailable"), EdgefleetError, None, {"status": 503}),
        # A head that trickles, and 1xx answers without end: the overall deadline holds before the head too.
        (_trickled_head, ServerUnreachableError, DEADLINE_CODE, {"expected": "<= 1.0 s"}),
        (_endless_informational, ServerUnreachableError, DEADLINE_CODE, {"expected": "<= 1.0 s"}),
        # Data after a complete gzip stream is refused at once (zlib would keep it, unbounded and unseen).
        (_gzip_then_more, ServerUnreachableError, UNREACHABLE_CODE, {"got": "TransportError"}),
        # Compressed input that inflates to nothing still meets the deadline.
        (_empty_deflate_blocks, ServerUnreachableError, DEADLINE_CODE, {"expected": "<= 1.0 s"}),
    ],
)
def test_hostile_answers_end_in_bounded_time_with_a_stable_code(serve, send, error_type, code, details):
    channel = serve(send)
    started = time.monotonic()
    with pytest.raises(error_type) as caught:
        channel.request("GET", "/v1/device/desired-state")
    elapsed_s = time.monotonic() - started
    assert elapsed_s < MAX_TEST_S
    if code is not None:
        assert caught.value.code == code
    for key, value in details.items():
        assert caught.value.details[key] == value
    if code == DEADLINE_CODE:
        assert 1.0 <= caught.value.details["got"] < 2.0  # ended within one read of the deadline


def test_an_endless_body_is_cut_while_it_streams_not_after(serve):
    """The cap ends the read after about ``max_response_bytes``: far less than the server would send."""
    channel = serve(_endless("200 OK"))
    started = time.monotonic()
    with pytest.raises(EdgefleetError) as caught:
        channel.request("GET", "/v1/device/desired-state")
    assert caught.value.code == TOO_LARGE_CODE
    assert time.monotonic() - started < channel.deadline_s  # the cap, not the deadline, ended it


def test_a_normal_answer_is_returned_whole_and_decoded(serve):
    channel = serve(_gzip_json)
    response = channel.request("GET", "/v1/device/desired-state")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
