"""The class's sustained-latency budget: the rule (pure), device figures from a probe with sustained runs,
and a build whose class emulation runs the digits CNN under sustained load (a second or two; no timing
asserted)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgefleet.optimize import BuildConfig, run_build
from edgefleet.optimize.device_select import device_figures
from edgefleet.optimize.figures import Figures
from edgefleet.optimize.select import SUSTAINED_UNMEASURED, select_candidate, sustained_judgement
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import parse_classes_toml
from edgefleet.protocol.manifest import ArtifactManifest
from edgefleet.protocol.probe import SustainedFigures

from .conftest import Digits
from .test_device_select import _device, _probe
from .test_select import FP32, POLICY, host, lat, m

BUDGETED = replace(POLICY, sustained_latency_p95_ms=5.0, class_name="cart")


def run(last_p95_ms: float | None, *, first_p95_ms: float = 2.0) -> SustainedFigures:
    return SustainedFigures(
        duration_s=300.0,
        runs=1000,
        window_s=60.0,
        first_p95_ms=first_p95_ms,
        last_p95_ms=last_p95_ms,
        drift_ratio=None if last_p95_ms is None else last_p95_ms / first_p95_ms,
    )


def emulated(name: str, last_p95_ms: float | None, *, provider: str = "CPUExecutionProvider") -> Figures:
    return Figures(name, "emulated", "emu", provider, latency=lat(2.0), sustained=run(last_p95_ms))


def device(name: str, last_p95_ms: float) -> Figures:
    return Figures(name, "device", "probe", latency=lat(2.0), devices=1, sustained=run(last_p95_ms))


def test_no_budget_judges_nothing() -> None:
    assert sustained_judgement([emulated("int8", 99.0)], "int8", POLICY) == (None, False)


def test_a_last_window_p95_above_the_budget_refuses() -> None:
    miss, unmeasured = sustained_judgement([emulated("int8", 7.5)], "int8", BUDGETED)
    assert not unmeasured
    assert miss is not None
    assert "7.500 ms (emulated" in miss
    assert "budget 5.000 ms" in miss
    assert sustained_judgement([emulated("int8", 4.9)], "int8", BUDGETED) == (None, False)


def test_devices_judge_over_emulation() -> None:
    # the emulation on the build host was too slow, the devices are within the budget: the devices decide
    assert sustained_judgement([emulated("int8", 9.0), device("int8", 4.0)], "int8", BUDGETED) == (
        None,
        False,
    )
    miss, _ = sustained_judgement([emulated("int8", 1.0), device("int8", 6.0)], "int8", BUDGETED)
    assert miss is not None
    assert "(device" in miss


def test_the_build_host_and_a_stand_in_provider_never_judge_the_class() -> None:
    on_host = Figures("int8", "host", "host", "CPUExecutionProvider", latency=lat(2.0), sustained=run(99.0))
    assert sustained_judgement([on_host], "int8", BUDGETED) == (None, True)
    cuda = replace(BUDGETED, preferred_provider="CUDAExecutionProvider")
    assert sustained_judgement([emulated("int8", 99.0)], "int8", cuda) == (None, True)
    assert sustained_judgement([emulated("int8", None)], "int8", BUDGETED) == (
        None,
        True,
    )  # empty last window


def test_selection_refuses_over_budget_and_says_when_unmeasured() -> None:
    figures = [host("fp32", 2.0), host("int8", 1.0), emulated("fp32", 3.0), emulated("int8", 8.0)]
    sel = select_candidate([FP32, m("int8", 1024)], figures, BUDGETED)
    assert sel.chosen == "fp32"
    int8 = next(v for v in sel.verdicts if v.name == "int8")
    assert not int8.eligible
    assert any(r.startswith("sustained latency: last-window p95 8.000 ms") for r in int8.reasons)
    assert sel.sustained_unmeasured is None
    # no sustained run anywhere: not passed silently, not refused: unjudged, named, with the command
    sel = select_candidate([FP32, m("int8", 1024)], [host("fp32", 2.0), host("int8", 1.0)], BUDGETED)
    assert sel.chosen is not None
    assert sel.sustained_unmeasured is not None
    assert sel.sustained_unmeasured.startswith(f"{SUSTAINED_UNMEASURED} for fp32, int8")
    assert "--sustained-s" in sel.sustained_unmeasured
    assert SUSTAINED_UNMEASURED in sel.summary


def test_figures_keep_their_sustained_run_through_the_report() -> None:
    f = emulated("int8", 7.0)
    again = Figures.from_dict(json.loads(json.dumps(f.to_dict())))
    assert again.sustained == f.sustained


def test_the_class_budget_is_validated() -> None:
    text = """
