"""``edgefleet publish ARTIFACT_DIR --release-key K --repo DIR``: sign an artifact into the TUF targets.

Two ways: ``--repo DIR --online-keys DIR`` on the host that holds the repository directory, or (the usual
way) against a control plane with the global ``--server``/``--token``: the current targets are fetched,
the new version is signed here with the offline release key, and the files plus the signed metadata are
uploaded. The server checks them against root's targets role and never sees the release key.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from edgefleet.cli.state import CliState, pass_state, transfer_progress
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.trust.keys import load_signer
from edgefleet.trust.publish import SignedRelease, build_targets, resign_targets
from edgefleet.trust.repository import ImageRepository, OnlineSigners

__all__ = ["publish"]


@click.command("publish")
@click.argument("artifact_dir", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--release-key", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--repo",
    default=None,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A local repository directory (instead of uploading to the server).",
)
@click.option(
    "--online-keys",
    default=None,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory with snapshot.key and timestamp.key (the server's keys).",
)
@click.option(
    "--resign", is_flag=True, help="Only re-sign the current targets (after a release-key rotation)."
)
@pass_state
def publish(
    state: CliState,
    artifact_dir: Path | None,
    release_key: Path,
    repo: Path | None,
    online_keys: Path | None,
    resign: bool,
) -> None:
    """Add ARTIFACT_DIR (manifest.json + files) to the signed targets of the image repository."""
    now = datetime.now(timezone.utc)
    signer = load_signer(release_key)
    if repo is None:
        _publish_to_server(state, artifact_dir, signer, resign=resign, now=now)
        return
    if online_keys is None:
        raise click.UsageError("--repo needs --online-keys")
    signers = OnlineSigners(
        load_signer(online_keys / "snapshot.key"), load_signer(online_keys / "timestamp.key")
    )
    image_repo = ImageRepository(repo, signers)
    release = _next_release(image_repo.targets(), artifact_dir, signer, resign=resign, now=now)
    version = image_repo.accept_targets(release.targets_bytes, release.files, now=now)
    click.echo(f"published targets version {version} ({len(release.files)} files uploaded)")


def _publish_to_server(
    state: CliState, artifact_dir: Path | None, signer: Signer, *, resign: bool, now: datetime
) -> None:
    with state.client() as client:
        version = int(client.tuf_status()["targets_version"])
        current = (
            Metadata[Targets].from_bytes(client.tuf_metadata(f"{version}.targets.json")) if version else None
        )
        if resign:
            if current is None:
                raise InvalidDocumentError(
                    "nothing to re-sign yet", expected="a published targets.json", got=None
                )
            release = resign_targets(current, signer, now=now)
        else:
            if artifact_dir is None:
                raise click.UsageError("ARTIFACT_DIR is required unless --resign")
            release = build_targets(current, artifact_dir, signer, now=now)
        total = sum(p.stat().st_size for p in release.files.values())
        with transfer_progress(total, "uploading") as bar:
            published = client.publish_targets(release.targets_bytes, release.files, progress=bar.update)
    click.echo(f"published targets version {published} ({len(release.files)} files) to {state.server}")


def _next_release(
    current: Metadata[Targets] | None,
    artifact_dir: Path | None,
    signer: Signer,
    *,
    resign: bool,
    now: datetime,
) -> SignedRelease:
    if resign:
        if current is None:
            raise InvalidDocumentError(
                "nothing to re-sign yet", expected="a published targets.json", got=None
            )
        return resign_targets(current, signer, now=now)
    if artifact_dir is None:
        raise click.UsageError("ARTIFACT_DIR is required unless --resign")
    return build_targets(current, artifact_dir, signer, now=now)
