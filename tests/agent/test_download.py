"""Resumable, bounded, verified downloads against a real HTTP server on loopback, with injected faults."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from edgefleet.agent.install.download import Downloader, DownloadPolicy
from edgefleet.trust.errors import (
    DiskFullError,
    DownloadFailedError,
    DownloadTooLargeError,
    DownloadTooSlowError,
    HashMismatchError,
)
from edgefleet.trust.events import ListSink

_spec = importlib.util.spec_from_file_location(
    "edgefleet_tests_loopback", Path(__file__).parents[1] / "trust" / "loopback.py"
)
assert _spec is not None
assert _spec.loader is not None
loopback = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = loopback
    _spec.loader.exec_module(loopback)

DATA = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(DATA).hexdigest()
NAME = "a/b/model.onnx"
FAST = DownloadPolicy(reserve_bytes=0, deadline_s=30, grace_s=0.3, min_bytes_per_s=20_000, read_timeout_s=5)


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "mirror"
    (root / "a" / "b").mkdir(parents=True)
    (root / NAME).write_bytes(DATA)
    mirror = loopback.Mirror(root)
    client = httpx.Client()
    yield mirror, client
    client.close()
    mirror.close()


def _downloader(tmp_path: Path, client: httpx.Client, events: ListSink, **kw) -> Downloader:
    return Downloader(tmp_path / "staging", client, kw.pop("policy", FAST), events=events, **kw)


def _staged(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "staging").iterdir())


def test_download_verifies_and_stages_content_addressed(tmp_path, served) -> None:
    mirror, client = served
    events = ListSink()
    path = _downloader(tmp_path, client, events).fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert path.name == SHA
    assert path.read_bytes() == DATA
    assert events.codes == []


def test_dropped_connection_keeps_prefix_and_resumes_with_range(tmp_path, served) -> None:
    mirror, client = served
    mirror.faults[NAME] = loopback.Fault(drop_after=300_000, times=1)
    dl = _downloader(tmp_path, client, ListSink())
    with pytest.raises(DownloadFailedError):
        dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    kept = dl.partial_path(SHA).stat().st_size
    assert 0 < kept <= 300_000
    path = dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert path.read_bytes() == DATA
    assert mirror.requests[-1] == (NAME, f"bytes={kept}-")
    assert _staged(tmp_path) == [SHA]


def test_server_ignoring_range_restarts_cleanly(tmp_path, served) -> None:
    mirror, client = served
    mirror.faults[NAME] = loopback.Fault(drop_after=100_000, times=1)
    dl = _downloader(tmp_path, client, ListSink())
    with pytest.raises(DownloadFailedError):
        dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    mirror.faults[NAME] = loopback.Fault(ignore_range=True)
    assert dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA)).read_bytes() == DATA


def test_resumed_download_whose_tail_changed_is_detected(tmp_path, served) -> None:
    mirror, client = served
    mirror.faults[NAME] = loopback.Fault(drop_after=500_000, times=1)
    events = ListSink()
    dl = _downloader(tmp_path, client, events)
    with pytest.raises(DownloadFailedError):
        dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    changed = DATA[:500_000] + bytes(len(DATA) - 500_000)
    mirror.faults[NAME] = loopback.Fault(body=changed)
    with pytest.raises(HashMismatchError):
        dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert _staged(tmp_path) == []  # partial removed, nothing staged
    assert events.codes == ["hash_mismatch"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (bytes([DATA[0] ^ 1]) + DATA[1:], HashMismatchError),  # swapped bytes
        (DATA[:-10], HashMismatchError),  # truncated
        (DATA + b"extra", DownloadTooLargeError),  # extended
    ],
    ids=["swapped", "truncated", "extended"],
)
def test_tampered_bytes_on_the_mirror_are_rejected(tmp_path, served, body, error) -> None:
    mirror, client = served
    mirror.faults[NAME] = loopback.Fault(body=body)
    events = ListSink()
    with pytest.raises(error) as info:
        _downloader(tmp_path, client, events).fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert _staged(tmp_path) == []
    assert events.codes == [info.value.code]


def test_endless_body_is_cut_at_the_signed_length(tmp_path, served) -> None:
    mirror, client = served
    mirror.faults[NAME] = loopback.Fault(endless=True)
    events = ListSink()
    with pytest.raises(DownloadTooLargeError):
        _downloader(tmp_path, client, events).fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert _staged(tmp_path) == []
    assert events.codes == ["download_too_large"]


def test_trickling_server_is_cut_by_the_throughput_rule(tmp_path, served) -> None:
    mirror, client = served
    mirror.faults[NAME] = loopback.Fault(trickle_delay_s=0.01)
    events = ListSink()
    with pytest.raises(DownloadTooSlowError) as info:
        _downloader(tmp_path, client, events).fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert info.value.code == "download_too_slow"
    assert events.codes == ["download_too_slow"]
    assert SHA not in _staged(tmp_path)


def test_disk_space_is_checked_before_starting(tmp_path, served) -> None:
    mirror, client = served
    events = ListSink()
    dl = _downloader(tmp_path, client, events, free_bytes=lambda _p: len(DATA) - 1)
    with pytest.raises(DiskFullError):
        dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert mirror.requests == []
    assert events.codes == ["disk_full"]


def test_disk_full_while_downloading_removes_the_partial(tmp_path, served) -> None:
    mirror, client = served

    class FillsUp:
        def __init__(self, path: Path) -> None:
            self._fh = open(path, "ab")  # noqa: SIM115
            self.closed = False

        def write(self, data: bytes) -> int:
            if self._fh.tell() + len(data) > 200_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._fh.write(data)

        def flush(self) -> None:
            self._fh.flush()

        def fileno(self) -> int:
            return self._fh.fileno()

        def close(self) -> None:
            self._fh.close()
            self.closed = True

    def opener(path: Path) -> BinaryIO:
        return FillsUp(path)  # type: ignore[return-value]

    events = ListSink()
    dl = _downloader(tmp_path, client, events, open_append=opener)
    with pytest.raises(DiskFullError):
        dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert _staged(tmp_path) == []
    assert events.codes == ["disk_full"]


def test_corrupted_staged_file_is_downloaded_again(tmp_path, served) -> None:
    mirror, client = served
    dl = _downloader(tmp_path, client, ListSink())
    path = dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    path.write_bytes(b"rotten")
    assert dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA)).read_bytes() == DATA


def _aged(path: Path, data: bytes, age_s: float) -> Path:
    path.write_bytes(data)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_starting_a_download_sweeps_stale_partials_of_other_targets(tmp_path, served) -> None:
    mirror, client = served
    dl = _downloader(tmp_path, client, ListSink())
    old_assignment = _aged(dl.partial_path("1" * 64), b"x" * 1000, age_s=FAST.stale_partial_s + 60)
    other_slot = _aged(dl.partial_path("2" * 64), b"y" * 1000, age_s=5)  # being resumed by another slot
    same_artifact = _aged(dl.partial_path("3" * 64), b"z" * 1000, age_s=FAST.stale_partial_s + 60)
    unrelated = _aged(tmp_path / "staging" / "notes.txt", b"keep me", age_s=FAST.stale_partial_s + 60)
    own = dl.partial_path(SHA)
    own.write_bytes(DATA[:300_000])

    path = dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA), keep={"3" * 64})
    assert path.read_bytes() == DATA
    assert mirror.requests[-1] == (NAME, "bytes=300000-"), "its own partial was resumed"
    assert not old_assignment.exists()
    assert other_slot.exists()
    assert same_artifact.exists()
    assert unrelated.exists()


def test_a_finished_download_left_behind_is_swept_after_the_grace_period(tmp_path, served) -> None:
    """A delta stays at ``downloads/<sha256>`` while its file is rebuilt: a power cut then leaves it whole,
    and when the assignment moves on it must not stay on the device's disk for ever."""
    mirror, client = served
    dl = _downloader(tmp_path, client, ListSink())
    left = _aged(dl.final_path("1" * 64), b"x" * 1000, age_s=FAST.stale_partial_s + 60)
    fresh = _aged(dl.final_path("2" * 64), b"y" * 1000, age_s=5)  # another slot's, being applied now
    same_artifact = _aged(dl.final_path("3" * 64), b"z" * 1000, age_s=FAST.stale_partial_s + 60)
    assert (
        dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA), keep={"3" * 64}).read_bytes() == DATA
    )
    assert not left.exists()
    assert fresh.exists()
    assert same_artifact.exists()


