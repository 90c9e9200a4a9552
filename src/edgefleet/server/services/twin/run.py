"""The twin's run: one rollout spec on one drawn fleet, in virtual time, decided by the real policy (pure).

The control plane's own code decides: ``assign_stages`` places the devices, ``decide`` (with the one
``evaluate_gates``) judges every tick, ``transition`` applies the decision, exactly as the engine does
with rows. What the twin supplies instead of a database is the devices' side, as discrete events: a device
picks up its new desired state at its next poll that reaches the server, downloads the artifact over its
link (only while online), installs and health-checks it, switches inside its class's update window, and its
report reaches the server when it is next online. After a halt, each device that switched goes back to the
previous version at its next poll (the previous version is still on disk: no download).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from edgefleet.protocol.update_window import UpdateWindow, next_window_open
from edgefleet.server.services.rollouts.gates import ClassHealth, InstallCounts, evaluate_gates
from edgefleet.server.services.rollouts.policy import (
    ACTIVE_STATUSES,
    Candidate,
    DeviceProgress,
    RolloutStatus,
    assign_stages,
    decide,
    transition,
)
from edgefleet.server.services.rollouts.spec import RolloutSpec, StageSpec
from edgefleet.server.services.twin.fleet import FleetSpec
from edgefleet.server.services.twin.health import ClassTally, class_health
from edgefleet.server.services.twin.population import Device, draw_population

__all__ = ["TWIN_ROLLOUT_ID", "simulate"]

TWIN_ROLLOUT_ID = "ro_0000000000000000"
MAX_SERIES_POINTS = 400
_POLL, _DL_DONE, _INSTALLED, _SWITCH, _REPORT, _ROLLBACK = range(6)
_IDLE, _WAIT_POLL, _DOWNLOADING, _INSTALLING, _RUNNING, _FAILED, _GONE = range(7)


def window_open_at(window: UpdateWindow | None, tz: str | None, start_at: datetime, t_s: float) -> float:
    """The first moment (virtual seconds) at or after ``t_s`` inside the window, in zone ``tz``, the run
    starting at ``start_at``: ``protocol.update_window``'s rule, the one the agent enforces."""
    if window is None:
        return t_s
    at = start_at + timedelta(seconds=t_s)
    return t_s + (next_window_open(window, tz, at) - at).total_seconds()


@dataclass
class _State:
    fleet: FleetSpec
    spec: RolloutSpec
    devices: list[Device]
    windows: dict[str, UpdateWindow | None]
    status: RolloutStatus = "running"
    stage: int = 0
    stage_started_s: float = 0.0
    heap: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    seq: int = 0
    phase: list[int] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    shadow_mode: list[bool] = field(default_factory=list)
    cached: list[bool] = field(default_factory=list)
    dl_start_s: list[float] = field(default_factory=list)
    switched_s: list[float] = field(default_factory=list)
    installed_s: list[float] = field(default_factory=list)
    reported: list[bool] = field(default_factory=list)
    reported_s: list[float] = field(default_factory=list)
    stage_of: dict[int, int] = field(default_factory=dict)
    progress: list[DeviceProgress] = field(default_factory=list)
    pos: dict[int, int] = field(default_factory=dict)
    tallies: dict[str, ClassTally] = field(default_factory=dict)
    running: int = 0
    exposed_now: int = 0
    """devices serving the candidate that count as exposed (``scenario.bad_classes``, default all)"""
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    """per class: exposed members, done, failed (``install_counts``'s figures, kept as they change)"""
    counts: dict[str, int] = field(default_factory=lambda: {"pending": 0, "done": 0, "failed": 0})
    bytes_sent: float = 0.0
    peak: tuple[int, float] = (0, 0.0)
    first_exposed_s: float | None = None
    last_rollback_s: float | None = None

    def push(self, t: float, kind: int, i: int) -> None:
        if t <= self.fleet.horizon_s:
            self.seq += 1
            heapq.heappush(self.heap, (t, self.seq, kind, i, self.epoch[i]))

    def counts_exposure(self, device: Device) -> bool:
        bad = self.fleet.scenario.bad_classes
        return not bad or device.hardware_class in bad

    def mark(
        self, i: int, status: Literal["pending", "done", "failed"], *, waiting_window: bool = False
    ) -> None:
        d = self.devices[i]
        old = self.progress[self.pos[i]].status
        self.counts[old] -= 1
        self.counts[status] += 1
        tally = self.class_counts.setdefault(d.hardware_class, [0, 0, 0])
        tally[1] += (status == "done") - (old == "done")
        tally[2] += (status == "failed") - (old == "failed")
        self.progress[self.pos[i]] = DeviceProgress(
            d.device_id, self.stage_of[i], status, True, d.hardware_class, waiting_window=waiting_window
        )


