"""A hardware class emulated on the build host: each candidate measured in a fresh process under the class's
limits (CPU quota and threads, memory budget, load-time budget).

Two passes per class:
1. one fresh process per candidate (``emulate_child``): session load time, first inference, a few runs, and
   its peak resident set (``VmHWM`` of the new process image; the sampled ``VmRSS`` where it was killed):
   the runtime plus this one model, as on a device. The memory budget is enforced: by the cgroup's
   ``memory.max`` where cgroups v2 can be written here, otherwise by watching the process's resident set
   and killing it when it passes the budget. A candidate killed or crashed there is reported failed with
   the reason.
   With ``sustained_s`` > 0 that process then runs the candidate back to back for that long: p95 of the first
   and last window (a minute; a third of a shorter run), drift, and the host's throttle counters and
   temperature read from ``/sys`` before and after the process ("unavailable" where the host exposes none).
   Candidates run one after the other: each starts on a host its predecessor warmed.
2. one process for the survivors: latency timed interleaved in rounds (pairwise comparable) under the CPU
   limit: the cgroup's ``cpu.max`` quota where writable, otherwise pinned to ``ceil(quota)`` CPUs of the host
   (a fractional quota is then not enforced, and the report says so).

The host's cores are not the devices' cores: emulated figures bound memory and load time honestly and rank
candidates under the class's threads, but only a probe on devices measures the class's speed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.optimize.dataset import Dataset
from edgefleet.optimize.figures import Figures
from edgefleet.optimize.measure import others_load_per_cpu
from edgefleet.optimize.noise import latency_from_samples
from edgefleet.optimize.session import SessionSettings
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.sustained.drift import window_figures, window_s_for
from edgefleet.sustained.thermal import read_thermal

__all__ = ["Enforcement", "Limits", "detect_enforcement", "emulate_class", "limits_for"]

MIB = 1024 * 1024
POLL_S = 0.01
CGROUP_PERIOD_US = 100_000
# run as a script, not with -m: importing the edgefleet package would load the whole build into the child
CHILD = Path(__file__).with_name("emulate_child.py")


@dataclass(frozen=True)
class Limits:
    cpu_cores: float
    intra_op: int
    inter_op: int
    ram_bytes: int
    load_time_ms: float | None


def limits_for(hwclass: HardwareClass) -> Limits:
    """Pure: the class's limits. CPU quota: ``budgets.cpu_cores``, else as many cores as intra-op threads."""
    cores = hwclass.budgets.cpu_cores or float(hwclass.threads.intra_op)
    return Limits(
        cpu_cores=cores,
        intra_op=hwclass.threads.intra_op,
        inter_op=hwclass.threads.inter_op,
        ram_bytes=hwclass.budgets.ram_mb * MIB,
        load_time_ms=hwclass.performance.load_time_ms,
    )


@dataclass(frozen=True)
class Enforcement:
    """How limits can be applied on this host. ``cgroup``: a writable cgroup v2 directory with the cpu and
    memory controllers, under which one child cgroup per measurement is made; None: the fallback."""

    cgroup: Path | None
    reason: str


def _own_cgroup_v2(mounts: str, self_cgroup: str) -> Path | None:
    mount = next((line.split()[1] for line in mounts.splitlines() if line.split()[2:3] == ["cgroup2"]), None)
    rel = next((line[3:] for line in self_cgroup.splitlines() if line.startswith("0::")), None)
    if mount is None or rel is None:
        return None
    return Path(mount) / rel.lstrip("/")


