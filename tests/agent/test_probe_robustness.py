"""The build's perturbed validation sets travel with a probe: a device runs every candidate on the same
perturbed inputs and reports its robustness per perturbation beside its clean quality."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tests.agent.crash.artifacts import IN_DIM, classifier
from tests.agent.test_probe_runner import _bundle, _order, _runner

from edgefleet.optimize.candidate_store import validation_bytes
from edgefleet.optimize.perturbations import perturb, perturbations_for
from edgefleet.protocol.probe import perturbed_sets


def test_a_probe_measures_each_candidate_on_the_builds_perturbed_inputs(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((20, IN_DIM)).astype(np.float32)
    session = ort.InferenceSession(classifier(seed=1), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"x": x})[0]
    sets = {}
    for i, p in enumerate(perturbations_for("tabular", {"noise": 0.5, "missing": 0.3})):
        noisy = perturb({"x": x}, p, seed=i)
        sets[p.name] = (noisy, session.run(None, noisy)[0])  # FP32 on the perturbed inputs, at build time
    data = validation_bytes({"x": x}, reference, reference.argmax(axis=1), sets)
    with np.load(io.BytesIO(data)) as npz:
        assert set(perturbed_sets({k: npz[k] for k in npz.files})) == {"noise", "missing"}
    files, raw, assignment = _bundle(["fp32"], validation=data)
    runner, _ = _runner(tmp_path, files, raw)
    results = runner.run(_order(assignment))
    assert results is not None
    (figures,) = results.candidates
    assert figures.status == "measured", figures.error
    assert set(figures.robustness) == {"noise", "missing"}
    for measured in figures.robustness.values():
        assert measured.agreement == 1.0  # the same model as the reference, on the same perturbed inputs
        assert measured.task_value is not None
    # the perturbation really changed the answers against the clean labels
    assert min(m.task_value for m in figures.robustness.values()) < 1.0
