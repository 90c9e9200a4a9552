"""``edgefleet agent enroll|run|status``: the device side. Needs only the core (and agent) install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgefleet.cli.agent_process import LOG_LEVELS
from edgefleet.cli.output import echo_json
from edgefleet.cli.state import notes_json

__all__ = ["agent"]

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="EDGEFLEET_AGENT_DATA_DIR",
    required=True,
    help="The device's data directory (env EDGEFLEET_AGENT_DATA_DIR).",
)


@click.group("agent")
def agent() -> None:
    """Run this machine as an edgefleet device."""


@agent.command("enroll")
@click.option("--server", "server_url", required=True, help="Control-plane URL.")
@click.option("--token", "enroll_token", required=True, help="One-time enrollment token (efen_...).")
@_DATA_DIR
@click.option("--serial", default=None, help="This device's serial number, if the token is bound to one.")
@click.option(
    "--force", is_flag=True, help="Enroll again with a NEW key, replacing this data dir's identity."
)
@click.option(
    "--class",
    "hardware_class",
    default=None,
    help="This device's hardware class (from its image): a token of another class is refused unspent.",
)
@click.option(
    "--tuf-root",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The release team's root.json, provisioned out of band: pin it instead of trusting the server's.",
)
@click.option(
    "--content-url",
    default=None,
    help="Fetch TUF metadata and targets from this static host or CDN (`edgefleet tuf export` layout) "
    "instead of the server's content base URL or its /tuf.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the identity as JSON.")
@notes_json
def enroll_cmd(
    server_url: str,
    enroll_token: str,
    data_dir: Path,
    serial: str | None,
    force: bool,
    hardware_class: str | None,
    tuf_root: Path | None,
    content_url: str | None,
    as_json: bool,
) -> None:
    """Generate this device's key pair and enroll it with a one-time token."""
    from edgefleet.agent.enroll import enroll
    from edgefleet.cli.local_file import read_local_file
    from edgefleet.trust.provisioned import MAX_ROOT_BYTES

    root = read_local_file(tuf_root, max_bytes=MAX_ROOT_BYTES, what="TUF root") if tuf_root else None
    identity = enroll(
        server_url=server_url,
        token=enroll_token,
        data_dir=data_dir,
        serial=serial,
        force=force,
        hardware_class=hardware_class,
        tuf_root=root,
        content_url=content_url,
    )
    if as_json:
        echo_json({k: v for k, v in identity.to_dict().items() if k != "director_public_key_pem"})
        return
    click.echo(f"enrolled as {identity.device_id} (class {identity.hardware_class}) at {identity.server_url}")


