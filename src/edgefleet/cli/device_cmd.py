"""``edgefleet device token create|list|show|revoke|pin|rollback``: the operators' view of the fleet."""

from __future__ import annotations

import re
from typing import Any

import click

from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.pairs import parse_labels
from edgefleet.cli.state import CliState, pass_state
from edgefleet.client.devices import DeviceInfo
from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["device", "parse_labels"]

_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("CLASS", "hardware_class"),
    ("STATUS", "status"),
    ("LABELS", "labels_text"),
    ("GENERATION", "desired_generation"),
    ("LAST_SEEN", "last_seen_at"),
    ("AGENT", "agent_version"),
    ("UPDATE", "update_text"),
]
_TTL = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _why_text(row: dict[str, Any]) -> str:
    """Why one slot lags, as the device reported it (``server.services.device_updates``)."""
    retry = "retrying" if row.get("retrying") else "waiting for a new desired state"
    return f"{row.get('why')} ({retry})"


def _update_text(info: DeviceInfo) -> str:
    """The UPDATE column: ``-`` when no slot is behind, else each lagging slot and why."""
    return "; ".join(f"{b.get('slot')}: {_why_text(b)}" for b in info.behind) or "-"


def _ttl_s(text: str) -> int:
    match = _TTL.fullmatch(text.strip())
    if not match:
        raise InvalidDocumentError(
            "invalid --ttl", code="invalid_ttl", expected="e.g. 90s, 30m, 1h, 7d", got=text
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)]


@click.group("device")
def device() -> None:
    """Enrolled devices: enrollment tokens, listing, revocation, pins, rollback."""


@device.group("token")
def token_group() -> None:
    """One-time enrollment tokens."""


