"""The agent caps glibc's malloc arenas, unless the operator set MALLOC_ARENA_MAX (agent/malloc_arenas.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from edgefleet.agent import malloc_arenas
from edgefleet.agent.malloc_arenas import cap_malloc_arenas


def test_the_environment_wins() -> None:
    assert (
        cap_malloc_arenas({"MALLOC_ARENA_MAX": "4"})
        == "malloc arenas: MALLOC_ARENA_MAX=4 from the environment"
    )


def test_elsewhere_than_glibc_nothing_changes(monkeypatch) -> None:
    monkeypatch.setattr(malloc_arenas.platform, "libc_ver", lambda: ("", ""))
    assert cap_malloc_arenas({}) == "malloc arenas: not glibc, left as they are"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_glibc_takes_the_cap_in_a_fresh_process() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edgefleet.agent.malloc_arenas import cap_malloc_arenas as c; print(c({}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "malloc arenas: at most 2"


def test_the_heap_is_trimmed_at_the_first_tick_then_once_per_interval() -> None:
    calls: list[int] = []
    heap = malloc_arenas.HeapTrim(100.0, interval_s=60.0, trim=lambda pad: calls.append(pad) or 1)
    assert [heap.tick(t) for t in (101.0, 102.0, 160.9, 161.0, 200.0, 221.0)] == [
        True, False, False, True, False, True,
    ]  # fmt: skip
    assert calls == [0, 0, 0]
    assert heap.trims == 3


def test_elsewhere_than_glibc_the_heap_is_left_as_it_is(monkeypatch) -> None:
    monkeypatch.setattr(malloc_arenas.platform, "libc_ver", lambda: ("", ""))
    heap = malloc_arenas.HeapTrim(0.0)
    assert not heap.available
    assert heap.tick(1000.0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_glibc_gives_freed_heap_pages_back() -> None:
    """Blocks freed below the heap's top stay resident until trimmed: VmRSS falls at the trim."""
    code = """
import sys
from edgefleet.agent.malloc_arenas import HeapTrim
def rss_kb():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
blocks = [bytearray(4000) for _ in range(20000)]  # ~80 MB under the mmap threshold: the heap
keep = bytearray(4000)  # a live block above them keeps the heap's top from shrinking by itself
del blocks
before = rss_kb()
heap = HeapTrim(0.0)
assert heap.tick(1.0)
print(before - rss_kb())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 40_000  # KiB given back
