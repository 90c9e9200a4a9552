"""Content trust: keys, the TUF image repository (server/publisher side) and verification (device side)."""

__all__: list[str] = []
