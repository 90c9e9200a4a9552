"""The fresh process in which one emulated measurement runs: ``python -I emulate_child.py SPEC.json`` (as a
script: it imports only numpy and onnxruntime, not the edgefleet package, so its resident set is the runtime
plus the model(s)).

Spec: ``models`` (name -> path), ``providers``, ``intra_op``, ``inter_op``, ``cpus`` (CPU ids to pin to, or
empty), ``samples`` (an .npz, first axis = samples), ``warmup_runs``, ``runs``, ``rounds``, and optionally
``sustained_s`` with ``window_s``. One model: load time, first inference, warm-up and ``runs`` timed runs;
with ``sustained_s`` > 0 then back-to-back runs for that long, keeping the latencies (seconds) of the runs
that started in the first and in the last ``window_s`` and the count of all runs (the parent computes the
figures: ``edgefleet.sustained.drift``). Several: every model loaded, then timed interleaved in ``rounds``
rounds with a rotating order. Prints one JSON line on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _rss_bytes(key: str = "VmRSS") -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    if spec.get("cpus") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(spec["cpus"]))
    import numpy as np
    import onnxruntime as ort

    baseline = _rss_bytes()
    arrays = dict(np.load(spec["samples"], allow_pickle=False))
    count = min(len(a) for a in arrays.values())
    feeds = [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(count)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec["intra_op"]
    options.inter_op_num_threads = spec["inter_op"]
    options.log_severity_level = 3
    out: dict[str, Any] = {"baseline_rss_bytes": baseline, "models": {}}
    sessions = {}
    for name, path in spec["models"].items():
        start = time.perf_counter()
        session = ort.InferenceSession(path, sess_options=options, providers=spec["providers"])
        load_ms = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        session.run(None, feeds[0])
        first_ms = (time.perf_counter() - start) * 1000.0
        for i in range(spec["warmup_runs"]):
            session.run(None, feeds[i % count])
        sessions[name] = session
        out["models"][name] = {"load_time_ms": load_ms, "first_inference_ms": first_ms, "rounds": []}
    sustained_s = float(spec.get("sustained_s") or 0.0)
    sustained: dict[str, Any] | None = None
    if sustained_s > 0 and len(sessions) == 1:
        (session,) = sessions.values()
        window_s = float(spec["window_s"])
        # 8 bytes per run inside a window, nothing for the runs between: the resident set stays the model's
        first, last = array("d"), array("d")
        runs = 0
        begin = time.perf_counter()
        elapsed = 0.0
        while elapsed < sustained_s:
            feed = feeds[runs % count]
            start = time.perf_counter()
            session.run(None, feed)
            end = time.perf_counter()
            runs += 1
            elapsed = end - begin
            if start - begin < window_s:
                first.append(end - start)
            if start - begin >= sustained_s - window_s:
                last.append(end - start)
        sustained = {"runs": runs, "first_s": first.tolist(), "last_s": last.tolist()}
    rounds = max(1, int(spec["rounds"]))
    per_round = max(1, -(-int(spec["runs"]) // rounds))
    order = list(sessions)
    for r in range(rounds):
        shift = r % len(order)
        for name in order[shift:] + order[:shift]:
            session = sessions[name]
            times = []
            for i in range(per_round):
                feed = feeds[(r * per_round + i) % count]
                start = time.perf_counter()
                session.run(None, feed)
                times.append((time.perf_counter() - start) * 1000.0)
            out["models"][name]["rounds"].append(times)
    if sustained is not None:
        out["sustained"] = sustained
    out["final_rss_bytes"] = _rss_bytes()
    # the high-water mark of this process image only (wait4's ru_maxrss would carry the forked parent's)
    out["peak_rss_bytes"] = _rss_bytes("VmHWM")
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