@agent.command("run")
@_DATA_DIR
@click.option(
    "--poll-interval", "poll_interval_s", type=click.FloatRange(0.05, 86400), default=30.0, show_default=True
)
@click.option(
    "--backoff-cap", "backoff_cap_s", type=click.FloatRange(0.1, 86400), default=300.0, show_default=True
)
@click.option(
    "--telemetry-window",
    "window_s",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds per telemetry summary window.",
)
@click.option(
    "--telemetry-interval",
    "upload_s",
    type=click.FloatRange(0.1, 86400),
    default=60.0,
    show_default=True,
    help="Seconds between telemetry uploads (backlogs drain faster, within the class's bandwidth).",
)
@click.option(
    "--serve-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Local inference endpoint port on 127.0.0.1 (0: any free port, see <data-dir>/serving-endpoint).",
)
@click.option(
    "--serve-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Serve inference on this Unix socket instead of TCP.",
)
@click.option("--no-serve", is_flag=True, help="Do not serve inference (sync and install only).")
@click.option(
    "--fallback-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="The class's fallback artifact (an `edgefleet build` output dir) for the degraded ladder.",
)
@click.option(
    "--shadow-fraction",
    type=click.FloatRange(0.001, 1.0),
    default=0.1,
    show_default=True,
    help="Share of live requests also run through a shadow candidate when a rollout asks for one.",
)
@click.option(
    "--trial-window",
    "trial_window_s",
    type=click.FloatRange(0, 30 * 86400),
    default=600.0,
    show_default=True,
    help="Seconds a new version is on trial after its switch before it is committed.",
)
@click.option(
    "--trial-min-requests",
    type=click.IntRange(0, 10**9),
    default=0,
    show_default=True,
    help="Requests the new version must serve before its commit (0: the window alone).",
)
@click.option(
    "--trial-max-failure-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.05,
    show_default=True,
    help="Failure rate over which the trial rolls back (answers from the fallback or the rule are failures).",
)
@click.option(
    "--trial-min-requests-for-rate",
    type=click.IntRange(1, 10**9),
    default=20,
    show_default=True,
    help="Requests served before the failure rate is judged.",
)
@click.option(
    "--trial-max-restarts",
    type=click.IntRange(0, 100),
    default=1,
    show_default=True,
    help="Agent restarts tolerated during a trial that the model may have caused (none with the trial "
    "worker: power cuts and agent restarts never count); one more rolls back.",
)
@click.option(
    "--no-trial-worker",
    is_flag=True,
    help="Load, check and serve a version on trial inside the agent instead of a supervised worker process "
    "(saves a process during trials; a model crash then takes the agent down and counts as a restart).",
)
@click.option(
    "--trial-watchdog",
    "trial_watchdog_s",
    type=click.FloatRange(0, 86400),
    default=60.0,
    show_default=True,
    help="Seconds without a serving heartbeat that roll a trial back (0: off; off with --no-serve).",
)
@click.option(
    "--no-hints",
    is_flag=True,
    help="Do not listen for MQTT wake-up hints (the server's broker, if any): poll on the interval only.",
)
@click.option(
    "--time-zone",
    default=None,
    help="This device's IANA time zone (e.g. Europe/Berlin), the clock of its update window "
    "(default: TZ, /etc/timezone or /etc/localtime, else UTC). Reported to the control plane.",
)
@click.option("--log-level", default="info", type=click.Choice(LOG_LEVELS))
def run_cmd(**options: Any) -> None:
    """Run the device until SIGTERM/SIGINT: sync, verify, install, serve, report, send telemetry."""
    from edgefleet.cli import agent_process

    # This process becomes the agent (same pid), without click and the command tree. The options' names are
    # the keyword arguments of agent_process.run, which checks them again there.
    agent_process.replace_process(options)


@agent.command("status")
@_DATA_DIR
@click.option("--json", "as_json", is_flag=True)
@notes_json
def status_cmd(data_dir: Path, as_json: bool) -> None:
    """Show this device's identity and last accepted desired state (offline; reads the data dir)."""
    from edgefleet.agent.datadir import DataDir

    ddir = DataDir(data_dir)
    identity = ddir.read_identity()
    envelope = ddir.read_desired_envelope()
    signed = envelope.get("signed", {}) if isinstance(envelope, dict) else {}
    floor = ddir.read_time_floor()
    info: dict[str, object] = {
        "device_id": identity.device_id,
        "hardware_class": identity.hardware_class,
        "server_url": identity.server_url,
        "labels": identity.labels,
        "desired_generation": signed.get("generation", 0),
        "slots": {k: v.get("artifact_id") for k, v in signed.get("slots", {}).items()},
        "time_floor": floor.isoformat() if floor else None,
        "active": _active_slots(ddir.root),
        "serving": _serving_status(ddir.root),
    }
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        click.echo(f"{key:20} {value}")


def _active_slots(root: Path) -> dict[str, str | None]:
    from edgefleet.agent.install.slots import SlotStore

    slots = root / "slots"
    names = sorted(p.name for p in slots.iterdir() if p.is_dir()) if slots.is_dir() else []
    out: dict[str, str | None] = {}
    for name in names:
        pointer = SlotStore(root, name).read_active()
        out[name] = pointer.artifact_id if pointer else None
    return out


def _serving_status(root: Path) -> dict[str, object] | None:
    """The serving layer's status file (mode/rung, version), read as JSON without importing numpy."""
    import json

    path = root / "serving.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    endpoint = root / "serving-endpoint"
    if endpoint.exists():
        data["endpoint"] = endpoint.read_text(encoding="utf-8").strip()
    return data if isinstance(data, dict) else None
