"""Run ``edgefleet server`` as its own process for a benchmark, and read its CPU time."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["ServerProcess", "start_server"]


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    log_path: Path
    """The server's stderr, a file: a pipe nobody reads fills up and blocks the server (a 100,000-device run
    froze both replicas once their error logs filled the bench's unread pipes)."""

    def log_tail(self, max_bytes: int = 4000) -> str:
        data = self.log_path.read_bytes() if self.log_path.exists() else b""
        return data[-max_bytes:].decode(errors="replace")

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    data_dir: Path, *, env: dict[str, str] | None = None, timeout_s: float = 60
) -> ServerProcess:
    port = _free_port()
    token = secrets.token_urlsafe(32)
    full_env = {**os.environ, "EDGEFLEET_ADMIN_TOKEN": token, "EDGEFLEET_LOG_LEVEL": "warning", **(env or {})}
    cmd = [str(Path(sys.executable).parent / "edgefleet"), "server", "--dev", "--data-dir", str(data_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    log_path = data_dir.parent / f"{data_dir.name}-{port}.stderr.log"  # replicas may share a data dir
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=log)
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", token, log_path)
    url = server.url
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {server.log_tail()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"server did not start within {timeout_s} s")
