"""Real third-party models that ship inside PyPI wheels, fetched with pip (no hub downloads) and cached.

- ``ocr_direction_classifier()``: PaddleOCR's text-direction classifier (MobileNetV3, trained), an ONNX file
  in ``rapidocr-onnxruntime``; ``text_lines()`` makes labelled inputs for it: lines of the bundled
  handwritten digits, upright (0) or turned 180 degrees (1).
- ``face_detector_tflite()``: MediaPipe's short-range BlazeFace face detector, a ``.tflite`` in
  ``mediapipe`` 0.10.14 (later mediapipe wheels no longer bundle it).

Only the one file is extracted from each wheel (``pip download --no-deps``: nothing is installed). The cache
is ``$EDGEFLEET_WHEEL_MODELS`` or ``~/.cache/edgefleet/wheel-models``. ``None`` when pip cannot fetch (no
registry): callers skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["face_detector_tflite", "ocr_direction_classifier", "text_lines", "wheel_member"]

_FETCH_TIMEOUT_S = 600


def _cache() -> Path:
    root = os.environ.get("EDGEFLEET_WHEEL_MODELS") or Path.home() / ".cache" / "edgefleet" / "wheel-models"
    return Path(root)


def wheel_member(requirement: str, member: str) -> Path | None:
    """``member`` of the wheel pip picks for ``requirement`` on this platform, extracted once."""
    target = _cache() / requirement.replace("=", "-").replace("/", "_") / member
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement, "-d", tmp],
                check=True,
                capture_output=True,
                timeout=_FETCH_TIMEOUT_S,
            )
        except (subprocess.SubprocessError, OSError):
            return None
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            return None
        with zipfile.ZipFile(wheels[0]) as whl:
            if member not in whl.namelist():
                return None
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".partial")
            partial.write_bytes(whl.read(member))
            partial.replace(target)
    return target


def ocr_direction_classifier() -> Path | None:
    """From the installed rapidocr-onnxruntime (the dev extra) when present, else fetched from its wheel."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    for root in (spec.submodule_search_locations or []) if spec else []:
        found = Path(root) / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
        if found.exists():
            return found
    return wheel_member(
        "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
    )


def face_detector_tflite() -> Path | None:
    return wheel_member(
        "mediapipe==0.10.14", "mediapipe/modules/face_detection/face_detection_short_range.tflite"
    )


def text_lines(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x [count, 3, 48, 192] in [-1, 1], labels): seven bundled handwritten digits per line, dark on white,
    as the classifier's preprocessing expects; odd samples turned 180 degrees (label 1). The FP32 model gets
    about 83 % of these right (they are not the printed text it was trained on): a real task metric."""
    from sklearn.datasets import load_digits

    digits = load_digits().images.astype(np.float32) / 16.0
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for i in range(count):
        glyphs = [np.kron(digits[j], np.ones((3, 3), np.float32)) for j in rng.integers(0, len(digits), 7)]
        row = 1.0 - np.concatenate(glyphs, axis=1)  # (24, 168)
        line = np.ones((48, 192), np.float32)
        line[12:36, 4:172] = row
        label = i % 2
        if label:
            line = line[::-1, ::-1]
        xs.append(np.repeat(line[None], 3, axis=0) * 2.0 - 1.0)
        labels.append(label)
    return np.stack(xs).astype(np.float32), np.array(labels, dtype=np.int64)
