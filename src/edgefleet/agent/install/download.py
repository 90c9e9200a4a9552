"""Resumable, bounded, verified downloads of artifact files into a content-addressed staging area.

``Downloader.fetch(url, sha256=..., length=...)`` returns ``staging/<sha256>`` only when that file holds
exactly the signed bytes, fsynced. Along the way:

* free disk space is checked before starting (remaining bytes + a reserve);
* a ``<sha256>.partial`` file is resumed with an HTTP ``Range`` request; a server that ignores the range
  (200) restarts it from zero; a 206 starting elsewhere is refused;
* reading is paced to the class's download budget (``DownloadPolicy.max_bytes_per_s``), for full files
  and deltas alike;
* the stream is cut at the signed length (an endless or extended body fails), at the overall deadline and
  when throughput stays under the minimum (trickling);
* the sha256 covers the resumed prefix too, so a resumed download whose tail changed fails the hash;
* on a hash/length mismatch, an oversized body or a full disk, the partial file is removed; on plain
  network trouble (connection dropped, too slow) it is fsynced and kept, because its prefix is still valid
  for the next attempt;
* partial files of *other* targets (an assignment that changed) are swept when a download starts: those not
  written for ``DownloadPolicy.stale_partial_s``, and all of them when the free space is short. Targets in
  ``keep`` (the other files of the artifact being fetched) are never swept. The grace period lets several
  slots resume their downloads in turn without wiping each other's progress. Finished downloads of other
  targets (``<sha256>``, normally moved out at once; a delta is kept there while its file is rebuilt, so a
  power cut mid-rebuild leaves it) are swept after the same grace period, never for space alone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import httpx

from edgefleet.durable import fsync_dir
from edgefleet.trust.errors import (
    DiskFullError,
    DownloadFailedError,
    DownloadTooLargeError,
    HashMismatchError,
    TrustError,
)
from edgefleet.trust.events import NullSink, SecurityEventSink, event_from_error
from edgefleet.trust.fetch import TransferLimits, open_bounded_stream

__all__ = ["DownloadPolicy", "Downloader", "disk_free_bytes", "pace_delay_s"]

_READ_BYTES = 1 << 20
_PARTIAL_NAME = re.compile(r"^([0-9a-f]{64})\.partial$")
_DOWNLOAD_NAME = re.compile(r"^([0-9a-f]{64})(?:\.partial)?$")


@dataclass(frozen=True)
class DownloadPolicy:
    deadline_s: float = 1800.0
    min_bytes_per_s: float = 8192.0
    grace_s: float = 30.0
    read_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    reserve_bytes: int = 64 * 1024 * 1024
    """Free space that must remain after the download (the running model, logs, telemetry)."""
    max_length: int = 8 * 1024**3
    stale_partial_s: float = 3600.0
    """A partial or finished download of another target unwritten this long is removed when a download
    starts."""
    max_bytes_per_s: float | None = None
    """The class's download budget (``HardwareClass.download_bytes_per_s``): reading is paced to it."""

    def limits(self, max_bytes: int) -> TransferLimits:
        floor = self.min_bytes_per_s
        if self.max_bytes_per_s is not None:  # our own pacing must never look like a trickling server
            floor = min(floor, self.max_bytes_per_s / 4)
        return TransferLimits(
            max_bytes=max_bytes,
            deadline_s=self.deadline_s,
            min_bytes_per_s=floor,
            grace_s=self.grace_s,
            read_timeout_s=self.read_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
        )


def disk_free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _open_append(path: Path) -> BinaryIO:
    return open(path, "ab")


