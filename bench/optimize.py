"""Optimization pipeline figures, per hardware class, as ratios against FP32 measured in the same run.

    .venv/bin/python bench/optimize.py [--quick]

Two models through ``edgefleet build`` with the four example classes:
- the digits CNN (trained here, seeded), accuracy on the bundled digits;
- the PP-OCRv4 text detector shipped inside the ``rapidocr_onnxruntime`` wheel (not trained here), on text
  rendered over scikit-learn's sample photos; its accuracy is pixel IoU against the rendered text boxes.
Per class: the chosen candidate, its speed-up over FP32 with the 95 % interval (the noise band), its size
ratio, its accuracy delta in points, and where the deciding latency was measured (host, emulated, device) or
why it is unmeasured here. Also the tiny MLP on which INT8 does not pay.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgefleet.optimize import BuildConfig, BuildResult, run_build
from edgefleet.optimize.ocr_example import detection_iou, find_detector, write_datasets
from edgefleet.protocol import parse_classes_toml

REPO = Path(__file__).resolve().parents[1]


def candidate_path(build_dir: Path, name: str) -> Path:
    return build_dir / "candidates" / f"{name}.onnx"  # written with keep_candidates=True


def _digits_module():
    import edgefleet.optimize.digits as module

    return module


def _outputs(path: Path, x: np.ndarray, name: str) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def report(title: str, result: BuildResult, accuracy: Callable[[str], float], unit: str) -> None:
    cpu = result.cpu
    print(
        f"\n{title}: build host {cpu.model_name}, {cpu.logical_cores} cores, "
        f"VNNI={cpu.vnni}, AVX2={'avx2' in cpu.flags}"
    )
    base = accuracy("fp32")
    print(f"  FP32 {unit}: {base:.4f}")
    for c in result.classes:
        sel = c.selection
        if sel.chosen is None:
            print(f"  {c.hwclass.name}: FAILED - {sel.summary}")
            continue
        verdict = next(v for v in sel.verdicts if v.name == sel.chosen)
        fp32 = next(m for m in c.measured if m.name == "fp32")
        chosen = next(m for m in c.measured if m.name == sel.chosen)
        speed = verdict.speedup.text() if verdict.speedup else "unmeasured"
        where = sel.place or "latency unmeasured here (accelerator absent on the build host)"
        delta = 100.0 * (accuracy(sel.chosen) - base)
        print(
            f"  {c.hwclass.name} [objective {sel.objective}]: {sel.chosen}; speed-up {speed}; "
            f"size {chosen.size_bytes / fp32.size_bytes:.2f}x; {unit} {delta:+.2f} points; measured: {where}"
        )
        timed = [v for v in sel.verdicts if v.speedup is not None and v.name != "fp32"]
        for v in sorted(timed, key=lambda v: -v.speedup.value):  # type: ignore[union-attr]
            m = next(x for x in c.measured if x.name == v.name)
            print(
                f"      {v.name}: {v.speedup.text()} ({v.speedup.method}), "  # type: ignore[union-attr]
                f"size {m.size_bytes / fp32.size_bytes:.2f}x, {'eligible' if v.eligible else 'refused'}"
            )
        if c.emulation:
            base_rss = c.emulation.get("runtime_baseline_rss_bytes") or 0
            rss = [f.peak_rss_bytes for f in c.figures if f.where == "emulated" and f.candidate == sel.chosen]
            if rss and rss[0]:
                print(
                    f"      emulated peak RSS {rss[0] / 2**20:.1f} MiB "
                    f"(runtime alone {base_rss / 2**20:.1f} MiB)"
                )


def main() -> int:
    quick = "--quick" in sys.argv
    classes = parse_classes_toml((REPO / "examples" / "hardware-classes.toml").read_text())
    config = (
        BuildConfig.test_size(latency_runs=100, mixed=False, keep_candidates=True)
        if quick
        else BuildConfig(latency_runs=400, progress=False, keep_candidates=True)
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _digits_module().main([str(root / "data")])
        data = root / "data"
        started = time.perf_counter()
        cnn = run_build(
            data / "model.onnx",
            classes,
            data / "calibration.npz",
            data / "validation.npz",
            root / "cnn",
            config,
        )
        val = np.load(data / "validation.npz")

        def digits_accuracy(name: str) -> float:
            out = _outputs(candidate_path(root / "cnn", name), val["input"], "input")
            return float((out.argmax(1) == val["labels"]).mean())

        report(f"digits CNN (build {time.perf_counter() - started:.0f} s)", cnn, digits_accuracy, "accuracy")
        mlp = run_build(
            data / "mlp.onnx",
            classes,
            data / "calibration.npz",
            data / "validation.npz",
            root / "mlp",
            config,
            class_names=["medical-cart-cpu"],
        )
        (mcls,) = mlp.classes
        print(f"\ntiny MLP on medical-cart-cpu: chosen {mcls.selection.chosen} - {mcls.selection.summary}")

        detector = find_detector()
        if detector is None:
            print("\nPP-OCRv4 detector: rapidocr_onnxruntime is not installed (dev extra); skipped")
            return 0
        size = 160 if quick else 320
        sets = write_datasets(
            root / "ocr", calibration=16 if quick else 32, validation=8 if quick else 24, size=size
        )
        det_config = config.replace(task="regression", min_calibration_samples=8, model_name="ppocr-det")
        started = time.perf_counter()
        det = run_build(detector, classes, sets["calibration"], sets["validation"], root / "det", det_config)
        x = np.load(sets["validation"])["x"]
        masks = np.load(sets["masks"])

        def iou(name: str) -> float:
            return detection_iou(_outputs(candidate_path(root / "det", name), x, "x"), masks)

        title = f"PP-OCRv4 text detector from the rapidocr_onnxruntime wheel, {size}x{size} inputs"
        report(f"{title} (build {time.perf_counter() - started:.0f} s)", det, iou, "pixel IoU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
