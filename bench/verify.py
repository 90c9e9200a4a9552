"""Cost of content verification on the device, as a ratio of the raw download time.

A 100 MB artifact is published into a TUF image repository served by a plain static HTTP server on
loopback. Baseline: streaming the file to disk with httpx (no checks). Measured: a full TUF refresh (root,
timestamp, snapshot, targets) + target lookup, and the sha256 of the downloaded file; also the complete
verified ``Downloader.fetch`` for reference. Loopback is the worst case for this ratio: on a real link
the download takes far longer while verification costs the same.

    .venv/bin/python bench/verify.py [--mb 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import threading
import time
from datetime import datetime, timezone
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from edgefleet.agent.install.download import Downloader, DownloadPolicy
from edgefleet.trust.keys import init_keys, load_signer
from edgefleet.trust.publish import publish_to_repository
from edgefleet.trust.repository import ImageRepository, OnlineSigners
from edgefleet.trust.verify import DeviceTrust


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


def _artifact(directory: Path, size: int) -> None:
    directory.mkdir()
    model = os.urandom(size)
    files = {"model.onnx": model, "golden.npz": b"golden"}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    manifest = {
        "model": "bench",
        "version": "1.0.0",
        "hardware_class": "medical-cart-cpu",
        "runtime": {"name": "onnxruntime"},
        "entrypoint": "model.onnx",
        "files": [
            {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for n, d in files.items()
        ],
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}],
        },
        "optimization": {"source_sha256": "0" * 64},
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 10},
        "release_counter": 1,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keyset = init_keys(tmp / "keys", now=now)
        signers = OnlineSigners(
            load_signer(tmp / "keys/snapshot.key"), load_signer(tmp / "keys/timestamp.key")
        )
        repo = ImageRepository.create(tmp / "repo", keyset.root_bytes, signers, now=now)
        _artifact(tmp / "art", args.mb * 1024 * 1024)
        publish_to_repository(repo, tmp / "art", load_signer(tmp / "keys/release.key"), now=now)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp / "repo")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        info = repo.targets().signed.targets["bench/1.0.0/medical-cart-cpu/model.onnx"]
        sha = info.hashes["sha256"]
        url = f"{base}/targets/bench/1.0.0/medical-cart-cpu/{sha}.model.onnx"
        raw_s, verify_s, fetch_s = [], [], []
        with httpx.Client() as client:
            for i in range(args.rounds):
                out = tmp / f"raw-{i}"
                t0 = time.perf_counter()
                with client.stream("GET", url) as resp, open(out, "wb") as fh:
                    for chunk in resp.iter_bytes():
                        fh.write(chunk)
                raw_s.append(time.perf_counter() - t0)

                t0 = time.perf_counter()
                trust = DeviceTrust(
                    tmp / f"meta-{i}",
                    f"{base}/metadata/",
                    f"{base}/targets/",
                    client=client,
                    bootstrap_root=keyset.root_bytes,
                )
                trust.refresh(now)
                assert trust.target_info(info.path, now) is not None
                digest = hashlib.sha256()
                with open(out, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        digest.update(chunk)
                assert digest.hexdigest() == sha
                verify_s.append(time.perf_counter() - t0)
                out.unlink()

                t0 = time.perf_counter()
                dl = Downloader(tmp / f"staging-{i}", client, DownloadPolicy(reserve_bytes=0))
                dl.fetch(url, sha256=sha, length=info.length).unlink()
                fetch_s.append(time.perf_counter() - t0)
        server.shutdown()
    raw, ver, fet = min(raw_s), min(verify_s), min(fetch_s)
    print(f"artifact: {args.mb} MB on loopback, best of {args.rounds}")
    print(f"raw download (baseline):        {raw:.3f} s")
    print(f"TUF refresh + lookup + sha256:  {ver:.3f} s  -> ratio {ver / raw:.2f}x of the raw download")
    print(f"verified resumable fetch total: {fet:.3f} s  -> ratio {fet / raw:.2f}x of the raw download")


if __name__ == "__main__":
    main()
