"""The third-party text detector (PP-OCRv4 from the rapidocr_onnxruntime wheel) through the whole build, on
rendered text over real photos, for the four example classes; and the photos without text, on which no
agreement figure can judge a candidate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgefleet.optimize import BuildConfig, run_build
from edgefleet.optimize.ocr_example import find_detector, plain_photos, text_images, write_datasets
from edgefleet.optimize.quality import measure_quality, within_bound

DETECTOR = find_detector()
pytestmark = pytest.mark.skipif(DETECTOR is None, reason="rapidocr_onnxruntime (dev extra) is not installed")
SIZE = 96  # the detector wants sides that are multiples of 32; small keeps CI fast


def _run(x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(DETECTOR), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_photos_without_text_cannot_judge_a_candidate_and_the_build_says_so() -> None:
    reference = _run(plain_photos(4, SIZE))
    broken = np.zeros_like(reference)  # a candidate that detects nothing, ever
    blind = measure_quality("regression", broken, reference, None)
    assert not blind.informative
    assert "provide representative inputs" in (blind.warning or "")
    ok, misses = within_bound(blind, measure_quality("regression", reference, reference, None),
                              min_metric_ratio=0.99, min_agreement=0.99)  # fmt: skip
    assert not ok
    assert any("unproven" in m for m in misses)
    # with text in the pictures the same broken candidate is caught, and the figure means something
    x, _ = text_images(4, SIZE, seed=3)
    reference = _run(x)
    seeing = measure_quality("regression", np.zeros_like(reference), reference, None)
    assert seeing.informative
    assert seeing.agreement < 0.9


@pytest.mark.slow
def test_the_detector_builds_for_all_four_example_classes(example_classes, tmp_path: Path) -> None:
    data = write_datasets(tmp_path / "data", calibration=8, validation=8, size=SIZE)
    config = BuildConfig.test_size(
        task="regression",
        model_name="ppocr-det",
        calibration_methods=("minmax",),
        min_calibration_samples=8,
        latency_runs=24,
        warmup_runs=2,
        golden_samples=2,
        mixed=False,
    )
    out = tmp_path / "out"
    result = run_build(DETECTOR, example_classes, data["calibration"], data["validation"], out, config)
    assert result.failed_classes == []
    by = {c.hwclass.name: c for c in result.classes}
    for name in ("jetson-vision-standard", "factory-gateway-gpu", "intel-lowpower-detector"):
        sel = by[name].selection
        assert sel.place is None, name  # the accelerator is absent here: not failed on stand-in CPU latency
        assert "latency unmeasured here" in sel.summary
        assert f"edgefleet probe create BUILD_DIR --class {name}" in (sel.latency_unmeasured or "")
    cart = by["medical-cart-cpu"].selection
    assert cart.place == "emulated"
    for c in result.classes:
        verdict = next(v for v in c.selection.verdicts if v.name == c.selection.chosen)
        if c.selection.chosen != "fp32":  # no pick whose only advantage is within the noise
            assert c.selection.objective != "latency" or (verdict.speedup and verdict.speedup.low > 1.0)
        emulated = [f for f in c.figures if f.where == "emulated" and f.error is None]
        assert emulated
        assert c.emulation is not None
        baseline = c.emulation["runtime_baseline_rss_bytes"]
        assert all(f.peak_rss_bytes and f.peak_rss_bytes > baseline for f in emulated)
    # nearly constant background, sparse text: agreement is judged against the output's range, not its std
    fp32 = result.qualities["fp32"]
    assert fp32.informative
    int8 = result.qualities["int8-static-minmax-pc"]
    assert 0.5 < int8.agreement <= 1.0
    report = json.loads((out / "report.json").read_text())
    assert {c["hardware_class"] for c in report["classes"]} == set(by)
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 4
    assert "latency unmeasured here" in html
