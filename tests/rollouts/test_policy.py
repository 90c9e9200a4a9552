"""The rollout policy, table-driven: membership, gates, soak, deadlines, promotion, serving decisions."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from edgefleet.server.services.rollouts.gates import ClassHealth, StageHealth
from edgefleet.server.services.rollouts.policy import (
    Candidate,
    DeviceProgress,
    assign_stages,
    cumulative_sizes,
    decide,
    serves_target,
)
from edgefleet.server.services.rollouts.spec import Gates, RolloutSpec, StageSpec

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
SPEC = RolloutSpec()  # 1 device, 5 %, 25 %, 100 %


@pytest.mark.parametrize(
    ("fleet", "expected"),
    [
        (1, [1, 1, 1, 1]),
        (10, [1, 1, 3, 10]),
        (100, [1, 5, 25, 100]),
        (1000, [1, 50, 250, 1000]),
        (0, [0, 0, 0, 0]),
    ],
)
def test_default_stage_sizes_are_cumulative(fleet, expected):
    assert cumulative_sizes(SPEC, fleet) == expected


def _fleet(n, *, offline_every=0, sites=4):
    return [
        Candidate(
            f"dev_{i:04d}",
            online=not (offline_every and i % offline_every == 0),
            healthy=True,
            spread_value=f"site-{i % sites}",
        )
        for i in range(n)
    ]


def test_membership_is_deterministic_stable_and_complete():
    fleet = _fleet(200)
    a = assign_stages("ro_1", fleet, SPEC)
    assert a == assign_stages("ro_1", list(reversed(fleet)), SPEC)  # input order does not matter
    assert set(a) == {d.device_id for d in fleet}
    assert Counter(a.values()) == {0: 1, 1: 9, 2: 40, 3: 150}
    assert a != assign_stages("ro_2", fleet, SPEC)  # another rollout, another canary


def test_the_first_stage_prefers_online_healthy_devices():
    fleet = [Candidate(f"dev_{i}", online=i == 7, healthy=True) for i in range(50)]
    fleet[7] = Candidate("dev_7", online=True, healthy=True)
    fleet.append(Candidate("dev_sick", online=True, healthy=False))
    stages = assign_stages("ro_x", fleet, SPEC)
    assert [d for d, s in stages.items() if s == 0] == ["dev_7"]


def test_members_spread_across_sites():
    fleet = _fleet(100, sites=4)
    stages = assign_stages("ro_s", fleet, RolloutSpec(stages=[StageSpec(count=8), StageSpec(percent=100)]))
    first = [d for d in fleet if stages[d.device_id] == 0]
    assert Counter(d.spread_value for d in first) == {f"site-{i}": 2 for i in range(4)}


CLASS = "medical-cart-cpu"


def _progress(statuses, stage=0, online=True, hardware_class=CLASS, prefix="dev"):
    return [DeviceProgress(f"{prefix}_{i}", stage, s, online, hardware_class) for i, s in enumerate(statuses)]


HEALTHY = StageHealth(requests=1000, errors=2, latency_p95_ms=10, baseline_p95_ms=9, reporting_devices=3)
ONE_STAGE = RolloutSpec(stages=[StageSpec(count=3, soak_s=60, deadline_s=600), StageSpec(percent=100)])


def _decide(
    *, spec=ONE_STAGE, status="running", progress=None, health=HEALTHY, at_s=120, promoted=-1, stage=0
):
    return decide(
        spec,
        status=status,
        stage=stage,
        stage_started_at=T0,
        promoted_stage=promoted,
        progress=progress if progress is not None else _progress(["done"] * 3),
        classes={CLASS: ClassHealth(health, envelope_p95_ms=50)},
        now=T0 + timedelta(seconds=at_s),
    )


@pytest.mark.parametrize(
    ("kwargs", "action", "why"),
    [
        ({}, "advance", None),
        ({"at_s": 30}, "wait", "soaking"),
        ({"progress": _progress(["done", "done", "pending"])}, "wait", "devices pending"),
        ({"progress": _progress(["done", "done", "failed"])}, "halt", "install_failure_rate"),
        ({"health": StageHealth(requests=1000, errors=50, reporting_devices=3)}, "halt", "error_rate"),
        (
            {"health": StageHealth(requests=1000, latency_p95_ms=80, reporting_devices=3)},
            "halt",
            "latency_p95_ms",
        ),
        (
            {
                "health": StageHealth(
                    requests=1000, latency_p95_ms=30, baseline_p95_ms=10, reporting_devices=3
                )
            },
            "halt",
            "latency_p95_ratio",
        ),
        ({"health": StageHealth(requests=0, reporting_devices=0)}, "wait", "not enough evidence"),
        ({"status": "paused"}, "wait", "paused"),
        ({"status": "halted"}, "wait", "rollout is halted"),
        ({"stage": 1, "progress": _progress(["done"] * 3, stage=1), "at_s": 400}, "complete", None),
    ],
)
def test_stage_decisions(kwargs, action, why):
    decision = _decide(**kwargs)
    assert decision.action == action
    if why is not None:
        assert why in (decision.reason.get("gate"), decision.reason.get("note"))


def test_input_faults_never_breach_the_error_rate_gate_but_are_shown():
    d = _decide(health=StageHealth(requests=200, errors=1, input_faults=5000, reporting_devices=2))
    assert d.action != "halt"
    (row,) = [r for r in d.gates if r.name == "error_rate"]
    assert row.verdict == "ok"
    assert row.details["input_faults"] == 5000
    assert "5000 input faults seen, not counted" in row.why


def test_a_breach_halts_even_while_paused_and_says_which_numbers():
    d = _decide(status="paused", health=StageHealth(requests=200, errors=20, reporting_devices=2))
    assert d.action == "halt"
    assert d.reason == {
        "gate": "error_rate",
        "observed": 0.1,
        "threshold": 0.01,
        "requests": 200,
        "errors": 20,
        "input_faults": 0,
        "why": "20 model errors in 200 requests (0 input faults seen, not counted: a failing sensor is not a "
        "failing model)",
        "hardware_class": CLASS,
        "stage": 0,
    }
    # The decision carries every gate row it was made on (the engine stores them; the surfaces render them).
    assert [(r.name, r.verdict) for r in d.gates if r.verdict == "breach"] == [("error_rate", "breach")]


def test_shadow_agreement_gate():
    spec = RolloutSpec(
        stages=[StageSpec(count=3, soak_s=0, gates=Gates(min_shadow_agreement=0.98)), StageSpec(percent=100)]
    )
    low = StageHealth(requests=100, shadow_agreement=0.9, shadow_compared=100, reporting_devices=3)
    assert _decide(spec=spec, health=low).reason["gate"] == "shadow_agreement"
    high = StageHealth(requests=100, shadow_agreement=0.995, shadow_compared=100, reporting_devices=3)
    assert _decide(spec=spec, health=high).action == "advance"


def test_shadow_agreement_is_judged_only_from_min_requests_comparisons_like_every_telemetry_gate():
    gates = Gates(min_shadow_agreement=0.98, min_requests=50)
    shadow = StageSpec(count=3, soak_s=0, shadow=True, gates=gates)
    spec = RolloutSpec(stages=[shadow, StageSpec(percent=100)])
    one_bad = StageHealth(shadow_agreement=0.0, shadow_compared=1, reporting_devices=3)
    decision = _decide(spec=spec, health=one_bad)
    assert (decision.action, decision.reason["note"]) == ("wait", "not enough evidence")
    [row] = [r for r in decision.gates if r.name == "shadow_agreement"]
    assert (row.verdict, row.why) == ("waiting", "1 of 50 shadow comparisons so far")
    enough_bad = StageHealth(shadow_agreement=0.5, shadow_compared=50, reporting_devices=3)
    assert _decide(spec=spec, health=enough_bad).reason["gate"] == "shadow_agreement"


@pytest.mark.parametrize(
    ("policy", "action"),
    [("wait", "wait"), ("proceed", "advance"), ("halt", "halt")],
)
def test_pending_devices_past_the_deadline_follow_the_stage_policy(policy, action):
    spec = RolloutSpec(
        stages=[StageSpec(count=3, soak_s=0, deadline_s=600, on_deadline=policy), StageSpec(percent=100)]
    )
    progress = _progress(["done", "done", "pending"])
    before = _decide(spec=spec, progress=progress, at_s=300)
    assert before.action == "wait"
    assert before.pending == ("dev_2",)
    after = _decide(spec=spec, progress=progress, at_s=601)
    assert after.action == action
    assert after.pending == ("dev_2",)  # reported, never counted as success or failure


@pytest.mark.parametrize(
    ("policy", "action"),
    [("wait", "wait"), ("proceed", "advance"), ("halt", "wait")],
)
def test_devices_waiting_for_their_update_window_are_never_stalled(policy, action):
    """A device waiting for its window (pending: window) is neither failing nor stalled: a deadline that
    halts on stalled devices waits for it instead; proceed and wait behave as for any pending device."""
    spec = RolloutSpec(
        stages=[StageSpec(count=3, soak_s=0, deadline_s=600, on_deadline=policy), StageSpec(percent=100)]
    )
    waiting = DeviceProgress("dev_2", 0, "pending", True, CLASS, waiting_window=True)
    progress = [*_progress(["done", "done"]), waiting]
    after = _decide(spec=spec, progress=progress, at_s=601)
    assert after.action == action
    assert after.pending == ("dev_2",)
    if action == "wait":
        assert after.reason["note"] == "devices waiting for their update window"
        assert after.reason["window_devices"] == 1
    stalled = [*progress[:2], DeviceProgress("dev_3", 0, "pending", True, CLASS)]
    if policy == "halt":  # a stalled device beside it still halts the stage, counted apart
        halted = _decide(spec=spec, progress=[*stalled, waiting], at_s=601)
        assert halted.action == "halt"
        assert (halted.reason["pending_devices"], halted.reason["window_devices"]) == (1, 1)


def test_manual_promotion_waits_for_the_operator():
    spec = RolloutSpec(stages=[StageSpec(count=3, soak_s=0, manual_promotion=True), StageSpec(percent=100)])
    assert _decide(spec=spec).reason["note"] == "awaiting manual promotion"
    assert _decide(spec=spec, promoted=0).action == "advance"


def test_offline_devices_are_not_failures():
    progress = [
        DeviceProgress("dev_0", 0, "done", True, CLASS),
        DeviceProgress("dev_1", 0, "pending", False, CLASS),
    ]
    spec = RolloutSpec(stages=[StageSpec(count=2, soak_s=0, deadline_s=10_000), StageSpec(percent=100)])
    d = _decide(spec=spec, progress=progress)
    assert d.action == "wait"
    assert d.pending == ("dev_1",)


@pytest.mark.parametrize(
    ("status", "member_stage", "current", "enrolling", "expected"),
    [
        ("running", 0, 0, "old", True),
        ("running", 1, 0, "old", False),
        ("running", None, 2, "old", False),
        ("running", None, 0, "new", True),
        ("paused", 0, 1, "old", True),
        ("halted", 0, 3, "new", False),
        ("aborted", 0, 3, "new", False),
        ("completed", None, 3, "old", True),
    ],
)
def test_which_devices_serve_the_new_artifact(status, member_stage, current, enrolling, expected):
    assert (
        serves_target(
            status=status, member_stage=member_stage, current_stage=current, enrolling_devices=enrolling
        )
        is expected
    )


SHADOW_FIRST = RolloutSpec(
    stages=[
        StageSpec(count=3, soak_s=0, shadow=True, gates=Gates(min_shadow_agreement=0.98, min_requests=50)),
        StageSpec(percent=100, soak_s=0),
    ]
)


@pytest.mark.parametrize(
    ("health", "action", "why"),
    [
        (StageHealth(shadow_compared=200, shadow_agreement=0.995, reporting_devices=3), "advance", None),
        (
            StageHealth(shadow_compared=200, shadow_agreement=0.90, reporting_devices=3),
            "halt",
            "shadow_agreement",
        ),
        (
            StageHealth(shadow_compared=10, shadow_agreement=1.0, reporting_devices=3),
            "wait",
            "not enough evidence",
        ),
        # the new version serves nothing in a shadow stage: no requests is not a reason to wait
        (
            StageHealth(requests=0, shadow_compared=60, shadow_agreement=0.99, reporting_devices=2),
            "advance",
            None,
        ),
    ],
)
def test_a_shadow_stage_is_judged_on_agreement_over_enough_comparisons(health, action, why):
    decision = _decide(spec=SHADOW_FIRST, health=health)
    assert decision.action == action
    if why is not None:
        assert why in (decision.reason.get("gate"), decision.reason.get("note"))


@pytest.mark.parametrize(
    ("status", "member_stage", "current", "shadow_stage", "serves", "shadows"),
    [
        ("running", 0, 0, True, False, True),  # exposed, in a shadow stage: keeps serving the old one
        ("running", 1, 0, True, False, False),  # not exposed yet
        ("running", 0, 1, False, True, False),  # the serving stage after the shadow stage
        ("paused", 0, 0, True, False, True),
        ("halted", 0, 0, True, False, False),  # a halt drops the shadow candidate too
        ("completed", 0, 1, False, True, False),
    ],
)
def test_shadow_and_serving_assignments(status, member_stage, current, shadow_stage, serves, shadows):
    from edgefleet.server.services.rollouts.policy import shadows_target

    kwargs = {
        "status": status,
        "member_stage": member_stage,
        "current_stage": current,
        "shadow_stage": shadow_stage,
    }
    assert serves_target(**kwargs, enrolling_devices="old") is serves
    assert shadows_target(**kwargs) is shadows


def test_a_deadline_never_excuses_missing_evidence():
    """Past the deadline, "proceed" moves on without offline devices, but not without health data."""
    spec = RolloutSpec(
        stages=[StageSpec(count=3, soak_s=0, deadline_s=60, on_deadline="proceed"), StageSpec(percent=100)]
    )
    no_data = StageHealth(requests=0, reporting_devices=0)
    decision = _decide(spec=spec, health=no_data, at_s=10_000)
    assert decision.action == "wait"
    assert decision.reason["note"] == "not enough evidence"


# --- per hardware class: each class against its own envelope and its own previous version ---------------

GPU, CPU = "factory-gateway-gpu", "medical-cart-cpu"  # envelopes: 10 ms and 50 ms
ENVELOPES_MS = {GPU: 10.0, CPU: 50.0}
TWO_CLASS = RolloutSpec(
    stages=[
        StageSpec(count=20, soak_s=0, gates=Gates(max_install_failure_rate=0.05)),
        StageSpec(percent=100, soak_s=0),
    ]
)


def _h(requests=1000, p95=None, baseline=None, errors=0, reporting=3):
    return StageHealth(
        requests=requests,
        errors=errors,
        latency_p95_ms=p95,
        baseline_p95_ms=baseline,
        reporting_devices=reporting,
    )


def _two_class_progress(gpu_failed=0, cpu_stage=0):
    gpu = _progress(["failed"] * gpu_failed + ["done"] * (10 - gpu_failed), hardware_class=GPU, prefix="gpu")
    cpu = _progress(["done"] * 100, stage=cpu_stage, hardware_class=CPU, prefix="cpu")
    return gpu + cpu


@pytest.mark.parametrize(
    ("gpu", "cpu", "progress", "action", "gate", "hardware_class"),
    [
        # Each class inside its own envelope; the CPU class's 40 ms would breach the GPU class's 10 ms.
        (_h(p95=8, baseline=7), _h(p95=40, baseline=35), {}, "advance", None, None),
        # The GPU class breaches its own envelope; the CPU class's wider one does not excuse it.
        (_h(p95=12, baseline=11), _h(p95=40, baseline=35), {}, "halt", "latency_p95_ms", GPU),
        # The CPU class is 3x slower than its own previous version (a merged p95 would hide it).
        (
            _h(requests=100_000, p95=8, baseline=7),
            _h(p95=30, baseline=10),
            {},
            "halt",
            "latency_p95_ratio",
            CPU,
        ),
        # The ratio uses each class's own baseline: 8 ms is 1.6x the GPU class's 5 ms.
        (_h(p95=8, baseline=5), _h(p95=40, baseline=35), {}, "halt", "latency_p95_ratio", GPU),
        # Error rate per class: 2 % on the GPU class; merged with the CPU class it would be 0.1 %.
        (_h(requests=500, errors=10), _h(requests=10_000), {}, "halt", "error_rate", GPU),
        # Install failures per class: 1 of 10 GPU devices; merged with 100 CPU devices it would be 0.9 %.
        (_h(), _h(), {"gpu_failed": 1}, "halt", "install_failure_rate", GPU),
        # Evidence per class: the CPU class's devices sent nothing, the GPU class's telemetry does not count.
        (_h(), _h(requests=0, reporting=0), {}, "wait", "not enough evidence", CPU),
        # A class with no exposed device in this stage needs no evidence yet.
        (_h(), _h(requests=0, reporting=0), {"cpu_stage": 1}, "advance", None, None),
    ],
)
def test_gates_are_judged_per_hardware_class(gpu, cpu, progress, action, gate, hardware_class):
    decision = decide(
        TWO_CLASS,
        status="running",
        stage=0,
        stage_started_at=T0,
        promoted_stage=-1,
        progress=_two_class_progress(**progress),
        classes={
            GPU: ClassHealth(gpu, envelope_p95_ms=ENVELOPES_MS[GPU]),
            CPU: ClassHealth(cpu, envelope_p95_ms=ENVELOPES_MS[CPU]),
        },
        now=T0 + timedelta(seconds=60),
    )
    assert decision.action == action
    if gate is not None:
        assert gate in (decision.reason.get("gate"), decision.reason.get("note"))
        assert decision.reason["hardware_class"] == hardware_class
    if action == "halt" and gate == "latency_p95_ms":
        assert decision.reason["threshold"] == ENVELOPES_MS[hardware_class]  # the class's own envelope


def test_a_class_without_an_envelope_is_judged_on_its_ratio_only():
    """A class the rollout names but whose definition is gone has no envelope (no absolute ceiling)."""
    decision = decide(
        TWO_CLASS,
        status="running",
        stage=0,
        stage_started_at=T0,
        promoted_stage=-1,
        progress=_progress(["done"] * 3, hardware_class=CPU),
        classes={CPU: ClassHealth(_h(p95=900, baseline=800))},
        now=T0 + timedelta(seconds=60),
    )
    assert decision.action == "advance"


def test_no_exposed_device_means_no_evidence():
    decision = decide(
        TWO_CLASS,
        status="running",
        stage=0,
        stage_started_at=T0,
        promoted_stage=-1,
        progress=[],
        classes={GPU: ClassHealth(StageHealth()), CPU: ClassHealth(StageHealth())},
        now=T0 + timedelta(seconds=60),
    )
    assert (decision.action, decision.reason["note"]) == ("wait", "not enough evidence")
