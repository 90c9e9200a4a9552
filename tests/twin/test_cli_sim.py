"""``edgefleet sim run``: text, --json, --html and --compare, and its errors' codes and exit status."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgefleet.cli.exit_codes import ExitCode
from edgefleet.cli.main import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "twin"


def _sim(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["sim", "run", *args])
    return result.exit_code, result.stdout, result.stderr


def test_sim_run_text_json_html_and_compare(tmp_path: Path) -> None:
    fleet, spec = str(EXAMPLES / "quickstart-v2.toml"), str(EXAMPLES / "quickstart-rollout-v2.json")
    code, out, _ = _sim(fleet, "--rollout", spec)
    assert code == 0, out
    assert "HALTED" in out
    assert "gate latency_p95_ratio" in out
    assert "exposure to a bad model: peak 1 devices" in out
    page = tmp_path / "plan.html"
    code, out, _ = _sim(fleet, "--rollout", spec, "--compare", str(EXAMPLES / "quickstart-rollout-v1.json"),
                        "--json", "--html", str(page), "--seed", "4")  # fmt: skip
    assert code == 0, out
    data = json.loads(out)
    assert data["seed"] == 4
    assert [r["label"] for r in data["runs"]] == ["spec", "compare"]
    assert [r["outcome"] for r in data["runs"]] == ["halted", "halted"]
    html = page.read_text()
    assert html.count("<svg") >= 2
    assert "devices running the candidate" in html


def test_sim_run_bad_inputs(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "quickstart-rollout-v2.json")
    bad_fleet = tmp_path / "fleet.toml"
    bad_fleet.write_text("[classes.medical-cart-cpu]\ndevices = 3\noutages = { fraction = 1.5 }\n")
    code, _, err = _sim(str(bad_fleet), "--rollout", spec)
    assert code == ExitCode.INVALID_INPUT
    assert "invalid_fleet" in err
    assert "classes.medical-cart-cpu.outages.fraction" in err
    bad_spec = tmp_path / "spec.json"
    bad_spec.write_text(json.dumps({"stages": [{"percent": 0}]}))
    code, _, err = _sim(str(EXAMPLES / "quickstart-v2.toml"), "--rollout", str(bad_spec))
    assert code == ExitCode.INVALID_INPUT
    assert "invalid_document" in err
    assert "spec.stages.0.percent" in err


def test_sim_run_checks_the_fleet_against_a_classes_file(tmp_path: Path) -> None:
    classes = str(EXAMPLES.parent / "hardware-classes.toml")
    spec = str(EXAMPLES / "rollout.json")
    fleet = str(EXAMPLES / "quickstart-v2.toml")
    code, out, _ = _sim(
        fleet, "--rollout", str(EXAMPLES / "quickstart-rollout-v2.json"), "--classes", classes
    )
    assert code == 0, out
    unknown = tmp_path / "fleet.toml"
    unknown.write_text("[classes.toaster-oven]\ndevices = 3\n")
    code, _, err = _sim(str(unknown), "--rollout", spec, "--classes", classes)
    assert code == ExitCode.INVALID_INPUT
    assert "unknown_hardware_class" in err
    assert "classes.toaster-oven" in err
