"""CPU features of the measuring machine, read from ``/proc/cpuinfo`` (recorded in every report)."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CpuInfo", "detect_cpu", "parse_cpuinfo"]

_INTERESTING = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "sse4_2")
_ARM_INTERESTING = ("asimd", "asimddp", "i8mm", "fphp", "asimdhp", "sve")
MAX_CPUINFO_BYTES = 4_000_000


@dataclass(frozen=True)
class CpuInfo:
    model_name: str
    arch: str
    logical_cores: int
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def vnni(self) -> bool:
        """VNNI (x86) or dot-product (Arm) int8 instructions: where INT8 usually pays."""
        return any(f in self.flags for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flags"] = list(self.flags)
        out["vnni"] = self.vnni
        out["avx2"] = "avx2" in self.flags
        out["avx512"] = "avx512f" in self.flags
        return out


def parse_cpuinfo(text: str, *, arch: str, logical_cores: int) -> CpuInfo:
    """Pure: the model name and the int8/float-relevant flags of the first processor block."""
    model_name, flags = "unknown", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model_name == "unknown":
            model_name = value.strip() or "unknown"
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    wanted = [f for f in (*_INTERESTING, *_ARM_INTERESTING) if f in flags]
    return CpuInfo(model_name=model_name, arch=arch, logical_cores=logical_cores, flags=tuple(wanted))


def detect_cpu(path: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    try:
        with path.open("rb") as fh:
            text = fh.read(MAX_CPUINFO_BYTES).decode("utf-8", "replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, arch=platform.machine() or "unknown", logical_cores=os.cpu_count() or 1)
