"""The ``edgefleet`` command: global options, error-to-exit-code mapping, lazily loaded subcommands.

To add a subcommand group, add one line to ``SUBCOMMANDS``: ``"name": "module.path:attribute"``.
Modules load only when their command runs (or for ``--help``), so the agent install, which lacks the
server and build dependencies, still runs ``edgefleet --help`` and its own commands.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from edgefleet import __version__
from edgefleet.cli.exit_codes import ExitCode, exit_code_for, print_error
from edgefleet.cli.state import DEFAULT_SERVER, CliState
from edgefleet.protocol.errors import EdgefleetError

__all__ = ["SUBCOMMANDS", "cli", "main"]

SUBCOMMANDS: dict[str, str] = {
    "server": "edgefleet.cli.server_cmd:server",
    "token": "edgefleet.cli.token_cmd:token",
    "class": "edgefleet.cli.class_cmd:class_group",
    "model": "edgefleet.cli.model_cmd:model",
    "artifact": "edgefleet.cli.artifact_cmd:artifact",
    "device": "edgefleet.cli.device_groups_cmd:device",  # device_cmd's group, with relabel/decommission
    "audit": "edgefleet.cli.audit_cmd:audit",
    "config": "edgefleet.cli.config_cmd:config",
    "demo": "edgefleet.cli.demo_cmd:demo",
    "fleet": "edgefleet.cli.fleet_cmd:fleet",
    "agent": "edgefleet.cli.agent_cmd:agent",
    "build": "edgefleet.cli.build:build",
    "keys": "edgefleet.cli.keys:keys",
    "publish": "edgefleet.cli.publish:publish",
    "tuf": "edgefleet.cli.tuf_cmd:tuf",
    "hints": "edgefleet.cli.hints_cmd:hints",
    "rollout": "edgefleet.cli.rollout_cmd:rollout",
    "probe": "edgefleet.cli.probe_cmd:probe",
    "sim": "edgefleet.cli.sim_cmd:sim",
    "alert": "edgefleet.cli.alert_cmd:alert",
}


def _load(spec: str) -> click.Command:
    module_name, _, attr = spec.partition(":")
    command = getattr(importlib.import_module(module_name), attr)
    if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
        raise TypeError(f"{spec} is not a click command")
    return command


class _Unavailable(click.Command):
    """Stands in for a subcommand whose module cannot be imported in this install."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, help=f"(unavailable in this install: {reason})", callback=self._fail)
        self.reason = reason

    def _fail(self) -> None:
        raise EdgefleetError(
            f"'{self.name}' is unavailable in this install",
            code="command_unavailable",
            expected="the optional dependencies of this command (pip install 'edgefleet[...]')",
            got=self.reason,
        )


class EdgefleetGroup(click.Group):
    """Loads subcommands on demand and turns ``EdgefleetError`` into a message and a stable exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*SUBCOMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        spec = SUBCOMMANDS.get(cmd_name)
        if spec is None:
            return None
        try:
            return _load(spec)
        except ImportError as exc:
            return _Unavailable(cmd_name, f"{type(exc).__name__}: {exc}")

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgefleetError as exc:
            print_error(exc, as_json=ctx.ensure_object(CliState).json_output)
            ctx.exit(int(exit_code_for(exc)))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))


@click.group(cls=EdgefleetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server",
    envvar="EDGEFLEET_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    help="Control-plane URL (env EDGEFLEET_SERVER).",
)
@click.option("--token", envvar="EDGEFLEET_TOKEN", default=None, help="Operator token (env EDGEFLEET_TOKEN).")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server on each request.",
)
@click.version_option(__version__, prog_name="edgefleet")
@click.pass_context
def cli(ctx: click.Context, server: str, token: str | None, timeout_s: float) -> None:
    """edgefleet: optimize ML models per hardware class, sign, roll out, serve and observe on edge fleets."""
    state = ctx.ensure_object(CliState)
    state.server = server
    state.token = token or None
    state.timeout_s = timeout_s


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgefleet")
