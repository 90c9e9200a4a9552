"""One agent run for the crash harness: recover, apply a desired state, print what the slot serves.

    python child.py DATA_DIR ARTIFACTS_DIR DESIRED_JSON [--window S] [--max-restarts N] [--max-rollbacks N]
                    [--fail-trial]

With ``EDGEFLEET_FAULT_CRASH_AT`` set, the process SIGKILLs itself at that point (see agent.install.faults).
Every crash point reached is written to stderr as ``crash-point <name>`` just before the hook runs, so the
harness can tell where a run was killed (the last such line) and which points a run that was not killed
passed through.

``--fail-trial``: after the apply, a version on trial gets one failed request and the trial is judged (with
``max_failure_rate`` 0, one request is enough): a counted rollback (``trial_failure_rate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgefleet.agent.install import (
    InstallerConfig,
    LocalDirFetcher,
    SlotInstaller,
    TrialPolicy,
    crash_hook_from_env,
)
from edgefleet.agent.install.health import load_golden
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.protocol.wire.desired_state import DesiredState

TRACE_PREFIX = "crash-point "


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("desired", type=Path)
    parser.add_argument("--window", type=float, default=0.0)
    parser.add_argument("--max-restarts", type=int, default=1)
    parser.add_argument("--max-rollbacks", type=int, default=2)
    parser.add_argument("--fail-trial", action="store_true")
    args = parser.parse_args()
    hook = crash_hook_from_env()

    def crash(point: str) -> None:
        sys.stderr.write(f"{TRACE_PREFIX}{point}\n")
        sys.stderr.flush()
        hook(point)

    trial = TrialPolicy(window_s=args.window, max_restarts=args.max_restarts)
    if args.fail_trial:
        trial = TrialPolicy(
            window_s=args.window,
            max_restarts=args.max_restarts,
            max_failure_rate=0.0,
            min_requests_for_rate=1,
        )
    installer = SlotInstaller(
        args.data,
        LocalDirFetcher(args.artifacts, crash=crash),
        OnnxRuntimeAdapter(),
        config=InstallerConfig(trial=trial, max_rollbacks=args.max_rollbacks),
        crash=crash,
    )
    installer.recover()
    installer.apply(DesiredState.read(json.loads(args.desired.read_text())))
    if args.fail_trial and installer.on_trial("default") is not None:
        installer.record_inference("default", ok=False)
        installer.tick()
    report = installer.slot_reports()["default"]
    serving = installer.serving("default")
    matches = None
    model = installer.model("default")
    if model is not None and serving is not None:
        inputs, outputs = load_golden(args.artifacts / serving / "golden.npz")
        got = model.predict({k: v[:1] for k, v in inputs.items()})
        matches = all(np.allclose(got[k], v[:1], atol=1e-4) for k, v in outputs.items())
    print(json.dumps({**report.to_dict(), "serving": serving, "matches": matches}))
    installer.close()


if __name__ == "__main__":
    main()