def _expose(st: _State, i: int, t: float) -> None:
    st.pos[i] = len(st.progress)
    st.progress.append(DeviceProgress("", 0, "pending", True))
    st.counts["pending"] += 1
    st.class_counts.setdefault(st.devices[i].hardware_class, [0, 0, 0])[0] += 1
    st.mark(i, "pending")
    st.phase[i] = _WAIT_POLL
    st.push(st.devices[i].next_poll(t), _POLL, i)


def _handle(st: _State, t: float, kind: int, i: int) -> None:
    d = st.devices[i]
    cls = st.fleet.classes[d.hardware_class]
    if kind == _POLL:
        st.shadow_mode[i] = st.spec.stages[st.stage].shadow
        if st.cached[i]:
            st.phase[i] = _INSTALLING
            st.push(t + cls.install_s, _INSTALLED, i)
        else:
            st.phase[i] = _DOWNLOADING
            st.dl_start_s[i] = t
            duration = cls.artifact_bytes / d.bytes_per_s if cls.artifact_bytes else 0.0
            st.push(d.online_advance(t, duration), _DL_DONE, i)
    elif kind == _DL_DONE:
        st.bytes_sent += cls.artifact_bytes
        st.cached[i] = True
        st.phase[i] = _INSTALLING
        st.push(t + cls.install_s, _INSTALLED, i)
    elif kind == _INSTALLED:
        st.installed_s[i] = t
        if d.install_fails:
            st.phase[i] = _FAILED
            st.push(d.next_online(t), _REPORT, i)
        else:
            switch_s = window_open_at(d.window, d.timezone, st.fleet.start_at, t)
            if switch_s > t:
                st.mark(i, "pending", waiting_window=True)
            st.push(switch_s, _SWITCH, i)
    elif kind == _SWITCH:
        st.phase[i] = _RUNNING
        st.switched_s[i] = t
        if not st.shadow_mode[i]:
            st.running += 1
            if st.counts_exposure(d):
                st.exposed_now += 1
                if st.first_exposed_s is None:
                    st.first_exposed_s = t
                if st.exposed_now > st.peak[0]:
                    st.peak = (st.exposed_now, t)
        st.push(d.next_online(t), _REPORT, i)
    elif kind == _REPORT:
        if st.phase[i] == _FAILED:
            st.mark(i, "failed")
        else:
            st.reported[i] = True
            st.reported_s[i] = t
            st.mark(i, "done")
            st.tallies[d.hardware_class].add(
                shadow=st.shadow_mode[i], since_s=st.switched_s[i], throttled=d.throttled
            )
    elif kind == _ROLLBACK:
        st.running -= 1
        st.exposed_now -= st.counts_exposure(d)
        st.phase[i] = _GONE
        st.last_rollback_s = t


def _halt(st: _State, t: float) -> int:
    """Cancel every device's install in flight; devices that switched go back at their next poll."""
    rolling = 0
    for i in st.pos:
        st.epoch[i] += 1
        d = st.devices[i]
        if st.phase[i] == _DOWNLOADING:
            online_s = max(0.0, t - st.dl_start_s[i])
            st.bytes_sent += min(st.fleet.classes[d.hardware_class].artifact_bytes, d.bytes_per_s * online_s)
        if st.phase[i] == _RUNNING and not st.shadow_mode[i]:
            rolling += 1
            st.push(d.next_poll(t), _ROLLBACK, i)
        elif st.phase[i] != _FAILED:
            st.phase[i] = _GONE
    return rolling


def _to_serving(st: _State, t: float) -> None:
    """A shadow stage passed into a serving one: exposed devices move the candidate into the serving slot
    at their next poll (its files are already on the device when it shadowed it)."""
    for i in st.pos:
        if st.phase[i] == _FAILED:
            continue
        st.epoch[i] += 1
        d = st.devices[i]
        if st.reported[i] and st.shadow_mode[i]:
            st.tallies[d.hardware_class].add(
                shadow=True, since_s=st.switched_s[i], throttled=d.throttled, sign=-1
            )
        st.reported[i] = False
        st.mark(i, "pending")
        st.phase[i] = _WAIT_POLL
        st.push(d.next_poll(t), _POLL, i)


def _crossed(stage: StageSpec, elapsed_s: float) -> tuple[bool, bool]:
    """The only ways ``decide`` reads ``now``: whether the stage's soak and deadline have passed.

    ``decide``'s action rests on these two, the verdicts of the gate rows (``evaluate_gates``, called here
    with the inputs ``decide`` gives it: the class health and the exposed members' install counts) and
    whether any exposed member is pending; the members' progress reaches it through nothing else. When none
    of them changed since a "wait", ``decide`` would wait again (and a wait changes nothing), so the twin
    skips the call: 100,000 members are not re-read every tick just because some of them reported."""
    return elapsed_s >= stage.soak_s, elapsed_s >= stage.deadline_s


