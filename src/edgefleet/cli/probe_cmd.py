"""``edgefleet probe create|list|show|watch``: measure a build's candidates on real devices of a class.

``create`` checks everything it can before anything is sent: the build against the class (locally), then the
class, its devices and the bundle (the server, as a dry run); only then is the bundle signed into the TUF
targets with the offline release key (exactly ``edgefleet publish``) and the probe created.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from edgefleet.cli.output import echo_json, format_table
from edgefleet.cli.pairs import parse_labels
from edgefleet.cli.state import CliState, notes_json, pass_state

__all__ = ["probe", "render_probe"]

_TERMINAL = ("complete", "partial", "expired")


@click.group("probe")
def probe() -> None:
    """Probes: candidates measured by real devices of a class."""


@probe.command("create")
@click.argument("build_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--class", "hardware_class", required=True, help="The hardware class to measure on.")
@click.option("--devices", type=click.IntRange(1, 100), default=None, help="How many devices (default all).")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Only devices with this label.")
@click.option("--device", "device_ids", multiple=True, help="These devices (repeatable).")
@click.option("--candidate", "candidates", multiple=True, help="Only these candidates (default: all).")
@click.option("--runs", type=click.IntRange(5, 100_000), default=50, show_default=True)
@click.option("--sustained-s", type=click.FloatRange(0, 24 * 3600), default=0.0, show_default=True)
@click.option("--deadline-s", type=click.FloatRange(1, 30 * 86400), default=3600.0, show_default=True)
@click.option("--time-limit-s", type=click.FloatRange(1, 24 * 3600), default=300.0, show_default=True)
@click.option("--release-key", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--trusted-root", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--kept-targets", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
@notes_json
@click.pass_context
def create_cmd(
    ctx: click.Context,
    build_dir: Path,
    hardware_class: str,
    devices: int | None,
    labels: tuple[str, ...],
    device_ids: tuple[str, ...],
    candidates: tuple[str, ...],
    runs: int,
    sustained_s: float,
    deadline_s: float,
    time_limit_s: float,
    release_key: Path,
    trusted_root: Path | None,
    kept_targets: Path | None,
    as_json: bool,
) -> None:
    """Sign BUILD_DIR's candidates for CLASS and ask devices of CLASS to measure them."""
    from edgefleet.cli.publish import publish
    from edgefleet.optimize.probe_bundle import make_bundle

    state: CliState = ctx.ensure_object(CliState)
    if devices is not None and device_ids:
        raise click.UsageError("give --devices or --device, not both")
    with state.client() as client:
        hwclass = client.get_class(hardware_class)
        bundle = make_bundle(
            build_dir, hwclass, now=datetime.now(timezone.utc), candidates=list(candidates) or None
        )
        request: dict[str, Any] = {
            "hardware_class": hardware_class,
            "manifest": bundle.manifest.to_dict(),
            "devices": devices,
            "labels": parse_labels(labels),
            "device_ids": list(device_ids),
            "deadline_s": deadline_s,
            "runs": runs,
            "sustained_s": sustained_s,
            "time_limit_s": time_limit_s,
        }
        plan = client.create_probe(**request, dry_run=True)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the probe's (--json)
        ctx.invoke(
            publish,
            artifact_dir=bundle.path,
            release_key=release_key,
            repo=None,
            online_keys=None,
            resign=False,
            release_floor=(),
            trusted_root=trusted_root,
            kept_targets=kept_targets,
            from_targets=None,
        )
    with state.client() as client:
        created = client.create_probe(**request)
    if as_json:
        echo_json(created)
        return
    click.echo(
        f"{created['id']}: {len(created['candidates'])} candidates on {created['devices_asked']} "
        f"{hardware_class} devices ({', '.join(plan['devices'])}), deadline {created['deadline_at']}"
    )


