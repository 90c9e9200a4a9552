"""``edgefleet demo``: the whole main job, end to end, on one machine, with the public commands.

Over 450 lines: one scripted run whose steps, in order, share the demo's world (server, agents, traffic).

1. a control plane on the embedded SQLite default (dev mode: demo keys, loudly labelled);
2. the reference digits CNN trained (or reused from the cache), built per hardware class with
   ``edgefleet build``, published signed with ``edgefleet publish``; a deliberately bad version 2 too;
3. agents of different hardware classes enrolled and started as separate processes;
4. version 1 rolled out in stages while held-out digits are sent to every agent; one agent is cut off the
   network during the rollout and catches up (with its buffered telemetry) when it returns;
5. version 2 rolled out: its latency gate halts it in the first stage and the exposed device rolls back;
6. a summary (also written as JSON); ``--keep`` leaves everything running until Ctrl-C, then every process
   stops (without it, at once).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edgefleet.quickstart.processes import ProcessGroup, edgefleet_argv, free_port, wait_http
from edgefleet.quickstart.steps import Progress
from edgefleet.quickstart.traffic import TrafficDriver
from edgefleet.sim.netcut import CuttableLink

__all__ = ["AGENTS", "DemoFailed", "DemoOptions", "demo_agents", "run_demo"]

REPO = Path(__file__).resolve().parents[3]
CLASSES_FILE = REPO / "examples" / "hardware-classes.toml"

AGENTS: tuple[tuple[str, str, str], ...] = (
    # name, hardware class, site
    ("robot-1", "jetson-vision-standard", "warehouse"),
    ("line-1", "intel-lowpower-detector", "plant-a"),
    ("cart-1", "medical-cart-cpu", "ward-3"),
    ("cart-2", "medical-cart-cpu", "ward-5"),
)
FAST_AGENTS = ("robot-1", "cart-1", "cart-2")
CUT_AGENT = "cart-2"
STALE_AFTER_S = 6


def demo_agents(fast: bool) -> tuple[tuple[str, str, str], ...]:
    return tuple(a for a in AGENTS if a[0] in FAST_AGENTS) if fast else AGENTS


class DemoFailed(RuntimeError):
    """An outcome the demo promises did not happen."""


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    keep: bool = False
    fast: bool = False
    summary_json: Path | None = None


@dataclass
class _World:
    opts: DemoOptions
    progress: Progress
    procs: ProcessGroup
    server_url: str = ""
    admin_token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)
    link: CuttableLink | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    # --- the public commands -----------------------------------------------------------------------------

    def cli(self, *args: str, show: bool = True, check: bool = True) -> str:
        argv = edgefleet_argv(*args)
        if show:
            self.progress.command(["edgefleet", *args])
        proc = subprocess.run(
            argv, capture_output=True, text=True, env={**_base_env(), **self.env}, timeout=600
        )
        if check and proc.returncode != 0:
            raise DemoFailed(
                f"`edgefleet {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def api(self, path: str) -> Any:
        r = httpx.get(
            self.server_url + path, headers={"authorization": f"Bearer {self.admin_token}"}, timeout=30
        )
        r.raise_for_status()
        return r.json()

    def device(self, name: str) -> dict[str, Any]:
        device: dict[str, Any] = self.api(f"/v1/devices/{self.agents[name]['device_id']}")
        return device

    def slot(self, name: str) -> dict[str, Any]:
        device = self.device(name)
        return ((device.get("report") or {}).get("slots") or {}).get("default") or {}

    def wait(self, what: str, predicate: Any, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise DemoFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _base_env() -> dict[str, str]:
    return dict(os.environ)


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    work = opts.workdir
    for sub in ("server", "agents", "build", "logs"):
        shutil.rmtree(work / sub, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    world = _World(opts, Progress(), ProcessGroup(work / "logs"))
    traffic: TrafficDriver | None = None
    try:
        _start_server(world)
        _build_and_publish(world)
        _enroll_agents(world)
        held_out = np.load(world.opts.workdir / "cache" / "digits" / "validation.npz")
        endpoints = {name: a["endpoint"] for name, a in world.agents.items()}
        traffic = TrafficDriver(endpoints, held_out["input"], held_out["labels"], rate_per_s=15).start()
        _roll_out_v1(world, traffic)
        _roll_out_bad_v2(world, traffic)
        _summarize(world)
    finally:
        if traffic is not None:
            traffic.stop()
        world.summary["pids"] = {name: proc.pid for name, proc in world.procs.children.items()}
        # --keep holds everything up until Ctrl-C or SIGTERM (cart-2's link runs in this process), unless
        # the demo itself was interrupted; then it stops every process it started, as without --keep.
        if opts.keep and sys.exc_info()[0] is not KeyboardInterrupt:
            _write_summary(opts, world.summary)
            _keep_running(world)
        if world.link is not None:
            world.link.close()
        world.procs.stop_all()
        world.summary["processes_left"] = world.procs.alive()
        _write_summary(opts, world.summary)
    return world.summary


def _write_summary(opts: DemoOptions, summary: dict[str, Any]) -> None:
    if opts.summary_json is not None:
        opts.summary_json.write_text(json.dumps(summary, indent=2, sort_keys=True))


def _start_server(world: _World) -> None:
    with world.progress.step("Start a control plane (embedded SQLite, dev mode)"):
        port = free_port()
        world.admin_token = secrets.token_urlsafe(32)
        world.server_url = f"http://127.0.0.1:{port}"
        data_dir = world.opts.workdir / "server"
        env = {
            "EDGEFLEET_ADMIN_TOKEN": world.admin_token,
            "EDGEFLEET_ROLLOUT_TICK_S": "0.5",
            # The agents poll every second: a device silent for a few seconds is no longer online.
            "EDGEFLEET_DEVICE_STALE_AFTER_S": str(STALE_AFTER_S),
            "EDGEFLEET_DEVICE_OFFLINE_AFTER_S": "60",
        }
        argv = edgefleet_argv("server", "--dev", "--data-dir", str(data_dir), "--port", str(port))
        world.progress.command(
            ["edgefleet", "server", "--dev", "--data-dir", str(data_dir), "--port", str(port)]
        )
        proc = world.procs.start("server", argv, env)
        wait_http(f"{world.server_url}/healthz", proc=proc)
        world.env = {"EDGEFLEET_SERVER": world.server_url, "EDGEFLEET_TOKEN": world.admin_token}
        world.progress.say(f"control plane at {world.server_url} (dashboard: {world.server_url}/dashboard)")
        world.progress.say(
            "WARNING: dev mode generated DEMO keys (root, release, snapshot, timestamp, director) in "
            f"{data_dir / 'keys'}; they are not production keys (see docs/security.md)"
        )
        world.cli("class", "apply", str(CLASSES_FILE))


def _build_and_publish(world: _World) -> None:
    work = world.opts.workdir
    cache = work / "cache" / "digits"
    with world.progress.step("Train the reference digits CNN (or reuse the cached one)"):
        if not (cache / "model.onnx").exists():
            from edgefleet.optimize.digits import main as train

            train([str(cache)])
        else:
            world.progress.say(f"reusing {cache / 'model.onnx'}")
        bad = cache / "digits-v2-bad.onnx"
        if not bad.exists():
            import onnx

            from edgefleet.quickstart.bad_model import make_bad_model

            onnx.save(make_bad_model(onnx.load(cache / "model.onnx")), bad)
    release_key = work / "server" / "keys" / "release.key"
    for version, source, counter in (("1.0.0", cache / "model.onnx", 1), ("2.0.0", bad, 2)):
        out = work / "build" / f"v{version}"
        title = f"Build digits {version} for every hardware class, register and publish it signed"
        if version == "2.0.0":
            title = "Build the deliberately bad digits 2.0.0 (slower, swaps two digits), register, publish"
        with world.progress.step(title):
            build = [
                "build",
                str(source),
                "--classes",
                str(CLASSES_FILE),
                "--calibration",
                str(cache / "calibration.npz"),
            ]
            build += ["--validation", str(cache / "validation.npz"), "--out", str(out), "--name", "digits"]
            build += ["--version", version, "--release-counter", str(counter), "--no-progress"]
            for hardware_class in sorted({a[1] for a in demo_agents(world.opts.fast)}):
                build += ["--class", hardware_class]
            world.cli(*build, *(["--quick"] if world.opts.fast else []))
            world.cli("model", "create", "digits", check=False, show=version == "1.0.0")
            world.cli("model", "version", "add", "digits", version, str(source))
            ids: dict[str, str] = {}
            for class_dir in sorted(p for p in out.iterdir() if p.is_dir()):
                ids[class_dir.name] = json.loads(world.cli("artifact", "push", str(class_dir), "--json"))[
                    "id"
                ]
                publish = ["publish", str(class_dir), "--release-key", str(release_key)]
                manifest = json.loads((class_dir / "manifest.json").read_text())
                if manifest.get("metrics", {}).get("latency_unmeasured"):
                    # an accelerator class built here without its accelerator: no device of the class
                    # measured it, and the demo releases it knowingly (docs/build.md)
                    publish.append("--accept-unmeasured-latency")
                world.cli(*publish)
            world.artifacts[version] = ids
            world.progress.say(f"artifacts: {', '.join(f'{c}={i}' for c, i in ids.items())}")


def _enroll_agents(world: _World) -> None:
    agents = demo_agents(world.opts.fast)
    with world.progress.step(
        f"Enroll {len(agents)} agents of different hardware classes, as separate processes"
    ):
        server_port = int(world.server_url.rsplit(":", 1)[1])
        world.link = CuttableLink("127.0.0.1", server_port)
        for name, hardware_class, site in agents:
            token = world.cli(
                "device",
                "token",
                "create",
                "--class",
                hardware_class,
                "--label",
                f"site={site}",
                show=name == agents[0][0],
            ).strip()
            data_dir = world.opts.workdir / "agents" / name
            url = world.link.url if name == CUT_AGENT else world.server_url
            enrolled = json.loads(
                world.cli(
                    "agent",
                    "enroll",
                    "--server",
                    url,
                    "--token",
                    token,
                    "--data-dir",
                    str(data_dir),
                    "--json",
                    show=name == agents[0][0],
                )
            )
            argv = edgefleet_argv(
                "agent",
                "run",
                "--data-dir",
                str(data_dir),
                "--poll-interval",
                "1",
                "--backoff-cap",
                "2",
                "--telemetry-window",
                "2",
                "--telemetry-interval",
                "1",
            )
            world.procs.start(f"agent-{name}", argv)
            world.agents[name] = {
                "device_id": enrolled["device_id"],
                "class": hardware_class,
                "site": site,
                "dir": data_dir,
            }
        for name, agent in world.agents.items():
            endpoint_file = agent["dir"] / "serving-endpoint"
            agent["endpoint"] = world.wait(
                f"{name}'s local endpoint", lambda f=endpoint_file: f.exists() and f.read_text().strip(), 120
            )
            world.progress.say(
                f"{name:10} {agent['class']:24} {agent['device_id']}  serving at {agent['endpoint']}"
            )


def _rollout(world: _World, version: str, *, soak: str, deadline: str) -> str:
    targets = [
        f"--target={c}={a}"
        for c, a in world.artifacts[version].items()
        if any(x["class"] == c for x in world.agents.values())
    ]
    created = json.loads(
        world.cli(
            "rollout",
            "create",
            "--model",
            "digits",
            *targets,
            "--stages",
            "1,50%,100%",
            "--soak",
            soak,
            "--deadline",
            deadline,
            "--on-deadline",
            "proceed",
            "--gate",
            "min_requests=20",
            "--json",
        )
    )
    return str(created["id"])


def _watch(world: _World, rollout_id: str, timeout_s: float) -> dict[str, Any]:
    world.progress.command(["edgefleet", "rollout", "watch", rollout_id])
    proc = subprocess.run(
        edgefleet_argv("rollout", "watch", rollout_id, "--interval", "1s"),
        capture_output=True,
        text=True,
        env={**_base_env(), **world.env},
        timeout=timeout_s,
    )
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-12:]
    for line in tail:
        world.progress.say(line)
    return world.api(f"/v1/rollouts/{rollout_id}")


def _roll_out_v1(world: _World, traffic: TrafficDriver) -> None:
    with world.progress.step(f"Cut {CUT_AGENT} off the network; the control plane sees it go silent"):
        assert world.link is not None
        world.link.cut()
        world.progress.say(f"{CUT_AGENT}'s uplink is down; it keeps serving its local clients")
        status = world.wait(
            f"the control plane to see {CUT_AGENT} silent",
            lambda: (s := world.device(CUT_AGENT)["status"]) != "online" and s,
            STALE_AFTER_S + 60,
        )
        world.progress.say(
            f"{CUT_AGENT} is {status}: a rollout places it last and counts it pending, never as a success"
        )
    with world.progress.step("Roll out digits 1.0.0 in stages (1 device, 50 %, 100 %) while traffic flows"):
        rollout_id = _rollout(world, "1.0.0", soak="3s" if world.opts.fast else "8s", deadline="15s")
        result = _watch(world, rollout_id, timeout_s=600)
        if result["status"] != "completed":
            raise DemoFailed(f"rollout of 1.0.0 ended {result['status']}: {result.get('halt_reason')}")
        progress = ((result.get("last_decision") or {}).get("progress")) or {}
        world.summary["v1_rollout"] = {
            "id": rollout_id,
            "status": result["status"],
            "events": [e["kind"] for e in result["events"]],
            "progress": progress,
        }
    with world.progress.step(f"Bring {CUT_AGENT} back: it catches up and its buffered telemetry arrives"):
        world.link.restore()
        v1_ids = set(world.artifacts["1.0.0"].values())
        world.wait(f"{CUT_AGENT} running 1.0.0", lambda: world.slot(CUT_AGENT).get("active") in v1_ids, 180)
        device_id = world.agents[CUT_AGENT]["device_id"]
        telemetry = world.wait(
            f"{CUT_AGENT}'s buffered telemetry",
            lambda: (t := world.api(f"/v1/devices/{device_id}/telemetry")) and _late_windows(t) and t,
            120,
        )
        late = _late_windows(telemetry)
        assert late is not None  # the wait above returned only once there were late windows
        world.progress.say(
            f"{CUT_AGENT} uploaded {late['count']} windows recorded while offline"
            f" (up to {late['max_late_s']:.0f} s late)"
        )
        world.summary["offline_agent"] = {"name": CUT_AGENT, "caught_up": True, **late}
    with world.progress.step("Every agent serves 1.0.0: accuracy on held-out digits, per device"):
        world.wait(
            "every agent on 1.0.0",
            lambda: all(world.slot(n).get("active") in v1_ids for n in world.agents),
            180,
        )
        traffic.reset()
        time.sleep(6 if world.opts.fast else 12)
        world.summary["v1_accuracy"] = _accuracy_table(world, traffic.reset(), "digits/1.0.0")


def _roll_out_bad_v2(world: _World, traffic: TrafficDriver) -> None:
    with world.progress.step("Roll out the bad digits 2.0.0: the gates must halt it and roll back"):
        rollout_id = _rollout(world, "2.0.0", soak="30s", deadline="60s")
        result = _watch(world, rollout_id, timeout_s=600)
        if result["status"] != "halted":
            raise DemoFailed(f"the bad version was not halted: {result['status']}")
        reason = result["halt_reason"]
        extra = {k: v for k, v in reason.items() if k not in ("gate", "observed", "threshold", "stage", "at")}
        gate, observed, threshold = reason.get("gate"), reason.get("observed"), reason.get("threshold")
        world.progress.say(
            f"HALTED at stage {reason.get('stage')}: gate {gate} observed {observed} > threshold {threshold}"
            + (f"  {json.dumps(extra)}" if extra else "")
        )
        for name, stats in traffic.reset().items():
            acc = stats.accuracy("digits/2.0.0")
            if acc is not None:
                before = world.summary["v1_accuracy"][name]["accuracy"] or 0.0
                world.progress.say(
                    f"while exposed, {name} answered {stats.answered['digits/2.0.0']} requests with 2.0.0:"
                    f" accuracy {acc * 100:.1f} % (1.0.0: {before * 100:.1f} %)"
                )
        v1_ids = set(world.artifacts["1.0.0"].values())
        world.wait(
            "every agent back on 1.0.0",
            lambda: all(world.slot(n).get("active") in v1_ids for n in world.agents),
            180,
        )
        # what the devices report is not yet what they serve: wait until each one answers with 1.0.0
        traffic.reset()
        world.wait(
            "every agent answering with 1.0.0",
            lambda: all(s.last_version == "digits/1.0.0" for s in traffic.stats.values()),
            60,
        )
        exposed = next(s["members"] for s in result["stage_detail"] if s["index"] == 0)
        world.summary["v2_rollout"] = {
            "id": rollout_id,
            "status": result["status"],
            "halt_reason": reason,
            "exposed_devices": exposed,
            "rolled_back": True,
        }
        world.progress.say(f"{exposed} device(s) were exposed to 2.0.0; all agents run 1.0.0 again")


def _late_windows(telemetry: dict[str, Any]) -> dict[str, Any] | None:
    windows = telemetry.get("windows") or []
    late = [w for w in windows if float(w.get("late_s") or 0) > 5]
    if not late:
        return None
    return {"count": len(late), "max_late_s": max(float(w["late_s"]) for w in late)}


def _accuracy_table(world: _World, stats: dict[str, Any], version: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name, agent in world.agents.items():
        s = stats[name]
        acc = s.accuracy(version)
        table[name] = {
            "class": agent["class"],
            "answered": s.answered.get(version, 0),
            "accuracy": acc,
            "failed": s.failed,
        }
        shown = f"{acc * 100:5.1f} %" if acc is not None else "   n/a"
        answered = s.answered.get(version, 0)
        world.progress.say(f"{name:10} {agent['class']:24} {version}  {answered:4} answers  accuracy {shown}")
    return table


def _summarize(world: _World) -> None:
    with world.progress.step("Summary"):
        devices = world.api("/v1/devices")["items"]
        world.summary["devices"] = {
            d["id"]: {"class": d["hardware_class"], "status": d["status"]} for d in devices
        }
        world.summary["active"] = {name: world.slot(name).get("active") for name in world.agents}
        world.summary["artifacts"] = world.artifacts
        world.summary["timings_s"] = world.progress.timings
        health = world.api("/v1/fleet/health")
        world.summary["fleet_requests"] = health["totals"]["requests"]
        print(
            json.dumps(
                {k: world.summary[k] for k in ("active", "v1_accuracy", "v2_rollout", "offline_agent")},
                indent=2,
            )
        )


def _keep_running(world: _World) -> None:
    """Print where everything runs, then wait for Ctrl-C (SIGINT) or SIGTERM; the caller stops it all."""
    pids = {name: proc.pid for name, proc in world.procs.children.items()}
    (world.opts.workdir / "pids.json").write_text(json.dumps(pids, indent=2))
    world.progress.say(
        f"left running (--keep): control plane {world.server_url}, dashboard {world.server_url}/dashboard"
    )
    world.progress.say(f"admin token: {world.admin_token}")
    for name, agent in world.agents.items():
        world.progress.say(f"agent {name}: inference at {agent.get('endpoint')}")
    world.progress.say("press Ctrl-C (or send SIGTERM) to stop everything the demo started")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        world.progress.say("stopping the control plane and the agents")
