"""Registry throughput: artifact upload and ranged download against a plain file copy, same machine, same run.

Starts a real control plane (``edgefleet server --dev``, its own process, uvicorn on loopback), then for
``--mib`` MiB of random bytes measures, each as the median of ``--repeats`` runs:

- copy:     ``shutil.copyfile`` + fsync of the same bytes (the baseline);
- blob:     ``EdgefleetClient.upload_blob`` (local sha256 pass + streamed PUT, server hashes and fsyncs);
- artifact: ``push_artifact`` (what ``edgefleet artifact push`` does) of an artifact directory whose model
            file is ``--mib`` MiB of new bytes: ``POST /v1/artifacts/check``, the blob uploads the check asks
            for, then ``POST /v1/artifacts`` (registration); check and registration are also timed alone;
- ranged:   ``--ranges`` parallel-free ``Range: bytes=a-b`` GETs written into place, fsync, sha256 check;
- download: ``EdgefleetClient.download_blob`` (resumable, verified, atomic).

Prints MiB/s for each and the ratio to the copy, and the share of the artifact upload that is check +
registration. Usage: ``.venv/bin/python bench/registry.py [--mib 64]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from edgefleet.client import EdgefleetClient
from edgefleet.client.artifact_dir import load_artifact_dir, push_artifact
from edgefleet.protocol import ArtifactManifest, parse_classes_toml
from edgefleet.sim.artifacts import stand_in_manifest

MIB = 1024 * 1024
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "hardware-classes.toml"
ARTIFACT_CLASS = "factory-gateway-gpu"  # the example class with the largest model budget (2000 MiB)
MODEL = "bench-registry"


class TimingClient(EdgefleetClient):
    """The real client, with the two registry calls of a push timed (seconds per call)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_s: list[float] = []
        self.register_s: list[float] = []

    def check_artifact(self, manifest: ArtifactManifest) -> list[str]:
        start = time.perf_counter()
        try:
            return super().check_artifact(manifest)
        finally:
            self.check_s.append(time.perf_counter() - start)

    def register_artifact(self, manifest: ArtifactManifest) -> Any:
        start = time.perf_counter()
        try:
            return super().register_artifact(manifest)
        finally:
            self.register_s.append(time.perf_counter() - start)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(data_dir: Path, max_blob_bytes: int) -> tuple[subprocess.Popen[bytes], str, str]:
    port = _free_port()
    token = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "EDGEFLEET_ADMIN_TOKEN": token,
        "EDGEFLEET_MAX_BLOB_BYTES": str(max_blob_bytes),
        "EDGEFLEET_LOG_LEVEL": "warning",
    }
    script = Path(sys.executable).parent / "edgefleet"
    cmd = [
        str(script),
        "server",
        "--dev",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url, token
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("server did not start within 60 s")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _timed(run: Callable[[int], None], repeats: int) -> float:
    """Median seconds of ``run(i)`` over ``repeats`` runs."""
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ranged_get(http: httpx.Client, sha256: str, dest: Path, length: int, ranges: int) -> None:
    step = -(-length // ranges)
    with open(dest, "wb") as out:
        out.truncate(length)
        for start in range(0, length, step):
            end = min(start + step, length) - 1
            with http.stream("GET", f"/v1/blobs/{sha256}", headers={"Range": f"bytes={start}-{end}"}) as resp:
                if resp.status_code != 206:
                    raise SystemExit(f"expected 206 for a range, got {resp.status_code}")
                out.seek(start)
                for chunk in resp.iter_bytes():
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    digest = hashlib.sha256()
    with open(dest, "rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise SystemExit("ranged download produced different bytes")


def _artifact_dir(root: Path, i: int, size: int) -> tuple[Path, bytes]:
    """An artifact directory of ``size`` new bytes of model and a small golden file, its manifest naming a
    source of its own (so no blob of the push is on the server before it); returns it and that source."""
    directory = root / f"artifact-{i}"
    directory.mkdir()
    files = {"model.onnx": os.urandom(size), "golden.npz": os.urandom(4096)}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    source = b"bench-source-" + os.urandom(32)
    manifest = stand_in_manifest(
        model=MODEL, version=f"1.0.{i}", hardware_class=ARTIFACT_CLASS, files=files
    ).to_dict()
    manifest["optimization"]["source_sha256"] = hashlib.sha256(source).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="payload size in MiB (default 64)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ranges", type=int, default=8, help="ranges per ranged download (default 8)")
    args = parser.parse_args()
    size = args.mib * MIB

    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-") as tmp:
        root = Path(tmp)
        sources = []
        for i in range(args.repeats):  # distinct bytes per upload, so none is deduplicated
            path = root / f"payload-{i}.bin"
            path.write_bytes(os.urandom(size))
            sources.append(path)
        artifacts = [_artifact_dir(root, i, size) for i in range(args.repeats)]
        proc, url, token = _start_server(root / "server", max_blob_bytes=size * 2)
        try:
            copy_s = _timed(
                lambda i: (shutil.copyfile(sources[i], root / f"copy-{i}"), _fsync(root / f"copy-{i}")),
                args.repeats,
            )
            with TimingClient(url, token, timeout_s=300) as client:
                shas: list[str] = []

                def upload(i: int) -> None:
                    shas.append(client.upload_blob(sources[i], skip_existing=False).sha256)

                upload_s = _timed(upload, args.repeats)
                client.apply_classes(parse_classes_toml(EXAMPLES.read_text()))
                client.create_model(MODEL)
                for i, (_, source) in enumerate(artifacts):  # the trained sources, registered beforehand
                    source_sha = hashlib.sha256(source).hexdigest()
                    client.upload_blob_bytes(source, sha256=source_sha)
                    client.create_version(MODEL, f"1.0.{i}", source_sha256=source_sha)
                artifact_s = _timed(lambda i: push_artifact(client, artifacts[i][0]), args.repeats)
                if len(client.register_s) != args.repeats:
                    raise SystemExit("every push must check and register once")
                check_s = statistics.median(client.check_s)
                register_s = statistics.median(client.register_s)
                verify_s = _timed(lambda i: load_artifact_dir(artifacts[i][0]), args.repeats)
                with httpx.Client(
                    base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300
                ) as http:
                    ranged_s = _timed(
                        lambda i: _ranged_get(http, shas[i], root / f"ranged-{i}", size, args.ranges),
                        args.repeats,
                    )
                download_s = _timed(
                    lambda i: client.download_blob(shas[i], root / f"download-{i}", length=size), args.repeats
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def rate(seconds: float) -> float:
        return size / MIB / seconds

    print(
        f"registry benchmark: {args.mib} MiB, median of {args.repeats}, "
        f"server on loopback, {os.cpu_count()} CPUs"
    )
    print(f"{'operation':<36}{'MiB/s':>10}{'ratio vs copy':>16}")
    rows = [
        ("plain file copy + fsync (baseline)", copy_s),
        ("blob upload (sha256 + streamed PUT)", upload_s),
        ("artifact upload (check+blobs+reg.)", artifact_s),
        (f"ranged download ({args.ranges} ranges)", ranged_s),
        ("download (resumable, verified)", download_s),
    ]
    for label, seconds in rows:
        print(f"{label:<36}{rate(seconds):>10.1f}{copy_s / seconds:>16.3f}")
    print(
        f"artifact registration: check {check_s * 1000:.1f} ms + register {register_s * 1000:.1f} ms"
        f" (medians) = {(check_s + register_s) / artifact_s:.1%} of the artifact upload"
    )
    print(
        f"artifact upload, local check of the directory before sending (sha256 of every file):"
        f" {verify_s * 1000:.1f} ms = {verify_s / artifact_s:.1%}"
    )


if __name__ == "__main__":
    main()
