"""Selection is pure: table-driven with synthetic figures, each labelled with where it was measured."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.optimize.figures import Figures
from edgefleet.optimize.measure import Compatibility
from edgefleet.optimize.noise import Latency, latency_from_samples, speedup
from edgefleet.optimize.quality import Quality
from edgefleet.optimize.select import MIB, ClassPolicy, Measured, select_candidate

POLICY = ClassPolicy(
    precisions=("fp32", "int8"), max_model_bytes=10 * MIB, ram_bytes=512 * MIB, latency_p95_ms=10.0
)
OK = Compatibility(17, ("Conv",), (), loads=True)
RUN = "run-1"


def q(accuracy: float = 0.98, agreement: float = 1.0) -> Quality:
    return Quality("accuracy", accuracy, "top1_agreement", agreement, 0.01, 0.001, False)


def lat(p50: float, *, spread: float = 0.01, p95: float | None = None, run_id: str | None = RUN) -> Latency:
    """A tight latency around ``p50`` (relative ``spread``), 8 interleaved rounds."""
    rng = np.random.default_rng(int(p50 * 1000) % 2**31)
    rounds = [list(p50 * (1 + spread * rng.standard_normal(25))) for _ in range(8)]
    out = latency_from_samples([t for r in rounds for t in r], rounds=rounds, run_id=run_id)
    if p95 is not None:
        out = Latency(out.p50_ms, out.p90_ms, p95, p95, out.runs, out.p50_low_ms, out.p50_high_ms,
                      out.round_p50_ms, out.run_id)  # fmt: skip
    return out


def m(name: str, size: int, *, precision: str = "int8", quality: Quality | None = None, **kw) -> Measured:
    return Measured(name, "x", precision, size, quality or q(), kw.get("compat") or OK, kw.get("error"))


def host(name: str, p50: float, **kw) -> Figures:
    return Figures(name, "host", "test host", "CPUExecutionProvider", latency=lat(p50, **kw))


FP32 = m("fp32", 4 * MIB, precision="fp32")


def pick(measured: list[Measured], figures: list[Figures], policy: ClassPolicy = POLICY):
    return select_candidate(measured, figures, policy)


def test_refuses_a_slower_int8_and_keeps_fp32() -> None:
    sel = pick([FP32, m("int8", MIB)], [host("fp32", 2.0), host("int8", 2.4)])
    assert sel.chosen == "fp32"
    assert "no candidate is faster than FP32 beyond the measurement noise" in sel.summary
    verdict = next(v for v in sel.verdicts if v.name == "int8")
    assert verdict.eligible  # it breaks no hard budget: the objective, not a rule, leaves it out
    assert "not faster than FP32 beyond noise" in verdict.note


def test_a_speedup_within_the_noise_does_not_win() -> None:
    # 6 % faster on average, but each figure scatters by 20 %: not a speed-up the build can claim
    figures = [host("fp32", 2.0, spread=0.2, run_id=None), host("int8", 1.88, spread=0.2, run_id=None)]
    sel = pick([FP32, m("int8", 4 * MIB)], figures)
    assert sel.chosen == "fp32"
    interval = next(v.speedup for v in sel.verdicts if v.name == "int8")
    assert interval is not None
    assert interval.low < 1.0 < interval.high


def test_a_small_speedup_beyond_tight_noise_wins() -> None:
    # 4 % faster with 0.5 % scatter: beyond the noise, so it is claimed (no fixed 5 % rule)
    sel = pick([FP32, m("int8", MIB)], [host("fp32", 2.0, spread=0.005), host("int8", 1.92, spread=0.005)])
    assert sel.chosen == "int8"
    assert "faster than FP32 beyond noise" in sel.summary


def test_paired_rounds_cancel_a_load_burst_that_hits_both() -> None:
    # both candidates were timed interleaved; round 3 ran under a neighbour's load for both
    burst = [1, 1, 3, 1, 1, 1, 1, 1]
    ref_rounds = [[2.0 * b] * 5 for b in burst]
    cand_rounds = [[1.8 * b] * 5 for b in burst]
    ref = latency_from_samples([t for r in ref_rounds for t in r], rounds=ref_rounds, run_id="r")
    cand = latency_from_samples([t for r in cand_rounds for t in r], rounds=cand_rounds, run_id="r")
    paired = speedup(ref, cand)
    assert paired.method.startswith("paired")
    assert paired.above(1.05)
    unpaired = speedup(
        latency_from_samples([t for r in ref_rounds for t in r]),
        latency_from_samples([t for r in cand_rounds for t in r]),
    )
    assert unpaired.method.startswith("unpaired")


def test_refuses_a_too_inaccurate_candidate() -> None:
    inaccurate = m("int8", MIB, quality=q(accuracy=0.95))
    disagreeing = m("int8-b", MIB, quality=q(agreement=0.97))
    figures = [host("fp32", 2.0), host("int8", 0.5), host("int8-b", 0.5)]
    sel = pick([FP32, inaccurate, disagreeing], figures)
    assert sel.chosen == "fp32"
    reasons = {v.name: v.reasons for v in sel.verdicts}
    assert any("accuracy" in r for r in reasons["int8"])
    assert any("top1_agreement" in r for r in reasons["int8-b"])


def test_uninformative_validation_inputs_prove_nothing() -> None:
    blind = Quality(None, None, "1-rmse/range", 1.0, 0.0, 0.0, False, 0.995, False, "cannot separate")
    sel = pick([FP32, m("int8", MIB, quality=blind)], [host("fp32", 2.0), host("int8", 0.5)])
    assert sel.chosen == "fp32"
    assert any("unproven" in r for r in next(v for v in sel.verdicts if v.name == "int8").reasons)


def test_picks_the_fastest_then_the_smallest_among_ties() -> None:
    figures = [host("fp32", 2.0), host("a", 1.0), host("b", 1.0), host("c", 1.5)]
    sel = pick([FP32, m("a", 2 * MIB), m("b", MIB), m("c", MIB // 2)], figures)
    assert sel.chosen == "b"
    assert "2.0" in sel.summary or "1.9" in sel.summary


def test_size_objective_takes_the_smallest_within_budgets() -> None:
    policy = ClassPolicy(**{**POLICY.__dict__, "objective": "size"})
    figures = [host("fp32", 2.0), host("int8", 2.3), host("fp16", 1.0)]
    sel = pick([FP32, m("int8", MIB), m("fp16", 2 * MIB, precision="int8")], figures, policy)
    assert sel.chosen == "int8"  # slower, but the class asks for size and it keeps every budget
    slow = [host("fp32", 2.0), host("int8", 12.0, p95=12.0)]
    assert pick([FP32, m("int8", MIB)], slow, policy).chosen == "fp32"  # breaks the latency envelope


def test_balanced_objective_weighs_size_against_proven_speed() -> None:
    policy = ClassPolicy(**{**POLICY.__dict__, "objective": "balanced"})
    # same speed within noise, a quarter of the size: 0.25 beats 1.0
    sel = pick([FP32, m("int8", MIB)], [host("fp32", 2.0, spread=0.2), host("int8", 2.0, spread=0.2)], policy)
    assert sel.chosen == "int8"


def test_budgets_and_compatibility_exclude() -> None:
    figures = [
        host("fp32", 2.0),
        host("big", 0.5),
        Figures(
            "hungry", "emulated", "limits", "CPUExecutionProvider", latency=lat(0.5), peak_rss_bytes=600 * MIB
        ),
        Figures("hungry", "host", "h", "CPUExecutionProvider", latency=lat(0.5)),
        host("tail", 0.5, p95=50.0),
        host("ops", 0.5),
        host("fp16", 0.5),
        Figures("crash", "emulated", "limits", "CPUExecutionProvider", error="killed: memory limit"),
        host("crash", 0.5),
        Figures("slowload", "emulated", "limits", "CPUExecutionProvider", load_time_ms=900.0),
        host("slowload", 0.5),
    ]
    measured = [
        FP32,
        m("big", 20 * MIB),
        m("hungry", MIB),
        m("tail", MIB),
        m("ops", MIB, compat=Compatibility(17, ("Foo",), ("Foo",), loads=True)),
        m("fp16", MIB, precision="fp16"),
        m("crash", MIB),
        m("slowload", MIB),
        m("load", MIB, compat=Compatibility(17, (), (), loads=False, error="boom")),
    ]
    policy = ClassPolicy(**{**POLICY.__dict__, "load_time_ms": 500.0})
    sel = pick(measured, figures, policy)
    assert sel.chosen == "fp32"
    reasons = {v.name: " ".join(v.reasons) for v in sel.verdicts}
    assert "size" in reasons["big"]
    assert "peak memory 600.0 MiB (emulated)" in reasons["hungry"]
    assert "latency p95" in reasons["tail"]
    assert "Foo" in reasons["ops"]
    assert "does not load" in reasons["load"]
    assert "precision fp16" in reasons["fp16"]
    assert "killed: memory limit" in reasons["crash"]
    assert "load time 900.0 ms (emulated)" in reasons["slowload"]


def test_int8_wins_when_fp32_misses_the_envelope() -> None:
    sel = pick([FP32, m("int8", MIB)], [host("fp32", 20.0), host("int8", 5.0)])
    assert sel.chosen == "int8"


def test_class_fails_with_the_numbers_that_missed() -> None:
    huge_fp32 = m("fp32", 40 * MIB, precision="fp32")
    sel = pick([huge_fp32, m("int8", 12 * MIB)], [host("fp32", 20.0, p95=24.0), host("int8", 25.0)])
    assert sel.failed
    assert "40.00 MiB > budget 10.00 MiB" in sel.summary
    assert "latency p95 24.000 ms (host) > envelope 10.000 ms" in sel.summary
    assert all(not v.eligible for v in sel.verdicts)


def test_failed_candidate_is_listed_not_chosen() -> None:
    broken = Measured("int8-x", "failed", "fp32", 0, None, None, error="quantizer crashed")
    sel = pick([FP32, broken], [host("fp32", 2.0)])
    assert sel.chosen == "fp32"
    assert "quantizer crashed" in next(v for v in sel.verdicts if v.name == "int8-x").reasons[0]


def test_no_fp32_reference() -> None:
    assert pick([m("int8", MIB)], [host("int8", 1.0)]).failed


GPU = ClassPolicy(
    precisions=("fp32", "fp16"),
    max_model_bytes=10 * MIB,
    ram_bytes=512 * MIB,
    latency_p95_ms=1.0,
    preferred_provider="TensorrtExecutionProvider",
    class_name="gpu-small",
)


def test_an_accelerator_class_is_not_failed_on_stand_in_cpu_latency() -> None:
    # the CPU ran it because TensorRT is absent here: 20 ms against a 1 ms envelope judges nothing
    figures = [host("fp32", 20.0), host("fp16", 18.0)]
    sel = pick([FP32, m("fp16", 2 * MIB, precision="fp16")], figures, GPU)
    assert sel.chosen == "fp32"
    assert sel.place is None
    assert sel.latency_unmeasured is not None
    assert "latency unmeasured here" in sel.summary
    assert "edgefleet probe create BUILD_DIR --class gpu-small" in sel.latency_unmeasured
    size_first = ClassPolicy(**{**GPU.__dict__, "objective": "size"})
    assert pick([FP32, m("fp16", 2 * MIB, precision="fp16")], figures, size_first).chosen == "fp16"


def test_device_figures_outrank_the_host_and_judge_latency() -> None:
    # probes report: on the devices FP16 is 3x faster and within the envelope; the host's CPU said otherwise
    figures = [
        host("fp32", 20.0),
        host("fp16", 25.0),
        Figures("fp32", "device", "2 devices", "TensorrtExecutionProvider", lat(1.5, p95=1.6), devices=2),
        Figures("fp16", "device", "2 devices", "TensorrtExecutionProvider", lat(0.5, p95=0.6), devices=2),
    ]
    sel = pick([FP32, m("fp16", 2 * MIB, precision="fp16")], figures, GPU)
    assert sel.place == "device"
    assert sel.chosen == "fp16"
    assert "(device)" in sel.summary
    fp32 = next(v for v in sel.verdicts if v.name == "fp32")
    assert any("latency p95 1.600 ms (device)" in r for r in fp32.reasons)


def test_figures_round_trip_through_json() -> None:
    f = Figures("fp32", "device", "d", "CPUExecutionProvider", lat(1.0), 10 * MIB, 12.0, 3.0, q(), devices=2)
    assert Figures.from_dict(f.to_dict()) == f
    with pytest.raises(ValueError, match="where"):
        Figures.from_dict({**f.to_dict(), "where": "moon"})


def test_a_busy_build_host_does_not_decide_the_envelope() -> None:
    """The build host's neighbours add time that is not the class's: its absolute p95 is not held to the
    envelope while others keep its CPUs busy, but a pairwise speed-up is still judged; devices always are."""

    def busy(name: str, p50: float, p95: float, load: float) -> Figures:
        return Figures(name, "emulated", "busy host", "CPUExecutionProvider", lat(p50, p95=p95),
                       others_load_per_cpu=load)  # fmt: skip

    policy = ClassPolicy(**{**POLICY.__dict__, "class_name": "cart"})
    quiet = pick([FP32, m("int8", MIB)], [busy("fp32", 8.0, 12.0, 0.1), busy("int8", 4.0, 6.0, 0.1)], policy)
    assert quiet.chosen == "int8"  # FP32 breaks the envelope on a quiet host
    assert quiet.envelope_unjudged is None
    loaded = pick(
        [FP32, m("int8", MIB)], [busy("fp32", 8.0, 12.0, 3.0), busy("int8", 8.0, 12.0, 3.0)], policy
    )
    assert loaded.chosen == "fp32"  # not failed on the host's load; no speed-up either
    assert loaded.envelope_unjudged is not None
    assert "edgefleet probe create BUILD_DIR --class cart" in loaded.envelope_unjudged
    assert "latency envelope not judged here" in loaded.summary
    device = [
        Figures("fp32", "device", "d", "CPUExecutionProvider", lat(8.0, p95=12.0), devices=2),
        Figures("int8", "device", "d", "CPUExecutionProvider", lat(8.0, p95=12.0), devices=2),
    ]
    assert pick([FP32, m("int8", MIB)], device, policy).failed  # devices are the class: their p95 counts
