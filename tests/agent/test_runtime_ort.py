"""The ONNX Runtime adapter on real tiny models: providers, signature checks, warm-up, predict, cancel."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from crash.artifacts import IN_DIM, classifier, golden_inputs, run_model, slow_model

from edgefleet.agent.runtime import (
    InferenceFailedError,
    LoadOptions,
    ModelLoadError,
    SignatureMismatchError,
    sample_inputs,
)
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter, OrtModel, select_providers
from edgefleet.protocol.wire.manifest import Signature


def signature(*, in_name="x", dtype="float32", in_shape=(None, IN_DIM), out_shape=(None, 4)) -> Signature:
    return Signature.read(
        {
            "inputs": [{"name": in_name, "dtype": dtype, "shape": list(in_shape)}],
            "outputs": [{"name": "probs", "dtype": "float32", "shape": list(out_shape)}],
        }
    )


@pytest.mark.parametrize(
    ("preferred", "available", "chosen", "skipped"),
    [
        (["CPUExecutionProvider"], ["CPUExecutionProvider"], ["CPUExecutionProvider"], []),
        (
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["TensorrtExecutionProvider"],
        ),
        (
            ["OpenVINOExecutionProvider"],
            ["CPUExecutionProvider"],
            ["CPUExecutionProvider"],
            ["OpenVINOExecutionProvider"],
        ),
        (["CUDAExecutionProvider"], [], [], ["CUDAExecutionProvider"]),
    ],
)
def test_select_providers_keeps_preference_order_and_skips_absent(preferred, available, chosen, skipped):
    assert select_providers(preferred, available) == (chosen, skipped)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(classifier(3))
    return path


def test_load_skips_absent_providers_and_logs_them(model_file, caplog):
    adapter = OnnxRuntimeAdapter()
    options = LoadOptions(execution_providers=("TensorrtExecutionProvider", "CPUExecutionProvider"))
    with caplog.at_level(logging.INFO, logger="edgefleet.agent.runtime"):
        model = adapter.load(model_file, signature(), options)
    assert model.providers == ("CPUExecutionProvider",)
    assert "TensorrtExecutionProvider" in caplog.text


def test_predict_matches_a_plain_inference_session(model_file):
    model = OnnxRuntimeAdapter().load(model_file, signature(), LoadOptions(warmup_runs=2))
    x = golden_inputs(3)
    got = model.predict({"x": x})
    np.testing.assert_allclose(got["probs"], run_model(classifier(3), x), rtol=1e-6)


class _PublicOnly:
    """An InferenceSession seen through its public API only (an onnxruntime without the ``_sess`` binding,
    or a session with an accelerator provider): ``OrtModel`` must use the public ``run``."""

    def __init__(self, session, providers):
        self._session, self._providers, self.runs = session, providers, 0

    def get_outputs(self):
        return self._session.get_outputs()

    def get_providers(self):
        return self._providers

    def run(self, *args):
        self.runs += 1
        return self._session.run(*args)


@pytest.mark.parametrize(
    "providers", [["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]]
)
def test_predict_falls_back_to_the_public_run(model_file, providers):
    import onnxruntime as ort

    session = _PublicOnly(
        ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"]), providers
    )
    model = OrtModel(session)
    x = golden_inputs(2)
    np.testing.assert_allclose(model.predict({"x": x})["probs"], run_model(classifier(3), x), rtol=1e-6)
    assert session.runs == 1
    with pytest.raises(InferenceFailedError):
        model.predict({"nope": x})


def test_no_present_provider_is_a_clear_load_error(model_file):
    adapter = OnnxRuntimeAdapter(available_providers=[])  # a runtime that offers nothing usable
    with pytest.raises(ModelLoadError) as err:
        adapter.load(model_file, signature(), LoadOptions())
    assert err.value.code == "no_execution_provider"


def test_corrupt_model_file_is_a_load_error(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(classifier()[:100])
    with pytest.raises(ModelLoadError) as err:
        OnnxRuntimeAdapter().load(path, signature(), LoadOptions())
    assert err.value.code == "model_load_failed"


@pytest.mark.parametrize(
    "declared",
    [
        signature(in_name="input"),
        signature(dtype="float16"),
        signature(in_shape=(None, IN_DIM + 1)),
        signature(out_shape=(None, 4, 1)),
        signature(in_shape=(1, IN_DIM)),  # the manifest promises batch 1; the model accepts any batch
    ],
)
def test_signature_differing_from_the_manifest_is_refused(model_file, declared):
    with pytest.raises(SignatureMismatchError) as err:
        OnnxRuntimeAdapter().load(model_file, declared, LoadOptions())
    assert err.value.code == "model_signature_mismatch"
    assert "expected" in err.value.details


def test_wrong_input_at_predict_is_an_inference_error(model_file):
    model = OnnxRuntimeAdapter().load(model_file, signature(), LoadOptions())
    with pytest.raises(InferenceFailedError) as err:
        model.predict({"x": np.zeros((1, IN_DIM + 2), dtype=np.float32)})
    assert err.value.code == "inference_failed"


def test_cancel_terminates_a_run_in_flight(tmp_path):
    path = tmp_path / "slow.onnx"
    path.write_bytes(slow_model(chain=3000))
    model = OnnxRuntimeAdapter().load(path, signature(), LoadOptions())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            model.predict(sample_inputs(signature()))
        except InferenceFailedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(0.3)  # the run is inside onnxruntime now (the model takes seconds)
    assert thread.is_alive()
    model.cancel()
    thread.join(60)
    assert [e.code for e in errors] == ["inference_cancelled"]


def test_closed_model_refuses_new_runs(model_file):
    model = OnnxRuntimeAdapter().load(model_file, signature(), LoadOptions())
    model.close()
    with pytest.raises(InferenceFailedError) as err:
        model.predict(sample_inputs(signature()))
    assert err.value.code == "model_closed"


def test_sample_inputs_fill_dynamic_dims():
    inputs = sample_inputs(signature(in_shape=("batch", IN_DIM)), batch=3)
    assert inputs["x"].shape == (3, IN_DIM)
    assert inputs["x"].dtype == np.float32
