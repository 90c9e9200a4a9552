"""Resumable, verified, atomic downloads under injected faults."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from edgefleet.client.errors import IntegrityError, ServerUnreachableError
from edgefleet.client.transfer import download_verified, part_path
from edgefleet.protocol.errors import EdgefleetError

from .range_server import RangeServer

DATA = os.urandom(3 * 1024 * 1024 + 17)


def _get(server: RangeServer, dest: Path, **kwargs: object) -> Path:
    with httpx.Client(base_url="http://blobs.test", transport=server.transport()) as http:
        return download_verified(
            http,
            "/v1/blobs/x",
            dest,
            sha256=server.sha256,
            length=len(server.data),
            sleep=lambda _s: None,
            **kwargs,  # type: ignore[arg-type]
        )


def test_whole_download_lands_atomically(tmp_path: Path) -> None:
    server = RangeServer(DATA)
    seen: list[int] = []
    dest = _get(server, tmp_path / "model.onnx", progress=seen.append)
    assert dest.read_bytes() == DATA
    assert sum(seen) == len(DATA)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_cut_connections_resume_with_range_and_if_range(tmp_path: Path) -> None:
    server = RangeServer(DATA, cut_after=[1000, 500_000])
    dest = _get(server, tmp_path / "f")
    assert dest.read_bytes() == DATA
    assert "range" not in server.requests[0]
    assert server.requests[1]["range"] == "bytes=1000-"
    assert server.requests[1]["if-range"] == f'"{server.sha256}"'
    assert server.requests[2]["range"] == "bytes=501000-"


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    server = RangeServer(DATA, cut_after=[4096])
    with pytest.raises(ServerUnreachableError) as info:
        _get(server, dest, max_attempts=1)
    assert info.value.code == "server_unreachable"
    assert not dest.exists()
    assert part_path(dest, server.sha256).stat().st_size == 4096
    server.requests.clear()
    _get(server, dest)
    assert dest.read_bytes() == DATA
    assert server.requests[0]["range"] == "bytes=4096-"


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    server = RangeServer(DATA, cut_after=[2000], ignore_range=True)
    dest = _get(server, tmp_path / "f")
    assert dest.read_bytes() == DATA


def test_corrupt_bytes_are_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    server = RangeServer(DATA, corrupt=True)
    dest = tmp_path / "f"
    with pytest.raises(IntegrityError) as info:
        _get(server, dest)
    assert info.value.code == "sha256_mismatch"
    assert info.value.details["expected"] == server.sha256
    assert list(tmp_path.iterdir()) == []


def test_more_bytes_than_promised_are_refused_while_streaming(tmp_path: Path) -> None:
    server = RangeServer(DATA, extra_bytes=10)
    with pytest.raises(IntegrityError) as info:
        _get(server, tmp_path / "f")
    assert info.value.code == "length_mismatch"
    assert list(tmp_path.iterdir()) == []


def test_refused_connections_are_retried_then_reported(tmp_path: Path) -> None:
    server = RangeServer(DATA, refuse_connections=2)
    assert _get(server, tmp_path / "a").read_bytes() == DATA
    server = RangeServer(DATA, refuse_connections=10)
    with pytest.raises(ServerUnreachableError):
        _get(server, tmp_path / "b", max_attempts=3)
    assert len(server.requests) == 3


def test_error_answer_keeps_the_server_code(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"code": "blob_not_found", "message": "no such blob", "details": {}})

    transport = httpx.MockTransport(handler)
    with (
        httpx.Client(base_url="http://t", transport=transport) as http,
        pytest.raises(EdgefleetError) as info,
    ):
        download_verified(http, "/v1/blobs/x", tmp_path / "f", sha256="0" * 64, length=1)
    assert info.value.code == "blob_not_found"
    assert type(info.value).__name__ == "NotFoundError"
