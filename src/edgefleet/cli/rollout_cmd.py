"""``edgefleet rollout create|list|status|watch|pause|resume|promote|abort``: staged rollouts.

The server decides everything (docs/rollouts.md); this module sends the spec (``rollout_spec``) and renders
what the server reports: per stage, devices done / pending / failed / offline, and the gate rows the
engine judged (observed value, threshold, verdict and why), never judging a gate itself.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.pairs import parse_labels, parse_pairs
from edgefleet.cli.rollout_spec import DEFAULT_STAGE_SIZES, build_spec, duration_s, read_spec_file
from edgefleet.cli.state import CliState, pass_state

if TYPE_CHECKING:
    from edgefleet.client.rollouts import RolloutInfo

__all__ = [
    "gate_rows",
    "render_rollout",
    "rollout",
    "watch_rollout",
]

_ENDED = ("completed", "halted", "aborted")

_LIST_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("MODEL", "model"),
    ("STATUS", "status"),
    ("STAGE", "stage_text"),
    ("TARGETS", "targets_text"),
    ("SELECTOR", "selector"),
    ("CREATED_BY", "created_by"),
    ("CREATED", "created_at"),
]
_STAGE_COLUMNS: list[Column] = [
    ("STAGE", "number"),
    ("SIZE", "size"),
    ("MEMBERS", "members"),
    ("STATE", "state"),
    ("DONE", "done"),
    ("PENDING", "pending"),
    ("FAILED", "failed"),
    ("OFFLINE", "offline"),
    ("SOAK_S", "soak_s"),
]
_GATE_COLUMNS: list[Column] = [
    ("GATE", "gate"),
    ("OBSERVED", "observed"),
    ("THRESHOLD", "threshold"),
    ("VERDICT", "verdict"),
    ("WHY", "why"),
]


# --- pure: the server's view -> what an operator reads ------------------------------------------------------


def gate_rows(info: RolloutInfo) -> dict[str, list[dict[str, Any]]]:
    """The gates of the engine's last evaluation (``last_decision.gates``), per hardware class, as table
    rows. The server judged them (one ``evaluate_gates``); this only lays them out."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in (info.last_decision or {}).get("gates") or []:
        op = "<=" if row.get("comparison") == "max" else ">="
        threshold = row.get("threshold")
        out.setdefault(str(row.get("hardware_class", "")), []).append(
            {
                "gate": row.get("name"),
                "observed": row.get("observed"),
                "threshold": f"{op} {threshold}" if threshold is not None else "-",
                "verdict": row.get("verdict"),
                "why": row.get("why", ""),
            }
        )
    return out


def _size_text(spec_stage: Mapping[str, Any]) -> str:
    if spec_stage.get("count") is not None:
        return str(spec_stage["count"])
    return f"{float(spec_stage.get('percent') or 0):g}%"


def _stage_rows(info: RolloutInfo) -> list[dict[str, Any]]:
    spec_stages = (info.spec or {}).get("stages", [])
    rows = []
    for detail in info.stage_detail:
        index = int(detail.get("index", 0))
        rows.append(
            {
                **detail,
                "number": f"{index + 1}/{info.stages}",
                "size": _size_text(spec_stages[index]) if index < len(spec_stages) else "-",
                "state": detail.get("state"),
            }
        )
    return rows


def _gate_blocks(info: RolloutInfo) -> list[str]:
    """One gate table, or one per class for a rollout of several classes (each against its own envelope
    and its own previous version)."""
    tables = gate_rows(info)
    if len(tables) == 1:
        return ["", format_table(next(iter(tables.values())), _GATE_COLUMNS)]
    lines: list[str] = []
    for name, rows in tables.items():
        lines += ["", f"gates of class {name}", format_table(rows, _GATE_COLUMNS)]
    return lines


