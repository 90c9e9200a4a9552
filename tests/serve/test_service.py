"""The in-process service on real ONNX Runtime models: answers, hot swap, the degraded ladder, faults."""

from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

from edgefleet.agent.install.slots import Pointer, SlotStore
from edgefleet.agent.runtime.base import InferenceFailedError
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import (
    BadTensorError,
    InferenceDeferredError,
    InferenceService,
    LadderPolicy,
    NoModelError,
    RuleConfig,
    ServingConfig,
    SlotActiveSource,
    StaticSource,
    read_status,
)

from .conftest import GPU, FaultyAdapter, classifier, write_artifact, x

LADDER = LadderPolicy(failures_to_descend=2, probe_initial_s=5.0, probe_max_s=40.0)


def raw_run(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": inputs})[0]


def test_predict_matches_a_plain_session_and_names_version_and_mode(artifact, metrics):
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter(), metrics=metrics)
    answer = service.predict({"x": x()})
    np.testing.assert_allclose(answer.outputs["probs"], raw_run(classifier(1), x()), rtol=1e-6)
    assert (answer.model_version, answer.artifact_id, answer.mode) == (
        "digits/1.0.0",
        "digits-1.0.0",
        "preferred",
    )
    assert [r[:2] for r in metrics.requests] == [("digits/1.0.0", "preferred")]


def test_batch_over_the_class_limit_is_refused_and_changes_nothing(artifact):
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter(), ServingConfig(max_batch=2))
    assert service.predict({"x": x(2)}).outputs["probs"].shape == (2, 4)
    with pytest.raises(BadTensorError) as err:
        service.predict({"x": x(3)})
    assert err.value.code == "tensor_batch_too_large"
    assert service.mode == "preferred"


def test_hot_swap_under_load_drops_no_request(tmp_path, artifact):
    v2 = write_artifact(tmp_path / "v2", classifier(2), version="2.0.0")
    source = StaticSource(artifact)
    service = InferenceService(source, OnnxRuntimeAdapter())
    expected = {
        "digits/1.0.0": raw_run(classifier(1), x()),
        "digits/2.0.0": raw_run(classifier(2), x()),
    }
    errors: list[BaseException] = []
    seen: set[str] = set()
    last = [""]
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                answer = service.predict({"x": x()})
                np.testing.assert_allclose(answer.outputs["probs"], expected[answer.model_version], rtol=1e-6)
                seen.add(answer.model_version)
                last[0] = answer.model_version
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(6):
        target = v2 if i % 2 == 0 else artifact
        source.set(target)
        deadline = time.monotonic() + 10  # a client answers on each version before the next swap
        while last[0] != target.model_version and time.monotonic() < deadline and not errors:
            time.sleep(0.001)
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert seen == {"digits/1.0.0", "digits/2.0.0"}
    assert service.model_version == "digits/1.0.0"


def test_provider_raising_mid_run_steps_down_to_cpu_and_climbs_back(tmp_path, faults, metrics, clock):
    art = write_artifact(tmp_path / "gpu", classifier(1), providers=GPU)
    service = InferenceService(
        StaticSource(art), FaultyAdapter(faults), ServingConfig(ladder=LADDER), metrics=metrics, clock=clock
    )
    assert service.mode == "preferred"
    faults.broken_providers = {"CUDAExecutionProvider"}
    with pytest.raises(InferenceFailedError):
        service.predict({"x": x()})  # one failure: not yet a pattern
    assert service.mode == "preferred"
    answer = service.predict({"x": x()})  # second: step down, and this request is answered on CPU
    assert answer.mode == "cpu"
    np.testing.assert_allclose(answer.outputs["probs"], raw_run(classifier(1), x()), rtol=1e-6)
    assert service.status()["last_error"]["code"] == "inference_failed"
    assert ("degraded", "rung_changed") in [e[:2] for e in metrics.events]

    clock.advance(5)
    service.tick()  # the cause persists: the probe fails and backs off
    assert service.mode == "cpu"
    assert service.status()["next_probe_in_s"] == 10.0
    faults.broken_providers.clear()
    clock.advance(10)
    service.tick()
    assert service.mode == "preferred"
    assert service.predict({"x": x()}).mode == "preferred"
    assert metrics.degraded["cpu"] == pytest.approx(15.0)
    assert "preferred" not in metrics.degraded
    assert service.status()["time_in_rung_s"]["cpu"] == pytest.approx(15.0)


