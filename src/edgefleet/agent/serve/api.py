"""The in-process API: ``load`` once, then ``predict``, ``current_version``, ``mode`` from anywhere.

    from edgefleet.agent import load, predict, mode
    load("/var/lib/edgefleet/artifacts/digits")            # or an ActiveSource (the installer's slot)
    answer = predict({"input": batch})                      # -> Prediction(outputs, model_version, mode, ...)

The module holds one process-wide service; ``InferenceService`` is there for several slots or tests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgefleet.agent.runtime.base import RuntimeAdapter
from edgefleet.agent.serve.config import ServingConfig
from edgefleet.agent.serve.errors import NoModelError
from edgefleet.agent.serve.ladder import Rung
from edgefleet.agent.serve.metrics import MetricsSink
from edgefleet.agent.serve.runtimes import adapter_for
from edgefleet.agent.serve.service import InferenceService, Prediction
from edgefleet.agent.serve.source import ActiveSource, StaticSource, read_artifact_dir

__all__ = ["adapter_for", "current_version", "load", "mode", "predict", "service", "unload"]

_lock = threading.Lock()
_default: InferenceService | None = None


def load(
    source: ActiveSource | Path | str,
    *,
    config: ServingConfig | None = None,
    adapter: RuntimeAdapter | None = None,
    metrics: MetricsSink | None = None,
    start: bool = True,
) -> InferenceService:
    """Serve ``source`` (an artifact directory, or the installer's active slot) process-wide. A service
    loaded before is closed once the new one is ready."""
    global _default
    if isinstance(source, (str, Path)):
        source = StaticSource(read_artifact_dir(Path(source)))
    # Without an explicit adapter, each artifact (active, fallback, shadow) loads with its manifest's runtime.
    new = InferenceService(source, adapter, config, metrics=metrics)
    if start:
        new.start()
    with _lock:
        old, _default = _default, new
    if old is not None:
        old.close()
    return new


def service() -> InferenceService:
    current = _default
    if current is None:
        raise NoModelError("nothing is loaded; call edgefleet.agent.load() first", expected="load()")
    return current


def predict(inputs: Mapping[str, np.ndarray]) -> Prediction:
    return service().predict(inputs)


def current_version() -> str | None:
    """``<model>/<version>`` answering now; ``None`` when nothing is loaded or the rule answers."""
    current = _default
    return current.model_version if current is not None else None


def mode() -> Rung | None:
    """The serving rung: ``preferred``, ``cpu``, ``fallback`` or ``rule``; ``None`` before ``load``."""
    current = _default
    return current.mode if current is not None else None


def unload() -> None:
    global _default
    with _lock:
        old, _default = _default, None
    if old is not None:
        old.close()
