"""A third-party model we did not write: the PP-OCRv4 text detector that ships inside the
``rapidocr_onnxruntime`` wheel, and realistic inputs for it: text rendered (Pillow) onto crops of the photos
bundled with scikit-learn (``load_sample_images``), normalized as RapidOCR does (BGR, (x/255 - 0.5)/0.5).

The rendered text's boxes are known, so a detection metric is too: pixel IoU of the probability map above
RapidOCR's threshold (0.3) against the text boxes. ``plain_photos`` are the same crops without text, on which
the detector answers nearly nothing everywhere: validation inputs that cannot tell a good candidate from a
broken one. Needs the dev extra (rapidocr-onnxruntime, Pillow, scikit-learn).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["DETECTOR_FILE", "detection_iou", "find_detector", "plain_photos", "text_images", "write_datasets"]

DETECTOR_FILE = "ch_PP-OCRv4_det_infer.onnx"
INPUT = "x"  # the detector's input name, as the .npz files name their array
THRESHOLD = 0.3
WORDS = ("EXIT", "OPEN 24h", "No. 4521", "DANGER", "Lot B-17", "edge", "fleet", "INVOICE", "12:45", "VOLTAGE")


def find_detector() -> Path | None:
    """The detector's .onnx inside the installed wheel (located without importing the package)."""
    for package in ("rapidocr_onnxruntime", "rapidocr"):
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            found = sorted(Path(root).rglob(DETECTOR_FILE))
            if found:
                return found[0]
    return None


def _crops(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two real photos, 427 x 640 RGB
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(size, min(photo.shape[:2]) + 1))
        y = int(rng.integers(0, photo.shape[0] - side + 1))
        x = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = photo[y : y + side, x : x + side]
        idx = (np.arange(size) * side // size).astype(int)
        out[i] = crop[idx][:, idx]
    return out


def _normalize(rgb: np.ndarray) -> np.ndarray:
    bgr = rgb[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((bgr / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2))


def text_images(count: int, size: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inputs N x 3 x size x size float32, text masks N x size x size bool): signs with words on photos."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    crops = _crops(count, size, rng)
    masks = np.zeros((count, size, size), dtype=bool)
    for i in range(count):
        image = Image.fromarray(crops[i])
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            font = ImageFont.load_default(size=int(rng.integers(size // 10, size // 5)))
            word = WORDS[int(rng.integers(len(WORDS)))]
            left, top, right, bottom = (int(v) for v in draw.textbbox((0, 0), word, font=font))
            w, h = right - left, bottom - top
            if w >= size - 4 or h >= size - 4:
                continue
            x, y = int(rng.integers(2, size - w - 2)), int(rng.integers(2, size - h - 2))
            dark = bool(rng.integers(2))
            pad = 3
            draw.rectangle(
                (x - pad, y - pad, x + w + pad, y + h + pad), fill=(235, 235, 225) if dark else (30, 40, 60)
            )
            draw.text((x - left, y - top), word, font=font, fill=(10, 10, 10) if dark else (250, 250, 250))
            masks[i, y : y + h, x : x + w] = True
        crops[i] = np.asarray(image)
    return _normalize(crops), masks


def plain_photos(count: int, size: int = 160, seed: int = 0) -> np.ndarray:
    """The same kind of crops, without any text."""
    return _normalize(_crops(count, size, np.random.default_rng(seed)))


def detection_iou(prob_maps: np.ndarray, masks: np.ndarray) -> float:
    """Pixel IoU of (probability > 0.3) against the rendered text boxes, over the whole set."""
    pred = prob_maps.reshape(masks.shape) > THRESHOLD
    union = np.logical_or(pred, masks).sum()
    return float(np.logical_and(pred, masks).sum() / union) if union else 1.0


def write_datasets(root: Path, *, calibration: int, validation: int, size: int = 160) -> dict[str, Path]:
    """calibration.npz and validation.npz (input ``x``) plus validation-masks.npy, under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    cal, _ = text_images(calibration, size, seed=1)
    val, masks = text_images(validation, size, seed=2)
    np.savez(root / "calibration.npz", x=cal)
    np.savez(root / "validation.npz", x=val)
    np.save(root / "validation-masks.npy", masks)
    return {
        "calibration": root / "calibration.npz",
        "validation": root / "validation.npz",
        "masks": root / "validation-masks.npy",
    }
