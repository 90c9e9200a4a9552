"""The probe runner with real worker processes: a candidate that crashes, hangs or outgrows the class's RAM
budget is reported failed with its reason while the others are measured; the worker yields while serving is
busy; a finished probe is neither measured nor reported twice; the scratch area is removed.

The bundle arrives through a stand-in fetcher (the TUF-verified path is covered end to end in
``tests/e2e/test_probe_agents.py``); the faults are injected by a stand-in worker command."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from tests.agent.crash.artifacts import IN_DIM, classifier

from edgefleet.agent.channel import ServerUnreachableError
from edgefleet.agent.install.fetch import ResolvedAssignment
from edgefleet.agent.probe.runner import ProbeRunner
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.hardware_class import parse_classes_toml
from edgefleet.protocol.probe import ThermalSnapshot
from edgefleet.protocol.wire.base import read_document, read_part
from edgefleet.protocol.wire.desired_state import Assignment
from edgefleet.protocol.wire.hardware_class import HardwareClass
from edgefleet.protocol.wire.manifest import ArtifactManifest
from edgefleet.protocol.wire.probe import ProbeOrder
from edgefleet.sustained.drift import sustained_figures, window_s_for
from edgefleet.sustained.thermal import read_thermal

pytestmark = pytest.mark.slow

CLASS_TOML = """
[class.small-cpu]
cpu_arch = "x86_64"
precisions = ["fp32", "int8"]
budgets = { ram_mb = 300, storage_mb = 100, max_model_mb = 10 }
performance = { latency_p95_ms = 100.0, max_batch = 2 }
"""

FAULTY_WORKER = """
import json, os, signal, sys, time
spec = json.load(open(sys.argv[1]))
name = spec["name"]
if name == "crash":
    os.kill(os.getpid(), signal.SIGSEGV)
if name == "hang":
    time.sleep(3600)
if name == "hog":
    hog = b"x" * (600 * 2**20)  # touched pages: 600 MiB resident, over the class's 300 MiB
    time.sleep(3600)
from edgefleet.agent.probe.worker import main
sys.exit(main(sys.argv[1:]))
"""


class BundleDir:
    """Stand-in for the TUF fetcher: copies the bundle's files into the staging directory."""

    def __init__(self, files: dict[str, bytes], manifest: bytes) -> None:
        self.files = files
        self.manifest = manifest
        self.fetched = 0
        self.resolved = 0
        self.fail_first = 0

    def resolve(self, assignment: Assignment) -> ResolvedAssignment:
        self.resolved += 1
        if self.resolved <= self.fail_first:
            raise ServerUnreachableError("server unreachable (injected)")
        manifest = read_document(self.manifest, ArtifactManifest, kind="artifact manifest")
        return ResolvedAssignment(assignment.artifact_id, manifest, assignment.manifest)

    def fetch(self, assignment: ResolvedAssignment, staging_dir: Path) -> dict[str, Path]:
        self.fetched += 1
        out = {}
        for rel, data in self.files.items():
            path = staging_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            out[rel] = path
        return out


class Reports:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def request(self, method: str, path: str, *, json_body: Any = None) -> Any:
        self.sent.append((path, json_body))
        return None


