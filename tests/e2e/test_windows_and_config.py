"""Maintenance windows and remote configuration with a real ``agent run`` process and a real server.

Windows: outside its window the device downloads the new version but does not switch, and says
``pending:window``; the rollout waits for it (a stage deadline that halts on stalled devices does not halt);
once the window (a per-label override computed relative to now) is open, it switches.

Configuration: an operator changes a running agent's poll interval and log level from the control plane; the
agent applies both without a restart and reports them as applied; a value out of bounds is refused with its
code, expected and got, and nothing is half-applied.
"""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tests.e2e.fleet_cli import (
    EXAMPLES,
    agent_command,
    cli,
    create_rollout,
    enroll_agent,
    push_artifact,
    wait_for,
)

from edgefleet.client import EdgefleetClient

pytestmark = pytest.mark.slow
CLASS_LINE = 'connectivity = "intermittent"\nupdate_window = "any"\ntelemetry_bytes_per_s = 2048'


def _hhmm(at: datetime) -> str:
    return at.strftime("%H:%M")


def _classes(tmp_path: Path, window: str, overrides: str = "") -> Path:
    """The example classes with ``medical-cart-cpu``'s window (and per-label overrides) replaced."""
    text = EXAMPLES.read_text()
    head, sep, tail = text.partition("[class.medical-cart-cpu]")
    assert CLASS_LINE in tail
    extra = f"\nwindow_overrides = [{overrides}]" if overrides else ""
    tail = tail.replace(
        CLASS_LINE,
        f'connectivity = "intermittent"\nupdate_window = "{window}"{extra}\ntelemetry_bytes_per_s = 2048',
    )
    path = tmp_path / f"classes-{len(list(tmp_path.glob('classes-*')))}.toml"
    path.write_text(head + sep + tail)
    return path


def _api(server) -> EdgefleetClient:
    """The operator's client in-process, for the polling loops (the actions go through the CLI)."""
    return EdgefleetClient(server.url, server.admin_token)


def _slot(server, device_id: str) -> dict:
    with _api(server) as client:
        report = client.get_device(device_id).report or {}
    return (report.get("slots") or {}).get("default") or {}


def _device_config(server, device_id: str) -> dict:
    with _api(server) as client:
        return client.device_config(device_id)


def _stop(agent: subprocess.Popen) -> str:
    agent.send_signal(signal.SIGTERM)
    _out, err = agent.communicate(timeout=30)
    return err


