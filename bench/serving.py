"""Serving overheads on the reference digits CNN at batch 1, as ratios of baselines measured in this run.

    .venv/bin/python bench/serving.py [--iterations 3000] [--work-dir DIR] [--no-agent-run] [--https]

Prints:
- in-process API (``InferenceService.predict``) latency p50/p99 / raw ``InferenceSession.run`` on the same
  model with the same thread settings (target: <= 1.05 at p50); calls are interleaved so drift hits both;
- the input guard's cost (non-finite and calibrated-range check, ``agent/serve/guard.py``): API p50/p99 with
  the guard / without (``ServingConfig(input_guard=False)``), interleaved, with the median paired difference
  and its 95 % bootstrap interval;
- the trial worker's hop: API p50/p99 with the model in a supervised worker process (how a version on trial
  is served) / in-process (how a committed version is served), and the added microseconds per call;
- the local HTTP endpoint's added latency in microseconds (keep-alive loopback, ``.npy`` in, JSON out),
  p50 and p99 over the in-process API;
- shadow mode's cost on the active path: API p50/p99 with a shadow candidate at 10% sampling / without;
- resident memory of a process serving the model through ``edgefleet.agent.load()`` / a bare onnxruntime
  process holding it;
- where the rest goes: the VmRSS each layer ``agent run`` imports adds (msgspec and the wire structs,
  serving, installer and telemetry queue, the sync loop with the drivers of its children, the CLI), in one
  process, cumulative ratios against the bare process; then, apart: the channel's TLS context and CA bundle,
  which a device talking to an ``https://`` server holds (the bench's server is plain http on loopback;
  ``--https`` measures a real agent on https, below), and, for comparison, what the children import and the
  resident agent no longer does (httpx with a client, TUF, cryptography; pydantic and the protocol models);
- resident memory of a real ``edgefleet agent run`` (enrolled with a local ``edgefleet server``, the model
  installed by its installer from the server's signed repository, telemetry queue and uploader running, the
  local HTTP endpoint answering) / the bare process, read from ``/proc/<pid>/status`` as the agent process
  alone and as the process tree (the agent and its children), in two states: during the version's trial
  (served from a supervised trial worker child: one extra process holding the model; the installer closes the
  worker that checked the candidate once it is switched to) and in the steady state after the commit (served
  in-process, no child: the runtime-inventory child has ended too). The budget (``docs/serving.md``, target
  <= 1.3) is the steady state's process tree. The agent runs as a device's service runs it, with bytecode
  writable (this host sets ``PYTHONDONTWRITEBYTECODE``; it is dropped for the agent), so its lean bytecode
  cache in the data dir is warmed at its first start; printed: the agent's interpreter options, that cache,
  and the steady state again after the last restart below (bytecode read from the cache). The agent runs
  at the default intervals (poll 30 s, upload 60 s); ``--no-agent-run`` skips it (it starts a server and
  an agent process);
- what the steady state's polls cost: over ``ROUND_WINDOW_S``, the resident agent's CPU per poll interval
  (``/proc/<pid>/stat``), the children it started (none expected: a poll whose assignment did not change
  starts no fetch child) and the process tree's peak VmRSS, sampled every 0.1 s;
- time to first inference: seconds from starting ``edgefleet agent run`` on a device that already holds the
  committed digits model to its first answered request on the local endpoint (three restarts);
- with ``--https``, the ``agent run`` figures again (trial, steady state, polls, first inference; lines
  labelled ``[https]``) for an agent talking https to its control plane, as a device does: a second local
  server behind a TLS-terminating relay in the bench's process (``bench/tls_relay.py``: a throwaway CA and a
  certificate for 127.0.0.1, trusted by ``agent enroll`` and ``agent run`` through ``SSL_CERT_FILE``); the
  agent is enrolled with the relay's ``https://`` URL, so its polls, uploads and its fetch child's TUF
  metadata and targets (content base URL ``<server URL>/tuf``) go over TLS, the operator's commands over
  http. Then the evidence: the TLS connections the relay served (for ``agent enroll``, while the steady
  polls were watched, in all), the server and content URLs the agent holds, OpenSSL's libraries mapped in
  the steady agent process with their VmRSS (``/proc/<pid>/smaps``; and in the http agent: none expected),
  and the steady state's https - http difference against the layers' estimate for ssl and its TLS context.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH_CLASS = "bench-cpu"


def build_artifact(work: Path) -> Path:
    """Train the reference CNN (seeded, a few seconds) and lay it out as an artifact directory."""
    import edgefleet.optimize.digits as module

    trained = work / "trained"
    if not (trained / "model.onnx").exists():
        assert module.main([str(trained)]) == 0
    art = work / "artifact"
    art.mkdir(exist_ok=True)
    model = (trained / "model.onnx").read_bytes()
    x = np.load(trained / "validation.npz")["input"][:4]
    import onnxruntime as ort

    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    golden = io.BytesIO()
    np.savez(golden, **{"input:input": x, "output:logits": expected})
    files = {"model.onnx": model, "golden.npz": golden.getvalue()}
    for name, data in files.items():
        (art / name).write_bytes(data)
    manifest = {
        "schema_version": 1,
        "model": "digits-cnn",
        "version": "1.0.0",
        "hardware_class": BENCH_CLASS,
        "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
        "entrypoint": "model.onnx",
        "files": [
            {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for n, d in files.items()
        ],
        "signature": {
            "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}],
        },
        "optimization": {"source_sha256": hashlib.sha256(model).hexdigest()},
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 1000.0, "warmup_runs": 50},
        "release_counter": 1,
        "input_kind": "image",
        "input_ranges": {
            "input": {"min": -0.25, "max": 1.25}
        },  # the digits' [0, 1], widened as the build does
    }
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def interleaved(fns: list[Callable[[], object]], iterations: int) -> list[list[float]]:
    """Time each fn once per round, rotating the order, so drift and noise hit all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        for _ in range(200):
            fn()
    order = list(range(len(fns)))
    for i in range(iterations):
        for j in order[i % len(fns) :] + order[: i % len(fns)]:
            start = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - start)
    return times


