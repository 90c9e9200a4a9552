"""Publisher side: add one artifact to the TUF targets and sign them with the offline release key.

The result (signed ``targets.json`` bytes + the files it lists) is what gets uploaded; the image repository
checks it without ever holding the release key (``ImageRepository.accept_targets``).

Every entry of ``previous`` is carried into the new version and signed again, so ``previous`` must be a
document the release key signed: check it first (``edgefleet.trust.publisher_trust.check_base_targets``).
The signed release floors (``edgefleet.trust.release_floor``) are carried too, and only ever raised.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from edgefleet.protocol.canonical import parse_json_bounded
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.manifest import MAX_MANIFEST_BYTES, ArtifactManifest
from edgefleet.trust.errors import HashMismatchError, TargetsRejectedError
from edgefleet.trust.release_floor import (
    floor_for,
    line_key,
    raise_floors,
    release_floors_of,
    set_release_floors,
)
from edgefleet.trust.repository import ImageRepository
from edgefleet.trust.target_custom import (
    CUSTOM_KEY,
    DeltaCustom,
    TargetCustom,
    custom_of,
    is_delta_path,
    target_prefix,
)

__all__ = [
    "MANIFEST_NAME",
    "TARGETS_EXPIRY",
    "PreparedDelta",
    "SignedRelease",
    "build_targets",
    "check_latency_measured",
    "load_artifact",
    "publish_to_repository",
    "read_manifest",
    "resign_targets",
]

MANIFEST_NAME = "manifest.json"
TARGETS_EXPIRY = timedelta(days=365)


@dataclass(frozen=True)
class SignedRelease:
    targets_bytes: bytes
    version: int
    files: dict[str, Path]
    """target path -> local file to upload"""


@dataclass(frozen=True)
class PreparedDelta:
    """A delta file ready to sign (``edgefleet.optimize.deltas`` prepares them)."""

    path: str
    """its target path, ``<prefix>/deltas/<base sha256>/<file>.efdelta`` (``delta_target_path``)"""
    file: Path
    delta: DeltaCustom


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


def read_manifest(artifact_dir: Path) -> tuple[ArtifactManifest, bytes]:
    """Parse ``artifact_dir/manifest.json`` (files not checked: :func:`load_artifact` does that)."""
    manifest_path = Path(artifact_dir) / MANIFEST_NAME
    try:
        with open(manifest_path, "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise InvalidDocumentError(
            f"cannot read {manifest_path}", expected="an artifact directory with manifest.json", got=str(exc)
        ) from exc
    return ArtifactManifest.parse(parse_json_bounded(raw, max_bytes=MAX_MANIFEST_BYTES, what="manifest")), raw


def load_artifact(artifact_dir: Path) -> tuple[ArtifactManifest, bytes]:
    """Read ``manifest.json`` and check every listed file is present with its declared sha256 and length."""
    artifact_dir = Path(artifact_dir)
    manifest, raw = read_manifest(artifact_dir)
    for entry in manifest.files:
        path = artifact_dir / entry.path
        if not path.is_file():
            raise InvalidDocumentError("artifact file missing", expected=entry.path, got="no such file")
        sha256, length = _hash_file(path)
        if (sha256, length) != (entry.sha256, entry.length):
            raise HashMismatchError(
                f"artifact file {entry.path} differs from its manifest",
                expected={"sha256": entry.sha256, "length": entry.length},
                got={"sha256": sha256, "length": length},
            )
    return manifest, raw


def _check_release_counter(previous: Targets, manifest: ArtifactManifest, prefix: str) -> None:
    for path, info in previous.targets.items():
        if path.startswith(prefix + "/"):
            continue
        try:
            custom = custom_of(info)
        except InvalidDocumentError:
            continue
        same_line = (custom.model, custom.hardware_class) == (manifest.model, manifest.hardware_class)
        if same_line and custom.release_counter >= manifest.release_counter:
            raise TargetsRejectedError(
                "release counter must increase for a model and hardware class",
                expected=f"> {custom.release_counter} (held by {custom.version})",
                got=manifest.release_counter,
            )


ACCEPT_UNMEASURED_FLAG = "--accept-unmeasured-latency"


def check_latency_measured(manifest: ArtifactManifest, *, accept_unmeasured: bool) -> bool:
    """An artifact whose manifest says its class's latency was not measured (an accelerator class built
    where its execution provider is missing) is released only on the publisher's explicit word. Returns
    whether that word is needed (and given); raises ``latency_unmeasured`` when it is needed and not given.
    A build selected from a probe's device figures has its latency measured and needs nothing."""
    reason = manifest.metrics.latency_unmeasured
    if reason is None:
        return False
    if not accept_unmeasured:
        raise InvalidDocumentError(
            f"{manifest.model} {manifest.version} for {manifest.hardware_class}: its latency is unmeasured "
            f"on the class ({reason}); measure it on devices of the class with "
            f"`edgefleet probe create BUILD_DIR --class {manifest.hardware_class}` then "
            f"`edgefleet build select BUILD_DIR --from-probe PROBE_ID`, or publish it as it is with "
            f"{ACCEPT_UNMEASURED_FLAG}",
            code="latency_unmeasured",
            expected=f"a build measured on {manifest.hardware_class} (a probe), or {ACCEPT_UNMEASURED_FLAG}",
            got="latency unmeasured on the class",
        )
    return True


