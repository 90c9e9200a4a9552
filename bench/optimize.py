"""Optimization pipeline figures on the digits CNN and a tiny MLP, as ratios against FP32 in the same run.

    .venv/bin/python bench/optimize.py [--quick]

Prints: the chosen CPU artifact's latency p50 as a speed ratio over FP32 (target >= 2x on a VNNI CPU),
its accuracy delta in points (target <= 1), its size ratio; the best INT8 candidate's numbers even when
not chosen; and for the tiny MLP, whether FP32 was kept because INT8 did not pay.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from edgefleet.optimize import BuildConfig, run_build
from edgefleet.protocol import parse_classes_toml

REPO = Path(__file__).resolve().parents[1]
CPU_CLASS = "medical-cart-cpu"


def _digits_module():
    import edgefleet.optimize.digits as module

    return module


def _p50(cls, name: str) -> float:
    return next(f.latency.p50_ms for f in cls.figures if f.candidate == name and f.latency is not None)


def _row(cls, result, name: str) -> tuple[float, float, float]:
    m = next(x for x in cls.measured if x.name == name)
    fp32 = next(x for x in cls.measured if x.name == "fp32")
    speed = _p50(cls, "fp32") / _p50(cls, name)
    acc_delta = 100.0 * (result.qualities[name].task_value - result.qualities["fp32"].task_value)
    return speed, acc_delta, m.size_bytes / fp32.size_bytes


def main() -> int:
    quick = "--quick" in sys.argv
    classes = parse_classes_toml((REPO / "examples" / "hardware-classes.toml").read_text())
    config = (
        BuildConfig.test_size(latency_runs=300) if quick else BuildConfig(latency_runs=1000, progress=False)
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        _digits_module().main([str(root / "data")])
        train_s = time.perf_counter() - started
        data = root / "data"
        results = {}
        for model in ("model", "mlp"):
            started = time.perf_counter()
            results[model] = run_build(
                data / f"{model}.onnx",
                classes,
                data / "calibration.npz",
                data / "validation.npz",
                root / f"out-{model}",
                config,
                class_names=[CPU_CLASS],
            )
            results[model + "_s"] = time.perf_counter() - started
    cnn, mlp = results["model"], results["mlp"]
    (cls,) = cnn.classes
    cpu = cnn.cpu
    print(
        f"machine: {cpu.model_name}, {cpu.logical_cores} cores, VNNI={cpu.vnni}, AVX2={'avx2' in cpu.flags}, "
        f"AVX-512={'avx512f' in cpu.flags}; class {CPU_CLASS} "
        f"(threads {cls.settings.intra_op}/{cls.settings.inter_op})"
    )
    print(
        f"digits CNN trained in {train_s:.1f} s; build {results['model_s']:.1f} s; "
        f"MLP build {results['mlp_s']:.1f} s"
    )
    speed, acc, size = _row(cls, cnn, cls.selection.chosen)
    print(f"digits CNN chosen artifact: {cls.selection.chosen}")
    print(f"  latency p50 speed-up vs FP32: {speed:.2f}x (target >= 2x on a VNNI CPU)")
    print(f"  accuracy delta: {acc:+.2f} points (target <= 1)")
    print(f"  size ratio vs FP32: {size:.2f}x")
    print(f"  selection: {cls.selection.summary}")
    int8 = [m for m in cls.measured if m.precision == "int8" and m.quality and m.error is None]
    if int8:
        best = min(int8, key=lambda m: _p50(cls, m.name))
        speed, acc, size = _row(cls, cnn, best.name)
        print(
            f"  fastest INT8 candidate {best.name}: {speed:.2f}x speed, {acc:+.2f} points, {size:.2f}x size"
        )
    (mcls,) = mlp.classes
    kept = mcls.selection.chosen == "fp32"
    int8 = [m for m in mcls.measured if m.precision == "int8" and m.error is None]
    print(f"tiny MLP: chosen {mcls.selection.chosen}; FP32 kept: {kept}")
    for m in int8:
        speed, acc, size = _row(mcls, mlp, m.name)
        print(f"  {m.name}: {speed:.2f}x FP32 speed, {acc:+.2f} points, {size:.2f}x size")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