class Downloader:
    def __init__(
        self,
        staging_dir: Path,
        client: httpx.Client,
        policy: DownloadPolicy | None = None,
        *,
        events: SecurityEventSink | None = None,
        free_bytes: Callable[[Path], int] = disk_free_bytes,
        open_append: Callable[[Path], BinaryIO] = _open_append,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.staging_dir = Path(staging_dir)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self._client = client
        self._policy = policy or DownloadPolicy()
        self._events: SecurityEventSink = events or NullSink()
        self._free_bytes = free_bytes
        self._open_append = open_append
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._monotonic = monotonic

    def final_path(self, sha256: str) -> Path:
        return self.staging_dir / sha256

    def partial_path(self, sha256: str) -> Path:
        return self.staging_dir / f"{sha256}.partial"

    def fetch(self, url: str, *, sha256: str, length: int, keep: Collection[str] = ()) -> Path:
        """Download (or resume) ``url`` into ``staging/<sha256>``; raise a ``TrustError`` on any failure.

        ``keep``: sha256 of other targets whose partial downloads must survive (the same artifact)."""
        try:
            return self._fetch(url, sha256=sha256, length=length, keep=frozenset(keep) | {sha256})
        except TrustError as exc:
            if type(exc) is not DownloadFailedError:
                self._events.record(event_from_error(exc, at=datetime.now(timezone.utc)))
            raise

    def ensure_space(self, files: Mapping[str, int], *, keep: Collection[str] = ()) -> None:
        """Before an artifact's first byte: refuse (``disk_full``, nothing fetched) unless the bytes still
        missing of all its ``files`` (sha256 -> length; staged files and partial prefixes count as had) fit
        with the reserve. Each ``fetch`` checks its own file again."""
        try:
            missing = 0
            for sha256, length in files.items():
                if self.final_path(sha256).exists():
                    continue
                partial = self.partial_path(sha256)
                missing += max(0, length - (partial.stat().st_size if partial.exists() else 0))
            self._check_space(missing, frozenset(keep) | set(files))
        except TrustError as exc:
            self._events.record(event_from_error(exc, at=datetime.now(timezone.utc)))
            raise

    def _check_space(self, missing_bytes: int, keep: Collection[str]) -> None:
        reserve = self._policy.reserve_bytes
        needed = missing_bytes + reserve
        free = self._free_bytes(self.staging_dir)
        if free < needed and self.sweep_partials(keep):  # short of space: no grace for other targets
            free = self._free_bytes(self.staging_dir)
        if free < needed:
            raise DiskFullError(
                "not enough free disk for the download",
                expected=f">= {needed} bytes free ({missing_bytes} to download + {reserve} reserve)",
                got=free,
            )

    def sweep_partials(
        self, keep: Collection[str], *, min_age_s: float = 0.0, completed: bool = False
    ) -> list[Path]:
        """Remove ``<sha256>.partial`` files of targets not in ``keep`` unwritten for ``min_age_s``;
        ``completed``: finished downloads (``<sha256>``) too.

        Returns what was removed. Other files in the staging directory are left alone."""
        removed: list[Path] = []
        now = self._wall_clock()
        pattern = _DOWNLOAD_NAME if completed else _PARTIAL_NAME
        for path in sorted(self.staging_dir.iterdir()):
            match = pattern.fullmatch(path.name)
            if match is None or match.group(1) in keep:
                continue
            try:
                if now - path.stat().st_mtime < min_age_s:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
        if removed:
            fsync_dir(self.staging_dir)
        return removed

    def _fetch(self, url: str, *, sha256: str, length: int, keep: frozenset[str]) -> Path:
        if not 0 <= length <= self._policy.max_length:
            raise DownloadTooLargeError(
                "artifact exceeds the device's bound", expected=f"<= {self._policy.max_length}", got=length
            )
        final = self.final_path(sha256)
        if final.exists():
            if _digest_of(final) == (sha256, length):
                return final
            final.unlink()
        partial = self.partial_path(sha256)
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > length:
            partial.unlink()
            offset = 0
        # finished downloads too: a delta left by a power cut mid-rebuild, for an assignment that moved on
        self.sweep_partials(keep, min_age_s=self._policy.stale_partial_s, completed=True)
        self._check_space(length - offset, keep)
        if offset < length:
            offset = self._transfer(url, partial, offset, length)
        got = _digest_of(partial)
        if got != (sha256, length):
            _remove(partial)
            raise HashMismatchError(
                "downloaded bytes differ from the signed target",
                expected={"sha256": sha256, "length": length},
                got={"sha256": got[0], "length": got[1], "url": url},
            )
        os.replace(partial, final)
        fsync_dir(self.staging_dir)
        return final

    def _pace(self, sent_bytes: int, started: float) -> None:
        delay = pace_delay_s(sent_bytes, self._monotonic() - started, self._policy.max_bytes_per_s)
        if delay > 0:
            self._sleep(delay)

    def _transfer(self, url: str, partial: Path, offset: int, length: int) -> int:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        fh: BinaryIO | None = None
        try:
            with open_bounded_stream(
                self._client, url, self._policy.limits(length), headers=headers
            ) as stream:
                status = stream.response.status_code
                if offset and status == 200:
                    offset = 0  # range ignored: start over; the full body replaces the prefix
                    _remove(partial)
                elif offset and status == 206:
                    start = _content_range_start(stream.response.headers.get("content-range", ""))
                    if start != offset:
                        _remove(partial)
                        raise DownloadFailedError(
                            "server resumed at the wrong offset", expected=offset, got=start
                        )
                elif status == 416 and offset:
                    _remove(partial)  # our prefix is longer than the file now: it changed
                    raise HashMismatchError("partial download is longer than the served file", got=url)
                elif status != 200:
                    raise DownloadFailedError(f"HTTP {status}", expected="200 or 206", got=status)
                fh = self._open_append(partial)
                received = offset
                started = self._monotonic()
                for chunk in stream.chunks:
                    if received + len(chunk) > length:
                        raise DownloadTooLargeError(
                            "served file is longer than the signed length",
                            expected=length,
                            got=received + len(chunk),
                        )
                    fh.write(chunk)
                    received += len(chunk)
                    self._pace(received - offset, started)
                fh.flush()
                os.fsync(fh.fileno())
                return received
        except DownloadTooLargeError:
            _close(fh)
            _remove(partial)
            raise
        except HashMismatchError:
            _close(fh)
            raise
        except DownloadFailedError:
            if fh is not None:  # keep the valid prefix for a resume
                with contextlib.suppress(OSError):
                    fh.flush()
                    os.fsync(fh.fileno())
            _close(fh)
            raise
        except OSError as exc:
            _close(fh)
            _remove(partial)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError("disk filled up during the download", got=str(exc)) from exc
            raise DownloadFailedError(f"cannot write the download: {exc}", got=str(exc)) from exc
        finally:
            _close(fh)


def pace_delay_s(sent_bytes: int, elapsed_s: float, max_bytes_per_s: float | None) -> float:
    """Pure: how long to wait so that ``sent_bytes`` in ``elapsed_s`` stays within the budget."""
    if max_bytes_per_s is None:
        return 0.0
    return max(0.0, sent_bytes / max_bytes_per_s - elapsed_s)


def _content_range_start(value: str) -> int | None:
    # "bytes 100-199/200"
    try:
        unit, _, rest = value.partition(" ")
        if unit != "bytes":
            return None
        return int(rest.split("-", 1)[0])
    except ValueError:
        return None


def _digest_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ_BYTES):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _close(fh: BinaryIO | None) -> None:
    if fh is not None and not fh.closed:
        fh.close()
