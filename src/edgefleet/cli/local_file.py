"""Reading a file an operator names on the command line: bounded, with the CLI's error codes."""

from __future__ import annotations

from pathlib import Path

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["read_local_file"]


def read_local_file(path: Path, *, max_bytes: int, what: str) -> bytes:
    """The bytes of ``path``; ``document_too_large`` over ``max_bytes``, ``file_unreadable`` when it cannot be
    read. ``what`` names the file in messages ("classes file", "spec file", ...)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidDocumentError(
                f"{what} too large", code="document_too_large", expected=f"<= {max_bytes} bytes", got=size
            )
        return path.read_bytes()
    except OSError as exc:
        raise InvalidDocumentError(
            f"cannot read {path}: {exc.strerror}",
            code="file_unreadable",
            expected="a readable file",
            got=str(path),
        ) from exc
