"""Device resources sampled once per window, read from ``/sys`` and ``/proc`` where the OS exposes them.

A sensor that does not exist is recorded as absent (``None``), never as zero: a fleet view must not show a
device without a thermal zone as running at 0 °C.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

from edgefleet.protocol.wire.telemetry import ResourceSample

__all__ = ["FixedResources", "ResourceSampler", "SysResources"]

_MAX_READ_BYTES = 64_000


class ResourceSampler(Protocol):
    def sample(self) -> ResourceSample: ...


class FixedResources:
    """A fake for tests: returns what it was given."""

    def __init__(self, sample: ResourceSample | None = None) -> None:
        self.value = sample or ResourceSample()

    def sample(self) -> ResourceSample:
        return self.value


class SysResources:
    """The real sampler. ``sys_root``/``proc_root`` are injectable so tests can lay out fake trees."""

    def __init__(
        self, *, disk_path: Path | str, sys_root: Path | str = "/sys", proc_root: Path | str = "/proc"
    ) -> None:
        self.disk_path = Path(disk_path)
        self.sys_root = Path(sys_root)
        self.proc_root = Path(proc_root)

    def sample(self) -> ResourceSample:
        mem_total, mem_available = self._meminfo()
        disk_total = disk_free = None
        try:
            usage = shutil.disk_usage(self.disk_path)
            disk_total, disk_free = int(usage.total), int(usage.free)
        except OSError:
            pass
        return ResourceSample(
            cpu_temp_c=self._cpu_temp_c(),
            cpu_throttle_count=self._throttle_count(),
            mem_total_bytes=mem_total,
            mem_available_bytes=mem_available,
            disk_total_bytes=disk_total,
            disk_free_bytes=disk_free,
            load_1m=self._load_1m(),
        )

    def _cpu_temp_c(self) -> float | None:
        """The hottest thermal zone (millidegrees in sysfs)."""
        temps: list[float] = []
        zones = self.sys_root / "class" / "thermal"
        for zone in sorted(zones.glob("thermal_zone*"))[:64]:
            value = _read_int(zone / "temp")
            if value is not None and -50_000 < value < 200_000:
                temps.append(value / 1000.0)
        return max(temps) if temps else None

    def _throttle_count(self) -> int | None:
        """Sum of per-core throttle events (x86 ``thermal_throttle``); absent elsewhere."""
        total: int | None = None
        cpus = self.sys_root / "devices" / "system" / "cpu"
        for cpu in sorted(cpus.glob("cpu[0-9]*"))[:1024]:
            value = _read_int(cpu / "thermal_throttle" / "core_throttle_count")
            if value is not None and value >= 0:
                total = (total or 0) + value
        return total

    def _meminfo(self) -> tuple[int | None, int | None]:
        text = _read_text(self.proc_root / "meminfo")
        if text is None:
            return None, None
        fields: dict[str, int] = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name.strip()] = int(parts[0]) * 1024
        return fields.get("MemTotal"), fields.get("MemAvailable")

    def _load_1m(self) -> float | None:
        text = _read_text(self.proc_root / "loadavg")
        if text is not None:
            try:
                return max(0.0, float(text.split()[0]))
            except (IndexError, ValueError):
                return None
        try:
            return max(0.0, os.getloadavg()[0])
        except OSError:
            return None


def _read_text(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            return fh.read(_MAX_READ_BYTES).decode("ascii", "replace")
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None
