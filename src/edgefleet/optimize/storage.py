"""Startup on the class's storage: load time and time to first inference with the model file read at the
class's declared read speed (``budgets.storage_read_mb_s``).

The build host's disk (and its page cache) is faster than an SD card or eMMC. Where the class declares its
read speed, the model file is read through a rate-limited reader (``throttled_read``: chunks, each followed
by the sleep that keeps the running average at the declared speed, on top of the real read), and the session
is created from those bytes; load time = that read + session creation. A cgroup ``io.max`` would throttle
the block device instead, but needs a writable cgroup v2 with the io controller *and* a read that misses the
page cache; ``io_max_statement`` says whether this host has one, and the figures say which way they were
taken. Without a declared speed, the file is read at the host's speed and the figures say so.

The class's load-time budget (``performance.load_time_ms``) is judged on these figures by the selection
(``select``), like every other budget.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefleet.optimize.session import SessionSettings

__all__ = [
    "Startup",
    "io_max_statement",
    "measure_startup",
    "throttled_read",
]

CHUNK_BYTES = 256 * 1024
MB = 1_000_000


@dataclass(frozen=True)
class Startup:
    read_ms: float
    session_ms: float
    first_inference_ms: float
    read_mb_s: float | None
    """the declared speed the read was held to; None: the host's own speed"""
    method: str

    @property
    def load_time_ms(self) -> float:
        return self.read_ms + self.session_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "load_time_ms": self.load_time_ms}


def throttled_read(
    path: Path,
    bytes_per_s: float | None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    chunk_bytes: int = CHUNK_BYTES,
) -> bytes:
    """The file's bytes, read no faster than ``bytes_per_s`` on average (``None``: the host's speed)."""
    parts: list[bytes] = []
    start = clock()
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            parts.append(chunk)
            done += len(chunk)
            if bytes_per_s:
                ahead_s = done / bytes_per_s - (clock() - start)
                if ahead_s > 0:
                    sleep(ahead_s)
    return b"".join(parts)


def io_max_statement(
    mounts: Path = Path("/proc/mounts"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> str:
    """In words: could this host throttle the block device with cgroup ``io.max``? (We read through the
    rate-limited reader either way: it works without privileges and regardless of the page cache.)"""
    try:
        rel = next((ln[3:] for ln in self_cgroup.read_text().splitlines() if ln.startswith("0::")), None)
        mount = next(
            (ln.split()[1] for ln in mounts.read_text().splitlines() if ln.split()[2:3] == ["cgroup2"]), None
        )
    except OSError as exc:
        return f"cgroup io.max not used: cgroups unreadable ({exc.strerror})"
    if rel is None or mount is None:
        return "cgroup io.max not used: no cgroup v2 here"
    base = Path(mount) / rel.lstrip("/")
    try:
        controllers = (base / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return f"cgroup io.max not used: {base} unreadable ({exc.strerror})"
    if "io" not in controllers:
        return f"cgroup io.max not used: no io controller at {base}"
    return f"cgroup io.max available at {base} but not used: a page-cached read would bypass it"


def measure_startup(
    path: Path,
    settings: SessionSettings,
    inputs: Mapping[str, np.ndarray],
    *,
    read_mb_s: float | None,
    repeats: int = 3,
) -> Startup:
    """Median over ``repeats`` of: read the file (throttled to ``read_mb_s``), create the session from the
    bytes, run ``inputs`` once."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op
    options.inter_op_num_threads = settings.inter_op
    options.log_severity_level = 3
    reads, sessions, firsts = [], [], []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        data = throttled_read(path, read_mb_s * MB if read_mb_s else None)
        read_done = time.perf_counter()
        session = ort.InferenceSession(data, sess_options=options, providers=list(settings.providers))
        session_done = time.perf_counter()
        session.run(None, dict(inputs))
        first_done = time.perf_counter()
        reads.append((read_done - start) * 1000.0)
        sessions.append((session_done - read_done) * 1000.0)
        firsts.append((first_done - session_done) * 1000.0)
    how = (
        f"model read at the class's {read_mb_s:g} MB/s through a rate-limited reader"
        if read_mb_s
        else "model read at the build host's speed (the class declares no storage read speed)"
    )
    return Startup(
        read_ms=statistics.median(reads),
        session_ms=statistics.median(sessions),
        first_inference_ms=statistics.median(firsts),
        read_mb_s=read_mb_s,
        method=f"{how}; {io_max_statement()}; median of {max(1, repeats)}",
    )
