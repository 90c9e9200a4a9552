"""Pure parts: quality metrics, bounds, tolerances, CPU flags, Pareto front."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.optimize.cpu_features import build_reduce_range, class_needs_reduce_range, parse_cpuinfo
from edgefleet.optimize.errors import BuildInputError
from edgefleet.optimize.package import derive_tolerance
from edgefleet.optimize.quality import check_labels, measure_quality, within_bound
from edgefleet.optimize.report import pareto_front
from edgefleet.protocol import HardwareClass
from edgefleet.protocol.errors import InvalidDocumentError


def test_classification_quality_against_reference_and_labels() -> None:
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    out = ref.copy()
    out[3] = [0.4, 0.6]  # one flipped prediction
    labels = np.array([1, 0, 1, 0])
    quality = measure_quality("classification", out, ref, labels)
    assert quality.agreement == pytest.approx(0.75)
    assert quality.task_metric == "accuracy"
    assert quality.task_value == pytest.approx(0.75)
    assert quality.max_abs_diff == pytest.approx(0.2, abs=1e-6)
    reference = measure_quality("classification", ref, ref, labels)
    assert reference.task_value == 1.0
    ok, misses = within_bound(quality, reference, min_metric_ratio=0.99, min_agreement=0.99)
    assert not ok
    assert len(misses) == 2


def test_nan_outputs_never_pass() -> None:
    ref = np.ones((3, 2), np.float32)
    out = ref.copy()
    out[0, 0] = np.nan
    quality = measure_quality("classification", out, ref, None)
    assert quality.has_nan
    assert quality.agreement == 0.0
    ok, _ = within_bound(
        quality, measure_quality("classification", ref, ref, None), min_metric_ratio=0, min_agreement=0
    )
    assert not ok


def test_regression_and_embedding_agreement() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 3)).astype(np.float32)
    reg = measure_quality("regression", ref + 0.01, ref, ref)
    assert 0.98 < reg.agreement < 1.0
    assert reg.task_metric == "r2"
    emb = measure_quality("embedding", ref * 2.0, ref, None)
    assert emb.agreement == pytest.approx(1.0)
    assert emb.task_metric is None


def test_labels_must_fit_the_output() -> None:
    ref = np.zeros((4, 3), np.float32)
    check_labels(np.array([0, 1, 2, 0]), ref, "classification", what="v")
    with pytest.raises(BuildInputError) as exc:
        check_labels(np.array([0, 1, 5, 0]), ref, "classification", what="v")
    assert exc.value.code == "labels_mismatch"
    assert exc.value.details["expected"] == "values in [0, 3)"
    with pytest.raises(BuildInputError):
        check_labels(np.array([0.5, 1, 2, 0]), ref, "classification", what="v")


def test_tolerance_derives_from_measured_differences() -> None:
    assert derive_tolerance(candidate_vs_fp32=0.0, implementation_spread=0.0).atol == 1e-4
    assert derive_tolerance(candidate_vs_fp32=0.05, implementation_spread=1e-6).atol == pytest.approx(0.1)
    assert derive_tolerance(candidate_vs_fp32=0.0, implementation_spread=1e-3).atol == pytest.approx(1e-2)


def test_cpu_flags() -> None:
    text = (
        "processor: 0\nmodel name\t: Xeon\nflags\t: fpu sse4_2 avx avx2 avx512f avx512_vnni\n\nprocessor: 1\n"
    )
    info = parse_cpuinfo(text, arch="x86_64", logical_cores=2)
    assert info.model_name == "Xeon"
    assert info.vnni
    assert info.to_dict()["avx512"] is True
    plain = parse_cpuinfo("flags: avx2\n", arch="x86_64", logical_cores=1)
    assert not plain.vnni
    assert plain.to_dict()["avx2"] is True
    arm = parse_cpuinfo("Features: fp asimd asimddp\n", arch="aarch64", logical_cores=4)
    assert arm.vnni


def test_pareto_front() -> None:
    points = [("a", 1.0, 0.99), ("b", 2.0, 1.0), ("c", 2.5, 0.98), ("d", 1.0, 0.95)]
    assert pareto_front(points) == ["a", "b"]


def _cls(
    arch: str, features: list[str] | None, precisions: tuple[str, ...] = ("fp32", "int8")
) -> HardwareClass:
    return HardwareClass.parse(
        {
            "schema_version": 1,
            "name": f"c-{arch}-{len(features or [])}-{len(precisions)}",
            "cpu_arch": arch,
            "cpu_features": features,
            "precisions": list(precisions),
            "budgets": {"ram_mb": 512, "storage_mb": 512, "max_model_mb": 10},
            "performance": {"latency_p95_ms": 20},
        }
    )


@pytest.mark.parametrize(
    ("arch", "features", "needs"),
    [
        ("x86_64", ["avx2", "fma"], True),  # U8S8 without VNNI saturates: 7-bit weights
        ("x86_64", ["sse4_2"], True),
        ("x86_64", None, True),  # unknown CPU: the conservative choice
        ("x86_64", [], True),
        ("x86_64", ["avx2", "avx512_vnni"], False),
        ("x86_64", ["avx_vnni"], False),
        ("x86_64", ["AMX_INT8"], False),  # flags are case-folded
        ("aarch64", None, False),  # the int16 accumulation is an x86 kernel
        ("aarch64", ["asimd"], False),
    ],
)
def test_the_class_not_the_build_machine_decides_the_int8_range(
    arch: str, features: list[str] | None, needs: bool
) -> None:
    assert class_needs_reduce_range(_cls(arch, features)) is needs


def test_one_class_that_needs_7_bit_weights_decides_the_shared_candidates() -> None:
    vnni = _cls("x86_64", ["avx512_vnni"])
    plain = _cls("x86_64", ["avx2"])
    jetson = _cls("aarch64", ["asimddp"])
    assert build_reduce_range([vnni, jetson]) is False
    assert build_reduce_range([vnni, plain]) is True
    # a non-VNNI class that does not allow INT8 gets no INT8 candidate, so it does not decide
    assert build_reduce_range([vnni, _cls("x86_64", ["avx2"], ("fp32",))]) is False


def test_cpu_feature_names_are_validated() -> None:
    with pytest.raises(InvalidDocumentError):
        _cls("x86_64", ["avx2; rm -rf"])
