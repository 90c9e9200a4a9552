"""One agent run for the crash harness: recover, apply a desired state, print what the slot serves.

    python child.py DATA_DIR ARTIFACTS_DIR DESIRED_JSON

With ``EDGEFLEET_FAULT_CRASH_AT`` set, the process SIGKILLs itself at that point (see agent.install.faults).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgefleet.agent.health import load_golden
from edgefleet.agent.install import (
    InstallerConfig,
    LocalDirFetcher,
    SlotInstaller,
    TrialPolicy,
    crash_hook_from_env,
)
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.protocol.desired_state import DesiredState


def main() -> None:
    data, artifacts, desired_path = (Path(a) for a in sys.argv[1:4])
    crash = crash_hook_from_env()
    installer = SlotInstaller(
        data,
        LocalDirFetcher(artifacts, crash=crash),
        OnnxRuntimeAdapter(),
        config=InstallerConfig(trial=TrialPolicy(window_s=0, max_restarts=1)),
        crash=crash,
    )
    installer.recover()
    installer.apply(DesiredState.parse(json.loads(desired_path.read_text())))
    report = installer.slot_reports()["default"]
    serving = installer.serving("default")
    matches = None
    model = installer.model("default")
    if model is not None and serving is not None:
        inputs, outputs = load_golden(artifacts / serving / "golden.npz")
        got = model.predict({k: v[:1] for k, v in inputs.items()})
        matches = all(np.allclose(got[k], v[:1], atol=1e-4) for k, v in outputs.items())
    print(json.dumps({**report.model_dump(), "serving": serving, "matches": matches}))
    installer.close()


if __name__ == "__main__":
    main()
