"""Registry throughput: artifact upload and ranged download against a plain file copy, same machine, same run.

Starts a real control plane (``edgefleet server --dev``, its own process, uvicorn on loopback), then for
``--mib`` MiB of random bytes measures, each as the median of ``--repeats`` runs:

- copy:     ``shutil.copyfile`` + fsync of the same bytes (the baseline);
- upload:   ``EdgefleetClient.upload_blob`` (local sha256 pass + streamed PUT, server hashes and fsyncs);
- ranged:   ``--ranges`` parallel-free ``Range: bytes=a-b`` GETs written into place, fsync, sha256 check;
- download: ``EdgefleetClient.download_blob`` (resumable, verified, atomic).

Prints MiB/s for each and the ratio to the copy. Usage: ``.venv/bin/python bench/registry.py [--mib 64]``.
"""

from __future__ import annotations

import argparse
import hashlib
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

import httpx

from edgefleet.client import EdgefleetClient

MIB = 1024 * 1024


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
        proc, url, token = _start_server(root / "server", max_blob_bytes=size * 2)
        try:
            copy_s = _timed(
                lambda i: (shutil.copyfile(sources[i], root / f"copy-{i}"), _fsync(root / f"copy-{i}")),
                args.repeats,
            )
            with EdgefleetClient(url, token, timeout_s=300) as client:
                shas: list[str] = []

                def upload(i: int) -> None:
                    shas.append(client.upload_blob(sources[i], skip_existing=False).sha256)

                upload_s = _timed(upload, args.repeats)
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
    print(f"{'operation':<34}{'MiB/s':>10}{'ratio vs copy':>16}")
    rows = [
        ("plain file copy + fsync (baseline)", copy_s),
        ("upload (sha256 + streamed PUT)", upload_s),
        (f"ranged download ({args.ranges} ranges)", ranged_s),
        ("download (resumable, verified)", download_s),
    ]
    for label, seconds in rows:
        print(f"{label:<34}{rate(seconds):>10.1f}{copy_s / seconds:>16.3f}")


if __name__ == "__main__":
    main()
