"""``edgefleet model create|list|show|delete`` and ``edgefleet model version add|list|show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgefleet.cli.local_file import read_local_file
from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.pairs import parse_labels
from edgefleet.cli.state import CliState, pass_state, transfer_progress
from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["model"]

MAX_METADATA_BYTES = 64 * 1024
_MODEL_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("VERSIONS", "version_count"),
    ("LABELS", "labels"),
    ("CREATED", "created_at"),
    ("DESCRIPTION", "description"),
]
_VERSION_COLUMNS: list[Column] = [
    ("MODEL", "model"),
    ("VERSION", "version"),
    ("SOURCE_SHA256", "source_sha256"),
    ("BYTES", "source_length"),
    ("CREATED", "created_at"),
]


def _metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    if text.startswith("@"):
        raw = read_local_file(Path(text[1:]), max_bytes=MAX_METADATA_BYTES, what="metadata file")
        text = raw.decode("utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidDocumentError(
            f"metadata is not valid JSON: {exc}",
            code="malformed_json",
            expected="a JSON object",
            got=text[:100],
        ) from exc
    if not isinstance(value, dict):
        raise InvalidDocumentError(
            "metadata must be a JSON object",
            code="invalid_document",
            expected="object",
            got=type(value).__name__,
        )
    return value


@click.group("model")
def model() -> None:
    """Models and their versions (trained sources)."""


@model.command("create")
@click.argument("name")
@click.option("--description", default=None, help="What the model does.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the model as JSON.")
@pass_state
def create_cmd(
    state: CliState, name: str, description: str | None, labels: tuple[str, ...], as_json: bool
) -> None:
    """Register a model NAME."""
    with state.client() as client:
        created = client.create_model(name, description=description, labels=parse_labels(labels) or None)
    if as_json:
        echo_json(created)
    else:
        click.echo(f"created model {created.name}")


@model.command("list")
@click.option("--prefix", "name_prefix", default=None, help="Only names starting with this.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def list_cmd(state: CliState, name_prefix: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List models."""
    with state.client() as client:
        page = client.list_models(name_prefix=name_prefix, limit=limit, offset=offset)
    if as_json:
        echo_json(page)
        return
    click.echo(format_table([m.model_dump(mode="json") for m in page.items], _MODEL_COLUMNS))
    if page.total > offset + len(page.items):
        click.echo(f"({len(page.items)} of {page.total}; use --offset {offset + len(page.items)} for more)")


@model.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the model and its versions as JSON.")
@pass_state
def show_cmd(state: CliState, name: str, as_json: bool) -> None:
    """Show a model and its latest versions."""
    with state.client() as client:
        info = client.get_model(name)
        versions = client.list_versions(name, limit=50)
    if as_json:
        echo_json({**info.model_dump(mode="json"), "versions": versions.model_dump(mode="json")["items"]})
        return
    click.echo(f"name         {info.name}")
    click.echo(f"description  {info.description or '-'}")
    click.echo(f"labels       {', '.join(f'{k}={v}' for k, v in info.labels.items()) or '-'}")
    click.echo(f"created_at   {info.created_at or '-'}")
    click.echo(f"versions     {versions.total}")
    if versions.items:
        click.echo("")
        click.echo(format_table([v.model_dump(mode="json") for v in versions.items], _VERSION_COLUMNS))


@model.command("delete")
@click.argument("name")
@pass_state
def delete_cmd(state: CliState, name: str) -> None:
    """Delete a model (refused while it has versions)."""
    with state.client() as client:
        client.delete_model(name)
    click.echo(f"deleted model {name}")


@model.group("version")
def version() -> None:
    """Versions of a model: one trained source file each."""


@version.command("add")
@click.argument("model_name", metavar="MODEL")
@click.argument("version_name", metavar="VERSION")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--metadata", default=None, help="JSON object, or @FILE holding one.")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
@pass_state
def version_add_cmd(
    state: CliState, model_name: str, version_name: str, source: Path, metadata: str | None, as_json: bool
) -> None:
    """Upload SOURCE (e.g. model.onnx) and register it as VERSION of MODEL."""
    meta = _metadata(metadata)
    with (
        state.client() as client,
        transfer_progress(source.stat().st_size, f"uploading {source.name}") as bar,
    ):
        created = client.add_version_from_file(
            model_name, version_name, source, metadata=meta, progress=bar.update
        )
    if as_json:
        echo_json(created)
    else:
        click.echo(f"created {created.model} {created.version} (source sha256 {created.source_sha256})")


@version.command("list")
@click.argument("model_name", metavar="MODEL")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def version_list_cmd(state: CliState, model_name: str, limit: int, offset: int, as_json: bool) -> None:
    """List the versions of MODEL."""
    with state.client() as client:
        page = client.list_versions(model_name, limit=limit, offset=offset)
    if as_json:
        echo_json(page)
        return
    click.echo(format_table([v.model_dump(mode="json") for v in page.items], _VERSION_COLUMNS))


@version.command("show")
@click.argument("model_name", metavar="MODEL")
@click.argument("version_name", metavar="VERSION")
@pass_state
def version_show_cmd(state: CliState, model_name: str, version_name: str) -> None:
    """Show one version as JSON."""
    with state.client() as client:
        echo_json(client.get_version(model_name, version_name))
