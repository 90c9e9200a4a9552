"""The python-tuf internals edgefleet relies on (edgefleet/trust/tuf_updater.py) still behave as assumed.

If one of these fails after a python-tuf upgrade, the device's time floor or its durable metadata may be
silently gone: fix tuf_updater.py for the new version before widening the ``tuf<8`` bound in pyproject.
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Root, Targets
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet

from edgefleet.trust.publish import publish_to_repository
from edgefleet.trust.tuf_updater import TufUpdater
from edgefleet.trust.verify import HttpxFetcher

from .fleet import NOW, Fleet

HOOKS = "python-tuf changed an internal edgefleet relies on (see edgefleet/trust/tuf_updater.py)"


def _updater(fleet: Fleet, metadata_dir: Path, *, reference_time=NOW) -> TufUpdater:
    metadata_dir.mkdir(parents=True, exist_ok=True)
    return TufUpdater(
        metadata_dir,
        f"{fleet.mirror.url}/metadata/",  # type: ignore[attr-defined]
        target_base_url=f"{fleet.mirror.url}/targets/",  # type: ignore[attr-defined]
        fetcher=HttpxFetcher(fleet.client),
        config=UpdaterConfig(),
        bootstrap=fleet.keyset.root_bytes,
        reference_time=reference_time,
    )


@pytest.fixture
def published(fleet: Fleet) -> Fleet:
    publish_to_repository(fleet.repo, fleet.artifact(), fleet.release, now=NOW)
    return fleet


def test_the_overridden_hooks_keep_their_names_and_signatures() -> None:
    persist = inspect.signature(Updater._persist_file)
    assert list(persist.parameters) == ["self", "filename", "data"], HOOKS
    assert list(inspect.signature(Updater._update_root_symlink).parameters) == ["self"], HOOKS
    assert "reference_time" in inspect.getsource(TrustedMetadataSet), HOOKS


def test_every_metadata_write_goes_through_the_durable_hook(
    published: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    original = TufUpdater._persist_file

    def spy(self: TufUpdater, filename: str, data: bytes) -> None:
        written.append(Path(filename).relative_to(tmp_path / "md").as_posix())
        original(self, filename, data)

    monkeypatch.setattr(TufUpdater, "_persist_file", spy)
    updater = _updater(published, tmp_path / "md")
    updater.refresh()
    assert {"root_history/1.root.json", "timestamp.json", "snapshot.json", "targets.json"} <= set(written), (
        HOOKS
    )
    on_disk = {p.relative_to(tmp_path / "md").as_posix() for p in (tmp_path / "md").rglob("*") if p.is_file()}
    assert on_disk <= set(written) | {"root.json"}, HOOKS  # nothing written behind the hook's back
    root = tmp_path / "md" / "root.json"
    assert root.is_file(), HOOKS
    assert not root.is_symlink(), HOOKS  # _update_root_symlink is ours: a plain, durably written file
    assert root.read_bytes() == published.keyset.root_bytes


def test_the_reference_time_not_the_wall_clock_judges_expiry(published: Fleet, tmp_path: Path) -> None:
    # NOW is years after this machine's clock: only the reference time can make the metadata expired
    expires = published.repo.timestamp().signed.expires
    with pytest.raises(tuf_exc.ExpiredMetadataError):
        _updater(published, tmp_path / "late", reference_time=expires + timedelta(seconds=1)).refresh()
    fresh = _updater(published, tmp_path / "fresh", reference_time=NOW)
    fresh.refresh()
    assert fresh._trusted_set.reference_time == NOW, HOOKS


def test_the_verified_root_and_targets_are_readable(published: Fleet, tmp_path: Path) -> None:
    updater = _updater(published, tmp_path / "md")
    updater.refresh()
    assert isinstance(updater.trusted_root, Root)
    assert updater.trusted_root.version == published.repo.root().signed.version
    assert isinstance(updater.trusted_targets, Targets)
    targets = published.repo.targets()
    assert targets is not None
    assert updater.trusted_targets.version == targets.signed.version
    assert updater.trusted_targets.targets.keys() == targets.signed.targets.keys()
