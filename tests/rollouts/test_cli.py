"""``edgefleet rollout ...`` against a real server on loopback, with simulated devices on the signed channel;
and the pure parts (flags -> spec, the gate view) table-driven."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from edgefleet.cli.exit_codes import ExitCode
from edgefleet.cli.main import cli
from edgefleet.cli.rollout_cmd import gate_rows, render_rollout, watch_rollout
from edgefleet.cli.rollout_spec import build_spec, duration_s, parse_stages
from edgefleet.client import EdgefleetClient
from edgefleet.client.rollouts import RolloutInfo
from edgefleet.protocol import parse_classes_toml
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.services.rollouts.gates import ClassHealth, InstallCounts, StageHealth, evaluate_gates
from edgefleet.server.services.rollouts.spec import Gates
from edgefleet.sim.device import Behaviour, SimDevice
from edgefleet.sim.fleet import SimFleet
from edgefleet.sim.link import HttpDeviceLink, enroll_in_memory

from .live_fleet import CLASS, EXAMPLES, MODEL, LiveFleet, make_fleet, register_artifact

# --- pure ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,5%,25%,100%", [{"count": 1}, {"percent": 5.0}, {"percent": 25.0}, {"percent": 100.0}]),
        ("10, 0.5%", [{"count": 10}, {"percent": 0.5}]),
        ("100%", [{"percent": 100.0}]),
    ],
)
def test_parse_stages(text: str, expected: list[dict[str, Any]]) -> None:
    assert parse_stages(text) == expected


@pytest.mark.parametrize("text", ["", "0", "1,,2", "101%", "0%", "-1", "five", "1," + ",".join(["1"] * 20)])
def test_parse_stages_refuses(text: str) -> None:
    with pytest.raises(InvalidDocumentError) as info:
        parse_stages(text)
    assert info.value.code == "invalid_stages"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1.5h", 5400), ("2d", 172800)]
)
def test_duration_s(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "-5m", "1h30m"])
def test_duration_s_refuses(text: str) -> None:
    with pytest.raises(InvalidDocumentError):
        duration_s(text)


def test_build_spec_applies_flags_to_every_stage_on_top_of_a_file() -> None:
    base = {"spread_label": "line", "stages": [{"count": 2, "gates": {"min_requests": 5}}]}
    spec = build_spec(
        base=base,
        soak_s=60,
        deadline_s=600,
        on_deadline="halt",
        manual_promotion=True,
        gates=["max_error_rate=0.05", "max_latency_p95_ratio=off"],
        enrolling="new",
    )
    assert spec == {
        "spread_label": "line",
        "enrolling_devices": "new",
        "stages": [
            {
                "count": 2,
                "soak_s": 60,
                "deadline_s": 600,
                "on_deadline": "halt",
                "manual_promotion": True,
                "gates": {"min_requests": 5, "max_error_rate": 0.05, "max_latency_p95_ratio": None},
            }
        ],
    }
    assert base["stages"][0] == {"count": 2, "gates": {"min_requests": 5}}  # the file's spec is not mutated


def test_build_spec_defaults() -> None:
    assert build_spec() is None  # the server's defaults apply
    assert build_spec(stages="1,100%") == {"stages": [{"count": 1}, {"percent": 100.0}]}
    # --soak alone: the default stage sizes, each with that soak
    spec = build_spec(soak_s=30)
    assert spec is not None
    assert [s.get("count") or s.get("percent") for s in spec["stages"]] == [1, 5.0, 25.0, 100.0]
    assert {s["soak_s"] for s in spec["stages"]} == {30}
    with pytest.raises(InvalidDocumentError):
        build_spec(gates=["max_error_rate"])


DETECTOR = "intel-lowpower-detector"
GATES = Gates(min_reporting_devices=2, min_requests=10)


def _judged(classes: dict[str, ClassHealth], installs: dict[str, InstallCounts]) -> list[dict[str, Any]]:
    """Gate rows as the engine stores them: judged by the one evaluation, never by the CLI."""
    rows = evaluate_gates(GATES, shadow_stage=False, classes=classes, installs=installs)
    return [r.to_wire() for r in rows]


CART_ROWS = _judged(
    {
        CLASS: ClassHealth(
            StageHealth(
                requests=100, errors=2, latency_p95_ms=30.0, baseline_p95_ms=10.0, reporting_devices=1
            ),
            envelope_p95_ms=50.0,
        )
    },
    {CLASS: InstallCounts(exposed=3, done=2)},
)


def _info(**overrides: Any) -> RolloutInfo:
    data: dict[str, Any] = {
        "id": "ro_0123456789abcdef",
        "model": "digits",
        "status": "running",
        "stage": 1,
        "stages": 2,
        "stage_started_at": "2026-01-01T00:00:00+00:00",
        "targets": {CLASS: {"from": "a", "to": "b"}},
        "spec": {"stages": [{"count": 1}, {"percent": 100}]},
        "stage_detail": [
            {"index": 0, "members": 1, "done": 1, "pending": 0, "failed": 0, "offline": 0},
            {"index": 1, "members": 3, "done": 1, "pending": 2, "failed": 0, "offline": 1},
        ],
        "last_decision": {
            "action": "wait",
            "reason": {"note": "devices pending"},
            "stage": 1,
            "gates": CART_ROWS,
        },
    }
    data.update(overrides)
    return RolloutInfo.model_validate(data)


def test_gate_rows_render_the_engines_rows_as_they_are() -> None:
    [(name, rows)] = gate_rows(_info()).items()
    assert name == CLASS
    assert [(r["gate"], r["verdict"]) for r in rows] == [(g["name"], g["verdict"]) for g in CART_ROWS]
    by_gate = {r["gate"]: r for r in rows}
    assert by_gate["install_failure_rate"] == {
        "gate": "install_failure_rate",
        "observed": 0.0,
        "threshold": "<= 0.0",
        "verdict": "ok",
        "why": "0 of 2 finished installs failed",
    }
    assert (by_gate["error_rate"]["observed"], by_gate["error_rate"]["verdict"]) == (0.02, "breach")
    assert (by_gate["latency_p95_ms"]["threshold"], by_gate["latency_p95_ms"]["verdict"]) == ("<= 50.0", "ok")
    assert (by_gate["latency_p95_ratio"]["observed"], by_gate["latency_p95_ratio"]["verdict"]) == (
        3.0,
        "breach",
    )
    assert (by_gate["reporting_devices"]["threshold"], by_gate["reporting_devices"]["verdict"]) == (
        ">= 2",
        "waiting",
    )
    assert by_gate["shadow_agreement"]["verdict"] == "off"
    assert gate_rows(_info(last_decision=None)) == {}


def _two_class_info(**overrides: Any) -> RolloutInfo:
    """A rollout of two classes: the cart is healthy, the detector's new version is 3x slower than its
    previous one (and still under its own 40 ms envelope)."""
    rows = _judged(
        {
            CLASS: ClassHealth(
                StageHealth(
                    requests=100, errors=0, latency_p95_ms=12.0, baseline_p95_ms=12.0, reporting_devices=2
                ),
                envelope_p95_ms=50.0,
            ),
            DETECTOR: ClassHealth(
                StageHealth(
                    requests=100, errors=3, latency_p95_ms=36.0, baseline_p95_ms=12.0, reporting_devices=2
                ),
                envelope_p95_ms=40.0,
            ),
        },
        {CLASS: InstallCounts(2, 2), DETECTOR: InstallCounts(2, 2)},
    )
    base = _info(
        targets={CLASS: {"from": "a", "to": "b"}, DETECTOR: {"from": "c", "to": "d"}},
        last_decision={"action": "wait", "reason": {"note": "soaking"}, "stage": 1, "gates": rows},
    )
    return base.model_copy(update=overrides)


def test_status_view_shows_one_gate_block_per_class() -> None:
    text = render_rollout(_two_class_info())
    blocks = text.split("\n\n")
    [cart] = [b for b in blocks if b.startswith(f"gates of class {CLASS}")]
    [detector] = [b for b in blocks if b.startswith(f"gates of class {DETECTOR}")]
    cart_rows = {line.split()[0]: line.split() for line in cart.splitlines()[2:]}
    detector_rows = {line.split()[0]: line.split() for line in detector.splitlines()[2:]}
    assert cart_rows["latency_p95_ratio"][4] == "ok"
    assert detector_rows["latency_p95_ratio"][1:5] == ["3.0", "<=", "1.5", "breach"]
    assert detector_rows["latency_p95_ms"][1:5] == ["36.0", "<=", "40.0", "ok"]
    assert detector_rows["error_rate"][1:5] == ["0.03", "<=", "0.01", "breach"]
    # One class: the single table, no per-class headings.
    single = render_rollout(_info())
    assert "gates of class" not in single
    assert "latency_p95_ratio" in single


def test_watch_emits_changes_only_and_stops_when_the_rollout_ends() -> None:
    views = [
        _info(),
        _info(),
        _info(stage=1, status="running", stages=2, model="x"),
        _info(status="completed"),
    ]
    emitted: list[RolloutInfo] = []
    sleeps: list[float] = []
    final = watch_rollout(lambda: views.pop(0), emitted.append, interval_s=2.0, sleep=sleeps.append)
    assert final.status == "completed"
    assert len(emitted) == 3  # the repeated view was not emitted again
    assert sleeps == [2.0, 2.0, 2.0]
    assert views == []


# --- against a real server ----------------------------------------------------------------------------------


def _eventually(check: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _run(url: str, token: str | None, *args: str) -> Any:
    argv = ["--server", url] + (["--token", token] if token else []) + list(args)
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


@pytest.fixture
def world(live_server: Any) -> LiveFleet:
    return make_fleet(live_server.url, live_server.admin_token)


def test_create_list_status_and_operator_actions(live_server: Any, world: LiveFleet) -> None:
    url = live_server.url
    with EdgefleetClient(url, live_server.admin_token) as admin:
        operator = admin.create_token("alice", "operator").token
        viewer = admin.create_token("eyes", "viewer").token
    created = _run(
        url,
        operator,
        "rollout", "create", "--model", "digits", "--target", f"{CLASS}={world.v2}",
        "--label", "site=site-0", "--stages", "1,100%", "--soak", "10m", "--manual", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    info = json.loads(created.stdout)
    rid = info["id"]
    assert info["selector"] == {"site": "site-0"}
    assert [s["members"] for s in info["stage_detail"]] == [1, 1]  # two of the four devices are in site-0
    assert [(s.get("count"), s.get("percent"), s["soak_s"]) for s in info["spec"]["stages"]] == [
        (1, None, 600.0),
        (None, 100.0, 600.0),
    ]
    assert all(s["manual_promotion"] for s in info["spec"]["stages"])

    # A second rollout of the same model and class is refused with a clear error and exit code.
    again = _run(url, operator, "rollout", "create", "--model", "digits", "--target", f"{CLASS}={world.v2}")
    assert again.exit_code == ExitCode.CONFLICT
    assert "error [rollout_conflict]" in again.stderr

    table = _run(url, viewer, "rollout", "list")
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == [
        "ID", "MODEL", "STATUS", "STAGE", "TARGETS", "SELECTOR", "CREATED_BY", "CREATED"
    ]  # fmt: skip
    assert row.split()[:5] == [rid, "digits", "running", "1/2", f"{CLASS}={world.v2}"]
    assert row.split()[6] == "alice"
    listed = json.loads(_run(url, viewer, "rollout", "list", "--status", "running", "--json").stdout)
    assert [r["id"] for r in listed["items"]] == [rid]
    assert (
        json.loads(_run(url, viewer, "rollout", "list", "--status", "halted", "--json").stdout)["total"] == 0
    )

    world.step()  # the stage's device installs v2 and serves it; the engine (1 s ticks) sees it
    _eventually(lambda: world.client.get_rollout(rid).stage_detail[0].get("done") == 1)
    status = _run(url, viewer, "rollout", "status", rid)
    assert status.exit_code == 0, status.output
    text = status.stdout
    assert f"rollout {rid}  model digits  slot default  status RUNNING" in text
    stage_lines = text.split("\n\n")[1].splitlines()
    assert stage_lines[0].split() == [
        "STAGE", "SIZE", "MEMBERS", "STATE", "DONE", "PENDING", "FAILED", "OFFLINE", "SOAK_S"
    ]  # fmt: skip
    assert stage_lines[1].split()[:5] == ["1/2", "1", "1", "current", "1"]
    assert stage_lines[2].split()[:4] == ["2/2", "100%", "1", "waiting"]
    assert "GATE" in text
    assert "latency_p95_ratio" in text
    assert "created   by alice" in text
    status_json = json.loads(_run(url, viewer, "rollout", "status", rid, "--json").stdout)
    judged = status_json["last_decision"]["gates"]  # the server's rows, printed as they are
    assert {g["name"] for g in judged} >= {"install_failure_rate", "error_rate", "requests"}

    # Viewers may look, not steer.
    denied = _run(url, viewer, "rollout", "pause", rid)
    assert denied.exit_code == ExitCode.AUTH
    for action, expected in (("pause", "paused"), ("resume", "running"), ("promote", "running")):
        result = _run(url, operator, "rollout", action, rid, "--reason", f"{action} by the book")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{rid}: {action} -> {expected}")
    aborted = _run(url, operator, "rollout", "abort", rid, "--reason", "customer complaint", "--json")
    assert aborted.exit_code == 0, aborted.output
    final = json.loads(aborted.stdout)
    assert final["status"] == "aborted"
    assert final["halt_reason"] == {"gate": "operator_abort", "reason": "customer complaint", "by": "alice"}
    assert [(e["kind"], e["actor"]) for e in final["events"]][-4:] == [
        ("pause", "alice"),
        ("resume", "alice"),
        ("promote", "alice"),
        ("abort", "alice"),
    ]
    late = _run(url, operator, "rollout", "resume", rid)
    assert late.exit_code == ExitCode.CONFLICT
    assert "error [invalid_transition]" in late.stderr
    # Abort rolled the exposed device back: everyone is told v1 again.
    world.step()
    assert {d.active for d in world.fleet.devices} == {world.v1}


def test_bad_requests_exit_with_stable_codes(live_server: Any, world: LiveFleet) -> None:
    url, token = live_server.url, live_server.admin_token
    target = f"{CLASS}={world.v2}"
    bad_stages = _run(
        url, token, "rollout", "create", "--model", "digits", "--target", target, "--stages", "0"
    )
    assert bad_stages.exit_code == ExitCode.INVALID_INPUT
    assert "error [invalid_stages]" in bad_stages.stderr
    server_refuses = _run(
        url, token, "rollout", "create", "--model", "digits", "--target", target, "--gate", "max_error_rate=7"
    )
    assert server_refuses.exit_code == ExitCode.INVALID_INPUT  # validated by the server: rates are <= 1
    wrong_class = _run(
        url, token, "rollout", "create", "--model", "digits", "--target", f"factory-gateway-gpu={world.v2}"
    )
    assert wrong_class.exit_code == ExitCode.INVALID_INPUT
    assert "error [wrong_hardware_class]" in wrong_class.stderr
    missing = _run(url, token, "rollout", "status", "ro_0000000000000000")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert "error [rollout_not_found]" in missing.stderr
    malformed = _run(url, token, "rollout", "status", "nope")
    assert malformed.exit_code == ExitCode.INVALID_INPUT
    no_token = _run(url, None, "rollout", "list")
    assert no_token.exit_code == ExitCode.AUTH


def test_spec_file(live_server: Any, world: LiveFleet, tmp_path: Any) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"stages": [{"count": 1, "soak_s": 5}, {"percent": 100}]}))
    result = _run(
        live_server.url,
        live_server.admin_token,
        "rollout", "create", "--model", "digits", "--target", f"{CLASS}={world.v2}",
        "--spec", str(spec), "--enrolling", "new", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["spec"]["enrolling_devices"] == "new"
    assert [s["soak_s"] for s in info["spec"]["stages"]] == [5, 300]
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    bad = _run(
        live_server.url, live_server.admin_token,
        "rollout", "create", "--model", "digits", "--target", f"{CLASS}={world.v2}", "--spec", str(broken),
    )  # fmt: skip
    assert bad.exit_code == ExitCode.INVALID_INPUT
    assert "error [malformed_json]" in bad.stderr


@pytest.mark.parametrize("slow", [False, True], ids=["good-model-completes", "slow-model-halts"])
def test_watch_follows_a_live_rollout_to_its_end(live_server_factory: Any, slow: bool) -> None:
    server = live_server_factory(rollout_tick_s=0.1)
    world = make_fleet(server.url, server.admin_token, devices=4, slow_v2=slow)
    rid = world.client.create_rollout(
        "digits",
        {CLASS: world.v2},
        spec={"stages": [{"count": 1, "soak_s": 0}, {"percent": 100, "soak_s": 0}]},
    ).id
    with world.running():
        result = _run(server.url, server.admin_token, "rollout", "watch", rid, "--interval", "0.2", "--json")
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    final = frames[-1]
    assert len(frames) == len({json.dumps(f, sort_keys=True) for f in frames})  # only changes are streamed
    if slow:
        assert result.exit_code == 1
        assert final["status"] == "halted"
        assert final["halt_reason"]["gate"] in ("latency_p95_ratio", "latency_p95_ms")
        breached = [g for g in final["last_decision"]["gates"] if g["verdict"] == "breach"]
        assert [g["name"] for g in breached] == [final["halt_reason"]["gate"]]
        assert final["stage"] == 0  # stopped in its first stage
    else:
        assert result.exit_code == 0, result.output
        assert final["status"] == "completed"
        assert [e["kind"] for e in final["events"]] == ["created", "advance", "complete"]
        assert {d.active for d in world.fleet.devices} == {world.v2}
    world.client.close()


def test_watch_human_view(live_server: Any, world: LiveFleet) -> None:
    rid = world.client.create_rollout("digits", {CLASS: world.v2}).id
    world.client.rollout_action(rid, "abort", reason="stop")
    result = _run(live_server.url, live_server.admin_token, "rollout", "watch", rid)
    assert result.exit_code == 1
    assert "status ABORTED" in result.stdout
    assert "stopped: gate=operator_abort, reason=stop, by=bootstrap-admin" in result.stdout


def test_status_and_watch_show_the_gates_of_each_class_of_a_live_rollout(live_server_factory: Any) -> None:
    """Two classes, two devices each, on the real signed channel; the detector's new version is 3x slower
    than its previous one but inside its 40 ms envelope. The rollout halts on the detector alone, and the CLI
    shows each class's gates against that class's own envelope and previous version."""
    server = live_server_factory(rollout_tick_s=0.1)
    client = EdgefleetClient(server.url, server.admin_token)
    client.apply_classes(parse_classes_toml(EXAMPLES.read_text()))
    client.create_model(MODEL)
    versions = {
        name: (register_artifact(client, "1.0.0", name), register_artifact(client, "2.0.0", name))
        for name in (CLASS, DETECTOR)
    }
    sims = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for name, (v1, _) in versions.items():
            client.pin(scope="class", target=name, slot="default", artifact_id=v1)
            for i in range(2):
                token = client.create_enrollment_token(name, labels={"site": f"site-{i}"}).token
                device_id, key = enroll_in_memory(http, token)
                link = HttpDeviceLink(server.url, device_id=device_id, key=key)
                sims.append(SimDevice(device_id, link, rng=random.Random(len(sims))))
    behaviour = Behaviour(latency_factor={versions[DETECTOR][1]: 3.0}, requests_per_window=20, jitter=0.0)
    world = LiveFleet(server.url, client, versions[CLASS][0], versions[CLASS][1], SimFleet(sims, behaviour))
    world.step()  # everyone runs v1 and reports its latency: each class's baseline
    rid = client.create_rollout(
        MODEL,
        {name: v2 for name, (_, v2) in versions.items()},
        spec={"stages": [{"percent": 100, "soak_s": 0}]},
    ).id
    with world.running():
        watched = _run(server.url, server.admin_token, "rollout", "watch", rid, "--interval", "0.2", "--json")
    assert watched.exit_code == 1, watched.output
    final = json.loads(watched.stdout.splitlines()[-1])
    assert final["status"] == "halted"
    assert (final["halt_reason"]["gate"], final["halt_reason"]["hardware_class"]) == (
        "latency_p95_ratio",
        DETECTOR,
    )
    by_class: dict[str, dict[str, Any]] = {}
    for g in final["last_decision"]["gates"]:
        by_class.setdefault(g["hardware_class"], {})[g["name"]] = g
    assert set(by_class) == {CLASS, DETECTOR}
    assert by_class[DETECTOR]["latency_p95_ratio"]["verdict"] == "breach"
    assert by_class[DETECTOR]["latency_p95_ratio"]["observed"] == final["halt_reason"]["observed"]
    assert by_class[DETECTOR]["latency_p95_ms"]["threshold"] == 40.0
    assert by_class[CLASS]["latency_p95_ms"]["threshold"] == 50.0
    assert [name for name, g in by_class[CLASS].items() if g["verdict"] == "breach"] == []
    assert by_class[CLASS]["latency_p95_ratio"]["observed"] < 1.5

    status_json = json.loads(_run(server.url, server.admin_token, "rollout", "status", rid, "--json").stdout)
    assert status_json["last_decision"]["gates"] == final["last_decision"]["gates"]
    text = _run(server.url, server.admin_token, "rollout", "status", rid).stdout
    blocks = text.split("\n\n")
    [detector] = [b for b in blocks if b.startswith(f"gates of class {DETECTOR}")]
    [cart] = [b for b in blocks if b.startswith(f"gates of class {CLASS}")]
    assert "breach" in detector
    assert "breach" not in cart
    assert f"hardware_class={DETECTOR}" in text
    client.close()
