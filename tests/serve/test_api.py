"""The process-wide API: ``from edgefleet.agent import load, predict, current_version, mode``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import edgefleet.agent as agent
from edgefleet.agent.serve import NoModelError, ServingConfig, unload

from .conftest import x


def test_load_predict_version_and_mode_from_the_agent_package(artifact):
    try:
        service = agent.load(artifact.files_dir, config=ServingConfig(max_batch=2))
        answer = agent.predict({"x": x(2)})
        assert answer.outputs["probs"].shape == (2, 4)
        assert agent.current_version() == "digits/1.0.0"
        assert agent.mode() == "preferred"
        assert service.status()["providers"] == ["CPUExecutionProvider"]
    finally:
        unload()
    assert agent.mode() is None
    with pytest.raises(NoModelError):
        agent.predict({"x": x()})


def test_importing_the_agent_package_does_not_import_numpy():
    code = "import sys, edgefleet.agent, edgefleet.agent.backoff; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
