"""Selection is pure: table-driven with synthetic measurements."""

from __future__ import annotations

import pytest

from edgefleet.optimize.measure import Compatibility, Performance
from edgefleet.optimize.quality import Quality
from edgefleet.optimize.select import MIB, ClassPolicy, Measured, select_candidate

POLICY = ClassPolicy(
    precisions=("fp32", "int8"), max_model_bytes=10 * MIB, ram_bytes=512 * MIB, latency_p95_ms=10.0
)
OK = Compatibility(17, ("Conv",), (), loads=True)


def q(accuracy: float = 0.98, agreement: float = 1.0) -> Quality:
    return Quality("accuracy", accuracy, "top1_agreement", agreement, 0.01, 0.001, False)


def perf(p50: float, p95: float | None = None, mem: int = MIB) -> Performance:
    return Performance(p50, p50, p95 or p50 * 1.2, p50 * 1.5, 100, mem, "vmhwm")


def m(
    name: str, p50: float, size: int, *, precision: str = "int8", quality: Quality | None = None, **kw
) -> Measured:
    return Measured(
        name, "x", precision, size, quality or q(), kw.get("performance") or perf(p50), kw.get("compat") or OK
    )


FP32 = m("fp32", 2.0, 4 * MIB, precision="fp32")


def test_refuses_a_slower_int8_and_keeps_fp32() -> None:
    slower = m("int8", 2.4, MIB)
    sel = select_candidate([FP32, slower], POLICY)
    assert sel.chosen == "fp32"
    assert "optimization did not help" in sel.summary
    verdict = next(v for v in sel.verdicts if v.name == "int8")
    assert not verdict.eligible
    assert any("not faster than FP32" in r for r in verdict.reasons)


def test_refuses_an_int8_that_is_barely_faster() -> None:
    # within min_speedup (5%): measurement noise, not a win worth the risk of INT8
    sel = select_candidate([FP32, m("int8", 1.95, MIB)], POLICY)
    assert sel.chosen == "fp32"


def test_refuses_a_too_inaccurate_candidate() -> None:
    inaccurate = m("int8", 0.5, MIB, quality=q(accuracy=0.95))
    disagreeing = m("int8-b", 0.5, MIB, quality=q(agreement=0.97))
    sel = select_candidate([FP32, inaccurate, disagreeing], POLICY)
    assert sel.chosen == "fp32"
    reasons = {v.name: v.reasons for v in sel.verdicts}
    assert any("accuracy" in r for r in reasons["int8"])
    assert any("top1_agreement" in r for r in reasons["int8-b"])


def test_picks_the_fastest_then_the_smallest() -> None:
    a = m("a", 1.0, 2 * MIB)
    b = m("b", 1.01, MIB)  # within the 3% tie: equally fast, smaller
    c = m("c", 1.5, MIB // 2)
    sel = select_candidate([FP32, a, b, c], POLICY)
    assert sel.chosen == "b"
    assert "2.0" in sel.summary or "1.98" in sel.summary


def test_budgets_and_compatibility_exclude() -> None:
    too_big = m("big", 0.5, 20 * MIB)
    too_hungry = m("hungry", 0.5, MIB, performance=perf(0.5, mem=600 * MIB))
    too_slow_tail = m("tail", 0.5, MIB, performance=perf(0.5, p95=50.0))
    unsupported = m("ops", 0.5, MIB, compat=Compatibility(17, ("Foo",), ("Foo",), loads=True))
    not_loading = m("load", 0.5, MIB, compat=Compatibility(17, (), (), loads=False, error="boom"))
    fp16 = m("fp16", 0.5, MIB, precision="fp16")
    sel = select_candidate([FP32, too_big, too_hungry, too_slow_tail, unsupported, not_loading, fp16], POLICY)
    assert sel.chosen == "fp32"
    reasons = {v.name: " ".join(v.reasons) for v in sel.verdicts}
    assert "size" in reasons["big"]
    assert "peak memory" in reasons["hungry"]
    assert "latency p95" in reasons["tail"]
    assert "Foo" in reasons["ops"]
    assert "does not load" in reasons["load"]
    assert "precision fp16" in reasons["fp16"]


def test_int8_wins_when_fp32_misses_the_envelope() -> None:
    slow_fp32 = m("fp32", 20.0, 4 * MIB, precision="fp32")
    sel = select_candidate([slow_fp32, m("int8", 5.0, MIB)], POLICY)
    assert sel.chosen == "int8"


def test_class_fails_with_the_numbers_that_missed() -> None:
    huge_fp32 = m("fp32", 20.0, 40 * MIB, precision="fp32")
    sel = select_candidate([huge_fp32, m("int8", 25.0, 12 * MIB)], POLICY)
    assert sel.failed
    assert "40.00 MiB > budget 10.00 MiB" in sel.summary
    assert "latency p95 24.000 ms > envelope 10.000 ms" in sel.summary
    assert all(not v.eligible for v in sel.verdicts)


def test_failed_candidate_is_listed_not_chosen() -> None:
    broken = Measured("int8-x", "failed", "fp32", 0, None, None, None, error="quantizer crashed")
    sel = select_candidate([FP32, broken], POLICY)
    assert sel.chosen == "fp32"
    assert "quantizer crashed" in next(v for v in sel.verdicts if v.name == "int8-x").reasons[0]


@pytest.mark.parametrize(("p50", "expected"), [(1.0, "int8"), (1.9, "int8"), (1.95, "fp32"), (3.0, "fp32")])
def test_speedup_threshold(p50: float, expected: str) -> None:
    assert select_candidate([FP32, m("int8", p50, MIB)], POLICY).chosen == expected


def test_no_fp32_reference() -> None:
    assert select_candidate([m("int8", 1.0, MIB)], POLICY).failed
