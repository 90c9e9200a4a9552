"""``edgefleet device relabel|decommission|pin --selector``: groups and lifecycle, on the ``device`` group.

The commands attach to ``device_cmd.device``; ``edgefleet device`` loads this module (see ``cli.main``), so
the group shows them all.
"""

from __future__ import annotations

import click

from edgefleet.cli.device_cmd import device
from edgefleet.cli.output import echo_json, format_table
from edgefleet.cli.pairs import parse_labels
from edgefleet.cli.state import CliState, pass_state

__all__ = ["device"]


@device.command("relabel")
@click.argument("device_id", required=False)
@click.option(
    "--selector", default=None, help="Every device this label selector matches, e.g. 'site=plant-3'."
)
@click.option("--class", "hardware_class", default=None, help="With --selector: only this hardware class.")
@click.option("--set", "set_labels", multiple=True, help="key=value to add or overwrite (repeatable).")
@click.option("--remove", multiple=True, help="Label key to remove (repeatable).")
@click.option("--dry-run", is_flag=True, help="With --selector: show what would change; change nothing.")
@click.option("--yes", is_flag=True, help="With --selector: do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def relabel_cmd(
    state: CliState,
    device_id: str | None,
    selector: str | None,
    hardware_class: str | None,
    set_labels: tuple[str, ...],
    remove: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Change the labels of DEVICE_ID, or of every device --selector matches (all or none)."""
    if (device_id is None) == (selector is None):
        raise click.UsageError("give DEVICE_ID or --selector")
    labels = parse_labels(set_labels)
    with state.client() as client:
        if device_id is not None:
            info = client.relabel_device(device_id, set_labels=labels, remove=remove)
            if as_json:
                echo_json(info)
            else:
                click.echo(
                    f"{info.id} " + (",".join(f"{k}={v}" for k, v in sorted(info.labels.items())) or "-")
                )
            return
        assert selector is not None
        plan = client.relabel_devices(
            selector, set_labels=labels, remove=remove, hardware_class=hardware_class, dry_run=True
        )
        if not dry_run and plan["changed"] and not yes and not as_json:
            click.confirm(
                f"Relabel {len(plan['changed'])} of {plan['matched']} matching device(s)?",
                abort=True,
                err=True,
            )
        done = (
            plan
            if dry_run
            else client.relabel_devices(
                selector, set_labels=labels, remove=remove, hardware_class=hardware_class
            )
        )
    if as_json:
        echo_json(done)
        return
    rows = [
        {"id": c["id"], "before": _text(c["before"]), "after": _text(c["after"])} for c in done["changed"]
    ]
    click.echo(format_table(rows, [("ID", "id"), ("BEFORE", "before"), ("AFTER", "after")]))
    verb = "would change" if done["dry_run"] else "changed"
    click.echo(f"{done['matched']} matched, {len(done['changed'])} {verb}", err=True)


def _text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


@device.command("decommission")
@click.argument("device_id")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the decommissioned device as JSON.")
@pass_state
def decommission_cmd(state: CliState, device_id: str, reason: str, yes: bool, as_json: bool) -> None:
    """Take DEVICE_ID out of the fleet: revoked at once, hidden from fleet views (`device list
    --decommissioned` shows it), kept in the audit log. It keeps serving what it runs."""
    if not yes:
        click.confirm(f"Decommission {device_id}? Its next request will be refused", abort=True, err=True)
    with state.client() as client:
        info = client.decommission_device(device_id, reason=reason)
    if as_json:
        echo_json(info)
        return
    click.echo(f"{info.id} decommissioned at {info.decommissioned_at}")


@device.command("pin-selection")
@click.argument("artifact_id", required=False)
@click.option("--selector", required=True, help="Label selector of the devices, e.g. 'site=plant-3'.")
@click.option("--class", "hardware_class", default=None, help="The class (needed with --clear).")
@click.option("--slot", default="default", show_default=True)
@click.option("--clear", is_flag=True, help="Remove the device pins instead.")
@click.option("--dry-run", is_flag=True, help="List the devices it would pin; pin nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def pin_selection_cmd(
    state: CliState,
    artifact_id: str | None,
    selector: str,
    hardware_class: str | None,
    slot: str,
    clear: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Pin ARTIFACT_ID as the device pin of every device of its class that --selector matches."""
    if clear == (artifact_id is not None):
        raise click.UsageError("give ARTIFACT_ID, or --clear without it")
    with state.client() as client:
        done = client.pin_selection(
            selector,
            slot=slot,
            artifact_id=None if clear else artifact_id,
            hardware_class=hardware_class,
            dry_run=dry_run,
        )
    if as_json:
        echo_json(done)
        return
    for device_id in done["devices"]:
        click.echo(device_id)
    verb = ("would unpin" if clear else "would pin") if dry_run else ("unpinned" if clear else "pinned")
    click.echo(f"{verb} slot {slot} on {done['matched']} device(s) of {done['hardware_class']}", err=True)
