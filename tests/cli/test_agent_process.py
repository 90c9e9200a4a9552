"""``edgefleet agent run`` parses with click, then execs into ``cli.agent_process`` (same pid, no click)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
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
    monkeypatch.delenv(agent_process.CODE_ENV, raising=False)
    warmed: list[tuple[str, ...]] = []
    monkeypatch.setattr(agent_process, "warm_pycache", lambda flags, env: warmed.append(flags) or True)
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
    # the agent's interpreter runs lean by default, its bytecode cached in the data dir
    lean = [sys.executable, "-OO", "-X", "no_debug_ranges", "-X", f"pycache_prefix={tmp_path / 'pycache'}"]
    assert argv[:9] == [*lean, "-m", "edgefleet.cli.agent_process", "--options-json"]
    assert json.loads(argv[9])["data_dir"] == str(tmp_path)
    assert warmed == [tuple(lean[1:])]  # a new cache, warmed before the exec with the agent's own flags
    assert (tmp_path / "pycache" / "STAMP").read_text().startswith(sys.version)
    assert agent_process.main(argv[8:]) == 0
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


LEAN = ("-OO", "-X", "no_debug_ranges", "-X", "pycache_prefix=/d/pycache")


@pytest.mark.parametrize(("value", "flags"), [(None, LEAN), ("", LEAN), ("lean", LEAN), ("full", ())])
def test_the_agents_interpreter_runs_lean_unless_told_full(value, flags) -> None:
    environ = {} if value is None else {agent_process.CODE_ENV: value}
    assert agent_process.interpreter_flags(environ, Path("/d")) == flags
    argv = agent_process.command({"data_dir": "/d"}, agent_process.interpreter_flags(environ, Path("/d")))
    options = '{"data_dir": "/d"}'
    assert argv == [sys.executable, *flags, "-m", agent_process.MODULE, "--options-json", options]


def test_the_bytecode_cache_is_emptied_and_warmed_when_the_interpreter_or_edgefleet_changes(tmp_path) -> None:
    cache = tmp_path / "pycache"
    warms: list[str] = []

    def warm(ok: bool = True) -> Callable[[], bool]:
        def fill() -> bool:
            warms.append("warm")
            (cache / "opt").mkdir()
            (cache / "opt" / "m.cpython-311.opt-2.pyc").write_bytes(b"x")
            return ok

        return fill

    assert agent_process.prepare_pycache(cache, "python 3.11 edgefleet 1", warm()) == "warmed"
    assert agent_process.prepare_pycache(cache, "python 3.11 edgefleet 1", warm()) == "kept"
    assert (cache / "opt" / "m.cpython-311.opt-2.pyc").exists()
    assert len(warms) == 1
    # an upgrade: emptied, warmed, stamped anew
    (cache / "opt" / "stale.cpython-311.opt-2.pyc").write_bytes(b"x")
    assert agent_process.prepare_pycache(cache, "python 3.11 edgefleet 2", warm()) == "warmed"
    assert sorted(p.name for p in cache.rglob("*")) == ["STAMP", "m.cpython-311.opt-2.pyc", "opt"]
    assert (cache / "STAMP").read_text() == "python 3.11 edgefleet 2"
    (cache / "STAMP").write_bytes(b"\xff\xfe")  # unreadable as text: emptied and warmed again, not an error
    assert agent_process.prepare_pycache(cache, "python 3.11 edgefleet 2", warm()) == "warmed"
    # a warm that failed (or could not write) leaves no stamp: the next start tries again
    assert agent_process.prepare_pycache(cache, "python 3.11 edgefleet 3", warm(ok=False)) == "not warmed"
    assert not (cache / "STAMP").exists()
    assert agent_process.prepare_pycache(cache, "python 3.11 edgefleet 3", warm()) == "warmed"
    assert len(warms) == 5


def test_a_data_dir_that_cannot_hold_the_cache_still_starts(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # no exception: the agent compiles at start
    assert agent_process.prepare_pycache(blocker / "pycache", "s", lambda: True) == "not writable"
    assert blocker.read_text() == "not a directory"


def test_the_lean_agent_writes_and_then_reads_its_bytecode_cache(tmp_path) -> None:
    """A second interpreter with the same flags finds the first one's bytecode (no source compiled), and the
    usual ``__pycache__`` beside the sources gets no ``opt-2`` file."""
    flags = agent_process.interpreter_flags({}, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = (
        "import sys, importlib.util, edgefleet.agent.backoff as m; "
        "print(importlib.util.cache_from_source(m.__file__))"
    )
    first = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, env=env)
    cached = Path(first.stdout.strip())
    assert cached.is_relative_to(tmp_path / "pycache"), first.stderr
    assert cached.name.endswith(".opt-2.pyc")
    assert cached.exists()
    import edgefleet.agent.backoff

    assert not (Path(edgefleet.agent.backoff.__file__).parent / "__pycache__" / cached.name).exists()
    again = [sys.executable, *flags, "-v", "-c", "import edgefleet.agent.backoff"]
    again = subprocess.run(again, capture_output=True, text=True, env=env)
    assert f"matches {edgefleet.agent.backoff.__file__}" in again.stderr  # read from the cache, not compiled


def test_an_unknown_code_choice_refuses_to_start_with_what_was_expected(tmp_path) -> None:
    """Refused in the first process, before the exec: the command's exit code (5), no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "agent", "run", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, agent_process.CODE_ENV: "fast"},
    )
    assert done.returncode == 5, done.stderr
    assert "error [invalid_agent_code_choice]: EDGEFLEET_AGENT_CODE names no way to run" in done.stderr
    assert "expected: lean (-OO -X no_debug_ranges), full" in done.stderr
    assert "got:      fast" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_new_cache_is_warmed_with_the_agents_bytecode_where_bytecode_may_be_written(tmp_path) -> None:
    flags = agent_process.interpreter_flags({}, tmp_path)
    writing = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    assert agent_process.warm_pycache(flags, {**writing, "PYTHONDONTWRITEBYTECODE": "1"}) is False
    assert not (tmp_path / "pycache").exists()
    assert agent_process.warm_pycache(flags, writing) is True
    cached = {p.name for p in (tmp_path / "pycache").rglob("*.opt-2.pyc")}
    tag = sys.implementation.cache_tag
    assert {f"app.{tag}.opt-2.pyc", f"sync.{tag}.opt-2.pyc", f"endpoint.{tag}.opt-2.pyc"} <= cached
    assert not {p for p in (tmp_path / "pycache").rglob("*.pyc") if ".opt-2." not in p.name}


def test_the_lean_interpreter_runs_the_agents_code(tmp_path) -> None:
    """Under the lean flags the agent's process imports and checks its options (no docstring or assert is
    needed): a usage error, from an interpreter that really runs -OO."""
    done = subprocess.run(
        [sys.executable, *agent_process.interpreter_flags({}, tmp_path), "-c",
         "import sys, edgefleet.cli.agent_process as a, edgefleet.agent.app, edgefleet.agent.sync; "
         "assert False, 'asserts run'; "
         "print(sys.flags.optimize, a.run.__doc__, a.main(['--options-json', '{}']))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "None", "2"]
    assert "Object missing required field" in done.stderr


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
