"""CLI behaviour that needs no server: usage, local validation, exit codes, core-only install."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgefleet.cli.exit_codes import ExitCode, exit_code_for
from edgefleet.cli.main import SUBCOMMANDS, cli
from edgefleet.cli.output import format_table
from edgefleet.client.errors import IntegrityError, ServerUnreachableError
from edgefleet.protocol.errors import (
    AuthenticationError,
    ConflictError,
    EdgefleetError,
    InvalidDocumentError,
    NotFoundError,
    PermissionDeniedError,
)

UNREACHABLE = "http://127.0.0.1:9"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env or {})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFoundError("x", code="class_not_found"), ExitCode.NOT_FOUND),
        (AuthenticationError("x"), ExitCode.AUTH),
        (PermissionDeniedError("x"), ExitCode.AUTH),
        (InvalidDocumentError("x", code="malformed_toml"), ExitCode.INVALID_INPUT),
        (IntegrityError("x"), ExitCode.INVALID_INPUT),
        (ConflictError("x", code="model_exists"), ExitCode.CONFLICT),
        (ServerUnreachableError("x"), ExitCode.SERVER_UNREACHABLE),
        (EdgefleetError("x", code="server_unreachable"), ExitCode.SERVER_UNREACHABLE),
        (EdgefleetError("x", code="internal_error"), ExitCode.UNEXPECTED),
    ],
)
def test_exit_codes_are_stable(error: EdgefleetError, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_documented_exit_codes_match_the_enum() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    for member in ExitCode:
        assert f"| {member.value} " in doc, f"exit code {member.value} ({member.name}) is not documented"


def test_table_is_aligned_without_trailing_spaces() -> None:
    text = format_table(
        [{"name": "a", "b": {"c": 1}}, {"name": "longer-name", "b": {"c": None}}],
        [("NAME", "name"), ("C", "b.c")],
    )
    assert text.splitlines() == ["NAME         C", "a            1", "longer-name  -"]


def test_malformed_toml_is_refused_before_any_request(tmp_path: Path) -> None:
    bad = tmp_path / "classes.toml"
    bad.write_text("[class.x\ncpu_arch = ", encoding="utf-8")
    code, _, err = run("--server", UNREACHABLE, "--token", "t", "class", "apply", str(bad))
    assert code == ExitCode.INVALID_INPUT
    assert err.startswith("error [malformed_toml]: ")
    assert "expected: TOML" in err


def test_invalid_class_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "classes.toml"
    bad.write_text('[class.x]\ncpu_arch = "sparc"\n', encoding="utf-8")
    code, _, err = run("--server", UNREACHABLE, "--token", "t", "class", "apply", str(bad))
    assert code == ExitCode.INVALID_INPUT
    assert "error [invalid_document]: class 'x'" in err
    assert "cpu_arch" in err


def test_missing_token_exits_4_with_a_hint() -> None:
    code, _, err = run("--server", UNREACHABLE, "class", "list")
    assert code == ExitCode.AUTH
    assert "error [token_missing]" in err
    assert "EDGEFLEET_TOKEN" in err


def test_token_and_server_come_from_the_environment() -> None:
    code, _, err = run("class", "list", env={"EDGEFLEET_SERVER": UNREACHABLE, "EDGEFLEET_TOKEN": "t"})
    assert code == ExitCode.SERVER_UNREACHABLE
    assert err.startswith(
        "error [server_unreachable]: cannot reach the edgefleet server at http://127.0.0.1:9"
    )


def test_path_like_names_are_refused_locally() -> None:
    code, _, err = run("--server", UNREACHABLE, "--token", "t", "class", "show", "../x")
    assert code == ExitCode.INVALID_INPUT
    assert "error [invalid_name]" in err


def test_bad_metadata_json_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    source.write_bytes(b"onnx")
    code, _, err = run(
        "--server",
        UNREACHABLE,
        "--token",
        "t",
        "model",
        "version",
        "add",
        "m",
        "1",
        str(source),
        "--metadata",
        "{",
    )
    assert code == ExitCode.INVALID_INPUT
    assert "error [malformed_json]" in err


def test_push_checks_local_files_against_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1}), encoding="utf-8")
    code, _, err = run("--server", UNREACHABLE, "--token", "t", "artifact", "push", str(tmp_path))
    assert code == ExitCode.INVALID_INPUT
    assert "error [invalid_document]" in err


def test_usage_errors_exit_2() -> None:
    assert run("no-such-command")[0] == ExitCode.USAGE
    assert run("token", "create", "--name", "x", "--role", "root")[0] == ExitCode.USAGE


def test_every_registered_subcommand_loads() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for name in SUBCOMMANDS:
        assert name in out
        assert "unavailable" not in out


def test_help_works_with_only_the_core_dependencies() -> None:
    """The agent install has no server or build packages: ``edgefleet --help`` must still work."""
    script = textwrap.dedent(
        """
        import sys
        BLOCKED = {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "psycopg", "onnx",
                   "onnxruntime", "tuf", "numpy", "sklearn", "skl2onnx"}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked {name}")
                return None
        sys.meta_path.insert(0, Block())
        from edgefleet.cli.main import cli
        cli(["--help"], prog_name="edgefleet")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: edgefleet" in result.stdout
    assert "class" in result.stdout


def test_a_subcommand_missing_its_dependencies_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SUBCOMMANDS, "ghost", "edgefleet.cli.no_such_module:ghost")
    code, out, _ = run("--help")
    assert code == 0
    assert "ghost" in out
    assert "unavailable in this install" in out
    code, _, err = run("ghost")
    assert code == ExitCode.UNEXPECTED
    assert err.startswith("error [command_unavailable]: 'ghost' is unavailable in this install")


@pytest.mark.parametrize("command", ["set", "unset"])
@pytest.mark.parametrize("selector", ["", "  "])
def test_config_with_an_empty_selector_is_empty_selector_before_any_request(
    command: str, selector: str
) -> None:
    # the server is unreachable (port 9): the selector is refused here, as the docs say, not as a scope error
    args = ["--server", "http://127.0.0.1:9", "--token", "efop_x", "config", command, "--selector", selector]
    code, out, err = run(*args, *(["log_level=debug"] if command == "set" else []))
    assert code == ExitCode.INVALID_INPUT, err
    assert "error [empty_selector]" in err
    assert out == ""


def _commands(command: click.Command) -> list[click.Command]:
    if isinstance(command, click.Group):
        return [c for name in command.list_commands(None) for c in _commands(command.get_command(None, name))]  # type: ignore[arg-type]
    return [command]


def test_every_command_taking_json_prints_its_failure_as_json() -> None:
    """A command with ``--json`` must note it (``pass_state`` or ``notes_json``) so that ``print_error``
    prints its failure as JSON too; one that forgets would fail in text only."""
    taking_json = [
        c
        for spec in SUBCOMMANDS.values()
        for c in _commands(getattr(importlib.import_module(spec.partition(":")[0]), spec.partition(":")[2]))
        if any(p.name == "as_json" for p in c.params)
    ]
    assert len(taking_json) > 40
    assert [c.name for c in taking_json if not getattr(c.callback, "notes_json", False)] == []


def test_an_offline_json_command_prints_its_failure_as_json(tmp_path: Path) -> None:
    code, out, err = run("agent", "status", "--data-dir", str(tmp_path / "nothing"), "--json")
    assert code != 0
    assert "error [" in err
    assert json.loads(out)["error"]["code"] in err
