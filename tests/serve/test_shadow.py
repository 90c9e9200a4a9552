"""Shadow evaluation: agreement statistics only, sampled, off the active path, within a budget."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import InferenceService, ServingConfig, ShadowConfig, StaticSource, shadow_verdict
from edgefleet.agent.serve.shadow import AgreementStats, compare

from .conftest import FaultyAdapter, classifier, write_artifact, x


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
