"""The example Prometheus alert rules in docs/prometheus/edgefleet-alerts.yml parse as a rules file and name
only series (and labels) that /metrics exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from tests.dashboard.test_grafana import NAME, SELECTOR, _exported

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "edgefleet-alerts.yml"
DURATION = re.compile(r"^[0-9]+[smhd]$")


def _rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_file_has_the_shape_prometheus_loads() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    names = [g["name"] for g in document["groups"]]
    assert len(names) == len(set(names))
    alerts = [r["alert"] for r in _rules()]
    assert len(alerts) == len(set(alerts))
    for rule in _rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert isinstance(rule["expr"], str)
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
        assert rule["expr"].count("{") == rule["expr"].count("}"), rule["expr"]
        assert "for" not in rule or DURATION.match(rule["for"]), rule
        assert rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}


def test_every_series_and_label_the_rules_use_is_exported(world) -> None:
    names, labels = _exported(world)
    used = {name for rule in _rules() for name in NAME.findall(rule["expr"])}
    assert used <= names, f"not in /metrics: {sorted(used - names)}"
    assert "edgefleet_devices" in used
    checked = 0
    for rule in _rules():
        for name, selector in SELECTOR.findall(rule["expr"]):
            if name not in labels:
                continue  # no sample in this small fleet (e.g. no degraded time): its labels are not seen
            for part in filter(None, (s.strip() for s in selector.split(","))):
                label = re.split(r"=~|!=|!~|=", part)[0]
                assert label in labels[name], f"{name} has no label {label!r} ({rule['alert']})"
                checked += 1
    assert checked >= 4  # devices{status}, error ratio and latency by class, latency quantile