def test_model_that_fails_to_load_serves_the_fallback_artifact(tmp_path, faults, metrics):
    art = write_artifact(tmp_path / "main", classifier(1), providers=GPU)
    fallback = write_artifact(tmp_path / "fallback", classifier(9), model="digits-small", version="0.1.0")
    faults.unloadable_paths.add(art.model_path)
    config = ServingConfig(fallback_dir=fallback.files_dir, ladder=LADDER)
    service = InferenceService(StaticSource(art), FaultyAdapter(faults), config, metrics=metrics)
    answer = service.predict({"x": x()})
    assert (answer.mode, answer.model_version) == ("fallback", "digits-small/0.1.0")
    np.testing.assert_allclose(answer.outputs["probs"], raw_run(classifier(9), x()), rtol=1e-6)
    assert {code for _, code, _ in metrics.events} >= {"preferred_unavailable", "cpu_unavailable"}


def test_fallback_can_come_from_an_installed_slot_source(tmp_path, faults, metrics):
    """A class-pinned fallback in the agent's ``fallback`` slot wins over a provisioned directory."""
    art = write_artifact(tmp_path / "main", classifier(1))
    installed = write_artifact(tmp_path / "installed", classifier(7), model="digits-small", version="0.2.0")
    faults.unloadable_paths.add(art.model_path)
    config = ServingConfig(fallback_dir=tmp_path / "no-such-dir", ladder=LADDER)
    service = InferenceService(
        StaticSource(art),
        FaultyAdapter(faults),
        config,
        metrics=metrics,
        fallback_source=StaticSource(installed),
    )
    answer = service.predict({"x": x()})
    assert (answer.mode, answer.model_version) == ("fallback", "digits-small/0.2.0")
    assert service.status()["fallback_configured"] is True
    empty = InferenceService(
        StaticSource(art),
        FaultyAdapter(faults),
        ServingConfig(ladder=LADDER),
        fallback_source=StaticSource(None),
    )
    assert empty.mode == "rule"  # nothing installed in the fallback slot yet: the rule answers


def test_missing_fallback_lands_on_the_rule_and_keeps_serving(tmp_path, faults, metrics):
    art = write_artifact(tmp_path / "main", classifier(1))
    faults.unloadable_paths.add(art.model_path)
    config = ServingConfig(fallback_dir=tmp_path / "no-such-fallback", rule=RuleConfig(retry_after_s=7))
    service = InferenceService(StaticSource(art), FaultyAdapter(faults), config, metrics=metrics)
    assert service.mode == "rule"
    with pytest.raises(InferenceDeferredError) as err:
        service.predict({"x": x()})
    assert err.value.retry_after_s == 7
    assert "fallback_unavailable" in [code for _, code, _ in metrics.events]
    with pytest.raises(BadTensorError):  # still validated against the active signature
        service.predict({"x": np.zeros((1, 3), np.float32)})


def test_fixed_rule_answers_a_safe_value_per_sample(tmp_path, faults):
    art = write_artifact(tmp_path / "main", classifier(1))
    faults.unloadable_paths.add(art.model_path)
    rule = RuleConfig(kind="fixed", outputs={"probs": [1.0, 0.0, 0.0, 0.0]})
    service = InferenceService(
        StaticSource(art), FaultyAdapter(faults), ServingConfig(max_batch=3, rule=rule)
    )
    answer = service.predict({"x": x(3)})
    assert answer.mode == "rule"
    assert answer.outputs["probs"].tolist() == [[1.0, 0.0, 0.0, 0.0]] * 3
    assert answer.outputs["probs"].dtype == np.float32


def test_fixed_rule_that_does_not_fit_the_signature_is_refused_at_load(tmp_path, faults):
    art = write_artifact(tmp_path / "main", classifier(1))
    faults.unloadable_paths.add(art.model_path)
    rule = RuleConfig(kind="fixed", outputs={"probs": [1.0, 0.0]})
    with pytest.raises(ValueError, match="shape"):
        InferenceService(StaticSource(art), FaultyAdapter(faults), ServingConfig(rule=rule))


