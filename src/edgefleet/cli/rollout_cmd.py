"""``edgefleet rollout create|list|status|watch|pause|resume|promote|abort``: staged rollouts.

The server decides everything (docs/rollouts.md); this module turns flags into a rollout spec and renders
what the server reports: per stage, devices done / pending / failed / offline, and per gate, the observed
value against its threshold.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgefleet.cli.local_file import read_local_file
from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.pairs import parse_labels, parse_pairs
from edgefleet.cli.state import CliState, pass_state
from edgefleet.protocol.errors import InvalidDocumentError

if TYPE_CHECKING:
    from edgefleet.client.rollouts import RolloutInfo

__all__ = [
    "DEFAULT_STAGE_SIZES",
    "build_spec",
    "class_gate_rows",
    "duration_s",
    "gate_rows",
    "parse_stages",
    "render_rollout",
    "rollout",
    "watch_rollout",
]

DEFAULT_STAGE_SIZES = "1,5%,25%,100%"
"""The server's default stage sizes; used when ``--soak``/``--deadline`` are given without ``--stages``."""
MAX_SPEC_FILE_BYTES = 256 * 1024
MAX_STAGES = 20
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
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
    ("STATE", "state"),
]


# --- pure: flags -> spec ---------------------------------------------------------------------------------


