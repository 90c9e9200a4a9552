"""``edgefleet keys`` and ``edgefleet publish`` through the real command group, on local directories."""

from __future__ import annotations

import stat
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from edgefleet.cli.main import cli
from edgefleet.trust.keys import load_signer
from edgefleet.trust.repository import ImageRepository, OnlineSigners

from .fleet import write_artifact


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_init_publish_and_rotate(tmp_path: Path) -> None:
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    _run("keys", "init", str(keys), "--root-threshold", "2", "--root-keys", "3", "--repo", str(repo))
    assert sorted(p.name for p in keys.glob("*.key")) == [
        "director.key",
        "release.key",
        "root-1.key",
        "root-2.key",
        "root-3.key",
        "snapshot.key",
        "timestamp.key",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.glob("*.key"))
    art = write_artifact(tmp_path / "art")
    common = ["--release-key", str(keys / "release.key"), "--repo", str(repo), "--online-keys", str(keys)]
    assert "version 1" in _run("publish", str(art), *common)
    _run("keys", "rotate", str(keys), "--role", "release", "--repo", str(repo))
    assert "version 2" in _run("publish", "--resign", *common)
    signers = OnlineSigners(load_signer(keys / "snapshot.key"), load_signer(keys / "timestamp.key"))
    r = ImageRepository(repo, signers)
    assert r.root().signed.version == 2
    assert r.targets().signed.version == 2
    assert "digits/1.0.0/medical-cart-cpu/model.onnx" in r.targets().signed.targets
    assert r.maybe_refresh_timestamp(datetime.now(timezone.utc)) is False


def test_publish_with_wrong_key_fails_with_stable_exit(tmp_path: Path) -> None:
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    _run("keys", "init", str(keys), "--repo", str(repo))
    art = write_artifact(tmp_path / "art")
    result = CliRunner().invoke(
        cli,
        [
            "publish",
            str(art),
            "--release-key",
            str(keys / "director.key"),
            "--repo",
            str(repo),
            "--online-keys",
            str(keys),
        ],
    )
    assert result.exit_code != 0
    assert "targets_rejected" in result.output
