"""What the device is: OS, kernel, Python and CPU, read in-process at start (cheap: the ``platform`` module
and ``/proc/cpuinfo``, no runtime imports; the runtimes' inventory is ``agent.runtime.inventory``).

Every text is clipped to the report's limit (``MAX_HOST_TEXT_CHARS``; 32 for ``os``, ``arch`` and
``python``) so a device with an odd CPU string still reports: the rule is "truncate on the device, refuse on
the server", and a well-behaved agent never sends a report the server refuses.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from edgefleet.protocol.limits import MAX_HOST_TEXT_CHARS
from edgefleet.protocol.wire.desired_state import CpuInventory, HostInventory

__all__ = ["clip", "cpu_model_from_cpuinfo", "host_inventory"]

_SHORT_CHARS = 32
_CPUINFO = Path("/proc/cpuinfo")
_CPUINFO_MAX_BYTES = 256_000
_MODEL_KEYS = ("model name", "hardware", "processor", "cpu model", "cpu")


def clip(text: str, max_chars: int) -> str:
    """``text`` without control characters and outer space, at most ``max_chars`` characters."""
    cleaned = "".join(c for c in text if c.isprintable()).strip()
    return cleaned[:max_chars]


def cpu_model_from_cpuinfo(text: str) -> str:
    """Pure: the CPU model named in ``/proc/cpuinfo`` text (x86 ``model name``; ARM ``Hardware`` or
    ``CPU part``-less boards fall back to ``Processor``), or ``""``."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if sep and value and key in _MODEL_KEYS and key not in found and not value.isdigit():
            found[key] = value
    return next((found[k] for k in _MODEL_KEYS if k in found), "")


def _cpu_model() -> str:
    try:
        with _CPUINFO.open("rb") as f:
            text = f.read(_CPUINFO_MAX_BYTES).decode("utf-8", "replace")
    except OSError:
        text = ""
    return cpu_model_from_cpuinfo(text) or platform.processor()


def _os_version() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return platform.version()
    return release.get("PRETTY_NAME") or release.get("NAME", "")


def host_inventory() -> HostInventory:
    """This host's OS and CPU, each text clipped to its limit."""
    return HostInventory(
        os=clip(platform.system().lower(), _SHORT_CHARS),
        os_version=clip(_os_version(), MAX_HOST_TEXT_CHARS),
        kernel=clip(platform.release(), MAX_HOST_TEXT_CHARS),
        python=clip(platform.python_version(), _SHORT_CHARS),
        cpu=CpuInventory(
            model=clip(_cpu_model(), MAX_HOST_TEXT_CHARS),
            arch=clip(platform.machine(), _SHORT_CHARS),
            cores=min(os.cpu_count() or 0, 4096),
        ),
    )
