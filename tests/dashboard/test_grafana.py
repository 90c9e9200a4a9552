"""The Grafana dashboard shipped in docs/grafana/edgefleet.json stays in step with /metrics: every metric it
queries is one the control plane exports (and every exported metric has a panel), and every label it filters
or groups by is a label that metric carries."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "edgefleet.json"
NAME = re.compile(r"\b(edgefleet_[a-z0-9_]+)")
SELECTOR = re.compile(r"\b(edgefleet_[a-z0-9_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\bby \(([^)]*)\) \((edgefleet_[a-z0-9_]+)")
SAMPLE = re.compile(r"^(edgefleet_[a-z0-9_]+)(?:\{([^}]*)\})? ", re.MULTILINE)


def _queries(dashboard: dict) -> list[str]:
    out = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    out += [v["query"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    return out


def _exported(world) -> tuple[set[str], dict[str, set[str]]]:
    fleet, _v1, v2, devices = world
    identity, ddir = devices[0]
    fleet.serve(identity, ddir, v2, requests=5, latency_ms=12, shadow_compared=5, shadow_agreement=0.9)
    r = fleet.client.get("/metrics", headers=fleet.admin)
    assert r.status_code == 200, r.text
    names = set(re.findall(r"^# TYPE (edgefleet_[a-z0-9_]+) ", r.text, re.MULTILINE))
    labels: dict[str, set[str]] = {}
    for name, text in SAMPLE.findall(r.text):
        labels.setdefault(name, set()).update(p.split("=")[0] for p in text.split(",") if p)
    return names, labels


def test_every_metric_and_label_the_dashboard_uses_is_exported_and_the_reverse(world) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names, labels = _exported(world)
    queries = _queries(dashboard)
    used = {name for q in queries for name in NAME.findall(q)}
    assert used, "the dashboard queries nothing"
    assert used <= names, f"not in /metrics: {sorted(used - names)}"
    assert names <= used, f"exported but on no panel: {sorted(names - used)}"
    for q in queries:
        for name, selector in SELECTOR.findall(q):
            for part in filter(None, (s.strip() for s in selector.split(","))):
                label = re.split(r"=~|!=|!~|=", part)[0]
                assert label in labels.get(name, set()), f"{name} has no label {label!r} ({q})"
        for grouping, name in GROUPING.findall(q):
            for label in (s.strip() for s in grouping.split(",")):
                assert label in labels.get(name, set()), f"{name} has no label {label!r} ({q})"
        for name, label in re.findall(r"label_values\((edgefleet_[a-z0-9_]+), ([a-z_]+)\)", q):
            assert label in labels.get(name, set())


def test_the_dashboard_is_importable_json_with_unique_panel_ids() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"]
    assert dashboard["title"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["type"] == "prometheus"