RSS_BARE = """
import numpy as np, onnxruntime as ort, sys
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1] + "/model.onnx", so, providers=["CPUExecutionProvider"])
s.run(None, {"input": np.zeros((1, 1, 8, 8), np.float32)})
print([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
"""
RSS_AGENT = """
import numpy as np, sys
from edgefleet.agent import load, predict
load(sys.argv[1], start=True)
predict({"input": np.zeros((1, 1, 8, 8), np.float32)})
print([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
"""

RSS_LAYERS = """
import sys
sys.modules["_hashlib"] = None  # as `agent run` does for versions under 64 MiB (agent.sha256_choice)
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
marks = [("python", rss())]
import numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1] + "/model.onnx", so, providers=["CPUExecutionProvider"])
s.run(None, {"input": np.zeros((1, 1, 8, 8), np.float32)})
marks.append(("bare: numpy, onnxruntime, the session", rss()))
import edgefleet.cli.agent_process  # what `agent run` execs into: no click
import edgefleet.protocol.wire.desired_state, edgefleet.protocol.wire.manifest
import edgefleet.protocol.wire.hardware_class, edgefleet.protocol.wire.telemetry
import edgefleet.protocol.wire.probe
marks.append(("msgspec and the wire structs (protocol.wire)", rss()))
from edgefleet.agent import load, predict
load(sys.argv[1], start=True)
predict({"input": np.zeros((1, 1, 8, 8), np.float32)})
marks.append(("serving: service, endpoint (h11), a second session", rss()))
import edgefleet.agent.app, edgefleet.agent.install.installer, edgefleet.agent.telemetry.recorder
marks.append(("installer, telemetry queue (sqlite), agent wiring", rss()))
import edgefleet.agent.sync, edgefleet.agent.channel, edgefleet.agent.install.child_fetcher
import edgefleet.agent.probe.runner, edgefleet.agent.telemetry.uploader, edgefleet.agent.hints
from edgefleet.agent.http_transport import StdlibTransport
from edgefleet.trust.ed25519 import Ed25519Signer, Ed25519VerifyKey
Ed25519VerifyKey(Ed25519Signer(bytes(32)).public_key().raw).verifies(bytes(64), b"x")  # PyNaCl
marks.append(("sync loop, channel (h11 on a socket), uploader, probes, PyNaCl", rss()))
transport = StdlibTransport("https://control.example", timeout_s=15)  # ssl, its TLS context and CA bundle
marks.append(("[https only] ssl (libcrypto), the TLS context and CA bundle", rss()))
del sys.modules["_hashlib"]
import importlib, hashlib
importlib.reload(hashlib).sha256(b"x")
marks.append(("[64 MiB installed or more] OpenSSL's SHA-256 (hashlib)", rss()))
import edgefleet.cli.main, edgefleet.cli.agent_cmd
marks.append(("[parses, then execs] the CLI (click)", rss()))
import pydantic, edgefleet.protocol.desired_state, edgefleet.protocol.manifest, edgefleet.protocol.telemetry
edgefleet.protocol.desired_state.DesiredState.model_json_schema()  # what validating with them builds
marks.append(("[no longer resident] pydantic and the protocol models", rss()))
# Not resident: what the fetch child (agent.install.fetch_child) imports in its own process
from edgefleet.agent.channel import skip_httpx_cli
skip_httpx_cli()
import httpx, edgefleet.agent.install.content
httpx.Client().close()
marks.append(("[children only] httpx and a client, TUF, cryptography", rss()))
for name, kb in marks:
    print(name + "\t" + str(kb))
"""