def test_short_of_disk_every_other_partial_is_swept_before_refusing(tmp_path, served) -> None:
    mirror, client = served
    dl = _downloader(tmp_path, client, ListSink(), free_bytes=lambda _p: 0)
    fresh = _aged(dl.partial_path("2" * 64), b"y" * 1000, age_s=0)
    kept = _aged(dl.partial_path("3" * 64), b"z" * 1000, age_s=0)
    with pytest.raises(DiskFullError):
        dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA), keep={"3" * 64})
    assert not fresh.exists(), "swept to make room"
    assert kept.exists()

    # the space freed by the sweep is enough: the download goes ahead
    other = _aged(dl.partial_path("4" * 64), b"w" * 1000, age_s=0)
    dl = _downloader(tmp_path, client, ListSink(), free_bytes=lambda _p: 0 if other.exists() else len(DATA))
    assert dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA)).read_bytes() == DATA
    assert _staged(tmp_path) == [SHA]


def test_sweep_partials_reports_what_it_removed(tmp_path, served) -> None:
    _mirror, client = served
    dl = _downloader(tmp_path, client, ListSink())
    a = _aged(dl.partial_path("a" * 64), b"1", age_s=10)
    b = _aged(dl.partial_path("b" * 64), b"2", age_s=10)
    assert dl.sweep_partials({"b" * 64}, min_age_s=60) == []
    assert dl.sweep_partials({"b" * 64}, min_age_s=5) == [a]
    assert b.exists()


def test_the_class_download_budget_paces_reading(tmp_path, served) -> None:
    """A fake clock that never advances: every byte read must be paid for by a sleep, in total the bytes
    over the budget (no timing asserted)."""
    from dataclasses import replace

    from edgefleet.agent.install.download import pace_delay_s

    mirror, client = served
    slept: list[float] = []
    budget = 100_000.0
    dl = _downloader(
        tmp_path,
        client,
        ListSink(),
        policy=replace(FAST, max_bytes_per_s=budget),
        sleep=slept.append,
        monotonic=lambda: 0.0,
    )
    path = dl.fetch(f"{mirror.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert path.read_bytes() == DATA
    assert slept, "reading was never paced"
    assert max(slept) == pytest.approx(len(DATA) / budget)  # cumulative: the last wait covers every byte
    assert pace_delay_s(1000, 0.0, None) == 0.0  # no budget: never waits
    assert pace_delay_s(1000, 5.0, 100.0) == pytest.approx(5.0)
    assert pace_delay_s(1000, 20.0, 100.0) == 0.0  # behind the budget already: no wait
    assert replace(FAST, max_bytes_per_s=4000).limits(10).min_bytes_per_s == 1000  # pacing is not trickling
