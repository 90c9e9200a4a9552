"""``edgefleet sim run FLEET.toml --rollout SPEC``: plan a rollout on a described fleet, in virtual time.

Runs the control plane's twin in process (it needs ``edgefleet[server]``: the twin is the server's own
rollout policy). ``rollout create --dry-run`` asks the server to run the same twin on the fleet it knows.
This module only renders what the twin returns (text, ``--json``, ``--html``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from edgefleet.cli.local_file import read_local_file
from edgefleet.cli.output import echo_json
from edgefleet.cli.rollout_spec import read_spec_file
from edgefleet.cli.state import notes_json
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.errors import EdgefleetError

__all__ = ["duration_text", "render_plan", "sim", "write_plan_page"]

MAX_FLEET_FILE_BYTES = 512 * 1024


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


def _bytes_text(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _run_lines(run: Mapping[str, Any]) -> list[str]:
    lines = [f"== {run['label']}: {len(run['spec']['stages'])} stages -> {run['outcome'].upper()}"]
    halt = run.get("halt")
    if halt:
        lines.append(
            f"halted at stage {halt.get('stage')} after {duration_text(halt['at_s'])}:"
            f" gate {halt.get('gate')}"
            f" ({halt.get('hardware_class') or 'all classes'}) observed {halt.get('observed')}"
            f" vs {halt.get('threshold')} - {halt.get('why', '')}"
        )
        rb = run["rollback"]
        lines.append(
            f"rollback: {rb['devices']} devices back on the previous version by "
            f"{duration_text(rb['done_at_s'])}; {rb['still_on_candidate']} still on the candidate at the end"
        )
    else:
        lines.append(f"completed after {duration_text(run['completed_at_s'])}; every device on the candidate "
                     f"after {duration_text(run['converged_at_s'])}")  # fmt: skip
        left = run.get("not_converged") or {}
        if left.get("devices"):
            why = ", ".join(f"{k} {v}" for k, v in left["why"].items() if v)
            lines.append(f"not converged at the end: {left['devices']} devices ({why})")
    ex = run["exposure"]
    what = "a bad model" if ex["bad_model"] else "the candidate"
    lines.append(
        f"exposure to {what}: peak {ex['peak_devices']} devices ({ex['peak_percent']:g} %) at "
        f"{duration_text(ex['peak_at_s'])}"
        + (f", for {duration_text(ex['duration_s'])}" if ex["duration_s"] else "")
    )
    lines.append(f"bytes sent: {_bytes_text(run['bytes_sent'])}")
    lines.append("stage  size   members  started    ended      action    done  failed  pending")
    for s in run["stages"]:
        lines.append(
            f"{s['stage']:<6} {s['size']:<6} {s['members']:<8} {duration_text(s['started_at_s']):<10} "
            f"{duration_text(s['ended_at_s']):<10} {(s['action'] or 'running'):<9} {s.get('done', '-'):<5} "
            f"{s.get('failed', '-'):<7} {s.get('pending', '-')}"
            + (f"  gate {s['gate']} ({s['hardware_class']})" if s.get("gate") else "")
        )
    for d in run["deadlines"]:
        why = ", ".join(f"{k} {v}" for k, v in d["why"].items() if v) or "none"
        lines.append(f"deadline of stage {d['stage']} at {duration_text(d['at_s'])}: {d['pending']} pending "
                     f"({why}); on_deadline {d['on_deadline']}")  # fmt: skip
    return lines


def render_plan(result: Mapping[str, Any]) -> str:
    head = f"twin of {result['fleet']}: {result['devices']} devices, seed {result['seed']}, virtual time"
    lines = [head]
    for run in result["runs"]:
        lines += ["", *_run_lines(run)]
    notes = sorted({n for run in result["runs"] for n in run.get("notes", [])})
    if notes:
        lines += ["", "assumptions:"] + [f"  - {n}" for n in notes]
    return "\n".join(lines)


def _needs_server(exc: ImportError) -> EdgefleetError:
    return EdgefleetError(
        "the twin runs the control plane's rollout policy: this needs the server's packages",
        code="command_unavailable",
        expected="pip install 'edgefleet[server]'",
        got=str(exc),
    )


def write_plan_page(result: Mapping[str, Any], path: Path, *, title: str) -> None:
    """The plan as an HTML page with plots (drawn by the twin's own view, as the dashboard draws it)."""
    try:
        from edgefleet.server.services.twin.plots import plan_page
    except ImportError as exc:
        raise _needs_server(exc) from exc
    path.write_text(plan_page(result, title=title))


@click.group("sim")
def sim() -> None:
    """The fleet's digital twin: plan a rollout on a described fleet (docs/rollouts.md)."""


@sim.command("run")
@click.argument("fleet_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rollout", "spec_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A rollout spec as JSON (the same as `rollout create --spec`).")  # fmt: skip
@click.option("--compare", "compare_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A second spec, run on the same seeded fleet.")  # fmt: skip
@click.option("--classes", "classes_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A hardware classes file: every fleet class must be in it; envelopes and update "
              "windows the fleet file leaves out come from it.")  # fmt: skip
@click.option("--seed", type=int, default=None, help="Draw the fleet with this seed (default: the file's).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML page with plots.")  # fmt: skip
@notes_json
def run_cmd(
    fleet_file: Path,
    spec_file: Path,
    compare_file: Path | None,
    classes_file: Path | None,
    seed: int | None,
    as_json: bool,
    html_out: Path | None,
) -> None:
    """Run the rollout SPEC on the fleet described in FLEET_FILE (TOML)."""
    try:
        from edgefleet.server.services.twin.fleet import parse_fleet_toml, with_class_documents
        from edgefleet.server.services.twin.plan import parse_rollout_spec, plan
    except ImportError as exc:
        raise _needs_server(exc) from exc

    fleet = parse_fleet_toml(read_local_file(fleet_file, max_bytes=MAX_FLEET_FILE_BYTES, what="fleet file"))
    if classes_file is not None:
        documents = parse_classes_toml(
            read_local_file(classes_file, max_bytes=MAX_FLEET_FILE_BYTES, what="classes")
        )
        fleet = with_class_documents(fleet, {c.name: c for c in documents})
    spec = parse_rollout_spec(read_spec_file(spec_file))
    compare = parse_rollout_spec(read_spec_file(compare_file)) if compare_file is not None else None
    result = plan(fleet, spec, seed=seed, compare=compare)
    if html_out is not None:
        write_plan_page(result, html_out, title=f"Rollout plan: {fleet.name}")
    if as_json:
        echo_json(result)
    else:
        click.echo(render_plan(result))
        if html_out is not None:
            click.echo(f"\nplots: {html_out}", err=True)
