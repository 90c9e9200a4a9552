"""What a sync round in a short-lived child would buy and cost, measured before it is built (issue 17, 6).

    .venv/bin/python bench/lean_agent.py [--rounds 2] [--child-rounds 7] [--work-dir DIR]

The structural change named in docs/decisions.md ("A lean agent, second pass") moves the sync stack (signed
check-in over httpx, TUF, telemetry upload, probes, ``cryptography``) out of the resident ``agent run`` into a
child per sync round. This bench measures both sides on a real agent, ratios against a bare ONNX Runtime
process holding the same digits model, measured in the same run:

- **what the parent would keep**: the real ``edgefleet agent run`` on a committed version, steady state, as it
  is; then the same command held at the sync-stack boundary (``agent.app`` calls ``_skip_httpx_cli`` right
  before it imports httpx, TUF, the channel and sync: the bench replaces it with a wait), so the process holds
  exactly what it holds before any sync code runs (serving, installer, journal, telemetry queue, CLI); then
  held with ``cryptography`` kept out (``read_identity`` parses the director key at start: the bench skips
  that parse) and with ``ssl`` kept out as well (``http.server`` imports ``http.client``, which imports
  ``ssl`` when it can). VmRSS of the process tree, once serving is up and the inventory child has ended;
  interleaved rounds, median.
- **what each round would cost**: a child interpreter that imports the sync stack (not the serving path),
  re-verifies the stored desired state and sends one signed conditional GET of the desired state (answered
  304, the common case) to a real local server, as CPU seconds (user + system, ``RUSAGE_CHILDREN``) and wall
  seconds per round, and its peak RSS; against the same signed request from a warm resident channel.

These are projections of the parent's floor, not the change: a built child would also carry the report,
upload and fetch, and the parent would gain the code that starts it and reads its result.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving as bench  # bench/serving.py: the artifact, the real agent, the bare process
from server_process import start_server

AGENT_RUN = [sys.executable, "-m", "edgefleet.cli", "agent", "run", "--data-dir"]
OPTIONS = [
    "--poll-interval",
    "0.5",
    "--telemetry-window",
    "5",
    "--telemetry-interval",
    "2",
    "--log-level",
    "warning",
]


def held_command(data: Path, *, no_crypto: bool, no_ssl: bool) -> list[str]:
    """``agent run`` stopped where the sync stack would be imported (SIGTERM ends it)."""
    code = "import sys\n" + ("sys.modules['ssl'] = None\n" if no_ssl else "")
    code += "import os, signal, threading, edgefleet.agent.app as app\n"
    code += "signal.signal(signal.SIGTERM, lambda *_: os._exit(0))\n"
    if no_crypto:
        code += (
            "import edgefleet.agent.datadir as d\nd.DeviceIdentity.director_key = property(lambda s: None)\n"
        )
    code += "app._skip_httpx_cli = lambda: threading.Event().wait()\n"
    code += f"sys.argv = ['edgefleet', 'agent', 'run', '--data-dir', {str(data)!r}, *{OPTIONS!r}]\n"
    code += "from edgefleet.cli.main import main\nmain()\n"
    return [sys.executable, "-c", code]


def steady_tree_kb(command: list[str], data: Path) -> int:
    """Start ``command`` on the committed data dir; VmRSS of its process tree once serving is up, the
    runtime-inventory child has ended and a telemetry window has closed."""
    endpoint = data / "serving-endpoint"
    endpoint.unlink(missing_ok=True)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench._wait(endpoint.exists, "the agent's endpoint")
        time.sleep(5)
        bench._wait(lambda: not bench._children(proc.pid), "the inventory child to end", 60)
        time.sleep(6)
        return bench._reads(proc.pid)[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bare_kb(art: Path) -> int:
    code = bench.RSS_BARE.replace("print(", "import time; time.sleep(600) or print(")
    proc = subprocess.Popen([sys.executable, "-c", code, str(art)])
    try:
        time.sleep(6)
        return bench._vm_rss_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


CHILD_ROUND = """
import sys
sys.modules.setdefault("httpx._main", None)  # as agent.app's _skip_httpx_cli
from datetime import datetime, timezone
import edgefleet.agent.install.content, edgefleet.agent.probe.runner, edgefleet.agent.sync
import edgefleet.agent.telemetry.uploader
from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.trust.director import verify_desired_state
ddir = DataDir(sys.argv[1])
ident = ddir.read_identity()
state = verify_desired_state(ddir.read_desired_envelope(), director_key=ident.director_key,
    device_id=ident.device_id, last_generation=0, now=datetime.min.replace(tzinfo=timezone.utc),
    time_floor=None)
