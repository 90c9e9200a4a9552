"""The one gate evaluation, table-driven: every gate of a stage, per class, with its verdict and why."""

from __future__ import annotations

import math

import pytest

from edgefleet.server.services.rollouts.gates import (
    ClassHealth,
    GateRow,
    InstallCounts,
    StageHealth,
    evaluate_gates,
)
from edgefleet.server.services.rollouts.service import count_rollback
from edgefleet.server.services.rollouts.spec import Gates

CLASS = "medical-cart-cpu"


def _rows(
    gates: Gates, health: StageHealth, installs: InstallCounts, *, envelope_ms: float = 20.0, shadow=False
):
    rows = evaluate_gates(
        gates,
        shadow_stage=shadow,
        classes={CLASS: ClassHealth(health, envelope_p95_ms=envelope_ms)},
        installs={CLASS: installs},
    )
    return {r.name: r for r in rows}


@pytest.mark.parametrize(
    ("gates", "health", "installs", "expected"),
    [
        (  # nothing reported yet: every gate waits for evidence, none is judged
            Gates(min_requests=10),
            StageHealth(),
            InstallCounts(exposed=2),
            {
                "install_failure_rate": "waiting",
                "error_rate": "waiting",
                "latency_p95_ms": "waiting",
                "latency_p95_ratio": "waiting",
                "shadow_agreement": "off",
                "reporting_devices": "waiting",
                "requests": "waiting",
            },
        ),
        (  # under min_requests a bad error rate is not judged yet (the dashboard, CLI and engine agree)
            Gates(min_requests=10),
            StageHealth(requests=5, errors=5, latency_p95_ms=99.0, reporting_devices=1),
            InstallCounts(exposed=1, done=1),
            {"error_rate": "waiting", "latency_p95_ms": "waiting", "requests": "waiting"},
        ),
        (  # three times slower than the previous version: the ratio gate is breached
            Gates(min_requests=10),
            StageHealth(requests=40, latency_p95_ms=15.0, baseline_p95_ms=5.0, reporting_devices=1),
            InstallCounts(exposed=1, done=1),
            {
                "install_failure_rate": "ok",
                "error_rate": "ok",
                "latency_p95_ms": "ok",
                "latency_p95_ratio": "breach",
                "requests": "ok",
                "reporting_devices": "ok",
            },
        ),
        (  # an install failed and the stage tolerates none
            Gates(),
            StageHealth(requests=5, reporting_devices=1),
            InstallCounts(exposed=2, done=1, failed=1),
            {"install_failure_rate": "breach", "error_rate": "ok"},
        ),
        (  # errors over the ceiling; the ratio gate is switched off
            Gates(max_error_rate=0.05, max_latency_p95_ratio=None),
            StageHealth(requests=100, errors=9, latency_p95_ms=5.0, reporting_devices=2),
            InstallCounts(exposed=2, done=2),
            {"error_rate": "breach", "latency_p95_ratio": "off", "shadow_agreement": "off"},
        ),
        (  # no previous version to compare with: the ratio gate does not apply, and says so
            Gates(),
            StageHealth(requests=40, latency_p95_ms=5.0, reporting_devices=1),
            InstallCounts(exposed=1, done=1),
            {"latency_p95_ratio": "off", "latency_p95_ms": "ok"},
        ),
        (  # no error-rate gate on a serving stage: requests are not needed as evidence
            Gates(max_error_rate=None),
            StageHealth(reporting_devices=1),
            InstallCounts(exposed=1, done=1),
            {"error_rate": "off", "requests": "off", "reporting_devices": "ok"},
        ),
    ],
)
def test_verdicts(gates, health, installs, expected):
    rows = _rows(gates, health, installs)
    for name, verdict in expected.items():
        assert rows[name].verdict == verdict, (name, rows[name])


