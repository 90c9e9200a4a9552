"""Smoke test of tools/tuf-conformance-client against our repository on a loopback mirror."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from edgefleet.trust.publish import publish_to_repository

from .fleet import NOW, Fleet

TOOL = Path(__file__).parents[2] / "tools" / "tuf-conformance-client"


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120)


def _setup(fleet: Fleet, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Publish an artifact, ``init`` a client; returns its metadata dir, target dir and the common
    arguments (the repository was signed at NOW, 2030: the client looks at it from then)."""
    publish_to_repository(fleet.repo, fleet.artifact(), fleet.release, now=NOW)
    meta, targets = tmp_path / "client-meta", tmp_path / "client-targets"
    meta.mkdir()
    targets.mkdir()
    root = tmp_path / "trusted-root.json"
    root.write_bytes(fleet.keyset.root_bytes)
    assert _client("--metadata-dir", str(meta), "init", str(root)).returncode == 0
    days = str((NOW - datetime.now(timezone.utc)).days)
    common = [
        "--metadata-dir",
        str(meta),
        "--metadata-url",
        f"{fleet.mirror.url}/metadata",
        "--days-in-future",
        days,
    ]
    return meta, targets, common


def test_init_refresh_download_and_reject(fleet: Fleet, tmp_path: Path) -> None:
    meta, targets, common = _setup(fleet, tmp_path)
    url = fleet.mirror.url
    done = _client(*common, "refresh")
    assert done.returncode == 0, done.stderr
    assert {"root.json", "timestamp.json", "snapshot.json", "targets.json"} <= {
        p.name for p in meta.iterdir()
    }
    names = ["digits/1.0.0/medical-cart-cpu/model.onnx", "digits/1.0.0/medical-cart-cpu/golden.npz"]
    done = _client(
        *common,
        *[a for n in names for a in ("--target-name", n)],
        "--target-base-url",
        f"{url}/targets",
        "--target-dir",
        str(targets),
        "download",
    )
    assert done.returncode == 0, done.stderr
    assert (targets / "digits%2F1.0.0%2Fmedical-cart-cpu%2Fmodel.onnx").stat().st_size > 0
    # a tampered timestamp: exit code 1
    path = fleet.repo.metadata_dir / "timestamp.json"
    doc = json.loads(path.read_bytes())
    doc["signed"]["version"] += 5
    path.write_text(json.dumps(doc))
    assert _client(*common, "refresh").returncode == 1
    missing = _client(
        *common, "--target-name", "nope", "--target-base-url", url, "--target-dir", str(targets), "download"
    )
    assert missing.returncode == 1


def test_argument_errors_exit_1_not_2(tmp_path: Path) -> None:
    for args in (
        [],  # no --metadata-dir, no command
        ["--metadata-dir", str(tmp_path), "bogus"],
        ["--metadata-dir", str(tmp_path), "init"],  # no TRUSTED_ROOT
        ["--metadata-dir", str(tmp_path), "refresh"],  # no --metadata-url
        ["--metadata-dir", str(tmp_path), "--metadata-url", "http://127.0.0.1:9/", "download"],
        ["--metadata-dir", str(tmp_path), "--days-in-future", "soon", "refresh"],
    ):
        done = _client(*args)
        assert done.returncode == 1, (args, done.returncode, done.stderr)
        assert "error" in done.stderr


def test_consistent_snapshot_targets_are_fetched_by_hash_prefixed_name_only(
    fleet: Fleet, tmp_path: Path
) -> None:
    _, targets, common = _setup(fleet, tmp_path)
    # a mirror that stores the target under its plain name only (not as the spec names it)
    name = "digits/1.0.0/medical-cart-cpu/golden.npz"
    sha = fleet.repo.targets().signed.targets[name].hashes["sha256"]
    prefixed = fleet.repo.targets_dir / "digits/1.0.0/medical-cart-cpu" / f"{sha}.golden.npz"
    prefixed.rename(fleet.repo.targets_dir / name)
    done = _client(
        *common, "--target-name", name, "--target-base-url", f"{fleet.mirror.url}/targets",
        "--target-dir", str(targets), "download",
    )  # fmt: skip
    assert done.returncode == 1
    asked = [path for path, _range in fleet.mirror.requests if path.startswith("targets/")]
    assert asked == [f"targets/digits/1.0.0/medical-cart-cpu/{sha}.golden.npz"], "no plain-name retry"
    assert not any(targets.iterdir())


def test_a_verified_target_already_held_is_not_downloaded_again(fleet: Fleet, tmp_path: Path) -> None:
    """The upstream suite's artifact-cache test: asked twice, the client fetches the target once."""
    _, targets, common = _setup(fleet, tmp_path)
    name = "digits/1.0.0/medical-cart-cpu/golden.npz"
    download = [*common, "--target-name", name, "--target-base-url", f"{fleet.mirror.url}/targets",
                "--target-dir", str(targets), "download"]  # fmt: skip

    def fetched() -> int:
        return sum(1 for path, _ in fleet.mirror.requests if path.startswith("targets/"))

    assert _client(*download).returncode == 0
    assert fetched() == 1
    assert _client(*download).returncode == 0
    assert fetched() == 1, "the held, verified copy is served from the target dir"
    # a held copy that no longer matches the verified hashes is fetched again (and verified)
    held = next(targets.iterdir())
    good = held.read_bytes()
    held.write_bytes(b"tampered")
    assert _client(*download).returncode == 0
    assert fetched() == 2
    assert held.read_bytes() == good


def test_the_conformance_client_bootstraps_from_its_trust_anchor_like_the_agent(
    fleet: Fleet, tmp_path: Path
) -> None:
    """``init`` keeps the trusted root apart; a tampered cached ``root.json`` cannot become the anchor."""
    meta, _, common = _setup(fleet, tmp_path)
    assert (meta / "trust-anchor" / "root.json").read_bytes() == fleet.keyset.root_bytes
    assert not [p.name for p in meta.glob("*.json") if p.name != "root.json"]  # the suite lists DIR/*.json
    (meta / "root.json").write_bytes(b'{"signed": "not a root"}')
    done = _client(*common, "refresh")
    assert done.returncode == 0, done.stderr
    assert {"timestamp.json", "snapshot.json", "targets.json"} <= {p.name for p in meta.iterdir()}


def test_the_conformance_client_keeps_the_devices_metadata_caps(fleet: Fleet, tmp_path: Path) -> None:
    _, _, common = _setup(fleet, tmp_path)
    path = fleet.repo.metadata_dir / "timestamp.json"
    doc = json.loads(path.read_bytes())
    doc["signed"]["x-padding"] = "x" * 20_000  # beyond the device's 16 KiB timestamp cap
    path.write_text(json.dumps(doc))
    done = _client(*common, "refresh")
    assert done.returncode == 1
    assert "larger than allowed" in done.stderr
