"""The local HTTP endpoint on a real loopback server (and a Unix socket): formats, 4xx codes, flood."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import (
    AdmissionPolicy,
    EndpointConfig,
    InferenceService,
    LocalEndpoint,
    ServingConfig,
    StaticSource,
)

from .conftest import FaultyAdapter, classifier, two_inputs, write_artifact, x


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class Client:
    def __init__(self, endpoint: LocalEndpoint) -> None:
        self.port = endpoint.port

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def predict_json(self, inputs: dict, **headers: str) -> tuple[int, dict[str, str], dict]:
        status, head, body = self.request(
            "POST",
            "/v1/predict",
            json.dumps({"inputs": inputs}).encode(),
            {"Content-Type": "application/json"},
        )
        return status, head, json.loads(body)


@pytest.fixture
def served(artifact) -> Iterator[tuple[InferenceService, Client]]:
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter(), ServingConfig(max_batch=4))
    with LocalEndpoint(service) as endpoint:
        yield service, Client(endpoint)


def test_json_tensors_in_and_out_with_version_and_mode(served):
    service, client = served
    status, head, body = client.predict_json({"x": x(2).tolist()})
    assert status == 200
    assert head["x-edgefleet-model-version"] == "digits/1.0.0"
    assert head["x-edgefleet-serving-mode"] == "preferred"
    assert (body["model_version"], body["mode"]) == ("digits/1.0.0", "preferred")
    expected = service.predict({"x": x(2)}).outputs["probs"]
    np.testing.assert_allclose(np.array(body["outputs"]["probs"]["data"], np.float32), expected, rtol=1e-6)


def test_npy_in_npy_out(served):
    _, client = served
    status, head, body = client.request(
        "POST", "/v1/predict", npy(x(3)), {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    )
    assert status == 200
    assert head["content-type"] == "application/x-npy"
    assert head["x-edgefleet-serving-mode"] == "preferred"
    assert np.load(io.BytesIO(body)).shape == (3, 4)


def test_npz_for_a_model_with_several_inputs(tmp_path):
    art = write_artifact(tmp_path / "two", two_inputs())
    service = InferenceService(StaticSource(art), OnnxRuntimeAdapter(), ServingConfig(max_batch=2))
    buffer = io.BytesIO()
    np.savez(buffer, a=np.ones((2, 3), np.float32), b=np.full((2, 3), 5, np.int64))
    with LocalEndpoint(service) as endpoint:
        client = Client(endpoint)
        status, _, body = client.request(
            "POST", "/v1/predict", buffer.getvalue(), {"Content-Type": "application/x-npz"}
        )
        assert status == 200
        assert json.loads(body)["outputs"]["y"]["data"] == [[7.0] * 3] * 2
        status, _, body = client.predict_json({"a": [[1, 1, 1]], "b": [[1.5, 0, 0]]})  # float for int64
        assert (status, body["code"]) == (400, "tensor_dtype_mismatch")
        status, _, body = client.request(
            "POST", "/v1/predict", npy(np.ones((1, 3), np.float32)), {"Content-Type": "application/x-npy"}
        )
        assert (status, json.loads(body)["code"]) == (400, "body_malformed")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (npy(np.zeros((1, 16), np.float64)), "application/x-npy", 400, "tensor_dtype_mismatch"),
        (npy(np.zeros((1, 15), np.float32)), "application/x-npy", 400, "tensor_shape_mismatch"),
        (npy(np.zeros((5, 16), np.float32)), "application/x-npy", 400, "tensor_batch_too_large"),
        (b"\x93NUMPY garbage", "application/x-npy", 400, "body_malformed"),
        (b"PK\x03\x04 not a zip", "application/x-npz", 400, "body_malformed"),
        (b"{not json", "application/json", 400, "body_malformed"),
        (b'{"x": [[1]]}', "application/json", 400, "body_malformed"),
        (b'{"inputs": {"x": "a string"}}', "application/json", 400, "tensor_malformed"),
        (b'{"inputs": {"x": [[1, 2], [3]]}}', "application/json", 400, "tensor_malformed"),
        (b'{"inputs": {"y": [[1]]}}', "application/json", 400, "tensor_names_mismatch"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "body_malformed"),
        (b"hello", "text/plain", 415, "body_unsupported_type"),
    ],
)
def test_bad_bodies_get_a_4xx_with_a_stable_code_and_the_mode(served, body, content_type, status, code):
    _, client = served
    got_status, head, raw = client.request("POST", "/v1/predict", body, {"Content-Type": content_type})
    answer = json.loads(raw)
    assert (got_status, answer["code"]) == (status, code)
    assert head["x-edgefleet-serving-mode"] == "preferred"
    assert head["x-edgefleet-model-version"] == "digits/1.0.0"


def test_oversized_and_unsized_bodies_are_refused_before_reading(artifact):
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())
    with LocalEndpoint(service, EndpointConfig(max_body_bytes=1024)) as endpoint:
        client = Client(endpoint)
        status, _, raw = client.request(
            "POST", "/v1/predict", b"0" * 2048, {"Content-Type": "application/json"}
        )
        assert (status, json.loads(raw)["code"]) == (413, "body_too_large")
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 411")


def test_npz_bomb_is_refused_by_its_uncompressed_size(artifact):
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", b"\0" * 5_000_000)
    with LocalEndpoint(service, EndpointConfig(max_body_bytes=100_000)) as endpoint:
        status, _, raw = Client(endpoint).request(
            "POST", "/v1/predict", buffer.getvalue(), {"Content-Type": "application/x-npz"}
        )
    assert (status, json.loads(raw)["code"]) == (413, "body_too_large")


def test_flood_beyond_the_queue_is_refused_fast_with_retry_after(tmp_path, faults):
    art = write_artifact(tmp_path / "a", classifier(1))
    admission = AdmissionPolicy(max_concurrent=1, max_queue=1, queue_timeout_s=30)
    service = InferenceService(StaticSource(art), FaultyAdapter(faults), ServingConfig(admission=admission))
    faults.hold = threading.Event()  # from now on runs block until released
    with LocalEndpoint(service) as endpoint:
        client = Client(endpoint)
        results: list[int] = []

        def call() -> None:
            results.append(client.predict_json({"x": x().tolist()})[0])

        first = threading.Thread(target=call)
        first.start()
        assert faults.entered.acquire(timeout=30)  # the first request is running
        second = threading.Thread(target=call)
        second.start()
        deadline = time.monotonic() + 30
        while service.status()["queue"]["waiting"] < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        status, head, body = client.predict_json({"x": x().tolist()})
        assert (status, body["code"]) == (503, "server_busy")
        assert int(head["retry-after"]) >= 1
        assert head["x-edgefleet-serving-mode"] == "preferred"
        faults.hold.set()
        first.join(30)
        second.join(30)
        assert results == [200, 200]
        assert service.status()["queue"]["refused"] == 1


def test_connections_beyond_the_limit_get_an_immediate_503(artifact):
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())
    with (
        LocalEndpoint(service, EndpointConfig(max_connections=1)) as endpoint,
        socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as held,
    ):
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.recv(4096).startswith(b"HTTP/1.1 200")  # keep-alive: the connection stays open
        status, _, raw = Client(endpoint).request("GET", "/healthz")
        assert (status, json.loads(raw)["code"]) == (503, "too_many_connections")


def test_status_and_unknown_paths(served):
    _, client = served
    status, _, raw = client.request("GET", "/v1/status")
    assert status == 200
    assert json.loads(raw)["mode"] == "preferred"
    status, head, raw = client.request("GET", "/nope")
    assert (status, json.loads(raw)["code"]) == (404, "not_found")
    assert head["x-edgefleet-model-version"] == "digits/1.0.0"


def test_non_loopback_address_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="non-loopback"):
        EndpointConfig(host="0.0.0.0")
    assert EndpointConfig(host="0.0.0.0", allow_non_loopback=True).host == "0.0.0.0"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def test_unix_socket_serves_the_same_api(artifact, tmp_path):
    path = tmp_path / "serve.sock"
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())
    with LocalEndpoint(service, EndpointConfig(unix_socket=path)):
        assert path.is_socket()
        assert oct(path.stat().st_mode & 0o777) == oct(0o660)
        conn = UnixConnection(path)
        conn.request("POST", "/v1/predict", npy(x()), {"Content-Type": "application/x-npy"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("X-Edgefleet-Serving-Mode") == "preferred"
        assert len(json.loads(resp.read())["outputs"]["probs"]["data"][0]) == 4
        conn.close()
    assert not path.exists()


def read_response(sock: socket.socket, buffered: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response off a raw socket (Content-Length framed); bytes past it stay in ``buffered``."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response head"
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        rest += chunk
    buffered[:] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n",  # TLS to plain HTTP
    ],
)
def test_malformed_http_gets_a_json_400_and_the_server_keeps_serving(served, request_bytes, caplog):
    _, client = served
    caplog.set_level(logging.DEBUG, logger="edgefleet.agent.serve.http")
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        status, head, body = read_response(sock, bytearray())
        assert sock.recv(4096) == b""  # the connection is closed after it
    assert (status, json.loads(body)["code"]) == (400, "request_malformed")
    assert head["x-edgefleet-serving-mode"] == "preferred"
    assert head["x-edgefleet-model-version"] == "digits/1.0.0"
    assert client.request("GET", "/healthz")[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_an_oversized_head_and_an_unknown_method_get_json_errors(served):
    _, client = served
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000)  # no end in sight
        status, _, body = read_response(sock, bytearray())
    assert (status, json.loads(body)["code"]) == (431, "headers_too_large")
    status, head, raw = client.request("DELETE", "/v1/predict")
    assert (status, json.loads(raw)["code"]) == (405, "method_not_allowed")
    assert head["x-edgefleet-serving-mode"] == "preferred"
    status, head, raw = client.request("HEAD", "/healthz")
    assert (status, raw) == (200, b"")
    assert client.request("GET", "/healthz")[0] == 200


def test_keep_alive_serves_three_requests_on_one_connection(served):
    _, client = served
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    try:
        conn.connect()
        sock = conn.sock
        for method, path, body, headers in [
            ("GET", "/healthz", None, {}),
            ("POST", "/v1/predict", npy(x(2)), {"Content-Type": "application/x-npy"}),
            ("GET", "/v1/status", None, {}),
        ]:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("X-Edgefleet-Serving-Mode") == "preferred"
            json.loads(resp.read())
            assert conn.sock is sock  # the same connection, not a reconnect
    finally:
        conn.close()


def test_pipelined_requests_sent_in_pieces_are_answered_in_order(served):
    _, client = served
    body = npy(x(1))
    predict = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    stream = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + predict + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(stream), 7):  # split inside request lines, headers and the body
            sock.sendall(stream[i : i + 7])
            time.sleep(0.001)
        buffered = bytearray()
        answers = [read_response(sock, buffered) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 404]
    assert json.loads(answers[0][2]) == {"ok": True, "mode": "preferred"}
    assert len(json.loads(answers[1][2])["outputs"]["probs"]["data"]) == 1
    assert json.loads(answers[2][2])["code"] == "not_found"


def test_a_stalled_body_is_cut_after_the_read_timeout(artifact):
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())
    with (
        LocalEndpoint(service, EndpointConfig(read_timeout_s=0.3)) as endpoint,
        socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock,
    ):
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed without an answer
        assert time.monotonic() - started < 5
        assert Client(endpoint).request("GET", "/healthz")[0] == 200


def test_expect_100_continue_and_an_unsupported_transfer_encoding(served):
    _, client = served
    body = npy(x(1))
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, _, raw = read_response(sock, bytearray())
        assert (status, len(json.loads(raw)["outputs"]["probs"]["data"])) == (200, 1)
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
        status, head, raw = read_response(sock, bytearray())
    assert (status, json.loads(raw)["code"]) == (411, "length_required")
    assert head["x-edgefleet-model-version"] == "digits/1.0.0"
