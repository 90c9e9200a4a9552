"""``edgefleet publish`` of an artifact whose latency is unmeasured on its class (an accelerator class built
where its execution provider is missing): refused with the probe that settles it, published only with
``--accept-unmeasured-latency``, the acceptance signed into its targets and audited on the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Targets

from edgefleet.cli.exit_codes import ExitCode
from edgefleet.client import EdgefleetClient
from edgefleet.trust.target_custom import custom_of

from .conftest import Cli

CLASS = "jetson-vision-standard"
# what `edgefleet build` writes for such a class (edgefleet.optimize.select)
UNMEASURED = (
    "latency unmeasured here: TensorrtExecutionProvider is not available where the build ran (figures here "
    "were taken on CPUExecutionProvider, a stand-in); a probe on devices of the class settles it: edgefleet "
    f"probe create BUILD_DIR --class {CLASS}, then edgefleet build select BUILD_DIR --from-probe PROBE_ID"
)


def _artifact(demo_artifact: Any, version: str, metrics: dict[str, Any]) -> Path:
    directory, _ = demo_artifact(hardware_class=CLASS, version=version)
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["metrics"] = {**manifest.get("metrics", {}), **metrics}
    manifest["release_counter"] = int(version.split(".")[0])
    path.write_text(json.dumps(manifest))
    return directory


def _signed_custom(server: Any, path: str) -> dict[str, Any]:
    with EdgefleetClient(server.url, server.admin_token) as client:
        version = int(client.tuf_status()["targets_version"])
        raw = client.tuf_metadata(f"{version}.targets.json")
    info = Metadata[Targets].from_bytes(raw).signed.targets[path]
    return custom_of(info).model_dump(mode="json")


def test_unmeasured_latency_is_published_only_explicitly(
    live_server: Any, admin_cli: Cli, demo_artifact: Any, tmp_path: Path
) -> None:
    release_key = str(live_server.data_dir / "keys" / "release.key")
    kept = ["--kept-targets", str(tmp_path / "kept.json")]
    art = _artifact(demo_artifact, "1.0.0", {"latency_p50_ms": None, "latency_unmeasured": UNMEASURED})

    refused = admin_cli("publish", str(art), "--release-key", release_key, *kept)
    assert refused.code == ExitCode.INVALID_INPUT
    assert "error [latency_unmeasured]" in refused.err
    assert f"edgefleet probe create BUILD_DIR --class {CLASS}" in refused.err
    assert "--accept-unmeasured-latency" in refused.err
    with EdgefleetClient(live_server.url, live_server.admin_token) as client:
        assert int(client.tuf_status()["targets_version"]) == 0  # nothing was signed or uploaded

    accepted = admin_cli(
        "publish", str(art), "--release-key", release_key, *kept, "--accept-unmeasured-latency"
    )
    assert accepted.code == 0, accepted.err
    assert "latency unmeasured on jetson-vision-standard, accepted" in accepted.out
    prefix = f"demo-linear/1.0.0/{CLASS}"
    assert _signed_custom(live_server, f"{prefix}/manifest.json")["latency_unmeasured_accepted"] is True
    with EdgefleetClient(live_server.url, live_server.admin_token) as client:
        audited = client.list_audit(action="tuf.publish.latency_unmeasured_accepted").items
    assert [(a.target, a.actor) for a in audited] == [(prefix, "bootstrap-admin")]

    # A build selected from a probe's device figures claims its latency: no flag, nothing accepted.
    probed = _artifact(
        demo_artifact,
        "2.0.0",
        {"latency_p95_ms": 12.0, "measured_on": "device: probe prb_1 (2 devices)", "probe_id": "prb_1"},
    )
    published = admin_cli("publish", str(probed), "--release-key", release_key, *kept)
    assert published.code == 0, published.err
    assert "accepted" not in published.out
    custom = _signed_custom(live_server, f"demo-linear/2.0.0/{CLASS}/manifest.json")
    assert custom["latency_unmeasured_accepted"] is False
    with EdgefleetClient(live_server.url, live_server.admin_token) as client:
        assert len(client.list_audit(action="tuf.publish.latency_unmeasured_accepted").items) == 1