def _bundle(names: list[str], validation: bytes | None = None) -> tuple[dict[str, bytes], bytes, Assignment]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, IN_DIM)).astype(np.float32)
    model = classifier(seed=1)
    import onnxruntime as ort

    reference = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    buffer = io.BytesIO()
    np.savez(buffer, **{"input:x": x, "reference": reference, "labels": reference.argmax(axis=1)})
    files = {f"candidates/{n}.onnx": model for n in names}
    files["validation.npz"] = validation if validation is not None else buffer.getvalue()
    index = {
        "schema_version": 1,
        "model": "tiny",
        "version": "1",
        "hardware_class": "small-cpu",
        "task": "classification",
        "judged_output": "probs",
        "candidates": [{"name": n, "file": f"candidates/{n}.onnx"} for n in names],
    }
    files["probe.json"] = canonical_json(index)
    entries = [
        {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
        for rel, data in files.items()
    ]
    manifest = {
        "schema_version": 1,
        "model": "tiny.probe",
        "version": "p1-1",
        "hardware_class": "small-cpu",
        "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
        "entrypoint": f"candidates/{names[0]}.onnx",
        "files": entries,
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", IN_DIM]}],
            "outputs": [{"name": "probs", "dtype": "float32", "shape": ["N", 4]}],
        },
        "optimization": {"source_sha256": "0" * 64, "candidate": "probe"},
        "health_check": {"golden_file": "validation.npz", "latency_ceiling_ms": 100.0},
        "release_counter": 1,
    }
    raw = canonical_json(manifest)
    assignment = read_part(
        {
            "artifact_id": "probe-p1-1",
            "manifest": {
                "path": "tiny.probe/p1-1/small-cpu/manifest.json",
                "length": len(raw),
                "hashes": {"sha256": hashlib.sha256(raw).hexdigest()},
            },
        },
        Assignment,
        kind="assignment",
    )
    return files, raw, assignment


def _order(assignment: Assignment, *, time_limit_s: float = 60.0, sustained_s: float = 0.0) -> ProbeOrder:
    return ProbeOrder(
        probe_id="prb_00000000000000aa",
        bundle=assignment,
        deadline_at=datetime.now(timezone.utc) + timedelta(hours=1),
        runs=5,
        sustained_s=sustained_s,
        time_limit_s=time_limit_s,
    )


def _runner(
    tmp_path: Path, files, raw: bytes, *, worker=None, busy=lambda: False
) -> tuple[ProbeRunner, Reports]:
    reports = Reports()
    hwclass = read_document(parse_classes_toml(CLASS_TOML)[0].to_dict(), HardwareClass, kind="hardware class")
    kwargs = {"worker": worker} if worker else {}
    runner = ProbeRunner(
        tmp_path / "data",
        BundleDir(files, raw),
        reports,
        hardware_class=hwclass,
        busy=busy,
        now=lambda: datetime.now(timezone.utc),
        **kwargs,
    )
    return runner, reports


def test_faulty_candidates_are_isolated_and_reported_with_their_reason(tmp_path: Path) -> None:
    files, raw, assignment = _bundle(["fp32", "crash", "hang", "hog"])
    script = tmp_path / "faulty_worker.py"
    script.write_text(FAULTY_WORKER)
    runner, reports = _runner(tmp_path, files, raw, worker=[sys.executable, str(script)])
    results = runner.run(_order(assignment, time_limit_s=20.0))
    assert results is not None
    by_name = {c.name: c for c in results.candidates}
    assert by_name["fp32"].status == "measured"
    assert [b.batch for b in by_name["fp32"].latency] == [1, 2]
    assert by_name["fp32"].agreement == 1.0
    assert by_name["fp32"].task_metric == "accuracy"
    assert by_name["crash"].error_code == "runtime_crashed"
    assert "SIGSEGV" in (by_name["crash"].error or "")
    assert by_name["hang"].error_code == "probe_time_limit"
    assert by_name["hog"].error_code == "memory_budget_exceeded"
    assert [path for path, _ in reports.sent] == ["/v1/device/probes/prb_00000000000000aa/results"]
    assert not (tmp_path / "data" / "probe-scratch" / "prb_00000000000000aa").exists()
    # Done and reported: a restart (the same order again) neither measures nor reports twice.
    assert runner.run(_order(assignment)) is None
    assert len(reports.sent) == 1