def transfer_line(transfer: dict[str, Any]) -> str:
    """``downloads  3 installs (2 through deltas): 1.2 MiB of 9.8 MiB, 88 % saved; fallbacks ...``"""
    mib = 1024 * 1024
    line = (
        f"downloads  {transfer['installs']} installs ({transfer['installs_through_delta']} through deltas): "
        f"{transfer['bytes_downloaded'] / mib:.1f} MiB of {transfer['full_bytes'] / mib:.1f} MiB, "
        f"{transfer['saved_fraction']:.0%} saved"
    )
    fallbacks = transfer.get("delta_fallbacks") or {}
    if fallbacks:
        line += "; delta fallbacks " + ", ".join(f"{k}={v}" for k, v in fallbacks.items())
    return line


def render_rollout(info: RolloutInfo) -> str:
    """The status view: summary, stages, the current stage's gates, why it waits or stopped, last events."""
    targets = ", ".join(
        f"{cls}: {t.get('from') or '-'} -> {t.get('to')}" for cls, t in sorted(info.targets.items())
    )
    decision = info.last_decision or {}
    lines = [
        f"rollout {info.id}  model {info.model}  slot {info.slot}  status {info.status.upper()}",
        f"stage {info.stage + 1}/{info.stages} since {info.stage_started_at}",
        f"targets  {targets}",
    ]
    if isinstance(info.selector, str):
        lines.append("selector " + info.selector)
    elif info.selector:
        lines.append("selector " + ",".join(f"{k}={v}" for k, v in sorted(info.selector.items())))
    if info.transfer and info.transfer.get("installs"):
        lines.append(transfer_line(info.transfer))
    lines += ["", format_table(_stage_rows(info), _STAGE_COLUMNS)]
    lines += _gate_blocks(info)
    if info.halt_reason:
        reason = ", ".join(f"{k}={v}" for k, v in info.halt_reason.items())
        lines += ["", f"stopped: {reason}"]
    elif decision:
        decision_reason = dict(decision.get("reason") or {})
        note = decision_reason.pop("note", None) or decision.get("action")
        extra = ", ".join(f"{k}={v}" for k, v in decision_reason.items())
        lines += ["", f"engine: {note}" + (f" ({extra})" if extra else "")]
        if decision.get("pending_count"):
            shown = ", ".join(decision.get("pending", [])[:10])
            more = decision["pending_count"] - min(10, len(decision.get("pending", [])))
            lines.append(f"pending: {shown}" + (f" and {more} more" if more > 0 else ""))
    if info.events:
        lines += ["", "events:"]
        for event in info.events[-8:]:
            details = {k: v for k, v in (event.get("details") or {}).items() if k not in ("targets",)}
            summary = ", ".join(f"{k}={v}" for k, v in details.items() if v not in ("", None))
            lines.append(
                f"  {event.get('at')}  {event.get('kind'):<9} by {event.get('actor')}  {summary}".rstrip()
            )
    return "\n".join(lines)


# --- commands ---------------------------------------------------------------------------------------


@click.group("rollout")
def rollout() -> None:
    """Staged rollouts gated on live model health (docs/rollouts.md)."""


