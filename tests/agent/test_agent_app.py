"""``AgentApp`` in process, as ``edgefleet agent run`` composes it: the runtime each manifest names (OpenVINO
here), the trial watchdog fed by the serving layer, a corrupt telemetry queue set aside, and the CLI's trial
settings. The control plane is unreachable (a closed port): the device must serve on its own."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from crash.artifacts import assignment, classifier, desired, golden_inputs, run_model, write_artifact
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.agent.crashing_runtime import POISON as CRASH_INPUT
from tests.agent.crashing_runtime import SPEC as CRASHING_SPEC

from edgefleet.agent.app import AgentApp, AgentOptions
from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.agent.install import InstallerConfig, LocalDirFetcher, SlotInstaller, TrialPolicy
from edgefleet.agent.install.journal import Journal, last_attempt
from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.lifecycle import RunMarker
from edgefleet.agent.serve import RuntimeAdapters
from edgefleet.agent.serving_wiring import Serving
from edgefleet.agent.telemetry.queue import TelemetryQueue, corrupt_path
from edgefleet.cli import agent_process
from edgefleet.cli.main import cli
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.trust.director import public_key_pem


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Device:
    def __init__(self, tmp_path: Path) -> None:
        self.ddir = DataDir(tmp_path / "agent")
        self.artifacts = tmp_path / "artifacts"
        self.ddir.write_key(Ed25519PrivateKey.generate())
        identity = DeviceIdentity(
            device_id="dev_a",
            server_url=f"http://127.0.0.1:{_closed_port()}",
            hardware_class="medical-cart-cpu",
            director_public_key_pem=public_key_pem(Ed25519PrivateKey.generate().public_key()),
        )
        self.ddir.write_identity(identity, None)

    def install(self, artifact_id: str, seed: int, *, generation: int, trial: TrialPolicy, **kw) -> str:
        """Install with the real installer, as an earlier run of the agent did. Returns the providers the
        installer's health check ran on."""
        manifest = write_artifact(
            self.artifacts, artifact_id, classifier(seed), release_counter=generation, **kw
        )
        with SlotInstaller(
            self.ddir.root,
            LocalDirFetcher(self.artifacts),
            adapter_for=RuntimeAdapters(),
            config=InstallerConfig(trial=trial),
        ) as inst:
            inst.recover()
            inst.apply(desired({"default": assignment(artifact_id, manifest)}, generation=generation))
            model = inst.model("default")
            assert inst.serving("default") == artifact_id, inst.slot_reports()
            return ",".join(model.providers)

    def options(self, **kw) -> AgentOptions:
        kw.setdefault("trial", TrialPolicy(window_s=600, watchdog_s=1.0))
        return AgentOptions(
            poll_interval_s=0.2,
            backoff_cap_s=0.5,
            telemetry_upload_interval_s=0.5,
            tick_interval_s=0.1,
            **kw,
        )

    @contextmanager
    def running(self, options: AgentOptions) -> Iterator[AgentApp]:
        app = AgentApp(self.ddir.root, options)
        ready, stop = threading.Event(), threading.Event()
        errors: list[BaseException] = []
        app.on_ready(lambda _app: ready.set())

        def run() -> None:
            try:
                app.run(stop)
            except BaseException as exc:
                errors.append(exc)
                ready.set()

        thread = threading.Thread(target=run, name="agent-app", daemon=True)
        thread.start()
        try:
            assert ready.wait(60), "the agent did not get ready"
            assert errors == [], errors
            yield app
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()
        assert errors == [], errors

    def events(self) -> list[dict]:
        with TelemetryQueue(self.ddir.root / "telemetry" / "queue.db") as q:
            return [r.body for r in q.oldest(10_000) if r.kind == "event"]


@pytest.fixture
def device(tmp_path) -> Device:
    return Device(tmp_path)


def _state(app: AgentApp) -> str:
    assert app.installer is not None
    return app.installer.slot_reports()["default"].state


