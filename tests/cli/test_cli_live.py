"""The CLI against a real server on loopback: the console script end to end, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgefleet.cli.exit_codes import ExitCode

from .conftest import EXAMPLE_CLASSES, Cli


def test_console_script_end_to_end(live_server: Any, demo_artifact: Any, tmp_path: Path) -> None:
    """Bootstrap a token straight into the database, then apply, register, push, list, show and pull."""
    bootstrap = Cli(live_server, None).script(
        "token", "create", "--name", "e2e", "--role", "operator", "--data-dir", str(live_server.data_dir)
    )
    assert bootstrap.code == 0, bootstrap.err
    token = bootstrap.out.strip()
    assert token.startswith("efop_")
    cli = Cli(live_server, token)

    applied = cli.script("class", "apply", str(EXAMPLE_CLASSES))
    assert applied.code == 0, applied.err
    assert "created    jetson-vision-standard" in applied.out
    assert "4 classes applied: 4 created, 0 updated, 0 unchanged" in applied.out

    listed = cli.script("class", "list", "--json")
    assert listed.code == 0
    page = json.loads(listed.out)
    assert page["total"] == 4
    assert {c["name"] for c in page["items"]} >= {"medical-cart-cpu", "factory-gateway-gpu"}

    shown = cli.script("class", "show", "intel-lowpower-detector")
    assert shown.code == 0
    assert any(line.split() == ["budgets.max_model_mb", "25.0"] for line in shown.out.splitlines())

    directory, source = demo_artifact()
    assert cli.script("model", "create", "demo-linear", "--label", "team=vision").code == 0
    added = cli.script("model", "version", "add", "demo-linear", "1.0.0", str(source))
    assert added.code == 0, added.err

    pushed = cli.script("artifact", "push", str(directory), "--json")
    assert pushed.code == 0, pushed.err
    artifact_id = json.loads(pushed.out)["id"]

    table = cli.script("artifact", "list")
    assert table.code == 0
    header, row = table.out.splitlines()[:2]
    assert header.split() == ["ID", "MODEL", "VERSION", "CLASS", "RELEASE", "DISABLED", "CREATED"]
    assert row.split()[:6] == [artifact_id, "demo-linear", "1.0.0", "medical-cart-cpu", "1", "no"]

    shown_artifact = cli.script("artifact", "show", artifact_id, "--json")
    assert json.loads(shown_artifact.out)["manifest"]["entrypoint"] == "model.onnx"

    out = tmp_path / "pulled"
    pulled = cli.script("artifact", "pull", artifact_id, "--out", str(out))
    assert pulled.code == 0, pulled.err
    for name in ("model.onnx", "golden.npz"):
        assert (out / name).read_bytes() == (directory / name).read_bytes()
    assert json.loads((out / "manifest.json").read_text())["model"] == "demo-linear"


def test_bad_inputs_through_the_console_script(
    operator_cli: Cli, viewer_cli: Cli, demo_artifact: Any, tmp_path: Path
) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[class.broken\n", encoding="utf-8")
    result = operator_cli.script("class", "apply", str(bad_toml))
    assert result.code == ExitCode.INVALID_INPUT
    assert result.err.startswith("error [malformed_toml]: classes file is not valid TOML")

    result = operator_cli.script("class", "list", token=None)
    assert result.code == ExitCode.AUTH
    assert "error [token_missing]" in result.err

    result = operator_cli.script("class", "list", token="efop_" + "A" * 43)
    assert result.code == ExitCode.AUTH
    assert "error [unauthenticated]" in result.err

    result = viewer_cli.script("class", "apply", str(EXAMPLE_CLASSES))
    assert result.code == ExitCode.AUTH
    assert "error [permission_denied]" in result.err
    assert viewer_cli.script("class", "list", "--json").out.count('"name"') == 0  # nothing was written

    directory, source = demo_artifact(hardware_class="no-such-class")
    assert operator_cli.script("model", "create", "demo-linear").code == 0
    assert operator_cli.script("model", "version", "add", "demo-linear", "1.0.0", str(source)).code == 0
    result = operator_cli.script("artifact", "push", str(directory))
    assert result.code == ExitCode.NOT_FOUND
    assert "error [class_not_found]" in result.err


def test_conflicts_and_not_found_in_process(operator_cli: Cli, demo_artifact: Any, tmp_path: Path) -> None:
    assert operator_cli("class", "apply", str(EXAMPLE_CLASSES)).code == 0
    again = operator_cli("class", "apply", str(EXAMPLE_CLASSES))
    assert "4 classes applied: 0 created, 0 updated, 4 unchanged" in again.out

    missing = operator_cli("class", "show", "no-such-class")
    assert missing.code == ExitCode.NOT_FOUND
    assert missing.err.startswith("error [class_not_found]")

    assert operator_cli("model", "create", "demo-linear").code == 0
    duplicate = operator_cli("model", "create", "demo-linear")
    assert duplicate.code == ExitCode.CONFLICT
    assert "error [model_exists]" in duplicate.err

    directory, source = demo_artifact()
    assert operator_cli("model", "version", "add", "demo-linear", "1.0.0", str(source)).code == 0
    pushed = operator_cli("artifact", "push", str(directory), "--json")
    artifact_id = json.loads(pushed.out)["id"]

    in_use = operator_cli("class", "delete", "medical-cart-cpu")
    assert in_use.code == ExitCode.CONFLICT
    assert "error [class_in_use]" in in_use.err

    out = tmp_path / "occupied"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    occupied = operator_cli("artifact", "pull", artifact_id, "--out", str(out))
    assert occupied.code == ExitCode.CONFLICT
    assert "error [destination_exists]" in occupied.err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]

    models = operator_cli("model", "list", "--json")
    assert [m["name"] for m in json.loads(models.out)["items"]] == ["demo-linear"]
    shown = operator_cli("model", "show", "demo-linear")
    assert "versions     1" in shown.out


def test_tampered_local_file_is_refused_before_upload(operator_cli: Cli, demo_artifact: Any) -> None:
    directory, _ = demo_artifact()
    (directory / "golden.npz").write_bytes(b"tampered")
    result = operator_cli("artifact", "push", str(directory))
    assert result.code == ExitCode.INVALID_INPUT
    assert "error [length_mismatch]" in result.err
    assert "golden.npz" in result.err


def test_oversized_upload_is_refused(live_server_factory: Any, tmp_path: Path) -> None:
    server = live_server_factory(max_blob_bytes=64 * 1024)
    cli = Cli(server, server.admin_token)
    assert cli("model", "create", "big").code == 0
    source = tmp_path / "big.onnx"
    source.write_bytes(b"\0" * (256 * 1024))
    result = cli("model", "version", "add", "big", "1.0.0", str(source))
    assert result.code == ExitCode.INVALID_INPUT
    assert "error [payload_too_large]" in result.err
    assert "versions     0" in cli("model", "show", "big").out
