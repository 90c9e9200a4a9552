"""``edgefleet keys init|rotate|rotate-root``: the keys of the TUF image repository and the director.

Demo default: a 1-of-1 root. For production use ``--root-threshold 2 --root-keys 3`` and move each
``root-N.key`` to a different offline holder (hardware token, safe); bring any two together to sign a new
root. Keep ``release.key`` offline with the model-release team; only ``snapshot``, ``timestamp`` and
``director`` keys go to the server. See docs/security.md.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from edgefleet.trust.keys import init_keys, load_signer, rotate_role_key, rotate_root_keys
from edgefleet.trust.repository import ImageRepository, OnlineSigners

__all__ = ["keys"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _install(repo: Path | None, keys_dir: Path, root_bytes: bytes) -> None:
    if repo is None:
        return
    signers = OnlineSigners(load_signer(keys_dir / "snapshot.key"), load_signer(keys_dir / "timestamp.key"))
    ImageRepository(repo, signers).install_root(root_bytes, now=_now())
    click.echo(f"installed the new root in {repo}")


@click.group("keys")
def keys() -> None:
    """Root, release, snapshot, timestamp and director keys."""


@keys.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--root-threshold", default=1, show_default=True, help="Root signatures needed (2 of 3 in production)."
)
@click.option("--root-keys", default=1, show_default=True, help="Root keys to create.")
@click.option(
    "--repo", type=click.Path(file_okay=False, path_type=Path), help="Also create an image repository here."
)
def init_cmd(directory: Path, root_threshold: int, root_keys: int, repo: Path | None) -> None:
    """Create all keys and the signed 1.root.json in DIRECTORY."""
    keyset = init_keys(directory, now=_now(), root_threshold=root_threshold, root_keys=root_keys)
    click.echo(
        f"created {root_keys} root key(s) (threshold {root_threshold}) and release, online and director keys"
    )
    click.echo(f"root: {directory / '1.root.json'} (give this file to devices at enrollment)")
    if repo is not None:
        signers = OnlineSigners(
            load_signer(directory / "snapshot.key"), load_signer(directory / "timestamp.key")
        )
        ImageRepository.create(repo, keyset.root_bytes, signers, now=_now())
        click.echo(f"image repository created in {repo}")


@keys.command("rotate")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--role", type=click.Choice(["release", "snapshot", "timestamp", "director"]), required=True)
@click.option(
    "--repo", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Install the new root here."
)
def rotate_cmd(directory: Path, role: str, repo: Path | None) -> None:
    """Replace one role key; writes root N+1 signed by the root keys present in DIRECTORY.

    After rotating ``release``, run ``edgefleet publish --resign`` so targets carry the new key. After
    rotating ``snapshot``, ``timestamp`` or ``director``, copy the new key to the servers and restart them;
    devices learn a new director key from the new root at their next poll.
    """
    root = rotate_role_key(directory, role, now=_now())
    click.echo(f"rotated {role}; new root written to {directory / 'root.json'}")
    _install(repo, directory, root)


@keys.command("rotate-root")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--threshold", default=1, show_default=True)
@click.option("--count", default=1, show_default=True)
@click.option(
    "--repo", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Install the new root here."
)
def rotate_root_cmd(directory: Path, threshold: int, count: int, repo: Path | None) -> None:
    """New root keys; root N+1 is signed by the old keys and the new ones, so devices follow the chain."""
    root = rotate_root_keys(directory, now=_now(), threshold=threshold, count=count)
    click.echo(f"new root keys ({threshold} of {count}); old ones moved to {directory}/retired-root-v*")
    _install(repo, directory, root)
