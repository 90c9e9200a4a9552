"""Which SHA-256 the resident agent computes with: OpenSSL's, or the interpreter's built-in one.

``hashlib`` loads OpenSSL for speed (``_hashlib``: libcrypto and its digest tables, ~4.4 MiB resident in
``agent run`` on the build host, measured with ``bench/serving.py``'s agent): 1.43 GB/s against the built-in
SHA-256's 0.31 GB/s there. The resident agent hashes the active version's files at each load, and manifests
and request bodies, which are small; an install is fetched and checked in its own child process, which keeps
OpenSSL. So the agent takes the built-in SHA-256 while the versions it holds are small, where 4.4 MiB is a
large share of its memory and the slower hash costs milliseconds, and OpenSSL's from ``OPENSSL_FROM_BYTES`` of
installed files, where the memory is a small share and the hash time would show at every start (~0.2 s more
per 64 MiB on the build host, several times that on an ARM board without a fast built-in).

Decided once, before anything imports ``hashlib``: a version installed later that crosses the line changes it
at the next start. ``EDGEFLEET_AGENT_SHA256`` (``openssl`` or ``builtin``) in the environment wins. An https
control plane still loads libcrypto for TLS; the choice then saves hashlib's digest tables only (~2 MiB).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["ENV", "OPENSSL_FROM_BYTES", "choose_sha256", "installed_bytes", "use_openssl"]

ENV = "EDGEFLEET_AGENT_SHA256"
OPENSSL_FROM_BYTES = 64 * 1024**2
_CHOICES = ("openssl", "builtin")


def use_openssl(installed_bytes: int, forced: str | None) -> bool:
    """The rule: OpenSSL's SHA-256 from ``OPENSSL_FROM_BYTES`` of installed versions, unless ``forced``."""
    if forced is not None and forced not in _CHOICES:
        raise InvalidDocumentError(
            f"{ENV} names no SHA-256 implementation",
            code="invalid_sha256_choice",
            expected=f"one of {', '.join(_CHOICES)}, or unset (chosen by the installed versions' size)",
            got=forced,
        )
    if forced is not None:
        return forced == "openssl"
    return installed_bytes >= OPENSSL_FROM_BYTES


def installed_bytes(slots_dir: Path, *, stop_at: int = OPENSSL_FROM_BYTES) -> int:
    """Bytes of the files under ``slots_dir`` (the installed versions), counted up to ``stop_at``."""
    total = 0
    for root, _dirs, files in os.walk(slots_dir):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile (a collected version)
                continue
            if total >= stop_at:
                return total
    return total


def choose_sha256(data_dir: Path, environ: Mapping[str, str], modules: MutableMapping[str, Any]) -> str:
    """Pick this process's SHA-256 (``modules`` is ``sys.modules``); returns what was done, for the log."""
    forced = environ.get(ENV) or None
    installed = installed_bytes(data_dir / "slots")
    openssl = use_openssl(installed, forced)
    why = f"{ENV}={forced}" if forced else f"installed versions {'>=' if openssl else '<'} 64 MiB"
    if "_hashlib" in modules or "hashlib" in modules:
        return "sha256: hashlib was already loaded, left as it is"
    if openssl:
        return f"sha256: openssl ({why})"
    # hashlib then uses its built-in implementations, as on an interpreter built without OpenSSL (and hmac its
    # pure-Python construction); a fresh interpreter, such as the fetch child, still loads OpenSSL.
    modules["_hashlib"] = None
    return f"sha256: built-in ({why})"