def _next_floors(previous: Metadata[Targets] | None, requested: Mapping[str, int] | None) -> dict[str, int]:
    current = release_floors_of(previous.signed) if previous is not None else {}
    return raise_floors(current, requested or {})


def build_targets(
    previous: Metadata[Targets] | None,
    artifact_dir: Path,
    release_signer: Signer,
    *,
    now: datetime,
    expires_in: timedelta = TARGETS_EXPIRY,
    release_floors: Mapping[str, int] | None = None,
    above_version: int = 0,
    accept_unmeasured_latency: bool = False,
    deltas: Sequence[PreparedDelta] = (),
) -> SignedRelease:
    """The next targets version: ``previous`` plus this artifact (replacing its own prefix), signed.

    ``release_floors`` (``{"<model>/<class>": counter}``) raises the signed floors; the artifact itself must
    be at or above its line's floor. The new version exceeds both ``previous`` and ``above_version`` (the
    server's current version, when building on a locally kept copy). An artifact whose latency is unmeasured
    on its class needs ``accept_unmeasured_latency`` (:func:`check_latency_measured`); the acceptance is
    signed into its targets' custom fields. ``deltas`` are signed as targets of their own under the artifact's
    prefix, each naming its base and result (``edgefleet.trust.delta``)."""
    artifact_dir = Path(artifact_dir)
    manifest, manifest_raw = load_artifact(artifact_dir)
    accepted = check_latency_measured(manifest, accept_unmeasured=accept_unmeasured_latency)
    prefix = target_prefix(manifest.model, manifest.version, manifest.hardware_class)
    floors = _next_floors(previous, release_floors)
    floor = floor_for(floors, manifest.model, manifest.hardware_class)
    if manifest.release_counter < floor:
        raise TargetsRejectedError(
            f"the artifact is below the release floor of {line_key(manifest.model, manifest.hardware_class)}",
            code="below_release_floor",
            expected=f">= {floor}",
            got=manifest.release_counter,
        )
    targets = Targets(version=max(0, above_version) + 1, expires=now + expires_in, targets={})
    if previous is not None:
        _check_release_counter(previous.signed, manifest, prefix)
        targets.version = max(previous.signed.version, above_version) + 1
        targets.targets = {p: t for p, t in previous.signed.targets.items() if not p.startswith(prefix + "/")}
    set_release_floors(targets, floors)
    custom = TargetCustom(
        model=manifest.model,
        version=manifest.version,
        hardware_class=manifest.hardware_class,
        release_counter=manifest.release_counter,
        runtime=manifest.runtime.name,
        manifest_sha256=hashlib.sha256(manifest_raw).hexdigest(),
        latency_unmeasured_accepted=accepted,
    ).to_custom()
    files: dict[str, Path] = {}
    entries = [(MANIFEST_NAME, hashlib.sha256(manifest_raw).hexdigest(), len(manifest_raw))]
    entries += [(f.path, f.sha256, f.length) for f in manifest.files]
    for rel, sha256, length in entries:
        path = f"{prefix}/{rel}"
        targets.targets[path] = TargetFile(
            length=length, hashes={"sha256": sha256}, path=path, unrecognized_fields={"custom": custom}
        )
        files[path] = artifact_dir / rel
    for delta in deltas:
        _check_delta(delta, prefix, targets)
        sha256, length = _hash_file(delta.file)
        delta_custom = TargetCustom.model_validate({**custom[CUSTOM_KEY], "delta": delta.delta})
        targets.targets[delta.path] = TargetFile(
            length=length,
            hashes={"sha256": sha256},
            path=delta.path,
            unrecognized_fields={"custom": delta_custom.to_custom()},
        )
        files[delta.path] = delta.file
    md = Metadata(targets)
    md.sign(release_signer)
    return SignedRelease(md.to_bytes(), targets.version, files)


