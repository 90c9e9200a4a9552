"""An artifact on disk: a directory holding ``manifest.json`` and the files it lists.

``push`` checks every local file against the manifest before anything is sent, uploads the files as
blobs (skipping those the server already has), then registers the manifest. ``pull`` downloads every
file into a staging directory next to the destination (kept between runs so downloads resume), verifies
each sha256 and length, and renames the staging directory into place: the destination either holds the
complete, verified artifact or does not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from edgefleet.client.api import EdgefleetClient
from edgefleet.client.errors import IntegrityError
from edgefleet.client.resources import ArtifactInfo
from edgefleet.client.transfer import ProgressCallback, file_sha256
from edgefleet.durable import atomic_write_bytes, fsync_dir
from edgefleet.protocol.canonical import canonical_json, parse_json_bounded
from edgefleet.protocol.errors import ConflictError, InvalidDocumentError, NotFoundError
from edgefleet.protocol.manifest import MAX_MANIFEST_BYTES, ArtifactManifest

__all__ = ["MANIFEST_FILENAME", "load_artifact_dir", "pull_artifact", "push_artifact", "staging_dir"]

MANIFEST_FILENAME = "manifest.json"


def load_artifact_dir(directory: Path) -> ArtifactManifest:
    """Read and validate ``directory/manifest.json`` and check every listed file on disk."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILENAME
    if not manifest_path.is_file():
        raise NotFoundError(
            f"no {MANIFEST_FILENAME} in {directory}",
            code="manifest_missing",
            expected=str(manifest_path),
            got="missing",
        )
    raw = manifest_path.read_bytes()
    manifest = ArtifactManifest.parse(parse_json_bounded(raw, max_bytes=MAX_MANIFEST_BYTES, what="manifest"))
    for entry in manifest.files:
        local = directory / entry.path
        if not local.is_file():
            raise NotFoundError(
                f"file {entry.path!r} listed in the manifest is missing",
                code="file_missing",
                expected=str(local),
                got="missing",
            )
        digest, length = file_sha256(local)
        if length != entry.length:
            raise InvalidDocumentError(
                f"file {entry.path!r} has a different length than the manifest says",
                code="length_mismatch",
                expected=entry.length,
                got=length,
            )
        if digest != entry.sha256:
            raise InvalidDocumentError(
                f"file {entry.path!r} does not match its sha256 in the manifest",
                code="sha256_mismatch",
                expected=entry.sha256,
                got=digest,
            )
    return manifest


def push_artifact(
    client: EdgefleetClient, directory: Path, *, progress: ProgressCallback | None = None
) -> ArtifactInfo:
    """Check the manifest with the server first (a class, budget or version refusal costs no upload and leaves
    no file there), upload the files it does not hold yet, then register."""
    manifest = load_artifact_dir(directory)
    missing = set(client.check_artifact(manifest))
    for entry in manifest.files:
        if entry.sha256 in missing:
            client.upload_blob(  # load_artifact_dir just hashed it against the manifest
                Path(directory) / entry.path,
                sha256=entry.sha256,
                verified_length=entry.length,
                skip_existing=False,  # the check said the server lacks it
                progress=progress,
            )
            missing.discard(entry.sha256)
    return client.register_artifact(manifest)


def staging_dir(out: Path, artifact_id: str) -> Path:
    return out.parent / f".{out.name}.{artifact_id}.partial"


def pull_artifact(
    client: EdgefleetClient,
    artifact_id: str,
    out: Path,
    *,
    progress: ProgressCallback | None = None,
    max_attempts: int = 5,
) -> ArtifactInfo:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConflictError(
            f"{out} already exists",
            code="destination_exists",
            expected="a new or empty directory",
            got=str(out),
        )
    info = client.get_artifact(artifact_id)
    manifest = ArtifactManifest.parse(info.manifest)
    got_sha = hashlib.sha256(canonical_json(info.manifest)).hexdigest()
    if info.manifest_sha256 and got_sha != info.manifest_sha256:
        raise IntegrityError(
            f"manifest of {artifact_id} does not match its manifest_sha256",
            expected=info.manifest_sha256,
            got=got_sha,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out, info.id)
    staging.mkdir(exist_ok=True)
    for entry in manifest.files:
        dest = staging / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_file() and file_sha256(dest) == (entry.sha256, entry.length):
            if progress is not None:
                progress(entry.length)
            continue
        client.download_artifact_file(
            info.id,
            entry.path,
            dest,
            sha256=entry.sha256,
            length=entry.length,
            progress=progress,
            max_attempts=max_attempts,
        )
    text = json.dumps(info.manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(staging / MANIFEST_FILENAME, text.encode("utf-8"))
    for leftover in staging.rglob(".*.part"):
        leftover.unlink()
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(staging, out)
    fsync_dir(out.parent)
    return info