def rss_layers(art: Path) -> list[tuple[str, int]]:
    """VmRSS after each layer of what ``agent run`` imports, in one fresh process (a module shared by two
    layers counts in the first). Median of three runs per layer."""
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", RSS_LAYERS, str(art)], capture_output=True, text=True, check=True
        )
        runs.append([line.split("\t") for line in out.stdout.strip().splitlines()])
    return [(name, int(statistics.median(int(r[i][1]) for r in runs))) for i, (name, _) in enumerate(runs[0])]


def rss_kb(code: str, art: Path) -> int:
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code, str(art)], capture_output=True, text=True, check=True
        )
        runs.append(int(out.stdout.strip().splitlines()[-1]))
    return int(statistics.median(runs))


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return out


def _tree_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS of ``pid``, VmRSS of it and all its descendants): a trial worker holds the model in a child."""
    own = _vm_rss_kb(pid)
    total, todo = own, _children(pid)
    while todo:
        child = todo.pop()
        try:
            total += _vm_rss_kb(child)
        except (OSError, RuntimeError):
            continue
        todo += _children(child)
    return own, total


def _inventory_running(pid: int) -> bool:
    for child in _children(pid):
        try:
            if b"runtime.inventory" in Path(f"/proc/{child}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def _vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _wait(predicate: Callable[[], object], what: str, timeout_s: float = 120.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


POLL_S = 30.0
"""The bench agent's poll interval: the default, as a device runs."""
ROUND_WINDOW_S = 95.0
"""How long the steady-state agent's polls and uploads are watched: CPU, children, peak (three polls, an
upload)."""
TRIAL_WINDOW_S = 40.0
"""The bench agent's trial window: long enough to measure the trial, short enough to reach the commit."""


@dataclass
class AgentRunFigures:
    mode: str
    trial_own_kb: int
    """The agent process alone during the trial (median of three reads)."""
    trial_tree_kb: int
    """The agent and its children during the trial (the serving trial worker and the installer's)."""
    steady_own_kb: int
    """After the commit: served in-process, no child left."""
    steady_tree_kb: int
    bare_after_kb: int = 0
    """The bare process again, right after the steady read: its file-backed pages move with the page cache."""
    rounds: RoundFigures | None = None
    first_inference_s: list[float] = field(default_factory=list)
    """Seconds from `agent run` start to its first answered request, per restart on the committed version."""
    restart_tree_kb: int = 0
    """The steady state again after the last restart (no child): bytecode read from the agent's cache."""
    interpreter: str = ""
    """The steady agent's interpreter options (its ``/proc/<pid>/cmdline`` before ``-m``)."""
    cache_files: int = 0
    cache_bytes: int = 0
    """The lean bytecode cache in the data dir (``<data-dir>/pycache``), after the run."""
    crypto_maps_kb: dict[str, int] = field(default_factory=dict)
    """OpenSSL's libraries (libcrypto, libssl, ``_ssl``) mapped in the steady agent process, and the VmRSS
    each holds there (``/proc/<pid>/smaps``): none expected over http, below 64 MiB installed."""
    tls: TlsEvidence | None = None
    """With ``https``: what went through the TLS relay."""


@dataclass
class TlsEvidence:
    server_url: str
    """The enrolled identity's server URL (the relay's ``https://`` URL)."""
    content_url: str
    """Where the agent fetches TUF metadata and targets (the identity's content base URL)."""
    enroll_connections: int
    """TLS connections the relay served up to the end of ``agent enroll``."""
    steady_connections: int
    """TLS connections served while the steady state's polls were watched (the resident agent's own)."""
    connections: int
    """TLS connections served in all (enroll, the agent, its fetch child, the restarts)."""
    failed: int
    versions: str


def _reads(pid: int) -> tuple[int, int]:
    """Median (own, tree) VmRSS over three reads a second apart."""
    owns, trees = [], []
    for _ in range(3):
        own, tree = _tree_rss_kb(pid)
        owns.append(own)
        trees.append(tree)
        time.sleep(1)
    return int(statistics.median(owns)), int(statistics.median(trees))


