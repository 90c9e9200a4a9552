"""The processes the quickstart starts (a control plane, agents), and their guaranteed clean-up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["ProcessGroup", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ProcessGroup:
    """Every child started through ``start`` is stopped by ``stop_all`` (SIGTERM, then SIGKILL).

    Each child leads its own session and process group, so stopping it also reaches anything it started;
    ``alive`` asks the operating system, for every child ever started, whether its group still has a member.
    """

    log_dir: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopped: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.close()
        self.children[name] = proc
        return proc

    def stop(self, name: str, timeout_s: float = 20.0) -> None:
        proc = self.children.pop(name, None)
        if proc is None:
            return
        self.stopped[name] = proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout_s)
        _kill_group(proc.pid)  # whatever the child itself started and left behind

    def stop_all(self) -> None:
        for name in list(self.children):
            self.stop(name)

    def alive(self) -> list[str]:
        """Names of the children, running or stopped, whose process or process group is still alive."""
        every = {**self.stopped, **self.children}
        return sorted(name for name, proc in every.items() if proc.poll() is None or _group_alive(proc.pid))


def _group_alive(pgid: int) -> bool:
    """Whether a running (not zombie) process is in group ``pgid``; /proc where there is one."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc_root.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it exited while we looked
        # After the command: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def edgefleet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgefleet.cli", *args]


def wait_http(url: str, *, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")
