"""A model whose worker process dies (its runtime really segfaults, ``crashing_runtime``): serving leaves the
dead worker at once for the ladder's fallback, and never runs the input that crashed it again in-process."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from tests.agent.crashing_runtime import POISON
from tests.agent.crashing_runtime import SPEC as CRASHING_SPEC

from edgefleet.agent.runtime.base import LoadedModel, LoadOptions
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.runtime.worker import WorkerAdapter, WorkerModel
from edgefleet.agent.serve import InferenceService, ServingConfig, StaticSource
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.manifest import Signature

from .conftest import classifier, write_artifact, x


class _Isolating:
    """The primary artifact in a worker of the crashing runtime; the fallback in-process (as the agent's
    ``TrialIsolation`` does with the version on trial)."""

    name = "onnxruntime"

    def __init__(self, primary_dir: Path, on_death) -> None:
        self._primary_dir = primary_dir
        self._on_death = on_death
        self.workers: list[WorkerModel] = []

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> LoadedModel:
        if not Path(model_path).is_relative_to(self._primary_dir):
            return OnnxRuntimeAdapter().load(model_path, signature, options)
        worker = WorkerAdapter("onnxruntime", spec=CRASHING_SPEC, on_death=self._on_death)
        model = worker.load(model_path, signature, options)
        self.workers.append(model)
        return model


@pytest.fixture
def crashing(tmp_path, metrics):
    primary = write_artifact(tmp_path / "main", classifier(1))
    fallback = write_artifact(tmp_path / "fallback", classifier(9), model="digits-small", version="0.1.0")
    died = threading.Event()
    adapter = _Isolating(primary.files_dir, lambda _how: died.set())
    config = ServingConfig(fallback_dir=fallback.files_dir)  # failures_to_descend: the default, 3
    service = InferenceService(StaticSource(primary), adapter, config, metrics=metrics)
    yield service, adapter, died
    service.close()
    for worker in adapter.workers:
        worker.close()


def test_the_request_that_crashed_the_model_is_lost_and_the_next_is_answered_by_the_fallback(
    crashing, metrics
):
    service, _adapter, _died = crashing
    assert service.predict({"x": x()}).mode == "preferred"
    with pytest.raises(EdgefleetError) as crashed:
        service.predict({"x": np.full_like(x(), POISON)})
    assert crashed.value.code == "model_crashed"
    # one refusal, not failures_to_descend: a dead worker answers nothing any more
    assert service.mode == "fallback"
    assert service.status()["last_error"]["code"] == "model_crashed"
    answer = service.predict({"x": x()})
    assert (answer.mode, answer.model_version) == ("fallback", "digits-small/0.1.0")
    # the crashing input was not run again on the fallback (in-process, it could take the agent down)
    assert [(r[1], r[3]) for r in metrics.requests] == [
        ("preferred", None),
        ("preferred", "model_crashed"),
        ("fallback", None),
    ]
    assert (
        "degraded",
        "rung_changed",
        {"from": "preferred", "to": "fallback", "reason": "model_crashed"},
    ) in (metrics.events)


def test_a_worker_that_dies_between_requests_steps_serving_down_before_any_request_meets_it(crashing):
    service, adapter, died = crashing
    assert service.predict({"x": x()}).mode == "preferred"
    os.kill(adapter.workers[0].pid, signal.SIGKILL)  # the kernel's OOM killer, say
    assert died.wait(30)
    assert service.model_died() is True  # what the agent's TrialIsolation calls first
    assert service.model_died() is False  # the fallback runs no dead worker
    assert service.status()["last_error"]["code"] == "model_crashed"
    answer = service.predict({"x": x()})
    assert (answer.mode, answer.model_version) == ("fallback", "digits-small/0.1.0")


def test_a_live_or_closed_worker_is_not_stepped_down_from(crashing):
    service, adapter, _died = crashing
    assert service.model_died() is False
    adapter.workers[0].close()  # stopped on purpose (a swap), not crashed
    assert service.model_died() is False
    assert service.mode == "preferred"
