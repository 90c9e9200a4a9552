"""One device run for the delta crash test: recover, apply a desired state through the real TUF fetcher, print
what the slot serves and what the fetch downloaded.

    python delta_crash_child.py DATA_DIR DESIRED_JSON IDENTITY_JSON

The data dir holds the trusted TUF root; the identity (``DeviceIdentity`` fields) names the server: a
loopback mirror of the image repository. With
``EDGEFLEET_FAULT_CRASH_AT`` set (e.g. ``delta:model.onnx#2``) the process SIGKILLs itself there; every crash
point reached is written to stderr as ``crash-point <name>`` first.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx

from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.agent.install import InstallerConfig, SlotInstaller, TrialPolicy, crash_hook_from_env
from edgefleet.agent.install.content import TufArtifactFetcher
from edgefleet.agent.install.download import DownloadPolicy
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.protocol.wire.desired_state import DesiredState
from edgefleet.trust.events import ListSink


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("desired", type=Path)
    parser.add_argument("identity", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    hook = crash_hook_from_env()

    def crash(point: str) -> None:
        sys.stderr.write(f"crash-point {point}\n")
        sys.stderr.flush()
        hook(point)

    ddir = DataDir(args.data)
    with httpx.Client() as client:
        fetcher = TufArtifactFetcher(
            ddir,
            DeviceIdentity(**json.loads(args.identity.read_text())),
            client=client,
            now=lambda: datetime.now(timezone.utc),
            events=ListSink(),
            policy=DownloadPolicy(reserve_bytes=0),
            crash=crash,
        )
        installer = SlotInstaller(
            ddir.root,
            fetcher,
            OnnxRuntimeAdapter(),
            config=InstallerConfig(trial=TrialPolicy(window_s=0.0)),
            crash=crash,
        )
        installer.recover()
        installer.apply(DesiredState.read(json.loads(args.desired.read_text())))
        report = installer.slot_reports()["default"]
        transfer = fetcher.last_transfer
        print(
            json.dumps(
                {
                    "state": report.state,
                    "serving": installer.serving("default"),
                    "delta_files": transfer.delta_files if transfer else None,
                    "fallbacks": transfer.fallbacks if transfer else None,
                    "bytes_downloaded": transfer.bytes_downloaded if transfer else None,
                }
            )
        )
        installer.close()


if __name__ == "__main__":
    main()