def detect_enforcement(
    mounts_path: Path = Path("/proc/mounts"), self_cgroup_path: Path = Path("/proc/self/cgroup")
) -> Enforcement:
    """Can this process make child cgroups with cpu and memory limits? Tried for real (mkdir, then rmdir)."""
    try:
        base = _own_cgroup_v2(mounts_path.read_text(), self_cgroup_path.read_text())
    except OSError as exc:
        return Enforcement(None, f"cgroups unreadable here ({exc})")
    if base is None:
        return Enforcement(None, "no cgroup v2 hierarchy here (cgroup v1 or none)")
    try:
        controllers = (base / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return Enforcement(None, f"cgroup v2 at {base} unreadable ({exc.strerror})")
    missing = [c for c in ("cpu", "memory") if c not in controllers]
    if missing:
        return Enforcement(
            None, f"cgroup v2 at {base} offers no {'/'.join(missing)} controller ({controllers})"
        )
    probe = base / f"edgefleet-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        (base / "cgroup.subtree_control").write_text("+cpu +memory")
    except OSError as exc:
        return Enforcement(None, f"cgroup v2 at {base} not writable by this user ({exc.strerror})")
    return Enforcement(base, f"cgroup v2 at {base}: cpu.max and memory.max")


def statement(limits: Limits, enforcement: Enforcement, host_cores: int) -> str:
    """Pure: in words, what was enforced and how, for the report."""
    quota = (
        f"CPU quota {limits.cpu_cores:g} cores, {limits.intra_op}/{limits.inter_op} intra/inter-op threads"
    )
    ram = f"memory budget {limits.ram_bytes / MIB:.0f} MiB"
    if enforcement.cgroup is not None:
        return f"{quota}, {ram}: enforced with {enforcement.reason}; peak RSS (VmHWM) in a fresh process"
    pinned = min(host_cores, max(1, math.ceil(limits.cpu_cores)))
    cpu = f"pinned to {pinned} of {host_cores} host CPUs (sched_setaffinity)"
    if pinned < limits.cpu_cores:
        cpu += f"; the host has fewer cores than the class's {limits.cpu_cores:g}"
    if limits.cpu_cores != math.ceil(limits.cpu_cores):
        cpu += f"; the fractional quota {limits.cpu_cores:g} is not enforced"
    return (
        f"{quota}, {ram}. No cgroup limits here ({enforcement.reason}): {cpu}; memory enforced by watching "
        "the process's resident set and killing it above the budget; peak RSS (VmHWM) in a fresh process "
        "per candidate"
    )


def _rss_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class ChildResult:
    output: dict[str, Any] | None
    peak_rss_bytes: int
    error: str | None


def _run_child(
    spec: dict[str, Any], work: Path, ram_bytes: int, timeout_s: float, cgroup: Path | None
) -> ChildResult:
    spec_path = work / f"spec-{uuid.uuid4().hex}.json"
    spec_path.write_text(json.dumps(spec))
    group: Path | None = None
    if cgroup is not None:
        group = cgroup / f"edgefleet-emulate-{uuid.uuid4().hex[:12]}"
        group.mkdir()
        (group / "cpu.max").write_text(f"{int(spec['cpu_quota'] * CGROUP_PERIOD_US)} {CGROUP_PERIOD_US}")
        (group / "memory.max").write_text(str(ram_bytes))
        (group / "memory.swap.max").write_text("0")
    procs = str(group / "cgroup.procs") if group else None

    def enter_group() -> None:  # in the child, before exec: the whole process lives under the limits
        if procs:
            Path(procs).write_text(str(os.getpid()))

    out_path = work / f"out-{uuid.uuid4().hex}.json"
    with out_path.open("wb") as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(CHILD), str(spec_path)],
            stdout=out,
            stderr=err,
            preexec_fn=enter_group if procs else None,  # no threads are started meanwhile
        )
        deadline = time.monotonic() + timeout_s
        error: str | None = None
        seen = 0
        status = None
        while status is None:
            pid, wait_status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                status = wait_status
                break
            seen = max(seen, _rss_of(proc.pid))
            if group is None and seen > ram_bytes and error is None:
                error = (
                    f"killed: resident memory {seen / MIB:.1f} MiB passed the class's budget "
                    f"{ram_bytes / MIB:.0f} MiB"
                )
                os.kill(proc.pid, signal.SIGKILL)
            elif time.monotonic() > deadline and error is None:
                error = f"killed: no answer within {timeout_s:.0f} s"
                os.kill(proc.pid, signal.SIGKILL)
            time.sleep(POLL_S)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if group is not None:
            events = (group / "memory.events").read_text() if (group / "memory.events").exists() else ""
            kills = [line.split()[1] for line in events.splitlines() if line.startswith("oom_kill ")]
            if kills and int(kills[0]) > 0:
                error = error or f"killed by the cgroup's memory.max ({ram_bytes / MIB:.0f} MiB)"
            with contextlib.suppress(OSError):
                group.rmdir()
        if error is None and proc.returncode != 0:
            err.seek(0)
            tail = err.read()[-400:].decode("utf-8", "replace").strip()
            error = f"exit code {proc.returncode}: {tail}"
    if error is not None:
        return ChildResult(None, seen, error)
    try:
        output = json.loads(out_path.read_text())
    except ValueError as exc:
        return ChildResult(None, seen, f"unreadable measurement ({exc})")
    return ChildResult(output, max(seen, int(output.get("peak_rss_bytes") or 0)), None)