def _cpu_s(pid: int) -> tuple[float, float]:
    """(own, children's) CPU seconds (user + system) of ``pid`` so far: ``/proc/<pid>/stat`` fields 14-17;
    children count once they have ended and been waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


@dataclass
class RoundFigures:
    window_s: float
    own_cpu_s: float
    children_cpu_s: float
    children: int
    """Child processes started in the window (a poll whose assignment did not change starts none)."""
    peak_tree_kb: int
    """The process tree's highest VmRSS in the window, sampled every 0.1 s."""


def round_figures(pid: int, window_s: float) -> RoundFigures:
    """What the steady-state agent spends over ``window_s`` of polls and uploads: its own CPU, its
    children's (if any started), and the process tree's peak VmRSS, so a figure between polls is not
    mistaken for what the device must hold while it talks to its server."""
    own0, kids0 = _cpu_s(pid)
    seen: set[int] = set()
    peak_kb = 0
    end = time.monotonic() + window_s
    while time.monotonic() < end:
        seen.update(_children(pid))
        with contextlib.suppress(OSError, RuntimeError):
            peak_kb = max(peak_kb, _tree_rss_kb(pid)[1])
        time.sleep(0.1)
    own1, kids1 = _cpu_s(pid)
    return RoundFigures(window_s, own1 - own0, kids1 - kids0, len(seen), peak_kb)


def _crypto_maps_kb(pid: int) -> dict[str, int]:
    """OpenSSL's shared libraries and the ``_ssl`` module mapped in ``pid``: file name -> VmRSS (kB) of its
    mappings, from ``/proc/<pid>/smaps``."""
    out: dict[str, int] = {}
    name = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0]:  # a mapping: address range, perms, ..., path
            path = head[5] if len(head) > 5 else ""
            base = path.rsplit("/", 1)[-1]
            keep = base.startswith(("libcrypto", "libssl", "_ssl.", "_hashlib."))
            name = base if keep else None
            if name is not None:
                out.setdefault(name, 0)
        elif name is not None and line.startswith("Rss:"):
            out[name] += int(head[1])
    return out


def _first_answer_s(endpoint: Path, body: bytes, started: float, timeout_s: float = 60.0) -> float:
    """Poll the agent's endpoint file, then its predict route, until a request is answered (200)."""
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if endpoint.exists() and endpoint.read_text().strip():
            host, port = endpoint.read_text().strip().removeprefix("http://").rsplit(":", 1)
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
                conn.request("POST", "/v1/predict", body, {"Content-Type": "application/x-npy"})
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            if ok:
                return time.perf_counter() - started
        time.sleep(0.01)
    raise SystemExit("the restarted agent answered no request")


