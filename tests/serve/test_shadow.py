"""Shadow evaluation: agreement statistics only, sampled, off the active path, within a budget."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import InferenceService, ServingConfig, ShadowConfig, StaticSource, shadow_verdict
from edgefleet.agent.serve.shadow import (
    AgreementStats,
    ShadowEvaluator,
    Tolerance,
    compare,
    resolve_tolerance,
)

from .conftest import GPU, FaultyAdapter, RecordingMetrics, classifier, regressor, write_artifact, x


def test_compare_counts_top1_agreement_and_abs_differences():
    active = {"p": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])}
    candidate = {"p": np.array([[0.7, 0.3], [0.6, 0.4], [0.6, 0.4]])}
    got = compare(active, candidate, "p", classifier=True)
    assert got.rows == 3
    assert got.top1_matches == 2
    assert got.max_abs_diff == pytest.approx(0.4)
    assert got.mean_abs_diff == pytest.approx((0.2 + 0.2 + 0.4 + 0.4) / 6)


def test_compare_refuses_a_shape_mismatch():
    with pytest.raises(Exception, match="shape") as err:
        compare({"p": np.zeros((1, 2))}, {"p": np.zeros((1, 3))}, "p", classifier=True)
    assert err.value.code == "shadow_shape_mismatch"


@pytest.mark.parametrize(
    ("samples", "matches", "errors", "verdict"),
    [(5, 5, 0, "pending"), (100, 99, 0, "pass"), (100, 90, 0, "fail"), (100, 100, 5, "fail")],
)
def test_activation_gate_on_agreement(samples, matches, errors, verdict):
    stats = AgreementStats("c", samples=samples, top1_matches=matches, top1_rows=samples)
    if errors:
        stats.candidate_errors["inference_failed"] = errors
    assert shadow_verdict(stats, min_samples=50, min_top1_agreement=0.95) == verdict


def test_identical_candidate_agrees_fully_and_only_statistics_are_kept(tmp_path, artifact, metrics):
    same = write_artifact(tmp_path / "cand", classifier(1), version="1.1.0")
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter(), metrics=metrics)
    service.start_shadow(same, ShadowConfig(sample_fraction=0.5, max_pending=64))
    for i in range(20):
        service.predict({"x": x(seed=i)})
    service.drain_shadow()
    stats = service.stop_shadow()
    assert stats is not None
    assert stats.samples == 10  # exactly half, deterministically
    assert stats.top1_agreement == 1.0
    assert stats.max_abs_diff == pytest.approx(0.0, abs=1e-6)
    assert [v for v, _ in metrics.shadow] == [1.0] * 10
    assert {name for _, name in metrics.shadow} == {"digits/1.1.0"}
    as_dict = stats.to_dict()
    assert not any(isinstance(v, (list, np.ndarray)) for v in as_dict.values())


def test_different_candidate_shows_disagreement(tmp_path, artifact):
    other = write_artifact(tmp_path / "cand", classifier(7), version="2.0.0")
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter(), ServingConfig(max_batch=8))
    service.start_shadow(other, ShadowConfig(sample_fraction=1.0, max_pending=64))
    for i in range(8):
        service.predict({"x": x(8, seed=i)})
    service.drain_shadow()
    stats = service.shadow_stats()
    assert stats is not None
    assert stats.rows == 64
    assert stats.top1_agreement is not None
    assert stats.top1_agreement < 0.9
    assert stats.mean_abs_diff > 0.01
    assert stats.candidate_latency_ms_max > 0


def test_a_slow_candidate_is_skipped_over_budget_never_queued_and_never_blocks(tmp_path, faults):
    base = write_artifact(tmp_path / "active", classifier(1))
    cand = write_artifact(tmp_path / "cand", classifier(1), version="9.0.0")
    service = InferenceService(StaticSource(base), OnnxRuntimeAdapter())
    faults.hold = threading.Event()  # the candidate's runs block until released
    service.start_shadow(
        cand, ShadowConfig(sample_fraction=1.0, max_pending=2), adapter=FaultyAdapter(faults)
    )
    answers = [service.predict({"x": x()}) for _ in range(10)]  # returns although the candidate is stuck
    assert all(a.mode == "preferred" for a in answers)
    faults.hold.set()
    service.drain_shadow()
    stats = service.stop_shadow()
    assert stats is not None
    assert stats.skipped_budget == 8
    assert stats.samples == 2


def test_compare_counts_rows_within_the_tolerance_and_never_a_nan():
    active = {"y": np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])}
    candidate = {"y": np.array([[1.004, 2.0], [1.02, 2.0], [np.nan, 2.0]])}
    got = compare(active, candidate, "y", classifier=False, tolerance=Tolerance(atol=0.01, rtol=0.0))
    assert got.rows_within_tolerance == 1
    assert got.top1_matches is None
    assert got.agreement() == pytest.approx(1 / 3)
    # rtol scales with the active answer: 2% of |1.0| covers the second row
    loose = compare(active, candidate, "y", classifier=False, tolerance=Tolerance(atol=0.0, rtol=0.021))
    assert loose.rows_within_tolerance == 2


def test_a_classifier_agrees_by_top1_a_regressor_by_tolerance():
    active = {"p": np.array([[0.9, 0.1], [0.2, 0.8]])}
    candidate = {"p": np.array([[0.6, 0.4], [0.1, 0.9]])}
    as_classifier = compare(active, candidate, "p", classifier=True, tolerance=Tolerance(0.01, 0.0))
    as_regressor = compare(active, candidate, "p", classifier=False, tolerance=Tolerance(0.01, 0.0))
    assert as_classifier.agreement() == 1.0  # same argmax in both rows
    assert as_regressor.agreement() == 0.0  # no row within 0.01


def test_the_tolerance_is_the_candidates_health_check_unless_the_config_sets_one():
    assert resolve_tolerance(ShadowConfig(), 0.05, 0.0) == Tolerance(atol=0.05, rtol=0.0)
    assert resolve_tolerance(ShadowConfig(atol=0.2), 0.05, 0.01) == Tolerance(atol=0.2, rtol=0.01)
    assert resolve_tolerance(ShadowConfig(rtol=0.0), 0.05, 0.01) == Tolerance(atol=0.05, rtol=0.0)
    with pytest.raises(ValueError, match="atol"):
        ShadowConfig(atol=-1.0)
    with pytest.raises(ValueError, match="rtol"):
        ShadowConfig(rtol=float("nan"))


@pytest.mark.parametrize(
    ("manifest_atol", "config_atol", "agrees"),
    [(0.01, None, True), (0.001, None, False), (0.001, 0.01, True), (0.01, 0.001, False)],
)
def test_a_regressor_candidate_agrees_within_its_manifests_tolerance(
    tmp_path, metrics, manifest_atol, config_atol, agrees
):
    """The candidate answers 0.005 above the active model: within an atol of 0.01, not of 0.001."""
    active = write_artifact(tmp_path / "active", regressor(0.0), version="1.0.0")
    shifted = write_artifact(
        tmp_path / "cand", regressor(0.005), version="2.0.0", atol=manifest_atol, rtol=0.0
    )
    service = InferenceService(
        StaticSource(active), OnnxRuntimeAdapter(), ServingConfig(max_batch=4), metrics=metrics
    )
    service.start_shadow(shifted, ShadowConfig(sample_fraction=1.0, max_pending=64, atol=config_atol))
    for i in range(5):
        service.predict({"x": x(4, seed=i)})
    service.drain_shadow()
    stats = service.stop_shadow()
    assert stats is not None
    assert stats.samples == 5
    assert stats.top1_agreement is None  # a one-column output is no classifier
    assert stats.atol == (config_atol if config_atol is not None else manifest_atol)
    assert stats.max_abs_diff == pytest.approx(0.005, abs=1e-5)
    assert stats.tolerance_agreement == (1.0 if agrees else 0.0)
    assert [v for v, _ in metrics.shadow] == [1.0 if agrees else 0.0] * 5
    assert all(s is not None and s.rows == 4 for s in metrics.samples)
    assert {s.rows_within_tolerance for s in metrics.samples if s is not None} == {4 if agrees else 0}
    service.close()


class StepClock:
    """perf_counter stand-in: every call is ``step_s`` later than the previous one."""

    def __init__(self, step_s: float) -> None:
        self.now, self.step_s = 0.0, step_s

    def __call__(self) -> float:
        self.now += self.step_s
        return self.now


def test_each_comparison_reports_its_statistics_and_both_latencies(tmp_path):
    metrics = RecordingMetrics()
    cand = write_artifact(tmp_path / "cand", classifier(7), version="2.0.0")
    model = OnnxRuntimeAdapter().load(cand.model_path, cand.manifest.signature, _options())
    evaluator = ShadowEvaluator(
        model,
        "digits/2.0.0",
        "probs",
        ShadowConfig(sample_fraction=1.0),
        metrics=metrics,
        clock=StepClock(0.002),
    )
    active = {"probs": np.full((2, 4), 0.25, dtype=np.float32)}
    assert evaluator.offer({"x": x(2)}, active, 1.5)
    evaluator.drain()
    evaluator.close()
    [(agreement, version)] = metrics.shadow
    [sample] = metrics.samples
    assert version == "digits/2.0.0"
    assert sample is not None
    assert sample.rows == 2
    assert sample.active_ms == 1.5
    assert sample.candidate_ms == pytest.approx(2.0)
    assert sample.top1_matches is not None
    assert agreement == pytest.approx(sample.top1_matches / 2)
    assert sample.max_abs_diff >= sample.mean_abs_diff > 0


def _options():
    from edgefleet.agent.runtime.base import LoadOptions

    return LoadOptions(execution_providers=("CPUExecutionProvider",), warmup_runs=0)


def test_candidate_failures_and_skips_reach_the_metrics_sink(tmp_path, faults, metrics):
    base = write_artifact(tmp_path / "active", classifier(1))
    cand = write_artifact(tmp_path / "cand", classifier(1), version="9.0.0", providers=GPU)
    service = InferenceService(StaticSource(base), OnnxRuntimeAdapter(), metrics=metrics)
    faults.broken_providers.add("CUDAExecutionProvider")
    service.start_shadow(
        cand, ShadowConfig(sample_fraction=1.0, max_pending=64), adapter=FaultyAdapter(faults)
    )
    for _ in range(3):
        service.predict({"x": x()})
    service.drain_shadow()
    assert metrics.shadow_errors == [("digits/9.0.0", "inference_failed")] * 3
    assert metrics.shadow == []
    faults.broken_providers.clear()
    faults.hold = threading.Event()
    service.start_shadow(
        cand, ShadowConfig(sample_fraction=1.0, max_pending=1), adapter=FaultyAdapter(faults)
    )
    for _ in range(4):
        service.predict({"x": x()})
    assert metrics.shadow_skipped == ["digits/9.0.0"] * 3
    faults.hold.set()
    service.close()


def test_activation_gate_on_tolerance_agreement():
    stats = AgreementStats("c", samples=100, rows=100, tolerance_matches=97)
    assert shadow_verdict(stats, min_samples=50, min_tolerance_agreement=0.95) == "pass"
    assert shadow_verdict(stats, min_samples=50, min_tolerance_agreement=0.99) == "fail"