def emulate_class(
    hwclass: HardwareClass,
    models: dict[str, Path],
    settings: SessionSettings,
    data: Dataset,
    work: Path,
    *,
    warmup_runs: int,
    runs: int,
    enforcement: Enforcement | None = None,
    max_samples: int = 16,
    timeout_s: float = 300.0,
    sustained_s: float = 0.0,
) -> tuple[list[Figures], dict[str, Any]]:
    """Figures (``where="emulated"``) for each model, and the record of how the class was emulated.
    ``sustained_s`` > 0: each model also runs under sustained load that long in its fresh process."""
    limits = limits_for(hwclass)
    enforcement = enforcement or detect_enforcement()
    host_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = (
        sorted(os.sched_getaffinity(0))[: max(1, math.ceil(limits.cpu_cores))]
        if hasattr(os, "sched_getaffinity")
        else []
    )
    samples = work / f"emulate-samples-{uuid.uuid4().hex[:8]}.npz"
    head = data.head(max_samples)
    np.savez(samples, **head.batch(0, head.count))  # type: ignore[arg-type]
    words = statement(limits, enforcement, host_cores)
    source = f"{hwclass.name} emulated on the build host: {words}"
    base: dict[str, Any] = {
        "providers": list(settings.providers),
        "intra_op": settings.intra_op,
        "inter_op": settings.inter_op,
        "cpus": [] if enforcement.cgroup is not None else cpus,
        "cpu_quota": limits.cpu_cores,
        "samples": str(samples),
    }
    figures: dict[str, Figures] = {}
    baselines = []
    for name, path in models.items():
        spec = base | {"models": {name: str(path)}, "warmup_runs": 1, "runs": 3, "rounds": 1}
        spec |= {"sustained_s": sustained_s, "window_s": window_s_for(sustained_s)} if sustained_s > 0 else {}
        hot_before = read_thermal()
        res = _run_child(spec, work, limits.ram_bytes, timeout_s + sustained_s, enforcement.cgroup)
        model = (res.output or {}).get("models", {}).get(name, {})
        sustained = None
        if res.output:
            baselines.append(res.output["baseline_rss_bytes"])
            if res.output.get("sustained"):
                run = res.output["sustained"]
                sustained = window_figures(
                    run["first_s"],
                    run["last_s"],
                    sustained_s,
                    hot_before,
                    read_thermal(),
                    runs=int(run["runs"]),
                )
        figures[name] = Figures(
            name,
            "emulated",
            source,
            settings.providers[0],
            peak_rss_bytes=res.peak_rss_bytes or None,
            load_time_ms=model.get("load_time_ms"),
            first_inference_ms=model.get("first_inference_ms"),
            error=res.error,
            sustained=sustained,
        )
    alive = {n: str(p) for n, p in models.items() if figures[n].error is None}
    timing_error = None
    busy = None
    if alive:
        spec = base | {"models": alive, "warmup_runs": warmup_runs, "runs": runs, "rounds": min(8, runs)}
        ram = limits.ram_bytes * len(alive)  # every survivor is loaded at once here; memory was judged above
        pinned = len(base["cpus"]) or host_cores
        before = others_load_per_cpu(limits.intra_op, pinned)
        res = _run_child(spec, work, ram, timeout_s, enforcement.cgroup)
        after = others_load_per_cpu(limits.intra_op, pinned)
        busy = max((x for x in (before, after) if x is not None), default=None)
        timing_error = res.error
        run_id = uuid.uuid4().hex
        for name, model in ((res.output or {}).get("models") or {}).items():
            rounds = model["rounds"]
            latency = latency_from_samples([t for r in rounds for t in r], rounds=rounds, run_id=run_id)
            f = figures[name]
            figures[name] = Figures(
                f.candidate, f.where, f.source, f.provider, latency, f.peak_rss_bytes, f.load_time_ms,
                f.first_inference_ms, notes=(f"{len(rounds)} interleaved rounds",), others_load_per_cpu=busy,
                sustained=f.sustained,
            )  # fmt: skip
    record = {
        "statement": words,
        "cgroup": str(enforcement.cgroup) if enforcement.cgroup else None,
        "fallback_reason": None if enforcement.cgroup else enforcement.reason,
        "cpu_cores": limits.cpu_cores,
        "pinned_cpus": base["cpus"],
        "ram_bytes": limits.ram_bytes,
        "load_time_ms": limits.load_time_ms,
        "runtime_baseline_rss_bytes": int(np.median(baselines)) if baselines else None,
        "timing_error": timing_error,
        "others_load_per_cpu": busy,
        "sustained_s": sustained_s or None,
    }
    return list(figures.values()), record
