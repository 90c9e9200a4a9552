"""The device side: identity, sync, install, serve, telemetry. Never imports server or build."""

from typing import Any

# The serving API, re-exported lazily (PEP 562) so that importing any agent module stays cheap (no numpy).
__all__ = ["current_version", "load", "mode", "predict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgefleet.agent.serve import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