def _check_delta(delta: PreparedDelta, prefix: str, targets: Targets) -> None:
    """A delta rebuilds a full file of this artifact from a full file already signed: never a chain."""
    d = delta.delta
    result = targets.targets.get(d.result_path)
    base = targets.targets.get(d.base_path)
    fine = (
        delta.path.startswith(f"{prefix}/")
        and is_delta_path(delta.path)
        and not is_delta_path(delta.delta.base_path)
        and not is_delta_path(delta.delta.result_path)
        and result is not None
        and (result.hashes.get("sha256"), result.length)
        == (delta.delta.result_sha256, delta.delta.result_length)
        and base is not None
        and (base.hashes.get("sha256"), base.length) == (delta.delta.base_sha256, delta.delta.base_length)
    )
    if not fine:
        raise TargetsRejectedError(
            "a delta must rebuild a full file of this artifact from a full file already signed",
            code="delta_rejected",
            expected=f"{prefix}/deltas/... from a signed full target",
            got={"path": delta.path, "base": delta.delta.base_path, "result": delta.delta.result_path},
        )


def resign_targets(
    previous: Metadata[Targets],
    release_signer: Signer,
    *,
    now: datetime,
    expires_in: timedelta = TARGETS_EXPIRY,
    release_floors: Mapping[str, int] | None = None,
    above_version: int = 0,
) -> SignedRelease:
    """Same targets, next version, new expiry: after a release-key rotation, to extend expiry, or to raise
    release floors (``release_floors``). ``previous`` is left unchanged."""
    floors = _next_floors(previous, release_floors)
    targets = copy.deepcopy(previous.signed)
    targets.version = max(targets.version, above_version) + 1
    targets.expires = now + expires_in
    set_release_floors(targets, floors)
    md = Metadata(targets)
    md.sign(release_signer)
    return SignedRelease(md.to_bytes(), targets.version, {})


def publish_to_repository(
    repo: ImageRepository,
    artifact_dir: Path,
    release_signer: Signer,
    *,
    now: datetime,
    release_floors: Mapping[str, int] | None = None,
    accept_unmeasured_latency: bool = False,
) -> SignedRelease:
    """Local publishing (the repository directory is on this machine and trusted, e.g. tests and benches):
    build on its current targets, sign, and let it check."""
    release = build_targets(
        repo.targets(),
        artifact_dir,
        release_signer,
        now=now,
        release_floors=release_floors,
        accept_unmeasured_latency=accept_unmeasured_latency,
    )
    repo.accept_targets(release.targets_bytes, release.files, now=now)
    return release