@rollout.command("create")
@click.option("--model", required=True, help="Model name.")
@click.option(
    "--target", "targets", multiple=True, required=True, help="CLASS=ARTIFACT_ID (repeatable, one per class)."
)
@click.option("--label", "labels", multiple=True, help="key=value devices must carry (repeatable).")
@click.option(
    "--selector",
    "selector_text",
    default=None,
    help="label selector of the devices, e.g. 'site=plant-3,line!=2' (instead of --label).",
)
@click.option("--slot", default="default", show_default=True)
@click.option("--stages", default=None, help=f"Stage sizes, e.g. '{DEFAULT_STAGE_SIZES}' (the default).")
@click.option("--soak", default=None, help="Soak time of every stage: 90s, 5m, 1h.")
@click.option("--deadline", default=None, help="Deadline of every stage for pending (offline) devices.")
@click.option(
    "--on-deadline",
    type=click.Choice(["wait", "proceed", "halt"]),
    default=None,
    help="What a deadline does.",
)
@click.option("--manual", "manual_promotion", is_flag=True, help="Every stage waits for `rollout promote`.")
@click.option("--gate", "gates", multiple=True, help="name=value for every stage, e.g. max_error_rate=0.02.")
@click.option(
    "--enrolling", type=click.Choice(["old", "new"]), default=None, help="What enrolling devices get."
)
@click.option(
    "--ignore-windows",
    is_flag=True,
    help="Urgent: devices switch whatever their update window (audited as rollout.windows_overridden).",
)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A rollout spec as JSON; the flags above apply on top.",
)
@click.option(
    "--dry-run", "dry_run", is_flag=True, help="Plan it on the server's twin of the fleet; nothing starts."
)
@click.option("--seed", type=int, default=0, show_default=True, help="With --dry-run: the twin's seed.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --dry-run: also write an HTML page with plots.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@pass_state
def create_cmd(
    state: CliState,
    model: str,
    targets: tuple[str, ...],
    labels: tuple[str, ...],
    selector_text: str | None,
    slot: str,
    stages: str | None,
    soak: str | None,
    deadline: str | None,
    on_deadline: str | None,
    manual_promotion: bool,
    gates: tuple[str, ...],
    enrolling: str | None,
    ignore_windows: bool,
    spec_file: Path | None,
    dry_run: bool,
    seed: int,
    html_out: Path | None,
    as_json: bool,
) -> None:
    """Start a rollout of MODEL to one artifact per hardware class (``--dry-run``: plan it only)."""
    spec = build_spec(
        base=read_spec_file(spec_file) if spec_file is not None else None,
        stages=stages,
        soak_s=duration_s(soak, "--soak") if soak is not None else None,
        deadline_s=duration_s(deadline, "--deadline") if deadline is not None else None,
        on_deadline=on_deadline,
        manual_promotion=manual_promotion,
        gates=gates,
        enrolling=enrolling,
        ignore_windows=ignore_windows,
    )
    if selector_text is not None and labels:
        raise click.UsageError("give --selector or --label, not both")
    selector: dict[str, str] | str = selector_text if selector_text is not None else parse_labels(labels)
    if dry_run:
        _dry_run(state, model, targets, selector, slot, spec, seed=seed, html_out=html_out, as_json=as_json)
        return
    with state.client() as client:
        info = client.create_rollout(
            model,
            parse_pairs(targets, what="--target", code="invalid_target", require_value=True),
            selector=selector,
            slot=slot,
            spec=spec,
        )
    if as_json:
        echo_json(info)
        return
    sizes = ", ".join(str(s.get("members", 0)) for s in info.stage_detail)
    total = sum(int(s.get("members", 0)) for s in info.stage_detail)
    click.echo(info.id)
    click.echo(f"rollout of {info.model}: {total} devices in {info.stages} stages ({sizes})", err=True)


def _dry_run(
    state: CliState,
    model: str,
    targets: tuple[str, ...],
    selector: dict[str, str] | str,
    slot: str,
    spec: dict[str, Any] | None,
    *,
    seed: int,
    html_out: Path | None,
    as_json: bool,
) -> None:
    from edgefleet.cli.sim_cmd import render_plan, write_plan_page

    with state.client() as client:
        result = client.plan_rollout(
            model,
            parse_pairs(targets, what="--target", code="invalid_target", require_value=True),
            selector=selector,
            slot=slot,
            spec=spec,
            seed=seed,
        )
    if html_out is not None:
        write_plan_page(result, html_out, title=f"Rollout plan: {model}")
    if as_json:
        echo_json(result)
        return
    click.echo(render_plan(result))
    click.echo("\ndry run: nothing was started", err=True)


@rollout.command("list")
@click.option(
    "--status", type=click.Choice(["running", "paused", "halted", "completed", "aborted"]), default=None
)
@click.option("--model", default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def list_cmd(
    state: CliState, status: str | None, model: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """List rollouts, newest first."""
    with state.client() as client:
        page = client.list_rollouts(status=status, model=model, limit=limit, offset=offset)
    if as_json:
        echo_json(page)
        return
    rows = []
    for item in page.items:
        row = item.model_dump(mode="json")
        row["stage_text"] = f"{item.stage + 1}/{item.stages}"
        row["targets_text"] = ",".join(f"{c}={t.get('to')}" for c, t in sorted(item.targets.items()))
        rows.append(row)
    click.echo(format_table(rows, _LIST_COLUMNS))
    if page.total > offset + len(page.items):
        click.echo(f"({len(page.items)} of {page.total}; use --offset {offset + len(page.items)} for more)")


@rollout.command("status")
@click.argument("rollout_id")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def status_cmd(state: CliState, rollout_id: str, as_json: bool) -> None:
    """One rollout: stages, gates against thresholds, pending devices, recent events."""
    with state.client() as client:
        info = client.get_rollout(rollout_id)
    if as_json:
        echo_json(info)
        return
    click.echo(render_rollout(info))


def watch_rollout(
    fetch: Callable[[], RolloutInfo],
    emit: Callable[[RolloutInfo], None],
    *,
    interval_s: float,
    sleep: Callable[[float], None] = time.sleep,
    max_polls: int | None = None,
) -> RolloutInfo:
    """Fetch until the rollout ends, emitting each view that differs from the previous one."""
    previous: dict[str, Any] | None = None
    polls = 0
    while True:
        info = fetch()
        polls += 1
        current = info.model_dump(mode="json")
        if current != previous:
            emit(info)
            previous = current
        if info.status in _ENDED or (max_polls is not None and polls >= max_polls):
            return info
        sleep(interval_s)


@rollout.command("watch")
@click.argument("rollout_id")
@click.option("--interval", default="2s", show_default=True, help="How often to refresh.")
@click.option("--json", "as_json", is_flag=True, help="Stream one JSON object per change (NDJSON).")
@pass_state
def watch_cmd(state: CliState, rollout_id: str, interval: str, as_json: bool) -> None:
    """Follow a rollout live until it completes (exit 0), halts or is aborted (exit 1)."""
    interval_s = max(0.2, duration_s(interval, "--interval"))
    tty = sys.stdout.isatty() and not as_json

    def emit(info: RolloutInfo) -> None:
        if as_json:
            click.echo(json.dumps(info.model_dump(mode="json"), sort_keys=True, separators=(",", ":")))
            return
        if tty:
            click.clear()
        else:
            click.echo("")
        click.echo(render_rollout(info))

    with state.client() as client:
        final = watch_rollout(lambda: client.get_rollout(rollout_id), emit, interval_s=interval_s)
    if final.status != "completed":
        raise SystemExit(1)


def _action(name: str, doc: str) -> click.Command:
    @click.argument("rollout_id")
    @click.option("--reason", default="", help="Why (kept in the rollout's events and the audit log).")
    @click.option("--json", "as_json", is_flag=True)
    @pass_state
    def command(state: CliState, rollout_id: str, reason: str, as_json: bool) -> None:
        with state.client() as client:
            info = client.rollout_action(rollout_id, name, reason=reason)
        if as_json:
            echo_json(info)
            return
        click.echo(f"{info.id}: {name} -> {info.status} (stage {info.stage + 1}/{info.stages})")

    command.__doc__ = doc
    return rollout.command(name)(command)


pause_cmd = _action("pause", "Pause: no stage advances; gates are still checked and a breach still halts.")
resume_cmd = _action("resume", "Resume a paused rollout.")
promote_cmd = _action(
    "promote", "Grant manual promotion of the current stage (it advances once its gates pass)."
)
abort_cmd = _action(
    "abort", "Abort: stop and roll every device the rollout touched back to its previous artifact."
)