def test_a_shadow_stage_brings_comparisons_as_evidence_and_judges_agreement_from_min_requests():
    gates = Gates(min_shadow_agreement=0.9, min_requests=20)
    few = _rows(
        gates,
        StageHealth(shadow_compared=5, shadow_agreement=0.1, reporting_devices=1),
        InstallCounts(1, 1),
        shadow=True,
    )
    assert "requests" not in few
    assert (few["shadow_compared"].verdict, few["shadow_agreement"].verdict) == ("waiting", "waiting")
    many = _rows(
        gates,
        StageHealth(shadow_compared=20, shadow_agreement=0.8, reporting_devices=1),
        InstallCounts(1, 1),
        shadow=True,
    )
    assert (many["shadow_compared"].verdict, many["shadow_agreement"].verdict) == ("ok", "breach")
    assert many["shadow_agreement"].observed == 0.8


def test_the_latency_ceiling_is_the_class_envelope_unless_the_stage_sets_one():
    health = StageHealth(requests=10, latency_p95_ms=25.0, reporting_devices=1)
    by_envelope = _rows(Gates(), health, InstallCounts(1, 1))["latency_p95_ms"]
    assert (by_envelope.observed, by_envelope.threshold, by_envelope.verdict) == (25.0, 20.0, "breach")
    assert "class envelope" in by_envelope.why
    by_stage = _rows(Gates(max_latency_p95_ms=30), health, InstallCounts(1, 1))["latency_p95_ms"]
    assert (by_stage.threshold, by_stage.verdict) == (30.0, "ok")
    nothing = _rows(Gates(), health, InstallCounts(1, 1), envelope_ms=math.inf)["latency_p95_ms"]
    assert (nothing.threshold, nothing.verdict) == (None, "off")


def test_a_tiny_error_rate_over_a_zero_ceiling_is_a_breach_even_when_it_rounds_to_zero():
    row = _rows(Gates(max_error_rate=0.0), StageHealth(requests=100_000, errors=1), InstallCounts(1, 1))[
        "error_rate"
    ]
    assert (row.observed, row.verdict) == (0.0, "breach")


def test_each_class_is_judged_on_its_own_and_a_class_not_yet_exposed_owes_no_evidence():
    rows = evaluate_gates(
        Gates(),
        shadow_stage=False,
        classes={
            "a": ClassHealth(StageHealth(requests=10, latency_p95_ms=30.0, reporting_devices=1), 50.0),
            "b": ClassHealth(StageHealth(requests=10, latency_p95_ms=30.0, reporting_devices=1), 10.0),
            "c": ClassHealth(StageHealth(), 10.0),
        },
        installs={"a": InstallCounts(1, 1), "b": InstallCounts(1, 1)},
    )
    verdict = {(r.hardware_class, r.name): r.verdict for r in rows}
    assert verdict[("a", "latency_p95_ms")] == "ok"  # its own 50 ms envelope
    assert verdict[("b", "latency_p95_ms")] == "breach"  # its own 10 ms envelope
    assert (verdict[("c", "reporting_devices")], verdict[("c", "requests")]) == ("off", "off")
    assert [r.hardware_class for r in rows] == sorted(r.hardware_class for r in rows)  # class name order


def test_rows_go_on_the_wire_with_every_field_a_surface_renders():
    row = _rows(Gates(), StageHealth(), InstallCounts(1))["install_failure_rate"]
    assert isinstance(row, GateRow)
    assert row.to_wire() == {
        "name": "install_failure_rate",
        "hardware_class": CLASS,
        "observed": None,
        "threshold": 0.0,
        "comparison": "max",
        "verdict": "waiting",
        "why": "no exposed device has finished installing yet",
        "unit": "",
    }


def test_count_rollback():
    def report(active):
        return {"slots": {"default": {"active": active}}}

    reports = [report("v1"), report("v2"), None, report("v1")]
    assert count_rollback(reports, slot="default", target="v2", previous="v1") == {
        "rolled_back": 2,
        "still_on_new": 1,
        "other": 1,
    }