def test_the_worker_yields_while_serving_is_busy_and_runs_sustained_load(tmp_path: Path) -> None:
    files, raw, assignment = _bundle(["fp32"])
    busy = threading.Event()
    busy.set()
    runner, reports = _runner(tmp_path, files, raw, busy=busy.is_set)
    ack = tmp_path / "data" / "probe-scratch" / "prb_00000000000000aa" / "pause.ack"

    def release_once_yielding() -> None:
        for _ in range(6000):
            if ack.exists():
                break
            threading.Event().wait(0.01)
        busy.clear()

    releaser = threading.Thread(target=release_once_yielding)
    releaser.start()
    results = runner.run(_order(assignment, sustained_s=1.5))
    releaser.join()
    assert results is not None
    figures = results.candidates[0]
    assert figures.status == "measured", figures.error
    assert figures.yielded_s > 0
    sustained = figures.sustained
    assert sustained is not None
    assert sustained.runs > 0
    assert sustained.window_s == pytest.approx(0.5)
    assert sustained.first_p95_ms is not None
    assert sustained.last_p95_ms is not None
    assert sustained.drift_ratio is not None
    assert (sustained.thermal == "available") == (
        figures.thermal_before.available and figures.thermal_after.available
    )
    assert json.loads(json.dumps(reports.sent[0][1]))["candidates"][0]["name"] == "fp32"


def test_an_expired_order_is_reported_without_measuring(tmp_path: Path) -> None:
    files, raw, assignment = _bundle(["fp32"])
    runner, _reports = _runner(tmp_path, files, raw)
    order = msgspec.structs.replace(_order(assignment), deadline_at=datetime.now(timezone.utc) - timedelta(1))
    results = runner.run(order)
    assert results is not None
    assert results.error_code == "probe_expired"
    assert results.candidates == []


def test_sustained_drift_windows_and_thermal_counters() -> None:
    assert window_s_for(600) == 60.0
    assert window_s_for(30) == pytest.approx(10.0)
    samples = [(t / 10, 0.001 if t < 100 else 0.002) for t in range(300)]  # slower in the last window
    before = ThermalSnapshot(available=True, max_temp_c=50.0, throttle_count=3)
    after = ThermalSnapshot(available=True, max_temp_c=61.5, throttle_count=7)
    figures = sustained_figures(samples, 30.0, before, after)
    assert figures.first_p95_ms == pytest.approx(1.0)
    assert figures.last_p95_ms == pytest.approx(2.0)
    assert figures.drift_ratio == pytest.approx(2.0)
    assert figures.throttle_events == 4
    assert figures.temp_rise_c == pytest.approx(11.5)
    assert figures.thermal == "available"
    none = sustained_figures(samples, 30.0, ThermalSnapshot(), ThermalSnapshot())
    assert none.throttle_events is None
    assert none.temp_rise_c is None
    assert none.thermal == "unavailable"


def test_thermal_reads_sys_and_says_unavailable_without_it(tmp_path: Path) -> None:
    assert read_thermal(tmp_path / "empty").available is False
    zone = tmp_path / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("47500\n")
    (zone / "type").write_text("x86_pkg_temp\n")
    cpu = tmp_path / "sys" / "devices" / "system" / "cpu" / "cpu0"
    (cpu / "cpufreq").mkdir(parents=True)
    (cpu / "cpufreq" / "scaling_cur_freq").write_text("2400000\n")
    (cpu / "thermal_throttle").mkdir()
    (cpu / "thermal_throttle" / "core_throttle_count").write_text("2\n")
    (cpu / "thermal_throttle" / "package_throttle_count").write_text("5\n")
    snapshot = read_thermal(tmp_path / "sys")
    assert snapshot.available is True
    assert snapshot.max_temp_c == pytest.approx(47.5)
    assert snapshot.temps_c == {"thermal_zone0:x86_pkg_temp": 47.5}
    assert snapshot.cpu_freq_khz == {"cpu0": 2400000}
    assert snapshot.throttle_count == 7


def test_a_bundle_that_cannot_be_fetched_yet_is_fetched_again_not_reported_as_failed(tmp_path: Path) -> None:
    files, raw, assignment = _bundle(["fp32"])
    runner, reports = _runner(tmp_path, files, raw)
    fetcher = runner._fetcher
    assert isinstance(fetcher, BundleDir)
    fetcher.fail_first = 1  # the server is unreachable once
    runner.run_until_done(_order(assignment))
    assert fetcher.resolved == 2
    assert len(reports.sent) == 1
    assert reports.sent[0][1]["error_code"] is None
    assert reports.sent[0][1]["candidates"][0]["status"] == "measured"