def _pending_reasons(st: _State, t: float) -> dict[str, int]:
    why = {"offline": 0, "window": 0, "slow_link": 0, "poll": 0, "install": 0}
    for i, p in zip(st.pos, st.progress, strict=True):
        if p.status != "pending":
            continue
        d = st.devices[i]
        if not d.online(t):
            why["offline"] += 1
        elif st.phase[i] == _DOWNLOADING:
            why["slow_link"] += 1
        elif st.phase[i] == _INSTALLING and st.installed_s[i] and st.installed_s[i] <= t:
            why["window"] += 1
        elif st.phase[i] == _INSTALLING:
            why["install"] += 1
        else:
            why["poll"] += 1
    return why


def simulate(
    fleet: FleetSpec, spec: RolloutSpec, *, seed: int | None = None, ask_every_tick: bool = False
) -> dict[str, Any]:
    """Run ``spec`` on ``fleet`` (drawn with ``seed``, default the fleet's) and return what happened.

    ``ask_every_tick`` calls ``decide`` at every tick, as the engine does (tests show it changes nothing)."""
    seed = fleet.seed if seed is None else seed
    population = draw_population(fleet, seed)
    devices = population.devices
    n = len(devices)
    st = _State(
        fleet, spec, devices, population.windows,
        phase=[_IDLE] * n, epoch=[0] * n, shadow_mode=[False] * n, cached=[False] * n,
        dl_start_s=[0.0] * n, switched_s=[0.0] * n, installed_s=[0.0] * n, reported=[False] * n,
        reported_s=[0.0] * n,
        tallies={name: ClassTally() for name in fleet.classes},
    )  # fmt: skip
    index = {d.device_id: i for i, d in enumerate(devices)}
    candidates = [
        Candidate(d.device_id, online=d.online(0.0), healthy=True, spread_value=d.site) for d in devices
    ]
    st.stage_of = {index[k]: v for k, v in assign_stages(TWIN_ROLLOUT_ID, candidates, spec).items()}
    by_stage: dict[int, list[int]] = {}
    for i, stage in sorted(st.stage_of.items()):
        by_stage.setdefault(stage, []).append(i)
    for i in by_stage.get(0, []):
        _expose(st, i, 0.0)
    rec = _Record(
        timeline=[_stage_row(spec, 0, 0.0, len(by_stage.get(0, [])))], ask_every_tick=ask_every_tick
    )
    ticks = math.floor(fleet.horizon_s / fleet.tick_s)
    every = max(1, math.ceil((ticks + 1) / MAX_SERIES_POINTS))
    health_every = max(1, round(fleet.telemetry_s / fleet.tick_s))
    t = 0.0
    for k in range(ticks + 1):
        t = k * fleet.tick_s
        while st.heap and st.heap[0][0] <= t:
            when, _, kind, i, epoch = heapq.heappop(st.heap)
            if epoch == st.epoch[i]:
                _handle(st, when, kind, i)
        if st.status in ACTIVE_STATUSES:
            if k % health_every == 0:
                rec.classes = {
                    name: class_health(fleet.classes[name], tally, now_s=t)
                    for name, tally in st.tallies.items()
                }
            _engine_tick(st, rec, by_stage, t)
        if k % every == 0 or not st.heap:
            for name, value in (("t_s", t), ("running_candidate", st.running), ("done", st.counts["done"]),
                                ("stage", st.stage)):  # fmt: skip
                rec.series.setdefault(name, []).append(value)
        if st.status not in ACTIVE_STATUSES and not st.heap:
            break
    return _result(st, seed, t, rec)


@dataclass
class _Record:
    timeline: list[dict[str, Any]]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    deadlines: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    classes: dict[str, ClassHealth] = field(default_factory=dict)
    last_inputs: tuple[Any, ...] | None = None
    halt: dict[str, Any] | None = None
    completed_s: float | None = None
    rolling_back: int = 0
    ask_every_tick: bool = False