channel = DeviceChannel(ident.server_url, device_id=ident.device_id, key=ddir.read_key())
def poll():
    tag = f'"{state.generation}"'
    return channel.request("GET", "/v1/device/desired-state", headers={"if-none-match": tag})
status = poll().status_code
if len(sys.argv) > 2:  # warm: the same request again from this process, timed
    import statistics, time
    walls, cpus = [], []
    for _ in range(int(sys.argv[2])):
        t, c = time.perf_counter(), time.process_time()
        poll()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    print(statistics.median(walls), statistics.median(cpus))
channel.close()
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(peak, status)  # VmHWM, KiB (ru_maxrss would carry the forking parent's across exec)
"""


def child_round_figures(work: Path, rounds: int) -> None:
    """Restart the bench's server on its data dir; a copy of the agent's data dir points at it."""
    server = start_server(work / "server")
    data = work / "child-data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(work / "agent", data, ignore=shutil.ignore_patterns("agent.lock"))
    identity = data / "identity" / "device.json"
    identity.write_text(json.dumps({**json.loads(identity.read_text()), "server_url": server.url}))
    walls, cpus, peaks = [], [], []
    try:
        for _ in range(rounds):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", CHILD_ROUND, str(data)], capture_output=True, text=True
            )
            walls.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if done.returncode != 0 or done.stdout.split()[-1] != "304":
                raise SystemExit(f"child round failed:\n{done.stdout}\n{done.stderr[-2000:]}")
            peaks.append(int(done.stdout.split()[-2]))
        warm = subprocess.run(
            [sys.executable, "-c", CHILD_ROUND, str(data), "20"], capture_output=True, text=True, check=True
        )
        warm_wall, warm_cpu = (float(v) for v in warm.stdout.split()[:2])
    finally:
        server.stop()
    cpu, wall = statistics.median(cpus), statistics.median(walls)
    print("# a sync round in a child: sync-stack imports, the stored state re-verified, one signed GET (304)")
    print(f"child round CPU (user+sys)     median {cpu:.3f} s  (min {min(cpus):.3f}, max {max(cpus):.3f})")
    print(f"child round wall               median {wall:.3f} s  (min {min(walls):.3f}, max {max(walls):.3f})")
    print(f"child peak RSS                 median {statistics.median(peaks) / 1024:.1f} MiB")
    print(f"warm resident request          median {warm_wall * 1e3:.1f} ms wall, {warm_cpu * 1e3:.2f} ms CPU")
    print(f"RATIO child round/resident CPU {statistics.median(cpus) / warm_cpu:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved RSS rounds")
    parser.add_argument("--child-rounds", type=int, default=7)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="edgefleet-bench-lean-"))
    art = bench.build_artifact(work)
    x = np.load(work / "trained" / "validation.npz")["input"][:1].copy()
    first = bench.agent_run_figures(art, work, x, requests=200)  # enrolls, installs, commits, restarts
    data = work / "agent"
    variants = {
        "agent run, as it is": [*AGENT_RUN, str(data), *OPTIONS],
        "held at the sync boundary": held_command(data, no_crypto=False, no_ssl=False),
        "held, without cryptography": held_command(data, no_crypto=True, no_ssl=False),
        "held, without cryptography and ssl": held_command(data, no_crypto=True, no_ssl=True),
    }
    figures: dict[str, list[int]] = {"bare": [], **{name: [] for name in variants}}
    for _ in range(args.rounds):
        figures["bare"].append(bare_kb(art))
        for name, command in variants.items():
            figures[name].append(steady_tree_kb(command, data))
    base = statistics.median(figures["bare"])
    print(f"# steady state, committed digits CNN, process-tree VmRSS, median of {args.rounds} rounds")
    for name, kbs in figures.items():
        mib = ", ".join(f"{kb / 1024:.1f}" for kb in kbs)
        print(f"{name:38} {mib:>14} MiB   RATIO/bare {statistics.median(kbs) / base:.3f}")
    firsts = ", ".join(f"{s:.2f}" for s in first.first_inference_s)
    print(f"time to first inference, restarts on the committed version: {firsts} s")
    child_round_figures(work, args.child_rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
