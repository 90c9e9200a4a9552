"""``edgefleet publish ARTIFACT_DIR --release-key K --repo DIR``: sign an artifact into the TUF targets.

Two ways: ``--repo DIR --online-keys DIR`` on the host that holds the repository directory, or (the usual
way) against a control plane with the global ``--server``/``--token``: the current targets are fetched,
the new version is signed here with the offline release key, and the files plus the signed metadata are
uploaded. The server checks them against root's targets role and never sees the release key.

The current targets are *not* taken on the server's word: every entry of them is signed again, so they must
verify against the targets keys of the root this publisher trusts, and must not be older than (or differ
at the same version from) the copy it kept of what it published last (``edgefleet.trust.publisher_trust``).
Otherwise nothing is signed; ``--from-targets FILE`` builds on a copy the operator trusts instead.

An artifact whose latency is unmeasured on its class (its manifest says so: an accelerator class built where
its execution provider is missing) is refused (``latency_unmeasured``) unless a probe measured it
(``edgefleet build select --from-probe``) or ``--accept-unmeasured-latency`` is given; the acceptance is
signed into its targets' custom fields and the server audits it.

Deltas: the new artifact's files are also signed as deltas from the versions the class's devices run now
(at most ``--delta-bases``, default 3; 0: none), computed here (``edgefleet.cli.publish_deltas``). A device
that holds one of those bases downloads the delta instead of the whole file and verifies the rebuilt file
against the full target (docs/devices.md).

``--release-floor`` raises the signed release floor of a model and hardware class: devices refuse any
assignment below it (``edgefleet.trust.release_floor``).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import click
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from edgefleet.cli.publish_deltas import DEFAULT_DELTA_BASES, newest_versions, release_deltas
from edgefleet.cli.state import CliState, pass_state, transfer_progress
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.trust.keys import load_signer
from edgefleet.trust.publish import PreparedDelta, SignedRelease, build_targets, read_manifest, resign_targets
from edgefleet.trust.publisher_trust import (
    LAST_TARGETS_NAME,
    PublisherTrust,
    check_base_targets,
    load_publisher_trust,
    record_published,
)
from edgefleet.trust.release_floor import MAX_RELEASE_FLOOR, line_key, parse_line_key
from edgefleet.trust.repository import ImageRepository, OnlineSigners
from edgefleet.trust.target_custom import is_delta_path

__all__ = ["parse_release_floors", "publish"]

_FILE = click.Path(dir_okay=False, path_type=Path)


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
@click.option(
    "--release-floor",
    "release_floor",
    multiple=True,
    metavar="N|MODEL/CLASS=N",
    help="Raise the signed release floor: N for the artifact's model and class, or MODEL/CLASS=N "
    "(repeatable).",
)
@click.option(
    "--trusted-root",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The root whose targets keys the current targets must be signed by "
    "[default: root.json beside the release key; without one, the release key itself].",
)
@click.option(
    "--kept-targets",
    type=_FILE,
    default=None,
    help=f"This publisher's copy of the targets it published last [default: {LAST_TARGETS_NAME} beside "
    "the release key]; the server's current targets may not be older.",
)
@click.option(
    "--from-targets",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Recovery: build on this targets.json (a copy you trust) instead of the server's current one.",
)
@click.option(
    "--accept-unmeasured-latency",
    is_flag=True,
    help="Publish an artifact whose latency is unmeasured on its class (an accelerator class built where its "
    "execution provider is missing) without a probe; the acceptance is signed into its targets and audited.",
)
@click.option(
    "--delta-bases",
    type=click.IntRange(0, 16),
    default=DEFAULT_DELTA_BASES,
    show_default=True,
    help="Sign deltas from at most this many versions the class's devices run now (a local --repo: its "
    "newest releases of the line); 0: no deltas.",
)
@pass_state
def publish(
    state: CliState,
    artifact_dir: Path | None,
    release_key: Path,
    repo: Path | None,
    online_keys: Path | None,
    resign: bool,
    release_floor: tuple[str, ...],
    trusted_root: Path | None,
    kept_targets: Path | None,
    from_targets: Path | None,
    accept_unmeasured_latency: bool,
    delta_bases: int,
) -> None:
    """Add ARTIFACT_DIR (manifest.json + files) to the signed targets of the image repository."""
    now = datetime.now(timezone.utc)
    if resign == (artifact_dir is not None):
        raise click.UsageError("give ARTIFACT_DIR, or --resign without it")
    if repo is not None and online_keys is None:
        raise click.UsageError("--repo needs --online-keys")
    floors = parse_release_floors(release_floor, artifact_dir)
    signer = load_signer(release_key)
    if trusted_root is None and (release_key.parent / "root.json").is_file():
        trusted_root = release_key.parent / "root.json"
    if trusted_root is None:
        click.echo(
            "warning: no trusted root (--trusted-root): "
            "the current targets must be signed by this release key",
            err=True,
        )
    kept = kept_targets or release_key.parent / LAST_TARGETS_NAME
    trust = load_publisher_trust(
        trusted_root=trusted_root, release_public_key=signer.public_key, last_published=kept
    )
    build = _Build(artifact_dir, signer, floors, trust, from_targets, now, accept_unmeasured_latency)
    work = Path(tempfile.mkdtemp(prefix="edgefleet-deltas-"))  # bases and deltas: removed however it ends
    click.get_current_context().call_on_close(lambda: shutil.rmtree(work, ignore_errors=True))
    if repo is None:
        with state.client() as client:
            version = int(client.tuf_status()["targets_version"])
            raw = client.tuf_metadata(f"{version}.targets.json") if version else None
            if artifact_dir is not None and delta_bases:
                manifest, _ = read_manifest(artifact_dir)
                try:
                    running = client.running_artifacts(
                        manifest.hardware_class, model=manifest.model, limit=delta_bases
                    )
                except EdgefleetError as exc:
                    if exc.code != "class_not_found":
                        raise
                    running = []  # a class not applied yet has no devices: no bases, a full release
                versions = [str(r["version"]) for r in running]

                def fetch(name: str, sha256: str, length: int, dest: Path) -> Path:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    return client.download_tuf_target(name, dest, sha256=sha256, length=length)

                build = dataclasses.replace(
                    build, deltas_for=lambda base: release_deltas(artifact_dir, base, versions, fetch, work)
                )
            release = build.next_release(raw, version, where=f"the server {state.server}")
            total = sum(p.stat().st_size for p in release.files.values())
            with transfer_progress(total, "uploading") as bar:
                published = client.publish_targets(release.targets_bytes, release.files, progress=bar.update)
        _keep(kept, release)
        deltas = _delta_lines(release)
        shutil.rmtree(work, ignore_errors=True)
        click.echo(f"published targets version {published} ({len(release.files)} files) to {state.server}")
        click.echo("".join(deltas), nl=False)
        _echo_acceptance(artifact_dir, accept_unmeasured_latency)
        _echo_floors(floors)
        return
    assert online_keys is not None
    signers = OnlineSigners(
        load_signer(online_keys / "snapshot.key"), load_signer(online_keys / "timestamp.key")
    )
    image_repo = ImageRepository(repo, signers)
    version = image_repo.targets_version()
    raw = image_repo.metadata_path(f"{version}.targets.json").read_bytes() if version else None
    if artifact_dir is not None and delta_bases:
        manifest, _ = read_manifest(artifact_dir)

        def local(name: str, sha256: str, length: int, dest: Path) -> Path:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image_repo.target_file_path(name), dest)
            return dest  # the repository checked each stored file's hash when it accepted it

        def deltas_for(base: Metadata[Targets] | None) -> list[PreparedDelta]:
            if base is None:
                return []
            versions = newest_versions(base.signed, manifest.model, manifest.hardware_class, delta_bases)
            return release_deltas(artifact_dir, base, versions, local, work)

        build = dataclasses.replace(build, deltas_for=deltas_for)
    release = build.next_release(raw, version, where=f"the repository {repo}")
    version = image_repo.accept_targets(release.targets_bytes, release.files, now=now)
    _keep(kept, release)
    deltas = _delta_lines(release)
    shutil.rmtree(work, ignore_errors=True)
    click.echo(f"published targets version {version} ({len(release.files)} files uploaded)")
    click.echo("".join(deltas), nl=False)
    _echo_acceptance(artifact_dir, accept_unmeasured_latency)
    _echo_floors(floors)


def parse_release_floors(values: tuple[str, ...], artifact_dir: Path | None) -> dict[str, int]:
    """``("3", "digits/cpu=2")`` -> ``{"<artifact's model>/<class>": 3, "digits/cpu": 2}``."""
    floors: dict[str, int] = {}
    for value in values:
        line, sep, number = value.rpartition("=")
        if not sep:
            if artifact_dir is None:
                raise click.UsageError(f"--release-floor {value}: without ARTIFACT_DIR give MODEL/CLASS=N")
            manifest, _ = read_manifest(artifact_dir)
            line = line_key(manifest.model, manifest.hardware_class)
        else:
            parse_line_key(line)
        if not number.isdigit() or int(number) > MAX_RELEASE_FLOOR:
            raise InvalidDocumentError(
                "invalid --release-floor",
                code="invalid_release_floors",
                expected=f"N or MODEL/CLASS=N with 0 <= N <= {MAX_RELEASE_FLOOR}",
                got=value,
            )
        if line in floors and floors[line] != int(number):
            raise InvalidDocumentError(
                "two release floors for one line", code="invalid_release_floors", expected=line, got=value
            )
        floors[line] = int(number)
    return floors


@dataclasses.dataclass(frozen=True)
class _Build:
    artifact_dir: Path | None
    signer: Signer
    floors: dict[str, int]
    trust: PublisherTrust
    from_targets: Path | None
    now: datetime
    accept_unmeasured_latency: bool = False
    deltas_for: Callable[[Metadata[Targets] | None], list[PreparedDelta]] | None = None

    def next_release(self, current_raw: bytes | None, current_version: int, *, where: str) -> SignedRelease:
        """Check what to build on, then build and sign the next targets version."""
        base, above = self._base(current_raw, current_version, where=where)
        if self.artifact_dir is None:
            if base is None:
                raise InvalidDocumentError(
                    "nothing to re-sign yet", expected="a published targets.json", got=None
                )
            return resign_targets(
                base, self.signer, now=self.now, release_floors=self.floors, above_version=above
            )
        return build_targets(
            base,
            self.artifact_dir,
            self.signer,
            now=self.now,
            release_floors=self.floors,
            above_version=above,
            accept_unmeasured_latency=self.accept_unmeasured_latency,
            deltas=self.deltas_for(base) if self.deltas_for is not None else (),
        )

    def _base(
        self, current_raw: bytes | None, current_version: int, *, where: str
    ) -> tuple[Metadata[Targets] | None, int]:
        if self.from_targets is None:
            return check_base_targets(current_raw, self.trust, where=where), current_version
        # The operator vouches for this copy: it must still be signed by a release key of the local root
        # chain (the current or a retired one); the new version goes above everything seen.
        copy = self.from_targets.read_bytes()
        base = check_base_targets(
            copy, dataclasses.replace(self.trust, last_published=copy), where=str(self.from_targets)
        )
        kept = check_base_targets(self.trust.last_published, self.trust, where="the kept copy")
        above = max(current_version, kept.signed.version if kept is not None else 0)
        return base, above


def _keep(path: Path, release: SignedRelease) -> None:
    try:
        record_published(path, release.targets_bytes)
    except OSError as exc:
        click.echo(
            f"warning: published, but could not keep a copy in {path} ({exc}); the next publish cannot "
            "detect a rollback without it (--kept-targets)",
            err=True,
        )


def _echo_acceptance(artifact_dir: Path | None, accept_unmeasured_latency: bool) -> None:
    if artifact_dir is None or not accept_unmeasured_latency:
        return
    manifest, _ = read_manifest(artifact_dir)
    if manifest.metrics.latency_unmeasured is not None:
        click.echo(
            f"latency unmeasured on {manifest.hardware_class}, accepted (--accept-unmeasured-latency): "
            "signed into its targets' custom fields"
        )


def _delta_lines(release: SignedRelease) -> list[str]:
    deltas = sorted(p for p in release.files if is_delta_path(p))
    return [f"delta {path} ({release.files[path].stat().st_size} bytes)\n" for path in deltas]


def _echo_floors(floors: dict[str, int]) -> None:
    for line, floor in sorted(floors.items()):
        click.echo(f"release floor {line} >= {floor}")
