"""The hardware class's thread settings reach the ONNX Runtime sessions the agent serves with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from edgefleet.agent.app import AgentOptions
from edgefleet.agent.install.slots import Pointer, SlotStore
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import InferenceService, ServingConfig, StaticSource
from edgefleet.agent.serve.endpoint import EndpointConfig
from edgefleet.agent.serving_wiring import start_serving
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.hardware_class import HardwareClass, Threads
from edgefleet.protocol.wire import hardware_class as wire_class
from edgefleet.protocol.wire.base import read_document

from .conftest import GPU, RecordingMetrics, classifier, write_artifact, x

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"


def hardware_class(intra: int, inter: int) -> HardwareClass:
    [cls] = [c for c in parse_classes_toml(EXAMPLES.read_text()) if c.name == "medical-cart-cpu"]
    return cls.model_copy(update={"threads": Threads(intra_op=intra, inter_op=inter)})


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[ort.InferenceSession]:
    """Every InferenceSession created while the test runs (the real class, recorded)."""
    made: list[ort.InferenceSession] = []
    real = ort.InferenceSession

    class Recorded(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(ort, "InferenceSession", Recorded)
    return made


def threads_of(session: ort.InferenceSession) -> tuple[int, int]:
    options = session.get_session_options()
    return options.intra_op_num_threads, options.inter_op_num_threads


def install(root: Path, slot: str, artifact: Any, artifact_id: str) -> None:
    store = SlotStore(root, slot)
    staged = store.new_staging()
    for f in artifact.manifest.files:
        (staged / "files" / f.path).write_bytes((artifact.files_dir / f.path).read_bytes())
    key = store.install_staged(staged, artifact.manifest)
    store.switch(Pointer(key, artifact_id, 1, "2026-01-01T00:00:00+00:00"))


def test_the_class_threads_reach_every_rung_and_the_shadow_candidate(tmp_path, sessions):
    active = write_artifact(tmp_path / "a", classifier(1), providers=GPU)  # preferred falls to CPU here
    candidate = write_artifact(tmp_path / "c", classifier(2), version="2.0.0")
    config = ServingConfig.for_class(hardware_class(3, 2))
    assert config.threads == Threads(intra_op=3, inter_op=2)
    service = InferenceService(StaticSource(active), OnnxRuntimeAdapter(), config)
    service.start_shadow(candidate)
    service.predict({"x": x()})
    try:
        assert len(sessions) == 2  # the active model and the candidate
        assert {threads_of(s) for s in sessions} == {(3, 2)}
    finally:
        service.close()


def test_agent_serving_opens_its_sessions_with_the_class_threads(tmp_path, sessions):
    """``start_serving`` (what ``agent run`` calls) on the installer's slots: active and shadow slot."""
    root = tmp_path / "agent"
    install(root, "default", write_artifact(tmp_path / "a", classifier(1)), "art-1")
    install(root, "default.shadow", write_artifact(tmp_path / "c", classifier(2), version="2.0.0"), "art-2")
    serving = start_serving(
        root,
        hardware_class=hardware_class(5, 3),
        metrics=RecordingMetrics(),
        endpoint=EndpointConfig(port=0),
    )
    try:
        serving.sync({"default": "art-1", "default.shadow": "art-2"})
        assert serving.shadowing == "art-2"
        answer = serving.service.predict({"x": np.zeros((1, 16), np.float32)})
        assert answer.artifact_id == "art-1"
        assert len(sessions) == 2
        assert {threads_of(s) for s in sessions} == {(5, 3)}
    finally:
        serving.close()


def test_the_installer_is_configured_with_the_class_threads():
    """The agent reads its stored class with the struct (``DataDir.read_hardware_class``)."""
    cls = read_document(hardware_class(6, 2).to_dict(), wire_class.HardwareClass, kind="hardware class")
    assert AgentOptions().installer_config(cls).threads == wire_class.Threads(intra_op=6, inter_op=2)
    assert AgentOptions().installer_config(None).threads == wire_class.Threads()
