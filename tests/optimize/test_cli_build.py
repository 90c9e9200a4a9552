"""The ``edgefleet build`` command, through click, on the digits CNN."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgefleet.cli.main import cli

from .conftest import CPU_CLASS_TOML, Digits


def test_build_command_writes_artifacts(digits: Digits, tmp_path: Path) -> None:
    classes = tmp_path / "classes.toml"
    classes.write_text(CPU_CLASS_TOML)
    out = tmp_path / "out"
    args = ["build", str(digits.model), "--classes", str(classes), "--calibration", str(digits.calibration)]
    args += ["--validation", str(digits.validation), "--out", str(out), "--quick", "--release-counter", "3"]
    sustained = ["--sustained-s", "1"]
    result = CliRunner().invoke(cli, [*args, "--class", "cpu-small", "--name", "digits", *sustained])
    assert result.exit_code == 0, result.output
    assert "cpu-small:" in result.output
    assert "latency decided on: emulated" in result.output  # the class's limits, in fresh processes
    assert "emulated: sustained 1 s (" in result.output  # the chosen candidate's run under sustained load
    manifest = json.loads((out / "cpu-small" / "manifest.json").read_text())
    assert manifest["release_counter"] == 3
    assert manifest["model"] == "digits"
    assert (out / "report.html").is_file()
    assert not (out / "gpu-small").exists()
    no_emulate = [*args, "--class", "cpu-small", "--no-emulate", "--out", str(tmp_path / "o2")]
    quick = CliRunner().invoke(cli, no_emulate)  # the last --out wins
    assert quick.exit_code == 0, quick.output
    assert "latency decided on: host" in quick.output


def test_build_command_bad_input_exit_code(digits: Digits, tmp_path: Path) -> None:
    classes = tmp_path / "classes.toml"
    classes.write_text(CPU_CLASS_TOML)
    out = tmp_path / "out"
    args = ["build", str(digits.model), "--classes", str(classes), "--calibration", str(digits.calibration)]
    args += ["--validation", str(digits.validation), "--out", str(out), "--quick", "--class", "mars-rover"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 5, result.output
    assert "unknown_hardware_class" in result.output
    assert "cpu-small" in result.output  # what was expected
    assert not out.exists()
