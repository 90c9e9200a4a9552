"""The shapes of names, digests and paths on the wire: plain rules, no validation library.

The pydantic models (``edgefleet.protocol.document``) and the agent's msgspec structs
(``edgefleet.protocol.wire``) both take their patterns and path rule from here, so each rule has one text."""

from __future__ import annotations

import re
from typing import Protocol

__all__ = [
    "MANIFEST_FILE",
    "NAME_PATTERN",
    "SHA256_PATTERN",
    "BuildNames",
    "artifact_files_problem",
    "artifact_target_path",
    "is_safe_relpath",
    "manifest_target_path",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
"""Names of classes, models and versions: lowercase, no slashes, cannot start with a dot (no ``../x``)."""
SHA256_PATTERN = r"^[0-9a-f]{64}$"
"""A SHA-256 digest in lowercase hex."""
MANIFEST_FILE = "manifest.json"
"""The manifest's own name among an artifact's files and TUF targets (what a director assignment names)."""
_SAFE_PATH = re.compile(r"[A-Za-z0-9._/-]+")


def is_safe_relpath(path: str) -> bool:
    """A relative POSIX path inside an artifact: no absolute, no ``..``, no backslashes, bounded."""
    if not path or len(path) > 255 or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/")) and bool(_SAFE_PATH.fullmatch(path))


class BuildNames(Protocol):
    """What names a build: a manifest, the model's or the agent's struct."""

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def hardware_class(self) -> str: ...


def artifact_files_problem(paths: list[str], entrypoint: str, golden_file: str) -> str | None:
    """What is wrong with an artifact's file list, or None: unique paths, the entrypoint and the health
    check's golden file among them (the manifest model and the agent's struct both apply it)."""
    if len(set(paths)) != len(paths):
        return "file paths must be unique"
    for needed, what in ((entrypoint, "entrypoint"), (golden_file, "golden_file")):
        if needed not in paths:
            return f"{what} {needed!r} is not among the files"
    return None


def artifact_target_path(manifest: BuildNames, file_path: str) -> str:
    """The TUF target path of one of an artifact's files: ``{model}/{version}/{class}/{file}``."""
    return f"{manifest.model}/{manifest.version}/{manifest.hardware_class}/{file_path}"


def manifest_target_path(model: str, version: str, hardware_class: str) -> str:
    """The TUF target path of an artifact's own ``manifest.json``."""
    return f"{model}/{version}/{hardware_class}/{MANIFEST_FILE}"
