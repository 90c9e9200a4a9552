"""``edgefleet publish``: the deltas signed along with a new artifact, from the versions devices run now.

Deltas are computed here, on the publisher's machine, because every target must be signed by the offline
release key (docs/decisions.md, "Model deltas are computed by the publisher"). The bases are the artifacts of
the same model and class that the class's devices run now (``GET /v1/classes/{class}/running``, most devices
first), or, for a local repository, its newest releases of that line. Their files are taken from the image
repository and checked against the targets this publisher verified (``check_base_targets``): a base is
never taken on the server's word either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tuf.api.metadata import Metadata, Targets

from edgefleet.optimize.deltas import BaseArtifact, prepare_deltas
from edgefleet.protocol.canonical import parse_json_bounded
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.manifest import MAX_MANIFEST_BYTES, ArtifactManifest
from edgefleet.trust.errors import HashMismatchError
from edgefleet.trust.publish import MANIFEST_NAME, PreparedDelta, read_manifest
from edgefleet.trust.repository import target_storage_name
from edgefleet.trust.target_custom import custom_of, is_delta_path, target_prefix

__all__ = ["DEFAULT_DELTA_BASES", "FetchTarget", "newest_versions", "release_deltas"]

DEFAULT_DELTA_BASES = 3
FetchTarget = Callable[[str, str, int, Path], Path]
"""(storage name ``dir/<sha256>.name``, sha256, length, destination) -> the verified local file"""


def newest_versions(targets: Targets, model: str, hardware_class: str, limit: int) -> list[str]:
    """The versions of ``model`` for ``hardware_class`` in ``targets``, highest release counter first."""
    found: dict[str, int] = {}
    for path, info in targets.targets.items():
        if not path.endswith(f"/{MANIFEST_NAME}") or is_delta_path(path):
            continue
        try:
            custom = custom_of(info)
        except InvalidDocumentError:  # foreign entries are not bases
            continue
        if (custom.model, custom.hardware_class) == (model, hardware_class):
            found[custom.version] = custom.release_counter
    return sorted(found, key=lambda v: -found[v])[:limit]


def _base_artifact(targets: Targets, prefix: str, fetch: FetchTarget, dest: Path) -> BaseArtifact | None:
    info = targets.targets.get(f"{prefix}/{MANIFEST_NAME}")
    if info is None:
        return None
    sha = info.hashes["sha256"]
    raw = fetch(target_storage_name(info.path, sha), sha, info.length, dest / MANIFEST_NAME).read_bytes()
    manifest = ArtifactManifest.parse(parse_json_bounded(raw, max_bytes=MAX_MANIFEST_BYTES, what="manifest"))
    for entry in manifest.files:
        signed = targets.targets.get(f"{prefix}/{entry.path}")
        if signed is None or (signed.hashes.get("sha256"), signed.length) != (entry.sha256, entry.length):
            raise HashMismatchError(
                f"base file {entry.path} is not signed as its manifest says",
                expected={"sha256": entry.sha256, "length": entry.length},
                got=None
                if signed is None
                else {"sha256": signed.hashes.get("sha256"), "length": signed.length},
            )
        out = dest / entry.path
        out.parent.mkdir(parents=True, exist_ok=True)
        fetch(target_storage_name(signed.path, entry.sha256), entry.sha256, entry.length, out)
    return BaseArtifact(dest, manifest)


def release_deltas(
    artifact_dir: Path,
    base: Metadata[Targets] | None,
    versions: list[str],
    fetch: FetchTarget,
    work_dir: Path,
) -> list[PreparedDelta]:
    """Deltas to the artifact in ``artifact_dir`` from each of ``versions`` (same model and class) found in
    the verified targets ``base``."""
    if base is None or not versions:
        return []
    manifest, _ = read_manifest(artifact_dir)
    bases = []
    for version in versions:
        if version == manifest.version:
            continue
        prefix = target_prefix(manifest.model, version, manifest.hardware_class)
        found = _base_artifact(base.signed, prefix, fetch, work_dir / "bases" / version)
        if found is not None:
            bases.append(found)
    return prepare_deltas(artifact_dir, manifest, bases, work_dir / "deltas")
