"""``edgefleet agent enroll|run|status``: the device side. Needs only the core (and agent) install."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from edgefleet.cli.output import echo_json

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
@click.option("--json", "as_json", is_flag=True, help="Print the identity as JSON.")
def enroll_cmd(
    server_url: str, enroll_token: str, data_dir: Path, serial: str | None, force: bool, as_json: bool
) -> None:
    """Generate this device's key pair and enroll it with a one-time token."""
    from edgefleet.agent.enroll import enroll

    identity = enroll(
        server_url=server_url, token=enroll_token, data_dir=data_dir, serial=serial, force=force
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
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def run_cmd(data_dir: Path, poll_interval_s: float, backoff_cap_s: float, log_level: str) -> None:
    """Run the sync loop until SIGTERM/SIGINT: poll, verify, install, report."""
    from edgefleet.agent.backoff import PollTiming
    from edgefleet.agent.channel import DeviceChannel
    from edgefleet.agent.datadir import DataDir
    from edgefleet.agent.installer import NoInstaller
    from edgefleet.agent.sync import SyncCoordinator

    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    ddir = DataDir(data_dir)
    identity = ddir.read_identity()
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logging.getLogger("edgefleet.agent").info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with ddir.lock():
        channel = DeviceChannel(identity.server_url, device_id=identity.device_id, key=ddir.read_key())
        try:
            timing = PollTiming(poll_interval_s=poll_interval_s, backoff_cap_s=backoff_cap_s)
            SyncCoordinator(ddir, channel, NoInstaller(), timing=timing).run(stop)
        finally:
            channel.close()


@agent.command("status")
@_DATA_DIR
@click.option("--json", "as_json", is_flag=True)
def status_cmd(data_dir: Path, as_json: bool) -> None:
    """Show this device's identity and last accepted desired state (offline; reads the data dir)."""
    from edgefleet.agent.datadir import DataDir

    ddir = DataDir(data_dir)
    identity = ddir.read_identity()
    envelope = ddir.read_desired_envelope()
    signed = envelope.get("signed", {}) if isinstance(envelope, dict) else {}
    floor = ddir.read_time_floor()
    info = {
        "device_id": identity.device_id,
        "hardware_class": identity.hardware_class,
        "server_url": identity.server_url,
        "labels": identity.labels,
        "desired_generation": signed.get("generation", 0),
        "slots": {k: v.get("artifact_id") for k, v in signed.get("slots", {}).items()},
        "time_floor": floor.isoformat() if floor else None,
    }
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        click.echo(f"{key:20} {value}")
