"""``edgefleet agent run`` parses with click, then execs into ``cli.agent_process`` (same pid, no click)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefleet.agent.app import AgentApp, AgentOptions
from edgefleet.cli import agent_process
from edgefleet.cli.main import cli


@pytest.fixture
def captured(monkeypatch) -> list[tuple[Path, AgentOptions]]:
    """What ``AgentApp`` would have run with; nothing runs. Signal handlers stay pytest's."""
    seen: list[tuple[Path, AgentOptions]] = []
    monkeypatch.setattr(AgentApp, "run", lambda self, stop: seen.append((self.ddir.root, self.options)))
    monkeypatch.setattr(agent_process.signal, "signal", lambda *_a: None)
    return seen


def test_the_parsed_command_line_reaches_the_agent_through_the_exec(tmp_path, monkeypatch, captured) -> None:
    """What click parsed travels as the exec'd command line and gives the options the agent runs with."""
    execs: list[list[str]] = []
    monkeypatch.setattr(agent_process.os, "execv", lambda path, argv: execs.append(argv))
    args = [
        "agent",
        "run",
        "--data-dir",
        str(tmp_path),
        "--poll-interval",
        "7",
        "--serve-socket",
        "/run/x.sock",
    ]
    args += ["--no-hints", "--trial-window", "90", "--time-zone", "Europe/Berlin", "--log-level", "warning"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    [argv] = execs
    assert argv[:4] == [sys.executable, "-m", "edgefleet.cli.agent_process", "--options-json"]
    assert json.loads(argv[4])["data_dir"] == str(tmp_path)
    assert agent_process.main(argv[3:]) == 0
    [(data_dir, options)] = captured
    assert data_dir == tmp_path
    assert options.poll_interval_s == 7.0
    assert options.serve_socket == Path("/run/x.sock")
    assert options.hints is False
    assert options.trial.window_s == 90.0
    assert options.time_zone == "Europe/Berlin"
    assert options.log_level == "warning"


@pytest.mark.parametrize(
    ("argv", "got"),
    [
        ([], "got 0 arguments"),
        (["--options-json", "{not json"], "the options are not JSON"),
        (["--options-json", "[1, 2]"], "a JSON list, not an object"),
        (["--options-json", '{"data_dir": "/tmp/x"}'], "Object missing required field"),
    ],
)
def test_a_malformed_exec_is_a_usage_error(argv, got, capsys, captured) -> None:
    assert agent_process.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error [usage]: ")
    assert got in err
    assert "expected: edgefleet.cli.agent_process --options-json" in err
    assert captured == []


def test_an_unknown_option_is_named(tmp_path, capsys, captured) -> None:
    params = json.loads(agent_process.command(_defaults(tmp_path))[4]) | {"surprise": 1}
    assert agent_process.main(["--options-json", json.dumps(params)]) == 2
    assert "Object contains unknown field `surprise`" in capsys.readouterr().err
    assert captured == []


@pytest.mark.parametrize(
    ("key", "value", "got"),
    [
        ("log_level", "bogus", "Invalid enum value 'bogus' - at `$.log_level`"),
        ("log_level", 5, "Expected `str`, got `int` - at `$.log_level`"),
        ("data_dir", None, "Expected `str`, got `null` - at `$.data_dir`"),
        ("serve_port", "80", "Expected `int`, got `str` - at `$.serve_port`"),
        ("no_serve", 1, "Expected `bool`, got `int` - at `$.no_serve`"),
    ],
)
def test_a_wrong_value_is_a_usage_error_not_a_traceback(tmp_path, capsys, captured, key, value, got) -> None:
    params = json.loads(agent_process.command(_defaults(tmp_path))[4]) | {key: value}
    assert agent_process.main(["--options-json", json.dumps(params)]) == 2
    err = capsys.readouterr().err
    assert got in err
    assert "Traceback" not in err
    assert captured == []


def _defaults(data_dir: Path) -> dict[str, object]:
    """The keyword arguments ``agent run`` passes with its defaults (read back from a parse)."""
    seen: list[dict[str, object]] = []
    original = agent_process.replace_process
    agent_process.replace_process = seen.append  # type: ignore[assignment]
    try:
        assert CliRunner().invoke(cli, ["agent", "run", "--data-dir", str(data_dir)]).exit_code == 0
    finally:
        agent_process.replace_process = original
    return seen[0]


def test_a_real_agent_run_execs_and_reports_a_bad_option_with_its_exit_code(tmp_path) -> None:
    """Through the real exec: the refusal comes from the agent's process, with the command's exit code (5)."""
    run = [sys.executable, "-m", "edgefleet.cli", "agent", "run"]
    done = subprocess.run(
        [*run, "--data-dir", str(tmp_path), "--trial-watchdog", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 5, done.stderr
    refusal = "error [invalid_trial_policy]: the trial watchdog must allow at least three heartbeats"
    assert refusal in done.stderr
    assert "expected: >= 3.0 s (3 x tick_interval_s), or off" in done.stderr
    not_enrolled = subprocess.run(
        [*run, "--data-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not_enrolled.returncode == 1, not_enrolled.stderr
    assert "error [not_enrolled]" in not_enrolled.stderr


def test_the_agents_process_imports_no_click() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, edgefleet.cli.agent_process; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = set(json.loads(done.stdout))
    assert "edgefleet.cli.agent_process" in loaded
    assert not {m for m in loaded if m.split(".")[0] == "click"}
