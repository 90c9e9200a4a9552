"""``edgefleet artifact push|list|show|pull|disable|enable|delete``."""

from __future__ import annotations

from pathlib import Path

import click

from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.state import CliState, pass_state, transfer_progress
from edgefleet.client import load_artifact_dir, pull_artifact, push_artifact

__all__ = ["artifact"]

_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("MODEL", "model"),
    ("VERSION", "version"),
    ("CLASS", "hardware_class"),
    ("RELEASE", "release_counter"),
    ("DISABLED", "disabled"),
    ("CREATED", "created_at"),
]


@click.group("artifact")
def artifact() -> None:
    """Artifacts: one build of a model version for one hardware class."""


@artifact.command("push")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the registered artifact as JSON.")
@pass_state
def push_cmd(state: CliState, directory: Path, as_json: bool) -> None:
    """Upload every file of the artifact in DIRECTORY (manifest.json + files), then register it."""
    manifest = load_artifact_dir(directory)  # checks local files before anything is sent
    with state.client() as client, transfer_progress(manifest.total_bytes, "uploading") as bar:
        info = push_artifact(client, directory, progress=bar.update)
    if as_json:
        echo_json(info)
    else:
        click.echo(f"pushed {info.id}  {info.model} {info.version} for {info.hardware_class}")


@artifact.command("list")
@click.option("--model", default=None)
@click.option("--version", "version_name", default=None)
@click.option("--class", "hardware_class", default=None)
@click.option("--disabled/--enabled", "disabled", default=None, help="Only disabled / only enabled ones.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def list_cmd(
    state: CliState,
    model: str | None,
    version_name: str | None,
    hardware_class: str | None,
    disabled: bool | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List artifacts."""
    with state.client() as client:
        page = client.list_artifacts(
            model=model,
            version=version_name,
            hardware_class=hardware_class,
            disabled=disabled,
            limit=limit,
            offset=offset,
        )
    if as_json:
        echo_json(page)
        return
    click.echo(format_table([a.model_dump(mode="json") for a in page.items], _COLUMNS))
    if page.total > offset + len(page.items):
        click.echo(f"({len(page.items)} of {page.total}; use --offset {offset + len(page.items)} for more)")


@artifact.command("show")
@click.argument("artifact_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the artifact with its manifest as JSON.")
@pass_state
def show_cmd(state: CliState, artifact_id: str, as_json: bool) -> None:
    """Show one artifact and its files."""
    with state.client() as client:
        info = client.get_artifact(artifact_id)
    if as_json:
        echo_json(info)
        return
    manifest = info.manifest
    for key, value in (
        ("id", info.id),
        ("model", info.model),
        ("version", info.version),
        ("hardware_class", info.hardware_class),
        ("precision", manifest.get("precision")),
        ("runtime", (manifest.get("runtime") or {}).get("name")),
        ("release_counter", info.release_counter),
        ("disabled", "yes" if info.disabled else "no"),
        ("manifest_sha256", info.manifest_sha256),
        ("created_at", info.created_at),
    ):
        click.echo(f"{key:<16} {value if value is not None else '-'}")
    click.echo("")
    click.echo(
        format_table(manifest.get("files", []), [("PATH", "path"), ("BYTES", "length"), ("SHA256", "sha256")])
    )


@artifact.command("pull")
@click.argument("artifact_id", metavar="ID")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="New directory to create.")
@pass_state
def pull_cmd(state: CliState, artifact_id: str, out: Path) -> None:
    """Download and verify every file of artifact ID into a new directory (resumable, atomic)."""
    with state.client() as client:
        info = client.get_artifact(artifact_id)
        total = sum(int(f.get("length", 0)) for f in info.manifest.get("files", []))
        with transfer_progress(total, "downloading") as bar:
            pull_artifact(client, artifact_id, out, progress=bar.update)
    click.echo(f"pulled {info.id} into {out}")


@artifact.command("disable")
@click.argument("artifact_id", metavar="ID")
@click.option("--reason", default=None)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the artifact and the kill switch's reach as JSON."
)
@pass_state
def disable_cmd(state: CliState, artifact_id: str, reason: str | None, as_json: bool) -> None:
    """Disable an artifact fleet-wide (the kill switch): devices serving it roll back to their previous
    version, or, with none, go down their degraded ladder (the class's fallback, or the rule)."""
    with state.client() as client:
        info = client.set_artifact_disabled(artifact_id, True, reason=reason)
    if as_json:
        echo_json(info)
        return
    reach = getattr(info, "kill_switch", None) or {}
    click.echo(
        f"disabled {artifact_id}: {reach.get('rolls_back', 0)} devices roll back to their previous version, "
        f"{reach.get('degrades', 0)} have none and go down their degraded ladder"
    )


@artifact.command("enable")
@click.argument("artifact_id", metavar="ID")
@pass_state
def enable_cmd(state: CliState, artifact_id: str) -> None:
    """Enable a disabled artifact again."""
    with state.client() as client:
        client.set_artifact_disabled(artifact_id, False)
    click.echo(f"enabled {artifact_id}")


@artifact.command("delete")
@click.argument("artifact_id", metavar="ID")
@pass_state
def delete_cmd(state: CliState, artifact_id: str) -> None:
    """Delete an artifact (refused while devices or rollouts reference it)."""
    with state.client() as client:
        client.delete_artifact(artifact_id)
    click.echo(f"deleted {artifact_id}")
