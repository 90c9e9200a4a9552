"""``edgefleet fleet health``: live model health across the fleet, from ingested telemetry."""

from __future__ import annotations

from typing import Any

import click

from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.pairs import parse_labels
from edgefleet.cli.state import CliState, pass_state

__all__ = ["fleet"]

_GROUP_COLUMNS: list[Column] = [
    ("GROUP", "name"),
    ("DEVICES", "devices"),
    ("REQUESTS", "requests"),
    ("ERROR_RATE", "error_rate"),
    ("P50_MS", "latency_ms.p50"),
    ("P95_MS", "latency_ms.p95"),
    ("SHADOW_AGREE", "shadow.agreement"),
    ("HEALTH_FAILED", "health_checks.failed"),
    ("INPUT_FAULTS", "input_faults"),
]


@click.group("fleet")
def fleet() -> None:
    """The fleet as a whole."""


@fleet.command("health")
@click.option("--class", "hardware_class", default=None)
@click.option("--version", "model_version", default=None, help="<model>/<version>, e.g. digits/1.0.0")
@click.option("--label", "labels", multiple=True, help="key=value (repeatable).")
@click.option("--since", default=None, help="ISO 8601 start (default: the last hour).")
@click.option("--by", type=click.Choice(["model_version", "hardware_class", "site"]), default="model_version")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def health_cmd(
    state: CliState,
    hardware_class: str | None,
    model_version: str | None,
    labels: tuple[str, ...],
    since: str | None,
    by: str,
    as_json: bool,
) -> None:
    """Requests, error rate, latency and shadow agreement, grouped, with how fresh the data is."""
    with state.client() as client:
        health = client.fleet_health(
            hardware_class=hardware_class,
            model_version=model_version,
            since=since,
            labels=parse_labels(labels),
        )
    if as_json:
        echo_json(health)
        return
    rows: list[dict[str, Any]] = [{"name": "(all)", **health["totals"]}]
    rows += [{"name": g[by], **g} for g in health.get(f"by_{by}", [])]
    click.echo(format_table(rows, _GROUP_COLUMNS))
    devices = health.get("devices", {})
    click.echo("")
    click.echo(f"devices      {devices.get('total')} ({devices.get('reporting')} reporting)")
    click.echo(f"by status    {devices.get('by_status')}")
    click.echo(
        f"stale data   {devices.get('stale_data')} device(s) whose newest window is older than allowed"
    )
    field = health.get("field") or {}
    if field:
        click.echo(
            f"unhealthy    {field.get('unhealthy')} device(s) with requests but no success for "
            f"{field.get('no_success_after_s')} s {field.get('unhealthy_ids') or ''}"
        )
        click.echo(
            f"input faults {field.get('input_fault_surge')} device(s) with a sudden rise (failing sensors?) "
            f"{field.get('input_fault_surge_ids') or ''}"
        )
