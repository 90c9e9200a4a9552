"""The quickstart's process group: what it starts it stops, grandchildren included, and it can tell."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from edgefleet.quickstart.processes import ProcessGroup

# A child that starts a grandchild in its own process group and then exits on SIGTERM, leaving it behind.
_LEAVES_A_GRANDCHILD = (
    "import signal, subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "print(g.pid, flush=True)\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "time.sleep(120)\n"
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not running.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _grandchild_pid(log: Path, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text().strip() if log.exists() else ""
        if text:
            return int(text.splitlines()[0])
        time.sleep(0.05)
    raise AssertionError("the child never reported its grandchild")


def test_stop_all_reaches_grandchildren_and_alive_reports_the_truth(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    group.start("leaver", [sys.executable, "-c", _LEAVES_A_GRANDCHILD])
    grandchild = _grandchild_pid(tmp_path / "leaver.log")
    assert group.alive() == ["leaver"]
    group.stop_all()
    deadline = time.monotonic() + 5
    while _pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(grandchild)
    assert group.alive() == []
    assert group.children == {}
    assert set(group.stopped) == {"leaver"}


def test_alive_sees_a_group_member_left_after_its_leader_exited(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path)
    proc = group.start("leaver", [sys.executable, "-c", _LEAVES_A_GRANDCHILD])
    grandchild = _grandchild_pid(tmp_path / "leaver.log")
    try:
        proc.send_signal(signal.SIGTERM)  # the leader exits; its grandchild keeps the group alive
        proc.wait(timeout=10)
        assert group.alive() == ["leaver"]
    finally:
        os.kill(grandchild, signal.SIGKILL)
