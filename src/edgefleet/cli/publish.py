"""``edgefleet publish ARTIFACT_DIR --release-key K --repo DIR``: sign an artifact into the TUF targets.

Works on a local image repository directory now. Uploading to a server (``--server URL``) needs the
server's targets upload endpoint, which accepts the signed ``targets.json`` and the files and calls
``ImageRepository.accept_targets``; until it exists, publish on the host that holds the repository
directory (or sync the directory to it).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.trust.keys import load_signer
from edgefleet.trust.publish import build_targets, resign_targets
from edgefleet.trust.repository import ImageRepository, OnlineSigners

__all__ = ["publish"]


@click.command("publish")
@click.argument("artifact_dir", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--release-key", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--repo", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--online-keys",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory with snapshot.key and timestamp.key (the server's keys).",
)
@click.option(
    "--resign", is_flag=True, help="Only re-sign the current targets (after a release-key rotation)."
)
def publish(
    artifact_dir: Path | None, release_key: Path, repo: Path, online_keys: Path, resign: bool
) -> None:
    """Add ARTIFACT_DIR (manifest.json + files) to the signed targets of the image repository."""
    now = datetime.now(timezone.utc)
    signer = load_signer(release_key)
    signers = OnlineSigners(
        load_signer(online_keys / "snapshot.key"), load_signer(online_keys / "timestamp.key")
    )
    image_repo = ImageRepository(repo, signers)
    current = image_repo.targets()
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
    version = image_repo.accept_targets(release.targets_bytes, release.files, now=now)
    click.echo(f"published targets version {version} ({len(release.files)} files uploaded)")