def test_an_openvino_artifact_is_health_checked_and_served_by_openvino(device):
    pytest.importorskip("openvino")
    providers = device.install("ov1", 1, generation=1, trial=TrialPolicy(window_s=0), runtime="openvino")
    assert providers == "OpenVINO:CPU"  # the installer's load and health check ran on OpenVINO
    attempt = last_attempt(Journal(device.ddir.root / "journal" / "default.jsonl").read())
    assert attempt.terminal == "committed"
    assert "health" in attempt.steps_done

    with device.running(device.options()) as app:
        assert app.serving is not None
        service = app.serving.service
        assert service.status()["providers"] == ["OpenVINO:CPU"]
        x = golden_inputs(1)
        answer = service.predict({"x": x})
        assert (answer.artifact_id, answer.mode) == ("ov1", "preferred")
        np.testing.assert_allclose(answer.outputs["probs"], run_model(classifier(1), x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("heartbeats", [True, False], ids=["serving-heartbeats", "silent"])
def test_the_running_agent_feeds_the_trial_watchdog(device, monkeypatch, heartbeats):
    device.install("a1", 1, generation=1, trial=TrialPolicy(window_s=0))
    device.install("a2", 2, generation=2, trial=TrialPolicy(window_s=600), version="2.0.0")
    if not heartbeats:
        monkeypatch.setattr(Serving, "feed_watchdog", lambda self, installer, *a, **kw: False)
    with device.running(device.options(trial=TrialPolicy(window_s=600, watchdog_s=2.0))) as app:
        assert app.installer.on_trial("default") == "digits/2.0.0"
        # Fed: three watchdog periods pass on trial. Silent: the watchdog fires after one period, but the
        # tick that judges it may come late on a loaded machine, so wait longer for it (no timing asserted).
        deadline = time.monotonic() + (6.0 if heartbeats else 30.0)
        while time.monotonic() < deadline and _state(app) == "trial":
            time.sleep(0.1)
        if heartbeats:
            assert _state(app) == "trial"  # three watchdog periods: still on trial, fed by the serving layer
        else:
            assert _state(app) == "rolled_back:trial_watchdog"
            deadline = time.monotonic() + 10  # the state is reported as the serving layer swaps back
            while time.monotonic() < deadline and _answered_by(app.serving.service, golden_inputs(1)) != "a1":
                time.sleep(0.1)
            assert app.serving.service.predict({"x": golden_inputs(1)}).artifact_id == "a1"


def test_a_corrupt_telemetry_queue_is_set_aside_and_the_device_keeps_serving(device):
    device.install("a1", 1, generation=1, trial=TrialPolicy(window_s=0))
    queue_file = device.ddir.root / "telemetry" / "queue.db"
    for garbage in (b"not a database " * 200, b"another bad file " * 200):
        queue_file.parent.mkdir(parents=True, exist_ok=True)
        queue_file.write_bytes(garbage)
        with device.running(device.options()) as app:
            assert app.serving.service.predict({"x": golden_inputs(1)}).artifact_id == "a1"
        kept = corrupt_path(queue_file)
        assert kept.read_bytes() == garbage  # the latest corrupt file, kept for forensics
        assert sorted(p.name for p in queue_file.parent.iterdir() if ".corrupt" in p.name) == [kept.name]
        [lost] = [e for e in device.events() if e["code"] == "telemetry_lost"]
        assert lost["kind"] == "health"
        assert lost["details"]["reason"] == "telemetry_queue_corrupt"
        assert lost["details"]["kept"] == kept.name


def _run_in_this_process(monkeypatch) -> None:
    """``agent run`` execs into ``cli.agent_process``: here that module's ``run`` is called in-process."""
    monkeypatch.setattr(agent_process, "replace_process", lambda params: agent_process.run(**params))


def test_agent_run_takes_the_trial_settings_and_refuses_bad_ones(tmp_path, monkeypatch):
    seen: list[AgentOptions] = []
    _run_in_this_process(monkeypatch)
    monkeypatch.setattr(AgentApp, "run", lambda self, stop: seen.append(self.options))
    monkeypatch.setattr(signal, "signal", lambda *_a: None)  # keep pytest's own handlers
    args = ["agent", "run", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(
        cli,
        [
            *args,
            "--trial-window",
            "120",
            "--trial-min-requests",
            "50",
            "--trial-max-failure-rate",
            "0.01",
            "--trial-min-requests-for-rate",
            "30",
            "--trial-max-restarts",
            "2",
            "--trial-watchdog",
            "15",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen[-1].trial == TrialPolicy(
        window_s=120,
        min_requests=50,
        max_failure_rate=0.01,
        min_requests_for_rate=30,
        max_restarts=2,
        watchdog_s=15,
    )
    assert CliRunner().invoke(cli, [*args, "--trial-watchdog", "0"]).exit_code == 0
    assert seen[-1].trial.watchdog_s is None  # 0: off
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert seen[-1].trial.watchdog_s == 60.0  # on by default
    for bad in (
        ["--trial-max-failure-rate", "1.5"],
        ["--trial-window", "-1"],
        ["--trial-max-restarts", "-1"],
    ):
        assert CliRunner().invoke(cli, [*args, *bad]).exit_code == 2
    refused = CliRunner().invoke(cli, [*args, "--trial-watchdog", "2"])  # under three 1 s heartbeats
    assert refused.exit_code != 0
    assert "invalid_trial_policy" in refused.output


def test_a_model_that_crashes_its_runtime_on_trial_is_rolled_back_counted_and_the_agent_serves_on(device):
    """The runtime really segfaults (a null dereference in the model's run path, ``crashing_runtime``): only
    the trial worker dies; the running agent rolls back, counts it, and serves on. The request that crashed
    the model is lost (``model_crashed``); none after it reaches the dead worker: the ladder's fallback
    answers (reported degraded, reason ``model_crashed``) until the previous version is back, and the slot
    never reports ``rolled_back`` before serving answers with that version."""
    device.install("a1", 1, generation=1, trial=TrialPolicy(window_s=0))
    device.install("a2", 2, generation=2, trial=TrialPolicy(window_s=600), version="2.0.0")
    write_artifact(device.artifacts, "fb", classifier(3), version="0.9.0")
    options = device.options(
        trial=TrialPolicy(window_s=600), trial_worker_spec=CRASHING_SPEC, fallback_dir=device.artifacts / "fb"
    )
    with device.running(options) as app:
        assert app.serving is not None
        service = app.serving.service
        x = golden_inputs(1)
        assert service.predict({"x": x}).artifact_id == "a2"  # the version on trial, from its worker
        assert app.serving.isolated == app.installer.trial_version("default")
        # the runtime segfaults on this input: the worker dies, not the agent
        with pytest.raises(EdgefleetError) as crashed:
            service.predict({"x": np.full_like(x, CRASH_INPUT)})
        assert crashed.value.code == "model_crashed"
        answers: list[tuple[str, str]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = _state(app)  # read first: once it says rolled_back, the previous version answers
            answer = service.predict({"x": x})  # never model_crashed again: it would raise here
            answers.append((answer.artifact_id, answer.mode))
            assert answers[-1] in {("a1", "preferred"), ("digits/0.9.0/medical-cart-cpu", "fallback")}
            if state == "rolled_back:trial_model_crashed":
                assert answers[-1] == ("a1", "preferred"), (state, answers)
                break
            assert state in {"trial", "rolling_back:trial_model_crashed"}, state
            time.sleep(0.02)
        assert _state(app) == "rolled_back:trial_model_crashed", answers
        assert app.installer.slot_reports()["default"].active == "a1"
        assert app.serving.report() == {
            "mode": "preferred",
            "reason": None,
            "providers": answer_providers(app),
        }
        np.testing.assert_allclose(answer.outputs["probs"], run_model(classifier(1), x), rtol=1e-4, atol=1e-6)
    assert SlotStore(device.ddir.root, "default").read_refusals() == {"a2": 1}
    events = device.events()
    assert "trial_model_crashed" in [e["code"] for e in events]
    # the step down to the fallback the moment the worker died, reported with its reason
    moves = [e.get("details") for e in events if e["code"] == "rung_changed"]
    assert {"from": "preferred", "to": "fallback", "reason": "model_crashed"} in moves, moves


def _answered_by(service, x) -> str | None:
    try:
        return service.predict({"x": x}).artifact_id
    except EdgefleetError as exc:
        if exc.code != "model_crashed":
            raise
        return None


def answer_providers(app: AgentApp) -> list[str]:
    assert app.serving is not None
    return list(app.serving.service.status()["providers"])


def test_a_clean_stop_and_a_new_boot_are_told_apart_from_an_agent_crash(device):
    device.install("a1", 1, generation=1, trial=TrialPolicy(window_s=0))
    boot_id = RunMarker(device.ddir.root).boot_id
    with device.running(device.options()):
        # what a start finds while the agent runs, as after a SIGKILL or a crash: same boot, not clean
        assert RunMarker(device.ddir.root, boot_id=boot_id).begin() == "agent_crash"
    # the agent stopped in order (the SIGTERM path): marked clean
    assert RunMarker(device.ddir.root, boot_id=boot_id).begin() == "clean_restart"
    assert RunMarker(device.ddir.root, boot_id="another-boot").begin() == "power_cut"


def test_agent_run_uses_the_trial_worker_unless_told_not_to(tmp_path, monkeypatch):
    seen: list[AgentOptions] = []
    _run_in_this_process(monkeypatch)
    monkeypatch.setattr(AgentApp, "run", lambda self, stop: seen.append(self.options))
    monkeypatch.setattr(signal, "signal", lambda *_a: None)
    args = ["agent", "run", "--data-dir", str(tmp_path)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert seen[-1].trial_worker is True
    assert CliRunner().invoke(cli, [*args, "--no-trial-worker"]).exit_code == 0
    assert seen[-1].trial_worker is False
