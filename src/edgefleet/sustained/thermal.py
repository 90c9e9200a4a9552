"""Thermal zones, CPU frequency and throttle counters from ``/sys``; ``available=False`` where absent.

Read-only and best effort: a device (or a container) that exposes none of these gives an empty snapshot,
which every reader states as "unavailable", never as zero.
"""

from __future__ import annotations

from pathlib import Path

from edgefleet.protocol.probe import ThermalSnapshot

__all__ = ["read_thermal"]

MAX_ZONES = 64
MAX_CPUS = 256


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def read_thermal(sys_root: Path = Path("/sys")) -> ThermalSnapshot:
    temps: dict[str, float] = {}
    for zone in sorted((sys_root / "class" / "thermal").glob("thermal_zone*"))[:MAX_ZONES]:
        millideg = _read_int(zone / "temp")
        if millideg is not None:
            try:
                kind = (zone / "type").read_text().strip()[:32]
            except OSError:
                kind = ""
            temps[f"{zone.name}:{kind}" if kind else zone.name] = millideg / 1000.0
    freqs: dict[str, int] = {}
    throttles: list[int] = []
    cpus = sorted((sys_root / "devices" / "system" / "cpu").glob("cpu[0-9]*"))[:MAX_CPUS]
    for cpu in cpus:
        khz = _read_int(cpu / "cpufreq" / "scaling_cur_freq")
        if khz is not None:
            freqs[cpu.name] = khz
        for counter in ("core_throttle_count", "package_throttle_count"):
            value = _read_int(cpu / "thermal_throttle" / counter)
            if value is not None:
                throttles.append(value)
    return ThermalSnapshot(
        available=bool(temps or freqs or throttles),
        max_temp_c=max(temps.values()) if temps else None,
        temps_c=temps,
        cpu_freq_khz=freqs,
        throttle_count=sum(throttles) if throttles else None,
    )
