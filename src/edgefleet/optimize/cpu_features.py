"""CPU features: of the measuring machine (``/proc/cpuinfo``, recorded in every report) and of the devices a
class declares, which decide the INT8 weight range (the build machine is rarely the device)."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.protocol import HardwareClass

__all__ = [
    "X86_VNNI_FLAGS",
    "CpuInfo",
    "build_reduce_range",
    "class_needs_reduce_range",
    "detect_cpu",
    "parse_cpuinfo",
]

X86_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})

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


def class_needs_reduce_range(hwclass: HardwareClass) -> bool:
    """Whether INT8 weights for ``hwclass`` must be 7-bit (``reduce_range``).

    ONNX Runtime's x86-64 U8S8 kernels without VNNI add pairs of u8*s8 products in int16 (``vpmaddubsw``),
    which saturates with full 8-bit weights. A class on x86-64 that does not declare a VNNI flag (or declares
    no CPU features at all: unknown means the most conservative CPU) gets 7-bit weights; other arches do not
    use that kernel. Decided from the class, never from the machine that happens to run the build.
    """
    if hwclass.cpu_arch != "x86_64":
        return False
    return hwclass.cpu_features is None or not (X86_VNNI_FLAGS & set(hwclass.cpu_features))


def build_reduce_range(classes: list[HardwareClass]) -> bool:
    """The weight range of the build's INT8 candidates, shared by every class that allows INT8.

    7-bit weights are correct everywhere (full range only buys a little precision on VNNI CPUs), so one
    class that needs them decides for all: no class ever gets full-range INT8 that could saturate on it.
    """
    return any(class_needs_reduce_range(c) for c in classes if "int8" in c.precisions)
