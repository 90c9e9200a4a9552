"""The generic (bsdiff) delta on a model we did not make: MediaPipe's BlazeFace ``.tflite`` from the
mediapipe wheel, its last float weight tensor retrained (values moved in place), rebuilt exactly, run by
LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.wheel_models import face_detector_tflite

from edgefleet.optimize.deltas import encode_delta
from edgefleet.trust.delta import apply_delta

litert = pytest.importorskip("ai_edge_litert.interpreter")


def _retrain_last_weights(model: bytes) -> tuple[bytes, str]:
    """A fine-tune that changed one layer: the last float constant (this model stores float16 weights) of at
    least 1 KiB whose bytes lie in the flatbuffer gets new values (same shape and type), as a retrained head
    would."""
    interpreter = litert.Interpreter(model_content=model)
    for detail in reversed(interpreter.get_tensor_details()):
        if detail["dtype"] not in (np.float16, np.float32):
            continue
        try:
            values = interpreter.get_tensor(detail["index"])
        except ValueError:  # not a constant
            continue
        raw = values.tobytes()
        at = model.find(raw) if len(raw) >= 1024 else -1
        if at >= 0:
            rng = np.random.default_rng(7)
            moved = (values * (1 + rng.normal(0, 0.05, values.shape))).astype(values.dtype).tobytes()
            return model[:at] + moved + model[at + len(raw) :], detail["name"]
    raise AssertionError("no float weight tensor found in the model's bytes")


def _run(path: Path, image: np.ndarray) -> list[np.ndarray]:
    interpreter = litert.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def test_a_retrained_tflite_layer_travels_as_a_small_delta_and_rebuilds_the_exact_file(tmp_path):
    source = face_detector_tflite()
    if source is None:
        pytest.skip("the mediapipe wheel is not available here")
    base = tmp_path / "v1.tflite"
    base.write_bytes(source.read_bytes())
    new_bytes, layer = _retrain_last_weights(base.read_bytes())
    new = tmp_path / "v2.tflite"
    new.write_bytes(new_bytes)

    delta = tmp_path / "v2.efdelta"
    custom = encode_delta(
        base, new, delta, base_path="face/1.0.0/cam/model.tflite", result_path="face/2.0.0/cam/model.tflite"
    )
    assert custom.encoding == "bsdiff"
    size = (layer, delta.stat().st_size, new.stat().st_size)
    print("delta / full:", size)
    assert delta.stat().st_size < 0.25 * new.stat().st_size, size

    out = apply_delta(delta, base, tmp_path / "rebuilt.tflite", custom)
    assert out.read_bytes() == new_bytes
    image = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    for got, want in zip(_run(out, image), _run(new, image), strict=True):
        np.testing.assert_array_equal(got, want)
    changed = any(not np.array_equal(a, b) for a, b in zip(_run(base, image), _run(new, image), strict=True))
    assert changed, "the retrained layer changed no output: the test would not notice a wrong rebuild"