def _engine_tick(st: _State, rec: _Record, by_stage: dict[int, list[int]], t: float) -> None:
    """What the engine does each tick: ask ``decide`` and apply its decision with ``transition``."""
    spec, fleet = st.spec, st.fleet
    current = spec.stages[st.stage]
    elapsed_s = t - st.stage_started_s
    if elapsed_s >= current.deadline_s and st.stage not in {d["stage"] for d in rec.deadlines}:
        why = _pending_reasons(st, t)
        rec.deadlines.append({"stage": st.stage, "at_s": t, "pending": sum(why.values()), "why": why,
                              "on_deadline": current.on_deadline})  # fmt: skip
    installs = {name: InstallCounts(*counts) for name, counts in sorted(st.class_counts.items())}
    rows = evaluate_gates(current.gates, shadow_stage=current.shadow, classes=rec.classes, installs=installs)
    any_pending = st.counts["pending"] > 0
    inputs = (st.stage, any_pending, _crossed(current, elapsed_s), tuple(r.verdict for r in rows))
    if inputs == rec.last_inputs and not rec.ask_every_tick:  # decide would wait again (see _crossed)
        return
    rec.last_inputs = inputs
    decision = decide(
        spec, status=st.status, stage=st.stage,
        stage_started_at=fleet.start_at + timedelta(seconds=st.stage_started_s),
        promoted_stage=len(spec.stages), progress=st.progress, classes=rec.classes,
        now=fleet.start_at + timedelta(seconds=t),
    )  # fmt: skip
    if decision.action == "wait":
        return
    rec.timeline[-1].update(_stage_end(st, t, decision.action, decision.reason))
    rec.decisions.append({"at_s": t, "action": decision.action, "reason": decision.reason,
                          "gates": [r.to_wire() for r in decision.gates if r.verdict != "off"]})  # fmt: skip
    st.status, st.stage = transition(st.status, st.stage, decision.action)
    if decision.action == "advance":
        st.stage_started_s = t
        if current.shadow and not spec.stages[st.stage].shadow:
            _to_serving(st, t)
        for i in by_stage.get(st.stage, []):
            _expose(st, i, t)
        rec.timeline.append(_stage_row(spec, st.stage, t, len(by_stage.get(st.stage, []))))
    elif decision.action == "halt":
        rec.halt = {**decision.reason, "at_s": t}
        rec.rolling_back = _halt(st, t)
    else:
        rec.completed_s = t


def _stage_row(spec: RolloutSpec, stage: int, t: float, members: int) -> dict[str, Any]:
    s = spec.stages[stage]
    size = f"{s.count}" if s.count is not None else f"{s.percent:g}%"
    return {"stage": stage, "size": size, "shadow": s.shadow, "members": members, "started_at_s": t,
            "ended_at_s": None, "action": None}  # fmt: skip


def _stage_end(st: _State, t: float, action: str, reason: dict[str, Any]) -> dict[str, Any]:
    counts = dict(st.counts)
    out: dict[str, Any] = {"ended_at_s": t, "action": action, "exposed": len(st.progress), **counts}
    if action == "halt":
        out["gate"] = reason.get("gate")
        out["hardware_class"] = reason.get("hardware_class")
    return out


def _result(st: _State, seed: int, end_s: float, rec: _Record) -> dict[str, Any]:
    halt, completed_s, rolling_back = rec.halt, rec.completed_s, rec.rolling_back
    n = len(st.devices)
    done = [i for i, p in zip(st.pos, st.progress, strict=True) if p.status == "done"]
    on_candidate = sum(1 for i in done if not st.shadow_mode[i] and st.phase[i] == _RUNNING)
    failed = st.counts["failed"]
    converged = halt is None and len(done) + failed == n
    converged_s = max((st.reported_s[i] for i in done), default=None) if converged else None
    still_exposed = st.running if halt is not None else 0
    exposure_end = (st.last_rollback_s if still_exposed == 0 else None) if halt is not None else None
    bad = st.fleet.scenario.bad_model
    return {
        "fleet": st.fleet.name,
        "seed": seed,
        "devices": n,
        "classes": {name: c.devices for name, c in sorted(st.fleet.classes.items())},
        "horizon_s": st.fleet.horizon_s,
        "tick_s": st.fleet.tick_s,
        "simulated_s": end_s,
        "outcome": st.status,
        "completed_at_s": completed_s,
        "converged_at_s": converged_s,
        "on_candidate": on_candidate,
        "not_converged": None if halt is not None else {
            "devices": n - len(done), "why": {**_pending_reasons(st, end_s), "failed": failed},
        },
        "halt": halt,
        "rollback": None if halt is None else {
            "devices": rolling_back, "done_at_s": exposure_end, "still_on_candidate": still_exposed,
        },
        "exposure": {
            "bad_model": bad,
            "peak_devices": st.peak[0],
            "classes": sorted(st.fleet.scenario.bad_classes or st.fleet.classes),
            "peak_percent": round(100 * st.peak[0] / n, 3) if n else 0.0,
            "peak_at_s": st.peak[1] if st.peak[0] else None,
            "first_at_s": st.first_exposed_s,
            "until_s": exposure_end,
            "duration_s": (exposure_end - st.first_exposed_s)
            if exposure_end is not None and st.first_exposed_s is not None else None,
        },
        "deadlines": rec.deadlines,
        "bytes_sent": int(st.bytes_sent),
        "stages": rec.timeline,
        "decisions": rec.decisions,
        "series": rec.series,
        "notes": list(st.fleet.notes),
    }  # fmt: skip
