"""python-tuf's ``Updater`` with the three things the device needs that python-tuf has no public API for.

This is the only module that touches python-tuf internals; ``tests/trust/test_tuf_hooks.py`` fails loudly
when one of them changes, and pyproject.toml bounds ``tuf<8`` because of them:

* **Reference time** (``_trusted_set.reference_time``): python-tuf judges expiry against the wall clock it
  reads when the updater is built. A device's clock can be set back by an attacker (freeze attack); the
  device passes max(clock, persisted time floor) instead. This is the time-floor guarantee.
* **Durable writes** (``_persist_file``, ``_update_root_symlink``): python-tuf renames metadata into place
  without fsync and makes ``root.json`` a symlink; after a power cut the device must find either the old or
  the new metadata whole, and ``root.json`` must stay a plain file the enrollment step wrote.
* **The verified metadata** (``_trusted_set.root``, ``_trusted_set.targets``): the director keys live in the
  verified root, the signed release floors in the verified targets; python-tuf only exposes single targets.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tuf.api.metadata import Root, Targets
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from edgefleet.durable import atomic_write_bytes

__all__ = ["TufUpdater"]


class TufUpdater(Updater):
    """``Updater`` judging expiry at an explicit ``reference_time``, writing metadata durably, keeping
    ``root.json`` a plain file, and exposing the verified root and targets read-only."""

    def __init__(
        self,
        metadata_dir: Path,
        metadata_base_url: str,
        *,
        target_base_url: str,
        fetcher: FetcherInterface,
        config: UpdaterConfig,
        bootstrap: bytes | None,
        reference_time: datetime,
    ) -> None:
        self._metadata_path = Path(metadata_dir)  # set first: the base constructor persists the root
        super().__init__(
            str(metadata_dir),
            metadata_base_url,
            target_base_url=target_base_url,
            fetcher=fetcher,
            config=config,
            bootstrap=bootstrap,
        )
        # private hook: the device's judged time, not the raw clock (see the module docstring)
        self._trusted_set.reference_time = reference_time

    @property
    def trusted_root(self) -> Root:
        """The newest root verified through the chain from the bootstrap root."""
        return self._trusted_set.root

    @property
    def trusted_targets(self) -> Targets:
        """The top-level targets verified by the last ``refresh``."""
        return self._trusted_set.targets

    def _persist_file(self, filename: str, data: bytes) -> None:
        atomic_write_bytes(Path(filename), data)

    def _update_root_symlink(self) -> None:
        version = self._trusted_set.root.version
        data = (self._metadata_path / "root_history" / f"{version}.root.json").read_bytes()
        link = self._metadata_path / "root.json"
        if link.is_symlink() or not link.exists() or link.read_bytes() != data:
            if link.is_symlink():
                link.unlink()
            atomic_write_bytes(link, data)
