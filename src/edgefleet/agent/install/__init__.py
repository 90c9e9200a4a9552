"""The agent's installer: fetch, verify, stage, load, health-check, switch, trial, commit, roll back.

The names below are imported on first use (``edgefleet.lazy_exports``): the fetch child
(``install.fetch_child``) lives in this package and needs none of the installer, its runtimes or numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgefleet.lazy_exports import lazy_exports

if TYPE_CHECKING:  # explicit re-exports for type checkers; at run time __getattr__ loads them
    from edgefleet.agent.install.executor import AdapterFor as AdapterFor
    from edgefleet.agent.install.executor import InstallerConfig as InstallerConfig
    from edgefleet.agent.install.faults import CRASH_ENV_VAR as CRASH_ENV_VAR
    from edgefleet.agent.install.faults import crash_hook_from_env as crash_hook_from_env
    from edgefleet.agent.install.fetch import ArtifactFetcher as ArtifactFetcher
    from edgefleet.agent.install.fetch import LocalDirFetcher as LocalDirFetcher
    from edgefleet.agent.install.installer import SlotInstaller as SlotInstaller
    from edgefleet.agent.install.steps import NoSteps as NoSteps
    from edgefleet.agent.install.steps import StepRecord as StepRecord
    from edgefleet.agent.install.steps import StepSink as StepSink
    from edgefleet.agent.install.trial import TrialPolicy as TrialPolicy
    from edgefleet.agent.install.trial import TrialState as TrialState
    from edgefleet.agent.install.trial import trial_sample as trial_sample
    from edgefleet.agent.install.trial import trial_verdict as trial_verdict

_HOMES = {
    "executor": ("AdapterFor", "InstallerConfig"),
    "faults": ("CRASH_ENV_VAR", "crash_hook_from_env"),
    "fetch": ("ArtifactFetcher", "LocalDirFetcher"),
    "installer": ("SlotInstaller",),
    "steps": ("NoSteps", "StepRecord", "StepSink"),
    "trial": ("TrialPolicy", "TrialState", "trial_sample", "trial_verdict"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
