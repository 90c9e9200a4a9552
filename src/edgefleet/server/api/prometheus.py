"""The Prometheus text exposition (0.0.4) of a fleet health answer: rendering only, nothing is judged here."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["prometheus_text"]


def _prom_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(health: dict[str, Any]) -> str:
    """Prometheus text exposition (0.0.4) of a ``fleet_health`` answer, one series per class and version."""
    lines: list[str] = []

    def metric(
        name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float | None]]
    ) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None or not math.isfinite(value):
                continue
            text = ",".join(f'{k}="{_prom_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    groups = [({"hardware_class": g["hardware_class"]}, g) for g in health["by_hardware_class"]]
    versions = [({"model_version": g["model_version"]}, g) for g in health["by_model_version"]]
    both = groups + versions
    metric(
        "edgefleet_fleet_request_rate",
        "gauge",
        "Inference requests per second over the window.",
        [(lab, g["request_rate_per_s"]) for lab, g in both],
    )
    metric(
        "edgefleet_fleet_error_ratio",
        "gauge",
        "Failed requests / requests over the window.",
        [(lab, g["error_rate"]) for lab, g in both],
    )
    metric(
        "edgefleet_fleet_latency_ms",
        "gauge",
        "Latency quantiles from merged device histograms.",
        [
            ({**lab, "quantile": q}, g["latency_ms"][f"p{int(float(q) * 100)}"])
            for lab, g in both
            for q in ("0.5", "0.95", "0.99")
        ],
    )
    shadowed = [(lab, g) for lab, g in versions if g["shadow"]["compared"]]
    metric(
        "edgefleet_fleet_shadow_agreement",
        "gauge",
        "Mean agreement of a shadow candidate with the active model over the window.",
        [(lab, g["shadow"]["agreement"]) for lab, g in shadowed],
    )
    metric(
        "edgefleet_fleet_shadow_comparisons",
        "gauge",
        "Shadow comparisons of a candidate version over the window.",
        [(lab, float(g["shadow"]["compared"])) for lab, g in shadowed],
    )
    metric(
        "edgefleet_fleet_reporting_devices",
        "gauge",
        "Devices with telemetry in the window.",
        [(lab, float(g["devices"])) for lab, g in both],
    )
    metric(
        "edgefleet_devices",
        "gauge",
        "Enrolled devices by connection status.",
        [({"status": s}, float(n)) for s, n in health["devices"]["by_status"].items()],
    )
    metric(
        "edgefleet_devices_stale_telemetry",
        "gauge",
        "Devices whose newest telemetry is stale.",
        [({}, float(health["devices"]["stale_data"]))],
    )
    metric(
        "edgefleet_telemetry_lag_seconds",
        "gauge",
        "Age of the newest telemetry window in the fleet.",
        [({}, health["data"]["lag_s"])],
    )
    metric(
        "edgefleet_degraded_seconds",
        "gauge",
        "Seconds served on each degraded rung over the window.",
        [({"rung": r}, float(s)) for r, s in health["totals"]["degraded_s"].items()],
    )
    metric(
        "edgefleet_fleet_input_faults",
        "gauge",
        "Requests refused for their input (NaN, wrong shape, out of range) over the window: not errors.",
        [(lab, float(g["input_faults"])) for lab, g in both],
    )
    field_signals = health.get("field") or {}
    metric(
        "edgefleet_devices_unhealthy",
        "gauge",
        "Devices with requests arriving but no successful inference for the configured time.",
        [({}, float(field_signals.get("unhealthy", 0)))],
    )
    metric(
        "edgefleet_devices_input_fault_surge",
        "gauge",
        "Devices whose input faults rose suddenly against their own day before (failing sensors).",
        [({}, float(field_signals.get("input_fault_surge", 0)))],
    )
    metric(
        "edgefleet_telemetry_dropped_records_total",
        "counter",
        "Records devices dropped under queue pressure.",
        [({"kind": k}, float(n)) for k, n in health["dropped"].items()],
    )
    return "\n".join(lines) + "\n"