@token_group.command("create")
@click.option("--class", "hardware_class", required=True, help="Hardware class the device will belong to.")
@click.option("--label", "labels", multiple=True, help="key=value label given to the device (repeatable).")
@click.option("--serial", default=None, help="Only a device with this serial number may use the token.")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 90s, 30m, 1h, 7d (at most 30d).")
@click.option("--uses", type=click.IntRange(1, 10_000), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def token_create(
    state: CliState,
    hardware_class: str,
    labels: tuple[str, ...],
    serial: str | None,
    ttl: str,
    uses: int,
    as_json: bool,
) -> None:
    """Create an enrollment token. The secret is shown once."""
    with state.client() as client:
        info = client.create_enrollment_token(
            hardware_class, labels=parse_labels(labels), serial=serial, ttl_s=_ttl_s(ttl), uses=uses
        )
    if as_json:
        echo_json(info)
        return
    click.echo(info.token)
    click.echo(
        f"class {info.hardware_class}, {info.uses} use(s), expires {info.expires_at}"
        f" -- on the device: edgefleet agent enroll --server {state.server} --token <token> --data-dir DIR",
        err=True,
    )


@device.command("list")
@click.option("--class", "hardware_class", default=None)
@click.option("--label", "labels", multiple=True, help="key=value (repeatable; all must match).")
@click.option("--status", type=click.Choice(["online", "stale", "offline", "revoked"]), default=None)
@click.option("--selector", default=None, help="Label selector, e.g. 'site=plant-3,line!=2'.")
@click.option("--os", "os_name", default=None, help="Reported OS: linux, windows, ...")
@click.option("--arch", default=None, help="Reported CPU architecture: x86_64, aarch64, ...")
@click.option("--agent-version", default=None)
@click.option("--runtime", default=None, help="An installed runtime: onnxruntime or onnxruntime=1.20.1.")
@click.option("--provider", default=None, help="A usable execution provider: CUDAExecutionProvider, ...")
@click.option("--decommissioned", "include_decommissioned", is_flag=True, help="Include decommissioned.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def list_cmd(
    state: CliState,
    hardware_class: str | None,
    labels: tuple[str, ...],
    status: str | None,
    selector: str | None,
    os_name: str | None,
    arch: str | None,
    agent_version: str | None,
    runtime: str | None,
    provider: str | None,
    include_decommissioned: bool,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List the fleet's devices, filtered by class, labels or a selector, status and inventory."""
    inventory = {"os": os_name, "arch": arch, "agent_version": agent_version, "runtime": runtime}
    with state.client() as client:
        items, total = client.list_devices(
            hardware_class=hardware_class,
            labels=parse_labels(labels),
            status=status,
            limit=limit,
            offset=offset,
            selector=selector,
            inventory={**inventory, "provider": provider},
            include_decommissioned=include_decommissioned,
        )
    if as_json:
        echo_json({"items": items, "total": total, "limit": limit, "offset": offset})
        return
    rows = []
    for d in items:
        row = d.model_dump(mode="json")
        row["labels_text"] = ",".join(f"{k}={v}" for k, v in sorted(d.labels.items())) or "-"
        row["update_text"] = _update_text(d)
        rows.append(row)
    click.echo(format_table(rows, _COLUMNS))
    if total > offset + len(items):
        click.echo(f"({len(items)} of {total}; use --offset {offset + len(items)} for more)")


@device.command("show")
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def show_cmd(state: CliState, device_id: str, as_json: bool) -> None:
    """Show one device: identity, status, what it reports running."""
    with state.client() as client:
        info = client.get_device(device_id)
    if as_json:
        echo_json(info)
        return
    report = info.report or {}
    for key, value in (
        ("id", info.id),
        ("class", info.hardware_class),
        ("status", info.status),
        ("labels", ",".join(f"{k}={v}" for k, v in sorted(info.labels.items())) or "-"),
        ("serial", info.serial or "-"),
        ("enrolled_at", info.enrolled_at),
        ("last_seen_at", info.last_seen_at or "-"),
        ("revoked", f"{info.revoked_at} ({info.revoked_reason})" if info.revoked_at else "no"),
        ("agent_version", info.agent_version or "-"),
        ("decommissioned", info.decommissioned_at or "no"),
        *_inventory_lines(info),
        ("desired_generation", info.desired_generation),
        ("reported_generation", report.get("desired_generation", "-")),
        ("reported_status", report.get("status", "-")),
        ("last_error", (report.get("last_error") or {}).get("code", "-")),
    ):
        click.echo(f"{key:<20} {value}")
    for slot, slot_report in (report.get("slots") or {}).items():
        click.echo(f"slot {slot:<15} active={slot_report.get('active')} state={slot_report.get('state')}")
    for row in info.behind:
        click.echo(f"behind {row.get('slot'):<13} desired={row.get('desired')} why={_why_text(row)}")


def _inventory_lines(info: DeviceInfo) -> list[tuple[str, str]]:
    inv = info.inventory or {}
    if not inv:
        return [("inventory", "- (not reported)")]
    cpu = f"{inv.get('cpu_model') or '-'} ({inv.get('arch') or '-'}, {inv.get('cores') or '?'} cores)"
    runtimes = ", ".join(f"{k} {v}" for k, v in (inv.get("runtimes") or {}).items()) or "-"
    return [
        ("os", f"{inv.get('os') or '-'} {inv.get('os_version') or ''}".strip()),
        ("cpu", cpu),
        ("runtimes", runtimes),
        ("providers", ", ".join(inv.get("providers") or []) or "-"),
    ]


@device.command("revoke")
@click.argument("device_id")
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked device as JSON.")
@pass_state
def revoke_cmd(state: CliState, device_id: str, reason: str, yes: bool, as_json: bool) -> None:
    """Revoke a device: its next request is refused. Irreversible (re-enroll to come back)."""
    if not yes:
        click.confirm(f"Revoke {device_id}? Its next request will be refused", abort=True, err=True)
    with state.client() as client:
        info = client.revoke_device(device_id, reason=reason)
    if as_json:
        echo_json(info)
        return
    click.echo(f"{info.id} revoked at {info.revoked_at}")


@device.command("pin")
@click.argument("artifact_id", required=False)
@click.option("--device", "device_id", default=None, help="Pin for one device ...")
@click.option("--class", "hardware_class", default=None, help="... or for every device of a class.")
@click.option("--slot", default="default", show_default=True)
@click.option("--clear", is_flag=True, help="Remove the pin instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the pin as JSON.")
@pass_state
def pin_cmd(
    state: CliState,
    artifact_id: str | None,
    device_id: str | None,
    hardware_class: str | None,
    slot: str,
    clear: bool,
    as_json: bool,
) -> None:
    """Pin ARTIFACT_ID for a device or a class (a device pin wins over its class's)."""
    if (device_id is None) == (hardware_class is None):
        raise click.UsageError("give exactly one of --device or --class")
    if clear == (artifact_id is not None):
        raise click.UsageError("give ARTIFACT_ID, or --clear without it")
    scope, target = ("device", device_id) if device_id else ("class", hardware_class)
    assert target is not None
    with state.client() as client:
        client.pin(scope=scope, target=target, slot=slot, artifact_id=None if clear else artifact_id)
    if as_json:
        echo_json(
            {
                "scope": scope,
                "target": target,
                "slot": slot,
                "artifact_id": None if clear else artifact_id,
                "pinned": not clear,
            }
        )
        return
    click.echo(f"{scope} {target} slot {slot}: " + ("unpinned" if clear else f"pinned {artifact_id}"))


_PIN_COLUMNS: list[Column] = [
    ("SCOPE", "scope"),
    ("TARGET", "target"),
    ("SLOT", "slot"),
    ("ARTIFACT", "artifact_id"),
    ("SET_AT", "created_at"),
    ("BY", "created_by"),
]


@device.command("pins")
@click.option("--device", "device_id", default=None, help="Only this device's pins ...")
@click.option("--class", "hardware_class", default=None, help="... or only this class's.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def pins_cmd(
    state: CliState,
    device_id: str | None,
    hardware_class: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List pins (class and device), optionally of one device or one class."""
    if device_id is not None and hardware_class is not None:
        raise click.UsageError("give at most one of --device or --class")
    scope = "device" if device_id else ("class" if hardware_class else None)
    with state.client() as client:
        items, total = client.list_pins(
            scope=scope, target=device_id or hardware_class, limit=limit, offset=offset
        )
    if as_json:
        echo_json({"items": items, "total": total, "limit": limit, "offset": offset})
        return
    click.echo(format_table([p.model_dump(mode="json") for p in items], _PIN_COLUMNS))
    if total > offset + len(items):
        click.echo(f"({len(items)} of {total}; use --offset {offset + len(items)} for more)")


@device.command("rollback")
@click.argument("device_id")
@click.option("--slot", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the pin as JSON.")
@pass_state
def rollback_cmd(state: CliState, device_id: str, slot: str, as_json: bool) -> None:
    """Roll DEVICE_ID back: pin its slot to the artifact its last report names as previous.

    The pin is a device pin like `device pin --device` (it wins over class pins and rollouts); remove it
    with `device pin --clear --device DEVICE_ID` once the device may follow its class again."""
    with state.client() as client:
        info = client.rollback_device(device_id, slot=slot)
    if as_json:
        echo_json(info)
        return
    click.echo(
        f"device {info.target} slot {info.slot}: pinned {info.artifact_id}"
        f" (rolled back from {info.rolled_back_from or '-'})"
    )
    click.echo(
        f"the device switches at its next poll; `edgefleet device pin --clear --device {info.target}"
        + (f" --slot {info.slot}" if info.slot != "default" else "")
        + "` lets it follow its class again",
        err=True,
    )


@device.command("telemetry")
@click.argument("device_id")
@click.option("--since", default=None, help="ISO 8601 start (default: the last 24 hours).")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def telemetry_cmd(state: CliState, device_id: str, since: str | None, limit: int, as_json: bool) -> None:
    """A device's recent windows, events, how late its data is, and its queue's drops."""
    with state.client() as client:
        data = client.device_telemetry(device_id, since=since, limit=limit)
    if as_json:
        echo_json(data)
        return
    lag = data["data"]
    click.echo(f"{data['device_id']}  {data['hardware_class']}  status={data['status']}")
    click.echo(f"newest window {lag['last_window_end_at']}  lag {lag['lag_s']} s  stale={lag['stale']}")
    click.echo(f"queue {data['queue']}")
    field = data.get("field") or {}
    if field:
        click.echo("")
        verdict = "UNHEALTHY" if field.get("unhealthy") else "ok"
        click.echo(f"field        {verdict}  resources {field.get('resources')}")
        faults = field.get("input_faults", {})
        click.echo(
            f"input faults {faults.get('recent')} in the last {faults.get('window_s')} s "
            f"(share {faults.get('recent_share')}, baseline {faults.get('baseline_share')})"
            + ("  SURGE: failing sensor?" if faults.get("surge") else "")
        )
        slots = [{"slot": name, **status} for name, status in field.get("slots", {}).items()]
        click.echo(
            format_table(
                slots,
                [
                    ("SLOT", "slot"),
                    ("VERSION", "model_version"),
                    ("LAST_SUCCESS", "last_success_at"),
                    ("LAST_REQUEST", "last_request_at"),
                    ("ERRORS_BY_KIND", "errors_by_kind"),
                    ("UPDATE", "update_status"),
                    ("PROBLEMS", "problems"),
                ],
            )
        )
    windows = [
        {**w, "requests": sum(m.get("requests", 0) for m in w.get("models", [])) if "models" in w else "-"}
        for w in data["windows"]
    ]
    click.echo(format_table(windows, [("END", "end_at"), ("LATE_S", "late_s"), ("REQUESTS", "requests")]))
    if data["events"]:
        click.echo("")
        click.echo(format_table(data["events"], [("AT", "at"), ("KIND", "kind"), ("CODE", "code")]))
