"""``edgefleet class apply|list|show|delete``: hardware classes."""

from __future__ import annotations

from pathlib import Path

import click

from edgefleet.cli.local_file import read_local_file
from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.state import CliState, pass_state
from edgefleet.protocol.hardware_class import MAX_CLASSES_FILE_BYTES, parse_classes_toml

__all__ = ["class_group"]

_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ARCH", "cpu_arch"),
    ("ACCELERATOR", "accelerator"),
    ("RUNTIME", "runtime.name"),
    ("PRECISIONS", "precisions"),
    ("MAX_MODEL_MB", "budgets.max_model_mb"),
    ("RAM_MB", "budgets.ram_mb"),
    ("P95_MS", "performance.latency_p95_ms"),
    ("CONNECTIVITY", "connectivity"),
]


@click.group("class")
def class_group() -> None:
    """Hardware classes: named deployment targets and their budgets."""


@class_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path, allow_dash=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
def apply_cmd(state: CliState, file: Path, as_json: bool) -> None:
    """Create or update every class in a TOML FILE, all or nothing."""
    raw = read_local_file(file, max_bytes=MAX_CLASSES_FILE_BYTES, what="classes file")
    classes = parse_classes_toml(raw)
    with state.client() as client:
        result = client.apply_classes(classes)
    if as_json:
        echo_json(result)
        return
    for label, names in (
        ("created", result.created),
        ("updated", result.updated),
        ("unchanged", result.unchanged),
    ):
        for name in names:
            click.echo(f"{label:<9}  {name}")
    click.echo(
        f"{len(classes)} classes applied: {len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.unchanged)} unchanged"
    )


@class_group.command("list")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def list_cmd(state: CliState, limit: int, offset: int, as_json: bool) -> None:
    """List hardware classes."""
    with state.client() as client:
        page = client.list_classes(limit=limit, offset=offset)
    if as_json:
        echo_json({**page.model_dump(mode="json"), "items": [c.to_dict() for c in page.items]})
        return
    click.echo(format_table([c.to_dict() for c in page.items], _COLUMNS))
    if page.total > offset + len(page.items):
        click.echo(f"({len(page.items)} of {page.total}; use --offset {offset + len(page.items)} for more)")


@class_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the class as JSON.")
@pass_state
def show_cmd(state: CliState, name: str, as_json: bool) -> None:
    """Show one hardware class."""
    with state.client() as client:
        hardware_class = client.get_class(name)
    data = hardware_class.to_dict()
    if as_json:
        echo_json(data)
        return
    for key, value in _flatten(data):
        click.echo(f"{key:<32}  {value}")


def _flatten(data: dict[str, object], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            out.append((f"{prefix}{key}", ", ".join(str(v) for v in value) or "-"))
        else:
            out.append((f"{prefix}{key}", "-" if value in (None, "") else str(value)))
    return out


@class_group.command("delete")
@click.argument("name")
@pass_state
def delete_cmd(state: CliState, name: str) -> None:
    """Delete a hardware class (refused while an artifact or device uses it)."""
    with state.client() as client:
        client.delete_class(name)
    click.echo(f"deleted class {name}")