def duration_s(text: str, what: str = "duration") -> float:
    """``90``, ``90s``, ``5m``, ``1.5h``, ``2d`` -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise InvalidDocumentError(
            f"invalid {what}", code="invalid_duration", expected="e.g. 90s, 5m, 1h, 2d", got=text
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_stages(text: str) -> list[dict[str, Any]]:
    """``'1,5%,25%,100%'`` -> ``[{"count": 1}, {"percent": 5.0}, ...]`` (a count, or a percent of the
    selected devices)."""
    items = [part.strip() for part in text.split(",")]
    if not items or len(items) > MAX_STAGES or any(not item for item in items):
        raise InvalidDocumentError(
            "invalid --stages",
            code="invalid_stages",
            expected=f"1..{MAX_STAGES} sizes like 1,5%,100%",
            got=text,
        )
    stages: list[dict[str, Any]] = []
    for item in items:
        try:
            if item.endswith("%"):
                percent = float(item[:-1])
                if not 0 < percent <= 100:
                    raise ValueError(item)
                stages.append({"percent": percent})
            else:
                count = int(item)
                if count < 1:
                    raise ValueError(item)
                stages.append({"count": count})
        except ValueError as exc:
            raise InvalidDocumentError(
                "invalid stage size",
                code="invalid_stages",
                expected="a device count >= 1 or a percent in (0, 100] like 25%",
                got=item,
            ) from exc
    return stages


def _gate_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("none", "off", "null"):
        return None
    try:
        return int(lowered)
    except ValueError:
        pass
    try:
        return float(lowered)
    except ValueError as exc:
        raise InvalidDocumentError(
            "invalid gate value", code="invalid_gate", expected="a number, or none/off", got=text
        ) from exc


def build_spec(
    *,
    base: Mapping[str, Any] | None = None,
    stages: str | None = None,
    soak_s: float | None = None,
    deadline_s: float | None = None,
    on_deadline: str | None = None,
    manual_promotion: bool = False,
    gates: Sequence[str] = (),
    enrolling: str | None = None,
) -> dict[str, Any] | None:
    """The rollout spec to send: ``base`` (a spec file) with the flags applied on top.

    Per-stage flags (soak, deadline, on-deadline, manual promotion, gates) apply to every stage. ``None``
    when nothing was asked for (the server's defaults apply)."""
    spec: dict[str, Any] = json.loads(json.dumps(dict(base or {})))
    if stages is not None:
        spec["stages"] = parse_stages(stages)
    per_stage: dict[str, Any] = {}
    if soak_s is not None:
        per_stage["soak_s"] = soak_s
    if deadline_s is not None:
        per_stage["deadline_s"] = deadline_s
    if on_deadline is not None:
        per_stage["on_deadline"] = on_deadline
    if manual_promotion:
        per_stage["manual_promotion"] = True
    gate_values: dict[str, Any] = {}
    for item in gates:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidDocumentError(
                "gates are name=value",
                code="invalid_gate",
                expected="e.g. max_latency_p95_ratio=1.2",
                got=item,
            )
        gate_values[key.strip()] = _gate_value(value)
    if (per_stage or gate_values) and "stages" not in spec:
        spec["stages"] = parse_stages(DEFAULT_STAGE_SIZES)
    for stage in spec.get("stages", []):
        if not isinstance(stage, dict):
            raise InvalidDocumentError(
                "each stage is an object", code="invalid_stages", expected="{count|percent, ...}", got=stage
            )
        stage.update(per_stage)
        if gate_values:
            stage["gates"] = {**stage.get("gates", {}), **gate_values}
    if enrolling is not None:
        spec["enrolling_devices"] = enrolling
    return spec or None


def _read_spec_file(path: Path) -> dict[str, Any]:
    raw = read_local_file(path, max_bytes=MAX_SPEC_FILE_BYTES, what="spec file")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidDocumentError(
            "spec file is not valid JSON", code="malformed_json", expected="a JSON object", got=str(exc)
        ) from exc
    if not isinstance(data, dict):
        raise InvalidDocumentError(
            "spec file must hold a JSON object",
            code="invalid_rollout",
            expected="{...}",
            got=type(data).__name__,
        )
    return data


# --- pure: the server's view -> what an operator reads ------------------------------------------------------


def _rate(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _health_gates(gates: Mapping[str, Any], health: Mapping[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """(gate, observed, threshold, max|min) for the gates judged on telemetry, from one set of numbers of the
    engine's evaluation (its top level, or one class of ``by_class``)."""
    requests = int(health.get("requests", 0))
    p95 = health.get("latency_p95_ms")
    baseline = health.get("baseline_p95_ms")
    ceiling = gates.get("max_latency_p95_ms") or health.get("class_p95_ms")
    return [
        ("error_rate", _rate(int(health.get("errors", 0)), requests), gates.get("max_error_rate"), "max"),
        ("latency_p95_ms", p95, ceiling, "max"),
        (
            "latency_p95_ratio",
            round(p95 / baseline, 3) if p95 is not None and baseline else None,
            gates.get("max_latency_p95_ratio"),
            "max",
        ),
        ("shadow_agreement", health.get("shadow_agreement"), gates.get("min_shadow_agreement"), "min"),
        ("reporting_devices", health.get("reporting_devices"), gates.get("min_reporting_devices"), "min"),
        ("requests", health.get("requests"), gates.get("min_requests"), "min"),
    ]


def _judged(
    rows: Sequence[tuple[str, Any, Any, str]], halt_reason: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Rows with a state; the gate ``halt_reason`` names is a BREACH with the halt's observed value."""
    breached = (halt_reason or {}).get("gate")
    out: list[dict[str, Any]] = []
    for gate, observed, threshold, kind in rows:
        if threshold is None:
            continue
        if gate == breached:
            observed = (halt_reason or {}).get("observed", observed)
            state = "BREACH"
        elif observed is None:
            state = "no data"
        elif kind == "max":
            state = "ok" if observed <= threshold else "BREACH"
        else:
            state = "ok" if observed >= threshold else "waiting"
        op = "<=" if kind == "max" else ">="
        out.append({"gate": gate, "observed": observed, "threshold": f"{op} {threshold}", "state": state})
    return out


def _current_gates(info: RolloutInfo) -> dict[str, Any] | None:
    if not info.stage_detail or info.stage >= len(info.stage_detail):
        return None
    gates: dict[str, Any] = info.stage_detail[info.stage].get("gates", {})
    return gates


def _health(info: RolloutInfo) -> dict[str, Any]:
    health: dict[str, Any] = (info.last_decision or {}).get("health") or {}
    return health


def gate_rows(info: RolloutInfo) -> list[dict[str, Any]]:
    """The current stage's gates: observed value, threshold and state (ok / BREACH / waiting / no data).

    Observed values come from the top level of the engine's last evaluation (``last_decision.health``: one
    class, the one a halt or a wait names, else the one closest to its envelope); install failures are
    counted over every exposed stage and every class, like the policy does for one class."""
    gates = _current_gates(info)
    if gates is None:
        return []
    exposed = info.stage_detail[: info.stage + 1]
    failed = sum(int(s.get("failed", 0)) for s in exposed)
    finished = failed + sum(int(s.get("done", 0)) for s in exposed)
    install = ("install_failure_rate", _rate(failed, finished), gates.get("max_install_failure_rate"), "max")
    return _judged([install, *_health_gates(gates, _health(info))], info.halt_reason)


def class_gate_rows(info: RolloutInfo) -> dict[str, list[dict[str, Any]]]:
    """Per hardware class (``last_decision.health.by_class``): the current stage's telemetry gates on that
    class's own numbers, against its own envelope and its own previous version, as the engine judges them.

    A halt marks the breached gate only in the class it names. Install failures are counted per class when
    the engine's snapshot has that class's ``done``/``failed`` (servers from this release on); otherwise
    they are only in ``gate_rows``, over every class."""
    gates = _current_gates(info)
    by_class = _health(info).get("by_class")
    if gates is None or not isinstance(by_class, dict):
        return {}
    halt = info.halt_reason or {}
    out: dict[str, list[dict[str, Any]]] = {}
    for name, raw in sorted(by_class.items()):
        health = raw if isinstance(raw, dict) else {}
        rows = _health_gates(gates, health)
        if "done" in health and "failed" in health:
            failed, done = int(health["failed"]), int(health["done"])
            limit = gates.get("max_install_failure_rate")
            rows = [("install_failure_rate", _rate(failed, failed + done), limit, "max"), *rows]
        out[name] = _judged(rows, halt if halt.get("hardware_class") == name else None)
    return out


def _gate_document(info: RolloutInfo) -> dict[str, Any]:
    """What ``status --json`` and each ``watch --json`` line print: the server's document and the gates."""
    return {**info.model_dump(mode="json"), "gates": gate_rows(info), "gates_by_class": class_gate_rows(info)}


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
    """One gate table; for a rollout of several classes, the install gate over all of them and then one
    table per class (each against its own envelope and previous version)."""
    gates = gate_rows(info)
    by_class = class_gate_rows(info)
    if len(by_class) < 2:
        return ["", format_table(gates, _GATE_COLUMNS)] if gates else []
    lines: list[str] = []
    per_class_installs = any(g["gate"] == "install_failure_rate" for rows in by_class.values() for g in rows)
    install = [g for g in gates if g["gate"] == "install_failure_rate"]
    if install and not per_class_installs:
        lines += ["", "gates of every class", format_table(install, _GATE_COLUMNS)]
    health = _health(info).get("by_class") or {}
    for name, rows in by_class.items():
        envelope = (health.get(name) or {}).get("class_p95_ms")
        title = f"gates of class {name}" + (f" (envelope p95 {envelope:g} ms)" if envelope else "")
        lines += ["", title, format_table(rows, _GATE_COLUMNS) if rows else "(no gates)"]
    return lines


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
    if info.selector:
        lines.append("selector " + ",".join(f"{k}={v}" for k, v in sorted(info.selector.items())))
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
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A rollout spec as JSON; the flags above apply on top.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def create_cmd(
    state: CliState,
    model: str,
    targets: tuple[str, ...],
    labels: tuple[str, ...],
    slot: str,
    stages: str | None,
    soak: str | None,
    deadline: str | None,
    on_deadline: str | None,
    manual_promotion: bool,
    gates: tuple[str, ...],
    enrolling: str | None,
    spec_file: Path | None,
    as_json: bool,
) -> None:
    """Start a rollout of MODEL to one artifact per hardware class."""
    spec = build_spec(
        base=_read_spec_file(spec_file) if spec_file is not None else None,
        stages=stages,
        soak_s=duration_s(soak, "--soak") if soak is not None else None,
        deadline_s=duration_s(deadline, "--deadline") if deadline is not None else None,
        on_deadline=on_deadline,
        manual_promotion=manual_promotion,
        gates=gates,
        enrolling=enrolling,
    )
    with state.client() as client:
        info = client.create_rollout(
            model,
            parse_pairs(targets, what="--target", code="invalid_target", require_value=True),
            selector=parse_labels(labels),
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
        echo_json(_gate_document(info))
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
            click.echo(json.dumps(_gate_document(info), sort_keys=True, separators=(",", ":")))
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
