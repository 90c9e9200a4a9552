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