def agent_run_figures(
    art: Path, work: Path, x: np.ndarray, *, requests: int = 500, https: bool = False
) -> AgentRunFigures:
    """RSS of a real ``edgefleet agent run`` serving ``art``: a local server (dev keys), the bench class
    (``medical-cart-cpu`` with 1/1 threads, like the bare process), the artifact registered, signed into
    the repository and pinned to the class; an enrolled agent installs it (TUF, health check, trial of
    ``TRIAL_WINDOW_S``) and serves it on its HTTP endpoint. Read after ``requests`` answers during the trial,
    then after the commit once no child process is left; then three restarts on the committed version.

    ``https``: the agent talks to the server through a TLS-terminating relay in this process
    (``tls_relay.TlsRelay``, a throwaway CA it trusts through ``SSL_CERT_FILE``), as a device talks to its
    control plane: it is enrolled with the relay's ``https://`` URL, so its polls, uploads and the fetch
    child's TUF metadata and targets (the content base URL defaults to ``<server URL>/tuf``) go over TLS. The
    operator's commands (register, push, publish, pin) still talk plain http to the server."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from server_process import start_server
    from tls_relay import TlsRelay, write_certificates

    from edgefleet.agent.runtime.inventory import INVENTORY_DELAY_S
    from edgefleet.client import EdgefleetClient
    from edgefleet.protocol import parse_classes_toml
    from edgefleet.protocol.hardware_class import Threads

    suffix = "-https" if https else ""
    server = start_server(work / f"server{suffix}")
    cli = [sys.executable, "-m", "edgefleet.cli"]
    env = {**os.environ, "EDGEFLEET_SERVER": server.url, "EDGEFLEET_TOKEN": server.token}
    relay: TlsRelay | None = None
    agent_url = server.url
    # as a device's service runs it: bytecode may be written (this host sets PYTHONDONTWRITEBYTECODE), so the
    # agent's lean bytecode cache in its data dir is filled at its first start (cli.agent_process)
    agent_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run(*args: str, run_env: dict[str, str] | None = None) -> str:
        done = subprocess.run([*cli, *args], capture_output=True, text=True, env=run_env or env, timeout=180)
        if done.returncode != 0:
            raise SystemExit(f"edgefleet {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    agent: subprocess.Popen[bytes] | None = None
    try:
        if https:
            certs = write_certificates(work / "tls")
            host, port = server.url.removeprefix("http://").rsplit(":", 1)
            relay = TlsRelay(certs, (host, int(port))).__enter__()
            agent_url, agent_env = relay.url, {**agent_env, "SSL_CERT_FILE": str(certs.ca)}
        [base] = [
            c
            for c in parse_classes_toml((REPO / "examples" / "hardware-classes.toml").read_text())
            if c.name == "medical-cart-cpu"
        ]
        bench_class = base.model_copy(
            update={"name": BENCH_CLASS, "threads": Threads(intra_op=1, inter_op=1)}
        )
        with EdgefleetClient(server.url, server.token) as client:
            client.apply_classes([bench_class])
            token = client.create_enrollment_token(BENCH_CLASS).token
        run("model", "create", "digits-cnn")
        run("model", "version", "add", "digits-cnn", "1.0.0", str(art / "model.onnx"))
        artifact_id = json.loads(run("artifact", "push", str(art), "--json"))["id"]
        run("publish", str(art), "--release-key", str(work / f"server{suffix}" / "keys" / "release.key"))
        run("device", "pin", artifact_id, "--class", BENCH_CLASS)
        data = work / f"agent{suffix}"
        enroll = ["agent", "enroll", "--server", agent_url, "--token", token, "--data-dir", str(data)]
        run(*enroll, "--json", run_env={**env, **agent_env})
        enroll_connections = relay.served if relay is not None else 0
        from edgefleet.agent.datadir import DataDir

        identity = DataDir(data).read_identity()
        urls = (identity.server_url, identity.content_base_url)  # the channel's, the TUF fetches'
        if not all(url.startswith(agent_url) for url in urls):
            raise SystemExit(f"the agent would talk to {identity.server_url}, {identity.content_base_url}")
        # the default intervals: the steady state's CPU per poll is measured as a device would run
        options = ["--poll-interval", str(POLL_S), "--telemetry-window", "5", "--telemetry-interval", "60"]
        options += ["--trial-window", str(TRIAL_WINDOW_S)]
        agent = subprocess.Popen(
            [*cli, "agent", "run", "--data-dir", str(data), *options, "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=agent_env,
        )
        endpoint = data / "serving-endpoint"
        _wait(endpoint.exists, "the agent's endpoint")
        host, port = endpoint.read_text().removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)

        def serving_the_artifact() -> str | None:
            conn.request("GET", "/v1/status")
            status = json.loads(conn.getresponse().read())
            return status["mode"] if status.get("artifact_id") == artifact_id else None

        mode = str(_wait(serving_the_artifact, "the agent serving the installed artifact"))
        serving_at = time.monotonic()
        body = io.BytesIO()
        np.save(body, x)
        for _ in range(requests):
            conn.request("POST", "/v1/predict", body.getvalue(), {"Content-Type": "application/x-npy"})
            resp = conn.getresponse()
            data_out = resp.read()
            assert resp.status == 200, data_out
        conn.close()
        pid = agent.pid
        # the runtime-inventory child runs once, INVENTORY_DELAY_S after serving is up: read after it ended
        time.sleep(max(0.0, INVENTORY_DELAY_S - (time.monotonic() - serving_at)))
        _wait(lambda: not _inventory_running(pid), "the runtime-inventory child to end")
        trial_file = data / "slots" / "default" / "trial"
        if not trial_file.exists():
            raise SystemExit(f"the trial ended before it was measured (window {TRIAL_WINDOW_S} s)")
        trial_own, trial_tree = _reads(pid)
        _wait(lambda: not trial_file.exists(), "the commit", timeout_s=TRIAL_WINDOW_S + 120)
        _wait(lambda: not _children(pid), "the trial workers and the inventory child to end", 180)
        time.sleep(6)  # a telemetry window closes
        steady_own, steady_tree = _reads(agent.pid)
        argv = Path(f"/proc/{agent.pid}/cmdline").read_bytes().decode().split("\0")
        interpreter = " ".join(argv[1 : argv.index("-m")] if "-m" in argv else [])
        crypto = _crypto_maps_kb(agent.pid)
        bare_after = rss_kb(RSS_BARE, art)
        before_rounds = relay.served if relay is not None else 0
        rounds = round_figures(agent.pid, ROUND_WINDOW_S)
        steady_connections = (relay.served if relay is not None else 0) - before_rounds
        first = []
        for _ in range(3):  # restart on the installed artifact: start -> first answered request
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
            endpoint.unlink(missing_ok=True)
            started = time.perf_counter()
            agent = subprocess.Popen(
                [*cli, "agent", "run", "--data-dir", str(data), *options, "--log-level", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=agent_env,
            )
            first.append(_first_answer_s(endpoint, body.getvalue(), started))
        time.sleep(INVENTORY_DELAY_S)  # the last restart in its steady state: after its inventory child
        _wait(lambda: not _children(agent.pid), "the inventory child after the restart to end", 120)
        time.sleep(6)
        _, restart_tree = _reads(agent.pid)
        cache = [p for p in (data / "pycache").rglob("*.pyc")]
        tls = None
        if relay is not None:
            tls = TlsEvidence(
                identity.server_url,
                identity.content_base_url,
                enroll_connections,
                steady_connections,
                relay.served,
                relay.failed,
                ", ".join(sorted(relay.versions)),
            )
        return AgentRunFigures(
            mode,
            trial_own,
            trial_tree,
            steady_own,
            steady_tree,
            bare_after,
            rounds,
            first,
            restart_tree,
            interpreter,
            len(cache),
            sum(p.stat().st_size for p in cache),
            crypto,
            tls,
        )
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
        if relay is not None:
            relay.close()
        server.stop()


def print_agent_run(run: AgentRunFigures, bare: int, p: str = "") -> None:
    """The ``agent run`` lines, each prefixed with ``p`` (``"[https] "`` for the agent on https)."""
    print(f"{p}# `edgefleet agent run` serving on {run.mode}; RSS from /proc, bare process as the baseline")
    for label, own, tree in (
        ("trial", run.trial_own_kb, run.trial_tree_kb),
        ("steady", run.steady_own_kb, run.steady_tree_kb),
    ):
        print(
            f"{p}RSS agent run, {label:6} process  {own / 1024:8.1f} MiB   RATIO {own / bare:.3f}   "
            f"process tree {tree / 1024:8.1f} MiB   RATIO {tree / bare:.3f}"
        )
    steady = run.steady_tree_kb / bare
    print(
        f"{p}RATIO agent run/bare RSS       {steady:.3f}   "
        "(steady state, process tree, build host; target <= 1.3)"
    )
    excess = (run.steady_tree_kb - bare) / 1024
    again = run.steady_tree_kb / run.bare_after_kb
    print(
        f"{p}RSS agent run over bare        {excess:8.1f} MiB   (bare again after the steady read: "
        f"{run.bare_after_kb / 1024:.1f} MiB, RATIO {again:.3f}; the bare process's file-backed pages "
        "move with the page cache, so compare this excess)"
    )
    print(
        f"{p}RSS agent run, after a restart {run.restart_tree_kb / 1024:8.1f} MiB   RATIO "
        f"{run.restart_tree_kb / bare:.3f}   (steady again after the last restart below; over bare "
        f"{(run.restart_tree_kb - bare) / 1024:.1f} MiB)"
    )
    print(
        f"{p}AGENT interpreter              {run.interpreter or '(no options)'}; bytecode cache "
        f"{run.cache_files} files, {run.cache_bytes / 1024**2:.1f} MiB, warmed at its first start"
    )
    print(f"{p}# during a trial the serving trial worker holds the model in a child process: not budgeted")
    if run.rounds is not None:
        r = run.rounds
        polls = r.window_s / POLL_S
        print(
            f"{p}STEADY polls                   {r.own_cpu_s / polls:8.3f} s CPU per {POLL_S:.0f} s poll "
            f"(resident agent), children started {r.children} ({r.children_cpu_s:.2f} s CPU), peak "
            f"process tree {r.peak_tree_kb / 1024:.1f} MiB RATIO {r.peak_tree_kb / bare:.3f} over "
            f"{r.window_s:.0f} s; build host"
        )
    if run.first_inference_s:
        print(
            f"{p}TIME to first inference        {statistics.median(run.first_inference_s):8.3f} s   "
            f"(build host; `agent run` restart on the committed artifact, median of "
            f"{len(run.first_inference_s)}; "
            f"runs {', '.join(f'{t:.2f}' for t in run.first_inference_s)} s; target <= 1 s)"
        )


def _maps_text(maps: dict[str, int]) -> str:
    return ", ".join(f"{name} {kb / 1024:.1f} MiB" for name, kb in sorted(maps.items())) or "none"


def print_https_evidence(run: AgentRunFigures, secure: AgentRunFigures, tls_layer_kb: int) -> None:
    """That the https agent spoke TLS (the relay's count) and holds OpenSSL; its steady state over http's."""
    t = secure.tls
    assert t is not None
    print(
        f"[https] TLS relay served {t.connections} connections ({t.versions}), {t.failed} failed: "
        f"{t.enroll_connections} for `agent enroll`, {t.steady_connections} while the steady polls were "
        f"watched (the resident agent's own; children started there: "
        f"{secure.rounds.children if secure.rounds else '?'}); server {t.server_url}, TUF content "
        f"{t.content_url}; the operator's commands stay on http"
    )
    crypto = "libcrypto" in " ".join(secure.crypto_maps_kb)
    print(
        f"[https] OpenSSL in the steady agent process (/proc/<pid>/smaps, VmRSS): "
        f"{_maps_text(secure.crypto_maps_kb)}; libcrypto {'mapped' if crypto else 'NOT MAPPED'} "
        f"(the http agent: {_maps_text(run.crypto_maps_kb)})"
    )
    tree = (secure.steady_tree_kb - run.steady_tree_kb) / 1024
    own = (secure.steady_own_kb - run.steady_own_kb) / 1024
    excess = (
        (secure.steady_tree_kb - secure.bare_after_kb) - (run.steady_tree_kb - run.bare_after_kb)
    ) / 1024
    print(
        f"[https] RSS agent run https - http  {tree:+6.1f} MiB steady process tree, {own:+6.1f} MiB steady "
        f"process, {excess:+6.1f} MiB over each run's bare-again process (the layers' estimate for ssl and "
        f"the TLS context: {tls_layer_kb / 1024:+.1f} MiB)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--no-agent-run", action="store_true", help="skip the `agent run` RSS figure")
    parser.add_argument(
        "--https",
        action="store_true",
        help="measure `agent run` a second time, talking https to the server through a TLS relay",
    )
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
    from edgefleet.agent.serve import (
        InferenceService,
        LocalEndpoint,
        ServingConfig,
        ShadowConfig,
        StaticSource,
        read_artifact_dir,
    )

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="edgefleet-bench-serving-"))
    art_dir = build_artifact(work)
    artifact = read_artifact_dir(art_dir)
    x = np.load(work / "trained" / "validation.npz")["input"][:1].copy()
    print(f"# reference CNN {artifact.model_version}, batch 1, {args.iterations} interleaved iterations")
    print(f"# cpu count {os.cpu_count()}, onnxruntime {ort.__version__}, intra/inter threads 1/1")

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    raw = ort.InferenceSession(str(art_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    feeds = {"input": x}
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())

    def run_raw() -> object:
        return raw.run(None, feeds)

    def run_api() -> object:
        return service.predict(feeds)

    t_raw, t_api = interleaved([run_raw, run_api], args.iterations)
    raw50, raw99 = pct(t_raw, 0.5), pct(t_raw, 0.99)
    api50, api99 = pct(t_api, 0.5), pct(t_api, 0.99)
    print(f"raw InferenceSession.run       p50 {raw50 * 1e6:8.1f} us   p99 {raw99 * 1e6:8.1f} us")
    print(f"in-process API predict         p50 {api50 * 1e6:8.1f} us   p99 {api99 * 1e6:8.1f} us")
    print(f"RATIO api/raw                  p50 {api50 / raw50:.3f}       p99 {api99 / raw99:.3f}")
    print(f"# constant overhead per call   p50 {(api50 - raw50) * 1e6:8.1f} us")

    unguarded = InferenceService(
        StaticSource(artifact), OnnxRuntimeAdapter(), ServingConfig(input_guard=False)
    )

    def run_unguarded() -> object:
        return unguarded.predict(feeds)

    t_guarded, t_unguarded = interleaved([run_api, run_unguarded], args.iterations)
    g50 = pct(t_guarded, 0.5) / pct(t_unguarded, 0.5)
    g99 = pct(t_guarded, 0.99) / pct(t_unguarded, 0.99)
    paired = np.array(t_guarded) - np.array(t_unguarded)  # the same round: drift hits both
    rng = np.random.default_rng(0)
    boots = np.median(rng.choice(paired, size=(1000, len(paired))), axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5]) * 1e6
    print(f"RATIO guard/no guard           p50 {g50:.3f}       p99 {g99:.3f}")
    cost = np.median(paired) * 1e6
    print(f"# guard cost per call          median {cost:+.2f} us  (95% CI {lo:+.2f} .. {hi:+.2f})")
    unguarded.close()
    # The version on trial is served by a supervised worker process (a crash of its runtime is the worker's
    # death, not the agent's): one pipe round trip per request. Committed versions are served in-process.
    from edgefleet.agent.runtime.worker import WorkerAdapter

    trial_service = InferenceService(StaticSource(artifact), WorkerAdapter("onnxruntime"))
    try:

        def run_trial() -> object:
            return trial_service.predict(feeds)

        t_api3, t_trial = interleaved([run_api, run_trial], max(500, args.iterations // 2))
    finally:
        trial_service.close()
    w50, w99 = pct(t_trial, 0.5), pct(t_trial, 0.99)
    a50, a99 = pct(t_api3, 0.5), pct(t_api3, 0.99)
    print(f"trial worker predict           p50 {w50 * 1e6:8.1f} us   p99 {w99 * 1e6:8.1f} us")
    print(f"RATIO trial worker/in-process  p50 {w50 / a50:.3f}       p99 {w99 / a99:.3f}")
    print(f"# trial worker hop per call    p50 {(w50 - a50) * 1e6:8.1f} us   (only while on trial)")

    body = io.BytesIO()
    np.save(body, x)
    payload = body.getvalue()
    with LocalEndpoint(service) as endpoint:
        conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
        headers = {"Content-Type": "application/x-npy"}

        def run_http() -> object:
            conn.request("POST", "/v1/predict", payload, headers)
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == 200, data
            return data

        t_api2, t_http = interleaved([run_api, run_http], max(500, args.iterations // 2))
        conn.close()
    added50 = (pct(t_http, 0.5) - pct(t_api2, 0.5)) * 1e6
    added99 = (pct(t_http, 0.99) - pct(t_api2, 0.99)) * 1e6
    http50, http99 = pct(t_http, 0.5) * 1e6, pct(t_http, 0.99) * 1e6
    print(f"HTTP endpoint (loopback, npy)  p50 {http50:8.1f} us   p99 {http99:8.1f} us")
    print(f"HTTP ADDED over in-process     p50 {added50:8.1f} us   p99 {added99:8.1f} us")

    shadowed = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter())
    shadowed.start_shadow(artifact, ShadowConfig(sample_fraction=0.1, max_pending=4))

    def run_shadowed() -> object:
        return shadowed.predict(feeds)

    t_plain, t_shadow = interleaved([run_api, run_shadowed], args.iterations)
    shadowed.drain_shadow()
    stats = shadowed.stop_shadow()
    s50 = pct(t_shadow, 0.5) / pct(t_plain, 0.5)
    s99 = pct(t_shadow, 0.99) / pct(t_plain, 0.99)
    print(f"RATIO shadow(10%)/no shadow    p50 {s50:.3f}       p99 {s99:.3f}")
    if stats is not None:
        print(
            f"# shadow compared {stats.samples}, skipped over budget {stats.skipped_budget}, "
            f"top-1 agreement {stats.top1_agreement}"
        )
    service.close()
    shadowed.close()

    bare = rss_kb(RSS_BARE, art_dir)
    agent = rss_kb(RSS_AGENT, art_dir)
    print(f"RSS bare onnxruntime process   {bare / 1024:8.1f} MiB")
    print(f"RSS agent serving the model    {agent / 1024:8.1f} MiB")
    print(f"RATIO agent/bare RSS           {agent / bare:.3f}")
    layers = rss_layers(art_dir)
    print("# where the rest goes: VmRSS added by each layer `agent run` imports, one process, build host")
    base_kb = dict(layers)["bare: numpy, onnxruntime, the session"]
    for (name, kb), (_, before) in zip(layers[1:], layers[:-1], strict=True):
        if name.startswith("[https only]"):  # the bench's server is http on loopback: not in `agent run`
            print(f"  +{(kb - before) / 1024:6.1f} MiB  {name:58} (a device on https:// holds it too)")
            continue
        if name.startswith("[64 MiB"):  # agent.sha256_choice: OpenSSL's hashes where the model dwarfs them
            added = (kb - before) / 1024
            print(f"  +{added:6.1f} MiB  {name:58} (after ssl; a large model's agent holds it)")
            continue
        if name.startswith("["):  # imported after the resident layers: not cumulative with them
            print(f"  +{(kb - before) / 1024:6.1f} MiB  {name:58} (not in the resident agent)")
            continue
        print(f"  +{(kb - before) / 1024:6.1f} MiB  {name:58} cumulative RATIO {kb / base_kb:.3f}")
    if not args.no_agent_run:
        run = agent_run_figures(art_dir, work, x)
        print_agent_run(run, bare)
        if args.https:
            secure = agent_run_figures(art_dir, work, x, https=True)
            print_agent_run(secure, bare, "[https] ")
            marks = [kb for _, kb in layers]
            names = [name for name, _ in layers]
            at = next(i for i, name in enumerate(names) if name.startswith("[https only]"))
            print_https_evidence(run, secure, marks[at] - marks[at - 1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