[class.cart]
cpu_arch = "x86_64"
budgets = {{ ram_mb = 512, storage_mb = 1, max_model_mb = 10 }}
performance = {{ latency_p95_ms = 20.0, sustained_latency_p95_ms = {value} }}
"""
    assert parse_classes_toml(text.format(value=25.0))[0].performance.sustained_latency_p95_ms == 25.0
    with pytest.raises(InvalidDocumentError):
        parse_classes_toml(text.format(value=-1))


def _sustained_device(name: str, p50: float, last_p95_ms: float) -> dict:
    out = _device(name, p50, p50 * 1.5)
    out["sustained"] = run(last_p95_ms, first_p95_ms=p50 * 1.5).model_dump(mode="json")
    return out


def test_probe_figures_carry_the_worst_devices_sustained_run_into_the_selection() -> None:
    probe = _probe()
    probe["candidates"] = ["fp32", "int8"]
    probe["devices"][0]["results"]["candidates"] = [
        _sustained_device("fp32", 2.0, 3.0),
        _sustained_device("int8", 1.0, 2.0),
    ]
    probe["devices"][1]["results"]["candidates"] = [
        _sustained_device("fp32", 2.1, 3.5),
        _sustained_device("int8", 1.1, 6.5),  # this device throttles under sustained load
    ]
    figures, rows = device_figures(probe, ["fp32", "int8"])
    by = {f.candidate: f for f in figures}
    assert by["int8"].sustained is not None
    assert by["int8"].sustained.last_p95_ms == 6.5
    assert len(rows["int8"]["sustained"]) == 2
    sel = select_candidate([FP32, m("int8", 1024)], figures, BUDGETED)
    assert sel.place == "device"
    int8 = next(v for v in sel.verdicts if v.name == "int8")
    assert not int8.eligible
    assert any("6.500 ms (device" in r for r in int8.reasons)
    assert sel.chosen == "fp32"


SUSTAINED_CLASS = """
schema_version = 1
[class.hot-box]
cpu_arch = "x86_64"
precisions = ["fp32", "int8"]
threads = { intra_op = 1, inter_op = 1 }
budgets = { ram_mb = 1024, storage_mb = 2048, max_model_mb = 50 }
performance = { latency_p95_ms = 500.0, sustained_latency_p95_ms = 5000.0 }
"""


@pytest.mark.slow
def test_build_runs_each_candidate_under_sustained_load_in_the_emulation(
    digits: Digits, tmp_path: Path
) -> None:
    config = BuildConfig.test_size(latency_runs=30, sustained_s=1.5)
    out = tmp_path / "o"
    result = run_build(
        digits.model, parse_classes_toml(SUSTAINED_CLASS), digits.calibration, digits.validation, out, config
    )
    (cls,) = result.classes
    assert cls.emulation is not None
    assert cls.emulation["sustained_s"] == 1.5
    emulated_runs = {
        f.candidate: f.sustained for f in cls.figures if f.where == "emulated" and f.error is None
    }
    assert emulated_runs
    assert all(s is not None for s in emulated_runs.values())
    for s in emulated_runs.values():
        assert s is not None
        assert s.duration_s == 1.5
        assert s.window_s == pytest.approx(0.5)
        assert s.runs > 0
        assert s.first_p95_ms is not None
        assert s.last_p95_ms is not None
        assert s.drift_ratio == pytest.approx(s.last_p95_ms / s.first_p95_ms)
        assert s.thermal in ("available", "unavailable")
        if s.thermal == "unavailable":
            assert s.temp_rise_c is None
            assert s.throttle_events is None
    assert all(f.sustained is None for f in cls.figures if f.where == "host")  # the host never runs it
    # the budget was judged (generous: nothing refused for it), so nothing is left unmeasured
    assert cls.selection.sustained_unmeasured is None
    assert not any("sustained" in r for v in cls.selection.verdicts for r in v.reasons)
    report = json.loads((out / "report.json").read_text())
    entry = report["classes"][0]
    assert any(f["where"] == "emulated" and f["sustained"] for f in entry["figures"])
    assert entry["policy"]["sustained_latency_p95_ms"] == 5000.0
    manifest = ArtifactManifest.parse(json.loads((out / "hot-box" / "manifest.json").read_text()))
    chosen_run = next(
        f.sustained for f in cls.figures if f.where == "emulated" and f.candidate == cls.selection.chosen
    )
    assert chosen_run is not None
    assert manifest.metrics.sustained_last_p95_ms == chosen_run.last_p95_ms
    assert manifest.metrics.sustained_measured_on is not None
    assert manifest.metrics.sustained_measured_on.startswith("emulated: 1.5 s run")
    assert manifest.metrics.sustained_unmeasured is None
    html = (out / "report.html").read_text()
    assert "sustained 1.5 s" in html
    assert "drift x" in html