@probe.command("list")
@click.option("--model", default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def list_cmd(state: CliState, model: str | None, as_json: bool) -> None:
    """Probes, newest first."""
    with state.client() as client:
        items = client.list_probes(model=model)
    if as_json:
        echo_json(items)
        return
    columns = [
        ("ID", "id"),
        ("MODEL", "model"),
        ("VERSION", "version"),
        ("CLASS", "hardware_class"),
        ("STATUS", "status"),
        ("REPORTED", "reported"),
        ("DEADLINE", "deadline_at"),
    ]
    rows = [{**p, "reported": f"{p['devices_reported']}/{p['devices_asked']}"} for p in items]
    click.echo(format_table(rows, columns))


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(float(value), spec)


def render_probe(info: dict[str, Any]) -> str:
    """Per device and candidate: device figures, each line labelled where it was measured."""
    partial = " (PARTIAL: fewer devices than asked)" if info["status"] == "partial" else ""
    lines = [
        f"probe {info['id']}: {info['model']} {info['version']} on {info['hardware_class']}",
        f"status {info['status']}{partial}: {info['devices_reported']}/{info['devices_asked']} devices "
        f"reported, deadline {info['deadline_at']}",
    ]
    rows = []
    for device in info["devices"]:
        results = device.get("results") or {}
        if not results:
            rows.append({"device": device["device_id"], "candidate": "-", "status": "waiting"})
            continue
        if results.get("error_code"):
            rows.append({"device": device["device_id"], "candidate": "-", "status": results["error_code"]})
        for c in results.get("candidates", []):
            one: dict[str, Any] = next((b for b in c.get("latency", []) if b.get("batch") == 1), {})
            sustained = c.get("sustained") or {}
            throttle = sustained.get("throttle_events") if sustained else None
            rows.append(
                {
                    "device": device["device_id"],
                    "candidate": c["name"],
                    "status": c["status"] if c["status"] == "measured" else c.get("error_code"),
                    "p50": _fmt(one.get("p50_ms"), ".4f"),
                    "p95": _fmt(one.get("p95_ms"), ".4f"),
                    "p99": _fmt(one.get("p99_ms"), ".4f"),
                    "load": _fmt(c.get("load_ms"), ".1f"),
                    "rss": _fmt((c.get("peak_rss_bytes") or 0) / 2**20, ".1f"),
                    "agree": _fmt(c.get("agreement"), ".4f"),
                    "drift": _fmt(sustained.get("drift_ratio"), ".2f") if sustained else "-",
                    "throttle": "n/a" if sustained and throttle is None else (throttle if sustained else "-"),
                    "where": "device",
                }
            )
    columns = [
        ("DEVICE", "device"),
        ("CANDIDATE", "candidate"),
        ("STATUS", "status"),
        ("P50_MS", "p50"),
        ("P95_MS", "p95"),
        ("P99_MS", "p99"),
        ("LOAD_MS", "load"),
        ("RSS_MIB", "rss"),
        ("AGREEMENT", "agree"),
        ("DRIFT", "drift"),
        ("THROTTLE", "throttle"),
        ("MEASURED_ON", "where"),
    ]
    lines.append(format_table(rows, columns))
    return "\n".join(lines)


@probe.command("show")
@click.argument("probe_id")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def show_cmd(state: CliState, probe_id: str, as_json: bool) -> None:
    """One probe with every device's figures."""
    with state.client() as client:
        info = client.get_probe(probe_id)
    if as_json:
        echo_json(info)
        return
    click.echo(render_probe(info))


@probe.command("watch")
@click.argument("probe_id")
@click.option("--interval-s", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True)
@click.option("--timeout-s", type=click.FloatRange(1, 30 * 86400), default=None, help="Give up after this.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change (NDJSON).")
@pass_state
def watch_cmd(
    state: CliState, probe_id: str, interval_s: float, timeout_s: float | None, as_json: bool
) -> None:
    """Follow a probe until it ends: complete (exit 0), partial or expired (exit 1)."""
    started = time.monotonic()
    last: Any = None
    with state.client() as client:
        while True:
            info = client.get_probe(probe_id)
            key = (info["status"], info["devices_reported"])
            if key != last:
                last = key
                if as_json:
                    click.echo(json.dumps(info, sort_keys=True, separators=(",", ":")))
                else:
                    click.echo(render_probe(info) + "\n")
                sys.stdout.flush()
            if info["status"] in _TERMINAL:
                break
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise SystemExit(1)
            time.sleep(interval_s)
    if info["status"] != "complete":
        raise SystemExit(1)
