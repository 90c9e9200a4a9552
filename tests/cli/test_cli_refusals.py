"""Inputs the CLI and the API refuse instead of answering something misleading, against a real server on
loopback: a malformed artifact id, a setting given twice, class windows that can never be meant, a
conflicting configuration write (retried), and every failure of a ``--json`` command printed as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from edgefleet.cli.exit_codes import ExitCode
from edgefleet.cli.main import cli
from edgefleet.cli.state import CliState
from edgefleet.client.agent_config import CONFLICT_RETRIES

from .conftest import EXAMPLE_CLASSES, Cli


def _json_error(stdout: str) -> dict[str, Any]:
    body = json.loads(stdout)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


def test_a_json_command_that_fails_prints_the_api_error_body_as_json(admin_cli: Cli) -> None:
    missing = admin_cli("class", "show", "no-such-class", "--json")
    assert missing.code == ExitCode.NOT_FOUND
    assert _json_error(missing.out)["code"] == "class_not_found"
    assert "error [class_not_found]" in missing.err  # the text on stderr stays

    refused = admin_cli(
        "audit", "list", "--since", "2030-01-01T00:00:00Z", "--until", "2020-01-01T00:00:00Z", "--json"
    )
    assert refused.code == ExitCode.INVALID_INPUT
    error = _json_error(refused.out)
    assert error["code"] == "invalid_time_range"
    assert error["details"]["expected"] == "since < until"

    plain = admin_cli("class", "show", "no-such-class")
    assert plain.code == ExitCode.NOT_FOUND
    assert plain.out == ""  # without --json nothing changes


def test_a_malformed_artifact_id_is_refused_as_such_not_answered_as_missing(admin_cli: Cli) -> None:
    for args in (
        ("artifact", "show", "not-an-id"),
        ("artifact", "disable", "art_XYZ"),
        ("artifact", "pull", "x", "--out", "o"),
    ):
        result = admin_cli(*args)
        assert result.code == ExitCode.INVALID_INPUT, args
        assert "error [invalid_artifact_id]" in result.err
        assert "expected: art_<16 hex>" in result.err
    shown = admin_cli("artifact", "show", "not-an-id", "--json")
    assert _json_error(shown.out)["details"] == {"expected": "art_<16 hex>", "got": "not-an-id"}
    absent = admin_cli("artifact", "show", "art_" + "0" * 16)
    assert absent.code == ExitCode.NOT_FOUND
    assert "error [artifact_not_found]" in absent.err


def test_a_malformed_id_in_an_api_path_is_a_validation_error_not_a_missing_object(live_server: Any) -> None:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as http:
        for path, code, expected in (
            ("/v1/artifacts/not-an-id", "invalid_artifact_id", "art_<16 hex>"),
            ("/v1/artifacts/not-an-id/files/model.onnx", "invalid_artifact_id", "art_<16 hex>"),
            ("/v1/rollouts/ro_nope", "invalid_rollout_id", "ro_<16 hex>"),
            ("/v1/devices/dev_NOPE", "invalid_device_id", "dev_<20 hex>"),
        ):
            r = http.get(path)
            assert r.status_code == 422, path
            assert r.json()["code"] == code
            assert r.json()["details"]["expected"] == expected
            assert r.json()["details"]["got"] == path.split("/")[3]
        missing = http.get("/v1/artifacts/art_" + "0" * 16)
        assert (missing.status_code, missing.json()["code"]) == (404, "artifact_not_found")
        assert http.get("/v1/nothing").json()["code"] == "not_found"
        assert http.get("/v1/rollouts/dry-run").status_code == 405  # routing by id still names POST


def test_a_setting_given_twice_in_one_command_is_refused_naming_it(admin_cli: Cli) -> None:
    assert admin_cli("class", "apply", str(EXAMPLE_CLASSES)).code == 0
    twice = admin_cli("config", "set", "--class", "medical-cart-cpu", "log_level=debug", "log_level=info")
    assert twice.code == ExitCode.INVALID_INPUT
    assert "error [invalid_config_value]: setting 'log_level' is given twice" in twice.err
    assert json.loads(admin_cli("config", "list", "--json").out)["items"] == []  # nothing was sent
    same = admin_cli("config", "set", "--class", "medical-cart-cpu", "log_level=debug", "log_level=debug")
    assert same.code == 0, same.err


def _classes_with(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "classes.toml"
    path.write_text(EXAMPLE_CLASSES.read_text() + "\n" + extra)
    return path


def test_class_windows_that_can_never_be_meant_are_refused_at_apply(admin_cli: Cli, tmp_path: Path) -> None:
    bad_key = _classes_with(
        tmp_path,
        '[[class.medical-cart-cpu.window_overrides]]\nlabels = { "Site" = "plant-3" }\n'
        'update_window = "01:00-02:00"\n',
    )
    result = admin_cli("class", "apply", str(bad_key), "--json")
    assert result.code == ExitCode.INVALID_INPUT
    error = _json_error(result.out)
    assert error["code"] == "invalid_labels"
    assert error["details"]["field"] == "window_overrides.0.labels"
    assert error["details"]["got"] == ["Site"]
    assert "[a-z0-9]" in error["details"]["expected"]

    empty = _classes_with(tmp_path, "").read_text().replace('update_window = "any"', 'update_window = ""', 1)
    (tmp_path / "empty.toml").write_text(empty)
    result = admin_cli("class", "apply", str(tmp_path / "empty.toml"))
    assert result.code == ExitCode.INVALID_INPUT
    assert "error [invalid_update_window]: jetson-vision-standard: update_window is empty" in result.err
    assert "leave update_window out for any time" in result.err
    assert json.loads(admin_cli("class", "list", "--json").out)["total"] == 0  # all or nothing


class _Conflicts(httpx.BaseTransport):
    """Answers the first ``times`` configuration writes with the server's 409 ``conflict`` (a concurrent
    change won); everything else goes to the real server."""

    def __init__(self, times: int) -> None:
        self.times, self.writes = times, 0
        self.real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/config" and request.method == "PUT":
            self.writes += 1
            if self.writes <= self.times:
                body = {
                    "code": "conflict",
                    "message": "a concurrent change conflicted with this one; retry",
                    "details": {},
                }
                return httpx.Response(409, json=body)
        return self.real.handle_request(request)


def _with_transport(server: Any, transport: httpx.BaseTransport, *args: str) -> Any:
    state = CliState(transport=transport)
    argv = ["--server", server.url, "--token", server.admin_token, *args]
    return CliRunner().invoke(cli, argv, obj=state, catch_exceptions=False)


def test_a_conflicting_configuration_write_is_retried_then_reported(live_server: Any, admin_cli: Cli) -> None:
    assert admin_cli("class", "apply", str(EXAMPLE_CLASSES)).code == 0
    once = _Conflicts(times=1)
    result = _with_transport(
        live_server, once, "config", "set", "--class", "medical-cart-cpu", "log_level=debug"
    )
    assert result.exit_code == 0, result.stderr
    assert once.writes == 2
    layers = json.loads(admin_cli("config", "list", "--json").out)["items"]
    assert [layer["settings"] for layer in layers] == [{"log_level": "debug"}]

    always = _Conflicts(times=100)
    result = _with_transport(
        live_server, always, "config", "set", "--class", "medical-cart-cpu", "log_level=info", "--json"
    )
    assert result.exit_code == ExitCode.CONFLICT
    assert always.writes == CONFLICT_RETRIES + 1
    error = _json_error(result.stdout)
    assert error["code"] == "conflict"
    assert error["details"]["attempts"] == CONFLICT_RETRIES + 1
    assert "run the command again" in error["message"]
