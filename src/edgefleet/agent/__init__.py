"""The device side: identity, sync, install, serve, telemetry. Never imports server or build."""