def test_failing_fallback_steps_down_to_the_rule_then_recovers(tmp_path, faults, clock):
    art = write_artifact(tmp_path / "main", classifier(1), providers=GPU)
    fallback = write_artifact(tmp_path / "fallback", classifier(9), model="small", version="0.1.0")
    config = ServingConfig(fallback_dir=fallback.files_dir, ladder=LADDER)
    service = InferenceService(StaticSource(art), FaultyAdapter(faults), config, clock=clock)
    faults.broken_providers = {"CUDAExecutionProvider", "CPUExecutionProvider"}  # everything raises
    modes = []
    for _ in range(6):
        try:
            modes.append(service.predict({"x": x()}).mode)
        except (InferenceFailedError, InferenceDeferredError) as exc:
            modes.append(exc.code)
    assert service.mode == "rule"
    assert modes[-1] == "inference_deferred"
    faults.broken_providers.clear()
    clock.advance(5)
    service.tick()
    assert service.mode == "preferred"


def test_nothing_installed_is_a_clear_error_and_an_install_is_picked_up(tmp_path, artifact):
    source = StaticSource(None)
    service = InferenceService(source, OnnxRuntimeAdapter())
    with pytest.raises(NoModelError):
        service.predict({"x": x()})
    source.set(artifact)
    assert service.predict({"x": x()}).mode == "preferred"


def test_slot_source_follows_the_installers_active_pointer(tmp_path):
    root = tmp_path / "agent"
    store = SlotStore(root, "default")
    keys = []
    for seed, version in ((1, "1.0.0"), (2, "2.0.0")):
        art = write_artifact(tmp_path / f"a{seed}", classifier(seed), version=version)
        staged = store.new_staging()
        for f in art.manifest.files:
            (staged / "files" / f.path).write_bytes((art.files_dir / f.path).read_bytes())
        keys.append((store.install_staged(staged, art.manifest), f"art-{seed}"))
    store.switch(Pointer(keys[0][0], keys[0][1], 1, "2026-01-01T00:00:00+00:00"))
    source = SlotActiveSource(root)
    status_path = tmp_path / "serving.json"
    service = InferenceService(source, OnnxRuntimeAdapter(), ServingConfig(status_path=status_path))
    assert service.artifact_id == "art-1"
    assert source.poll() is False
    store.switch(Pointer(keys[1][0], keys[1][1], 2, "2026-01-02T00:00:00+00:00"))
    assert source.poll() is True
    answer = service.predict({"x": x()})
    assert (answer.artifact_id, answer.model_version) == ("art-2", "digits/2.0.0")
    status = read_status(status_path)
    assert status is not None
    assert (status["mode"], status["artifact_id"]) == ("preferred", "art-2")


def test_a_file_changed_after_the_switch_is_never_loaded(tmp_path, caplog):
    """The installer re-hashes at the switch; the serving source re-hashes again when it loads, so a model
    file that changed on disk afterwards (a bad sector, a stray write) is refused, not served."""
    root = tmp_path / "agent"
    store = SlotStore(root, "default")
    art = write_artifact(tmp_path / "a1", classifier(1), version="1.0.0")
    staged = store.new_staging()
    for f in art.manifest.files:
        (staged / "files" / f.path).write_bytes((art.files_dir / f.path).read_bytes())
    key = store.install_staged(staged, art.manifest)
    store.switch(Pointer(key, "art-1", 1, "2026-01-01T00:00:00+00:00"))
    model_file = store.files_dir(key) / art.manifest.entrypoint
    model_file.chmod(0o644)
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with caplog.at_level("ERROR", logger="edgefleet.agent.serve"):
        source = SlotActiveSource(root)
    assert source.active() is None
    assert "event=active_version_unusable" in caplog.text
    assert "version_corrupt" in caplog.text


class _SupervisedModel:
    """A model run through a supervision hop (as the trial worker is): the hop is reported apart."""

    def __init__(self, inner, hop_s: float) -> None:
        self._inner, self._hop_s = inner, hop_s
        self.providers = inner.providers

    def predict(self, inputs):
        time.sleep(self._hop_s)  # the time between the processes
        return self._inner.predict(inputs)

    def hop_s(self) -> float:
        return self._hop_s

    def close(self) -> None:
        self._inner.close()


class _SupervisedAdapter(OnnxRuntimeAdapter):
    def load(self, *args, **kwargs):
        return _SupervisedModel(super().load(*args, **kwargs), hop_s=0.02)


def test_the_supervision_hop_is_kept_out_of_the_latency_telemetry_judges(artifact, metrics):
    service = InferenceService(StaticSource(artifact), _SupervisedAdapter(), metrics=metrics)
    answer = service.predict({"x": x()})
    assert answer.latency_ms >= 20.0  # the caller waited for the hop
    (_version, _rung, recorded_ms, _code) = metrics.requests[-1]
    assert recorded_ms == pytest.approx(answer.latency_ms - 20.0, abs=1e-6)
