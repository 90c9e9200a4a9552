"""The agent's installer: fetch, verify, stage, load, health-check, switch, trial, commit, roll back."""

from edgefleet.agent.install.executor import AdapterFor, InstallerConfig
from edgefleet.agent.install.faults import CRASH_ENV_VAR, crash_hook_from_env
from edgefleet.agent.install.fetch import ArtifactFetcher, LocalDirFetcher
from edgefleet.agent.install.installer import SlotInstaller
from edgefleet.agent.install.steps import NoSteps, StepRecord, StepSink
from edgefleet.agent.install.trial import TrialPolicy, TrialState, trial_sample, trial_verdict

__all__ = [
    "CRASH_ENV_VAR",
    "AdapterFor",
    "ArtifactFetcher",
    "InstallerConfig",
    "LocalDirFetcher",
    "NoSteps",
    "SlotInstaller",
    "StepRecord",
    "StepSink",
    "TrialPolicy",
    "TrialState",
    "crash_hook_from_env",
    "trial_sample",
    "trial_verdict",
]
