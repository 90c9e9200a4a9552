"""Rollout flags -> a rollout spec (pure, besides reading a spec file): stage sizes, durations, gates."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgefleet.cli.local_file import read_local_file
from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["DEFAULT_STAGE_SIZES", "build_spec", "duration_s", "parse_stages", "read_spec_file"]

DEFAULT_STAGE_SIZES = "1,5%,25%,100%"
"""The server's default stage sizes; used when ``--soak``/``--deadline`` are given without ``--stages``."""
MAX_SPEC_FILE_BYTES = 256 * 1024
MAX_STAGES = 20
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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
    ignore_windows: bool = False,
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
    if ignore_windows:
        spec["ignore_windows"] = True
    return spec or None


def read_spec_file(path: Path) -> dict[str, Any]:
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