def test_outside_its_window_a_device_downloads_waits_then_switches_when_the_window_opens(
    live_server, tmp_path: Path
):
    server = live_server
    now = datetime.now(timezone.utc)
    closed = f"{_hhmm(now + timedelta(hours=2))}-{_hhmm(now + timedelta(hours=3))}"  # the agent runs in UTC
    cli(server, "class", "apply", str(_classes(tmp_path, closed)))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    data_dir = tmp_path / "agent"
    device_id = enroll_agent(server, data_dir, labels=("line=7",))
    agent = subprocess.Popen(
        agent_command(data_dir, "--poll-interval", "0.3", "--no-serve", "--time-zone", "UTC"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the first install has nothing to disturb: it happens whatever the window
        wait_for(lambda: _slot(server, device_id).get("active") == v1, timeout_s=90, what="1.0.0 active")
        v2 = push_artifact(server, tmp_path, "2.0.0")
        rollout_id = create_rollout(
            server, v2, "--stages", "100%", "--soak", "1s", "--deadline", "2s", "--on-deadline", "halt"
        )
        wait_for(
            lambda: _slot(server, device_id).get("state") == "pending:window",
            timeout_s=60,
            what="the device waiting for its window",
        )
        slot = _slot(server, device_id)
        assert (slot["active"], slot["behind"], slot.get("failed_artifact")) == (v1, "pending:window", None)
        journal = (data_dir / "journal" / "default.jsonl").read_text()
        assert '"deferred"' in journal  # downloaded, verified and staged already
        assert '"stage"' in journal
        view = json.loads(cli(server, "config", "show", device_id, "--json").stdout)["update_window"]
        assert (view["window"], view["timezone"], view["open"]) == (closed, "UTC", False)

        def waiting_for_window() -> dict | None:
            with _api(server) as client:
                rollout = client.get_rollout(rollout_id).model_dump()
            reason = (rollout.get("last_decision") or {}).get("reason") or {}
            return rollout if reason.get("window_devices") == 1 and reason.get("past_deadline") else None

        rollout = wait_for(waiting_for_window, timeout_s=30, what="the deadline passing while it waits")
        assert rollout["status"] == "running"  # past its deadline, never halted: waiting is not stalling
        assert rollout["last_decision"]["reason"]["note"] == "devices waiting for their update window"

        # an operator gives line 7 a window that is open now: the staged version switches
        opened = f"{_hhmm(now - timedelta(hours=1))}-{_hhmm(now + timedelta(hours=1))}"
        overrides = f'{{labels = {{line = "7"}}, update_window = "{opened}"}}'
        cli(server, "class", "apply", str(_classes(tmp_path, closed, overrides)))
        wait_for(lambda: _slot(server, device_id).get("active") == v2, timeout_s=60, what="2.0.0 active")
        assert _device_config(server, device_id)["update_window"]["open"]
        status = json.loads(cli(server, "rollout", "status", rollout_id, "--json").stdout)["status"]
        assert status == "running"  # it goes on (its health gates wait for telemetry: --no-serve here)
    finally:
        err = _stop(agent)
    assert "event=switch_deferred" in err


def test_an_operator_changes_a_running_agents_poll_interval_and_log_level(live_server, tmp_path: Path):
    server = live_server
    cli(server, "class", "apply", str(EXAMPLES))
    data_dir = tmp_path / "agent"
    device_id = enroll_agent(server, data_dir)
    agent = subprocess.Popen(
        agent_command(data_dir, "--poll-interval", "0.5", "--no-serve", "--log-level", "info"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with _api(server) as client:
            wait_for(lambda: client.get_device(device_id).report, timeout_s=60, what="a first report")
        # bounds first: a poll interval of 1 ms is refused, and nothing of the request is applied
        refused = cli(
            server, "config", "set", "--device", device_id, "poll_interval_s=0.001", "log_level=debug",
            "--json", check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "error [config_out_of_bounds]" in refused.stderr
        assert "expected: float in [1, 86400]" in refused.stderr
        assert "got:      0.001" in refused.stderr
        assert json.loads(cli(server, "config", "list", "--json").stdout)["items"] == []

        cli(server, "config", "set", "--class", "medical-cart-cpu", "poll_interval_s=5", "--json")
        device_layer = ("--device", device_id, "poll_interval_s=2", "log_level=debug", "--json")
        layer = json.loads(cli(server, "config", "set", *device_layer).stdout)
        assert layer["settings"] == {"log_level": "debug", "poll_interval_s": 2.0}

        def in_sync() -> dict | None:
            view = _device_config(server, device_id)["config"]
            return view if view["in_sync"] else None

        view = wait_for(in_sync, timeout_s=60, what="the device applying its configuration")
        assert view["desired"] == {"log_level": "debug", "poll_interval_s": 2.0}  # device beats class
        assert view["sources"]["poll_interval_s"] == f"device:{device_id}"
        assert view["applied"]["applied"] == {"log_level": "debug", "poll_interval_s": 2.0}
        assert view["applied"]["restart_needed"] == []

        # removing the device's layer: the class's interval applies, the log level returns to info
        cli(server, "config", "unset", "--device", device_id, "--json")
        view = wait_for(in_sync, timeout_s=60, what="the class layer applying")
        assert view["applied"]["applied"] == {"poll_interval_s": 5.0}
        assert agent.poll() is None  # never restarted
    finally:
        err = _stop(agent)
    polled = [line for line in err.splitlines() if "event=polled" in line]
    assert polled, "debug logging was switched on remotely"
    delays = [float(line.rsplit("next_in_s=", 1)[1].split()[0]) for line in polled]
    assert all(1.6 <= d <= 2.4 for d in delays), delays  # 2 s +- 20 % jitter: debug came with it
    assert "event=config_applied setting=poll_interval_s value=2.0" in err
    assert "event=config_restored setting=log_level value=info" in err
