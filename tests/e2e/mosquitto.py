"""A private Mosquitto for a test: a free loopback port, a generated config, password file and ACL (the
shipped ``examples/mosquitto/edgefleet.acl``), started and stopped by the test."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

ACL = Path(__file__).resolve().parents[2] / "examples" / "mosquitto" / "edgefleet.acl"
CONTROL_USER = "edgefleet-control"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.password_file = directory / "passwd"
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        config = self.directory / "mosquitto.conf"
        config.write_text(
            f"user {getpass.getuser()}\n"  # as root it would drop to `mosquitto`: keep our files readable
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {self.password_file}\n"
            f"acl_file {ACL}\n"
            f"listener {self.port} 127.0.0.1\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n"
        )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log.read_text()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def has_client(self, username: str) -> bool:
        """Whether a client logged in as ``username`` has connected (Mosquitto's ``notice`` log line)."""
        return self.log.exists() and f"u'{username}'" in self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
